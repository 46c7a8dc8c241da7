//! The key that signs consent `state`, kept in an operator-owned Secret that the first leader
//! creates.

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, PostParams};

use super::store::MANAGED_BY;

pub const KEY_SECRET: &str = "connector-auth-operator-consent-key";

/// Reads the signing key, creating it on first use.
pub async fn ensure(client: &kube::Client, namespace: &str) -> anyhow::Result<Vec<u8>> {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let read = |s: &Secret| {
        s.data
            .as_ref()
            .and_then(|d| d.get("key"))
            .map(|k| k.0.clone())
            .filter(|k| k.len() >= 32)
    };
    if let Some(key) = api.get_opt(KEY_SECRET).await?.as_ref().and_then(read) {
        return Ok(key);
    }
    let key: Vec<u8> = (0..32).map(|_| rand::random::<u8>()).collect();
    let secret: Secret = serde_json::from_value(serde_json::json!({
        "metadata": {"name": KEY_SECRET, "labels": {MANAGED_BY.0: MANAGED_BY.1}},
        "type": "Opaque",
        "data": {"key": k8s_openapi::ByteString(key.clone())},
    }))?;
    match api.create(&PostParams::default(), &secret).await {
        Ok(_) => Ok(key),
        // Created meanwhile (by an earlier leader): use that one.
        Err(kube::Error::Api(s)) if s.code == 409 => api
            .get(KEY_SECRET)
            .await?
            .data
            .and_then(|d| d.get("key").map(|k| k.0.clone()))
            .ok_or_else(|| anyhow::anyhow!("Secret {namespace}/{KEY_SECRET} has no `key`")),
        Err(e) => Err(e.into()),
    }
}
