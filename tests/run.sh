#!/usr/bin/env bash
# The whole test suite: unit tests and the integration binary (tests/it), against the local
# PostgreSQL (TEST_DATABASE_SERVER, default postgres://postgres@127.0.0.1:5432) and Redis, then
# its Citus subset against a Citus cluster of its own (tests/citus.sh). Each test creates and
# drops a database of its own; Python clients are installed into a virtual environment under
# target/ on first use. Arguments (a filter) go to the first run, and skip the Citus one.
set -euo pipefail
cd "$(dirname "$0")/.."

# The documentation viewers are checked in a real headless browser: Chromium from Debian's
# packages, installed here when missing (as root; otherwise that one test says what to do).
if ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "tests: installing chromium (Debian package) for the documentation test"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null \
    || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null; }
fi

# tests/it/citus.rs needs the Citus cluster of tests/citus.sh, which runs it with the rest of
# the Citus subset after the suite (skipped, saying so, when Citus is not installed).
status=0
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast -E 'not test(/^citus::/)' "$@" || status=$?
else
  cargo test --workspace --no-fail-fast "$@" -- --skip citus:: || status=$?
fi
if [ $# -eq 0 ] && cargo nextest --version >/dev/null 2>&1; then
  bash tests/citus.sh || status=$?
fi
exit $status
