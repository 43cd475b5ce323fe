//! OTLP/gRPC on `OTLP_GRPC_ADDR`: the Trace, Logs and Metrics `Export` services, accepting
//! gzip, zstd and deflate, with messages up to `OTLP_MAX_MESSAGE_BYTES`. OK is answered only
//! after the signals are committed; rejected records come back as partial success.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::{LogsService, LogsServiceServer};
use opentelemetry_proto::tonic::collector::logs::v1::{ExportLogsServiceRequest, ExportLogsServiceResponse};
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use tonic::codec::CompressionEncoding;
use tonic::service::interceptor::InterceptedService;
use tonic::{Request, Response, Status};
use tower::{Layer, Service};

use super::otlp_export::{ExportCore, ExportRequest};
use crate::error::Reject;
use crate::ingest::client_message;
use crate::ingest::IngestError;
use crate::telemetry::metrics::Transport;

/// The three OTLP services, sharing one ingest path.
#[derive(Clone)]
pub struct OtlpGrpc {
    pub core: ExportCore,
    pub max_message_bytes: usize,
    /// Exports decoded at once; more wait before decoding (`OTLP_MAX_CONCURRENT_EXPORTS`).
    pub max_concurrent_exports: usize,
    /// `INGEST_TOKENS`, checked on the `authorization` metadata when any is configured.
    pub tokens: crate::config::Tokens,
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

    async fn export<R: ExportRequest>(&self, request: Request<R>) -> Result<Response<R::Response>, Status> {
        match self.core.export(Transport::otlp_grpc, request.get_ref()).await {
            Ok(rejected) => Ok(Response::new(R::response(rejected))),
            Err(error) => {
                let mut status = Status::new(Reject::from(&error).grpc_code(), client_message(&error));
                // Kept as the source: it tells OtlpStatus this status is ours, not tonic's.
                status.set_source(std::sync::Arc::new(error));
                Err(status)
            }
        }
    }
}

/// The three generated service traits, each one call into [`OtlpGrpc::export`].
macro_rules! export_service {
    ($service:ident, $request:ty, $response:ty) => {
        #[tonic::async_trait]
        impl $service for OtlpGrpc {
            async fn export(&self, request: Request<$request>) -> Result<Response<$response>, Status> {
                OtlpGrpc::export(self, request).await
            }
        }
    };
}

export_service!(TraceService, ExportTraceServiceRequest, ExportTraceServiceResponse);
export_service!(LogsService, ExportLogsServiceRequest, ExportLogsServiceResponse);
export_service!(MetricsService, ExportMetricsServiceRequest, ExportMetricsServiceResponse);

/// Rewrites two codes tonic picks before our handlers run, which OTLP clients misread:
/// an oversized message is OUT_OF_RANGE in tonic, which clients retry forever, so it becomes
/// RESOURCE_EXHAUSTED (without RetryInfo: not retried); an undecodable or undecompressable
/// message is INTERNAL in tonic, which becomes INVALID_ARGUMENT. Recognised by the `Status`
/// tonic leaves in the response's extensions: ours carry their `IngestError` as source, so an
/// INTERNAL of our own is never rewritten. Both arrive as trailers-only responses, so the code
/// is in the response headers.
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
            fix_status(&mut response);
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

fn fix_status<B>(response: &mut http::Response<B>) {
    let Some(status) = response.extensions().get::<Status>() else {
        return;
    };
    let ours = std::error::Error::source(status).is_some_and(|source| source.is::<IngestError>());
    let replacement = match status.code() {
        _ if ours => return,
        tonic::Code::OutOfRange => tonic::Code::ResourceExhausted,
        tonic::Code::Internal => tonic::Code::InvalidArgument,
        _ => return,
    };
    response.headers_mut().insert(Status::GRPC_STATUS, http::HeaderValue::from(replacement as i32));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::SubmitError;

    fn fixed(status: Status) -> String {
        let mut response = status.into_http::<()>();
        fix_status(&mut response);
        response.headers()[Status::GRPC_STATUS].to_str().unwrap().to_owned()
    }

    #[test]
    fn oversized_message_becomes_resource_exhausted() {
        assert_eq!(fixed(Status::out_of_range("decoded message length too large")), "8");
    }

    #[test]
    fn undecodable_message_becomes_invalid_argument() {
        assert_eq!(fixed(Status::internal("failed to decode Protobuf message: invalid varint")), "3");
    }

    #[test]
    fn our_own_statuses_are_left_alone_whatever_their_words() {
        let mut ours = Status::internal("failed to decode Protobuf message");
        ours.set_source(std::sync::Arc::new(IngestError::from(SubmitError::ShuttingDown)));
        assert_eq!(fixed(ours), "13");
        assert_eq!(fixed(Status::unavailable("storage temporarily unavailable")), "14");
        assert_eq!(fixed(Status::unauthenticated("missing or invalid bearer token")), "16");
    }
}
