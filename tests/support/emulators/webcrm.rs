//! webCRM (JWT) emulator.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use serde_json::{Value, json};

use super::*;
use crate::support::*;

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
