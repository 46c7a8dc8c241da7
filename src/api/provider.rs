//! The `ClusterConnectorAuthProvider` API: a provider entry a platform team publishes for the
//! whole cluster, in the same shape as the built-in entries under `catalog/`. A ConnectorAuth
//! uses one with `spec.provider: <name>`; an entry of the same name as a built-in one replaces
//! it (as a ClusterIssuer would, were cert-manager to ship issuers).

use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::{Output, Renewal, Scheme};

/// A provider entry: its documentation, its quirks, the parameters it needs and the settings it
/// fills in for the ConnectorAuths that name it in `spec.provider`.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[kube(
    group = "connectorauth.dev",
    version = "v1alpha1",
    kind = "ClusterConnectorAuthProvider",
    plural = "clusterconnectorauthproviders",
    shortname = "cauthprovider",
    printcolumn = r#"{"name":"Display name","type":"string","jsonPath":".spec.displayName"}"#,
    printcolumn = r#"{"name":"Params","type":"string","jsonPath":".spec.params[*].name"}"#,
    printcolumn = r#"{"name":"Source","type":"string","jsonPath":".spec.source","priority":1}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    cel
)]
#[x_kube(
    validation = Rule::new("!has(self.params) || self.params.all(p, self.params.exists_one(q, q.name == p.name))").message("params names must be unique")
)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = super::optional_enums_are_not_nullable)]
pub struct ClusterConnectorAuthProviderSpec {
    /// The provider's name as people know it, e.g. `Microsoft Entra ID (client credentials)`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub display_name: String,
    /// Where the provider documents this behaviour (its token endpoint's documentation page).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub source: String,
    /// The date (`YYYY-MM-DD`) the entry was last checked against `source`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[x_kube(validation = Rule::new("self.matches('^[0-9]{4}-[0-9]{2}-[0-9]{2}$')").message("checked is a date: YYYY-MM-DD"))]
    pub checked: String,
    /// What is unusual about the provider: refresh-token rotation and lifetime, the scopes
    /// needed for a refresh token, the client authentication, odd response fields.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub quirks: String,
    /// Parameters the settings use as template variables (a tenant, a subdomain, a region). A
    /// ConnectorAuth gives each in `spec.providerParams`, else the credentials Secret key of the
    /// same name, else `default` applies; a missing one is an error naming it.
    #[serde(default)]
    #[schemars(length(max = 16))]
    pub params: Vec<ProviderParam>,
    /// The settings filled in: one scheme block (`oauth2`, `refreshableToken`, …) and
    /// optionally `output`, `renewal` and `allowRedirects`, exactly as in a ConnectorAuth's
    /// spec. The ConnectorAuth's own fields win.
    pub settings: ProviderSettings,
}

/// A parameter of a provider entry.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProviderParam {
    /// The template variable, e.g. `tenant` for `{{ tenant }}`.
    #[schemars(length(max = 63))]
    #[x_kube(validation = Rule::new("self.matches('^[A-Za-z_][A-Za-z0-9_]*$')").message("a parameter name is a letter or underscore followed by letters, digits or underscores"))]
    pub name: String,
    /// What the value is and where to find it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// The value used when a ConnectorAuth gives none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<String>,
}

/// What a provider entry fills in.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[x_kube(
    validation = Rule::new(super::ONE_SCHEME_RULE).message(super::ONE_SCHEME_MESSAGE),
    validation = Rule::new("!has(self.oauth2) || has(self.oauth2.tokenUrl) || has(self.oauth2.tokenRequest)").message("oauth2 needs tokenUrl (or a tokenRequest override)"),
    validation = Rule::new(super::JWT_BEARER_RULE).message(super::JWT_BEARER_MESSAGE),
    validation = Rule::new(super::PRIVATE_KEY_JWT_RULE).message(super::PRIVATE_KEY_JWT_MESSAGE)
)]
#[serde(rename_all = "camelCase")]
pub struct ProviderSettings {
    /// The scheme block.
    #[serde(flatten)]
    pub scheme: Scheme,
    /// Output defaults (e.g. extra headers every API call needs).
    #[serde(default, skip_serializing_if = "Output::is_empty")]
    pub output: Output,
    /// Renewal defaults (e.g. `refreshInterval` for tokens without a stated lifetime).
    #[serde(default, skip_serializing_if = "Renewal::is_empty")]
    pub renewal: Renewal,
    /// Follow redirects of token requests (see the ConnectorAuth field).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_redirects: bool,
    /// A cheap request that only a working credential passes (the provider's "who am I"
    /// endpoint), as the ConnectorAuth's `spec.verify`; the resource's own wins.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify: Option<super::Request>,
}

/// The CRD's OpenAPI schema, generated once.
fn schema() -> &'static serde_json::Value {
    static SCHEMA: std::sync::LazyLock<serde_json::Value> = std::sync::LazyLock::new(|| {
        let crd = <ClusterConnectorAuthProvider as kube::CustomResourceExt>::crd();
        super::version_schema(&crd)
    });
    &SCHEMA
}

/// Checks a ClusterConnectorAuthProvider document against the CRD's CEL rules, as the API server
/// does at apply time (local mode and the built-in catalog use it).
pub fn validate_document(doc: &serde_json::Value) -> Result<(), String> {
    super::validate_against(schema(), doc)
}
