//! The scheme blocks of a spec, as users write them: plain data with their schema (doc
//! comments become `kubectl explain` text; `x-kubernetes-validations` are the CRD's CEL rules).
//! The `ConnectorAuth` resource around them is defined by the operator crate.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Every key of a map is a valid Secret key (`IsConfigMapKey`).
pub const SECRET_KEYS_RULE: &str =
    "self.all(k, k.size() <= 253 && k.matches('^[-._a-zA-Z0-9]+$') && k != '.' && !k.startsWith('..'))";

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
    /// Every scheme block's name, in the order the CRD lists them: the one list of them.
    pub const NAMES: [&'static str; 7] = [
        "refreshableToken",
        "oauth2",
        "apiKey",
        "jwt",
        "tripletex",
        "superOffice",
        "githubApp",
    ];

    /// The name shown in the `Scheme` printer column and in status: the block's field name.
    pub fn name(&self) -> &'static str {
        Self::NAMES[match self {
            Scheme::RefreshableToken(_) => 0,
            Scheme::OAuth2(_) => 1,
            Scheme::ApiKey(_) => 2,
            Scheme::Jwt(_) => 3,
            Scheme::Tripletex(_) => 4,
            Scheme::SuperOffice(_) => 5,
            Scheme::GithubApp(_) => 6,
        }]
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
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{"rule": "!(has(self.body) && has(self.form))", "message": "set either body or form, not both"}]))]
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
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{"rule": "[has(self.jsonPath), has(self.header), has(self.cookie)].filter(x, x).size() == 1", "message": "set exactly one of jsonPath, header or cookie"}]))]
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
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, schemars::JsonSchema)]
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
    #[schemars(extend("x-kubernetes-validations" = [{"rule": SECRET_KEYS_RULE, "message": "extras keys must be valid Secret keys: at most 253 alphanumeric characters, '-', '_' or '.', and not '.', '..' or starting with '..'"}]))]
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
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChainStep {
    /// The step's name: `{{ steps.<name>.<key> }}` in later templates, and in errors.
    #[schemars(extend("x-kubernetes-validations" = [{"rule": "self.matches('^[A-Za-z_][A-Za-z0-9_]*$')", "message": "a step name is a letter or underscore followed by letters, digits or underscores"}]))]
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
    /// `urn:ietf:params:oauth:grant-type:token-exchange` (RFC 8693): a token the operator
    /// holds — by default the ServiceAccount token of `spec.serviceAccountToken` — exchanged
    /// for one of the provider's (`tokenExchange` says which and for what). Renewal repeats
    /// the exchange with a fresh subject token.
    TokenExchange,
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
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, schemars::JsonSchema)]
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
    /// PKCE (RFC 7636, method S256) for grantType authorizationCode: each consent link carries
    /// a `code_challenge`, and the code exchange sends its `code_verifier`. The verifier is made
    /// per link from the operator's consent key and never leaves the operator (not in the link,
    /// status, Events or logs); whichever replica completes the consent derives the same one.
    /// A `tokenRequest` override sends it where it places `{{ code_verifier }}`. Default false
    /// (a provider entry may turn it on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pkce: Option<bool>,
    /// Query parameters of the consent callback to keep besides `code`, for the code exchange
    /// as `{{ callback.<name> }}` (an installation id, QuickBooks' `realmId`). Every other
    /// parameter a browser sends is ignored: callback values never become credentials or
    /// provider parameters, and never replace them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    #[schemars(extend("x-kubernetes-validations" = [{"rule": CALLBACK_VALUES_RULE, "message": "callbackValues are query parameter names: a letter followed by at most 63 letters, digits, '_', '-' or '.', and not `state`"}]))]
    pub callback_values: Vec<String>,
    /// The callback parameter that carries the authorization code, when the provider does not
    /// call it `code` (Amazon SP-API's website authorization: `spapi_oauth_code`). Templates
    /// still read it as `{{ code }}`. Default `code`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-validations" = [{"rule": "self.matches('^[A-Za-z][A-Za-z0-9_.-]{0,63}$') && self != 'state'", "message": "codeParameter is a query parameter name: a letter followed by at most 63 letters, digits, '_', '-' or '.', and not `state`"}]))]
    pub code_parameter: Option<String>,
    /// A signature over the consent callback's query string that must be valid before anything
    /// of it is used (Shopify's `hmac`): HMAC-SHA256, hex, over the other parameters sorted by
    /// name and joined as `name=value&…`, keyed with `key` (a template, usually
    /// `{{ client_secret }}`). A callback without it, or with a wrong one, is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callback_hmac: Option<CallbackHmac>,
    /// Requests sent once after each consent (and after each re-consent), with the new access
    /// token, in the shape of `refreshableToken.steps`: each step's extracted values are kept
    /// with the tokens across refreshes and restarts, and templates (the output's above all)
    /// read them as `{{ lookup.<name>.<key> }}` — Xero's tenant id from `GET /connections`,
    /// Atlassian's cloud id, DocuSign's `base_uri`. A failing lookup keeps the token, reports
    /// `LookupFailed` and is retried with backoff; nothing is published until it succeeds.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8))]
    pub lookups: Vec<ChainStep>,
    /// Extra query parameters of the consent link only (Nango: `authorization_params`), e.g.
    /// `{access_type: offline, prompt: consent}`; values are templates, URL-encoded.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub authorization_params: BTreeMap<String, String>,
    /// Extra form parameters of the first token request only (the code exchange, or the
    /// login), besides `extraParams` (Nango: `token_params`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub token_params: BTreeMap<String, String>,
    /// Extra form parameters of the refresh request only, besides `extraParams` (Nango:
    /// `refresh_params`), e.g. `{scope: "{{ scope }}"}` for providers that want the scope
    /// again on refresh.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub refresh_params: BTreeMap<String, String>,
    /// Where the provider puts an error code in an answer that otherwise looks like a success
    /// (Slack answers HTTP 200 with `{"ok": false, "error": "invalid_refresh_token"}`). An
    /// answer that has a value there (other than `false`, `null` or empty) is refused with that
    /// code, as an HTTP error answer would be.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_code: Option<ErrorCode>,
    /// DPoP (RFC 9449): every token request carries a proof signed with this key, so the
    /// provider binds the tokens to it (`cnf.jkt`); the token type published is `DPoP`, and
    /// API calls need a fresh proof each — `connector-auth-operator proxy` signs them with the
    /// same key. A `DPoP-Nonce` the server asks for is sent on the retry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dpop: Option<Dpop>,
    /// The parameters of grant `tokenExchange` (RFC 8693 §2.1). `audience` and `scopes` above
    /// are its `audience` and `scope`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_exchange: Option<TokenExchange>,
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

/// `oauth2.dpop`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Dpop {
    /// The credentials Secret key holding the PEM EC private key. Default `dpop.key`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_key_key: Option<String>,
    /// `ES256` (a P-256 key, the default) or `ES384` (P-384).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub algorithm: Option<JwtAlgorithm>,
}

/// `oauth2.tokenExchange`: what is exchanged, and for what.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TokenExchange {
    /// The subject token, a template. Default `{{ service_account_token }}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject_token: Option<String>,
    /// Its type. Default `urn:ietf:params:oauth:token-type:jwt`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject_token_type: Option<String>,
    /// The type of token asked for (e.g. `urn:ietf:params:oauth:token-type:access_token`);
    /// omitted by default, leaving it to the server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_token_type: Option<String>,
    /// `resource`: where the token will be used (a URI).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    /// An actor token (delegation, RFC 8693 §1.1), a template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor_token: Option<String>,
    /// The actor token's type. Default `urn:ietf:params:oauth:token-type:jwt`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor_token_type: Option<String>,
}

/// `oauth2.callbackHmac`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CallbackHmac {
    /// The callback parameter holding the signature. Default `hmac`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameter: Option<String>,
    /// The key, a template. Default `{{ client_secret }}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

/// `oauth2.errorCode`: an error reported in a successful-looking answer.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ErrorCode {
    /// Where the code is (`jsonPath: error`).
    #[serde(flatten)]
    pub at: Extract,
    /// Codes that mean the refresh token is dead for good, as RFC 6749's `invalid_grant`
    /// does (Slack: `invalid_refresh_token`, `token_revoked`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub invalid_grant: Vec<String>,
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
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SignedAssertion {
    /// Credentials key holding the private key: PEM (PKCS#8 `PRIVATE KEY`, PKCS#1
    /// `RSA PRIVATE KEY` or SEC1 `EC PRIVATE KEY`), or a JSON key file with a `private_key`
    /// field, such as a Google service-account key (its `client_email` is then the default
    /// `iss`, its `private_key_id` the default `kid`). Default `private_key`; `tls.key` when the
    /// credentials Secret is a kubernetes.io/tls Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-validations" = [{"rule": "self.size() > 0", "message": "privateKeyKey must not be empty"}]))]
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
    #[schemars(extend("x-kubernetes-validations" = [{"rule": DURATION_RULE, "message": "lifetime must be a duration such as 30s, 2m or 1h, at most 3650d"}]))]
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

/// The header a client sends, published as `header_name`, `header_value` and `headers.json`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HeaderOutput {
    /// Header name (an HTTP token: letters, digits and `!#$%&*+.^_|~-`). Default `Authorization`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-validations" = [{"rule": HEADER_NAME_RULE, "message": "header.name must be an HTTP header name: at most 256 letters, digits or !#$%&*+.^_|~-"}]))]
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
    #[schemars(extend("x-kubernetes-validations" = [{"rule": HEADER_NAMES_RULE, "message": "header.extra names must be HTTP header names: at most 256 letters, digits or !#$%&*+.^_|~-"}]))]
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
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{"rule": "!(has(self.renewBefore) && has(self.renewBeforePercentage))", "message": "set either renewBefore or renewBeforePercentage, not both"}]))]
pub struct Renewal {
    /// Renew this long before expiry, e.g. `5m`. Default: at 2/3 of the lifetime.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-validations" = [{"rule": DURATION_RULE, "message": "renewBefore must be a duration such as 30s, 5m or 1h30m, at most 3650d"}]))]
    pub renew_before: Option<String>,
    /// Renew when this percentage of the lifetime remains (1–99).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 99))]
    pub renew_before_percentage: Option<u8>,
    /// Renewal interval for tokens whose expiry is unknown, e.g. `1h`. Omitted: such tokens are
    /// permanent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-validations" = [{"rule": DURATION_RULE, "message": "refreshInterval must be a duration such as 30s, 5m or 1h30m, at most 3650d"}]))]
    pub refresh_interval: Option<String>,
    /// How long the provider lets a refresh token lie unused before revoking it (Google apps in
    /// "Testing" 7d, Xero and Pipedrive 60d). A token that is not renewed for other reasons is
    /// refreshed when 90% of this has passed since the last issuance, so the refresh token never
    /// lapses, even when the access token does not need it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-validations" = [{"rule": DURATION_RULE, "message": "refreshTokenIdleLimit must be a duration such as 7d or 60d, at most 3650d"}]))]
    pub refresh_token_idle_limit: Option<String>,
}

/// Names of consent callback values (`spec.oauth2.callbackValues`).
pub const CALLBACK_VALUES_RULE: &str = "self.all(n, n.matches('^[A-Za-z][A-Za-z0-9_.-]{0,63}$') && n != 'state')";

/// A duration such as `30s`, `5m`, `1h30m` or `2d`. Each number is bounded so that no duration
/// the API server accepts can overflow; the operator refuses anything above 3650d (ten years)
/// with a message naming the field.
pub const DURATION_RULE: &str =
    "self.size() <= 32 && self.matches('^([0-9]{1,4}d|[0-9]{1,5}h|[0-9]{1,7}m|[0-9]{1,9}s|[0-9]{1,12}ms)+$')";

impl Renewal {
    pub fn is_empty(&self) -> bool {
        self == &Renewal::default()
    }
}

/// What the engine compiles: the parts of a resource's spec a token depends on, with its
/// provider's settings already filled in. Provider resolution happens once, before the
/// engine (the operator's catalog), so nothing here names a provider.
#[derive(Clone, Copy, Debug)]
pub struct Spec<'a> {
    /// Name of the credentials Secret, for messages.
    pub credentials_secret: &'a str,
    pub scheme: &'a Scheme,
    pub renewal: &'a Renewal,
    pub publish: Publish<'a>,
    /// `spec.verify`.
    pub verify: Option<&'a Request>,
}

/// How the token is published: the parts of `spec.output` the engine renders.
#[derive(Clone, Copy, Debug)]
pub struct Publish<'a> {
    pub header: Option<&'a HeaderOutput>,
    /// `output.template`: extra keys, each value a template.
    pub template: &'a BTreeMap<String, String>,
    pub expose_refresh_token: bool,
    pub keep_previous: bool,
}

static NO_RENEWAL: Renewal = Renewal {
    renew_before: None,
    renew_before_percentage: None,
    refresh_interval: None,
    refresh_token_idle_limit: None,
};
static NO_TEMPLATES: BTreeMap<String, String> = BTreeMap::new();

impl Default for Publish<'_> {
    fn default() -> Self {
        Publish {
            header: None,
            template: &NO_TEMPLATES,
            expose_refresh_token: false,
            keep_previous: false,
        }
    }
}

impl<'a> Spec<'a> {
    /// A scheme block with every other setting left at its default.
    pub fn new(scheme: &'a Scheme) -> Self {
        Spec {
            credentials_secret: "",
            scheme,
            renewal: &NO_RENEWAL,
            publish: Publish::default(),
            verify: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `name()` is the block's field name as serde writes it, for every scheme.
    #[test]
    fn each_scheme_is_named_as_its_field() {
        for name in Scheme::NAMES {
            let scheme: Scheme = serde_json::from_value(serde_json::json!({ name: {} })).unwrap();
            assert_eq!(scheme.name(), name);
        }
    }
}
