//! Start-up against the real database: creation, migrations, the append-only rule.

use prodsentinel::store::migrate::{Migration, MIGRATIONS};
use prodsentinel::store::migrate_database;
use prodsentinel::App;

use crate::helpers::{column, connect, log_body, one, server_url, spawn_app, test_config, TestDb};

#[tokio::test]
async fn app_creates_its_database_when_missing() {
    let db = TestDb::new();
    let admin = connect(&format!("{}/postgres", server_url())).await;
    let exists = "SELECT count(*) FROM pg_database WHERE datname = $1";
    assert_eq!(admin.query_one(exists, &[&db.name]).await.unwrap().get::<_, i64>(0), 0);
    let app = App::build(test_config(&db, &[])).await.expect("app starts");
    assert_eq!(admin.query_one(exists, &[&db.name]).await.unwrap().get::<_, i64>(0), 1);
    drop(app);
}

#[tokio::test]
async fn schema_has_the_contract_tables_types_and_labels() {
    let app = spawn_app().await;
    let db = app.db().await;
    let labels = |type_name: &'static str| {
        let db = &db;
        async move {
            db.query(
                "SELECT enumlabel::text FROM pg_enum e JOIN pg_type t ON t.oid = e.enumtypid
                 WHERE t.typname = $1 ORDER BY e.enumsortorder",
                &[&type_name],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| r.get::<_, String>(0))
            .collect::<Vec<_>>()
        }
    };
    assert_eq!(labels("signaltypeenum").await, ["log", "trace", "metric"]);
    assert_eq!(labels("incidentstatus").await, ["OPEN", "INVESTIGATING", "RESOLVED", "CLOSED"]);
    assert_eq!(labels("incidentseverity").await, ["LOW", "MEDIUM", "HIGH", "CRITICAL"]);

    let columns = db
        .query(
            "SELECT table_name::text, column_name::text, udt_name::text FROM information_schema.columns
             WHERE table_schema = 'public' AND table_name IN ('raw_signals', 'incidents', 'analysis_results')",
            &[],
        )
        .await
        .unwrap();
    let has = |table: &str, column: &str, udt: &str| {
        columns.iter().any(|r| {
            r.get::<_, String>(0) == table && r.get::<_, String>(1) == column && r.get::<_, String>(2) == udt
        })
    };
    let expected = [
        ("raw_signals", "id", "uuid"),
        ("raw_signals", "signal_type", "signaltypeenum"),
        ("raw_signals", "trace_id", "varchar"),
        ("raw_signals", "service_name", "varchar"),
        ("raw_signals", "timestamp", "timestamptz"),
        ("raw_signals", "payload", "jsonb"),
        ("incidents", "id", "uuid"),
        ("incidents", "trace_id", "varchar"),
        ("incidents", "status", "incidentstatus"),
        ("incidents", "severity", "incidentseverity"),
        ("incidents", "detected_at", "timestamptz"),
        ("incidents", "resolved_at", "timestamptz"),
        ("incidents", "affected_services", "_varchar"),
        ("incidents", "error_count", "float8"),
        ("analysis_results", "id", "uuid"),
        ("analysis_results", "incident_id", "uuid"),
        ("analysis_results", "root_cause", "text"),
        ("analysis_results", "confidence_score", "float8"),
        ("analysis_results", "evidence_signals", "_uuid"),
        ("analysis_results", "ai_explanation", "json"),
        ("analysis_results", "generated_at", "timestamptz"),
    ];
    for (table, column, udt) in expected {
        assert!(has(table, column, udt), "{table}.{column} should be {udt}");
    }

    // The worker inserts incidents with its own ids and Python enum member names.
    db.execute(
        "INSERT INTO incidents (id, trace_id, status, severity, affected_services, error_count)
         VALUES (gen_random_uuid(), 't', 'OPEN', 'HIGH', ARRAY['svc']::varchar[], 1.0)",
        &[],
    )
    .await
    .expect("the worker's insert works");
}

/// UPDATE, DELETE and TRUNCATE are refused on the row form's parent and on every partition
/// under it (the range partitions, each signal type's, the default), on the sealed form's tables
/// (a partition being sealed, blocks, their trace index), naming the table aimed at; UPDATE and
/// DELETE on the `raw_signals` view (a view cannot be truncated). Returns how many tables were
/// checked.
pub async fn assert_every_change_is_refused(db: &tokio_postgres::Client) -> usize {
    let tables: Vec<String> = column(
        db,
        "SELECT relid::regclass::text FROM pg_partition_tree('raw_signal_rows')
         UNION ALL SELECT relid::regclass::text FROM pg_partition_tree('raw_signal_blocks')
         UNION ALL SELECT relid::regclass::text FROM pg_partition_tree('raw_signal_block_traces')
         UNION ALL SELECT 'raw_signal_sealing'
         UNION ALL SELECT inhrelid::regclass::text FROM pg_inherits WHERE inhparent = 'raw_signal_sealing'::regclass",
    )
    .await;
    for (statement, operation) in
        [("UPDATE raw_signals SET service_name = 'x'", "UPDATE"), ("DELETE FROM raw_signals", "DELETE")]
    {
        let error = db.batch_execute(statement).await.expect_err(statement);
        let message = error.as_db_error().expect("a database error").message().to_owned();
        assert_eq!(message, format!("raw_signals is append-only: {operation} on raw_signals is not allowed"));
    }
    db.batch_execute("TRUNCATE raw_signals").await.expect_err("a view cannot be truncated");
    for table in &tables {
        let column = if table.starts_with("raw_signal_block") { "unit" } else { "service_name" };
        for (statement, operation) in [
            (format!("UPDATE {table} SET {column} = {column}"), "UPDATE"),
            (format!("DELETE FROM {table}"), "DELETE"),
            (format!("TRUNCATE {table}"), "TRUNCATE"),
        ] {
            let error = db.batch_execute(&statement).await.expect_err(&statement);
            let message = error.as_db_error().expect("a database error").message().to_owned();
            assert_eq!(message, format!("raw_signals is append-only: {operation} on {table} is not allowed"));
        }
    }
    tables.len()
}

#[tokio::test]
async fn raw_signals_reject_update_delete_and_truncate_on_the_parent_and_every_partition() {
    let app = spawn_app().await;
    let db = app.db().await;
    // The parent, three days of range partitions with three type partitions each, the default;
    // the sealed form's three parents (volume::sealing checks them with a unit sealed).
    assert_eq!(assert_every_change_is_refused(&db).await, 1 + 3 * 4 + 1 + 3);
    let old = log_body("t", "INFO", "immutable, stamped in 2024: the default partition");
    let mut current = log_body("t", "INFO", "immutable, stamped now: today's log partition");
    let now = chrono::Utc::now();
    current["timestamp"] = serde_json::json!(now.to_rfc3339());
    for body in [&old, &current] {
        assert_eq!(app.post_json("/ingest/logs", body).await.0, reqwest::StatusCode::ACCEPTED);
    }
    assert_every_change_is_refused(&db).await;
    assert_eq!(app.count_signals().await, 2);
    let places: Vec<String> =
        column(&db, "SELECT tableoid::regclass::text FROM raw_signal_rows ORDER BY \"timestamp\"").await;
    let today = format!("raw_signals_p{}_log", now.format("%Y%m%d"));
    assert_eq!(places, ["raw_signals_default".to_owned(), today]);
}

#[tokio::test]
async fn restart_applies_nothing_new_and_keeps_one_record_per_migration() {
    let app = spawn_app().await;
    let config = test_config(&app.db, &[]);
    let report = migrate_database(&config.database, MIGRATIONS).await.unwrap();
    assert!(report.applied.is_empty());
    assert_eq!(report.already_applied, MIGRATIONS.len());
    let second = App::build(config).await.expect("a second start on a migrated database works");
    drop(second);
    let count: i64 = one(&app.db().await, "SELECT count(*) FROM schema_migrations").await;
    assert_eq!(count, MIGRATIONS.len() as i64);
}

#[tokio::test]
async fn an_edited_migration_is_refused_naming_the_file() {
    let app = spawn_app().await;
    let config = test_config(&app.db, &[]);
    let mut edited: Vec<Migration> = MIGRATIONS.to_vec();
    edited[0].sql = "CREATE TABLE sneaky (id int);";
    let error = migrate_database(&config.database, &edited).await.expect_err("edited migration refused");
    let text = format!("{error:#}");
    assert!(text.contains("0001_signals.sql") && text.contains("edited"), "{text}");
    let sneaky: i64 = one(&app.db().await, "SELECT count(*) FROM pg_tables WHERE tablename = 'sneaky'").await;
    assert_eq!(sneaky, 0);
}

#[tokio::test]
async fn concurrent_starts_apply_each_migration_once() {
    let db = TestDb::new();
    let (a, b) = tokio::join!(App::build(test_config(&db, &[])), App::build(test_config(&db, &[])));
    let (a, b) = (a.expect("first instance starts"), b.expect("second instance starts"));
    drop((a, b));
    let client = db.connect().await;
    let rows = client.query("SELECT version FROM schema_migrations ORDER BY version", &[]).await.unwrap();
    let versions: Vec<i32> = rows.iter().map(|r| r.get(0)).collect();
    let expected: Vec<i32> = MIGRATIONS.iter().map(|m| m.version).collect();
    assert_eq!(versions, expected);
}

#[tokio::test]
async fn a_failing_migration_is_rolled_back_and_named() {
    let app = spawn_app().await;
    let config = test_config(&app.db, &[]);
    let mut broken: Vec<Migration> = MIGRATIONS.to_vec();
    broken.push(Migration {
        version: 9999,
        name: "9999_broken.sql",
        sql: "CREATE TABLE half (id int); SELECT * FROM missing_table;",
    });
    let error = migrate_database(&config.database, &broken).await.expect_err("broken migration fails");
    assert!(format!("{error:#}").contains("9999_broken.sql"));
    let db = app.db().await;
    let half: i64 = one(&db, "SELECT count(*) FROM pg_tables WHERE tablename = 'half'").await;
    assert_eq!(half, 0, "the failed migration's transaction is rolled back");
    let recorded: i64 = one(&db, "SELECT count(*) FROM schema_migrations WHERE version = 9999").await;
    assert_eq!(recorded, 0);
}

#[tokio::test]
async fn new_incidents_get_time_ordered_ids_and_one_index_serves_trace_lookups_and_upserts() {
    let app = spawn_app().await;
    for trace in ["t-first", "t-second"] {
        assert_eq!(
            app.post_json("/ingest/logs", &log_body(trace, "INFO", "x")).await.0,
            reqwest::StatusCode::ACCEPTED
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let db = app.db().await;
    let ids: Vec<uuid::Uuid> = column(&db, "SELECT id FROM incidents ORDER BY detected_at").await;
    assert!(ids.iter().all(|id| id.get_version_num() == 7), "{ids:?}");
    assert!(ids[0] < ids[1], "later incidents sort after earlier ones: {ids:?}");
    let indexes: Vec<String> = column(
        &db,
        "SELECT indexdef FROM pg_indexes WHERE tablename = 'incidents' AND indexdef LIKE '%trace%'",
    )
    .await;
    assert_eq!(indexes.len(), 1, "{indexes:?}");
    assert!(
        indexes[0].contains("UNIQUE") && indexes[0].contains("(trace_id, trace_key, kept, detected_at)"),
        "{indexes:?}"
    );
    // The worker's lookup by trace id uses it in every partition (a two-row table would be
    // scanned otherwise).
    db.batch_execute("SET enable_seqscan = off; SET enable_bitmapscan = off").await.unwrap();
    let plan: String = db
        .query("EXPLAIN SELECT * FROM incidents WHERE trace_id = 't-first'", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get::<_, String>(0))
        .collect::<Vec<_>>()
        .join("\n");
    let scans: Vec<&str> = plan.lines().filter(|line| line.contains("Scan")).collect();
    assert!(scans.len() >= 3, "the kept incidents and the ranges: {plan}");
    assert!(scans.iter().all(|scan| scan.contains("Index") && scan.contains("trace")), "{plan}");
}

/// The incident lists read their index backwards, with no sort: migration 0014 made the list
/// indexes ascending (pages filled at the right edge) while the lists stay newest first; since
/// 0015 each partition's, merged in order.
#[tokio::test]
async fn incident_lists_read_the_ascending_list_indexes_backwards_without_sorting() {
    use prodsentinel::store::INCIDENT_ORDER;
    let app = spawn_app().await;
    let db = app.db().await;
    // Planned as on a large table: a two-row table would be scanned and sorted otherwise.
    db.batch_execute("SET enable_seqscan = off; SET enable_bitmapscan = off").await.unwrap();
    for (filter, index) in [
        ("", "_detected_at_"),
        ("WHERE status = 'OPEN'", "_status_detected_at_"),
        ("WHERE severity = 'HIGH'", "_severity_detected_at_"),
    ] {
        let sql = format!("EXPLAIN SELECT * FROM incidents {filter} ORDER BY {INCIDENT_ORDER} LIMIT 50");
        let plan: Vec<String> = column(&db, &sql).await;
        let scans: Vec<&String> = plan.iter().filter(|line| line.contains("Scan")).collect();
        let plan = plan.join("\n");
        assert!(scans.len() >= 3, "the kept incidents and the ranges: {sql}\n{plan}");
        for scan in scans {
            assert!(scan.contains("Index Scan Backward using ") && scan.contains(index), "{sql}\n{plan}");
        }
        // A Merge Append keeps each partition's order; no Sort node.
        assert!(
            !plan.lines().any(|line| line
                .trim_start()
                .trim_start_matches("->")
                .trim_start()
                .starts_with("Sort  (")),
            "{sql}\n{plan}"
        );
    }
}

/// Our connections compile no plan (JIT off; the server's default here is on): on partitioned
/// incidents the list's page query is estimated above `jit_above_cost` and spent 14-60 ms
/// compiling a plan that ran in under a millisecond.
#[tokio::test]
async fn pooled_connections_run_without_jit() {
    let db = TestDb::new();
    let app = App::build(test_config(&db, &[])).await.expect("app starts");
    assert_eq!(app.store().session_setting("jit").await.unwrap(), "off");
    let server: String = one(&db.connect().await, "SELECT current_setting('jit')").await;
    assert_eq!(server, "on", "the server's default, which the pool overrides");
}

/// The app's connections to its database, seen from PostgreSQL (the test's own excluded).
async fn app_backends(db: &tokio_postgres::Client) -> i64 {
    one(db, "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()")
        .await
}

/// Holds `incidents` locked while `readers` list requests each take a pooled connection and
/// wait on the lock, then lets them finish. All of them waiting at once is the proof that the
/// pool opened that many connections: counted while they are in use, which no idle check
/// touches (counting after they are returned would race with a check).
async fn burst_of_connections(app: &crate::helpers::TestApp, readers: usize) {
    let (mut db, watch) = (app.db().await, app.db().await);
    let lock = db.transaction().await.unwrap();
    lock.batch_execute("LOCK TABLE incidents IN ACCESS EXCLUSIVE MODE").await.unwrap();
    let requests: Vec<_> = (0..readers)
        .map(|_| {
            let request = app.http.get(app.url("/query/incidents")).send();
            tokio::spawn(request)
        })
        .collect();
    let waiting = "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'";
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while one::<i64>(&watch, waiting).await < readers as i64 {
        assert!(std::time::Instant::now() < deadline, "{readers} readers never all waited on the lock");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    lock.commit().await.unwrap();
    for request in requests {
        assert_eq!(request.await.unwrap().unwrap().status(), reqwest::StatusCode::OK);
    }
}

/// A burst's connections are closed once unused for DATABASE_POOL_IDLE_SECONDS, each a
/// PostgreSQL process; with 0 they stay.
#[tokio::test]
async fn connections_a_burst_opened_are_closed_once_idle() {
    const READERS: usize = 10;
    let app = crate::helpers::spawn_app_with(&["--database-pool-idle-seconds", "1"]).await;
    let db = app.db().await;
    burst_of_connections(&app, READERS).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    // The steady users (the dispatcher, the maintenance) may hold one or two at any moment.
    while app_backends(&db).await > 2 {
        assert!(std::time::Instant::now() < deadline, "idle connections still open after 20 s");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }

    let kept = crate::helpers::spawn_app_with(&["--database-pool-idle-seconds", "0"]).await;
    let kept_db = kept.db().await;
    burst_of_connections(&kept, READERS).await;
    // Three times the other app's idle period, and its checks ran every second.
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    assert!(app_backends(&kept_db).await >= READERS as i64, "with 0, connections stay open");
}
