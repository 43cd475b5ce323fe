//! Sealing (issue 23): a signal type's partition whose range ended `SEAL_AFTER` ago is
//! rewritten into compressed blocks (layout: migrations/0018) and its row form dropped, while
//! `raw_signals` keeps answering the same rows. One partition at a time, in three kinds of
//! transaction, each holding the maintenance lock:
//!
//! 1. [`steps::begin`]: the partition leaves the row form (an empty one takes its place for
//!    late arrivals) and is read, not written, as a child of `raw_signal_sealing`;
//! 2. [`steps::step`], repeated: the next traces' signals go into blocks, in tables not yet
//!    attached, with the progress recorded, so memory and WAL per step are bounded and a seal
//!    interrupted by a restart resumes where it was;
//! 3. [`steps::attach`]: the blocks replace the old partition for every reader at once.
//!
//! Ingest never waits on a seal except for the moments of 1 and 3, and a retry of a sealed
//! signal is recognised by the batch write (store/sql/write_batch.sql).

pub mod columnar;
mod steps;
pub(crate) mod units;

use steps::Step;

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;

use super::citus::Layout;
use super::partitions::{change_transaction, evidence_tables, leaf_name, take_lock, Turn};
use super::{Store, StoreError};
use crate::model::SignalType;

pub use steps::{UnitTables, BLOCK_SIGNALS, STEP_SIGNALS};

/// The share of one core the service's sealing takes, at most: after each step it rests four
/// times as long as the step took. Sealing one core flat out took over a quarter of a two-core
/// machine's ingest away (BENCHMARKS.md, "Sealed storage"); at a fifth of a core it still seals
/// about 9,000 signals a second, three quarters of a billion a day.
pub const SEAL_SHARE: f64 = 0.2;

/// One partition sealed by a pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    pub unit: i32,
    /// The row partition sealed.
    pub leaf: String,
    pub signals: i64,
    pub blocks: i32,
    /// The row partition's size, and its blocks' (heap, TOAST, indexes).
    pub bytes_before: i64,
    pub bytes_after: i64,
}

/// What one pass of [`Store::seal`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SealPass {
    pub sealed: Vec<Sealed>,
    /// Steps run (this pass), including those of a seal left unfinished.
    pub steps: u64,
    /// A seal begun and not finished within the pass's budget: the next pass resumes it.
    pub unfinished: Option<String>,
}

/// A unit being sealed, as recorded.
struct Open {
    unit: i32,
    leaf: String,
    signal_type: SignalType,
}

enum Progress {
    Done,
    /// Another instance finished it, or it expired meanwhile.
    Over,
    OutOfTime,
    /// Another instance holds the maintenance lock.
    Busy,
}

impl Store {
    /// Seals what is due at `now` ([`crate::model::Lifecycle::seal_due`]) for at most `budget`
    /// (a step begun is finished), resuming first a seal a previous pass left unfinished,
    /// taking at most `share` of a core (1: as fast as it can; [`SEAL_SHARE`]: the service).
    /// `None`: another instance holds the maintenance lock.
    pub async fn seal(
        &self,
        now: DateTime<Utc>,
        turn: Turn,
        budget: Duration,
        share: f64,
    ) -> Result<Option<SealPass>, StoreError> {
        let mut pass = SealPass::default();
        // On Citus, only once sealed storage is laid out there (columnar.rs).
        if self.settings.layout.is_distributed()
            && columnar::sealable(&**self.client().await?).await? != columnar::Columnar::Ready
        {
            return Ok(Some(pass));
        }
        let started = Instant::now();
        loop {
            let open = match self.open_unit().await? {
                Some(open) => open,
                None => match self.begin_due(now, turn).await? {
                    Begun::Unit(open) => open,
                    Begun::Nothing => return Ok(Some(pass)),
                    Begun::Busy if pass.steps == 0 => return Ok(None),
                    Begun::Busy => return Ok(Some(pass)),
                },
            };
            match self.run_steps(&open, turn, (started, budget), share, &mut pass).await? {
                Progress::Done => match self.finish(&open, turn).await? {
                    Some(sealed) => pass.sealed.push(sealed),
                    None => return Ok(Some(pass)),
                },
                Progress::OutOfTime => {
                    pass.unfinished = Some(open.leaf);
                    return Ok(Some(pass));
                }
                Progress::Busy => return Ok(Some(pass)),
                Progress::Over => {}
            }
            if started.elapsed() >= budget {
                return Ok(Some(pass));
            }
        }
    }

    /// The unit a previous pass began and did not attach, if any (one at a time).
    async fn open_unit(&self) -> Result<Option<Open>, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "SELECT unit, leaf, signal_type::text FROM raw_signal_units
                 WHERE NOT attached ORDER BY unit LIMIT 1",
                &[],
            )
            .await?;
        row.map(|row| {
            let label: String = row.try_get(2)?;
            Ok(Open {
                unit: row.try_get(0)?,
                leaf: row.try_get(1)?,
                signal_type: SignalType::parse(&label).unwrap_or(SignalType::Log),
            })
        })
        .transpose()
    }

    /// Begins the seal of the oldest partition due, if any.
    async fn begin_due(&self, now: DateTime<Utc>, turn: Turn) -> Result<Begun, StoreError> {
        let lifecycle = &self.settings.lifecycle;
        if lifecycle.seal_after.is_none() {
            return Ok(Begun::Nothing);
        }
        let candidates = {
            let client = self.client().await?;
            due_candidates(&client, lifecycle, now).await?
        };
        for (leaf, range, signal_type) in candidates {
            let mut client = self.client().await?;
            let tx = change_transaction(&mut client, self.settings.layout).await?;
            if !take_lock(&tx, turn).await? {
                return Ok(Begun::Busy);
            }
            // Another instance may have sealed or expired it since it was listed.
            if !still_due(&tx, &leaf).await? {
                tx.commit().await?;
                continue;
            }
            let unit = match self.settings.layout {
                Layout::Single => steps::begin(&tx, &leaf, &range, signal_type).await?,
                Layout::Distributed { .. } => columnar::begin(&tx, &leaf, &range, signal_type).await?,
            };
            tx.commit().await?;
            return Ok(Begun::Unit(Open { unit, leaf, signal_type }));
        }
        Ok(Begun::Nothing)
    }

    async fn run_steps(
        &self,
        open: &Open,
        turn: Turn,
        (started, budget): (Instant, Duration),
        share: f64,
        pass: &mut SealPass,
    ) -> Result<Progress, StoreError> {
        loop {
            let step_started = Instant::now();
            let mut client = self.client().await?;
            let tx = client.transaction().await?;
            if !take_lock(&tx, turn).await? {
                return Ok(Progress::Busy);
            }
            let step = steps::step(&tx, open.unit, open.signal_type, self.settings.layout).await?;
            tx.commit().await?;
            drop(client);
            pass.steps += 1;
            match step {
                Step::Sealed => {}
                Step::Done => return Ok(Progress::Done),
                Step::Over => return Ok(Progress::Over),
            }
            let rest = step_started.elapsed().mul_f64(1.0 / share.clamp(0.01, 1.0) - 1.0);
            if started.elapsed() + rest >= budget {
                return Ok(Progress::OutOfTime);
            }
            tokio::time::sleep(rest).await;
        }
    }

    /// Attaches the unit's blocks; `None`: another instance holds the maintenance lock.
    async fn finish(&self, open: &Open, turn: Turn) -> Result<Option<Sealed>, StoreError> {
        let layout = self.settings.layout;
        let mut client = self.client().await?;
        let tx = change_transaction(&mut client, layout).await?;
        if !take_lock(&tx, turn).await? {
            return Ok(None);
        }
        steps::index(&tx, open.unit, layout).await?;
        let attached = steps::attach(&tx, open.unit, layout).await?;
        tx.commit().await?;
        if !attached {
            return Ok(None);
        }
        let tables = UnitTables::of(open.unit);
        let made = match layout {
            Layout::Single => vec![tables.blocks, tables.traces],
            Layout::Distributed { .. } => vec![tables.columnar],
        };
        // Statistics at once: the planner reads a trace from a columnar table through its
        // index only once it knows the rows are in trace order.
        client.batch_execute(&format!("ANALYZE {}", made.join(", "))).await?;
        let row = client
            .query_one(
                &format!(
                    "SELECT signals, blocks, bytes_before,
                            (SELECT sum({}(t::regclass)) FROM unnest($2::text[]) AS t)::int8
                     FROM raw_signal_units WHERE unit = $1",
                    layout.total_size_function()
                ),
                &[&open.unit, &made],
            )
            .await?;
        Ok(Some(Sealed {
            unit: open.unit,
            leaf: open.leaf.clone(),
            signals: row.try_get(0)?,
            blocks: row.try_get(1)?,
            bytes_before: row.try_get(2)?,
            bytes_after: row.try_get(3)?,
        }))
    }
}

enum Begun {
    Unit(Open),
    Nothing,
    Busy,
}

/// The type partitions due to be sealed at `now`, oldest range first: `(leaf, range, type)`.
/// A partition holding only evidence is not (it is small, and its rows go one by one).
async fn due_candidates(
    client: &impl GenericClient,
    lifecycle: &crate::model::Lifecycle,
    now: DateTime<Utc>,
) -> Result<Vec<(String, String, SignalType)>, StoreError> {
    let evidence = evidence_tables(client).await?;
    let ranges = client
        .query(
            "SELECT name, ends FROM raw_signal_partitions WHERE NOT legacy AND ends <= $1 ORDER BY ends",
            &[&now],
        )
        .await?;
    let mut due = Vec::new();
    for range in ranges {
        let (name, ends): (String, DateTime<Utc>) = (range.try_get(0)?, range.try_get(1)?);
        for signal_type in SignalType::ALL {
            let leaf = leaf_name(&name, signal_type);
            if evidence.contains(&leaf) || !lifecycle.seal_due(ends, None, now) {
                continue;
            }
            let Some(arrival) = last_arrival(client, &leaf).await? else { continue };
            if lifecycle.seal_due(ends, arrival, now) {
                due.push((leaf, name.clone(), signal_type));
            }
        }
    }
    Ok(due)
}

/// `None`: the partition does not exist or holds nothing to seal. `Some(None)`: it holds
/// signals and was never sealed (its first seal waits for its range only, without reading its
/// arrival times); `Some(Some(t))`: sealed before, its late arrivals' newest came at `t`.
async fn last_arrival(
    client: &impl GenericClient,
    leaf: &str,
) -> Result<Option<Option<DateTime<Utc>>>, StoreError> {
    let Some(quoted) = existing(client, leaf).await? else { return Ok(None) };
    let sealed_before: bool = client
        .query_one("SELECT EXISTS (SELECT 1 FROM raw_signal_units WHERE leaf = $1)", &[&leaf])
        .await?
        .try_get(0)?;
    if !sealed_before {
        let sql = format!("SELECT EXISTS (SELECT 1 FROM {quoted} WHERE NOT time_unknown)");
        let any: bool = client.query_one(&sql, &[]).await?.try_get(0)?;
        return Ok(any.then_some(None));
    }
    let sql = format!("SELECT max(received_at) FROM {quoted} WHERE NOT time_unknown");
    let newest: Option<DateTime<Utc>> = client.query_one(&sql, &[]).await?.try_get(0)?;
    Ok(newest.map(Some))
}

/// The quoted name of `table` if it exists.
async fn existing(client: &impl GenericClient, table: &str) -> Result<Option<String>, StoreError> {
    let present: bool =
        client.query_one("SELECT to_regclass(quote_ident($1)) IS NOT NULL", &[&table]).await?.try_get(0)?;
    Ok(present.then(|| super::bootstrap::quote_identifier(table)))
}

/// Whether `leaf` still exists, holds something to seal and is not being sealed.
async fn still_due(client: &impl GenericClient, leaf: &str) -> Result<bool, StoreError> {
    let Some(quoted) = existing(client, leaf).await? else { return Ok(false) };
    let sql = format!(
        "SELECT EXISTS (SELECT 1 FROM {quoted} WHERE NOT time_unknown)
            AND NOT EXISTS (SELECT 1 FROM raw_signal_units WHERE NOT attached)"
    );
    Ok(client.query_one(&sql, &[]).await?.try_get(0)?)
}
