//! Hostile input, probe by probe: what a person with a consent link, a provider (or whoever
//! answers in its place), a manifest author or a planted file can send, run against the engine,
//! local mode and the controller, asserting the refusal or the safe outcome — and, where an
//! attacker's server is in play, that it received nothing.

mod support;

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::IntoResponse;
use connector_auth_operator::engine::policy::UrlPolicy;
use connector_auth_operator::engine::{Engine, HttpSettings};
use connector_auth_operator::local::LocalRunner;
use serde_json::json;
use support::consent::{Env, NS, google_env_with_credentials};
use support::*;

const BIN: &str = env!("CARGO_BIN_EXE_connector-auth-operator");

/// A server that should never be reached: it records every request it gets and answers like a
/// cooperative token endpoint, so that reaching it would visibly succeed.
#[derive(Clone, Default)]
struct Attacker {
    seen: Arc<Mutex<Vec<String>>>,
    url: String,
}

impl Attacker {
    async fn start() -> Self {
        let seen: Arc<Mutex<Vec<String>>> = Arc::default();
        let log = seen.clone();
        let app = Router::new().fallback(move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
            let log = log.clone();
            async move {
                let auth = headers
                    .get(header::AUTHORIZATION)
                    .map(|v| v.to_str().unwrap_or("?").to_string());
                log.lock().unwrap().push(format!(
                    "{method} {uri} auth={auth:?} body={}",
                    String::from_utf8_lossy(&body)
                ));
                axum::Json(
                    json!({"access_token": "attacker-token", "refresh_token": "attacker-rt", "expires_in": 3600}),
                )
                .into_response()
            }
        });
        let url = serve(app).await;
        Attacker { seen, url }
    }

    fn requests(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

fn write(dir: &std::path::Path, file: &str, yaml: &str) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join(file), yaml).unwrap();
}

/// The Google emulator's consent flow with every URL built from the credential `base_url`: a
/// callback value of that name, were it taken, would move the code exchange.
fn google_manifest(base: &str) -> String {
    format!(
        r#"
apiVersion: v1
kind: Secret
metadata: {{name: google-credentials}}
stringData: {{CLIENT_ID: g-client, CLIENT_SECRET: g-secret, base_url: "{base}"}}
---
apiVersion: connectorauth.dev/v1alpha1
kind: ConnectorAuth
metadata: {{name: google}}
spec:
  credentialsRef: {{name: google-credentials}}
  oauth2:
    grantType: authorizationCode
    tokenUrl: "{{{{ base_url }}}}/token"
    clientId: "{{{{ CLIENT_ID }}}}"
    clientSecret: "{{{{ CLIENT_SECRET }}}}"
    clientAuth: client_secret_post
    authorizationUrl: "{{{{ base_url }}}}/o/oauth2/v2/auth?client_id={{{{ CLIENT_ID }}}}&redirect_uri={{{{ redirect_url | urlencode }}}}&response_type=code"
"#
    )
}

/// The provider's consent page, as a browser follows it: the callback URL it redirects to.
async fn consent_redirect(url: &str) -> String {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let resp = http.get(url).send().await.unwrap();
    assert_eq!(resp.status(), 302, "{url}");
    resp.headers()["location"].to_str().unwrap().to_string()
}

/// The callback URL with parameters an attacker adds: every credential and parameter name the
/// exchange reads, pointed at the attacker.
fn tampered(callback: &str, attacker: &str) -> String {
    let mut url = url::Url::parse(callback).unwrap();
    url.query_pairs_mut()
        .append_pair("base_url", attacker)
        .append_pair("CLIENT_SECRET", "stolen")
        .append_pair("CLIENT_ID", "evil")
        .append_pair("redirect_url", attacker)
        .append_pair("access_token", "forged")
        .append_pair("shop", "attacker.example/x?");
    url.to_string()
}

// ------------------------------------------------- 1. callback values never shadow credentials

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tampered_consent_callback_cannot_move_the_code_exchange_in_local_mode() {
    let (base, book) = google().await;
    let attacker = Attacker::start().await;
    let tmp = tempfile::tempdir().unwrap();
    write(tmp.path(), "google.yaml", &google_manifest(&base));
    let out = tmp.path().join("out");
    let mut runner = LocalRunner::new(engine(), tmp.path().to_path_buf(), out.clone());
    runner.enable_consent("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let url = runner.pass().await.unwrap()[0].authorization_url.clone().unwrap();
    let callback = tampered(&consent_redirect(&url).await, &attacker.url);
    let resp = reqwest::get(&callback).await.unwrap();
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    assert!(attacker.requests().is_empty(), "{:?}", attacker.requests());
    assert_eq!(book.requests(), 1, "the exchange went to the provider");
    let token = std::fs::read_to_string(out.join("default/google-token/access_token")).unwrap();
    assert!(
        token.starts_with("ya29-"),
        "the provider's token, not the attacker's: {token}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tampered_consent_callback_cannot_move_the_code_exchange_in_the_controller() {
    let env: Env = google_env_with_credentials(
        3600,
        |base| vec![("base_url".into(), base.into())],
        |_| {
            json!({"credentialsRef": {"name": "google-credentials"}, "oauth2": {
                "grantType": "authorizationCode", "tokenUrl": "{{ base_url }}/token",
                "clientId": "{{ CLIENT_ID }}", "clientSecret": "{{ CLIENT_SECRET }}", "clientAuth": "client_secret_post",
                "authorizationUrl": "{{ base_url }}/o/oauth2/v2/auth?client_id={{ CLIENT_ID }}&redirect_uri={{ redirect_url | urlencode }}&response_type=code",
            }})
        },
    )
    .await;
    let attacker = Attacker::start().await;
    let url = env.authorization_url(None).await;
    let callback = tampered(&env.consent(&url).await, &attacker.url);
    let (status, page) = support::consent::get(&callback).await;
    assert_eq!(status, 200, "{page}");
    env.ready().await;
    assert!(attacker.requests().is_empty(), "{:?}", attacker.requests());
    let secret = env
        .server
        .object("", "secrets", Some(NS), "google-token")
        .expect("output Secret");
    let token = String::from_utf8(
        base64::Engine::decode(
            &base64::engine::general_purpose::STANDARD,
            secret["data"]["access_token"].as_str().unwrap(),
        )
        .unwrap(),
    )
    .unwrap();
    assert!(token.starts_with("ya29-"), "{token}");
    env.stop().await;
}

#[test]
fn with_a_provider_a_callback_is_used_only_signed_and_never_reaches_its_urls() {
    // Shopify's URLs are built from its `shop` parameter: a callback `shop` must not reach them,
    // and Shopify signs its callbacks, so an unsigned one is not used at all.
    let spec = spec(
        "credentialsRef: {name: c}\nprovider: shopify\nproviderParams: {shop: my-shop, scope: read_orders}\noauth2: {}\n",
    );
    let flow = connector_auth_operator::catalog::compile(&engine(), &spec).unwrap();
    let query = [("code", "c-1"), ("shop", "attacker.example/x?"), ("state", "s")];
    let unsigned = [query.as_slice(), &[("hmac", "h")]].concat();
    assert_eq!(
        connector_auth_operator::engine::callback::accept(&flow, unsigned.iter().copied(), Some(b"app-secret")),
        Err(connector_auth_operator::engine::callback::Refused::BadSignature { name: "hmac".into() })
    );
    let sig = connector_auth_operator::engine::callback::sign(b"app-secret", &query);
    let signed = [query.as_slice(), &[("hmac", sig.as_str())]].concat();
    let kept =
        connector_auth_operator::engine::callback::accept(&flow, signed.iter().copied(), Some(b"app-secret")).unwrap();
    assert_eq!(kept.keys().collect::<Vec<_>>(), ["code", "shop"]);
    // Kept for the output (`shop_domain`), but the token URL is the parameter's.
    let exchange = flow.code_exchange.as_ref().unwrap();
    assert_eq!(
        exchange.url.source,
        "https://{{ shop }}.myshopify.com/admin/oauth/access_token"
    );
}

// ------------------------------------------------------------ 2. huge durations never panic

#[tokio::test]
async fn a_lifetime_of_a_trillion_seconds_is_taken_as_ten_years() {
    let app = Router::new().route(
        "/token",
        axum::routing::post(|| async { axum::Json(json!({"access_token": "t", "expires_in": 1e13})) }),
    );
    let base = serve(app).await;
    let (token, out) = issue(
        &format!("credentialsRef: {{name: c}}\noauth2: {{tokenUrl: '{base}/token'}}\n"),
        &[("client_id", "a"), ("client_secret", "b")],
    )
    .await
    .unwrap();
    let years = token.expires_at.unwrap().duration_since(token.issued_at).as_secs() / (365 * 86_400);
    assert_eq!(years, 10, "{token:?}");
    assert!(out["expires_at"].parse::<jiff::Timestamp>().is_ok());
}

#[test]
fn a_refresh_interval_beyond_ten_years_is_refused_by_the_crd_and_the_engine() {
    let err = connector_auth_operator::engine::renewal::parse_duration("spec.renewal.refreshInterval", "999999999999d")
        .unwrap_err();
    assert!(err.to_string().contains("spec.renewal.refreshInterval"), "{err}");
    let err = connector_auth_operator::engine::renewal::parse_duration("f", "3651d").unwrap_err();
    assert!(err.to_string().contains("longer than 3650d"), "{err}");
    assert!(connector_auth_operator::engine::renewal::parse_duration("f", "3650d").is_ok());
    let ca: connector_auth_operator::api::ConnectorAuth = serde_json::from_value(json!({
        "apiVersion": "connectorauth.dev/v1alpha1", "kind": "ConnectorAuth",
        "metadata": {"name": "x", "namespace": "default"},
        "spec": {"credentialsRef": {"name": "c"}, "apiKey": {}, "renewal": {"refreshInterval": "999999999999d"}},
    }))
    .unwrap();
    let err = ca.validate_cel().unwrap_err().to_string();
    assert!(err.contains("at most 3650d"), "{err}");
}

#[test]
fn local_mode_with_huge_durations_reports_instead_of_exiting() {
    let (base_tx, base_rx) = std::sync::mpsc::channel();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.spawn(async move {
        let app = Router::new().route(
            "/token",
            axum::routing::post(|| async { axum::Json(json!({"access_token": "t", "expires_in": 1e15})) }),
        );
        base_tx.send(serve(app).await).unwrap();
    });
    let base = base_rx.recv().unwrap();
    let out = local_once(&format!("{base}/token"), |c| c);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
}

/// Runs the binary's `local --once` over one client-credentials resource at `token_url`, the
/// command set up further by `with`; a temporary folder holds manifests and output.
fn local_once(
    token_url: &str,
    with: impl FnOnce(&mut std::process::Command) -> &mut std::process::Command,
) -> std::process::Output {
    let tmp = tempfile::tempdir().unwrap();
    write(
        tmp.path(),
        "m.yaml",
        &format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{name: c}}\nstringData: {{client_id: a, client_secret: b}}\n---\n\
             apiVersion: connectorauth.dev/v1alpha1\nkind: ConnectorAuth\nmetadata: {{name: r}}\n\
             spec: {{credentialsRef: {{name: c}}, oauth2: {{tokenUrl: '{token_url}'}}}}\n"
        ),
    );
    let mut cmd = std::process::Command::new(BIN);
    cmd.args(["local", "--once", "--allow-private-token-urls", "-m"])
        .arg(tmp.path().join("m.yaml"))
        .arg("-o")
        .arg(tmp.path().join("out"));
    with(&mut cmd).output().unwrap()
}

// ------------------------------------------------------------- 3. templates have a budget

#[tokio::test]
async fn a_template_that_would_fill_the_memory_is_refused_naming_its_field() {
    let yaml = "credentialsRef: {name: c}\napiKey: {}\noutput:\n  template:\n    big: \"{{ ('x' * 100000000) ~ ('x' * 100000000) ~ ('x' * 100000000) }}\"\n";
    let err = issue(yaml, &[("api_key", "k")]).await.unwrap_err();
    assert_eq!(err.reason().as_str(), "TemplateError");
    assert!(err.to_string().contains("spec.output.template.big"), "{err}");
    let spin = "credentialsRef: {name: c}\napiKey: {}\noutput:\n  template:\n    spin: \"{% for a in range(10000) %}{% for b in range(10000) %}{% endfor %}{% endfor %}\"\n";
    let err = issue(spin, &[("api_key", "k")]).await.unwrap_err();
    assert!(err.to_string().contains("too much work"), "{err}");
}

// ------------------------------------------------------- 4. names never become paths

fn local_manifest(namespace: &str, name: &str, secret_name: Option<&str>) -> String {
    let output = secret_name
        .map(|s| format!("\n  output: {{secretName: '{s}'}}"))
        .unwrap_or_default();
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: c, namespace: '{namespace}'}}\nstringData: {{api_key: k}}\n---\n\
         apiVersion: connectorauth.dev/v1alpha1\nkind: ConnectorAuth\nmetadata: {{name: '{name}', namespace: '{namespace}'}}\n\
         spec:\n  credentialsRef: {{name: c}}\n  apiKey: {{}}{output}\n"
    )
}

#[tokio::test]
async fn names_that_would_leave_the_output_folder_are_refused_and_nothing_is_written() {
    for (ns, name, secret, says) in [
        ("../..", "x", None, "metadata.namespace"),
        ("/tmp", "x", None, "metadata.namespace"),
        ("a/b", "x", None, "metadata.namespace"),
        ("default", "../../x", None, "metadata.name"),
        ("default", "x", Some("../../etc"), "secretName"),
        ("default", "x", Some("/abs"), "secretName"),
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let m = tmp.path().join("m");
        write(&m, "m.yaml", &local_manifest(ns, name, secret));
        let out = tmp.path().join("sub/out");
        let mut runner = LocalRunner::new(engine(), m, out.clone());
        let err = runner.pass().await.unwrap_err().to_string();
        assert!(err.contains(says), "{ns} {name} {secret:?}: {err}");
        let written: Vec<_> = walk(tmp.path())
            .into_iter()
            .filter(|p| !p.ends_with("m.yaml"))
            .collect();
        assert!(written.is_empty(), "{written:?}");
    }
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if e.file_type().unwrap().is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[tokio::test]
async fn a_planted_symlink_in_the_state_or_output_folder_is_not_followed() {
    let tmp = tempfile::tempdir().unwrap();
    let m = tmp.path().join("m");
    write(&m, "m.yaml", &local_manifest("default", "crm", None));
    let out = tmp.path().join("out");
    let elsewhere = tmp.path().join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    let victim = elsewhere.join("victim");
    std::fs::write(&victim, "do not touch").unwrap();
    // The state file's temporary name, planted as a link to the victim.
    std::fs::create_dir_all(out.join(".state/default")).unwrap();
    std::os::unix::fs::symlink(&victim, out.join(".state/default/.crm.json.tmp")).unwrap();
    let mut runner = LocalRunner::new(engine(), m.clone(), out.clone());
    let reports = runner.pass().await.unwrap();
    assert!(reports[0].ok(), "{}", reports[0].line());
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "do not touch");
    assert!(out.join(".state/default/crm.json").is_file());

    // A namespace folder replaced by a link: refused, nothing written through it.
    let tmp2 = tempfile::tempdir().unwrap();
    let out2 = tmp2.path().join("out");
    std::fs::create_dir_all(out2.join(".state")).unwrap();
    std::os::unix::fs::symlink(&elsewhere, out2.join(".state/default")).unwrap();
    let mut runner = LocalRunner::new(engine(), m, out2);
    let reports = runner.pass().await.unwrap();
    assert!(!reports[0].ok());
    assert!(reports[0].line().contains("symbolic link"), "{}", reports[0].line());
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&elsewhere).unwrap().permissions());
    assert_ne!(mode & 0o777, 0o700, "the link's target was not chmodded");
    assert_eq!(
        std::fs::read_dir(&elsewhere).unwrap().count(),
        1,
        "only the victim is there"
    );
}

#[tokio::test]
async fn versions_left_by_a_killed_run_are_cleaned_up() {
    let tmp = tempfile::tempdir().unwrap();
    let m = tmp.path().join("m");
    write(&m, "m.yaml", &local_manifest("default", "crm", None));
    let out = tmp.path().join("out");
    let dir = out.join("default/crm-token");
    std::fs::create_dir_all(dir.join("..2026_01_01_00_00_00.123456")).unwrap();
    std::fs::write(dir.join("..2026_01_01_00_00_00.123456/access_token"), "half").unwrap();
    let mut runner = LocalRunner::new(engine(), m, out);
    assert!(runner.pass().await.unwrap()[0].ok());
    let versions: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| n.starts_with("..2"))
        .collect();
    assert_eq!(versions.len(), 1, "only the current version: {versions:?}");
    assert!(!versions.contains(&"..2026_01_01_00_00_00.123456".to_string()));
}

// ------------------------------------------------------------- 5. no control characters out

#[tokio::test]
async fn a_token_with_line_breaks_is_refused_and_never_published() {
    let app = Router::new().route(
        "/token",
        axum::routing::post(|| async {
            axum::Json(json!({"access_token": "abc\r\nX-Injected: 1\r\n\r\nGET /admin HTTP/1.1", "expires_in": 3600}))
        }),
    );
    let base = serve(app).await;
    let err = issue(
        &format!("credentialsRef: {{name: c}}\noauth2: {{tokenUrl: '{base}/token'}}\n"),
        &[("client_id", "a"), ("client_secret", "b")],
    )
    .await
    .unwrap_err();
    assert_eq!(err.reason().as_str(), "InvalidValue");
    assert!(err.to_string().contains("control characters"), "{err}");
    assert!(!err.to_string().contains("X-Injected"), "{err}");
    // A credential with a line break, rendered into a header value.
    let err = issue(
        "credentialsRef: {name: c}\napiKey: {}\noutput: {header: {name: X-Api-Key, value: '{{ api_key }}'}}\n",
        &[("api_key", "k\nX-Evil: 1")],
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("header `X-Api-Key`"), "{err}");
}

#[test]
fn header_names_that_are_not_http_tokens_are_refused_at_apply_time_and_by_the_engine() {
    for (name, extra) in [("X-A\r\nB", "{}"), ("Authorization", "{'X B': v}"), ("Bad:Name", "{}")] {
        let yaml = format!(
            "credentialsRef: {{name: c}}\napiKey: {{}}\noutput: {{header: {{name: '{name}', extra: {extra}}}}}\n"
        );
        let s = spec(&yaml);
        let err = connector_auth_operator::catalog::compile(&engine(), &s).unwrap_err();
        assert_eq!(err.reason().as_str(), "InvalidSpec", "{name}");
        assert!(err.to_string().contains("not an HTTP header name"), "{err}");
        let ca: connector_auth_operator::api::ConnectorAuth = serde_json::from_value(json!({
            "apiVersion": "connectorauth.dev/v1alpha1", "kind": "ConnectorAuth",
            "metadata": {"name": "x", "namespace": "default"}, "spec": serde_json::to_value(&s).unwrap(),
        }))
        .unwrap();
        assert!(ca.validate_cel().unwrap_err().to_string().contains("HTTP header name"));
    }
}

// ----------------------------------------------- 6. redirects hand nothing to another host

#[tokio::test]
async fn a_redirect_to_another_host_carries_no_secret() {
    let attacker = Attacker::start().await;
    let to = format!("{}/collect", attacker.url);
    // A 307 that would re-send the form body with the client secret: not followed at all.
    let redirect = |status: StatusCode| {
        let to = to.clone();
        axum::routing::post(move || {
            let to = to.clone();
            async move { (status, [(header::LOCATION, to)]) }
        })
    };
    let app = Router::new()
        .route("/token307", redirect(StatusCode::TEMPORARY_REDIRECT))
        .route("/token302", redirect(StatusCode::FOUND));
    let base = serve(app).await;
    let credentials = [("client_id", "id"), ("client_secret", "s3cret"), ("key", "sub-key")];
    let spec_for = |path: &str| {
        format!(
            "credentialsRef: {{name: c}}\nallowRedirects: true\noauth2:\n  tokenUrl: '{base}/{path}'\n  clientAuth: client_secret_post\n  headers: {{Ocp-Apim-Subscription-Key: '{{{{ key }}}}'}}\n"
        )
    };
    // `allowRedirects` reaches the engine with the resource's HTTP options, as `gather` makes them.
    let issue = |yaml: String| async move {
        let s = spec(&yaml);
        let inputs = connector_auth_operator::engine::Inputs {
            credentials: creds(&credentials),
            http: connector_auth_operator::engine::tls::resolve(
                &s,
                &connector_auth_operator::engine::tls::Fetched::new(),
            ),
            ..Default::default()
        };
        let flow = connector_auth_operator::catalog::compile(&engine(), &s).unwrap();
        engine()
            .obtain(&flow, &inputs, None, "fp", jiff::Timestamp::now())
            .await
    };
    let err = issue(spec_for("token307")).await.unwrap_err();
    assert_eq!(err.reason().as_str(), "RedirectNotFollowed");
    assert!(
        err.to_string().contains("would send the request body there again"),
        "{err}"
    );
    assert!(attacker.requests().is_empty(), "{:?}", attacker.requests());
    // A 302 becomes a GET with nothing of the original request: no header, no body, no Basic.
    let _ = issue(spec_for("token302")).await;
    let seen = attacker.requests();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert!(
        !seen[0].contains("s3cret") && !seen[0].contains("sub-key") && seen[0].starts_with("GET "),
        "{seen:?}"
    );
}

// ---------------------------------------- 7. a refresh token goes only where it came from

#[tokio::test]
async fn a_stored_refresh_token_is_not_sent_to_an_edited_token_url() {
    let (base, _book) = rotating(3600).await;
    let attacker = Attacker::start().await;
    let grant = |url: &str| {
        format!("credentialsRef: {{name: c}}\noauth2: {{tokenUrl: '{url}/oauth/token', grantType: refreshToken}}\n")
    };
    let credentials = [
        ("client_id", "rot-client"),
        ("client_secret", "rot-secret"),
        ("refresh_token", "rt-seed"),
    ];
    let (first, _) = issue(&grant(&base), &credentials).await.unwrap();
    assert!(
        first.refresh_origin.as_deref().is_some_and(|o| base.starts_with(o)),
        "{:?}",
        first.refresh_origin
    );
    let moved = spec(&grant(&attacker.url));
    let err = issue_with(&engine(), &moved, &creds(&credentials), Some(&first))
        .await
        .unwrap_err();
    assert_eq!(err.reason().as_str(), "RefreshTokenEndpointChanged");
    assert!(err.to_string().contains("key `refresh_token`"), "{err}");
    assert!(attacker.requests().is_empty(), "{:?}", attacker.requests());
    // Back to the endpoint it came from, the same token works again.
    let (again, _) = issue_with(&engine(), &spec(&grant(&base)), &creds(&credentials), Some(&first))
        .await
        .unwrap();
    assert_ne!(
        again.refresh_token, first.refresh_token,
        "it rotated at the real provider"
    );
}

#[tokio::test]
async fn two_manifests_with_one_name_or_one_output_secret_are_refused() {
    for (second, says) in [
        (local_manifest("default", "crm", None).split("---").nth(1).unwrap().to_string(), "also defined in"),
        (
            "apiVersion: connectorauth.dev/v1alpha1\nkind: ConnectorAuth\nmetadata: {name: other}\nspec:\n  credentialsRef: {name: c}\n  apiKey: {}\n  output: {secretName: crm-token}\n".to_string(),
            "writes Secret default/crm-token, which the ConnectorAuth in",
        ),
    ] {
        let tmp = tempfile::tempdir().unwrap();
        write(tmp.path(), "a.yaml", &local_manifest("default", "crm", None));
        write(tmp.path(), "b.yaml", &second);
        let mut runner = LocalRunner::new(engine(), tmp.path().to_path_buf(), tmp.path().join("out"));
        let err = runner.pass().await.unwrap_err().to_string();
        assert!(err.contains(says), "{err}");
    }
}

// ----------------------------------------------- 8. the environment's proxy is not used

#[test]
fn https_proxy_in_the_environment_is_ignored() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (attacker, base) = rt.block_on(async {
        let attacker = Attacker::start().await;
        let app = Router::new().route(
            "/token",
            axum::routing::post(|| async { axum::Json(json!({"access_token": "t", "expires_in": 3600})) }),
        );
        (attacker, serve(app).await)
    });
    let out = local_once(&format!("{base}/token"), |c| {
        c.env("HTTP_PROXY", &attacker.url)
            .env("HTTPS_PROXY", &attacker.url)
            .env("ALL_PROXY", &attacker.url)
            .env("http_proxy", &attacker.url)
            .env_remove("NO_PROXY")
            .env_remove("no_proxy")
    });
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(attacker.requests().is_empty(), "{:?}", attacker.requests());
}

#[tokio::test]
async fn through_an_explicit_proxy_unresolvable_names_are_refused() {
    let attacker = Attacker::start().await;
    let engine = Engine::new(HttpSettings {
        proxy: Some(url::Url::parse(&attacker.url).unwrap()),
        ..HttpSettings::default()
    })
    .unwrap();
    let s = spec("credentialsRef: {name: c}\noauth2: {tokenUrl: 'http://metadata.internal.invalid/token'}\n");
    let err = issue_with(&engine, &s, &creds(&[("client_id", "a")]), None)
        .await
        .unwrap_err();
    assert_eq!(err.reason().as_str(), "TokenUrlForbidden");
    assert!(err.to_string().contains("cannot be resolved here"), "{err}");
    assert!(attacker.requests().is_empty());
}

// ------------------------------------------ 9. every metadata address, however written

#[tokio::test]
async fn metadata_addresses_of_every_cloud_are_refused_without_connecting() {
    let engine = Engine::new(HttpSettings::default()).unwrap();
    for host in [
        "[fd00:ec2::254]",
        "100.100.100.200",
        "192.0.0.192",
        "168.63.129.16",
        "[::ffff:169.254.169.254]",
        "[64:ff9b::a9fe:a9fe]",
        "[::a9fe:a9fe]",
    ] {
        let s = spec(&format!(
            "credentialsRef: {{name: c}}\noauth2: {{tokenUrl: 'http://{host}/token'}}\n"
        ));
        let err = issue_with(&engine, &s, &creds(&[("client_id", "a")]), None)
            .await
            .unwrap_err();
        assert_eq!(err.reason().as_str(), "TokenUrlForbidden", "{host}: {err}");
    }
}

// ----------------------------------------------------------- 10. no read-SSRF by default

#[tokio::test]
async fn internal_services_are_unreachable_by_default_and_whole_answers_are_never_published() {
    let internal = Router::new().route(
        "/internal",
        axum::routing::get(|| async { axum::Json(json!({"db_password": "hunter2", "access_token": {"nested": 1}})) }),
    );
    let base = serve(internal).await;
    let yaml = format!(
        "credentialsRef: {{name: c}}\nrefreshableToken:\n  authorization: {{url: '{base}/internal', method: GET}}\n  accessToken: {{jsonPath: '$'}}\n"
    );
    // The default policy: loopback and private addresses are refused.
    let strict = Engine::new(HttpSettings {
        policy: UrlPolicy::default(),
        ..HttpSettings::default()
    })
    .unwrap();
    let err = issue_with(&strict, &spec(&yaml), &creds(&[]), None).await.unwrap_err();
    assert_eq!(err.reason().as_str(), "TokenUrlForbidden", "{err}");
    // Allowed on purpose, `$` still publishes nothing: only single values are taken.
    let err = issue(&yaml, &[]).await.unwrap_err();
    assert_eq!(err.reason().as_str(), "InvalidValue", "{err}");
    assert!(!err.to_string().contains("hunter2"), "{err}");
    let nested = yaml.replace("jsonPath: '$'", "jsonPath: access_token");
    let err = issue(&nested, &[]).await.unwrap_err();
    assert!(err.to_string().contains("JSON object"), "{err}");
}

// ------------------------------------------------------------------------- 11. the rest

#[tokio::test]
async fn a_yaml_error_does_not_show_the_values_around_it() {
    let tmp = tempfile::tempdir().unwrap();
    write(
        tmp.path(),
        "m.yaml",
        "apiVersion: v1\nkind: Secret\nmetadata: {name: c}\nstringData:\n  password: s3cr3t-value\n  other: [unclosed\n",
    );
    let mut runner = LocalRunner::new(engine(), tmp.path().to_path_buf(), tmp.path().join("out"));
    let err = format!("{:#}", runner.pass().await.unwrap_err());
    assert!(err.contains("not valid YAML"), "{err}");
    assert!(!err.contains("s3cr3t-value"), "{err}");
}

#[tokio::test]
async fn a_file_of_thousands_of_documents_is_read() {
    let tmp = tempfile::tempdir().unwrap();
    let mut yaml = String::new();
    for i in 0..1500 {
        yaml.push_str(&format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: cm-{i}}}\ndata: {{k: v}}\n---\n"
        ));
    }
    yaml.push_str(&local_manifest("default", "crm", None));
    write(tmp.path(), "m.yaml", &yaml);
    let mut runner = LocalRunner::new(engine(), tmp.path().to_path_buf(), tmp.path().join("out"));
    let reports = runner.pass().await.unwrap();
    assert_eq!(reports.len(), 1);
    assert!(reports[0].ok(), "{}", reports[0].line());
}

#[tokio::test]
async fn local_mode_refuses_a_consent_callback_on_a_non_loopback_address() {
    let tmp = tempfile::tempdir().unwrap();
    let mut runner = LocalRunner::new(engine(), tmp.path().to_path_buf(), tmp.path().join("out"));
    let err = runner
        .enable_consent("0.0.0.0:0".parse().unwrap())
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("loopback address only"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_or_control_character_callback_is_refused() {
    let (base, book) = google().await;
    let tmp = tempfile::tempdir().unwrap();
    write(tmp.path(), "google.yaml", &google_manifest(&base));
    let mut runner = LocalRunner::new(engine(), tmp.path().to_path_buf(), tmp.path().join("out"));
    runner.enable_consent("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let url = runner.pass().await.unwrap()[0].authorization_url.clone().unwrap();
    let callback = consent_redirect(&url).await;
    let long = format!("{callback}&pad={}", "x".repeat(20_000));
    assert_eq!(reqwest::get(&long).await.unwrap().status(), 414);
    let mut u = url::Url::parse(&callback).unwrap();
    let pairs: Vec<(String, String)> = u.query_pairs().into_owned().collect();
    u.query_pairs_mut().clear();
    for (k, v) in &pairs {
        let v = if k == "code" { format!("{v}\r\nX: 1") } else { v.clone() };
        u.query_pairs_mut().append_pair(k, &v);
    }
    let resp = reqwest::get(u.as_str()).await.unwrap();
    assert_eq!(resp.status(), 400);
    assert!(resp.text().await.unwrap().contains("control characters"));
    assert_eq!(book.requests(), 0, "nothing was exchanged");
}

// ------------------------------------------------------------ the same probes, controller

/// A credentials Secret in `ns` for the controller probes.
async fn credentials(client: &kube::Client, ns: &str, name: &str, data: &[(&str, &str)]) {
    let s: k8s_openapi::api::core::v1::Secret = serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": ns},
        "data": data.iter().map(|(k, v)| (k.to_string(), b64(v))).collect::<std::collections::BTreeMap<_, _>>(),
    }))
    .unwrap();
    kube::Api::<k8s_openapi::api::core::v1::Secret>::namespaced(client.clone(), ns)
        .create(&kube::api::PostParams::default(), &s)
        .await
        .unwrap();
}

/// The Ready condition's `(status, reason)` once it has one.
async fn ready_reason(server: &fake_apiserver::FakeApiServer, ns: &str, name: &str) -> Option<(String, String)> {
    let ca = server.object("connectorauth.dev", "connectorauths", Some(ns), name)?;
    let c = ca["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == "Ready")?
        .clone();
    Some((c["status"].as_str()?.to_string(), c["reason"].as_str()?.to_string()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_the_controller_a_huge_lifetime_is_served_beside_other_resources() {
    let app = Router::new().route(
        "/token",
        axum::routing::post(|| async { axum::Json(json!({"access_token": "forever", "expires_in": 1e15})) }),
    );
    let huge = serve(app).await;
    let (base, _book) = rotating(3600).await;
    let server = api_server().await;
    let client = server.client();
    credentials(
        &client,
        "ns",
        "c",
        &[
            ("client_id", "rot-client"),
            ("client_secret", "rot-secret"),
            ("refresh_token", "rt-seed"),
        ],
    )
    .await;
    create_connector(
        &client,
        "ns",
        "huge",
        json!({"credentialsRef": {"name": "c"}, "oauth2": {"tokenUrl": format!("{huge}/token")}}),
    )
    .await;
    create_connector(&client, "ns", "normal", json!({"credentialsRef": {"name": "c"}, "oauth2": {"tokenUrl": format!("{base}/oauth/token"), "grantType": "refreshToken"}})).await;
    let op = support::operator::Operator::start(support::operator::Source::Url(server.url()), "op-1", false);
    for name in ["huge", "normal"] {
        let (status, reason) = eventually(15, name, || async {
            ready_reason(&server, "ns", name).await.filter(|r| r.0 == "True")
        })
        .await;
        assert_eq!((status.as_str(), reason.as_str()), ("True", "TokenValid"), "{name}");
    }
    op.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_the_controller_an_edited_token_url_never_receives_the_refresh_token() {
    let (base, _book) = rotating(3600).await;
    let attacker = Attacker::start().await;
    let server = api_server().await;
    let client = server.client();
    credentials(
        &client,
        "ns",
        "c",
        &[
            ("client_id", "rot-client"),
            ("client_secret", "rot-secret"),
            ("refresh_token", "rt-seed"),
        ],
    )
    .await;
    create_connector(&client, "ns", "crm", json!({"credentialsRef": {"name": "c"}, "oauth2": {"tokenUrl": format!("{base}/oauth/token"), "grantType": "refreshToken"}})).await;
    let op = support::operator::Operator::start(support::operator::Source::Url(server.url()), "op-1", false);
    eventually(15, "Ready", || async {
        ready_reason(&server, "ns", "crm").await.filter(|r| r.0 == "True")
    })
    .await;
    let api = kube::Api::<connector_auth_operator::api::ConnectorAuth>::namespaced(client.clone(), "ns");
    let patch = json!({"spec": {"oauth2": {"tokenUrl": format!("{}/oauth/token", attacker.url)}}});
    api.patch(
        "crm",
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(&patch),
    )
    .await
    .unwrap();
    // The token issued before stays published until it expires; a condition says why it is
    // not renewed.
    let status = eventually(15, "RefreshTokenEndpointChanged in a condition", || async {
        let ca = server.object("connectorauth.dev", "connectorauths", Some("ns"), "crm")?;
        let status = ca["status"].to_string();
        status.contains("RefreshTokenEndpointChanged").then_some(status)
    })
    .await;
    assert!(status.contains("is not sent to"), "{status}");
    assert!(attacker.requests().is_empty(), "{:?}", attacker.requests());
    op.stop().await;
}
