//! Which resources the fake server serves, and how each one behaves.

use std::sync::Arc;

use serde_json::Value;

use crate::schema::CrdSchema;

/// Describes a resource type to serve, e.g. a CRD. See [`crate::FakeApiServer::register_resource`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResourceDef {
    /// API group, `""` for the core group.
    pub group: String,
    /// Served version, e.g. `v1`. Requests for other versions answer 404.
    pub version: String,
    /// Lower-case plural used in URLs, e.g. `connectorauths`.
    pub plural: String,
    /// Kind, e.g. `ConnectorAuth`; lists are `<Kind>List`.
    pub kind: String,
    /// Namespaced (`true`) or cluster-scoped (`false`).
    pub namespaced: bool,
    /// Whether the resource has a `/status` subresource. If so, writes to the main
    /// resource ignore `.status` and `/status` writes change only `.status`.
    pub status_subresource: bool,
}

impl ResourceDef {
    /// A resource definition; `status_subresource` defaults to `false`.
    pub fn new(group: &str, version: &str, plural: &str, kind: &str, namespaced: bool) -> Self {
        Self {
            group: group.to_string(),
            version: version.to_string(),
            plural: plural.to_string(),
            kind: kind.to_string(),
            namespaced,
            status_subresource: false,
        }
    }

    /// Enables or disables the `/status` subresource.
    pub fn with_status(mut self, status_subresource: bool) -> Self {
        self.status_subresource = status_subresource;
        self
    }
}

/// A registered resource plus the per-type behaviours that differ between real
/// resources (they come from each type's registry strategy in kube-apiserver).
#[derive(Clone, Debug)]
pub(crate) struct ResourceInfo {
    pub group: String,
    pub version: String,
    pub plural: String,
    pub kind: String,
    pub namespaced: bool,
    pub status_subresource: bool,
    /// `PUT` of a missing object creates it (true for Leases and Events).
    pub allow_create_on_update: bool,
    /// An immediate delete answers with the deleted object (custom resources)
    /// instead of a `Status` with `status: Success` (built-in types).
    pub return_deleted_object: bool,
    /// The CRD's schema, for custom resources registered from their CRD.
    pub schema: Option<Arc<CrdSchema>>,
}

impl ResourceInfo {
    pub(crate) fn custom(def: ResourceDef) -> Self {
        Self {
            group: def.group,
            version: def.version,
            plural: def.plural,
            kind: def.kind,
            namespaced: def.namespaced,
            status_subresource: def.status_subresource,
            allow_create_on_update: false,
            return_deleted_object: true,
            schema: None,
        }
    }

    /// A custom resource from its `CustomResourceDefinition` (`apiextensions.k8s.io/v1`): the
    /// storage version (else the first served one), its scope, `/status` subresource and schema.
    pub(crate) fn from_crd(crd: &Value) -> Result<Self, String> {
        let text = |v: &Value, pointer: &str| {
            v.pointer(pointer)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(String::from)
                .ok_or_else(|| format!("the CRD has no {pointer}"))
        };
        let versions = crd
            .pointer("/spec/versions")
            .and_then(Value::as_array)
            .ok_or("the CRD has no /spec/versions")?;
        let version = versions
            .iter()
            .find(|v| v.get("storage").and_then(Value::as_bool) == Some(true))
            .or_else(|| {
                versions
                    .iter()
                    .find(|v| v.get("served").and_then(Value::as_bool) != Some(false))
            })
            .ok_or("the CRD serves no version")?;
        let schema = match version.pointer("/schema/openAPIV3Schema") {
            Some(s) => Some(Arc::new(CrdSchema::parse(s)?)),
            None => None,
        };
        let def = ResourceDef::new(
            &text(crd, "/spec/group")?,
            &text(version, "/name")?,
            &text(crd, "/spec/names/plural")?,
            &text(crd, "/spec/names/kind")?,
            text(crd, "/spec/scope")? == "Namespaced",
        )
        .with_status(version.pointer("/subresources/status").is_some());
        Ok(Self {
            schema,
            ..Self::custom(def)
        })
    }

    fn builtin(group: &str, plural: &str, kind: &str, namespaced: bool) -> Self {
        Self {
            allow_create_on_update: false,
            return_deleted_object: false,
            ..Self::custom(ResourceDef::new(group, "v1", plural, kind, namespaced))
        }
    }

    /// The resources every fake server starts with.
    pub(crate) fn builtins() -> Vec<Self> {
        vec![
            Self::builtin("", "secrets", "Secret", true),
            Self::builtin("", "configmaps", "ConfigMap", true),
            Self::builtin("", "serviceaccounts", "ServiceAccount", true),
            Self {
                allow_create_on_update: true,
                ..Self::builtin("", "events", "Event", true)
            },
            Self {
                status_subresource: true,
                ..Self::builtin("", "namespaces", "Namespace", false)
            },
            Self {
                allow_create_on_update: true,
                ..Self::builtin("events.k8s.io", "events", "Event", true)
            },
            Self {
                allow_create_on_update: true,
                ..Self::builtin("coordination.k8s.io", "leases", "Lease", true)
            },
            // Workloads, for clients that restart them (a pod template annotation): stored as
            // given, with their `/status` subresource.
            Self {
                status_subresource: true,
                ..Self::builtin("apps", "deployments", "Deployment", true)
            },
            Self {
                status_subresource: true,
                ..Self::builtin("apps", "statefulsets", "StatefulSet", true)
            },
            Self {
                status_subresource: true,
                ..Self::builtin("apps", "daemonsets", "DaemonSet", true)
            },
        ]
    }

    /// `apiVersion` of stored objects: `v1` or `group/version`.
    pub(crate) fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `plural` or `plural.group`, as used in real error messages.
    pub(crate) fn qualified_name(&self) -> String {
        if self.group.is_empty() {
            self.plural.clone()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    pub(crate) fn is_namespaces(&self) -> bool {
        self.group.is_empty() && self.plural == "namespaces"
    }

    /// Core and `events.k8s.io` Events, which expire after the event TTL.
    pub(crate) fn is_events(&self) -> bool {
        self.plural == "events" && (self.group.is_empty() || self.group == "events.k8s.io")
    }
}
