//! The scheme engine against loopback emulators of each seed provider: the token is obtained
//! as the provider expects, and the generated headers are accepted by its protected endpoint.

mod support;

use std::time::Duration;

use connector_auth_operator::engine::{Engine, EngineError, HttpSettings};
use support::*;

#[tokio::test]
async fn snov_io_client_credentials_by_get_are_accepted_by_the_api() {
    let (base, book) = snov().await;
    let yaml = format!(
        r#"
credentialsRef: {{name: snov}}
refreshableToken:
  authorization:
    method: GET
    url: "{base}/v1/oauth/access_token?client_id={{{{ username | urlencode }}}}&client_secret={{{{ password | urlencode }}}}&grant_type=client_credentials"
    headers: {{Content-Type: application/x-www-form-urlencoded}}
  accessToken: {{jsonPath: access_token}}
  expiresIn: {{jsonPath: expires_in}}
"#
    );
    let (token, out) = issue(&yaml, &[("username", "snov-id"), ("password", "snov&secret")])
        .await
        .unwrap();
    assert_eq!(book.requests(), 1);
    assert_eq!(out["header_name"], "Authorization");
    assert_eq!(out["header_value"], format!("Bearer {}", token.access_token.expose()));
    let lifetime = token.expires_at.unwrap().duration_since(token.issued_at).as_secs();
    assert_eq!(lifetime, 3600);
    let renew = token.renew_at.unwrap().duration_since(token.issued_at).as_secs();
    assert!(
        (2160..=2400).contains(&renew),
        "renews at 2/3 minus at most 10% jitter: {renew}"
    );
    assert_eq!(call_api(&format!("{base}/v1/get-balance"), &out).await, 200);
}

#[tokio::test]
async fn docuware_cookie_login_with_user_agent_is_accepted_by_the_api() {
    let (base, book) = docuware().await;
    let yaml = format!(
        r#"
credentialsRef: {{name: dw}}
refreshableToken:
  authorization:
    url: "{base}/docuware/platform/Account/Logon"
    headers: {{Content-Type: application/x-www-form-urlencoded, User-Agent: curl/7.84.0}}
    form: {{Password: "{{{{ password }}}}", UserName: "{{{{ username }}}}", HostID: connector}}
  accessToken: {{cookie: .DWPLATFORMAUTH}}
renewal: {{refreshInterval: 1h}}
output:
  header:
    name: Cookie
    value: ".DWPLATFORMAUTH={{{{ access_token }}}}"
    extra: {{User-Agent: curl/7.84.0, Accept: application/json}}
"#
    );
    let (token, out) = issue(&yaml, &[("username", "dw-user"), ("password", "p@ss&word=1")])
        .await
        .unwrap();
    assert_eq!(book.requests(), 1);
    assert!(
        token.access_token.expose().starts_with("dwauth-"),
        "the .DWPLATFORMAUTH cookie, not another one"
    );
    assert_eq!(token.expires_at, None);
    let renew_min = token.renew_at.unwrap().duration_since(token.issued_at).as_secs() / 60;
    assert!(
        (54..=60).contains(&renew_min),
        "1h interval, at most 10% earlier: {renew_min}"
    );
    let headers: serde_json::Value = serde_json::from_str(&out["headers.json"]).unwrap();
    assert_eq!(headers["User-Agent"], DOCUWARE_UA);
    assert_eq!(
        call_api(&format!("{base}/docuware/platform/Organizations"), &out).await,
        200
    );
}

#[tokio::test]
async fn docuware_without_the_user_agent_header_is_refused_by_the_provider() {
    let (base, _) = docuware().await;
    let yaml = format!(
        r#"
credentialsRef: {{name: dw}}
refreshableToken:
  authorization:
    url: "{base}/docuware/platform/Account/Logon"
    form: {{Password: "{{{{ password }}}}", UserName: "{{{{ username }}}}"}}
  accessToken: {{cookie: .DWPLATFORMAUTH}}
"#
    );
    let err = issue(&yaml, &[("username", "dw-user"), ("password", "p@ss&word=1")])
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "login request to {} was rejected: HTTP 400",
            base.trim_start_matches("http://")
        )
    );
}

fn google_spec(base: &str) -> String {
    format!(
        r#"
credentialsRef: {{name: google}}
oauth2:
  tokenUrl: "{base}/token"
  grantType: authorizationCode
  clientId: "{{{{ CLIENT_ID }}}}"
  clientSecret: "{{{{ CLIENT_SECRET }}}}"
  clientAuth: client_secret_post
  authorizationUrl: "https://accounts.google.com/o/oauth2/v2/auth?client_id={{{{ CLIENT_ID }}}}&redirect_uri={{{{ redirect_url | urlencode }}}}&response_type=code&access_type=offline&prompt=consent&state={{{{ state }}}}"
"#
    )
}

#[tokio::test]
async fn google_authorization_code_is_exchanged_and_refresh_does_not_rotate() {
    let (base, book) = google().await;
    let engine = engine();
    let spec = spec(&google_spec(&base));
    let flow = connector_auth_operator::catalog::compile(&engine, &spec).unwrap();
    let credentials = creds(&[("CLIENT_ID", "g-client"), ("CLIENT_SECRET", "g-secret")]);
    let mut inputs = connector_auth_operator::engine::Inputs {
        credentials: credentials.clone(),
        redirect_url: Some(GOOGLE_REDIRECT.into()),
        ..Default::default()
    };
    let fp = connector_auth_operator::catalog::fingerprint(&spec, &credentials).unwrap();
    let now = jiff::Timestamp::now();

    // Without consent there is nothing to exchange: the consent URL is what the user needs.
    let err = engine.obtain(&flow, &inputs, None, &fp, now).await.unwrap_err();
    assert!(matches!(err, EngineError::AuthorizationRequired));
    let url = engine
        .authorization_url(&flow, &inputs, "st4te", None, jiff::Timestamp::now())
        .unwrap()
        .unwrap();
    assert!(
        url.contains("redirect_uri=https%3A//operator.example.com/oauth2/callback"),
        "{url}"
    );
    assert!(url.ends_with("&state=st4te"));

    inputs.callback.insert("code".into(), GOOGLE_CODE.into());
    let first = engine.obtain(&flow, &inputs, None, &fp, now).await.unwrap();
    assert_eq!(first.refresh_token.as_ref().unwrap().expose(), "1//g-refresh");
    let out = engine.render_output(&flow, &inputs, &first).unwrap();
    assert_eq!(call_api(&format!("{base}/admin/directory/v1/users"), &out).await, 200);

    // Refresh: Google returns no new refresh token; the old one must be kept.
    inputs.callback.clear();
    let second = engine.obtain(&flow, &inputs, Some(&first), &fp, now).await.unwrap();
    assert_ne!(second.access_token, first.access_token);
    assert_eq!(second.refresh_token.as_ref().unwrap().expose(), "1//g-refresh");
    assert_eq!(book.requests(), 2);
}

fn rotating_spec(base: &str) -> String {
    format!(
        r#"
credentialsRef: {{name: rot}}
oauth2:
  tokenUrl: "{base}/oauth/token"
  grantType: refreshToken
"#
    )
}

#[tokio::test]
async fn rotating_refresh_tokens_are_always_replaced_and_never_reused() {
    let (base, book) = rotating(3600).await;
    let engine = engine();
    let spec = spec(&rotating_spec(&base));
    let credentials = creds(&[
        ("client_id", "rot-client"),
        ("client_secret", "rot-secret"),
        ("refresh_token", "rt-seed"),
    ]);

    let (first, out) = issue_with(&engine, &spec, &credentials, None).await.unwrap();
    let rt1 = first.refresh_token.clone().unwrap();
    assert_ne!(rt1.expose(), "rt-seed");
    assert!(
        first.seed_refresh_token.is_some(),
        "the seed is remembered (as a digest) so it is not used twice"
    );
    assert_eq!(call_api(&format!("{base}/api/me"), &out).await, 200);

    // The credentials still hold the spent seed; the stored rotated token must be used.
    let (second, _) = issue_with(&engine, &spec, &credentials, Some(&first)).await.unwrap();
    let (third, out) = issue_with(&engine, &spec, &credentials, Some(&second)).await.unwrap();
    assert_ne!(second.refresh_token, first.refresh_token);
    assert_ne!(third.refresh_token, second.refresh_token);
    assert_eq!(book.requests(), 3);
    assert!(!book.family_revoked(), "no refresh token was ever sent twice");
    assert_eq!(call_api(&format!("{base}/api/me"), &out).await, 200);
    // The provider emulator really does punish reuse.
    let err = issue_with(&engine, &spec, &credentials, Some(&first))
        .await
        .unwrap_err();
    assert!(err.is_invalid_grant(), "{err}");
    assert!(book.family_revoked());
}

#[tokio::test]
async fn a_new_seed_refresh_token_in_the_credentials_replaces_the_stored_one() {
    let (base, book) = rotating(3600).await;
    let engine = engine();
    let spec = spec(&rotating_spec(&base));
    let credentials = creds(&[
        ("client_id", "rot-client"),
        ("client_secret", "rot-secret"),
        ("refresh_token", "rt-seed"),
    ]);
    let (first, _) = issue_with(&engine, &spec, &credentials, None).await.unwrap();
    book.refresh.lock().unwrap().insert("rt-reonboarded".into(), (7, true));
    let new_creds = creds(&[
        ("client_id", "rot-client"),
        ("client_secret", "rot-secret"),
        ("refresh_token", "rt-reonboarded"),
    ]);
    let (second, _) = issue_with(&engine, &spec, &new_creds, Some(&first)).await.unwrap();
    assert_ne!(second.seed_refresh_token, first.seed_refresh_token);
    assert!(!book.family_revoked());
    assert_eq!(
        book.refresh.lock().unwrap()["rt-reonboarded"],
        (7, false),
        "the new seed was used"
    );
}

#[tokio::test]
async fn tripletex_session_token_is_created_for_tomorrow_and_used_as_basic_auth() {
    let (base, book) = tripletex().await;
    let yaml = format!("credentialsRef: {{name: tt}}\ntripletex: {{baseUrl: \"{base}\"}}\n");
    let (token, out) = issue(
        &yaml,
        &[
            ("consumer_token", "consumer+token/1"),
            ("employee_token", "employee-token"),
        ],
    )
    .await
    .unwrap();
    assert_eq!(book.requests(), 1);
    let tomorrow = jiff::Zoned::now()
        .with_time_zone(jiff::tz::TimeZone::UTC)
        .date()
        .tomorrow()
        .unwrap();
    assert_eq!(out["expires_at"], format!("{tomorrow}T00:00:00Z"));
    assert!(token.renew_at.unwrap() < token.expires_at.unwrap());
    assert!(out["header_value"].starts_with("Basic "));
    assert_eq!(call_api(&format!("{base}/v2/employee"), &out).await, 200);
}

#[tokio::test]
async fn webcrm_jwt_login_takes_expiry_from_the_jwt_and_refreshes() {
    let (base, book) = webcrm().await;
    let yaml = format!(
        r#"
credentialsRef: {{name: webcrm}}
jwt:
  login:
    url: "{base}/Auth/ApiLogin"
    headers: {{Content-Type: application/json}}
    body: '{{"authCode": "{{{{ app_token }}}}"}}'
  refresh:
    url: "{base}/Auth/ApiRefresh"
    headers: {{Content-Type: application/json}}
    body: '{{"refreshToken": "{{{{ refresh_token }}}}"}}'
"#
    );
    let engine = engine();
    let spec = spec(&yaml);
    let credentials = creds(&[("app_token", "app-token-123")]);
    let (first, out) = issue_with(&engine, &spec, &credentials, None).await.unwrap();
    let lifetime = first
        .expires_at
        .expect("expiry from the JWT exp")
        .duration_since(first.issued_at)
        .as_secs();
    assert!((3595..=3600).contains(&lifetime), "{lifetime}");
    assert_eq!(call_api(&format!("{base}/Persons"), &out).await, 200);
    let (second, out) = issue_with(&engine, &spec, &credentials, Some(&first)).await.unwrap();
    assert_ne!(
        second.refresh_token, first.refresh_token,
        "the refresh endpoint was used"
    );
    assert_eq!(book.requests(), 2);
    assert_eq!(call_api(&format!("{base}/Persons"), &out).await, 200);
}

#[tokio::test]
async fn superoffice_ticket_comes_from_the_id_token_and_is_accepted_with_the_app_token() {
    let (base, _) = superoffice().await;
    let yaml = format!(
        r#"
credentialsRef: {{name: so}}
superOffice:
  tokenUrl: "{base}/login/common/oauth/tokens"
  grantType: refreshToken
"#
    );
    let (token, out) = issue(
        &yaml,
        &[
            ("client_id", "so-client"),
            ("client_secret", "so-app-secret"),
            ("refresh_token", "so-refresh"),
        ],
    )
    .await
    .unwrap();
    assert!(out["so_ticket"].starts_with("7T:"));
    assert_eq!(token.extras["so_ticket"].expose(), out["so_ticket"]);
    assert_eq!(out["header_value"], format!("SOTicket {}", out["so_ticket"]));
    let headers: serde_json::Value = serde_json::from_str(&out["headers.json"]).unwrap();
    assert_eq!(headers["SO-AppToken"], "so-app-secret");
    assert_eq!(
        call_api(&format!("{base}/api/v1/User/currentPrincipal"), &out).await,
        200
    );
}

#[tokio::test]
async fn poweroffice_go_client_credentials_with_subscription_key() {
    let (base, _) = poweroffice().await;
    let yaml = format!(
        r#"
credentialsRef: {{name: po}}
oauth2:
  tokenUrl: "{base}/OAuth/Token"
  clientId: "{{{{ application_key }}}}"
  clientSecret: "{{{{ client_key }}}}"
  headers: {{Ocp-Apim-Subscription-Key: "{{{{ subscription_key }}}}"}}
output:
  header:
    extra: {{Ocp-Apim-Subscription-Key: "{{{{ subscription_key }}}}"}}
"#
    );
    let (_, out) = issue(
        &yaml,
        &[
            ("application_key", "app-key"),
            ("client_key", "client-key"),
            ("subscription_key", "sub-key"),
        ],
    )
    .await
    .unwrap();
    assert_eq!(call_api(&format!("{base}/v2/Customers"), &out).await, 200);
}

#[tokio::test]
async fn woocommerce_and_wix_api_keys_are_rendered_into_accepted_headers() {
    let base = api_keys().await;
    let woo = r#"
credentialsRef: {name: woo}
apiKey: {key: "{{ consumer_key }}:{{ consumer_secret }}"}
output: {header: {value: "Basic {{ token_format }}", encode: true}}
"#;
    let (token, out) = issue(woo, &[("consumer_key", "ck_123"), ("consumer_secret", "cs_456")])
        .await
        .unwrap();
    assert_eq!(token.renew_at, None, "API keys are permanent");
    assert!(!out.contains_key("expires_at"));
    assert_eq!(call_api(&format!("{base}/wp-json/wc/v3/products"), &out).await, 200);

    let wix = r#"
credentialsRef: {name: wix}
apiKey: {}
output: {header: {extra: {wix-site-id: "{{ site_id }}"}}}
"#;
    let (_, out) = issue(wix, &[("api_key", "IST.wix-key"), ("site_id", "site-1")])
        .await
        .unwrap();
    assert_eq!(out["header_value"], "IST.wix-key");
    assert_eq!(call_api(&format!("{base}/stores/v1/products/query"), &out).await, 200);
}

// ------------------------------------------------------------------- bad input

const SECRET: &str = "sup3r-s3cret";

fn faulty_spec(base: &str, path: &str, extra: &str) -> String {
    format!(
        r#"
credentialsRef: {{name: f}}
refreshableToken:
  authorization:
    url: "{base}{path}?key={{{{ password }}}}"
    form: {{password: "{{{{ password }}}}"}}
{extra}
"#
    )
}

async fn fail(base: &str, path: &str, extra: &str) -> EngineError {
    let err = issue(&faulty_spec(base, path, extra), &[("password", SECRET)])
        .await
        .unwrap_err();
    assert!(!err.to_string().contains(SECRET), "secret leaked into: {err}");
    assert!(
        !format!("{err:?}").contains(SECRET),
        "secret leaked into Debug: {err:?}"
    );
    err
}

#[tokio::test]
async fn undefined_variable_is_named_before_any_request() {
    let base = faulty().await;
    let yaml = format!(
        "credentialsRef: {{name: f}}\nrefreshableToken:\n  authorization:\n    url: \"{base}/x?u={{{{ usernme }}}}\"\n"
    );
    let err = issue(&yaml, &[("username", "alice"), ("password", SECRET)])
        .await
        .unwrap_err();
    assert_eq!(err.reason(), "UndefinedVariable");
    assert_eq!(
        err.to_string(),
        "template spec.refreshableToken.authorization.url uses undefined variable `usernme`; available: now, password, username"
    );
}

#[tokio::test]
async fn jsonpath_that_matches_nothing_names_the_path() {
    let base = faulty().await;
    let err = fail(&base, "/ok-no-token", "").await;
    assert_eq!(err.reason(), "ValueNotFound");
    assert_eq!(
        err.to_string(),
        "access token not found in login response: JSONPath `$['access_token']`"
    );
}

#[tokio::test]
async fn non_json_and_html_bodies_are_reported_with_status_and_content_type() {
    let base = faulty().await;
    let host = base.trim_start_matches("http://");
    let err = fail(&base, "/not-json", "").await;
    assert_eq!(
        err.to_string(),
        format!("login response from {host} (HTTP 200) is not valid JSON (Content-Type text/plain)")
    );
    let err = fail(&base, "/html", "").await;
    assert_eq!(
        err.to_string(),
        format!("login response from {host} (HTTP 200) is not valid JSON (Content-Type text/html)")
    );
    assert!(err.is_transient());
}

#[tokio::test]
async fn rejections_are_terminal_and_name_the_status_and_oauth_error() {
    let base = faulty().await;
    let host = base.trim_start_matches("http://");
    let err = fail(&base, "/unauthorized", "").await;
    assert_eq!(
        err.to_string(),
        format!("login request to {host} was rejected: HTTP 401 (invalid_client)")
    );
    assert_eq!(err.reason(), "CredentialsRejected");
    assert!(!err.is_transient());
    let err = fail(&base, "/invalid-grant", "").await;
    assert_eq!(err.reason(), "InvalidGrant");
    // A body echoing the secret never reaches the message.
    let err = fail(&base, "/echo-secret-error", "").await;
    assert_eq!(
        err.to_string(),
        format!("login request to {host} was rejected: HTTP 400")
    );
}

#[tokio::test]
async fn rate_limits_and_server_errors_are_transient_and_carry_retry_after() {
    let base = faulty().await;
    let err = fail(&base, "/rate-limited", "").await;
    assert_eq!(err.reason(), "RateLimited");
    assert_eq!(err.retry_after(), Some(Duration::from_secs(42)));
    assert!(err.is_transient());
    let err = fail(&base, "/server-error", "").await;
    assert_eq!(err.reason(), "ProviderUnavailable");
    assert!(err.to_string().ends_with("failed: HTTP 502"), "{err}");
}

#[tokio::test]
async fn slow_and_oversized_responses_are_cut_off() {
    let base = faulty().await;
    let engine = Engine::new(HttpSettings {
        timeout: Duration::from_millis(300),
        max_response_bytes: 16 * 1024,
        ..support::loopback()
    })
    .unwrap();
    let credentials = creds(&[("password", SECRET)]);
    let started = std::time::Instant::now();
    let err = issue_with(&engine, &spec(&faulty_spec(&base, "/slow", "")), &credentials, None)
        .await
        .unwrap_err();
    assert_eq!(err.reason(), "Timeout");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "the 5 s handler was not waited for"
    );
    let err = issue_with(&engine, &spec(&faulty_spec(&base, "/huge", "")), &credentials, None)
        .await
        .unwrap_err();
    assert_eq!(err.reason(), "ResponseTooLarge");
    assert!(err.to_string().contains("16384-byte limit"));
}

#[tokio::test]
async fn unusable_expiry_and_unreachable_hosts_are_clear() {
    let base = faulty().await;
    let err = fail(&base, "/bad-expiry", "  expiresIn: {jsonPath: expires_in}").await;
    assert_eq!(
        err.to_string(),
        "expires_in in login response is unusable: not a number of seconds"
    );
    // Nothing listens on port 9 of loopback.
    let err = fail("http://127.0.0.1:9", "/token", "").await;
    assert_eq!(err.reason(), "ConnectionFailed");
    assert!(
        err.to_string().starts_with("login request to 127.0.0.1:9 failed: "),
        "{err}"
    );
}

#[tokio::test]
async fn bad_jsonpath_and_durations_are_refused_at_compile_time() {
    let engine = engine();
    let s = spec(
        "credentialsRef: {name: x}\nrefreshableToken:\n  authorization: {url: 'http://x'}\n  accessToken: {jsonPath: '$[?'}\n",
    );
    let err = connector_auth_operator::catalog::compile(&engine, &s).unwrap_err();
    assert_eq!(err.reason(), "InvalidSpec");
    assert!(
        err.to_string()
            .starts_with("invalid spec: spec.refreshableToken.accessToken: `$[?` is not a valid JSONPath"),
        "{err}"
    );
    let s = spec("credentialsRef: {name: x}\napiKey: {}\nrenewal: {refreshInterval: 10 minutes}\n");
    assert!(
        connector_auth_operator::catalog::compile(&engine, &s)
            .unwrap_err()
            .to_string()
            .contains("spec.renewal.refreshInterval")
    );
    let s = spec("credentialsRef: {name: x}\napiKey: {}\noutput: {header: {value: 'Bearer {{ access_token'}}\n");
    assert!(
        connector_auth_operator::catalog::compile(&engine, &s)
            .unwrap_err()
            .to_string()
            .contains("spec.output.header.value")
    );
}

/// Loads a bundled example with its provider's host pointed at the emulator.
fn example(name: &str, from: &str, to: &str) -> connector_auth_operator::api::ConnectorAuthSpec {
    let text = std::fs::read_to_string(format!("examples/{name}/connectorauth.yaml"))
        .unwrap()
        .replace(from, to);
    let doc: serde_json::Value = serde_saphyr::from_str(&text).unwrap();
    connector_auth_operator::api::validate_document(&doc).unwrap();
    serde_json::from_value(doc["spec"].clone()).unwrap()
}

#[tokio::test]
async fn every_bundled_example_works_against_its_emulated_provider() {
    let engine = engine();
    let run = |spec: connector_auth_operator::api::ConnectorAuthSpec, c: &'static [(&'static str, &'static str)]| {
        let engine = engine.clone();
        async move { issue_with(&engine, &spec, &creds(c), None).await.unwrap().1 }
    };

    let (base, _) = snov().await;
    let out = run(
        example("snov-io", "https://api.snov.io", &base),
        &[("username", "snov-id"), ("password", "snov&secret")],
    )
    .await;
    assert_eq!(call_api(&format!("{base}/v1/get-balance"), &out).await, 200, "snov-io");

    let (base, _) = docuware().await;
    let out = run(
        example("docuware", "https://{{ domain }}", &base),
        &[
            ("domain", "unused"),
            ("username", "dw-user"),
            ("password", "p@ss&word=1"),
        ],
    )
    .await;
    assert_eq!(
        call_api(&format!("{base}/docuware/platform/Organizations"), &out).await,
        200,
        "docuware"
    );

    let (base, _) = rotating(3600).await;
    let out = run(
        example("rotating-refresh-token", "https://auth.example.com", &base),
        &[
            ("client_id", "rot-client"),
            ("client_secret", "rot-secret"),
            ("refresh_token", "rt-seed"),
        ],
    )
    .await;
    assert_eq!(
        call_api(&format!("{base}/api/me"), &out).await,
        200,
        "rotating-refresh-token"
    );

    let (base, _) = tripletex().await;
    let out = run(
        example("tripletex", "https://api-test.tripletex.tech", &base),
        &[
            ("consumer_token", "consumer+token/1"),
            ("employee_token", "employee-token"),
        ],
    )
    .await;
    assert_eq!(call_api(&format!("{base}/v2/employee"), &out).await, 200, "tripletex");

    let (base, _) = webcrm().await;
    let out = run(
        example("webcrm", "https://api.webcrm.com", &base),
        &[("app_token", "app-token-123")],
    )
    .await;
    assert_eq!(call_api(&format!("{base}/Persons"), &out).await, 200, "webcrm");

    let (base, _) = superoffice().await;
    let out = run(
        example(
            "superoffice",
            "environment: sod",
            &format!("environment: sod\n    tokenUrl: {base}/login/common/oauth/tokens"),
        ),
        &[
            ("client_id", "so-client"),
            ("client_secret", "so-app-secret"),
            ("refresh_token", "so-refresh"),
        ],
    )
    .await;
    assert_eq!(
        call_api(&format!("{base}/api/v1/User/currentPrincipal"), &out).await,
        200,
        "superoffice"
    );

    let (base, _) = poweroffice().await;
    let out = run(
        example("poweroffice-go", "https://goapi.poweroffice.net/Demo", &base),
        &[
            ("application_key", "app-key"),
            ("client_key", "client-key"),
            ("subscription_key", "sub-key"),
        ],
    )
    .await;
    assert_eq!(
        call_api(&format!("{base}/v2/Customers"), &out).await,
        200,
        "poweroffice-go"
    );

    let base = api_keys().await;
    let out = run(
        example("woocommerce", "", ""),
        &[("consumer_key", "ck_123"), ("consumer_secret", "cs_456")],
    )
    .await;
    assert_eq!(
        call_api(&format!("{base}/wp-json/wc/v3/products"), &out).await,
        200,
        "woocommerce"
    );
    let out = run(
        example("wix", "", ""),
        &[("api_key", "IST.wix-key"), ("site_id", "site-1")],
    )
    .await;
    assert_eq!(
        call_api(&format!("{base}/stores/v1/products/query"), &out).await,
        200,
        "wix"
    );

    // Google needs consent: the authorization-code exchange is driven with the callback values.
    let (base, _) = google().await;
    let spec = example("google", "https://oauth2.googleapis.com", &base);
    let flow = connector_auth_operator::catalog::compile(&engine, &spec).unwrap();
    let inputs = connector_auth_operator::engine::Inputs {
        credentials: creds(&[("CLIENT_ID", "g-client"), ("CLIENT_SECRET", "g-secret")]),
        redirect_url: Some(GOOGLE_REDIRECT.into()),
        callback: [("code".to_string(), GOOGLE_CODE.into())].into(),
        ..Default::default()
    };
    let token = engine
        .obtain(&flow, &inputs, None, "fp", jiff::Timestamp::now())
        .await
        .unwrap();
    let out = engine.render_output(&flow, &inputs, &token).unwrap();
    assert_eq!(
        call_api(&format!("{base}/admin/directory/v1/users"), &out).await,
        200,
        "google"
    );
}

// ------------------------------------------------------------------- token-URL policy

fn with_policy(policy: connector_auth_operator::engine::policy::UrlPolicy) -> Engine {
    Engine::new(HttpSettings {
        policy,
        ..Default::default()
    })
    .unwrap()
}

#[tokio::test]
async fn cloud_metadata_endpoints_are_refused_by_default_without_connecting() {
    let started = std::time::Instant::now();
    for url in [
        "http://169.254.169.254/latest/meta-data/iam",
        "http://[fe80::1]/token",
        "http://metadata.google.internal/computeMetadata/v1/",
    ] {
        let yaml = format!("credentialsRef: {{name: x}}\nrefreshableToken:\n  authorization: {{url: '{url}'}}\n");
        let err = issue(&yaml, &[]).await.unwrap_err();
        assert_eq!(err.reason(), "TokenUrlForbidden", "{url}: {err}");
        assert!(err.to_string().contains("refused by the token-URL policy"), "{err}");
        assert!(!err.is_transient(), "terminal, no retry storm");
    }
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "refused before any connection attempt"
    );
}

#[tokio::test]
async fn private_addresses_are_denied_by_default_also_after_dns_resolution() {
    use connector_auth_operator::engine::policy::{Rule, UrlPolicy};
    let base = faulty().await;
    let port = base.rsplit(':').next().unwrap().to_string();
    let deny = with_policy(UrlPolicy::default());
    for url in [
        format!("{base}/ok-no-token"),
        format!("http://localhost:{port}/ok-no-token"),
    ] {
        let s = spec(&format!(
            "credentialsRef: {{name: x}}\nrefreshableToken:\n  authorization: {{url: '{url}'}}\n"
        ));
        let err = issue_with(&deny, &s, &creds(&[]), None).await.unwrap_err();
        assert_eq!(err.reason(), "TokenUrlForbidden", "{url}: {err}");
        assert!(
            err.to_string().contains("private address 127.0.0.1") || err.to_string().contains("private address ::1"),
            "{err}"
        );
    }
    // An allow-listed network is reachable again (the request then fails on the missing token).
    let allowed = with_policy(UrlPolicy {
        allow: vec![Rule::parse("127.0.0.0/8").unwrap()],
        ..Default::default()
    });
    let s = spec(&format!(
        "credentialsRef: {{name: x}}\nrefreshableToken:\n  authorization: {{url: '{base}/ok-no-token'}}\n"
    ));
    assert_eq!(
        issue_with(&allowed, &s, &creds(&[]), None).await.unwrap_err().reason(),
        "ValueNotFound"
    );
    // A host allow list refuses everything else.
    let only = with_policy(UrlPolicy {
        allow: vec![Rule::parse("*.superoffice.com").unwrap()],
        ..Default::default()
    });
    let err = issue_with(&only, &s, &creds(&[]), None).await.unwrap_err();
    assert!(err.to_string().contains("not on the allow list"), "{err}");
}
