//! `spec.tls` through the controller: the real `kube::Client` against the in-process API
//! server, HTTPS token providers on 127.0.0.1 with certificates made at test time. CA bundles
//! from Secrets and ConfigMaps, a missing bundle named in the condition and used as soon as it
//! exists, mutual TLS with a `kubernetes.io/tls` Secret, and `insecureSkipVerify` shown as a
//! warning condition with one Warning Event.

mod support;

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use connector_auth_operator::api::{Condition, ConnectorAuth};
use fake_apiserver::FakeApiServer;
use kube::api::{Api, Patch, PatchParams};
use serde_json::{Value, json};
use support::operator::{Operator, Source};
use support::tls::*;
use support::{api_server, b64, eventually};

const NS: &str = "team-a";

fn seed_credentials(server: &FakeApiServer) {
    server
        .create_object(
            "",
            "secrets",
            json!({
                "apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": "creds", "namespace": NS},
                "data": {"client_id": b64(CLIENT_ID), "client_secret": b64(CLIENT_SECRET)},
            }),
        )
        .unwrap();
}

fn seed_secret(server: &FakeApiServer, name: &str, type_: &str, data: &[(&str, &str)]) {
    let data: serde_json::Map<String, Value> = data.iter().map(|(k, v)| (k.to_string(), json!(b64(v)))).collect();
    server
        .create_object(
            "",
            "secrets",
            json!({
                "apiVersion": "v1", "kind": "Secret", "type": type_,
                "metadata": {"name": name, "namespace": NS},
                "data": data,
            }),
        )
        .unwrap();
}

fn seed_config_map(server: &FakeApiServer, name: &str, data: &[(&str, &str)]) {
    let data: serde_json::Map<String, Value> = data.iter().map(|(k, v)| (k.to_string(), json!(v))).collect();
    server
        .create_object(
            "",
            "configmaps",
            json!({
                "apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": name, "namespace": NS},
                "data": data,
            }),
        )
        .unwrap();
}

/// A ConnectorAuth for `support::tls::token_router` at `base`, with `extra` spec fields.
fn seed_resource(server: &FakeApiServer, name: &str, base: &str, extra: Value) {
    seed_resource_at(server, name, &format!("{base}/oauth/token"), extra)
}

fn seed_resource_at(server: &FakeApiServer, name: &str, token_url: &str, extra: Value) {
    let mut spec = json!({
        "credentialsRef": {"name": "creds"},
        "oauth2": {"tokenUrl": token_url, "clientAuth": "client_secret_post"},
    });
    spec.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    server
        .create_object(
            "connectorauth.dev",
            "connectorauths",
            json!({
                "apiVersion": "connectorauth.dev/v1alpha1", "kind": "ConnectorAuth",
                "metadata": {"name": name, "namespace": NS},
                "spec": spec,
            }),
        )
        .unwrap();
}

async fn resource(client: &kube::Client, name: &str) -> ConnectorAuth {
    Api::<ConnectorAuth>::namespaced(client.clone(), NS)
        .get(name)
        .await
        .unwrap()
}

fn condition(ca: &ConnectorAuth, type_: &str) -> Option<Condition> {
    ca.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .cloned()
}

/// Waits until the resource's `Ready` condition has `status` (and `reason`, if given).
async fn ready_is(client: &kube::Client, name: &str, status: &str, reason: Option<&str>) -> Condition {
    eventually(15, &format!("{name}: Ready={status} {reason:?}"), || async {
        let c = condition(&resource(client, name).await, "Ready")?;
        (c.status == status && reason.is_none_or(|r| c.reason == r)).then_some(c)
    })
    .await
}

fn token(server: &FakeApiServer, name: &str) -> Option<String> {
    let s = server.object("", "secrets", Some(NS), &format!("{name}-token"))?;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(s["data"]["access_token"].as_str()?)
        .ok()?;
    String::from_utf8(raw).ok()
}

/// No line of any PEM (certificate or key) in status or Events.
fn assert_no_material(server: &FakeApiServer, pems: &[&str]) {
    let mut text = serde_json::to_string(&server.objects("events.k8s.io", "events")).unwrap();
    text.push_str(&serde_json::to_string(&server.objects("connectorauth.dev", "connectorauths")).unwrap());
    for pem in pems {
        for line in pem.lines().filter(|l| !l.starts_with("-----")) {
            assert!(!text.contains(line), "PEM material in status or Events");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ca_bundle_from_a_secret_or_a_config_map_makes_a_private_provider_ready() {
    let pki = pki();
    let hits = Arc::new(Hits::default());
    let provider = serve_tls(token_router(hits.clone(), None), &pki.server, None).await;
    let server = api_server().await;
    seed_credentials(&server);
    seed_config_map(&server, "corp-ca", &[("ca.crt", &pki.ca)]);
    seed_secret(&server, "corp-ca-secret", "Opaque", &[("ca.crt", &pki.ca)]);
    let via = |kind: &str, name: &str| json!({"tls": {"caBundleRef": {"kind": kind, "name": name}}});
    seed_resource(&server, "via-config-map", &provider.url, via("ConfigMap", "corp-ca"));
    seed_resource(&server, "via-secret", &provider.url, via("Secret", "corp-ca-secret"));
    seed_resource(&server, "system-trust", &provider.url, json!({}));
    let client = server.client();
    let op = Operator::start(Source::Url(server.url()), "op-1", false);

    for name in ["via-config-map", "via-secret"] {
        let c = ready_is(&client, name, "True", Some("TokenValid")).await;
        assert!(c.message.contains(&format!("{name}-token")), "{}", c.message);
        assert!(token(&server, name).unwrap().starts_with("tls-at-"));
    }
    // Verification is on by default: the system's CAs do not know the private CA.
    let c = ready_is(&client, "system-trust", "False", Some("TLSHandshakeFailed")).await;
    assert!(
        c.message
            .contains("the server's certificate is not trusted: it is not issued by the system's trusted CAs"),
        "{}",
        c.message
    );
    assert_eq!(hits.get(), 2);
    let events = server.objects("events.k8s.io", "events");
    assert!(
        events
            .iter()
            .any(|e| e["type"] == "Warning" && e["reason"] == "TLSHandshakeFailed"),
        "{events:#?}"
    );

    // The bundle is read where the resource lives, by name; nothing else.
    let cm_reads: Vec<String> = server
        .requests()
        .iter()
        .filter(|r| r.resource == "configmaps" && r.verb == "get")
        .map(|r| format!("{:?}/{:?}", r.namespace, r.name))
        .collect();
    assert!(!cm_reads.is_empty());
    assert!(
        cm_reads
            .iter()
            .all(|r| *r == format!("{:?}/{:?}", Some(NS), Some("corp-ca"))),
        "{cm_reads:?}"
    );
    assert_no_material(&server, &[&pki.ca]);
    op.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_ca_bundle_is_named_in_the_condition_and_used_as_soon_as_it_exists() {
    let pki = pki();
    let hits = Arc::new(Hits::default());
    let provider = serve_tls(token_router(hits.clone(), None), &pki.server, None).await;
    let server = api_server().await;
    seed_credentials(&server);
    seed_resource(
        &server,
        "crm",
        &provider.url,
        json!({"tls": {"caBundleRef": {"kind": "ConfigMap", "name": "corp-ca", "key": "bundle.pem"}}}),
    );
    let client = server.client();
    let op = Operator::start(Source::Url(server.url()), "op-1", false);

    let c = ready_is(&client, "crm", "False", Some("ReferenceNotFound")).await;
    assert_eq!(
        c.message,
        "spec.tls.caBundleRef: ConfigMap corp-ca not found in the resource's namespace (key `bundle.pem` is read from it)"
    );
    // Two failed attempts: the next retry is at least 8 s away (5 s doubling, -20% jitter).
    eventually(15, "a second attempt", || async {
        let ca = resource(&client, "crm").await;
        (ca.status?.failure_count? >= 2).then_some(())
    })
    .await;

    // Creating the ConfigMap (watched, metadata only) brings the resource up well before that.
    seed_config_map(&server, "corp-ca", &[("bundle.pem", &pki.ca)]);
    let created = tokio::time::Instant::now();
    ready_is(&client, "crm", "True", Some("TokenValid")).await;
    assert!(
        created.elapsed() < Duration::from_secs(6),
        "picked up through the ConfigMap watch, not the backoff: {:?}",
        created.elapsed()
    );
    assert_eq!(hits.get(), 1);
    assert!(
        server
            .requests()
            .iter()
            .any(|r| r.resource == "configmaps" && r.verb == "watch"),
        "ConfigMaps are watched"
    );
    op.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_uses_the_client_certificate_of_a_kubernetes_tls_secret() {
    let pki = pki();
    let hits = Arc::new(Hits::default());
    let provider = serve_tls(token_router(hits.clone(), None), &pki.server, Some(&pki.client_ca)).await;
    let server = api_server().await;
    seed_credentials(&server);
    seed_config_map(&server, "corp-ca", &[("ca.crt", &pki.ca)]);
    seed_secret(
        &server,
        "client-tls",
        "kubernetes.io/tls",
        &[("tls.crt", &pki.client.cert), ("tls.key", &pki.client.key)],
    );
    let ca = json!({"kind": "ConfigMap", "name": "corp-ca"});
    seed_resource(
        &server,
        "with-cert",
        &provider.url,
        json!({"tls": {"caBundleRef": ca, "clientCertificateRef": {"name": "client-tls"}}}),
    );
    seed_resource(
        &server,
        "without-cert",
        &provider.url,
        json!({"tls": {"caBundleRef": ca}}),
    );
    seed_resource(
        &server,
        "missing-cert",
        &provider.url,
        json!({"tls": {"caBundleRef": ca, "clientCertificateRef": {"name": "nope"}}}),
    );
    let client = server.client();
    let op = Operator::start(Source::Url(server.url()), "op-1", false);

    ready_is(&client, "with-cert", "True", Some("TokenValid")).await;
    assert!(token(&server, "with-cert").unwrap().starts_with("tls-at-"));
    let c = ready_is(&client, "without-cert", "False", Some("TLSHandshakeFailed")).await;
    assert!(
        c.message
            .ends_with("the server requires a client certificate (set spec.tls.clientCertificateRef)"),
        "{}",
        c.message
    );
    let c = ready_is(&client, "missing-cert", "False", Some("ReferenceNotFound")).await;
    assert_eq!(
        c.message,
        "spec.tls.clientCertificateRef: Secret nope not found in the resource's namespace (key `tls.crt` is read from it)"
    );
    assert_eq!(hits.get(), 1, "only the resource with the certificate got a token");
    assert!(server.object("", "secrets", Some(NS), "without-cert-token").is_none());
    assert_no_material(&server, &[&pki.client.key, &pki.client.cert, &pki.ca]);
    op.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insecure_skip_verify_works_and_is_a_warning_condition_with_one_event() {
    let pki = pki();
    let hits = Arc::new(Hits::default());
    let provider = serve_tls(token_router(hits.clone(), None), &pki.self_signed, None).await;
    let server = api_server().await;
    seed_credentials(&server);
    seed_resource(
        &server,
        "lab",
        &provider.url,
        json!({"tls": {"insecureSkipVerify": true}}),
    );
    let client = server.client();
    let op = Operator::start(Source::Url(server.url()), "op-1", false);

    ready_is(&client, "lab", "True", Some("TokenValid")).await;
    let insecure = eventually(10, "InsecureTLS", || async {
        condition(&resource(&client, "lab").await, "InsecureTLS")
    })
    .await;
    assert_eq!(
        (insecure.status.as_str(), insecure.reason.as_str()),
        ("True", "InsecureSkipVerify")
    );
    assert!(
        insecure
            .message
            .starts_with("spec.tls.insecureSkipVerify is true: the token endpoint's certificate is not verified"),
        "{}",
        insecure.message
    );
    assert_eq!(hits.get(), 1);

    // More reconciles (metadata edits, a restart) record no further Event.
    let cas: Api<ConnectorAuth> = Api::namespaced(client.clone(), NS);
    for i in 0..2 {
        let patch = json!({"metadata": {"labels": {"touched": i.to_string()}}});
        cas.patch("lab", &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    op.stop().await;
    server.clear_requests();
    let op = Operator::start(Source::Url(server.url()), "op-2", false);
    eventually(10, "reconcile after restart", || async {
        server
            .requests()
            .iter()
            .any(|r| r.verb == "get" && r.name.as_deref() == Some("lab-connectorauth-state"))
            .then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let warnings: Vec<Value> = server
        .objects("events.k8s.io", "events")
        .into_iter()
        .filter(|e| e["reason"] == "InsecureSkipVerify")
        .collect();
    assert_eq!(warnings.len(), 1, "{warnings:#?}");
    assert_eq!(warnings[0]["type"], "Warning");
    assert!(warnings[0]["series"].is_null(), "recorded once, not repeated");
    assert!(
        warnings[0]["note"]
            .as_str()
            .unwrap()
            .contains("insecureSkipVerify is true")
    );

    // Verification back on: the warning goes, the valid token stays published.
    let patch = json!({"spec": {"tls": null}});
    cas.patch("lab", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    eventually(10, "InsecureTLS gone", || async {
        let ca = resource(&client, "lab").await;
        (ca.status.as_ref()?.observed_generation == Some(2) && condition(&ca, "InsecureTLS").is_none()).then_some(())
    })
    .await;
    assert_eq!(
        condition(&resource(&client, "lab").await, "Ready").unwrap().status,
        "True"
    );
    assert_eq!(hits.get(), 1);
    op.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowed_redirects_reach_the_token_endpoint_and_refused_ones_say_why() {
    let pki = pki();
    let hits = Arc::new(Hits::default());
    // The token endpoint moved within its own origin: a 307 there keeps the form body.
    let target = serve_tls(
        token_router(hits.clone(), Some("/oauth/token".into())),
        &pki.server,
        None,
    )
    .await;
    // Another origin answers with a 307 to the token endpoint: following it would send the
    // form body, client secret included, on to wherever it points.
    let elsewhere = serve_tls(
        token_router(Arc::new(Hits::default()), Some(format!("{}/oauth/token", target.url))),
        &pki.server,
        None,
    )
    .await;
    let server = api_server().await;
    seed_credentials(&server);
    seed_secret(&server, "corp-ca", "Opaque", &[("ca.crt", &pki.ca)]);
    let tls = json!({"caBundleRef": {"kind": "Secret", "name": "corp-ca"}});
    let url = format!("{}/moved", target.url);
    seed_resource_at(&server, "follows", &url, json!({"tls": tls, "allowRedirects": true}));
    seed_resource_at(&server, "stays", &url, json!({"tls": tls}));
    let cross = format!("{}/moved", elsewhere.url);
    seed_resource_at(&server, "crosses", &cross, json!({"tls": tls, "allowRedirects": true}));
    let client = server.client();
    let op = Operator::start(Source::Url(server.url()), "op-1", false);

    ready_is(&client, "follows", "True", Some("TokenValid")).await;
    let c = ready_is(&client, "crosses", "False", Some("RedirectNotFollowed")).await;
    assert!(
        c.message.contains(&format!(
            "a redirect (HTTP 307) to another host ({}) would send the request body there again; not followed",
            target.url
        )),
        "{}",
        c.message
    );
    let c = ready_is(&client, "stays", "False", Some("RedirectNotFollowed")).await;
    assert!(
        c.message.ends_with(&format!(
            "answered HTTP 307 (a redirect to {}) instead of the token; redirects are not followed unless spec.allowRedirects is true",
            target.url
        )),
        "{}",
        c.message
    );
    assert_eq!(hits.get(), 1);
    op.stop().await;
}
