//! Where the signals' shards are. Citus places a table's shards once, when it is distributed:
//! a worker added later holds none of them, so it takes no writes and no reads, however many
//! are added, until the operator has Citus move shards to it (`citus_rebalance_start()`). An
//! operator who adds workers to carry more ingest sees nothing change; the start-up says why,
//! and each maintenance pass gives every node's count as a gauge.

use tokio_postgres::GenericClient;

use crate::store::{Store, StoreError};

impl Store {
    /// [`shards_by_node`] over the pool, for the maintenance pass's gauge (a worker may be added
    /// while the service runs); `None` on one PostgreSQL.
    pub async fn signal_shards_by_node(&self) -> Result<Option<Vec<(String, i64)>>, StoreError> {
        if !self.settings.layout.is_distributed() {
            return Ok(None);
        }
        let client = self.client().await?;
        Ok(Some(shards_by_node(&**client).await?))
    }
}

/// The signals' shards held by each node that Citus places shards on (`host:port`, count), in
/// the order the nodes were added.
pub async fn shards_by_node(
    client: &impl GenericClient,
) -> Result<Vec<(String, i64)>, tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT n.nodename || ':' || n.nodeport,
                    (SELECT count(*) FROM pg_dist_placement p JOIN pg_dist_shard s USING (shardid)
                     WHERE p.groupid = n.groupid AND s.logicalrelid = 'raw_signal_rows'::regclass)
             FROM pg_dist_node n
             WHERE n.isactive AND n.noderole = 'primary' AND n.shouldhaveshards
             ORDER BY n.nodeid",
            &[],
        )
        .await?;
    rows.iter().map(|row| Ok((row.try_get(0)?, row.try_get(1)?))).collect()
}

/// The warning for `shards` ([`shards_by_node`]) when they are placed unevenly: a node holds at
/// least two fewer than another. (With more nodes than shards some hold none, unavoidably: one
/// fewer is as even as it gets.)
pub fn uneven(shards: &[(String, i64)]) -> Option<String> {
    let fewest = shards.iter().map(|(_, n)| *n).min()?;
    let most = shards.iter().map(|(_, n)| *n).max()?;
    if most - fewest < 2 {
        return None;
    }
    let placed: Vec<String> = shards.iter().map(|(node, n)| format!("{node} holds {n}")).collect();
    Some(format!(
        "the signals' shards are placed unevenly over the Citus nodes ({}): a node added after they were distributed takes no writes until Citus moves shards to it; run SELECT citus_rebalance_start() on the coordinator (README, \"Running on Citus\")",
        placed.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes(counts: &[i64]) -> Vec<(String, i64)> {
        counts.iter().enumerate().map(|(i, n)| (format!("w{}:5432", i + 1), *n)).collect()
    }

    #[test]
    fn shards_as_even_as_their_count_allows_are_not_warned_about() {
        for counts in [&[4, 4][..], &[3, 3, 2], &[1, 1, 1, 0, 0], &[8]] {
            assert_eq!(uneven(&nodes(counts)), None, "{counts:?}");
        }
        assert_eq!(uneven(&[]), None, "no node places shards: the cluster's own warning says so");
    }

    #[test]
    fn a_node_holding_fewer_shards_is_named_with_every_count_and_the_way_out() {
        let said = uneven(&nodes(&[8, 0])).expect("a warning");
        assert!(said.contains("w1:5432 holds 8, w2:5432 holds 0"), "{said}");
        assert!(said.contains("citus_rebalance_start()"), "{said}");
        assert!(uneven(&nodes(&[3, 3, 1])).is_some());
    }
}
