//! Nango: one provider entry of its public `providers.yaml` (`auth_mode` OAUTH2, OAUTH2_CC,
//! API_KEY, BASIC or TWO_STEP, and `alias` entries of those, resolved as Nango resolves them).
//!
//! - OAUTH2 / OAUTH2_CC: `authorization_url` (with `authorization_params`, `default_scopes`,
//!   `scope_separator`, `authorization_url_replacements`, `authorization_url_skip_empty`,
//!   `authorization_url_skip_encode`), `token_url`, `token_params`, `refresh_params`,
//!   `refresh_url`, `token_request_auth_method`, `authorization_method`, `body_format`
//!   (`form`, `json`, and `query` for OAUTH2_CC), `token_headers`, PKCE unless `disable_pkce`,
//!   `redirect_uri_metadata` values as consent callback values, `token_response_metadata`.
//! - TWO_STEP: the token request (`token_url`, `token_request_method`, `token_headers`,
//!   `token_params`, `body_format`, default json), `additional_steps` (as chained steps),
//!   `token_response` (`token`, `refresh_token`, `token_expiration` with its strategy),
//!   `token_expires_in_ms`, and a refresh from `refresh_url` / `refresh_token_params` /
//!   `refresh_token_headers`.
//! - Published: `proxy.headers` (HTTP headers) and `proxy.query` (`query.json`: the query
//!   parameters to add to API calls).
//!
//! `${connectionConfig.x}`, `${credentials.x}` and `${apiKey}` become credentials keys,
//! `${accessToken}` the access token, `${base64(...)}` the `b64encode` filter, `${stepN.path}` a
//! value of a chained step. Anything else (request signing, `${now}`, `${random}`, XML bodies,
//! JWT signing) is refused naming the field.

use serde_json::{Map, Value, json};

use super::{Imported, Result, err, object, string, string_map};

/// Keys that describe Nango's own product (docs, proxy behaviour, scripts, webhooks), not
/// authentication.
const IGNORED: &[&str] = &[
    "display_name",
    "categories",
    "docs",
    "docs_connect",
    "setup_guide_url",
    "webhook_routing_script",
    "webhook_user_defined_secret",
    "webhook_allowed_query_params",
    "post_connection_script",
    "pre_connection_deletion_script",
    "credentials_verification_script",
    "connection_configuration",
    "decode_url",
    "refresh_token_response_metadata",
    "auth",
    // Both only say how Nango itself proxies and retries.
    "token_expires_in_ms_for_proxy",
];

/// Keys the importer reads.
const KNOWN: &[&str] = &[
    "auth_mode",
    "authorization_url",
    "authorization_params",
    "authorization_url_replacements",
    "authorization_url_skip_empty",
    "authorization_url_skip_encode",
    "token_url",
    "token_params",
    "token_headers",
    "token_request_method",
    "token_response",
    "token_expires_in_ms",
    "token_expiration_buffer",
    "refresh_params",
    "refresh_url",
    "refresh_token_params",
    "refresh_token_headers",
    "additional_steps",
    "default_scopes",
    "scope_separator",
    "token_request_auth_method",
    "authorization_method",
    "body_format",
    "token_response_metadata",
    "redirect_uri_metadata",
    "proxy",
    "connection_config",
    "credentials",
    "disable_pkce",
    "require_client_certificate",
    "authorization_code_param_in_callback",
];

/// Entries followed through `alias` at most this deep.
const MAX_ALIAS_DEPTH: usize = 8;

pub fn import(text: &str, provider: &str) -> Result<Imported> {
    let doc: Value = serde_saphyr::from_str(text).map_err(|e| err("(input)", format!("not valid YAML: {e}")))?;
    let all = object(&doc, "(input)")?;
    let entry = resolved(all, provider, 0)?;
    import_entry(&entry, provider)
}

/// Every entry of the file, each imported (or refused) on its own: what `import nango --all`
/// reports.
pub fn import_all(text: &str) -> Result<Vec<(String, Result<Imported>)>> {
    let doc: Value = serde_saphyr::from_str(text).map_err(|e| err("(input)", format!("not valid YAML: {e}")))?;
    let all = object(&doc, "(input)")?;
    Ok(all
        .keys()
        .map(|name| {
            let imported = resolved(all, name, 0)
                .and_then(|e| import_entry(&e, name))
                .map(|mut i| {
                    super::add_template_variables(&mut i);
                    i
                });
            (name.clone(), imported)
        })
        .collect())
}

/// The entry `name`, with `alias: other` resolved as Nango does: the other entry's keys,
/// overridden key by key (a shallow merge) by this entry's own.
fn resolved(all: &Map<String, Value>, name: &str, depth: usize) -> Result<Map<String, Value>> {
    let entry = object(
        all.get(name).ok_or_else(|| err(name, "no such provider in the file"))?,
        name,
    )?;
    let Some(target) = entry.get("alias") else {
        return Ok(entry.clone());
    };
    let target = target
        .as_str()
        .ok_or_else(|| err(format!("{name}.alias"), "must name another entry"))?;
    if depth >= MAX_ALIAS_DEPTH {
        return Err(err(format!("{name}.alias"), "aliases more than 8 deep (a loop?)"));
    }
    let mut merged = resolved(all, target, depth + 1).map_err(|e| err(format!("{name}.alias"), e.to_string()))?;
    for (k, v) in entry {
        if k != "alias" {
            merged.insert(k.clone(), v.clone());
        }
    }
    Ok(merged)
}

/// What the conversion of one entry knows besides the entry: its name for messages, and the
/// callback parameters Nango keeps (`redirect_uri_metadata`).
struct Ctx<'a> {
    p: &'a str,
    callback: Vec<String>,
}

impl Ctx<'_> {
    fn t(&self, s: &str, field: &str) -> Result<String> {
        convert(s, &format!("{}.{field}", self.p), &self.callback)
    }
}

fn import_entry(entry: &Map<String, Value>, p: &str) -> Result<Imported> {
    let mut imported = Imported::default();
    if let Some(k) = entry
        .keys()
        .find(|k| !KNOWN.contains(&k.as_str()) && !IGNORED.contains(&k.as_str()))
    {
        return Err(err(format!("{p}.{k}"), "is not understood by the importer"));
    }
    let callback: Vec<String> = entry
        .get("redirect_uri_metadata")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .filter(|n| crate::engine::callback::is_value_name(n))
        .map(str::to_string)
        .collect();
    let cx = Ctx { p, callback };
    for section in ["connection_config", "credentials"] {
        if let Some(Value::Object(fields)) = entry.get(section) {
            for (name, spec) in fields {
                if cx.callback.contains(name) || !is_key_name(name) {
                    continue;
                }
                let what = [spec.get("title"), spec.get("description")]
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .filter(|s| !s.is_empty())
                    .collect::<Vec<_>>()
                    .join(" - ");
                imported.key(name, what);
            }
        }
    }
    let mode = string(entry, "auth_mode", p)?.ok_or_else(|| err(format!("{p}.auth_mode"), "is missing"))?;
    let mut spec = match mode.as_str() {
        "OAUTH2" | "OAUTH2_CC" => oauth2(entry, &cx, &mode, &mut imported)?,
        "TWO_STEP" => two_step(entry, &cx)?,
        "API_KEY" => json!({"apiKey": {"key": "{{ apiKey }}"}}),
        "BASIC" => json!({"apiKey": {"key": "{{ username }}:{{ password }}"}}),
        other => {
            return Err(err(
                format!("{p}.auth_mode"),
                format!("`{other}` cannot be expressed (OAUTH2, OAUTH2_CC, TWO_STEP, API_KEY and BASIC can)"),
            ));
        }
    };
    if let Some(b) = entry
        .get("token_expiration_buffer")
        .and_then(Value::as_u64)
        .filter(|b| *b > 0)
    {
        spec["renewal"]["renewBefore"] = json!(format!("{b}s"));
    }
    if entry.get("require_client_certificate") == Some(&Value::Bool(true)) {
        // Mutual TLS with the certificate and key of the credentials Secret (its name is set
        // with the resource's).
        spec["tls"] = json!({"clientCertificateRef": {"name": "", "certificateKey": "client_certificate", "privateKeyKey": "client_private_key"}});
        imported.key("client_certificate", "PEM client certificate for mutual TLS");
        imported.key("client_private_key", "PEM private key of client_certificate");
    }
    let output = output(entry, &cx, &mode)?;
    if !output.is_empty() {
        spec["output"] = Value::Object(output);
    }
    imported.spec = spec;
    Ok(imported)
}

/// OAUTH2 (consent) and OAUTH2_CC (client credentials, or the password grant).
fn oauth2(entry: &Map<String, Value>, cx: &Ctx<'_>, mode: &str, imported: &mut Imported) -> Result<Value> {
    let p = cx.p;
    let mut o = Map::new();
    let token_url = match entry.get("token_url") {
        Some(Value::String(u)) => u.clone(),
        Some(Value::Object(by_mode)) => by_mode
            .get(&mode.replace('_', ""))
            .or_else(|| by_mode.get(mode))
            .and_then(Value::as_str)
            .ok_or_else(|| err(format!("{p}.token_url"), format!("has no entry for {mode}")))?
            .to_string(),
        _ => return Err(err(format!("{p}.token_url"), "is missing")),
    };
    let token_url = cx.t(&token_url, "token_url")?;
    imported.key("client_id", "OAuth client id");
    imported.key("client_secret", "OAuth client secret");
    // Nango sends client credentials in the body unless told to use HTTP Basic.
    let basic = match (
        string(entry, "token_request_auth_method", p)?.as_deref(),
        string(entry, "authorization_method", p)?.as_deref(),
    ) {
        (Some("basic"), _) | (_, Some("header")) => true,
        (None, None | Some("body")) => false,
        (Some(other), _) => {
            return Err(err(
                format!("{p}.token_request_auth_method"),
                format!("`{other}` is not supported"),
            ));
        }
        (None, Some(other)) => {
            return Err(err(
                format!("{p}.authorization_method"),
                format!("`{other}` is not supported"),
            ));
        }
    };
    let body_format = string(entry, "body_format", p)?.unwrap_or_else(|| "form".into());
    let mut grant = if mode == "OAUTH2" {
        "authorizationCode"
    } else {
        "clientCredentials"
    };
    // Nango sends `refresh_params` on refreshes, and `token_params` on refreshes too when there
    // are no `refresh_params`.
    let mut first = Map::new();
    let mut custom_grant: Option<String> = None;
    if let Some(tp) = entry.get("token_params") {
        for (k, v) in string_map(tp, &format!("{p}.token_params"))? {
            let v = cx.t(&scalar(&v), &format!("token_params.{k}"))?;
            match (k.as_str(), v.as_str()) {
                ("grant_type", "authorization_code") if mode == "OAUTH2" => {}
                ("grant_type", "client_credentials") if mode == "OAUTH2_CC" => {}
                ("grant_type", "password") if mode == "OAUTH2_CC" => grant = "password",
                // Another grant of the client's own (Zoom's `account_credentials`): sent as
                // Nango sends it, in a request of its own.
                ("grant_type", other) if mode == "OAUTH2_CC" && !other.is_empty() => {
                    custom_grant = Some(other.to_string());
                }
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
                    first.insert(k.clone(), json!(v));
                }
            }
        }
    }
    let refresh: Option<Map<String, Value>> = match entry.get("refresh_params") {
        None => None,
        Some(rp) => {
            let mut m = Map::new();
            for (k, v) in string_map(rp, &format!("{p}.refresh_params"))? {
                let v = cx.t(&scalar(&v), &format!("refresh_params.{k}"))?;
                match (k.as_str(), v.as_str()) {
                    ("grant_type", "refresh_token") => {}
                    ("grant_type", other) => {
                        return Err(err(
                            format!("{p}.refresh_params.grant_type"),
                            format!("`{other}`: a refresh is sent as grant_type refresh_token"),
                        ));
                    }
                    _ => {
                        m.insert(k, json!(v));
                    }
                }
            }
            Some(m)
        }
    };
    if let Some(h) = entry.get("token_headers") {
        let mut headers = Map::new();
        for (k, v) in string_map(h, &format!("{p}.token_headers"))? {
            headers.insert(k.clone(), json!(cx.t(&scalar(&v), &format!("token_headers.{k}"))?));
        }
        o.insert("headers".into(), Value::Object(headers));
    }
    let scopes: Vec<String> = entry
        .get("default_scopes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(str::to_string)
        .collect();
    let pkce = mode == "OAUTH2" && entry.get("disable_pkce") != Some(&Value::Bool(true));
    o.insert("grantType".into(), json!(grant));
    o.insert(
        "clientAuth".into(),
        json!(if basic {
            "client_secret_basic"
        } else {
            "client_secret_post"
        }),
    );
    if pkce {
        o.insert("pkce".into(), json!(true));
    }
    match body_format.as_str() {
        "form" => {
            o.insert("tokenUrl".into(), json!(token_url));
            match &refresh {
                Some(r) => {
                    if !first.is_empty() {
                        o.insert("tokenParams".into(), Value::Object(first.clone()));
                    }
                    if !r.is_empty() {
                        o.insert("refreshParams".into(), Value::Object(r.clone()));
                    }
                }
                None if !first.is_empty() => {
                    o.insert("extraParams".into(), Value::Object(first.clone()));
                }
                None => {}
            }
            if mode == "OAUTH2_CC" && !scopes.is_empty() {
                let sep = string(entry, "scope_separator", p)?.unwrap_or_else(|| " ".into());
                o.insert("scopes".into(), json!([scopes.join(&sep)]));
            }
            if let Some(g) = &custom_grant {
                let mut fields = Map::new();
                fields.insert("grant_type".into(), json!(g));
                fields.extend(first.clone());
                o.remove("extraParams");
                o.insert(
                    "tokenRequest".into(),
                    custom_request(&token_url, fields, basic, BodyFormat::Form),
                );
            }
            if let Some(url) = string(entry, "refresh_url", p)? {
                let mut fields = Map::new();
                fields.insert("grant_type".into(), json!("refresh_token"));
                fields.insert("refresh_token".into(), json!("{{ refresh_token }}"));
                fields.extend(refresh.clone().unwrap_or_else(|| first.clone()));
                o.insert(
                    "refreshRequest".into(),
                    custom_request(&cx.t(&url, "refresh_url")?, fields, basic, BodyFormat::Form),
                );
            }
        }
        "json" | "query" => {
            if body_format == "query" && mode != "OAUTH2_CC" {
                return Err(err(format!("{p}.body_format"), "`query` is for OAUTH2_CC only"));
            }
            let format = if body_format == "json" {
                BodyFormat::Json
            } else {
                BodyFormat::Query
            };
            let mut fields = Map::new();
            match grant {
                "authorizationCode" => {
                    fields.insert("grant_type".into(), json!("authorization_code"));
                    fields.insert("code".into(), json!("{{ code }}"));
                    fields.insert("redirect_uri".into(), json!("{{ redirect_url }}"));
                    if pkce {
                        fields.insert("code_verifier".into(), json!("{{ code_verifier }}"));
                    }
                }
                "password" => {
                    fields.insert("grant_type".into(), json!("password"));
                    for k in ["username", "password"] {
                        let v = o.remove(k).unwrap_or_else(|| json!(format!("{{{{ {k} }}}}")));
                        fields.insert(k.into(), v);
                    }
                }
                _ => {
                    fields.insert("grant_type".into(), json!("client_credentials"));
                    if !scopes.is_empty() {
                        let sep = string(entry, "scope_separator", p)?.unwrap_or_else(|| " ".into());
                        fields.insert("scope".into(), json!(scopes.join(&sep)));
                    }
                }
            }
            fields.extend(first.clone());
            o.insert("tokenRequest".into(), custom_request(&token_url, fields, basic, format));
            if mode == "OAUTH2" {
                let mut fields = Map::new();
                fields.insert("grant_type".into(), json!("refresh_token"));
                fields.insert("refresh_token".into(), json!("{{ refresh_token }}"));
                fields.extend(refresh.clone().unwrap_or_else(|| first.clone()));
                let url = match string(entry, "refresh_url", p)? {
                    Some(u) => cx.t(&u, "refresh_url")?,
                    None => token_url.clone(),
                };
                o.insert("refreshRequest".into(), custom_request(&url, fields, basic, format));
            }
        }
        other => {
            return Err(err(
                format!("{p}.body_format"),
                format!(
                    "`{other}` cannot be expressed (form, json{})",
                    if mode == "OAUTH2_CC" { ", query" } else { "" }
                ),
            ));
        }
    }
    if custom_grant.is_some() && body_format != "form" {
        return Err(err(
            format!("{p}.token_params.grant_type"),
            "another grant with a JSON or query body cannot be expressed",
        ));
    }
    if let Some(c) = string(entry, "authorization_code_param_in_callback", p)? {
        o.insert("codeParameter".into(), json!(c));
    }
    if mode == "OAUTH2" {
        o.insert("authorizationUrl".into(), json!(authorization_url(entry, cx, &scopes)?));
        let used: Vec<&String> = cx
            .callback
            .iter()
            .filter(|c| {
                serde_json::to_string(&o)
                    .unwrap_or_default()
                    .contains(&format!("callback[\\\"{c}\\\"]"))
            })
            .collect();
        if !used.is_empty() {
            o.insert("callbackValues".into(), json!(used));
        }
    } else if entry.contains_key("authorization_url") {
        return Err(err(
            format!("{p}.authorization_url"),
            "a consent page with OAUTH2_CC cannot be expressed",
        ));
    }
    Ok(json!({"oauth2": o}))
}

/// How a custom token request carries its fields.
#[derive(Clone, Copy, PartialEq, Eq)]
enum BodyFormat {
    Form,
    Json,
    Query,
}

/// A custom token request: the fields in a form, a JSON body or the URL's query string, the
/// client's credentials in HTTP Basic or among the fields.
fn custom_request(url: &str, mut fields: Map<String, Value>, basic: bool, body: BodyFormat) -> Value {
    let mut headers = Map::new();
    headers.insert("Accept".into(), json!("application/json"));
    if basic {
        headers.insert(
            "Authorization".into(),
            json!("Basic {{ (client_id ~ \":\" ~ client_secret) | b64encode }}"),
        );
    } else {
        fields.insert("client_id".into(), json!("{{ client_id }}"));
        fields.insert("client_secret".into(), json!("{{ client_secret }}"));
    }
    if body == BodyFormat::Form {
        return json!({"url": url, "method": "POST", "headers": headers, "form": fields});
    }
    if body == BodyFormat::Query {
        let query = fields
            .iter()
            .map(|(k, v)| format!("{k}={}", urlencoded(v.as_str().unwrap_or_default())))
            .collect::<Vec<_>>()
            .join("&");
        let sep = if url.contains('?') { '&' } else { '?' };
        return json!({"url": format!("{url}{sep}{query}"), "method": "POST", "headers": headers});
    }
    headers.insert("Content-Type".into(), json!("application/json"));
    json!({"url": url, "method": "POST", "headers": headers, "body": json_template(&Value::Object(fields))})
}

/// The consent page: Nango's `authorization_url` with the client, redirect, scope and
/// `authorization_params`, then its replacements, empty parameters dropped where it says so.
fn authorization_url(entry: &Map<String, Value>, cx: &Ctx<'_>, scopes: &[String]) -> Result<String> {
    let p = cx.p;
    let auth_url =
        string(entry, "authorization_url", p)?.ok_or_else(|| err(format!("{p}.authorization_url"), "is missing"))?;
    if entry.contains_key("authorization_url_fragment") {
        return Err(err(
            format!("{p}.authorization_url_fragment"),
            "a consent URL with its query in the fragment cannot be expressed",
        ));
    }
    let mut url = cx.t(&auth_url, "authorization_url")?;
    if url.contains("callback[") {
        return Err(err(
            format!("{p}.authorization_url"),
            "reads a callback value, which is not known before the consent",
        ));
    }
    let mut params = vec![
        ("client_id".to_string(), "{{ client_id | urlencode }}".to_string()),
        ("redirect_uri".to_string(), "{{ redirect_url | urlencode }}".to_string()),
    ];
    if let Some(ap) = entry.get("authorization_params") {
        for (k, v) in string_map(ap, &format!("{p}.authorization_params"))? {
            params.retain(|(n, _)| n != &k);
            let v = cx.t(&scalar(&v), &format!("authorization_params.{k}"))?;
            params.push((k.clone(), enc(&v)));
        }
    }
    if !params.iter().any(|(k, _)| k == "response_type") {
        params.push(("response_type".into(), "code".into()));
    }
    let skip_encode = entry
        .get("authorization_url_skip_encode")
        .and_then(Value::as_array)
        .is_some_and(|a| a.iter().any(|v| v.as_str() == Some("scopes")));
    if !scopes.is_empty() {
        let sep = string(entry, "scope_separator", p)?.unwrap_or_else(|| " ".into());
        let joined = scopes.join(&sep);
        params.push(("scope".into(), if skip_encode { joined } else { enc(&joined) }));
    }
    if entry.get("authorization_url_skip_empty") == Some(&Value::Bool(true)) {
        params.retain(|(_, v)| !v.is_empty());
    }
    url.push(if url.contains('?') { '&' } else { '?' });
    url.push_str(
        &params
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("&"),
    );
    if let Some(r) = entry.get("authorization_url_replacements") {
        // As Nango's `String.replace`: the first occurrence of each.
        for (from, to) in string_map(r, &format!("{p}.authorization_url_replacements"))? {
            if from == "state" || from.contains("{{") {
                return Err(err(
                    format!("{p}.authorization_url_replacements.{from}"),
                    "renaming the state parameter cannot be expressed",
                ));
            }
            let to = cx.t(&scalar(&to), &format!("authorization_url_replacements.{from}"))?;
            url = url.replacen(&from, &to, 1);
        }
    }
    Ok(url)
}

/// TWO_STEP: a login request (after `additional_steps`' requests) whose answer holds the token.
fn two_step(entry: &Map<String, Value>, cx: &Ctx<'_>) -> Result<Value> {
    let p = cx.p;
    let body_format = string(entry, "body_format", p)?.unwrap_or_else(|| "json".into());
    // Nango's first request and its `additional_steps` in order; the last one's answer is the
    // token response, the earlier ones are chained steps (`${stepN.x}`: request N's answer).
    let mut requests: Vec<(String, &Map<String, Value>)> = vec![(p.to_string(), entry)];
    if let Some(steps) = entry.get("additional_steps") {
        let steps = steps
            .as_array()
            .ok_or_else(|| err(format!("{p}.additional_steps"), "must be a list"))?;
        for (i, s) in steps.iter().enumerate() {
            requests.push((
                format!("{p}.additional_steps[{i}]"),
                object(s, &format!("{p}.additional_steps[{i}]"))?,
            ));
        }
    }
    let mut rendered = Vec::new();
    for (field, r) in &requests {
        let default_format = if field == p { body_format.clone() } else { "json".into() };
        rendered.push(request(r, cx, field, &default_format)?);
    }
    // Which values each step's answer must give: every `${stepN.path}` the entry reads.
    let raw = serde_json::to_string(entry).unwrap_or_default();
    let mut steps = Vec::new();
    for (n, req) in rendered.iter().enumerate().take(rendered.len() - 1) {
        let name = format!("step{}", n + 1);
        let needle = format!("${{{name}.");
        let mut extract = Map::new();
        let mut rest = raw.as_str();
        while let Some(i) = rest.find(&needle) {
            rest = &rest[i + needle.len()..];
            let path: String = rest.chars().take_while(|c| *c != '}' && *c != '"').collect();
            if !path.is_empty() {
                extract.insert(step_key(&path), json!({"jsonPath": path}));
            }
        }
        if extract.is_empty() {
            return Err(err(
                format!("{p}.additional_steps"),
                format!("nothing reads the answer of request {}", n + 1),
            ));
        }
        let mut step = req.clone();
        step["name"] = json!(name);
        step["extract"] = Value::Object(extract);
        steps.push(step);
    }
    let mut rt = Map::new();
    if !steps.is_empty() {
        rt.insert("steps".into(), Value::Array(steps));
    }
    rt.insert("authorization".into(), rendered.last().cloned().unwrap_or_default());
    let response = entry
        .get("token_response")
        .map(|r| object(r, &format!("{p}.token_response")))
        .transpose()?
        .ok_or_else(|| err(format!("{p}.token_response"), "is missing"))?;
    let path = |k: &str| -> Result<Option<String>> {
        Ok(string(response, k, &format!("{p}.token_response"))?.filter(|s| !s.is_empty()))
    };
    let token = path("token")?.ok_or_else(|| {
        err(
            format!("{p}.token_response.token"),
            "is empty: a token that is the whole answer body cannot be extracted",
        )
    })?;
    rt.insert("accessToken".into(), json!({"jsonPath": token}));
    if let Some(r) = path("refresh_token")? {
        rt.insert("refreshToken".into(), json!({"jsonPath": r}));
    }
    if let Some(e) = path("token_expiration")? {
        match string(response, "token_expiration_strategy", &format!("{p}.token_response"))?.as_deref() {
            Some("expireIn") => rt.insert("expiresIn".into(), json!({"jsonPath": e})),
            None | Some("expireAt") => rt.insert("expiresAt".into(), json!({"jsonPath": e})),
            Some(other) => {
                return Err(err(
                    format!("{p}.token_response.token_expiration_strategy"),
                    format!("`{other}` is not known"),
                ));
            }
        };
    }
    let refresh_params = entry.get("refresh_token_params");
    let refresh_headers = entry.get("refresh_token_headers");
    if refresh_params.is_some() || refresh_headers.is_some() {
        let mut r = Map::new();
        for (k, v) in [
            ("token_params", refresh_params),
            ("token_headers", refresh_headers.or(entry.get("token_headers"))),
        ] {
            if let Some(v) = v {
                r.insert(k.into(), v.clone());
            }
        }
        let url = entry
            .get("refresh_url")
            .or(entry.get("token_url"))
            .cloned()
            .unwrap_or_default();
        r.insert("token_url".into(), url);
        if let Some(m) = entry.get("token_request_method") {
            r.insert("token_request_method".into(), m.clone());
        }
        let refresh = request(&r, cx, &format!("{p}.refresh_token_params"), &body_format)?;
        rt.insert("refresh".into(), refresh);
    } else if entry.contains_key("refresh_url") {
        return Err(err(
            format!("{p}.refresh_url"),
            "a refresh URL without refresh_token_params cannot be expressed",
        ));
    }
    let mut spec = json!({"refreshableToken": rt});
    match entry.get("token_expires_in_ms").and_then(Value::as_u64) {
        Some(0) | None => {}
        Some(ms) => spec["renewal"] = json!({"refreshInterval": format!("{}s", ms.div_ceil(1000))}),
    }
    Ok(spec)
}

/// One TWO_STEP request (the first one, a step, or the refresh): `token_url`,
/// `token_request_method`, `token_headers`, `token_params` as `body_format` says.
fn request(r: &Map<String, Value>, cx: &Ctx<'_>, field: &str, default_format: &str) -> Result<Value> {
    let t = |s: &str, k: &str| convert(s, &format!("{field}.{k}"), &cx.callback);
    let url = r
        .get("token_url")
        .and_then(Value::as_str)
        .ok_or_else(|| err(format!("{field}.token_url"), "is missing"))?;
    let mut out = Map::new();
    out.insert("url".into(), json!(t(url, "token_url")?));
    let method = string(r, "token_request_method", field)?.unwrap_or_else(|| "POST".into());
    out.insert(
        "method".into(),
        super::method(&method, &format!("{field}.token_request_method"))?,
    );
    let mut headers = Map::new();
    if let Some(h) = r.get("token_headers") {
        for (k, v) in string_map(h, &format!("{field}.token_headers"))? {
            headers.insert(k.clone(), json!(t(&scalar(&v), &format!("token_headers.{k}"))?));
        }
    }
    let format = string(r, "body_format", field)?.unwrap_or_else(|| default_format.to_string());
    let params = r.get("token_params");
    if method.eq_ignore_ascii_case("GET") {
        if params.is_some_and(|p| p.as_object().is_some_and(|m| !m.is_empty())) {
            return Err(err(
                format!("{field}.token_params"),
                "parameters of a GET request cannot be expressed",
            ));
        }
    } else {
        match format.as_str() {
            "json" => {
                let body = match params {
                    Some(v) => convert_value(v, cx, &format!("{field}.token_params"))?,
                    None => json!({}),
                };
                if !headers.keys().any(|k| k.eq_ignore_ascii_case("content-type")) {
                    headers.insert("Content-Type".into(), json!("application/json"));
                }
                out.insert("body".into(), json!(json_template(&body)));
            }
            "form" => {
                let mut form = Map::new();
                if let Some(v) = params {
                    for (k, v) in string_map(v, &format!("{field}.token_params"))? {
                        if v.is_object() || v.is_array() {
                            return Err(err(
                                format!("{field}.token_params.{k}"),
                                "a nested value in a form cannot be expressed",
                            ));
                        }
                        form.insert(k.clone(), json!(t(&scalar(&v), &format!("token_params.{k}"))?));
                    }
                }
                out.insert("form".into(), Value::Object(form));
            }
            other => {
                return Err(err(
                    format!("{field}.body_format"),
                    format!("`{other}` bodies cannot be expressed (json, form)"),
                ));
            }
        }
    }
    if !headers.is_empty() {
        out.insert("headers".into(), Value::Object(headers));
    }
    Ok(Value::Object(out))
}

/// A JSON value of templates, each string converted.
fn convert_value(v: &Value, cx: &Ctx<'_>, field: &str) -> Result<Value> {
    Ok(match v {
        Value::String(s) => json!(convert(s, field, &cx.callback)?),
        Value::Object(m) => {
            let mut out = Map::new();
            for (k, v) in m {
                out.insert(k.clone(), convert_value(v, cx, &format!("{field}.{k}"))?);
            }
            Value::Object(out)
        }
        Value::Array(a) => Value::Array(a.iter().map(|v| convert_value(v, cx, field)).collect::<Result<_>>()?),
        other => other.clone(),
    })
}

/// The text of a JSON body whose string values are templates: each value is rendered and
/// JSON-quoted (`| tojson`), so a credential with `"` in it stays one string.
fn json_template(v: &Value) -> String {
    match v {
        Value::String(s) if s.contains("{{") => format!("{{{{ {} | tojson }}}}", expression(s)),
        Value::Object(m) => format!(
            "{{{}}}",
            m.iter()
                .map(|(k, v)| format!("{}: {}", Value::String(k.clone()), json_template(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Value::Array(a) => format!("[{}]", a.iter().map(json_template).collect::<Vec<_>>().join(", ")),
        other => other.to_string(),
    }
}

/// A template that is text and `{{ expr }}` parts, as one expression (`"a" ~ (x) ~ "b"`).
fn expression(template: &str) -> String {
    let mut parts = Vec::new();
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        if start > 0 {
            parts.push(Value::String(rest[..start].to_string()).to_string());
        }
        let end = rest[start..].find("}}").map(|e| start + e).unwrap_or(rest.len());
        parts.push(format!("({})", rest[start + 2..end].trim()));
        rest = rest.get(end + 2..).unwrap_or_default();
    }
    if !rest.is_empty() {
        parts.push(Value::String(rest.to_string()).to_string());
    }
    parts.join(" ~ ")
}

/// The published headers (`proxy.headers`), query parameters (`proxy.query`, as `query.json`)
/// and response fields (`token_response_metadata`).
fn output(entry: &Map<String, Value>, cx: &Ctx<'_>, mode: &str) -> Result<Map<String, Value>> {
    let p = cx.p;
    let mut output = Map::new();
    let mut header = Map::new();
    let mut extra = Map::new();
    let mut templates = Map::new();
    let mut query = Map::new();
    if let Some(proxy) = entry.get("proxy") {
        let proxy = object(proxy, &format!("{p}.proxy"))?;
        if let Some(h) = proxy.get("headers") {
            for (k, v) in string_map(h, &format!("{p}.proxy.headers"))? {
                let v = cx.t(&scalar(&v), &format!("proxy.headers.{k}"))?;
                if k.eq_ignore_ascii_case("authorization") {
                    header.insert("name".into(), json!("Authorization"));
                    header.insert("value".into(), json!(v));
                } else {
                    extra.insert(k, json!(v));
                }
            }
        }
        if let Some(q) = proxy.get("query") {
            for (k, v) in string_map(q, &format!("{p}.proxy.query"))? {
                query.insert(k.clone(), json!(cx.t(&scalar(&v), &format!("proxy.query.{k}"))?));
            }
        }
    }
    match mode {
        "API_KEY" if header.is_empty() && extra.is_empty() && query.is_empty() => {
            return Err(err(
                format!("{p}.proxy.headers"),
                "is missing: where does the API key go?",
            ));
        }
        "API_KEY" if header.is_empty() && extra.is_empty() => {
            // The key goes only in the query string: the published Authorization header is
            // the key itself, which the provider ignores; `query.json` is what to send.
            header.insert("name".into(), json!("X-Api-Key"));
            header.insert("value".into(), json!("{{ apiKey }}"));
        }
        "BASIC" if !header.contains_key("value") => {
            header.insert("name".into(), json!("Authorization"));
            header.insert("value".into(), json!("Basic {{ access_token | b64encode }}"));
        }
        _ => {}
    }
    if !extra.is_empty() {
        header.insert("extra".into(), Value::Object(extra));
    }
    if !header.is_empty() {
        output.insert("header".into(), Value::Object(header));
    }
    if !query.is_empty() {
        templates.insert("query.json".into(), json!(json_template(&Value::Object(query))));
    }
    for m in entry
        .get("token_response_metadata")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let m = m
            .as_str()
            .ok_or_else(|| err(format!("{p}.token_response_metadata"), "must be strings"))?;
        if m.contains('.') || !is_key_name(m) {
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
    Ok(output)
}

/// A scalar of the file as text (`expires_in: 1800` is the text `1800`).
fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn enc(s: &str) -> String {
    if s.contains("{{") { s.to_string() } else { urlencoded(s) }
}

fn urlencoded(s: &str) -> String {
    if s.contains("{{") {
        // A template value: encoded when rendered.
        return s.replace(" }}", " | urlencode }}");
    }
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// The key under which a chained step keeps the value at `path` of its answer.
fn step_key(path: &str) -> String {
    path.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

/// Whether `n` can be a template variable (and so a credentials key).
fn is_key_name(n: &str) -> bool {
    n.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// `${connectionConfig.x}`, `${credentials.x}` → `{{ x }}` (a callback value of
/// `redirect_uri_metadata`: `{{ callback["x"] }}`); `${apiKey}`, `${username}`, `${password}`
/// as they are; `${accessToken}` → `{{ access_token }}`; `${clientId}` → `{{ client_id }}`;
/// `${refresh_token}`; `${base64(...)}` → `b64encode`; `${stepN.path}` → a chained step's
/// value. Of `a || b`, Nango's fallback, the first is taken.
fn convert(s: &str, field: &str, callback: &[String]) -> Result<String> {
    let s = match s.split_once(" || ") {
        Some((first, _)) => first,
        None => s,
    };
    let mut out = String::new();
    let mut rest = s;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let (expr, len) = braced(&rest[start + 2..]).ok_or_else(|| err(field, "has an unclosed `${`"))?;
        out.push_str(&format!("{{{{ {} }}}}", expr_of(expr, field, callback)?));
        rest = &rest[start + 2 + len + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// The text up to the `}` that closes an opened `${`, and its length.
fn braced(s: &str) -> Option<(&str, usize)> {
    let mut depth = 0usize;
    for (i, c) in s.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => return Some((&s[..i], i)),
            '}' => depth -= 1,
            _ => {}
        }
    }
    None
}

/// One `${...}` as a template expression.
fn expr_of(expr: &str, field: &str, callback: &[String]) -> Result<String> {
    if let Some(inner) = expr.strip_prefix("base64(").and_then(|e| e.strip_suffix(')')) {
        let t = convert(inner, field, callback)?;
        return Ok(format!("({}) | b64encode", expression(&t)));
    }
    if let Some(x) = expr
        .strip_prefix("connectionConfig.")
        .or_else(|| expr.strip_prefix("credentials."))
    {
        if callback.iter().any(|c| c == x) {
            return Ok(format!("callback[{}]", Value::String(x.into())));
        }
        if is_key_name(x) {
            return Ok(x.to_string());
        }
        return Err(err(field, format!("`${{{expr}}}` cannot be expressed")));
    }
    if let Some((step, path)) = expr.split_once('.')
        && step
            .strip_prefix("step")
            .is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()))
    {
        return Ok(format!("steps.{step}.{}", step_key(path)));
    }
    Ok(match expr {
        "accessToken" => "access_token".into(),
        "clientId" => "client_id".into(),
        "clientSecret" => "client_secret".into(),
        "apiKey" | "username" | "password" | "refresh_token" => expr.to_string(),
        other => return Err(err(field, format!("`${{{other}}}` cannot be expressed"))),
    })
}
