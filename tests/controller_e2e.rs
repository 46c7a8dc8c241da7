//! The controller end to end: the real `kube::Client` against the stateful in-process API server,
//! a loopback token provider, and operators that can be stopped gracefully or killed.

mod support;

use std::sync::atomic::Ordering;
use std::time::Duration;

use connector_auth_operator::api::ConnectorAuth;
use connector_auth_operator::controller;
use fake_apiserver::{FakeApiServer, Recorded};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;
use support::operator::{Operator, Source};
use support::*;

const NS: &str = "team-a";

async fn create_rotating(client: &kube::Client, base: &str, name: &str) {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), NS);
    let creds: Secret = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": format!("{name}-credentials"), "namespace": NS},
        "stringData": {"client_id": "rot-client", "client_secret": "rot-secret", "refresh_token": "rt-seed"},
    }))
    .unwrap();
    // stringData is write-only on a real server; store it as data like the API server does.
    let mut creds = creds;
    creds.data = Some(
        creds
            .string_data
            .take()
            .unwrap()
            .into_iter()
            .map(|(k, v)| (k, k8s_openapi::ByteString(v.into_bytes())))
            .collect(),
    );
    secrets.create(&PostParams::default(), &creds).await.unwrap();
    let cas: Api<ConnectorAuth> = Api::namespaced(client.clone(), NS);
    let ca: ConnectorAuth = serde_json::from_value(json!({
        "apiVersion": "connectorauth.dev/v1alpha1", "kind": "ConnectorAuth",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "credentialsRef": {"name": format!("{name}-credentials")},
            "oauth2": {"tokenUrl": format!("{base}/oauth/token"), "grantType": "refreshToken"},
        },
    }))
    .unwrap();
    cas.create(&PostParams::default(), &ca).await.unwrap();
}

/// Polls `f` until it returns Some, or panics after `secs`.
async fn output(client: &kube::Client, name: &str) -> Option<Secret> {
    Api::<Secret>::namespaced(client.clone(), NS)
        .get_opt(&format!("{name}-token"))
        .await
        .unwrap()
}

fn data(s: &Secret, key: &str) -> String {
    String::from_utf8(s.data.as_ref().unwrap()[key].0.clone()).unwrap()
}

async fn ready(client: &kube::Client, name: &str) -> Option<ConnectorAuth> {
    let ca = Api::<ConnectorAuth>::namespaced(client.clone(), NS)
        .get(name)
        .await
        .unwrap();
    let ok = ca
        .status
        .as_ref()?
        .conditions
        .iter()
        .any(|c| c.type_ == "Ready" && c.status == "True");
    ok.then_some(ca)
}

fn writes(reqs: &[Recorded]) -> Vec<String> {
    reqs.iter()
        .filter(|r| {
            matches!(
                r.verb.as_str(),
                "create" | "update" | "patch" | "delete" | "deletecollection"
            )
        })
        .map(|r| {
            format!(
                "{} {}{} {}",
                r.verb,
                r.resource,
                r.subresource.as_ref().map(|s| format!("/{s}")).unwrap_or_default(),
                r.name.clone().unwrap_or_default()
            )
        })
        .collect()
}

async fn api_me(base: &str, s: &Secret) -> u16 {
    let out = std::collections::BTreeMap::from([("headers.json".to_string(), data(s, "headers.json"))]);
    call_api(&format!("{base}/api/me"), &out).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_issuance_publishes_a_working_owned_secret_and_ready_status() {
    let (base, book) = rotating(3600).await;
    let server = api_server().await;
    let client = server.client();
    create_rotating(&client, &base, "crm").await;
    let op = Operator::start(Source::Url(server.url()), "op-1", false);

    let ca = eventually(10, "Ready", || ready(&client, "crm")).await;
    let out = output(&client, "crm").await.expect("output Secret");
    assert_eq!(api_me(&base, &out).await, 200, "the published header works");
    assert_eq!(book.requests(), 1);
    let labels = out.metadata.labels.clone().unwrap();
    assert_eq!(labels["app.kubernetes.io/managed-by"], "connector-auth-operator");
    let owner = &out.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!((owner.kind.as_str(), owner.controller), ("ConnectorAuth", Some(true)));
    assert!(
        !out.data.as_ref().unwrap().contains_key("refresh_token"),
        "refresh token is private"
    );

    let state = Api::<Secret>::namespaced(client.clone(), NS)
        .get("crm-connectorauth-state")
        .await
        .unwrap();
    let private = data(&state, "state.json");
    assert!(
        private.contains("\"refreshToken\":\"rt-"),
        "rotated refresh token persisted privately"
    );

    let status = ca.status.unwrap();
    assert_eq!(status.scheme.as_deref(), Some("oauth2"));
    assert_eq!(status.secret_name.as_deref(), Some("crm-token"));
    assert_eq!(status.expires_at.as_deref(), Some(data(&out, "expires_at").as_str()));
    assert!(status.next_refresh_time.is_some());
    assert_eq!(status.observed_generation, Some(1));
    let status_text = serde_json::to_string(&status).unwrap();
    assert!(
        !status_text.contains(&data(&out, "access_token")),
        "no secret in status"
    );

    let events = server.objects("events.k8s.io", "events");
    assert!(events.iter().any(|e| e["reason"] == "Issued"), "{events:#?}");
    op.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_with_valid_tokens_makes_zero_writes_and_zero_token_calls() {
    let (base, book) = rotating(3600).await;
    let server = api_server().await;
    let client = server.client();
    create_rotating(&client, &base, "crm").await;
    let op = Operator::start(Source::Url(server.url()), "op-1", false);
    eventually(10, "Ready", || ready(&client, "crm")).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    op.stop().await;

    server.clear_requests();
    let op = Operator::start(Source::Url(server.url()), "op-2", false);
    // Wait until the restarted operator has looked at the resource (it reads the state Secret).
    eventually(10, "reconcile after restart", || async {
        server
            .requests()
            .iter()
            .any(|r| r.verb == "get" && r.name.as_deref() == Some("crm-connectorauth-state"))
            .then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    op.stop().await;
    assert_eq!(
        writes(&server.requests()),
        Vec::<String>::new(),
        "no API writes on restart"
    );
    assert_eq!(book.requests(), 1, "no token calls on restart");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_refreshed_before_expiry_with_exact_writes_per_refresh() {
    let (base, book) = rotating(3).await;
    let server = api_server().await;
    let client = server.client();
    create_rotating(&client, &base, "crm").await;
    let op = Operator::start(Source::Url(server.url()), "op-1", false);
    eventually(10, "Ready", || ready(&client, "crm")).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.clear_requests();
    let before = book.requests();
    eventually(10, "a refresh", || async { (book.requests() > before).then_some(()) }).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let w = writes(&server.requests());
    op.stop().await;
    // A rotating provider: the state Secret twice — the write-ahead mark of the refresh token
    // about to be sent, then the new refresh token (clearing the mark) — then the output, then
    // status.
    assert_eq!(
        w,
        vec![
            "patch secrets crm-connectorauth-state",
            "patch secrets crm-connectorauth-state",
            "patch secrets crm-token",
            "patch connectorauths/status crm"
        ],
        "writes for one refresh"
    );
    assert!(!book.family_revoked());
    let out = output(&client, "crm").await.unwrap();
    assert_eq!(api_me(&base, &out).await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_change_reauthenticates_promptly() {
    let (base, book) = rotating(3600).await;
    let server = api_server().await;
    let client = server.client();
    create_rotating(&client, &base, "crm").await;
    let op = Operator::start(Source::Url(server.url()), "op-1", false);
    eventually(10, "Ready", || ready(&client, "crm")).await;
    let first = data(&output(&client, "crm").await.unwrap(), "access_token");

    book.refresh.lock().unwrap().insert("rt-reonboarded".into(), (5, true));
    let secrets: Api<Secret> = Api::namespaced(client.clone(), NS);
    let patch = json!({"data": {"refresh_token": k8s_openapi::ByteString(b"rt-reonboarded".to_vec())}});
    secrets
        .patch("crm-credentials", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    let second = eventually(5, "new token", || async {
        let t = data(&output(&client, "crm").await?, "access_token");
        (t != first).then_some(t)
    })
    .await;
    assert_ne!(first, second);
    assert_eq!(book.requests(), 2);
    assert!(!book.family_revoked());
    op.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_or_edited_output_is_restored_without_a_token_call() {
    let (base, book) = rotating(3600).await;
    let server = api_server().await;
    let client = server.client();
    create_rotating(&client, &base, "crm").await;
    let op = Operator::start(Source::Url(server.url()), "op-1", false);
    eventually(10, "Ready", || ready(&client, "crm")).await;
    let token = data(&output(&client, "crm").await.unwrap(), "access_token");
    let secrets: Api<Secret> = Api::namespaced(client.clone(), NS);

    secrets.delete("crm-token", &DeleteParams::default()).await.unwrap();
    let restored = eventually(5, "output restored", || output(&client, "crm")).await;
    assert_eq!(data(&restored, "access_token"), token);

    let patch = json!({"data": {"header_value": k8s_openapi::ByteString(b"tampered".to_vec())}});
    secrets
        .patch("crm-token", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    eventually(5, "edit reverted", || async {
        let s = output(&client, "crm").await?;
        (data(&s, "header_value") == format!("Bearer {token}")).then_some(())
    })
    .await;
    assert_eq!(
        book.requests(),
        1,
        "restored from what the operator knows, no token call"
    );
    op.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_outage_keeps_the_last_token_then_reports_expiry() {
    let (base, book) = rotating(3).await;
    let server = api_server().await;
    let client = server.client();
    create_rotating(&client, &base, "crm").await;
    let op = Operator::start(Source::Url(server.url()), "op-1", false);
    eventually(10, "Ready", || ready(&client, "crm")).await;
    let token = data(&output(&client, "crm").await.unwrap(), "access_token");
    book.down.store(true, Ordering::SeqCst);

    // Renewal (at ~2 s) fails: still Ready with the old token, plus a warning condition.
    let ca = eventually(10, "RefreshFailing", || async {
        let ca = Api::<ConnectorAuth>::namespaced(client.clone(), NS)
            .get("crm")
            .await
            .ok()?;
        ca.status
            .as_ref()?
            .conditions
            .iter()
            .any(|c| c.type_ == "RefreshFailing")
            .then_some(ca)
    })
    .await;
    let st = ca.status.unwrap();
    let failing = st.conditions.iter().find(|c| c.type_ == "RefreshFailing").unwrap();
    assert_eq!(failing.reason, "ProviderUnavailable");
    assert!(failing.message.contains("HTTP 503"), "{}", failing.message);
    assert!(st.failure_count >= Some(1));
    assert_eq!(
        data(&output(&client, "crm").await.unwrap(), "access_token"),
        token,
        "last good token kept"
    );

    // After expiry Ready turns False with the reason.
    eventually(10, "Ready=False after expiry", || async {
        let ca = Api::<ConnectorAuth>::namespaced(client.clone(), NS)
            .get("crm")
            .await
            .ok()?;
        ca.status?
            .conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "False" && c.reason == "ProviderUnavailable")
            .then_some(())
    })
    .await;
    let attempts = book.requests();
    assert!(attempts <= 4, "backoff, not a tight loop: {attempts} token requests");
    let events = server.objects("events.k8s.io", "events");
    let warnings: Vec<_> = events
        .iter()
        .filter(|e| e["reason"] == "ProviderUnavailable" && e["type"] == "Warning")
        .collect();
    assert_eq!(
        warnings.len(),
        1,
        "repeated failures form one Event series: {warnings:#?}"
    );
    let count = warnings[0]["series"]["count"].as_u64().unwrap_or(1);
    assert!((1..=attempts).contains(&count), "series count {count}");

    book.down.store(false, Ordering::SeqCst);
    op.stop().await;
}

/// If the resource reports its refresh token in doubt, puts a new onboarding token into its
/// credentials, as its owner would (unless the one put there before is still unused).
async fn reseed_if_in_doubt(client: &kube::Client, book: &Book) {
    let ca = Api::<ConnectorAuth>::namespaced(client.clone(), NS)
        .get("crm")
        .await
        .unwrap();
    let in_doubt = ca
        .status
        .is_some_and(|s| s.conditions.iter().any(|c| c.reason == "RefreshTokenInDoubt"));
    let secrets = Api::<Secret>::namespaced(client.clone(), NS);
    let name = ca.spec.credentials_ref.name;
    let seed = data(&secrets.get(&name).await.unwrap(), "refresh_token");
    let fresh = seed.starts_with("rt-reseed-")
        && book
            .refresh
            .lock()
            .unwrap()
            .get(&seed)
            .is_some_and(|(_, unused)| *unused);
    if !in_doubt || fresh {
        return;
    }
    let seed = format!("rt-reseed-{:x}", rand::random::<u32>());
    book.refresh
        .lock()
        .unwrap()
        .insert(seed.clone(), (rand::random::<u32>() as u64 + 100, true));
    let patch = json!({"data": {"refresh_token": k8s_openapi::ByteString(seed.into_bytes())}});
    secrets
        .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotating_refresh_tokens_survive_abrupt_restarts_without_reuse() {
    let (base, book) = rotating(2).await;
    let server = api_server().await;
    let client = server.client();
    create_rotating(&client, &base, "crm").await;
    // A kill between sending a refresh token and storing the answer leaves that token in doubt
    // (tests/controller_kill_steps.rs holds each step): it is never sent again, and this refresh-only
    // resource waits for a new onboarding token, which `reseed_if_in_doubt` provides.
    for i in 0..4 {
        let op = Operator::start(Source::Url(server.url()), &format!("op-{i}"), false);
        let before = book.requests();
        eventually(10, "a token request", || async {
            reseed_if_in_doubt(&client, &book).await;
            (book.requests() > before).then_some(())
        })
        .await;
        // Kill at a random point around the token call.
        tokio::time::sleep(Duration::from_millis(rand::random::<u64>() % 300)).await;
        op.kill();
    }
    let op = Operator::start(Source::Url(server.url()), "op-final", false);
    let before = book.requests();
    eventually(10, "refresh after restarts", || async {
        reseed_if_in_doubt(&client, &book).await;
        (book.requests() > before + 1).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!book.family_revoked(), "a rotated refresh token was sent twice");
    let out = eventually(5, "current token", || async {
        let s = output(&client, "crm").await?;
        (api_me(&base, &s).await == 200).then_some(s)
    })
    .await;
    assert!(!data(&out, "access_token").is_empty());
    op.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_leader_reconciles_and_a_standby_takes_over() {
    let (base, book) = rotating(2).await;
    let server = api_server().await;
    server.register("", "v1", "namespaces", "Namespace", false);
    let client = server.client();
    create_rotating(&client, &base, "crm").await;
    let a = Operator::start(Source::Url(server.url()), "op-a", true);
    eventually(10, "Ready", || ready(&client, "crm")).await;
    let b = Operator::start(Source::Url(server.url()), "op-b", true);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let lease = server
        .object(
            "coordination.k8s.io",
            "leases",
            Some("operators"),
            "connector-auth-operator",
        )
        .unwrap();
    assert_eq!(lease["spec"]["holderIdentity"], "op-a");

    a.kill();
    eventually(15, "standby leads", || async {
        let l = server.object(
            "coordination.k8s.io",
            "leases",
            Some("operators"),
            "connector-auth-operator",
        )?;
        (l["spec"]["holderIdentity"] == "op-b").then_some(())
    })
    .await;
    let before = book.requests();
    eventually(10, "standby refreshes", || async {
        (book.requests() > before).then_some(())
    })
    .await;
    assert!(!book.family_revoked());
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cross_namespace_reference_is_refused_without_reading_the_secret() {
    let server = api_server().await;
    let client = server.client();
    let cas: Api<ConnectorAuth> = Api::namespaced(client.clone(), NS);
    let ca: ConnectorAuth = serde_json::from_value(json!({
        "apiVersion": "connectorauth.dev/v1alpha1", "kind": "ConnectorAuth",
        "metadata": {"name": "thief", "namespace": NS},
        "spec": {"credentialsRef": {"name": "bank", "namespace": "tenant-b"}, "apiKey": {}},
    }))
    .unwrap();
    cas.create(&PostParams::default(), &ca).await.unwrap();
    let op = Operator::start(Source::Url(server.url()), "op-1", false);
    let ca = eventually(10, "refused", || async {
        let ca = cas.get("thief").await.ok()?;
        ca.status
            .as_ref()?
            .conditions
            .iter()
            .any(|c| c.reason == "CrossNamespaceReference")
            .then_some(ca)
    })
    .await;
    let ready = &ca.status.unwrap().conditions[0];
    assert_eq!(ready.status, "False");
    assert!(ready.message.contains("cross-namespace references are refused"));
    assert!(
        !server
            .requests()
            .iter()
            .any(|r| r.namespace.as_deref() == Some("tenant-b")),
        "never read"
    );
    assert!(output(&client, "thief").await.is_none());
    op.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_crd_gives_an_actionable_error() {
    let server = FakeApiServer::start().await; // CRD not registered
    for namespaces in [vec![], vec!["team-a".to_string()]] {
        let err = controller::check_crd(&server.client(), &namespaces).await.unwrap_err();
        assert!(
            err.to_string()
                .contains("connector-auth-operator crd | kubectl apply -f -"),
            "{namespaces:?}: {err}"
        );
    }
}

/// An Event publisher, the ConnectorAuth "crm" as the object Events are about, and a Warning.
fn outage(
    server: &FakeApiServer,
) -> (
    controller::events::Publisher,
    k8s_openapi::api::core::v1::ObjectReference,
    controller::events::Event<'static>,
) {
    use controller::events::{Event, EventType, Publisher};
    let publisher = Publisher::new(server.client(), "connector-auth-operator", "test-0");
    let regarding = k8s_openapi::api::core::v1::ObjectReference {
        api_version: Some("connectorauth.dev/v1alpha1".into()),
        kind: Some("ConnectorAuth".into()),
        name: Some("crm".into()),
        namespace: Some(NS.into()),
        uid: Some("uid-1".into()),
        ..Default::default()
    };
    let failed = Event {
        type_: EventType::Warning,
        reason: "ProviderUnavailable",
        note: "token endpoint answered HTTP 503",
        action: "Refresh",
    };
    (publisher, regarding, failed)
}

#[tokio::test]
async fn events_repeat_as_a_series_and_differ_by_note() {
    use connector_auth_operator::controller::events::Event;
    let server = api_server().await;
    let (publisher, regarding, failed) = outage(&server);
    for _ in 0..3 {
        publisher.publish(&failed, &regarding).await.unwrap();
    }
    let other = Event {
        note: "token endpoint answered HTTP 502",
        ..failed.clone()
    };
    publisher.publish(&other, &regarding).await.unwrap();

    let events = server.objects("events.k8s.io", "events");
    assert_eq!(events.len(), 2, "{events:#?}");
    let series = events
        .iter()
        .find(|e| e["note"] == "token endpoint answered HTTP 503")
        .unwrap();
    assert_eq!(series["series"]["count"], 3);
    assert_eq!(series["regarding"]["name"], "crm");
    assert_eq!(series["reportingController"], "connector-auth-operator");
    assert_eq!(series["reportingInstance"], "test-0");
    let single = events
        .iter()
        .find(|e| e["note"] == "token endpoint answered HTTP 502")
        .unwrap();
    assert!(single["series"].is_null(), "{single:#?}");

    // A repeat whose Event was deleted meanwhile (or expired server-side) starts a new one.
    let events_api: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(server.client(), NS);
    let name = series["metadata"]["name"].as_str().unwrap();
    events_api.delete(name, &DeleteParams::default()).await.unwrap();
    publisher.publish(&failed, &regarding).await.unwrap();
    let events = server.objects("events.k8s.io", "events");
    let renewed: Vec<_> = events
        .iter()
        .filter(|e| e["note"] == "token endpoint answered HTTP 503")
        .collect();
    assert_eq!(renewed.len(), 1, "{events:#?}");
    assert_ne!(renewed[0]["metadata"]["name"], name);
    assert!(renewed[0]["series"].is_null());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_resource_leaves_no_per_resource_metric_behind() {
    let (base, _book) = rotating(3600).await;
    let server = api_server().await;
    let client = server.client();
    create_rotating(&client, &base, "crm").await;
    let op = Operator::start(Source::Url(server.url()), "op-1", false);
    eventually(10, "Ready", || ready(&client, "crm")).await;
    let series = format!("connectorauth_token_expiry_timestamp_seconds{{namespace=\"{NS}\",name=\"crm\"}}");
    let metrics = || async {
        reqwest::get(format!("http://{}/metrics", op.metrics))
            .await
            .ok()?
            .text()
            .await
            .ok()
    };
    eventually(10, "expiry metric", || async {
        metrics().await.filter(|m| m.contains(&series))
    })
    .await;

    Api::<ConnectorAuth>::namespaced(client.clone(), NS)
        .delete("crm", &DeleteParams::default())
        .await
        .unwrap();
    eventually(10, "expiry metric removed", || async {
        metrics()
            .await
            .filter(|m| !m.contains(&series) && m.contains("connectorauth_"))
    })
    .await;
    op.stop().await;
}

#[tokio::test]
async fn a_repeat_of_an_expired_event_starts_a_new_one() {
    let server = api_server().await;
    server.set_event_ttl(Duration::from_millis(200));
    let (publisher, regarding, failed) = outage(&server);
    publisher.publish(&failed, &regarding).await.unwrap();
    let first = server.objects("events.k8s.io", "events")[0]["metadata"]["name"].clone();
    eventually(10, "the Event expired", || async {
        Some(()).filter(|_| server.objects("events.k8s.io", "events").is_empty())
    })
    .await;
    // Within the series window, so the publisher bumps the series of an Event that is gone.
    publisher.publish(&failed, &regarding).await.unwrap();
    let events = server.objects("events.k8s.io", "events");
    assert_eq!(events.len(), 1, "{events:#?}");
    assert_ne!(events[0]["metadata"]["name"], first);
    assert!(events[0]["series"].is_null());
}

/// A scheme that keeps nothing private but the fingerprint of its inputs: no refresh token.
struct Stateless {
    name: &'static str,
    spec: serde_json::Value,
    credentials: serde_json::Value,
    /// A change of credentials that still works (the fingerprint covers every key).
    changed: serde_json::Value,
    /// Token calls so far (an API key makes none).
    calls: Box<dyn Fn() -> u64 + Send + Sync>,
    /// Whether new credentials mean a token call (not for an API key).
    calls_provider: bool,
}

/// One resource per stateless scheme: a client-credentials GET (snov.io), a session login
/// (Tripletex) and an API key (WooCommerce).
async fn stateless(client: &kube::Client) -> Vec<Stateless> {
    let (snov, snov_book) = snov().await;
    let (tripletex, tripletex_book) = tripletex().await;
    let url = format!(
        "{snov}/v1/oauth/access_token?client_id={{{{ username | urlencode }}}}&client_secret={{{{ password | urlencode }}}}&grant_type=client_credentials"
    );
    let cases = vec![
        Stateless {
            name: "snov",
            spec: json!({"refreshableToken": {"authorization": {"method": "GET", "url": url},
                "accessToken": {"jsonPath": "access_token"}, "expiresIn": {"jsonPath": "expires_in"}}}),
            credentials: json!({"username": "snov-id", "password": "snov&secret"}),
            changed: json!({"username": "snov-id", "password": "snov&secret", "note": "rotated"}),
            calls: Box::new(move || snov_book.requests()),
            calls_provider: true,
        },
        Stateless {
            name: "tripletex",
            spec: json!({"tripletex": {"baseUrl": tripletex}}),
            credentials: json!({"consumer_token": "consumer+token/1", "employee_token": "employee-token"}),
            changed: json!({"consumer_token": "consumer+token/1", "employee_token": "employee-token", "note": "rotated"}),
            calls: Box::new(move || tripletex_book.requests()),
            calls_provider: true,
        },
        Stateless {
            name: "woocommerce",
            spec: json!({"apiKey": {"key": "{{ consumer_key }}:{{ consumer_secret }}"}}),
            credentials: json!({"consumer_key": "ck_123", "consumer_secret": "cs_456"}),
            changed: json!({"consumer_key": "ck_123", "consumer_secret": "cs_789"}),
            calls: Box::new(|| 0),
            calls_provider: false,
        },
    ];
    for case in &cases {
        let secret: Secret = serde_json::from_value(json!({
            "metadata": {"name": format!("{}-credentials", case.name), "namespace": NS},
            "stringData": case.credentials,
        }))
        .unwrap();
        Api::<Secret>::namespaced(client.clone(), NS)
            .create(&PostParams::default(), &secret)
            .await
            .unwrap();
        let mut spec = case.spec.clone();
        spec["credentialsRef"] = json!({"name": format!("{}-credentials", case.name)});
        let ca: ConnectorAuth = serde_json::from_value(json!({
            "apiVersion": "connectorauth.dev/v1alpha1", "kind": "ConnectorAuth",
            "metadata": {"name": case.name, "namespace": NS}, "spec": spec,
        }))
        .unwrap();
        Api::<ConnectorAuth>::namespaced(client.clone(), NS)
            .create(&PostParams::default(), &ca)
            .await
            .unwrap();
    }
    cases
}

/// API writes by "verb resource[/subresource]".
fn writes_by_kind(reqs: &[Recorded]) -> std::collections::BTreeMap<String, usize> {
    let mut out = std::collections::BTreeMap::new();
    for w in writes(reqs) {
        let kind = w.rsplit_once(' ').map_or(w.as_str(), |(k, _)| k).to_string();
        *out.entry(kind).or_default() += 1;
    }
    out
}

/// Starts an operator and waits until every resource is Ready and each has been reconciled
/// after its own output write (so the count of writes is complete).
async fn run_until_ready(server: &FakeApiServer, cases: &[Stateless], identity: &str) -> Operator {
    let client = server.client();
    let op = Operator::start(Source::Url(server.url()), identity, false);
    for case in cases {
        eventually(10, "Ready", || ready(&client, case.name)).await;
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    op
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_issuance_without_private_state_writes_one_secret_per_resource() {
    let server = api_server().await;
    let client = server.client();
    let cases = stateless(&client).await;
    server.clear_requests();
    let op = run_until_ready(&server, &cases, "op-1").await;
    op.stop().await;

    let n = cases.len();
    assert_eq!(
        writes_by_kind(&server.requests()),
        std::collections::BTreeMap::from([
            ("create events".to_string(), n),
            ("patch connectorauths/status".to_string(), n),
            ("patch secrets".to_string(), n),
        ]),
        "one output Secret, one status patch and one Issued Event per resource: {:#?}",
        writes(&server.requests())
    );
    for case in &cases {
        let state = server.object("", "secrets", Some(NS), &format!("{}-connectorauth-state", case.name));
        assert!(state.is_none(), "{}: no state Secret", case.name);
        let out = output(&client, case.name).await.expect("output Secret");
        let annotations = out.metadata.annotations.unwrap_or_default();
        assert_eq!(
            annotations["connectorauth.dev/input-fingerprint"].len(),
            32,
            "{}: the output carries the input fingerprint",
            case.name
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_without_state_secrets_makes_zero_writes_and_zero_token_calls() {
    let server = api_server().await;
    let client = server.client();
    let cases = stateless(&client).await;
    run_until_ready(&server, &cases, "op-1").await.stop().await;
    let calls: Vec<u64> = cases.iter().map(|c| (c.calls)()).collect();

    server.clear_requests();
    let op = Operator::start(Source::Url(server.url()), "op-2", false);
    eventually(10, "every resource looked at after the restart", || async {
        let reqs = server.requests();
        cases
            .iter()
            .all(|c| {
                let output = format!("{}-token", c.name);
                reqs.iter()
                    .any(|r| r.verb == "get" && r.name.as_deref() == Some(output.as_str()))
            })
            .then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    op.stop().await;
    assert_eq!(
        writes(&server.requests()),
        Vec::<String>::new(),
        "no API writes on restart"
    );
    let after: Vec<u64> = cases.iter().map(|c| (c.calls)()).collect();
    assert_eq!(after, calls, "no token calls on restart");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_changed_while_the_operator_was_down_are_noticed_without_a_state_secret() {
    let server = api_server().await;
    let client = server.client();
    let cases = stateless(&client).await;
    run_until_ready(&server, &cases, "op-1").await.stop().await;
    let mut before = Vec::new();
    for case in &cases {
        before.push(output(&client, case.name).await.unwrap().data.unwrap());
        let patch = json!({"stringData": case.changed});
        Api::<Secret>::namespaced(client.clone(), NS)
            .patch(
                &format!("{}-credentials", case.name),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
            .unwrap();
    }
    let calls: Vec<u64> = cases.iter().map(|c| (c.calls)()).collect();

    let op = Operator::start(Source::Url(server.url()), "op-2", false);
    for (case, before) in cases.iter().zip(&before) {
        eventually(10, "the output follows the new credentials", || async {
            let now = output(&client, case.name).await?.data?;
            (&now != before).then_some(())
        })
        .await;
    }
    op.stop().await;
    let after: Vec<u64> = cases.iter().map(|c| (c.calls)()).collect();
    let expected: Vec<u64> = cases
        .iter()
        .zip(&calls)
        .map(|(c, n)| n + u64::from(c.calls_provider))
        .collect();
    assert_eq!(after, expected, "one new token call per token scheme");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_replica_turns_ready_once_its_cache_has_synced() {
    let server = api_server().await;
    let client = server.client();
    let (base, _book) = rotating(3600).await;
    create_rotating(&client, &base, "crm").await;
    // A gate holds the ConnectorAuth list: not ready while the cache cannot sync.
    let gate = fake_apiserver::Gate::new();
    server.delay_next(fake_apiserver::Delay::at(&gate, "connectorauths?&limit=500").method("GET"));
    let op = Operator::start(Source::Url(server.url()), "op", false);
    let readyz = format!("http://{}/readyz", op.metrics);
    let status = || async { reqwest::get(&readyz).await.ok().map(|r| r.status().as_u16()) };
    tokio::time::timeout(Duration::from_secs(10), gate.arrived())
        .await
        .expect("the operator lists ConnectorAuths");
    assert_eq!(status().await, Some(503));
    gate.open();
    eventually(10, "/readyz says ready", || async {
        (status().await == Some(200)).then_some(())
    })
    .await;
    drop(op);
}

/// A client-credentials token endpoint that takes 150 ms per request and issues 3-second
/// tokens, counting the requests of each client (`client_id` in the form or HTTP Basic).
async fn slow_provider() -> (
    String,
    std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, u32>>>,
) {
    use axum::routing::post;
    use base64::Engine as _;
    let counts = std::sync::Arc::new(std::sync::Mutex::new(std::collections::HashMap::new()));
    let seen = counts.clone();
    let app = axum::Router::new().route(
        "/token",
        post(move |headers: axum::http::HeaderMap, body: String| {
            let seen = seen.clone();
            async move {
                tokio::time::sleep(Duration::from_millis(150)).await;
                let basic = headers
                    .get("authorization")
                    .and_then(|h| h.to_str().ok()?.strip_prefix("Basic ").map(str::to_owned))
                    .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
                    .and_then(|b| String::from_utf8(b).ok())
                    .and_then(|s| s.split_once(':').map(|(id, _)| id.to_owned()));
                let form = body
                    .split('&')
                    .find_map(|kv| kv.strip_prefix("client_id=").map(str::to_owned));
                let client = basic.or(form).unwrap_or_default();
                *seen.lock().unwrap().entry(client).or_insert(0) += 1;
                axum::Json(json!({"access_token": format!("at-{}", rand::random::<u64>()), "token_type": "Bearer", "expires_in": 3}))
            }
        }),
    );
    (serve(app).await, counts)
}

/// More falls due than the operator can serve (one pass at a time, each waiting 150 ms on
/// the provider, while 24 tokens of 3 s each want renewing every 2 s): every resource still
/// gets its turn, longest waiting first. (kube-runtime's runner served the overflow in hash
/// order, and the same resources kept winning while others never got a second pass.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_overloaded_operator_serves_every_resource_in_turn() {
    let (base, counts) = slow_provider().await;
    let server = api_server().await;
    let client = server.client();
    let names: Vec<String> = (0..24).map(|i| format!("app-{i:02}")).collect();
    for name in &names {
        let secrets: Api<Secret> = Api::namespaced(client.clone(), NS);
        let creds: Secret = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": format!("{name}-credentials"), "namespace": NS},
            "data": {"client_id": b64(name), "client_secret": b64("s")},
        }))
        .unwrap();
        secrets.create(&PostParams::default(), &creds).await.unwrap();
        let ca: ConnectorAuth = serde_json::from_value(json!({
            "apiVersion": "connectorauth.dev/v1alpha1", "kind": "ConnectorAuth",
            "metadata": {"name": name, "namespace": NS},
            "spec": {
                "credentialsRef": {"name": format!("{name}-credentials")},
                "oauth2": {"tokenUrl": format!("{base}/token"), "grantType": "clientCredentials"},
            },
        }))
        .unwrap();
        Api::<ConnectorAuth>::namespaced(client.clone(), NS)
            .create(&PostParams::default(), &ca)
            .await
            .unwrap();
    }
    let op = Operator::start_with(Source::Url(server.url()), "op-1", false, |c| c.concurrency = 1);
    let counted = || counts.lock().unwrap().clone();
    eventually(20, "every resource's first token", || async {
        (names.iter().all(|n| counted().contains_key(n))).then_some(())
    })
    .await;
    let first = counted();
    tokio::time::sleep(Duration::from_secs(16)).await;
    let last = counted();
    op.stop().await;
    let renewals: Vec<(String, u32)> = names.iter().map(|n| (n.clone(), last[n] - first[n])).collect();
    // ~6 passes a second shared by 24 resources over 16 s: about four each, in turn.
    let starved: Vec<&(String, u32)> = renewals.iter().filter(|(_, r)| *r < 2).collect();
    assert!(
        starved.is_empty(),
        "renewed fewer than twice in 16 s: {starved:?} (all: {renewals:?})"
    );
}
