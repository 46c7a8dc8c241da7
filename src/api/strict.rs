//! Unknown fields, found the way `kubectl apply` finds them (strict field validation, the
//! default since Kubernetes 1.27): a field that the object's schema does not describe refuses
//! the whole object. Local mode runs this over its manifests, so a misspelt field fails there
//! as it would in a cluster instead of being silently ignored.
//!
//! The walk mirrors the API server: ConnectorAuths against the CRD's OpenAPI schema (pruning
//! rules: `properties`, `additionalProperties` maps, `x-kubernetes-preserve-unknown-fields`),
//! `metadata` against `ObjectMeta`, Secrets and ConfigMaps against their built-in types. Other
//! kinds are not checked.

use std::sync::LazyLock;

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::Value;

/// A field that the schema does not describe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownField {
    /// Full path, as the API server prints it: `spec.refreshableToken.authorization.methd`,
    /// `metadata.ownerReferences[0].kinf`.
    pub path: String,
    /// The known field at the same place with the closest spelling, if one is close.
    pub suggestion: Option<String>,
}

impl std::fmt::Display for UnknownField {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "unknown field \"{}\"", self.path)?;
        if let Some(s) = &self.suggestion {
            write!(f, " (did you mean \"{s}\"?)")?;
        }
        Ok(())
    }
}

/// The unknown fields of a manifest (a whole document: apiVersion, kind, metadata, …), sorted
/// by path. Empty for kinds this module has no schema for.
pub fn unknown_fields(doc: &Value) -> Vec<UnknownField> {
    let schema = match (
        doc.get("apiVersion").and_then(Value::as_str),
        doc.get("kind").and_then(Value::as_str),
    ) {
        (Some(v), Some("ConnectorAuth")) if v == format!("{}/{}", super::GROUP, super::VERSION) => &*CONNECTOR_AUTH,
        (Some("v1"), Some("Secret")) => &*SECRET,
        (Some("v1"), Some("ConfigMap")) => &*CONFIG_MAP,
        _ => return Vec::new(),
    };
    let mut found = Vec::new();
    walk("", doc, schema, &mut found);
    found.sort_by(|a, b| a.path.cmp(&b.path));
    found
}

/// `Err` with every unknown field of `doc`, one message.
pub fn check(doc: &Value) -> Result<(), String> {
    let unknown = unknown_fields(doc);
    if unknown.is_empty() {
        return Ok(());
    }
    let list: Vec<String> = unknown.iter().map(ToString::to_string).collect();
    let them = if list.len() == 1 { "it" } else { "them" };
    Err(format!("{}; kubectl apply would refuse {them} too", list.join("; ")))
}

/// Built-in types' schemas, all subschemas inlined (the walk follows no `$ref`).
fn schema_of<T: schemars::JsonSchema>() -> Value {
    let generator = schemars::generate::SchemaSettings::openapi3()
        .with(|s| {
            s.inline_subschemas = true;
            s.meta_schema = None;
        })
        .into_generator();
    generator.into_root_schema_for::<T>().to_value()
}

/// The CRD's schema covers spec and status; apiVersion, kind and metadata are the API server's.
static CONNECTOR_AUTH: LazyLock<Value> = LazyLock::new(|| {
    let mut schema = super::schema().clone();
    let props = schema["properties"]
        .as_object_mut()
        .expect("the CRD schema has properties");
    props.insert("apiVersion".into(), serde_json::json!({"type": "string"}));
    props.insert("kind".into(), serde_json::json!({"type": "string"}));
    props.insert("metadata".into(), schema_of::<ObjectMeta>());
    schema
});
static SECRET: LazyLock<Value> = LazyLock::new(schema_of::<Secret>);
static CONFIG_MAP: LazyLock<Value> = LazyLock::new(schema_of::<ConfigMap>);

fn walk(path: &str, value: &Value, schema: &Value, found: &mut Vec<UnknownField>) {
    let at = |key: &str| {
        if path.is_empty() {
            key.to_string()
        } else {
            format!("{path}.{key}")
        }
    };
    match value {
        Value::Object(fields) => {
            let properties = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties").filter(|a| a.is_object());
            let preserve = schema.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true));
            // A bare `type: object` is free-form in the built-in types (FieldsV1, RawExtension).
            if properties.is_none() && additional.is_none() {
                return;
            }
            for (key, child) in fields {
                match (properties.and_then(|p| p.get(key)), additional) {
                    (Some(s), _) | (None, Some(s)) => walk(&at(key), child, s, found),
                    (None, None) if preserve => {}
                    (None, None) => found.push(UnknownField {
                        path: at(key),
                        suggestion: closest(key, properties.into_iter().flat_map(|p| p.keys())),
                    }),
                }
            }
        }
        Value::Array(items) => {
            if let Some(s) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    walk(&format!("{path}[{i}]"), item, s, found);
                }
            }
        }
        _ => {}
    }
}

/// The known name closest to `unknown`, ignoring case, `_` and `-` (`token_url` is `tokenUrl`),
/// within an edit distance of about one in four letters.
fn closest<'a>(unknown: &str, known: impl Iterator<Item = &'a String>) -> Option<String> {
    let norm = |s: &str| -> String {
        s.chars()
            .filter(|c| !matches!(c, '_' | '-'))
            .flat_map(char::to_lowercase)
            .collect()
    };
    let u = norm(unknown);
    known
        .map(|k| (strsim::damerau_levenshtein(&u, &norm(k)), k))
        .filter(|(d, k)| *d <= (k.chars().count() / 4).max(1))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn connector_auth(spec: Value, metadata: Value) -> Value {
        json!({"apiVersion": "connectorauth.dev/v1alpha1", "kind": "ConnectorAuth", "metadata": metadata, "spec": spec})
    }

    fn paths(doc: &Value) -> Vec<(String, Option<String>)> {
        unknown_fields(doc)
            .into_iter()
            .map(|u| (u.path, u.suggestion))
            .collect()
    }

    #[test]
    fn a_misspelt_nested_field_is_named_by_its_full_path_with_the_closest_known_field() {
        let doc = connector_auth(
            json!({"credentialsRef": {"name": "c"},
                   "refreshableToken": {"authorization": {"url": "https://x", "methd": "GET"}}}),
            json!({"name": "a"}),
        );
        assert_eq!(
            paths(&doc),
            [(
                "spec.refreshableToken.authorization.methd".to_string(),
                Some("method".to_string())
            )]
        );
        assert_eq!(
            check(&doc).unwrap_err(),
            "unknown field \"spec.refreshableToken.authorization.methd\" (did you mean \"method\"?); \
             kubectl apply would refuse it too"
        );
    }

    #[test]
    fn a_valid_manifest_with_maps_lists_and_flattened_fields_has_no_unknown_fields() {
        let doc = connector_auth(
            json!({"credentialsRef": {"name": "c"},
                   "oauth2": {"tokenUrl": "https://x", "scopes": ["a", "b"],
                              "headers": {"Any-Header": "v"}, "extraParams": {"resource": "r"},
                              "accessToken": {"jsonPath": "$.t"},
                              "extras": {"instance_url": {"jsonPath": "$.i"}},
                              "tokenRequest": {"url": "https://y", "form": {"anything": "x"}}},
                   "output": {"template": {"any.key": "{{ access_token }}"},
                              "header": {"extra": {"X-Any": "y"}}},
                   "renewal": {"renewBefore": "5m"},
                   "tls": {"caBundleRef": {"kind": "ConfigMap", "name": "ca"}}}),
            json!({"name": "a", "namespace": "n", "labels": {"x": "y"}, "annotations": {"a": "b"},
                   "ownerReferences": [{"apiVersion": "v1", "kind": "Pod", "name": "p", "uid": "u"}]}),
        );
        assert_eq!(paths(&doc), []);
    }

    #[test]
    fn every_unknown_field_is_reported_at_every_level() {
        let mut doc = connector_auth(
            json!({"credentialsRef": {"name": "c", "namespce": "n"},
                   "apiKey": {},
                   "renewl": {"renewBefore": "5m"},
                   "output": {"header": {"nmae": "X"}}}),
            json!({"name": "a", "labelz": {"x": "y"},
                   "ownerReferences": [{"apiVersion": "v1", "kind": "Pod", "name": "p", "uid": "u", "kinf": "x"}]}),
        );
        doc["specc"] = json!({});
        doc["status"] = json!({"conditions": [{"type": "Ready", "status": "True", "reasn": "x"}]});
        assert_eq!(
            paths(&doc),
            [
                ("metadata.labelz", Some("labels")),
                ("metadata.ownerReferences[0].kinf", Some("kind")),
                ("spec.credentialsRef.namespce", Some("namespace")),
                ("spec.output.header.nmae", Some("name")),
                ("spec.renewl", Some("renewal")),
                ("specc", Some("spec")),
                ("status.conditions[0].reasn", Some("reason")),
            ]
            .map(|(p, s)| (p.to_string(), s.map(str::to_string)))
        );
    }

    #[test]
    fn snake_case_and_wrong_case_suggest_the_camel_case_field_and_far_names_suggest_nothing() {
        let doc = connector_auth(
            json!({"credentialsRef": {"name": "c"},
                   "oauth2": {"token_url": "https://x", "GrantType": "password", "colour": "blue"}}),
            json!({"name": "a"}),
        );
        assert_eq!(
            paths(&doc),
            [
                ("spec.oauth2.GrantType", Some("grantType")),
                ("spec.oauth2.colour", None),
                ("spec.oauth2.token_url", Some("tokenUrl")),
            ]
            .map(|(p, s)| (p.to_string(), s.map(str::to_string)))
        );
    }

    #[test]
    fn secrets_and_config_maps_are_checked_against_their_built_in_types() {
        let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "c"},
                            "type": "Opaque", "data": {"a": "eA=="}, "stringdata": {"b": "y"}});
        assert_eq!(
            paths(&secret),
            [("stringdata".to_string(), Some("stringData".to_string()))]
        );
        let config_map = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"},
                                "data": {"ca.crt": "x"}, "binaryData": {"b": "eA=="}});
        assert_eq!(paths(&config_map), []);
        let other = json!({"apiVersion": "apps/v1", "kind": "Deployment", "anything": 1});
        assert_eq!(paths(&other), []);
    }
}
