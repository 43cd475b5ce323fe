//! Reading `raw_signals` (writes are in `tracking.rs`).

use chrono::{DateTime, Utc};
use tokio_postgres::Row;

use serde_json::Value;

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

const SIGNAL_COLUMNS: &str =
    r#"id, signal_type::text, trace_id, service_name, "timestamp", payload, resource, scope"#;

/// Signals with the resource and scope they share re-attached (`USING` keeps every other column
/// name unambiguous for the filters).
const SIGNALS: &str = "raw_signals LEFT JOIN signal_shared USING (shared_id)";

impl Store {
    /// One page of signals, newest first, and the number matching the filter.
    pub async fn list_signals(
        &self,
        filter: &SignalFilter,
        limit: i64,
        start: PageStart,
    ) -> Result<(Vec<StoredSignal>, Total), StoreError> {
        let signal_type = filter.signal_type.map(SignalType::as_str);
        let mut conditions = Conditions::default();
        if let Some(trace_id) = &filter.trace_id {
            conditions.push("trace_id = $", trace_id);
        }
        if let Some(service_name) = &filter.service_name {
            conditions.push("service_name = $", service_name);
        }
        if let Some(signal_type) = &signal_type {
            conditions.push("signal_type = $::text::signaltypeenum", signal_type);
        }
        if let Some(start_time) = &filter.start_time {
            conditions.push(r#""timestamp" >= $"#, start_time);
        }
        if let Some(end_time) = &filter.end_time {
            conditions.push(r#""timestamp" <= $"#, end_time);
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
        }
        let client = self.read_client().await?;
        let order = r#""timestamp" DESC, id DESC"#;
        let (rows, total) = conditions.fetch_page(&client, &self.signal_page(order, limit, offset)).await?;
        Ok((rows.iter().map(signal_from_row).collect::<Result<_, _>>()?, total))
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
        Ok((rows.iter().map(signal_from_row).collect::<Result<_, _>>()?, total))
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
        rows.iter().map(signal_from_row).collect()
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

/// A row of `SIGNAL_COLUMNS`, read by name.
fn signal_from_row(row: &Row) -> Result<StoredSignal, StoreError> {
    let signal_type: String = row.try_get("signal_type")?;
    // The column's enum type only holds these three labels.
    let signal_type = SignalType::parse(&signal_type).unwrap_or(SignalType::Log);
    let resource: Option<Value> = row.try_get("resource")?;
    let scope: Option<Value> = row.try_get("scope")?;
    Ok(from_columns!(row, StoredSignal { id, trace_id, service_name, timestamp } with {
        signal_type: signal_type,
        payload: api_form(signal_type, row.try_get("payload")?, resource.zip(scope)),
    }))
}
