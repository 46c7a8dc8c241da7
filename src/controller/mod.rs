//! The Kubernetes adapter around the shared pass ([`crate::reconcile`]): it reads through the
//! API, keeps state and output in Secrets, watches what concerns a ConnectorAuth, and reports
//! passes as status, Events and metrics. [`leader`] says who writes and when.

mod cache;
mod compact;
mod config;
mod consent_host;
pub mod consent_key;
pub mod context;
pub mod decide;
mod error;
pub mod events;
mod index;
pub mod leader;
pub mod metrics;
mod pass;
mod queue;
mod report;
pub mod revocation;
pub mod rollout;
mod runner;
pub mod server;
pub mod status;
pub mod store;
mod watches;

use kube::Client;
use kube::api::{Api, ListParams};

use crate::api::ConnectorAuth;
pub use config::{Config, ConsentConfig, LeaderElection};
pub use context::Context;
pub use error::Error;
pub use leader::run;

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
