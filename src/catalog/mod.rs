//! The provider catalog: `spec.provider: NAME` fills in what the resource's scheme block (and
//! `output`, `renewal`) leave out, from a ClusterConnectorAuthProvider of that name if the
//! cluster has one, else from a built-in entry. Built-in entries are the files
//! `catalog/<name>.yaml`, each a ClusterConnectorAuthProvider manifest (so a platform team can
//! copy one and change it), compiled in; `tests/catalog_entries.rs` runs every one against an
//! emulator of its provider's documented behaviour.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::LazyLock;

use serde_json::Value;

use crate::api::ConnectorAuthSpec;
use crate::api::provider::{ClusterConnectorAuthProvider, ClusterConnectorAuthProviderSpec};
use crate::engine::spec::{Publish, Scheme};
use crate::engine::{self, Engine, EngineError, Flow, SecretString, Spec};

/// One built-in provider.
pub struct Entry {
    pub name: &'static str,
    /// The manifest as written in `catalog/<name>.yaml`.
    pub manifest: &'static str,
    pub provider: ClusterConnectorAuthProviderSpec,
}

macro_rules! built_in {
    ($($name:literal),* $(,)?) => {
        &[$(($name, include_str!(concat!("../../catalog/", $name, ".yaml"))),)*]
    };
}

/// Every `catalog/*.yaml`, by name (`tests/catalog_resolution.rs` checks that none is left out).
static FILES: &[(&str, &str)] = built_in![
    "adobe",
    "airtable",
    "amazon-sp-api",
    "amazon-sp-api-website",
    "asana",
    "ashby",
    "atlassian",
    "auth0",
    "aws-sts-web-identity",
    "bamboohr",
    "bitbucket",
    "box",
    "box-ccg",
    "calendly",
    "clickup",
    "clickup-personal-token",
    "close",
    "datadog",
    "discord",
    "docusign",
    "docuware",
    "dropbox",
    "dynamics-365-business-central",
    "ebay",
    "entra-certificate",
    "entra-id",
    "entra-id-delegated",
    "entra-workload-identity",
    "exact-online",
    "figma-personal-token",
    "fortnox",
    "freshdesk",
    "gcp-workload-identity",
    "github-app",
    "github-oauth-app",
    "gitlab",
    "gmail",
    "gong",
    "google",
    "google-calendar",
    "google-drive",
    "google-service-account",
    "gorgias",
    "greenhouse",
    "gusto",
    "harvest-personal-token",
    "help-scout",
    "hubspot",
    "intercom",
    "keycloak",
    "klaviyo",
    "klaviyo-private-key",
    "lever",
    "linear",
    "linkedin",
    "mailchimp",
    "mailgun",
    "miro",
    "monday",
    "netsuite",
    "notion",
    "okta",
    "outreach",
    "pagerduty",
    "paypal",
    "pipedrive",
    "postmark",
    "postmark-account",
    "poweroffice-go",
    "quickbooks-online",
    "reddit",
    "ringcentral",
    "salesforce",
    "salesforce-client-credentials",
    "salesforce-jwt",
    "salesloft",
    "sendgrid",
    "shopify",
    "slack",
    "smartsheet",
    "snov-io",
    "spotify",
    "spotify-client-credentials",
    "square",
    "square-access-token",
    "stripe",
    "stripe-connect",
    "superoffice",
    "token-exchange",
    "tripletex",
    "twilio",
    "twitch",
    "twitch-user",
    "typeform",
    "typeform-personal-token",
    "vault-jwt",
    "visma-eaccounting",
    "webcrm",
    "webflow",
    "webflow-site-token",
    "wix",
    "woocommerce",
    "workable",
    "workday",
    "x",
    "xero",
    "zendesk",
    "zoho",
    "zoom",
    "zoom-user",
];

static ENTRIES: LazyLock<Vec<Entry>> = LazyLock::new(|| {
    FILES
        .iter()
        .map(|(name, manifest)| {
            let parsed = parse(manifest).unwrap_or_else(|e| panic!("catalog/{name}.yaml: {e}"));
            assert_eq!(
                parsed.metadata.name.as_deref(),
                Some(*name),
                "catalog/{name}.yaml: metadata.name"
            );
            Entry {
                name,
                manifest,
                provider: parsed.spec,
            }
        })
        .collect()
});

/// Parses a provider manifest, checking it against the CRD's CEL rules as an API server would.
pub fn parse(manifest: &str) -> Result<ClusterConnectorAuthProvider, String> {
    let doc: Value = serde_saphyr::from_str(manifest).map_err(|e| format!("not YAML: {e}"))?;
    crate::api::provider::validate_document(&doc)?;
    serde_json::from_value(doc).map_err(|e| e.to_string())
}

/// Every built-in entry, by name.
pub fn entries() -> &'static [Entry] {
    &ENTRIES
}

pub fn get(name: &str) -> Option<&'static Entry> {
    ENTRIES.iter().find(|e| e.name == name)
}

impl Entry {
    pub fn display_name(&self) -> &str {
        &self.provider.display_name
    }

    pub fn source(&self) -> &str {
        &self.provider.source
    }

    /// When the entry was last checked against its documentation (`YYYY-MM-DD`).
    pub fn checked(&self) -> &str {
        &self.provider.checked
    }

    pub fn quirks(&self) -> &str {
        &self.provider.quirks
    }

    /// The entry's settings, as a spec fragment (scheme block, `output`, `renewal`).
    pub fn spec(&self) -> Value {
        settings_value(&self.provider)
    }

    /// The scheme block the entry uses (`oauth2`, `apiKey`, …).
    pub fn scheme(&self) -> &'static str {
        self.provider.settings.scheme.name()
    }

    /// The credentials keys the entry reads (its templates and its scheme's defaults) that are
    /// not parameters, sorted.
    pub fn credentials(&self) -> Vec<String> {
        let mut spec = self.spec();
        spec["credentialsRef"] = serde_json::json!({"name": "c"});
        let templates = crate::engine::Templates::new();
        let Ok(spec) = serde_json::from_value::<ConnectorAuthSpec>(spec) else {
            return vec![];
        };
        let Ok(flow) = crate::engine::compile(&Resolved(Cow::Borrowed(&spec)).engine(), &templates) else {
            return vec![];
        };
        let params = self.params();
        let mut keys: Vec<String> = flow
            .templates()
            .iter()
            .flat_map(|t| templates.variables(&t.source))
            .filter(|v| !crate::engine::template::PROVIDED_VARIABLES.contains(&v.as_str()) && !params.contains(v))
            .collect();
        keys.sort();
        keys.dedup();
        keys
    }

    /// The names of the entry's parameters.
    pub fn params(&self) -> Vec<String> {
        self.provider.params.iter().map(|p| p.name.clone()).collect()
    }
}

fn settings_value(p: &ClusterConnectorAuthProviderSpec) -> Value {
    serde_json::to_value(&p.settings).expect("settings serialize")
}

/// Which entry `spec.provider` names: a ClusterConnectorAuthProvider (`cluster`, when the
/// cluster has one of that name) wins over a built-in entry.
pub enum Found<'a> {
    Cluster(&'a ClusterConnectorAuthProviderSpec),
    BuiltIn(&'static Entry),
}

impl Found<'_> {
    fn provider(&self) -> &ClusterConnectorAuthProviderSpec {
        match self {
            Found::Cluster(p) => p,
            Found::BuiltIn(e) => &e.provider,
        }
    }

    /// What `status.provider` says.
    pub fn describe(&self, name: &str) -> String {
        match self {
            Found::Cluster(_) => format!("ClusterConnectorAuthProvider/{name}"),
            Found::BuiltIn(_) => format!("built-in/{name}"),
        }
    }
}

/// The entry `name` names, the cluster's first.
pub fn find<'a>(name: &str, cluster: Option<&'a ClusterConnectorAuthProviderSpec>) -> Option<Found<'a>> {
    match cluster {
        Some(p) => Some(Found::Cluster(p)),
        None => get(name).map(Found::BuiltIn),
    }
}

/// Why no entry was found, listing the built-in names.
pub fn not_found(name: &str) -> String {
    format!(
        "spec.provider: no ClusterConnectorAuthProvider and no built-in provider named `{name}`; built-in: {}",
        ENTRIES.iter().map(|e| e.name).collect::<Vec<_>>().join(", ")
    )
}

/// A spec with its provider's settings filled in, `provider` and `providerParams` cleared (or
/// a spec that names no provider): what the engine is given. Resolution happens once, here,
/// before the engine; [`Resolved::engine`] is the only way to the engine's [`Spec`].
#[derive(Clone, Debug)]
pub struct Resolved<'a>(Cow<'a, ConnectorAuthSpec>);

impl Resolved<'_> {
    /// The whole resolved spec (for `tls`, `output` and the rest the engine does not read).
    pub fn spec(&self) -> &ConnectorAuthSpec {
        &self.0
    }

    /// The parts the engine compiles.
    pub fn engine(&self) -> Spec<'_> {
        let s = &*self.0;
        Spec {
            credentials_secret: &s.credentials_ref.name,
            scheme: &s.scheme,
            renewal: &s.renewal,
            publish: Publish {
                header: s.output.header.as_ref(),
                template: &s.output.template,
                expose_refresh_token: s.output.expose_refresh_token,
                keep_previous: s.output.keep_previous,
            },
            verify: s.verify.as_ref(),
        }
    }

    pub fn into_owned(self) -> ConnectorAuthSpec {
        self.0.into_owned()
    }
}

/// The spec with a found entry's settings filled in (and `provider`, `providerParams` cleared).
pub fn apply(found: &Found<'_>, spec: &ConnectorAuthSpec) -> Result<Resolved<'static>, EngineError> {
    resolve_with(&settings_value(found.provider()), spec).map(|s| Resolved(Cow::Owned(s)))
}

/// Adds the entry's parameters to the template variables: `spec.providerParams` first, then a
/// credentials key of the same name, then the parameter's default. A missing parameter, or a
/// `providerParams` key the entry does not have, is an error naming it.
pub fn fill_params(
    found: &Found<'_>,
    spec: &ConnectorAuthSpec,
    variables: &mut BTreeMap<String, SecretString>,
) -> Result<(), EngineError> {
    let provider = found.provider();
    let name = spec.provider.as_deref().unwrap_or_default();
    for key in spec.provider_params.keys() {
        if !provider.params.iter().any(|p| &p.name == key) {
            let known: Vec<&str> = provider.params.iter().map(|p| p.name.as_str()).collect();
            return Err(EngineError::InvalidSpec {
                field: format!("spec.providerParams.{key}"),
                reason: format!(
                    "provider `{name}` has no parameter `{key}`; its parameters: {}",
                    if known.is_empty() {
                        "none".to_string()
                    } else {
                        known.join(", ")
                    }
                ),
            });
        }
    }
    for p in &provider.params {
        let value = match spec.provider_params.get(&p.name) {
            Some(v) => Some(v.clone()),
            None if variables.contains_key(&p.name) => continue,
            None => p.default.clone(),
        };
        let Some(value) = value else {
            return Err(EngineError::InvalidSpec {
                field: format!("spec.providerParams.{}", p.name),
                reason: format!(
                    "provider `{name}` needs parameter `{}` ({}): set it here or as key `{}` of the credentials Secret",
                    p.name,
                    if p.description.is_empty() {
                        "no description"
                    } else {
                        &p.description
                    },
                    p.name
                ),
            });
        };
        variables.insert(p.name.clone(), SecretString::new(value));
    }
    Ok(())
}

/// The spec with its built-in provider's settings filled in (unchanged without
/// `spec.provider`). A reconcile pass resolves ClusterConnectorAuthProviders first (see
/// `reconcile::gather`), so what reaches the engine from there has no provider left.
pub fn resolve(spec: &ConnectorAuthSpec) -> Result<Resolved<'_>, EngineError> {
    let Some(name) = &spec.provider else {
        return Ok(Resolved(Cow::Borrowed(spec)));
    };
    let entry = get(name).ok_or_else(|| EngineError::InvalidSpec {
        field: "spec.provider".into(),
        reason: format!(
            "`{name}` is not a built-in provider; known: {}",
            ENTRIES.iter().map(|e| e.name).collect::<Vec<_>>().join(", ")
        ),
    })?;
    apply(&Found::BuiltIn(entry), spec)
}

/// Compiles a spec that may name a built-in provider: [`resolve`], then the engine.
pub fn compile(engine: &Engine, spec: &ConnectorAuthSpec) -> Result<Flow, EngineError> {
    engine.compile(&resolve(spec)?.engine())
}

/// The token fingerprint ([`engine::fingerprint`]) of a spec that may name a built-in provider.
pub fn fingerprint(
    spec: &ConnectorAuthSpec,
    credentials: &BTreeMap<String, SecretString>,
) -> Result<String, EngineError> {
    Ok(engine::fingerprint(&resolve(spec)?.engine(), credentials))
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
                Scheme::NAMES
                    .into_iter()
                    .find(|k| base.get(*k).is_some())
                    .unwrap_or("?")
            ),
        });
    }
    let mut merged = merge(base.clone(), over);
    if let Some(m) = merged.as_object_mut() {
        m.remove("provider");
        m.remove("providerParams");
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
    let mut s = String::from(
        "| provider | name | scheme | parameters | credentials keys | quirks | source |\n|---|---|---|---|---|---|---|\n",
    );
    let code = |v: Vec<String>| v.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", ");
    for e in entries() {
        s.push_str(&format!(
            "| `{}` | {} | `{}` | {} | {} | {} | <{}> |\n",
            e.name,
            e.display_name(),
            e.scheme(),
            code(e.params()),
            code(e.credentials()),
            e.quirks().replace('|', "\\|").replace('\n', " "),
            e.source()
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn spec(v: Value) -> ConnectorAuthSpec {
        serde_json::from_value(v).unwrap()
    }

    fn provider(v: Value) -> ClusterConnectorAuthProviderSpec {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn objects_merge_and_the_resources_values_win_field_by_field() {
        let base = json!({"oauth2": {"tokenUrl": "https://idp/token", "scopes": ["a"], "extraParams": {"x": "1"}},
                          "renewal": {"renewBefore": "5m"}});
        let s = spec(
            json!({"credentialsRef": {"name": "c"}, "provider": "p", "providerParams": {"tenant": "t"},
                            "oauth2": {"scopes": ["b", "c"], "extraParams": {"y": "2"}}}),
        );
        let merged = serde_json::to_value(resolve_with(&base, &s).unwrap()).unwrap();
        assert_eq!(
            merged["oauth2"]["tokenUrl"], "https://idp/token",
            "kept from the provider"
        );
        assert_eq!(
            merged["oauth2"]["scopes"],
            json!(["b", "c"]),
            "a list is replaced, not appended"
        );
        assert_eq!(
            merged["oauth2"]["extraParams"],
            json!({"x": "1", "y": "2"}),
            "maps merge"
        );
        assert_eq!(merged["renewal"]["renewBefore"], "5m");
        assert!(merged.get("provider").is_none() && merged.get("providerParams").is_none());
    }

    #[test]
    fn another_scheme_than_the_providers_is_refused_naming_its_scheme() {
        let base = json!({"oauth2": {"tokenUrl": "https://idp/token"}});
        let s = spec(json!({"credentialsRef": {"name": "c"}, "provider": "p", "apiKey": {}}));
        let e = resolve_with(&base, &s).unwrap_err().to_string();
        assert!(e.contains("not `apiKey`") && e.contains("`oauth2: {}`"), "{e}");
    }

    #[test]
    fn params_come_from_the_spec_then_the_credentials_then_the_default() {
        let p = provider(
            json!({"displayName": "P", "source": "https://docs", "settings": {"oauth2": {}},
            "params": [{"name": "tenant"}, {"name": "region", "default": "eu"}, {"name": "host", "default": "h"}]}),
        );
        let found = Found::Cluster(&p);
        let s = spec(
            json!({"credentialsRef": {"name": "c"}, "provider": "p", "providerParams": {"tenant": "contoso"}, "oauth2": {}}),
        );
        let mut vars: BTreeMap<String, SecretString> = [("host".to_string(), SecretString::from("from-secret"))].into();
        fill_params(&found, &s, &mut vars).unwrap();
        let v = |k: &str| vars[k].expose().to_string();
        assert_eq!(
            (v("tenant"), v("region"), v("host")),
            ("contoso".into(), "eu".into(), "from-secret".into())
        );

        let missing = spec(json!({"credentialsRef": {"name": "c"}, "provider": "p", "oauth2": {}}));
        let e = fill_params(&found, &missing, &mut BTreeMap::new())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("spec.providerParams.tenant") && e.contains("key `tenant` of the credentials Secret"),
            "{e}"
        );

        let unknown = spec(
            json!({"credentialsRef": {"name": "c"}, "provider": "p", "providerParams": {"tenant": "t", "zone": "z"}, "oauth2": {}}),
        );
        let e = fill_params(&found, &unknown, &mut BTreeMap::new())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("spec.providerParams.zone") && e.contains("tenant, region, host"),
            "{e}"
        );
    }

    #[test]
    fn a_spec_without_provider_resolves_to_itself_and_an_unknown_built_in_is_named() {
        let s = spec(json!({"credentialsRef": {"name": "c"}, "apiKey": {}}));
        assert_eq!(resolve(&s).unwrap().spec(), &s);
        let unknown = spec(json!({"credentialsRef": {"name": "c"}, "provider": "nope", "apiKey": {}}));
        let e = resolve(&unknown).unwrap_err().to_string();
        assert!(e.contains("`nope` is not a built-in provider"), "{e}");
    }

    /// What the operator provides itself (here the PKCE verifier) is never asked of the
    /// credentials Secret.
    #[test]
    fn a_pkce_entry_asks_only_for_the_client_credentials() {
        assert_eq!(get("calendly").unwrap().credentials(), ["client_id", "client_secret"]);
    }
}
