#!/usr/bin/env bash
# The benchmark of BENCHMARKS.md, from a fresh clone: needs PostgreSQL and Redis running
# (it uses fresh databases it drops afterwards, and Redis logical database 15).
#   examples/bench.sh                       # 10 s per scenario, 5 million signals for queries
#   examples/bench.sh --seconds 5 --query-rows 500000 --out /tmp/bench.json
#   examples/bench.sh --only volume --seconds 30   # 20 M signals on a PostgreSQL of its own
#                                                  # (initdb; ~16 min, ~40 GB of disk)
#   examples/bench.sh --only jaeger                # the Jaeger query API over the same 20 M (~15 min)
#   examples/bench.sh --only seal-layouts --seconds 30  # block layouts compared (issue 23)
#   examples/bench.sh --only sealed --seconds 30   # the service's sealing: bytes, WAL, rate, reads
#   examples/bench.sh --only ceiling-volume --volume-rows 17000000 --seconds 30 [--scenario daily-sealed]
#                                                  # PostgreSQL's insert ceiling over a loaded day, sealed or not
#   examples/bench.sh --only citus --seconds 30    # ingest through a Citus coordinator and two
#                                                  # workers vs one PostgreSQL (needs Citus installed)
#   examples/bench.sh --only citus-probe --seconds 10  # CPU per node of each way of writing the
#                                                  # incidents and signals on Citus (docs/scaling.md)
#   examples/bench.sh --only soak                  # a month in an hour, then again with a size
#                                                  # budget (--soak-minutes 60, --soak-rate 1000,
#                                                  # --soak-budget yes|no, --soak-budget-minutes)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --bin prodsentinel --example bench
exec target/release/examples/bench --server target/release/prodsentinel "$@"
