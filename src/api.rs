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

/// The authentication scheme: one block, named after what users know from other platforms.
/// Each block is boxed: the operator caches every ConnectorAuth, and an inline enum would cost
/// the size of the largest scheme for each of them.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Scheme {
    /// A login request returns a token (and maybe a refresh token); a refresh request renews it.
    /// The token is extracted from the JSON body, a response header or a cookie.
    RefreshableToken(Box<RefreshableToken>),
    /// An OAuth 2.0 (RFC 6749) token endpoint.
    #[serde(rename = "oauth2")]
    OAuth2(Box<OAuth2>),
    /// A static API key from the credentials Secret, rendered into the output headers.
    ApiKey(Box<ApiKey>),
    /// An application token exchanged for a JWT access token and refresh token (webCRM style).
    Jwt(Box<Jwt>),
    /// Tripletex: consumer token + employee token exchanged for a session token.
    Tripletex(Box<Tripletex>),
    /// SuperOffice: OAuth 2.0 plus the `so_ticket` taken from the id_token.
    SuperOffice(Box<SuperOffice>),
    /// GitHub App installation tokens: a JWT signed with the app's private key is exchanged
    /// for an installation access token.
    GithubApp(Box<GithubApp>),
}

impl Scheme {
    /// The name shown in the `Scheme` printer column and in status.
    pub fn name(&self) -> &'static str {
        match self {
            Scheme::RefreshableToken(_) => "refreshableToken",
            Scheme::OAuth2(_) => "oauth2",
            Scheme::ApiKey(_) => "apiKey",
            Scheme::Jwt(_) => "jwt",
            Scheme::Tripletex(_) => "tripletex",
            Scheme::SuperOffice(_) => "superOffice",
            Scheme::GithubApp(_) => "githubApp",
        }
    }
}

/// HTTP method of a token request.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum Method {
    Get,
    Post,
    Put,
    Patch,
}

/// An HTTP request rendered from templates. Every string is a minijinja template whose variables
/// are the credentials keys, `access_token`, `refresh_token`, `oauth.*`, `redirect_url` and `now`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!(has(self.body) && has(self.form))").message("set either body or form, not both"))]
pub struct Request {
    /// URL template, e.g. `https://{{ domain }}/docuware/platform/Account/Logon`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub url: String,
    /// HTTP method. Default POST.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<Method>,
    /// Request headers; values are templates.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// Raw body template (form-encoded, JSON, …). Set the matching Content-Type header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// Form fields, sent as `application/x-www-form-urlencoded`; values are templates and are
    /// URL-encoded for you.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub form: BTreeMap<String, String>,
}

/// Where to find a value in a token response. Set exactly one of `jsonPath`, `header` or
/// `cookie`; add `jwtClaim` to read a claim of the JWT found there.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("[has(self.jsonPath), has(self.header), has(self.cookie)].filter(x, x).size() == 1").message("set exactly one of jsonPath, header or cookie"))]
pub struct Extract {
    /// JSONPath (RFC 9535) into the JSON response body, e.g. `$.data.access_token`. A plain
    /// dotted path such as `data.access_token` is accepted too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub json_path: Option<String>,
    /// Name of a response header, e.g. `X-Auth-Token`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
    /// Name of a cookie set by the response (`Set-Cookie`), e.g. `.DWPLATFORMAUTH`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cookie: Option<String>,
    /// Treat the value found as a JWT and take this claim of its payload instead,
    /// e.g. `http://schemes.superoffice.net/identity/ticket`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwt_claim: Option<String>,
}

impl Extract {
    pub fn json_path(path: &str) -> Self {
        Extract {
            json_path: Some(path.to_string()),
            ..Default::default()
        }
    }
}

/// How the values of a token response are read.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Extraction {
    /// Where the access token is. Default: `jsonPath: $.access_token`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_token: Option<Extract>,
    /// Where a refresh token is, if the provider issues one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<Extract>,
    /// Where the lifetime in seconds is (e.g. `expires_in`). Without it (and without
    /// `expiresAt`) the expiry is the JWT `exp` claim of the access token, else
    /// `renewal.refreshInterval`, else the token is treated as permanent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in: Option<Extract>,
    /// Where an absolute expiry is (RFC 3339 time, date, or Unix seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Extract>,
    /// Where the token type is (e.g. `token_type`). Default `Bearer`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_type: Option<Extract>,
    /// Further values to extract and publish, by output key (e.g. `instance_url`). Keys are
    /// Secret keys: at most 253 alphanumeric characters, `-`, `_` or `.`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[x_kube(validation = Rule::new(SECRET_KEYS_RULE).message("extras keys must be valid Secret keys: at most 253 alphanumeric characters, '-', '_' or '.', and not '.', '..' or starting with '..'"))]
    pub extras: BTreeMap<String, Extract>,
}

/// A refresh request. Extraction fields left out fall back to those of the login request.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RefreshRequest {
    #[serde(flatten)]
    pub request: Request,
    #[serde(flatten)]
    pub extraction: Extraction,
}

/// The generic login/refresh flow ("Refreshable Token").
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RefreshableToken {
    /// Requests sent in order before the `authorization` request, for logins that take
    /// several calls (log in → session → token). Each step's extracted values are template
    /// variables of the later steps and of `authorization`: `{{ steps.<name>.<key> }}`.
    /// A failing step is named in the error. The `refresh` request runs without them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<ChainStep>,
    /// The login request, sent with the credentials (Locoia: `authorization_request_*`).
    /// Required unless `spec.provider` gives it.
    #[serde(default)]
    pub authorization: Request,
    #[serde(flatten)]
    pub extraction: Extraction,
    /// An optional separate refresh request using `{{ refresh_token }}` (Locoia:
    /// `refresh_request_*`). Without it the login request is repeated to renew.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh: Option<RefreshRequest>,
}

/// One request of a chained login (`refreshableToken.steps`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChainStep {
    /// The step's name: `{{ steps.<name>.<key> }}` in later templates, and in errors.
    #[x_kube(validation = Rule::new("self.matches('^[A-Za-z_][A-Za-z0-9_]*$')").message("a step name is a letter or underscore followed by letters, digits or underscores"))]
    pub name: String,
    /// The request: `url`, `method`, `headers`, `body` or `form`, as in `authorization`.
    #[serde(flatten)]
    pub request: Request,
    /// Values to extract from the response, by key, e.g.
    /// `{session_id: {cookie: SESSION}, user: {jsonPath: data.user_id}}`. Each must be found.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extract: BTreeMap<String, Extract>,
}

/// OAuth 2.0 grant type.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum GrantType {
    /// `client_credentials`: the client authenticates as itself.
    ClientCredentials,
    /// `refresh_token`: a refresh token obtained at onboarding is in the credentials Secret.
    RefreshToken,
    /// `authorization_code`: a person consents once via `authorizationUrl`; the operator keeps
    /// the refresh token from then on.
    AuthorizationCode,
    /// `password`: resource owner password credentials.
    Password,
    /// `urn:ietf:params:oauth:grant-type:jwt-bearer` (RFC 7523 §2.1): the operator signs a JWT
    /// (`assertion`) with a private key and exchanges it (Google service accounts, Salesforce
    /// and DocuSign JWT flows). `scopes` go into the JWT's `scope` claim.
    JwtBearer,
}

/// How the OAuth 2.0 client authenticates at the token endpoint.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuth {
    /// HTTP Basic with client id and secret (RFC 6749 §2.3.1).
    ClientSecretBasic,
    /// `client_id` and `client_secret` in the form body.
    ClientSecretPost,
    /// A JWT signed with the client's private key (`clientAssertion`), sent as
    /// `client_assertion` (RFC 7523 §2.2, OpenID Connect Core §9); no client secret.
    PrivateKeyJwt,
    /// No client authentication: the grant itself proves who is asking (the default of grant
    /// `jwtBearer`, and public clients).
    None,
}

/// An OAuth 2.0 token endpoint.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct OAuth2 {
    /// Token endpoint URL template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_url: Option<String>,
    /// Grant used to obtain the first token: `clientCredentials` (default for oauth2),
    /// `refreshToken` (default for superOffice), `authorizationCode` or `password`. Renewal uses
    /// the `refresh_token` grant whenever the provider issued a refresh token, else repeats this
    /// grant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant_type: Option<GrantType>,
    /// Client id template. Default `{{ client_id }}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// Client secret template. Default `{{ client_secret }}` (may be absent for public clients).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
    /// Client authentication method: `client_secret_basic` (default for oauth2),
    /// `client_secret_post` (default for superOffice), `private_key_jwt` (with
    /// `clientAssertion`) or `none` (default for grantType jwtBearer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_auth: Option<ClientAuth>,
    /// Scopes requested (space-joined into `scope`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<String>,
    /// `audience` parameter, for providers that need one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
    /// Extra form parameters for every token request; values are templates.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra_params: BTreeMap<String, String>,
    /// Extra headers for every token request (e.g. a subscription key); values are templates.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// Credentials key holding the refresh token obtained at onboarding (grant `refreshToken`).
    /// Default `refresh_token`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token_key: Option<String>,
    /// Username template for the `password` grant. Default `{{ username }}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// Password template for the `password` grant. Default `{{ password }}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// Consent URL template for the `authorizationCode` grant, usually containing
    /// `{{ redirect_url }}` (ChiefOnboarding: `authenticate_url`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization_url: Option<String>,
    /// The provider's callback carries no `code` (ChiefOnboarding: `without_code`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub without_code: bool,
    /// Query parameters of the consent callback to keep besides `code`, for the code exchange
    /// as `{{ callback.<name> }}` (an installation id, QuickBooks' `realmId`). Every other
    /// parameter a browser sends is ignored: callback values never become credentials or
    /// provider parameters, and never replace them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    #[x_kube(validation = Rule::new(CALLBACK_VALUES_RULE).message("callbackValues are query parameter names: a letter followed by at most 63 letters, digits, '_', '-' or '.', and not `state`"))]
    pub callback_values: Vec<String>,
    /// Replaces the generated first token request entirely (ChiefOnboarding: `access_token`).
    /// The code from the consent callback is `{{ code }}`; a request that does not use it gets
    /// `code=<code>` appended to its URL (ChiefOnboarding does the same).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_request: Option<Request>,
    /// Replaces the generated refresh request entirely (ChiefOnboarding: `refresh`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_request: Option<Request>,
    /// The JWT of grant `jwtBearer`, sent as `assertion`. Default claims: `iss` (the key
    /// file's `client_email`, else `{{ client_id }}`), `aud` (the token URL), `scope` (the
    /// `scopes`), `iat`, `exp`, `jti`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assertion: Option<SignedAssertion>,
    /// RFC 7009 token revocation endpoint URL template. When set, deleting the ConnectorAuth
    /// revokes the refresh token and then the access token the operator holds (best effort,
    /// within `revocationTimeoutSeconds`), with the token endpoint's client authentication and
    /// headers. The resource then carries the finalizer `connectorauth.dev/revoke` until the
    /// attempt is over; an Event says whether revocation succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revocation_url: Option<String>,
    /// How long revocation on delete may take in all (both requests), in seconds, before the
    /// resource is let go unrevoked. Default 10.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 300))]
    pub revocation_timeout_seconds: Option<u32>,
    /// The JWT of client authentication `private_key_jwt`, sent as `client_assertion` with
    /// every token request. Default claims: `iss` and `sub` (the `clientId`), `aud` (the token
    /// URL), `iat`, `nbf`, `exp` and a fresh `jti`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_assertion: Option<SignedAssertion>,
    /// Response extraction overrides. Defaults follow RFC 6749 (`access_token`,
    /// `refresh_token`, `expires_in`, `token_type`).
    #[serde(flatten)]
    pub extraction: Extraction,
}

/// A static API key.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApiKey {
    /// Template of the key; it becomes `access_token`. Default `{{ api_key }}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

/// JWT login: an application token is exchanged for a JWT access token and a refresh token.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Jwt {
    /// The login request, e.g. `POST https://api.webcrm.com/Auth/ApiLogin` with
    /// `{"authCode": "{{ app_token }}"}`. Required unless `spec.provider` gives it.
    #[serde(default)]
    pub login: Request,
    /// The refresh request, using `{{ refresh_token }}`. Without it the login is repeated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh: Option<RefreshRequest>,
    /// Extraction overrides. Defaults: `AccessToken`/`access_token`, `RefreshToken`/
    /// `refresh_token`; expiry from the JWT `exp` claim unless `expiresIn` is set.
    #[serde(flatten)]
    pub extraction: Extraction,
}

/// Tripletex session tokens (`PUT /v2/token/session/:create`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Tripletex {
    /// API base URL. Default `https://tripletex.no` (test: `https://api-test.tripletex.tech`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_url: Option<String>,
    /// Consumer token template. Default `{{ consumer_token }}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consumer_token: Option<String>,
    /// Employee token template. Default `{{ employee_token }}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub employee_token: Option<String>,
    /// Days until the session's `expirationDate`. Default 1 (tomorrow).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 365))]
    pub session_days: Option<u32>,
}

/// SuperOffice environment, selecting the default token endpoint.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SuperOfficeEnvironment {
    /// Development (`sod.superoffice.com`).
    Sod,
    /// Stage (`qaonline.superoffice.com`).
    Stage,
    /// Production (`online.superoffice.com`).
    #[default]
    Online,
}

/// SuperOffice: OAuth 2.0 whose `id_token` carries the `so_ticket`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SuperOffice {
    /// Environment; selects the default token URL
    /// `https://<env>.superoffice.com/login/common/oauth/tokens`. Default `online`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<SuperOfficeEnvironment>,
    /// Claim of the `id_token` that holds the ticket.
    /// Default `http://schemes.superoffice.net/identity/ticket`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ticket_claim: Option<String>,
    /// OAuth 2.0 settings (grant, client, overrides). `grantType` defaults to `refreshToken`
    /// here when not set.
    #[serde(flatten)]
    pub oauth2: OAuth2,
}

// --- Signed assertions (RFC 7523) and GitHub Apps -------------------------------------------

/// A JWT the operator signs with a private key from the credentials Secret, afresh for every
/// request. Claims are templates over the credentials keys, `now` and `token_url` (the URL
/// of the request the JWT is sent with); `iat`, `exp` (and where the flow needs them `nbf`
/// and `jti`) are set by the operator.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct SignedAssertion {
    /// Credentials key holding the private key: PEM (PKCS#8 `PRIVATE KEY`, PKCS#1
    /// `RSA PRIVATE KEY` or SEC1 `EC PRIVATE KEY`), or a JSON key file with a `private_key`
    /// field, such as a Google service-account key (its `client_email` is then the default
    /// `iss`, its `private_key_id` the default `kid`). Default `private_key`; `tls.key` when the
    /// credentials Secret is a kubernetes.io/tls Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self.size() > 0").message("privateKeyKey must not be empty"))]
    pub private_key_key: Option<String>,
    /// Credentials key holding the key's PEM certificate (e.g. `tls.crt`). Its SHA-1 and SHA-256
    /// thumbprints are sent as the `x5t` and `x5t#S256` headers, as Microsoft Entra ID
    /// certificate credentials require; the key must belong to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_key: Option<String>,
    /// Signing algorithm. Default from the key: RS256 for RSA, ES256 for P-256, ES384 for
    /// P-384, EdDSA for Ed25519.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub algorithm: Option<JwtAlgorithm>,
    /// The `kid` header, a template. Default: the key file's `private_key_id`, else none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    /// Claims by name; each value is a template rendered to a string, e.g.
    /// `sub: "{{ delegated_user }}"`. They add to or replace the default claims; an empty
    /// value removes a default claim.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub claims: BTreeMap<String, String>,
    /// How long the JWT is valid (`exp` - `iat`), e.g. `2m`. Default `2m` (GitHub Apps: `9m`);
    /// Salesforce accepts at most 3 minutes, Google and DocuSign at most an hour.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new(DURATION_RULE).message("lifetime must be a duration such as 30s, 2m or 1h, at most 3650d"))]
    pub lifetime: Option<String>,
}

/// A JWS signing algorithm (RFC 7518).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, schemars::JsonSchema)]
pub enum JwtAlgorithm {
    RS256,
    RS384,
    RS512,
    PS256,
    PS384,
    PS512,
    ES256,
    ES384,
    EdDSA,
}

/// GitHub App installation tokens. The operator signs an app JWT (RS256, `iss` = the app id,
/// valid for `assertion.lifetime`, default 9 minutes, `iat` 60 seconds in the past against
/// clock drift) and posts it to `POST {apiUrl}/app/installations/{installationId}/access_tokens`.
/// The installation token lives an hour and is renewed ahead of expiry (see `renewal`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GithubApp {
    /// The app's id (or client id), a template. Default `{{ app_id }}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_id: Option<String>,
    /// The installation id, a template. Default `{{ installation_id }}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub installation_id: Option<String>,
    /// REST API base URL. Default `https://api.github.com`; GitHub Enterprise Server:
    /// `https://HOST/api/v3`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_url: Option<String>,
    /// Restrict the token to these repositories (names, without owner).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub repositories: Vec<String>,
    /// Restrict the token's permissions, e.g. `{contents: read, issues: write}`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub permissions: BTreeMap<String, String>,
    /// The app JWT: which credentials key holds the app's private key (default
    /// `private_key`; the `.pem` GitHub lets you download), claims, lifetime.
    #[serde(default)]
    pub assertion: SignedAssertion,
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

/// Every key of a map is a valid Secret key (`IsConfigMapKey`).
const SECRET_KEYS_RULE: &str =
    "self.all(k, k.size() <= 253 && k.matches('^[-._a-zA-Z0-9]+$') && k != '.' && !k.startsWith('..'))";

impl Output {
    fn is_empty(&self) -> bool {
        self == &Output::default()
    }
}

/// The header a client sends, published as `header_name`, `header_value` and `headers.json`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct HeaderOutput {
    /// Header name (an HTTP token: letters, digits and `!#$%&*+.^_|~-`). Default `Authorization`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new(HEADER_NAME_RULE).message("header.name must be an HTTP header name: at most 256 letters, digits or !#$%&*+.^_|~-"))]
    pub name: Option<String>,
    /// Header value template, e.g. `Bearer {{ access_token }}` or
    /// `.DWPLATFORMAUTH={{ access_token }}` (Locoia: `token_prefix`). `{{ token_format }}` is
    /// the rendered `format`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// Template rendered first and offered as `{{ token_format }}` (Locoia: `token_format`).
    /// Default `{{ access_token }}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    /// Base64-encode `token_format` (Locoia: `encode`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub encode: bool,
    /// Further headers every API call needs (Locoia: `custom_headers`); values are templates.
    /// Names are HTTP header names, as for `name`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[x_kube(validation = Rule::new(HEADER_NAMES_RULE).message("header.extra names must be HTTP header names: at most 256 letters, digits or !#$%&*+.^_|~-"))]
    pub extra: BTreeMap<String, String>,
}

/// An HTTP header name: an RFC 9110 token, less the quote and backtick.
const HEADER_NAME_RULE: &str = "self.matches('^[A-Za-z0-9!#$%&*+.^_|~-]{1,256}$')";
const HEADER_NAMES_RULE: &str = "self.all(k, k.matches('^[A-Za-z0-9!#$%&*+.^_|~-]{1,256}$'))";

/// Whether `name` is a header name the CRD accepts (`HEADER_NAME_RULE`).
pub fn is_header_name(name: &str) -> bool {
    (1..=256).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "!#$%&*+.^_|~-".contains(c))
}

/// When to renew.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!(has(self.renewBefore) && has(self.renewBeforePercentage))").message("set either renewBefore or renewBeforePercentage, not both"))]
pub struct Renewal {
    /// Renew this long before expiry, e.g. `5m`. Default: at 2/3 of the lifetime.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new(DURATION_RULE).message("renewBefore must be a duration such as 30s, 5m or 1h30m, at most 3650d"))]
    pub renew_before: Option<String>,
    /// Renew when this percentage of the lifetime remains (1–99).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 99))]
    pub renew_before_percentage: Option<u8>,
    /// Renewal interval for tokens whose expiry is unknown, e.g. `1h`. Omitted: such tokens are
    /// permanent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new(DURATION_RULE).message("refreshInterval must be a duration such as 30s, 5m or 1h30m, at most 3650d"))]
    pub refresh_interval: Option<String>,
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

/// Names of consent callback values (`spec.oauth2.callbackValues`).
const CALLBACK_VALUES_RULE: &str = "self.all(n, n.matches('^[A-Za-z][A-Za-z0-9_.-]{0,63}$') && n != 'state')";

/// A duration such as `30s`, `5m`, `1h30m` or `2d`. Each number is bounded so that no duration
/// the API server accepts can overflow; the operator refuses anything above 3650d (ten years)
/// with a message naming the field.
const DURATION_RULE: &str =
    "self.size() <= 32 && self.matches('^([0-9]{1,4}d|[0-9]{1,5}h|[0-9]{1,7}m|[0-9]{1,9}s|[0-9]{1,12}ms)+$')";

impl Renewal {
    fn is_empty(&self) -> bool {
        self == &Renewal::default()
    }
}

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
