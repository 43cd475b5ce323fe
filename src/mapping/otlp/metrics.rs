//! Metric data points -> `metric` signals, one per point.
//!
//! `value` is the number for gauges and sums, and the sum for histograms, exponential histograms
//! and summaries (count, min, max, buckets or quantiles alongside). A point flagged
//! NO_RECORDED_VALUE is stored with a `null` value, not 0. Rejected, and counted: a metric
//! without data, a gauge or sum point without a value, and points of a sum or histogram whose
//! aggregation temporality is unspecified (metrics.proto: it "MUST not be used").

use chrono::{DateTime, Utc};
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::metrics::v1::{
    exemplar, metric, number_data_point, AggregationTemporality, Exemplar, Metric,
};
use prost::Message;
use serde_json::{json, Map, Value};

use std::sync::Arc;

use super::attributes::{attributes_json, f64_json, service_name, shared_part};
use super::ids::{hex, point_signal_id, valid_id};
use super::{first_known_time, nanos_json, time_json, tree_payload, Mapped};
use crate::mapping::text::without_nul;
use crate::mapping::{trace_or_correlation_key, MappingOptions};
use crate::model::payload::Shared;
use crate::model::{Signal, SignalType};

/// `flags & 1`: the point marks a series as stale and carries no value.
const NO_RECORDED_VALUE: u32 = 1;

pub fn metrics_to_signals(
    request: &ExportMetricsServiceRequest,
    received_at: DateTime<Utc>,
    options: &MappingOptions,
) -> Mapped {
    let mut mapped = Mapped::with_capacity(point_count(request));
    for resource_metrics in &request.resource_metrics {
        let resource = resource_metrics.resource.as_ref();
        let service = without_nul(service_name(resource));
        let resource_bytes = resource.map(Message::encode_to_vec).unwrap_or_default();
        for scope_metrics in &resource_metrics.scope_metrics {
            let scope_bytes = scope_metrics.scope.as_ref().map(Message::encode_to_vec).unwrap_or_default();
            let shared = shared_part(resource, scope_metrics.scope.as_ref(), options.limits);
            for metric in &scope_metrics.metrics {
                let descriptor = Metric { data: None, ..metric.clone() }.encode_to_vec();
                let context = Context {
                    service: &service,
                    shared: &shared,
                    identity: [&resource_bytes, &scope_bytes, &descriptor],
                    metric,
                    received_at,
                    options,
                };
                map_metric(&context, &mut mapped);
            }
        }
    }
    mapped
}

fn point_count(request: &ExportMetricsServiceRequest) -> usize {
    let metrics = request.resource_metrics.iter().flat_map(|r| &r.scope_metrics).flat_map(|s| &s.metrics);
    metrics
        .map(|m| match &m.data {
            Some(metric::Data::Gauge(g)) => g.data_points.len(),
            Some(metric::Data::Sum(s)) => s.data_points.len(),
            Some(metric::Data::Histogram(h)) => h.data_points.len(),
            Some(metric::Data::ExponentialHistogram(e)) => e.data_points.len(),
            Some(metric::Data::Summary(s)) => s.data_points.len(),
            None => 0,
        })
        .sum()
}

struct Context<'a> {
    service: &'a str,
    shared: &'a Arc<Shared>,
    /// Encoded resource, scope and metric descriptor: the point's identity is these plus itself.
    identity: [&'a [u8]; 3],
    metric: &'a Metric,
    received_at: DateTime<Utc>,
    options: &'a MappingOptions,
}

/// What every kind of point shares, read by [`Context::signal`].
struct Point<'a> {
    kind: &'static str,
    encoded: Vec<u8>,
    attributes: &'a [KeyValue],
    start_time_unix_nano: u64,
    time_unix_nano: u64,
    exemplars: &'a [Exemplar],
    flags: u32,
    value: Value,
    /// Kind-specific fields (temporality, count, buckets, …).
    extra: Map<String, Value>,
}

fn map_metric(context: &Context, mapped: &mut Mapped) {
    let name = &context.metric.name;
    let Some(data) = &context.metric.data else {
        mapped.reject(format!(
            "metric {name:?} has no data (gauge, sum, histogram, exponential histogram or summary)"
        ));
        return;
    };
    match data {
        metric::Data::Gauge(gauge) => {
            for point in &gauge.data_points {
                push(mapped, number_point("gauge", point, Map::new()).map(|p| context.signal(p)), name);
            }
        }
        metric::Data::Sum(sum) => {
            for point in &sum.data_points {
                let extra = temporality_fields(sum.aggregation_temporality, Some(sum.is_monotonic));
                let point = extra.and_then(|extra| number_point("sum", point, extra));
                push(mapped, point.map(|p| context.signal(p)), name);
            }
        }
        metric::Data::Histogram(histogram) => {
            for point in &histogram.data_points {
                let point = temporality_fields(histogram.aggregation_temporality, None).map(|mut extra| {
                    let value = distribution(&mut extra, point.count, point.sum, point.min, point.max);
                    extra.insert("bucket_counts".into(), json!(point.bucket_counts));
                    extra.insert(
                        "explicit_bounds".into(),
                        point.explicit_bounds.iter().copied().map(f64_json).collect(),
                    );
                    Point {
                        kind: "histogram",
                        encoded: point.encode_to_vec(),
                        attributes: &point.attributes,
                        start_time_unix_nano: point.start_time_unix_nano,
                        time_unix_nano: point.time_unix_nano,
                        exemplars: &point.exemplars,
                        flags: point.flags,
                        value,
                        extra,
                    }
                });
                push(mapped, point.map(|p| context.signal(p)), name);
            }
        }
        metric::Data::ExponentialHistogram(histogram) => {
            for point in &histogram.data_points {
                let point = temporality_fields(histogram.aggregation_temporality, None).map(|mut extra| {
                    let buckets = |b: &Option<_>| match b {
                        Some(opentelemetry_proto::tonic::metrics::v1::exponential_histogram_data_point::Buckets {
                            offset,
                            bucket_counts,
                        }) => json!({"offset": offset, "bucket_counts": bucket_counts}),
                        None => Value::Null,
                    };
                    let value = distribution(&mut extra, point.count, point.sum, point.min, point.max);
                    extra.insert("scale".into(), json!(point.scale));
                    extra.insert("zero_count".into(), json!(point.zero_count));
                    extra.insert("zero_threshold".into(), f64_json(point.zero_threshold));
                    extra.insert("positive".into(), buckets(&point.positive));
                    extra.insert("negative".into(), buckets(&point.negative));
                    Point {
                        kind: "exponential_histogram",
                        encoded: point.encode_to_vec(),
                        attributes: &point.attributes,
                        start_time_unix_nano: point.start_time_unix_nano,
                        time_unix_nano: point.time_unix_nano,
                        exemplars: &point.exemplars,
                        flags: point.flags,
                        value,
                        extra,
                    }
                });
                push(mapped, point.map(|p| context.signal(p)), name);
            }
        }
        metric::Data::Summary(summary) => {
            for point in &summary.data_points {
                let mut extra = Map::new();
                // Summaries are cumulative by definition (metrics.proto).
                extra.insert("temporality".into(), json!("CUMULATIVE"));
                extra.insert("count".into(), json!(point.count));
                extra.insert("sum".into(), f64_json(point.sum));
                extra.insert(
                    "quantiles".into(),
                    point
                        .quantile_values
                        .iter()
                        .map(|q| json!({"quantile": f64_json(q.quantile), "value": f64_json(q.value)}))
                        .collect(),
                );
                let point = Point {
                    kind: "summary",
                    encoded: point.encode_to_vec(),
                    attributes: &point.attributes,
                    start_time_unix_nano: point.start_time_unix_nano,
                    time_unix_nano: point.time_unix_nano,
                    exemplars: &[],
                    flags: point.flags,
                    value: f64_json(point.sum),
                    extra,
                };
                mapped.signals.push(context.signal(point));
            }
        }
    }
}

/// `count`, `sum`, `min`, `max` of a histogram point (absent ones as `null`); returns the
/// point's `value`, its sum.
fn distribution(
    extra: &mut Map<String, Value>,
    count: u64,
    sum: Option<f64>,
    min: Option<f64>,
    max: Option<f64>,
) -> Value {
    let optional = |x: Option<f64>| x.map_or(Value::Null, f64_json);
    extra.insert("count".into(), json!(count));
    extra.insert("sum".into(), optional(sum));
    extra.insert("min".into(), optional(min));
    extra.insert("max".into(), optional(max));
    optional(sum)
}

fn push(mapped: &mut Mapped, point: Result<Signal, String>, metric_name: &str) {
    match point {
        Ok(signal) => mapped.signals.push(signal),
        Err(why) => mapped.reject(format!("metric {metric_name:?}: {why}")),
    }
}

/// `temporality` (and `monotonic` for sums), or why the point is invalid.
fn temporality_fields(temporality: i32, monotonic: Option<bool>) -> Result<Map<String, Value>, String> {
    let name = match AggregationTemporality::try_from(temporality) {
        Ok(AggregationTemporality::Delta) => "DELTA",
        Ok(AggregationTemporality::Cumulative) => "CUMULATIVE",
        _ => return Err("aggregation temporality is unspecified".to_owned()),
    };
    let mut fields = Map::new();
    fields.insert("temporality".into(), json!(name));
    if let Some(monotonic) = monotonic {
        fields.insert("monotonic".into(), json!(monotonic));
    }
    Ok(fields)
}

fn number_point<'a>(
    kind: &'static str,
    point: &'a opentelemetry_proto::tonic::metrics::v1::NumberDataPoint,
    mut extra: Map<String, Value>,
) -> Result<Point<'a>, String> {
    let value = match point.value {
        Some(number_data_point::Value::AsDouble(d)) => {
            extra.insert("value_type".into(), json!("double"));
            f64_json(d)
        }
        Some(number_data_point::Value::AsInt(i)) => {
            extra.insert("value_type".into(), json!("int"));
            json!(i)
        }
        None if point.flags & NO_RECORDED_VALUE != 0 => Value::Null,
        None => return Err("data point has no value (asDouble or asInt)".to_owned()),
    };
    Ok(Point {
        kind,
        encoded: point.encode_to_vec(),
        attributes: &point.attributes,
        start_time_unix_nano: point.start_time_unix_nano,
        time_unix_nano: point.time_unix_nano,
        exemplars: &point.exemplars,
        flags: point.flags,
        value,
        extra,
    })
}

impl Context<'_> {
    fn signal(&self, point: Point) -> Signal {
        // The point's time, else the start of its aggregation, else when we received it.
        let known = first_known_time(&[point.time_unix_nano, point.start_time_unix_nano]);
        let timestamp = known.unwrap_or(self.received_at);
        // An exemplar links the point to a trace: the first valid one gives its trace id.
        let trace_id = point.exemplars.iter().find(|e| valid_id(&e.trace_id, 16)).map(|e| hex(&e.trace_id));
        let no_recorded_value = point.flags & NO_RECORDED_VALUE != 0;
        let value = if no_recorded_value { Value::Null } else { point.value };

        let mut payload = Map::new();
        payload.insert("metric_name".into(), json!(self.metric.name));
        payload.insert("value".into(), value);
        payload.insert("unit".into(), json!(self.metric.unit));
        payload.insert("description".into(), json!(self.metric.description));
        payload.insert("kind".into(), json!(point.kind));
        payload.extend(point.extra);
        payload.insert("attributes".into(), Value::Object(attributes_json(point.attributes)));
        payload.insert("start_time".into(), time_json(point.start_time_unix_nano));
        payload.insert("time_unix_nano".into(), nanos_json(point.time_unix_nano));
        payload.insert("flags".into(), json!(point.flags));
        payload.insert("no_recorded_value".into(), json!(no_recorded_value));
        payload.insert("exemplars".into(), point.exemplars.iter().map(exemplar_json).collect());
        let (payload, facts) = tree_payload(SignalType::Metric, payload, self.shared, self.options.limits);
        let [resource, scope, descriptor] = self.identity;
        Signal {
            signal_id: point_signal_id(&[resource, scope, descriptor, &point.encoded]),
            signal_type: SignalType::Metric,
            trace_id: trace_or_correlation_key(trace_id, self.service, timestamp, self.options),
            service_name: self.service.to_owned(),
            timestamp,
            payload,
            facts,
            shared: Some(self.shared.clone()),
            time_unknown: known.is_none(),
        }
    }
}

fn exemplar_json(e: &Exemplar) -> Value {
    let value = match e.value {
        Some(exemplar::Value::AsDouble(d)) => f64_json(d),
        Some(exemplar::Value::AsInt(i)) => json!(i),
        None => Value::Null,
    };
    json!({
        "trace_id": valid_id(&e.trace_id, 16).then(|| hex(&e.trace_id)),
        "span_id": valid_id(&e.span_id, 8).then(|| hex(&e.span_id)),
        "time": time_json(e.time_unix_nano),
        "value": value,
        "filtered_attributes": attributes_json(&e.filtered_attributes),
    })
}
