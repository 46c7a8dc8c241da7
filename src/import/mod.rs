//! Importers: another platform's own configuration (Locoia, ChiefOnboarding, Sesam, Nango) →
//! a ConnectorAuth and a skeleton of its credentials Secret. Pure functions of the input text;
//! whatever cannot be expressed is an [`ImportError`] naming the field, never dropped.

pub mod chiefonboarding;
pub mod locoia;
pub mod nango;
pub mod sesam;

use serde_json::{Map, Value, json};

/// A field of the input that cannot be imported, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportError {
    /// Path of the field in the input, e.g. `refreshable_token.config.authorization_request_url`.
    pub field: String,
    pub reason: String,
}

impl std::fmt::Display for ImportError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "`{}`: {}", self.field, self.reason)
    }
}

impl std::error::Error for ImportError {}

pub type Result<T> = std::result::Result<T, ImportError>;

pub(crate) fn err(field: impl Into<String>, reason: impl Into<String>) -> ImportError {
    ImportError {
        field: field.into(),
        reason: reason.into(),
    }
}

/// One key of the credentials Secret to fill in, with what goes there.
#[derive(Debug, Clone, PartialEq)]
pub struct CredentialKey {
    pub name: String,
    pub comment: String,
}

/// What an importer produces: the ConnectorAuth `spec`, the credentials keys, and notes for
/// the reader (what behaves differently, what to check).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Imported {
    pub spec: Value,
    pub credentials: Vec<CredentialKey>,
    pub notes: Vec<String>,
}

impl Imported {
    pub(crate) fn key(&mut self, name: &str, comment: impl Into<String>) {
        if !self.credentials.iter().any(|k| k.name == name) {
            self.credentials.push(CredentialKey {
                name: name.to_string(),
                comment: comment.into(),
            });
        }
    }
}

/// Where the output goes.
#[derive(Debug, Clone)]
pub struct Target {
    pub name: String,
    pub namespace: String,
}

/// The platforms `import` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Platform {
    Locoia,
    Chiefonboarding,
    Sesam,
    Nango,
}

/// Imports `text`; `provider` names the entry of a Nango `providers.yaml`.
pub fn import(platform: Platform, text: &str, provider: Option<&str>) -> Result<Imported> {
    let mut imported = match platform {
        Platform::Locoia => locoia::import(text)?,
        Platform::Chiefonboarding => chiefonboarding::import(text)?,
        Platform::Sesam => sesam::import(text)?,
        Platform::Nango => nango::import(
            text,
            provider.ok_or_else(|| err("--provider", "name the provider entry to import"))?,
        )?,
    };
    add_template_variables(&mut imported);
    Ok(imported)
}

/// Every entry of a Nango providers.yaml, each imported or refused (`import nango --all`).
pub fn import_all_nango(text: &str) -> Result<Vec<(String, Result<Imported>)>> {
    nango::import_all(text)
}

/// Template variables the operator provides itself (never credentials keys).
pub(crate) use crate::engine::template::PROVIDED_VARIABLES as PROVIDED;

/// Every variable a template of the spec reads that the operator does not provide itself is a
/// credentials key, so the skeleton is complete.
fn add_template_variables(imported: &mut Imported) {
    let templates = crate::engine::Templates::new();
    let mut strings = Vec::new();
    collect_strings(&imported.spec, &mut strings);
    for s in strings {
        for v in templates.variables(&s) {
            if !PROVIDED.contains(&v.as_str()) {
                imported.key(&v, "used by the imported templates");
            }
        }
    }
}

fn collect_strings(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) if s.contains("{{") || s.contains("{%") => out.push(s.clone()),
        Value::Array(a) => a.iter().for_each(|v| collect_strings(v, out)),
        Value::Object(m) => m.values().for_each(|v| collect_strings(v, out)),
        _ => {}
    }
}

/// The ConnectorAuth document.
pub fn resource(imported: &Imported, target: &Target) -> Value {
    let mut spec = imported.spec.clone();
    spec["credentialsRef"] = json!({"name": credentials_name(target)});
    // A client certificate kept in the credentials Secret (Nango's `require_client_certificate`).
    if let Some(r) = spec.pointer_mut("/tls/clientCertificateRef") {
        r["name"] = json!(credentials_name(target));
    }
    json!({
        "apiVersion": format!("{}/{}", crate::api::GROUP, crate::api::VERSION),
        "kind": "ConnectorAuth",
        "metadata": {"name": target.name, "namespace": target.namespace},
        "spec": spec,
    })
}

fn credentials_name(target: &Target) -> String {
    format!("{}-credentials", target.name)
}

/// The two YAML documents: the ConnectorAuth (notes as leading comments) and the credentials
/// Secret with one empty key per credential, each with a comment saying what goes there.
pub fn render(imported: &Imported, target: &Target) -> (String, String) {
    let mut ca = String::new();
    for n in &imported.notes {
        for line in textwrap(n) {
            ca.push_str(&format!("# {line}\n"));
        }
    }
    ca.push_str(&serde_saphyr::to_string(&resource(imported, target)).unwrap_or_default());
    let mut secret = format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: {}\n  namespace: {}\ntype: Opaque\nstringData:\n",
        credentials_name(target),
        target.namespace
    );
    if imported.credentials.is_empty() {
        secret.push_str("  {}\n");
    }
    for k in &imported.credentials {
        secret.push_str(&format!(
            "  # {}\n  {}: \"\"\n",
            k.comment.replace('\n', " "),
            yaml_key(&k.name)
        ));
    }
    (ca, secret)
}

fn yaml_key(k: &str) -> String {
    if k.chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
    {
        k.to_string()
    } else {
        serde_json::to_string(k).unwrap_or_default()
    }
}

fn textwrap(s: &str) -> Vec<String> {
    let mut lines = vec![String::new()];
    for word in s.split_whitespace() {
        let last = lines.last_mut().expect("one line");
        if !last.is_empty() && last.len() + word.len() > 96 {
            lines.push(word.to_string());
        } else {
            if !last.is_empty() {
                last.push(' ');
            }
            last.push_str(word);
        }
    }
    lines
}

/// Parses JSON, naming where it is broken. A missing comma between two members (the snov.io
/// example in Locoia's docs has one) is put back, with a note.
pub(crate) fn parse_json(text: &str, notes: &mut Vec<String>) -> Result<Value> {
    let mut text = text.to_string();
    for _ in 0..8 {
        match serde_json::from_str::<Value>(&text) {
            Ok(v) => return Ok(v),
            Err(e) if e.to_string().starts_with("expected `,` or `}`") => {
                let offset = offset_of(&text, e.line(), e.column());
                let before = text[..offset].trim_end().len();
                notes.push(format!(
                    "The input lacked a comma at line {}; imported as if it were there.",
                    e.line()
                ));
                text.insert(before, ',');
            }
            Err(e) => return Err(err("(input)", format!("not valid JSON: {e}"))),
        }
    }
    Err(err("(input)", "not valid JSON"))
}

fn offset_of(text: &str, line: usize, column: usize) -> usize {
    let start: usize = text
        .split_inclusive('\n')
        .take(line.saturating_sub(1))
        .map(str::len)
        .sum();
    (start + column.saturating_sub(1)).min(text.len())
}

pub(crate) fn object<'a>(v: &'a Value, field: &str) -> Result<&'a Map<String, Value>> {
    v.as_object().ok_or_else(|| err(field, "must be an object"))
}

/// A string field; `null` and absent are `None`.
pub(crate) fn string(m: &Map<String, Value>, key: &str, field: &str) -> Result<Option<String>> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(err(format!("{field}.{key}"), "must be a string")),
    }
}

/// A map of strings (headers, form fields); numbers and booleans are written as text.
pub(crate) fn string_map(v: &Value, field: &str) -> Result<Map<String, Value>> {
    let mut out = Map::new();
    for (k, v) in object(v, field)? {
        let s = match v {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            _ => return Err(err(format!("{field}.{k}"), "must be a string, number or boolean")),
        };
        out.insert(k.clone(), Value::String(s));
    }
    Ok(out)
}

/// The objects of an array field (absent: none), each with its path for errors.
pub(crate) fn items<'a>(v: Option<&'a Value>, field: &str) -> Result<Vec<(String, &'a Map<String, Value>)>> {
    match v {
        None | Some(Value::Null) => Ok(vec![]),
        Some(Value::Array(a)) => a
            .iter()
            .enumerate()
            .map(|(i, item)| {
                let f = format!("{field}[{i}]");
                object(item, &f).map(|o| (f, o))
            })
            .collect(),
        Some(_) => Err(err(field, "must be a list")),
    }
}

/// Refuses keys other than `known`.
pub(crate) fn only(m: &Map<String, Value>, known: &[&str], field: &str) -> Result<()> {
    match m.keys().find(|k| !known.contains(&k.as_str())) {
        Some(k) => Err(err(
            format!("{field}.{k}"),
            format!("is not understood by the importer (known: {})", known.join(", ")),
        )),
        None => Ok(()),
    }
}

/// URL-encodes the values a URL template puts into its query string: `{{ password }}` becomes
/// `{{ password | urlencode }}`, so a secret with `&`, `=` or `+` arrives intact. Expressions
/// that already apply a filter are left alone.
pub(crate) fn encode_query_values(url: &str) -> String {
    let Some(q) = url.find('?') else {
        return url.to_string();
    };
    let (head, query) = url.split_at(q);
    let mut out = head.to_string();
    let mut rest = query;
    while let Some(start) = rest.find("{{") {
        let Some(len) = rest[start..].find("}}") else {
            break;
        };
        let expr = rest[start + 2..start + len].trim();
        out.push_str(&rest[..start]);
        if expr.contains('|') {
            out.push_str(&rest[start..start + len + 2]);
        } else {
            out.push_str(&format!("{{{{ {expr} | urlencode }}}}"));
        }
        rest = &rest[start + len + 2..];
    }
    out.push_str(rest);
    out
}

/// `a=1&b={{ x }}` as form fields, if the body is exactly that; `None` otherwise.
pub(crate) fn form_fields(body: &str) -> Option<Map<String, Value>> {
    let mut out = Map::new();
    for pair in body.split('&') {
        let (k, v) = pair.split_once('=')?;
        let plain = k.chars().all(|c| c.is_ascii_alphanumeric() || "_-.[]".contains(c));
        if k.is_empty() || !plain || out.contains_key(k) {
            return None;
        }
        out.insert(k.to_string(), Value::String(v.to_string()));
    }
    (!out.is_empty()).then_some(out)
}

pub(crate) fn method(m: &str, field: &str) -> Result<Value> {
    match m.to_ascii_uppercase().as_str() {
        x @ ("GET" | "POST" | "PUT" | "PATCH") => Ok(Value::String(x.to_string())),
        other => Err(err(
            field,
            format!("method {other} is not supported for token requests (GET, POST, PUT, PATCH)"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_url_encoded_and_filtered_ones_left_alone() {
        assert_eq!(
            encode_query_values("https://{{ host }}/t?a={{a}}&b={{ b | upper }}&c=1"),
            "https://{{ host }}/t?a={{ a | urlencode }}&b={{ b | upper }}&c=1"
        );
        assert_eq!(encode_query_values("https://x/{{ y }}"), "https://x/{{ y }}");
    }

    #[test]
    fn a_missing_comma_is_put_back_with_a_note() {
        let mut notes = vec![];
        let v = parse_json("{\n\"a\": 1\n\"b\": 2\n}", &mut notes).unwrap();
        assert_eq!(v, json!({"a": 1, "b": 2}));
        assert_eq!(notes.len(), 1);
        let e = parse_json("{\"a\": [}", &mut notes).unwrap_err();
        assert_eq!(e.field, "(input)");
    }

    #[test]
    fn form_bodies_are_recognised() {
        assert_eq!(
            form_fields("Password={{ password }}&UserName={{ username }}&HostID=locoia")
                .unwrap()
                .len(),
            3
        );
        assert_eq!(form_fields("{}"), None);
        assert_eq!(form_fields("{\"a\": \"b=c\"}"), None);
    }
}
