//! The chart's alerting rules (`charts/…/files/monitoring/alerts.yaml`, unit-tested with
//! promtool in CI) rest on series the operator really exposes: a failing, a consent-pending, a
//! healthy and an unverified resource (`spec.verify` refused), scraped from a running
//! operator's /metrics, give exactly the metric names and labels the promtool tests feed the
//! rules.

mod support;

use std::collections::{BTreeMap, BTreeSet};

use kube::api::{Api, PostParams};
use serde_json::json;
use support::operator::{Operator, Source};
use support::*;

const MONITORING: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/charts/connector-auth-operator/files/monitoring"
);

/// `name{a="x",b="y"} value` lines of a scrape, as (name, labels).
fn series(scrape: &str) -> Vec<(String, BTreeMap<String, String>)> {
    scrape
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (name, rest) = l.split_once('{')?;
            let (labels, _) = rest.split_once('}')?;
            let labels = labels
                .split(',')
                .filter_map(|kv| {
                    let (k, v) = kv.split_once('=')?;
                    Some((k.to_string(), v.trim_matches('"').to_string()))
                })
                .collect();
            Some((name.to_string(), labels))
        })
        .collect()
}

/// The operator's /metrics; empty while it is still starting.
async fn scrape(op: &Operator) -> String {
    match reqwest::get(format!("http://{}/metrics", op.metrics)).await {
        Ok(r) => r.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

#[tokio::test]
async fn the_alerts_rest_on_series_the_operator_exposes() {
    let (base, _book) = rotating(3600).await;
    let faulty = faulty().await;
    let server = api_server().await;
    let client = server.client();
    let secret: k8s_openapi::api::core::v1::Secret = serde_json::from_value(json!({
        "metadata": {"name": "creds"},
        "stringData": {"client_id": "rot-client", "client_secret": "rot-secret", "username": "rot-user", "password": "rot-pass"},
    }))
    .unwrap();
    let secrets: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(client.clone(), "ns");
    secrets.create(&PostParams::default(), &secret).await.unwrap();
    let cas: Api<connector_auth_operator::api::ConnectorAuth> = Api::namespaced(client.clone(), "ns");
    for (name, spec) in [
        (
            "good",
            json!({"credentialsRef": {"name": "creds"}, "oauth2": {"tokenUrl": format!("{base}/oauth/token"), "grantType": "password"}}),
        ),
        ("bad", json!({"credentialsRef": {"name": "not-yet"}, "apiKey": {}})),
        (
            "unverified",
            json!({"credentialsRef": {"name": "creds"}, "oauth2": {"tokenUrl": format!("{base}/oauth/token"), "grantType": "password"}, "verify": {"url": format!("{faulty}/unauthorized")}}),
        ),
        (
            "google",
            json!({"credentialsRef": {"name": "creds"}, "oauth2": {"tokenUrl": format!("{base}/oauth/token"), "grantType": "authorizationCode", "authorizationUrl": format!("{base}/authorize?redirect_uri={{{{ redirect_url }}}}")}}),
        ),
    ] {
        let ca = serde_json::from_value(json!({"apiVersion": "connectorauth.dev/v1alpha1", "kind": "ConnectorAuth", "metadata": {"name": name}, "spec": spec})).unwrap();
        cas.create(&PostParams::default(), &ca).await.unwrap();
    }
    let op = Operator::start(Source::Url(server.url()), "op", false);
    let labelled = |name: &str, pairs: &[(&str, &str)]| {
        let want: BTreeMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        (name.to_string(), want)
    };
    let exposed = eventually(10, "all four resources reported", || async {
        let s = series(&scrape(&op).await);
        let all = [
            labelled(
                "connectorauth_refresh_failing",
                &[("namespace", "ns"), ("name", "bad"), ("reason", "CredentialsNotFound")],
            ),
            labelled(
                "connectorauth_consent_required",
                &[("namespace", "ns"), ("name", "google")],
            ),
            labelled(
                "connectorauth_token_expiry_timestamp_seconds",
                &[("namespace", "ns"), ("name", "good")],
            ),
            labelled(
                "connectorauth_verification_failing",
                &[
                    ("namespace", "ns"),
                    ("name", "unverified"),
                    ("reason", "VerificationRejected"),
                ],
            ),
        ];
        all.iter().all(|a| s.contains(a)).then_some(s)
    })
    .await;
    let failing: Vec<_> = exposed
        .iter()
        .filter(|(n, _)| n == "connectorauth_refresh_failing")
        .collect();
    assert_eq!(failing.len(), 1, "only the failing resource has a series: {failing:?}");
    assert!(
        !exposed
            .iter()
            .any(|(n, l)| n == "connectorauth_consent_required" && l["name"] != "google"),
        "{exposed:?}"
    );
    assert!(
        !exposed
            .iter()
            .any(|(n, l)| n == "connectorauth_verification_failing" && l["name"] != "unverified"),
        "only the unverified resource has a series: {exposed:?}"
    );

    // Every series the promtool tests feed the rules has a name and labels the operator uses
    // (Prometheus adds `instance` and may rename `namespace`/`name` to `exported_*`).
    let tests: serde_json::Value =
        serde_saphyr::from_str(&std::fs::read_to_string(format!("{MONITORING}/alerts.test.yaml")).unwrap()).unwrap();
    let real: BTreeMap<&str, BTreeSet<&str>> = exposed.iter().fold(BTreeMap::new(), |mut m, (n, l)| {
        m.entry(n.as_str()).or_default().extend(l.keys().map(String::as_str));
        m
    });
    let mut checked = 0;
    for input in tests["tests"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|t| t["input_series"].as_array().unwrap())
    {
        let (name, labels) = series(input["series"].as_str().unwrap()).pop().unwrap();
        let keys: BTreeSet<String> = labels
            .keys()
            .filter(|k| *k != "instance")
            .map(|k| k.trim_start_matches("exported_").to_string())
            .collect();
        let have = real
            .get(name.as_str())
            .unwrap_or_else(|| panic!("{name} is not exposed by the operator"));
        assert_eq!(keys, have.iter().map(|k| k.to_string()).collect(), "labels of {name}");
        checked += 1;
    }
    assert!(checked >= 6);
    let rules = std::fs::read_to_string(format!("{MONITORING}/alerts.yaml")).unwrap();
    for metric in [
        "connectorauth_refresh_failing",
        "connectorauth_consent_required",
        "connectorauth_token_expiry_timestamp_seconds",
        "connectorauth_verification_failing",
    ] {
        assert!(rules.contains(metric), "{metric}");
    }

    // Fixed: the failing series goes away.
    let fixed: k8s_openapi::api::core::v1::Secret =
        serde_json::from_value(json!({"metadata": {"name": "not-yet"}, "stringData": {"api_key": "k"}})).unwrap();
    secrets.create(&PostParams::default(), &fixed).await.unwrap();
    eventually(10, "the failing series is gone", || async {
        (!scrape(&op).await.contains("connectorauth_refresh_failing{")).then_some(())
    })
    .await;
    op.stop().await;
}
