//! The sealing layouts (issue 23, first step: "choose the grouping from measurements"). The
//! OTLP/gRPC span scenario (the benchmark export) fills a fresh database through the server;
//! then each candidate block layout is built from its spans, in SQL, and measured: bytes per
//! span (heap, TOAST and indexes), WAL written per span, and spans sealed per second, against
//! the row form the spans are stored in today. Nothing of the service changes: the blocks are
//! tables of the benchmark's own, dropped at the end.

use std::time::Instant;

use serde_json::{json, Value};

use crate::ceiling::{connect, drop_database, fresh_database};
use crate::load::grpc_spans;
use crate::pg::OwnPostgres;
use crate::server::Server;
use crate::{BoxError, Options};

/// A candidate: how spans become one row (a block).
struct Layout {
    name: &'static str,
    /// What a block groups by, and the column that finds a trace's block (indexed as `index`).
    group: &'static str,
    key: &'static str,
    index: &'static str,
    /// The block's other columns; `{c}` is the compression method.
    columns: &'static str,
    /// The SELECT list making a block from its spans (`s`).
    select: &'static str,
}

/// One trace per block.
const BY_TRACE: (&str, &str, &str) = ("trace_id", "trace_id text NOT NULL", "(trace_id)");

const LAYOUTS: [Layout; 4] = [
    Layout {
        name: "per trace, column arrays (ids, times, services, shared ids, payloads as jsonb[])",
        group: BY_TRACE.0,
        key: BY_TRACE.1,
        index: BY_TRACE.2,
        columns: "ids uuid[], times timestamptz[], services text[], shared_ids uuid[], payloads jsonb[] COMPRESSION {c}",
        select: r#"array_agg(id ORDER BY "timestamp", id), array_agg("timestamp" ORDER BY "timestamp", id),
                   array_agg(service_name ORDER BY "timestamp", id), array_agg(shared_id ORDER BY "timestamp", id),
                   array_agg(payload ORDER BY "timestamp", id)"#,
    },
    Layout {
        name: "per trace, one jsonb document (an array of whole signals)",
        group: BY_TRACE.0,
        key: BY_TRACE.1,
        index: BY_TRACE.2,
        columns: "signals jsonb COMPRESSION {c}",
        select: r#"jsonb_agg(jsonb_build_object('id', id, 'timestamp', "timestamp", 'service_name', service_name,
                   'shared_id', shared_id, 'payload', payload) ORDER BY "timestamp", id)"#,
    },
    Layout {
        name: "per trace, one JSON text document (keys kept as written)",
        group: BY_TRACE.0,
        key: BY_TRACE.1,
        index: BY_TRACE.2,
        columns: "signals text COMPRESSION {c}",
        select: r#"jsonb_agg(jsonb_build_object('id', id, 'timestamp', "timestamp", 'service_name', service_name,
                   'shared_id', shared_id, 'payload', payload) ORDER BY "timestamp", id)::text"#,
    },
    Layout {
        name: "64 traces per block (by a hash of the trace id), one JSON text document, trace ids indexed (GIN)",
        group: "abs(hashtext(trace_id)) % {buckets}",
        key: "trace_ids text[] NOT NULL",
        index: "USING gin (trace_ids)",
        select: r#"array_agg(DISTINCT trace_id), jsonb_agg(jsonb_build_object('id', id, 'trace_id', trace_id, 'timestamp', "timestamp",
                   'service_name', service_name, 'shared_id', shared_id, 'payload', payload) ORDER BY trace_id, "timestamp", id)::text"#,
        columns: "signals text COMPRESSION {c}",
    },
];

const COMPRESSIONS: [&str; 2] = ["lz4", "pglz"];

async fn relation_bytes(db: &tokio_postgres::Client, table: &str) -> Result<i64, BoxError> {
    let sql = "SELECT pg_total_relation_size($1::text::regclass)";
    Ok(db.query_one(sql, &[&table]).await?.get(0))
}

async fn wal_lsn(db: &tokio_postgres::Client) -> Result<String, BoxError> {
    Ok(db.query_one("SELECT pg_current_wal_lsn()::text", &[]).await?.get(0))
}

async fn wal_since(db: &tokio_postgres::Client, lsn: &str) -> Result<f64, BoxError> {
    let sql = "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), $1::text::pg_lsn)::float8";
    Ok(db.query_one(sql, &[&lsn]).await?.get(0))
}

pub async fn measure(options: &Options) -> Result<Value, BoxError> {
    let mut pg = OwnPostgres::init()?;
    pg.start(&[])?;
    let own = Options { database_server: pg.server_url(), ..options.clone() };
    let url = fresh_database(&own, "seal").await?;
    let server = Server::start(&own, &url, &[]).await?;
    let (tally, _) = grpc_spans(server.grpc, 8, options.seconds, "bench-seal").await?;
    server.stop().await?;
    let db = connect(&url).await?;
    db.batch_execute("VACUUM (ANALYZE) raw_signal_rows").await?;
    let spans: i64 =
        db.query_one("SELECT count(*) FROM raw_signals WHERE signal_type = 'trace'", &[]).await?.get(0);
    let traces: i64 = db
        .query_one("SELECT count(DISTINCT trace_id) FROM raw_signals WHERE signal_type = 'trace'", &[])
        .await?
        .get(0);
    // The row form: every partition holding spans (heap, TOAST, indexes).
    let row_bytes: i64 = db
        .query_one(
            "SELECT sum(pg_total_relation_size(c.oid))::int8 FROM pg_class c
             WHERE c.relkind = 'r' AND c.relname LIKE 'raw_signals%trace'",
            &[],
        )
        .await?
        .get(0);
    eprintln!("bench: seal: {spans} spans in {traces} traces, {} acked", tally.acked);
    let mut layouts = Vec::new();
    for layout in &LAYOUTS {
        for compression in COMPRESSIONS {
            let table = format!("seal_block_{}", layouts.len());
            let columns = layout.columns.replace("{c}", compression);
            let key = layout.key;
            db.batch_execute(&format!(
                "DROP TABLE IF EXISTS {table}; CREATE TABLE {table} ({key}, {columns})"
            ))
            .await?;
            db.batch_execute("CHECKPOINT").await?;
            let lsn = wal_lsn(&db).await?;
            let started = Instant::now();
            db.execute(
                &format!(
                    "INSERT INTO {table} SELECT {} FROM raw_signals s WHERE signal_type = 'trace' GROUP BY {}",
                    if layout.group == BY_TRACE.0 { format!("trace_id, {}", layout.select) } else { layout.select.to_owned() },
                    layout.group.replace("{buckets}", &(traces / 64).max(1).to_string())
                ),
                &[],
            )
            .await?;
            db.batch_execute(&format!("CREATE INDEX ON {table} {}", layout.index)).await?;
            let seconds = started.elapsed().as_secs_f64();
            let wal = wal_since(&db, &lsn).await?;
            db.batch_execute(&format!("VACUUM (ANALYZE) {table}")).await?;
            let bytes = relation_bytes(&db, &table).await?;
            let parts = db
                .query_one(
                    &format!(
                        "SELECT pg_relation_size($1::text::regclass), pg_indexes_size($1::text::regclass),
                                (SELECT avg(pg_column_size(b.*))::float8 FROM {table} b), (SELECT count(*) FROM {table})"
                    ),
                    &[&table],
                )
                .await?;
            let (heap, indexes, row, blocks): (i64, i64, f64, i64) =
                (parts.get(0), parts.get(1), parts.get(2), parts.get(3));
            let result = json!({
                "layout": layout.name,
                "compression": compression,
                "bytes_per_span": bytes as f64 / spans.max(1) as f64,
                "heap_bytes_per_span": heap as f64 / spans.max(1) as f64,
                "index_bytes_per_span": indexes as f64 / spans.max(1) as f64,
                "toast_bytes_per_span": (bytes - heap - indexes) as f64 / spans.max(1) as f64,
                "mean_block_bytes": row,
                "traces_per_block": traces as f64 / blocks.max(1) as f64,
                "ratio_to_row_form": row_bytes as f64 / bytes.max(1) as f64,
                "wal_bytes_per_span": wal / spans.max(1) as f64,
                "spans_sealed_per_s": spans as f64 / seconds,
            });
            eprintln!("bench: seal {result}");
            layouts.push(result);
            db.batch_execute(&format!("DROP TABLE {table}")).await?;
        }
    }
    drop(db);
    drop_database(&own, &url).await?;
    drop(pg);
    Ok(json!({
        "spans": spans,
        "traces": traces,
        "row_form_bytes_per_span": row_bytes as f64 / spans.max(1) as f64,
        "layouts": layouts,
    }))
}
