//! misbehaving providers emulator.

use std::time::Duration;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::routing::any;
use serde_json::json;

use super::*;
use crate::support::*;

/// Endpoints that fail in the ways providers do.
pub async fn faulty() -> String {
    let app = Router::new()
        .route(
            "/ok-no-token",
            any(|| async { Json(json!({"token": "x", "expires_in": 60})) }),
        )
        .route(
            "/not-json",
            any(|| async { ([(header::CONTENT_TYPE, "text/plain")], "access_token=abc") }),
        )
        .route(
            "/html",
            any(|| async {
                (
                    [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
                    "<html><body>Please sign in</body></html>",
                )
            }),
        )
        .route(
            "/unauthorized",
            any(|| async { (StatusCode::UNAUTHORIZED, Json(json!({"error": "invalid_client"}))) }),
        )
        .route("/invalid-grant", any(|| async { oauth_error("invalid_grant") }))
        .route(
            "/rate-limited",
            any(|| async {
                (
                    StatusCode::TOO_MANY_REQUESTS,
                    [(header::RETRY_AFTER, "42")],
                    Json(json!({"error": "slow_down"})),
                )
            }),
        )
        .route(
            "/server-error",
            any(|| async { (StatusCode::BAD_GATEWAY, "<html>502 Bad Gateway</html>") }),
        )
        .route(
            "/slow",
            any(|| async {
                tokio::time::sleep(Duration::from_secs(5)).await;
                Json(json!({"access_token": "late"}))
            }),
        )
        .route(
            "/huge",
            any(|| async { Json(json!({"access_token": "a".repeat(64 * 1024)})) }),
        )
        .route(
            "/bad-expiry",
            any(|| async { Json(json!({"access_token": "t", "expires_in": "soon"})) }),
        )
        .route(
            "/echo-secret-error",
            any(|| async { (StatusCode::BAD_REQUEST, "error: bad password sup3r-s3cret given") }),
        );
    serve(app).await
}
