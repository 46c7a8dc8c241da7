//! Sesam: a connector manifest's authentication settings: `auth` (`oauth2`, `api_key`),
//! `auth_variant` (`superoffice-ticket`; `tripletex`, `jwt`, `service_account`) and
//! `oauth2.login_url`, `oauth2.token_url`, `oauth2.scopes`. The secrets keep Sesam's names
//! (`oauth_client_id`, `api_key`, `consumer_token`, …) and the output Secret publishes the
//! access token under the name Sesam injects (`oauth_access_token`, `api_key`).

use serde_json::{Map, Value, json};

use super::{Imported, Result, err, object, string};

/// Manifest keys that are not about authentication.
const OTHER_KEYS: &[&str] = &[
    "datatypes",
    "system-template",
    "system_template",
    "additional_parameters",
    "requires_service_api_access",
    "use_webhook_secret",
];

pub fn import(text: &str) -> Result<Imported> {
    let mut imported = Imported::default();
    let doc = super::parse_json(text, &mut imported.notes)?;
    let top = object(&doc, "(input)")?;
    if let Some(k) = top
        .keys()
        .find(|k| !["auth", "auth_variant", "oauth2"].contains(&k.as_str()) && !OTHER_KEYS.contains(&k.as_str()))
    {
        return Err(err(k.as_str(), "is not understood by the importer"));
    }
    let auth = string(top, "auth", "(input)")?.ok_or_else(|| err("auth", "is missing (oauth2 or api_key)"))?;
    let variant = string(top, "auth_variant", "(input)")?;
    let spec = match (auth.as_str(), variant.as_deref()) {
        ("oauth2", None) => {
            let o = oauth2(top, &mut imported)?;
            json!({"oauth2": o, "output": {"template": {"oauth_access_token": "{{ access_token }}"}}})
        }
        ("oauth2", Some("superoffice-ticket")) => {
            let mut o = oauth2(top, &mut imported)?;
            o.insert("clientAuth".into(), json!("client_secret_post"));
            if !top.contains_key("oauth2") || o.get("tokenUrl").is_none() {
                o.insert("environment".into(), json!("online"));
            }
            imported.notes.push(
                "so_ticket is published as a key of the output Secret, with headers Authorization: SOTicket <ticket> \
                 and SO-AppToken: <client secret>."
                    .into(),
            );
            json!({"superOffice": o, "output": {"template": {"oauth_access_token": "{{ access_token }}"}}})
        }
        ("api_key", None) => {
            imported.key("api_key", "The key used to authenticate the client.");
            json!({"apiKey": {"key": "{{ api_key }}"}, "output": {"template": {"api_key": "{{ access_token }}"}}})
        }
        ("api_key", Some("tripletex")) => {
            imported.key(
                "consumer_token",
                "The unique key to create an integration with Tripletex.",
            );
            imported.key(
                "employee_token",
                "The token created by the administrator of the Tripletex account.",
            );
            imported.notes.push(
                "Tripletex production is https://tripletex.no (the default); test accounts use \
                 spec.tripletex.baseUrl: https://api-test.tripletex.tech."
                    .into(),
            );
            json!({"tripletex": {}})
        }
        ("api_key", Some(v @ ("jwt" | "service_account"))) => {
            return Err(err(
                "auth_variant",
                format!(
                    "`{v}`: the manifest does not say where the token is requested (Sesam's connector code does); \
                     write a `jwt` block by hand, see examples/webcrm"
                ),
            ));
        }
        (a, Some(v)) => return Err(err("auth_variant", format!("`{v}` is not known for auth `{a}`"))),
        (a, None) => return Err(err("auth", format!("`{a}` is not known (oauth2 or api_key)"))),
    };
    imported.spec = spec;
    Ok(imported)
}

fn oauth2(top: &Map<String, Value>, imported: &mut Imported) -> Result<Map<String, Value>> {
    let empty = Map::new();
    let o = match top.get("oauth2") {
        Some(v) => object(v, "oauth2")?,
        None => &empty,
    };
    if let Some(k) = o
        .keys()
        .find(|k| !["login_url", "token_url", "scopes"].contains(&k.as_str()))
    {
        return Err(err(format!("oauth2.{k}"), "is not understood by the importer"));
    }
    imported.key("oauth_client_id", "Public identifier for the client.");
    imported.key(
        "oauth_client_secret",
        "The confidential key assigned to the client application.",
    );
    imported.key(
        "oauth_refresh_token",
        "The token used to refresh the access token, from Sesam's onboarding (optional: without it, consent is asked for).",
    );
    let mut out = Map::new();
    let scopes: Vec<String> = match o.get("scopes") {
        None | Some(Value::Null) => vec![],
        Some(Value::String(s)) => s.split_whitespace().map(str::to_string).collect(),
        Some(Value::Array(a)) => a
            .iter()
            .map(|s| {
                s.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| err("oauth2.scopes", "must be strings"))
            })
            .collect::<Result<_>>()?,
        Some(_) => return Err(err("oauth2.scopes", "must be a string or a list of strings")),
    };
    out.insert("grantType".into(), json!("authorizationCode"));
    if let Some(t) = string(o, "token_url", "oauth2")? {
        out.insert("tokenUrl".into(), Value::String(t));
    }
    out.insert("clientId".into(), json!("{{ oauth_client_id }}"));
    out.insert("clientSecret".into(), json!("{{ oauth_client_secret }}"));
    out.insert("refreshTokenKey".into(), json!("oauth_refresh_token"));
    let login =
        string(o, "login_url", "oauth2")?.ok_or_else(|| err("oauth2.login_url", "is missing (needed for consent)"))?;
    let mut url = format!(
        "{login}{}client_id={{{{ oauth_client_id | urlencode }}}}&redirect_uri={{{{ redirect_url | urlencode }}}}&response_type=code",
        if login.contains('?') { "&" } else { "?" }
    );
    if !scopes.is_empty() {
        url.push_str(&format!(
            "&scope={}",
            url::form_urlencoded::byte_serialize(scopes.join(" ").as_bytes()).collect::<String>()
        ));
        out.insert("scopes".into(), json!(scopes));
    }
    out.insert("authorizationUrl".into(), Value::String(url));
    if out.get("tokenUrl").is_none() && top.get("auth_variant").is_none() {
        return Err(err("oauth2.token_url", "is missing"));
    }
    Ok(out)
}
