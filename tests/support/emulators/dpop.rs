//! An authorization server and API that bind tokens to a DPoP key (RFC 9449) and check every
//! proof as §4.3 says: `typ` `dpop+jwt`, an asymmetric `alg`, the signature by the header's
//! `jwk` (never a private one), `htm` and `htu` of this request, a recent `iat`, a `jti` not
//! seen before, the server's nonce (both ask for one first, `use_dpop_nonce`), and at the API
//! `ath` (the token's hash) and the key the token was bound to (`cnf.jkt`).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::*;
use crate::support::*;

#[derive(Default)]
pub struct DpopBook {
    base: Mutex<String>,
    jtis: Mutex<HashSet<String>>,
    /// Access token → the thumbprint of the key it is bound to.
    bound: Mutex<HashMap<String, String>>,
    pub token_requests: Mutex<u32>,
    pub api_calls: Mutex<u32>,
    pub refusals: Mutex<Vec<String>>,
}

impl DpopBook {
    pub fn refused(&self) -> Vec<String> {
        self.refusals.lock().unwrap().clone()
    }
}

const AS_NONCE: &str = "as-nonce-1";
const RS_NONCE: &str = "rs-nonce-1";

/// Base URL: `POST /token` (client credentials, client in the form), `/api/...` (any method).
pub async fn dpop_server() -> (String, Arc<DpopBook>) {
    let book = Arc::new(DpopBook::default());
    let app = Router::new()
        .route("/token", post(token))
        .fallback(api)
        .with_state(book.clone());
    let base = serve(app).await;
    *book.base.lock().unwrap() = base.clone();
    (base, book)
}

/// Checks a proof; returns the key's thumbprint and the claims.
fn check_proof(
    b: &DpopBook,
    h: &HeaderMap,
    method: &Method,
    htu: &str,
    nonce: &str,
) -> Result<(String, Value), String> {
    let proofs: Vec<&str> = h.get_all("dpop").iter().filter_map(|v| v.to_str().ok()).collect();
    let [proof] = proofs.as_slice() else {
        return Err(format!("{} DPoP headers", proofs.len()));
    };
    let header: Value = proof
        .split('.')
        .next()
        .and_then(|p| URL_SAFE_NO_PAD.decode(p).ok())
        .and_then(|p| serde_json::from_slice(&p).ok())
        .ok_or("not a JWT")?;
    if header["typ"] != "dpop+jwt" || !matches!(header["alg"].as_str(), Some("ES256" | "ES384")) {
        return Err(format!("header {header}"));
    }
    if header["jwk"].get("d").is_some() {
        return Err("a private key in the proof".into());
    }
    let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(header["jwk"].clone()).map_err(|e| e.to_string())?;
    let key = jsonwebtoken::DecodingKey::from_jwk(&jwk).map_err(|e| e.to_string())?;
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::decode_header(proof).map_err(|e| e.to_string())?.alg);
    v.required_spec_claims = HashSet::new();
    v.validate_exp = false;
    let claims: Value = jsonwebtoken::decode(proof, &key, &v)
        .map_err(|e| format!("signature: {e}"))?
        .claims;
    if claims["htm"] != method.as_str() || claims["htu"] != htu {
        return Err(format!(
            "htm/htu {} {} for {method} {htu}",
            claims["htm"], claims["htu"]
        ));
    }
    let iat = claims["iat"].as_i64().unwrap_or_default();
    if (jiff::Timestamp::now().as_second() - iat).abs() > 60 {
        return Err("iat is not recent".into());
    }
    let jti = claims["jti"].as_str().unwrap_or_default().to_string();
    if jti.is_empty() || !b.jtis.lock().unwrap().insert(jti) {
        return Err("jti missing or replayed".into());
    }
    if claims["nonce"] != nonce {
        return Err("use_dpop_nonce".into());
    }
    let thumbprint = connector_auth_operator::engine::dpop::jwk_thumbprint(&header["jwk"]);
    Ok((thumbprint, claims))
}

async fn token(State(b): State<Arc<DpopBook>>, h: HeaderMap, body: axum::body::Bytes) -> Response {
    *b.token_requests.lock().unwrap() += 1;
    let f = form(&body);
    let htu = format!("{}/token", b.base.lock().unwrap());
    match check_proof(&b, &h, &Method::POST, &htu, AS_NONCE) {
        Err(e) if e == "use_dpop_nonce" => (
            StatusCode::BAD_REQUEST,
            [("dpop-nonce", AS_NONCE)],
            Json(json!({"error": "use_dpop_nonce"})),
        )
            .into_response(),
        Err(e) => {
            b.refusals.lock().unwrap().push(format!("token: {e}"));
            (StatusCode::BAD_REQUEST, Json(json!({"error": "invalid_dpop_proof"}))).into_response()
        }
        Ok((jkt, _)) => {
            if f.get("grant_type").map(String::as_str) != Some("client_credentials")
                || f.get("client_id").map(String::as_str) != Some("dpop-client")
            {
                b.refusals.lock().unwrap().push(format!("token: parameters {f:?}"));
                return (StatusCode::BAD_REQUEST, Json(json!({"error": "invalid_client"}))).into_response();
            }
            let at = random("dpop-at");
            b.bound.lock().unwrap().insert(at.clone(), jkt);
            Json(json!({"access_token": at, "token_type": "DPoP", "expires_in": 3600})).into_response()
        }
    }
}

async fn api(State(b): State<Arc<DpopBook>>, method: Method, uri: Uri, h: HeaderMap) -> Response {
    *b.api_calls.lock().unwrap() += 1;
    let token = h
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("DPoP "))
        .unwrap_or_default()
        .to_string();
    let htu = format!("{}{}", b.base.lock().unwrap(), uri.path());
    let denied = |why: String| {
        b.refusals.lock().unwrap().push(format!("api: {why}"));
        (
            StatusCode::UNAUTHORIZED,
            [("www-authenticate", "DPoP error=\"invalid_token\"")],
            "",
        )
            .into_response()
    };
    let Some(jkt) = b.bound.lock().unwrap().get(&token).cloned() else {
        return denied("unknown or non-DPoP token".into());
    };
    match check_proof(&b, &h, &method, &htu, RS_NONCE) {
        Err(e) if e == "use_dpop_nonce" => (
            StatusCode::UNAUTHORIZED,
            [
                ("www-authenticate", "DPoP error=\"use_dpop_nonce\""),
                ("dpop-nonce", RS_NONCE),
            ],
            "",
        )
            .into_response(),
        Err(e) => denied(e),
        Ok((thumbprint, claims)) => {
            if thumbprint != jkt {
                return denied("the proof's key is not the token's".into());
            }
            if claims["ath"] != URL_SAFE_NO_PAD.encode(Sha256::digest(token.as_bytes())).as_str() {
                return denied("ath is not the token's hash".into());
            }
            (StatusCode::OK, "ok").into_response()
        }
    }
}
