//! `ExportMetricsServiceRequest` from OTLP/JSON, every metric type. A point's value oneof is
//! read explicitly, so a bad value is an error naming its path, never a silently empty point.

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::metrics::v1::exponential_histogram_data_point::Buckets;
use opentelemetry_proto::tonic::metrics::v1::summary_data_point::ValueAtQuantile;
use opentelemetry_proto::tonic::metrics::v1::{
    exemplar, metric, number_data_point, AggregationTemporality, Exemplar, ExponentialHistogram,
    ExponentialHistogramDataPoint, Gauge, Histogram, HistogramDataPoint, Metric, NumberDataPoint,
    ResourceMetrics, ScopeMetrics, Sum, Summary, SummaryDataPoint,
};
use serde_json::Value;

use super::common::{key_values, resource, scope};
use super::reader::{JsonResult, Obj};

pub fn metrics_request(body: &Value) -> JsonResult<ExportMetricsServiceRequest> {
    let root = Obj::new(body, "$".to_owned())?;
    let mut request = ExportMetricsServiceRequest::default();
    for rm in root.objects("resourceMetrics")? {
        let mut resource_metrics = ResourceMetrics {
            resource: resource(&rm)?,
            schema_url: rm.string("schemaUrl")?,
            ..Default::default()
        };
        for sm in rm.objects("scopeMetrics")? {
            let metrics = sm.objects("metrics")?.iter().map(metric).collect::<JsonResult<_>>()?;
            resource_metrics.scope_metrics.push(ScopeMetrics {
                scope: scope(&sm)?,
                metrics,
                schema_url: sm.string("schemaUrl")?,
            });
        }
        request.resource_metrics.push(resource_metrics);
    }
    Ok(request)
}

fn temporality(o: &Obj) -> JsonResult<i32> {
    o.enumeration("aggregationTemporality", |n| AggregationTemporality::from_str_name(n).map(|t| t as i32))
}

fn metric(o: &Obj) -> JsonResult<Metric> {
    let data = if let Some(g) = o.object("gauge")? {
        Some(metric::Data::Gauge(Gauge { data_points: points(&g, number_point)? }))
    } else if let Some(s) = o.object("sum")? {
        Some(metric::Data::Sum(Sum {
            data_points: points(&s, number_point)?,
            aggregation_temporality: temporality(&s)?,
            is_monotonic: s.bool("isMonotonic")?,
        }))
    } else if let Some(h) = o.object("histogram")? {
        Some(metric::Data::Histogram(Histogram {
            data_points: points(&h, histogram_point)?,
            aggregation_temporality: temporality(&h)?,
        }))
    } else if let Some(e) = o.object("exponentialHistogram")? {
        Some(metric::Data::ExponentialHistogram(ExponentialHistogram {
            data_points: points(&e, exponential_point)?,
            aggregation_temporality: temporality(&e)?,
        }))
    } else if let Some(s) = o.object("summary")? {
        Some(metric::Data::Summary(Summary { data_points: points(&s, summary_point)? }))
    } else {
        // Left empty: the mapping counts the metric as rejected and says why.
        None
    };
    Ok(Metric {
        name: o.string("name")?,
        description: o.string("description")?,
        unit: o.string("unit")?,
        metadata: key_values(o, "metadata")?,
        data,
    })
}

fn points<T>(o: &Obj, read: fn(&Obj) -> JsonResult<T>) -> JsonResult<Vec<T>> {
    o.objects("dataPoints")?.iter().map(read).collect()
}

fn number_point(o: &Obj) -> JsonResult<NumberDataPoint> {
    let value = if o.has("asDouble") {
        Some(number_data_point::Value::AsDouble(o.f64("asDouble")?))
    } else if o.has("asInt") {
        Some(number_data_point::Value::AsInt(o.i64("asInt")?))
    } else {
        None
    };
    Ok(NumberDataPoint {
        attributes: key_values(o, "attributes")?,
        start_time_unix_nano: o.u64("startTimeUnixNano")?,
        time_unix_nano: o.u64("timeUnixNano")?,
        exemplars: exemplars(o)?,
        flags: o.u32("flags")?,
        value,
    })
}

fn histogram_point(o: &Obj) -> JsonResult<HistogramDataPoint> {
    Ok(HistogramDataPoint {
        attributes: key_values(o, "attributes")?,
        start_time_unix_nano: o.u64("startTimeUnixNano")?,
        time_unix_nano: o.u64("timeUnixNano")?,
        count: o.u64("count")?,
        sum: o.opt_f64("sum")?,
        bucket_counts: o.u64_list("bucketCounts")?,
        explicit_bounds: o.f64_list("explicitBounds")?,
        exemplars: exemplars(o)?,
        flags: o.u32("flags")?,
        min: o.opt_f64("min")?,
        max: o.opt_f64("max")?,
    })
}

fn exponential_point(o: &Obj) -> JsonResult<ExponentialHistogramDataPoint> {
    let buckets = |key: &str| -> JsonResult<Option<Buckets>> {
        match o.object(key)? {
            Some(b) => {
                Ok(Some(Buckets { offset: b.i32("offset")?, bucket_counts: b.u64_list("bucketCounts")? }))
            }
            None => Ok(None),
        }
    };
    Ok(ExponentialHistogramDataPoint {
        attributes: key_values(o, "attributes")?,
        start_time_unix_nano: o.u64("startTimeUnixNano")?,
        time_unix_nano: o.u64("timeUnixNano")?,
        count: o.u64("count")?,
        sum: o.opt_f64("sum")?,
        scale: o.i32("scale")?,
        zero_count: o.u64("zeroCount")?,
        positive: buckets("positive")?,
        negative: buckets("negative")?,
        flags: o.u32("flags")?,
        exemplars: exemplars(o)?,
        min: o.opt_f64("min")?,
        max: o.opt_f64("max")?,
        zero_threshold: o.f64("zeroThreshold")?,
    })
}

fn summary_point(o: &Obj) -> JsonResult<SummaryDataPoint> {
    let quantile_values = o
        .objects("quantileValues")?
        .iter()
        .map(|q| Ok(ValueAtQuantile { quantile: q.f64("quantile")?, value: q.f64("value")? }))
        .collect::<JsonResult<_>>()?;
    Ok(SummaryDataPoint {
        attributes: key_values(o, "attributes")?,
        start_time_unix_nano: o.u64("startTimeUnixNano")?,
        time_unix_nano: o.u64("timeUnixNano")?,
        count: o.u64("count")?,
        sum: o.f64("sum")?,
        quantile_values,
        flags: o.u32("flags")?,
    })
}

fn exemplars(o: &Obj) -> JsonResult<Vec<Exemplar>> {
    o.objects("exemplars")?
        .iter()
        .map(|e| {
            let value = if e.has("asDouble") {
                Some(exemplar::Value::AsDouble(e.f64("asDouble")?))
            } else if e.has("asInt") {
                Some(exemplar::Value::AsInt(e.i64("asInt")?))
            } else {
                None
            };
            Ok(Exemplar {
                filtered_attributes: key_values(e, "filteredAttributes")?,
                time_unix_nano: e.u64("timeUnixNano")?,
                span_id: e.hex_id("spanId")?,
                trace_id: e.hex_id("traceId")?,
                value,
            })
        })
        .collect()
}
