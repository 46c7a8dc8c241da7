//! OAuth2 authorization-code onboarding through the operator's callback, driven like a browser:
//! open `status.authorizationUrl`, follow the provider's redirect to the callback.

mod support;

use std::time::Duration;

use connector_auth_operator::api::ConnectorAuth;
use connector_auth_operator::consent::{self, ConsentState};
use connector_auth_operator::controller::ConsentConfig;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::json;
use support::consent::*;
use support::operator::{Operator, Source};
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn google_consent_through_the_callback_makes_the_resource_ready() {
    let env = google_env(3600).await;
    let url = env.authorization_url(None).await;
    assert!(url.starts_with(&format!(
        "{}/o/oauth2/v2/auth?client_id=g-client&redirect_uri=",
        env.base
    )));
    assert!(url.contains("&state="), "a signed state is appended: {url}");
    let ca = env.ca().await;
    let ready = &ca.status.as_ref().unwrap().conditions[0];
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", "AuthorizationRequired")
    );
    assert_eq!(env.book.requests(), 0, "nothing to send before consent");

    let callback = env.consent(&url).await;
    let (status, page) = get(&callback).await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("is authorized"), "{page}");

    let ca = env.ready().await;
    assert_eq!(
        ca.status.as_ref().unwrap().authorization_url,
        None,
        "the link is gone once authorized"
    );
    let out = Api::<Secret>::namespaced(env.client.clone(), NS)
        .get("google-token")
        .await
        .unwrap();
    let headers = String::from_utf8(out.data.unwrap()["headers.json"].0.clone()).unwrap();
    let map = std::collections::BTreeMap::from([("headers.json".to_string(), headers)]);
    assert_eq!(
        call_api(&format!("{}/admin/directory/v1/users", env.base), &map).await,
        200
    );
    let state = env
        .server
        .object("", "secrets", Some(NS), "google-connectorauth-state")
        .unwrap();
    assert!(
        state["data"]["state.json"].is_string(),
        "refresh token stored privately"
    );
    assert_eq!(env.events("Authorized"), 1);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_state_is_refused_and_nothing_is_written() {
    let env = google_env(3600).await;
    let url = env.authorization_url(None).await;
    let callback = env.consent(&url).await;
    let state = state_of(&callback);
    let (payload, _) = state.split_once('.').unwrap();
    let forged = callback.replace(
        &state,
        &format!("{payload}.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
    );
    env.server.clear_requests();
    let (status, page) = get(&forged).await;
    assert_eq!(status, 400);
    assert!(page.contains("signature is invalid"), "{page}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(env.writes(), Vec::<String>::new());
    assert_eq!(env.book.requests(), 0, "the code was not exchanged");
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_state_is_refused() {
    let env = google_env(3600).await;
    env.authorization_url(None).await;
    let ca = env.ca().await;
    let expired = consent::sign(
        &env.key(),
        &ConsentState {
            namespace: NS.into(),
            name: "google".into(),
            uid: ca.metadata.uid.clone().unwrap(),
            nonce: "whatever".into(),
            expires: jiff::Timestamp::now().as_second() - 1,
        },
    );
    env.server.clear_requests();
    let (status, page) = get(&format!("{}/oauth2/callback?code=x&state={expired}", env.callback)).await;
    assert_eq!(status, 400);
    assert!(page.contains("expired"), "{page}");
    assert_eq!(env.writes(), Vec::<String>::new());
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_callback_is_refused_with_an_event() {
    let env = google_env(3600).await;
    let url = env.authorization_url(None).await;
    let callback = env.consent(&url).await;
    assert_eq!(get(&callback).await.0, 200);
    env.ready().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    env.server.clear_requests();
    let (status, page) = get(&callback).await;
    assert_eq!(status, 409, "{page}");
    assert!(page.contains("already used"), "{page}");
    assert_eq!(env.writes(), Vec::<String>::new(), "nothing but the Event is written");
    assert_eq!(env.events("ConsentReplayed"), 1);
    assert_eq!(env.book.requests(), 1, "the code was not sent again");
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_for_another_resource_instance_is_refused() {
    let env = google_env(3600).await;
    let url = env.authorization_url(None).await;
    let callback = env.consent(&url).await;
    let good = consent::verify(&env.key(), &state_of(&callback), jiff::Timestamp::now().as_second()).unwrap();
    let mismatched = consent::sign(
        &env.key(),
        &ConsentState {
            uid: "some-other-uid".into(),
            ..good
        },
    );
    env.server.clear_requests();
    let (status, page) = get(&format!("{}/oauth2/callback?code=x&state={mismatched}", env.callback)).await;
    assert_eq!(status, 410, "{page}");
    assert_eq!(env.writes(), Vec::<String>::new());
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_denied_by_the_user_writes_nothing_but_an_event() {
    let env = google_env(3600).await;
    let url = env.authorization_url(None).await;
    let state = state_of(&url);
    env.server.clear_requests();
    let (status, page) = get(&format!(
        "{}/oauth2/callback?error=access_denied&state={state}",
        env.callback
    ))
    .await;
    assert_eq!(status, 403);
    assert!(page.contains("access_denied"), "{page}");
    assert_eq!(env.writes(), Vec::<String>::new());
    assert_eq!(env.events("ConsentDenied"), 1);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_code_for_a_deleted_resource_is_refused() {
    let env = google_env(3600).await;
    let url = env.authorization_url(None).await;
    let callback = env.consent(&url).await;
    Api::<ConnectorAuth>::namespaced(env.client.clone(), NS)
        .delete("google", &DeleteParams::default())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    env.server.clear_requests();
    let (status, page) = get(&callback).await;
    assert_eq!(status, 410, "{page}");
    assert!(page.contains("deleted"), "{page}");
    assert_eq!(env.writes(), Vec::<String>::new());
    assert_eq!(env.book.requests(), 0);
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_refresh_token_asks_for_consent_again_with_a_fresh_url() {
    let env = google_env(3).await;
    let first = env.authorization_url(None).await;
    assert_eq!(get(&env.consent(&first).await).await.0, 200);
    env.ready().await;
    env.book.revoke_all();
    // The refresh at ~2 s gets invalid_grant: back to AuthorizationRequired, new link.
    let second = env.authorization_url(Some(&first)).await;
    assert_ne!(state_of(&first), state_of(&second));
    let calls = env.book.requests();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(env.book.requests(), calls, "no retry storm on a revoked token");
    // Consent again works.
    assert_eq!(get(&env.consent(&second).await).await.0, 200);
    env.ready().await;
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn superoffice_consent_yields_a_working_ticket() {
    let (base, _book) = superoffice().await;
    let server = api_server().await;
    let client = server.client();
    let creds: Secret = serde_json::from_value(json!({"metadata": {"name": "so-credentials"},
        "data": {"client_id": k8s_openapi::ByteString(b"so-client".to_vec()), "client_secret": k8s_openapi::ByteString(b"so-app-secret".to_vec())}}))
    .unwrap();
    Api::<Secret>::namespaced(client.clone(), NS)
        .create(&PostParams::default(), &creds)
        .await
        .unwrap();
    let ca: ConnectorAuth = serde_json::from_value(json!({
        "apiVersion": "connectorauth.dev/v1alpha1", "kind": "ConnectorAuth",
        "metadata": {"name": "so", "namespace": NS},
        "spec": {"credentialsRef": {"name": "so-credentials"}, "superOffice": {
            "grantType": "authorizationCode", "tokenUrl": format!("{base}/login/common/oauth/tokens"),
            "authorizationUrl": format!("{base}/login/common/oauth/authorize?client_id={{{{ client_id }}}}&redirect_uri={{{{ redirect_url | urlencode }}}}&response_type=code&scope=openid"),
        }},
    }))
    .unwrap();
    let cas: Api<ConnectorAuth> = Api::namespaced(client.clone(), NS);
    cas.create(&PostParams::default(), &ca).await.unwrap();
    let addr = free_port();
    let op = Operator::start_with(Source::Url(server.url()), "op-1", false, move |c| {
        c.consent = Some(ConsentConfig {
            listen: addr,
            external_url: format!("http://{addr}"),
            key_namespace: "operators".into(),
            advertise_url: None,
        });
    });
    let url = loop {
        if let Some(u) = cas.get("so").await.unwrap().status.and_then(|s| s.authorization_url) {
            break u;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let location = http.get(&url).send().await.unwrap().headers()["location"]
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(get(&location).await.0, 200);
    let out = loop {
        if let Some(s) = Api::<Secret>::namespaced(client.clone(), NS)
            .get_opt("so-token")
            .await
            .unwrap()
        {
            break s;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let data = out.data.unwrap();
    assert!(
        String::from_utf8(data["so_ticket"].0.clone())
            .unwrap()
            .starts_with("7T:")
    );
    let headers = String::from_utf8(data["headers.json"].0.clone()).unwrap();
    let map = std::collections::BTreeMap::from([("headers.json".to_string(), headers)]);
    assert_eq!(
        call_api(&format!("{base}/api/v1/User/currentPrincipal"), &map).await,
        200
    );
    op.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_mode_serves_the_callback_on_loopback_and_prints_the_url() {
    let (base, _book) = google_with_ttl(3600).await;
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(
        tmp.path().join("google.yaml"),
        format!(
            r#"
apiVersion: v1
kind: Secret
metadata: {{name: google-credentials}}
stringData: {{CLIENT_ID: g-client, CLIENT_SECRET: g-secret}}
---
apiVersion: connectorauth.dev/v1alpha1
kind: ConnectorAuth
metadata: {{name: google}}
spec:
  credentialsRef: {{name: google-credentials}}
  oauth2:
    grantType: authorizationCode
    tokenUrl: "{base}/token"
    clientId: "{{{{ CLIENT_ID }}}}"
    clientSecret: "{{{{ CLIENT_SECRET }}}}"
    clientAuth: client_secret_post
    authorizationUrl: "{base}/o/oauth2/v2/auth?client_id={{{{ CLIENT_ID }}}}&redirect_uri={{{{ redirect_url | urlencode }}}}&response_type=code"
"#
        ),
    )
    .unwrap();
    let out = tmp.path().join("out");
    let mut runner = connector_auth_operator::local::LocalRunner::new(engine(), tmp.path().to_path_buf(), out.clone());
    let addr = runner.enable_consent("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let reports = runner.pass().await.unwrap();
    let url = reports[0].authorization_url.clone().expect("consent URL");
    assert!(
        reports[0].line().contains(&url),
        "the URL is printed: {}",
        reports[0].line()
    );
    assert!(!reports[0].ok());
    let again = runner.pass().await.unwrap();
    assert_eq!(
        again[0].authorization_url.as_deref(),
        Some(url.as_str()),
        "stable while valid"
    );

    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let location = http.get(&url).send().await.unwrap().headers()["location"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(location.starts_with(&format!("http://{addr}/oauth2/callback?")));
    let (status, page) = get(&location).await;
    assert_eq!(status, 200, "{page}");
    let token = std::fs::read_to_string(out.join("default/google-token/access_token")).unwrap();
    assert!(token.starts_with("ya29-"));
    let reports = runner.pass().await.unwrap();
    assert!(reports[0].ok(), "{}", reports[0].line());
    assert_eq!(get(&location).await.0, 409, "replay refused");
}

/// A provider whose consent callback carries no `code`, only its own parameter (`install_id`),
/// declared in `callbackValues`, which the custom token request reads as
/// `{{ callback.install_id }}` (ChiefOnboarding's `without_code`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_code_the_callback_parameters_feed_the_token_request() {
    use axum::extract::Query;
    use axum::response::IntoResponse;
    use std::collections::HashMap;
    let app = axum::Router::new()
        .route(
            "/install",
            axum::routing::get(|Query(q): Query<HashMap<String, String>>| async move {
                let mut url = url::Url::parse(&q["redirect_uri"]).unwrap();
                url.query_pairs_mut()
                    .append_pair("install_id", "inst-42")
                    .append_pair("state", &q["state"]);
                (
                    axum::http::StatusCode::FOUND,
                    [(axum::http::header::LOCATION, url.to_string())],
                )
            }),
        )
        .route(
            "/installations/{id}/token",
            axum::routing::post(|axum::extract::Path(id): axum::extract::Path<String>| async move {
                if id == "inst-42" {
                    axum::Json(serde_json::json!({"access_token": "inst-token", "expires_in": 3600})).into_response()
                } else {
                    axum::http::StatusCode::NOT_FOUND.into_response()
                }
            }),
        );
    let base = serve(app).await;
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(
        tmp.path().join("app.yaml"),
        format!(
            r#"
apiVersion: v1
kind: Secret
metadata: {{name: app-credentials}}
stringData: {{client_id: app}}
---
apiVersion: connectorauth.dev/v1alpha1
kind: ConnectorAuth
metadata: {{name: app}}
spec:
  credentialsRef: {{name: app-credentials}}
  oauth2:
    grantType: authorizationCode
    withoutCode: true
    callbackValues: [install_id]
    authorizationUrl: "{base}/install?redirect_uri={{{{ redirect_url | urlencode }}}}"
    tokenRequest: {{url: "{base}/installations/{{{{ callback.install_id }}}}/token"}}
"#
        ),
    )
    .unwrap();
    let out = tmp.path().join("out");
    let mut runner = connector_auth_operator::local::LocalRunner::new(engine(), tmp.path().to_path_buf(), out.clone());
    runner.enable_consent("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let url = runner.pass().await.unwrap()[0].authorization_url.clone().unwrap();
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let location = http.get(&url).send().await.unwrap().headers()["location"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(!location.contains("code="));
    assert_eq!(get(&location).await.0, 200);
    assert_eq!(
        std::fs::read_to_string(out.join("default/app-token/access_token")).unwrap(),
        "inst-token"
    );
}

/// Translated field by field as README's migration table says — `authenticate_url` →
/// `authorizationUrl`, `access_token` → `tokenRequest`, `refresh` → `refreshRequest` with `data`
/// as `form` — the example completes consent (the code is appended to the `access_token` URL, as
/// ChiefOnboarding does) and keeps refreshing with `{{ oauth.refresh_token }}` although Google's
/// refresh answers carry no refresh token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chiefonboarding_google_example_verbatim_completes_consent_and_refreshes() {
    let (base, book) = google_with_ttl(3).await;
    let co = chiefonboarding_google_at(&base);
    let oauth = &co["oauth"];
    let manifest = json!({
        "apiVersion": "connectorauth.dev/v1alpha1", "kind": "ConnectorAuth",
        "metadata": {"name": "google"},
        "spec": {"credentialsRef": {"name": "google-credentials"}, "oauth2": {
            "grantType": "authorizationCode",
            "authorizationUrl": oauth["authenticate_url"],
            "tokenRequest": {"url": oauth["access_token"]["url"], "method": oauth["access_token"]["method"]},
            "refreshRequest": {"url": oauth["refresh"]["url"], "method": oauth["refresh"]["method"], "form": oauth["refresh"]["data"]},
        }},
    });
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(
        tmp.path().join("google.yaml"),
        format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{name: google-credentials}}\nstringData: {{CLIENT_ID: g-client, CLIENT_SECRET: g-secret}}\n---\n{}",
            serde_json::to_string(&manifest).unwrap()
        ),
    )
    .unwrap();
    let (mut runner, out) = consent_in_local_mode(tmp.path()).await;
    let token_file = out.join("default/google-token/access_token");
    let first = std::fs::read_to_string(&token_file).unwrap();
    let api = format!("{base}/admin/directory/v1/users");
    let headers = |out: &std::path::Path| {
        std::collections::BTreeMap::from([(
            "headers.json".to_string(),
            std::fs::read_to_string(out.join("default/google-token/headers.json")).unwrap(),
        )])
    };
    assert_eq!(call_api(&api, &headers(&out)).await, 200);
    assert_eq!(book.requests(), 1, "one code exchange");

    // Two refreshes in a row: the second still has the refresh token from the consent.
    let mut seen = vec![first];
    while seen.len() < 3 {
        let reports = runner.pass().await.unwrap();
        assert!(reports[0].ok(), "{}", reports[0].line());
        let now = std::fs::read_to_string(&token_file).unwrap();
        if !seen.contains(&now) {
            seen.push(now);
            assert_eq!(call_api(&api, &headers(&out)).await, 200);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(book.requests(), 3, "one exchange, two refreshes");
    let state = std::fs::read_to_string(out.join(".state/default/google.json")).unwrap();
    assert!(
        state.contains("1//g-refresh"),
        "the refresh token stays in private state"
    );
    assert!(
        !std::fs::read_dir(out.join("default/google-token/..data"))
            .unwrap()
            .flatten()
            .any(|f| std::fs::read_to_string(f.path()).unwrap().contains("1//g-refresh")),
        "and never reaches the output"
    );
}

/// The same example through the controller, with an output template reading a further field of
/// Google's token response: the field is kept in the state Secret with the refresh token, and
/// neither reaches the status or (beyond what the template asks for) the output Secret.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chiefonboarding_example_through_the_controller_keeps_response_fields_in_the_state_secret() {
    let env = google_env_with(3, |base| {
        let co = chiefonboarding_google_at(base);
        let oauth = &co["oauth"];
        json!({"credentialsRef": {"name": "google-credentials"}, "oauth2": {
            "grantType": "authorizationCode",
            "authorizationUrl": oauth["authenticate_url"],
            "tokenRequest": {"url": oauth["access_token"]["url"], "method": oauth["access_token"]["method"]},
            "refreshRequest": {"url": oauth["refresh"]["url"], "method": oauth["refresh"]["method"], "form": oauth["refresh"]["data"]},
        }, "output": {"template": {"granted_scope": "{{ oauth.scope }}"}}})
    })
    .await;
    let url = env.authorization_url(None).await;
    assert_eq!(get(&env.consent(&url).await).await.0, 200);
    env.ready().await;
    let secrets = Api::<Secret>::namespaced(env.client.clone(), NS);
    let token = |s: &Secret| String::from_utf8(s.data.as_ref().unwrap()["access_token"].0.clone()).unwrap();
    let first = token(&secrets.get("google-token").await.unwrap());
    let refreshed = eventually(15, "a refresh through the controller", || {
        let secrets = secrets.clone();
        let first = first.clone();
        async move {
            let s = secrets.get("google-token").await.ok()?;
            (token(&s) != first).then_some(s)
        }
    })
    .await;
    let data = refreshed.data.unwrap();
    assert_eq!(
        String::from_utf8(data["granted_scope"].0.clone()).unwrap(),
        "https://www.googleapis.com/auth/admin.directory.user",
        "the field of the exchange's answer, carried over the refresh"
    );
    let published: String = data
        .values()
        .map(|v| String::from_utf8_lossy(&v.0).into_owned())
        .collect();
    assert!(!published.contains("1//g-refresh"));
    let state = env
        .server
        .object("", "secrets", Some(NS), "google-connectorauth-state")
        .unwrap();
    use base64::Engine as _;
    let state = String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(state["data"]["state.json"].as_str().unwrap())
            .unwrap(),
    )
    .unwrap();
    assert!(
        state.contains("1//g-refresh") && state.contains("\"scope\""),
        "the private state holds both"
    );
    let status = serde_json::to_string(&env.ca().await.status).unwrap();
    assert!(
        !status.contains("1//g-refresh") && !status.contains("admin.directory"),
        "{status}"
    );
    env.stop().await;
}

/// Through the controller, a callback value (Google's granted `scope`) and a post-connect lookup
/// (the userinfo `hd` domain) are published, and both survive refreshes and a restart of the
/// operator (the store rebuilds them from the state Secret): the lookup runs once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callback_values_and_lookups_survive_refreshes_and_a_restart_of_the_controller() {
    let mut env = google_env_with(3, |base| {
        json!({"credentialsRef": {"name": "google-credentials"}, "oauth2": {
            "grantType": "authorizationCode", "tokenUrl": format!("{base}/token"),
            "clientId": "{{ CLIENT_ID }}", "clientSecret": "{{ CLIENT_SECRET }}", "clientAuth": "client_secret_post",
            "authorizationUrl": format!("{base}/o/oauth2/v2/auth?client_id={{{{ CLIENT_ID }}}}&redirect_uri={{{{ redirect_url | urlencode }}}}&response_type=code&scope=openid%20email"),
            "callbackValues": ["scope"],
            "lookups": [{"name": "user", "url": format!("{base}/oauth2/v3/userinfo"), "method": "GET",
                "headers": {"Authorization": "Bearer {{ access_token }}"}, "extract": {"domain": {"jsonPath": "hd"}}}],
        }, "output": {"template": {"granted": "{{ callback.scope }}", "domain": "{{ lookup.user.domain }}"}}})
    })
    .await;
    let url = env.authorization_url(None).await;
    assert_eq!(get(&env.consent(&url).await).await.0, 200);
    env.ready().await;
    let secrets = Api::<Secret>::namespaced(env.client.clone(), NS);
    let value = |s: &Secret, k: &str| String::from_utf8(s.data.as_ref().unwrap()[k].0.clone()).unwrap();
    let refreshed = |after: String| {
        let secrets = secrets.clone();
        async move {
            eventually(15, "a refresh through the controller", || {
                let secrets = secrets.clone();
                let after = after.clone();
                async move {
                    let s = secrets.get("google-token").await.ok()?;
                    (value(&s, "access_token") != after).then_some(s)
                }
            })
            .await
        }
    };
    let first = secrets.get("google-token").await.unwrap();
    assert_eq!(
        (value(&first, "granted"), value(&first, "domain")),
        ("openid email".into(), "example.com".into())
    );
    let second = refreshed(value(&first, "access_token")).await;
    assert_eq!(
        (value(&second, "granted"), value(&second, "domain")),
        ("openid email".into(), "example.com".into())
    );

    env.op.take().unwrap().stop().await;
    let op = Operator::start(Source::Url(env.server.url()), "op-2", false);
    let third = refreshed(value(&second, "access_token")).await;
    assert_eq!(
        (value(&third, "granted"), value(&third, "domain")),
        ("openid email".into(), "example.com".into())
    );
    assert_eq!(
        env.book.identity_requests.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "one lookup for one grant"
    );
    op.stop().await;
}

/// A ConnectorAuth for the PKCE server, with or without `pkce`, and its credentials.
fn pkce_manifests(base: &str, pkce: bool) -> String {
    let manifest = json!({
        "apiVersion": "connectorauth.dev/v1alpha1", "kind": "ConnectorAuth",
        "metadata": {"name": "pkce"},
        "spec": {"credentialsRef": {"name": "pkce-credentials"}, "oauth2": {
            "grantType": "authorizationCode",
            "authorizationUrl": format!("{base}/authorize?client_id={{{{ client_id }}}}&redirect_uri={{{{ redirect_url | urlencode }}}}&response_type=code"),
            "tokenUrl": format!("{base}/token"),
            "clientAuth": "client_secret_post",
            "pkce": pkce,
        }},
    });
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: pkce-credentials}}\nstringData: {{client_id: p-client, client_secret: p-secret}}\n---\n{}",
        serde_json::to_string(&manifest).unwrap()
    )
}

/// PKCE through local mode, against a server that requires it: the link carries the S256
/// challenge, the exchange the verifier that hashes to it, and the verifier itself is nowhere
/// but in that one token request: not in the link, the output or the state files.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pkce_sends_the_challenge_in_the_link_and_the_verifier_only_in_the_exchange() {
    let (base, book) = pkce_server().await;
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("pkce.yaml"), pkce_manifests(&base, true)).unwrap();
    let (_runner, out) = consent_in_local_mode(tmp.path()).await;

    let headers = std::fs::read_to_string(out.join("default/pkce-token/headers.json")).unwrap();
    let output = std::collections::BTreeMap::from([("headers.json".to_string(), headers)]);
    assert_eq!(call_api(&format!("{base}/api"), &output).await, 200);
    assert_eq!(book.refusals.lock().unwrap().clone(), Vec::<String>::new());
    let challenges = book.challenges.lock().unwrap().clone();
    let verifiers = book.verifiers.lock().unwrap().clone();
    assert_eq!((challenges.len(), verifiers.len()), (1, 1));
    let verifier = &verifiers[0];
    assert!(
        (43..=128).contains(&verifier.len())
            && verifier
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-._~".contains(c)),
        "RFC 7636 §4.1: {verifier}"
    );
    assert_eq!(challenges[0], consent::pkce_challenge(verifier));
    // Nothing kept or published holds the verifier.
    let mut files = vec![tmp.path().to_path_buf()];
    while let Some(p) = files.pop() {
        if p.is_dir() {
            files.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
        } else if let Ok(text) = std::fs::read_to_string(&p) {
            assert!(
                !text.contains(verifier.as_str()),
                "{} holds the code_verifier",
                p.display()
            );
        }
    }
}

/// Without `pkce` the server refuses the consent link; each link gets its own verifier; a code
/// exchanged once is not exchanged again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_requires_pkce_refuses_links_without_it_and_each_link_has_its_own_verifier() {
    let (base, book) = pkce_server().await;
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("pkce.yaml"), pkce_manifests(&base, false)).unwrap();
    let mut runner =
        connector_auth_operator::local::LocalRunner::new(engine(), tmp.path().to_path_buf(), tmp.path().join("out"));
    runner.enable_consent("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let reports = runner.pass().await.unwrap();
    let url = reports[0].authorization_url.clone().unwrap();
    assert!(!url.contains("code_challenge"), "{url}");
    let resp = reqwest::get(&url).await.unwrap();
    assert_eq!(resp.status(), 400, "the server requires PKCE");

    // Two consents in two folders: two links, two challenges, two verifiers.
    for _ in 0..2 {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("pkce.yaml"), pkce_manifests(&base, true)).unwrap();
        consent_in_local_mode(dir.path()).await;
    }
    let challenges = book.challenges.lock().unwrap().clone();
    let verifiers = book.verifiers.lock().unwrap().clone();
    assert_eq!(challenges.len(), 2);
    assert_ne!(challenges[0], challenges[1]);
    assert_ne!(verifiers[0], verifiers[1]);
    assert_eq!(book.refusals.lock().unwrap().clone(), Vec::<String>::new());
}
