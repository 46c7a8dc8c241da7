//! API-server faults: failed writes, conflicts, cut watches and 410 Gone. The controller must
//! recover without losing a rotated refresh token and without duplicate token calls.

mod support;

use std::time::Duration;

use connector_auth_operator::api::ConnectorAuth;
use fake_apiserver::{FakeApiServer, Fault};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, PostParams};
use serde_json::json;
use support::operator::{Operator, Source};
use support::*;

async fn setup(ttl: u64) -> (FakeApiServer, kube::Client, String, std::sync::Arc<Book>) {
    let (base, book) = rotating(ttl).await;
    let server = api_server().await;
    let client = server.client();
    let b = |v: &str| k8s_openapi::ByteString(v.as_bytes().to_vec());
    let creds: Secret = serde_json::from_value(json!({"metadata": {"name": "c"},
        "data": {"client_id": b("rot-client"), "client_secret": b("rot-secret"), "refresh_token": b("rt-seed")}}))
    .unwrap();
    Api::<Secret>::namespaced(client.clone(), "ns")
        .create(&PostParams::default(), &creds)
        .await
        .unwrap();
    let ca: ConnectorAuth = serde_json::from_value(json!({
        "apiVersion": "connectorauth.dev/v1alpha1", "kind": "ConnectorAuth", "metadata": {"name": "crm", "namespace": "ns"},
        "spec": {"credentialsRef": {"name": "c"}, "oauth2": {"tokenUrl": format!("{base}/oauth/token"), "grantType": "refreshToken"}},
    }))
    .unwrap();
    Api::<ConnectorAuth>::namespaced(client.clone(), "ns")
        .create(&PostParams::default(), &ca)
        .await
        .unwrap();
    (server, client, base, book)
}

async fn published_token_works(client: &kube::Client, base: &str) -> bool {
    let Ok(Some(s)) = Api::<Secret>::namespaced(client.clone(), "ns")
        .get_opt("crm-token")
        .await
    else {
        return false;
    };
    let headers = String::from_utf8(s.data.unwrap()["headers.json"].0.clone()).unwrap();
    call_api(
        &format!("{base}/api/me"),
        &std::collections::BTreeMap::from([("headers.json".to_string(), headers)]),
    )
    .await
        == 200
}

fn patches(server: &FakeApiServer, name: &str, sub: Option<&str>) -> usize {
    server
        .requests()
        .iter()
        .filter(|r| r.verb == "patch" && r.name.as_deref() == Some(name) && r.subresource.as_deref() == sub)
        .count()
}

async fn until(secs: u64, what: &str, mut f: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while !f().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_state_writes_are_retried_and_the_rotated_token_is_never_lost() {
    let (server, client, base, book) = setup(3600).await;
    // The first five writes of the state Secret fail with 500 (the driver retries in-pass,
    // then holds the record in memory and writes it first on the next pass).
    server.fail_next(Fault::new(500, "crm-connectorauth-state").method("PATCH").times(5));
    let op = Operator::start(Source::Url(server.url()), "op", false);
    until(20, "token published", async || {
        published_token_works(&client, &base).await
    })
    .await;
    assert!(
        patches(&server, "crm-connectorauth-state", None) >= 6,
        "the injected failures were hit and retried"
    );
    assert_eq!(
        book.requests(),
        1,
        "the token call was not repeated while the state write failed"
    );
    assert!(!book.family_revoked());
    let state = server
        .object("", "secrets", Some("ns"), "crm-connectorauth-state")
        .expect("state written in the end");
    assert!(state["data"]["state.json"].is_string());
    op.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_output_and_status_writes_recover_without_new_token_calls() {
    let (server, client, base, book) = setup(3600).await;
    server.fail_next(Fault::new(500, "crm-token").method("PATCH").times(2));
    server.fail_next(Fault::new(409, "connectorauths/crm/status").method("PATCH").times(2));
    let op = Operator::start(Source::Url(server.url()), "op", false);
    until(30, "token published", async || {
        published_token_works(&client, &base).await
    })
    .await;
    until(30, "Ready", async || {
        let ca = Api::<ConnectorAuth>::namespaced(client.clone(), "ns")
            .get("crm")
            .await
            .unwrap();
        ca.status
            .is_some_and(|s| s.conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
    })
    .await;
    assert!(
        patches(&server, "crm-token", None) >= 3,
        "output write failures were hit and retried"
    );
    assert!(
        patches(&server, "crm", Some("status")) >= 3,
        "status conflicts were hit and retried"
    );
    assert_eq!(book.requests(), 1);
    op.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cut_watches_and_410_gone_do_not_stop_refreshing() {
    let (server, client, base, book) = setup(2).await;
    let op = Operator::start(Source::Url(server.url()), "op", false);
    until(10, "issued", async || published_token_works(&client, &base).await).await;
    for _ in 0..3 {
        server.expire_watch_history();
        server.close_watches();
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    let before = book.requests();
    until(10, "refresh after relists", async || book.requests() > before).await;
    // A credentials change after the relists is still noticed.
    let b = |v: &str| k8s_openapi::ByteString(v.as_bytes().to_vec());
    book.refresh.lock().unwrap().insert("rt-new".into(), (3, true));
    let patch = json!({"data": {"refresh_token": b("rt-new")}});
    Api::<Secret>::namespaced(client.clone(), "ns")
        .patch(
            "c",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&patch),
        )
        .await
        .unwrap();
    until(10, "new seed used", async || {
        book.refresh.lock().unwrap().get("rt-new") == Some(&(3, false))
    })
    .await;
    assert!(!book.family_revoked(), "no refresh token was sent twice");
    until(10, "current token", async || {
        published_token_works(&client, &base).await
    })
    .await;
    op.stop().await;
}
