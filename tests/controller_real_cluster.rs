//! The controller against a real cluster from `KUBECONFIG` (kind, k3d, minikube…). Ignored by
//! default; run with:
//!
//! ```sh
//! KUBECONFIG=~/.kube/config cargo test --test controller_real_cluster -- --ignored --test-threads=1
//! ```
//!
//! The operator runs in the test process (so the loopback token provider is reachable); it
//! installs the CRD, works in a fresh namespace and deletes that namespace afterwards.

mod support;

use std::time::Duration;

use connector_auth_operator::api::ConnectorAuth;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::{CustomResourceExt, ResourceExt};
use serde_json::json;
use support::operator::{Operator, Source};
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a cluster from KUBECONFIG"]
async fn real_cluster_issues_refreshes_restores_and_stays_quiet_on_restart() {
    let client = kube::Client::try_default().await.expect("KUBECONFIG");
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.patch(
        "connectorauths.connectorauth.dev",
        &PatchParams::apply("connector-auth-operator-tests").force(),
        &Patch::Apply(ConnectorAuth::crd()),
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;

    let ns = format!("cao-test-{:06x}", rand::random::<u32>() & 0xffffff);
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": ns}})).unwrap(),
        )
        .await
        .unwrap();

    // The API server refuses a spec with two schemes at apply time (CEL + oneOf).
    let cas: Api<ConnectorAuth> = Api::namespaced(client.clone(), &ns);
    let two = json!({"apiVersion": "connectorauth.dev/v1alpha1", "kind": "ConnectorAuth", "metadata": {"name": "two"},
        "spec": {"credentialsRef": {"name": "x"}, "apiKey": {}, "tripletex": {}}});
    let err = cas
        .patch("two", &PatchParams::apply("tests"), &Patch::Apply(&two))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("exactly one scheme"), "{err}");

    let (base, book) = rotating(6).await;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    secrets
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "crm-credentials"},
                "stringData": {"client_id": "rot-client", "client_secret": "rot-secret", "refresh_token": "rt-seed"}}))
            .unwrap(),
        )
        .await
        .unwrap();
    let ca = json!({"apiVersion": "connectorauth.dev/v1alpha1", "kind": "ConnectorAuth", "metadata": {"name": "crm"},
        "spec": {"credentialsRef": {"name": "crm-credentials"}, "oauth2": {"tokenUrl": format!("{base}/oauth/token"), "grantType": "refreshToken"}}});
    cas.patch("crm", &PatchParams::apply("tests"), &Patch::Apply(&ca))
        .await
        .unwrap();

    let op = Operator::start_in(Source::Kubeconfig, "real-1", false, vec![ns.clone()]);
    let out = eventually(30, "output Secret", || async {
        secrets.get_opt("crm-token").await.ok().flatten()
    })
    .await;
    let headers = String::from_utf8(out.data.as_ref().unwrap()["headers.json"].0.clone()).unwrap();
    let map = std::collections::BTreeMap::from([("headers.json".to_string(), headers)]);
    assert_eq!(call_api(&format!("{base}/api/me"), &map).await, 200);

    // Refreshed before expiry (6 s tokens renew at ~4 s).
    let before = book.requests();
    eventually(20, "refresh", || async { (book.requests() > before).then_some(()) }).await;

    // Deleted output restored.
    secrets.delete("crm-token", &DeleteParams::default()).await.unwrap();
    eventually(20, "restored", || async {
        secrets.get_opt("crm-token").await.ok().flatten()
    })
    .await;
    op.stop().await;
    assert!(!book.family_revoked());

    // Restart with valid tokens: nothing is written (resourceVersions unchanged), no token call.
    // A second resource with hour-long tokens makes this independent of timing.
    let (quiet_base, quiet_book) = rotating(3600).await;
    secrets
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "quiet-credentials"},
                "stringData": {"client_id": "rot-client", "client_secret": "rot-secret", "refresh_token": "rt-seed"}}))
            .unwrap(),
        )
        .await
        .unwrap();
    let quiet = json!({"apiVersion": "connectorauth.dev/v1alpha1", "kind": "ConnectorAuth", "metadata": {"name": "quiet"},
        "spec": {"credentialsRef": {"name": "quiet-credentials"}, "oauth2": {"tokenUrl": format!("{quiet_base}/oauth/token"), "grantType": "refreshToken"}}});
    cas.patch("quiet", &PatchParams::apply("tests"), &Patch::Apply(&quiet))
        .await
        .unwrap();
    let op = Operator::start_in(Source::Kubeconfig, "real-2", false, vec![ns.clone()]);
    eventually(30, "quiet issued", || async {
        secrets.get_opt("quiet-token").await.ok().flatten()
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    op.stop().await;
    let rv = |s: Option<Secret>| s.map(|s| s.resource_version().unwrap_or_default());
    let out_rv = rv(secrets.get_opt("quiet-token").await.unwrap());
    let state_rv = rv(secrets.get_opt("quiet-connectorauth-state").await.unwrap());
    let ca_rv = cas.get("quiet").await.unwrap().resource_version();
    let op = Operator::start_in(Source::Kubeconfig, "real-3", false, vec![ns.clone()]);
    tokio::time::sleep(Duration::from_secs(3)).await;
    op.stop().await;
    assert_eq!(quiet_book.requests(), 1, "no token call on restart");
    assert_eq!(rv(secrets.get_opt("quiet-token").await.unwrap()), out_rv);
    assert_eq!(
        rv(secrets.get_opt("quiet-connectorauth-state").await.unwrap()),
        state_rv
    );
    assert_eq!(cas.get("quiet").await.unwrap().resource_version(), ca_rv);

    namespaces.delete(&ns, &DeleteParams::default()).await.unwrap();
}
