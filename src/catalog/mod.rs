//! The built-in provider catalog: `spec.provider: NAME` fills in what the resource's scheme
//! block (and `output`, `renewal`) leave out. Each entry is a bundled example
//! (`examples/<name>/connectorauth.yaml`, compiled in), so the catalog and the examples cannot
//! drift apart, and `tests/providers.rs` runs every one against its provider's emulator.

use std::borrow::Cow;

use serde_json::Value;

use crate::api::ConnectorAuthSpec;
use crate::engine::EngineError;

/// One provider.
pub struct Entry {
    pub name: &'static str,
    pub display_name: &'static str,
    /// Where the behaviour is documented.
    pub source: &'static str,
    /// What is unusual about it.
    pub quirks: &'static str,
    manifest: &'static str,
}

macro_rules! entry {
    ($name:literal, $display:literal, $source:literal, $quirks:literal) => {
        Entry {
            name: $name,
            display_name: $display,
            source: $source,
            quirks: $quirks,
            manifest: include_str!(concat!("../../examples/", $name, "/connectorauth.yaml")),
        }
    };
}

static ENTRIES: &[Entry] = &[
    entry!(
        "docuware",
        "DocuWare",
        "https://developer.docuware.com/",
        "form login; the token is the `.DWPLATFORMAUTH` cookie; the same User-Agent on every call; no stated lifetime (renewed hourly)"
    ),
    entry!(
        "entra-certificate",
        "Microsoft Entra ID (certificate credential)",
        "https://learn.microsoft.com/entra/identity-platform/certificate-credentials",
        "client credentials with `private_key_jwt`: a client assertion signed with the certificate's key, `x5t`/`x5t#S256` headers, a fresh `jti`; scope `<resource>/.default`"
    ),
    entry!(
        "github-app",
        "GitHub App (installation token)",
        "https://docs.github.com/apps/creating-github-apps/authenticating-with-a-github-app/generating-an-installation-access-token-for-a-github-app",
        "an RS256 app JWT (iss = app id, at most 10 minutes) exchanged for an installation token that lives an hour; no refresh token"
    ),
    entry!(
        "google",
        "Google (Admin SDK)",
        "https://developers.google.com/identity/protocols/oauth2/web-server",
        "authorization code with `access_type=offline&prompt=consent`; client secret in the form; refresh answers carry no refresh token"
    ),
    entry!(
        "google-service-account",
        "Google (service account)",
        "https://developers.google.com/identity/protocols/oauth2/service-account",
        "JWT bearer grant signed with the service-account JSON key; `sub` for domain-wide delegation; tokens live an hour, no refresh token"
    ),
    entry!(
        "poweroffice-go",
        "PowerOffice Go (demo)",
        "https://developer.poweroffice.net/",
        "client credentials with HTTP Basic; `Ocp-Apim-Subscription-Key` on the token request and every API call"
    ),
    entry!(
        "salesforce-jwt",
        "Salesforce (JWT bearer flow)",
        "https://help.salesforce.com/s/articleView?id=sf.remoteaccess_oauth_jwt_flow.htm",
        "JWT bearer grant (iss = consumer key, sub = user, aud = the login host); the answer has no `expires_in` (session timeout applies)"
    ),
    entry!(
        "snov-io",
        "snov.io",
        "https://snov.io/api",
        "client credentials as query parameters of a GET; no refresh token"
    ),
    entry!(
        "superoffice",
        "SuperOffice (development)",
        "https://docs.superoffice.com/",
        "refresh token grant; the ticket is a claim of the id_token; `SO-AppToken` header with the client secret"
    ),
    entry!(
        "tripletex",
        "Tripletex (test)",
        "https://developer.tripletex.no/",
        "`PUT /v2/token/session/:create` with `expirationDate`; HTTP Basic with user `0`"
    ),
    entry!(
        "webcrm",
        "webCRM",
        "https://api.webcrm.com/",
        "application token exchanged for a JWT; expiry only in the JWT `exp`; separate refresh endpoint"
    ),
    entry!(
        "wix",
        "Wix",
        "https://dev.wix.com/docs/rest",
        "the API key as-is in `Authorization` (no Bearer), plus `wix-site-id`"
    ),
    entry!(
        "woocommerce",
        "WooCommerce",
        "https://woocommerce.github.io/woocommerce-rest-api-docs/",
        "static consumer key and secret as HTTP Basic; no token request"
    ),
];

/// Every built-in entry, by name.
pub fn entries() -> &'static [Entry] {
    ENTRIES
}

pub fn get(name: &str) -> Option<&'static Entry> {
    ENTRIES.iter().find(|e| e.name == name)
}

impl Entry {
    /// The entry's settings: the example's `spec` without `credentialsRef`.
    pub fn spec(&self) -> Value {
        let doc: Value = serde_saphyr::from_str(self.manifest).expect("bundled example is YAML");
        let mut spec = doc["spec"].clone();
        if let Some(m) = spec.as_object_mut() {
            m.remove("credentialsRef");
        }
        spec
    }

    /// The scheme block the entry uses (`oauth2`, `apiKey`, …).
    pub fn scheme(&self) -> String {
        let spec = self.spec();
        [
            "refreshableToken",
            "oauth2",
            "apiKey",
            "jwt",
            "tripletex",
            "superOffice",
            "githubApp",
        ]
        .into_iter()
        .find(|k| spec.get(*k).is_some())
        .unwrap_or("?")
        .to_string()
    }

    /// The credentials keys the entry reads (its templates and its scheme's defaults), sorted.
    pub fn credentials(&self) -> Vec<String> {
        let mut spec = self.spec();
        spec["credentialsRef"] = serde_json::json!({"name": "c"});
        let templates = crate::engine::Templates::new();
        let Ok(spec) = serde_json::from_value::<ConnectorAuthSpec>(spec) else {
            return vec![];
        };
        let Ok(flow) = crate::engine::flow::compile(&spec, &templates) else {
            return vec![];
        };
        let mut keys: Vec<String> = flow
            .templates()
            .iter()
            .flat_map(|t| templates.variables(&t.source))
            .filter(|v| !crate::import::PROVIDED.contains(&v.as_str()))
            .collect();
        keys.sort();
        keys.dedup();
        keys
    }
}

/// The spec with its provider's settings filled in (unchanged without `spec.provider`).
pub fn resolve(spec: &ConnectorAuthSpec) -> Result<Cow<'_, ConnectorAuthSpec>, EngineError> {
    let Some(name) = &spec.provider else {
        return Ok(Cow::Borrowed(spec));
    };
    let entry = get(name).ok_or_else(|| EngineError::InvalidSpec {
        field: "spec.provider".into(),
        reason: format!(
            "`{name}` is not a built-in provider; known: {}",
            ENTRIES.iter().map(|e| e.name).collect::<Vec<_>>().join(", ")
        ),
    })?;
    resolve_with(&entry.spec(), spec).map(Cow::Owned)
}

/// `spec` over the provider settings `base`: objects are merged, the resource's values win.
pub fn resolve_with(base: &Value, spec: &ConnectorAuthSpec) -> Result<ConnectorAuthSpec, EngineError> {
    let over = serde_json::to_value(spec).expect("a spec serializes");
    let own_scheme = spec.scheme.name();
    if base.get(own_scheme).is_none() {
        return Err(EngineError::InvalidSpec {
            field: "spec.provider".into(),
            reason: format!(
                "the provider's scheme is not `{own_scheme}`; write its scheme block (e.g. `{}: {{}}`)",
                [
                    "refreshableToken",
                    "oauth2",
                    "apiKey",
                    "jwt",
                    "tripletex",
                    "superOffice"
                ]
                .into_iter()
                .find(|k| base.get(*k).is_some())
                .unwrap_or("?")
            ),
        });
    }
    let mut merged = merge(base.clone(), over);
    if let Some(m) = merged.as_object_mut() {
        m.remove("provider");
    }
    serde_json::from_value(merged).map_err(|e| EngineError::InvalidSpec {
        field: "spec.provider".into(),
        reason: format!("the provider's settings and the resource's do not combine: {e}"),
    })
}

fn merge(base: Value, over: Value) -> Value {
    match (base, over) {
        (Value::Object(mut b), Value::Object(o)) => {
            for (k, v) in o {
                let merged = match b.remove(&k) {
                    Some(bv) => merge(bv, v),
                    None => v,
                };
                b.insert(k, merged);
            }
            Value::Object(b)
        }
        (_, o) => o,
    }
}

/// The README's provider table.
pub fn markdown_table() -> String {
    let mut s =
        String::from("| provider | name | scheme | credentials keys | quirks | source |\n|---|---|---|---|---|---|\n");
    for e in ENTRIES {
        s.push_str(&format!(
            "| `{}` | {} | `{}` | {} | {} | <{}> |\n",
            e.name,
            e.display_name,
            e.scheme(),
            e.credentials()
                .iter()
                .map(|k| format!("`{k}`"))
                .collect::<Vec<_>>()
                .join(", "),
            e.quirks,
            e.source
        ));
    }
    s
}
