//! Docuware emulator.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use serde_json::json;

use super::*;
use crate::support::*;

pub const DOCUWARE_UA: &str = "curl/7.84.0";

/// Docuware: form login that answers with several cookies, the token in `.DWPLATFORMAUTH`;
/// the same User-Agent is required on login and API calls.
pub async fn docuware() -> (String, Arc<Book>) {
    let book = Arc::new(Book::default());
    let app = Router::new()
        .route(
            "/docuware/platform/Account/Logon",
            post(|State(b): State<Arc<Book>>, h: HeaderMap, body: Bytes| async move {
                b.token_requests.fetch_add(1, Ordering::SeqCst);
                let f = form(&body);
                let ua_ok = h.get(header::USER_AGENT).and_then(|v| v.to_str().ok()) == Some(DOCUWARE_UA);
                let ct_ok = h
                    .get(header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|c| c.starts_with("application/x-www-form-urlencoded"));
                if !ua_ok || !ct_ok {
                    return StatusCode::BAD_REQUEST.into_response();
                }
                if f.get("UserName").map(String::as_str) != Some("dw-user")
                    || f.get("Password").map(String::as_str) != Some("p@ss&word=1")
                {
                    return (
                        StatusCode::UNAUTHORIZED,
                        Json(json!({"Message": "Invalid user name or password."})),
                    )
                        .into_response();
                }
                let t = random("dwauth");
                b.grant(&t);
                let mut resp = Json(json!({"Result": "Logged on"})).into_response();
                let hs = resp.headers_mut();
                hs.append(
                    header::SET_COOKIE,
                    "dwingressplatform=ingress123; path=/; HttpOnly".parse().unwrap(),
                );
                hs.append(
                    header::SET_COOKIE,
                    ".DWPLATFORMAUTH=; expires=Thu, 01 Jan 1970 00:00:00 GMT; path=/"
                        .parse()
                        .unwrap(),
                );
                hs.append(
                    header::SET_COOKIE,
                    format!(".DWPLATFORMAUTH={t}; path=/; secure; HttpOnly")
                        .parse()
                        .unwrap(),
                );
                hs.append(
                    header::SET_COOKIE,
                    "DWPLATFORMBROWSERID=browser456; path=/".parse().unwrap(),
                );
                resp
            }),
        )
        .route(
            "/docuware/platform/Organizations",
            get(|State(b): State<Arc<Book>>, h: HeaderMap| async move {
                let ua_ok = h.get(header::USER_AGENT).and_then(|v| v.to_str().ok()) == Some(DOCUWARE_UA);
                let cookie = h.get(header::COOKIE).and_then(|v| v.to_str().ok()).unwrap_or("");
                let token = cookie
                    .split(';')
                    .filter_map(|c| c.trim().strip_prefix(".DWPLATFORMAUTH="))
                    .next();
                match token {
                    Some(t) if ua_ok && b.is_valid(t) => {
                        Json(json!({"Organization": [{"Name": "Peters Engineering"}]})).into_response()
                    }
                    _ => unauthorized(),
                }
            }),
        )
        .with_state(book.clone());
    (serve(app).await, book)
}
