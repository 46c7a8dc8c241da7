//! API keys emulator.

use axum::Router;
use axum::http::{HeaderMap, header};
use axum::response::IntoResponse;
use axum::routing::get;
use serde_json::json;

use super::*;
use crate::support::*;

/// WooCommerce (Basic consumer key:secret) and Wix (`Authorization: <key>` + `wix-site-id`).
pub async fn api_keys() -> String {
    let app = Router::new()
        .route(
            "/wp-json/wc/v3/products",
            get(|h: HeaderMap| async move {
                match basic(&h) {
                    Some((k, s)) if k == "ck_123" && s == "cs_456" => Json(json!([])).into_response(),
                    _ => unauthorized(),
                }
            }),
        )
        .route(
            "/stores/v1/products/query",
            get(|h: HeaderMap| async move {
                let auth = h.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
                let site = h.get("wix-site-id").and_then(|v| v.to_str().ok());
                if auth == Some("IST.wix-key") && site == Some("site-1") {
                    Json(json!({"products": []})).into_response()
                } else {
                    unauthorized()
                }
            }),
        );
    serve(app).await
}
