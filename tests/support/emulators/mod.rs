//! Loopback emulators of the providers, one file each, every one with a protected endpoint that
//! accepts only a correctly presented token. What they share (the [`Book`] of requests and
//! tokens, the consent page, request parsing) is here.

mod api_keys;
mod connected;
mod docuware;
mod dpop;
mod faulty;
mod google;
mod login_page;
mod pkce;
mod poweroffice;
mod rotating;
mod snov;
mod superoffice;
mod tripletex;
mod webcrm;
mod workload_identity;

// Each test binary uses some of them: an unused one is no warning.
#[allow(unused_imports)]
pub use api_keys::*;
#[allow(unused_imports)]
pub use connected::*;
#[allow(unused_imports)]
pub use docuware::*;
#[allow(unused_imports)]
pub use dpop::*;
#[allow(unused_imports)]
pub use faulty::*;
#[allow(unused_imports)]
pub use google::*;
#[allow(unused_imports)]
pub use login_page::*;
#[allow(unused_imports)]
pub use pkce::*;
#[allow(unused_imports)]
pub use poweroffice::*;
#[allow(unused_imports)]
pub use rotating::*;
#[allow(unused_imports)]
pub use snov::*;
#[allow(unused_imports)]
pub use superoffice::*;
#[allow(unused_imports)]
pub use tripletex::*;
#[allow(unused_imports)]
pub use webcrm::*;
#[allow(unused_imports)]
pub use workload_identity::*;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::json;

use fake_apiserver::Gate;

fn unauthorized() -> Response {
    (StatusCode::UNAUTHORIZED, Json(json!({"error": "invalid_token"}))).into_response()
}

pub(super) fn oauth_error(code: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({"error": code, "error_description": "see RFC 6749"})),
    )
        .into_response()
}

pub(super) fn random(prefix: &str) -> String {
    format!("{prefix}-{:016x}", rand::random::<u64>())
}

pub(super) fn form(body: &Bytes) -> HashMap<String, String> {
    url::form_urlencoded::parse(body).into_owned().collect()
}

pub(super) fn basic(headers: &HeaderMap) -> Option<(String, String)> {
    let v = headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Basic ")?;
    let decoded = String::from_utf8(STANDARD.decode(v).ok()?).ok()?;
    let (u, p) = decoded.split_once(':')?;
    Some((u.to_string(), p.to_string()))
}

pub(super) fn bearer(headers: &HeaderMap) -> Option<String> {
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
    /// Requests to an identity endpoint (Google's userinfo).
    pub identity_requests: AtomicU64,
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
pub(super) async fn authorize(
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
    // Google says on the redirect which scopes were granted.
    if let Some(scope) = q.get("scope") {
        url.query_pairs_mut().append_pair("scope", scope);
    }
    (StatusCode::FOUND, [(header::LOCATION, url.to_string())]).into_response()
}

/// Consumes a code; true if it was issued for this redirect_uri.
pub(super) fn redeem(b: &Book, code: Option<&String>, redirect: Option<&String>) -> bool {
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
