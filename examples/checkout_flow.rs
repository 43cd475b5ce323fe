//! A simulated checkout flow, instrumented with the OpenTelemetry Rust SDK and exported over
//! OTLP/gRPC (gzip) to ProdSentinel: three services (gateway -> payment -> inventory), one trace
//! per order, logs in span context, and two metrics. Every fourth order fails at the payment
//! step, deterministically: the payment span records an `exception` event and status ERROR,
//! the payment service logs an ERROR with `exception.*` attributes, and the gateway span fails.
//!
//! ```sh
//! cargo run --release                                  # the service, in another terminal
//! cargo run --example checkout_flow -- http://127.0.0.1:4317 8
//! curl 'localhost:8000/query/signals?service_name=payment&limit=5'
//! ```

use std::error::Error;
use std::time::Duration;

use opentelemetry::logs::{AnyValue, LogRecord as _, Logger as _, LoggerProvider as _, Severity};
use opentelemetry::metrics::MeterProvider as _;
use opentelemetry::trace::{Span as _, SpanKind, Status, TraceContextExt, Tracer as _, TracerProvider as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::{
    Compression, LogExporter, MetricExporter, SpanExporter, WithExportConfig, WithTonicConfig,
};
use opentelemetry_sdk::logs::SdkLoggerProvider;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;

type BoxError = Box<dyn Error + Send + Sync + 'static>;

/// What one run sent, so callers (and the integration test) can check what was stored.
#[derive(Debug, Default)]
pub struct CheckoutRun {
    /// Trace ids (lower-case hex) of the orders that succeeded.
    pub ok_traces: Vec<String>,
    /// Trace ids of the orders that failed at the payment step.
    pub failed_traces: Vec<String>,
}

/// One service's SDK pipelines: traces, logs and metrics, each to `endpoint`.
struct Service {
    traces: SdkTracerProvider,
    logs: SdkLoggerProvider,
    metrics: SdkMeterProvider,
}

impl Service {
    fn new(name: &'static str, endpoint: &str) -> Result<Service, BoxError> {
        let resource = Resource::builder().with_service_name(name).build();
        let spans = SpanExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint)
            .with_compression(Compression::Gzip)
            .build()?;
        let logs = LogExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint)
            .with_compression(Compression::Gzip)
            .build()?;
        let metrics = MetricExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint)
            .with_compression(Compression::Gzip)
            .build()?;
        Ok(Service {
            traces: SdkTracerProvider::builder()
                .with_resource(resource.clone())
                .with_batch_exporter(spans)
                .build(),
            logs: SdkLoggerProvider::builder()
                .with_resource(resource.clone())
                .with_batch_exporter(logs)
                .build(),
            metrics: SdkMeterProvider::builder()
                .with_resource(resource)
                .with_periodic_exporter(metrics)
                .build(),
        })
    }

    /// Emits a log record in the context of `cx`'s span.
    fn log(&self, cx: &Context, severity: Severity, message: &str, attributes: Vec<(&'static str, String)>) {
        let logger = self.logs.logger("checkout-flow");
        let mut record = logger.create_log_record();
        record.set_severity_number(severity);
        record.set_severity_text(severity.name());
        record.set_body(AnyValue::from(message.to_owned()));
        for (key, value) in attributes {
            record.add_attribute(key, value);
        }
        let span_context = cx.span().span_context().clone();
        record.set_trace_context(
            span_context.trace_id(),
            span_context.span_id(),
            Some(span_context.trace_flags()),
        );
        logger.emit(record);
    }

    /// Flushes everything to the endpoint and stops the pipelines.
    fn shutdown(self) -> Result<(), BoxError> {
        self.traces.shutdown()?;
        self.logs.shutdown()?;
        self.metrics.shutdown()?;
        Ok(())
    }
}

/// Runs `orders` checkouts against the OTLP/gRPC `endpoint` and flushes before returning.
pub async fn run(endpoint: &str, orders: u32) -> Result<CheckoutRun, BoxError> {
    let gateway = Service::new("gateway", endpoint)?;
    let payment = Service::new("payment", endpoint)?;
    let inventory = Service::new("inventory", endpoint)?;
    let meter = gateway.metrics.meter("checkout-flow");
    let requests = meter.u64_counter("checkout.requests").build();
    let duration = meter.f64_histogram("checkout.duration").with_unit("ms").build();

    let mut run = CheckoutRun::default();
    for order in 0..orders {
        let failing = order % 4 == 3;
        let gateway_tracer = gateway.traces.tracer("gateway");
        let mut root = gateway_tracer
            .span_builder("POST /checkout")
            .with_kind(SpanKind::Server)
            .with_attributes(vec![KeyValue::new("order.id", i64::from(order))])
            .start(&gateway_tracer);
        let root_cx = Context::current().with_remote_span_context(root.span_context().clone());
        let trace_id = root.span_context().trace_id().to_string();

        let payment_tracer = payment.traces.tracer("payment");
        let mut charge = payment_tracer
            .span_builder("charge card")
            .with_kind(SpanKind::Internal)
            .start_with_context(&payment_tracer, &root_cx);
        let charge_cx = Context::current().with_remote_span_context(charge.span_context().clone());
        tokio::time::sleep(Duration::from_millis(2)).await;
        if failing {
            let exception = vec![
                KeyValue::new("exception.type", "CardDeclined"),
                KeyValue::new("exception.message", format!("card declined for order {order}")),
                KeyValue::new(
                    "exception.stacktrace",
                    "at charge (payment.rs:42)\nat checkout (gateway.rs:7)",
                ),
            ];
            charge.add_event("exception", exception);
            charge.set_status(Status::error("card declined"));
            payment.log(
                &charge_cx,
                Severity::Error,
                &format!("payment failed for order {order}"),
                vec![
                    ("exception.type", "CardDeclined".to_owned()),
                    ("exception.message", format!("card declined for order {order}")),
                    (
                        "exception.stacktrace",
                        "at charge (payment.rs:42)\nat checkout (gateway.rs:7)".to_owned(),
                    ),
                ],
            );
            charge.end();
            root.set_status(Status::error("payment failed"));
            run.failed_traces.push(trace_id);
        } else {
            charge.set_status(Status::Ok);
            charge.end();
            let inventory_tracer = inventory.traces.tracer("inventory");
            let mut reserve = inventory_tracer.start_with_context("reserve stock", &root_cx);
            let reserve_cx = Context::current().with_remote_span_context(reserve.span_context().clone());
            inventory.log(&reserve_cx, Severity::Info, &format!("reserved stock for order {order}"), vec![]);
            reserve.end();
            root.set_status(Status::Ok);
            run.ok_traces.push(trace_id);
        }
        let outcome = if failing { "failed" } else { "ok" };
        requests.add(1, &[KeyValue::new("outcome", outcome)]);
        duration.record(if failing { 2500.0 } else { 120.0 }, &[KeyValue::new("outcome", outcome)]);
        root.end();
    }
    // The SDK's shutdown blocks while it exports; keep it off the async workers.
    tokio::task::spawn_blocking(move || -> Result<(), BoxError> {
        gateway.shutdown()?;
        payment.shutdown()?;
        inventory.shutdown()
    })
    .await??;
    Ok(run)
}

#[tokio::main]
#[allow(dead_code)]
async fn main() -> Result<(), BoxError> {
    let mut args = std::env::args().skip(1);
    let endpoint = args.next().unwrap_or_else(|| "http://127.0.0.1:4317".to_owned());
    let orders = args.next().map(|n| n.parse()).transpose()?.unwrap_or(8);
    let run = run(&endpoint, orders).await?;
    println!(
        "sent {} orders to {endpoint}: {} ok, {} failed (traces {:?})",
        orders,
        run.ok_traces.len(),
        run.failed_traces.len(),
        run.failed_traces
    );
    Ok(())
}
