//! SuperOffice emulator.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use serde_json::json;

use super::*;
use crate::support::*;

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
