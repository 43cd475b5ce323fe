//! `otel-collector-config.yaml`: the exporters point at ProdSentinel with the settings the
//! README promises. (No Collector binary can be installed here; the file is checked as data.)

use crate::helpers::python_with_requirements;

#[tokio::test]
async fn collector_config_exports_to_prodsentinel_with_gzip_queue_and_retries() {
    let python = tokio::task::spawn_blocking(python_with_requirements).await.unwrap();
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/otel-collector-config.yaml");
    let check = r#"
import sys, yaml
c = yaml.safe_load(open(sys.argv[1]))
grpc = c["exporters"]["otlp/prodsentinel"]
assert grpc["compression"] == "gzip", grpc
assert grpc["sending_queue"]["enabled"] is True
assert grpc["retry_on_failure"]["enabled"] is True
assert grpc["tls"]["insecure"] is True
assert grpc["endpoint"].endswith("4317}")
http = c["exporters"]["otlphttp/prodsentinel"]
assert http["compression"] == "gzip" and http["encoding"] == "proto"
assert http["retry_on_failure"]["enabled"] is True and http["sending_queue"]["enabled"] is True
assert set(c["receivers"]["otlp"]["protocols"]) == {"grpc", "http"}
pipelines = c["service"]["pipelines"]
assert set(pipelines) == {"traces", "logs", "metrics"}
for name, p in pipelines.items():
    assert p["receivers"] == ["otlp"], name
    assert all(e in c["exporters"] for e in p["exporters"]), name
    assert all(x in c["processors"] for x in p["processors"]), name
print("ok")
"#;
    let output = std::process::Command::new(python).args(["-c", check, config]).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "ok");
}
