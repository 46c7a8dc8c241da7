//! Google-style OAuth2 emulator.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use serde_json::json;

use super::*;
use crate::support::*;

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
            // OpenID Connect userinfo: who granted the consent, and their Workspace domain (`hd`).
            "/oauth2/v3/userinfo",
            get(|State(b): State<Arc<Book>>, h: HeaderMap| async move {
                b.identity_requests.fetch_add(1, Ordering::SeqCst);
                match bearer(&h) {
                    Some(t) if b.is_valid(&t) => Json(json!({"sub": "110169484474386276334", "email": "admin@example.com", "hd": "example.com"})).into_response(),
                    _ => unauthorized(),
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
