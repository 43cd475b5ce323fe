//! The signals' shard map: which shard of `raw_signal_rows` a trace's rows go to, and which node
//! holds it. Read from Citus's metadata on the coordinator, at start and at every maintenance
//! pass (a shard may move); a batch checks at the node that its shards are still there before it
//! writes (parts.rs), so a map gone stale costs a write through the coordinator, never a row in
//! the wrong place.

use tokio_postgres::GenericClient;

use super::hash::hash_text;

/// A node of the cluster, as the coordinator names it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Node {
    pub host: String,
    pub port: u16,
}

impl std::fmt::Display for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

/// One shard of the signals: its hash range, its table on its node, the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shard {
    pub id: i64,
    pub min: i32,
    pub max: i32,
    /// The shard's table at its node (Citus's `shard_name`, quoted as needed). A range
    /// partition of the signals is partitioned the same way at the node, so rows written here
    /// land in their partition.
    pub table: String,
    /// Index into [`ShardMap::nodes`].
    pub node: usize,
    /// With the incidents distributed, the colocated shards of the trace claims and of the
    /// incidents at the same node (their tables there), which hold the traces of this one.
    pub tracking: Option<(String, String)>,
}

/// The shards, ordered by range, covering every hash once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardMap {
    shards: Vec<Shard>,
    nodes: Vec<Node>,
}

/// Why the map cannot be used: batches are then written through the coordinator.
pub type Unusable = String;

/// A row of the metadata: a placement of a shard of the signals.
struct Placement {
    id: i64,
    /// The shard's hash range, as Citus stores it (text).
    min: Option<String>,
    max: Option<String>,
    table: String,
    node: Node,
    /// How many placements the shard has.
    placements: i64,
    tracking: Option<(String, String)>,
}

impl ShardMap {
    /// The map as the coordinator's metadata has it now.
    pub async fn load(
        client: &impl GenericClient,
    ) -> Result<Result<ShardMap, Unusable>, tokio_postgres::Error> {
        let rows = client
            .query(
                "SELECT s.shardid, s.shardminvalue, s.shardmaxvalue,
                        shard_name('raw_signal_rows'::regclass, s.shardid), n.nodename, n.nodeport,
                        count(*) OVER (PARTITION BY s.shardid),
                        -- Colocated shards cover the same hash range, and move together.
                        (SELECT shard_name(t.logicalrelid, t.shardid) FROM pg_dist_shard t
                         WHERE t.logicalrelid = to_regclass('incident_traces') AND t.shardminvalue = s.shardminvalue),
                        (SELECT shard_name(t.logicalrelid, t.shardid) FROM pg_dist_shard t
                         WHERE t.logicalrelid = to_regclass('incidents') AND t.shardminvalue = s.shardminvalue)
                 FROM pg_dist_shard s
                 JOIN pg_dist_placement p USING (shardid)
                 JOIN pg_dist_node n ON n.groupid = p.groupid AND n.noderole = 'primary' AND n.isactive
                 WHERE s.logicalrelid = 'raw_signal_rows'::regclass
                 ORDER BY s.shardminvalue::int4",
                &[],
            )
            .await?;
        let mut placed = Vec::with_capacity(rows.len());
        for row in &rows {
            let port: i32 = row.try_get(5)?;
            placed.push(Placement {
                id: row.try_get(0)?,
                min: row.try_get(1)?,
                max: row.try_get(2)?,
                table: row.try_get(3)?,
                node: Node { host: row.try_get(4)?, port: u16::try_from(port).unwrap_or(0) },
                placements: row.try_get(6)?,
                tracking: match (row.try_get(7)?, row.try_get(8)?) {
                    (Some(claims), Some(incidents)) => Some((claims, incidents)),
                    _ => None,
                },
            });
        }
        Ok(ShardMap::from_placements(placed))
    }

    /// The map from the placements in range order, or why it cannot be used.
    fn from_placements(placed: Vec<Placement>) -> Result<ShardMap, Unusable> {
        let mut map = ShardMap { shards: Vec::with_capacity(placed.len()), nodes: Vec::new() };
        let mut next = Some(i32::MIN);
        for Placement { id, min, max, table, node, placements, tracking } in placed {
            if placements != 1 {
                return Err(format!(
                    "shard {id} has {placements} placements (replicated shards are written by Citus)"
                ));
            }
            let bound = |text: Option<String>| text.and_then(|t| t.parse::<i32>().ok());
            let (Some(min), Some(max)) = (bound(min), bound(max)) else {
                return Err(format!("shard {id} has no hash range"));
            };
            if Some(min) != next || max < min {
                return Err(format!("the shards' ranges do not cover the hashes in order at shard {id}"));
            }
            next = max.checked_add(1);
            let index = match map.nodes.iter().position(|n| *n == node) {
                Some(index) => index,
                None => {
                    map.nodes.push(node);
                    map.nodes.len() - 1
                }
            };
            map.shards.push(Shard { id, min, max, table, node: index, tracking });
        }
        if map.shards.is_empty() || next.is_some() {
            return Err("the shards' ranges do not cover every hash".to_owned());
        }
        Ok(map)
    }

    /// The shard holding `trace_id`'s rows.
    pub fn shard_of(&self, trace_id: &str) -> &Shard {
        let hash = hash_text(trace_id);
        // The ranges cover every hash in order (checked when loaded).
        let at = self.shards.partition_point(|s| s.max < hash);
        &self.shards[at.min(self.shards.len() - 1)]
    }

    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(port: u16) -> Node {
        Node { host: "127.0.0.1".into(), port }
    }

    fn placed(ranges: &[(i64, i64, u16)]) -> Vec<Placement> {
        ranges
            .iter()
            .enumerate()
            .map(|(i, (min, max, port))| Placement {
                id: 100 + i as i64,
                min: Some(min.to_string()),
                max: Some(max.to_string()),
                table: format!("t_{i}"),
                node: node(*port),
                placements: 1,
                tracking: None,
            })
            .collect()
    }

    #[test]
    fn every_hash_finds_its_shard_and_the_nodes_are_listed_once() {
        let map = ShardMap::from_placements(placed(&[
            (i32::MIN as i64, -1, 5433),
            (0, 1_000, 5434),
            (1_001, i32::MAX as i64, 5433),
        ]))
        .unwrap();
        assert_eq!(map.nodes(), &[node(5433), node(5434)]);
        // hash_text("a") = 1075015857, ("abc") = -785388649 (hash.rs)
        assert_eq!(map.shard_of("a").table, "t_2");
        assert_eq!(map.shard_of("abc").table, "t_0");
        assert_eq!(map.shard_of("abc").node, 0);
    }

    #[test]
    fn a_map_with_a_gap_an_overlap_or_a_copy_is_not_used() {
        let gap = ShardMap::from_placements(placed(&[(i32::MIN as i64, -1, 1), (1, i32::MAX as i64, 2)]));
        assert!(gap.unwrap_err().contains("do not cover"));
        let short = ShardMap::from_placements(placed(&[(i32::MIN as i64, 5, 1)]));
        assert!(short.unwrap_err().contains("every hash"));
        let mut copies = placed(&[(i32::MIN as i64, i32::MAX as i64, 1)]);
        copies[0].placements = 2;
        assert!(ShardMap::from_placements(copies).unwrap_err().contains("2 placements"));
        assert!(ShardMap::from_placements(Vec::new()).is_err());
    }
}
