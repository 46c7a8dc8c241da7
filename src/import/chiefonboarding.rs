//! ChiefOnboarding: an integration manifest with `oauth` (`authenticate_url`, `access_token`,
//! `refresh`, `without_code`), its `headers` and `initial_data_form`.

use serde_json::{Map, Value, json};

use super::{Imported, Result, encode_query_values, err, items, method, object, only, string, string_map};

/// Request keys of ChiefOnboarding's "execute" format that a token request can carry.
const REQUEST_KEYS: &[&str] = &["url", "method", "data", "headers"];

pub fn import(text: &str) -> Result<Imported> {
    let mut imported = Imported::default();
    let doc = super::parse_json(text, &mut imported.notes)?;
    let top = object(&doc, "(input)")?;
    let oauth = object(top.get("oauth").ok_or_else(|| err("oauth", "is missing"))?, "oauth")?;
    only(
        oauth,
        &["authenticate_url", "access_token", "refresh", "without_code"],
        "oauth",
    )?;
    let auth_url =
        string(oauth, "authenticate_url", "oauth")?.ok_or_else(|| err("oauth.authenticate_url", "is missing"))?;
    let mut o = Map::new();
    o.insert("grantType".into(), json!("authorizationCode"));
    o.insert("authorizationUrl".into(), Value::String(encode_query_values(&auth_url)));
    o.insert(
        "tokenRequest".into(),
        request(
            oauth
                .get("access_token")
                .ok_or_else(|| err("oauth.access_token", "is missing"))?,
            "oauth.access_token",
        )?,
    );
    match oauth.get("refresh") {
        None | Some(Value::Null) => imported
            .notes
            .push("No oauth.refresh: the token is permanent, as in ChiefOnboarding.".into()),
        Some(r) => {
            o.insert("refreshRequest".into(), request(r, "oauth.refresh")?);
        }
    }
    match oauth.get("without_code") {
        None | Some(Value::Null) | Some(Value::Bool(false)) => {}
        Some(Value::Bool(true)) => {
            o.insert("withoutCode".into(), Value::Bool(true));
        }
        Some(_) => return Err(err("oauth.without_code", "must be true or false")),
    }
    let mut spec = json!({"oauth2": o});
    if let Some(h) = top.get("headers") {
        let headers = string_map(h, "headers")?;
        if !headers.is_empty() {
            spec["output"] = json!({"header": output_header(headers)});
            imported.notes.push(
                "The manifest's headers are published as the headers API calls send; ChiefOnboarding also sent \
                 them on token requests without headers of their own, which this resource does not."
                    .into(),
            );
        }
    }
    for (field, item) in items(top.get("initial_data_form"), "initial_data_form")? {
        let id = string(item, "id", &field)?.ok_or_else(|| err(format!("{field}.id"), "is missing"))?;
        let what = [string(item, "name", &field)?, string(item, "description", &field)?]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(" - ");
        imported.key(&id, what);
    }
    let others: Vec<&String> = top
        .keys()
        .filter(|k| !["oauth", "headers", "initial_data_form"].contains(&k.as_str()))
        .collect();
    if !others.is_empty() {
        imported.notes.push(format!(
            "Not imported, as they are not authentication: {}.",
            others.iter().map(|k| k.as_str()).collect::<Vec<_>>().join(", ")
        ));
    }
    imported.spec = spec;
    Ok(imported)
}

/// A ChiefOnboarding request (`url`, `method`, `data`, `headers`). `data` is sent form-encoded
/// (Python `requests` with a dict), so it becomes `form`.
fn request(v: &Value, field: &str) -> Result<Value> {
    let m = object(v, field)?;
    only(m, REQUEST_KEYS, field)?;
    let url = string(m, "url", field)?.ok_or_else(|| err(format!("{field}.url"), "is missing"))?;
    let mut r = json!({"url": encode_query_values(&url)});
    if let Some(x) = string(m, "method", field)? {
        r["method"] = method(&x, &format!("{field}.method"))?;
    }
    if let Some(d) = m.get("data").filter(|d| !d.is_null()) {
        let form = string_map(d, &format!("{field}.data"))?;
        if !form.is_empty() {
            r["form"] = Value::Object(form);
        }
    }
    if let Some(h) = m.get("headers").filter(|h| !h.is_null()) {
        let headers: Map<String, Value> = string_map(h, &format!("{field}.headers"))?
            .into_iter()
            .map(|(k, v)| {
                let v = basic_auth(&k, v.as_str().unwrap_or_default());
                (k, Value::String(v))
            })
            .collect();
        if !headers.is_empty() {
            r["headers"] = Value::Object(headers);
        }
    }
    Ok(r)
}

/// ChiefOnboarding base64-encodes the credentials of an `Authorization: Basic …` header itself.
fn basic_auth(name: &str, value: &str) -> String {
    match value.strip_prefix("Basic ") {
        Some(creds) if name.eq_ignore_ascii_case("authorization") => {
            format!("Basic {{% filter b64encode %}}{creds}{{% endfilter %}}")
        }
        _ => value.to_string(),
    }
}

fn output_header(headers: Map<String, Value>) -> Value {
    let mut out = Map::new();
    let mut extra = Map::new();
    for (k, v) in headers {
        let v = basic_auth(&k, v.as_str().unwrap_or_default());
        if k.eq_ignore_ascii_case("authorization") {
            out.insert("name".into(), Value::String(k));
            out.insert("value".into(), Value::String(v));
        } else {
            extra.insert(k, Value::String(v));
        }
    }
    if !extra.is_empty() {
        out.insert("extra".into(), Value::Object(extra));
    }
    Value::Object(out)
}
