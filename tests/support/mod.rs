//! Loopback emulators of the seed providers, each with a protected endpoint that accepts only a
//! correctly presented token, and helpers to run the engine against them.
#![allow(dead_code)]

pub mod consent;
pub mod operator;
pub mod tls;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post, put};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::{Value, json};

use connector_auth_operator::api::ConnectorAuthSpec;
use connector_auth_operator::engine::{self, Engine, EngineError, HttpSettings, Inputs, SecretString, TokenState};
use fake_apiserver::Gate;

/// Starts `router` on 127.0.0.1 with a free port; returns `http://127.0.0.1:PORT`.
pub async fn serve(router: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, router).await.unwrap();
    });
    format!("http://{addr}")
}

pub fn engine() -> Engine {
    Engine::new(loopback()).unwrap()
}

/// The HTTP settings of tests: the default policy, but the emulators live on 127.0.0.1, which
/// the default refuses (private and loopback addresses), so private addresses are allowed
/// (`--allow-private-token-urls`). Link-local and metadata addresses stay refused.
pub fn loopback() -> HttpSettings {
    HttpSettings {
        policy: engine::policy::UrlPolicy {
            allow_private: true,
            ..Default::default()
        },
        ..HttpSettings::default()
    }
}

pub fn creds(pairs: &[(&str, &str)]) -> BTreeMap<String, SecretString> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), SecretString::new(*v)))
        .collect()
}

pub fn spec(yaml: &str) -> ConnectorAuthSpec {
    serde_saphyr::from_str(yaml).unwrap_or_else(|e| panic!("bad test spec: {e}\n{yaml}"))
}

/// Compiles `spec`, obtains a token (given the previous state) and renders the output.
pub async fn issue_with(
    engine: &Engine,
    spec: &ConnectorAuthSpec,
    credentials: &BTreeMap<String, SecretString>,
    prev: Option<&TokenState>,
) -> Result<(TokenState, BTreeMap<String, String>), EngineError> {
    let flow = connector_auth_operator::catalog::compile(engine, spec)?;
    let inputs = Inputs {
        credentials: credentials.clone(),
        ..Default::default()
    };
    let fp = connector_auth_operator::catalog::fingerprint(spec, credentials).unwrap();
    let token = engine.obtain(&flow, &inputs, prev, &fp, jiff::Timestamp::now()).await?;
    let out = engine.render_output(&flow, &inputs, &token)?;
    Ok((token, out))
}

pub async fn issue(
    spec_yaml: &str,
    credentials: &[(&str, &str)],
) -> Result<(TokenState, BTreeMap<String, String>), EngineError> {
    issue_with(&engine(), &spec(spec_yaml), &creds(credentials), None).await
}

/// Calls `url` with the headers of a generated Secret's `headers.json`; returns the status.
pub async fn call_api(url: &str, output: &BTreeMap<String, String>) -> u16 {
    let headers: BTreeMap<String, String> = serde_json::from_str(&output["headers.json"]).unwrap();
    let mut req = reqwest::Client::new().get(url);
    for (k, v) in headers {
        req = req.header(k, v);
    }
    req.send().await.unwrap().status().as_u16()
}

pub fn jwt(claims: Value) -> String {
    format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256","typ":"JWT"}"#),
        URL_SAFE_NO_PAD.encode(claims.to_string()),
        URL_SAFE_NO_PAD.encode(b"signature")
    )
}

pub fn now_secs() -> i64 {
    jiff::Timestamp::now().as_second()
}

fn unauthorized() -> Response {
    (StatusCode::UNAUTHORIZED, Json(json!({"error": "invalid_token"}))).into_response()
}

fn oauth_error(code: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({"error": code, "error_description": "see RFC 6749"})),
    )
        .into_response()
}

fn random(prefix: &str) -> String {
    format!("{prefix}-{:016x}", rand::random::<u64>())
}

fn form(body: &Bytes) -> HashMap<String, String> {
    url::form_urlencoded::parse(body).into_owned().collect()
}

fn basic(headers: &HeaderMap) -> Option<(String, String)> {
    let v = headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Basic ")?;
    let decoded = String::from_utf8(STANDARD.decode(v).ok()?).ok()?;
    let (u, p) = decoded.split_once(':')?;
    Some((u.to_string(), p.to_string()))
}

fn bearer(headers: &HeaderMap) -> Option<String> {
    Some(
        headers
            .get(header::AUTHORIZATION)?
            .to_str()
            .ok()?
            .strip_prefix("Bearer ")?
            .to_string(),
    )
}

use axum::Json;

/// Counts requests and remembers issued tokens.
#[derive(Default)]
pub struct Book {
    pub token_requests: AtomicU64,
    pub valid: Mutex<Vec<String>>,
    /// refresh token -> (family, current)
    pub refresh: Mutex<HashMap<String, (u64, bool)>>,
    pub revoked_families: Mutex<Vec<u64>>,
    pub families: AtomicU64,
    /// While set, the token endpoint answers 503.
    pub down: std::sync::atomic::AtomicBool,
    /// Authorization codes issued by the consent page: code -> redirect_uri (single use).
    pub codes: Mutex<HashMap<String, String>>,
    /// `grant_type` of each token request received, in order (rotating provider).
    pub grants: Mutex<Vec<String>>,
    /// Token requests the provider has acted on (rotating provider).
    pub handled: AtomicU64,
    /// Lifetime of the access tokens issued from now on, in seconds (rotating provider).
    pub ttl: AtomicU64,
    hold_request: Mutex<Option<Gate>>,
    hold_answer: Mutex<Option<Gate>>,
}

impl Book {
    /// Revokes every refresh token (a user removed the app's access).
    pub fn revoke_all(&self) {
        self.refresh.lock().unwrap().clear();
    }
}

/// The provider's consent page, as if the user clicked "Allow": redirects the browser to
/// `redirect_uri` with a fresh single-use code and the given `state`.
async fn authorize(
    State(b): State<Arc<Book>>,
    Query(q): Query<HashMap<String, String>>,
    client_id: &'static str,
) -> Response {
    if q.get("client_id").map(String::as_str) != Some(client_id)
        || q.get("response_type").map(String::as_str) != Some("code")
    {
        return (StatusCode::BAD_REQUEST, "invalid client or response_type").into_response();
    }
    let Some(redirect) = q.get("redirect_uri") else {
        return (StatusCode::BAD_REQUEST, "redirect_uri missing").into_response();
    };
    let code = random("code");
    b.codes.lock().unwrap().insert(code.clone(), redirect.clone());
    let mut url = url::Url::parse(redirect).unwrap();
    url.query_pairs_mut().append_pair("code", &code);
    if let Some(state) = q.get("state") {
        url.query_pairs_mut().append_pair("state", state);
    }
    (StatusCode::FOUND, [(header::LOCATION, url.to_string())]).into_response()
}

/// Consumes a code; true if it was issued for this redirect_uri.
fn redeem(b: &Book, code: Option<&String>, redirect: Option<&String>) -> bool {
    match (code, redirect) {
        (Some(c), Some(r)) => b
            .codes
            .lock()
            .unwrap()
            .remove(c)
            .is_some_and(|issued_for| &issued_for == r),
        _ => false,
    }
}

impl Book {
    fn grant(&self, token: &str) {
        self.valid.lock().unwrap().push(token.to_string());
    }
    fn is_valid(&self, token: &str) -> bool {
        self.valid.lock().unwrap().iter().any(|t| t == token)
    }
    pub fn requests(&self) -> u64 {
        self.token_requests.load(Ordering::SeqCst)
    }
    pub fn family_revoked(&self) -> bool {
        !self.revoked_families.lock().unwrap().is_empty()
    }
    /// Whether `rt` is the one usable refresh token of a family that is not revoked.
    pub fn is_current(&self, rt: &str) -> bool {
        let revoked = self.revoked_families.lock().unwrap();
        matches!(self.refresh.lock().unwrap().get(rt), Some((family, true)) if !revoked.contains(family))
    }
    /// The `grant_type`s of the token requests received so far.
    pub fn grants(&self) -> Vec<String> {
        self.grants.lock().unwrap().clone()
    }
    /// Holds the next token request at the returned gate before the provider acts on it:
    /// opened, it is handled; answered, it is not (the client gets that status).
    pub fn hold_next_request(&self) -> Gate {
        let gate = Gate::new();
        *self.hold_request.lock().unwrap() = Some(gate.clone());
        gate
    }
    /// Lets the provider act on the next token request (rotating the refresh token), then holds
    /// its answer at the returned gate: opened, the answer is sent; answered, that status is
    /// sent instead.
    pub fn hold_next_answer(&self) -> Gate {
        let gate = Gate::new();
        *self.hold_answer.lock().unwrap() = Some(gate.clone());
        gate
    }
}

// ---------------------------------------------------------------- snov.io

/// snov.io: `GET /v1/oauth/access_token?client_id&client_secret&grant_type=client_credentials`.
pub async fn snov() -> (String, Arc<Book>) {
    let book = Arc::new(Book::default());
    let app = Router::new()
        .route(
            "/v1/oauth/access_token",
            get(
                |State(b): State<Arc<Book>>, Query(q): Query<HashMap<String, String>>| async move {
                    b.token_requests.fetch_add(1, Ordering::SeqCst);
                    if q.get("grant_type").map(String::as_str) != Some("client_credentials")
                        || q.get("client_id").map(String::as_str) != Some("snov-id")
                        || q.get("client_secret").map(String::as_str) != Some("snov&secret")
                    {
                        return (StatusCode::UNAUTHORIZED, Json(json!({"success": false}))).into_response();
                    }
                    let t = random("snov");
                    b.grant(&t);
                    Json(json!({"access_token": t, "token_type": "Bearer", "expires_in": 3600})).into_response()
                },
            )
            .post(|| async { StatusCode::METHOD_NOT_ALLOWED }),
        )
        .route(
            "/v1/get-balance",
            get(|State(b): State<Arc<Book>>, h: HeaderMap| async move {
                match bearer(&h) {
                    Some(t) if b.is_valid(&t) => Json(json!({"balance": "25000.00"})).into_response(),
                    _ => unauthorized(),
                }
            }),
        )
        .with_state(book.clone());
    (serve(app).await, book)
}

// ---------------------------------------------------------------- Docuware

pub const DOCUWARE_UA: &str = "curl/7.84.0";

/// Docuware: form login that answers with several cookies, the token in `.DWPLATFORMAUTH`;
/// the same User-Agent is required on login and API calls.
pub async fn docuware() -> (String, Arc<Book>) {
    let book = Arc::new(Book::default());
    let app = Router::new()
        .route(
            "/docuware/platform/Account/Logon",
            post(|State(b): State<Arc<Book>>, h: HeaderMap, body: Bytes| async move {
                b.token_requests.fetch_add(1, Ordering::SeqCst);
                let f = form(&body);
                let ua_ok = h.get(header::USER_AGENT).and_then(|v| v.to_str().ok()) == Some(DOCUWARE_UA);
                let ct_ok = h
                    .get(header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|c| c.starts_with("application/x-www-form-urlencoded"));
                if !ua_ok || !ct_ok {
                    return StatusCode::BAD_REQUEST.into_response();
                }
                if f.get("UserName").map(String::as_str) != Some("dw-user")
                    || f.get("Password").map(String::as_str) != Some("p@ss&word=1")
                {
                    return (
                        StatusCode::UNAUTHORIZED,
                        Json(json!({"Message": "Invalid user name or password."})),
                    )
                        .into_response();
                }
                let t = random("dwauth");
                b.grant(&t);
                let mut resp = Json(json!({"Result": "Logged on"})).into_response();
                let hs = resp.headers_mut();
                hs.append(
                    header::SET_COOKIE,
                    "dwingressplatform=ingress123; path=/; HttpOnly".parse().unwrap(),
                );
                hs.append(
                    header::SET_COOKIE,
                    ".DWPLATFORMAUTH=; expires=Thu, 01 Jan 1970 00:00:00 GMT; path=/"
                        .parse()
                        .unwrap(),
                );
                hs.append(
                    header::SET_COOKIE,
                    format!(".DWPLATFORMAUTH={t}; path=/; secure; HttpOnly")
                        .parse()
                        .unwrap(),
                );
                hs.append(
                    header::SET_COOKIE,
                    "DWPLATFORMBROWSERID=browser456; path=/".parse().unwrap(),
                );
                resp
            }),
        )
        .route(
            "/docuware/platform/Organizations",
            get(|State(b): State<Arc<Book>>, h: HeaderMap| async move {
                let ua_ok = h.get(header::USER_AGENT).and_then(|v| v.to_str().ok()) == Some(DOCUWARE_UA);
                let cookie = h.get(header::COOKIE).and_then(|v| v.to_str().ok()).unwrap_or("");
                let token = cookie
                    .split(';')
                    .filter_map(|c| c.trim().strip_prefix(".DWPLATFORMAUTH="))
                    .next();
                match token {
                    Some(t) if ua_ok && b.is_valid(t) => {
                        Json(json!({"Organization": [{"Name": "Peters Engineering"}]})).into_response()
                    }
                    _ => unauthorized(),
                }
            }),
        )
        .with_state(book.clone());
    (serve(app).await, book)
}

// ---------------------------------------------------------------- Google-style OAuth2

pub const GOOGLE_CODE: &str = "4/0AX4XfWh-code";
pub const GOOGLE_REDIRECT: &str = "https://operator.example.com/oauth2/callback";

/// Google-style: authorization-code exchange checks `redirect_uri`; refresh tokens do not rotate
/// (a refresh answer has no `refresh_token`); token parameters may come in the query string or
/// the form body.
pub async fn google() -> (String, Arc<Book>) {
    google_with_ttl(3599).await
}

pub async fn google_with_ttl(ttl: u64) -> (String, Arc<Book>) {
    let book = Arc::new(Book::default());
    book.codes
        .lock()
        .unwrap()
        .insert(GOOGLE_CODE.into(), GOOGLE_REDIRECT.into());
    let app = Router::new()
        .route("/o/oauth2/v2/auth", get(|s, q| authorize(s, q, "g-client")))
        .route(
            "/token",
            post(move |State(b): State<Arc<Book>>, Query(query): Query<HashMap<String, String>>, body: Bytes| async move {
                b.token_requests.fetch_add(1, Ordering::SeqCst);
                // Like Google, parameters count whether in the query string or the form body.
                let mut f = query;
                f.extend(form(&body));
                if f.get("client_id").map(String::as_str) != Some("g-client") || f.get("client_secret").map(String::as_str) != Some("g-secret") {
                    return (StatusCode::UNAUTHORIZED, Json(json!({"error": "invalid_client"}))).into_response();
                }
                match f.get("grant_type").map(String::as_str) {
                    Some("authorization_code") => {
                        if !redeem(&b, f.get("code"), f.get("redirect_uri")) {
                            return oauth_error("invalid_grant");
                        }
                        let at = random("ya29");
                        b.grant(&at);
                        b.refresh.lock().unwrap().insert("1//g-refresh".into(), (0, true));
                        Json(json!({"access_token": at, "expires_in": ttl, "refresh_token": "1//g-refresh", "scope": "https://www.googleapis.com/auth/admin.directory.user", "token_type": "Bearer"})).into_response()
                    }
                    Some("refresh_token") => {
                        if !b.refresh.lock().unwrap().contains_key(f.get("refresh_token").map(String::as_str).unwrap_or("")) {
                            return oauth_error("invalid_grant");
                        }
                        let at = random("ya29");
                        b.grant(&at);
                        Json(json!({"access_token": at, "expires_in": ttl, "scope": "https://www.googleapis.com/auth/admin.directory.user", "token_type": "Bearer"})).into_response()
                    }
                    _ => oauth_error("unsupported_grant_type"),
                }
            }),
        )
        .route(
            "/admin/directory/v1/users",
            get(|State(b): State<Arc<Book>>, h: HeaderMap| async move {
                match bearer(&h) {
                    Some(t) if b.is_valid(&t) => Json(json!({"users": []})).into_response(),
                    _ => unauthorized(),
                }
            }),
        )
        .with_state(book.clone());
    (serve(app).await, book)
}

// ---------------------------------------------------------------- rotating refresh tokens

/// A provider that rotates refresh tokens on every use and revokes the whole family when a
/// rotated-out token is presented again (all of its tokens then fail with `invalid_grant`, and
/// its access tokens stop working). Client auth is HTTP Basic (`rot-client`/`rot-secret`). The
/// seed is `rt-seed`; the password grant (`rot-user`/`rot-pass`) starts a new family.
///
/// A token request can be held at a [`Gate`] before the provider acts on it
/// ([`Book::hold_next_request`]) or after, with its answer not yet sent
/// ([`Book::hold_next_answer`]). Requests are handled in a task of their own, so one that
/// is let go after its client died still takes effect, as at a real provider.
pub async fn rotating(ttl_secs: u64) -> (String, Arc<Book>) {
    let book = Arc::new(Book::default());
    book.refresh.lock().unwrap().insert("rt-seed".into(), (1, true));
    book.ttl.store(ttl_secs, Ordering::SeqCst);
    let app = Router::new()
        .route(
            "/oauth/token",
            post(|State(b): State<Arc<Book>>, h: HeaderMap, body: Bytes| async move {
                tokio::spawn(rotating_token(b, h, body)).await.unwrap()
            }),
        )
        .route(
            "/api/me",
            get(|State(b): State<Arc<Book>>, h: HeaderMap| async move {
                match bearer(&h) {
                    Some(t) if b.is_valid(&t) && !b.family_revoked() => Json(json!({"me": "ok"})).into_response(),
                    _ => unauthorized(),
                }
            }),
        )
        .with_state(book.clone());
    (serve(app).await, book)
}

async fn rotating_token(b: Arc<Book>, h: HeaderMap, body: Bytes) -> Response {
    b.token_requests.fetch_add(1, Ordering::SeqCst);
    let f = form(&body);
    let grant = f.get("grant_type").cloned().unwrap_or_default();
    b.grants.lock().unwrap().push(grant.clone());
    let before = b.hold_request.lock().unwrap().take();
    if let Some(gate) = before
        && let Some(status) = gate.enter().await
    {
        return (StatusCode::from_u16(status).unwrap(), "<html>gateway error</html>").into_response();
    }
    let response = rotating_grant(&b, &h, &f, &grant);
    b.handled.fetch_add(1, Ordering::SeqCst);
    let after = b.hold_answer.lock().unwrap().take();
    if let Some(gate) = after
        && let Some(status) = gate.enter().await
    {
        // Acted on, but the client hears something else (a proxy timing out, say).
        return (StatusCode::from_u16(status).unwrap(), "<html>gateway error</html>").into_response();
    }
    response
}

fn rotating_grant(b: &Book, h: &HeaderMap, f: &HashMap<String, String>, grant: &str) -> Response {
    if b.down.load(Ordering::SeqCst) {
        return (StatusCode::SERVICE_UNAVAILABLE, "<html>maintenance</html>").into_response();
    }
    if basic(h) != Some(("rot-client".into(), "rot-secret".into())) {
        return (StatusCode::UNAUTHORIZED, Json(json!({"error": "invalid_client"}))).into_response();
    }
    let mut refresh = b.refresh.lock().unwrap();
    let family = match grant {
        "refresh_token" => {
            let rt = f.get("refresh_token").cloned().unwrap_or_default();
            match refresh.get(&rt).copied() {
                Some((family, true)) if !b.revoked_families.lock().unwrap().contains(&family) => {
                    refresh.insert(rt, (family, false));
                    family
                }
                Some((family, _)) => {
                    b.revoked_families.lock().unwrap().push(family);
                    b.valid.lock().unwrap().clear();
                    return oauth_error("invalid_grant");
                }
                None => return oauth_error("invalid_grant"),
            }
        }
        "password" => {
            if f.get("username").map(String::as_str) != Some("rot-user")
                || f.get("password").map(String::as_str) != Some("rot-pass")
            {
                return oauth_error("invalid_grant");
            }
            1000 + b.families.fetch_add(1, Ordering::SeqCst)
        }
        _ => return oauth_error("unsupported_grant_type"),
    };
    let new_rt = random("rt");
    refresh.insert(new_rt.clone(), (family, true));
    let at = random("at");
    b.grant(&at);
    Json(json!({"access_token": at, "token_type": "bearer", "expires_in": b.ttl.load(Ordering::SeqCst), "refresh_token": new_rt}))
        .into_response()
}

// ---------------------------------------------------------------- Tripletex

/// Tripletex: `PUT /v2/token/session/:create?consumerToken&employeeToken&expirationDate`; API
/// calls use HTTP Basic with user `0` and the session token as password.
pub async fn tripletex() -> (String, Arc<Book>) {
    let book = Arc::new(Book::default());
    let app = Router::new()
        .route(
            "/v2/token/session/{*rest}",
            put(|State(b): State<Arc<Book>>, axum::extract::Path(rest): axum::extract::Path<String>, Query(q): Query<HashMap<String, String>>| async move {
                b.token_requests.fetch_add(1, Ordering::SeqCst);
                if rest != ":create" {
                    return StatusCode::NOT_FOUND.into_response();
                }
                if q.get("consumerToken").map(String::as_str) != Some("consumer+token/1") || q.get("employeeToken").map(String::as_str) != Some("employee-token") {
                    return (StatusCode::FORBIDDEN, Json(json!({"status": 403, "message": "Invalid or expired token"}))).into_response();
                }
                let today = jiff::Zoned::now().with_time_zone(jiff::tz::TimeZone::UTC).date();
                let Some(exp) = q.get("expirationDate").and_then(|d| d.parse::<jiff::civil::Date>().ok()) else {
                    return (StatusCode::UNPROCESSABLE_ENTITY, Json(json!({"status": 422, "message": "expirationDate: invalid"}))).into_response();
                };
                if exp <= today {
                    return (StatusCode::UNPROCESSABLE_ENTITY, Json(json!({"status": 422, "message": "expirationDate must be in the future"}))).into_response();
                }
                let t = format!("eyJ0b2tlbklkIjo{:08x}", rand::random::<u32>());
                b.grant(&t);
                Json(json!({"value": {"id": 42, "version": 1, "consumerToken": {"id": 1}, "employeeToken": {"id": 2}, "expirationDate": exp.to_string(), "token": t}})).into_response()
            }),
        )
        .route(
            "/v2/employee",
            get(|State(b): State<Arc<Book>>, h: HeaderMap| async move {
                match basic(&h) {
                    Some((user, t)) if user == "0" && b.is_valid(&t) => Json(json!({"values": []})).into_response(),
                    _ => unauthorized(),
                }
            }),
        )
        .with_state(book.clone());
    (serve(app).await, book)
}

// ---------------------------------------------------------------- webCRM (JWT)

/// webCRM style: `POST /Auth/ApiLogin {"authCode"}` → JWT access token (expiry only in its
/// `exp` claim) and refresh token; `POST /Auth/ApiRefresh {"refreshToken"}`.
pub async fn webcrm() -> (String, Arc<Book>) {
    let book = Arc::new(Book::default());
    fn pair(b: &Book) -> Value {
        let at = jwt(json!({"sub": "api-user", "exp": now_secs() + 3600, "jti": rand::random::<u64>()}));
        let rt = random("wrt");
        b.grant(&at);
        b.refresh.lock().unwrap().insert(rt.clone(), (0, true));
        json!({"AccessToken": at, "RefreshToken": rt, "TokenType": "Bearer"})
    }
    let app = Router::new()
        .route(
            "/Auth/ApiLogin",
            post(|State(b): State<Arc<Book>>, Json(body): Json<Value>| async move {
                b.token_requests.fetch_add(1, Ordering::SeqCst);
                if body.get("authCode").and_then(Value::as_str) != Some("app-token-123") {
                    return (StatusCode::UNAUTHORIZED, Json(json!({"Message": "Invalid authCode"}))).into_response();
                }
                Json(pair(&b)).into_response()
            }),
        )
        .route(
            "/Auth/ApiRefresh",
            post(|State(b): State<Arc<Book>>, Json(body): Json<Value>| async move {
                b.token_requests.fetch_add(1, Ordering::SeqCst);
                let rt = body
                    .get("refreshToken")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string();
                if b.refresh.lock().unwrap().remove(&rt).is_none() {
                    return (
                        StatusCode::UNAUTHORIZED,
                        Json(json!({"Message": "Invalid refresh token"})),
                    )
                        .into_response();
                }
                Json(pair(&b)).into_response()
            }),
        )
        .route(
            "/Persons",
            get(|State(b): State<Arc<Book>>, h: HeaderMap| async move {
                match bearer(&h) {
                    Some(t) if b.is_valid(&t) => Json(json!([])).into_response(),
                    _ => unauthorized(),
                }
            }),
        )
        .with_state(book.clone());
    (serve(app).await, book)
}

// ---------------------------------------------------------------- SuperOffice

pub const SO_TICKET_CLAIM: &str = "http://schemes.superoffice.net/identity/ticket";

/// SuperOffice: OAuth2 refresh with client id/secret in the form; the `id_token` carries the
/// ticket; API calls need `Authorization: SOTicket <ticket>` and `SO-AppToken: <secret>`.
pub async fn superoffice() -> (String, Arc<Book>) {
    let book = Arc::new(Book::default());
    let app = Router::new()
        .route("/login/common/oauth/authorize", get(|s, q| authorize(s, q, "so-client")))
        .route(
            "/login/common/oauth/tokens",
            post(|State(b): State<Arc<Book>>, body: Bytes| async move {
                b.token_requests.fetch_add(1, Ordering::SeqCst);
                let f = form(&body);
                let client_ok = f.get("client_id").map(String::as_str) == Some("so-client")
                    && f.get("client_secret").map(String::as_str) == Some("so-app-secret");
                let grant_ok = match f.get("grant_type").map(String::as_str) {
                    Some("refresh_token") => f.get("refresh_token").map(String::as_str) == Some("so-refresh"),
                    Some("authorization_code") => redeem(&b, f.get("code"), f.get("redirect_uri")),
                    _ => false,
                };
                if !client_ok || !grant_ok {
                    return oauth_error("invalid_grant");
                }
                let ticket = format!("7T:{:012x}", rand::random::<u64>() >> 16);
                b.grant(&ticket);
                let id_token = jwt(json!({
                    "sub": "user@example.com",
                    "exp": now_secs() + 3600,
                    SO_TICKET_CLAIM: ticket,
                    "http://schemes.superoffice.net/identity/webapi_url": "https://sod.superoffice.com/Cust12345/api",
                }));
                Json(json!({"token_type": "Bearer", "access_token": random("so-at"), "expires_in": 3600, "id_token": id_token, "refresh_token": "so-refresh"})).into_response()
            }),
        )
        .route(
            "/api/v1/User/currentPrincipal",
            get(|State(b): State<Arc<Book>>, h: HeaderMap| async move {
                let ticket = h.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("SOTicket "));
                let app = h.get("SO-AppToken").and_then(|v| v.to_str().ok());
                match ticket {
                    Some(t) if b.is_valid(t) && app == Some("so-app-secret") => Json(json!({"Associate": "ok"})).into_response(),
                    _ => unauthorized(),
                }
            }),
        )
        .with_state(book.clone());
    (serve(app).await, book)
}

// ---------------------------------------------------------------- PowerOffice Go

/// PowerOffice Go: client credentials with Basic `application key : client key` plus an
/// `Ocp-Apim-Subscription-Key` header, on the token call and on API calls.
pub async fn poweroffice() -> (String, Arc<Book>) {
    let book = Arc::new(Book::default());
    let app = Router::new()
        .route(
            "/OAuth/Token",
            post(|State(b): State<Arc<Book>>, h: HeaderMap, body: Bytes| async move {
                b.token_requests.fetch_add(1, Ordering::SeqCst);
                let sub_ok = h.get("Ocp-Apim-Subscription-Key").and_then(|v| v.to_str().ok()) == Some("sub-key");
                if !sub_ok {
                    return (
                        StatusCode::UNAUTHORIZED,
                        Json(json!({"statusCode": 401, "message": "Access denied due to missing subscription key."})),
                    )
                        .into_response();
                }
                if basic(&h) != Some(("app-key".into(), "client-key".into()))
                    || form(&body).get("grant_type").map(String::as_str) != Some("client_credentials")
                {
                    return (StatusCode::BAD_REQUEST, Json(json!({"error": "invalid_client"}))).into_response();
                }
                let t = random("po");
                b.grant(&t);
                Json(json!({"access_token": t, "token_type": "bearer", "expires_in": 1200})).into_response()
            }),
        )
        .route(
            "/v2/Customers",
            get(|State(b): State<Arc<Book>>, h: HeaderMap| async move {
                let sub_ok = h.get("Ocp-Apim-Subscription-Key").and_then(|v| v.to_str().ok()) == Some("sub-key");
                match bearer(&h) {
                    Some(t) if sub_ok && b.is_valid(&t) => Json(json!([])).into_response(),
                    _ => unauthorized(),
                }
            }),
        )
        .with_state(book.clone());
    (serve(app).await, book)
}

// ---------------------------------------------------------------- API keys

/// WooCommerce (Basic consumer key:secret) and Wix (`Authorization: <key>` + `wix-site-id`).
pub async fn api_keys() -> String {
    let app = Router::new()
        .route(
            "/wp-json/wc/v3/products",
            get(|h: HeaderMap| async move {
                match basic(&h) {
                    Some((k, s)) if k == "ck_123" && s == "cs_456" => Json(json!([])).into_response(),
                    _ => unauthorized(),
                }
            }),
        )
        .route(
            "/stores/v1/products/query",
            get(|h: HeaderMap| async move {
                let auth = h.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
                let site = h.get("wix-site-id").and_then(|v| v.to_str().ok());
                if auth == Some("IST.wix-key") && site == Some("site-1") {
                    Json(json!({"products": []})).into_response()
                } else {
                    unauthorized()
                }
            }),
        );
    serve(app).await
}

// ---------------------------------------------------------------- misbehaving providers

/// Endpoints that fail in the ways providers do.
pub async fn faulty() -> String {
    let app = Router::new()
        .route(
            "/ok-no-token",
            any(|| async { Json(json!({"token": "x", "expires_in": 60})) }),
        )
        .route(
            "/not-json",
            any(|| async { ([(header::CONTENT_TYPE, "text/plain")], "access_token=abc") }),
        )
        .route(
            "/html",
            any(|| async {
                (
                    [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
                    "<html><body>Please sign in</body></html>",
                )
            }),
        )
        .route(
            "/unauthorized",
            any(|| async { (StatusCode::UNAUTHORIZED, Json(json!({"error": "invalid_client"}))) }),
        )
        .route("/invalid-grant", any(|| async { oauth_error("invalid_grant") }))
        .route(
            "/rate-limited",
            any(|| async {
                (
                    StatusCode::TOO_MANY_REQUESTS,
                    [(header::RETRY_AFTER, "42")],
                    Json(json!({"error": "slow_down"})),
                )
            }),
        )
        .route(
            "/server-error",
            any(|| async { (StatusCode::BAD_GATEWAY, "<html>502 Bad Gateway</html>") }),
        )
        .route(
            "/slow",
            any(|| async {
                tokio::time::sleep(Duration::from_secs(5)).await;
                Json(json!({"access_token": "late"}))
            }),
        )
        .route(
            "/huge",
            any(|| async { Json(json!({"access_token": "a".repeat(64 * 1024)})) }),
        )
        .route(
            "/bad-expiry",
            any(|| async { Json(json!({"access_token": "t", "expires_in": "soon"})) }),
        )
        .route(
            "/echo-secret-error",
            any(|| async { (StatusCode::BAD_REQUEST, "error: bad password sup3r-s3cret given") }),
        );
    serve(app).await
}

/// Polls `f` until it returns `Some`, failing the test after `secs` seconds with `what`.
pub async fn eventually<T, F, Fut>(secs: u64, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The in-process API server with the ConnectorAuth CRD installed: every write is checked
/// against the CRD's schema and CEL rules, as a real API server checks it.
pub async fn api_server() -> fake_apiserver::FakeApiServer {
    let server = fake_apiserver::FakeApiServer::start().await;
    server.register_crd(&<connector_auth_operator::api::ConnectorAuth as kube::CustomResourceExt>::crd());
    server.register_crd(
        &<connector_auth_operator::api::provider::ClusterConnectorAuthProvider as kube::CustomResourceExt>::crd(),
    );
    server
}

/// Creates a ConnectorAuth named `name` in `ns` with this spec.
pub async fn create_connector(
    client: &kube::Client,
    ns: &str,
    name: &str,
    spec: Value,
) -> connector_auth_operator::api::ConnectorAuth {
    let ca: connector_auth_operator::api::ConnectorAuth = serde_json::from_value(json!({
        "apiVersion": "connectorauth.dev/v1alpha1", "kind": "ConnectorAuth",
        "metadata": {"name": name, "namespace": ns}, "spec": spec,
    }))
    .unwrap();
    kube::Api::<connector_auth_operator::api::ConnectorAuth>::namespaced(client.clone(), ns)
        .create(&kube::api::PostParams::default(), &ca)
        .await
        .unwrap()
}

/// Standard base64, as Secret `data` holds it.
pub fn b64(s: &str) -> String {
    STANDARD.encode(s)
}

/// What the driver needs for a rotating-provider resource that can only refresh, with this
/// onboarding refresh token in its credentials.
pub fn refresh_only(engine: &Engine, base: &str, seed: &str) -> connector_auth_operator::reconcile::Gathered {
    let spec = spec(&format!(
        "credentialsRef: {{name: r}}\noauth2: {{tokenUrl: '{base}/oauth/token', grantType: refreshToken}}\n"
    ));
    let inputs = connector_auth_operator::engine::Inputs {
        credentials: creds(&[
            ("client_id", "rot-client"),
            ("client_secret", "rot-secret"),
            ("refresh_token", seed),
        ]),
        ..Default::default()
    };
    connector_auth_operator::reconcile::Gathered {
        flow: connector_auth_operator::catalog::compile(engine, &spec).unwrap(),
        fingerprint: connector_auth_operator::catalog::fingerprint(&spec, &inputs.credentials).unwrap(),
        inputs,
        provider: None,
        renew_request: None,
    }
}

/// ChiefOnboarding's documented Google example, exactly as its docs show it.
pub const CHIEFONBOARDING_GOOGLE: &str = include_str!("../fixtures/import/chiefonboarding-google.json");

/// The example with Google's hosts pointed at the emulator.
pub fn chiefonboarding_google_at(base: &str) -> Value {
    let text = CHIEFONBOARDING_GOOGLE
        .replace("https://oauth2.googleapis.com", base)
        .replace("https://accounts.google.com", base);
    serde_json::from_str(&text).unwrap()
}

/// Runs local mode on the manifests in `dir` through consent — a browser opens the consent URL
/// and follows the provider's redirect to the callback — and returns the runner and the output
/// directory.
pub async fn consent_in_local_mode(
    dir: &std::path::Path,
) -> (connector_auth_operator::local::LocalRunner, std::path::PathBuf) {
    let out = dir.join("out");
    let mut runner = connector_auth_operator::local::LocalRunner::new(engine(), dir.to_path_buf(), out.clone());
    runner.enable_consent("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let reports = runner.pass().await.unwrap();
    let url = reports[0]
        .authorization_url
        .clone()
        .unwrap_or_else(|| panic!("no consent URL: {}", reports[0].line()));
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let resp = http.get(&url).send().await.unwrap();
    assert_eq!(
        resp.status(),
        302,
        "the provider's consent page accepts the link: {url}"
    );
    let location = resp.headers()["location"].to_str().unwrap().to_string();
    let resp = reqwest::get(&location).await.unwrap();
    let status = resp.status().as_u16();
    let page = resp.text().await.unwrap();
    assert_eq!(status, 200, "{page}");
    (runner, out)
}
