//! Every parameter of the platforms whose configuration reference the README's "Migrating from
//! other platforms" table covers (Locoia, ChiefOnboarding, Sesam), translated as that table says,
//! behaves as on the original platform against a loopback emulator of the provider.

mod support;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use connector_auth_operator::engine::Inputs;
use serde_json::{Value, json};
use support::*;

fn spec_of(v: Value) -> connector_auth_operator::api::ConnectorAuthSpec {
    serde_json::from_value(v).unwrap()
}

/// A provider in ChiefOnboarding's manner: the code exchange answers with extra fields
/// (`team_id`, `instance_url`, a large `id_token`); the refresh needs the team id and answers
/// with a new access token only — no refresh token, no `expires_in`.
async fn chief_like() -> (String, Arc<AtomicU64>) {
    let refreshes = Arc::new(AtomicU64::new(0));
    let app = axum::Router::new()
        .route(
            "/token",
            post(|Query(q): Query<HashMap<String, String>>| async move {
                if q.get("code").map(String::as_str) != Some("the-code") {
                    return (StatusCode::BAD_REQUEST, Json(json!({"error": "invalid_grant"}))).into_response();
                }
                Json(
                    json!({"access_token": "at-1", "refresh_token": "rt-1", "expires_in": 3600,
                    "team_id": "T42", "instance_url": "https://eu.example.com", "ok": true,
                    "id_token": "x".repeat(20_000), "scopes": ["a", "b"]}),
                )
                .into_response()
            }),
        )
        .route(
            "/refresh",
            post(|State(n): State<Arc<AtomicU64>>, body: Bytes| async move {
                let f: HashMap<String, String> = url::form_urlencoded::parse(&body).into_owned().collect();
                if f.get("refresh_token").map(String::as_str) != Some("rt-1")
                    || f.get("team").map(String::as_str) != Some("T42")
                {
                    return (StatusCode::BAD_REQUEST, Json(json!({"error": "invalid_grant"}))).into_response();
                }
                let i = n.fetch_add(1, Ordering::SeqCst) + 2;
                Json(json!({"access_token": format!("at-{i}"), "ok": false})).into_response()
            }),
        )
        .with_state(refreshes.clone());
    (serve(app).await, refreshes)
}

#[tokio::test]
async fn chiefonboarding_oauth_fields_are_the_last_token_responses_merged_across_refreshes_and_kept_private() {
    let (base, refreshes) = chief_like().await;
    let spec = spec_of(json!({
        "credentialsRef": {"name": "c"},
        "oauth2": {
            "grantType": "authorizationCode",
            "authorizationUrl": "https://provider.example/authorize",
            // No `{{ code }}`: the code is appended after `&`, as ChiefOnboarding does.
            "tokenRequest": {"url": format!("{base}/token?client={{{{ CLIENT_ID }}}}")},
            "refreshRequest": {"url": format!("{base}/refresh"), "form": {
                "refresh_token": "{{ oauth.refresh_token }}", "team": "{{ oauth.team_id }}"}},
        },
        "output": {"template": {"instance": "{{ oauth.instance_url }}", "ok": "{{ oauth.ok }}"}},
    }));
    let eng = engine();
    let flow = connector_auth_operator::catalog::compile(&eng, &spec).unwrap();
    let inputs = Inputs {
        credentials: creds(&[("CLIENT_ID", "cid")]),
        callback: creds(&[("code", "the-code")]),
        ..Default::default()
    };
    let fp = connector_auth_operator::catalog::fingerprint(&spec, &inputs.credentials).unwrap();
    let first = eng.exchange(&flow, &inputs, &fp, jiff::Timestamp::now()).await.unwrap();
    let kept: Vec<&String> = first.oauth.keys().collect();
    assert_eq!(
        kept,
        ["instance_url", "ok", "team_id"],
        "only the fields templates read are kept"
    );
    assert_eq!(
        first.expires_at.unwrap().duration_since(first.issued_at).as_secs(),
        3600
    );

    let inputs = Inputs {
        callback: Default::default(),
        ..inputs
    };
    let second = eng
        .obtain(&flow, &inputs, Some(&first), &fp, jiff::Timestamp::now())
        .await
        .unwrap();
    assert_eq!(refreshes.load(Ordering::SeqCst), 1);
    assert_eq!(second.access_token.expose(), "at-2");
    assert_eq!(
        second.refresh_token.as_ref().unwrap().expose(),
        "rt-1",
        "an omitted refresh token is kept"
    );
    assert_eq!(
        second.oauth["team_id"].expose(),
        "T42",
        "an omitted field keeps its value"
    );
    assert_eq!(second.oauth["ok"].expose(), "false", "a returned field replaces it");
    assert_eq!(
        second.expires_at.unwrap().duration_since(second.issued_at).as_secs(),
        3600,
        "without expires_in the last one still holds"
    );
    // And again: the merged fields carry on.
    let third = eng
        .obtain(&flow, &inputs, Some(&second), &fp, jiff::Timestamp::now())
        .await
        .unwrap();
    assert_eq!(third.access_token.expose(), "at-3");

    let out = eng.render_output(&flow, &inputs, &third).unwrap();
    assert_eq!(out["instance"], "https://eu.example.com");
    assert!(
        !out.values().any(|v| v.contains("T42") || v.contains("rt-1")),
        "response fields are published only where a template puts them"
    );
    assert!(!format!("{third:?}").contains("T42"), "Debug never shows them");
}

#[tokio::test]
async fn a_token_request_that_places_the_code_itself_gets_no_second_one() {
    let app = axum::Router::new().route(
        "/token",
        post(|Query(q): Query<Vec<(String, String)>>| async move {
            let codes = q.iter().filter(|(k, _)| k == "code").count();
            if codes == 1 {
                Json(json!({"access_token": "t"})).into_response()
            } else {
                (StatusCode::BAD_REQUEST, Json(json!({"error": "invalid_request"}))).into_response()
            }
        }),
    );
    let base = serve(app).await;
    let spec = spec_of(json!({"credentialsRef": {"name": "c"}, "oauth2": {
        "grantType": "authorizationCode", "authorizationUrl": "https://provider.example/authorize",
        "tokenRequest": {"url": format!("{base}/token?code={{{{ code }}}}")}}}));
    let eng = engine();
    let flow = connector_auth_operator::catalog::compile(&eng, &spec).unwrap();
    assert!(!flow.append_code);
    let inputs = Inputs {
        callback: creds(&[("code", "c1")]),
        ..Default::default()
    };
    eng.exchange(&flow, &inputs, "fp", jiff::Timestamp::now())
        .await
        .unwrap();
}

/// Locoia's typical header configuration, verbatim: `token_format: "{{token}}"` and
/// `token_prefix: "Bearer {{token_format}}"`.
fn locoia_header(extra: Value) -> Value {
    let mut h = json!({"name": "Authorization", "format": "{{token}}", "value": "Bearer {{token_format}}",
        "extra": {"Content-Type": "application/json"}});
    if let (Some(h), Value::Object(e)) = (h["extra"].as_object_mut(), extra) {
        h.extend(e);
    }
    json!({"header": h})
}

#[tokio::test]
async fn locoia_snov_example_by_get_with_its_headers_and_typical_header_configuration() {
    let (base, book) = snov().await;
    // authorization_request_url / _method / _headers / _body_template, response_access_token_path.
    let spec = spec_of(json!({"credentialsRef": {"name": "c"}, "refreshableToken": {
        "authorization": {
            "url": format!("{base}/v1/oauth/access_token?client_id={{{{ username | urlencode }}}}&client_secret={{{{ password | urlencode }}}}&grant_type=client_credentials"),
            "method": "GET",
            "headers": {"Content-Type": "application/x-www-form-urlencoded"},
            "body": "{}",
        },
        "accessToken": {"jsonPath": "access_token"},
    }, "output": locoia_header(json!({}))}));
    let (token, out) = issue_with(
        &engine(),
        &spec,
        &creds(&[("username", "snov-id"), ("password", "snov&secret")]),
        None,
    )
    .await
    .unwrap();
    assert_eq!(book.requests(), 1);
    assert_eq!(
        out["header_value"],
        format!("Bearer {}", token.access_token.expose()),
        "`{{{{token}}}}` is the access token"
    );
    assert_eq!(call_api(&format!("{base}/v1/get-balance"), &out).await, 200);
}

#[tokio::test]
async fn locoia_docuware_example_cookie_token_and_custom_headers() {
    let (base, _) = docuware().await;
    // response_access_token_path_in_cookie; the header configuration's custom_headers.
    let spec = spec_of(json!({"credentialsRef": {"name": "c"}, "refreshableToken": {
        "authorization": {
            "url": format!("{base}/docuware/platform/Account/Logon?UserName={{{{ username | urlencode }}}}&Password={{{{ password | urlencode }}}}&RedirectToMyselfInCaseOfError=false&RememberMe=false&LicenseType="),
            "headers": {"Content-Type": "application/x-www-form-urlencoded", "User-Agent": "curl/7.84.0"},
            "form": {"Password": "{{ password }}", "UserName": "{{ username }}", "HostID": "locoia"},
        },
        "accessToken": {"cookie": ".DWPLATFORMAUTH"},
    }, "output": {"header": {"name": "Cookie", "format": "{{token}}", "value": ".DWPLATFORMAUTH={{token_format}}",
        "extra": {"Content-Type": "application/json", "User-Agent": "curl/7.84.0", "Accept": "application/json"}}}}));
    let (_, out) = issue_with(
        &engine(),
        &spec,
        &creds(&[("domain", "x"), ("username", "dw-user"), ("password", "p@ss&word=1")]),
        None,
    )
    .await
    .unwrap();
    assert_eq!(
        call_api(&format!("{base}/docuware/platform/Organizations"), &out).await,
        200
    );
}

/// A login that answers with the token in a header, and a separate refresh endpoint whose
/// answer is shaped differently from the login's.
async fn header_and_refresh_provider() -> (String, Arc<AtomicU64>) {
    let calls = Arc::new(AtomicU64::new(0));
    let app = axum::Router::new()
        .route(
            "/login",
            post(|Json(b): Json<Value>| async move {
                if b["user"] != "u" || b["pass"] != "p" {
                    return StatusCode::UNAUTHORIZED.into_response();
                }
                (
                    [("X-Auth-Token", "hdr-token")],
                    Json(json!({"data": {"access": "body-token", "refresh": "r-1", "expires": 600}})),
                )
                    .into_response()
            }),
        )
        .route(
            "/refresh",
            post(
                |State(n): State<Arc<AtomicU64>>, h: HeaderMap, Json(b): Json<Value>| async move {
                    let i = n.load(Ordering::SeqCst);
                    if h.get("X-Client").and_then(|v| v.to_str().ok()) != Some("locoia")
                        || b["refresh"] != format!("r-{}", i + 1)
                    {
                        return StatusCode::UNAUTHORIZED.into_response();
                    }
                    n.fetch_add(1, Ordering::SeqCst);
                    Json(json!({"result": {"token": format!("refreshed-{}", i + 1), "next": format!("r-{}", i + 2)}}))
                        .into_response()
                },
            ),
        )
        .route(
            "/me",
            get(|h: HeaderMap| async move {
                match h.get("Authorization").and_then(|v| v.to_str().ok()) {
                    Some(v) if v.starts_with("Token ") => StatusCode::OK,
                    _ => StatusCode::UNAUTHORIZED,
                }
            }),
        )
        .with_state(calls.clone());
    (serve(app).await, calls)
}

#[tokio::test]
async fn locoia_token_in_a_response_header() {
    let (base, _) = header_and_refresh_provider().await;
    // response_access_token_path_in_header.
    let spec = spec_of(json!({"credentialsRef": {"name": "c"}, "refreshableToken": {
        "authorization": {"url": format!("{base}/login"), "headers": {"Content-Type": "application/json"},
            "body": "{\"user\": \"{{ username }}\", \"pass\": \"{{ password }}\"}"},
        "accessToken": {"header": "X-Auth-Token"},
    }, "output": {"header": {"format": "{{token}}", "value": "Token {{token_format}}"}}}));
    let (token, out) = issue_with(&engine(), &spec, &creds(&[("username", "u"), ("password", "p")]), None)
        .await
        .unwrap();
    assert_eq!(token.access_token.expose(), "hdr-token");
    assert_eq!(call_api(&format!("{base}/me"), &out).await, 200);
}

#[tokio::test]
async fn locoia_separate_refresh_endpoint_with_its_own_response_paths() {
    let (base, calls) = header_and_refresh_provider().await;
    // response_access_token_path, response_refresh_token_path, refresh_request_url /
    // _body_template / _headers, refresh_response_access_token_path /
    // refresh_response_refresh_token_path.
    let spec = spec_of(json!({"credentialsRef": {"name": "c"}, "refreshableToken": {
        "authorization": {"url": format!("{base}/login"), "headers": {"Content-Type": "application/json"},
            "body": "{\"user\": \"{{ username }}\", \"pass\": \"{{ password }}\"}"},
        "accessToken": {"jsonPath": "data.access"},
        "refreshToken": {"jsonPath": "data.refresh"},
        "expiresIn": {"jsonPath": "data.expires"},
        "refresh": {"url": format!("{base}/refresh"), "headers": {"Content-Type": "application/json", "X-Client": "locoia"},
            "body": "{\"refresh\": \"{{ refresh_token }}\"}",
            "accessToken": {"jsonPath": "result.token"}, "refreshToken": {"jsonPath": "result.next"}},
    }}));
    let eng = engine();
    let c = creds(&[("username", "u"), ("password", "p")]);
    let (t1, _) = issue_with(&eng, &spec, &c, None).await.unwrap();
    assert_eq!(
        (t1.access_token.expose(), t1.refresh_token.as_ref().unwrap().expose()),
        ("body-token", "r-1")
    );
    let (t2, _) = issue_with(&eng, &spec, &c, Some(&t1)).await.unwrap();
    assert_eq!(
        (t2.access_token.expose(), t2.refresh_token.as_ref().unwrap().expose()),
        ("refreshed-1", "r-2")
    );
    let (t3, _) = issue_with(&eng, &spec, &c, Some(&t2)).await.unwrap();
    assert_eq!(
        t3.access_token.expose(),
        "refreshed-2",
        "the rotated refresh token is the one sent"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn locoia_encode_base64_encodes_the_token_format() {
    let (base, _) = header_and_refresh_provider().await;
    // The header configuration's `encode`.
    let spec = spec_of(json!({"credentialsRef": {"name": "c"}, "refreshableToken": {
        "authorization": {"url": format!("{base}/login"), "headers": {"Content-Type": "application/json"},
            "body": "{\"user\": \"{{ username }}\", \"pass\": \"{{ password }}\"}"},
        "accessToken": {"header": "X-Auth-Token"},
    }, "output": {"header": {"format": "{{ username }}:{{token}}", "encode": true, "value": "Token {{token_format}}"}}}));
    let (_, out) = issue_with(&engine(), &spec, &creds(&[("username", "u"), ("password", "p")]), None)
        .await
        .unwrap();
    assert_eq!(out["header_value"], format!("Token {}", b64("u:hdr-token")));
}

#[tokio::test]
async fn a_credentials_key_named_token_keeps_its_meaning_in_output_templates() {
    let spec = spec_of(
        json!({"credentialsRef": {"name": "c"}, "apiKey": {"key": "{{ api_key }}"},
        "output": {"header": {"value": "{{ token }}/{{ access_token }}"}}}),
    );
    let (_, out) = issue_with(&engine(), &spec, &creds(&[("api_key", "k"), ("token", "cred")]), None)
        .await
        .unwrap();
    assert_eq!(out["header_value"], "cred/k");
}

#[tokio::test]
async fn sesam_oauth2_secret_names_refresh_and_publish_oauth_access_token() {
    let (base, book) = rotating(3600).await;
    // Sesam's oauth_client_id, oauth_client_secret, oauth_refresh_token as credentials; the
    // injected oauth_access_token as an output key.
    let spec = spec_of(json!({"credentialsRef": {"name": "c"}, "oauth2": {
        "grantType": "refreshToken", "tokenUrl": format!("{base}/oauth/token"),
        "clientId": "{{ oauth_client_id }}", "clientSecret": "{{ oauth_client_secret }}",
        "refreshTokenKey": "oauth_refresh_token"},
        "output": {"template": {"oauth_access_token": "{{ access_token }}"}}}));
    let c = creds(&[
        ("oauth_client_id", "rot-client"),
        ("oauth_client_secret", "rot-secret"),
        ("oauth_refresh_token", "rt-seed"),
    ]);
    let (token, out) = issue_with(&engine(), &spec, &c, None).await.unwrap();
    assert_eq!(book.grants(), ["refresh_token"]);
    assert_eq!(out["oauth_access_token"], token.access_token.expose());
    assert_eq!(call_api(&format!("{base}/api/me"), &out).await, 200);
}
