//! What the controller caches of each ConnectorAuth. The cache holds every resource, so its
//! size per resource is most of the operator's memory: a decoded ConnectorAuth with its status
//! takes ~2.8 KB in the cache (heaptrack: ~1 KB inline, the rest its strings, maps and the
//! map entry), the same object as JSON about a third of that. So the cache keeps each object encoded, decoded once
//! per pass, with what the Secret and ConfigMap mappers compare on every event extracted once.

use std::borrow::Cow;

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

/// A cached ConnectorAuth: its identity, what the mappers compare, and the object itself,
/// encoded. Lists and watches deserialize straight into it.
#[derive(Clone, Debug, Deserialize)]
#[serde(from = "ConnectorAuth")]
pub struct Cached {
    /// Name, namespace, uid, resource version and generation only (what the reflector, the
    /// scheduler and object references need); the rest is in `encoded`.
    metadata: ObjectMeta,
    reads: Reads,
    /// The ConnectorAuth as JSON, less field ownership and kubectl's copy of the last applied
    /// spec (never read, and most of an object's size on a real API server), compressed.
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
        // The identity lives in `metadata`, and is not encoded twice.
        let m = &mut ca.metadata;
        let metadata = ObjectMeta {
            name: m.name.take(),
            namespace: m.namespace.take(),
            uid: m.uid.take(),
            resource_version: m.resource_version.take(),
            generation: m.generation.take(),
            deletion_timestamp: m.deletion_timestamp.take(),
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

impl Cached {
    /// The ConnectorAuth, as the API server sent it (less what [`From`] strips).
    pub fn decode(&self) -> Result<ConnectorAuth, serde_json::Error> {
        let json = OBJECTS
            .decompress(&self.encoded)
            .map_err(|e| <serde_json::Error as serde::de::Error>::custom(format!("cached object: {e}")))?;
        let mut ca: ConnectorAuth = serde_json::from_slice(&json)?;
        let (m, id) = (&mut ca.metadata, &self.metadata);
        m.name = id.name.clone();
        m.namespace = id.namespace.clone();
        m.uid = id.uid.clone();
        m.resource_version = id.resource_version.clone();
        m.generation = id.generation;
        m.deletion_timestamp = id.deletion_timestamp.clone();
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
    fn a_cached_resource_decodes_to_the_object_less_field_ownership_and_the_last_applied_copy() {
        let cached: Cached = serde_json::from_value(object()).unwrap();
        let decoded = cached.decode().unwrap();
        let mut expected: ConnectorAuth = serde_json::from_value(object()).unwrap();
        expected.managed_fields_mut().clear();
        expected.annotations_mut().remove(LAST_APPLIED);
        assert_eq!(
            serde_json::to_value(&decoded).unwrap(),
            serde_json::to_value(&expected).unwrap()
        );
        assert_eq!(decoded.annotations()["note"], "kept");
        assert!(decoded.status.is_some(), "status is kept");
    }

    #[test]
    fn a_cached_resource_knows_its_identity_and_what_it_reads() {
        let cached: Cached = serde_json::from_value(object()).unwrap();
        assert_eq!(cached.name_any(), "crm");
        assert_eq!(cached.namespace().as_deref(), Some("team-a"));
        assert_eq!(cached.uid().as_deref(), Some("u-1"));
        assert_eq!(cached.meta().generation, Some(2));
        assert_eq!(
            kube::runtime::reflector::ObjectRef::from_obj(&cached),
            kube::runtime::reflector::ObjectRef::<Cached>::new("crm").within("team-a")
        );
        let reads = cached.reads();
        assert_eq!(reads.credentials, "crm-credentials");
        assert_eq!(reads.output.as_deref(), Some("crm-out"));
        assert!(reads.tls_object(Kind::ConfigMap, "ca"));
        assert!(reads.tls_object(Kind::Secret, "cert"));
        assert!(!reads.tls_object(Kind::Secret, "ca"), "a ConfigMap is not a Secret");
        assert_eq!(Cached::kind(&()), "ConnectorAuth");
        assert_eq!(Cached::plural(&()), "connectorauths");
    }
}
