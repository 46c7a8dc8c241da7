//! No stored secret: the workload's ServiceAccount token as the credential, through the
//! controller against the stateful test API server, which signs audience-bound tokens
//! (TokenRequest) that the token service verifies against the server's published keys.
//! A ServiceAccount must opt in before any token of it is asked for; the token is fetched
//! fresh for each exchange and is nowhere after it: not in status, Events or any Secret.

mod support;

use std::collections::BTreeMap;

use connector_auth_operator::api::ConnectorAuth;
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use support::operator::{Operator, Source};
use support::*;

const NS: &str = "team-a";

async fn service_account(client: &kube::Client, name: &str, allowed: Option<&str>) {
    let mut sa = json!({"metadata": {"name": name, "namespace": NS}});
    if let Some(a) = allowed {
        sa["metadata"]["annotations"] = json!({"connectorauth.dev/connectorauths": a});
    }
    Api::<ServiceAccount>::namespaced(client.clone(), NS)
        .create(&PostParams::default(), &serde_json::from_value(sa).unwrap())
        .await
        .unwrap();
}

/// The ConnectorAuth `name`: RFC 8693 token exchange at `base` with the ServiceAccount `sa`.
async fn exchange_resource(client: &kube::Client, name: &str, sa: &str, base: &str) {
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": format!("{name}-credentials"), "namespace": NS},
        "stringData": {"client_id": "exchanger", "client_secret": "exchanger-secret"},
    }))
    .unwrap();
    Api::<Secret>::namespaced(client.clone(), NS)
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    let ca: ConnectorAuth = serde_json::from_value(json!({
        "apiVersion": "connectorauth.dev/v1alpha1", "kind": "ConnectorAuth",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "credentialsRef": {"name": format!("{name}-credentials")},
            "provider": "token-exchange",
            "providerParams": {"token_url": format!("{base}/token"), "audience": "crm-api"},
            "oauth2": {},
            "serviceAccountToken": {"name": sa, "audience": "exchange.example.com"},
        },
    }))
    .unwrap();
    Api::<ConnectorAuth>::namespaced(client.clone(), NS)
        .create(&PostParams::default(), &ca)
        .await
        .unwrap();
}

async fn ready(client: &kube::Client, name: &str) -> Option<(String, String, String)> {
    let ca = Api::<ConnectorAuth>::namespaced(client.clone(), NS)
        .get(name)
        .await
        .ok()?;
    let c = ca.status?.conditions.into_iter().find(|c| c.type_ == "Ready")?;
    Some((c.status, c.reason, c.message))
}

fn token_requests(server: &fake_apiserver::FakeApiServer) -> usize {
    server
        .requests()
        .iter()
        .filter(|r| r.resource == "serviceaccounts" && r.subresource.as_deref() == Some("token"))
        .count()
}

async fn headers(client: &kube::Client, name: &str) -> Option<BTreeMap<String, String>> {
    let s = Api::<Secret>::namespaced(client.clone(), NS)
        .get_opt(&format!("{name}-token"))
        .await
        .ok()??;
    let v = String::from_utf8(s.data.as_ref()?.get("headers.json")?.0.clone()).ok()?;
    Some(BTreeMap::from([("headers.json".to_string(), v)]))
}

#[derive(Clone, Default)]
struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_account_token_is_exchanged_fresh_each_time_and_kept_nowhere() {
    let logs = Captured::default();
    let writer = logs.clone();
    let _ = tracing_subscriber::fmt()
        .with_env_filter("trace")
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .try_init();
    let server = api_server().await;
    let client = server.client();
    let (base, book) = workload_identity(&server.issuer(), &format!("system:serviceaccount:{NS}:crm-sync")).await;
    service_account(&client, "crm-sync", Some("billing, crm")).await;
    exchange_resource(&client, "crm", "crm-sync", &base).await;
    let op = Operator::start(Source::Url(server.url()), "op-1", false);

    eventually(20, "a token the API accepts", || async {
        let h = headers(&client, "crm").await?;
        (call_api(&format!("{base}/api"), &h).await == 200).then_some(())
    })
    .await;
    // A renewal (asked for here) exchanges again, with a new ServiceAccount token.
    let renew = Api::<ConnectorAuth>::namespaced(client.clone(), NS);
    renew
        .patch(
            "crm",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"connectorauth.dev/renew": "now"}}})),
        )
        .await
        .unwrap();
    eventually(20, "a second exchange", || async {
        (book.exchanges().len() == 2).then_some(())
    })
    .await;
    assert_eq!(book.refused(), Vec::<String>::new());
    let presented = book.presented.lock().unwrap().clone();
    assert_eq!(presented.len(), 2);
    assert_ne!(
        presented[0], presented[1],
        "a fresh ServiceAccount token for each exchange"
    );
    assert_eq!(token_requests(&server), 2);

    // Not in status, Events or any Secret (output or private state).
    let mut seen: Vec<String> = vec![serde_json::to_string(&renew.get("crm").await.unwrap().status).unwrap()];
    for e in server.objects("events.k8s.io", "events") {
        seen.push(e.to_string());
    }
    assert!(seen[1..].iter().any(|e| e.contains("Issued")), "Events were written");
    let status_and_events = seen.join("\n");
    for s in server.objects("", "secrets") {
        let data: Value = s["data"].clone();
        for v in data.as_object().into_iter().flatten().filter_map(|(_, v)| v.as_str()) {
            use base64::Engine as _;
            let bytes = base64::engine::general_purpose::STANDARD.decode(v).unwrap_or_default();
            seen.push(String::from_utf8_lossy(&bytes).into_owned());
        }
    }
    let logs = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(logs.contains("TRACE"), "trace logging was on");
    for t in &presented {
        let signature = t.rsplit('.').next().unwrap();
        assert!(
            !seen.iter().any(|s| s.contains(signature)),
            "a ServiceAccount token was kept"
        );
        assert!(!logs.contains(signature), "a ServiceAccount token was logged");
    }
    // The exchanged credentials are in the output Secret only: not logged, not in status or Events.
    for issued in book.issued.lock().unwrap().iter() {
        assert!(!logs.contains(issued.as_str()), "an exchanged token was logged");
        assert!(
            !status_and_events.contains(issued.as_str()),
            "an exchanged token in status or an Event"
        );
    }
    op.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_account_that_did_not_opt_in_is_refused_and_no_token_is_requested() {
    let server = api_server().await;
    let client = server.client();
    let (base, book) = workload_identity(&server.issuer(), &format!("system:serviceaccount:{NS}:crm-sync")).await;
    service_account(&client, "crm-sync", Some("billing")).await;
    service_account(&client, "bare", None).await;
    exchange_resource(&client, "crm", "crm-sync", &base).await;
    exchange_resource(&client, "other", "bare", &base).await;
    exchange_resource(&client, "ghost", "nobody", &base).await;
    let op = Operator::start(Source::Url(server.url()), "op-1", false);

    for (name, reason, says) in [
        (
            "crm",
            "ServiceAccountNotAllowed",
            "connectorauth.dev/connectorauths must list `crm`",
        ),
        (
            "other",
            "ServiceAccountNotAllowed",
            "connectorauth.dev/connectorauths must list `other`",
        ),
        ("ghost", "ServiceAccountNotFound", "ServiceAccount team-a/nobody"),
    ] {
        let (st, r, message) = eventually(20, "refused", || ready(&client, name)).await;
        assert_eq!((st.as_str(), r.as_str()), ("False", reason), "{name}: {message}");
        assert!(message.contains(says), "{name}: {message}");
    }
    assert_eq!(
        token_requests(&server),
        0,
        "no token of a ServiceAccount that did not opt in"
    );
    assert!(book.exchanges().is_empty());

    // The ServiceAccount's owner opts in; the next look at the resource succeeds.
    Api::<ServiceAccount>::namespaced(client.clone(), NS)
        .patch(
            "crm-sync",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"connectorauth.dev/connectorauths": "billing,crm"}}})),
        )
        .await
        .unwrap();
    Api::<ConnectorAuth>::namespaced(client.clone(), NS)
        .patch(
            "crm",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"touch": "1"}}})),
        )
        .await
        .unwrap();
    eventually(20, "ready once allowed", || async {
        let (st, _, _) = ready(&client, "crm").await?;
        (st == "True").then_some(())
    })
    .await;
    assert_eq!(token_requests(&server), 1);
    op.stop().await;
}
