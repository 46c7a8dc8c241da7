//! An approximation of server-side apply (SSA) field ownership.
//!
//! Real servers track ownership per field in `metadata.managedFields`. Here each
//! apply manager's last applied configuration is remembered instead, and a manager
//! is considered to own a field while the live value still equals what it applied
//! (a different write to that field takes ownership away, as in real SSA).
//!
//! That is enough for the behaviours controllers rely on:
//! * fields a manager applied before but no longer applies are removed, unless
//!   another apply manager also applies them, or someone else changed them since;
//! * a non-forced apply that changes a field owned by someone else is a conflict
//!   (kube-lease-manager's mutual exclusion relies on this);
//! * lists are atomic (replaced whole), except `metadata.ownerReferences`, which is merged by
//!   `uid` as real SSA merges it (`listType=map`): while being merged it is held as a map keyed
//!   by `uid` (see [`key_lists`]), so ownership works per reference as for any map.

use serde_json::{Map, Value};

/// Lists server-side apply merges by key: (pointer to the map holding the list, list field, key).
const KEYED_LISTS: [(&str, &str, &str); 1] = [("/metadata", "ownerReferences", "uid")];

/// Turns the keyed lists of an object into maps from key to item.
pub(crate) fn key_lists(obj: &mut Value) {
    for (parent, field, key) in KEYED_LISTS {
        if let Some(Value::Object(holder)) = obj.pointer_mut(parent)
            && let Some(Value::Array(items)) = holder.get(field)
        {
            let keyed: Map<String, Value> = items.iter().map(|item| (item_key(item, key), item.clone())).collect();
            holder.insert(field.to_string(), Value::Object(keyed));
        }
    }
}

fn item_key(item: &Value, key: &str) -> String {
    item.get(key).and_then(Value::as_str).unwrap_or_default().to_string()
}

/// Turns keyed maps back into lists: items of the live object keep their place, new ones follow
/// in the order they were applied (as structured-merge-diff orders them).
pub(crate) fn unkey_lists(obj: &mut Value, live: &Value, applied: &Value) {
    for (parent, field, key) in KEYED_LISTS {
        let Some(Value::Object(holder)) = obj.pointer_mut(parent) else {
            continue;
        };
        let Some(Value::Object(mut keyed)) = holder.remove(field) else {
            continue;
        };
        let order = |v: &Value| -> Vec<String> {
            v.pointer(&format!("{parent}/{field}"))
                .and_then(Value::as_array)
                .map(|items| items.iter().map(|i| item_key(i, key)).collect())
                .unwrap_or_default()
        };
        let mut items = Vec::new();
        for k in order(live).into_iter().chain(order(applied)) {
            if let Some(item) = keyed.remove(&k) {
                items.push(item);
            }
        }
        items.extend(keyed.into_iter().map(|(_, item)| item));
        if !items.is_empty() {
            holder.insert(field.to_string(), Value::Array(items));
        }
    }
}

/// Another manager's view of the object: its name and last applied configuration.
pub(crate) type Other<'a> = (&'a str, &'a Value);

/// Reduces an applied object to the fields the manager actually manages: drops
/// `apiVersion`/`kind`, identity and server-owned metadata.
pub(crate) fn managed_config(mut applied: Value) -> Value {
    if let Some(root) = applied.as_object_mut() {
        root.remove("apiVersion");
        root.remove("kind");
        if let Some(Value::Object(meta)) = root.get_mut("metadata") {
            for field in [
                "name",
                "namespace",
                "uid",
                "resourceVersion",
                "generation",
                "creationTimestamp",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "managedFields",
                "selfLink",
            ] {
                meta.remove(field);
            }
            if meta.is_empty() {
                root.remove("metadata");
            }
        }
    }
    applied
}

/// Finds fields the applied configuration would change although another manager
/// owns them. Returns `(field path, owning manager)` pairs.
///
/// `updater` names whoever last wrote the object without apply; it is blamed for
/// fields no apply manager owns.
pub(crate) fn conflicts(
    live: &Value,
    applied: &Value,
    last: Option<&Value>,
    others: &[Other<'_>],
    updater: &str,
) -> Vec<(String, String)> {
    let mut out = Vec::new();
    walk_conflicts(live, applied, last, others, updater, &mut String::new(), &mut out);
    out
}

fn walk_conflicts(
    live: &Value,
    applied: &Value,
    last: Option<&Value>,
    others: &[Other<'_>],
    updater: &str,
    path: &mut String,
    out: &mut Vec<(String, String)>,
) {
    if let (Value::Object(live_map), Value::Object(applied_map)) = (live, applied) {
        for (key, applied_value) in applied_map {
            // Fields nobody has set cannot conflict.
            let Some(live_value) = live_map.get(key) else { continue };
            let len = path.len();
            path.push('.');
            path.push_str(key);
            let sub_others: Vec<Other<'_>> = others
                .iter()
                .filter_map(|(name, cfg)| cfg.get(key).map(|v| (*name, v)))
                .collect();
            walk_conflicts(
                live_value,
                applied_value,
                last.and_then(|l| l.get(key)),
                &sub_others,
                updater,
                path,
                out,
            );
            path.truncate(len);
        }
        return;
    }
    // A leaf (scalar or atomic list): only a change of value can conflict.
    if live == applied {
        return;
    }
    let owners: Vec<&str> = others
        .iter()
        .filter(|(_, v)| *v == live)
        .map(|(name, _)| *name)
        .collect();
    if !owners.is_empty() {
        out.extend(owners.into_iter().map(|o| (path.clone(), o.to_string())));
    } else if last != Some(live) {
        out.push((path.clone(), updater.to_string()));
    }
}

/// Removes from `live` the fields the manager applied last time (`last`) but not
/// now (`applied`), as long as it still owns them: the live value equals what it
/// applied and no other apply manager applies the field.
pub(crate) fn prune(live: &mut Value, last: &Value, applied: &Value, others: &[Other<'_>]) {
    if let (Value::Object(live), Value::Object(last)) = (live, last) {
        prune_map(live, last, applied.as_object(), others);
    }
}

fn prune_map(
    live: &mut Map<String, Value>,
    last: &Map<String, Value>,
    applied: Option<&Map<String, Value>>,
    others: &[Other<'_>],
) {
    for (key, last_value) in last {
        let applied_value = applied.and_then(|a| a.get(key));
        let sub_others: Vec<Other<'_>> = others
            .iter()
            .filter_map(|(name, cfg)| cfg.get(key).map(|v| (*name, v)))
            .collect();
        match (last_value, applied_value) {
            (Value::Object(last_map), Some(Value::Object(applied_map))) => {
                if let Some(Value::Object(live_map)) = live.get_mut(key) {
                    prune_map(live_map, last_map, Some(applied_map), &sub_others);
                }
            }
            (Value::Object(last_map), None) => {
                if let Some(Value::Object(live_map)) = live.get_mut(key) {
                    prune_map(live_map, last_map, None, &sub_others);
                    if live_map.is_empty() && sub_others.is_empty() {
                        live.remove(key);
                    }
                }
            }
            // Still applied: the merge that follows sets the new value.
            (_, Some(_)) => {}
            (last_leaf, None) => {
                if sub_others.is_empty() && live.get(key) == Some(last_leaf) {
                    live.remove(key);
                }
            }
        }
    }
}

/// Drops strategic-merge-patch directives (`$patch`, `$setElementOrder/...`,
/// `$retainKeys`, ...), since strategic merge patches are applied as merge patches.
pub(crate) fn strip_directives(patch: &mut Value) {
    if let Value::Object(map) = patch {
        map.retain(|k, _| !k.starts_with('$'));
        map.values_mut().for_each(strip_directives);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn prune_removes_only_fields_still_owned() {
        let last = json!({ "metadata": { "labels": { "a": "1", "b": "1", "c": "1" } }, "data": { "x": "1" } });
        let applied = json!({ "metadata": { "labels": { "a": "1" } } });
        let other = json!({ "metadata": { "labels": { "c": "1" } } });
        let mut live = json!({
            "metadata": { "labels": { "a": "1", "b": "1", "c": "1", "d": "1" } },
            "data": { "x": "changed-by-someone-else" }
        });
        prune(&mut live, &last, &applied, &[("other", &other)]);
        assert_eq!(
            live,
            json!({
                "metadata": { "labels": { "a": "1", "c": "1", "d": "1" } },
                "data": { "x": "changed-by-someone-else" }
            })
        );
    }

    #[test]
    fn prune_drops_maps_that_become_empty() {
        let last = json!({ "data": { "x": "1" } });
        let mut live = json!({ "data": { "x": "1" }, "type": "Opaque" });
        prune(&mut live, &last, &json!({}), &[]);
        assert_eq!(live, json!({ "type": "Opaque" }));
    }

    #[test]
    fn owner_references_merge_by_uid() {
        let live = json!({ "metadata": { "ownerReferences": [{ "uid": "a", "kind": "X" }] } });
        let applied = json!({ "metadata": { "ownerReferences": [{ "uid": "b", "kind": "Y" }] } });
        let mut merged = live.clone();
        key_lists(&mut merged);
        let mut config = applied.clone();
        key_lists(&mut config);
        json_patch::merge(&mut merged, &config);
        unkey_lists(&mut merged, &live, &applied);
        assert_eq!(
            merged,
            json!({ "metadata": { "ownerReferences": [{ "uid": "a", "kind": "X" }, { "uid": "b", "kind": "Y" }] } })
        );
    }

    #[test]
    fn conflicts_name_the_owner() {
        let live = json!({ "spec": { "holder": "a", "free": "x" } });
        let applied = json!({ "spec": { "holder": "b", "free": "x", "new": 1 } });
        let other = json!({ "spec": { "holder": "a" } });
        assert_eq!(
            conflicts(&live, &applied, None, &[("mgr-a", &other)], "upd"),
            vec![(".spec.holder".to_string(), "mgr-a".to_string())]
        );
        // Owned by nobody that applies: blamed on the last non-apply writer.
        assert_eq!(
            conflicts(&live, &applied, None, &[], "upd"),
            vec![(".spec.holder".to_string(), "upd".to_string())]
        );
        // The manager's own field.
        let last = json!({ "spec": { "holder": "a" } });
        assert!(conflicts(&live, &applied, Some(&last), &[], "upd").is_empty());
    }
}
