//! snov.io emulator.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use serde_json::json;

use super::*;
use crate::support::*;

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
