//! One writer, always: replicas started at the same instant never lead at once, a killed
//! leader's standby takes over a refresh without reusing the refresh token, a consent callback
//! that reaches a standby completes through the leader with no write by the standby, and a
//! resource recreated under the same name never inherits the old one's state.

mod support;

use std::sync::{Arc, Barrier};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use connector_auth_operator::api::ConnectorAuth;
use connector_auth_operator::controller::ConsentConfig;
use fake_apiserver::FakeApiServer;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::{Value, json};
use support::operator::{Operator, Source, leaders, start_sharded_together, start_together};
use support::*;

const NS: &str = "ns";

/// Credentials of the rotating provider's password grant.
const ROTATING_LOGIN: &[(&str, &str)] = &[
    ("client_id", "rot-client"),
    ("client_secret", "rot-secret"),
    ("username", "rot-user"),
    ("password", "rot-pass"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_started_at_the_same_instant_never_lead_at_once() {
    for round in 0..20 {
        let server = api_server().await;
        let ops = start_together(&server.url(), &["op-a", "op-b", "op-c"], |_, _| {});
        let mut led = None;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        // Watch until one leads, then a while longer: never two at once.
        let mut after_lead = 0;
        while after_lead < 15 {
            let now = leaders(&ops).await;
            assert!(now.len() <= 1, "round {round}: replicas {now:?} lead at once");
            if let Some(&l) = now.first() {
                led.get_or_insert(l);
                after_lead += 1;
            }
            assert!(tokio::time::Instant::now() < deadline, "round {round}: nobody leads");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // Every replica writes the Lease under a field manager of its own.
        for r in server.requests() {
            if r.resource == "leases" && matches!(r.verb.as_str(), "create" | "update" | "patch") {
                let who = r.user_agent.clone().unwrap();
                let manager = r.field_manager.clone().unwrap();
                assert!(
                    manager == format!("connector-auth-operator/{who}"),
                    "round {round}: {who} applied the Lease as {manager}"
                );
            }
        }
        for op in ops {
            op.kill();
        }
    }
}

/// A password-grant resource against the rotating provider.
fn password_grant(base: &str) -> Value {
    json!({"credentialsRef": {"name": "creds"}, "oauth2": {"tokenUrl": format!("{base}/oauth/token"), "grantType": "password"}})
}

async fn secret(client: &kube::Client, name: &str, data: &[(&str, &str)]) {
    let s: Secret = serde_json::from_value(json!({
        "metadata": {"name": name},
        "data": data.iter().map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec()))).collect::<std::collections::BTreeMap<_, _>>(),
    }))
    .unwrap();
    Api::<Secret>::namespaced(client.clone(), NS)
        .create(&PostParams::default(), &s)
        .await
        .unwrap();
}

async fn connector(client: &kube::Client, name: &str, spec: Value) -> ConnectorAuth {
    create_connector(client, NS, name, spec).await
}

fn decoded(server: &FakeApiServer, name: &str) -> Option<std::collections::BTreeMap<String, String>> {
    let s = server.object("", "secrets", Some(NS), name)?;
    Some(
        s["data"]
            .as_object()?
            .iter()
            .map(|(k, v)| {
                let bytes = STANDARD.decode(v.as_str().unwrap()).unwrap();
                (k.clone(), String::from_utf8(bytes).unwrap())
            })
            .collect(),
    )
}

fn ready(server: &FakeApiServer, name: &str) -> bool {
    server
        .object("connectorauth.dev", "connectorauths", Some(NS), name)
        .and_then(|ca| ca["status"]["conditions"].as_array().cloned())
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] == "True")
}

/// The writes of data each replica made, by the User-Agent its client sends.
fn writes_by(server: &FakeApiServer, who: &str) -> Vec<String> {
    server
        .requests()
        .into_iter()
        .filter(|r| r.user_agent.as_deref() == Some(who))
        .filter(|r| {
            matches!(
                r.verb.as_str(),
                "create" | "update" | "patch" | "delete" | "deletecollection"
            )
        })
        // Competing for the Lease is every replica's part in the election, not a write of data.
        .filter(|r| r.resource != "leases")
        .map(|r| format!("{} {} {}", r.verb, r.resource, r.name.unwrap_or_default()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_killed_mid_refresh_hands_over_without_the_refresh_token_sent_twice() {
    let (base, book) = rotating(2).await;
    let server = api_server().await;
    let client = server.client();
    secret(&client, "creds", ROTATING_LOGIN).await;
    connector(&client, "crm", password_grant(&base)).await;
    let ops = start_together(&server.url(), &["op-a", "op-b", "op-c"], |_, _| {});
    eventually(15, "first issuance", || async { ready(&server, "crm").then_some(()) }).await;
    assert_eq!(book.grants(), ["password"]);
    let leader = eventually(5, "a leader", || async { leaders(&ops).await.first().copied() }).await;
    // The refresh due in about a second is held after the provider rotated the token.
    book.ttl.store(3600, std::sync::atomic::Ordering::SeqCst);
    let gate = book.hold_next_answer();
    tokio::time::timeout(Duration::from_secs(10), gate.arrived())
        .await
        .expect("the refresh reached the provider");
    let mut ops: Vec<Option<Operator>> = ops.into_iter().map(Some).collect();
    ops[leader].take().unwrap().kill();
    gate.open();

    // A standby takes over within a lease duration and converges with a working token.
    eventually(20, "a standby publishes a working token", || async {
        let data = decoded(&server, "crm-token")?;
        let state: Value = serde_json::from_str(&decoded(&server, "crm-connectorauth-state")?["state.json"]).ok()?;
        let current = state["refreshToken"].as_str().is_some_and(|rt| book.is_current(rt));
        (current && state["inFlight"].is_null() && call_api(&format!("{base}/api/me"), &data).await == 200)
            .then_some(())
    })
    .await;
    assert!(!book.family_revoked(), "the rotated refresh token was never sent again");
    let grants = book.grants();
    assert_eq!(grants[..2], ["password", "refresh_token"]);
    assert!(
        grants[2..].iter().all(|g| g == "password"),
        "after the kill: a fresh login, never the refresh token in doubt: {grants:?}"
    );
    let standbys: Vec<&str> = ["op-a", "op-b", "op-c"]
        .into_iter()
        .enumerate()
        .filter(|(i, _)| *i != leader)
        .map(|(_, id)| id)
        .collect();
    let wrote: Vec<&str> = standbys
        .iter()
        .copied()
        .filter(|id| writes_by(&server, id).iter().any(|w| w.contains("secrets")))
        .collect();
    assert_eq!(wrote.len(), 1, "exactly one standby took over the writing: {wrote:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consent_callback_reaching_a_standby_completes_through_the_leader_and_the_standby_writes_nothing() {
    let (base, book) = google_with_ttl(3600).await;
    let server = api_server().await;
    let client = server.client();
    secret(
        &client,
        "google-credentials",
        &[("CLIENT_ID", "g-client"), ("CLIENT_SECRET", "g-secret")],
    )
    .await;
    connector(
        &client,
        "google",
        json!({"credentialsRef": {"name": "google-credentials"}, "oauth2": {
            "grantType": "authorizationCode", "tokenUrl": format!("{base}/token"),
            "clientId": "{{ CLIENT_ID }}", "clientSecret": "{{ CLIENT_SECRET }}", "clientAuth": "client_secret_post",
            "authorizationUrl": format!("{base}/o/oauth2/v2/auth?client_id={{{{ CLIENT_ID }}}}&redirect_uri={{{{ redirect_url | urlencode }}}}&response_type=code&access_type=offline&prompt=consent"),
        }}),
    )
    .await;
    consent_at_a_standby(&server, "google", || {
        book.token_requests.load(std::sync::atomic::Ordering::SeqCst)
    })
    .await;
}

/// PKCE with two replicas: the link is made by the leader, the callback reaches the standby and
/// is handed to the leader, which finds the same verifier (derived, stored nowhere).
#[tokio::test]
async fn a_pkce_consent_reaching_a_standby_is_exchanged_by_the_leader_with_the_links_verifier() {
    let (base, book) = pkce_server().await;
    let server = api_server().await;
    let client = server.client();
    secret(
        &client,
        "pkce-credentials",
        &[("client_id", "p-client"), ("client_secret", "p-secret")],
    )
    .await;
    connector(
        &client,
        "pkce",
        json!({"credentialsRef": {"name": "pkce-credentials"}, "oauth2": {
            "grantType": "authorizationCode", "tokenUrl": format!("{base}/token"), "clientAuth": "client_secret_post",
            "authorizationUrl": format!("{base}/authorize?client_id={{{{ client_id }}}}&redirect_uri={{{{ redirect_url | urlencode }}}}&response_type=code"),
            "pkce": true,
        }}),
    )
    .await;
    consent_at_a_standby(&server, "pkce", || book.tokens.requests()).await;
    assert_eq!(book.refusals.lock().unwrap().clone(), Vec::<String>::new());
    let verifier = book.verifiers.lock().unwrap()[0].clone();
    assert_eq!(
        book.challenges.lock().unwrap()[0],
        connector_auth_operator::consent::pkce_challenge(&verifier)
    );
    for s in ["pkce-token", "pkce-connectorauth-state"] {
        let data = decoded(&server, s).unwrap();
        assert!(
            !data.values().any(|v| v.contains(&verifier)),
            "{s} holds the code_verifier"
        );
    }
}

/// Two replicas with the consent callback; the person's callback reaches the standby, which
/// hands it to the leader: it completes there, the standby writes nothing, and the same link
/// again is refused. `token_requests` counts the provider's token requests.
async fn consent_at_a_standby(server: &fake_apiserver::FakeApiServer, name: &str, token_requests: impl Fn() -> u64) {
    // Every replica listens on its own port; browsers are sent to one external URL, which
    // (like a Service over all pods) may reach any of them.
    let ports: Vec<std::net::SocketAddr> = (0..2)
        .map(|_| {
            std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
        })
        .collect();
    let listen = ports.clone();
    let ops = start_together(&server.url(), &["op-0", "op-1"], move |id, c| {
        let i: usize = id[3..].parse().unwrap();
        c.consent = Some(ConsentConfig {
            listen: listen[i],
            external_url: "http://connector-auth.example.com".into(),
            key_namespace: "operators".into(),
            advertise_url: None,
        });
    });
    let url = eventually(15, "a consent link", || async {
        let ca = server.object("connectorauth.dev", "connectorauths", Some(NS), name)?;
        ca["status"]["authorizationUrl"].as_str().map(str::to_string)
    })
    .await;
    let leader = eventually(5, "a leader", || async { leaders(&ops).await.first().copied() }).await;
    let standby = 1 - leader;
    let standby_id = format!("op-{standby}");
    let before = writes_by(server, &standby_id);
    assert!(before.is_empty(), "a standby writes nothing: {before:?}");

    // The person consents; the provider redirects to the external URL, which reaches the standby.
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let resp = http.get(&url).send().await.unwrap();
    assert_eq!(resp.status(), 302);
    let location = resp.headers()["location"].to_str().unwrap().to_string();
    let query = location.split_once('?').unwrap().1;
    let at_standby = format!("http://{}/oauth2/callback?{query}", ports[standby]);
    let page = reqwest::get(&at_standby).await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("is authorized"));

    eventually(10, "Ready after consent", || async {
        ready(server, name).then_some(())
    })
    .await;
    assert_eq!(token_requests(), 1, "one code exchange");
    assert_eq!(
        writes_by(server, &standby_id),
        Vec::<String>::new(),
        "the standby made no write"
    );
    let leader_writes = writes_by(server, &format!("op-{leader}"));
    assert!(
        leader_writes.contains(&format!("patch secrets {name}-token")),
        "the leader wrote the output: {leader_writes:?}"
    );
    // The same link again: refused as used, through the leader, still no standby write.
    let again = reqwest::get(&at_standby).await.unwrap();
    assert_eq!(again.status(), 409);
    assert_eq!(writes_by(server, &standby_id), Vec::<String>::new());
}

#[tokio::test]
async fn a_resource_recreated_under_the_same_name_logs_in_afresh_and_never_sends_the_old_refresh_token() {
    let (base, book) = rotating(3600).await;
    let server = api_server().await;
    let client = server.client();
    secret(&client, "creds", ROTATING_LOGIN).await;
    let spec = password_grant(&base);
    let old = connector(&client, "crm", spec.clone()).await;
    let op = Operator::start(Source::Url(server.url()), "op-a", false);
    eventually(10, "first issuance", || async { ready(&server, "crm").then_some(()) }).await;
    op.stop().await;
    let old_rt = serde_json::from_str::<Value>(&decoded(&server, "crm-connectorauth-state").unwrap()["state.json"])
        .unwrap()["refreshToken"]
        .as_str()
        .unwrap()
        .to_string();

    // Deleted and recreated before garbage collection (kube-controller-manager's, asynchronous
    // on a real cluster) reached the old Secrets: they are still there, owned by the old uid.
    server.set_gc_delay(Some(Duration::from_secs(3600)));
    Api::<ConnectorAuth>::namespaced(client.clone(), NS)
        .delete("crm", &DeleteParams::default())
        .await
        .unwrap();
    assert!(
        server
            .object("", "secrets", Some(NS), "crm-connectorauth-state")
            .is_some()
    );
    let new = connector(&client, "crm", spec).await;
    assert_ne!(new.metadata.uid, old.metadata.uid);
    let granted = book.grants().len();
    let op = Operator::start(Source::Url(server.url()), "op-b", false);
    eventually(10, "the new resource is Ready", || async {
        let owner =
            server.object("", "secrets", Some(NS), "crm-token")?["metadata"]["ownerReferences"][0]["uid"].clone();
        (ready(&server, "crm") && owner == json!(new.metadata.uid)).then_some(())
    })
    .await;
    assert_eq!(book.grants()[granted..], ["password"], "a fresh login, not a refresh");
    assert!(!book.family_revoked());
    let state: Value =
        serde_json::from_str(&decoded(&server, "crm-connectorauth-state").unwrap()["state.json"]).unwrap();
    assert_ne!(state["refreshToken"].as_str(), Some(old_rt.as_str()));
    let state_owner = &server
        .object("", "secrets", Some(NS), "crm-connectorauth-state")
        .unwrap()["metadata"]["ownerReferences"];
    assert_eq!(state_owner.as_array().unwrap().len(), 1);
    assert_eq!(state_owner[0]["uid"], json!(new.metadata.uid));
    let replaced = server
        .objects("events.k8s.io", "events")
        .into_iter()
        .filter(|e| e["reason"] == "StaleSecretReplaced")
        .count();
    assert_eq!(replaced, 2, "one Event per replaced Secret");
    // Garbage collection comes at last: the Secrets now belong to the new resource and stay.
    server.run_garbage_collection();
    assert!(
        server
            .object("", "secrets", Some(NS), "crm-connectorauth-state")
            .is_some()
    );
    assert!(server.object("", "secrets", Some(NS), "crm-token").is_some());
    op.stop().await;
}

#[tokio::test]
async fn a_secret_owned_by_someone_else_is_never_read_or_written_and_the_resource_says_whose_it_is() {
    let (base, book) = rotating(3600).await;
    let server = api_server().await;
    let client = server.client();
    secret(&client, "creds", ROTATING_LOGIN).await;
    // A Secret of another tool sits where the state would go. Its owner exists (an owner that
    // does not is garbage-collected away with its dependents).
    let billing: k8s_openapi::api::apps::v1::Deployment = serde_json::from_value(json!({
        "metadata": {"name": "billing"},
        "spec": {"selector": {"matchLabels": {"app": "billing"}},
                 "template": {"metadata": {"labels": {"app": "billing"}}, "spec": {"containers": [{"name": "b", "image": "b"}]}}},
    }))
    .unwrap();
    let billing = Api::namespaced(client.clone(), NS)
        .create(&PostParams::default(), &billing)
        .await
        .unwrap();
    let foreign: Secret = serde_json::from_value(json!({
        "metadata": {"name": "crm-connectorauth-state", "ownerReferences": [
            {"apiVersion": "apps/v1", "kind": "Deployment", "name": "billing", "uid": billing.metadata.uid, "controller": true}
        ]},
        "data": {"state.json": ByteString(br#"{"refreshToken":"rt-seed"}"#.to_vec())},
    }))
    .unwrap();
    Api::<Secret>::namespaced(client.clone(), NS)
        .create(&PostParams::default(), &foreign)
        .await
        .unwrap();
    connector(&client, "crm", password_grant(&base)).await;
    let op = Operator::start(Source::Url(server.url()), "op-a", false);
    let message = eventually(10, "refused", || async {
        let ca = server.object("connectorauth.dev", "connectorauths", Some(NS), "crm")?;
        let c = ca["status"]["conditions"]
            .as_array()?
            .iter()
            .find(|c| c["type"] == "Ready" && c["reason"] == "SecretOwnedElsewhere")?
            .clone();
        c["message"].as_str().map(str::to_string)
    })
    .await;
    assert!(message.contains("crm-connectorauth-state"), "{message}");
    assert!(message.contains("Deployment billing"), "{message}");
    assert_eq!(
        book.grants(),
        Vec::<String>::new(),
        "no token request with someone else's Secret"
    );
    let writes: Vec<String> = writes_by(&server, "op-a")
        .into_iter()
        .filter(|w| w.contains("secrets"))
        .collect();
    assert_eq!(writes, Vec::<String>::new());
    let events = server
        .objects("events.k8s.io", "events")
        .into_iter()
        .filter(|e| e["reason"] == "SecretOwnedElsewhere")
        .count();
    assert_eq!(events, 1);
    op.stop().await;
}

#[tokio::test]
async fn a_pass_that_has_lost_the_lead_starts_no_token_request_and_writes_nothing() {
    use connector_auth_operator::local::FileStore;
    use connector_auth_operator::reconcile::driver;
    use connector_auth_operator::reconcile::record::{PassError, Unsaved};
    use connector_auth_operator::reconcile::{Held, Lead};

    let (base, book) = rotating(3600).await;
    let engine = engine();
    let g = refresh_only(&engine, &base, "rt-seed");
    let tmp = tempfile::tempdir().unwrap();
    let store = FileStore::new(tmp.path(), "ns", "crm", "crm-token");
    let (lead_tx, lead_rx) = tokio::sync::watch::channel(Held::none(1));
    let lost = Lead::following(lead_rx).for_resource("ns", "crm");
    let now = jiff::Timestamp::now();
    let err = driver::reconcile(&engine, &g, &store, &mut Unsaved::default(), &lost, now)
        .await
        .unwrap_err();
    assert!(matches!(err, PassError::NotLeader), "{err}");
    assert_eq!(book.requests(), 0, "no token request without the lead");
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0, "nothing written");

    lead_tx.send_modify(|h| h.set(0, Some(std::time::SystemTime::now() + Duration::from_secs(60))));
    let outcome = driver::reconcile(&engine, &g, &store, &mut Unsaved::default(), &lost, now)
        .await
        .unwrap();
    assert!(outcome.token.is_some());
    assert_eq!(book.requests(), 1);
}

// ---------------------------------------------------------------- shards

/// What each replica's /metrics says it holds (`connectorauth_shards_held`); 0 when unreadable.
async fn shards_held(ops: &[Option<Operator>]) -> Vec<u32> {
    let reads = ops.iter().map(|op| {
        let url = op.as_ref().map(|op| format!("http://{}/metrics", op.metrics));
        async move {
            let Some(url) = url else { return 0 };
            let body = match reqwest::get(url).await {
                Ok(r) => r.text().await.unwrap_or_default(),
                Err(_) => String::new(),
            };
            body.lines()
                .find_map(|l| l.strip_prefix("connectorauth_shards_held "))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0)
        }
    });
    futures::future::join_all(reads).await
}

/// The holder of a resource's shard, as its Lease says.
fn shard_holder(server: &FakeApiServer, name: &str, shards: u32) -> Option<String> {
    let shard = connector_auth_operator::reconcile::shard_of(NS, name, shards);
    let name = match shard {
        0 => "connector-auth-operator".to_string(),
        _ => format!("connector-auth-operator-{shard}-of-{shards}"),
    };
    let lease = server.object("coordination.k8s.io", "leases", Some("operators"), &name)?;
    lease["spec"]["holderIdentity"].as_str().map(str::to_string)
}

/// A name in `shard` of `shards`, starting with `prefix`.
fn name_in_shard(prefix: &str, shard: u32, shards: u32) -> String {
    (0..)
        .map(|i| format!("{prefix}-{i}"))
        .find(|n| connector_auth_operator::reconcile::shard_of(NS, n, shards) == shard)
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_the_shards_and_a_stopped_replicas_shards_move_to_the_other() {
    let (base, book) = rotating(3600).await;
    let server = api_server().await;
    let client = server.client();
    secret(&client, "creds", ROTATING_LOGIN).await;
    let names: Vec<String> = (0..4).map(|s| name_in_shard("crm", s, 4)).collect();
    for name in &names {
        connector(&client, name, password_grant(&base)).await;
    }
    let ops = start_sharded_together(&server.url(), &["op-a", "op-b"], 4, |_, _| {});
    let mut ops: Vec<Option<Operator>> = ops.into_iter().map(Some).collect();

    // Started at one instant, the two settle on two shards each; never more than four held.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let held = shards_held(&ops).await;
        assert!(held.iter().sum::<u32>() <= 4, "more shards held than exist: {held:?}");
        if held == [2, 2] && names.iter().all(|n| ready(&server, n)) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "shards not shared: {held:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Once settled, each resource is served by the holder of its shard alone: a deleted output
    // Secret is restored by that replica and no other.
    let settled = server.requests().len();
    for name in &names {
        Api::<Secret>::namespaced(client.clone(), NS)
            .delete(&format!("{name}-token"), &DeleteParams::default())
            .await
            .unwrap();
    }
    eventually(15, "every output restored", || async {
        names
            .iter()
            .all(|n| decoded(&server, &format!("{n}-token")).is_some())
            .then_some(())
    })
    .await;
    for name in &names {
        let holder = shard_holder(&server, name, 4).unwrap();
        let writers: std::collections::BTreeSet<String> = server.requests()[settled..]
            .iter()
            .filter(|r| {
                r.resource == "secrets"
                    && r.name.as_deref() == Some(&format!("{name}-token"))
                    && matches!(r.verb.as_str(), "create" | "update" | "patch")
            })
            .filter_map(|r| r.user_agent.clone())
            .collect();
        assert_eq!(writers.into_iter().collect::<Vec<_>>(), vec![holder], "{name}");
    }

    // A graceful stop hands every shard over: the other replica then serves all of them,
    // including resources created afterwards, one per shard.
    ops[1].take().unwrap().stop().await;
    eventually(15, "the remaining replica holds every shard", || async {
        (shards_held(&ops).await[0] == 4).then_some(())
    })
    .await;
    let late: Vec<String> = (0..4).map(|s| name_in_shard("late", s, 4)).collect();
    for name in &late {
        connector(&client, name, password_grant(&base)).await;
    }
    eventually(15, "resources of every shard Ready", || async {
        late.iter().all(|n| ready(&server, n)).then_some(())
    })
    .await;
    for name in &late {
        assert_eq!(shard_holder(&server, name, 4).as_deref(), Some("op-a"));
    }
    assert!(!book.family_revoked());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shard_holder_killed_mid_refresh_hands_over_without_the_refresh_token_sent_twice() {
    // "crm" refreshes every second against a rotating provider; the rest are long-lived and
    // keep every replica busy with shards of their own.
    let (fast, book) = rotating(2).await;
    let (slow, others) = rotating(3600).await;
    let server = api_server().await;
    let client = server.client();
    secret(&client, "creds", ROTATING_LOGIN).await;
    connector(&client, "crm", password_grant(&fast)).await;
    let fillers: Vec<String> = (0..4).map(|s| name_in_shard("filler", s, 4)).collect();
    for name in &fillers {
        connector(&client, name, password_grant(&slow)).await;
    }
    let ops = start_sharded_together(&server.url(), &["op-a", "op-b", "op-c"], 4, |_, _| {});
    let mut ops: Vec<Option<Operator>> = ops.into_iter().map(Some).collect();
    eventually(20, "every replica holds a shard and all is Ready", || async {
        let held = shards_held(&ops).await;
        let all_ready = ready(&server, "crm") && fillers.iter().all(|n| ready(&server, n));
        (held.iter().all(|&h| h >= 1) && held.iter().sum::<u32>() == 4 && all_ready).then_some(())
    })
    .await;

    // Hold crm's next refresh after the provider rotated the token, and kill its shard's holder.
    book.ttl.store(3600, std::sync::atomic::Ordering::SeqCst);
    let gate = book.hold_next_answer();
    tokio::time::timeout(Duration::from_secs(10), gate.arrived())
        .await
        .expect("the refresh reached the provider");
    let holder = shard_holder(&server, "crm", 4).unwrap();
    let killed = ["op-a", "op-b", "op-c"].iter().position(|id| *id == holder).unwrap();
    ops[killed].take().unwrap().kill();
    gate.open();

    eventually(20, "another replica publishes a working token", || async {
        let data = decoded(&server, "crm-token")?;
        let state: Value = serde_json::from_str(&decoded(&server, "crm-connectorauth-state")?["state.json"]).ok()?;
        let current = state["refreshToken"].as_str().is_some_and(|rt| book.is_current(rt));
        let taken = shard_holder(&server, "crm", 4).is_some_and(|h| h != holder);
        (taken && current && state["inFlight"].is_null() && call_api(&format!("{fast}/api/me"), &data).await == 200)
            .then_some(())
    })
    .await;
    assert!(!book.family_revoked(), "the rotated refresh token was never sent again");
    assert!(!others.family_revoked());
    let grants = book.grants();
    let after_kill = grants.iter().rposition(|g| g == "refresh_token").unwrap() + 1;
    assert!(
        grants[after_kill..].iter().all(|g| g == "password"),
        "after the kill: a fresh login, never the refresh token in doubt: {grants:?}"
    );
    eventually(20, "the survivors hold every shard", || async {
        (shards_held(&ops).await.iter().sum::<u32>() == 4).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollout_that_changes_the_shard_count_never_has_two_writers_for_a_resource() {
    // Old replicas split nothing (one Lease), new ones split into four: during the rollout both
    // run at once, while every resource refreshes each second against a rotating provider.
    let (base, book) = rotating(2).await;
    let server = api_server().await;
    let client = server.client();
    secret(&client, "creds", ROTATING_LOGIN).await;
    let names: Vec<String> = (0..4).map(|s| name_in_shard("crm", s, 4)).collect();
    for name in &names {
        connector(&client, name, password_grant(&base)).await;
    }
    let old = start_together(&server.url(), &["old-a", "old-b"], |_, _| {});
    eventually(10, "the old replicas serve everything", || async {
        names.iter().all(|n| ready(&server, n)).then_some(())
    })
    .await;
    let barrier = Arc::new(Barrier::new(2));
    let url = server.url();
    let new: Vec<Operator> = ["new-a", "new-b"]
        .iter()
        .map(|id| {
            let (barrier, url, id) = (barrier.clone(), url.clone(), id.to_string());
            std::thread::spawn(move || {
                barrier.wait();
                Operator::start_sharded(Source::Url(url), &id, 4, |_| {})
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|t| t.join().unwrap())
        .collect();
    // Both generations run side by side for several refreshes; then the old ones go.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let old_wrote_during_overlap = old.len();
    for op in old {
        op.stop().await;
    }
    let settled = server.requests().len();
    eventually(20, "the new replicas refresh every resource", || async {
        let written: std::collections::BTreeSet<String> = server.requests()[settled..]
            .iter()
            .filter(|r| r.resource == "secrets" && r.verb == "patch")
            .filter(|r| r.user_agent.as_deref().is_some_and(|ua| ua.starts_with("new-")))
            .filter_map(|r| r.name.clone())
            .collect();
        names
            .iter()
            .all(|n| written.contains(&format!("{n}-token")))
            .then_some(())
    })
    .await;
    assert!(
        !book.family_revoked(),
        "a rotated refresh token was sent twice while {old_wrote_during_overlap} old replicas ran beside the new"
    );
    drop(new);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shard_whose_cache_never_synced_is_handed_over_at_once_and_does_not_hold_up_a_stop() {
    let (base, book) = rotating(3600).await;
    let server = api_server().await;
    let client = server.client();
    secret(&client, "creds", ROTATING_LOGIN).await;
    let names: Vec<String> = (0..2).map(|s| name_in_shard("crm", s, 2)).collect();
    for name in &names {
        connector(&client, name, password_grant(&base)).await;
    }
    // The first replica's ConnectorAuth lists (one per shard controller) get no answer, as from
    // an API server too busy to serve them: its caches never sync. (Its long token timeout
    // makes the time limit on a stopping controller too long to end one within this test.)
    let gate = fake_apiserver::Gate::new();
    server.delay_next(
        fake_apiserver::Delay::at(&gate, "connectorauths?&limit=500")
            .method("GET")
            .times(2),
    );
    let patient = |c: &mut connector_auth_operator::controller::Config| c.http.timeout = Duration::from_secs(3600);
    let mut ops = vec![
        Some(Operator::start_sharded(Source::Url(server.url()), "op-a", 2, patient)),
        None,
    ];
    tokio::time::timeout(Duration::from_secs(20), gate.wait_arrivals(2))
        .await
        .expect("op-a lists for both shards");
    eventually(10, "op-a holds both shards", || async {
        (shards_held(&ops).await == [2, 0]).then_some(())
    })
    .await;

    // A second replica asks for its fair share: op-a hands over a shard whose controller never
    // synced, and the newcomer serves it.
    ops[1] = Some(Operator::start_sharded(Source::Url(server.url()), "op-b", 2, patient));
    eventually(20, "op-b serves a shard", || async {
        let served = names
            .iter()
            .any(|n| shard_holder(&server, n, 2).as_deref() == Some("op-b") && ready(&server, n));
        (served && shards_held(&ops).await == [1, 1]).then_some(())
    })
    .await;

    // A graceful stop of op-a does not wait for its other, never synced, cache either: it ends
    // and hands the last shard over.
    ops[0].take().unwrap().stop().await;
    eventually(20, "op-b serves every resource", || async {
        let all = names
            .iter()
            .all(|n| shard_holder(&server, n, 2).as_deref() == Some("op-b") && ready(&server, n));
        all.then_some(())
    })
    .await;
    assert_eq!(gate.arrivals(), 2, "op-a's lists were never answered");
    assert!(!book.family_revoked());
    gate.answer(503);
}
