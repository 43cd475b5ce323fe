#!/usr/bin/env bash
# Renders the API documentation of a freshly built server in headless Chromium, offline (no
# host but loopback resolves, so nothing can come from a CDN), and saves screenshots:
#   docs/swagger-ui.png  (Swagger UI at /docs)
#   docs/redoc.png       (ReDoc at /redoc)
# Needs PostgreSQL (it uses a throwaway database, dropped at the end) and Chromium from
# Debian's packages (installed with apt-get when missing and running as root).
#   examples/docs_screenshot.sh
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v chromium >/dev/null; then
    if [ "$(id -u)" = 0 ]; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null
    else
        echo "chromium is required: sudo apt-get install chromium" >&2
        exit 1
    fi
fi
cargo build --quiet --bin prodsentinel

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
database="prodsentinel_docs_$$"
server_url="${DOCS_DATABASE_SERVER:-postgres://postgres@127.0.0.1:5432}"
profile=$(mktemp -d)
DATABASE_URL="$server_url/$database" API_ADDR="127.0.0.1:$port" OTLP_GRPC_ADDR=127.0.0.1:0 \
    OTLP_HTTP_ADDR=127.0.0.1:0 REDIS_URL=redis://127.0.0.1:1/0 LOG_LEVEL=WARNING \
    target/debug/prodsentinel &
server=$!
cleanup() {
    kill "$server" 2>/dev/null || true
    wait "$server" 2>/dev/null || true
    psql "$server_url/postgres" -q -c "DROP DATABASE IF EXISTS \"$database\" WITH (FORCE)" || true
    rm -rf "$profile"
}
trap cleanup EXIT

for _ in $(seq 1 100); do
    curl -fs "http://127.0.0.1:$port/health/ready" >/dev/null && break
    sleep 0.2
done
curl -fs "http://127.0.0.1:$port/health/ready" >/dev/null || { echo "server did not become ready" >&2; exit 1; }

mkdir -p docs
shoot() {
    chromium --headless --no-sandbox --disable-gpu --disable-dev-shm-usage --no-first-run \
        --user-data-dir="$profile" --hide-scrollbars \
        --host-resolver-rules="MAP * ~NOTFOUND, EXCLUDE 127.0.0.1" \
        --virtual-time-budget=20000 --window-size=1280,2200 \
        --screenshot="$2" "http://127.0.0.1:$port$1" 2>/dev/null
    echo "wrote $2"
}
shoot /docs/ docs/swagger-ui.png
shoot /redoc docs/redoc.png
