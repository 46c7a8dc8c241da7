//! Nango: one provider entry of its public `providers.yaml` (`auth_mode` OAUTH2, OAUTH2_CC,
//! API_KEY or BASIC; `authorization_url`, `token_url`, `authorization_params`, `token_params`,
//! `refresh_params`, `default_scopes`, `scope_separator`, `token_request_auth_method`,
//! `token_response_metadata`, `proxy.headers`, `connection_config`, `credentials`). Nango's
//! `${connectionConfig.x}`, `${credentials.x}` and `${apiKey}` become credentials keys.

use serde_json::{Map, Value, json};

use super::{Imported, Result, err, object, string, string_map};

/// Keys that describe Nango's own product (docs, proxy behaviour, scripts), not authentication.
const IGNORED: &[&str] = &[
    "display_name",
    "categories",
    "docs",
    "docs_connect",
    "setup_guide_url",
    "webhook_routing_script",
    "webhook_user_defined_secret",
    "post_connection_script",
    "pre_connection_deletion_script",
    "alias",
    "connection_configuration",
    "redirect_uri_metadata",
    "token_expiration_buffer",
];

pub fn import(text: &str, provider: &str) -> Result<Imported> {
    let mut imported = Imported::default();
    let doc: Value = serde_saphyr::from_str(text).map_err(|e| err("(input)", format!("not valid YAML: {e}")))?;
    let all = object(&doc, "(input)")?;
    let entry = object(
        all.get(provider)
            .ok_or_else(|| err(provider, "no such provider in the file"))?,
        provider,
    )?;
    let p = provider;
    let known = [
        "auth_mode",
        "authorization_url",
        "token_url",
        "authorization_params",
        "token_params",
        "refresh_params",
        "default_scopes",
        "scope_separator",
        "token_request_auth_method",
        "token_response_metadata",
        "proxy",
        "connection_config",
        "credentials",
        "disable_pkce",
    ];
    if let Some(k) = entry
        .keys()
        .find(|k| !known.contains(&k.as_str()) && !IGNORED.contains(&k.as_str()))
    {
        return Err(err(format!("{p}.{k}"), "is not understood by the importer"));
    }
    for section in ["connection_config", "credentials"] {
        if let Some(Value::Object(fields)) = entry.get(section) {
            for (name, spec) in fields {
                let what = [spec.get("title"), spec.get("description")]
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .filter(|s| !s.is_empty())
                    .collect::<Vec<_>>()
                    .join(" - ");
                imported.key(&key_name(name), what);
            }
        }
    }
    let mode = string(entry, "auth_mode", p)?.ok_or_else(|| err(format!("{p}.auth_mode"), "is missing"))?;
    let t = |s: &str, field: &str| convert(s, &format!("{p}.{field}"));
    let mut spec = match mode.as_str() {
        "OAUTH2" | "OAUTH2_CC" => {
            let mut o = Map::new();
            let token_url = match entry.get("token_url") {
                Some(Value::String(u)) => u.clone(),
                Some(Value::Object(by_mode)) => by_mode
                    .get(&mode)
                    .and_then(Value::as_str)
                    .ok_or_else(|| err(format!("{p}.token_url"), format!("has no entry for {mode}")))?
                    .to_string(),
                _ => return Err(err(format!("{p}.token_url"), "is missing")),
            };
            o.insert("tokenUrl".into(), json!(t(&token_url, "token_url")?));
            o.insert("clientId".into(), json!("{{ client_id }}"));
            o.insert("clientSecret".into(), json!("{{ client_secret }}"));
            imported.key("client_id", "OAuth client id");
            imported.key("client_secret", "OAuth client secret");
            // Nango sends client credentials in the body unless told `basic`.
            let auth = match string(entry, "token_request_auth_method", p)?.as_deref() {
                Some("basic") => "client_secret_basic",
                None => "client_secret_post",
                Some(other) => {
                    return Err(err(
                        format!("{p}.token_request_auth_method"),
                        format!("`{other}` is not supported"),
                    ));
                }
            };
            o.insert("clientAuth".into(), json!(auth));
            let mut extra = Map::new();
            let mut grant = if mode == "OAUTH2" {
                "authorizationCode"
            } else {
                "clientCredentials"
            };
            if let Some(tp) = entry.get("token_params") {
                for (k, v) in string_map(tp, &format!("{p}.token_params"))? {
                    let v = t(v.as_str().unwrap_or_default(), &format!("token_params.{k}"))?;
                    match (k.as_str(), v.as_str()) {
                        ("grant_type", "authorization_code") if mode == "OAUTH2" => {}
                        ("grant_type", "client_credentials") if mode == "OAUTH2_CC" => {}
                        ("grant_type", "password") if mode == "OAUTH2_CC" => grant = "password",
                        ("grant_type", other) => {
                            return Err(err(
                                format!("{p}.token_params.grant_type"),
                                format!("`{other}` is not supported with {mode}"),
                            ));
                        }
                        ("username", _) if grant == "password" => {
                            o.insert("username".into(), json!(v));
                        }
                        ("password", _) if grant == "password" => {
                            o.insert("password".into(), json!(v));
                        }
                        _ => {
                            extra.insert(k.clone(), json!(v));
                        }
                    }
                }
            }
            if let Some(rp) = entry.get("refresh_params") {
                for (k, v) in string_map(rp, &format!("{p}.refresh_params"))? {
                    if (k.as_str(), v.as_str()) != ("grant_type", Some("refresh_token")) {
                        return Err(err(
                            format!("{p}.refresh_params.{k}"),
                            "only grant_type: refresh_token can be expressed",
                        ));
                    }
                }
            }
            o.insert("grantType".into(), json!(grant));
            if !extra.is_empty() {
                o.insert("extraParams".into(), Value::Object(extra));
            }
            let scopes: Vec<String> = entry
                .get("default_scopes")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect();
            if mode == "OAUTH2" {
                let auth_url = string(entry, "authorization_url", p)?
                    .ok_or_else(|| err(format!("{p}.authorization_url"), "is missing"))?;
                let mut url = t(&auth_url, "authorization_url")?;
                let mut params = vec![
                    ("client_id".to_string(), "{{ client_id | urlencode }}".to_string()),
                    ("redirect_uri".to_string(), "{{ redirect_url | urlencode }}".to_string()),
                ];
                if let Some(ap) = entry.get("authorization_params") {
                    for (k, v) in string_map(ap, &format!("{p}.authorization_params"))? {
                        params.retain(|(n, _)| n != &k);
                        params.push((
                            k.clone(),
                            enc(&t(
                                v.as_str().unwrap_or_default(),
                                &format!("authorization_params.{k}"),
                            )?),
                        ));
                    }
                }
                if !params.iter().any(|(k, _)| k == "response_type") {
                    params.push(("response_type".into(), "code".into()));
                }
                if !scopes.is_empty() {
                    let sep = string(entry, "scope_separator", p)?.unwrap_or_else(|| " ".into());
                    params.push(("scope".into(), enc(&scopes.join(&sep))));
                }
                url.push(if url.contains('?') { '&' } else { '?' });
                url.push_str(
                    &params
                        .iter()
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect::<Vec<_>>()
                        .join("&"),
                );
                o.insert("authorizationUrl".into(), json!(url));
                if entry.get("disable_pkce") != Some(&Value::Bool(true)) {
                    imported.notes.push(
                        "Nango uses PKCE for this provider; this resource does not send a code_challenge. \
                         Providers that require PKCE will refuse the consent."
                            .into(),
                    );
                }
            } else if !scopes.is_empty() {
                o.insert("scopes".into(), json!(scopes));
            }
            json!({"oauth2": o})
        }
        "API_KEY" => json!({"apiKey": {"key": "{{ apiKey }}"}}),
        "BASIC" => json!({"apiKey": {"key": "{{ username }}:{{ password }}"}}),
        other => {
            return Err(err(
                format!("{p}.auth_mode"),
                format!("`{other}` cannot be expressed (OAUTH2, OAUTH2_CC, API_KEY and BASIC can)"),
            ));
        }
    };
    let mut output = Map::new();
    if let Some(proxy) = entry.get("proxy") {
        let proxy = object(proxy, &format!("{p}.proxy"))?;
        if proxy.contains_key("query") {
            return Err(err(
                format!("{p}.proxy.query"),
                "a token in the query string cannot be published as a header",
            ));
        }
        if let Some(h) = proxy.get("headers") {
            let mut header = Map::new();
            let mut extra = Map::new();
            for (k, v) in string_map(h, &format!("{p}.proxy.headers"))? {
                let v = t(v.as_str().unwrap_or_default(), &format!("proxy.headers.{k}"))?;
                if k.eq_ignore_ascii_case("authorization") {
                    header.insert("name".into(), json!("Authorization"));
                    header.insert("value".into(), json!(v));
                } else {
                    extra.insert(k, json!(v));
                }
            }
            if !extra.is_empty() {
                header.insert("extra".into(), Value::Object(extra));
            }
            output.insert("header".into(), Value::Object(header));
        }
    }
    match mode.as_str() {
        "API_KEY" if !output.contains_key("header") => {
            return Err(err(
                format!("{p}.proxy.headers"),
                "is missing: where does the API key go?",
            ));
        }
        "BASIC" => {
            output.insert(
                "header".into(),
                json!({"name": "Authorization", "value": "Basic {{ access_token | b64encode }}"}),
            );
        }
        _ => {}
    }
    let mut templates = Map::new();
    for m in entry
        .get("token_response_metadata")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let m = m
            .as_str()
            .ok_or_else(|| err(format!("{p}.token_response_metadata"), "must be strings"))?;
        if m.contains('.') {
            return Err(err(
                format!("{p}.token_response_metadata.{m}"),
                "a nested field cannot be kept: only top-level fields of the token response are",
            ));
        }
        templates.insert(m.to_string(), json!(format!("{{{{ oauth.{m} }}}}")));
    }
    if !templates.is_empty() {
        output.insert("template".into(), Value::Object(templates));
    }
    if !output.is_empty() {
        spec["output"] = Value::Object(output);
    }
    imported.spec = spec;
    Ok(imported)
}

fn enc(s: &str) -> String {
    if s.contains("{{") {
        s.to_string()
    } else {
        url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
    }
}

fn key_name(n: &str) -> String {
    n.to_string()
}

/// `${connectionConfig.x}`, `${credentials.x}` → `{{ x }}`; `${apiKey}` → `{{ apiKey }}`;
/// `${accessToken}` → `{{ access_token }}`; `${username}`, `${password}` as they are.
fn convert(s: &str, field: &str) -> Result<String> {
    let mut out = String::new();
    let mut rest = s;
    while let Some(start) = rest.find("${") {
        let end = rest[start..]
            .find('}')
            .ok_or_else(|| err(field, "has an unclosed `${`"))?;
        let expr = &rest[start + 2..start + end];
        out.push_str(&rest[..start]);
        let name = if let Some(x) = expr
            .strip_prefix("connectionConfig.")
            .or_else(|| expr.strip_prefix("credentials."))
        {
            x.to_string()
        } else {
            match expr {
                "accessToken" => "access_token".into(),
                "apiKey" | "username" | "password" => expr.to_string(),
                other => return Err(err(field, format!("`${{{other}}}` cannot be expressed"))),
            }
        };
        if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(err(field, format!("`${{{expr}}}` cannot be expressed")));
        }
        out.push_str(&format!("{{{{ {name} }}}}"));
        rest = &rest[start + end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}
