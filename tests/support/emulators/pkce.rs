//! An authorization server that requires PKCE (RFC 7636, S256), as Salesforce, Calendly and
//! every OAuth 2.1 server do: the consent page refuses a link without an S256
//! `code_challenge`; the code exchange refuses a missing verifier, one that does not hash to
//! the challenge, and a code used twice.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::json;
use sha2::{Digest, Sha256};

use super::*;
use crate::support::*;

/// What the PKCE server saw.
#[derive(Default)]
pub struct PkceBook {
    /// Codes issued and not yet redeemed: code → (challenge, redirect_uri).
    codes: Mutex<HashMap<String, (String, String)>>,
    /// Every `code_challenge` a consent page was opened with.
    pub challenges: Mutex<Vec<String>>,
    /// Every `code_verifier` a code exchange sent (accepted or not).
    pub verifiers: Mutex<Vec<String>>,
    /// Why each refused token request was refused.
    pub refusals: Mutex<Vec<String>>,
    pub tokens: Book,
}

/// Base URL: `/authorize`, `/token` (client `p-client`/`p-secret` in the form), `/api`.
pub async fn pkce_server() -> (String, Arc<PkceBook>) {
    let book = Arc::new(PkceBook::default());
    let app = Router::new()
        .route("/authorize", get(pkce_authorize))
        .route("/token", post(pkce_token))
        .route(
            "/api",
            get(|State(b): State<Arc<PkceBook>>, h: HeaderMap| async move {
                match bearer(&h) {
                    Some(t) if b.tokens.is_valid(&t) => (StatusCode::OK, "ok").into_response(),
                    _ => unauthorized(),
                }
            }),
        )
        .with_state(book.clone());
    (serve(app).await, book)
}

async fn pkce_authorize(State(b): State<Arc<PkceBook>>, Query(q): Query<HashMap<String, String>>) -> Response {
    let (Some(redirect), Some(state)) = (q.get("redirect_uri"), q.get("state")) else {
        return (StatusCode::BAD_REQUEST, "redirect_uri and state are required").into_response();
    };
    let challenge = match (
        q.get("code_challenge"),
        q.get("code_challenge_method").map(String::as_str),
    ) {
        (Some(c), Some("S256")) if c.len() == 43 => c.clone(),
        _ => {
            return (
                StatusCode::BAD_REQUEST,
                "PKCE required: code_challenge with method S256",
            )
                .into_response();
        }
    };
    b.challenges.lock().unwrap().push(challenge.clone());
    let code = random("pkce-code");
    b.codes
        .lock()
        .unwrap()
        .insert(code.clone(), (challenge, redirect.clone()));
    let mut to = url::Url::parse(redirect).unwrap();
    to.query_pairs_mut()
        .append_pair("code", &code)
        .append_pair("state", state);
    (StatusCode::FOUND, [(header::LOCATION, to.to_string())]).into_response()
}

async fn pkce_token(State(b): State<Arc<PkceBook>>, body: Bytes) -> Response {
    b.tokens
        .token_requests
        .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let f = form(&body);
    let refuse = |why: &str| {
        b.refusals.lock().unwrap().push(why.to_string());
        oauth_error("invalid_grant")
    };
    if f.get("client_id").map(String::as_str) != Some("p-client")
        || f.get("client_secret").map(String::as_str) != Some("p-secret")
    {
        return refuse("client");
    }
    match f.get("grant_type").map(String::as_str) {
        Some("authorization_code") => {
            let Some(verifier) = f.get("code_verifier") else {
                return refuse("no code_verifier");
            };
            b.verifiers.lock().unwrap().push(verifier.clone());
            // Single use: a replayed code (or an unknown one) is refused.
            let Some((challenge, redirect)) = f.get("code").and_then(|c| b.codes.lock().unwrap().remove(c)) else {
                return refuse("code unknown or used");
            };
            if f.get("redirect_uri") != Some(&redirect) {
                return refuse("redirect_uri");
            }
            if URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes())) != challenge {
                return refuse("code_verifier does not match the challenge");
            }
        }
        Some("refresh_token") if f.get("refresh_token").is_some_and(|r| b.tokens.is_valid(r)) => {}
        _ => return refuse("grant"),
    }
    let (access, refresh) = (random("pkce-at"), random("pkce-rt"));
    b.tokens.grant(&access);
    b.tokens.grant(&refresh);
    axum::Json(json!({"access_token": access, "refresh_token": refresh, "token_type": "Bearer", "expires_in": 3600}))
        .into_response()
}
