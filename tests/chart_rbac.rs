//! The Helm chart's RBAC is exactly what the operator uses.
//!
//! The operator runs through representative scenarios against the in-process API server, which
//! records every request. The chart keeps its rules as data (`charts/connector-auth-operator/
//! files/rbac/*.yaml`, rendered by the templates with `.Files.Get`); this test loads the same
//! files, binds them the way the templates do for the scenario's values, and checks both ways:
//!
//! - every request the operator made is allowed by some bound rule (a cluster-wide list or
//!   watch only by a ClusterRole; a rule with `resourceNames` only for that name);
//! - every (group, resource, verb, name) the rules grant was used in some scenario, and no rule
//!   has a wildcard.
//!
//! A real API server authorizes a server-side apply that creates the object as `create` too
//! (besides `patch`); the fake server does not model authorization, so the test adds that
//! requirement for every apply to a main resource (status subresources cannot create).

#[path = "support/custom_operator.rs"]
mod custom_operator;
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;
use std::time::Duration;

use base64::Engine as _;
use connector_auth_operator::consent::{self, ConsentState};
use connector_auth_operator::controller::consent_key::KEY_SECRET;
use connector_auth_operator::reconcile::callback::CALLBACK_PATH;
use custom_operator::{CustomOperator, Settings};
use fake_apiserver::{FakeApiServer, Recorded};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::rbac::v1::PolicyRule;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;
use support::operator::{Operator, Source};
use support::*;

/// The release namespace: where the Lease and the consent-key Secret live.
const RELEASE_NS: &str = "operators";
/// LEASE_NAME as the chart sets it (the release's full name; here the release is called
/// `connector-auth-operator`, so the full name is just that).
const LEASE_NAME: &str = "connector-auth-operator";
/// Field manager of the test's own writes, to tell them from the operator's.
const TEST_MANAGER: &str = "rbac-test";

// ------------------------------------------------------------------ the chart's rules

const RBAC_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/charts/connector-auth-operator/files/rbac");

/// The rules of `files/rbac/<file>.yaml`, with the template expressions the chart fills in.
fn rules(file: &str) -> Vec<PolicyRule> {
    let path = format!("{RBAC_DIR}/{file}.yaml");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    // One shard, as the scenarios here run: the list of shard Leases is the Lease name alone.
    let text = text.replace(
        r#"{{ include "connector-auth-operator.leaseNames" . }}"#,
        &format!(r#"["{LEASE_NAME}"]"#),
    );
    assert!(
        !text.contains("{{"),
        "{path}: a template expression this test does not know how to fill in"
    );
    let doc: serde_json::Value = serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"));
    let keys: Vec<&String> = doc.as_object().expect("a mapping").keys().collect();
    assert_eq!(keys, ["rules"], "{path}: only `rules`");
    let rules = doc["rules"].as_array().expect("rules: a list").clone();
    rules
        .into_iter()
        .map(|r| {
            for k in r.as_object().expect("a rule is a mapping").keys() {
                assert!(
                    ["apiGroups", "resources", "resourceNames", "verbs"].contains(&k.as_str()),
                    "{path}: unexpected rule field {k}"
                );
            }
            let rule: PolicyRule = serde_json::from_value(r).unwrap();
            let all = rule
                .api_groups
                .iter()
                .chain(rule.resources.iter())
                .chain(rule.resource_names.iter())
                .flatten()
                .chain(rule.verbs.iter());
            for v in all {
                assert!(!v.contains('*'), "{path}: wildcard `{v}`");
            }
            assert!(
                rule.api_groups.as_ref().is_some_and(|g| !g.is_empty())
                    && rule.resources.as_ref().is_some_and(|r| !r.is_empty())
                    && !rule.verbs.is_empty(),
                "{path}: every rule names groups, resources and verbs: {rule:?}"
            );
            rule
        })
        .collect()
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Scope {
    Cluster,
    Namespace(String),
}

/// A rule file bound to the operator's ServiceAccount, as the templates bind it.
struct Grant {
    file: &'static str,
    scope: Scope,
    rules: Vec<PolicyRule>,
}

/// The chart values a scenario corresponds to.
struct Values {
    watch_namespaces: Vec<&'static str>,
    leader_election: bool,
    callback: bool,
    /// `rbac.rolloutRestart.enabled`
    rollout_restart: bool,
    /// `rbac.serviceAccountTokens.enabled`
    service_account_tokens: bool,
}

/// What clusterrole(binding).yaml and role(binding).yaml render for `values`.
fn grants(values: &Values) -> Vec<Grant> {
    let grant = |file, scope| Grant {
        file,
        scope,
        rules: rules(file),
    };
    let mut out = Vec::new();
    // The workload rules ride in the controller's (Cluster)Role(s) when enabled.
    let mut controller: Vec<&'static str> = vec!["controller"];
    if values.rollout_restart {
        controller.push("rollout-restart");
    }
    if values.service_account_tokens {
        controller.push("service-account-tokens");
    }
    for &file in &controller {
        if values.watch_namespaces.is_empty() {
            out.push(grant(file, Scope::Cluster));
        } else {
            for ns in &values.watch_namespaces {
                out.push(grant(file, Scope::Namespace(ns.to_string())));
            }
        }
    }
    if values.leader_election {
        out.push(grant("leader-election", Scope::Namespace(RELEASE_NS.into())));
    }
    if values.callback {
        out.push(grant("consent-key", Scope::Namespace(RELEASE_NS.into())));
    }
    out.push(grant("providers", Scope::Cluster));
    out
}

/// One authorization check: what RBAC sees of a request.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Check {
    verb: String,
    group: String,
    /// `resource` or `resource/subresource`.
    resource: String,
    namespace: Option<String>,
    name: Option<String>,
}

impl std::fmt::Display for Check {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let group = if self.group.is_empty() { "core" } else { &self.group };
        let ns = match &self.namespace {
            Some(ns) => format!("in {ns}"),
            None => "cluster-wide".into(),
        };
        write!(f, "{} {group}/{} {ns}", self.verb, self.resource)?;
        if let Some(n) = &self.name {
            write!(f, " name={n}")?;
        }
        Ok(())
    }
}

/// The authorization checks a recorded request needs to pass.
fn checks(r: &Recorded) -> Vec<Check> {
    assert!(
        !r.resource.starts_with('/'),
        "non-resource request {} {}: add it to the chart or explain it here",
        r.method,
        r.resource
    );
    let resource = match &r.subresource {
        Some(s) => format!("{}/{s}", r.resource),
        None => r.resource.clone(),
    };
    let check = |verb: &str| Check {
        verb: verb.into(),
        group: r.group.clone(),
        resource: resource.clone(),
        namespace: r.namespace.clone(),
        name: r.name.clone(),
    };
    let mut out = vec![check(&r.verb)];
    if r.verb == "patch" && r.patch_type.as_deref() == Some("apply") && r.subresource.is_none() {
        out.push(check("create"));
    }
    out
}

fn rule_allows(rule: &PolicyRule, c: &Check) -> bool {
    let has = |list: &Option<Vec<String>>, v: &str| list.iter().flatten().any(|x| x == v);
    has(&rule.api_groups, &c.group)
        && has(&rule.resources, &c.resource)
        && rule.verbs.contains(&c.verb)
        && match rule.resource_names.as_deref() {
            None | Some([]) => true,
            Some(names) => c.name.as_ref().is_some_and(|n| names.contains(n)),
        }
}

fn scope_allows(scope: &Scope, c: &Check) -> bool {
    match scope {
        Scope::Cluster => true,
        Scope::Namespace(ns) => c.namespace.as_deref() == Some(ns.as_str()),
    }
}

// ------------------------------------------------------------------ scenarios

/// Seeds a credentials Secret, a ClusterConnectorAuthProvider for the rotating provider and a
/// ConnectorAuth using it directly in the store, so that no request of the test is recorded.
fn seed(server: &FakeApiServer, ns: &str, base: &str, name: &str) {
    server
        .create_object(
            "connectorauth.dev",
            "clusterconnectorauthproviders",
            json!({
                "apiVersion": "connectorauth.dev/v1alpha1", "kind": "ClusterConnectorAuthProvider",
                "metadata": {"name": format!("{ns}-{name}-idp")},
                "spec": {"settings": {"oauth2": {"tokenUrl": format!("{base}/oauth/token"), "grantType": "refreshToken"}}},
            }),
        )
        .unwrap();
    server
        .create_object(
            "",
            "secrets",
            json!({
                "apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": format!("{name}-credentials"), "namespace": ns},
                "data": {"client_id": b64("rot-client"), "client_secret": b64("rot-secret"), "refresh_token": b64("rt-seed")},
            }),
        )
        .unwrap();
    server
        .create_object(
            "connectorauth.dev",
            "connectorauths",
            json!({
                "apiVersion": "connectorauth.dev/v1alpha1", "kind": "ConnectorAuth",
                "metadata": {"name": name, "namespace": ns},
                "spec": {
                    "credentialsRef": {"name": format!("{name}-credentials")},
                    "provider": format!("{ns}-{name}-idp"),
                    "oauth2": {},
                },
            }),
        )
        .unwrap();
}

/// The published access token, read directly from the store (not recorded).
async fn token(server: &FakeApiServer, ns: &str, name: &str) -> Option<String> {
    let s = server.object("", "secrets", Some(ns), &format!("{name}-token"))?;
    s["data"]["access_token"].as_str().map(String::from)
}

/// The operator's requests: all recorded ones but the test's own writes.
fn operator_requests(server: &FakeApiServer) -> Vec<Recorded> {
    server
        .requests()
        .into_iter()
        .filter(|r| r.field_manager.as_deref() != Some(TEST_MANAGER))
        .collect()
}

struct Scenario {
    name: &'static str,
    values: Values,
    requests: Vec<Recorded>,
}

/// All namespaces, no election, no consent: first issuance, a refresh, a deleted output Secret
/// (restored), a credentials change (re-authentication).
async fn lifecycle() -> Scenario {
    let ns = "team-a";
    let (base, book) = rotating(3).await;
    let server = api_server().await;
    seed(&server, ns, &base, "crm");
    let op = Operator::start(Source::Url(server.url()), "op-1", false);
    let first = eventually(20, "first issuance", || token(&server, ns, "crm")).await;
    eventually(20, "a refresh", || async {
        token(&server, ns, "crm").await.filter(|t| *t != first)
    })
    .await;

    server.delete_object("", "secrets", Some(ns), "crm-token").unwrap();
    eventually(20, "output restored", || token(&server, ns, "crm")).await;

    book.refresh.lock().unwrap().insert("rt-reonboarded".into(), (9, true));
    let patch = json!({"data": {"refresh_token": b64("rt-reonboarded")}});
    let params = PatchParams {
        field_manager: Some(TEST_MANAGER.into()),
        ..Default::default()
    };
    Api::<Secret>::namespaced(server.client(), ns)
        .patch("crm-credentials", &params, &Patch::Merge(&patch))
        .await
        .unwrap();
    eventually(20, "re-authenticated with the new credentials", || async {
        let used = book.refresh.lock().unwrap().get("rt-reonboarded") == Some(&(9, false));
        used.then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    op.stop().await;
    Scenario {
        name: "lifecycle",
        values: Values {
            watch_namespaces: vec![],
            leader_election: false,
            callback: false,
            rollout_restart: false,
            service_account_tokens: false,
        },
        requests: operator_requests(&server),
    }
}

/// A private HTTPS provider that requires a client certificate: the CA bundle is read from a
/// ConfigMap and the client certificate from a `kubernetes.io/tls` Secret (both `get`).
async fn tls() -> Scenario {
    let ns = "team-a";
    let pki = support::tls::pki();
    let hits = std::sync::Arc::new(support::tls::Hits::default());
    let provider = support::tls::serve_tls(
        support::tls::token_router(hits, None),
        &pki.server,
        Some(&pki.client_ca),
    )
    .await;
    let server = api_server().await;
    let put = |plural: &str, obj: serde_json::Value| server.create_object("", plural, obj).unwrap();
    put(
        "secrets",
        json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "creds", "namespace": ns},
            "data": {"client_id": b64(support::tls::CLIENT_ID), "client_secret": b64(support::tls::CLIENT_SECRET)},
        }),
    );
    put(
        "secrets",
        json!({
            "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
            "metadata": {"name": "client-tls", "namespace": ns},
            "data": {"tls.crt": b64(&pki.client.cert), "tls.key": b64(&pki.client.key)},
        }),
    );
    put(
        "configmaps",
        json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "corp-ca", "namespace": ns},
            "data": {"ca.crt": pki.ca},
        }),
    );
    server
        .create_object(
            "connectorauth.dev",
            "connectorauths",
            json!({
                "apiVersion": "connectorauth.dev/v1alpha1", "kind": "ConnectorAuth",
                "metadata": {"name": "private", "namespace": ns},
                "spec": {
                    "credentialsRef": {"name": "creds"},
                    "oauth2": {"tokenUrl": format!("{}/oauth/token", provider.url), "clientAuth": "client_secret_post"},
                    "tls": {
                        "caBundleRef": {"kind": "ConfigMap", "name": "corp-ca"},
                        "clientCertificateRef": {"name": "client-tls"},
                    },
                },
            }),
        )
        .unwrap();
    let op = Operator::start(Source::Url(server.url()), "op-1", false);
    eventually(20, "token from the private mTLS provider", || {
        token(&server, ns, "private")
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    op.stop().await;
    Scenario {
        name: "tls",
        values: Values {
            watch_namespaces: vec![],
            leader_election: false,
            callback: false,
            rollout_restart: false,
            service_account_tokens: false,
        },
        requests: operator_requests(&server),
    }
}

/// A provider outage: failed renewals publish Warning Events, the repeated one as a series
/// (an Event patch).
async fn outage() -> Scenario {
    let ns = "team-a";
    let (base, book) = rotating(3).await;
    let server = api_server().await;
    seed(&server, ns, &base, "crm");
    let op = Operator::start(Source::Url(server.url()), "op-1", false);
    eventually(20, "first issuance (outage)", || token(&server, ns, "crm")).await;
    book.down.store(true, Ordering::SeqCst);
    eventually(30, "a repeated Warning Event", || async {
        let warned = server
            .objects("events.k8s.io", "events")
            .iter()
            .any(|e| e["type"] == "Warning" && e["reason"] == "ProviderUnavailable" && e["series"].is_object());
        warned.then_some(())
    })
    .await;
    op.stop().await;
    Scenario {
        name: "outage",
        values: Values {
            watch_namespaces: vec![],
            leader_election: false,
            callback: false,
            rollout_restart: false,
            service_account_tokens: false,
        },
        requests: operator_requests(&server),
    }
}

/// Revocation on delete and rollout restarts (`rbac.rolloutRestart.enabled`): the finalizer is
/// added and removed (ConnectorAuth patch); new credentials restart workloads of every kind,
/// named (get) and selected (list), by a pod template patch.
async fn operations() -> Scenario {
    let ns = "team-a";
    let (base, book) = rotating(3600).await;
    let server = api_server().await;
    seed(&server, ns, &base, "crm");
    let targets: Vec<serde_json::Value> = [("Deployment", "api"), ("StatefulSet", "db"), ("DaemonSet", "agent")]
        .iter()
        .flat_map(|(kind, name)| {
            [
                json!({"kind": kind, "name": name}),
                json!({"kind": kind, "selector": {"matchLabels": {"app": "worker"}}}),
            ]
        })
        .collect();
    let patch = json!({"spec": {
        "oauth2": {"revocationUrl": format!("{base}/oauth/revoke")},
        "output": {"rolloutRestart": targets},
    }});
    let params = PatchParams {
        field_manager: Some(TEST_MANAGER.into()),
        ..Default::default()
    };
    Api::<connector_auth_operator::api::ConnectorAuth>::namespaced(server.client(), ns)
        .patch("crm", &params, &Patch::Merge(&patch))
        .await
        .unwrap();
    for (plural, kind, name) in [
        ("deployments", "Deployment", "api"),
        ("statefulsets", "StatefulSet", "db"),
        ("daemonsets", "DaemonSet", "agent"),
    ] {
        let template =
            json!({"metadata": {"labels": {"pod": name}}, "spec": {"containers": [{"name": "c", "image": "i"}]}});
        server
            .create_object(
                "apps",
                plural,
                json!({
                    "apiVersion": "apps/v1", "kind": kind,
                    "metadata": {"name": name, "namespace": ns, "labels": {"app": "worker"}},
                    "spec": {"selector": {"matchLabels": {"pod": name}}, "template": template},
                }),
            )
            .unwrap();
    }
    let op = Operator::start(Source::Url(server.url()), "op-1", false);
    eventually(20, "first issuance (operations)", || token(&server, ns, "crm")).await;
    book.refresh.lock().unwrap().insert("rt-reonboarded".into(), (9, true));
    let patch = json!({"data": {"refresh_token": b64("rt-reonboarded")}});
    Api::<Secret>::namespaced(server.client(), ns)
        .patch("crm-credentials", &params, &Patch::Merge(&patch))
        .await
        .unwrap();
    eventually(20, "every workload restarted", || async {
        let restarted = [("deployments", "api"), ("statefulsets", "db"), ("daemonsets", "agent")]
            .iter()
            .all(|(plural, name)| {
                server
                    .object("apps", plural, Some(ns), name)
                    .is_some_and(|w| w["spec"]["template"]["metadata"]["annotations"].is_object())
            });
        restarted.then_some(())
    })
    .await;
    server
        .delete_object("connectorauth.dev", "connectorauths", Some(ns), "crm")
        .unwrap();
    eventually(20, "deleted after revocation", || async {
        server
            .object("connectorauth.dev", "connectorauths", Some(ns), "crm")
            .is_none()
            .then_some(())
    })
    .await;
    op.stop().await;
    Scenario {
        name: "revocation and rollout restarts",
        values: Values {
            watch_namespaces: vec![],
            leader_election: false,
            callback: false,
            rollout_restart: true,
            service_account_tokens: false,
        },
        requests: operator_requests(&server),
    }
}

/// The workload's identity (`rbac.serviceAccountTokens.enabled`): the ServiceAccount is read
/// (did it opt in?) and a token of it requested for the exchange.
async fn workload_identity_scenario() -> Scenario {
    let ns = "team-a";
    let server = api_server().await;
    let (base, _book) = workload_identity(&server.issuer(), "system:serviceaccount:team-a:crm-sync").await;
    server
        .create_object(
            "",
            "serviceaccounts",
            json!({"apiVersion": "v1", "kind": "ServiceAccount",
                "metadata": {"name": "crm-sync", "namespace": ns, "annotations": {"connectorauth.dev/connectorauths": "crm"}}}),
        )
        .unwrap();
    server
        .create_object(
            "",
            "secrets",
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "crm-credentials", "namespace": ns},
                "data": {"client_id": b64("exchanger"), "client_secret": b64("exchanger-secret")}}),
        )
        .unwrap();
    server
        .create_object(
            "connectorauth.dev",
            "connectorauths",
            json!({"apiVersion": "connectorauth.dev/v1alpha1", "kind": "ConnectorAuth",
                "metadata": {"name": "crm", "namespace": ns},
                "spec": {"credentialsRef": {"name": "crm-credentials"}, "provider": "token-exchange",
                    "providerParams": {"token_url": format!("{base}/token"), "audience": "crm-api"}, "oauth2": {},
                    "serviceAccountToken": {"name": "crm-sync", "audience": "exchange.example.com"}}}),
        )
        .unwrap();
    let op = Operator::start(Source::Url(server.url()), "op-1", false);
    eventually(20, "first issuance (workload identity)", || token(&server, ns, "crm")).await;
    op.stop().await;
    Scenario {
        name: "workload identity",
        values: Values {
            watch_namespaces: vec![],
            leader_election: false,
            callback: false,
            rollout_restart: false,
            service_account_tokens: true,
        },
        // The token service reads the issuer's keys (public, as kube-apiserver serves them with
        // `system:service-account-issuer-discovery`); the operator does not.
        requests: operator_requests(&server)
            .into_iter()
            .filter(|r| {
                !matches!(
                    r.resource.as_str(),
                    "/.well-known/openid-configuration" | "/openid/v1/jwks"
                )
            })
            .collect(),
    }
}

/// Opens the consent callback like a browser coming back from a provider that refused
/// consent: a correctly signed `state` for the resource, and `error=access_denied`. The
/// callback looks the resource up (a ConnectorAuth `get`) and records a Warning Event.
async fn deny_consent(server: &FakeApiServer, settings_url: &str, ns: &str, name: &str) {
    let key = server
        .object("", "secrets", Some(RELEASE_NS), KEY_SECRET)
        .expect("consent key Secret");
    let key = base64::engine::general_purpose::STANDARD
        .decode(key["data"]["key"].as_str().unwrap())
        .unwrap();
    let ca = server
        .object("connectorauth.dev", "connectorauths", Some(ns), name)
        .unwrap();
    let state = consent::sign(
        &key,
        &ConsentState {
            namespace: ns.into(),
            name: name.into(),
            uid: ca["metadata"]["uid"].as_str().unwrap().into(),
            nonce: "rbac-test".into(),
            expires: now_secs() + 600,
        },
    );
    let resp = reqwest::Client::new()
        .get(format!("{settings_url}{CALLBACK_PATH}"))
        .query(&[("state", state.as_str()), ("error", "access_denied")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 403, "consent refused by the provider");
}

/// The chart's defaults plus the consent callback: two replicas elect a leader (Lease), the
/// first creates the consent key, the standby takes over when the leader stops.
async fn leader_election_and_consent(watch_namespaces: Vec<&'static str>) -> Scenario {
    let (base, _book) = rotating(3).await;
    let server = api_server().await;
    seed(&server, "team-a", &base, "crm");
    // Not watched when watch_namespaces is set. Its own provider: a rotating refresh token
    // must not be shared between two resources.
    let (other_base, _other_book) = rotating(3).await;
    seed(&server, "team-c", &other_base, "other");
    let settings = |identity: &str| {
        let s = Settings::new(identity)
            .election(LEASE_NAME, RELEASE_NS)
            .consent(RELEASE_NS);
        if watch_namespaces.is_empty() {
            s
        } else {
            s.namespaces(&watch_namespaces)
        }
    };
    let a_settings = settings("op-a");
    let callback_url = a_settings.config.consent.as_ref().unwrap().external_url.clone();
    let a = CustomOperator::start(&server.url(), a_settings);
    eventually(20, &format!("first issuance (election, {watch_namespaces:?})"), || {
        token(&server, "team-a", "crm")
    })
    .await;
    let b = CustomOperator::start(&server.url(), settings("op-b"));
    deny_consent(&server, &callback_url, "team-a", "crm").await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    a.stop().await;
    eventually(15, "the standby leads", || async {
        let lease = server.object("coordination.k8s.io", "leases", Some(RELEASE_NS), LEASE_NAME)?;
        (lease["spec"]["holderIdentity"] == "op-b").then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    b.stop().await;
    let namespaced = !watch_namespaces.is_empty();
    Scenario {
        name: if namespaced {
            "leader election + consent, watchNamespaces [team-a, team-b]"
        } else {
            "leader election + consent, all namespaces"
        },
        values: Values {
            watch_namespaces,
            leader_election: true,
            callback: true,
            rollout_restart: false,
            service_account_tokens: false,
        },
        requests: operator_requests(&server),
    }
}

// ------------------------------------------------------------------ the test

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chart_rbac_is_exactly_what_the_operator_uses() {
    let (lifecycle, outage, tls, operations, workload, cluster, namespaced) = tokio::join!(
        lifecycle(),
        outage(),
        tls(),
        operations(),
        workload_identity_scenario(),
        leader_election_and_consent(vec![]),
        leader_election_and_consent(vec!["team-a", "team-b"]),
    );

    // Namespaced mode stays in its namespaces: no cluster-wide request but for the cluster-scoped
    // provider entries, so a namespaced install needs no other ClusterRole.
    let reqs = &namespaced.requests;
    let outside: Vec<String> = reqs
        .iter()
        .flat_map(checks)
        .filter(|c| c.namespace.as_deref() == Some("team-c"))
        .map(|c| c.to_string())
        .collect();
    assert!(
        outside.is_empty(),
        "requests outside the watched namespaces: {outside:#?}"
    );
    // Only ClusterConnectorAuthProviders, which are cluster-scoped (a ClusterRole of their own).
    let cluster_wide: BTreeSet<String> = reqs
        .iter()
        .flat_map(checks)
        .filter(|c| c.namespace.is_none() && c.resource != "clusterconnectorauthproviders")
        .map(|c| c.to_string())
        .collect();
    assert!(
        cluster_wide.is_empty(),
        "cluster-wide requests with watchNamespaces: {cluster_wide:#?}"
    );

    let scenarios = [lifecycle, outage, tls, operations, workload, cluster, namespaced];
    let mut denied = BTreeSet::new();
    // (file, rule index) -> the checks it allowed
    let mut used: BTreeMap<(&str, usize), BTreeSet<Check>> = BTreeMap::new();
    let mut matrix: BTreeMap<String, BTreeSet<&str>> = BTreeMap::new();
    for s in &scenarios {
        assert!(!s.requests.is_empty(), "{}: no requests recorded", s.name);
        let grants = grants(&s.values);
        for c in s.requests.iter().flat_map(checks) {
            let mut allowed = false;
            for g in grants.iter().filter(|g| scope_allows(&g.scope, &c)) {
                for (i, rule) in g.rules.iter().enumerate() {
                    if rule_allows(rule, &c) {
                        allowed = true;
                        used.entry((g.file, i)).or_default().insert(c.clone());
                    }
                }
            }
            if !allowed {
                denied.insert(format!("{}: {c}", s.name));
            }
            let generic = Check {
                namespace: c.namespace.as_ref().map(|_| "<ns>".into()),
                name: None,
                ..c.clone()
            };
            matrix.entry(generic.to_string()).or_default().insert(s.name);
        }
    }
    println!("what the operator did (across scenarios):");
    for (c, names) in &matrix {
        println!("  {c:<60} {}", names.iter().copied().collect::<Vec<_>>().join("; "));
    }
    assert!(
        denied.is_empty(),
        "requests the chart's RBAC does not allow (a real API server answers 403):\n{}",
        denied.into_iter().collect::<Vec<_>>().join("\n")
    );

    // Every grant used: each (group, resource, verb, name) of each rule of each file.
    let mut unused = Vec::new();
    for file in [
        "controller",
        "leader-election",
        "consent-key",
        "providers",
        "rollout-restart",
        "service-account-tokens",
    ] {
        for (i, rule) in rules(file).iter().enumerate() {
            let seen = used.get(&(file, i)).cloned().unwrap_or_default();
            for group in rule.api_groups.iter().flatten() {
                for resource in rule.resources.iter().flatten() {
                    for verb in &rule.verbs {
                        let names: Vec<Option<&String>> = match rule.resource_names.as_deref() {
                            None | Some([]) => vec![None],
                            Some(names) => names.iter().map(Some).collect(),
                        };
                        for name in names {
                            let hit = seen.iter().any(|c| {
                                c.group == *group
                                    && c.resource == *resource
                                    && c.verb == *verb
                                    && name.is_none_or(|n| c.name.as_ref() == Some(n))
                            });
                            if !hit {
                                unused.push(format!(
                                    "files/rbac/{file}.yaml rule {i}: {verb} {group}/{resource}{}",
                                    name.map(|n| format!(" name={n}")).unwrap_or_default()
                                ));
                            }
                        }
                    }
                }
            }
        }
    }
    assert!(
        unused.is_empty(),
        "granted but never used by the operator (remove them, or add the scenario that needs them):\n{}",
        unused.join("\n")
    );
}
