//! Helpers for reading and writing `metadata` of objects stored as `serde_json::Value`.

use rand::Rng;
use serde::Serialize;
use serde_json::{Map, Value};

/// Metadata fields owned by the server: clients cannot change them with writes.
const SYSTEM_FIELDS: [&str; 7] = [
    "uid",
    "creationTimestamp",
    "resourceVersion",
    "generation",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "selfLink",
];

/// `metadata`, created as an empty map when missing (or not a map).
pub(crate) fn meta_mut(obj: &mut Value) -> &mut Map<String, Value> {
    let root = obj.as_object_mut().expect("objects are JSON maps");
    let meta = root.entry("metadata").or_insert_with(|| Value::Object(Map::new()));
    if !meta.is_object() {
        *meta = Value::Object(Map::new());
    }
    meta.as_object_mut().expect("just made a map")
}

/// A string field of `metadata`; `None` when missing, not a string, or empty.
pub(crate) fn meta_str<'a>(obj: &'a Value, field: &str) -> Option<&'a str> {
    obj.get("metadata")?.get(field)?.as_str().filter(|s| !s.is_empty())
}

pub(crate) fn name(obj: &Value) -> Option<&str> {
    meta_str(obj, "name")
}

pub(crate) fn uid(obj: &Value) -> Option<&str> {
    meta_str(obj, "uid")
}

pub(crate) fn resource_version(obj: &Value) -> Option<&str> {
    meta_str(obj, "resourceVersion")
}

pub(crate) fn is_deleting(obj: &Value) -> bool {
    meta_str(obj, "deletionTimestamp").is_some()
}

pub(crate) fn finalizers(obj: &Value) -> Vec<&str> {
    obj.pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .map(|f| f.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// UIDs listed in `metadata.ownerReferences`.
pub(crate) fn owner_uids(obj: &Value) -> Vec<&str> {
    obj.pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .map(|refs| {
            refs.iter()
                .filter_map(|r| r.get("uid").and_then(Value::as_str))
                .collect()
        })
        .unwrap_or_default()
}

/// Copies the server-owned metadata fields from `old` to `new` (removing them from
/// `new` where `old` has none), so client writes cannot change them.
pub(crate) fn restore_system_fields(new: &mut Value, old: &Value) {
    let old_meta = old.get("metadata").and_then(Value::as_object);
    let meta = meta_mut(new);
    for field in SYSTEM_FIELDS {
        match old_meta.and_then(|m| m.get(field)) {
            Some(v) => {
                meta.insert(field.to_string(), v.clone());
            }
            None => {
                meta.remove(field);
            }
        }
    }
    // Field ownership is tracked on the side (see `apply`), not in managedFields.
    meta.remove("managedFields");
}

/// Removes the server-owned metadata fields (used on create).
pub(crate) fn clear_system_fields(obj: &mut Value) {
    let meta = meta_mut(obj);
    for field in SYSTEM_FIELDS {
        meta.remove(field);
    }
    meta.remove("managedFields");
}

/// Whether anything outside `metadata` (and `status` when `ignore_status`) differs,
/// i.e. whether `metadata.generation` must be bumped.
pub(crate) fn spec_changed(old: &Value, new: &Value, ignore_status: bool) -> bool {
    let (Some(old), Some(new)) = (old.as_object(), new.as_object()) else {
        return old != new;
    };
    let counts = |k: &str| k != "metadata" && !(ignore_status && k == "status");
    old.iter()
        .filter(|(k, _)| counts(k))
        .any(|(k, v)| new.get(k) != Some(v))
        || new.keys().filter(|k| counts(k)).any(|k| !old.contains_key(k))
}

/// Current time as RFC 3339 with second precision, the format of `metav1.Time`.
pub(crate) fn now_rfc3339() -> String {
    jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// A random RFC 4122 version-4 UUID, the format real servers use for `metadata.uid`.
pub(crate) fn new_uid() -> String {
    let mut b: [u8; 16] = rand::rng().random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// `generateName` plus five random characters from the alphabet real servers use.
pub(crate) fn generate_name(prefix: &str) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut rng = rand::rng();
    let suffix: String = (0..5)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect();
    format!("{prefix}{suffix}")
}

/// The `PartialObjectMetadata` view of an object, answered to metadata-only requests.
#[derive(Serialize)]
pub(crate) struct PartialMeta<'a> {
    #[serde(rename = "apiVersion")]
    api_version: &'static str,
    kind: &'static str,
    metadata: &'a Value,
}

/// Serializes either a whole object or only its metadata, without cloning it.
#[derive(Serialize)]
#[serde(untagged)]
pub(crate) enum ObjectView<'a> {
    Full(&'a Value),
    Metadata(PartialMeta<'a>),
}

pub(crate) const META_API_VERSION: &str = "meta.k8s.io/v1";

impl<'a> ObjectView<'a> {
    pub(crate) fn new(obj: &'a Value, metadata_only: bool) -> Self {
        if metadata_only {
            static EMPTY: Value = Value::Null;
            ObjectView::Metadata(PartialMeta {
                api_version: META_API_VERSION,
                kind: "PartialObjectMetadata",
                metadata: obj.get("metadata").unwrap_or(&EMPTY),
            })
        } else {
            ObjectView::Full(obj)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn uid_is_v4_uuid() {
        let uid = new_uid();
        assert_eq!(uid.len(), 36);
        assert_eq!(&uid[14..15], "4");
        assert_ne!(uid, new_uid());
    }

    #[test]
    fn spec_changed_ignores_metadata_and_optionally_status() {
        let a = json!({ "metadata": { "labels": { "a": "1" } }, "spec": { "x": 1 }, "status": { "s": 1 } });
        let mut b = a.clone();
        b["metadata"]["labels"]["a"] = json!("2");
        assert!(!spec_changed(&a, &b, true));
        b["status"]["s"] = json!(2);
        assert!(!spec_changed(&a, &b, true));
        assert!(spec_changed(&a, &b, false));
        b["spec"]["y"] = json!(true);
        assert!(spec_changed(&a, &b, true));
    }
}
