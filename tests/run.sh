#!/usr/bin/env bash
# The whole test suite: unit tests and the integration binary (tests/it), against the local
# PostgreSQL (TEST_DATABASE_SERVER, default postgres://postgres@127.0.0.1:5432). Each test
# creates and drops a database of its own.
set -euo pipefail
cd "$(dirname "$0")/.."

if cargo nextest --version >/dev/null 2>&1; then
  exec cargo nextest run --workspace --no-fail-fast "$@"
else
  exec cargo test --workspace --no-fail-fast "$@"
fi
