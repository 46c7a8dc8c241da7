//! ClusterConnectorAuthProvider with the operator running against the API server: a platform
//! team's entry fills in a ConnectorAuth, wins over a built-in entry of the same name (and status
//! says which was used), a change to it re-reconciles the resources that use it, and a missing
//! entry or parameter is a clear condition and Event.

mod support;

use std::collections::BTreeMap;

use connector_auth_operator::api::ConnectorAuth;
use connector_auth_operator::api::provider::ClusterConnectorAuthProvider;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use support::operator::{Operator, Source};
use support::*;

const NS: &str = "team-a";

/// A provider entry for snov.io-style logins at `base`, with the API host as a parameter
/// (`{{ host }}`) to show parameters reach the templates.
fn snov_entry(name: &str, base: &str) -> Value {
    json!({
        "apiVersion": "connectorauth.dev/v1alpha1", "kind": "ClusterConnectorAuthProvider",
        "metadata": {"name": name},
        "spec": {
            "displayName": "Internal snov gateway",
            "source": "https://wiki.example.com/snov",
            "quirks": "client credentials in the query of a GET",
            "params": [{"name": "host", "description": "the gateway host", "default": base.trim_start_matches("http://")}],
            "settings": {"refreshableToken": {
                "authorization": {"method": "GET", "url": "http://{{ host }}/v1/oauth/access_token?client_id={{ username | urlencode }}&client_secret={{ password | urlencode }}&grant_type=client_credentials"},
                "expiresIn": {"jsonPath": "expires_in"},
            }},
        },
    })
}

async fn create_provider(client: &kube::Client, doc: Value) {
    let api: Api<ClusterConnectorAuthProvider> = Api::all(client.clone());
    api.create(&PostParams::default(), &serde_json::from_value(doc).unwrap())
        .await
        .unwrap();
}

async fn create_resource(client: &kube::Client, name: &str, spec: Value) {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), NS);
    let data: BTreeMap<String, k8s_openapi::ByteString> = [("username", "snov-id"), ("password", "snov&secret")]
        .into_iter()
        .map(|(k, v)| (k.to_string(), k8s_openapi::ByteString(v.as_bytes().to_vec())))
        .collect();
    let secret = Secret {
        metadata: kube::api::ObjectMeta {
            name: Some(format!("{name}-credentials")),
            namespace: Some(NS.into()),
            ..Default::default()
        },
        data: Some(data),
        ..Default::default()
    };
    secrets.create(&PostParams::default(), &secret).await.unwrap();
    let mut spec = spec;
    spec["credentialsRef"] = json!({"name": format!("{name}-credentials")});
    let ca: ConnectorAuth = serde_json::from_value(json!({
        "apiVersion": "connectorauth.dev/v1alpha1", "kind": "ConnectorAuth",
        "metadata": {"name": name, "namespace": NS}, "spec": spec,
    }))
    .unwrap();
    Api::<ConnectorAuth>::namespaced(client.clone(), NS)
        .create(&PostParams::default(), &ca)
        .await
        .unwrap();
}

async fn status(client: &kube::Client, name: &str) -> Option<connector_auth_operator::api::ConnectorAuthStatus> {
    Api::<ConnectorAuth>::namespaced(client.clone(), NS)
        .get(name)
        .await
        .unwrap()
        .status
}

/// The Ready condition's status and reason, once there is one.
async fn ready(client: &kube::Client, name: &str) -> Option<(String, String, String)> {
    let s = status(client, name).await?;
    let c = s.conditions.iter().find(|c| c.type_ == "Ready")?;
    Some((c.status.clone(), c.reason.clone(), c.message.clone()))
}

async fn headers(client: &kube::Client, name: &str) -> Option<BTreeMap<String, String>> {
    let s = Api::<Secret>::namespaced(client.clone(), NS)
        .get_opt(&format!("{name}-token"))
        .await
        .unwrap()?;
    let v = String::from_utf8(s.data.as_ref()?.get("headers.json")?.0.clone()).ok()?;
    Some(BTreeMap::from([("headers.json".to_string(), v)]))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_entry_fills_in_a_resource_wins_over_the_built_in_and_its_changes_are_followed() {
    let (first, first_book) = snov().await;
    let (second, second_book) = snov().await;
    let server = api_server().await;
    let client = server.client();
    // `snov-io` is also a built-in name (pointing at api.snov.io): the cluster's entry wins.
    create_provider(&client, snov_entry("snov-io", &first)).await;
    create_resource(&client, "leads", json!({"provider": "snov-io", "refreshableToken": {}})).await;
    // A built-in entry still works alongside, and says so.
    create_resource(&client, "shop", json!({"provider": "wix", "apiKey": {}})).await;
    let op = Operator::start(Source::Url(server.url()), "op-1", false);

    eventually(20, "token from the cluster entry", || async {
        let h = headers(&client, "leads").await?;
        (call_api(&format!("{first}/v1/get-balance"), &h).await == 200).then_some(())
    })
    .await;
    let s = status(&client, "leads").await.unwrap();
    assert_eq!(s.provider.as_deref(), Some("ClusterConnectorAuthProvider/snov-io"));
    assert_eq!(first_book.requests(), 1);

    // The wix resource's credentials lack its keys: refused, naming one; the entry is built-in.
    let (st, reason, message) = eventually(20, "wix refused", || ready(&client, "shop")).await;
    assert_eq!(
        (st.as_str(), reason.as_str()),
        ("False", "UndefinedVariable"),
        "{message}"
    );
    assert!(message.contains("api_key") || message.contains("site_id"), "{message}");
    let s = status(&client, "shop").await.unwrap();
    assert_eq!(s.provider.as_deref(), Some("built-in/wix"));

    // The platform team moves the gateway: the resource follows without being touched.
    let patch = json!({"spec": {"params": [{"name": "host", "default": second.trim_start_matches("http://")}]}});
    Api::<ClusterConnectorAuthProvider>::all(client.clone())
        .patch("snov-io", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    eventually(20, "token from the moved gateway", || async {
        let h = headers(&client, "leads").await?;
        (call_api(&format!("{second}/v1/get-balance"), &h).await == 200).then_some(())
    })
    .await;
    assert_eq!(second_book.requests(), 1);

    // Deleting the cluster entry falls back to the built-in one, and status says so.
    Api::<ClusterConnectorAuthProvider>::all(client.clone())
        .delete("snov-io", &Default::default())
        .await
        .unwrap();
    // The built-in snov-io follows snov.io's documented OAuth2 endpoint, so this resource's
    // `refreshableToken` block no longer fits: refused, naming the built-in's scheme.
    let (st, reason, message) = eventually(20, "the built-in entry applies", || async {
        let r = ready(&client, "leads").await?;
        r.2.contains("`oauth2: {}`").then_some(r)
    })
    .await;
    assert_eq!((st.as_str(), reason.as_str()), ("False", "InvalidSpec"), "{message}");
    op.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_entry_or_parameter_is_a_condition_and_an_event_and_creating_it_is_noticed() {
    let (base, book) = snov().await;
    let server = api_server().await;
    let client = server.client();
    create_resource(
        &client,
        "leads",
        json!({"provider": "internal-snov", "refreshableToken": {}}),
    )
    .await;
    let op = Operator::start(Source::Url(server.url()), "op-1", false);

    let (st, reason, message) = eventually(20, "refused", || ready(&client, "leads")).await;
    assert_eq!((st.as_str(), reason.as_str()), ("False", "ProviderNotFound"));
    assert!(
        message.contains("no ClusterConnectorAuthProvider and no built-in provider named `internal-snov`"),
        "{message}"
    );
    let events = server.objects("events.k8s.io", "events");
    assert!(
        events
            .iter()
            .any(|e| e["reason"] == "ProviderNotFound" && e["type"] == "Warning"),
        "{events:#?}"
    );

    // An entry whose parameter has no default and is given nowhere: the parameter is named.
    let mut entry = snov_entry("internal-snov", &base);
    entry["spec"]["params"][0].as_object_mut().unwrap().remove("default");
    create_provider(&client, entry).await;
    eventually(20, "the missing parameter is named", || async {
        let (_, reason, message) = ready(&client, "leads").await?;
        (reason == "InvalidSpec").then_some(message)
    })
    .await
    .contains("spec.providerParams.host")
    .then_some(())
    .expect("names spec.providerParams.host");

    // Given in the resource, the token follows.
    let host = base.trim_start_matches("http://").to_string();
    let patch = json!({"spec": {"providerParams": {"host": host}}});
    Api::<ConnectorAuth>::namespaced(client.clone(), NS)
        .patch("leads", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    eventually(20, "token", || async {
        let h = headers(&client, "leads").await?;
        (call_api(&format!("{base}/v1/get-balance"), &h).await == 200).then_some(())
    })
    .await;
    assert_eq!(book.requests(), 1);
    op.stop().await;
}

#[tokio::test]
async fn the_api_server_refuses_a_provider_entry_without_exactly_one_scheme_or_with_a_bad_parameter() {
    let server = api_server().await;
    // Untyped, so that what the typed API would not even express reaches the server.
    let ar = kube::discovery::ApiResource::erase::<ClusterConnectorAuthProvider>(&());
    let api: Api<kube::api::DynamicObject> = Api::all_with(server.client(), &ar);
    let bad = |name: &str, spec: Value| -> kube::api::DynamicObject {
        serde_json::from_value(json!({"apiVersion": "connectorauth.dev/v1alpha1", "kind": "ClusterConnectorAuthProvider", "metadata": {"name": name}, "spec": spec})).unwrap()
    };
    let cases = [
        (
            bad(
                "two",
                json!({"settings": {"apiKey": {}, "oauth2": {"tokenUrl": "https://x"}}}),
            ),
            "exactly one scheme",
        ),
        (
            bad(
                "param",
                json!({"params": [{"name": "a-b"}], "settings": {"apiKey": {}}}),
            ),
            "a parameter name is a letter or underscore",
        ),
        (
            bad(
                "twice",
                json!({"params": [{"name": "a"}, {"name": "a"}], "settings": {"apiKey": {}}}),
            ),
            "params names must be unique",
        ),
    ];
    for (obj, want) in cases {
        let err = api.create(&PostParams::default(), &obj).await.unwrap_err().to_string();
        assert!(err.contains(want), "{want}: {err}");
    }
}

/// An install whose chart was upgraded without the new CRD (`helm upgrade` does not add CRDs):
/// resources are served as usual, built-in entries resolve, and the missing API is asked about
/// once rather than retried, since a failing watch used to pause the controller's other watches.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_provider_crd_resources_are_served_and_the_missing_api_is_asked_about_once() {
    let (base, book) = snov().await;
    let server = fake_apiserver::FakeApiServer::start().await;
    server.register_crd(&<ConnectorAuth as kube::CustomResourceExt>::crd());
    let client = server.client();
    let host = base.trim_start_matches("http://");
    create_resource(
        &client,
        "leads",
        json!({"refreshableToken": {
            "authorization": {"method": "GET", "url": format!("http://{host}/v1/oauth/access_token?client_id={{{{ username | urlencode }}}}&client_secret={{{{ password | urlencode }}}}&grant_type=client_credentials")},
            "expiresIn": {"jsonPath": "expires_in"},
        }}),
    )
    .await;
    create_resource(&client, "shop", json!({"provider": "wix", "apiKey": {}})).await;
    let op = Operator::start(Source::Url(server.url()), "op-1", false);

    eventually(20, "token", || async {
        let h = headers(&client, "leads").await?;
        (call_api(&format!("{base}/v1/get-balance"), &h).await == 200).then_some(())
    })
    .await;
    let (_, reason, _) = eventually(20, "wix resolved to its built-in entry", || ready(&client, "shop")).await;
    assert_eq!(
        reason, "UndefinedVariable",
        "the built-in entry ran and named a missing key"
    );
    // The Secret watch works: a deleted output is restored without a token call.
    Api::<Secret>::namespaced(client.clone(), NS)
        .delete("leads-token", &Default::default())
        .await
        .unwrap();
    eventually(20, "output restored", || headers(&client, "leads")).await;
    assert_eq!(book.requests(), 1);
    // Long enough for a watch of the missing API to have retried (its first backoff is ~1 s).
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    let provider_lists = server
        .requests()
        .iter()
        .filter(|r| r.resource == "clusterconnectorauthproviders" && r.verb == "list")
        .count();
    assert_eq!(
        provider_lists, 1,
        "asked once whether the API is served, then left alone"
    );
    op.stop().await;
}
