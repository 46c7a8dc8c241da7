//! What kube-apiserver validates on every write of the built-in kinds this crate serves, and the
//! object metadata of every kind, with the messages of Kubernetes 1.36 (`ValidateObjectMeta*` in
//! `k8s.io/apimachinery/pkg/api/validation`, `ValidateSecret*`, `ValidateConfigMap*`,
//! `ValidateEvent*` in `pkg/apis/core/validation`, `ValidateLease*` in
//! `pkg/apis/coordination/validation`). Custom resources add their CRD's schema (see `schema`).

use std::sync::LazyLock;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use regex::Regex;
use serde_json::{Map, Value};

use crate::error::ApiError;
use crate::field::{Bad, FieldError};
use crate::registry::ResourceInfo;

/// `core.MaxSecretSize`: the limit of a Secret's (and ConfigMap's) data, in bytes.
pub(crate) const MAX_SECRET_SIZE: i64 = 1024 * 1024;
const TOTAL_ANNOTATION_SIZE_LIMIT: i64 = 256 * 1024;
const DNS1123_SUBDOMAIN_MAX: usize = 253;
const DNS1123_LABEL_MAX: usize = 63;
const IMMUTABLE: &str = "field is immutable";
const IMMUTABLE_WHEN_SET: &str = "field is immutable when `immutable` is set";

const DNS1123_LABEL_FMT: &str = "[a-z0-9]([-a-z0-9]*[a-z0-9])?";
const DNS1123_LABEL_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character";
const DNS1123_SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character";
const CONFIG_KEY_FMT: &str = "[-._a-zA-Z0-9]+";
const CONFIG_KEY_MSG: &str = "a valid config key must consist of alphanumeric characters, '-', '_' or '.'";
const LABEL_KEY_FMT: &str = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]";
const LABEL_KEY_MSG: &str =
    "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";
const LABEL_VALUE_MSG: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";

fn dns1123_subdomain_fmt() -> String {
    format!("{DNS1123_LABEL_FMT}(\\.{DNS1123_LABEL_FMT})*")
}

fn anchored(fmt: &str) -> Regex {
    Regex::new(&format!("^(?:{fmt})$")).expect("valid regex")
}

static DNS1123_LABEL: LazyLock<Regex> = LazyLock::new(|| anchored(DNS1123_LABEL_FMT));
static DNS1123_SUBDOMAIN: LazyLock<Regex> = LazyLock::new(|| anchored(&dns1123_subdomain_fmt()));
static CONFIG_KEY: LazyLock<Regex> = LazyLock::new(|| anchored(CONFIG_KEY_FMT));
static LABEL_KEY: LazyLock<Regex> = LazyLock::new(|| anchored(LABEL_KEY_FMT));
static LABEL_VALUE: LazyLock<Regex> = LazyLock::new(|| anchored(&format!("({LABEL_KEY_FMT})?")));

/// `RegexError`: the message, examples and the regular expression.
fn regex_error(msg: &str, fmt: &str, examples: &[&str]) -> String {
    if examples.is_empty() {
        return format!("{msg} (regex used for validation is '{fmt}')");
    }
    let examples: Vec<String> = examples.iter().map(|e| format!("'{e}', ")).collect();
    format!(
        "{msg} (e.g. {}regex used for validation is '{fmt}')",
        examples.join(" or ")
    )
}

/// `validation.IsDNS1123Subdomain` (its length limit is counted in characters).
pub(crate) fn is_dns1123_subdomain(value: &str) -> Vec<String> {
    subdomain_errors(value, "characters")
}

fn subdomain_errors(value: &str, unit: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > DNS1123_SUBDOMAIN_MAX {
        errs.push(format!("must be no more than {DNS1123_SUBDOMAIN_MAX} {unit}"));
    }
    if !DNS1123_SUBDOMAIN.is_match(value) {
        errs.push(regex_error(
            DNS1123_SUBDOMAIN_MSG,
            &dns1123_subdomain_fmt(),
            &["example.com"],
        ));
    }
    errs
}

/// `validation.IsDNS1123Label`.
fn is_dns1123_label(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > DNS1123_LABEL_MAX {
        errs.push(format!("must be no more than {DNS1123_LABEL_MAX} characters"));
    }
    if !DNS1123_LABEL.is_match(value) {
        if DNS1123_SUBDOMAIN.is_match(value) {
            errs.push("must not contain dots".to_string());
        } else {
            errs.push(regex_error(
                DNS1123_LABEL_MSG,
                DNS1123_LABEL_FMT,
                &["my-name", "123-abc"],
            ));
        }
    }
    errs
}

/// `validation.IsConfigMapKey`: Secret and ConfigMap keys.
fn is_config_map_key(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > DNS1123_SUBDOMAIN_MAX {
        errs.push(format!("must be no more than {DNS1123_SUBDOMAIN_MAX} characters"));
    }
    if !CONFIG_KEY.is_match(value) {
        errs.push(regex_error(
            CONFIG_KEY_MSG,
            CONFIG_KEY_FMT,
            &["key.name", "KEY_NAME", "key-name"],
        ));
    }
    match value {
        "." => errs.push("must not be '.'".to_string()),
        ".." => errs.push("must not be '..'".to_string()),
        v if v.starts_with("..") => errs.push("must not start with '..'".to_string()),
        _ => {}
    }
    errs
}

/// `content.IsLabelKey` (also `IsQualifiedName`): label keys, annotation keys, finalizers.
fn is_qualified_name(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    let parts: Vec<&str> = value.split('/').collect();
    let name = match parts.as_slice() {
        [name] => *name,
        [prefix, name] => {
            if prefix.is_empty() {
                errs.push("prefix part must be non-empty".to_string());
            } else {
                errs.extend(
                    subdomain_errors(prefix, "bytes")
                        .into_iter()
                        .map(|m| format!("prefix part {m}")),
                );
            }
            *name
        }
        _ => {
            let inner = regex_error(LABEL_KEY_MSG, LABEL_KEY_FMT, &["MyName", "my.name", "123-abc"]);
            errs.push(format!(
                "a valid label key {inner} with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
            ));
            return errs;
        }
    };
    if name.is_empty() {
        errs.push("name part must be non-empty".to_string());
    } else if name.len() > DNS1123_LABEL_MAX {
        errs.push(format!("name part must be no more than {DNS1123_LABEL_MAX} bytes"));
    }
    if !LABEL_KEY.is_match(name) {
        let inner = regex_error(LABEL_KEY_MSG, LABEL_KEY_FMT, &["MyName", "my.name", "123-abc"]);
        errs.push(format!("name part {inner}"));
    }
    errs
}

/// `content.IsLabelValue`.
fn is_label_value(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > DNS1123_LABEL_MAX {
        errs.push(format!("must be no more than {DNS1123_LABEL_MAX} bytes"));
    }
    if !LABEL_VALUE.is_match(value) {
        let fmt = format!("({LABEL_KEY_FMT})?");
        errs.push(regex_error(LABEL_VALUE_MSG, &fmt, &["MyValue", "my_value", "12345"]));
    }
    errs
}

/// How a kind's names are checked (`ValidateNameFunc`).
#[derive(Clone, Copy)]
enum NameRule {
    Subdomain,
    Label,
}

impl NameRule {
    fn check(self, name: &str, prefix: bool) -> Vec<String> {
        // `maskTrailingDash`: a generateName prefix may end with a dash.
        let masked;
        let name = if prefix && name.len() > 1 && name.ends_with('-') {
            masked = format!("{}a", &name[..name.len() - 2]);
            masked.as_str()
        } else {
            name
        };
        match self {
            NameRule::Subdomain => is_dns1123_subdomain(name),
            NameRule::Label => is_dns1123_label(name),
        }
    }
}

fn text<'a>(obj: &'a Value, pointer: &str) -> &'a str {
    obj.pointer(pointer).and_then(Value::as_str).unwrap_or_default()
}

fn string_map(obj: &Value, pointer: &str) -> Vec<(String, String)> {
    obj.pointer(pointer)
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default()
}

/// `ValidateObjectMeta` (create) or the checks it shares with `ValidateObjectMetaUpdate`.
fn object_meta(obj: &Value, namespaced: bool, names: Option<NameRule>, errs: &mut Vec<FieldError>) {
    if let Some(rule) = names {
        let generate = text(obj, "/metadata/generateName");
        if !generate.is_empty() {
            for m in rule.check(generate, true) {
                errs.push(FieldError::invalid("metadata.generateName", generate, m));
            }
        }
        let name = text(obj, "/metadata/name");
        if name.is_empty() {
            errs.push(FieldError::required(
                "metadata.name",
                "name or generateName is required",
            ));
        } else {
            for m in rule.check(name, false) {
                errs.push(FieldError::invalid("metadata.name", name, m));
            }
        }
        if namespaced {
            let ns = text(obj, "/metadata/namespace");
            if ns.is_empty() {
                errs.push(FieldError::required("metadata.namespace", ""));
            } else {
                for m in NameRule::Label.check(ns, false) {
                    errs.push(FieldError::invalid("metadata.namespace", ns, m));
                }
            }
        }
    }
    meta_common(obj, errs);
    if names.is_some() {
        for f in finalizers(obj) {
            for m in is_qualified_name(&f) {
                errs.push(FieldError::invalid("metadata.finalizers", f.as_str(), m));
            }
        }
    }
}

/// Labels, annotations and owner references: checked on create and update alike.
fn meta_common(obj: &Value, errs: &mut Vec<FieldError>) {
    for (k, v) in string_map(obj, "/metadata/labels") {
        for m in is_qualified_name(&k) {
            errs.push(FieldError::invalid("metadata.labels", k.as_str(), m));
        }
        for m in is_label_value(&v) {
            errs.push(FieldError::invalid("metadata.labels", v.as_str(), m));
        }
    }
    let annotations = string_map(obj, "/metadata/annotations");
    for (k, _) in &annotations {
        for m in is_qualified_name(&k.to_lowercase()) {
            errs.push(FieldError::invalid("metadata.annotations", k.as_str(), m));
        }
    }
    let size: usize = annotations.iter().map(|(k, v)| k.len() + v.len()).sum();
    if size as i64 > TOTAL_ANNOTATION_SIZE_LIMIT {
        errs.push(FieldError::too_long(
            "metadata.annotations",
            TOTAL_ANNOTATION_SIZE_LIMIT,
        ));
    }
    owner_references(obj, errs);
}

fn finalizers(obj: &Value) -> Vec<String> {
    obj.pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .map(|f| f.iter().filter_map(Value::as_str).map(String::from).collect())
        .unwrap_or_default()
}

/// An owner reference as Go's `json.Marshal` writes it (struct field order, `omitempty`).
fn owner_json(r: &Value) -> String {
    let mut fields: Vec<String> = ["apiVersion", "kind", "name", "uid"]
        .iter()
        .map(|k| format!("\"{k}\":{}", Value::String(text(r, &format!("/{k}")).to_string())))
        .collect();
    for k in ["controller", "blockOwnerDeletion"] {
        if let Some(b) = r.get(k).and_then(Value::as_bool) {
            fields.push(format!("\"{k}\":{b}"));
        }
    }
    format!("{{{}}}", fields.join(","))
}

/// `ValidateOwnerReferences`: required fields, no Event owners, at most one controller.
fn owner_references(obj: &Value, errs: &mut Vec<FieldError>) {
    let Some(refs) = obj.pointer("/metadata/ownerReferences").and_then(Value::as_array) else {
        return;
    };
    let mut first_controller: Option<String> = None;
    for (i, r) in refs.iter().enumerate() {
        let path = format!("metadata.ownerReferences[{i}]");
        let api_version = text(r, "/apiVersion");
        let parsed = parse_group_version(api_version);
        if api_version.is_empty() {
            errs.push(FieldError::required(format!("{path}.apiVersion"), "must not be empty"));
        } else if parsed.is_none() {
            errs.push(FieldError::invalid(
                format!("{path}.apiVersion"),
                api_version,
                "must be <group>/<version> or <version>",
            ));
        }
        for field in ["kind", "name", "uid"] {
            if text(r, &format!("/{field}")).is_empty() {
                errs.push(FieldError::required(format!("{path}.{field}"), "must not be empty"));
            }
        }
        let kind = text(r, "/kind");
        if let Some((group, version)) = parsed
            && group.is_empty()
            && version == "v1"
            && kind == "Event"
        {
            errs.push(FieldError::invalid_with(
                path,
                Bad::Raw(owner_json(r)),
                "/v1, Kind=Event is disallowed from being an owner",
            ));
        }
        if r.get("controller").and_then(Value::as_bool) == Some(true) {
            let current = format!("{kind}/{}", text(r, "/name"));
            match &first_controller {
                Some(first) => {
                    let all: Vec<String> = refs.iter().map(owner_json).collect();
                    errs.push(FieldError::invalid_with(
                        "metadata.ownerReferences",
                        Bad::Raw(format!("[{}]", all.join(","))),
                        format!(
                            "Only one reference can have Controller set to true. Found \"true\" in references for {first} and {current}"
                        ),
                    ));
                }
                None => first_controller = Some(current),
            }
        }
    }
}

/// `schema.ParseGroupVersion`: `v1` or `group/version`.
pub(crate) fn parse_group_version(api_version: &str) -> Option<(&str, &str)> {
    match api_version.split('/').collect::<Vec<_>>().as_slice() {
        [version] if !version.is_empty() => Some(("", version)),
        [group, version] if !version.is_empty() => Some((group, version)),
        _ => None,
    }
}

/// `ValidateObjectMetaUpdate`: what may not change, plus the shared checks.
fn object_meta_update(new: &Value, old: &Value, errs: &mut Vec<FieldError>) {
    if old.pointer("/metadata/deletionTimestamp").is_some_and(|d| !d.is_null()) {
        let before = finalizers(old);
        let mut extra: Vec<String> = finalizers(new).into_iter().filter(|f| !before.contains(f)).collect();
        extra.sort();
        extra.dedup();
        if !extra.is_empty() {
            let listed: Vec<String> = extra.iter().map(|f| format!("\"{f}\"")).collect();
            errs.push(FieldError::forbidden(
                "metadata.finalizers",
                format!(
                    "no new finalizers can be added if the object is being deleted, found new finalizers []string{{{}}}",
                    listed.join(", ")
                ),
            ));
        }
    }
    meta_common(new, errs);
}

/// Validates an object about to be stored: its metadata, and what its kind requires. `old` is
/// the stored version for updates (`None` for creates).
pub(crate) fn validate(info: &ResourceInfo, new: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let meta = |errs: &mut Vec<FieldError>, names: NameRule| match old {
        None => object_meta(new, info.namespaced, Some(names), errs),
        Some(old) => object_meta_update(new, old, errs),
    };
    match (info.group.as_str(), info.plural.as_str()) {
        ("", "secrets") => {
            if let Some(old) = old {
                object_meta_update(new, old, &mut errs);
                secret_update(new, old, &mut errs);
            }
            // `ValidateSecretUpdate` ends with the whole of `ValidateSecret`, metadata included.
            object_meta(new, true, Some(NameRule::Subdomain), &mut errs);
            secret(new, &mut errs);
        }
        ("", "configmaps") => {
            if let Some(old) = old {
                object_meta_update(new, old, &mut errs);
                immutable_data(new, old, &["data", "binaryData"], &mut errs);
            }
            object_meta(new, true, Some(NameRule::Subdomain), &mut errs);
            config_map(new, &mut errs);
        }
        ("", "events") => legacy_event(&EventView::core(new), &mut errs),
        ("events.k8s.io", "events") => {
            let event = EventView::events_v1(new);
            legacy_event(&event, &mut errs);
            match old {
                None => {
                    object_meta(new, true, Some(NameRule::Subdomain), &mut errs);
                    strict_event(&event, &mut errs);
                }
                Some(old) => {
                    object_meta_update(new, old, &mut errs);
                    event_update(new, old, &mut errs);
                }
            }
        }
        ("coordination.k8s.io", "leases") => {
            meta(&mut errs, NameRule::Subdomain);
            lease(new, &mut errs);
        }
        ("", "namespaces") => meta(&mut errs, NameRule::Label),
        _ => meta(&mut errs, NameRule::Subdomain),
    }
    errs
}

/// Turns `stringData` into `data` (as the API server's conversion does) and checks that every
/// `data` value is base64, as decoding the request would.
pub(crate) fn normalize_secret(info: &ResourceInfo, obj: &mut Value) -> Result<(), ApiError> {
    if !(info.group.is_empty() && info.plural == "secrets") {
        return Ok(());
    }
    let Some(root) = obj.as_object_mut() else { return Ok(()) };
    if let Some(Value::Object(data)) = root.get("data") {
        for value in data.values() {
            let encoded = value.as_str().unwrap_or_default();
            if let Err(e) = STANDARD.decode(encoded) {
                let at = match e {
                    base64::DecodeError::InvalidByte(at, _) | base64::DecodeError::InvalidLastSymbol(at, _) => at,
                    _ => encoded.len(),
                };
                return Err(ApiError::bad_request(format!(
                    "Secret in version \"v1\" cannot be handled as a Secret: illegal base64 data at input byte {at}"
                )));
            }
        }
    }
    if let Some(string_data) = root.remove("stringData")
        && let Value::Object(string_data) = string_data
        && !string_data.is_empty()
    {
        let data = root.entry("data").or_insert_with(|| Value::Object(Map::new()));
        if !data.is_object() {
            *data = Value::Object(Map::new());
        }
        let data = data.as_object_mut().expect("just made a map");
        for (k, v) in string_data {
            data.insert(k, Value::String(STANDARD.encode(v.as_str().unwrap_or_default())));
        }
    }
    Ok(())
}

/// Decoded sizes of a data map's values (keys in order).
fn data_sizes(obj: &Value, field: &str) -> Vec<(String, usize)> {
    obj.get(field)
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| {
                    let bytes = STANDARD.decode(v.as_str().unwrap_or_default()).map(|b| b.len());
                    (k.clone(), bytes.unwrap_or_default())
                })
                .collect()
        })
        .unwrap_or_default()
}

/// `ValidateSecret` without its metadata part.
fn secret(obj: &Value, errs: &mut Vec<FieldError>) {
    let data = data_sizes(obj, "data");
    let mut total = 0;
    for (key, size) in &data {
        for m in is_config_map_key(key) {
            errs.push(FieldError::invalid(format!("data[{key}]"), key.as_str(), m));
        }
        total += size;
    }
    if total as i64 > MAX_SECRET_SIZE {
        errs.push(FieldError::too_long("data", MAX_SECRET_SIZE));
    }
    let has = |k: &str| data.iter().any(|(key, _)| key == k);
    let size = |k: &str| data.iter().find(|(key, _)| key == k).map_or(0, |(_, s)| *s);
    let require = |errs: &mut Vec<FieldError>, key: &str| errs.push(FieldError::required(format!("data[{key}]"), ""));
    match text(obj, "/type") {
        "kubernetes.io/service-account-token"
            if text(obj, "/metadata/annotations/kubernetes.io~1service-account.name").is_empty() =>
        {
            errs.push(FieldError::required(
                "metadata.annotations[kubernetes.io/service-account.name]",
                "",
            ));
        }
        "kubernetes.io/basic-auth" if !has("username") && !has("password") => {
            require(errs, "username");
            require(errs, "password");
        }
        "kubernetes.io/ssh-auth" if size("ssh-privatekey") == 0 => require(errs, "ssh-privatekey"),
        "kubernetes.io/tls" => {
            for key in ["tls.crt", "tls.key"] {
                if !has(key) {
                    require(errs, key);
                }
            }
        }
        "kubernetes.io/dockerconfigjson" if !has(".dockerconfigjson") => require(errs, ".dockerconfigjson"),
        "kubernetes.io/dockercfg" if !has(".dockercfg") => require(errs, ".dockercfg"),
        _ => {}
    }
}

/// `ValidateSecretUpdate`'s own checks: `type` never changes, and an immutable Secret keeps
/// its data.
fn secret_update(new: &Value, old: &Value, errs: &mut Vec<FieldError>) {
    let new_type = text(new, "/type");
    if new_type != text(old, "/type") {
        errs.push(FieldError::invalid("type", new_type, IMMUTABLE));
    }
    immutable_data(new, old, &["data"], errs);
}

/// An object that was `immutable: true` must stay so, with these fields unchanged.
fn immutable_data(new: &Value, old: &Value, fields: &[&str], errs: &mut Vec<FieldError>) {
    if old.get("immutable").and_then(Value::as_bool) != Some(true) {
        return;
    }
    if new.get("immutable").and_then(Value::as_bool) != Some(true) {
        errs.push(FieldError::forbidden("immutable", IMMUTABLE_WHEN_SET));
    }
    for field in fields {
        let empty = |v: Option<&Value>| v.is_none_or(|v| v.is_null() || v.as_object().is_some_and(Map::is_empty));
        let (a, b) = (new.get(*field), old.get(*field));
        if a != b && !(empty(a) && empty(b)) {
            errs.push(FieldError::forbidden(*field, IMMUTABLE_WHEN_SET));
        }
    }
}

/// `ValidateConfigMap` without its metadata part.
fn config_map(obj: &Value, errs: &mut Vec<FieldError>) {
    let data = data_sizes_plain(obj);
    let binary = data_sizes(obj, "binaryData");
    let mut total = 0;
    for (key, size) in &data {
        for m in is_config_map_key(key) {
            errs.push(FieldError::invalid(format!("data[{key}]"), key.as_str(), m));
        }
        if binary.iter().any(|(k, _)| k == key) {
            errs.push(FieldError::invalid(
                format!("data[{key}]"),
                key.as_str(),
                "duplicate of key present in binaryData",
            ));
        }
        total += size;
    }
    for (key, size) in &binary {
        for m in is_config_map_key(key) {
            errs.push(FieldError::invalid(format!("binaryData[{key}]"), key.as_str(), m));
        }
        total += size;
    }
    if total as i64 > MAX_SECRET_SIZE {
        // `field.NewPath("")` prints as `[]`.
        errs.push(FieldError::too_long("[]", MAX_SECRET_SIZE));
    }
}

fn data_sizes_plain(obj: &Value) -> Vec<(String, usize)> {
    string_map(obj, "/data")
        .into_iter()
        .map(|(k, v)| (k, v.len()))
        .collect()
}

/// The fields of an Event that validation reads, from either API's field names (validation
/// works on the internal type, so its messages use the core names: `message`,
/// `involvedObject`, `reportingController`).
struct EventView<'a> {
    namespace: &'a str,
    event_time: &'a str,
    involved_namespace: &'a str,
    reporting_controller: &'a str,
    reporting_instance: &'a str,
    action: &'a str,
    reason: &'a str,
    message: &'a str,
    type_: &'a str,
    first_timestamp: &'a str,
    last_timestamp: &'a str,
    count: i64,
    source: bool,
    series: Option<(i64, &'a str)>,
}

impl<'a> EventView<'a> {
    fn core(e: &'a Value) -> Self {
        Self {
            involved_namespace: text(e, "/involvedObject/namespace"),
            reporting_controller: text(e, "/reportingComponent"),
            message: text(e, "/message"),
            first_timestamp: text(e, "/firstTimestamp"),
            last_timestamp: text(e, "/lastTimestamp"),
            count: e.get("count").and_then(Value::as_i64).unwrap_or_default(),
            source: !text(e, "/source/component").is_empty() || !text(e, "/source/host").is_empty(),
            ..Self::common(e)
        }
    }

    fn events_v1(e: &'a Value) -> Self {
        Self {
            involved_namespace: text(e, "/regarding/namespace"),
            reporting_controller: text(e, "/reportingController"),
            message: text(e, "/note"),
            first_timestamp: text(e, "/deprecatedFirstTimestamp"),
            last_timestamp: text(e, "/deprecatedLastTimestamp"),
            count: e.get("deprecatedCount").and_then(Value::as_i64).unwrap_or_default(),
            source: !text(e, "/deprecatedSource/component").is_empty() || !text(e, "/deprecatedSource/host").is_empty(),
            ..Self::common(e)
        }
    }

    fn common(e: &'a Value) -> Self {
        Self {
            namespace: text(e, "/metadata/namespace"),
            event_time: text(e, "/eventTime"),
            involved_namespace: "",
            reporting_controller: "",
            reporting_instance: text(e, "/reportingInstance"),
            action: text(e, "/action"),
            reason: text(e, "/reason"),
            message: "",
            type_: text(e, "/type"),
            first_timestamp: "",
            last_timestamp: "",
            count: 0,
            source: false,
            series: e.get("series").filter(|s| s.is_object()).map(|s| {
                (
                    s.get("count").and_then(Value::as_i64).unwrap_or_default(),
                    text(s, "/lastObservedTime"),
                )
            }),
        }
    }
}

/// `legacyValidateEvent`: what every Event, of either API, must satisfy.
fn legacy_event(e: &EventView<'_>, errs: &mut Vec<FieldError>) {
    let mismatch = |errs: &mut Vec<FieldError>| {
        errs.push(FieldError::invalid(
            "involvedObject.namespace",
            e.involved_namespace,
            "does not match event.namespace",
        ))
    };
    if e.event_time.is_empty() {
        let ok = if e.involved_namespace.is_empty() {
            e.namespace.is_empty() || e.namespace == "default"
        } else {
            e.namespace == e.involved_namespace
        };
        if !ok {
            mismatch(errs);
        }
    } else {
        if e.involved_namespace.is_empty() && e.namespace != "default" && e.namespace != "kube-system" {
            mismatch(errs);
        }
        if e.reporting_controller.is_empty() {
            errs.push(FieldError::required("reportingController", ""));
        }
        for m in is_qualified_name(e.reporting_controller) {
            errs.push(FieldError::invalid("reportingController", e.reporting_controller, m));
        }
        for (field, value, limit) in [
            ("reportingInstance", e.reporting_instance, 128),
            ("action", e.action, 128),
            ("reason", e.reason, 128),
        ] {
            if value.is_empty() {
                errs.push(FieldError::required(field, ""));
            }
            if value.len() > limit {
                errs.push(FieldError::invalid(
                    field,
                    "",
                    format!("can have at most {limit} characters"),
                ));
            }
        }
        if e.message.len() > 1024 {
            errs.push(FieldError::invalid("message", "", "can have at most 1024 characters"));
        }
    }
    for m in is_dns1123_subdomain(e.namespace) {
        errs.push(FieldError::invalid("namespace", e.namespace, m));
    }
}

/// The stricter checks of `ValidateEventCreate` for `events.k8s.io/v1` (after the metadata).
fn strict_event(e: &EventView<'_>, errs: &mut Vec<FieldError>) {
    event_series(e, errs);
    if e.event_time.is_empty() {
        errs.push(FieldError::required("eventTime", ""));
    }
    if e.type_ != "Normal" && e.type_ != "Warning" {
        errs.push(FieldError::invalid(
            "type",
            "",
            format!("has invalid value: {}", e.type_),
        ));
    }
    for (field, set) in [
        ("firstTimestamp", !e.first_timestamp.is_empty()),
        ("lastTimestamp", !e.last_timestamp.is_empty()),
        ("count", e.count != 0),
        ("source", e.source),
    ] {
        if set {
            errs.push(FieldError::invalid(field, "", "needs to be unset"));
        }
    }
}

fn event_series(e: &EventView<'_>, errs: &mut Vec<FieldError>) {
    if let Some((count, last_observed)) = e.series {
        if count < 2 {
            errs.push(FieldError::invalid("series.count", "", "should be at least 2"));
        }
        if last_observed.is_empty() {
            errs.push(FieldError::required("series.lastObservedTime", ""));
        }
    }
}

/// `ValidateEventUpdate` for `events.k8s.io/v1`: a changed series is checked; what the Event
/// says may not change.
fn event_update(new: &Value, old: &Value, errs: &mut Vec<FieldError>) {
    if new.get("series") != old.get("series") {
        event_series(&EventView::events_v1(new), errs);
    }
    for (field, key) in [
        ("involvedObject", "regarding"),
        ("reason", "reason"),
        ("message", "note"),
        ("source", "deprecatedSource"),
        ("firstTimestamp", "deprecatedFirstTimestamp"),
        ("lastTimestamp", "deprecatedLastTimestamp"),
        ("count", "deprecatedCount"),
        ("type", "type"),
        ("eventTime", "eventTime"),
        ("action", "action"),
        ("related", "related"),
        ("reportingController", "reportingController"),
        ("reportingInstance", "reportingInstance"),
    ] {
        let value = new.get(key).cloned().unwrap_or(Value::Null);
        if Some(&value) != old.get(key) && !(value.is_null() && old.get(key).is_none()) {
            errs.push(FieldError::invalid(field, value, IMMUTABLE));
        }
    }
}

/// `ValidateLeaseSpec`.
fn lease(obj: &Value, errs: &mut Vec<FieldError>) {
    if let Some(d) = obj.pointer("/spec/leaseDurationSeconds").and_then(Value::as_i64)
        && d <= 0
    {
        errs.push(FieldError::invalid(
            "spec.leaseDurationSeconds",
            d,
            "must be greater than 0",
        ));
    }
    if let Some(t) = obj.pointer("/spec/leaseTransitions").and_then(Value::as_i64)
        && t < 0
    {
        errs.push(FieldError::invalid(
            "spec.leaseTransitions",
            t,
            "must be greater than or equal to 0",
        ));
    }
    if !text(obj, "/spec/preferredHolder").is_empty() && text(obj, "/spec/strategy").is_empty() {
        errs.push(FieldError::forbidden(
            "spec.preferredHolder",
            "may only be specified if `strategy` is defined",
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_keys_and_labels_follow_kubernetes() {
        assert!(is_dns1123_subdomain("a.b-c").is_empty());
        assert_eq!(
            is_dns1123_subdomain("Bad_Name"),
            vec![
                "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
            ]
        );
        assert_eq!(
            is_dns1123_subdomain(&"a".repeat(254)),
            vec!["must be no more than 253 characters"]
        );
        assert_eq!(
            is_config_map_key("a b"),
            vec![
                "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')"
            ]
        );
        assert_eq!(is_config_map_key("..x"), vec!["must not start with '..'"]);
        assert!(is_label_value("").is_empty());
        assert_eq!(is_label_value(&"a".repeat(64)), vec!["must be no more than 63 bytes"]);
        assert!(is_qualified_name("connectorauth.dev/name").is_empty());
        assert_eq!(is_qualified_name("/x"), vec!["prefix part must be non-empty"]);
        assert_eq!(NameRule::Subdomain.check("gen-", true), Vec::<String>::new());
        assert_eq!(is_dns1123_label("a.b"), vec!["must not contain dots"]);
    }
}
