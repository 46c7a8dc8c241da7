//! Locoia "Refreshable Token": the connector's `refreshable_token` block (`auth_form`,
//! `config`) and, optionally, its header configuration as `header`:
//! `{"refreshable_token": {...}, "header": {...}}`.

use serde_json::{Map, Value, json};

use super::{Imported, Result, encode_query_values, err, form_fields, items, method, object, only, string, string_map};

const CONFIG_KEYS: &[&str] = &[
    "authorization_request_url",
    "authorization_request_method",
    "authorization_request_headers",
    "authorization_request_body_template",
    "response_access_token_path",
    "response_access_token_path_in_header",
    "response_access_token_path_in_cookie",
    "response_refresh_token_path",
    "refresh_request_url",
    "refresh_request_method",
    "refresh_request_headers",
    "refresh_request_body_template",
    "refresh_response_access_token_path",
    "refresh_response_refresh_token_path",
];

const HEADER_KEYS: &[&str] = &[
    "encode",
    "token_in_header",
    "content_type",
    "header_key",
    "token_format",
    "token_prefix",
    "custom_headers",
];

pub fn import(text: &str) -> Result<Imported> {
    let mut imported = Imported::default();
    let doc = super::parse_json(text, &mut imported.notes)?;
    let top = object(&doc, "(input)")?;
    only(top, &["refreshable_token", "header"], "(input)")?;
    let rt = object(
        top.get("refreshable_token")
            .ok_or_else(|| err("refreshable_token", "is missing"))?,
        "refreshable_token",
    )?;
    only(rt, &["auth_form", "config"], "refreshable_token")?;
    for (field, item) in items(rt.get("auth_form"), "refreshable_token.auth_form")? {
        let name = string(item, "name", &field)?.ok_or_else(|| err(format!("{field}.name"), "is missing"))?;
        let mut what = vec![string(item, "title", &field)?.unwrap_or_else(|| name.clone())];
        if let Some(t) = string(item, "type", &field)? {
            what.push(format!("({t})"));
        }
        if item.get("required") == Some(&Value::Bool(true)) {
            what.push("required".into());
        }
        for extra in ["info", "placeholder"] {
            if let Some(v) = string(item, extra, &field)? {
                what.push(format!("- {v}"));
            }
        }
        imported.key(&name, what.join(" "));
    }

    let cfg = object(
        rt.get("config")
            .ok_or_else(|| err("refreshable_token.config", "is missing"))?,
        "refreshable_token.config",
    )?;
    only(cfg, CONFIG_KEYS, "refreshable_token.config")?;
    let f = "refreshable_token.config";
    let authorization = request(cfg, "authorization_request", f, true)?.expect("required");
    let mut spec_rt = Map::new();
    spec_rt.insert("authorization".into(), authorization);
    let access = match (
        string(cfg, "response_access_token_path", f)?,
        string(cfg, "response_access_token_path_in_header", f)?,
        string(cfg, "response_access_token_path_in_cookie", f)?,
    ) {
        (Some(p), None, None) => json!({"jsonPath": p}),
        (None, Some(h), None) => json!({"header": h}),
        (None, None, Some(c)) => json!({"cookie": c}),
        (None, None, None) => {
            return Err(err(
                format!("{f}.response_access_token_path"),
                "is missing (or one of response_access_token_path_in_header, _in_cookie)",
            ));
        }
        _ => {
            return Err(err(
                format!("{f}.response_access_token_path"),
                "set only one of response_access_token_path, _in_header, _in_cookie",
            ));
        }
    };
    spec_rt.insert("accessToken".into(), access);
    if let Some(p) = string(cfg, "response_refresh_token_path", f)? {
        spec_rt.insert("refreshToken".into(), json!({"jsonPath": p}));
    }
    if let Some(mut refresh) = request(cfg, "refresh_request", f, false)? {
        if let Some(p) = string(cfg, "refresh_response_access_token_path", f)? {
            refresh["accessToken"] = json!({"jsonPath": p});
        }
        if let Some(p) = string(cfg, "refresh_response_refresh_token_path", f)? {
            refresh["refreshToken"] = json!({"jsonPath": p});
        }
        spec_rt.insert("refresh".into(), refresh);
    } else {
        for k in [
            "refresh_request_headers",
            "refresh_request_body_template",
            "refresh_request_method",
            "refresh_response_access_token_path",
            "refresh_response_refresh_token_path",
        ] {
            if cfg.get(k).is_some_and(|v| !v.is_null()) {
                return Err(err(format!("{f}.{k}"), "is set but refresh_request_url is not"));
            }
        }
        imported.notes.push(
            "No refresh_request_url: the login request is repeated to renew. Without expires_in in the answer \
             the token counts as permanent; set spec.renewal.refreshInterval if it is not."
                .into(),
        );
    }
    let mut spec = json!({"refreshableToken": spec_rt});
    if let Some(h) = top.get("header") {
        spec["output"] = json!({"header": header(h)?});
    }
    imported.spec = spec;
    Ok(imported)
}

/// `<prefix>_url`, `_method`, `_headers` (a JSON string or object), `_body_template`.
fn request(cfg: &Map<String, Value>, prefix: &str, f: &str, required: bool) -> Result<Option<Value>> {
    let Some(url) = string(cfg, &format!("{prefix}_url"), f)? else {
        return if required {
            Err(err(format!("{f}.{prefix}_url"), "is missing"))
        } else {
            Ok(None)
        };
    };
    let mut r = json!({"url": encode_query_values(&url)});
    if let Some(m) = string(cfg, &format!("{prefix}_method"), f)? {
        r["method"] = method(&m, &format!("{f}.{prefix}_method"))?;
    }
    let hfield = format!("{f}.{prefix}_headers");
    let headers = match cfg.get(&format!("{prefix}_headers")) {
        None | Some(Value::Null) => Map::new(),
        Some(Value::String(s)) if s.trim().is_empty() => Map::new(),
        Some(Value::String(s)) => {
            let v: Value = serde_json::from_str(s).map_err(|e| err(&hfield, format!("is not a JSON object: {e}")))?;
            string_map(&v, &hfield)?
        }
        Some(v) => string_map(v, &hfield)?,
    };
    let form_encoded = headers.iter().any(|(k, v)| {
        k.eq_ignore_ascii_case("content-type")
            && v.as_str()
                .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"))
    });
    if !headers.is_empty() {
        r["headers"] = Value::Object(headers);
    }
    match string(cfg, &format!("{prefix}_body_template"), f)? {
        None => {}
        Some(b) if b.is_empty() => {}
        // A form body's values are URL-encoded for you: a password with `&` arrives intact.
        Some(b) if form_encoded && form_fields(&b).is_some() => {
            r["form"] = Value::Object(form_fields(&b).expect("checked"))
        }
        Some(b) => r["body"] = Value::String(b),
    }
    Ok(Some(r))
}

fn header(h: &Value) -> Result<Value> {
    let f = "header";
    let h = object(h, f)?;
    only(h, HEADER_KEYS, f)?;
    if h.get("token_in_header") == Some(&Value::Bool(false)) {
        return Err(err(
            "header.token_in_header",
            "false (the token elsewhere than in a header) cannot be expressed: published tokens are headers",
        ));
    }
    let mut out = Map::new();
    if let Some(k) = string(h, "header_key", f)? {
        out.insert("name".into(), Value::String(k));
    }
    if let Some(v) = string(h, "token_format", f)? {
        out.insert("format".into(), Value::String(v));
    }
    if let Some(v) = string(h, "token_prefix", f)? {
        out.insert("value".into(), Value::String(v));
    }
    match h.get("encode") {
        None | Some(Value::Bool(false)) | Some(Value::Null) => {}
        Some(Value::Bool(true)) => {
            out.insert("encode".into(), Value::Bool(true));
        }
        Some(_) => return Err(err("header.encode", "must be true or false")),
    }
    let mut extra = match h.get("custom_headers") {
        None | Some(Value::Null) => Map::new(),
        Some(v) => string_map(v, "header.custom_headers")?,
    };
    if let Some(ct) = string(h, "content_type", f)? {
        extra.entry("Content-Type").or_insert(Value::String(ct));
    }
    if !extra.is_empty() {
        out.insert("extra".into(), Value::Object(extra));
    }
    Ok(Value::Object(out))
}
