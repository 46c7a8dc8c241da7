//! A SaaS API of the kind QuickBooks, Xero and Slack document: the consent callback carries the
//! company the person picked (`realmId`, QuickBooks), the tenant is found afterwards with the
//! new access token (`GET /connections`, Xero), each phase of the flow wants its own
//! parameters, refresh tokens rotate, and errors may come with HTTP 200 (`{"ok": false,
//! "error": ...}`, Slack).
//!
//! The emulator checks every request against that and refuses (and records why) whatever a
//! client of the documented API would not send: a parameter of one phase in another, a refresh
//! token used twice, an API call without the tenant header.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;

use super::*;
use crate::support::*;

/// How the emulator answers refreshes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefreshAnswer {
    /// A new access token and a new refresh token (the old one is refused from then on).
    Rotate,
    /// HTTP 200 with `{"ok": false, "error": "invalid_refresh_token"}`: the grant is gone.
    OkFalse,
}

/// What the connected SaaS saw and how it behaves.
pub struct ConnectedBook {
    /// The company the next consent picks (sent back as `realmId`).
    pub realm: Mutex<String>,
    /// The tenant `GET /connections` lists.
    pub tenant: Mutex<String>,
    /// `GET /connections` answers 503 this many more times.
    pub lookup_failures: AtomicU32,
    pub lookups: AtomicU32,
    pub refresh_answer: Mutex<RefreshAnswer>,
    /// Token requests by grant, each with its parameters.
    pub requests: Mutex<Vec<(String, HashMap<String, String>)>>,
    /// Why each refused request was refused.
    pub refusals: Mutex<Vec<String>>,
    codes: Mutex<HashSet<String>>,
    refresh: Mutex<HashSet<String>>,
    /// Access tokens issued, and the tenant each may reach.
    access: Mutex<HashMap<String, String>>,
    ttl: u64,
}

impl ConnectedBook {
    pub fn refused(&self) -> Vec<String> {
        self.refusals.lock().unwrap().clone()
    }

    pub fn grants(&self) -> Vec<String> {
        self.requests.lock().unwrap().iter().map(|(g, _)| g.clone()).collect()
    }

    /// A refresh token issued at onboarding, outside the consent flow.
    pub fn grant_refresh(&self, rt: &str) {
        self.refresh.lock().unwrap().insert(rt.into());
    }

    fn refuse(&self, why: String) -> Response {
        self.refusals.lock().unwrap().push(why.clone());
        (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "invalid_request", "error_description": why})),
        )
            .into_response()
    }

    fn issue(&self) -> serde_json::Value {
        let at = random("at");
        let rt = random("rt");
        self.access
            .lock()
            .unwrap()
            .insert(at.clone(), self.tenant.lock().unwrap().clone());
        self.refresh.lock().unwrap().insert(rt.clone());
        json!({"access_token": at, "refresh_token": rt, "token_type": "bearer", "expires_in": self.ttl})
    }
}

/// Base URL: `/authorize` (needs `prompt=consent`), `/token` (client `c-client`/`c-secret` in
/// the form; the code exchange needs `audience=accounting` and no `scope`, a refresh needs
/// `scope=accounting.read` and no `audience`), `/connections`, `/api` (Bearer token and the
/// `xero-tenant-id` of its tenant).
pub async fn connected_server(ttl: u64) -> (String, Arc<ConnectedBook>) {
    let book = Arc::new(ConnectedBook {
        realm: Mutex::new("4620816365".into()),
        tenant: Mutex::new("tenant-1".into()),
        lookup_failures: AtomicU32::new(0),
        lookups: AtomicU32::new(0),
        refresh_answer: Mutex::new(RefreshAnswer::Rotate),
        requests: Mutex::default(),
        refusals: Mutex::default(),
        codes: Mutex::default(),
        refresh: Mutex::default(),
        access: Mutex::default(),
        ttl,
    });
    let app = Router::new()
        .route("/authorize", get(authorize))
        .route("/token", post(token))
        .route("/connections", get(connections))
        .route("/api", get(api))
        .with_state(book.clone());
    (serve(app).await, book)
}

async fn authorize(State(b): State<Arc<ConnectedBook>>, Query(q): Query<HashMap<String, String>>) -> Response {
    let (Some(redirect), Some(state)) = (q.get("redirect_uri"), q.get("state")) else {
        return b.refuse("consent page: redirect_uri and state are required".into());
    };
    if q.get("prompt").map(String::as_str) != Some("consent") {
        return b.refuse(format!("consent page: prompt=consent is required: {q:?}"));
    }
    if q.contains_key("audience") {
        return b.refuse("consent page: audience belongs to the code exchange".into());
    }
    let code = random("code");
    b.codes.lock().unwrap().insert(code.clone());
    let mut to = url::Url::parse(redirect).unwrap();
    to.query_pairs_mut()
        .append_pair("code", &code)
        .append_pair("realmId", &b.realm.lock().unwrap())
        .append_pair("state", state)
        // Parameters the client did not ask for are the provider's business.
        .append_pair("client_secret", "attacker-chosen");
    (StatusCode::FOUND, [(header::LOCATION, to.to_string())]).into_response()
}

async fn token(State(b): State<Arc<ConnectedBook>>, body: Bytes) -> Response {
    let f = form(&body);
    let grant = f.get("grant_type").cloned().unwrap_or_default();
    b.requests.lock().unwrap().push((grant.clone(), f.clone()));
    if f.get("client_id").map(String::as_str) != Some("c-client")
        || f.get("client_secret").map(String::as_str) != Some("c-secret")
    {
        return (StatusCode::UNAUTHORIZED, Json(json!({"error": "invalid_client"}))).into_response();
    }
    match grant.as_str() {
        "authorization_code" => {
            if f.get("audience").map(String::as_str) != Some("accounting") || f.contains_key("scope") {
                return b.refuse(format!("code exchange: audience=accounting and no scope: {f:?}"));
            }
            let code = f.get("code").cloned().unwrap_or_default();
            if !b.codes.lock().unwrap().remove(&code) {
                return (StatusCode::BAD_REQUEST, Json(json!({"error": "invalid_grant"}))).into_response();
            }
            Json(b.issue()).into_response()
        }
        "refresh_token" => {
            if f.get("scope").map(String::as_str) != Some("accounting.read") || f.contains_key("audience") {
                return b.refuse(format!("refresh: scope=accounting.read and no audience: {f:?}"));
            }
            let rt = f.get("refresh_token").cloned().unwrap_or_default();
            if *b.refresh_answer.lock().unwrap() == RefreshAnswer::OkFalse {
                return Json(json!({"ok": false, "error": "invalid_refresh_token"})).into_response();
            }
            if !b.refresh.lock().unwrap().remove(&rt) {
                return b.refuse("refresh: unknown or spent refresh token".into());
            }
            Json(b.issue()).into_response()
        }
        other => b.refuse(format!("unsupported grant {other}")),
    }
}

async fn connections(State(b): State<Arc<ConnectedBook>>, h: HeaderMap) -> Response {
    b.lookups.fetch_add(1, Ordering::SeqCst);
    let Some(tenant) = bearer(&h).and_then(|t| b.access.lock().unwrap().get(&t).cloned()) else {
        return unauthorized();
    };
    if b.lookup_failures
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
    {
        return (StatusCode::SERVICE_UNAVAILABLE, "try later").into_response();
    }
    Json(json!([{"id": "c-1", "tenantId": tenant, "tenantType": "ORGANISATION"}])).into_response()
}

async fn api(State(b): State<Arc<ConnectedBook>>, h: HeaderMap) -> Response {
    let tenant = h.get("xero-tenant-id").and_then(|v| v.to_str().ok());
    match bearer(&h).and_then(|t| b.access.lock().unwrap().get(&t).cloned()) {
        Some(t) if Some(t.as_str()) == tenant => (StatusCode::OK, "ok").into_response(),
        _ => unauthorized(),
    }
}
