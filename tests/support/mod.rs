//! Helpers shared by the integration tests: the engine against loopback emulators of the
//! providers (`emulators/`, one file per provider), the in-process API server, waiting.
#![allow(dead_code)]

pub mod consent;
pub mod emulators;
pub mod operator;
pub mod tls;

pub use emulators::*;

use std::collections::BTreeMap;
use std::time::Duration;

use axum::Router;
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::{Value, json};

use connector_auth_operator::api::ConnectorAuthSpec;
use connector_auth_operator::engine::{self, Engine, EngineError, HttpSettings, Inputs, SecretString, TokenState};

/// Starts `router` on 127.0.0.1 with a free port; returns `http://127.0.0.1:PORT`.
pub async fn serve(router: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, router).await.unwrap();
    });
    format!("http://{addr}")
}

pub fn engine() -> Engine {
    Engine::new(loopback()).unwrap()
}

/// The HTTP settings of tests: the default policy, but the emulators live on 127.0.0.1, which
/// the default refuses (private and loopback addresses), so private addresses are allowed
/// (`--allow-private-token-urls`). Link-local and metadata addresses stay refused.
pub fn loopback() -> HttpSettings {
    HttpSettings {
        policy: engine::policy::UrlPolicy {
            allow_private: true,
            ..Default::default()
        },
        ..HttpSettings::default()
    }
}

pub fn creds(pairs: &[(&str, &str)]) -> BTreeMap<String, SecretString> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), SecretString::new(*v)))
        .collect()
}

pub fn spec(yaml: &str) -> ConnectorAuthSpec {
    serde_saphyr::from_str(yaml).unwrap_or_else(|e| panic!("bad test spec: {e}\n{yaml}"))
}

/// Compiles `spec`, obtains a token (given the previous state) and renders the output.
pub async fn issue_with(
    engine: &Engine,
    spec: &ConnectorAuthSpec,
    credentials: &BTreeMap<String, SecretString>,
    prev: Option<&TokenState>,
) -> Result<(TokenState, BTreeMap<String, String>), EngineError> {
    let flow = connector_auth_operator::catalog::compile(engine, spec)?;
    let inputs = Inputs {
        credentials: credentials.clone(),
        ..Default::default()
    };
    let fp = connector_auth_operator::catalog::fingerprint(spec, credentials).unwrap();
    let token = engine.obtain(&flow, &inputs, prev, &fp, jiff::Timestamp::now()).await?;
    let out = engine.render_output(&flow, &inputs, &token)?;
    Ok((token, out))
}

pub async fn issue(
    spec_yaml: &str,
    credentials: &[(&str, &str)],
) -> Result<(TokenState, BTreeMap<String, String>), EngineError> {
    issue_with(&engine(), &spec(spec_yaml), &creds(credentials), None).await
}

/// Calls `url` with the headers of a generated Secret's `headers.json`; returns the status.
pub async fn call_api(url: &str, output: &BTreeMap<String, String>) -> u16 {
    let headers: BTreeMap<String, String> = serde_json::from_str(&output["headers.json"]).unwrap();
    let mut req = reqwest::Client::new().get(url);
    for (k, v) in headers {
        req = req.header(k, v);
    }
    req.send().await.unwrap().status().as_u16()
}

pub fn jwt(claims: Value) -> String {
    format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256","typ":"JWT"}"#),
        URL_SAFE_NO_PAD.encode(claims.to_string()),
        URL_SAFE_NO_PAD.encode(b"signature")
    )
}

pub fn now_secs() -> i64 {
    jiff::Timestamp::now().as_second()
}

/// Polls `f` until it returns `Some`, failing the test after `secs` seconds with `what`.
pub async fn eventually<T, F, Fut>(secs: u64, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The in-process API server with the ConnectorAuth CRD installed: every write is checked
/// against the CRD's schema and CEL rules, as a real API server checks it.
pub async fn api_server() -> fake_apiserver::FakeApiServer {
    let server = fake_apiserver::FakeApiServer::start().await;
    server.register_crd(&<connector_auth_operator::api::ConnectorAuth as kube::CustomResourceExt>::crd());
    server.register_crd(
        &<connector_auth_operator::api::provider::ClusterConnectorAuthProvider as kube::CustomResourceExt>::crd(),
    );
    server
}

/// Creates a ConnectorAuth named `name` in `ns` with this spec.
pub async fn create_connector(
    client: &kube::Client,
    ns: &str,
    name: &str,
    spec: Value,
) -> connector_auth_operator::api::ConnectorAuth {
    let ca: connector_auth_operator::api::ConnectorAuth = serde_json::from_value(json!({
        "apiVersion": "connectorauth.dev/v1alpha1", "kind": "ConnectorAuth",
        "metadata": {"name": name, "namespace": ns}, "spec": spec,
    }))
    .unwrap();
    kube::Api::<connector_auth_operator::api::ConnectorAuth>::namespaced(client.clone(), ns)
        .create(&kube::api::PostParams::default(), &ca)
        .await
        .unwrap()
}

/// Standard base64, as Secret `data` holds it.
pub fn b64(s: &str) -> String {
    STANDARD.encode(s)
}

/// What the driver needs for a rotating-provider resource that can only refresh, with this
/// onboarding refresh token in its credentials.
pub fn refresh_only(engine: &Engine, base: &str, seed: &str) -> connector_auth_operator::reconcile::Gathered {
    let spec = spec(&format!(
        "credentialsRef: {{name: r}}\noauth2: {{tokenUrl: '{base}/oauth/token', grantType: refreshToken}}\n"
    ));
    let inputs = connector_auth_operator::engine::Inputs {
        credentials: creds(&[
            ("client_id", "rot-client"),
            ("client_secret", "rot-secret"),
            ("refresh_token", seed),
        ]),
        ..Default::default()
    };
    connector_auth_operator::reconcile::Gathered {
        flow: connector_auth_operator::catalog::compile(engine, &spec).unwrap(),
        fingerprint: connector_auth_operator::catalog::fingerprint(&spec, &inputs.credentials).unwrap(),
        inputs,
        provider: None,
        renew_request: None,
    }
}

/// ChiefOnboarding's documented Google example, exactly as its docs show it.
pub const CHIEFONBOARDING_GOOGLE: &str = include_str!("../fixtures/import/chiefonboarding-google.json");

/// The example with Google's hosts pointed at the emulator.
pub fn chiefonboarding_google_at(base: &str) -> Value {
    let text = CHIEFONBOARDING_GOOGLE
        .replace("https://oauth2.googleapis.com", base)
        .replace("https://accounts.google.com", base);
    serde_json::from_str(&text).unwrap()
}

/// Runs local mode on the manifests in `dir` through consent — a browser opens the consent URL
/// and follows the provider's redirect to the callback — and returns the runner and the output
/// directory.
pub async fn consent_in_local_mode(
    dir: &std::path::Path,
) -> (connector_auth_operator::local::LocalRunner, std::path::PathBuf) {
    let out = dir.join("out");
    let mut runner = connector_auth_operator::local::LocalRunner::new(engine(), dir.to_path_buf(), out.clone());
    runner.enable_consent("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let reports = runner.pass().await.unwrap();
    let url = reports[0]
        .authorization_url
        .clone()
        .unwrap_or_else(|| panic!("no consent URL: {}", reports[0].line()));
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let resp = http.get(&url).send().await.unwrap();
    assert_eq!(
        resp.status(),
        302,
        "the provider's consent page accepts the link: {url}"
    );
    let location = resp.headers()["location"].to_str().unwrap().to_string();
    let resp = reqwest::get(&location).await.unwrap();
    let status = resp.status().as_u16();
    let page = resp.text().await.unwrap();
    assert_eq!(status, 200, "{page}");
    (runner, out)
}
