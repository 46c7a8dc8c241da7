//! Tripletex emulator.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, put};
use serde_json::json;

use super::*;
use crate::support::*;

/// Tripletex: `PUT /v2/token/session/:create?consumerToken&employeeToken&expirationDate`; API
/// calls use HTTP Basic with user `0` and the session token as password.
pub async fn tripletex() -> (String, Arc<Book>) {
    let book = Arc::new(Book::default());
    let app = Router::new()
        .route(
            "/v2/token/session/{*rest}",
            put(|State(b): State<Arc<Book>>, axum::extract::Path(rest): axum::extract::Path<String>, Query(q): Query<HashMap<String, String>>| async move {
                b.token_requests.fetch_add(1, Ordering::SeqCst);
                if rest != ":create" {
                    return StatusCode::NOT_FOUND.into_response();
                }
                if q.get("consumerToken").map(String::as_str) != Some("consumer+token/1") || q.get("employeeToken").map(String::as_str) != Some("employee-token") {
                    return (StatusCode::FORBIDDEN, Json(json!({"status": 403, "message": "Invalid or expired token"}))).into_response();
                }
                let today = jiff::Zoned::now().with_time_zone(jiff::tz::TimeZone::UTC).date();
                let Some(exp) = q.get("expirationDate").and_then(|d| d.parse::<jiff::civil::Date>().ok()) else {
                    return (StatusCode::UNPROCESSABLE_ENTITY, Json(json!({"status": 422, "message": "expirationDate: invalid"}))).into_response();
                };
                if exp <= today {
                    return (StatusCode::UNPROCESSABLE_ENTITY, Json(json!({"status": 422, "message": "expirationDate must be in the future"}))).into_response();
                }
                let t = format!("eyJ0b2tlbklkIjo{:08x}", rand::random::<u32>());
                b.grant(&t);
                Json(json!({"value": {"id": 42, "version": 1, "consumerToken": {"id": 1}, "employeeToken": {"id": 2}, "expirationDate": exp.to_string(), "token": t}})).into_response()
            }),
        )
        .route(
            // Who the session token belongs to (`>whoAmI`, Tripletex's identity endpoint).
            "/v2/token/session/%3EwhoAmI",
            get(|State(b): State<Arc<Book>>, h: HeaderMap| async move {
                match basic(&h) {
                    Some((user, t)) if user == "0" && b.is_valid(&t) => Json(json!({"value": {"employeeId": 2, "companyId": 1}})).into_response(),
                    _ => unauthorized(),
                }
            }),
        )
        .route(
            "/v2/employee",
            get(|State(b): State<Arc<Book>>, h: HeaderMap| async move {
                match basic(&h) {
                    Some((user, t)) if user == "0" && b.is_valid(&t) => Json(json!({"values": []})).into_response(),
                    _ => unauthorized(),
                }
            }),
        )
        .with_state(book.clone());
    (serve(app).await, book)
}
