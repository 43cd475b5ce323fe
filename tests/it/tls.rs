//! TLS on all three listeners (TLS_CERT_FILE, TLS_KEY_FILE), with a test certificate for
//! `localhost` signed by a test CA (tests/fixtures/tls, valid until 2126; the CA's key was
//! thrown away).

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use prost::Message;
use reqwest::StatusCode;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};

use crate::helpers::{log_body, spawn_app_with};

const CERT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tls/cert.pem");
const KEY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tls/key.pem");
const CA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tls/ca.pem");

fn trusting_client() -> reqwest::Client {
    let cert = reqwest::Certificate::from_pem(&std::fs::read(CA).unwrap()).unwrap();
    reqwest::Client::builder().add_root_certificate(cert).build().unwrap()
}

#[tokio::test]
async fn every_listener_serves_tls_only_when_configured() {
    let app = spawn_app_with(&["--tls-cert-file", CERT, "--tls-key-file", KEY]).await;
    let https = trusting_client();
    let (api, http) = (app.addr.port(), app.http_addr.port());

    // API: health and legacy ingestion over HTTPS.
    let ready = https.get(format!("https://localhost:{api}/health/ready")).send().await.unwrap();
    assert_eq!(ready.status(), StatusCode::OK);
    let legacy = https.post(format!("https://localhost:{api}/ingest/logs"));
    let answer = legacy.json(&log_body("t-tls", "INFO", "over TLS")).send().await.unwrap();
    assert_eq!(answer.status(), StatusCode::ACCEPTED);

    // OTLP/HTTP over HTTPS.
    let request = super::reliability::load::logs_request("tls", &[7; 16], 3, 1);
    let answer = https
        .post(format!("https://localhost:{http}/v1/logs"))
        .header("content-type", "application/x-protobuf")
        .body(request.encode_to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::OK);

    // OTLP/gRPC over TLS.
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(std::fs::read(CA).unwrap()))
        .domain_name("localhost");
    let endpoint = Endpoint::from_shared(format!("https://localhost:{}", app.grpc_addr.port())).unwrap();
    let channel = endpoint.tls_config(tls).unwrap().connect().await.expect("TLS handshake");
    let spans = super::reliability::load::spans_request("tls", &[8; 16], 2, 1);
    TraceServiceClient::new(channel).export(spans).await.expect("exported over TLS");

    assert_eq!(app.rows().await.len(), 1 + 3 + 2);

    // Plain HTTP to a TLS port gets no HTTP answer, and an untrusting client refuses the
    // test CA's certificate: TLS is really in the way.
    let plain = reqwest::Client::new().get(format!("http://localhost:{api}/health/ready")).send().await;
    assert!(plain.is_err() || !plain.unwrap().status().is_success());
    let untrusting = reqwest::Client::new().get(format!("https://localhost:{api}/health/ready")).send().await;
    assert!(untrusting.is_err(), "an unknown certificate is refused by a default client");
}
