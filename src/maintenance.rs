//! The background job that keeps storage the same size at any age: at start-up and every
//! `RETENTION_CHECK_SECONDS` it creates `raw_signals` partitions ahead of time, drops the ones
//! past their type's retention, and expires incidents, problems and delivered outbox rows;
//! every [`ACTIVITY_MERGE_EVERY`] it merges the per-service counts of `GET /query/services`.
//!
//! Several instances run it; the store's advisory lock makes one of them do each step (the
//! others find it held and skip, or find the work done). Every step is also safe to repeat: a
//! pass that failed half-way is completed by the next.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::store::lifecycle::Expiry;
use crate::store::partitions::{Created, Dropped, RangeExpiry, SizePass, Turn};
use crate::store::sealing::SealPass;
use crate::store::{Merged, Store, StoreError};
use crate::telemetry::episodes::{Cause, Source};
use crate::telemetry::metrics::Metrics;

/// Start-up tries to create the partitions this many times, a second apart.
const PREPARE_ATTEMPTS: u32 = 3;

/// Between merges of the per-service counts: what `GET /query/services` reads beyond the
/// merged counts is at most this much of the batches' own rows.
pub const ACTIVITY_MERGE_EVERY: Duration = Duration::from_secs(10);

/// Longest time a pass spends deleting expired rows; a backlog is worked off over passes.
const EXPIRY_BUDGET: Duration = Duration::from_secs(10);

/// Longest time one go at sealing runs before the job looks at its other work; a seal left
/// unfinished goes on at once after it (store/sealing: a step is atomic, progress is kept).
const SEAL_BUDGET: Duration = Duration::from_secs(5);

/// Between looks for partitions due to be sealed, when none was.
const SEAL_CHECK_EVERY: Duration = Duration::from_secs(60);

/// What the job works with besides the store's own settings (partition interval, retention).
#[derive(Debug, Clone, Copy)]
pub struct MaintenanceSettings {
    /// Between passes (`RETENTION_CHECK_SECONDS`).
    pub every: Duration,
    /// Between size checks, with a budget (`RETENTION_SIZE_CHECK_SECONDS`).
    pub size_every: Duration,
}

/// What one pass did; tests run passes by hand (at any `now`) and look at this.
#[derive(Debug, Clone, Default)]
pub struct PassReport {
    /// Another instance held the lock for the partition changes: it made them.
    pub skipped: bool,
    pub created: Created,
    pub dropped: Vec<Dropped>,
    pub expired_rows: Expiry,
    /// The per-service counts merged, and recounted where partitions changed.
    pub merged: Merged,
    /// Ten-minute buckets of the service graph computed (store/dependencies.rs).
    pub dependency_buckets: u64,
    /// Partitions sealed into compressed blocks (store/sealing).
    pub sealed: SealPass,
    /// Steps that failed (a lock timeout, the database away); retried by the next pass.
    pub errors: Vec<String>,
}

#[derive(Clone)]
pub struct Maintenance {
    store: Store,
    settings: MaintenanceSettings,
    metrics: Arc<Metrics>,
}

impl Maintenance {
    pub fn new(store: Store, settings: MaintenanceSettings, metrics: Arc<Metrics>) -> Maintenance {
        Maintenance { store, settings, metrics }
    }

    /// Creates the partitions around now, waiting for another instance doing the same: run
    /// before serving, so that the first signals land in partitions of their own. A few tries
    /// (a lock timeout behind a long query is transient); if they all fail, the service starts
    /// anyway: signals are stored in the default partition until a pass succeeds.
    pub async fn prepare(&self) -> Created {
        for attempt in 1..=PREPARE_ATTEMPTS {
            match self.store.ensure_partitions(Utc::now(), Turn::Wait).await {
                Ok(created) => {
                    let created = created.unwrap_or_default();
                    self.record_created(&created);
                    return created;
                }
                Err(why) if attempt < PREPARE_ATTEMPTS => {
                    warn!(attempt, error = %crate::error::error_chain(&why), "could not create partitions, retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Err(why) => {
                    self.metrics.maintenance_errors.inc();
                    error!(error = %crate::error::error_chain(&why),
                           "could not create partitions at start-up; signals go to raw_signals_default until a maintenance pass succeeds");
                }
            }
        }
        Created::default()
    }

    /// One pass as at `now`: partitions ahead, expired partitions, expired rows, metrics. With
    /// `Turn::SkipIfBusy` (the periodic job) a step another instance is doing is skipped; with
    /// `Turn::Wait` (a pass run by hand, as the tests do) it waits for that step to finish and
    /// then does what is left.
    pub async fn pass_at(&self, now: DateTime<Utc>, turn: Turn) -> PassReport {
        let mut report = PassReport::default();
        let settings = &self.settings;
        let fail = |step: &str, why: StoreError| {
            let reason = format!("{step}: {}", crate::error::error_chain(&why));
            self.metrics.maintenance_errors.inc();
            warn!(error = %reason, "maintenance step failed, retried by the next pass");
            reason
        };
        match self.store.ensure_partitions(now, turn).await {
            Ok(Some(created)) => {
                self.record_created(&created);
                report.created = created;
            }
            Ok(None) => report.skipped = true,
            Err(why) => report.errors.push(fail("creating partitions", why)),
        }
        match self.store.drop_expired_partitions(now, turn).await {
            Ok(Some((dropped, failures))) => {
                for partition in &dropped {
                    let signal_type = partition.signal_type.map(crate::model::SignalType::as_str);
                    match partition.kept_signals {
                        0 => info!(partition = %partition.name, signal_type, bytes = partition.bytes,
                                   "dropped expired partition"),
                        kept => info!(partition = %partition.name, signal_type, kept_signals = kept,
                                      bytes_freed = partition.bytes,
                                      "expired partition: its evidence kept in its place, the rest dropped"),
                    }
                    self.metrics.count_dropped_partition(partition);
                }
                report.dropped = dropped;
                for why in failures {
                    report.errors.push(fail("dropping an expired partition", why));
                }
            }
            Ok(None) => report.skipped = true,
            Err(why) => report.errors.push(fail("listing partitions", why)),
        }
        match self.store.merge_activity(turn).await {
            Ok(merged) => report.merged = merged.unwrap_or_default(),
            Err(why) => report.errors.push(fail("merging the per-service counts", why)),
        }
        // Short, so that a pass never holds up a shutdown for long.
        let budget = (settings.every / 2).min(EXPIRY_BUDGET);
        let ranges = match self.store.expire_incident_ranges(now, turn, budget).await {
            Ok(Some(ranges)) => ranges,
            Ok(None) => {
                report.skipped = true;
                RangeExpiry::default()
            }
            Err(why) => {
                report.errors.push(fail("expiring incident ranges", why));
                RangeExpiry::default()
            }
        };
        if ranges.deferred > 0 {
            info!(
                incident_ranges = ranges.deferred,
                "incident ranges left to the longest signal retention: more than a tenth of their incidents are still live"
            );
        }
        let mut expiry = match self.store.expire_rows(now, budget).await {
            Ok(expiry) => expiry,
            Err(why) => {
                report.errors.push(fail("expiring incidents and outbox rows", why));
                Expiry::default()
            }
        };
        expiry.incident_ranges = ranges.ranges;
        expiry.incidents_kept = ranges.kept;
        expiry.incidents += ranges.incidents;
        expiry.analyses += ranges.analyses;
        match self.store.sweep_shared(now, budget).await {
            Ok(swept) => expiry.shared = swept,
            Err(why) => report.errors.push(fail("sweeping unused resources and scopes", why)),
        }
        match self.store.expire_operations(now).await {
            Ok(deleted) => expiry.span_operations = deleted,
            Err(why) => report.errors.push(fail("expiring span operations", why)),
        }
        match self.store.expire_dependencies(now).await {
            Ok(deleted) => expiry.dependencies = deleted,
            Err(why) => report.errors.push(fail("expiring the service graph", why)),
        }
        match self.store.compute_dependencies(now, budget).await {
            Ok(computed) => report.dependency_buckets = computed,
            Err(why) => report.errors.push(fail("computing the service graph", why)),
        }
        if expiry != Expiry::default() {
            info!(
                incident_ranges = expiry.incident_ranges,
                incidents_kept = expiry.incidents_kept,
                incidents = expiry.incidents,
                analyses = expiry.analyses,
                problems = expiry.problems,
                outbox_rows = expiry.outbox_rows,
                shared = expiry.shared,
                span_operations = expiry.span_operations,
                dependencies = expiry.dependencies,
                "expired rows"
            );
        }
        self.metrics.count_expired_rows(&expiry);
        report.expired_rows = expiry;
        match self.seal_at(now, turn, budget).await {
            Ok(sealed) => report.sealed = sealed.unwrap_or_default(),
            Err(why) => report.errors.push(fail("sealing partitions", why)),
        }
        match self.store.database_size().await {
            Ok(size) => {
                self.metrics.database_size.set(size);
            }
            Err(why) => report.errors.push(fail("measuring the database", why)),
        }
        match self.store.evidence_kept().await {
            Ok(kept) => self.metrics.set_evidence(&kept),
            Err(why) => report.errors.push(fail("reading the evidence kept", why)),
        }
        match self.store.oldest_retained().await {
            Ok(oldest) => self.metrics.set_oldest_retained(&oldest),
            Err(why) => report.errors.push(fail("reading the oldest retained times", why)),
        }
        if let Err(why) = self.store.refresh_shard_map().await {
            report.errors.push(fail("reading the signals' shard map", why));
        }
        match self.store.resolve_prepared_parts().await {
            Ok((0, 0)) => {}
            Ok((committed, rolled_back)) => {
                info!(committed, rolled_back, "Citus: batches' parts left prepared were decided")
            }
            Err(why) => report.errors.push(fail("deciding the batches' parts left prepared", why)),
        }
        match self.store.signal_shards_by_node().await {
            Ok(Some(shards)) => self.metrics.set_citus_shards(&shards),
            Ok(None) => {}
            Err(why) => report.errors.push(fail("counting the signals' shards per Citus node", why)),
        }
        self.metrics.maintenance_passes.inc();
        report
    }

    /// Seals what is due for at most `budget` ([`Store::seal`]), each partition sealed logged.
    pub async fn seal_at(
        &self,
        now: DateTime<Utc>,
        turn: Turn,
        budget: Duration,
    ) -> Result<Option<SealPass>, StoreError> {
        let pass = self.store.seal(now, turn, budget, crate::store::sealing::SEAL_SHARE).await?;
        for sealed in pass.iter().flat_map(|pass| &pass.sealed) {
            info!(partition = %sealed.leaf, unit = sealed.unit, signals = sealed.signals, blocks = sealed.blocks,
                  bytes_before = sealed.bytes_before, bytes_after = sealed.bytes_after,
                  "sealed partition: its rows rewritten into compressed blocks");
        }
        Ok(pass)
    }

    /// A go at sealing from the periodic job; when it left a seal unfinished, the next comes
    /// at once, otherwise after [`SEAL_CHECK_EVERY`].
    async fn seal_now(&self) -> Duration {
        match self.seal_at(Utc::now(), Turn::SkipIfBusy, SEAL_BUDGET).await {
            Ok(Some(pass)) if pass.unfinished.is_some() => Duration::ZERO,
            Ok(_) => SEAL_CHECK_EVERY,
            Err(why) => {
                self.metrics.maintenance_errors.inc();
                warn!(error = %crate::error::error_chain(&why), "sealing failed, retried later");
                SEAL_CHECK_EVERY
            }
        }
    }

    fn record_created(&self, created: &Created) {
        for name in &created.partitions {
            info!(partition = %name, "created partition");
        }
        for name in &created.incident_ranges {
            info!(partition = %name, "created incident range");
        }
        if created.default_rows_kept + created.default_rows_expired > 0 {
            info!(
                kept = created.default_rows_kept,
                expired = created.default_rows_expired,
                "emptied the default partition into the partitions where its rows now belong"
            );
        }
        self.metrics.partitions_created.inc_by(created.partitions.len() as u64);
    }

    /// With a size budget: the database's size checked, and whole partitions dropped oldest
    /// first while it is over ([`Store::enforce_size_budget`]); each drop logged once, with its
    /// reason. `None`: no budget, or another instance did it.
    pub async fn size_pass_at(&self, now: DateTime<Utc>, turn: Turn) -> Option<SizePass> {
        let budget = self.store.settings().lifecycle.max_database_bytes?;
        self.metrics.database_size_budget.set(budget as i64);
        let episodes = &self.metrics.episodes;
        let pass = match self.store.enforce_size_budget(budget, now, turn).await {
            Ok(pass) => pass?,
            Err(why) => {
                self.metrics.maintenance_errors.inc();
                episodes.failed(Source::size_budget, Cause::from(&why), &crate::error::error_chain(&why));
                return None;
            }
        };
        for partition in &pass.dropped {
            warn!(partition = %partition.name, signal_type = partition.signal_type.map(crate::model::SignalType::as_str),
                  bytes_freed = partition.bytes, evidence_kept = partition.kept_signals, reason = "size", budget,
                  "dropped a partition: the database is over RETENTION_MAX_DATABASE_SIZE");
            self.metrics.count_dropped_partition(partition);
        }
        let sorted = pass.incident_ranges;
        if sorted.ranges > 0 {
            warn!(incident_ranges = sorted.ranges, incidents = sorted.incidents, incidents_kept = sorted.kept,
                  reason = "size", budget,
                  "dropped the incident ranges whose signals were dropped: the database is over RETENTION_MAX_DATABASE_SIZE");
            self.metrics.count_expired_rows(&Expiry {
                incident_ranges: sorted.ranges,
                incidents_kept: sorted.kept,
                incidents: sorted.incidents,
                analyses: sorted.analyses,
                ..Expiry::default()
            });
        }
        self.metrics.database_size.set(pass.bytes_after);
        if pass.bytes_after as u64 > budget {
            // Only the partitions being written (and evidence) are left: the budget is too small
            // for the traffic, or something else fills the database.
            let detail = format!("{} bytes, budget {budget}", pass.bytes_after);
            episodes.failed(Source::size_budget, Cause::database_over_budget, &detail);
        } else {
            episodes.recovered(Source::size_budget);
        }
        Some(pass)
    }

    /// Merges the per-service counts ([`Store::merge_activity`]); a failure counted and logged
    /// once per episode (this runs every few seconds).
    pub async fn merge_activity(&self, turn: Turn) -> Option<Merged> {
        let episodes = &self.metrics.episodes;
        match self.store.merge_activity(turn).await {
            Ok(merged) => {
                episodes.recovered(Source::activity_merge);
                merged
            }
            Err(why) => {
                self.metrics.maintenance_errors.inc();
                episodes.failed(Source::activity_merge, Cause::from(&why), &crate::error::error_chain(&why));
                None
            }
        }
    }

    /// A pass now, then one every `RETENTION_CHECK_SECONDS`, until `stop`; with a size budget,
    /// a size pass every `RETENTION_SIZE_CHECK_SECONDS` and at once when a write finds the disk
    /// full. A pass in progress when `stop` comes is abandoned: its open transaction rolls back
    /// (each step is atomic) and the next start does it again.
    pub async fn run(self, stop: CancellationToken) {
        let budgeted = self.store.settings().lifecycle.max_database_bytes.is_some();
        let pressure = self.store.size_pressure();
        let mut size_checks = tokio::time::interval(self.settings.size_every);
        size_checks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut merges = tokio::time::interval(ACTIVITY_MERGE_EVERY);
        merges.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut next_pass = tokio::time::Instant::now();
        let sealing = self.store.settings().lifecycle.seal_after.is_some();
        let mut next_seal = tokio::time::Instant::now() + SEAL_CHECK_EVERY;
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                () = tokio::time::sleep_until(next_seal), if sealing => {
                    tokio::select! {
                        () = stop.cancelled() => break,
                        wait = self.seal_now() => next_seal = tokio::time::Instant::now() + wait,
                    }
                }
                () = tokio::time::sleep_until(next_pass) => {
                    tokio::select! {
                        () = stop.cancelled() => break,
                        _ = self.pass_at(Utc::now(), Turn::SkipIfBusy) => {}
                    }
                    next_pass = tokio::time::Instant::now() + self.settings.every;
                }
                _ = merges.tick() => {
                    tokio::select! {
                        () = stop.cancelled() => break,
                        _ = self.merge_activity(Turn::SkipIfBusy) => {}
                    }
                }
                _ = size_checks.tick(), if budgeted => {
                    tokio::select! {
                        () = stop.cancelled() => break,
                        _ = self.size_pass_at(Utc::now(), Turn::SkipIfBusy) => {}
                    }
                }
                () = pressure.notified(), if budgeted => {
                    tokio::select! {
                        () = stop.cancelled() => break,
                        _ = self.size_pass_at(Utc::now(), Turn::SkipIfBusy) => {}
                    }
                }
            }
        }
    }
}
