//! A new pooled session's connections to the workers, opened when the session is made.
//!
//! A coordinator session opens its connection to a worker on the first statement routed
//! there: by hand on a local cluster, the first read of a trace in a new session took
//! 12-26 ms, the next ones 1-3 ms. Batches written through the coordinator opened those
//! connections while ingesting; written at the nodes they no longer do, and each pooled session
//! paid it on its first trace read: `/query/traces/{id}` had p99 11.5-18.8 ms against 7.1-7.8
//! through the coordinator (BENCHMARKS.md, runs 15-15d), 5.5-11.8 with this, as through the
//! coordinator (runs 16-16b). Opened here, the session keeps them
//! (`citus.max_cached_conns_per_worker`) until Citus retires them
//! (`citus.max_cached_connection_lifetime`, 10 minutes by default), when the next read opens
//! a new one.

use std::time::Duration;

use tokio_postgres::Client;
use tracing::debug;

/// How long the whole opening may take: a node that does not answer must not keep a session
/// from being made (its reads fail on their own, with their own error).
const WITHIN: Duration = Duration::from_secs(2);

/// Opens `client`'s connection to every other active node of the cluster. Best effort: a node
/// that cannot be reached, or any error, leaves the session as it was and is logged; an error
/// only when the session could not be brought back out of the failed block (it is unusable).
pub async fn open_worker_connections(client: &Client) -> Result<(), tokio_postgres::Error> {
    let within = WITHIN.as_millis();
    // `citus_check_connection_to_node` opens the connection as the session's own (the one its
    // routed statements use) and runs `SELECT 1` there; a refused connection is a warning and
    // `false`, not an error.
    let open = format!(
        "BEGIN;
         SET LOCAL statement_timeout = {within};
         SET LOCAL citus.node_connection_timeout = {within};
         SELECT citus_check_connection_to_node(nodename, nodeport)
         FROM pg_dist_node
         WHERE isactive AND noderole = 'primary' AND groupid <> (SELECT groupid FROM pg_dist_local_group);
         COMMIT"
    );
    if let Err(why) = client.batch_execute(&open).await {
        debug!(error = %crate::error::error_chain(&why), "Citus: a new session's connections to the workers were not opened");
        // The block failed part way: closed, so that the session is handed out outside one.
        client.batch_execute("ROLLBACK").await?;
    }
    Ok(())
}
