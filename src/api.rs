//! The `ConnectorAuth` API (`connectorauth.dev/v1alpha1`).
//!
//! These are plain data types: the engine reads them, the adapters (controller, local mode)
//! move them around. Every field's doc comment becomes `kubectl explain` text, so they are
//! written for users, not for us.

pub mod names;
pub mod provider;
pub mod strict;

use std::collections::BTreeMap;

use kube::{CustomResource, KubeSchema};

/// The scheme blocks, `output.header` and `renewal`: the engine core's spec types.
pub use engine_core::spec::*;
use serde::{Deserialize, Serialize};

pub const GROUP: &str = "connectorauth.dev";
pub const VERSION: &str = "v1alpha1";
/// Annotation asking the operator to renew the token now (`kubectl connectorauth renew` sets
/// it to a new value each time). Each value is acted upon once and recorded in
/// `status.lastRenewRequest`.
pub const RENEW_ANNOTATION: &str = "connectorauth.dev/renew";

/// Desired state of a ConnectorAuth: where the credentials are, how to turn them into a token,
/// and where to publish the result.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "connectorauth.dev",
    version = "v1alpha1",
    kind = "ConnectorAuth",
    plural = "connectorauths",
    shortname = "cauth",
    namespaced,
    status = "ConnectorAuthStatus",
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Scheme","type":"string","jsonPath":".status.scheme"}"#,
    printcolumn = r#"{"name":"Expires","type":"date","jsonPath":".status.expiresAt"}"#,
    printcolumn = r#"{"name":"Next refresh","type":"date","jsonPath":".status.nextRefreshTime"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    cel
)]
#[derive(KubeSchema)]
#[x_kube(
    validation = Rule::new(ONE_SCHEME_RULE).message(ONE_SCHEME_MESSAGE),
    validation = Rule::new("!has(self.oauth2) || has(self.provider) || has(self.oauth2.tokenUrl) || has(self.oauth2.tokenRequest)").message("oauth2 needs tokenUrl (or a tokenRequest override, or a provider)"),
    // Signed assertions (RFC 7523): each JWT block belongs to the grant or client
    // authentication that sends it.
    validation = Rule::new(JWT_BEARER_RULE).message(JWT_BEARER_MESSAGE),
    validation = Rule::new(PRIVATE_KEY_JWT_RULE).message(PRIVATE_KEY_JWT_MESSAGE),
    validation = Rule::new("!has(self.providerParams) || has(self.provider)").message("providerParams needs provider")
)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = optional_enums_are_not_nullable)]
pub struct ConnectorAuthSpec {
    /// The Secret, in the same namespace as this ConnectorAuth, whose keys are the template
    /// variables of this scheme (for example `username`, `password`, `client_id`, `api_key`).
    pub credentials_ref: CredentialsRef,

    /// The authentication scheme. Exactly one scheme block is set.
    #[serde(flatten)]
    pub scheme: Scheme,

    /// Where and how the issued token is published for workloads.
    #[serde(default, skip_serializing_if = "Output::is_empty")]
    pub output: Output,

    /// When the token is renewed.
    #[serde(default, skip_serializing_if = "Renewal::is_empty")]
    pub renewal: Renewal,

    /// TLS of this resource's token requests (login, refresh, code exchange): a CA bundle to
    /// trust, a client certificate for mutual TLS. Omitted: the token endpoint's certificate
    /// must chain to the system's trusted CAs, and no client certificate is presented.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsConfig>,

    /// Follow HTTP redirects (a 3xx with a `Location`) of token requests, at most 5 in a row.
    /// Every hop is checked against the operator's token-URL policy (cloud metadata and
    /// link-local addresses, allow and deny lists) and a redirect from https to plain http is
    /// never followed. A 307/308 redirect resends the request body (client credentials
    /// included) to the new address; `Authorization` and `Cookie` headers are dropped when the
    /// host changes, other headers go along. Default false: a redirect is an error, unless the
    /// token can be read from the redirect response itself (a login that answers 302 and sets a
    /// session cookie).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_redirects: bool,

    /// A provider entry whose settings fill in what this resource leaves out: its scheme
    /// block, `output` and `renewal` are merged over the provider's, fields set here win. The
    /// scheme block must be the provider's, even if empty, e.g. `provider: google` with
    /// `oauth2: {}`. The name is that of a ClusterConnectorAuthProvider if one exists, else of
    /// a built-in entry (`connector-auth-operator providers list`); `status.provider` says
    /// which was used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,

    /// Values of the provider's parameters (`providers show NAME` lists them), e.g.
    /// `{tenant: contoso.onmicrosoft.com}`. A parameter not given here is read from the
    /// credentials Secret key of the same name, else the provider's default applies; a missing
    /// one is an error naming it.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub provider_params: BTreeMap<String, String>,
    /// A request that proves the published credential works at the provider, e.g.
    /// `{url: "https://api.example.com/v1/me"}`. The operator sends it after each issuance
    /// (and when the spec changes); `kubectl connectorauth check` sends it on demand. It is
    /// sent with the published headers (`headers.json`), to which `headers` here add or which
    /// they replace; its templates see the credentials keys and the output Secret's keys
    /// (`access_token`, `header_value`, `token_type`, template keys, …). `method` defaults to GET
    /// here. A 2xx answer sets the condition `Verified` True; anything else sets it False with
    /// the HTTP status and records a Warning Event. The token stays published either way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify: Option<Request>,
    /// The workload's Kubernetes identity as the credential: for each token request, a fresh
    /// bound token of this ServiceAccount (in the resource's namespace) for `audience`, as
    /// `{{ service_account_token }}` — the subject of grant `tokenExchange`, a client assertion
    /// for Entra workload identity, the web identity token of AWS STS. Never stored, logged or
    /// published. The ServiceAccount must opt in: its annotation
    /// `connectorauth.dev/connectorauths` lists the ConnectorAuths (by name, comma-separated,
    /// or `*`) that may use it; otherwise the resource is refused and no token is requested.
    /// The operator needs `serviceaccounts/token` create (chart: `serviceAccountTokens.enabled`).
    /// Local mode reads the token from `<--service-account-tokens>/<name>/token`, as a
    /// projected volume gives it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_token: Option<ServiceAccountTokenSource>,
}

/// `spec.serviceAccountToken`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceAccountTokenSource {
    /// The ServiceAccount, in the ConnectorAuth's namespace.
    #[x_kube(validation = Rule::new("self.size() > 0 && self.size() <= 253").message("serviceAccountToken.name names a ServiceAccount"))]
    pub name: String,
    /// The audience the token is bound to (`aud`): what the provider's trust configuration
    /// expects, e.g. `sts.amazonaws.com` or `api://AzureADTokenExchange`.
    #[x_kube(validation = Rule::new("self.size() > 0").message("serviceAccountToken.audience must not be empty"))]
    pub audience: String,
    /// Lifetime of each token, in seconds: 600 (kube-apiserver's minimum, the default) to 86400.
    /// It only needs to last through the exchange.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 600, max = 86400))]
    pub expiration_seconds: Option<i64>,
}

/// The annotation by which a ServiceAccount lets ConnectorAuths use its tokens
/// (`spec.serviceAccountToken`): their names, comma-separated, or `*`.
pub const SERVICE_ACCOUNT_OPT_IN: &str = "connectorauth.dev/connectorauths";

/// Whether the annotation value `allowed` lets the ConnectorAuth `name` use the ServiceAccount.
pub fn service_account_allows(allowed: Option<&str>, name: &str) -> bool {
    allowed.is_some_and(|a| a.split(',').map(str::trim).any(|n| n == "*" || n == name))
}

/// An optional enum field (`Option<Method>`) may be left out; it is not nullable. schemars
/// spells it as nullable all the same, with `null` among the enum values, which kubectl's
/// OpenAPI v2 validation cannot read ("unknown object type nil"). This keeps the enum and
/// drops the null, so the API server prunes a `null` like any absent optional field.
fn optional_enums_are_not_nullable(schema: &mut schemars::Schema) {
    use serde_json::Value;
    schemars::transform::transform_subschemas(&mut optional_enums_are_not_nullable, schema);
    let Some(obj) = schema.as_object_mut() else {
        return;
    };
    let is_null = |s: &Value| s.get("type") == Some(&Value::from("null"));
    // An enum with doc comments per variant: `anyOf: [{oneOf: [..]}, {type: null}]`.
    let enum_or_null = match obj.get("anyOf").and_then(Value::as_array).map(Vec::as_slice) {
        Some([a, b]) if is_null(b) => Some(a),
        Some([a, b]) if is_null(a) => Some(b),
        _ => None,
    };
    if let Some(Value::Object(inner)) = enum_or_null.cloned()
        && (inner.contains_key("oneOf") || inner.contains_key("enum"))
    {
        obj.remove("anyOf");
        for (k, v) in inner {
            obj.entry(k).or_insert(v);
        }
    }
    // A plain enum: `type: [string, null], enum: [.., null]`.
    if let Some(Value::Array(values)) = obj.get_mut("enum")
        && values.contains(&Value::Null)
    {
        values.retain(|v| !v.is_null());
        if let Some(Value::Array(types)) = obj.get_mut("type") {
            types.retain(|t| t != "null");
            if let [only] = types.as_slice() {
                let only = only.clone();
                obj.insert("type".into(), only);
            }
        }
    }
}

/// A reference to the credentials Secret.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct CredentialsRef {
    /// Name of the Secret holding the credentials.
    #[x_kube(validation = Rule::new("self.size() > 0").message("credentialsRef.name must not be empty"))]
    pub name: String,
    /// Namespace of the Secret. It must be the namespace of the ConnectorAuth (or be omitted):
    /// the operator refuses references into other namespaces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

// --- end of signed assertions -----------------------------------------------------------------

/// How the token is published.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Output {
    /// Name of the generated Secret: a DNS-1123 subdomain (lower case alphanumerics, `-` and
    /// `.`, at most 253 characters). Default `<name>-token`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    #[x_kube(validation = Rule::new(SECRET_NAME_RULE).message("output.secretName must be a valid Secret name: at most 253 lower case alphanumeric characters, '-' or '.', starting and ending with an alphanumeric character"))]
    pub secret_name: Option<String>,
    /// How a client presents the token (Locoia's header configuration).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<HeaderOutput>,
    /// Extra keys of the generated Secret; each value is a template. Keys are Secret keys: at
    /// most 253 alphanumeric characters, `-`, `_` or `.`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[x_kube(validation = Rule::new(SECRET_KEYS_RULE).message("output.template keys must be valid Secret keys: at most 253 alphanumeric characters, '-', '_' or '.', and not '.', '..' or starting with '..'"))]
    pub template: BTreeMap<String, String>,
    /// Also publish `refresh_token` in the generated Secret. Default false: the refresh token
    /// stays in the operator's private state.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub expose_refresh_token: bool,
    /// After a rotation, keep publishing the previous access token as `previous_access_token`
    /// (and its headers as `previous_headers.json`) until it expires, so clients that cached
    /// the old value keep working through the rotation. Default false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub keep_previous: bool,
    /// Workloads in this namespace to restart (as `kubectl rollout restart` does: the pod
    /// template annotation `connectorauth.dev/restartedAt`) when the published credential
    /// changes in a way that matters: new credentials in the credentials Secret, or a changed
    /// scheme, renewal or output spec. Routine refreshes restart nothing unless `onRefresh` is
    /// set: pods that read the mounted files see those without a restart. Each workload is
    /// restarted once per change. Needs the chart's `rbac.rolloutRestart.enabled`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub rollout_restart: Vec<RolloutTarget>,
}

/// A workload kind that `rolloutRestart` can restart.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, schemars::JsonSchema)]
pub enum WorkloadKind {
    Deployment,
    StatefulSet,
    DaemonSet,
}

impl WorkloadKind {
    /// The kind's name, as in `kind:`.
    pub fn as_str(self) -> &'static str {
        match self {
            WorkloadKind::Deployment => "Deployment",
            WorkloadKind::StatefulSet => "StatefulSet",
            WorkloadKind::DaemonSet => "DaemonSet",
        }
    }
}

/// Workloads to restart: one by name, or all of a kind matching a label selector.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.name) != has(self.selector)").message("rolloutRestart: set either name or selector"))]
pub struct RolloutTarget {
    /// `Deployment`, `StatefulSet` or `DaemonSet` (group `apps`).
    pub kind: WorkloadKind,
    /// The workload's name, in this ConnectorAuth's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Every workload of this kind in this namespace whose labels match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector>,
    /// Also restart on every routine refresh, not only when the credentials or the spec
    /// change. Default false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub on_refresh: bool,
}

/// A Secret name is a DNS-1123 subdomain. The field's `maxLength` bounds it too (and keeps the
/// rule's estimated cost low); the rule repeats it for [`validate_document`], which runs the CEL
/// rules alone.
const SECRET_NAME_RULE: &str =
    "self.size() <= 253 && self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*$')";

impl Output {
    fn is_empty(&self) -> bool {
        self == &Output::default()
    }
}

// Rules a provider entry's settings share with a spec (`provider::ProviderSettings`).
pub(crate) const ONE_SCHEME_RULE: &str = "[has(self.refreshableToken), has(self.oauth2), has(self.apiKey), has(self.jwt), has(self.tripletex), has(self.superOffice), has(self.githubApp)].filter(x, x).size() == 1";
pub(crate) const ONE_SCHEME_MESSAGE: &str =
    "exactly one scheme must be set: refreshableToken, oauth2, apiKey, jwt, tripletex, superOffice or githubApp";
pub(crate) const JWT_BEARER_RULE: &str = "!has(self.oauth2) || (has(self.oauth2.grantType) && self.oauth2.grantType == 'jwtBearer') == has(self.oauth2.assertion)";
pub(crate) const JWT_BEARER_MESSAGE: &str = "oauth2.assertion is required by, and only used with, grantType jwtBearer";
pub(crate) const PRIVATE_KEY_JWT_RULE: &str = "!has(self.oauth2) || (has(self.oauth2.clientAuth) && self.oauth2.clientAuth == 'private_key_jwt') == has(self.oauth2.clientAssertion)";
pub(crate) const PRIVATE_KEY_JWT_MESSAGE: &str =
    "oauth2.clientAssertion is required by, and only used with, clientAuth private_key_jwt";

/// TLS settings of token requests. Every Secret and ConfigMap named here is read from the
/// ConnectorAuth's own namespace, on every pass (so a renewed certificate is used at once).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!(has(self.caBundleRef) && has(self.insecureSkipVerify) && self.insecureSkipVerify)").message("set either tls.caBundleRef or tls.insecureSkipVerify: a CA bundle has no effect when verification is skipped"))]
pub struct TlsConfig {
    /// PEM CA certificates that the token endpoint's certificate must chain to, from a key of
    /// a Secret or ConfigMap in this namespace (e.g. the `ca.crt` of a cert-manager Secret, or
    /// a trust-manager bundle). They replace the system's trusted CAs for this resource:
    /// include public roots in the bundle if the endpoint presents a publicly trusted
    /// certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_bundle_ref: Option<CaBundleRef>,
    /// A client certificate (and its private key) presented to the token endpoint for mutual
    /// TLS, e.g. for RFC 8705 certificate-bound tokens: a `kubernetes.io/tls` Secret in this
    /// namespace, such as one cert-manager issues.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_certificate_ref: Option<ClientCertificateRef>,
    /// Do not verify the token endpoint's certificate (neither its issuer nor its host name).
    /// Credentials may then be sent to an impostor: meant for trying things out only. While it
    /// is set the resource has the condition `InsecureTLS` (status True) and a Warning Event is
    /// recorded once. Prefer `caBundleRef` for a private CA. Default false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub insecure_skip_verify: bool,
}

/// The kind of object a CA bundle is read from.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, schemars::JsonSchema)]
pub enum CaBundleKind {
    Secret,
    ConfigMap,
}

/// A key of a Secret or ConfigMap, in the ConnectorAuth's namespace, holding PEM CA
/// certificates.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct CaBundleRef {
    /// `Secret` or `ConfigMap`.
    pub kind: CaBundleKind,
    /// Name of the Secret or ConfigMap.
    #[x_kube(validation = Rule::new("self.size() > 0").message("tls.caBundleRef.name must not be empty"))]
    pub name: String,
    /// The key holding the PEM certificates (a ConfigMap's `data` or `binaryData`). Default
    /// `ca.crt`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self.size() > 0").message("tls.caBundleRef.key must not be empty"))]
    pub key: Option<String>,
}

/// A Secret, in the ConnectorAuth's namespace, holding a client certificate and its private
/// key.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClientCertificateRef {
    /// Name of the Secret.
    #[x_kube(validation = Rule::new("self.size() > 0").message("tls.clientCertificateRef.name must not be empty"))]
    pub name: String,
    /// The key holding the PEM certificate, followed by any intermediates. Default `tls.crt`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self.size() > 0").message("tls.clientCertificateRef.certificateKey must not be empty"))]
    pub certificate_key: Option<String>,
    /// The key holding the PEM private key (PKCS#8, PKCS#1 or SEC1). Default `tls.key`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self.size() > 0").message("tls.clientCertificateRef.privateKeyKey must not be empty"))]
    pub private_key_key: Option<String>,
}

/// Observed state.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConnectorAuthStatus {
    /// `Ready`; `RefreshFailing` while renewal is failing; `InsecureTLS` while
    /// `spec.tls.insecureSkipVerify` is set; `Verified` with `spec.verify`: whether the
    /// published credential was accepted when last checked.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The scheme in use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheme: Option<String>,
    /// The provider entry used for `spec.provider`: `ClusterConnectorAuthProvider/<name>` or
    /// `built-in/<name>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// When the published token expires (RFC 3339); absent for permanent tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    /// When a token was last obtained from the provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_refresh_time: Option<String>,
    /// When the next renewal is due.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_refresh_time: Option<String>,
    /// The generated Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_name: Option<String>,
    /// For the authorization-code grant: the URL a person opens to grant consent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization_url: Option<String>,
    /// Consecutive failed attempts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_count: Option<u32>,
    /// The last renewal request (the `connectorauth.dev/renew` annotation's value, set by
    /// `kubectl connectorauth renew`) the operator acted upon. Each value is acted upon once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_renew_request: Option<String>,
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// A status condition (same shape as `metav1.Condition`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// Condition type, e.g. `Ready`.
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// Machine-readable reason in PascalCase.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    /// Human-readable message. Never contains secret values.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// When the status last changed.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub last_transition_time: String,
    /// The generation this condition was computed for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// The CRD's OpenAPI schema, generated once.
fn schema() -> &'static serde_json::Value {
    static SCHEMA: std::sync::LazyLock<serde_json::Value> =
        std::sync::LazyLock::new(|| version_schema(&<ConnectorAuth as kube::CustomResourceExt>::crd()));
    &SCHEMA
}

fn version_schema(
    crd: &k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
) -> serde_json::Value {
    let schema = crd.spec.versions[0]
        .schema
        .as_ref()
        .and_then(|s| s.open_api_v3_schema.as_ref());
    serde_json::to_value(schema.expect("derived CRD has a schema")).expect("schema serializes")
}

/// Checks a ConnectorAuth document (as written by the user, before deserialization) against the
/// CRD's CEL rules, as the API server does at apply time. Local mode uses this so a manifest it
/// accepts is one a cluster accepts too.
pub fn validate_document(doc: &serde_json::Value) -> Result<(), String> {
    validate_against(schema(), doc)
}

fn validate_against(schema: &serde_json::Value, doc: &serde_json::Value) -> Result<(), String> {
    kube::core::cel::Validator::new()
        .validate(schema, doc, None)
        .map_err(|e| e.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The CEL rule and its message are text; every scheme is in both, in the order of
    /// [`Scheme::NAMES`].
    #[test]
    fn the_one_scheme_rule_names_every_scheme() {
        let has: Vec<String> = Scheme::NAMES.iter().map(|n| format!("has(self.{n})")).collect();
        assert!(
            ONE_SCHEME_RULE.starts_with(&format!("[{}]", has.join(", "))),
            "{ONE_SCHEME_RULE}"
        );
        for name in Scheme::NAMES {
            assert!(
                ONE_SCHEME_MESSAGE.contains(name),
                "{name} missing from: {ONE_SCHEME_MESSAGE}"
            );
        }
    }
}
