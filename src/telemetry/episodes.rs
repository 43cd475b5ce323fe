//! Repeated failures logged once per episode. A source (ingest, the query API, the outbox
//! dispatcher, the analysis queue) that starts failing for a cause logs one line saying so; it
//! logs nothing more while the cause lasts, however many requests fail, and one line when it
//! succeeds again, with how often and how long it failed. Every failure is still counted, and
//! the episodes in progress are listed by `/health/ready`.
//!
//! A cause that flaps (a disk nearly full lets a small batch through between refusals) is one
//! episode: it ends once a success has come and [`SETTLE`] has passed since the last failure
//! (noticed at the next success, or when `/health/ready` asks).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tracing::{info, warn};

/// An episode that saw a success ends this long after its last failure, not before.
pub const SETTLE: Duration = Duration::from_secs(5);

/// What failed.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)] // label values as operators write them in queries
pub enum Source {
    /// Storing signals (every transport).
    ingest,
    /// The query API's reads and writes.
    queries,
    /// The analysis outbox, as the dispatcher reads it.
    outbox,
    /// Redis, where analyses are queued.
    analysis_queue,
    /// Keeping the database under RETENTION_MAX_DATABASE_SIZE.
    size_budget,
    /// Merging the per-service counts of GET /query/services (store/activity.rs).
    activity_merge,
}

/// Why: the causes a client or an operator acts on differently.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum Cause {
    /// The database refuses or drops connections, or is restarting.
    database_unreachable,
    /// The database cannot extend a file: its data disk is full (SQLSTATE 53100).
    database_disk_full,
    /// The database did not confirm in time.
    database_slow,
    /// More signals wait than the database absorbs.
    ingest_queue_full,
    shutting_down,
    /// Redis refuses connections, authentication or TLS.
    redis_unreachable,
    /// Over its size budget with nothing left that may be dropped.
    database_over_budget,
    /// The database refused a statement: retrying will not help (a bug, or a schema changed
    /// under the service).
    database_error,
}

impl Cause {
    pub fn label(self) -> &'static str {
        match self {
            Cause::database_unreachable => "database_unreachable",
            Cause::database_disk_full => "database_disk_full",
            Cause::database_slow => "database_slow",
            Cause::ingest_queue_full => "ingest_queue_full",
            Cause::shutting_down => "shutting_down",
            Cause::redis_unreachable => "redis_unreachable",
            Cause::database_over_budget => "database_over_budget",
            Cause::database_error => "database_error",
        }
    }

    /// In words, for a log line or a health answer.
    pub fn explain(self) -> &'static str {
        match self {
            Cause::database_unreachable => "the database is unreachable",
            Cause::database_disk_full => "the database's disk is full",
            Cause::database_slow => "the database did not confirm in time",
            Cause::ingest_queue_full => "the ingest queue is full (the database is not keeping up)",
            Cause::shutting_down => "the service is shutting down",
            Cause::redis_unreachable => "analysis queue (Redis) unavailable, requests kept in the outbox",
            Cause::database_over_budget => {
                "the database is over RETENTION_MAX_DATABASE_SIZE with only the partitions being written left"
            }
            Cause::database_error => "the database refused a statement",
        }
    }
}

impl From<&crate::store::StoreError> for Cause {
    /// The cause of a storage failure.
    fn from(error: &crate::store::StoreError) -> Cause {
        match error {
            crate::store::StoreError::DiskFull(_) => Cause::database_disk_full,
            crate::store::StoreError::Query(_) => Cause::database_error,
            crate::store::StoreError::Unavailable(_) => Cause::database_unreachable,
        }
    }
}

impl Source {
    pub fn label(self) -> &'static str {
        match self {
            Source::ingest => "ingest",
            Source::queries => "queries",
            Source::outbox => "outbox",
            Source::analysis_queue => "analysis_queue",
            Source::size_budget => "size_budget",
            Source::activity_merge => "activity_merge",
        }
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EpisodeLabels {
    pub source: Source,
    pub cause: Cause,
}

/// An episode in progress, as `/health/ready` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Episode {
    pub source: Source,
    pub cause: Cause,
    pub since: DateTime<Utc>,
    pub failures: u64,
}

struct Active {
    cause: Cause,
    since: DateTime<Utc>,
    started: Instant,
    last_failure: Instant,
    /// A success came after the last failure.
    succeeded: bool,
    failures: u64,
}

impl Active {
    fn settled(&self, settle: Duration) -> bool {
        self.succeeded && self.last_failure.elapsed() >= settle
    }
}

/// The episodes of one running service.
pub struct Episodes {
    active: Mutex<HashMap<Source, Active>>,
    /// Whether any episode is in progress: successes, the common case, then take no lock.
    any: AtomicBool,
    episodes: Family<EpisodeLabels, Counter>,
    failures: Family<EpisodeLabels, Counter>,
    in_progress: Family<EpisodeLabels, Gauge>,
}

impl Episodes {
    pub fn new(registry: &mut Registry) -> Episodes {
        let episodes = Episodes {
            active: Mutex::default(),
            any: AtomicBool::new(false),
            episodes: Family::default(),
            failures: Family::default(),
            in_progress: Family::default(),
        };
        registry.register(
            "prodsentinel_failure_episodes",
            "Episodes of repeated failures (each logged once), by source and cause",
            episodes.episodes.clone(),
        );
        registry.register(
            "prodsentinel_failures",
            "Failures (requests refused, dispatches postponed), by source and cause",
            episodes.failures.clone(),
        );
        registry.register(
            "prodsentinel_failure_episode_in_progress",
            "1 while a source fails for a cause",
            episodes.in_progress.clone(),
        );
        episodes
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Source, Active>> {
        // A panic while holding the lock leaves counts, which are still good.
        self.active.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// `source` failed for `cause` (`detail`: the error's causes): counted, and logged only
    /// when it starts an episode (or the cause changed).
    pub fn failed(&self, source: Source, cause: Cause, detail: &str) {
        let labels = EpisodeLabels { source, cause };
        self.failures.get_or_create(&labels).inc();
        let mut active = self.lock();
        match active.get_mut(&source) {
            Some(episode) if episode.cause == cause => {
                episode.failures += 1;
                episode.last_failure = Instant::now();
                episode.succeeded = false;
            }
            previous => {
                if let Some(previous) = previous {
                    self.end(source, previous, "changed cause");
                }
                warn!(
                    source = source.label(),
                    cause = cause.label(),
                    error = detail,
                    "{}: {} (logged once until it recovers)",
                    source.label(),
                    cause.explain()
                );
                self.episodes.get_or_create(&labels).inc();
                self.in_progress.get_or_create(&labels).set(1);
                let now = Instant::now();
                let episode = Active {
                    cause,
                    since: Utc::now(),
                    started: now,
                    last_failure: now,
                    succeeded: false,
                    failures: 1,
                };
                active.insert(source, episode);
                self.any.store(true, Ordering::Release);
            }
        }
    }

    /// `source` succeeded: an episode in progress whose last failure is [`SETTLE`] old ends,
    /// with one line.
    pub fn recovered(&self, source: Source) {
        self.recovered_after(source, SETTLE);
    }

    fn recovered_after(&self, source: Source, settle: Duration) {
        if !self.any.load(Ordering::Acquire) {
            return;
        }
        let mut active = self.lock();
        if let Some(episode) = active.get_mut(&source) {
            episode.succeeded = true;
        }
        self.end_settled(&mut active, settle);
    }

    /// Ends (with their line) the episodes that have settled.
    fn end_settled(&self, active: &mut HashMap<Source, Active>, settle: Duration) {
        let settled: Vec<Source> =
            active.iter().filter(|(_, e)| e.settled(settle)).map(|(s, _)| *s).collect();
        for source in settled {
            if let Some(episode) = active.remove(&source) {
                self.end(source, &episode, "recovered");
            }
        }
        self.any.store(!active.is_empty(), Ordering::Release);
    }

    fn end(&self, source: Source, episode: &Active, how: &str) {
        self.in_progress.get_or_create(&EpisodeLabels { source, cause: episode.cause }).set(0);
        info!(
            source = source.label(),
            cause = episode.cause.label(),
            failures = episode.failures,
            seconds = episode.started.elapsed().as_secs(),
            "{} {how}: {} for {} s, {} failures",
            source.label(),
            episode.cause.explain(),
            episode.started.elapsed().as_secs(),
            episode.failures
        );
    }

    /// The episodes in progress, oldest first (those that settled meanwhile end here).
    pub fn in_progress(&self) -> Vec<Episode> {
        let mut active = self.lock();
        self.end_settled(&mut active, SETTLE);
        let mut list: Vec<Episode> = active
            .iter()
            .map(|(source, a)| Episode {
                source: *source,
                cause: a.cause,
                since: a.since,
                failures: a.failures,
            })
            .collect();
        list.sort_by_key(|e| e.since);
        list
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_episode_is_one_entry_however_many_failures_and_ends_on_success() {
        let episodes = Episodes::new(&mut Registry::default());
        for _ in 0..1000 {
            episodes.failed(Source::ingest, Cause::database_disk_full, "53100");
        }
        let list = episodes.in_progress();
        assert_eq!(list.len(), 1);
        assert_eq!((list[0].cause, list[0].failures), (Cause::database_disk_full, 1000));
        let labels = EpisodeLabels { source: Source::ingest, cause: Cause::database_disk_full };
        assert_eq!(episodes.episodes.get_or_create(&labels).get(), 1);
        assert_eq!(episodes.failures.get_or_create(&labels).get(), 1000);
        episodes.recovered_after(Source::queries, Duration::ZERO);
        assert_eq!(episodes.in_progress().len(), 1, "another source's success ends nothing");
        episodes.recovered(Source::ingest);
        assert_eq!(episodes.in_progress().len(), 1, "a success right after a failure: flapping, not over");
        episodes.recovered_after(Source::ingest, Duration::ZERO);
        assert!(episodes.in_progress().is_empty());
        assert_eq!(episodes.in_progress.get_or_create(&labels).get(), 0);
    }

    #[test]
    fn a_changed_cause_starts_a_new_episode() {
        let episodes = Episodes::new(&mut Registry::default());
        episodes.failed(Source::ingest, Cause::database_unreachable, "refused");
        episodes.failed(Source::ingest, Cause::database_disk_full, "53100");
        let list = episodes.in_progress();
        assert_eq!((list.len(), list[0].cause, list[0].failures), (1, Cause::database_disk_full, 1));
        let unreachable = EpisodeLabels { source: Source::ingest, cause: Cause::database_unreachable };
        assert_eq!(episodes.in_progress.get_or_create(&unreachable).get(), 0);
    }
}
