//! The background job that keeps storage the same size at any age: at start-up and every
//! `RETENTION_CHECK_SECONDS` it creates `raw_signals` partitions ahead of time, drops the ones
//! past their type's retention, and expires incidents, problems and delivered outbox rows.
//!
//! Several instances run it; the store's advisory lock makes one of them do each step (the
//! others find it held and skip, or find the work done). Every step is also safe to repeat: a
//! pass that failed half-way is completed by the next.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::model::{PartitionInterval, Retention};
use crate::store::lifecycle::{Expiry, ExpiryRules};
use crate::store::partitions::{Created, Dropped, Turn};
use crate::store::{Store, StoreError};
use crate::telemetry::metrics::Metrics;

/// What the job works with.
#[derive(Debug, Clone, Copy)]
pub struct MaintenanceSettings {
    pub partition_interval: PartitionInterval,
    pub retention: Retention,
    /// Between passes (`RETENTION_CHECK_SECONDS`).
    pub every: Duration,
    pub incident_retention: Option<Duration>,
    pub outbox_retention: Option<Duration>,
}

/// What one pass did; tests run passes by hand (at any `now`) and look at this.
#[derive(Debug, Clone, Default)]
pub struct PassReport {
    /// Another instance held the lock for the partition changes: it made them.
    pub skipped: bool,
    pub created: Created,
    pub dropped: Vec<Dropped>,
    pub expired_rows: Expiry,
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
    /// before serving, so that the first signals land in partitions of their own.
    pub async fn prepare(&self) -> Result<Created, StoreError> {
        let (interval, retention) = (self.settings.partition_interval, &self.settings.retention);
        let created = self.store.ensure_partitions(interval, retention, Utc::now(), Turn::Wait).await?;
        let created = created.unwrap_or_default();
        self.record_created(&created);
        Ok(created)
    }

    /// One pass as at `now`: partitions ahead, expired partitions, expired rows, metrics.
    pub async fn pass_at(&self, now: DateTime<Utc>) -> PassReport {
        let mut report = PassReport::default();
        let settings = &self.settings;
        let fail = |step: &str, why: StoreError| {
            let reason = format!("{step}: {}", crate::api::error::error_chain(&why));
            self.metrics.maintenance_errors.inc();
            report_error(&reason);
            reason
        };
        match self
            .store
            .ensure_partitions(settings.partition_interval, &settings.retention, now, Turn::SkipIfBusy)
            .await
        {
            Ok(Some(created)) => {
                self.record_created(&created);
                report.created = created;
            }
            Ok(None) => report.skipped = true,
            Err(why) => report.errors.push(fail("creating partitions", why)),
        }
        match self.store.drop_expired_partitions(&settings.retention, now).await {
            Ok(Some((dropped, failures))) => {
                for partition in &dropped {
                    info!(partition = %partition.name, signal_types = ?partition.types, bytes = partition.bytes,
                          "dropped expired partition");
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
        let rules = ExpiryRules {
            shortest_signal_retention: settings.retention.shortest(),
            incident_retention: settings.incident_retention,
            outbox_retention: settings.outbox_retention,
            budget: settings.every / 2,
        };
        match self.store.expire_rows(&rules, now).await {
            Ok(expiry) => {
                if expiry != Expiry::default() {
                    info!(
                        incidents = expiry.incidents,
                        analyses = expiry.analyses,
                        problems = expiry.problems,
                        outbox_rows = expiry.outbox_rows,
                        "expired rows"
                    );
                }
                self.metrics.count_expired_rows(&expiry);
                report.expired_rows = expiry;
            }
            Err(why) => report.errors.push(fail("expiring incidents and outbox rows", why)),
        }
        match self.store.oldest_retained().await {
            Ok(oldest) => self.metrics.set_oldest_retained(&oldest),
            Err(why) => report.errors.push(fail("reading the oldest retained times", why)),
        }
        self.metrics.maintenance_passes.inc();
        report
    }

    fn record_created(&self, created: &Created) {
        for name in &created.partitions {
            info!(partition = %name, "created partition");
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

    /// A pass now, then one every `RETENTION_CHECK_SECONDS`, until `stop`; a pass in progress
    /// is finished first.
    pub async fn run(self, stop: CancellationToken) {
        loop {
            self.pass_at(Utc::now()).await;
            tokio::select! {
                () = stop.cancelled() => break,
                () = tokio::time::sleep(self.settings.every) => {}
            }
        }
    }
}

fn report_error(reason: &str) {
    warn!(error = %reason, "maintenance step failed, retried by the next pass");
}
