//! Reading `raw_signals` (writes are in `tracking.rs`).

use chrono::{DateTime, Utc};
use tokio_postgres::Row;

use super::filter::Conditions;
use super::{Store, StoreError};
use crate::model::{SignalType, StoredSignal};

/// Filters of `GET /query/signals`; `None` means "any".
#[derive(Debug, Clone, Default)]
pub struct SignalFilter {
    pub trace_id: Option<String>,
    pub service_name: Option<String>,
    pub signal_type: Option<SignalType>,
    pub start_time: Option<DateTime<Utc>>,
    pub end_time: Option<DateTime<Utc>>,
}

const SIGNAL_COLUMNS: &str = r#"id, signal_type::text, trace_id, service_name, "timestamp", payload"#;

impl Store {
    /// One page of signals, newest first, and the number matching the filter.
    pub async fn list_signals(
        &self,
        filter: &SignalFilter,
        limit: i64,
        offset: i64,
    ) -> Result<(Vec<StoredSignal>, i64), StoreError> {
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
        let client = self.client().await?;
        let order = r#""timestamp" DESC, id DESC"#;
        let (rows, total) =
            conditions.fetch_page(&client, "raw_signals", SIGNAL_COLUMNS, order, limit, offset).await?;
        Ok((rows.iter().map(signal_from_row).collect(), total))
    }

    /// The signals of one trace, oldest first, at most `limit`.
    pub async fn trace_signals(&self, trace_id: &str, limit: i64) -> Result<Vec<StoredSignal>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                &format!(
                    r#"SELECT {SIGNAL_COLUMNS} FROM raw_signals WHERE trace_id = $1
                       ORDER BY "timestamp", id LIMIT $2"#
                ),
                &[&trace_id, &limit],
            )
            .await?;
        Ok(rows.iter().map(signal_from_row).collect())
    }
}

fn signal_from_row(row: &Row) -> StoredSignal {
    let signal_type: String = row.get(1);
    StoredSignal {
        id: row.get(0),
        // The column's enum type only holds these three labels.
        signal_type: SignalType::parse(&signal_type).unwrap_or(SignalType::Log),
        trace_id: row.get(2),
        service_name: row.get(3),
        timestamp: row.get(4),
        payload: row.get(5),
    }
}
