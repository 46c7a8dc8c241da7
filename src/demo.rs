//! A small OAuth 2.0 provider on loopback, for `connector-auth-operator demo`: the password
//! grant issues short-lived access tokens and rotating refresh tokens (reuse of an old refresh
//! token revokes the whole family, as careful providers do), and `/api/me` accepts only a
//! valid, unexpired bearer token.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use serde_json::json;

#[derive(Default)]
struct Inner {
    /// access token → (family, expiry)
    access: HashMap<String, (u64, Instant)>,
    /// refresh token → (family, still current)
    refresh: HashMap<String, (u64, bool)>,
    revoked: Vec<u64>,
    next_family: u64,
    pub token_requests: u64,
}

/// The demo provider's state.
#[derive(Clone)]
pub struct DemoProvider {
    inner: Arc<Mutex<Inner>>,
    ttl: Duration,
    username: String,
    password: String,
}

fn random_token(prefix: &str) -> String {
    format!("{prefix}_{:032x}", rand::random::<u128>())
}

impl DemoProvider {
    pub fn new(ttl: Duration, username: &str, password: &str) -> Self {
        DemoProvider {
            inner: Arc::default(),
            ttl,
            username: username.into(),
            password: password.into(),
        }
    }

    /// Number of token requests served.
    pub fn token_requests(&self) -> u64 {
        self.inner.lock().expect("lock").token_requests
    }

    pub fn router(&self) -> Router {
        Router::new()
            .route("/oauth/token", post(token))
            .route("/api/me", get(me))
            .with_state(self.clone())
    }

    /// Serves on `addr` until the task is dropped; returns the bound address.
    pub async fn serve(&self, addr: SocketAddr) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let bound = listener.local_addr()?;
        let router = self.router();
        let handle = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Ok((bound, handle))
    }

    fn issue(&self, inner: &mut Inner, family: u64) -> serde_json::Value {
        let access = random_token("at");
        let refresh = random_token("rt");
        inner.access.insert(access.clone(), (family, Instant::now() + self.ttl));
        inner.refresh.insert(refresh.clone(), (family, true));
        json!({
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": self.ttl.as_secs(),
            "refresh_token": refresh,
        })
    }
}

fn oauth_error(status: StatusCode, code: &str) -> Response {
    (status, Json(json!({ "error": code }))).into_response()
}

async fn token(State(p): State<DemoProvider>, Form(form): Form<HashMap<String, String>>) -> Response {
    let mut inner = p.inner.lock().expect("lock");
    inner.token_requests += 1;
    match form.get("grant_type").map(String::as_str) {
        Some("password") => {
            if form.get("username") != Some(&p.username) || form.get("password") != Some(&p.password) {
                return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant");
            }
            inner.next_family += 1;
            let family = inner.next_family;
            Json(p.issue(&mut inner, family)).into_response()
        }
        Some("refresh_token") => {
            let Some(rt) = form.get("refresh_token") else {
                return oauth_error(StatusCode::BAD_REQUEST, "invalid_request");
            };
            match inner.refresh.get(rt).copied() {
                Some((family, true)) if !inner.revoked.contains(&family) => {
                    inner.refresh.insert(rt.clone(), (family, false));
                    Json(p.issue(&mut inner, family)).into_response()
                }
                Some((family, _)) => {
                    // Reuse of a rotated token: assume theft, revoke the family.
                    inner.revoked.push(family);
                    oauth_error(StatusCode::BAD_REQUEST, "invalid_grant")
                }
                None => oauth_error(StatusCode::BAD_REQUEST, "invalid_grant"),
            }
        }
        _ => oauth_error(StatusCode::BAD_REQUEST, "unsupported_grant_type"),
    }
}

async fn me(State(p): State<DemoProvider>, headers: HeaderMap) -> Response {
    let inner = p.inner.lock().expect("lock");
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match token.and_then(|t| inner.access.get(t)) {
        Some((family, exp)) if *exp > Instant::now() && !inner.revoked.contains(family) => {
            Json(json!({ "user": p.username, "family": family })).into_response()
        }
        _ => oauth_error(StatusCode::UNAUTHORIZED, "invalid_token"),
    }
}
