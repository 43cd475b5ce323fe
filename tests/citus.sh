#!/usr/bin/env bash
# The integration suite's Citus subset (issue 24): the same tests, against a Citus cluster of
# their own on this machine: a coordinator and two workers, each a PostgreSQL instance started
# here with `citus` preloaded, stopped and removed at the end. Each test's database is created
# on every node with the extension and the workers added (tests/it/helpers.rs, prepare_citus),
# as an operator does, and set to refuse joins of coordinator tables to distributed ones
# (citus.local_table_join_policy = never), which the service's reads must not make. Skipped,
# with one line, when the citus extension is not installed: no
# package registry reachable here carries it (README, "Running on Citus").
#
# Extra arguments go to the test runner (a filter narrows the subset further).
set -euo pipefail
cd "$(dirname "$0")/.."

bindir=$(pg_config --bindir 2>/dev/null || true)
sharedir=$(pg_config --sharedir 2>/dev/null || true)
if [ -z "$bindir" ] || [ ! -f "$sharedir/extension/citus.control" ]; then
  echo "tests: Citus subset skipped: the citus extension is not installed for this PostgreSQL"
  exit 0
fi

# What runs on Citus: everything the service does through the coordinator, and the tests of
# tests/it/citus.rs; CITUS_SUBSET replaces it ("binary(it)" runs the whole suite there). Left
# out, each for a reason of the layout rather than of behaviour: tests that look at the plans
# of the single node or at a range as a table of its own (on Citus a range is only recorded,
# its type partitions hang from raw_signal_rows: store/citus.rs), that poison or guard the
# signal tables with triggers (Citus refuses triggers on distributed tables: the test that
# nothing sealed can be changed is one).
included='test(/^(citus|otlp_grpc|otlp_http|legacy|pipeline|triage|problems|error_signals|queries|api|api_shapes|jaeger|celery_worker|fleet)::/) | test(/^volume::(idempotency|activity|budget|shared|totals|migration|retention|evidence|sealing)::/) | test(/^canary::passes::/) | test(=canary::failures::a_service_keeping_less_than_the_canary_was_told_expires_its_writes_early) | test(/^(real_clients|reliability::crash|reliability::hostile)::/) | test(=store::schema_has_the_contract_tables_types_and_labels) | test(/^volume::lifecycle::(an_incident_range_is_dropped_whole|over_its_budget|an_incident_range_with_many|an_incident_made_in_a_range|incident_ranges_are_dropped_while|a_pass_)/) | test(/^volume::partitions::(a_new_range_takes|signals_three_years_old|partitions_exist_ahead|partitions_are_created_)/)'
excluded='test(/^pipeline::(a_failed_batch_fails|a_permanent_failure_is_isolated)/) | test(=jaeger::a_search_reads_only_the_partitions_of_its_range) | test(=volume::sealing::nothing_sealed_can_be_changed)'
subset=${CITUS_SUBSET:-"binary(it) & ($included) & !($excluded)"}

as_postgres() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

dir=$(mktemp -d /tmp/prodsentinel-citus-XXXXXX)
chmod 755 "$dir"
[ "$(id -u)" = 0 ] && chown postgres "$dir"
nodes=(coordinator worker1 worker2)
declare -A ports
stop() {
  for node in "${nodes[@]}"; do
    [ -f "$dir/$node/postmaster.pid" ] && as_postgres "$bindir/pg_ctl" -D "$dir/$node" stop -m immediate >/dev/null 2>&1 || true
  done
  rm -rf "$dir"
}
trap stop EXIT

for node in "${nodes[@]}"; do
  ports[$node]=$(free_port)
  as_postgres "$bindir/initdb" -D "$dir/$node" -U postgres -A trust --no-sync >/dev/null
  # max_prepared_transactions: a batch over several workers commits by two-phase commit.
  # The durability settings are a test cluster's: it is thrown away at the end.
  cat >>"$dir/$node/postgresql.conf" <<EOF
port = ${ports[$node]}
listen_addresses = '127.0.0.1'
unix_socket_directories = '$dir'
shared_preload_libraries = 'citus'
max_connections = 400
max_prepared_transactions = 400
fsync = off
synchronous_commit = off
full_page_writes = off
EOF
  as_postgres "$bindir/pg_ctl" -D "$dir/$node" -l "$dir/$node.log" -w -t 60 start >/dev/null
done

coordinator="postgres://postgres@127.0.0.1:${ports[coordinator]}"
workers="127.0.0.1:${ports[worker1]},127.0.0.1:${ports[worker2]}"
echo "tests: Citus subset against a coordinator ($coordinator) and two workers ($workers)"
status=0
TEST_DATABASE_SERVER=$coordinator TEST_CITUS_WORKERS=$workers \
  cargo nextest run --workspace --no-fail-fast -E "$subset" "$@" || status=$?
exit $status
