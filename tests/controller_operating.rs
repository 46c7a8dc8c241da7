//! Operating features end to end, with the operator running against the in-process API server
//! and a loopback OAuth 2.0 provider: rollout restarts (`output.rolloutRestart`), the previous
//! token kept through a rotation (`output.keepPrevious`), and revocation on delete
//! (`oauth2.revocationUrl`, RFC 7009).

mod support;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine as _;
use connector_auth_operator::api::ConnectorAuth;
use fake_apiserver::{Delay, FakeApiServer, Fault, Gate};
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use support::operator::{Operator, Source};
use support::*;

const NS: &str = "ops";
const CLIENT: (&str, &str) = ("ops-client", "ops-secret");

// ------------------------------------------------------------------ the provider

/// A revocation request as the provider received it.
#[derive(Debug, Clone, PartialEq)]
struct Revocation {
    token: String,
    hint: String,
    /// The client authenticated as the token endpoint requires (Basic or form, per request).
    client: Option<(String, String)>,
}

/// An OAuth 2.0 provider: `client_credentials` issuing an access token and a rotating refresh
/// token (RFC 6749), a refresh grant, and an RFC 7009 revocation endpoint that records what it
/// revokes, or hangs while `hang` is set. Clients authenticate with Basic or in the form.
#[derive(Default)]
struct Provider {
    ttl: AtomicU64,
    issued: AtomicU64,
    /// Access and refresh tokens issued, in order.
    access: Mutex<Vec<String>>,
    refresh: Mutex<Vec<String>>,
    revocations: Mutex<Vec<Revocation>>,
    hang: AtomicBool,
}

fn form(body: &Bytes) -> HashMap<String, String> {
    url::form_urlencoded::parse(body).into_owned().collect()
}

/// The client's credentials, from HTTP Basic or the form (`client_secret_post`).
fn client_of(h: &HeaderMap, f: &HashMap<String, String>) -> Option<(String, String)> {
    let basic = h
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|v| base64::engine::general_purpose::STANDARD.decode(v).ok())
        .and_then(|v| String::from_utf8(v).ok())
        .and_then(|v| v.split_once(':').map(|(u, p)| (u.to_string(), p.to_string())));
    basic.or_else(|| Some((f.get("client_id")?.clone(), f.get("client_secret")?.clone())))
}

fn authenticated(client: &Option<(String, String)>) -> bool {
    client.as_ref().is_some_and(|(u, p)| (u.as_str(), p.as_str()) == CLIENT)
}

async fn token(State(p): State<Arc<Provider>>, h: HeaderMap, body: Bytes) -> Response {
    let f = form(&body);
    if !authenticated(&client_of(&h, &f)) {
        return (StatusCode::UNAUTHORIZED, axum::Json(json!({"error": "invalid_client"}))).into_response();
    }
    match f.get("grant_type").map(String::as_str) {
        Some("client_credentials") => {}
        Some("refresh_token") => {
            let rt = f.get("refresh_token").cloned().unwrap_or_default();
            if p.refresh.lock().unwrap().last() != Some(&rt) {
                return (StatusCode::BAD_REQUEST, axum::Json(json!({"error": "invalid_grant"}))).into_response();
            }
        }
        _ => {
            return (
                StatusCode::BAD_REQUEST,
                axum::Json(json!({"error": "unsupported_grant_type"})),
            )
                .into_response();
        }
    }
    let n = p.issued.fetch_add(1, Ordering::SeqCst);
    let (at, rt) = (
        format!("at-{n}-{:08x}", rand::random::<u32>()),
        format!("rt-{n}-{:08x}", rand::random::<u32>()),
    );
    p.access.lock().unwrap().push(at.clone());
    p.refresh.lock().unwrap().push(rt.clone());
    let ttl = p.ttl.load(Ordering::SeqCst);
    axum::Json(json!({"access_token": at, "token_type": "Bearer", "expires_in": ttl, "refresh_token": rt}))
        .into_response()
}

async fn revoke(State(p): State<Arc<Provider>>, h: HeaderMap, body: Bytes) -> Response {
    if p.hang.load(Ordering::SeqCst) {
        std::future::pending::<()>().await;
    }
    let f = form(&body);
    let client = client_of(&h, &f);
    // RFC 7009 §2.1: an unauthenticated client is refused (§2.2.1: invalid_client).
    if !authenticated(&client) {
        return (StatusCode::UNAUTHORIZED, axum::Json(json!({"error": "invalid_client"}))).into_response();
    }
    p.revocations.lock().unwrap().push(Revocation {
        token: f.get("token").cloned().unwrap_or_default(),
        hint: f.get("token_type_hint").cloned().unwrap_or_default(),
        client,
    });
    // §2.2: 200 with an empty body, also for tokens the server does not know.
    StatusCode::OK.into_response()
}

async fn provider(ttl: u64) -> (String, Arc<Provider>) {
    let p = Arc::new(Provider::default());
    p.ttl.store(ttl, Ordering::SeqCst);
    let app = Router::new()
        .route("/token", post(token))
        .route("/revoke", post(revoke))
        .with_state(p.clone());
    (serve(app).await, p)
}

// ------------------------------------------------------------------ cluster helpers

async fn credentials(client: &kube::Client, name: &str, extra: &[(&str, &str)]) {
    let data: BTreeMap<String, String> = [("client_id", CLIENT.0), ("client_secret", CLIENT.1)]
        .iter()
        .chain(extra)
        .map(|(k, v)| (k.to_string(), b64(v)))
        .collect();
    let secret: Secret = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": name, "namespace": NS},
        "data": data,
    }))
    .unwrap();
    let api: Api<Secret> = Api::namespaced(client.clone(), NS);
    api.patch(name, &PatchParams::apply("test").force(), &Patch::Apply(&secret))
        .await
        .unwrap();
}

async fn connector_auth(client: &kube::Client, name: &str, spec: Value) -> ConnectorAuth {
    let ca: ConnectorAuth = serde_json::from_value(json!({
        "apiVersion": "connectorauth.dev/v1alpha1", "kind": "ConnectorAuth",
        "metadata": {"name": name, "namespace": NS},
        "spec": spec,
    }))
    .unwrap();
    Api::<ConnectorAuth>::namespaced(client.clone(), NS)
        .create(&PostParams::default(), &ca)
        .await
        .unwrap()
}

/// Credentials `<name>-credentials` and a ConnectorAuth `name` of the provider at `base`, with
/// these further `oauth2` fields and this `output`.
async fn resource(client: &kube::Client, base: &str, name: &str, oauth2: Value, output: Value) {
    let creds = format!("{name}-credentials");
    credentials(client, &creds, &[]).await;
    let mut o = json!({"tokenUrl": format!("{base}/token")});
    o.as_object_mut().unwrap().extend(oauth2.as_object().unwrap().clone());
    connector_auth(
        client,
        name,
        json!({"credentialsRef": {"name": creds}, "oauth2": o, "output": output}),
    )
    .await;
}

/// A provider issuing tokens for `ttl` seconds, and the API server with the workloads of
/// [`create_workloads`] and a ConnectorAuth `name` restarting `targets`.
async fn with_restarts(ttl: u64, name: &str, targets: Value) -> (FakeApiServer, kube::Client) {
    let (base, _p) = provider(ttl).await;
    let server = api_server().await;
    let client = server.client();
    create_workloads(&client).await;
    resource(&client, &base, name, json!({}), json!({"rolloutRestart": targets})).await;
    (server, client)
}

async fn output(client: &kube::Client, name: &str) -> Option<BTreeMap<String, String>> {
    let s = Api::<Secret>::namespaced(client.clone(), NS)
        .get_opt(&format!("{name}-token"))
        .await
        .unwrap()?;
    Some(
        s.data
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, String::from_utf8(v.0).unwrap()))
            .collect(),
    )
}

async fn access_token(client: &kube::Client, name: &str) -> Option<String> {
    output(client, name).await.and_then(|o| o.get("access_token").cloned())
}

async fn ready(client: &kube::Client, name: &str) -> bool {
    let ca = Api::<ConnectorAuth>::namespaced(client.clone(), NS)
        .get(name)
        .await
        .unwrap();
    ca.status
        .is_some_and(|s| s.conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// The notes of the Events about `name` with `reason`.
async fn events(client: &kube::Client, name: &str, reason: &str) -> Vec<String> {
    Api::<Event>::namespaced(client.clone(), NS)
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
        .filter(|e| e.reason.as_deref() == Some(reason))
        .filter_map(|e| e.note)
        .collect()
}

fn deployment(name: &str, labels: Value) -> Deployment {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": NS, "labels": labels},
        "spec": {
            "selector": {"matchLabels": {"pod": name}},
            "template": {"metadata": {"labels": {"pod": name}}, "spec": {"containers": [{"name": "app", "image": "app"}]}},
        },
    }))
    .unwrap()
}

async fn create_workloads(client: &kube::Client) {
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), NS);
    for (name, labels) in [
        ("api", json!({"app": "api"})),
        ("worker-1", json!({"app": "worker"})),
        ("worker-2", json!({"app": "worker"})),
        ("bystander", json!({"app": "other"})),
        ("poller", json!({"app": "poller"})),
    ] {
        deployments
            .create(&PostParams::default(), &deployment(name, labels))
            .await
            .unwrap();
    }
    let sts: StatefulSet = serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": "worker-db", "namespace": NS, "labels": {"app": "worker"}},
        "spec": {
            "selector": {"matchLabels": {"pod": "db"}}, "serviceName": "db",
            "template": {"metadata": {"labels": {"pod": "db"}}, "spec": {"containers": [{"name": "db", "image": "db"}]}},
        },
    }))
    .unwrap();
    Api::<StatefulSet>::namespaced(client.clone(), NS)
        .create(&PostParams::default(), &sts)
        .await
        .unwrap();
}

/// How often each workload was patched, by `kind/name`.
fn restarts(server: &FakeApiServer) -> BTreeMap<String, usize> {
    let mut n = BTreeMap::new();
    for r in server.requests() {
        if r.group == "apps" && r.verb == "patch" {
            *n.entry(format!("{}/{}", r.resource, r.name.unwrap_or_default()))
                .or_insert(0) += 1;
        }
    }
    n
}

/// The `restartedAt` annotation of a Deployment's pod template.
fn restarted_at(server: &FakeApiServer, name: &str) -> Option<String> {
    server
        .object("apps", "deployments", Some(NS), name)?
        .pointer("/spec/template/metadata/annotations/connectorauth.dev~1restartedAt")?
        .as_str()
        .map(String::from)
}

/// Waits for the resource's token to change from `from`, and returns the new one.
async fn next_token(client: &kube::Client, name: &str, from: &str) -> String {
    eventually(20, "a new token", || async {
        access_token(client, name).await.filter(|t| t != from)
    })
    .await
}

// ------------------------------------------------------------------ rollout restarts

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollout_restart_restarts_exactly_the_selected_workloads_once_per_credential_change() {
    let targets = json!([
        {"kind": "Deployment", "name": "api"},
        {"kind": "Deployment", "selector": {"matchLabels": {"app": "worker"}}},
        {"kind": "Deployment", "name": "ghost"},
    ]);
    let (server, client) = with_restarts(3, "crm", targets).await;
    let op = Operator::start(Source::Url(server.url()), "op-1", false);
    let first = eventually(10, "first token", || access_token(&client, "crm")).await;
    // Routine refreshes restart nothing, not even the first issuance.
    let second = next_token(&client, "crm", &first).await;
    next_token(&client, "crm", &second).await;
    assert_eq!(
        restarts(&server),
        BTreeMap::new(),
        "no restart on issuance or routine refreshes"
    );

    // New credentials: every selected workload restarts once.
    credentials(&client, "crm-credentials", &[("tenant", "acme")]).await;
    let expected: BTreeMap<String, usize> = ["deployments/api", "deployments/worker-1", "deployments/worker-2"]
        .into_iter()
        .map(|k| (k.to_string(), 1))
        .collect();
    eventually(10, "the selected workloads restarted", || async {
        (restarts(&server) == expected).then_some(())
    })
    .await;
    let at = restarted_at(&server, "api").expect("restartedAt on the pod template");
    assert_eq!(restarted_at(&server, "worker-1").as_deref(), Some(at.as_str()));
    assert_eq!(restarted_at(&server, "bystander"), None, "not selected");
    let ghost = eventually(5, "a Warning about the missing workload", || async {
        events(&client, "crm", "RolloutRestartFailed").await.into_iter().next()
    })
    .await;
    assert!(ghost.contains("Deployment ops/ghost not found"), "{ghost}");
    let restarted = events(&client, "crm", "RolloutRestarted").await;
    assert!(
        restarted
            .iter()
            .any(|n| n.contains("Deployment ops/worker-2") && n.contains("credentials")),
        "{restarted:?}"
    );
    assert!(ready(&client, "crm").await, "a missing workload is no token failure");

    // Routine refreshes do not restart them again.
    let now = access_token(&client, "crm").await.unwrap();
    next_token(&client, "crm", &now).await;
    assert_eq!(
        restarts(&server),
        expected,
        "each workload restarted once for the one change"
    );

    // A change made while no operator runs is noticed by the next one (the mark is persisted),
    // and restarts each workload once more.
    op.stop().await;
    credentials(&client, "crm-credentials", &[("tenant", "globex")]).await;
    let op = Operator::start(Source::Url(server.url()), "op-2", false);
    let twice: BTreeMap<String, usize> = expected.keys().map(|k| (k.clone(), 2)).collect();
    eventually(10, "the selected workloads restarted again", || async {
        (restarts(&server) == twice).then_some(())
    })
    .await;
    let now = access_token(&client, "crm").await.unwrap();
    next_token(&client, "crm", &now).await;
    assert_eq!(restarts(&server), twice);
    op.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_refresh_restarts_on_every_refresh_and_a_refused_restart_is_retried() {
    let targets = json!([{"kind": "Deployment", "name": "poller", "onRefresh": true}]);
    let (server, client) = with_restarts(3, "poll", targets).await;
    let op = Operator::start(Source::Url(server.url()), "op-1", false);
    let first = eventually(10, "first token", || access_token(&client, "poll")).await;
    let second = next_token(&client, "poll", &first).await;
    eventually(10, "a restart for the refresh", || async {
        (restarts(&server).get("deployments/poller") == Some(&1)).then_some(())
    })
    .await;
    let at_second = restarted_at(&server, "poller").unwrap();

    // The next restart is refused once (no permission): a Warning, and a retry.
    server.fail_next(Fault::new(403, "/deployments/poller").method("PATCH").times(1));
    let third = next_token(&client, "poll", &second).await;
    let refused = eventually(10, "a Warning about the refused restart", || async {
        events(&client, "poll", "RolloutRestartFailed").await.into_iter().next()
    })
    .await;
    assert!(refused.contains("Deployment ops/poller"), "{refused}");
    assert!(refused.contains("rbac.rolloutRestart.enabled"), "{refused}");
    assert!(ready(&client, "poll").await, "a refused restart is no token failure");
    let at_third = eventually(10, "the refused restart retried", || async {
        restarted_at(&server, "poller").filter(|a| *a != at_second)
    })
    .await;
    assert_eq!(
        access_token(&client, "poll").await.as_deref().map(|t| t != first),
        Some(true)
    );
    // One refused patch, then one per refresh: the retry did not restart it twice.
    let fourth = next_token(&client, "poll", &third).await;
    eventually(10, "a restart for the next refresh", || async {
        restarted_at(&server, "poller").filter(|a| *a != at_third)
    })
    .await;
    let patches = restarts(&server)["deployments/poller"];
    assert_eq!(
        patches, 4,
        "refresh 2, refused, retried, refresh 3 (token {fourth} published)"
    );
    assert_eq!(restarts(&server).get("deployments/api"), None);
    op.stop().await;
}

/// Whether the resource's state Secret records what its workloads run with.
fn rollout_marked(server: &FakeApiServer, name: &str) -> Option<()> {
    let state = server.object("", "secrets", Some(NS), &format!("{name}-connectorauth-state"))?;
    let json = base64::engine::general_purpose::STANDARD
        .decode(state["data"]["state.json"].as_str()?)
        .ok()?;
    String::from_utf8(json).ok()?.contains("\"rollout\"").then_some(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_stopped_midway_through_restarts_never_restarts_a_workload_twice_for_one_change() {
    let targets = json!([
        {"kind": "Deployment", "name": "api"},
        {"kind": "Deployment", "selector": {"matchLabels": {"app": "worker"}}},
    ]);
    let (server, client) = with_restarts(3600, "crm", targets).await;
    let op = Operator::start(Source::Url(server.url()), "op-1", false);
    eventually(10, "what the workloads run with recorded", || async {
        rollout_marked(&server, "crm")
    })
    .await;

    // New credentials; the last restart is held, and the operator dies with it.
    let gate = Gate::new();
    server.delay_next(Delay::at(&gate, "/deployments/worker-2").method("PATCH"));
    credentials(&client, "crm-credentials", &[("tenant", "acme")]).await;
    gate.arrived().await;
    op.kill();
    gate.answer(503);
    assert_eq!(restarts(&server).get("deployments/api"), Some(&1));
    assert_eq!(restarts(&server).get("deployments/worker-1"), Some(&1));

    // The next operator finishes the restarts of that change, and only those.
    let op = Operator::start(Source::Url(server.url()), "op-2", false);
    let at = eventually(10, "worker-2 restarted", || async { restarted_at(&server, "worker-2") }).await;
    assert_eq!(restarted_at(&server, "api"), Some(at), "one change, one restartedAt");
    let counts = restarts(&server);
    assert_eq!(counts["deployments/api"], 1, "not restarted again");
    assert_eq!(counts["deployments/worker-1"], 1, "not restarted again");
    assert_eq!(
        counts["deployments/worker-2"], 2,
        "the held patch (refused), then the restart"
    );
    op.stop().await;
}

// ------------------------------------------------------------------ keepPrevious

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_previous_publishes_the_exact_earlier_token_until_it_expires() {
    // Tokens live 4s and are renewed at 2/3 of that: the previous one expires a second or so
    // before the next renewal.
    let (base, _p) = provider(4).await;
    let server = api_server().await;
    let client = server.client();
    resource(&client, &base, "kp", json!({}), json!({"keepPrevious": true})).await;
    let op = Operator::start(Source::Url(server.url()), "op-1", false);
    let first = eventually(10, "first token", || output(&client, "kp")).await;
    assert!(!first.contains_key("previous_access_token"), "nothing to keep yet");

    for _refresh in 0..2 {
        let earlier = current_output(&client, "kp").await;
        let now = eventually(10, "a refresh", || async {
            output(&client, "kp")
                .await
                .filter(|o| o["access_token"] != earlier["access_token"])
        })
        .await;
        assert_eq!(now["previous_access_token"], earlier["access_token"]);
        assert_eq!(now["previous_headers.json"], earlier["headers.json"]);
        // Gone once it expired, before the next refresh.
        let dropped = eventually(10, "the previous token dropped", || async {
            output(&client, "kp")
                .await
                .filter(|o| !o.contains_key("previous_access_token"))
        })
        .await;
        assert_eq!(
            dropped["access_token"], now["access_token"],
            "dropped at its expiry, not at a refresh"
        );
        assert!(!dropped.contains_key("previous_headers.json"));
    }
    op.stop().await;
}

/// The current output (waiting for one).
async fn current_output(client: &kube::Client, name: &str) -> BTreeMap<String, String> {
    eventually(10, "an output", || output(client, name)).await
}

// ------------------------------------------------------------------ revocation

async fn gone(client: &kube::Client, name: &str) -> Option<()> {
    Api::<ConnectorAuth>::namespaced(client.clone(), NS)
        .get_opt(name)
        .await
        .unwrap()
        .is_none()
        .then_some(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_revokes_the_refresh_then_the_access_token_with_the_client_authentication() {
    let (base, p) = provider(3600).await;
    let server = api_server().await;
    let client = server.client();
    for (name, auth) in [("basic", "client_secret_basic"), ("post", "client_secret_post")] {
        let revocation = json!({"clientAuth": auth, "revocationUrl": format!("{base}/revoke")});
        resource(&client, &base, name, revocation, json!({})).await;
    }
    resource(&client, &base, "plain", json!({}), json!({})).await;
    let op = Operator::start(Source::Url(server.url()), "op-1", false);
    let cas: Api<ConnectorAuth> = Api::namespaced(client.clone(), NS);
    for name in ["basic", "post", "plain"] {
        eventually(10, "Ready", || async { ready(&client, name).await.then_some(()) }).await;
    }
    let finalizers = |ca: ConnectorAuth| ca.metadata.finalizers.unwrap_or_default();
    assert_eq!(
        finalizers(cas.get("basic").await.unwrap()),
        ["connectorauth.dev/revoke"]
    );
    assert!(
        finalizers(cas.get("plain").await.unwrap()).is_empty(),
        "no revocationUrl, no finalizer"
    );

    for name in ["basic", "post"] {
        let access = access_token(&client, name).await.unwrap();
        let issued = p.access.lock().unwrap().iter().position(|a| *a == access).unwrap();
        let refresh = p.refresh.lock().unwrap()[issued].clone();
        let before = p.revocations.lock().unwrap().len();
        cas.delete(name, &DeleteParams::default()).await.unwrap();
        eventually(10, "the resource deleted", || gone(&client, name)).await;
        let revoked = p.revocations.lock().unwrap()[before..].to_vec();
        let client_auth = Some((CLIENT.0.to_string(), CLIENT.1.to_string()));
        assert_eq!(
            revoked,
            vec![
                Revocation {
                    token: refresh,
                    hint: "refresh_token".into(),
                    client: client_auth.clone()
                },
                Revocation {
                    token: access.clone(),
                    hint: "access_token".into(),
                    client: client_auth
                },
            ],
            "{name}"
        );
        let notes = events(&client, name, "Revoked").await;
        assert_eq!(notes, ["refresh token revoked; access token revoked"], "{name}");
        assert!(!notes[0].contains(&access));
    }
    // Deleting the resource without revocationUrl revokes nothing.
    let before = p.revocations.lock().unwrap().len();
    cas.delete("plain", &DeleteParams::default()).await.unwrap();
    eventually(10, "the resource deleted", || gone(&client, "plain")).await;
    assert_eq!(p.revocations.lock().unwrap().len(), before);
    op.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletion_completes_when_the_revocation_endpoint_hangs() {
    let (base, p) = provider(3600).await;
    p.hang.store(true, Ordering::SeqCst);
    let server = api_server().await;
    let client = server.client();
    let revocation = json!({"revocationUrl": format!("{base}/revoke"), "revocationTimeoutSeconds": 1});
    resource(&client, &base, "hang", revocation, json!({})).await;
    let op = Operator::start(Source::Url(server.url()), "op-1", false);
    eventually(10, "Ready", || async { ready(&client, "hang").await.then_some(()) }).await;
    let access = access_token(&client, "hang").await.unwrap();
    Api::<ConnectorAuth>::namespaced(client.clone(), NS)
        .delete("hang", &DeleteParams::default())
        .await
        .unwrap();
    eventually(10, "the resource deleted", || gone(&client, "hang")).await;
    let notes = events(&client, "hang", "RevocationFailed").await;
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert!(
        notes[0].contains("did not finish within 1s: refresh token and access token not revoked"),
        "{}",
        notes[0]
    );
    assert!(!notes[0].contains(&access));
    assert!(p.revocations.lock().unwrap().is_empty());
    // The owned Secrets went with it.
    eventually(10, "output collected", || async {
        output(&client, "hang").await.is_none().then_some(())
    })
    .await;
    op.stop().await;
}
