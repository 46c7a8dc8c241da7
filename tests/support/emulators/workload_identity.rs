//! Token services that take a Kubernetes ServiceAccount token as the credential, each as its
//! documentation describes, and each verifying the token as a provider trusting the cluster's
//! issuer does: the signature against the issuer's published keys (`/openid/v1/jwks` of the
//! test API server), `iss`, the audience it expects, `exp`, and the `sub` it was configured to
//! trust (`system:serviceaccount:<ns>:<name>`).
//!
//! - RFC 8693 token exchange (Keycloak, Okta, Dex…): `POST /token`, client in HTTP Basic.
//! - Microsoft Entra workload identity: `POST /{tenant}/oauth2/v2.0/token`, client credentials
//!   with the token as `client_assertion` (audience `api://AzureADTokenExchange`).
//! - AWS STS `AssumeRoleWithWebIdentity`: `POST /` (the Query API, answered in JSON as asked
//!   with `Accept: application/json`).
//! - Google workload identity federation: `POST /v1/token` (STS token exchange), then
//!   `POST /v1/projects/-/serviceAccounts/{email}:generateAccessToken` with the federated
//!   token.
//! - Vault JWT auth: `POST /v1/auth/{mount}/login` with `{"role", "jwt"}`.
//!
//! Every service answers `/api` for the credential it issued.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use super::*;
use crate::support::*;

/// What a workload identity service trusts and saw.
pub struct TrustBook {
    /// The cluster's issuer (the test API server's URL) and its keys' location.
    pub issuer: String,
    /// The ServiceAccount it trusts, as `sub`.
    pub subject: String,
    /// Every ServiceAccount token presented, valid or not (to prove none leaks elsewhere).
    pub presented: Mutex<Vec<String>>,
    /// Why each refused request was refused.
    pub refusals: Mutex<Vec<String>>,
    /// Credentials issued (access tokens, AWS session tokens, Vault tokens).
    pub issued: Mutex<Vec<String>>,
    /// Exchanges that succeeded, by service.
    pub exchanges: Mutex<Vec<String>>,
}

impl TrustBook {
    pub fn refused(&self) -> Vec<String> {
        self.refusals.lock().unwrap().clone()
    }

    pub fn exchanges(&self) -> Vec<String> {
        self.exchanges.lock().unwrap().clone()
    }

    fn refuse(&self, status: StatusCode, why: String, body: Value) -> Response {
        self.refusals.lock().unwrap().push(why);
        (status, Json(body)).into_response()
    }

    fn issue(&self, service: &str, prefix: &str) -> String {
        let t = random(prefix);
        self.issued.lock().unwrap().push(t.clone());
        self.exchanges.lock().unwrap().push(service.into());
        t
    }

    /// Verifies a ServiceAccount token for `audience` against the issuer's published keys.
    async fn verify(&self, token: &str, audience: &str) -> Result<Value, String> {
        self.presented.lock().unwrap().push(token.to_string());
        let discovery: Value = reqwest::get(format!("{}/.well-known/openid-configuration", self.issuer))
            .await
            .map_err(|e| e.to_string())?
            .json()
            .await
            .map_err(|e| e.to_string())?;
        let jwks_uri = discovery["jwks_uri"].as_str().ok_or("no jwks_uri")?;
        let keys: jsonwebtoken::jwk::JwkSet = reqwest::get(jwks_uri)
            .await
            .map_err(|e| e.to_string())?
            .json()
            .await
            .map_err(|e| e.to_string())?;
        let header = jsonwebtoken::decode_header(token).map_err(|e| format!("not a JWT: {e}"))?;
        let kid = header.kid.ok_or("no kid")?;
        let jwk = keys.find(&kid).ok_or("unknown kid")?;
        let key = jsonwebtoken::DecodingKey::from_jwk(jwk).map_err(|e| e.to_string())?;
        let mut v = jsonwebtoken::Validation::new(header.alg);
        v.set_audience(&[audience]);
        v.set_issuer(&[self.issuer.as_str()]);
        v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        let claims: Value = jsonwebtoken::decode(token, &key, &v)
            .map_err(|e| format!("token refused: {e}"))?
            .claims;
        if claims["sub"] != self.subject.as_str() {
            return Err(format!("sub {} is not trusted", claims["sub"]));
        }
        Ok(claims)
    }
}

/// The services, all on one base URL; they trust `subject` of the cluster whose issuer is
/// `issuer`.
pub async fn workload_identity(issuer: &str, subject: &str) -> (String, Arc<TrustBook>) {
    let book = Arc::new(TrustBook {
        issuer: issuer.to_string(),
        subject: subject.to_string(),
        presented: Mutex::default(),
        refusals: Mutex::default(),
        issued: Mutex::default(),
        exchanges: Mutex::default(),
    });
    let app = Router::new()
        .route("/token", post(token_exchange))
        .route("/{tenant}/oauth2/v2.0/token", post(entra))
        .route("/", post(aws_sts))
        .route("/v1/token", post(google_sts))
        .route("/v1/projects/-/serviceAccounts/{target}", post(google_impersonate))
        .route("/v1/auth/{mount}/login", post(vault_login))
        .route("/api", get(api))
        // Google's tokeninfo and Vault's lookup-self: the entries' verify requests.
        .route("/tokeninfo", get(google_tokeninfo))
        .route("/v1/auth/token/lookup-self", get(api))
        .with_state(book.clone());
    (serve(app).await, book)
}

fn oauth_refusal(b: &TrustBook, why: String) -> Response {
    b.refuse(
        StatusCode::BAD_REQUEST,
        why.clone(),
        json!({"error": "invalid_grant", "error_description": why}),
    )
}

/// RFC 8693 §2.1–2.2, as Keycloak implements it: the client authenticates (HTTP Basic), the
/// subject token is a JWT for audience `exchange.example.com`.
async fn token_exchange(State(b): State<Arc<TrustBook>>, h: HeaderMap, body: Bytes) -> Response {
    let f = form(&body);
    if basic(&h) != Some(("exchanger".into(), "exchanger-secret".into())) {
        return b.refuse(
            StatusCode::UNAUTHORIZED,
            "client authentication".into(),
            json!({"error": "invalid_client"}),
        );
    }
    if f.get("grant_type").map(String::as_str) != Some("urn:ietf:params:oauth:grant-type:token-exchange")
        || f.get("subject_token_type").map(String::as_str) != Some("urn:ietf:params:oauth:token-type:jwt")
        || f.get("audience").map(String::as_str) != Some("crm-api")
    {
        return oauth_refusal(&b, format!("token exchange parameters: {f:?}"));
    }
    if let Err(why) = b
        .verify(
            f.get("subject_token").map(String::as_str).unwrap_or_default(),
            "exchange.example.com",
        )
        .await
    {
        return oauth_refusal(&b, why);
    }
    let at = b.issue("token-exchange", "xt");
    Json(json!({"access_token": at, "issued_token_type": "urn:ietf:params:oauth:token-type:access_token", "token_type": "Bearer", "expires_in": 300})).into_response()
}

/// Entra ID client credentials with a federated credential: `client_assertion_type`
/// jwt-bearer and the Kubernetes token (audience `api://AzureADTokenExchange`).
async fn entra(State(b): State<Arc<TrustBook>>, Path(tenant): Path<String>, body: Bytes) -> Response {
    let f = form(&body);
    if tenant != "tenant-1"
        || f.get("grant_type").map(String::as_str) != Some("client_credentials")
        || f.get("client_id").map(String::as_str) != Some("app-1")
        || f.get("client_assertion_type").map(String::as_str)
            != Some("urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
        || f.get("scope").map(String::as_str) != Some("https://graph.microsoft.com/.default")
        || f.contains_key("client_secret")
    {
        return oauth_refusal(&b, format!("entra parameters: {f:?}"));
    }
    if let Err(why) = b
        .verify(
            f.get("client_assertion").map(String::as_str).unwrap_or_default(),
            "api://AzureADTokenExchange",
        )
        .await
    {
        return oauth_refusal(&b, why);
    }
    let at = b.issue("entra", "eyJ0eXAi");
    Json(json!({"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599, "access_token": at}))
        .into_response()
}

/// AWS STS `AssumeRoleWithWebIdentity` (Query API, `Version=2011-06-15`), in JSON.
async fn aws_sts(State(b): State<Arc<TrustBook>>, h: HeaderMap, body: Bytes) -> Response {
    let f = form(&body);
    let sts_error = |b: &TrustBook, code: &str, why: String| {
        b.refuse(
            StatusCode::BAD_REQUEST,
            why.clone(),
            json!({"Error": {"Code": code, "Message": why, "Type": "Sender"}}),
        )
    };
    if f.get("Action").map(String::as_str) != Some("AssumeRoleWithWebIdentity")
        || f.get("Version").map(String::as_str) != Some("2011-06-15")
        || f.get("RoleArn").map(String::as_str) != Some("arn:aws:iam::123456789012:role/crm-sync")
        || f.get("RoleSessionName").is_none_or(|n| n.is_empty() || n.len() > 64)
    {
        return sts_error(&b, "ValidationError", format!("parameters: {f:?}"));
    }
    if h.get("accept").and_then(|v| v.to_str().ok()) != Some("application/json") {
        return sts_error(&b, "ValidationError", "this emulator answers in JSON only".into());
    }
    let seconds: i64 = f.get("DurationSeconds").and_then(|d| d.parse().ok()).unwrap_or(3600);
    if !(900..=43200).contains(&seconds) {
        return sts_error(&b, "ValidationError", format!("DurationSeconds {seconds}"));
    }
    if let Err(why) = b
        .verify(
            f.get("WebIdentityToken").map(String::as_str).unwrap_or_default(),
            "sts.amazonaws.com",
        )
        .await
    {
        return sts_error(&b, "InvalidIdentityToken", why);
    }
    let session = b.issue("aws-sts", "FwoGZXIvYXdz");
    let expiration = jiff::Timestamp::now().as_second() + seconds;
    Json(json!({"AssumeRoleWithWebIdentityResponse": {"AssumeRoleWithWebIdentityResult": {
        "Credentials": {"AccessKeyId": "ASIAEXAMPLE", "SecretAccessKey": random("secret"), "SessionToken": session, "Expiration": expiration as f64},
        "SubjectFromWebIdentityToken": b.subject,
        "AssumedRoleUser": {"Arn": "arn:aws:sts::123456789012:assumed-role/crm-sync/s", "AssumedRoleId": "AROA:s"},
        "Audience": "sts.amazonaws.com",
    }, "ResponseMetadata": {"RequestId": "r-1"}}}))
    .into_response()
}

pub const GOOGLE_AUDIENCE: &str =
    "//iam.googleapis.com/projects/123/locations/global/workloadIdentityPools/cluster/providers/kubernetes";

/// Google STS `token` (RFC 8693 with Google's parameters, JSON body), for the pool's provider.
async fn google_sts(State(b): State<Arc<TrustBook>>, body: Bytes) -> Response {
    let f: HashMap<String, String> = serde_json::from_slice::<HashMap<String, Value>>(&body)
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.as_str().map(String::from).unwrap_or_default()))
        .collect();
    if f.get("grantType").map(String::as_str) != Some("urn:ietf:params:oauth:grant-type:token-exchange")
        || f.get("audience").map(String::as_str) != Some(GOOGLE_AUDIENCE)
        || f.get("scope").map(String::as_str) != Some("https://www.googleapis.com/auth/cloud-platform")
        || f.get("requestedTokenType").map(String::as_str) != Some("urn:ietf:params:oauth:token-type:access_token")
        || f.get("subjectTokenType").map(String::as_str) != Some("urn:ietf:params:oauth:token-type:jwt")
    {
        return oauth_refusal(&b, format!("google sts parameters: {f:?}"));
    }
    // The pool's provider trusts the cluster's issuer with its own audience.
    if let Err(why) = b.verify(f.get("subjectToken").map(String::as_str).unwrap_or_default(), "https://iam.googleapis.com/projects/123/locations/global/workloadIdentityPools/cluster/providers/kubernetes").await {
        return oauth_refusal(&b, why);
    }
    let federated = format!("federated-{}", random("f"));
    b.exchanges.lock().unwrap().push("google-sts".into());
    b.issued.lock().unwrap().push(federated.clone());
    Json(json!({"access_token": federated, "issued_token_type": "urn:ietf:params:oauth:token-type:access_token", "token_type": "Bearer", "expires_in": 3600})).into_response()
}

/// IAM Credentials `generateAccessToken`: the federated token impersonates the service account.
async fn google_impersonate(
    State(b): State<Arc<TrustBook>>,
    Path(target): Path<String>,
    h: HeaderMap,
    body: Bytes,
) -> Response {
    let federated = bearer(&h).filter(|t| t.starts_with("federated-") && b.issued.lock().unwrap().contains(t));
    if target != "crm-sync@project.iam.gserviceaccount.com:generateAccessToken" || federated.is_none() {
        return b.refuse(
            StatusCode::UNAUTHORIZED,
            format!("impersonation of {target}"),
            json!({"error": {"code": 401}}),
        );
    }
    let req: Value = serde_json::from_slice(&body).unwrap_or_default();
    if req["scope"] != json!(["https://www.googleapis.com/auth/cloud-platform"]) {
        return b.refuse(
            StatusCode::BAD_REQUEST,
            format!("scope {}", req["scope"]),
            json!({"error": {"code": 400}}),
        );
    }
    let at = b.issue("google-impersonate", "ya29.c");
    let expire = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(3600);
    Json(json!({"accessToken": at, "expireTime": expire.to_string()})).into_response()
}

/// Vault's JWT auth method: a role bound to the ServiceAccount and audience `vault`.
async fn vault_login(State(b): State<Arc<TrustBook>>, Path(mount): Path<String>, body: Bytes) -> Response {
    let req: Value = serde_json::from_slice(&body).unwrap_or_default();
    if mount != "kubernetes-jwt" || req["role"] != "crm-sync" {
        return b.refuse(
            StatusCode::BAD_REQUEST,
            format!("vault login {mount} {}", req["role"]),
            json!({"errors": ["invalid role"]}),
        );
    }
    if let Err(why) = b.verify(req["jwt"].as_str().unwrap_or_default(), "vault").await {
        return b.refuse(StatusCode::FORBIDDEN, why.clone(), json!({"errors": [why]}));
    }
    let t = b.issue("vault", "hvs.");
    Json(json!({"auth": {"client_token": t, "accessor": "a", "policies": ["crm"], "lease_duration": 2764800, "renewable": true}})).into_response()
}

async fn google_tokeninfo(
    State(b): State<Arc<TrustBook>>,
    axum::extract::Query(q): axum::extract::Query<HashMap<String, String>>,
) -> Response {
    match q.get("access_token") {
        Some(t) if b.issued.lock().unwrap().contains(t) => {
            Json(json!({"azp": "1", "scope": "https://www.googleapis.com/auth/cloud-platform", "expires_in": 3599}))
                .into_response()
        }
        _ => (StatusCode::BAD_REQUEST, Json(json!({"error": "invalid_token"}))).into_response(),
    }
}

/// The APIs: a credential the service issued, as a Bearer token, a Vault token or an AWS
/// session token.
async fn api(State(b): State<Arc<TrustBook>>, h: HeaderMap) -> Response {
    let presented: Vec<String> = ["authorization", "x-vault-token", "x-amz-security-token"]
        .iter()
        .filter_map(|n| h.get(*n).and_then(|v| v.to_str().ok()))
        .map(|v| v.strip_prefix("Bearer ").unwrap_or(v).to_string())
        .collect();
    let issued = b.issued.lock().unwrap();
    if presented
        .iter()
        .any(|p| issued.contains(p) && !p.starts_with("federated-"))
    {
        StatusCode::OK.into_response()
    } else {
        unauthorized()
    }
}
