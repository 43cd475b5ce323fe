//! `signal_shared`, the resources and scopes OTLP signals share, kept bounded: each row records
//! when a batch last used it (`last_seen`, updated by the batch statement at most once per
//! [`REMARK_AFTER`] per instance, so a busy resource costs one update an hour, not one per
//! batch), and the maintenance pass sweeps the rows no stored signal can refer to any more:
//! unused for longer than any signal lives, and referred to by no evidence, no row of the
//! default partition and none of the table from before partitioning.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::partitions::evidence_tables;
use super::{Store, StoreError};
use crate::model::time::before;
use crate::model::SignalType;

/// A row used again is marked in use at most this often by one instance.
pub const REMARK_AFTER: Duration = Duration::from_secs(30 * 60);

/// Rows deleted per statement.
const BATCH: i64 = 5_000;

/// When this instance last marked each row it used (keyed by `K`); pruned as it grows. Also
/// used for the rows of `span_operations` (store/span_rollups.rs).
#[derive(Debug)]
pub(super) struct Marks<K>(Mutex<HashMap<K, Instant>>);

impl<K> Default for Marks<K> {
    fn default() -> Self {
        Marks(Mutex::new(HashMap::new()))
    }
}

/// The `signal_shared` rows this instance marked in use.
pub(super) type SharedUse = Marks<Uuid>;

impl<K: std::hash::Hash + Eq + Clone> Marks<K> {
    /// Of `used`, the rows to mark in use now (not marked by us within [`REMARK_AFTER`]).
    pub fn due<'a>(&self, used: impl Iterator<Item = &'a K>) -> Vec<K>
    where
        K: 'a,
    {
        let marked = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        used.filter(|id| marked.get(*id).is_none_or(|at| at.elapsed() >= REMARK_AFTER)).cloned().collect()
    }

    /// `ids` were marked by a write that committed.
    pub fn marked(&self, ids: &[K]) {
        let mut marked = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if marked.len() > 100_000 {
            marked.retain(|_, at| at.elapsed() < REMARK_AFTER);
        }
        let now = Instant::now();
        marked.extend(ids.iter().map(|id| (id.clone(), now)));
    }
}

impl Store {
    /// Deletes the `signal_shared` rows no stored signal can refer to at `now`, in batches, for
    /// at most `budget`. Nothing while any signal type is kept forever.
    pub async fn sweep_shared(&self, now: DateTime<Utc>, budget: Duration) -> Result<u64, StoreError> {
        let lifecycle = &self.settings.lifecycle;
        let longest =
            SignalType::ALL.into_iter().map(|t| lifecycle.signals.of(t)).collect::<Option<Vec<_>>>();
        let Some(longest) = longest.and_then(|all| all.into_iter().max()) else { return Ok(0) };
        // A signal lives at most its retention plus one partition interval after it was
        // stored, or after its time when that lies ahead (up to the partitions made ahead);
        // `last_seen` lags a use by up to REMARK_AFTER.
        let interval = lifecycle.partition_interval.length();
        let unused_since = before(now, longest + 3 * interval + REMARK_AFTER * 2);
        let client = self.client().await?;
        let mut survivors = evidence_tables(&client).await?;
        survivors.push("raw_signals_default".to_owned());
        let legacy: bool = client
            .query_one("SELECT to_regclass('raw_signals_legacy') IS NOT NULL", &[])
            .await?
            .try_get(0)?;
        if legacy {
            survivors.push("raw_signals_legacy".to_owned());
        }
        let referred = survivors
            .iter()
            .map(|t| {
                format!(
                    "SELECT shared_id FROM {} WHERE shared_id IS NOT NULL",
                    super::bootstrap::quote_identifier(t)
                )
            })
            .collect::<Vec<_>>()
            .join(" UNION ");
        let sweep = format!(
            "DELETE FROM signal_shared WHERE shared_id IN (
                 SELECT shared_id FROM signal_shared
                 WHERE last_seen < $1 AND shared_id NOT IN ({referred}) LIMIT $2)"
        );
        let started = Instant::now();
        let mut swept = 0;
        loop {
            let n = client.execute(&sweep, &[&unused_since, &BATCH]).await?;
            swept += n;
            if n < BATCH as u64 || started.elapsed() >= budget {
                return Ok(swept);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_is_marked_again_only_after_a_while() {
        let uses = SharedUse::default();
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        assert_eq!(uses.due([a, b].iter()), [a, b]);
        uses.marked(&[a]);
        assert_eq!(uses.due([a, b].iter()), [b], "a was marked just now");
    }
}
