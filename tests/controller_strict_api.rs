//! The operator against an API server that refuses what a real one refuses: a write it refuses
//! becomes a condition and a Warning Event saying which Secret and why (not a silent retry loop),
//! resources with names as long as Kubernetes allows still work, and the CRD refuses output
//! Secret names and keys that no Secret could have.

mod support;

use std::time::Duration;

use connector_auth_operator::api::ConnectorAuth;
use fake_apiserver::FakeApiServer;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, ObjectMeta, PostParams};
use kube::{CustomResourceExt, ResourceExt};
use serde_json::{Value, json};
use support::operator::{Operator, Source};
use support::*;

const NS: &str = "team-a";

/// The credentials Secret and a ConnectorAuth `name` (spec adjusted by `output`) against the
/// rotating provider at `base`.
async fn create(client: &kube::Client, base: &str, name: &str, output: Value) -> Result<(), kube::Error> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), NS);
    let creds: Secret = serde_json::from_value(json!({
        "metadata": { "name": "crm-credentials" },
        "stringData": { "client_id": "rot-client", "client_secret": "rot-secret", "refresh_token": "rt-seed" },
    }))
    .unwrap();
    if secrets.get_opt("crm-credentials").await?.is_none() {
        secrets.create(&PostParams::default(), &creds).await?;
    }
    let ca: ConnectorAuth = serde_json::from_value(json!({
        "apiVersion": "connectorauth.dev/v1alpha1", "kind": "ConnectorAuth",
        "metadata": { "name": name, "namespace": NS },
        "spec": {
            "credentialsRef": { "name": "crm-credentials" },
            "oauth2": { "tokenUrl": format!("{base}/oauth/token"), "grantType": "refreshToken" },
            "output": output,
        },
    }))
    .unwrap();
    Api::<ConnectorAuth>::namespaced(client.clone(), NS)
        .create(&PostParams::default(), &ca)
        .await
        .map(|_| ())
}

/// The `Ready` condition's status, reason and message.
async fn ready(client: &kube::Client, name: &str) -> Option<(String, String, String)> {
    let ca = Api::<ConnectorAuth>::namespaced(client.clone(), NS)
        .get(name)
        .await
        .ok()?;
    let c = ca.status?.conditions.into_iter().find(|c| c.type_ == "Ready")?;
    Some((c.status, c.reason, c.message))
}

async fn ready_with_reason(client: &kube::Client, name: &str, reason: &str) -> String {
    eventually(20, &format!("Ready=False with reason {reason}"), || async {
        ready(client, name)
            .await
            .filter(|(status, r, _)| status == "False" && r == reason)
            .map(|(_, _, message)| message)
    })
    .await
}

fn warnings(server: &FakeApiServer, reason: &str) -> Vec<Value> {
    server
        .objects("events.k8s.io", "events")
        .into_iter()
        .filter(|e| e["type"] == "Warning" && e["reason"] == reason)
        .collect()
}

fn secret_writes(server: &FakeApiServer, name: &str) -> usize {
    server
        .requests()
        .iter()
        .filter(|r| r.resource == "secrets" && r.name.as_deref() == Some(name) && r.method != "GET")
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_output_secret_another_controller_owns_is_reported_not_retried_in_a_loop() {
    let (base, book) = rotating(3600).await;
    let server = api_server().await;
    let client = server.client();
    // Another controller's Secret, under the name this ConnectorAuth would publish to.
    let owner = Api::<ConfigMap>::namespaced(client.clone(), NS)
        .create(
            &PostParams::default(),
            &ConfigMap {
                metadata: ObjectMeta {
                    name: Some("other-app".into()),
                    ..Default::default()
                },
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let taken: Secret = serde_json::from_value(json!({
        "metadata": { "name": "crm-token", "ownerReferences": [{
            "apiVersion": "v1", "kind": "ConfigMap", "name": "other-app", "uid": owner.uid().unwrap(), "controller": true,
        }]},
        "stringData": { "theirs": "x" },
    }))
    .unwrap();
    Api::<Secret>::namespaced(client.clone(), NS)
        .create(&PostParams::default(), &taken)
        .await
        .unwrap();
    create(&client, &base, "crm", json!({})).await.unwrap();
    let op = Operator::start(Source::Url(server.url()), "op-1", false);

    let message = ready_with_reason(&client, "crm", "SecretOwnedElsewhere").await;
    assert!(message.contains("team-a/crm-token"), "{message}");
    assert!(message.contains("ConfigMap other-app"), "{message}");
    let events = eventually(10, "a Warning Event", || async {
        Some(warnings(&server, "SecretOwnedElsewhere")).filter(|e| !e.is_empty())
    })
    .await;
    assert_eq!(events.len(), 1, "{events:#?}");
    let note = events[0]["note"].as_str().unwrap();
    assert!(
        note.contains("team-a/crm-token") && note.contains("ConfigMap other-app"),
        "{note}"
    );

    // Refused, not retried in a loop: no new token requests, and at most the one write of the
    // pass our own status update triggers (it finds the status unchanged and stops there).
    server.clear_requests();
    let tokens = book.requests();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(secret_writes(&server, "crm-token") <= 1, "{:#?}", server.requests());
    assert_eq!(book.requests(), tokens);
    // The other controller's Secret is untouched.
    let stored = Api::<Secret>::namespaced(client.clone(), NS)
        .get("crm-token")
        .await
        .unwrap();
    assert_eq!(stored.owner_references().len(), 1);
    assert!(!stored.data.unwrap().contains_key("access_token"));
    op.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_write_the_api_server_refuses_becomes_a_condition_and_an_event() {
    let (base, _book) = rotating(3600).await;
    let server = api_server().await;
    let client = server.client();
    create(&client, &base, "crm", json!({})).await.unwrap();
    let uid = Api::<ConnectorAuth>::namespaced(client.clone(), NS)
        .get("crm")
        .await
        .unwrap()
        .uid()
        .unwrap();
    // The resource's own output Secret, made immutable by someone: its data can never be
    // replaced.
    let frozen: Secret = serde_json::from_value(json!({
        "metadata": { "name": "crm-token", "ownerReferences": [{
            "apiVersion": "connectorauth.dev/v1alpha1", "kind": "ConnectorAuth", "name": "crm", "uid": uid, "controller": true,
        }]},
        "stringData": { "old": "x" },
        "immutable": true,
    }))
    .unwrap();
    Api::<Secret>::namespaced(client.clone(), NS)
        .create(&PostParams::default(), &frozen)
        .await
        .unwrap();
    let op = Operator::start(Source::Url(server.url()), "op-1", false);

    let message = ready_with_reason(&client, "crm", "SecretRejected").await;
    assert!(message.contains("team-a/crm-token"), "{message}");
    assert!(
        message.contains("data: Forbidden: field is immutable when `immutable` is set"),
        "{message}"
    );
    eventually(10, "a Warning Event", || async {
        Some(()).filter(|_| !warnings(&server, "SecretRejected").is_empty())
    })
    .await;
    op.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resource_with_the_longest_allowed_name_gets_its_token_state_and_events() {
    let (base, _book) = rotating(3600).await;
    let server = api_server().await;
    let client = server.client();
    let name = format!("crm-{}", "a".repeat(246));
    assert_eq!(name.len(), 250);
    create(&client, &base, &name, json!({ "secretName": "crm-token" }))
        .await
        .unwrap();
    let op = Operator::start(Source::Url(server.url()), "op-1", false);
    eventually(20, "Ready", || async {
        ready(&client, &name).await.filter(|(status, _, _)| status == "True")
    })
    .await;

    let secrets = server.objects("", "secrets");
    let state = secrets
        .iter()
        .find(|s| s["metadata"]["labels"]["connectorauth.dev/role"] == "state")
        .expect("a state Secret");
    let state_name = state["metadata"]["name"].as_str().unwrap();
    assert!(state_name.len() <= 253, "{state_name}");
    assert!(state_name.ends_with("-connectorauth-state"), "{state_name}");
    let events = server.objects("events.k8s.io", "events");
    let issued = events
        .iter()
        .find(|e| e["reason"] == "Issued")
        .expect("an Issued Event");
    let event_name = issued["metadata"]["name"].as_str().unwrap();
    assert!(event_name.len() <= 253, "{event_name}");
    assert_eq!(issued["regarding"]["name"], name.as_str());
    op.stop().await;
}

#[tokio::test]
async fn output_secret_names_and_keys_are_refused_at_apply_time() {
    let server = api_server().await;
    let client = server.client();
    let refused = |e: kube::Error| match e {
        kube::Error::Api(s) => (s.code, s.message),
        other => panic!("{other:?}"),
    };
    let bad_name = create(&client, "https://x", "a", json!({ "secretName": "Bad_Name" }))
        .await
        .unwrap_err();
    let (code, message) = refused(bad_name);
    assert_eq!(code, 422);
    assert!(
        message.starts_with("ConnectorAuth.connectorauth.dev \"a\" is invalid: spec.output.secretName: Invalid value: \"Bad_Name\": output.secretName must be a valid Secret name"),
        "{message}"
    );
    let bad_key = create(
        &client,
        "https://x",
        "b",
        json!({ "template": { "api key": "{{ access_token }}" } }),
    )
    .await
    .unwrap_err();
    let (code, message) = refused(bad_key);
    assert_eq!(code, 422);
    assert!(
        message.starts_with("ConnectorAuth.connectorauth.dev \"b\" is invalid: spec.output.template: Invalid value: output.template keys must be valid Secret keys"),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_status_the_api_server_refuses_is_reported_in_an_event() {
    let (base, _book) = rotating(3600).await;
    let server = FakeApiServer::start().await;
    // A CRD whose status schema no longer accepts what the operator writes, e.g. an older one.
    let mut crd = serde_json::to_value(ConnectorAuth::crd()).unwrap();
    let scheme = "/spec/versions/0/schema/openAPIV3Schema/properties/status/properties/scheme";
    crd.pointer_mut(scheme).unwrap()["enum"] = json!(["none"]);
    server.register_crd(&crd);
    let client = server.client();
    create(&client, &base, "crm", json!({})).await.unwrap();
    let op = Operator::start(Source::Url(server.url()), "op-1", false);
    let events = eventually(20, "a StatusRejected Event", || async {
        Some(warnings(&server, "StatusRejected")).filter(|e| !e.is_empty())
    })
    .await;
    let note = events[0]["note"].as_str().unwrap();
    assert!(note.contains("status.scheme: Unsupported value: \"oauth2\""), "{note}");
    op.stop().await;
}
