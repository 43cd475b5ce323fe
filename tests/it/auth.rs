//! Optional bearer tokens on every port, and SQL-looking input.

use prost::Message;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{log_body, spawn_app, spawn_app_with};

const INGEST: &str = "ingest-token-0123456789abcdef";
const QUERY: &str = "query-token-0123456789abcdef";

#[tokio::test]
async fn tokens_guard_ingestion_and_queries_but_not_health() {
    let app = spawn_app_with(&["--ingest-tokens", INGEST, "--query-tokens", QUERY]).await;
    let bearer = |token: &str| format!("Bearer {token}");
    let post = |token: Option<&str>| {
        let mut request = app.http.post(app.url("/ingest/logs")).json(&log_body("t-auth", "INFO", "m"));
        if let Some(token) = token {
            request = request.header("authorization", bearer(token));
        }
        request.send()
    };
    for token in [None, Some("wrong-token-0123456789abcdef"), Some(QUERY)] {
        let response = post(token).await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{token:?}");
        assert_eq!(response.headers()["www-authenticate"], "Bearer");
        assert_eq!(response.json::<Value>().await.unwrap(), json!({"detail": "Not authenticated"}));
    }
    assert_eq!(post(Some(INGEST)).await.unwrap().status(), StatusCode::ACCEPTED);

    let query = |token: Option<&str>| {
        let mut request = app.http.get(app.url("/query/signals"));
        if let Some(token) = token {
            request = request.header("authorization", bearer(token));
        }
        request.send()
    };
    assert_eq!(query(None).await.unwrap().status(), StatusCode::UNAUTHORIZED);
    assert_eq!(query(Some(INGEST)).await.unwrap().status(), StatusCode::UNAUTHORIZED);
    let page: Value = query(Some(QUERY)).await.unwrap().json().await.unwrap();
    assert_eq!(page["total"], 1);
    for path in ["/health/live", "/health/ready", "/ingest/health"] {
        assert_eq!(app.get(path).await.status(), StatusCode::OK, "{path} stays open");
    }
    let preflight = app
        .http
        .request(reqwest::Method::OPTIONS, app.url("/query/signals"))
        .header("origin", "http://localhost:3000")
        .header("access-control-request-method", "GET")
        .header("access-control-request-headers", "authorization")
        .send()
        .await
        .unwrap();
    assert!(preflight.status().is_success(), "a CORS preflight carries no token");

    // OTLP/HTTP: 401 with a google.rpc.Status, UNAUTHENTICATED.
    let body = json!({"resourceLogs": []}).to_string().into_bytes();
    let (status, headers, answer) =
        app.post_otlp("/v1/logs", &[("content-type", "application/x-protobuf")], vec![]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(headers["content-type"], "application/x-protobuf");
    assert_eq!(prodsentinel::receivers::otlp_http::RpcStatus::decode(&answer[..]).unwrap().code, 16);
    let authorized = bearer(INGEST);
    let (status, _, _) = app
        .post_otlp("/v1/logs", &[("content-type", "application/json"), ("authorization", &authorized)], body)
        .await;
    assert_eq!(status, StatusCode::OK);

    // OTLP/gRPC: UNAUTHENTICATED without the metadata, OK with it.
    let refused = crate::helpers::grpc_logs_export(&app, 1).await.expect_err("no token");
    assert_eq!(refused.code(), tonic::Code::Unauthenticated);
    let mut client =
        opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient::connect(
            format!("http://{}", app.grpc_addr),
        )
        .await
        .unwrap();
    let mut request = tonic::Request::new(Default::default());
    request.metadata_mut().insert("authorization", authorized.parse().unwrap());
    client.export(request).await.expect("accepted with the token");
}

#[tokio::test]
async fn sql_looking_values_are_only_data() {
    let app = spawn_app().await;
    let mut body = log_body("'; DROP TABLE raw_signals; --", "INFO", "x'); DELETE FROM incidents; --");
    body["service_name"] = json!("svc' OR '1'='1");
    assert_eq!(app.post_json("/ingest/logs", &body).await.0, StatusCode::ACCEPTED);
    for path in [
        "/query/signals?service_name=%27%20OR%201%3D1%20--",
        "/query/signals?trace_id=x%27%3B%20DROP%20TABLE%20raw_signals%3B%20--",
        "/query/incidents?service=%27%20OR%20%271%27%3D%271",
    ] {
        let (status, page) = app.get_json(path).await;
        assert_eq!((status, page["total"].clone()), (StatusCode::OK, json!(0)), "{path}");
    }
    let (status, trace) = app.get_json("/query/traces/%27%3B%20DROP%20TABLE%20raw_signals%3B%20--").await;
    assert_eq!(
        (status, trace.as_array().map(Vec::len)),
        (StatusCode::OK, Some(1)),
        "the odd trace id is just an id"
    );
    let (_, page) = app.get_json("/query/signals?service_name=svc%27%20OR%20%271%27%3D%271").await;
    assert_eq!(page["total"], 1);
    assert_eq!(app.count_signals().await, 1, "the table is still there, with its row");
}
