//! `import`: each platform's own documents become a ConnectorAuth the CRD accepts (CEL
//! included) and whose token the emulated provider accepts; broken input is refused naming the
//! field.

mod support;

use std::collections::HashMap;

use axum::Json;
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use connector_auth_operator::api::{ConnectorAuth, ConnectorAuthSpec};
use connector_auth_operator::import::{self, Imported, Platform, Target};
use serde_json::{Value, json};
use support::*;

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!("{}/tests/fixtures/import/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

/// Imports a fixture and checks the resource the way the API server would.
fn imported(platform: Platform, name: &str, provider: Option<&str>) -> Imported {
    let i = import::import(platform, &fixture(name), provider).unwrap_or_else(|e| panic!("{name}: {e}"));
    let doc = import::resource(
        &i,
        &Target {
            name: "x".into(),
            namespace: "ns".into(),
        },
    );
    connector_auth_operator::api::validate_document(&doc).unwrap_or_else(|e| panic!("{name}: CEL refuses it: {e}"));
    let ca: ConnectorAuth = serde_json::from_value(doc).unwrap();
    ca.validate_cel().unwrap();
    connector_auth_operator::catalog::compile(&engine(), &ca.spec)
        .unwrap_or_else(|e| panic!("{name}: does not compile: {e}"));
    i
}

/// The imported spec with `from` replaced by `to` everywhere (a provider's host → emulator).
fn at(i: &Imported, from: &str, to: &str) -> ConnectorAuthSpec {
    let mut spec = i.spec.clone();
    spec["credentialsRef"] = json!({"name": "x-credentials"});
    serde_json::from_str(&spec.to_string().replace(from, to)).unwrap()
}

fn keys(i: &Imported) -> Vec<&str> {
    i.credentials.iter().map(|k| k.name.as_str()).collect()
}

fn error(platform: Platform, text: &str, provider: Option<&str>) -> String {
    import::import(platform, text, provider).unwrap_err().to_string()
}

#[tokio::test]
async fn locoias_snov_example_as_documented_gets_a_token_the_api_accepts() {
    let i = imported(Platform::Locoia, "locoia-snov.json", None);
    assert!(i.notes[0].contains("lacked a comma"), "{:?}", i.notes);
    assert_eq!(keys(&i), ["username", "password"]);
    assert!(i.credentials[0].comment.contains("client_id"));
    let (base, book) = snov().await;
    let spec = at(&i, "https://api.snov.io", &base);
    let (_, out) = issue_with(
        &engine(),
        &spec,
        &creds(&[("username", "snov-id"), ("password", "snov&secret")]),
        None,
    )
    .await
    .unwrap();
    assert_eq!(book.requests(), 1);
    assert_eq!(call_api(&format!("{base}/v1/get-balance"), &out).await, 200);
}

#[tokio::test]
async fn locoias_docuware_example_and_its_header_configuration_log_in_with_the_cookie() {
    let i = imported(Platform::Locoia, "locoia-docuware.json", None);
    assert_eq!(keys(&i), ["domain", "username", "password"]);
    assert!(i.credentials[0].comment.contains("Excluding 'https://'"));
    let (base, _) = docuware().await;
    let spec = at(&i, "https://{{ domain }}", &base);
    let c = creds(&[
        ("domain", "unused"),
        ("username", "dw-user"),
        ("password", "p@ss&word=1"),
    ]);
    let (_, out) = issue_with(&engine(), &spec, &c, None).await.unwrap();
    let headers: Value = serde_json::from_str(&out["headers.json"]).unwrap();
    assert_eq!(headers["User-Agent"], DOCUWARE_UA);
    assert_eq!(
        call_api(&format!("{base}/docuware/platform/Organizations"), &out).await,
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chiefonboardings_google_example_imports_completes_consent_and_refreshes() {
    let i = imported(Platform::Chiefonboarding, "chiefonboarding-google.json", None);
    assert_eq!(keys(&i), ["CLIENT_ID", "CLIENT_SECRET"]);
    let (base, book) = google_with_ttl(3).await;
    let spec = at(&i, "https://oauth2.googleapis.com", &base);
    let spec = serde_json::from_str::<ConnectorAuthSpec>(
        &serde_json::to_string(&spec)
            .unwrap()
            .replace("https://accounts.google.com", &base),
    )
    .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let manifest = json!({"apiVersion": "connectorauth.dev/v1alpha1", "kind": "ConnectorAuth",
        "metadata": {"name": "google"}, "spec": spec});
    std::fs::write(
        tmp.path().join("google.yaml"),
        format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{name: x-credentials}}\nstringData: {{CLIENT_ID: g-client, CLIENT_SECRET: g-secret}}\n---\n{manifest}"
        ),
    )
    .unwrap();
    let (mut runner, out) = consent_in_local_mode(tmp.path()).await;
    let token_file = out.join("default/google-token/access_token");
    let first = std::fs::read_to_string(&token_file).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::fs::read_to_string(&token_file).unwrap() == first {
        assert!(std::time::Instant::now() < deadline, "no refresh");
        let r = runner.pass().await.unwrap();
        assert!(r[0].ok(), "{}", r[0].line());
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(book.requests(), 2, "one exchange, one refresh");
    let headers = std::collections::BTreeMap::from([(
        "headers.json".to_string(),
        std::fs::read_to_string(out.join("default/google-token/headers.json")).unwrap(),
    )]);
    assert_eq!(
        call_api(&format!("{base}/admin/directory/v1/users"), &headers).await,
        200
    );
}

#[tokio::test]
async fn sesam_oauth2_uses_the_onboarding_refresh_token_and_publishes_oauth_access_token() {
    let i = imported(Platform::Sesam, "sesam-oauth2.json", None);
    assert_eq!(
        keys(&i),
        ["oauth_client_id", "oauth_client_secret", "oauth_refresh_token"]
    );
    assert!(
        i.spec["oauth2"]["authorizationUrl"]
            .as_str()
            .unwrap()
            .ends_with("&response_type=code&scope=read+write")
    );
    let (base, book) = rotating(3600).await;
    let spec = at(
        &i,
        "https://provider.example/oauth/token",
        &format!("{base}/oauth/token"),
    );
    let c = creds(&[
        ("oauth_client_id", "rot-client"),
        ("oauth_client_secret", "rot-secret"),
        ("oauth_refresh_token", "rt-seed"),
    ]);
    let (token, out) = issue_with(&engine(), &spec, &c, None).await.unwrap();
    assert_eq!(
        book.grants(),
        ["refresh_token"],
        "no consent needed with Sesam's refresh token"
    );
    assert_eq!(out["oauth_access_token"], token.access_token.expose());
    assert_eq!(call_api(&format!("{base}/api/me"), &out).await, 200);
}

#[tokio::test]
async fn sesam_tripletex_and_api_key_keep_sesams_secret_names() {
    let i = imported(Platform::Sesam, "sesam-tripletex.json", None);
    assert_eq!(keys(&i), ["consumer_token", "employee_token"]);
    let (base, _) = tripletex().await;
    let mut spec = at(&i, "", "");
    if let connector_auth_operator::api::Scheme::Tripletex(t) = &mut spec.scheme {
        t.base_url = Some(base.clone());
    }
    let c = creds(&[
        ("consumer_token", "consumer+token/1"),
        ("employee_token", "employee-token"),
    ]);
    let (_, out) = issue_with(&engine(), &spec, &c, None).await.unwrap();
    assert_eq!(call_api(&format!("{base}/v2/employee"), &out).await, 200);

    let i = imported(Platform::Sesam, "sesam-api-key.json", None);
    assert_eq!(keys(&i), ["api_key"]);
    let (_, out) = issue_with(&engine(), &at(&i, "", ""), &creds(&[("api_key", "k-1")]), None)
        .await
        .unwrap();
    assert_eq!((out["api_key"].as_str(), out["access_token"].as_str()), ("k-1", "k-1"));
}

#[tokio::test]
async fn a_nango_client_credentials_entry_gets_a_token_with_its_params_metadata_and_headers() {
    let i = imported(Platform::Nango, "nango-providers.yaml", Some("example-cc"));
    assert_eq!(keys(&i), ["domain", "tenant", "client_id", "client_secret"]);
    let app = axum::Router::new()
        .route(
            "/oauth/token",
            axum::routing::post(|h: HeaderMap, body: Bytes| async move {
                let f: HashMap<String, String> = url::form_urlencoded::parse(&body).into_owned().collect();
                let basic = h.get("authorization").and_then(|v| v.to_str().ok())
                    == Some(&*format!("Basic {}", b64("cid:csecret")));
                if !basic
                    || f.get("grant_type").map(String::as_str) != Some("client_credentials")
                    || f.get("audience").map(String::as_str) != Some("https://api.example.com")
                {
                    return (StatusCode::UNAUTHORIZED, Json(json!({"error": "invalid_client"}))).into_response();
                }
                Json(json!({"access_token": "cc-token", "expires_in": 600, "instance_url": "https://eu.example.com"}))
                    .into_response()
            }),
        )
        .route(
            "/me",
            axum::routing::get(|h: HeaderMap| async move {
                let ok = h.get("authorization").and_then(|v| v.to_str().ok()) == Some("Bearer cc-token")
                    && h.get("x-tenant").and_then(|v| v.to_str().ok()) == Some("t-1");
                if ok { StatusCode::OK } else { StatusCode::UNAUTHORIZED }
            }),
        );
    let base = serve(app).await;
    let spec = at(&i, "https://{{ domain }}", &base);
    let c = creds(&[
        ("domain", "unused"),
        ("tenant", "t-1"),
        ("client_id", "cid"),
        ("client_secret", "csecret"),
    ]);
    let (_, out) = issue_with(&engine(), &spec, &c, None).await.unwrap();
    assert_eq!(
        out["instance_url"], "https://eu.example.com",
        "token_response_metadata is published"
    );
    assert_eq!(call_api(&format!("{base}/me"), &out).await, 200);
}

#[test]
fn nango_oauth_and_api_key_entries_become_consent_and_api_key_resources() {
    let i = imported(Platform::Nango, "nango-providers.yaml", Some("example-oauth"));
    assert_eq!(
        i.spec["oauth2"]["authorizationUrl"],
        "https://auth.example.com/authorize?client_id={{ client_id | urlencode }}&redirect_uri={{ redirect_url | urlencode }}&access_type=offline&response_type=code&scope=read%2Cwrite"
    );
    assert_eq!(i.spec["oauth2"]["clientAuth"], "client_secret_post");
    let i = imported(Platform::Nango, "nango-providers.yaml", Some("example-key"));
    assert_eq!(keys(&i), ["apiKey"]);
    assert_eq!(i.spec["output"]["header"]["value"], "Bearer {{ apiKey }}");
}

#[test]
fn what_cannot_be_expressed_is_refused_naming_the_field() {
    let cases: Vec<(Platform, String, Option<&str>, &str)> = vec![
        (Platform::Locoia, r#"{"refreshable_token": {"config": {"authorization_request_url": "https://x"}}}"#.into(), None,
            "`refreshable_token.config.response_access_token_path`: is missing"),
        (Platform::Locoia, r#"{"refreshable_token": {"config": {"authorization_request_url": "https://x", "response_access_token_path": "t", "sign_requests": true}}}"#.into(), None,
            "`refreshable_token.config.sign_requests`: is not understood"),
        (Platform::Locoia, r#"{"refreshable_token": {"config": {"authorization_request_url": "https://x", "response_access_token_path": "t"}}, "header": {"token_in_header": false}}"#.into(), None,
            "`header.token_in_header`"),
        (Platform::Locoia, r#"{"refreshable_token": {"config": {"authorization_request_url": "https://x", "response_access_token_path": "t", "authorization_request_headers": "{not json"}}}"#.into(), None,
            "`refreshable_token.config.authorization_request_headers`: is not a JSON object"),
        (Platform::Chiefonboarding, r#"{"execute": []}"#.into(), None, "`oauth`: is missing"),
        (Platform::Chiefonboarding, r#"{"oauth": {"authenticate_url": "https://x", "access_token": {"url": "https://x", "data": {"a": {"b": 1}}}}}"#.into(), None,
            "`oauth.access_token.data.a`: must be a string"),
        (Platform::Chiefonboarding, r#"{"oauth": {"authenticate_url": "https://x", "access_token": {"url": "https://x", "polling": {}}}}"#.into(), None,
            "`oauth.access_token.polling`"),
        (Platform::Sesam, r#"{"auth": "api_key", "auth_variant": "jwt"}"#.into(), None, "`auth_variant`: `jwt`"),
        (Platform::Sesam, r#"{"auth": "oauth2", "oauth2": {"login_url": "https://x"}}"#.into(), None, "`oauth2.token_url`: is missing"),
        (Platform::Nango, fixture("nango-providers.yaml"), Some("example-signature"), "`example-signature.auth_mode`: `SIGNATURE` cannot be expressed"),
        (Platform::Nango, fixture("nango-providers.yaml"), Some("nope"), "`nope`: no such provider"),
        (Platform::Locoia, "{\"refreshable_token\": [".into(), None, "`(input)`: not valid JSON"),
    ];
    for (platform, text, provider, expected) in cases {
        let e = error(platform, &text, provider);
        assert!(
            e.starts_with(expected),
            "{platform:?}: expected {expected:?}, got {e:?}"
        );
    }
}

#[test]
fn the_cli_prints_the_resource_and_a_commented_credentials_skeleton() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_connector-auth-operator"))
        .args(["import", "locoia", "--name", "docuware", "--namespace", "integrations"])
        .arg(format!(
            "{}/tests/fixtures/import/locoia-docuware.json",
            env!("CARGO_MANIFEST_DIR")
        ))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let (ca, secret) = text.split_once("\n---\n").unwrap();
    let ca: Value = serde_saphyr::from_str(ca).unwrap();
    connector_auth_operator::api::validate_document(&ca).unwrap();
    assert_eq!(ca["metadata"], json!({"name": "docuware", "namespace": "integrations"}));
    assert_eq!(ca["spec"]["credentialsRef"]["name"], "docuware-credentials");
    assert!(
        secret.contains(
            "  # Domain (text) required - Excluding 'https://' - company-name.docuware.cloud\n  domain: \"\"\n"
        ),
        "{secret}"
    );
    let secret: Value = serde_saphyr::from_str(secret).unwrap();
    assert_eq!(
        secret["stringData"],
        json!({"domain": "", "username": "", "password": ""})
    );

    let bad = std::process::Command::new(env!("CARGO_BIN_EXE_connector-auth-operator"))
        .args(["import", "sesam"])
        .arg(format!(
            "{}/tests/fixtures/import/nango-providers.yaml",
            env!("CARGO_MANIFEST_DIR")
        ))
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("not valid JSON"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
}

#[tokio::test]
async fn sesam_superoffice_ticket_gets_a_ticket_the_api_accepts_with_the_app_token() {
    let i = imported(Platform::Sesam, "sesam-superoffice.json", None);
    assert_eq!(
        keys(&i),
        ["oauth_client_id", "oauth_client_secret", "oauth_refresh_token"]
    );
    let (base, _) = superoffice().await;
    let spec = at(&i, "https://sod.superoffice.com", &base);
    let c = creds(&[
        ("oauth_client_id", "so-client"),
        ("oauth_client_secret", "so-app-secret"),
        ("oauth_refresh_token", "so-refresh"),
    ]);
    let (_, out) = issue_with(&engine(), &spec, &c, None).await.unwrap();
    assert!(out["so_ticket"].starts_with("7T:"));
    assert_eq!(
        call_api(&format!("{base}/api/v1/User/currentPrincipal"), &out).await,
        200
    );
}

/// An `alias` entry is its target with its own keys on top, as Nango resolves it.
#[test]
fn a_nango_alias_entry_imports_as_its_target() {
    let alias = imported(Platform::Nango, "nango-providers.yaml", Some("example-alias"));
    let target = imported(Platform::Nango, "nango-providers.yaml", Some("example-oauth"));
    assert_eq!(alias.spec, target.spec);
    let e = error(Platform::Nango, "a: {alias: b}\nb: {alias: a}\n", Some("a"));
    assert!(e.contains("`a.alias`") && e.contains("8 deep"), "{e}");
}

/// TWO_STEP: Nango's JSON login request (nested values, a header from the credentials), the
/// token at a nested path with its lifetime, published in the header the proxy sends.
#[tokio::test]
async fn a_nango_two_step_entry_logs_in_with_its_json_request_and_publishes_the_session() {
    let i = imported(Platform::Nango, "nango-providers.yaml", Some("example-two-step"));
    assert_eq!(keys(&i), ["host", "app_key", "password", "username"]);
    let app = axum::Router::new()
        .route(
            "/api/login",
            axum::routing::post(|h: HeaderMap, body: Bytes| async move {
                let b: Value = serde_json::from_slice(&body).unwrap_or_default();
                let ok = h.get("x-app-key").and_then(|v| v.to_str().ok()) == Some("app-1")
                    && h.get("content-type").and_then(|v| v.to_str().ok()) == Some("application/json")
                    && b == json!({"username": "u@example.com", "password": "p\"ss", "options": {"remember": true, "ttl": 3600}});
                if !ok {
                    return (StatusCode::UNAUTHORIZED, Json(json!({"error": "bad login"}))).into_response();
                }
                Json(json!({"data": {"session": {"token": "sess-1", "expires_in": 900}}})).into_response()
            }),
        )
        .route(
            "/me",
            axum::routing::get(|h: HeaderMap| async move {
                if h.get("authorization").and_then(|v| v.to_str().ok()) == Some("Session sess-1") {
                    StatusCode::OK
                } else {
                    StatusCode::UNAUTHORIZED
                }
            }),
        );
    let base = serve(app).await;
    let spec = at(&i, "https://{{ host }}", &base);
    let c = creds(&[
        ("host", "unused"),
        ("username", "u@example.com"),
        ("password", "p\"ss"),
        ("app_key", "app-1"),
    ]);
    let (token, out) = issue_with(&engine(), &spec, &c, None).await.unwrap();
    assert_eq!(token.expires_at.unwrap().duration_since(token.issued_at).as_secs(), 900);
    assert_eq!(call_api(&format!("{base}/me"), &out).await, 200);
}

/// TWO_STEP with `additional_steps`: the first request's answer (`${step1.token_endpoint}`)
/// says where the login goes; the last answer holds the token.
#[tokio::test]
async fn a_nango_two_step_entry_with_additional_steps_follows_the_first_answer() {
    let i = imported(Platform::Nango, "nango-providers.yaml", Some("example-discovery"));
    assert_eq!(i.spec["renewal"]["refreshInterval"], "3600s");
    let app = axum::Router::new()
        .route(
            "/.well-known/openid-configuration",
            axum::routing::get(|h: HeaderMap| async move {
                let host = h
                    .get("host")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_string();
                Json(json!({"token_endpoint": format!("http://{host}/connect/token")}))
            }),
        )
        .route(
            "/connect/token",
            axum::routing::post(|body: Bytes| async move {
                let f: HashMap<String, String> = url::form_urlencoded::parse(&body).into_owned().collect();
                if f.get("grant_type").map(String::as_str) == Some("password")
                    && f.get("password").map(String::as_str) == Some("pw&1")
                {
                    Json(json!({"access_token": "dw-1", "expires_in": 3600})).into_response()
                } else {
                    StatusCode::UNAUTHORIZED.into_response()
                }
            }),
        );
    let base = serve(app).await;
    let spec = at(&i, "https://{{ host }}", &base);
    let c = creds(&[("host", "unused"), ("username", "u"), ("password", "pw&1")]);
    let (token, _) = issue_with(&engine(), &spec, &c, None).await.unwrap();
    assert_eq!(token.access_token.expose(), "dw-1");
}

/// `body_format: json` and `authorization_method: header`: a JSON token request with the
/// client in HTTP Basic; a Nango-only key (`credentials_verification_script`) is passed over.
#[tokio::test]
async fn a_nango_json_client_credentials_entry_sends_json_with_basic_authentication() {
    let i = imported(Platform::Nango, "nango-providers.yaml", Some("example-json-cc"));
    let app = axum::Router::new().route(
        "/oauth/token",
        axum::routing::post(|h: HeaderMap, body: Bytes| async move {
            let b: Value = serde_json::from_slice(&body).unwrap_or_default();
            let ok = h.get("authorization").and_then(|v| v.to_str().ok()) == Some(&*format!("Basic {}", b64("cid:cs")))
                && b == json!({"grant_type": "client_credentials", "audience": "https://api.example.com"});
            if ok {
                Json(json!({"access_token": "j-1", "expires_in": 60})).into_response()
            } else {
                StatusCode::UNAUTHORIZED.into_response()
            }
        }),
    );
    let base = serve(app).await;
    let spec = at(&i, "https://auth.example.com", &base);
    let (token, _) = issue_with(
        &engine(),
        &spec,
        &creds(&[("client_id", "cid"), ("client_secret", "cs")]),
        None,
    )
    .await
    .unwrap();
    assert_eq!(token.access_token.expose(), "j-1");
}

/// The consent side: PKCE unless `disable_pkce`, a `redirect_uri_metadata` value read from the
/// callback (never a credential), the authorization URL's replacements, a separate refresh URL.
#[test]
fn a_nango_oauth_entry_keeps_pkce_callback_values_and_url_replacements() {
    let i = imported(Platform::Nango, "nango-providers.yaml", Some("example-data-centre"));
    let o = &i.spec["oauth2"];
    assert_eq!(o["pkce"], true);
    assert_eq!(o["callbackValues"], json!(["accounts-server"]));
    assert_eq!(o["tokenUrl"], "{{ callback[\"accounts-server\"] }}/oauth/token");
    assert_eq!(
        o["refreshRequest"]["url"],
        "{{ callback[\"accounts-server\"] }}/oauth/refresh"
    );
    assert!(
        o["authorizationUrl"]
            .as_str()
            .unwrap()
            .starts_with("https://accounts.example.com/oauth/authorize?app_id={{ client_id | urlencode }}&"),
        "{o}"
    );
    assert!(
        !keys(&i).contains(&"accounts-server"),
        "a callback value is not a credential"
    );
    let i = imported(Platform::Nango, "nango-providers.yaml", Some("example-oauth"));
    assert!(i.spec["oauth2"].get("pkce").is_none(), "disable_pkce");
}

/// An API key sent in the query string is published as `query.json` beside the headers.
#[tokio::test]
async fn a_nango_query_string_key_is_published_as_query_parameters() {
    let i = imported(Platform::Nango, "nango-providers.yaml", Some("example-query"));
    let (_, out) = issue_with(&engine(), &at(&i, "", ""), &creds(&[("apiKey", "k&1")]), None)
        .await
        .unwrap();
    let q: Value = serde_json::from_str(&out["query.json"]).unwrap();
    assert_eq!(q, json!({"api_key": "k&1"}));
}

/// Coverage of a real providers.yaml (`NANGO_PROVIDERS_YAML=path`; Nango's file is not part of
/// the project): every entry whose auth mode the engine can do is imported, created through the
/// API server with the CRDs and compiled, or refused naming a field. Prints the numbers the
/// README records. Skipped (saying so) without the file.
#[tokio::test]
async fn nango_coverage_of_a_real_providers_yaml() {
    let Ok(path) = std::env::var("NANGO_PROVIDERS_YAML") else {
        eprintln!("skipped: set NANGO_PROVIDERS_YAML to a providers.yaml of NangoHQ/nango");
        return;
    };
    let text = std::fs::read_to_string(&path).unwrap();
    let doc: Value = serde_saphyr::from_str(&text).unwrap();
    let modes = ["OAUTH2", "OAUTH2_CC", "API_KEY", "BASIC", "TWO_STEP", "JWT"];
    let mode_of = |name: &str| -> Option<String> {
        let mut e = &doc[name];
        for _ in 0..8 {
            if let Some(m) = e.get("auth_mode").and_then(Value::as_str) {
                return Some(m.to_string());
            }
            e = &doc[e.get("alias")?.as_str()?];
        }
        None
    };
    let server = api_server().await;
    let api: kube::Api<ConnectorAuth> = kube::Api::namespaced(server.client(), "default");
    let (mut target, mut ok) = (0, 0);
    let mut refused: std::collections::BTreeMap<String, usize> = Default::default();
    for (n, (name, result)) in import::import_all_nango(&text).unwrap().into_iter().enumerate() {
        if !mode_of(&name).is_some_and(|m| modes.contains(&m.as_str())) {
            continue;
        }
        target += 1;
        let outcome = match result {
            Err(e) => Err(e.to_string()),
            Ok(i) => {
                let doc = import::resource(
                    &i,
                    &Target {
                        name: format!("n{n}"),
                        namespace: "default".into(),
                    },
                );
                match serde_json::from_value::<ConnectorAuth>(doc) {
                    Err(e) => Err(format!("not a ConnectorAuth: {e}")),
                    Ok(ca) => match api.create(&Default::default(), &ca).await {
                        Err(e) => Err(format!("API server: {e}")),
                        Ok(_) => connector_auth_operator::catalog::compile(&engine(), &ca.spec)
                            .map(|_| ())
                            .map_err(|e| format!("compile: {e}")),
                    },
                }
            }
        };
        match outcome {
            Ok(()) => ok += 1,
            Err(e) => {
                eprintln!("{name}: {e}");
                let field = e
                    .split('`')
                    .nth(1)
                    .unwrap_or(&e)
                    .split('.')
                    .skip(1)
                    .collect::<Vec<_>>()
                    .join(".");
                *refused.entry(field).or_default() += 1;
            }
        }
    }
    let pct = f64::from(ok) * 100.0 / f64::from(target);
    eprintln!("nango coverage: {ok} of {target} entries ({pct:.1}%); refusals by field: {refused:?}");
    assert!(pct >= 95.0, "{ok} of {target}");
}

/// `import nango FILE --all`: one line per entry, imported or why not, and the count.
#[test]
fn import_nango_all_reports_every_entry() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_connector-auth-operator"))
        .args(["import", "nango", "--all"])
        .arg(format!(
            "{}/tests/fixtures/import/nango-providers.yaml",
            env!("CARGO_MANIFEST_DIR")
        ))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("example-two-step: imported\n"), "{text}");
    assert!(
        text.contains("example-signature: refused: `example-signature.auth_mode`"),
        "{text}"
    );
    assert!(text.ends_with("# 9 of 10 entries imported\n"), "{text}");
}
