//! PowerOffice Go emulator.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use serde_json::json;

use super::*;
use crate::support::*;

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
