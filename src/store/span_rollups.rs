//! The operations of each service (`span_operations`, migrations/0017): what the Jaeger API's
//! service and operation lists read, at a cost independent of the spans stored.
//!
//! Written after a batch commits, not inside its statement: the row only says "seen lately",
//! and a batch whose write of it fails (or an instance that stops in between) leaves it to
//! the next batch carrying the same operation, since only a committed write marks it here.

use chrono::{DateTime, Utc};

use super::shared::{Marks, REMARK_AFTER};
use super::{Store, StoreError};
use crate::model::time::before;
use crate::model::{Signal, SignalType};

/// A row of `span_operations`: service, operation, span kind (`''` when unknown).
pub(super) type OperationKey = (String, String, String);

/// The rows of `span_operations` this instance wrote lately.
pub(super) type OperationsSeen = Marks<OperationKey>;

/// One operation of a service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operation {
    pub name: String,
    /// As stored: `SERVER`, `CLIENT`, `PRODUCER`, `CONSUMER`, `INTERNAL`, `UNSPECIFIED`, or
    /// `''` for a legacy span.
    pub span_kind: String,
}

/// The distinct operations among `rows`' spans.
fn operations_of(rows: &[&Signal]) -> Vec<OperationKey> {
    // Every committed batch passes here: the spans' keys are compared borrowed, and only the
    // few distinct ones are copied.
    let mut keys: Vec<(&str, &str, &str)> = rows
        .iter()
        .filter(|s| s.signal_type == SignalType::Trace)
        .map(|s| (s.service_name.as_str(), s.facts.operation(), s.facts.kind.as_deref().unwrap_or_default()))
        .collect();
    keys.sort_unstable();
    keys.dedup();
    keys.into_iter()
        .map(|(service, name, kind)| (service.to_owned(), name.to_owned(), kind.to_owned()))
        .collect()
}

impl Store {
    /// Records the operations of a committed batch's spans that this instance has not recorded
    /// within [`REMARK_AFTER`]. A failure is only logged: the batch is stored, and the next
    /// batch with the same operation records it.
    pub(super) async fn record_operations(&self, rows: &[&Signal]) {
        let keys = operations_of(rows);
        let due = self.operations_seen.due(keys.iter());
        if due.is_empty() {
            return;
        }
        match self.write_operations(&due).await {
            Ok(()) => self.operations_seen.marked(&due),
            Err(why) => tracing::warn!(error = %crate::error::error_chain(&why),
                                       "could not record span operations; the next batch retries"),
        }
    }

    async fn write_operations(&self, keys: &[OperationKey]) -> Result<(), StoreError> {
        let services: Vec<&str> = keys.iter().map(|k| k.0.as_str()).collect();
        let names: Vec<&str> = keys.iter().map(|k| k.1.as_str()).collect();
        let kinds: Vec<&str> = keys.iter().map(|k| k.2.as_str()).collect();
        let client = self.client().await?;
        // Sorted keys: concurrent instances lock the rows in one order.
        client
            .execute(
                "INSERT INTO span_operations AS o (service_name, operation, span_kind, last_seen)
                 SELECT s, n, k, now() FROM unnest($1::text[], $2::text[], $3::text[]) AS u(s, n, k)
                 ON CONFLICT (service_name, operation, span_kind)
                 DO UPDATE SET last_seen = greatest(o.last_seen, excluded.last_seen)",
                &[&services, &names, &kinds],
            )
            .await?;
        Ok(())
    }

    /// The services that sent spans, sorted.
    pub async fn span_services(&self) -> Result<Vec<String>, StoreError> {
        let client = self.read_client().await?;
        let rows = client.query("SELECT DISTINCT service_name FROM span_operations ORDER BY 1", &[]).await?;
        rows.iter().map(|r| Ok(r.try_get(0)?)).collect()
    }

    /// The operations of `service`, by name, of one kind (as stored) when given.
    pub async fn span_operations(
        &self,
        service: &str,
        kind: Option<&str>,
    ) -> Result<Vec<Operation>, StoreError> {
        // No stored name holds a NUL (PostgreSQL's text cannot).
        if service.contains('\0') || kind.is_some_and(|k| k.contains('\0')) {
            return Ok(Vec::new());
        }
        let client = self.read_client().await?;
        let rows = client
            .query(
                "SELECT operation, span_kind FROM span_operations
                 WHERE service_name = $1 AND ($2::text IS NULL OR span_kind = $2)
                 ORDER BY operation, span_kind",
                &[&service, &kind],
            )
            .await?;
        rows.iter().map(|r| Ok(Operation { name: r.try_get(0)?, span_kind: r.try_get(1)? })).collect()
    }

    /// Deletes the operations not seen for longer than spans are kept (plus the time a row may
    /// lag its use); nothing while spans are kept forever.
    pub async fn expire_operations(&self, now: DateTime<Utc>) -> Result<u64, StoreError> {
        let Some(retention) = self.settings.lifecycle.signals.of(SignalType::Trace) else { return Ok(0) };
        let interval = self.settings.lifecycle.partition_interval.length();
        let unused_since = before(now, retention + interval + REMARK_AFTER * 2);
        let client = self.client().await?;
        Ok(client.execute("DELETE FROM span_operations WHERE last_seen < $1", &[&unused_since]).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::payload::{Facts, Payload, UNNAMED_OPERATION};
    use uuid::Uuid;

    fn span(service: &str, name: Option<&str>, kind: Option<&str>) -> Signal {
        Signal {
            signal_id: Uuid::new_v4(),
            signal_type: SignalType::Trace,
            trace_id: "t".into(),
            service_name: service.into(),
            timestamp: Utc::now(),
            payload: Payload::from_encoded("{}".into()),
            facts: Facts { text: name.map(str::to_owned), kind: kind.map(str::to_owned), ..Facts::default() },
            shared: None,
            time_unknown: false,
        }
    }

    #[test]
    fn a_batch_records_each_operation_once_and_unnamed_spans_under_one_name() {
        let signals = [
            span("a", Some("GET"), Some("SERVER")),
            span("a", Some("GET"), Some("SERVER")),
            span("a", Some("GET"), Some("CLIENT")),
            span("b", None, None),
            span("b", Some(""), None),
        ];
        let rows: Vec<&Signal> = signals.iter().collect();
        let unnamed = UNNAMED_OPERATION.to_owned();
        assert_eq!(
            operations_of(&rows),
            vec![
                ("a".into(), "GET".into(), "CLIENT".into()),
                ("a".into(), "GET".into(), "SERVER".into()),
                ("b".into(), unnamed, String::new()),
            ]
        );
    }
}
