//! The controller's side of the shared pass: reads through the Kubernetes API ([`Source`],
//! also for the CLI's `check`), and where a pass keeps state and output ([`Adapter`]: Secrets).

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{ConfigMap, Secret, ServiceAccount};
use kube::api::Api;
use kube::{Client, ResourceExt};

use super::context::Context;
use super::store::KubeStore;
use crate::api::ConnectorAuth;
use crate::api::ServiceAccountTokenSource;
use crate::api::provider::{ClusterConnectorAuthProvider, ClusterConnectorAuthProviderSpec};
use crate::engine::{EngineError, SecretString, ServiceAccountTokens};
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

    async fn service_account_allows(&self, namespace: &str, name: &str, ca: &str) -> Result<Option<bool>, StoreError> {
        ApiSource(self.client.clone())
            .service_account_allows(namespace, name, ca)
            .await
    }

    fn service_account_tokens(&self, namespace: &str, source: &ServiceAccountTokenSource) -> ServiceAccountTokens {
        ApiSource(self.client.clone()).service_account_tokens(namespace, source)
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

    async fn service_account_allows(&self, namespace: &str, name: &str, ca: &str) -> Result<Option<bool>, StoreError> {
        let sa = Api::<ServiceAccount>::namespaced(self.0.clone(), namespace)
            .get_opt(name)
            .await
            .map_err(|e| StoreError::new(format!("reading ServiceAccount {namespace}/{name}"), e))?;
        Ok(sa.map(|sa| {
            crate::api::service_account_allows(
                sa.annotations()
                    .get(crate::api::SERVICE_ACCOUNT_OPT_IN)
                    .map(String::as_str),
                ca,
            )
        }))
    }

    /// A TokenRequest (`serviceaccounts/token` create) for each token: bound to the audience,
    /// as short-lived as the spec says, and kept by no one but the request that uses it.
    fn service_account_tokens(&self, namespace: &str, source: &ServiceAccountTokenSource) -> ServiceAccountTokens {
        let api = Api::<ServiceAccount>::namespaced(self.0.clone(), namespace);
        let (name, audience) = (source.name.clone(), source.audience.clone());
        let seconds = source.expiration_seconds.unwrap_or(600);
        let namespace = namespace.to_string();
        ServiceAccountTokens(std::sync::Arc::new(move || {
            let (api, name, audience, namespace) = (api.clone(), name.clone(), audience.clone(), namespace.clone());
            Box::pin(async move {
                let request = TokenRequest {
                    spec: Some(TokenRequestSpec {
                        audiences: Some(vec![audience]),
                        expiration_seconds: Some(seconds),
                        ..TokenRequestSpec::default()
                    }),
                    ..TokenRequest::default()
                };
                let answer = api
                    .create_token_request(&name, &Default::default(), &request)
                    .await
                    .map_err(|e| EngineError::MissingReference {
                        field: "spec.serviceAccountToken".into(),
                        reason: format!("a token of ServiceAccount {namespace}/{name} was not issued: {e}"),
                    })?;
                answer
                    .status
                    .and_then(|s| s.token)
                    .filter(|t| !t.is_empty())
                    .map(SecretString::new)
                    .ok_or_else(|| EngineError::MissingReference {
                        field: "spec.serviceAccountToken".into(),
                        reason: format!(
                            "the TokenRequest of ServiceAccount {namespace}/{name} came back without a token"
                        ),
                    })
            })
        }))
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
