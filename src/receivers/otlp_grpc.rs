//! OTLP/gRPC on `OTLP_GRPC_ADDR`: the Trace, Logs and Metrics `Export` services, accepting
//! gzip, zstd and deflate, with messages up to `OTLP_MAX_MESSAGE_BYTES`. OK is answered only
//! after the signals are committed; rejected records come back as partial success.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use chrono::Utc;
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::{LogsService, LogsServiceServer};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsPartialSuccess, ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use tonic::codec::CompressionEncoding;
use tonic::service::interceptor::InterceptedService;
use tonic::{Request, Response, Status};
use tower::{Layer, Service};

use crate::error::{client_message, Reject};
use crate::ingest::{Accepted, Ingest};
use crate::mapping::otlp::{logs_to_signals, metrics_to_signals, spans_to_signals, Mapped};
use crate::mapping::MappingOptions;
use crate::model::SignalType;
use crate::telemetry::metrics::Transport;

/// The three OTLP services, sharing one ingest path.
#[derive(Clone)]
pub struct OtlpGrpc {
    pub ingest: Ingest,
    pub options: MappingOptions,
    pub max_message_bytes: usize,
    /// Exports decoded at once; more wait before decoding (`OTLP_MAX_CONCURRENT_EXPORTS`).
    pub max_concurrent_exports: usize,
    /// `INGEST_TOKENS`, checked on the `authorization` metadata when any is configured.
    pub tokens: crate::auth::Tokens,
    pub metrics: std::sync::Arc<crate::telemetry::metrics::Metrics>,
}

const ENCODINGS: [CompressionEncoding; 3] =
    [CompressionEncoding::Gzip, CompressionEncoding::Zstd, CompressionEncoding::Deflate];

impl OtlpGrpc {
    /// Serves on `listener` (over TLS with `tls`) until `shutdown` resolves, then lets in-flight
    /// calls finish.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send,
        tls: Option<tonic::transport::ServerTlsConfig>,
    ) -> Result<(), tonic::transport::Error> {
        let (max, concurrency, tokens) =
            (self.max_message_bytes, self.max_concurrent_exports, self.tokens.clone());
        let recorder = self.metrics.clone();
        let mut traces = TraceServiceServer::new(self.clone()).max_decoding_message_size(max);
        let mut logs = LogsServiceServer::new(self.clone()).max_decoding_message_size(max);
        let mut metrics = MetricsServiceServer::new(self).max_decoding_message_size(max);
        for encoding in ENCODINGS {
            traces = traces.accept_compressed(encoding);
            logs = logs.accept_compressed(encoding);
            metrics = metrics.accept_compressed(encoding);
        }
        let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
        let check = move |request: Request<()>| {
            let authorization = request.metadata().get("authorization").map(|v| v.as_bytes());
            let authorization = authorization.and_then(|bytes| http::HeaderValue::from_bytes(bytes).ok());
            if tokens.allows(authorization.as_ref()) {
                Ok(request)
            } else {
                Err(Status::unauthenticated("missing or invalid bearer token"))
            }
        };
        let mut server = tonic::transport::Server::builder();
        if let Some(tls) = tls {
            server = server.tls_config(tls)?;
        }
        server
            .layer(OtlpStatusLayer { metrics: recorder })
            .layer(tower::limit::GlobalConcurrencyLimitLayer::new(concurrency))
            .add_service(InterceptedService::new(traces, check.clone()))
            .add_service(InterceptedService::new(logs, check.clone()))
            .add_service(InterceptedService::new(metrics, check))
            .serve_with_incoming_shutdown(incoming, shutdown)
            .await
    }

    async fn store(&self, signal_type: SignalType, mapped: Mapped) -> Result<Accepted, Status> {
        self.ingest.submit_mapped(Transport::otlp_grpc, signal_type, mapped).await.map_err(|error| {
            tracing::warn!(error = %crate::api::error::error_chain(&error), "otlp/grpc export failed");
            Status::new(Reject::from(&error).grpc_code(), client_message(&error))
        })
    }
}

#[tonic::async_trait]
impl TraceService for OtlpGrpc {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        let accepted = self
            .store(SignalType::Trace, spans_to_signals(request.get_ref(), Utc::now(), &self.options))
            .await?;
        let partial_success = accepted.rejection_message.map(|error_message| ExportTracePartialSuccess {
            rejected_spans: accepted.rejected as i64,
            error_message,
        });
        Ok(Response::new(ExportTraceServiceResponse { partial_success }))
    }
}

#[tonic::async_trait]
impl LogsService for OtlpGrpc {
    async fn export(
        &self,
        request: Request<ExportLogsServiceRequest>,
    ) -> Result<Response<ExportLogsServiceResponse>, Status> {
        let accepted = self
            .store(SignalType::Log, logs_to_signals(request.get_ref(), Utc::now(), &self.options))
            .await?;
        let partial_success = accepted.rejection_message.map(|error_message| ExportLogsPartialSuccess {
            rejected_log_records: accepted.rejected as i64,
            error_message,
        });
        Ok(Response::new(ExportLogsServiceResponse { partial_success }))
    }
}

#[tonic::async_trait]
impl MetricsService for OtlpGrpc {
    async fn export(
        &self,
        request: Request<ExportMetricsServiceRequest>,
    ) -> Result<Response<ExportMetricsServiceResponse>, Status> {
        let accepted = self
            .store(SignalType::Metric, metrics_to_signals(request.get_ref(), Utc::now(), &self.options))
            .await?;
        let partial_success = accepted.rejection_message.map(|error_message| ExportMetricsPartialSuccess {
            rejected_data_points: accepted.rejected as i64,
            error_message,
        });
        Ok(Response::new(ExportMetricsServiceResponse { partial_success }))
    }
}

/// Rewrites two codes tonic picks before our handlers run, which OTLP clients misread:
/// an oversized message is OUT_OF_RANGE in tonic, which clients retry forever, so it becomes
/// RESOURCE_EXHAUSTED (without RetryInfo: not retried); an undecodable message is INTERNAL in
/// tonic-prost, which becomes INVALID_ARGUMENT. Both arrive as trailers-only responses, so the
/// status is in the response headers.
/// It also records each call's latency, by method and final code.
#[derive(Clone)]
struct OtlpStatusLayer {
    metrics: std::sync::Arc<crate::telemetry::metrics::Metrics>,
}

impl<S> Layer<S> for OtlpStatusLayer {
    type Service = OtlpStatus<S>;

    fn layer(&self, inner: S) -> OtlpStatus<S> {
        OtlpStatus { inner, metrics: self.metrics.clone() }
    }
}

#[derive(Clone)]
struct OtlpStatus<S> {
    inner: S,
    metrics: std::sync::Arc<crate::telemetry::metrics::Metrics>,
}

impl<S, ReqBody, ResBody> Service<http::Request<ReqBody>> for OtlpStatus<S>
where
    S: Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<ReqBody>) -> Self::Future {
        let started = std::time::Instant::now();
        let method = request.uri().path().to_owned();
        let recorder = self.metrics.clone();
        let future = self.inner.call(request);
        Box::pin(async move {
            let mut response = future.await?;
            fix_status(response.headers_mut());
            // Unary calls: the handler has finished once the headers are out. A success carries
            // its code in the trailers, an error (trailers-only) in the headers.
            let code = response
                .headers()
                .get(Status::GRPC_STATUS)
                .map_or(tonic::Code::Ok, |code| tonic::Code::from_bytes(code.as_bytes()));
            recorder.observe_request(&method, "POST", &format!("{code:?}"), started.elapsed().as_secs_f64());
            Ok(response)
        })
    }
}

fn fix_status(headers: &mut http::HeaderMap) {
    let Some(code) = headers.get(Status::GRPC_STATUS) else {
        return;
    };
    let message = headers.get("grpc-message").map(|m| m.as_bytes().to_vec()).unwrap_or_default();
    let message = String::from_utf8_lossy(&message).replace("%20", " ");
    let replacement = match code.as_bytes() {
        b"11" if message.contains("message length too large") => tonic::Code::ResourceExhausted,
        b"13" if message.contains("failed to decode Protobuf message") => tonic::Code::InvalidArgument,
        _ => return,
    };
    headers.insert(Status::GRPC_STATUS, http::HeaderValue::from(replacement as i32));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(code: &str, message: &str) -> http::HeaderMap {
        let mut headers = http::HeaderMap::new();
        headers.insert(Status::GRPC_STATUS, http::HeaderValue::from_str(code).unwrap());
        headers.insert("grpc-message", http::HeaderValue::from_str(message).unwrap());
        headers
    }

    #[test]
    fn oversized_message_becomes_resource_exhausted() {
        let mut h =
            headers("11", "Error, decoded message length too large: found 9 bytes, the limit is: 4 bytes");
        fix_status(&mut h);
        assert_eq!(h[Status::GRPC_STATUS], "8");
    }

    #[test]
    fn undecodable_message_becomes_invalid_argument() {
        let mut h = headers("13", "failed%20to%20decode%20Protobuf%20message: invalid varint");
        fix_status(&mut h);
        assert_eq!(h[Status::GRPC_STATUS], "3");
    }

    #[test]
    fn other_statuses_are_left_alone() {
        let mut h = headers("13", "internal error");
        fix_status(&mut h);
        assert_eq!(h[Status::GRPC_STATUS], "13");
        let mut h = headers("14", "storage temporarily unavailable");
        fix_status(&mut h);
        assert_eq!(h[Status::GRPC_STATUS], "14");
    }
}
