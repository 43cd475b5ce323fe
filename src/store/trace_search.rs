//! Finding traces (`GET /jaeger/api/traces?service=…`): the ids of the traces with a span of a
//! service that matches the filters, newest first, and the signals of given traces.
//!
//! The spans are read newest first through each partition's (service, time) index, in pages,
//! until enough distinct traces are found: a search that finds its traces in the last minutes
//! of its range reads those minutes, not the range; the range's partitions are the only ones
//! opened (the time bounds are constants of the statement).

use std::collections::HashSet;

use chrono::{DateTime, TimeDelta, Utc};
use tokio_postgres::types::ToSql;
use uuid::Uuid;

use super::citus::Layout;
use super::{Store, StoreError};
use crate::model::payload::OPERATION_SQL;
use crate::model::StoredSignal;

/// Spans read per page of a search.
const PAGE: i64 = 2_000;

/// A log written inside a span is found up to this long after the search's range (a span that
/// started inside it may end later).
const LOG_REACH: TimeDelta = TimeDelta::hours(1);

/// One `key=value` tag: matched, as text, by a span's attribute, its resource's, its scope's,
/// one of its events', one of the tags the Jaeger mapping adds (`error`, `span.kind`,
/// `otel.status_code`, `otel.scope.name`), or an attribute of a log record written inside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagFilter {
    pub key: String,
    pub value: String,
}

/// A search; every filter but the service and the range is optional.
#[derive(Debug, Clone)]
pub struct TraceQuery {
    /// Any service when `None`.
    pub service: Option<String>,
    pub operation: Option<String>,
    pub tags: Vec<TagFilter>,
    pub min_duration_ms: Option<f64>,
    pub max_duration_ms: Option<f64>,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    /// Traces wanted.
    pub limit: usize,
}

impl TraceQuery {
    /// Whether every text could be stored: one with a NUL character (PostgreSQL's text cannot
    /// hold one) matches nothing.
    fn storable(&self) -> bool {
        let texts = self.service.iter().chain(&self.operation);
        let tags = self.tags.iter().flat_map(|t| [&t.key, &t.value]);
        !texts.chain(tags).any(|text| text.contains('\0'))
    }
}

/// A statement's parameters, numbered as they are added.
#[derive(Default)]
struct Params {
    values: Vec<Box<dyn ToSql + Sync + Send>>,
}

impl Params {
    /// `$n` standing for `value`.
    fn add(&mut self, value: impl ToSql + Sync + Send + 'static) -> String {
        self.values.push(Box::new(value));
        format!("${}", self.values.len())
    }

    fn refs(&self) -> Vec<&(dyn ToSql + Sync)> {
        self.values.iter().map(|v| v.as_ref() as &(dyn ToSql + Sync)).collect()
    }
}

/// The condition that the span `s` shares a resource and scope matching `condition` (on
/// `signal_shared`'s columns). A subquery of ids rather than a join: on Citus a join sends the
/// whole table of resources (on the coordinator) to every worker for every page, where this
/// sends only the ids matching.
fn shared_matches(condition: &str) -> String {
    format!("s.shared_id IN (SELECT shared_id FROM signal_shared WHERE {condition})")
}

/// The condition matching one tag on the span `s`.
fn tag_condition(tag: &TagFilter, params: &mut Params, log_range: (String, String)) -> String {
    let (k, v) = (params.add(tag.key.clone()), params.add(tag.value.clone()));
    let (from, to) = log_range;
    let synthesized = match tag.key.as_str() {
        "error" => Some(format!("(s.payload->>'status' = 'ERROR' AND {v} = 'true')")),
        "span.kind" => Some(format!("lower(s.payload->>'kind') = {v}")),
        "otel.status_code" => {
            Some(format!("(s.payload->>'status' <> 'UNSET' AND s.payload->>'status' = {v})"))
        }
        "otel.scope.name" => Some(shared_matches(&format!("scope->>'name' = {v}"))),
        "otel.scope.version" => Some(shared_matches(&format!("scope->>'version' = {v}"))),
        _ => None,
    };
    let mut any = vec![
        format!("s.payload->'attributes'->>{k} = {v}"),
        shared_matches(&format!("resource->>{k} = {v}")),
        format!(
            "(jsonb_typeof(s.payload->'events') = 'array' AND EXISTS (
                SELECT 1 FROM jsonb_array_elements(s.payload->'events') e WHERE e->'attributes'->>{k} = {v}))"
        ),
    ];
    any.extend(synthesized);
    // Last: the only branch that reads other rows.
    any.push(format!(
        r#"EXISTS (SELECT 1 FROM raw_signals l
                   WHERE l.trace_id = s.trace_id AND l.signal_type = 'log'
                     AND l."timestamp" >= {from} AND l."timestamp" <= {to}
                     AND (l.payload->>'span_id' = s.payload->>'span_id'
                          OR (l.payload->>'span_id' IS NULL AND s.payload->>'parent_span_id' IS NULL))
                     AND l.payload->'attributes'->>{k} = {v})"#
    ));
    format!("({})", any.join(" OR "))
}

/// A search's statements: its first page, the next pages (after `$n+1`, `$n+2`), and `$1…$n`.
fn statements(query: &TraceQuery, layout: Layout) -> (String, String, Params) {
    let mut params = Params::default();
    let (start, end) = (params.add(query.start), params.add(query.end));
    // The spans of the range only, hot or sealed: the blocks of other ranges are not opened.
    // On Citus nothing is sealed, and the rows are read where they are, on the workers, with
    // the conditions below (through the function, every span of the range came back first).
    let spans = match layout {
        Layout::Single => format!(
            "raw_signals_between('trace', {start}::timestamptz, {end}::timestamptz + interval '1 microsecond')"
        ),
        Layout::Distributed { .. } => "raw_signals".to_owned(),
    };
    let mut conditions = vec![
        "s.signal_type = 'trace'".to_owned(),
        format!(r#"s."timestamp" >= {start}"#),
        format!(r#"s."timestamp" <= {end}"#),
    ];
    if let Some(service) = &query.service {
        conditions.push(format!("s.service_name = {}", params.add(service.clone())));
    }
    if let Some(operation) = &query.operation {
        conditions.push(format!("{OPERATION_SQL} = {}", params.add(operation.clone())));
    }
    if let Some(min) = query.min_duration_ms {
        conditions.push(format!("(s.payload->>'duration_ms')::float8 >= {}", params.add(min)));
    }
    if let Some(max) = query.max_duration_ms {
        conditions.push(format!("(s.payload->>'duration_ms')::float8 <= {}", params.add(max)));
    }
    if !query.tags.is_empty() {
        let log_range = (params.add(query.start), params.add(query.end + LOG_REACH));
        for tag in &query.tags {
            conditions.push(tag_condition(tag, &mut params, log_range.clone()));
        }
    }
    let filters = conditions.join(" AND ");
    let (after_at, after_id) = (params.values.len() + 1, params.values.len() + 2);
    let select = format!(r#"SELECT s.trace_id, s."timestamp", s.id FROM {spans} s"#);
    let order = format!(r#"ORDER BY s."timestamp" DESC, s.id DESC LIMIT {PAGE}"#);
    let first = format!("{select} WHERE {filters} {order}");
    let next =
        format!(r#"{select} WHERE {filters} AND (s."timestamp", s.id) < (${after_at}, ${after_id}) {order}"#);
    (first, next, params)
}

impl Store {
    /// The plan of a search's first page (`EXPLAIN (FORMAT JSON)`), on the primary: which
    /// partitions and indexes it reads.
    pub async fn explain_search(&self, query: &TraceQuery) -> Result<serde_json::Value, StoreError> {
        let (first, _, params) = statements(query, self.settings.layout);
        let client = self.client().await?;
        Ok(client.query_one(&format!("EXPLAIN (FORMAT JSON) {first}"), &params.refs()).await?.try_get(0)?)
    }

    /// The ids of the traces matching `query`, the most recent span first, at most
    /// `query.limit`.
    pub async fn search_traces(&self, query: &TraceQuery) -> Result<Vec<String>, StoreError> {
        if !query.storable() {
            return Ok(Vec::new());
        }
        let (first, next, params) = statements(query, self.settings.layout);
        let client = self.read_client().await?;
        let mut found = Vec::new();
        let mut seen = HashSet::new();
        let mut after: Option<(DateTime<Utc>, Uuid)> = None;
        loop {
            let rows = match &after {
                None => client.query(&first, &params.refs()).await?,
                Some((at, id)) => {
                    let mut values = params.refs();
                    values.push(at);
                    values.push(id);
                    client.query(&next, &values).await?
                }
            };
            for row in &rows {
                let trace_id: String = row.try_get(0)?;
                if seen.insert(trace_id.clone()) {
                    found.push(trace_id);
                    if found.len() >= query.limit {
                        return Ok(found);
                    }
                }
            }
            match rows.last() {
                Some(last) if rows.len() as i64 == PAGE => after = Some((last.try_get(1)?, last.try_get(2)?)),
                _ => return Ok(found),
            }
        }
    }

    /// The signals of each of `trace_ids`, oldest first, at most `limit` per trace; a trace
    /// without signals is left out.
    pub async fn traces_signals(
        &self,
        trace_ids: &[String],
        limit: i64,
    ) -> Result<Vec<(String, Vec<StoredSignal>)>, StoreError> {
        let mut traces = Vec::with_capacity(trace_ids.len());
        for trace_id in trace_ids {
            let signals = self.trace_signals(trace_id, limit).await?;
            if !signals.is_empty() {
                traces.push((trace_id.clone(), signals));
            }
        }
        Ok(traces)
    }
}
