//! Secrets never reach logs (at TRACE, every crate), Events, status or error messages. Seeded
//! credential values and every token the provider issues are searched for in all of them
//! while the controller issues, refreshes, restores output and fails.

mod support;

use std::io::Write;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use connector_auth_operator::api::ConnectorAuth;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::json;
use support::operator::{Operator, Source};
use support::*;

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

const CLIENT_SECRET: &str = "rot-secret";
const SEED: &str = "rt-seed";
const EXTRA_SECRET: &str = "SEEDED-unused-credential-4d2f9a";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_value_appears_in_trace_logs_events_status_or_errors() {
    let logs = Captured::default();
    let writer = logs.clone();
    tracing_subscriber::fmt()
        .with_env_filter("trace")
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .init();

    let (base, book) = rotating(2).await;
    let server = api_server().await;
    let client = server.client();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "ns");
    let b = |v: &str| k8s_openapi::ByteString(v.as_bytes().to_vec());
    let creds: Secret = serde_json::from_value(json!({"metadata": {"name": "c"},
        "data": {"client_id": b("rot-client"), "client_secret": b(CLIENT_SECRET), "refresh_token": b(SEED), "unused": b(EXTRA_SECRET)}}))
    .unwrap();
    secrets.create(&PostParams::default(), &creds).await.unwrap();
    let ca: ConnectorAuth = serde_json::from_value(json!({
        "apiVersion": "connectorauth.dev/v1alpha1", "kind": "ConnectorAuth", "metadata": {"name": "crm", "namespace": "ns"},
        "spec": {"credentialsRef": {"name": "c"}, "oauth2": {"tokenUrl": format!("{base}/oauth/token"), "grantType": "refreshToken"}},
    }))
    .unwrap();
    Api::<ConnectorAuth>::namespaced(client.clone(), "ns")
        .create(&PostParams::default(), &ca)
        .await
        .unwrap();

    let op = Operator::start(Source::Url(server.url()), "op", false);
    // Issue, refresh twice, restore a deleted output, then fail for a while.
    while book.requests() < 3 {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = secrets.delete("crm-token", &DeleteParams::default()).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    book.down.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(3)).await;
    op.stop().await;

    // Every token the provider issued and every credential value.
    let mut needles: Vec<String> = vec![CLIENT_SECRET.into(), SEED.into(), EXTRA_SECRET.into()];
    needles.extend(book.valid.lock().unwrap().iter().cloned());
    needles.extend(book.refresh.lock().unwrap().keys().cloned());
    assert!(needles.len() >= 8, "tokens were issued: {needles:?}");

    let logs = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(logs.contains("TRACE"), "trace logging was on");
    assert!(logs.contains("token obtained"), "the operator logged its work");
    let events = serde_json::to_string(&server.objects("events.k8s.io", "events")).unwrap();
    assert!(events.contains("ProviderUnavailable"), "failure Events were written");
    let status = serde_json::to_string(&server.objects("connectorauth.dev", "connectorauths")).unwrap();
    assert!(status.contains("RefreshFailing"), "failure status was written");
    for n in &needles {
        assert!(!logs.contains(n.as_str()), "secret `{n}` leaked into logs");
        assert!(!events.contains(n.as_str()), "secret `{n}` leaked into Events");
        assert!(!status.contains(n.as_str()), "secret `{n}` leaked into status");
    }
}
