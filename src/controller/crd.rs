//! Whether the ConnectorAuth CRD is installed and readable, checked before anything starts.

use kube::Client;
use kube::api::{Api, ListParams};

use crate::api::ConnectorAuth;

/// Checks that the CRD is installed, with an actionable message if not. Lists (limit 1) where
/// the operator watches: cluster-wide, or in the first watched namespace, so a namespaced
/// install needs no cluster-wide permission.
pub async fn check_crd(client: &Client, namespaces: &[String]) -> anyhow::Result<()> {
    let api: Api<ConnectorAuth> = match namespaces.first() {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    match api.list(&ListParams::default().limit(1)).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => anyhow::bail!(
            "the ConnectorAuth CRD (connectorauths.connectorauth.dev) is not installed in this cluster; \
             install the Helm chart or run `connector-auth-operator crd | kubectl apply -f -`"
        ),
        Err(kube::Error::Api(s)) if s.code == 403 => anyhow::bail!(
            "not allowed to list ConnectorAuths ({}); check the operator's RBAC (the Helm chart's ClusterRole, \
             or its Roles in the watched namespaces)",
            s.message
        ),
        Err(e) => Err(anyhow::anyhow!("cannot reach the Kubernetes API: {e}")),
    }
}
