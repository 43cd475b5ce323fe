//! Reading `raw_signals` (writes are in `tracking.rs`).

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde_json::Value;
use tokio_postgres::{Client, Row};
use uuid::Uuid;

use super::filter::{Conditions, PageQuery, Total};
use super::{Store, StoreError};
use crate::model::payload::{api_form, is_error_sql};
use crate::model::{SignalType, StoredSignal};

/// Filters of `GET /query/signals`; `None` means "any".
#[derive(Debug, Clone, Default)]
pub struct SignalFilter {
    pub trace_id: Option<String>,
    pub service_name: Option<String>,
    pub signal_type: Option<SignalType>,
    pub start_time: Option<DateTime<Utc>>,
    pub end_time: Option<DateTime<Utc>>,
    /// Log level (upper-case, as stored in `payload.level`).
    pub level: Option<String>,
    /// Text contained in `payload.message`, case-insensitive.
    pub text: Option<String>,
}

/// Where a page starts: after `offset` rows, or after the row with this sort key.
#[derive(Debug, Clone, Copy)]
pub enum PageStart {
    Offset(i64),
    /// After this sort key, then `skip` rows more.
    After {
        at: Option<DateTime<Utc>>,
        id: uuid::Uuid,
        skip: i64,
    },
}

/// The resource and scope a signal shares are not joined here but read after, by id
/// ([`attach_shared`]).
const SIGNAL_COLUMNS: &str =
    r#"id, signal_type::text, trace_id, service_name, "timestamp", payload, shared_id"#;

const SIGNALS: &str = "raw_signals";

/// The list queries' relations (migrations/0018): the row form, the blocks unpacked, both.
const HOT: &str = "raw_signals_hot";
const UNPACKED: &str = "raw_signals_unpacked";
const LISTED: &str = "raw_signals_listed";

const NEWEST_FIRST: &str = r#""timestamp" DESC, id DESC"#;

/// Blocks decompressed by one query while a page is filled from sealed signals (500 signals
/// each).
const BLOCKS_PER_READ: usize = 8;

/// Which sealed blocks can hold a signal of a list: those of its type, service and time range,
/// and older than its cursor.
struct Blocks<'a> {
    signal_type: Option<&'a str>,
    filter: &'a SignalFilter,
    before: Option<DateTime<Utc>>,
}

impl Blocks<'_> {
    /// `(unit, block, newest time)` of each, newest first.
    async fn candidates(&self, client: &Client) -> Result<Vec<(i32, i32, DateTime<Utc>)>, StoreError> {
        let mut conditions = Conditions::default();
        if let Some(signal_type) = &self.signal_type {
            conditions.push("signal_type = $::text::signaltypeenum", signal_type);
        }
        if let Some(service_name) = &self.filter.service_name {
            conditions.push("services @> ARRAY[$]::varchar[]", service_name);
        }
        if let Some(start_time) = &self.filter.start_time {
            conditions.push("ends >= $", start_time);
        }
        if let Some(end_time) = &self.filter.end_time {
            conditions.push("starts <= $", end_time);
        }
        if let Some(before) = &self.before {
            conditions.push("starts <= $", before);
        }
        let sql = format!(
            "SELECT unit, block, ends FROM raw_signal_blocks {} ORDER BY ends DESC, unit DESC, block DESC",
            conditions.where_clause()
        );
        let rows = client.query(&sql, conditions.params()).await?;
        rows.iter().map(|row| Ok((row.try_get(0)?, row.try_get(1)?, row.try_get(2)?))).collect()
    }
}

/// The first `need` signals matching `conditions` (whose `lo`/`hi`/`services` conditions let a
/// block be skipped whole), newest first: the row form's, then the sealed blocks' in the order
/// of their newest signal, a few at a time, until no block left can hold one of the first
/// `need` (its newest signal is older than the `need`-th found).
async fn newest_first(
    client: &Client,
    conditions: &Conditions<'_>,
    blocks: &Blocks<'_>,
    need: i64,
) -> Result<Vec<Unattached>, StoreError> {
    if need <= 0 {
        return Ok(Vec::new());
    }
    let clause = conditions.page_where_clause();
    let hot = format!("SELECT {SIGNAL_COLUMNS} FROM {HOT} {clause} ORDER BY {NEWEST_FIRST} LIMIT {need}");
    let rows = client.query(&hot, conditions.params()).await?;
    let mut page = rows.iter().map(signal_from_row).collect::<Result<Vec<_>, _>>()?;
    let candidates = blocks.candidates(client).await?;
    let need = need.max(0) as usize;
    let n = conditions.params().len();
    let sealed = format!(
        "SELECT {SIGNAL_COLUMNS} FROM {UNPACKED} {where_} (unit, block) IN (SELECT * FROM unnest(${}::int4[], ${}::int4[]))
         ORDER BY {NEWEST_FIRST} LIMIT {need}",
        n + 1,
        n + 2,
        where_ = if clause.is_empty() { "WHERE".to_owned() } else { format!("{clause} AND") },
    );
    for batch in candidates.chunks(BLOCKS_PER_READ) {
        if page.get(need - 1).is_some_and(|last| last.signal.timestamp > batch[0].2) {
            break;
        }
        let (units, numbers): (Vec<i32>, Vec<i32>) =
            batch.iter().map(|(unit, block, _)| (*unit, *block)).unzip();
        let mut params = conditions.params().to_vec();
        params.push(&units);
        params.push(&numbers);
        for row in client.query(&sealed, &params).await? {
            page.push(signal_from_row(&row)?);
        }
        page.sort_by_key(|s| std::cmp::Reverse((s.signal.timestamp, s.signal.id)));
        page.truncate(need);
    }
    Ok(page)
}

impl Store {
    /// One page of signals, newest first, and the number matching the filter. A trace's are
    /// read through `raw_signals` (its index finds them, hot or sealed); other filters page
    /// through the row form and then the sealed blocks, newest first, decompressing only the
    /// blocks that can hold a row of the page ([`newest_first`]).
    pub async fn list_signals(
        &self,
        filter: &SignalFilter,
        limit: i64,
        start: PageStart,
    ) -> Result<(Vec<StoredSignal>, Total), StoreError> {
        let signal_type = filter.signal_type.map(SignalType::as_str);
        let by_trace = filter.trace_id.is_some();
        let mut conditions = Conditions::default();
        if let Some(trace_id) = &filter.trace_id {
            conditions.push("trace_id = $", trace_id);
        }
        if let Some(service_name) = &filter.service_name {
            conditions.push("service_name = $", service_name);
            if !by_trace {
                conditions.push("services @> ARRAY[$]::varchar[]", service_name);
            }
        }
        if let Some(signal_type) = &signal_type {
            conditions.push("signal_type = $::text::signaltypeenum", signal_type);
        }
        if let Some(start_time) = &filter.start_time {
            conditions.push(r#""timestamp" >= $"#, start_time);
            if !by_trace {
                conditions.push("hi >= $", start_time);
            }
        }
        if let Some(end_time) = &filter.end_time {
            conditions.push(r#""timestamp" <= $"#, end_time);
            if !by_trace {
                conditions.push("lo <= $", end_time);
            }
        }
        if let Some(level) = &filter.level {
            conditions.push("payload->>'level' = $", level);
        }
        let pattern = filter.text.as_deref().map(like_pattern);
        if let Some(pattern) = &pattern {
            conditions.push(r"payload->>'message' ILIKE $ ESCAPE '\'", pattern);
        }
        let (offset, after) = match start {
            PageStart::Offset(offset) => (offset, None),
            PageStart::After { at, id, skip } => (skip, Some((at, id))),
        };
        if let Some((Some(at), id)) = &after {
            conditions.push_page_only(r#"("timestamp", id) < ($, $)"#, &[at, id]);
            if !by_trace {
                conditions.push_page_only("lo <= $", &[at]);
            }
        }
        let client = self.read_client().await?;
        if by_trace {
            let (rows, total) =
                conditions.fetch_page(&client, &self.signal_page(NEWEST_FIRST, limit, offset)).await?;
            return Ok((signals_from_rows(&client, &rows).await?, total));
        }
        let total = conditions.total(&client, LISTED, self.settings.exact_total_limit).await?;
        let blocks = Blocks { signal_type, filter, before: after.and_then(|(at, _)| at) };
        let page = newest_first(&client, &conditions, &blocks, offset.saturating_add(limit)).await?;
        let page = page.into_iter().skip(offset.max(0) as usize).collect();
        Ok((attach_shared(&client, page).await?, total))
    }

    /// The signals of one trace, errors first, then oldest first: an incident's evidence.
    pub async fn evidence_signals(
        &self,
        trace_id: &str,
        limit: i64,
        offset: i64,
    ) -> Result<(Vec<StoredSignal>, Total), StoreError> {
        let mut conditions = Conditions::default();
        conditions.push("trace_id = $", &trace_id);
        let client = self.read_client().await?;
        let order = format!(r#"{} DESC, "timestamp", id"#, is_error_sql());
        let (rows, total) = conditions.fetch_page(&client, &self.signal_page(&order, limit, offset)).await?;
        Ok((signals_from_rows(&client, &rows).await?, total))
    }
    /// The signals of one trace, oldest first, at most `limit`.
    pub async fn trace_signals(&self, trace_id: &str, limit: i64) -> Result<Vec<StoredSignal>, StoreError> {
        // No stored id holds a NUL (PostgreSQL's text cannot): such an id names no trace.
        if trace_id.contains('\0') {
            return Ok(Vec::new());
        }
        let client = self.read_client().await?;
        let rows = client
            .query(
                &format!(
                    r#"SELECT {SIGNAL_COLUMNS} FROM {SIGNALS} WHERE trace_id = $1
                       ORDER BY "timestamp", id LIMIT $2"#
                ),
                &[&trace_id, &limit],
            )
            .await?;
        signals_from_rows(&client, &rows).await
    }
}

impl Store {
    /// A page of signals (the key of `raw_signals` is not one column: rows are fetched at once).
    fn signal_page<'q>(&self, order: &'q str, limit: i64, offset: i64) -> PageQuery<'q> {
        PageQuery {
            table: SIGNALS,
            columns: SIGNAL_COLUMNS,
            order,
            key: None,
            limit,
            offset,
            exact_limit: self.settings.exact_total_limit,
        }
    }
}

/// `%text%` for ILIKE, with the pattern characters of `text` matched literally.
fn like_pattern(text: &str) -> String {
    let escaped = text.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_");
    format!("%{escaped}%")
}

/// A signal as read: its payload as stored, the resource and scope it shares not yet attached.
struct Unattached {
    signal: StoredSignal,
    shared_id: Option<Uuid>,
}

/// A row of `SIGNAL_COLUMNS`, read by name.
fn signal_from_row(row: &Row) -> Result<Unattached, StoreError> {
    let signal_type: String = row.try_get("signal_type")?;
    // The column's enum type only holds these three labels.
    let signal_type = SignalType::parse(&signal_type).unwrap_or(SignalType::Log);
    Ok(Unattached {
        signal: from_columns!(row, StoredSignal { id, trace_id, service_name, timestamp, payload } with {
            signal_type: signal_type,
        }),
        shared_id: row.try_get("shared_id")?,
    })
}

async fn signals_from_rows(client: &Client, rows: &[Row]) -> Result<Vec<StoredSignal>, StoreError> {
    attach_shared(client, rows.iter().map(signal_from_row).collect::<Result<_, _>>()?).await
}

/// The signals in their API form, with the resources and scopes they share, read by id in one
/// query after the signals rather than joined to them: on Citus such a join sends the whole of
/// `signal_shared` (a table of the coordinator) to the worker holding the trace at every read,
/// a cost growing with the number of distinct resources (2 MB for a trace of 14 signals beside
/// 1,000 resources); some Citus plans refuse it outright ("complex joins are only supported…",
/// store/sealing/columnar.rs). A signal whose row is missing (or stored before the table
/// existed, with its whole payload) is returned as stored.
async fn attach_shared(client: &Client, read: Vec<Unattached>) -> Result<Vec<StoredSignal>, StoreError> {
    let mut ids: Vec<Uuid> = read.iter().filter_map(|r| r.shared_id).collect();
    ids.sort_unstable();
    ids.dedup();
    let mut shared: HashMap<Uuid, (Value, Value)> = HashMap::with_capacity(ids.len());
    if !ids.is_empty() {
        let rows = client
            .query("SELECT shared_id, resource, scope FROM signal_shared WHERE shared_id = ANY($1)", &[&ids])
            .await?;
        for row in rows {
            shared.insert(row.try_get(0)?, (row.try_get(1)?, row.try_get(2)?));
        }
    }
    Ok(read
        .into_iter()
        .map(|Unattached { mut signal, shared_id }| {
            let stored = std::mem::take(&mut signal.payload);
            let shared = shared_id.and_then(|id| shared.get(&id)).cloned();
            signal.payload = api_form(signal.signal_type, stored, shared);
            signal
        })
        .collect())
}
