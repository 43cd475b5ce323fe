//! The canary's side of every transport the service receives on, and of its query API: what
//! it sends, and whether the service acknowledged it (an OTLP partial success is not an
//! acknowledgement of the rejected records).

use std::time::Duration;

use flate2::write::GzEncoder;
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceResponse;
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceResponse;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use prost::Message;
use serde_json::Value;
use tonic::codec::CompressionEncoding;
use tonic::metadata::MetadataValue;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig};

use super::otlp_json;
use super::plan::{LegacyBody, OtlpExports};
use crate::config::{CanarySettings, Endpoint};
use crate::error::error_chain;
use crate::model::SignalType;

/// A write the service did not acknowledge: its signals are not expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// A gRPC status name, an HTTP status, `partial_success`, `timeout` or `connect`.
    pub code: String,
    pub detail: String,
}

/// A read that got no usable answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadFailed(pub String);

/// Why the clients cannot be made (a bad CA file or endpoint).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ClientError(String);

/// Adds `authorization: Bearer …` to every gRPC call when an ingest token is set.
#[derive(Clone)]
pub struct Bearer(Option<MetadataValue<tonic::metadata::Ascii>>);

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(token) = &self.0 {
            request.metadata_mut().insert("authorization", token.clone());
        }
        Ok(request)
    }
}

type Grpc = InterceptedService<Channel, Bearer>;

pub struct Client {
    traces: TraceServiceClient<Grpc>,
    logs: LogsServiceClient<Grpc>,
    metrics: MetricsServiceClient<Grpc>,
    http: reqwest::Client,
    otlp_http: Endpoint,
    api: Endpoint,
    ingest_token: Option<String>,
    query_token: Option<String>,
}

impl Client {
    pub fn new(settings: &CanarySettings) -> Result<Client, ClientError> {
        let grpc_endpoint = &settings.otlp_grpc_endpoint;
        let mut channel = Channel::from_shared(grpc_endpoint.as_str().to_owned())
            .map_err(|why| ClientError(format!("CANARY_OTLP_GRPC_ENDPOINT: {why}")))?
            .timeout(settings.request_timeout)
            .connect_timeout(settings.request_timeout);
        if grpc_endpoint.is_tls() {
            let mut tls = ClientTlsConfig::new().domain_name(grpc_endpoint.host()).with_native_roots();
            if let Some(pem) = &settings.ca_pem {
                tls = tls.ca_certificate(Certificate::from_pem(pem));
            }
            channel = channel.tls_config(tls).map_err(|why| ClientError(format!("CANARY_CA_FILE: {why}")))?;
        }
        let channel = channel.connect_lazy();
        let bearer = match &settings.ingest_token {
            None => Bearer(None),
            Some(token) => Bearer(Some(
                format!("Bearer {token}")
                    .parse()
                    .map_err(|_| ClientError("CANARY_INGEST_TOKEN: not a valid header value".into()))?,
            )),
        };
        let intercepted = || InterceptedService::new(channel.clone(), bearer.clone());
        let mut http = reqwest::Client::builder().use_rustls_tls().timeout(settings.request_timeout);
        if let Some(pem) = &settings.ca_pem {
            let ca = reqwest::Certificate::from_pem(pem)
                .map_err(|why| ClientError(format!("CANARY_CA_FILE: {why}")))?;
            http = http.add_root_certificate(ca);
        }
        Ok(Client {
            traces: TraceServiceClient::new(intercepted()).send_compressed(CompressionEncoding::Gzip),
            logs: LogsServiceClient::new(intercepted()).send_compressed(CompressionEncoding::Gzip),
            metrics: MetricsServiceClient::new(intercepted()).send_compressed(CompressionEncoding::Gzip),
            http: http.build().map_err(|why| ClientError(format!("HTTP client: {why}")))?,
            otlp_http: settings.otlp_http_endpoint.clone(),
            api: settings.api_endpoint.clone(),
            ingest_token: settings.ingest_token.clone(),
            query_token: settings.query_token.clone(),
        })
    }

    /// Exports `signal_type`'s request of `exports` over its transport.
    pub async fn export(&self, exports: &OtlpExports, signal_type: SignalType) -> Result<(), Refused> {
        use super::plan::Transport;
        match (exports.transport, signal_type) {
            (Transport::OtlpGrpc, SignalType::Trace) => {
                let answer = self.traces.clone().export(exports.traces.clone()).await;
                rejected_spans(answer.map_err(grpc_refused)?.get_ref())
            }
            (Transport::OtlpGrpc, SignalType::Log) => {
                let answer = self.logs.clone().export(exports.logs.clone()).await;
                rejected_logs(answer.map_err(grpc_refused)?.get_ref())
            }
            (Transport::OtlpGrpc, SignalType::Metric) => {
                let answer = self.metrics.clone().export(exports.metrics.clone()).await;
                rejected_points(answer.map_err(grpc_refused)?.get_ref())
            }
            (Transport::OtlpHttpJson, signal_type) => {
                let body = match signal_type {
                    SignalType::Trace => otlp_json::traces(&exports.traces),
                    SignalType::Log => otlp_json::logs(&exports.logs),
                    SignalType::Metric => otlp_json::metrics(&exports.metrics),
                };
                let answer =
                    self.post_otlp(signal_type, "application/json", body.to_string().into_bytes()).await?;
                json_partial_success(&answer)
            }
            (_, signal_type) => {
                let body = match signal_type {
                    SignalType::Trace => exports.traces.encode_to_vec(),
                    SignalType::Log => exports.logs.encode_to_vec(),
                    SignalType::Metric => exports.metrics.encode_to_vec(),
                };
                let answer = self.post_otlp(signal_type, "application/x-protobuf", body).await?;
                match signal_type {
                    SignalType::Trace => rejected_spans(&decode(&answer)?),
                    SignalType::Log => rejected_logs(&decode(&answer)?),
                    SignalType::Metric => rejected_points(&decode(&answer)?),
                }
            }
        }
    }

    /// An OTLP/HTTP export, gzipped as SDKs send it; the answer's body.
    async fn post_otlp(
        &self,
        signal_type: SignalType,
        content_type: &str,
        body: Vec<u8>,
    ) -> Result<Vec<u8>, Refused> {
        let path = match signal_type {
            SignalType::Trace => "traces",
            SignalType::Log => "logs",
            SignalType::Metric => "metrics",
        };
        let request = self
            .http
            .post(format!("{}/v1/{path}", self.otlp_http.as_str()))
            .header("content-type", content_type)
            .header("content-encoding", "gzip")
            .body(gzip(&body));
        let answer = with_token(request, &self.ingest_token).send().await.map_err(http_refused)?;
        let status = answer.status();
        let body = answer.bytes().await.map_err(http_refused)?;
        if status != reqwest::StatusCode::OK {
            return Err(Refused {
                code: status.as_u16().to_string(),
                detail: String::from_utf8_lossy(&body).into(),
            });
        }
        Ok(body.to_vec())
    }

    /// A legacy `POST /ingest/*`: acknowledged by 202.
    pub async fn post_legacy(&self, legacy: &LegacyBody) -> Result<(), Refused> {
        let request = self.http.post(format!("{}{}", self.api.as_str(), legacy.path())).json(&legacy.body);
        let answer = with_token(request, &self.ingest_token).send().await.map_err(http_refused)?;
        match answer.status() {
            reqwest::StatusCode::ACCEPTED => Ok(()),
            status => Err(Refused {
                code: status.as_u16().to_string(),
                detail: answer.text().await.unwrap_or_default(),
            }),
        }
    }

    /// `GET /query/traces/{trace_id}`: the trace's rows.
    pub async fn trace(&self, trace_id: &str) -> Result<Vec<Value>, ReadFailed> {
        match self.get(&format!("/query/traces/{trace_id}")).await? {
            Value::Array(rows) => Ok(rows),
            other => Err(ReadFailed(format!("/query/traces answered {other} instead of an array"))),
        }
    }

    /// `GET /query/incidents?trace_id=…`: the incidents of the trace.
    pub async fn incidents(&self, trace_id: &str) -> Result<Vec<Value>, ReadFailed> {
        match self.get(&format!("/query/incidents?trace_id={trace_id}&limit=10")).await? {
            Value::Object(mut page) => match page.remove("items") {
                Some(Value::Array(items)) => Ok(items),
                _ => Err(ReadFailed("/query/incidents answered without items".into())),
            },
            other => Err(ReadFailed(format!("/query/incidents answered {other}"))),
        }
    }

    async fn get(&self, path: &str) -> Result<Value, ReadFailed> {
        let request = self.http.get(format!("{}{path}", self.api.as_str()));
        let answer = with_token(request, &self.query_token)
            .send()
            .await
            .map_err(|why| ReadFailed(format!("GET {path}: {}", error_chain(&why))))?;
        let status = answer.status();
        if !status.is_success() {
            let body = answer.text().await.unwrap_or_default();
            return Err(ReadFailed(format!("GET {path}: {status} {body}")));
        }
        answer.json().await.map_err(|why| ReadFailed(format!("GET {path}: not JSON: {why}")))
    }
}

fn with_token(request: reqwest::RequestBuilder, token: &Option<String>) -> reqwest::RequestBuilder {
    match token {
        Some(token) => request.bearer_auth(token),
        None => request,
    }
}

fn gzip(body: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut encoder = GzEncoder::new(Vec::with_capacity(body.len() / 2), flate2::Compression::fast());
    // Writing into a Vec cannot fail.
    let _ = encoder.write_all(body);
    encoder.finish().unwrap_or_default()
}

fn decode<M: Message + Default>(body: &[u8]) -> Result<M, Refused> {
    M::decode(body)
        .map_err(|why| Refused { code: "200".into(), detail: format!("an answer that is not OTLP: {why}") })
}

/// `code` and the cause's words, for a request that got no answer.
fn http_refused(error: reqwest::Error) -> Refused {
    let code = if error.is_timeout() { "timeout" } else { "connect" };
    Refused { code: code.into(), detail: error_chain(&error) }
}

/// A gRPC status by its name in the specification (`UNAVAILABLE`, `DEADLINE_EXCEEDED`).
fn grpc_refused(status: tonic::Status) -> Refused {
    let mut code = String::new();
    for (i, c) in format!("{:?}", status.code()).chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            code.push('_');
        }
        code.push(c.to_ascii_uppercase());
    }
    Refused { code, detail: status.message().to_owned() }
}

fn partial(rejected: i64, message: &str) -> Result<(), Refused> {
    match rejected {
        0 => Ok(()),
        n => Err(Refused { code: "partial_success".into(), detail: format!("{n} rejected: {message}") }),
    }
}

fn rejected_spans(answer: &ExportTraceServiceResponse) -> Result<(), Refused> {
    answer.partial_success.as_ref().map_or(Ok(()), |p| partial(p.rejected_spans, &p.error_message))
}

fn rejected_logs(answer: &ExportLogsServiceResponse) -> Result<(), Refused> {
    answer.partial_success.as_ref().map_or(Ok(()), |p| partial(p.rejected_log_records, &p.error_message))
}

fn rejected_points(answer: &ExportMetricsServiceResponse) -> Result<(), Refused> {
    answer.partial_success.as_ref().map_or(Ok(()), |p| partial(p.rejected_data_points, &p.error_message))
}

/// An OTLP/JSON answer: `{}`, or a `partialSuccess` whose rejected count (a string or a
/// number) must be 0.
fn json_partial_success(body: &[u8]) -> Result<(), Refused> {
    let answer: Value = serde_json::from_slice(body).map_err(|why| Refused {
        code: "200".into(),
        detail: format!("an answer that is not JSON: {why}"),
    })?;
    let Some(partial_success) = answer.get("partialSuccess") else { return Ok(()) };
    let rejected = ["rejectedSpans", "rejectedLogRecords", "rejectedDataPoints"]
        .iter()
        .filter_map(|key| partial_success.get(*key))
        .map(|n| n.as_i64().or_else(|| n.as_str().and_then(|s| s.parse().ok())).unwrap_or(0))
        .sum();
    partial(rejected, partial_success["errorMessage"].as_str().unwrap_or_default())
}

/// How long a read may take: reads are retried until `--max-wait`, each bounded by the request
/// timeout.
pub fn read_pause(max_wait: Duration) -> Duration {
    (max_wait / 20).clamp(Duration::from_millis(200), Duration::from_secs(2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_codes_are_named_as_the_specification_names_them() {
        assert_eq!(grpc_refused(tonic::Status::deadline_exceeded("slow")).code, "DEADLINE_EXCEEDED");
        assert_eq!(grpc_refused(tonic::Status::unauthenticated("no")).code, "UNAUTHENTICATED");
    }

    #[test]
    fn a_partial_success_is_no_acknowledgement() {
        assert_eq!(json_partial_success(b"{}"), Ok(()));
        assert_eq!(json_partial_success(br#"{"partialSuccess": {}}"#), Ok(()));
        let refused =
            json_partial_success(br#"{"partialSuccess": {"rejectedSpans": "2", "errorMessage": "bad ids"}}"#);
        assert_eq!(
            refused.map_err(|r| (r.code, r.detail)),
            Err(("partial_success".into(), "2 rejected: bad ids".into()))
        );
        assert!(json_partial_success(b"<html>").is_err());
    }
}
