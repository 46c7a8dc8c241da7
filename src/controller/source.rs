//! The controller's side of the shared pass: reads through the Kubernetes API ([`Source`],
//! also for the CLI's `check`), and where a pass keeps state and output ([`Adapter`]: Secrets).

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::Api;
use kube::{Client, ResourceExt};

use super::context::Context;
use super::store::KubeStore;
use crate::api::ConnectorAuth;
use crate::api::provider::{ClusterConnectorAuthProvider, ClusterConnectorAuthProviderSpec};
use crate::reconcile::{Adapter, Data, Source, StoreError};

/// A Secret's values by key: `data`, overlaid by `stringData` (set by clients that have not
/// been through the API server's conversion, e.g. in tests).
pub(crate) fn secret_bytes(s: Secret) -> Data {
    let mut out: Data = s.data.unwrap_or_default().into_iter().map(|(k, v)| (k, v.0)).collect();
    for (k, v) in s.string_data.unwrap_or_default() {
        out.insert(k, v.into_bytes());
    }
    out
}

impl Source for Context {
    async fn secret(&self, namespace: &str, name: &str) -> Result<Option<Data>, StoreError> {
        ApiSource(self.client.clone()).secret(namespace, name).await
    }

    async fn config_map(&self, namespace: &str, name: &str) -> Result<Option<Data>, StoreError> {
        ApiSource(self.client.clone()).config_map(namespace, name).await
    }

    async fn provider(&self, name: &str) -> Result<Option<ClusterConnectorAuthProviderSpec>, StoreError> {
        ApiSource(self.client.clone()).provider(name).await
    }
}

/// Reads through the Kubernetes API: the controller's reads, and the CLI's (`check`).
pub struct ApiSource(pub Client);

impl Source for ApiSource {
    async fn secret(&self, namespace: &str, name: &str) -> Result<Option<Data>, StoreError> {
        Api::<Secret>::namespaced(self.0.clone(), namespace)
            .get_opt(name)
            .await
            .map(|s| s.map(secret_bytes))
            .map_err(|e| StoreError::new(format!("reading Secret {namespace}/{name}"), e))
    }

    async fn config_map(&self, namespace: &str, name: &str) -> Result<Option<Data>, StoreError> {
        let cm = Api::<ConfigMap>::namespaced(self.0.clone(), namespace)
            .get_opt(name)
            .await
            .map_err(|e| StoreError::new(format!("reading ConfigMap {namespace}/{name}"), e))?;
        Ok(cm.map(|c| {
            let mut data: Data = c
                .binary_data
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, v.0))
                .collect();
            for (k, v) in c.data.unwrap_or_default() {
                data.insert(k, v.into_bytes());
            }
            data
        }))
    }

    async fn provider(&self, name: &str) -> Result<Option<ClusterConnectorAuthProviderSpec>, StoreError> {
        // Not found, also when the CRD is not installed: the built-in entry (if any) applies.
        Api::<ClusterConnectorAuthProvider>::all(self.0.clone())
            .get_opt(name)
            .await
            .map(|p| p.map(|p| p.spec))
            .map_err(|e| StoreError::new(format!("reading ClusterConnectorAuthProvider {name}"), e))
    }
}

impl Adapter for Context {
    type Store = KubeStore;

    fn store(&self, ca: &ConnectorAuth, secret_name: &str) -> Option<KubeStore> {
        let secrets = Api::namespaced(self.client.clone(), &ca.namespace()?);
        KubeStore::new(secrets, ca, secret_name, self.memory.clone(), self.metrics.clone())
    }

    fn verified_generation(&self, ca: &ConnectorAuth) -> Option<i64> {
        super::status::verified_generation(self.previous_status(ca).as_ref())
    }
}
