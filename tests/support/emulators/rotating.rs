//! rotating refresh tokens emulator.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;

use super::*;
use crate::support::*;

/// A provider that rotates refresh tokens on every use and revokes the whole family when a
/// rotated-out token is presented again (all of its tokens then fail with `invalid_grant`, and
/// its access tokens stop working). Client auth is HTTP Basic (`rot-client`/`rot-secret`). The
/// seed is `rt-seed`; the password grant (`rot-user`/`rot-pass`) starts a new family.
///
/// A token request can be held at a [`Gate`] before the provider acts on it
/// ([`Book::hold_next_request`]) or after, with its answer not yet sent
/// ([`Book::hold_next_answer`]). Requests are handled in a task of their own, so one that
/// is let go after its client died still takes effect, as at a real provider.
pub async fn rotating(ttl_secs: u64) -> (String, Arc<Book>) {
    let book = Arc::new(Book::default());
    book.refresh.lock().unwrap().insert("rt-seed".into(), (1, true));
    book.ttl.store(ttl_secs, Ordering::SeqCst);
    let app = Router::new()
        .route(
            "/oauth/token",
            post(|State(b): State<Arc<Book>>, h: HeaderMap, body: Bytes| async move {
                tokio::spawn(rotating_token(b, h, body)).await.unwrap()
            }),
        )
        .route(
            "/api/me",
            get(|State(b): State<Arc<Book>>, h: HeaderMap| async move {
                match bearer(&h) {
                    Some(t) if b.is_valid(&t) && !b.family_revoked() => Json(json!({"me": "ok"})).into_response(),
                    _ => unauthorized(),
                }
            }),
        )
        .with_state(book.clone());
    (serve(app).await, book)
}

async fn rotating_token(b: Arc<Book>, h: HeaderMap, body: Bytes) -> Response {
    b.token_requests.fetch_add(1, Ordering::SeqCst);
    let f = form(&body);
    let grant = f.get("grant_type").cloned().unwrap_or_default();
    b.grants.lock().unwrap().push(grant.clone());
    let before = b.hold_request.lock().unwrap().take();
    if let Some(gate) = before
        && let Some(status) = gate.enter().await
    {
        return (StatusCode::from_u16(status).unwrap(), "<html>gateway error</html>").into_response();
    }
    let response = rotating_grant(&b, &h, &f, &grant);
    b.handled.fetch_add(1, Ordering::SeqCst);
    let after = b.hold_answer.lock().unwrap().take();
    if let Some(gate) = after
        && let Some(status) = gate.enter().await
    {
        // Acted on, but the client hears something else (a proxy timing out, say).
        return (StatusCode::from_u16(status).unwrap(), "<html>gateway error</html>").into_response();
    }
    response
}

fn rotating_grant(b: &Book, h: &HeaderMap, f: &HashMap<String, String>, grant: &str) -> Response {
    if b.down.load(Ordering::SeqCst) {
        return (StatusCode::SERVICE_UNAVAILABLE, "<html>maintenance</html>").into_response();
    }
    if basic(h) != Some(("rot-client".into(), "rot-secret".into())) {
        return (StatusCode::UNAUTHORIZED, Json(json!({"error": "invalid_client"}))).into_response();
    }
    let mut refresh = b.refresh.lock().unwrap();
    let family = match grant {
        "refresh_token" => {
            let rt = f.get("refresh_token").cloned().unwrap_or_default();
            match refresh.get(&rt).copied() {
                Some((family, true)) if !b.revoked_families.lock().unwrap().contains(&family) => {
                    refresh.insert(rt, (family, false));
                    family
                }
                Some((family, _)) => {
                    b.revoked_families.lock().unwrap().push(family);
                    b.valid.lock().unwrap().clear();
                    return oauth_error("invalid_grant");
                }
                None => return oauth_error("invalid_grant"),
            }
        }
        "password" => {
            if f.get("username").map(String::as_str) != Some("rot-user")
                || f.get("password").map(String::as_str) != Some("rot-pass")
            {
                return oauth_error("invalid_grant");
            }
            1000 + b.families.fetch_add(1, Ordering::SeqCst)
        }
        _ => return oauth_error("unsupported_grant_type"),
    };
    let new_rt = random("rt");
    refresh.insert(new_rt.clone(), (family, true));
    let at = random("at");
    b.grant(&at);
    Json(json!({"access_token": at, "token_type": "bearer", "expires_in": b.ttl.load(Ordering::SeqCst), "refresh_token": new_rt}))
        .into_response()
}
