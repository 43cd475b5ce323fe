//! Metric data points -> `metric` signals, one per point, each payload written straight from
//! the point.
//!
//! `value` is the number for gauges and sums, and the sum for histograms, exponential histograms
//! and summaries (count, min, max, buckets or quantiles alongside). A point flagged
//! NO_RECORDED_VALUE is stored with a `null` value, not 0. Rejected, and counted: a metric
//! without data, a gauge or sum point without a value, and points of a sum or histogram whose
//! aggregation temporality is unspecified (metrics.proto: it "MUST not be used").

use chrono::{DateTime, Utc};
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use std::sync::Arc;

use opentelemetry_proto::tonic::metrics::v1::{
    exemplar, metric, number_data_point, AggregationTemporality, Exemplar, ExponentialHistogramDataPoint,
    HistogramDataPoint, Metric, SummaryDataPoint,
};
use prost::Message;

use super::attributes::{service_name, shared_part, write_attributes};
use super::ids::{hex, point_signal_id, valid_id};
use super::{finish, first_known_time, limited, time_from_nanos, Mapped};
use crate::mapping::json_out::JsonOut;
use crate::mapping::text::without_nul;
use crate::mapping::{trace_or_correlation_key, MappingOptions};
use crate::model::payload::{keys, Facts, Shared};
use crate::model::time::format_timestamp;
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
    value: Num,
    /// Kind-specific fields (temporality, count, buckets, …).
    extra: Extra<'a>,
}

/// A point's `value`.
#[derive(Clone, Copy)]
enum Num {
    Null,
    Int(i64),
    Double(f64),
}

impl Num {
    fn optional(x: Option<f64>) -> Num {
        x.map_or(Num::Null, Num::Double)
    }

    fn write(self, out: &mut JsonOut) {
        match self {
            Num::Null => out.null(),
            Num::Int(i) => out.i64(i),
            Num::Double(d) => out.f64(d),
        }
    }

    /// As the rules read it: a number, or nothing (null, or a non-finite double stored as text).
    fn as_f64(self) -> Option<f64> {
        match self {
            Num::Null => None,
            Num::Int(i) => Some(i as f64),
            Num::Double(d) => d.is_finite().then_some(d),
        }
    }
}

/// The fields of each kind of point beside the common ones.
enum Extra<'a> {
    Number { temporality: Option<&'static str>, monotonic: Option<bool>, value_type: Option<&'static str> },
    Histogram { temporality: &'static str, point: &'a HistogramDataPoint },
    Exponential { temporality: &'static str, point: &'a ExponentialHistogramDataPoint },
    Summary { point: &'a SummaryDataPoint },
}

impl Extra<'_> {
    fn write(&self, out: &mut JsonOut) {
        match self {
            Extra::Number { temporality, monotonic, value_type } => {
                if let Some(temporality) = temporality {
                    out.field_str("temporality", temporality);
                }
                if let Some(monotonic) = monotonic {
                    out.key("monotonic");
                    out.bool(*monotonic);
                }
                if let Some(value_type) = value_type {
                    out.field_str("value_type", value_type);
                }
            }
            Extra::Histogram { temporality, point } => {
                out.field_str("temporality", temporality);
                distribution(out, point.count, point.sum, point.min, point.max);
                out.key("bucket_counts");
                u64_list(out, &point.bucket_counts);
                out.key("explicit_bounds");
                out.begin_array();
                point.explicit_bounds.iter().for_each(|b| out.f64(*b));
                out.end_array();
            }
            Extra::Exponential { temporality, point } => {
                out.field_str("temporality", temporality);
                distribution(out, point.count, point.sum, point.min, point.max);
                out.key("scale");
                out.i64(i64::from(point.scale));
                out.key("zero_count");
                out.u64(point.zero_count);
                out.key("zero_threshold");
                out.f64(point.zero_threshold);
                for (key, buckets) in [("positive", &point.positive), ("negative", &point.negative)] {
                    out.key(key);
                    match buckets {
                        Some(buckets) => {
                            out.begin_object();
                            out.key("offset");
                            out.i64(i64::from(buckets.offset));
                            out.key("bucket_counts");
                            u64_list(out, &buckets.bucket_counts);
                            out.end_object();
                        }
                        None => out.null(),
                    }
                }
            }
            Extra::Summary { point } => {
                // Summaries are cumulative by definition (metrics.proto).
                out.field_str("temporality", "CUMULATIVE");
                out.key("count");
                out.u64(point.count);
                out.key("sum");
                out.f64(point.sum);
                out.key("quantiles");
                out.begin_array();
                for q in &point.quantile_values {
                    out.begin_object();
                    out.key("quantile");
                    out.f64(q.quantile);
                    out.key(keys::VALUE);
                    out.f64(q.value);
                    out.end_object();
                }
                out.end_array();
            }
        }
    }
}

fn u64_list(out: &mut JsonOut, values: &[u64]) {
    out.begin_array();
    values.iter().for_each(|v| out.u64(*v));
    out.end_array();
}

/// `count`, `sum`, `min`, `max` of a histogram point (absent ones as `null`).
fn distribution(out: &mut JsonOut, count: u64, sum: Option<f64>, min: Option<f64>, max: Option<f64>) {
    out.key("count");
    out.u64(count);
    for (key, x) in [("sum", sum), ("min", min), ("max", max)] {
        out.key(key);
        Num::optional(x).write(out);
    }
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
                push(mapped, number_point("gauge", point, None, None).map(|p| context.signal(p)), name);
            }
        }
        metric::Data::Sum(sum) => {
            for point in &sum.data_points {
                let point = temporality(sum.aggregation_temporality)
                    .and_then(|t| number_point("sum", point, Some(t), Some(sum.is_monotonic)));
                push(mapped, point.map(|p| context.signal(p)), name);
            }
        }
        metric::Data::Histogram(histogram) => {
            for point in &histogram.data_points {
                let point = temporality(histogram.aggregation_temporality).map(|temporality| Point {
                    kind: "histogram",
                    encoded: point.encode_to_vec(),
                    attributes: &point.attributes,
                    start_time_unix_nano: point.start_time_unix_nano,
                    time_unix_nano: point.time_unix_nano,
                    exemplars: &point.exemplars,
                    flags: point.flags,
                    value: Num::optional(point.sum),
                    extra: Extra::Histogram { temporality, point },
                });
                push(mapped, point.map(|p| context.signal(p)), name);
            }
        }
        metric::Data::ExponentialHistogram(histogram) => {
            for point in &histogram.data_points {
                let point = temporality(histogram.aggregation_temporality).map(|temporality| Point {
                    kind: "exponential_histogram",
                    encoded: point.encode_to_vec(),
                    attributes: &point.attributes,
                    start_time_unix_nano: point.start_time_unix_nano,
                    time_unix_nano: point.time_unix_nano,
                    exemplars: &point.exemplars,
                    flags: point.flags,
                    value: Num::optional(point.sum),
                    extra: Extra::Exponential { temporality, point },
                });
                push(mapped, point.map(|p| context.signal(p)), name);
            }
        }
        metric::Data::Summary(summary) => {
            for point in &summary.data_points {
                let point = Point {
                    kind: "summary",
                    encoded: point.encode_to_vec(),
                    attributes: &point.attributes,
                    start_time_unix_nano: point.start_time_unix_nano,
                    time_unix_nano: point.time_unix_nano,
                    exemplars: &[],
                    flags: point.flags,
                    value: Num::Double(point.sum),
                    extra: Extra::Summary { point },
                };
                mapped.signals.push(context.signal(point));
            }
        }
    }
}

fn push(mapped: &mut Mapped, point: Result<Signal, String>, metric_name: &str) {
    match point {
        Ok(signal) => mapped.signals.push(signal),
        Err(why) => mapped.reject(format!("metric {metric_name:?}: {why}")),
    }
}

/// The aggregation temporality's name, or why the point is invalid.
fn temporality(temporality: i32) -> Result<&'static str, String> {
    match AggregationTemporality::try_from(temporality) {
        Ok(AggregationTemporality::Delta) => Ok("DELTA"),
        Ok(AggregationTemporality::Cumulative) => Ok("CUMULATIVE"),
        _ => Err("aggregation temporality is unspecified".to_owned()),
    }
}

fn number_point<'a>(
    kind: &'static str,
    point: &'a opentelemetry_proto::tonic::metrics::v1::NumberDataPoint,
    temporality: Option<&'static str>,
    monotonic: Option<bool>,
) -> Result<Point<'a>, String> {
    let (value, value_type) = match point.value {
        Some(number_data_point::Value::AsDouble(d)) => (Num::Double(d), Some("double")),
        Some(number_data_point::Value::AsInt(i)) => (Num::Int(i), Some("int")),
        None if point.flags & NO_RECORDED_VALUE != 0 => (Num::Null, None),
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
        extra: Extra::Number { temporality, monotonic, value_type },
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
        let value = if no_recorded_value { Num::Null } else { point.value };
        let limits = self.options.limits;

        // Keys holding their default are left out (model::payload::OTLP_DEFAULTS).
        let mut out = JsonOut::new(limits, 384);
        out.begin_object();
        out.field_str(keys::METRIC_NAME, &self.metric.name);
        out.key(keys::VALUE);
        value.write(&mut out);
        out.field_str("unit", &self.metric.unit);
        if !self.metric.description.is_empty() {
            out.field_str("description", &self.metric.description);
        }
        out.field_str("kind", point.kind);
        point.extra.write(&mut out);
        out.key(keys::ATTRIBUTES);
        write_attributes(&mut out, keys::ATTRIBUTES, point.attributes);
        out.key("start_time");
        write_time(&mut out, point.start_time_unix_nano);
        out.field_str("time_unix_nano", itoa::Buffer::new().format(point.time_unix_nano));
        if point.flags != 0 {
            out.key("flags");
            out.u64(u64::from(point.flags));
        }
        out.key("no_recorded_value");
        out.bool(no_recorded_value);
        if !point.exemplars.is_empty() {
            out.key("exemplars");
            out.begin_array();
            point.exemplars.iter().for_each(|e| write_exemplar(&mut out, e));
            out.end_array();
        }
        let payload = finish(out, self.shared);
        let facts = Facts {
            text: Some(limited(&self.metric.name, limits)),
            value: value.as_f64(),
            ..Facts::default()
        };
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

/// RFC 3339 text of an OTLP time, `null` when unknown.
fn write_time(out: &mut JsonOut, nanos: u64) {
    match time_from_nanos(nanos) {
        Some(time) => out.str(&format_timestamp(&time)),
        None => out.null(),
    }
}

fn write_exemplar(out: &mut JsonOut, e: &Exemplar) {
    out.begin_object();
    for (key, id, len) in [("trace_id", &e.trace_id, 16), ("span_id", &e.span_id, 8)] {
        out.key(key);
        if valid_id(id, len) {
            out.str(&hex(id));
        } else {
            out.null();
        }
    }
    out.key("time");
    write_time(out, e.time_unix_nano);
    out.key(keys::VALUE);
    match e.value {
        Some(exemplar::Value::AsDouble(d)) => out.f64(d),
        Some(exemplar::Value::AsInt(i)) => out.i64(i),
        None => out.null(),
    }
    out.key("filtered_attributes");
    write_attributes(out, "filtered_attributes", &e.filtered_attributes);
    out.end_object();
}
