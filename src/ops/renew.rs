//! `renew`: asks the operator to renew now, as cert-manager's `cmctl renew` does, by setting the
//! `connectorauth.dev/renew` annotation to a new value. The leader acts upon each value once
//! (see `reconcile::decide::renew_request`) and records it in `status.lastRenewRequest`.

use std::time::Duration;

use jiff::Timestamp;
use kube::ResourceExt;
use kube::api::{Api, ListParams, Patch, PatchParams};
use serde_json::json;

use super::Target;
use crate::api::{ConnectorAuth, RENEW_ANNOTATION};

/// Which resources to renew.
#[derive(Debug, Clone)]
pub enum Selection {
    /// These, by name.
    Named(Vec<Target>),
    /// Every one in the namespace, optionally with these labels (`-l`).
    All {
        namespace: String,
        selector: Option<String>,
    },
}

/// The resources a selection names, checking that the named ones exist.
pub async fn targets(client: &kube::Client, selection: &Selection) -> anyhow::Result<Vec<Target>> {
    match selection {
        Selection::Named(targets) => {
            for t in targets {
                let api: Api<ConnectorAuth> = Api::namespaced(client.clone(), &t.namespace);
                if api.get_metadata_opt(&t.name).await?.is_none() {
                    anyhow::bail!("ConnectorAuth {t} not found");
                }
            }
            Ok(targets.clone())
        }
        Selection::All { namespace, selector } => {
            let api: Api<ConnectorAuth> = Api::namespaced(client.clone(), namespace);
            let mut lp = ListParams::default();
            if let Some(s) = selector {
                lp = lp.labels(s);
            }
            let found: Vec<Target> = api
                .list_metadata(&lp)
                .await?
                .items
                .iter()
                .map(|m| Target {
                    namespace: namespace.clone(),
                    name: m.name_any(),
                })
                .collect();
            if found.is_empty() {
                anyhow::bail!("no ConnectorAuth in namespace {namespace} matches");
            }
            Ok(found)
        }
    }
}

/// A new request value: the time, to the nanosecond, so each `renew` is a new request.
pub fn request_value(now: Timestamp) -> String {
    now.to_string()
}

/// Sets the annotation on one resource.
pub async fn request(client: &kube::Client, target: &Target, value: &str) -> anyhow::Result<()> {
    let api: Api<ConnectorAuth> = Api::namespaced(client.clone(), &target.namespace);
    let patch = json!({ "metadata": { "annotations": { RENEW_ANNOTATION: value } } });
    api.patch(&target.name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(|e| anyhow::anyhow!("cannot annotate ConnectorAuth {target}: {e}"))?;
    Ok(())
}

/// Waits until the operator has acted upon `value` for `target`; returns whether the resource
/// is Ready then, or `None` on timeout.
pub async fn wait(
    client: &kube::Client,
    target: &Target,
    value: &str,
    timeout: Duration,
) -> anyhow::Result<Option<bool>> {
    let api: Api<ConnectorAuth> = Api::namespaced(client.clone(), &target.namespace);
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let ca = api.get(&target.name).await?;
        let status = ca.status.unwrap_or_default();
        if status.last_renew_request.as_deref() == Some(value) {
            let ready = status
                .conditions
                .iter()
                .any(|c| c.type_ == crate::controller::status::READY && c.status == "True");
            return Ok(Some(ready));
        }
        if tokio::time::Instant::now() >= deadline {
            return Ok(None);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
