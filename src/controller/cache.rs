//! What the controller caches of each ConnectorAuth. The cache holds every resource, so its
//! size per resource is most of the operator's memory: a decoded ConnectorAuth with its status
//! takes ~2.8 KB (heaptrack: ~1 KB inline, the rest its strings and maps), the same object as
//! JSON about a third of that, and an `ObjectMeta` alone several hundred bytes before its
//! strings. So the cache keeps each object as an [`Entry`]: its `namespace/name`, what the
//! Secret and ConfigMap mappers compare on every event (extracted once), and the object
//! encoded, decoded once per pass.

use std::borrow::Cow;
use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::{Resource, ResourceExt};
use serde::Deserialize;

use super::compact::Compactor;
use crate::api::ConnectorAuth;
use crate::engine::tls::{self, Kind, ObjectKey};

/// The cached objects' compression: keys and values common in ConnectorAuths, then the first
/// one this process caches (see [`Compactor`]).
static OBJECTS: Compactor = Compactor::new(concat!(
    r#"{"apiVersion":"connectorauth.dev/v1alpha1","kind":"ConnectorAuth","metadata":{"creationTimestamp":"","#,
    r#""labels":{"app.kubernetes.io/name":"","app.kubernetes.io/part-of":""},"annotations":{},"finalizers":["connectorauth.dev/revoke"]},"#,
    r#""spec":{"credentialsRef":{"name":"-credentials"},"provider":"","providerParams":{},"#,
    r#""oauth2":{"grantType":"clientCredentials","tokenUrl":"https://","authorizationUrl":"https://","clientAuth":"basic","scopes":[],"#,
    r#""refreshTokenKey":"refresh_token","revocationUrl":"","extraParams":{}},"#,
    r#""refreshableToken":{"authorization":{"method":"POST","url":"https://","headers":{"Content-Type":"application/json"},"body":""},"#,
    r#""refresh":{},"extract":{"accessToken":{"jsonPath":"access_token"},"expiresIn":{"jsonPath":"expires_in"}}},"#,
    r#""apiKey":{"header":"Authorization","format":"Bearer {{ access_token }}"},"#,
    r#""output":{"secretName":"-token","template":{},"extras":{},"keepPrevious":true,"rolloutRestart":{}},"#,
    r#""renewBeforePercentage":33,"verify":{"url":"https://","method":"GET"}},"#,
    r#""status":{"conditions":[{"type":"Ready","status":"True","reason":"TokenValid","message":"token valid until ","#,
    r#""lastTransitionTime":"","observedGeneration":1},{"type":"Verified","status":"True","reason":"Verified"}],"#,
    r#""scheme":"oauth2/clientCredentials","provider":"built-in/","expiresAt":"","lastRefreshTime":"","#,
    r#""nextRefreshTime":"","secretName":"-token","observedGeneration":1}}"#,
));

const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// A resource's `namespace/name`, shared by the cache, the index and the work queue (neither
/// part may contain a `/`).
pub type Key = Arc<str>;

/// A ConnectorAuth as a list or watch decodes it: already reduced to what the cache keeps,
/// plus the identity the watcher needs. Lists and watches deserialize straight into it.
#[derive(Clone, Debug, Deserialize)]
#[serde(from = "ConnectorAuth")]
pub struct Cached {
    /// Name, namespace and resource version only (what the watcher and the shard filter
    /// read); the rest is in `encoded`.
    metadata: ObjectMeta,
    reads: Reads,
    encoded: Box<[u8]>,
}

/// A cached ConnectorAuth: its `namespace/name`, what the mappers compare, and the object
/// itself, encoded.
#[derive(Debug)]
pub struct Entry {
    key: Key,
    reads: Reads,
    /// The ConnectorAuth as JSON, less its name and namespace (they are in `key`), field
    /// ownership and kubectl's copy of the last applied spec (never read, and most of an
    /// object's size on a real API server), compressed.
    encoded: Box<[u8]>,
}

/// The names a resource reads or writes in its namespace, for the watch mappers.
#[derive(Clone, Debug, PartialEq)]
pub struct Reads {
    pub credentials: String,
    /// `spec.output.secretName`, when set (the default is `<name>-token`).
    pub output: Option<String>,
    /// The Secrets and ConfigMaps of `spec.tls`.
    pub tls: Box<[ObjectKey]>,
    /// `spec.provider`: a ClusterConnectorAuthProvider of this name concerns it.
    pub provider: Option<String>,
}

impl Reads {
    pub fn tls_object(&self, kind: Kind, name: &str) -> bool {
        self.tls.iter().any(|o| o.kind == kind && o.name == name)
    }
}

impl From<ConnectorAuth> for Cached {
    fn from(mut ca: ConnectorAuth) -> Self {
        ca.managed_fields_mut().clear();
        if let Some(a) = ca.meta_mut().annotations.as_mut() {
            a.remove(LAST_APPLIED);
        }
        let reads = Reads {
            credentials: ca.spec.credentials_ref.name.clone(),
            output: ca.spec.output.secret_name.clone(),
            tls: tls::references(&ca.spec).into(),
            provider: ca.spec.provider.clone(),
        };
        // The name and namespace become the entry's key, and are not encoded twice.
        let m = &mut ca.metadata;
        let metadata = ObjectMeta {
            name: m.name.take(),
            namespace: m.namespace.take(),
            resource_version: m.resource_version.clone(),
            ..ObjectMeta::default()
        };
        // Serializing a value that was just deserialized cannot fail.
        let encoded = OBJECTS.compress(&serde_json::to_vec(&ca).expect("a ConnectorAuth encodes"));
        Cached {
            metadata,
            reads,
            encoded,
        }
    }
}

impl From<Cached> for Entry {
    fn from(c: Cached) -> Self {
        Entry {
            key: key(c.metadata.namespace.as_deref(), c.metadata.name.as_deref()).into(),
            reads: c.reads,
            encoded: c.encoded,
        }
    }
}

/// The key of `namespace/name`.
pub fn key(namespace: Option<&str>, name: Option<&str>) -> String {
    format!("{}/{}", namespace.unwrap_or_default(), name.unwrap_or_default())
}

impl Entry {
    pub fn key(&self) -> &Key {
        &self.key
    }

    pub fn namespace(&self) -> &str {
        self.key.split_once('/').map_or("", |(ns, _)| ns)
    }

    pub fn name(&self) -> &str {
        self.key.split_once('/').map_or(&self.key, |(_, name)| name)
    }

    /// The ConnectorAuth, as the API server sent it (less what [`Cached`] strips).
    pub fn decode(&self) -> Result<ConnectorAuth, serde_json::Error> {
        let json = OBJECTS
            .decompress(&self.encoded)
            .map_err(|e| <serde_json::Error as serde::de::Error>::custom(format!("cached object: {e}")))?;
        let mut ca: ConnectorAuth = serde_json::from_slice(&json)?;
        ca.metadata.name = Some(self.name().to_owned());
        ca.metadata.namespace = Some(self.namespace().to_owned());
        Ok(ca)
    }

    pub fn reads(&self) -> &Reads {
        &self.reads
    }
}

impl Resource for Cached {
    type DynamicType = ();
    type Scope = <ConnectorAuth as Resource>::Scope;

    fn kind(dt: &()) -> Cow<'_, str> {
        ConnectorAuth::kind(dt)
    }

    fn group(dt: &()) -> Cow<'_, str> {
        ConnectorAuth::group(dt)
    }

    fn version(dt: &()) -> Cow<'_, str> {
        ConnectorAuth::version(dt)
    }

    fn plural(dt: &()) -> Cow<'_, str> {
        ConnectorAuth::plural(dt)
    }

    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object() -> serde_json::Value {
        json!({
            "apiVersion": "connectorauth.dev/v1alpha1", "kind": "ConnectorAuth",
            "metadata": {
                "name": "crm", "namespace": "team-a", "uid": "u-1", "resourceVersion": "7", "generation": 2,
                "deletionTimestamp": "2026-01-01T00:00:00Z", "creationTimestamp": "2025-12-01T00:00:00Z",
                "labels": {"team": "a"},
                "annotations": {"note": "kept", LAST_APPLIED: "{\"a huge\": \"copy\"}"},
                "managedFields": [{"manager": "kubectl", "operation": "Apply"}],
            },
            "spec": {
                "credentialsRef": {"name": "crm-credentials"},
                "oauth2": {"tokenUrl": "https://idp.example/token", "grantType": "clientCredentials"},
                "output": {"secretName": "crm-out"},
                "tls": {"caBundleRef": {"kind": "ConfigMap", "name": "ca"}, "clientCertificateRef": {"name": "cert"}},
            },
            "status": {"conditions": [{"type": "Ready", "status": "True", "reason": "TokenValid", "message": "ok",
                                       "lastTransitionTime": "2026-01-01T00:00:00Z"}]},
        })
    }

    #[test]
    fn an_entry_decodes_to_the_object_less_field_ownership_and_the_last_applied_copy() {
        let cached: Cached = serde_json::from_value(object()).unwrap();
        let decoded = Entry::from(cached).decode().unwrap();
        let mut expected: ConnectorAuth = serde_json::from_value(object()).unwrap();
        expected.managed_fields_mut().clear();
        expected.annotations_mut().remove(LAST_APPLIED);
        assert_eq!(
            serde_json::to_value(&decoded).unwrap(),
            serde_json::to_value(&expected).unwrap()
        );
        assert_eq!(decoded.annotations()["note"], "kept");
        assert_eq!(decoded.uid().as_deref(), Some("u-1"));
        assert_eq!(decoded.meta().generation, Some(2));
        assert!(decoded.meta().deletion_timestamp.is_some());
        assert!(decoded.status.is_some(), "status is kept");
    }

    #[test]
    fn a_cached_resource_knows_its_identity_and_what_it_reads() {
        let cached: Cached = serde_json::from_value(object()).unwrap();
        assert_eq!(cached.name_any(), "crm");
        assert_eq!(cached.namespace().as_deref(), Some("team-a"));
        assert_eq!(
            cached.resource_version().as_deref(),
            Some("7"),
            "the watcher resumes from it"
        );
        assert_eq!(Cached::kind(&()), "ConnectorAuth");
        assert_eq!(Cached::plural(&()), "connectorauths");

        let entry = Entry::from(cached);
        assert_eq!(entry.key().as_ref(), "team-a/crm");
        assert_eq!((entry.namespace(), entry.name()), ("team-a", "crm"));
        let reads = entry.reads();
        assert_eq!(reads.credentials, "crm-credentials");
        assert_eq!(reads.output.as_deref(), Some("crm-out"));
        assert!(reads.tls_object(Kind::ConfigMap, "ca"));
        assert!(reads.tls_object(Kind::Secret, "cert"));
        assert!(!reads.tls_object(Kind::Secret, "ca"), "a ConfigMap is not a Secret");
    }
}
