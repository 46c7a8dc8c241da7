//! Every built-in provider entry, end to end: the entry (a ClusterConnectorAuthProvider
//! manifest) is accepted by an API server with the real CRDs, and a ConnectorAuth naming it is
//! run by local mode — consent where the provider asks for it, a published token the
//! provider's API accepts, and one renewal — against a loopback emulator of that provider.
//!
//! The emulator is configured by a row per provider written from the provider's documentation,
//! not from the entry: token path, client authentication, grant, parameters, the answer's field
//! names and whether refresh tokens rotate. Only the origin of the entry's URLs is pointed at
//! the emulator, so paths and query parameters are exercised as written.

mod support;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use connector_auth_operator::catalog;
use jiff::{Timestamp, ToSpan};
use kube::api::{Api, DynamicObject, PostParams};
use kube::discovery::ApiResource;
use serde_json::{Value, json};
use support::*;

const ID: &str = "the-client";
const SECRET: &str = "the-secret";

/// How the client authenticates at the token endpoint, as documented.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Auth {
    /// `Authorization: Basic base64(id:secret)`.
    Basic,
    /// `client_id` and `client_secret` among the parameters (form or JSON body).
    Post,
    /// None: the grant (a signed assertion) proves who asks.
    None,
    /// A `client_assertion` JWT (RFC 7523 §2.2) with `iss` = `sub` = the client id.
    Assertion,
    /// `Authorization: Bearer <app JWT>` (GitHub Apps).
    BearerJwt,
    /// Only `client_secret` (the platform's secret key) in the form, no client id (Stripe
    /// Connect).
    SecretOnly,
}

/// What the provider does with refresh tokens.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Refresh {
    /// No refresh token: renewal repeats the first grant.
    None,
    /// Issued once, not rotated: refresh answers omit it.
    Kept,
    /// Issued once, not rotated: refresh answers repeat the same one.
    Repeated,
    /// A new one with every refresh; the previous one is refused from then on.
    Rotating,
    /// The token does not expire: no renewal at all.
    Permanent,
}

/// One provider's documented behaviour.
#[derive(Clone)]
struct Row {
    name: &'static str,
    /// Method and path of the token endpoint.
    method: Method,
    token_path: &'static str,
    /// The consent page's path, for authorization-code providers.
    authorize_path: Option<&'static str>,
    /// The provider requires PKCE (S256): the consent page a `code_challenge`, the code
    /// exchange the `code_verifier` that hashes to it.
    pkce: bool,
    auth: Auth,
    /// The first request's `grant_type`.
    grant: &'static str,
    /// Further parameters the first request must carry (`*`: any non-empty value).
    params: &'static [(&'static str, &'static str)],
    /// Parameters that must arrive in the query string, not the body.
    query_only: bool,
    /// Whether token requests are JSON bodies.
    json_body: bool,
    /// A header every token request needs.
    header: Option<(&'static str, &'static str)>,
    /// Name of the access token field and of the lifetime field (`None`: not stated).
    token_field: &'static str,
    expires_in: Option<u64>,
    refresh: Refresh,
    /// Further fields of the answer.
    extra: &'static [(&'static str, &'static str)],
    /// The header API calls carry: name and what precedes the token.
    api_header: (&'static str, &'static str),
    /// Another header API calls carry.
    api_extra: Option<(&'static str, &'static str)>,
    /// `spec.providerParams` of the resource.
    provider_params: &'static [(&'static str, &'static str)],
    /// Credentials besides `client_id` and `client_secret`.
    credentials: &'static [(&'static str, &'static str)],
    /// Claims the signed assertion must carry (`aud` of `token_url`: the token URL).
    claims: &'static [(&'static str, &'static str)],
    /// When the renewals are run, in minutes after the first pass. Tokens whose expiry is an
    /// absolute time the provider computes from its clock are renewed before that time.
    renewals: &'static [i64],
    /// Further parameters the consent callback carries (QuickBooks' `realmId`).
    callback: &'static [(&'static str, &'static str)],
    /// The callback is signed as Shopify signs it (`hmac`, HMAC-SHA256 with the client secret).
    hmac: bool,
    /// The callback parameter that carries the code (Amazon SP-API: `spapi_oauth_code`).
    code_param: &'static str,
    /// The consent page's client parameter (Amazon SP-API: `application_id`).
    client_param: &'static str,
    /// Answers of the provider's other endpoints (post-connect lookups): path and JSON body,
    /// given to requests that carry an access token it issued.
    answers: &'static [(&'static str, &'static str)],
    /// Output keys the entry publishes, with the values the emulator's answers lead to.
    publishes: &'static [(&'static str, &'static str)],
}

const D: Row = Row {
    name: "",
    method: Method::POST,
    token_path: "/oauth/token",
    authorize_path: None,
    pkce: false,
    auth: Auth::Post,
    grant: "authorization_code",
    params: &[],
    query_only: false,
    json_body: false,
    header: None,
    token_field: "access_token",
    expires_in: Some(3600),
    refresh: Refresh::Kept,
    extra: &[],
    api_header: ("Authorization", "Bearer "),
    api_extra: None,
    provider_params: &[],
    credentials: &[],
    claims: &[],
    renewals: &[400 * 24 * 60, 800 * 24 * 60],
    callback: &[],
    hmac: false,
    code_param: "code",
    client_param: "client_id",
    answers: &[],
    publishes: &[],
};

// One provider a line: the table reads better than rustfmt's one field a line.
#[rustfmt::skip]
fn rows() -> Vec<Row> {
    let cc = "client_credentials";
    vec![
        Row { name: "adobe", token_path: "/ims/token/v3", grant: cc, params: &[("scope", "openid,AdobeID")], expires_in: Some(86399), refresh: Refresh::None, api_extra: Some(("x-api-key", ID)), ..D },
        Row { name: "airtable", auth: Auth::Basic, token_path: "/oauth2/v1/token", authorize_path: Some("/oauth2/v1/authorize"), pkce: true, params: &[("redirect_uri", "*")], refresh: Refresh::Rotating, extra: &[("refresh_expires_in", "5184000"), ("scope", "\"data.records:read schema.bases:read\"")], ..D },
        Row { name: "amazon-sp-api", token_path: "/auth/o2/token", grant: "refresh_token", refresh: Refresh::Repeated, api_header: ("x-amz-access-token", ""), credentials: &[("refresh_token", "Atzr|seed")], ..D },
        Row { name: "amazon-sp-api-website", token_path: "/auth/o2/token", authorize_path: Some("/apps/authorize/consent"), params: &[("redirect_uri", "*")], refresh: Refresh::Repeated, api_header: ("x-amz-access-token", ""), provider_params: &[("application_id", "amzn1.sp.solution.app-1")], code_param: "spapi_oauth_code", client_param: "application_id", callback: &[("selling_partner_id", "A1SELLER")], publishes: &[("selling_partner_id", "A1SELLER")], ..D },
        Row { name: "asana", token_path: "/-/oauth_token", authorize_path: Some("/-/oauth_authorize"), params: &[("redirect_uri", "*")], extra: &[("data", "{\"id\": \"1\"}")], ..D },
        Row { name: "ashby", api_header: ("Authorization", "Basic "), ..api_key() },
        Row { name: "atlassian", authorize_path: Some("/authorize"), json_body: true, refresh: Refresh::Rotating, params: &[("redirect_uri", "*")], answers: &[("/oauth/token/accessible-resources", r#"[{"id": "cloud-1", "url": "https://acme.atlassian.net", "name": "acme", "scopes": ["read:jira-work"]}]"#)], publishes: &[("cloud_id", "cloud-1"), ("site_url", "https://acme.atlassian.net")], ..D },
        Row { name: "auth0", grant: cc, params: &[("audience", "https://api.example.com")], expires_in: Some(86400), refresh: Refresh::None, provider_params: &[("domain", "example.eu.auth0.com"), ("audience", "https://api.example.com")], ..D },
        Row { name: "bamboohr", api_header: ("Authorization", "Basic "), provider_params: &[("company_domain", "acme")], ..api_key() },
        Row { name: "bitbucket", auth: Auth::Basic, token_path: "/site/oauth2/access_token", authorize_path: Some("/site/oauth2/authorize"), expires_in: Some(7200), ..D },
        Row { name: "box", token_path: "/oauth2/token", authorize_path: Some("/api/oauth2/authorize"), refresh: Refresh::Rotating, extra: &[("restricted_to", "[]")], ..D },
        Row { name: "box-ccg", token_path: "/oauth2/token", grant: cc, params: &[("box_subject_type", "enterprise"), ("box_subject_id", "12345")], refresh: Refresh::None, provider_params: &[("subject_id", "12345")], ..D },
        Row { name: "calendly", auth: Auth::Basic, authorize_path: Some("/oauth/authorize"), pkce: true, expires_in: Some(7200), refresh: Refresh::Rotating, extra: &[("owner", "\"https://api.calendly.com/users/1\""), ("organization", "\"https://api.calendly.com/organizations/1\"")], ..D },
        Row { name: "clickup", token_path: "/api/v2/oauth/token", authorize_path: Some("/api"), grant: "", query_only: true, expires_in: None, refresh: Refresh::Permanent, ..D },
        Row { name: "clickup-personal-token", api_header: ("Authorization", ""), ..api_key() },
        Row { name: "close", token_path: "/oauth2/token/", authorize_path: Some("/oauth2/authorize/"), params: &[("redirect_uri", "*")], refresh: Refresh::Rotating, ..D },
        Row { name: "datadog", api_header: ("DD-API-KEY", ""), api_extra: Some(("DD-APPLICATION-KEY", "app-key")), credentials: &[("api_key", "sk_test_123"), ("application_key", "app-key")], ..api_key() },
        Row { name: "discord", token_path: "/api/oauth2/token", authorize_path: Some("/api/oauth2/authorize"), params: &[("redirect_uri", "*")], expires_in: Some(604800), refresh: Refresh::Rotating, extra: &[("scope", "\"identify\"")], ..D },
        Row { name: "docusign", auth: Auth::Basic, authorize_path: Some("/oauth/auth"), expires_in: Some(28800), refresh: Refresh::Rotating, answers: &[("/oauth/userinfo", r#"{"sub": "u-1", "accounts": [{"account_id": "acct-2", "is_default": false, "base_uri": "https://eu.docusign.net"}, {"account_id": "acct-1", "is_default": true, "base_uri": "https://demo.docusign.net"}]}"#)], publishes: &[("account_id", "acct-1"), ("base_uri", "https://demo.docusign.net")], ..D },
        Row { name: "docuware", auth: Auth::None, token_path: "/DocuWare/Identity/connect/token", grant: "password", params: &[("scope", "docuware.platform"), ("client_id", ID), ("username", "dw-user"), ("password", "p@ss&word=1")], refresh: Refresh::None, credentials: &[("username", "dw-user"), ("password", "p@ss&word=1")], provider_params: &[("domain", "acme.docuware.cloud")], answers: &[("/DocuWare/Platform/Home/IdentityServiceInfo", r#"{"IdentityServiceUrl": "{base}/DocuWare/Identity"}"#), ("/DocuWare/Identity/.well-known/openid-configuration", r#"{"token_endpoint": "{base}/DocuWare/Identity/connect/token"}"#)], ..D },
        Row { name: "dropbox", auth: Auth::Basic, token_path: "/oauth2/token", authorize_path: Some("/oauth2/authorize"), expires_in: Some(14400), extra: &[("account_id", "\"dbid:1\"")], ..D },
        Row { name: "dynamics-365-business-central", token_path: "/tenant-1/oauth2/v2.0/token", grant: cc, params: &[("scope", "https://api.businesscentral.dynamics.com/.default")], refresh: Refresh::None, extra: &[("ext_expires_in", "3600")], provider_params: &[("tenant_id", "tenant-1"), ("environment", "production")], ..D },
        Row { name: "ebay", auth: Auth::Basic, token_path: "/identity/v1/oauth2/token", grant: cc, params: &[("scope", "https://api.ebay.com/oauth/api_scope")], expires_in: Some(7200), refresh: Refresh::None, extra: &[("token_type", "\"Application Access Token\"")], ..D },
        Row { name: "entra-certificate", auth: Auth::Assertion, token_path: "/tenant-1/oauth2/v2.0/token", grant: cc, params: &[("scope", "https://graph.microsoft.com/.default")], refresh: Refresh::None, provider_params: &[("tenant_id", "tenant-1")], claims: &[("aud", "token_url")], ..D },
        Row { name: "entra-id", token_path: "/tenant-1/oauth2/v2.0/token", grant: cc, params: &[("scope", "https://graph.microsoft.com/.default")], refresh: Refresh::None, extra: &[("ext_expires_in", "3600")], provider_params: &[("tenant", "tenant-1")], ..D },
        Row { name: "entra-id-delegated", token_path: "/organizations/oauth2/v2.0/token", authorize_path: Some("/organizations/oauth2/v2.0/authorize"), params: &[("redirect_uri", "*")], refresh: Refresh::Rotating, ..D },
        Row { name: "exact-online", token_path: "/api/oauth2/token", authorize_path: Some("/api/oauth2/auth"), params: &[("redirect_uri", "*")], expires_in: Some(600), refresh: Refresh::Rotating, ..D },
        Row { name: "figma-personal-token", api_header: ("X-Figma-Token", ""), ..api_key() },
        Row { name: "fortnox", auth: Auth::Basic, token_path: "/oauth-v1/token", authorize_path: Some("/oauth-v1/auth"), refresh: Refresh::Rotating, provider_params: &[("scope", "companyinformation")], ..D },
        Row { name: "freshdesk", api_header: ("Authorization", "Basic "), provider_params: &[("domain", "acme")], ..api_key() },
        Row { name: "github-app", auth: Auth::BearerJwt, json_body: true, token_path: "/app/installations/42/access_tokens", grant: "", token_field: "token", expires_in: None, refresh: Refresh::None, credentials: &[("app_id", "1234"), ("installation_id", "42")], claims: &[("iss", "1234")], renewals: &[50], ..D },
        Row { name: "github-oauth-app", token_path: "/login/oauth/access_token", authorize_path: Some("/login/oauth/authorize"), expires_in: None, refresh: Refresh::Permanent, extra: &[("scope", "\"repo\"")], ..D },
        Row { name: "gitlab", authorize_path: Some("/oauth/authorize"), expires_in: Some(7200), refresh: Refresh::Rotating, extra: &[("created_at", "1700000000")], ..D },
        Row { name: "gmail", token_path: "/token", authorize_path: Some("/o/oauth2/v2/auth"), params: &[("redirect_uri", "*")], extra: &[("scope", "\"https://www.googleapis.com/auth/gmail.readonly\""), ("token_type", "\"Bearer\"")], ..D },
        Row { name: "gong", api_header: ("Authorization", "Basic "), credentials: &[("access_key", "gong-key"), ("access_key_secret", "gong-secret")], ..api_key() },
        Row { name: "google", token_path: "/token", authorize_path: Some("/o/oauth2/v2/auth"), params: &[("redirect_uri", "*")], extra: &[("scope", "\"openid email\""), ("id_token", "\"eyJ.x.y\"")], ..D },
        Row { name: "google-calendar", token_path: "/token", authorize_path: Some("/o/oauth2/v2/auth"), params: &[("redirect_uri", "*")], extra: &[("scope", "\"https://www.googleapis.com/auth/calendar.readonly\"")], ..D },
        Row { name: "google-drive", token_path: "/token", authorize_path: Some("/o/oauth2/v2/auth"), params: &[("redirect_uri", "*")], extra: &[("scope", "\"https://www.googleapis.com/auth/drive.readonly\"")], ..D },
        Row { name: "google-service-account", auth: Auth::None, token_path: "/token", grant: "urn:ietf:params:oauth:grant-type:jwt-bearer", refresh: Refresh::None, provider_params: &[("scope", "https://www.googleapis.com/auth/drive.readonly")], claims: &[("iss", "sa@project.iam.gserviceaccount.com"), ("scope", "https://www.googleapis.com/auth/drive.readonly"), ("aud", "token_url")], ..D },
        Row { name: "gorgias", auth: Auth::Basic, authorize_path: Some("/oauth/authorize"), params: &[("redirect_uri", "*")], expires_in: Some(86400), refresh: Refresh::Kept, extra: &[("scope", "\"openid email profile offline write:all\""), ("id_token", "\"eyJ.x.y\"")], provider_params: &[("domain", "acme")], ..D },
        Row { name: "greenhouse", api_header: ("Authorization", "Basic "), ..api_key() },
        Row { name: "gusto", authorize_path: Some("/oauth/authorize"), params: &[("redirect_uri", "*")], expires_in: Some(7200), refresh: Refresh::Rotating, extra: &[("scope", "\"public\""), ("created_at", "1700000000")], ..D },
        Row { name: "harvest-personal-token", api_extra: Some(("Harvest-Account-Id", "123")), provider_params: &[("account_id", "123"), ("user_agent", "Test (ops@example.com)")], ..api_key() },
        Row { name: "help-scout", token_path: "/v2/oauth2/token", grant: cc, expires_in: Some(172800), refresh: Refresh::None, ..D },
        Row { name: "hubspot", token_path: "/oauth/2026-03/token", authorize_path: Some("/oauth/authorize"), params: &[("redirect_uri", "*")], expires_in: Some(1800), refresh: Refresh::Repeated, extra: &[("token_type", "\"bearer\""), ("hub_id", "62515"), ("user_id", "1"), ("token_use", "\"access_token\"")], provider_params: &[("scope", "crm.objects.contacts.read")], answers: &[("/oauth/2026-03/token/introspect", r#"{"active": true, "hub_id": 62515, "app_id": 1, "user_id": 1, "scopes": ["oauth"], "token_use": "access_token"}"#)], publishes: &[("hub_id", "62515")], ..D },
        Row { name: "intercom", token_path: "/auth/eagle/token", authorize_path: Some("/oauth"), expires_in: None, refresh: Refresh::Permanent, extra: &[("token", "\"same-as-access-token\"")], ..D },
        Row { name: "keycloak", auth: Auth::Basic, token_path: "/realms/acme/protocol/openid-connect/token", grant: cc, expires_in: Some(300), refresh: Refresh::None, extra: &[("refresh_expires_in", "0"), ("not-before-policy", "0")], provider_params: &[("host", "sso.example.com"), ("realm", "acme")], ..D },
        Row { name: "klaviyo", auth: Auth::Basic, authorize_path: Some("/oauth/authorize"), pkce: true, params: &[("redirect_uri", "*")], api_extra: Some(("revision", "2026-10-15")), ..D },
        Row { name: "klaviyo-private-key", api_header: ("Authorization", "Klaviyo-API-Key "), api_extra: Some(("revision", "2026-10-15")), ..api_key() },
        Row { name: "lever", authorize_path: Some("/authorize"), params: &[("redirect_uri", "*")], refresh: Refresh::Rotating, extra: &[("scope", "\"offline_access users:read:admin\"")], ..D },
        Row { name: "linear", authorize_path: Some("/oauth/authorize"), params: &[("redirect_uri", "*")], expires_in: Some(86399), refresh: Refresh::Rotating, extra: &[("scope", "\"read\"")], ..D },
        Row { name: "linkedin", token_path: "/oauth/v2/accessToken", authorize_path: Some("/oauth/v2/authorization"), params: &[("redirect_uri", "*")], expires_in: Some(5184000), refresh: Refresh::Repeated, extra: &[("refresh_token_expires_in", "31536000")], provider_params: &[("scope", "openid profile")], ..D },
        Row { name: "mailchimp", token_path: "/oauth2/token", authorize_path: Some("/oauth2/authorize"), params: &[("redirect_uri", "*")], expires_in: None, refresh: Refresh::Permanent, answers: &[("/oauth2/metadata", r#"{"dc": "us1", "api_endpoint": "https://us1.api.mailchimp.com"}"#)], publishes: &[("dc", "us1")], ..D },
        Row { name: "mailgun", api_header: ("Authorization", "Basic "), ..api_key() },
        Row { name: "miro", token_path: "/v1/oauth/token", authorize_path: Some("/oauth/authorize"), params: &[("redirect_uri", "*")], refresh: Refresh::Rotating, extra: &[("team_id", "3074457358607431473"), ("user_id", "3074457358607431474"), ("scope", "\"boards:read\"")], ..D },
        Row { name: "monday", token_path: "/oauth_ms/oauth/token", authorize_path: Some("/oauth2/authorize"), pkce: true, params: &[("redirect_uri", "*")], refresh: Refresh::Rotating, api_header: ("Authorization", ""), ..D },
        Row { name: "netsuite", auth: Auth::Basic, token_path: "/services/rest/auth/oauth2/v1/token", authorize_path: Some("/app/login/oauth2/authorize.nl"), params: &[("redirect_uri", "*")], refresh: Refresh::Kept, extra: &[("id_token", "\"eyJ.x.y\"")], provider_params: &[("account_id", "1234567-sb1")], ..D },
        Row { name: "notion", auth: Auth::Basic, token_path: "/v1/oauth/token", authorize_path: Some("/v1/oauth/authorize"), json_body: true, params: &[("redirect_uri", "*")], expires_in: None, refresh: Refresh::Permanent, extra: &[("bot_id", "\"b-1\""), ("workspace_id", "\"w-1\""), ("workspace_name", "\"Acme\""), ("owner", "{\"type\": \"user\"}"), ("duplicated_template_id", "null"), ("request_id", "\"r-1\"")], api_extra: Some(("Notion-Version", "2025-09-03")), ..D },
        Row { name: "okta", auth: Auth::Basic, token_path: "/oauth2/default/v1/token", grant: cc, params: &[("scope", "widgets.read")], refresh: Refresh::None, provider_params: &[("okta_domain", "example.okta.com"), ("scope", "widgets.read")], ..D },
        Row { name: "outreach", authorize_path: Some("/oauth/authorize"), params: &[("redirect_uri", "*")], expires_in: Some(7200), refresh: Refresh::Rotating, provider_params: &[("scope", "users.read")], ..D },
        Row { name: "pagerduty", api_header: ("Authorization", "Token token="), api_extra: Some(("Accept", "application/vnd.pagerduty+json;version=2")), ..api_key() },
        Row { name: "paypal", auth: Auth::Basic, token_path: "/v1/oauth2/token", grant: cc, expires_in: Some(32400), refresh: Refresh::None, extra: &[("app_id", "\"APP-1\""), ("nonce", "\"n\"")], ..D },
        Row { name: "pipedrive", auth: Auth::Basic, authorize_path: Some("/oauth/authorize"), params: &[("redirect_uri", "*")], expires_in: Some(3599), refresh: Refresh::Repeated, extra: &[("api_domain", "\"{base}\"")], ..D },
        Row { name: "postmark", api_header: ("X-Postmark-Server-Token", ""), ..api_key() },
        Row { name: "postmark-account", api_header: ("X-Postmark-Account-Token", ""), ..api_key() },
        Row { name: "poweroffice-go", auth: Auth::Basic, token_path: "/Demo/OAuth/Token", grant: cc, header: Some(("Ocp-Apim-Subscription-Key", "sub-key")), refresh: Refresh::None, api_extra: Some(("Ocp-Apim-Subscription-Key", "sub-key")), credentials: &[("application_key", ID), ("client_key", SECRET), ("subscription_key", "sub-key")], ..D },
        Row { name: "quickbooks-online", auth: Auth::Basic, token_path: "/oauth2/v1/tokens/bearer", authorize_path: Some("/connect/oauth2"), params: &[("redirect_uri", "*")], refresh: Refresh::Rotating, extra: &[("x_refresh_token_expires_in", "8726400")], callback: &[("realmId", "9130350000000000")], publishes: &[("realm_id", "9130350000000000")], ..D },
        Row { name: "reddit", auth: Auth::Basic, token_path: "/api/v1/access_token", authorize_path: Some("/api/v1/authorize"), params: &[("redirect_uri", "*")], extra: &[("scope", "\"identity\"")], api_extra: Some(("User-Agent", "test:app:v1 (by /u/test)")), provider_params: &[("user_agent", "test:app:v1 (by /u/test)")], ..D },
        Row { name: "ringcentral", auth: Auth::Basic, token_path: "/restapi/oauth/token", authorize_path: Some("/restapi/oauth/authorize"), params: &[("redirect_uri", "*")], refresh: Refresh::Rotating, extra: &[("refresh_token_expires_in", "604800"), ("scope", "\"ReadAccounts\""), ("owner_id", "\"256440016\""), ("endpoint_id", "\"e-1\"")], ..D },
        Row { name: "salesforce", token_path: "/services/oauth2/token", authorize_path: Some("/services/oauth2/authorize"), pkce: true, params: &[("redirect_uri", "*")], expires_in: None, refresh: Refresh::Kept, extra: &[("instance_url", "\"https://acme.my.salesforce.com\""), ("signature", "\"sig\""), ("issued_at", "\"1700000000000\""), ("id", "\"https://login.salesforce.com/id/00D/005\"")], ..D },
        Row { name: "salesforce-client-credentials", token_path: "/services/oauth2/token", grant: cc, expires_in: None, refresh: Refresh::None, extra: &[("instance_url", "\"https://acme.my.salesforce.com\"")], provider_params: &[("my_domain", "acme")], ..D },
        Row { name: "salesforce-jwt", auth: Auth::None, token_path: "/services/oauth2/token", grant: "urn:ietf:params:oauth:grant-type:jwt-bearer", expires_in: None, refresh: Refresh::None, extra: &[("instance_url", "\"{base}\"")], credentials: &[("consumer_key", "3MVG9-key"), ("username", "integration@example.com")], claims: &[("iss", "3MVG9-key"), ("sub", "integration@example.com"), ("aud", "https://login.salesforce.com")], ..D },
        Row { name: "salesloft", token_path: "/oauth/token", authorize_path: Some("/oauth/authorize"), json_body: true, params: &[("redirect_uri", "*")], expires_in: Some(7200), refresh: Refresh::Rotating, ..D },
        Row { name: "sendgrid", ..api_key() },
        Row { name: "shopify", token_path: "/admin/oauth/access_token", authorize_path: Some("/admin/oauth/authorize"), grant: "", params: &[("code", "*"), ("expiring", "1")], expires_in: Some(3600), refresh: Refresh::Rotating, extra: &[("scope", "\"read_products\""), ("refresh_token_expires_in", "7776000")], api_header: ("X-Shopify-Access-Token", ""), provider_params: &[("shop", "acme"), ("scope", "read_products")], callback: &[("shop", "acme.myshopify.com"), ("timestamp", "1765100000")], hmac: true, publishes: &[("shop_domain", "acme.myshopify.com")], ..D },
        Row { name: "slack", auth: Auth::Basic, token_path: "/api/oauth.v2.access", authorize_path: Some("/oauth/v2/authorize"), expires_in: None, refresh: Refresh::Permanent, extra: &[("ok", "true"), ("token_type", "\"bot\""), ("bot_user_id", "\"U1\""), ("team", "{\"id\": \"T1\"}")], provider_params: &[("scope", "chat:write")], ..D },
        Row { name: "smartsheet", token_path: "/2.0/token", authorize_path: Some("/b/authorize"), expires_in: Some(604799), refresh: Refresh::Rotating, ..D },
        Row { name: "snov-io", token_path: "/v1/oauth/access_token", grant: cc, refresh: Refresh::None, extra: &[("success", "true"), ("token_type", "\"Bearer\"")], ..D },
        Row { name: "spotify", auth: Auth::Basic, token_path: "/api/token", authorize_path: Some("/authorize"), params: &[("redirect_uri", "*")], extra: &[("scope", "\"user-read-private user-read-email\"")], ..D },
        Row { name: "spotify-client-credentials", auth: Auth::Basic, token_path: "/api/token", grant: cc, refresh: Refresh::None, ..D },
        Row { name: "square", token_path: "/oauth2/token", authorize_path: Some("/oauth2/authorize"), json_body: true, expires_in: None, refresh: Refresh::Repeated, extra: &[("merchant_id", "\"ML1\""), ("short_lived", "false"), ("expires_at", "\"{in_30_days}\"")], renewals: &[20 * 24 * 60, 28 * 24 * 60], ..D },
        Row { name: "square-access-token", ..api_key() },
        Row { name: "stripe", ..api_key() },
        Row { name: "stripe-connect", auth: Auth::SecretOnly, authorize_path: Some("/oauth/authorize"), expires_in: None, refresh: Refresh::Permanent, extra: &[("token_type", "\"bearer\""), ("stripe_user_id", "\"acct_1\""), ("stripe_publishable_key", "\"pk_test_1\""), ("livemode", "false"), ("scope", "\"read_write\"")], ..D },
        Row { name: "twilio", api_header: ("Authorization", "Basic "), credentials: &[("api_key_sid", "SK123"), ("api_key_secret", "sk_test_123")], ..api_key() },
        Row { name: "twitch", token_path: "/oauth2/token", grant: cc, expires_in: Some(5011271), refresh: Refresh::None, api_extra: Some(("Client-Id", ID)), ..D },
        Row { name: "twitch-user", token_path: "/oauth2/token", authorize_path: Some("/oauth2/authorize"), params: &[("redirect_uri", "*")], expires_in: Some(14124), refresh: Refresh::Rotating, extra: &[("scope", "[\"user:read:email\"]")], api_extra: Some(("Client-Id", ID)), ..D },
        Row { name: "typeform", authorize_path: Some("/oauth/authorize"), params: &[("redirect_uri", "*")], expires_in: Some(604800), provider_params: &[("host", "api.typeform.com")], ..D },
        Row { name: "typeform-personal-token", ..api_key() },
        Row { name: "visma-eaccounting", auth: Auth::Basic, token_path: "/connect/token", authorize_path: Some("/connect/authorize"), params: &[("redirect_uri", "*")], refresh: Refresh::Rotating, ..D },
        Row { name: "webflow", token_path: "/oauth/access_token", authorize_path: Some("/oauth/authorize"), params: &[("redirect_uri", "*")], expires_in: None, refresh: Refresh::Permanent, ..D },
        Row { name: "webflow-site-token", ..api_key() },
        Row { name: "workable", provider_params: &[("subdomain", "acme")], ..api_key() },
        Row { name: "workday", auth: Auth::Basic, token_path: "/ccx/oauth2/acme/token", grant: "refresh_token", refresh: Refresh::Repeated, credentials: &[("refresh_token", "Atzr|seed")], provider_params: &[("host", "wd2-impl-services1.workday.com"), ("tenant", "acme")], ..D },
        Row { name: "x", auth: Auth::Basic, token_path: "/2/oauth2/token", authorize_path: Some("/i/oauth2/authorize"), pkce: true, params: &[("redirect_uri", "*")], expires_in: Some(7200), refresh: Refresh::Rotating, extra: &[("scope", "\"tweet.read users.read offline.access\"")], ..D },
        Row { name: "xero", auth: Auth::Basic, token_path: "/connect/token", authorize_path: Some("/identity/connect/authorize"), params: &[("redirect_uri", "*")], expires_in: Some(1800), refresh: Refresh::Rotating, extra: &[("id_token", "\"eyJ.x.y\"")], api_extra: Some(("xero-tenant-id", "tenant-1")), answers: &[("/connections", r#"[{"id": "c-0", "tenantId": "practice-1", "tenantType": "PRACTICEMANAGER"}, {"id": "c-1", "tenantId": "tenant-1", "tenantType": "ORGANISATION"}]"#)], publishes: &[("tenant_id", "tenant-1")], ..D },
        Row { name: "zendesk", token_path: "/oauth/tokens", authorize_path: Some("/oauth/authorizations/new"), json_body: true, params: &[("redirect_uri", "*"), ("scope", "read write"), ("expires_in", "3600"), ("refresh_token_expires_in", "7776000")], expires_in: Some(3600), refresh: Refresh::Rotating, extra: &[("scope", "\"read write\""), ("refresh_token_expires_in", "7776000")], provider_params: &[("subdomain", "acme")], ..D },
        Row { name: "zoho", token_path: "/oauth/v2/token", authorize_path: Some("/oauth/v2/auth"), params: &[("redirect_uri", "*")], refresh: Refresh::Kept, extra: &[("api_domain", "\"https://www.zohoapis.eu\"")], api_header: ("Authorization", "Zoho-oauthtoken "), provider_params: &[("scope", "ZohoCRM.modules.ALL")], callback: &[("location", "eu"), ("accounts-server", "https://accounts.zoho.eu")], publishes: &[("location", "eu")], ..D },
        Row { name: "zoom", auth: Auth::Basic, grant: "account_credentials", params: &[("account_id", "acct-1")], query_only: true, expires_in: Some(3599), refresh: Refresh::None, provider_params: &[("account_id", "acct-1")], ..D },
        Row { name: "zoom-user", auth: Auth::Basic, authorize_path: Some("/oauth/authorize"), params: &[("redirect_uri", "*")], expires_in: Some(3599), refresh: Refresh::Rotating, extra: &[("scope", "\"user:read\""), ("api_url", "\"https://api.zoom.us\"")], ..D },
    ]
}

fn api_key() -> Row {
    Row {
        token_path: "",
        grant: "",
        refresh: Refresh::Permanent,
        credentials: &[("api_key", "sk_test_123")],
        ..D
    }
}

/// Entries without a `verify` request, and why.
const NO_VERIFY: &[(&str, &str)] = &[
    (
        "aws-sts-web-identity",
        "AWS calls are signed (SigV4) with the published keys; a bearer-style verify request cannot make one",
    ),
    (
        "entra-workload-identity",
        "an app-only token is for whatever resource `scope` names; Microsoft Graph has no identity call for app tokens",
    ),
    (
        "token-exchange",
        "any RFC 8693 server: the exchanged token is for an API the entry does not know",
    ),
    (
        "adobe",
        "an OAuth server-to-server token belongs to the project's technical account, not a user; no documented IMS identity/userinfo call accepts it, and which product API works depends on the APIs added to the Developer Console project",
    ),
    (
        "auth0",
        "a client-credentials token is issued for the customer's own API (`audience`); /userinfo needs a user token, and the Management API only answers if the audience is that API and the needed scopes were granted, so no request passes for every app token",
    ),
    (
        "entra-certificate",
        "an app-only token is for whatever resource `scope` names; Microsoft Graph has no identity call for app tokens (/me needs a signed-in user) and every Graph read needs an application permission the admin must grant, so nothing passes for every working credential",
    ),
    (
        "entra-id",
        "an app-only token is for whatever resource `scope` names; Microsoft Graph has no identity call for app tokens (/me needs a signed-in user) and every Graph read needs an application permission the admin must grant, so nothing passes for every working credential",
    ),
    (
        "fortnox",
        "every Fortnox API resource is tied to a scope and the entry's `scope` has no default; with the `companyinformation` scope GET https://api.fortnox.se/3/companyinformation would do (consider defaulting the scope to include it)",
    ),
    (
        "keycloak",
        "since Keycloak 20 /userinfo requires the `openid` scope in the token, which a client-credentials request without scope does not carry; introspection needs the client's own credentials in the body, not the bearer token; the admin REST API depends on service-account roles",
    ),
    (
        "linkedin",
        "what a token may call depends on the products and scopes of the app; GET https://api.linkedin.com/v2/userinfo passes only with the `openid` scope (Sign In with LinkedIn using OpenID Connect), and the entry's `scope` has no default",
    ),
    (
        "okta",
        "a client-credentials token of a custom authorization server carries only custom scopes: /userinfo needs a user token with `openid`, and Okta's own APIs accept only org-authorization-server tokens with okta.* scopes; introspection needs client credentials in the body",
    ),
    (
        "slack",
        "auth.test answers HTTP 200 with `ok: false` for a revoked token, and `spec.verify` judges by the status only",
    ),
    (
        "superoffice",
        "the SOTicket works only against the tenant's own web API URL (https://sod.superoffice.com/<context>/api/...), which the entry neither has as a param nor extracts; it could be taken from the id_token's webapi_url claim and then e.g. GET {{ webapi_url }}/v1/User/currentPrincipal, but that is not expressible with the current settings",
    ),
    (
        "webcrm",
        "no documented identity call found for webCRM API tokens; every data endpoint (e.g. /Persons) is subject to the access rights given to the application token, so none is known to pass for every working token",
    ),
    (
        "wix",
        "API keys get only the permissions chosen when they are created in the API Keys Manager, and Wix answers 403 for a call outside them; no site-level call is open to every key",
    ),
    (
        "woocommerce",
        "the entry has no parameter for the store's host, so no URL can be written; with one (e.g. `store_url`) any authenticated read such as GET https://{{ store_url }}/wp-json/wc/v3/products?per_page=1 would do for read or read/write keys",
    ),
    (
        "workday",
        "integration users (not workers) have no documented identity endpoint; Workday's REST APIs need a tenant-specific resource",
    ),
    (
        "zoho",
        "every Zoho API needs a product scope the resource chooses; there is no identity call that any Zoho token passes",
    ),
    (
        "zoom",
        "a Server-to-Server token only reaches the scopes added to the app, and the entry fixes none; with user:read:user:admin (or user:read:admin) GET https://api.zoom.us/v2/users/me would answer the account owner",
    ),
];

/// Entries whose providers have their own emulators in `tests/support` (written from the same
/// documentation for tests/engine_providers.rs): the entry, its credentials, an API path.
fn seeded() -> Vec<&'static str> {
    vec!["superoffice", "tripletex", "webcrm", "wix", "woocommerce"]
}

/// Entries that take the workload's ServiceAccount token: each against the workload identity
/// services of tests/support, with a token the test API server signed for the audience the
/// entry documents (the services verify it against the server's published keys).
fn workload() -> Vec<&'static str> {
    vec![
        "aws-sts-web-identity",
        "entra-workload-identity",
        "gcp-workload-identity",
        "token-exchange",
        "vault-jwt",
    ]
}

// ---------------------------------------------------------------- the emulator

#[derive(Default)]
struct Book {
    access: Vec<String>,
    refresh: Option<String>,
    revoked: Vec<String>,
    /// Codes issued and not redeemed, each with its PKCE challenge.
    codes: Vec<(String, Option<String>)>,
    first: u32,
    refreshes: u32,
    refused: Vec<String>,
}

struct Emu {
    row: Row,
    base: String,
    book: Mutex<Book>,
}

fn refuse(e: &Emu, why: String) -> Response {
    e.book.lock().unwrap().refused.push(why.clone());
    (
        StatusCode::BAD_REQUEST,
        axum::Json(json!({"error": "invalid_request", "error_description": why})),
    )
        .into_response()
}

fn claims_of(jwt: &str) -> Option<Value> {
    let payload = jwt.split('.').nth(1)?;
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()
}

fn check_claims(e: &Emu, jwt: &str) -> Result<(), String> {
    let claims = claims_of(jwt).ok_or("the assertion is not a JWT")?;
    for (k, v) in e.row.claims {
        let want = if *v == "token_url" {
            format!("{}{}", e.base, e.row.token_path)
        } else {
            v.to_string()
        };
        if claims[k] != want.as_str() {
            return Err(format!("claim {k} is {}, not {want}", claims[k]));
        }
    }
    if claims["exp"].as_i64().is_none() {
        return Err("no exp claim".into());
    }
    Ok(())
}

async fn handle(
    State(e): State<Arc<Emu>>,
    method: Method,
    uri: Uri,
    RawQuery(q): RawQuery,
    h: HeaderMap,
    body: Bytes,
) -> Response {
    let row = &e.row;
    let path = uri.path();
    if Some(path) == row.authorize_path {
        let q: HashMap<String, String> = form_urlencoded(q.as_deref().unwrap_or_default());
        if q.get(row.client_param).is_none_or(|c| c.is_empty())
            || !q.contains_key("redirect_uri")
            || !q.contains_key("state")
        {
            return refuse(
                &e,
                format!(
                    "consent page: {}, redirect_uri and state are required: {q:?}",
                    row.client_param
                ),
            );
        }
        let challenge = match (
            q.get("code_challenge"),
            q.get("code_challenge_method").map(String::as_str),
        ) {
            (Some(c), Some("S256")) => Some(c.clone()),
            _ if row.pkce => return refuse(&e, "consent page: PKCE (S256 code_challenge) is required".into()),
            _ => None,
        };
        let code = format!("code-{}", rand::random::<u32>());
        e.book.lock().unwrap().codes.push((code.clone(), challenge));
        let mut back: Vec<(&str, &str)> = vec![(row.code_param, &code), ("state", &q["state"])];
        back.extend(row.callback.iter().copied());
        let signature = row
            .hmac
            .then(|| connector_auth_operator::engine::callback::sign(SECRET.as_bytes(), &back));
        if let Some(sig) = &signature {
            back.push(("hmac", sig));
        }
        let query: String = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(back)
            .finish();
        let to = format!("{}?{query}", q["redirect_uri"]);
        return (StatusCode::FOUND, [("location", to)]).into_response();
    }
    if let Some((_, answer)) = row.answers.iter().find(|(p, _)| *p == path) {
        // A lookup: the new access token in a header or in the form (token introspection). A
        // discovery document (`{base}` in it) is public.
        let book = e.book.lock().unwrap();
        let text = format!("{h:?} {}", String::from_utf8_lossy(&body));
        let public = answer.contains("{base}");
        return if public || book.access.iter().any(|a| text.contains(a.as_str())) {
            let answer = answer.replace("{base}", &e.base);
            (StatusCode::OK, [("content-type", "application/json")], answer).into_response()
        } else {
            StatusCode::UNAUTHORIZED.into_response()
        };
    }
    if path != api_path(row) && path != row.token_path && Some(path) != row.authorize_path {
        // The entry's `verify` request (its provider's identity endpoint): passes with a
        // credential the emulator issued or was given, in whatever header the entry sends it.
        let book = e.book.lock().unwrap();
        let mut seen: Vec<String> = h.values().filter_map(|v| v.to_str().ok()).map(str::to_string).collect();
        seen.extend(
            seen.clone()
                .iter()
                .filter_map(|v| v.strip_prefix("Basic "))
                .filter_map(|b| STANDARD.decode(b).ok())
                .map(|b| String::from_utf8_lossy(&b).into_owned()),
        );
        let mut known: Vec<String> = book.access.clone();
        known.extend(row.credentials.iter().map(|(_, v)| v.to_string()));
        let ok = seen
            .iter()
            .any(|v| known.iter().any(|k| !k.is_empty() && v.contains(k.as_str())));
        return if ok {
            (StatusCode::OK, axum::Json(json!({"ok": true}))).into_response()
        } else {
            StatusCode::UNAUTHORIZED.into_response()
        };
    }
    if path == api_path(row) {
        let (name, prefix) = row.api_header;
        let got = h
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix(prefix));
        let extra_ok = row
            .api_extra
            .is_none_or(|(n, v)| h.get(n).and_then(|x| x.to_str().ok()) == Some(v));
        let book = e.book.lock().unwrap();
        return match got {
            Some(t) if extra_ok && book.access.iter().any(|a| a == t) => StatusCode::OK.into_response(),
            Some(t) if extra_ok && row.token_path.is_empty() && static_key_ok(row, t) => StatusCode::OK.into_response(),
            _ => StatusCode::UNAUTHORIZED.into_response(),
        };
    }
    if path != row.token_path || method != row.method {
        return refuse(&e, format!("{method} {path}: not the token endpoint"));
    }
    // The parameters: from the query string, and from the body (form or JSON).
    let query = form_urlencoded(q.as_deref().unwrap_or_default());
    let ctype = h
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let body_params: HashMap<String, String> = if body.is_empty() {
        HashMap::new()
    } else if row.json_body {
        if !ctype.starts_with("application/json") {
            return refuse(&e, format!("a JSON body is required, got {ctype}"));
        }
        match serde_json::from_slice::<serde_json::Map<String, Value>>(&body) {
            Ok(m) => m
                .into_iter()
                .map(|(k, v)| (k, v.as_str().map(String::from).unwrap_or(v.to_string())))
                .collect(),
            Err(err) => return refuse(&e, format!("body is not JSON: {err}")),
        }
    } else {
        if !ctype.starts_with("application/x-www-form-urlencoded") {
            return refuse(&e, format!("a form body is required, got {ctype}"));
        }
        form_urlencoded(&String::from_utf8_lossy(&body))
    };
    if row.query_only && !body_params.is_empty() {
        return refuse(&e, "parameters belong in the query string".into());
    }
    let mut p = query.clone();
    p.extend(body_params);
    // Client authentication.
    let basic = h
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| STANDARD.decode(b).ok())
        .map(|b| String::from_utf8_lossy(&b).into_owned());
    let auth_ok = match row.auth {
        Auth::Basic => basic.as_deref() == Some(&format!("{ID}:{SECRET}")) && !p.contains_key("client_secret"),
        Auth::Post => {
            basic.is_none()
                && p.get("client_id").map(String::as_str) == Some(ID)
                && p.get("client_secret").map(String::as_str) == Some(SECRET)
        }
        Auth::None => basic.is_none() && !p.contains_key("client_secret"),
        Auth::SecretOnly => basic.is_none() && p.get("client_secret").map(String::as_str) == Some(SECRET),
        Auth::Assertion => {
            p.get("client_assertion_type").map(String::as_str)
                == Some("urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
                && p.get("client_assertion").is_some_and(|a| {
                    let c = claims_of(a).unwrap_or_default();
                    c["iss"] == ID && c["sub"] == ID && check_claims(&e, a).is_ok()
                })
        }
        Auth::BearerJwt => h
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .is_some_and(|j| check_claims(&e, j).is_ok()),
    };
    if !auth_ok {
        return refuse(&e, format!("client authentication is not {:?}", row.auth));
    }
    if let Some((name, value)) = row.header
        && h.get(name).and_then(|v| v.to_str().ok()) != Some(value)
    {
        return refuse(&e, format!("header {name} is required"));
    }
    let grant = p.get("grant_type").cloned().unwrap_or_default();
    let mut book = e.book.lock().unwrap();
    let refreshing = grant == "refresh_token" && !(row.grant == "refresh_token" && book.first == 0);
    if refreshing {
        let presented = p.get("refresh_token").cloned().unwrap_or_default();
        if book.refresh.as_deref() != Some(presented.as_str()) {
            let why = if book.revoked.contains(&presented) {
                "a rotated (revoked) refresh token was replayed"
            } else {
                "unknown refresh token"
            };
            drop(book);
            return refuse(&e, why.into());
        }
        book.refreshes += 1;
    } else {
        if !row.grant.is_empty() && grant != row.grant {
            drop(book);
            return refuse(&e, format!("grant_type {grant:?}, expected {:?}", row.grant));
        }
        for (k, v) in row.params {
            let got = p.get(*k).map(String::as_str).unwrap_or_default();
            if got.is_empty() || (*v != "*" && got != *v) {
                drop(book);
                return refuse(&e, format!("parameter {k} is {got:?}, expected {v:?}"));
            }
        }
        match row.grant {
            "authorization_code" | "" if row.authorize_path.is_some() => {
                let c = p.get("code").cloned().unwrap_or_default();
                let Some(at) = book.codes.iter().position(|(x, _)| *x == c) else {
                    drop(book);
                    return refuse(&e, "unknown authorization code".into());
                };
                let (_, challenge) = book.codes.remove(at);
                if let Some(challenge) = challenge {
                    use sha2::Digest as _;
                    let verifier = p.get("code_verifier").cloned().unwrap_or_default();
                    if URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier.as_bytes())) != challenge {
                        drop(book);
                        return refuse(&e, "code_verifier missing or not the challenge's".into());
                    }
                }
            }
            "refresh_token" => {
                if p.get("refresh_token").map(String::as_str) != Some("Atzr|seed") {
                    drop(book);
                    return refuse(&e, "the seller's refresh token is required".into());
                }
                book.refresh = Some("Atzr|seed".into());
            }
            g if g.contains("jwt-bearer") => {
                if let Err(why) = p
                    .get("assertion")
                    .map(|a| check_claims(&e, a))
                    .unwrap_or(Err("no assertion".into()))
                {
                    drop(book);
                    return refuse(&e, why);
                }
            }
            _ => {}
        }
        book.first += 1;
    }
    let token = format!("at-{}-{}", row.name, rand::random::<u32>());
    book.access.push(token.clone());
    let mut answer = json!({ row.token_field: token });
    if row.token_field == "access_token" {
        answer["token_type"] = json!("Bearer");
    }
    match row.expires_in {
        Some(s) => answer["expires_in"] = json!(s),
        None if row.name == "github-app" => answer["expires_at"] = json!((Timestamp::now() + 1.hour()).to_string()),
        None => {}
    }
    let new_refresh = match (row.refresh, refreshing) {
        (Refresh::Kept | Refresh::Rotating, false) if row.grant != "refresh_token" => true,
        (Refresh::Repeated, false) if row.grant != "refresh_token" => true,
        (Refresh::Rotating, true) => true,
        _ => false,
    };
    if new_refresh {
        let rt = format!("rt-{}", rand::random::<u32>());
        if let Some(old) = book.refresh.replace(rt.clone()) {
            book.revoked.push(old);
        }
        answer["refresh_token"] = json!(rt);
    } else if row.refresh == Refresh::Repeated {
        answer["refresh_token"] = json!(book.refresh.clone());
    }
    for (k, v) in row.extra {
        // `{base}`: where the provider's answer points the client (an instance URL, an API
        // domain); `{in_30_days}`: an absolute expiry from the provider's clock (Square).
        let v = v
            .replace("{base}", &e.base)
            .replace("{in_30_days}", &(Timestamp::now() + (30 * 24).hours()).to_string());
        answer[*k] = serde_json::from_str(&v).unwrap();
    }
    let status = if row.auth == Auth::BearerJwt {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    (status, axum::Json(answer)).into_response()
}

/// Where the emulator checks the published headers: `/api`, unless that is the provider's
/// consent page (ClickUp's is `app.clickup.com/api`).
fn api_path(row: &Row) -> &'static str {
    if row.authorize_path == Some("/api") {
        "/api-call"
    } else {
        "/api"
    }
}

/// A static credential as an API-key entry presents it: the key itself, or HTTP Basic of the
/// credentials (`key:` or `key:secret`, as Freshdesk, Greenhouse or Twilio document).
fn static_key_ok(row: &Row, presented: &str) -> bool {
    let values: Vec<&str> = row.credentials.iter().map(|(_, v)| *v).collect();
    if values.contains(&presented) {
        return true;
    }
    let decoded = STANDARD
        .decode(presented.strip_prefix("Basic ").unwrap_or(presented).trim())
        .ok()
        .map(|b| String::from_utf8_lossy(&b).into_owned());
    decoded.is_some_and(|d| {
        let (user, pass) = d.split_once(':').unwrap_or((&d, ""));
        values.contains(&user) || values.contains(&pass)
    })
}

fn form_urlencoded(s: &str) -> HashMap<String, String> {
    url::form_urlencoded::parse(s.as_bytes()).into_owned().collect()
}

async fn emulator(row: Row) -> Arc<Emu> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let emu = Arc::new(Emu {
        row,
        base,
        book: Mutex::default(),
    });
    let app = Router::new().fallback(any(handle)).with_state(emu.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    emu
}

// ---------------------------------------------------------------- the entry, pointed at it

/// The entry's manifest with the origin (scheme://host:port) of every URL it sends requests to
/// replaced by `base`; paths and query strings stay as written.
fn at_origin(manifest: &str, base: &str) -> Value {
    fn walk(v: &mut Value, base: &str) {
        match v {
            Value::Object(m) => {
                for (k, v) in m.iter_mut() {
                    match v {
                        Value::String(s)
                            if ["tokenUrl", "url", "authorizationUrl", "baseUrl", "apiUrl"].contains(&k.as_str()) =>
                        {
                            *s = replace_origin(s, base);
                        }
                        _ => walk(v, base),
                    }
                }
            }
            Value::Array(a) => a.iter_mut().for_each(|v| walk(v, base)),
            _ => {}
        }
    }
    let mut doc: Value = serde_saphyr::from_str(manifest).unwrap();
    walk(&mut doc["spec"]["settings"], base);
    doc
}

/// `https://HOST/rest` → `base/rest`, where HOST may hold templates (`{{ shop }}.myshopify.com`).
fn replace_origin(url: &str, base: &str) -> String {
    // A URL whose origin comes from an earlier answer (`{{ steps.info.url }}/…`) is left as
    // it is: the emulator's answer points it back at the emulator.
    let Some(rest) = url.strip_prefix("https://") else {
        assert!(url.starts_with("{{"), "not an https URL: {url}");
        return url.to_string();
    };
    let mut i = 0;
    let b = rest.as_bytes();
    while i < b.len() {
        if rest[i..].starts_with("{{") {
            i += rest[i..].find("}}").unwrap() + 2;
        } else if matches!(b[i], b'/' | b'?') {
            break;
        } else {
            i += 1;
        }
    }
    format!("{base}{}", &rest[i..])
}

fn rsa_pem() -> String {
    rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256)
        .unwrap()
        .serialize_pem()
}

fn credentials(row: &Row) -> BTreeMap<String, String> {
    let mut c: BTreeMap<String, String> = [("client_id", ID), ("client_secret", SECRET)]
        .into_iter()
        .chain(row.credentials.iter().copied())
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    match row.name {
        "google-service-account" => {
            let key = json!({"type": "service_account", "client_email": "sa@project.iam.gserviceaccount.com", "private_key": rsa_pem(), "private_key_id": "k1"});
            c.insert("service-account.json".into(), key.to_string());
        }
        "salesforce-jwt" | "github-app" => {
            c.insert("private_key".into(), rsa_pem());
        }
        "entra-certificate" => {
            let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap();
            let cert = rcgen::CertificateParams::new(vec!["client.example".to_string()])
                .unwrap()
                .self_signed(&key)
                .unwrap();
            c.insert("tls.key".into(), key.serialize_pem());
            c.insert("tls.crt".into(), cert.pem());
        }
        _ => {}
    }
    c
}

fn manifests(
    provider: &Value,
    name: &str,
    scheme: &str,
    params: &[(&str, &str)],
    creds: &BTreeMap<String, String>,
) -> String {
    let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": format!("{name}-credentials")}, "stringData": creds});
    format!("{provider}\n---\n{secret}\n---\n{}\n", resource(name, scheme, params))
}

fn resource(name: &str, scheme: &str, params: &[(&str, &str)]) -> Value {
    let mut spec = json!({"credentialsRef": {"name": format!("{name}-credentials")}, "provider": name, scheme: {}});
    if !params.is_empty() {
        spec["providerParams"] = params
            .iter()
            .map(|(k, v)| (k.to_string(), json!(v)))
            .collect::<serde_json::Map<_, _>>()
            .into();
    }
    json!({"apiVersion": "connectorauth.dev/v1alpha1", "kind": "ConnectorAuth", "metadata": {"name": name, "namespace": "default"}, "spec": spec})
}

fn published(out: &std::path::Path, name: &str) -> BTreeMap<String, String> {
    let dir = out.join(format!("default/{name}-token"));
    ["access_token", "headers.json"]
        .into_iter()
        .map(|k| {
            (
                k.to_string(),
                std::fs::read_to_string(dir.join(k)).unwrap_or_else(|e| panic!("{name}: {k}: {e}")),
            )
        })
        .collect()
}

/// Creates `doc` through the API server, which checks it against the CRD (schema and CEL).
async fn accepted(server: &fake_apiserver::FakeApiServer, doc: &Value) -> Result<(), String> {
    let kind = doc["kind"].as_str().unwrap();
    let (plural, ns) = match kind {
        "ConnectorAuth" => ("connectorauths", Some("default")),
        _ => ("clusterconnectorauthproviders", None),
    };
    let ar = ApiResource {
        group: "connectorauth.dev".into(),
        version: "v1alpha1".into(),
        api_version: "connectorauth.dev/v1alpha1".into(),
        kind: kind.into(),
        plural: plural.into(),
    };
    let api: Api<DynamicObject> = match ns {
        Some(ns) => Api::namespaced_with(server.client(), ns, &ar),
        None => Api::all_with(server.client(), &ar),
    };
    let obj: DynamicObject = serde_json::from_value(doc.clone()).unwrap();
    api.create(&PostParams::default(), &obj)
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

async fn call(base: &str, path: &str, out: &BTreeMap<String, String>) -> u16 {
    call_api(&format!("{base}{path}"), out).await
}

/// Runs one entry: consent if it asks for it, the token accepted by the API, one renewal.
async fn run_row(row: Row) -> Result<(), String> {
    let name = row.name;
    let entry = catalog::get(name).ok_or(format!("{name}: no such entry"))?;
    let emu = emulator(row.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let creds = credentials(&row);
    let provider = at_origin(entry.manifest, &emu.base);
    std::fs::write(
        dir.path().join("m.yaml"),
        manifests(&provider, name, entry.scheme(), row.provider_params, &creds),
    )
    .unwrap();
    let out = dir.path().join("out");
    let mut runner = connector_auth_operator::local::LocalRunner::new(engine(), dir.path().to_path_buf(), out.clone());
    let fail = |what: &str, detail: String| {
        format!(
            "{name}: {what}: {detail}; provider refused: {:?}",
            emu.book.lock().unwrap().refused
        )
    };
    if row.authorize_path.is_some() {
        runner.enable_consent("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let reports = runner.pass().await.map_err(|e| fail("pass", e.to_string()))?;
        let url = reports[0]
            .authorization_url
            .clone()
            .ok_or_else(|| fail("no consent URL", reports[0].line()))?;
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let resp = http.get(&url).send().await.unwrap();
        if resp.status() != 302 {
            return Err(fail("consent page", format!("{} for {url}", resp.status())));
        }
        let location = resp.headers()["location"].to_str().unwrap().to_string();
        let resp = reqwest::get(&location).await.unwrap();
        if resp.status() != 200 {
            return Err(fail("consent callback", resp.text().await.unwrap()));
        }
    } else {
        let reports = runner.pass().await.map_err(|e| fail("pass", e.to_string()))?;
        if !reports[0].ok() {
            return Err(fail("first pass", reports[0].line()));
        }
    }
    let first = published(&out, name);
    if call(&emu.base, api_path(&row), &first).await != 200 {
        return Err(fail(
            "the API refused the published headers",
            first["headers.json"].clone(),
        ));
    }
    // Renewal, twice: with rotation the second refresh must present the rotated token.
    let start = Timestamp::now();
    for (n, minutes) in row.renewals.iter().enumerate() {
        let reports = runner
            .pass_at(start + minutes.minutes())
            .await
            .map_err(|e| fail("pass", e.to_string()))?;
        if !reports[0].ok() {
            return Err(fail(&format!("renewal {n}"), reports[0].line()));
        }
    }
    let (first_grants, refreshes) = {
        let book = emu.book.lock().unwrap();
        (book.first, book.refreshes)
    };
    let renewals = row.renewals.len() as u32;
    let expected = match row.refresh {
        Refresh::Permanent => (1, 0),
        Refresh::None => (1 + renewals, 0),
        Refresh::Kept | Refresh::Repeated | Refresh::Rotating => (1, renewals),
    };
    let expected = if row.token_path.is_empty() { (0, 0) } else { expected };
    if (first_grants, refreshes) != expected {
        return Err(fail(
            "renewals",
            format!(
                "first grants and refreshes {:?}, expected {expected:?}",
                (first_grants, refreshes)
            ),
        ));
    }
    let last = published(&out, name);
    if call(&emu.base, api_path(&row), &last).await != 200 {
        return Err(fail("the API refused the renewed token", last["headers.json"].clone()));
    }
    // Values from the callback and the lookups, published and still there after the renewals.
    for (key, want) in row.publishes {
        let got = std::fs::read_to_string(out.join(format!("default/{name}-token/{key}"))).unwrap_or_default();
        if got != *want {
            return Err(fail("published values", format!("{key} is {got:?}, expected {want:?}")));
        }
    }
    Ok(())
}

/// A seed provider's own emulator from tests/support: the entry pointed at it, its credentials,
/// and an API path that accepts only a correctly presented token.
async fn run_seeded(name: &str) -> Result<(), String> {
    let entry = catalog::get(name).unwrap();
    type Pairs = &'static [(&'static str, &'static str)];
    let (base, creds, params, api): (String, Pairs, Pairs, &str) = match name {
        "superoffice" => (
            superoffice().await.0,
            &[
                ("client_id", "so-client"),
                ("client_secret", "so-app-secret"),
                ("refresh_token", "so-refresh"),
            ],
            &[("redirect_uri", "https://connector.example.com/oauth2/callback")],
            "/api/v1/User/currentPrincipal",
        ),
        "tripletex" => (
            tripletex().await.0,
            &[
                ("consumer_token", "consumer+token/1"),
                ("employee_token", "employee-token"),
            ],
            &[],
            "/v2/employee",
        ),
        "webcrm" => (webcrm().await.0, &[("app_token", "app-token-123")], &[], "/Persons"),
        "wix" => (
            api_keys().await,
            &[("api_key", "IST.wix-key"), ("site_id", "site-1")],
            &[],
            "/stores/v1/products/query",
        ),
        "woocommerce" => (
            api_keys().await,
            &[("consumer_key", "ck_123"), ("consumer_secret", "cs_456")],
            &[],
            "/wp-json/wc/v3/products",
        ),
        _ => unreachable!(),
    };
    let dir = tempfile::tempdir().unwrap();
    let creds: BTreeMap<String, String> = creds.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let provider = at_origin(entry.manifest, &base);
    std::fs::write(
        dir.path().join("m.yaml"),
        manifests(&provider, name, entry.scheme(), params, &creds),
    )
    .unwrap();
    let out = dir.path().join("out");
    let mut runner = connector_auth_operator::local::LocalRunner::new(engine(), dir.path().to_path_buf(), out.clone());
    // webCRM's expiry is the JWT's `exp`, from the emulator's clock: renewed before it.
    let later = if name == "webcrm" {
        50.minutes()
    } else {
        (400 * 24).hours()
    };
    for at in [Timestamp::now(), Timestamp::now() + later] {
        let reports = runner.pass_at(at).await.map_err(|e| format!("{name}: {e}"))?;
        if !reports[0].ok() {
            return Err(format!("{name}: {}", reports[0].line()));
        }
    }
    let out = published(&out, name);
    if call(&base, api, &out).await != 200 {
        return Err(format!("{name}: the API refused {}", out["headers.json"]));
    }
    Ok(())
}

/// A workload identity entry (see [`workload`]) in local mode: the ServiceAccount token in the
/// folder a projected volume would give, exchanged, published, renewed with a fresh exchange.
async fn run_workload(name: &str) -> Result<(), String> {
    use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
    use k8s_openapi::api::core::v1::ServiceAccount;
    let entry = catalog::get(name).unwrap();
    let server = fake_apiserver::FakeApiServer::start().await;
    let sas: Api<ServiceAccount> = Api::namespaced(server.client(), "default");
    let sa: ServiceAccount = serde_json::from_value(json!({"metadata": {"name": "workload"}})).unwrap();
    sas.create(&PostParams::default(), &sa).await.unwrap();
    let (base, book) = workload_identity(&server.issuer(), "system:serviceaccount:default:workload").await;
    type Pairs = Vec<(&'static str, String)>;
    let (audience, params, creds): (&str, Pairs, Pairs) = match name {
        "token-exchange" => (
            "exchange.example.com",
            vec![("token_url", format!("{base}/token")), ("audience", "crm-api".into())],
            vec![
                ("client_id", "exchanger".into()),
                ("client_secret", "exchanger-secret".into()),
            ],
        ),
        "entra-workload-identity" => (
            "api://AzureADTokenExchange",
            vec![("tenant_id", "tenant-1".into())],
            vec![("client_id", "app-1".into())],
        ),
        "aws-sts-web-identity" => (
            "sts.amazonaws.com",
            vec![
                ("role_arn", "arn:aws:iam::123456789012:role/crm-sync".into()),
                ("region", "eu-west-1".into()),
            ],
            vec![],
        ),
        "gcp-workload-identity" => (
            "https://iam.googleapis.com/projects/123/locations/global/workloadIdentityPools/cluster/providers/kubernetes",
            vec![
                ("audience", GOOGLE_AUDIENCE.into()),
                ("service_account", "crm-sync@project.iam.gserviceaccount.com".into()),
            ],
            vec![],
        ),
        "vault-jwt" => (
            "vault",
            vec![
                ("vault_addr", "vault.example.com:8200".into()),
                ("mount", "kubernetes-jwt".into()),
                ("role", "crm-sync".into()),
            ],
            vec![],
        ),
        _ => unreachable!(),
    };
    let request = TokenRequest {
        spec: Some(TokenRequestSpec {
            audiences: Some(vec![audience.to_string()]),
            expiration_seconds: Some(3600),
            ..TokenRequestSpec::default()
        }),
        ..TokenRequest::default()
    };
    let token = sas
        .create_token_request("workload", &PostParams::default(), &request)
        .await
        .unwrap()
        .status
        .and_then(|s| s.token)
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("tokens/workload")).unwrap();
    std::fs::write(dir.path().join("tokens/workload/token"), &token).unwrap();
    let provider = at_origin(entry.manifest, &base);
    let creds: BTreeMap<String, String> = creds.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
    let params: Vec<(&str, &str)> = params.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut ca = resource(name, entry.scheme(), &params);
    ca["spec"]["serviceAccountToken"] = json!({"name": "workload", "audience": audience});
    let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": format!("{name}-credentials")}, "stringData": creds});
    std::fs::write(
        dir.path().join("manifests.yaml"),
        format!("{provider}\n---\n{secret}\n---\n{ca}\n"),
    )
    .unwrap();
    let out = dir.path().join("out");
    let mut runner =
        connector_auth_operator::local::LocalRunner::new(engine(), dir.path().join("manifests.yaml"), out.clone());
    runner.service_account_tokens = Some(dir.path().join("tokens"));
    let fail = |what: &str, detail: String| format!("{name}: {what}: {detail}; refused: {:?}", book.refused());
    let start = Timestamp::now();
    // Vault's token lives the role's 32-day TTL; the others an hour or less.
    let later = if name == "vault-jwt" {
        (22 * 24).hours()
    } else {
        50.minutes()
    };
    for at in [start, start + later] {
        let reports = runner.pass_at(at).await.map_err(|e| fail("pass", e.to_string()))?;
        if !reports[0].ok() {
            return Err(fail("pass", reports[0].line()));
        }
        let published = published(&out, name);
        if call(&base, "/api", &published).await != 200 {
            return Err(fail(
                "the API refused the published credential",
                published["headers.json"].clone(),
            ));
        }
    }
    let exchanges = book.exchanges();
    let per_issue = if name == "gcp-workload-identity" { 2 } else { 1 };
    if exchanges.len() != 2 * per_issue || !book.refused().is_empty() {
        return Err(fail("exchanges", format!("{exchanges:?}")));
    }
    if name == "aws-sts-web-identity" {
        let file = |k: &str| std::fs::read_to_string(out.join(format!("default/{name}-token/{k}"))).unwrap_or_default();
        let process: Value = serde_json::from_str(&file("credential_process.json"))
            .map_err(|e| fail("credential_process.json", e.to_string()))?;
        if file("AWS_ACCESS_KEY_ID") != "ASIAEXAMPLE"
            || !file("credentials").contains("aws_session_token = ")
            || process["Version"] != 1
            || process["SessionToken"] != file("AWS_SESSION_TOKEN").as_str()
        {
            return Err(fail("AWS credentials", format!("{process}")));
        }
    }
    // The ServiceAccount token went to the token service and nowhere else.
    for e in walkdir(dir.path()) {
        if e.ends_with("token") && e.parent().is_some_and(|p| p.ends_with("workload")) {
            continue;
        }
        if std::fs::read_to_string(&e).is_ok_and(|t| t.contains(&token)) {
            return Err(fail("the ServiceAccount token was kept", e.display().to_string()));
        }
    }
    Ok(())
}

fn walkdir(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(p) = todo.pop() {
        if p.is_dir() {
            todo.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
        } else {
            out.push(p);
        }
    }
    out
}

#[tokio::test]
async fn every_built_in_entry_is_accepted_by_the_crds_and_works_against_its_documented_provider() {
    let rows = rows();
    let seeded = seeded();
    let mut covered: Vec<&str> = rows
        .iter()
        .map(|r| r.name)
        .chain(seeded.iter().copied())
        .chain(workload())
        .collect();
    covered.sort();
    let mut all: Vec<&str> = catalog::entries().iter().map(|e| e.name).collect();
    all.sort();
    assert_eq!(
        covered, all,
        "every built-in entry has a row (or a seed emulator), and no row is without an entry"
    );

    // Each names the documentation it was written from and when that was last checked, and
    // proves a credential with the provider's cheapest identity endpoint where there is one.
    let mut failures = Vec::new();
    for e in catalog::entries() {
        let checked = jiff::civil::Date::strptime("%Y-%m-%d", e.checked());
        if !e.source().starts_with("https://") || checked.is_err() {
            failures.push(format!(
                "{}: source {:?}, checked {:?}",
                e.name,
                e.source(),
                e.checked()
            ));
        }
        let doc: Value = serde_saphyr::from_str(e.manifest).unwrap();
        let has_verify = doc["spec"]["settings"].get("verify").is_some();
        if has_verify == NO_VERIFY.iter().any(|(n, _)| *n == e.name) {
            failures.push(format!(
                "{}: a verify request, or a reason in NO_VERIFY why the provider has none",
                e.name
            ));
        }
    }

    // The entries as they ship, and a resource using each, through an API server with the CRDs.
    let server = api_server().await;
    for e in catalog::entries() {
        let doc: Value = serde_saphyr::from_str(e.manifest).unwrap();
        if let Err(err) = accepted(&server, &doc).await {
            failures.push(format!("{}: the entry is refused by the API server: {err}", e.name));
        }
        let params: Vec<(&str, &str)> = rows
            .iter()
            .find(|r| r.name == e.name)
            .map(|r| r.provider_params.to_vec())
            .unwrap_or_default();
        if let Err(err) = accepted(&server, &resource(e.name, e.scheme(), &params)).await {
            failures.push(format!("{}: a resource using it is refused: {err}", e.name));
        }
    }

    // Each entry has its own emulator and folder: they run side by side.
    let results = futures::future::join_all(rows.into_iter().map(run_row)).await;
    failures.extend(results.into_iter().filter_map(Result::err));
    for name in seeded {
        if let Err(e) = run_seeded(name).await {
            failures.push(e);
        }
    }
    for name in workload() {
        if let Err(e) = run_workload(name).await {
            failures.push(e);
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} entries fail:\n{}",
        failures.len(),
        all.len(),
        failures.join("\n")
    );
}
