//! A provider whose consent step is a real HTML login page, as QuickBooks' and most SaaS sign-in
//! pages are, for a browser to fill in: `GET /authorize` (client `lp-client`, `redirect_uri`,
//! `state` and an S256 `code_challenge` required) serves a form with username and password
//! fields that posts, with the OAuth parameters in hidden fields, to `POST /login`; right
//! credentials ([`LOGIN_PAGE_USER`] / [`LOGIN_PAGE_PASSWORD`]) redirect to `redirect_uri` with
//! `code`, `state`, the company picked (`realmId`) and a parameter nobody declared
//! ([`LOGIN_PAGE_PLANTED`] as `access_token`); wrong ones show the form again. `POST /token`
//! (client_secret_post, `lp-client`/`lp-secret` in the form, no Basic header) exchanges a code
//! once, for the `redirect_uri` it was issued for, with the `code_verifier` that hashes to its
//! challenge; `GET /api` accepts the bearer tokens issued.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::json;
use sha2::{Digest, Sha256};

use super::*;
use crate::support::*;

pub const LOGIN_PAGE_USER: &str = "alice";
pub const LOGIN_PAGE_PASSWORD: &str = "wonderland";
/// The company every successful login picks (`realmId` on the redirect).
pub const LOGIN_PAGE_REALM: &str = "4620816365";
/// The value of the undeclared `access_token` parameter the redirect carries.
pub const LOGIN_PAGE_PLANTED: &str = "planted-in-the-redirect";

/// What the login-page provider saw.
#[derive(Default)]
pub struct LoginPageBook {
    /// Codes issued and not yet redeemed: code → (challenge, redirect_uri).
    codes: Mutex<HashMap<String, (String, String)>>,
    /// Every `code_challenge` the login page was opened with.
    pub challenges: Mutex<Vec<String>>,
    /// Usernames of the logins that succeeded and of those that failed.
    pub logins: Mutex<Vec<String>>,
    pub failed_logins: Mutex<Vec<String>>,
    /// Every `code_verifier` a code exchange sent (accepted or not).
    pub verifiers: Mutex<Vec<String>>,
    /// Codes exchanged for tokens.
    pub exchanges: AtomicU64,
    /// Why each refused request was refused.
    pub refusals: Mutex<Vec<String>>,
    pub tokens: Book,
}

impl LoginPageBook {
    pub fn refused(&self) -> Vec<String> {
        self.refusals.lock().unwrap().clone()
    }

    fn refuse(&self, why: &str) -> Response {
        self.refusals.lock().unwrap().push(why.to_string());
        oauth_error("invalid_grant")
    }
}

/// Base URL: `/authorize`, `/login`, `/token`, `/api`.
pub async fn login_page_server() -> (String, Arc<LoginPageBook>) {
    let book = Arc::new(LoginPageBook::default());
    let app = Router::new()
        .route("/authorize", get(login_page_authorize))
        .route("/login", post(login_page_login))
        .route("/token", post(login_page_token))
        .route(
            "/api",
            get(|State(b): State<Arc<LoginPageBook>>, h: HeaderMap| async move {
                match bearer(&h) {
                    Some(t) if t.starts_with("lp-at-") && b.tokens.is_valid(&t) => {
                        axum::Json(json!({"realmId": LOGIN_PAGE_REALM})).into_response()
                    }
                    _ => unauthorized(),
                }
            }),
        )
        .with_state(book.clone());
    (serve(app).await, book)
}

/// The OAuth parameters the login form carries from `/authorize` to `/login`, checked at both.
struct Params {
    redirect_uri: String,
    state: String,
    challenge: String,
}

fn params(q: &HashMap<String, String>) -> Result<Params, &'static str> {
    if q.get("client_id").map(String::as_str) != Some("lp-client") {
        return Err("unknown client_id");
    }
    if q.get("response_type").map(String::as_str) != Some("code") {
        return Err("response_type=code is required");
    }
    let (Some(redirect_uri), Some(state)) = (q.get("redirect_uri"), q.get("state")) else {
        return Err("redirect_uri and state are required");
    };
    if url::Url::parse(redirect_uri).is_err() {
        return Err("redirect_uri is not a URL");
    }
    match (
        q.get("code_challenge"),
        q.get("code_challenge_method").map(String::as_str),
    ) {
        (Some(c), Some("S256")) if c.len() == 43 => Ok(Params {
            redirect_uri: redirect_uri.clone(),
            state: state.clone(),
            challenge: c.clone(),
        }),
        _ => Err("PKCE required: code_challenge with method S256"),
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// The sign-in page: the form, with `error` above it if the last attempt failed.
fn login_form(status: StatusCode, p: &Params, error: Option<&str>) -> Response {
    let hidden = [
        ("client_id", "lp-client"),
        ("response_type", "code"),
        ("redirect_uri", p.redirect_uri.as_str()),
        ("state", p.state.as_str()),
        ("code_challenge", p.challenge.as_str()),
        ("code_challenge_method", "S256"),
    ]
    .iter()
    .map(|(n, v)| format!(r#"<input type="hidden" name="{n}" value="{}">"#, escape(v)))
    .collect::<String>();
    let error = error.map(|e| format!(r#"<p id="error" role="alert">{}</p>"#, escape(e)));
    let body = format!(
        r#"<!doctype html><html><head><meta charset="utf-8"><title>Sign in to Ledgerly</title></head>
<body><h1>Sign in to Ledgerly</h1>{error}
<p>The application lp-client asks to read your company's books.</p>
<form method="post" action="/login">{hidden}
<label>Username <input type="text" id="username" name="username" autocomplete="username"></label>
<label>Password <input type="password" id="password" name="password" autocomplete="current-password"></label>
<button type="submit" id="sign-in">Sign in and allow</button>
</form></body></html>"#,
        error = error.unwrap_or_default()
    );
    (status, Html(body)).into_response()
}

async fn login_page_authorize(
    State(b): State<Arc<LoginPageBook>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    match params(&q) {
        Ok(p) => {
            b.challenges.lock().unwrap().push(p.challenge.clone());
            login_form(StatusCode::OK, &p, None)
        }
        Err(why) => {
            b.refusals.lock().unwrap().push(format!("authorize: {why}"));
            (StatusCode::BAD_REQUEST, why).into_response()
        }
    }
}

async fn login_page_login(State(b): State<Arc<LoginPageBook>>, body: Bytes) -> Response {
    let f = form(&body);
    let p = match params(&f) {
        Ok(p) => p,
        Err(why) => {
            b.refusals.lock().unwrap().push(format!("login: {why}"));
            return (StatusCode::BAD_REQUEST, why).into_response();
        }
    };
    let user = f.get("username").cloned().unwrap_or_default();
    if user != LOGIN_PAGE_USER || f.get("password").map(String::as_str) != Some(LOGIN_PAGE_PASSWORD) {
        b.failed_logins.lock().unwrap().push(user);
        return login_form(StatusCode::UNAUTHORIZED, &p, Some("Wrong username or password."));
    }
    b.logins.lock().unwrap().push(user);
    let code = random("lp-code");
    b.codes
        .lock()
        .unwrap()
        .insert(code.clone(), (p.challenge, p.redirect_uri.clone()));
    let mut to = url::Url::parse(&p.redirect_uri).unwrap();
    to.query_pairs_mut()
        .append_pair("code", &code)
        .append_pair("state", &p.state)
        .append_pair("realmId", LOGIN_PAGE_REALM)
        // Not declared in `callbackValues`: the client must drop it, whatever its name.
        .append_pair("access_token", LOGIN_PAGE_PLANTED);
    (StatusCode::FOUND, [(header::LOCATION, to.to_string())]).into_response()
}

async fn login_page_token(State(b): State<Arc<LoginPageBook>>, headers: HeaderMap, body: Bytes) -> Response {
    b.tokens.token_requests.fetch_add(1, Ordering::SeqCst);
    let f = form(&body);
    if basic(&headers).is_some() {
        return b.refuse("client_secret_post: no Basic header expected");
    }
    if f.get("client_id").map(String::as_str) != Some("lp-client")
        || f.get("client_secret").map(String::as_str) != Some("lp-secret")
    {
        return b.refuse("client");
    }
    match f.get("grant_type").map(String::as_str) {
        Some("authorization_code") => {
            let Some(verifier) = f.get("code_verifier") else {
                return b.refuse("no code_verifier");
            };
            b.verifiers.lock().unwrap().push(verifier.clone());
            // Single use: a replayed (or unknown) code is refused.
            let Some((challenge, redirect)) = f.get("code").and_then(|c| b.codes.lock().unwrap().remove(c)) else {
                return b.refuse("code unknown or used");
            };
            if f.get("redirect_uri") != Some(&redirect) {
                return b.refuse("redirect_uri differs from the consent's");
            }
            if URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes())) != challenge {
                return b.refuse("code_verifier does not match the challenge");
            }
            b.exchanges.fetch_add(1, Ordering::SeqCst);
        }
        Some("refresh_token")
            if f.get("refresh_token")
                .is_some_and(|r| r.starts_with("lp-rt-") && b.tokens.is_valid(r)) => {}
        _ => return b.refuse("grant"),
    }
    let (access, refresh) = (random("lp-at"), random("lp-rt"));
    b.tokens.grant(&access);
    b.tokens.grant(&refresh);
    axum::Json(json!({"access_token": access, "refresh_token": refresh, "token_type": "Bearer", "expires_in": 3600}))
        .into_response()
}
