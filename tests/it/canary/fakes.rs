//! Services that misbehave for the canary to catch: one that acknowledges everything and
//! stores nothing, and a proxy in front of the real API that resends every legacy log with the
//! same id and another timestamp (as a faulty retrying client or relay would).

use std::net::SocketAddr;

use axum::body::Bytes;
use axum::extract::Request;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
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
use serde_json::{json, Value};
use tokio::task::JoinHandle;

/// Acknowledges every export and stores nothing.
#[derive(Clone, Copy)]
struct BlackHole;

#[tonic::async_trait]
impl TraceService for BlackHole {
    async fn export(
        &self,
        _: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl LogsService for BlackHole {
    async fn export(
        &self,
        _: tonic::Request<ExportLogsServiceRequest>,
    ) -> Result<tonic::Response<ExportLogsServiceResponse>, tonic::Status> {
        Ok(tonic::Response::new(ExportLogsServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl MetricsService for BlackHole {
    async fn export(
        &self,
        _: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        Ok(tonic::Response::new(ExportMetricsServiceResponse::default()))
    }
}

/// The black hole's HTTP side: OTLP/HTTP answered with an empty success in the request's
/// encoding, legacy ingest with 202, and reads with nothing.
async fn black_hole_http(method: Method, uri: Uri, headers: HeaderMap) -> Response {
    let path = uri.path();
    let json_body =
        headers.get("content-type").is_some_and(|t| t.as_bytes().starts_with(b"application/json"));
    match (method, path) {
        (Method::POST, p) if p.starts_with("/v1/") && json_body => {
            ([("content-type", "application/json")], "{}").into_response()
        }
        (Method::POST, p) if p.starts_with("/v1/") => {
            ([("content-type", "application/x-protobuf")], Vec::<u8>::new()).into_response()
        }
        (Method::POST, p) if p.starts_with("/ingest/") => {
            (StatusCode::ACCEPTED, axum::Json(json!({"status": "accepted"}))).into_response()
        }
        (Method::GET, p) if p.starts_with("/query/traces/") => axum::Json(json!([])).into_response(),
        (Method::GET, "/query/incidents") => axum::Json(json!({"items": [], "total": 0})).into_response(),
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

/// A running fake: its addresses, stopped when dropped.
pub struct Fake {
    pub grpc: SocketAddr,
    pub http: SocketAddr,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Fake {
    fn drop(&mut self) {
        self.tasks.iter().for_each(JoinHandle::abort);
    }
}

async fn serve_http(router: axum::Router) -> (SocketAddr, JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    (addr, tokio::spawn(async move { axum::serve(listener, router).await.unwrap() }))
}

/// The service that acknowledges everything and stores nothing, on OTLP/gRPC and on one HTTP
/// port for OTLP/HTTP, legacy ingest and the query API.
pub async fn black_hole() -> Fake {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let grpc = listener.local_addr().unwrap();
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
    let server = tonic::transport::Server::builder()
        .add_service(
            TraceServiceServer::new(BlackHole).accept_compressed(tonic::codec::CompressionEncoding::Gzip),
        )
        .add_service(
            LogsServiceServer::new(BlackHole).accept_compressed(tonic::codec::CompressionEncoding::Gzip),
        )
        .add_service(
            MetricsServiceServer::new(BlackHole).accept_compressed(tonic::codec::CompressionEncoding::Gzip),
        );
    let grpc_task = tokio::spawn(async move { server.serve_with_incoming(incoming).await.unwrap() });
    let (http, http_task) = serve_http(axum::Router::new().fallback(black_hole_http)).await;
    Fake { grpc, http, tasks: vec![grpc_task, http_task] }
}

/// A proxy to `api` that, for every `POST /ingest/logs`, also posts the same logs one second
/// later in time (same `signal_id`): the service stores a second signal, which the canary must
/// report as a duplicate.
pub async fn resending_proxy(api: SocketAddr) -> Fake {
    let forward = move |request: Request| async move {
        let client = reqwest::Client::new();
        let (parts, body) = request.into_parts();
        let body: Bytes = axum::body::to_bytes(body, 16 << 20).await.unwrap();
        let url = format!("http://{api}{}", parts.uri.path_and_query().map_or("/", |p| p.as_str()));
        let send = |body: Vec<u8>| {
            let mut outgoing = client.request(parts.method.clone(), &url).body(body);
            for (name, value) in &parts.headers {
                if name != "host" && name != "content-length" {
                    outgoing = outgoing.header(name, value);
                }
            }
            outgoing.send()
        };
        let answer = send(body.to_vec()).await.unwrap();
        let status = StatusCode::from_u16(answer.status().as_u16()).unwrap();
        let text = answer.bytes().await.unwrap();
        if parts.method == Method::POST && parts.uri.path() == "/ingest/logs" {
            let mut resent: Value = serde_json::from_slice(&body).unwrap();
            let at = chrono::DateTime::parse_from_rfc3339(resent["timestamp"].as_str().unwrap()).unwrap();
            resent["timestamp"] = json!((at + chrono::Duration::seconds(1)).to_rfc3339());
            let again = send(resent.to_string().into_bytes()).await.unwrap();
            assert_eq!(again.status(), reqwest::StatusCode::ACCEPTED, "the resend is stored");
        }
        (status, [("content-type", "application/json")], text).into_response()
    };
    let (http, task) = serve_http(axum::Router::new().fallback(forward)).await;
    Fake { grpc: http, http, tasks: vec![task] }
}
