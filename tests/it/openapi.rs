//! The OpenAPI document of the API port, and its two viewers (issue 7).

use std::collections::BTreeSet;
use std::io::Write;
use std::process::{Command, Stdio};

use reqwest::StatusCode;

use crate::helpers::{python_with_requirements, spawn_app};

/// Every (method, path) the API port serves, besides the viewers' own pages and assets.
const ROUTES: &[(&str, &str)] = &[
    ("post", "/ingest/logs"),
    ("post", "/ingest/traces"),
    ("post", "/ingest/metrics"),
    ("get", "/ingest/health"),
    ("get", "/health/live"),
    ("get", "/health/ready"),
    ("get", "/metrics"),
    ("get", "/openapi.json"),
    ("get", "/query/signals"),
    ("get", "/query/traces/{trace_id}"),
    ("get", "/query/traces/{trace_id}/tree"),
    ("get", "/query/services"),
    ("get", "/query/incidents"),
    ("get", "/query/incidents/{incident_id}"),
    ("patch", "/query/incidents/{incident_id}"),
    ("get", "/query/incidents/{incident_id}/signals"),
    ("get", "/query/incidents/{incident_id}/analysis"),
    ("get", "/query/problems"),
    ("get", "/query/problems/{problem_id}"),
    ("get", "/jaeger/api/services"),
    ("get", "/jaeger/api/services/{service}/operations"),
    ("get", "/jaeger/api/operations"),
    ("get", "/jaeger/api/traces/{trace_id}"),
    ("get", "/jaeger/api/traces"),
    ("get", "/jaeger/api/dependencies"),
    ("get", "/jaeger/api/v3/services"),
    ("get", "/jaeger/api/v3/operations"),
    ("get", "/jaeger/api/v3/traces/{trace_id}"),
    ("get", "/jaeger/api/v3/traces"),
    ("get", "/jaeger/api/v3/trace-summaries"),
];

#[tokio::test]
async fn the_document_is_valid_openapi_3_1_and_lists_exactly_the_routes_served() {
    let app = spawn_app().await;
    let (status, spec) = app.get_json("/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    assert!(spec["openapi"].as_str().unwrap().starts_with("3.1"), "{}", spec["openapi"]);

    // The reference validator (Python, pinned) accepts it.
    let mut validator = Command::new(python_with_requirements())
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/validate_openapi.py"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    validator.stdin.take().unwrap().write_all(spec.to_string().as_bytes()).unwrap();
    let output = validator.wait_with_output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(String::from_utf8_lossy(&output.stdout).contains("3.1"));

    // The same routes, no more, no fewer.
    let documented: BTreeSet<(String, String)> = spec["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, item)| item.as_object().unwrap().keys().map(move |m| (m.clone(), path.clone())))
        .filter(|(method, _)| ["get", "post", "patch", "put", "delete"].contains(&method.as_str()))
        .collect();
    let expected: BTreeSet<(String, String)> =
        ROUTES.iter().map(|(m, p)| (m.to_string(), p.to_string())).collect();
    assert_eq!(documented, expected);

    // Each is served: a request reaches its handler, never the router's 404 or 405.
    for (method, path) in ROUTES {
        let concrete = path
            .replace("{trace_id}", "t-openapi")
            .replace("{service}", "svc-openapi")
            .replace("{incident_id}", &uuid::Uuid::new_v4().to_string());
        let method = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        let response = app
            .http
            .request(method.clone(), app.url(&concrete))
            .json(&serde_json::json!({}))
            .send()
            .await
            .unwrap();
        let status = response.status();
        let body = response.text().await.unwrap();
        assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {concrete}");
        assert!(
            !(status == StatusCode::NOT_FOUND && body.contains("\"Not Found\"")),
            "{method} {concrete} not routed"
        );
    }

    // Every operation documents a success and its error bodies use the shared schemas.
    for (path, item) in spec["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let responses = operation["responses"].as_object().unwrap();
            assert!(
                responses.keys().any(|code| code.starts_with('2')),
                "{method} {path}: no success documented"
            );
            if path.starts_with("/query") || path.starts_with("/jaeger") {
                assert!(
                    responses.contains_key("401") && responses.contains_key("503"),
                    "{method} {path}: error answers"
                );
            }
        }
    }
    let schemas = spec["components"]["schemas"].as_object().unwrap();
    for name in [
        "StoredSignal",
        "Incident",
        "AnalysisResult",
        "TraceTree",
        "Services",
        "ValidationErrors",
        "Detail",
        "LegacyLog",
    ] {
        assert!(schemas.contains_key(name), "schema {name}");
    }
}

#[tokio::test]
async fn swagger_ui_and_redoc_are_served_from_the_binary() {
    let app = spawn_app().await;
    let page = app.get("/docs/").await;
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    assert!(html.contains("swagger-ui"), "{html}");
    for asset in ["/docs/swagger-ui-bundle.js", "/docs/swagger-ui.css", "/docs/swagger-initializer.js"] {
        let response = app.get(asset).await;
        assert_eq!(response.status(), StatusCode::OK, "{asset}");
        let text = response.text().await.unwrap();
        assert!(!text.contains("unpkg.com") && !text.contains("cdn.jsdelivr"), "{asset} loads from a CDN");
    }
    let initializer = app.get("/docs/swagger-initializer.js").await.text().await.unwrap();
    assert!(initializer.contains("/openapi.json"), "{initializer}");

    let redoc = app.get("/redoc").await.text().await.unwrap();
    assert!(redoc.contains(r#"spec-url="/openapi.json""#) && redoc.contains("/redoc/redoc.standalone.js"));
    assert!(!redoc.contains("https://"), "no remote resource: {redoc}");
    let script = app.get("/redoc/redoc.standalone.js").await;
    assert_eq!(script.status(), StatusCode::OK);
    assert!(script.bytes().await.unwrap().len() > 1_000_000);
}

/// Renders `url` in headless Chromium with every host but loopback unresolvable, and returns
/// the DOM after scripts ran.
fn render_offline(url: &str) -> String {
    let chromium = ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .expect("Chromium is required (Debian: apt-get install chromium; .ci/run installs it)");
    let profile =
        std::env::temp_dir().join(format!("prodsentinel-chromium-{}", uuid::Uuid::new_v4().simple()));
    let output = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            &format!("--user-data-dir={}", profile.display()),
            // Offline: nothing but loopback resolves, so a CDN reference would fail to load.
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
            "--virtual-time-budget=20000",
            "--dump-dom",
            url,
        ])
        .stdin(Stdio::null())
        .output()
        .expect("chromium runs");
    let _ = std::fs::remove_dir_all(profile);
    assert!(output.status.success(), "chromium failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test]
async fn swagger_ui_and_redoc_render_the_operations_in_a_real_headless_browser_offline() {
    let app = spawn_app().await;
    let (base, redoc_url) = (app.url("/docs/"), app.url("/redoc"));
    let (dom, redoc) =
        tokio::task::spawn_blocking(move || (render_offline(&base), render_offline(&redoc_url)))
            .await
            .unwrap();
    // Swagger UI draws one "opblock" per operation, with its method and path.
    let operations = dom.matches("opblock-summary-path").count();
    assert!(operations >= ROUTES.len(), "{operations} operations rendered:\n{}", &dom[..dom.len().min(3000)]);
    for text in ["ProdSentinel API", "/query/incidents/{incident_id}", "PATCH", "/ingest/logs"] {
        assert!(dom.contains(text), "{text} not rendered");
    }
    // ReDoc draws the operations in its menu.
    assert!(
        redoc.contains("ProdSentinel API") && redoc.contains("/query/traces/{trace_id}/tree"),
        "ReDoc did not render"
    );
}

/// Schemathesis generates requests from `/openapi.json` (valid ones and invalid ones) and checks
/// every answer against it with every check it has: no 5xx, every status and body as described,
/// every valid request accepted, every invalid one refused. The seed is fixed so that a run
/// is repeatable; `SCHEMATHESIS_SEED` explores other requests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_the_description_true_with_every_check() {
    let app = crate::helpers::spawn_app().await;
    // Something to find: a trace with a failing span and its error log, hence an incident.
    let (status, _) = app
        .post_json(
            "/ingest/logs",
            &crate::helpers::log_body("5b8efff798038103d269b633813fc60c", "ERROR", "boom"),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let python = python_with_requirements();
    let schemathesis = python.with_file_name("schemathesis");
    let seed = std::env::var("SCHEMATHESIS_SEED").unwrap_or_else(|_| "20261206".to_owned());
    let output = tokio::task::spawn_blocking({
        let url = app.url("/openapi.json");
        move || {
            Command::new(schemathesis)
                .args([
                    "run",
                    &url,
                    "--checks",
                    "all",
                    "--max-examples",
                    "40",
                    // One worker thread: CPython 3.11's ast module keeps its recursion count per
                    // interpreter, so two threads describing Hypothesis lambdas at once (ast.parse)
                    // fail with "AST constructor recursion depth mismatch" (cpython#106905).
                    "--workers",
                    "1",
                    "--seed",
                    &seed,
                ])
                .args(["--generation-database", "none", "--no-color"])
                .stdin(Stdio::null())
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "schemathesis found failures:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("Tested:"), "it tested the operations: {stdout}");
}
