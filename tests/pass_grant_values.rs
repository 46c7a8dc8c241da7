//! What a grant brings besides its tokens, through local mode against an emulator of a SaaS API
//! as QuickBooks, Xero and Slack document theirs (tests/support/emulators/connected.rs): values
//! of the consent callback and post-connect lookups, published and kept across refreshes and a
//! restart, replaced on re-consent; parameters of each phase on that phase's request only; an
//! error reported with HTTP 200; and a failing lookup that keeps the token.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::Ordering;

use connector_auth_operator::local::LocalRunner;
use connector_auth_operator::reason::Reason;
use jiff::{Timestamp, ToSpan};
use serde_json::json;
use support::*;

fn manifests(base: &str) -> String {
    let ca = json!({
        "apiVersion": "connectorauth.dev/v1alpha1", "kind": "ConnectorAuth",
        "metadata": {"name": "books"},
        "spec": {
            "credentialsRef": {"name": "books-credentials"},
            "oauth2": {
                "grantType": "authorizationCode",
                "authorizationUrl": format!("{base}/authorize?client_id={{{{ client_id }}}}&redirect_uri={{{{ redirect_url | urlencode }}}}&response_type=code"),
                "tokenUrl": format!("{base}/token"),
                "clientAuth": "client_secret_post",
                "callbackValues": ["realmId"],
                "authorizationParams": {"prompt": "consent"},
                "tokenParams": {"audience": "accounting"},
                "refreshParams": {"scope": "accounting.read"},
                "errorCode": {"jsonPath": "error", "invalidGrant": ["invalid_refresh_token"]},
                "lookups": [{
                    "name": "tenant",
                    "url": format!("{base}/connections"),
                    "method": "GET",
                    "headers": {"Authorization": "Bearer {{ access_token }}"},
                    "extract": {"id": {"jsonPath": "$[0].tenantId"}},
                }],
            },
            "output": {
                "header": {"extra": {"xero-tenant-id": "{{ lookup.tenant.id }}"}},
                "template": {"realm_id": "{{ callback.realmId }}", "tenant_id": "{{ lookup.tenant.id }}"},
            },
        },
    });
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: books-credentials}}\nstringData: {{client_id: c-client, client_secret: c-secret}}\n---\n{}",
        serde_json::to_string(&ca).unwrap()
    )
}

fn setup(base: &str) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("books.yaml"), manifests(base)).unwrap();
    tmp
}

fn published(out: &Path) -> BTreeMap<String, String> {
    let dir = out.join("default/books-token");
    let mut data = BTreeMap::new();
    for e in std::fs::read_dir(&dir).into_iter().flatten() {
        let p = e.unwrap().path();
        if p.is_file() {
            data.insert(
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read_to_string(&p).unwrap(),
            );
        }
    }
    data
}

/// Opens the consent link of `runner`'s first report and follows the provider's redirect to the
/// callback; returns the result page's status.
async fn consent(runner: &mut LocalRunner, now: Timestamp) -> u16 {
    let reports = runner.pass_at(now).await.unwrap();
    let url = reports[0]
        .authorization_url
        .clone()
        .unwrap_or_else(|| panic!("no consent link: {}", reports[0].line()));
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let resp = http.get(&url).send().await.unwrap();
    assert_eq!(resp.status(), 302, "the consent page accepts the link {url}");
    let location = resp.headers()["location"].to_str().unwrap().to_string();
    reqwest::get(&location).await.unwrap().status().as_u16()
}

async fn runner_in(dir: &Path) -> LocalRunner {
    let mut runner = LocalRunner::new(engine(), dir.to_path_buf(), dir.join("out"));
    runner.enable_consent("127.0.0.1:0".parse().unwrap()).await.unwrap();
    runner
}

fn reason_of(report: &connector_auth_operator::local::Report) -> Option<Reason> {
    match &report.result {
        Ok(o) => o.last_error.as_ref().map(|f| f.reason),
        Err(f) => Some(f.reason),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callback_values_and_lookups_are_published_kept_across_refreshes_and_a_restart_and_replaced_on_re_consent() {
    let (base, book) = connected_server(3600).await;
    let tmp = setup(&base);
    let mut runner = runner_in(tmp.path()).await;
    let now = Timestamp::now();
    assert_eq!(consent(&mut runner, now).await, 200);

    let out = tmp.path().join("out");
    let data = published(&out);
    assert_eq!(data["realm_id"], "4620816365");
    assert_eq!(data["tenant_id"], "tenant-1");
    assert!(
        !data.values().any(|v| v.contains("attacker-chosen")),
        "undeclared callback values are dropped"
    );
    assert_eq!(
        call_api(&format!("{base}/api"), &data).await,
        200,
        "the tenant header goes along"
    );
    assert_eq!(book.lookups.load(Ordering::SeqCst), 1);

    // Two refreshes and a restart later: the same values, no second lookup.
    for hours in [1, 2] {
        let reports = runner.pass_at(now + hours.hours()).await.unwrap();
        assert!(reports[0].ok(), "{}", reports[0].line());
    }
    drop(runner);
    let mut runner = runner_in(tmp.path()).await;
    let reports = runner.pass_at(now + 3.hours()).await.unwrap();
    assert!(reports[0].ok(), "{}", reports[0].line());
    let data = published(&out);
    assert_eq!(
        (data["realm_id"].as_str(), data["tenant_id"].as_str()),
        ("4620816365", "tenant-1")
    );
    assert_eq!(call_api(&format!("{base}/api"), &data).await, 200);
    assert_eq!(
        book.grants(),
        ["authorization_code", "refresh_token", "refresh_token", "refresh_token"]
    );
    assert_eq!(book.lookups.load(Ordering::SeqCst), 1, "lookups run once per grant");

    // The provider ends the grant with an HTTP 200 error: consent again, for another company
    // and tenant, replaces both values.
    *book.refresh_answer.lock().unwrap() = RefreshAnswer::OkFalse;
    let later = now + 5.hours();
    let reports = runner.pass_at(later).await.unwrap();
    assert_eq!(
        reason_of(&reports[0]),
        Some(Reason::AuthorizationRequired),
        "{}",
        reports[0].line()
    );
    *book.realm.lock().unwrap() = "9130354".into();
    *book.tenant.lock().unwrap() = "tenant-2".into();
    *book.refresh_answer.lock().unwrap() = RefreshAnswer::Rotate;
    assert_eq!(consent(&mut runner, later).await, 200);
    let data = published(&out);
    assert_eq!(
        (data["realm_id"].as_str(), data["tenant_id"].as_str()),
        ("9130354", "tenant-2")
    );
    assert_eq!(call_api(&format!("{base}/api"), &data).await, 200);
    assert_eq!(book.lookups.load(Ordering::SeqCst), 2);
    // Each phase's parameters went on that phase's requests only (the emulator refuses others).
    assert_eq!(book.refused(), Vec::<String>::new());
    let requests = book.requests.lock().unwrap().clone();
    assert!(requests.iter().all(|(g, p)| match g.as_str() {
        "authorization_code" => p["audience"] == "accounting" && !p.contains_key("scope"),
        _ => p["scope"] == "accounting.read" && !p.contains_key("audience"),
    }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_lookup_keeps_the_token_and_is_retried_after_the_backoff_without_a_new_consent() {
    let (base, book) = connected_server(3600).await;
    book.lookup_failures.store(2, Ordering::SeqCst);
    let tmp = setup(&base);
    let mut runner = runner_in(tmp.path()).await;
    let now = Timestamp::now();
    // The result page says what failed; nothing is published yet.
    assert_ne!(consent(&mut runner, now).await, 200);
    let out = tmp.path().join("out");
    assert!(!published(&out).contains_key("access_token"));

    // The backoff holds: no lookup, no token request, the reason named.
    let reports = runner.pass_at(now + 1.seconds()).await.unwrap();
    assert_eq!(
        reason_of(&reports[0]),
        Some(Reason::LookupFailed),
        "{}",
        reports[0].line()
    );
    assert_eq!(book.lookups.load(Ordering::SeqCst), 1);
    // After it, the lookup alone is tried again (503 once more, then it answers).
    for secs in [60, 600] {
        runner.pass_at(now + secs.seconds()).await.unwrap();
    }
    let data = published(&out);
    assert_eq!(data["tenant_id"], "tenant-1");
    assert_eq!(call_api(&format!("{base}/api"), &data).await, 200);
    assert_eq!(book.lookups.load(Ordering::SeqCst), 3);
    assert_eq!(
        book.grants(),
        ["authorization_code"],
        "the token was kept: one exchange, no refresh"
    );
    let reports = runner.pass_at(now + 601.seconds()).await.unwrap();
    assert!(
        reports[0].ok() && reason_of(&reports[0]).is_none(),
        "{}",
        reports[0].line()
    );
}

fn seeded_manifests(base: &str, renew: Option<&str>, idle_limit: Option<&str>) -> String {
    let mut ca = json!({
        "apiVersion": "connectorauth.dev/v1alpha1", "kind": "ConnectorAuth",
        "metadata": {"name": "books"},
        "spec": {
            "credentialsRef": {"name": "books-credentials"},
            "oauth2": {
                "grantType": "refreshToken",
                "tokenUrl": format!("{base}/token"),
                "clientAuth": "client_secret_post",
                "refreshParams": {"scope": "accounting.read"},
                "errorCode": {"jsonPath": "error", "invalidGrant": ["invalid_refresh_token"]},
            },
        },
    });
    if let Some(r) = renew {
        ca["metadata"]["annotations"] = json!({"connectorauth.dev/renew": r});
    }
    if let Some(i) = idle_limit {
        ca["spec"]["renewal"] = json!({"refreshTokenIdleLimit": i});
    }
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: books-credentials}}\nstringData: {{client_id: c-client, client_secret: c-secret, refresh_token: rt-seed}}\n---\n{}",
        serde_json::to_string(&ca).unwrap()
    )
}

fn issued_for(report: &connector_auth_operator::local::Report) -> Option<Reason> {
    match &report.result {
        Ok(o) => match o.action {
            connector_auth_operator::reconcile::Action::Issued { reason, .. } => Some(reason),
            _ => None,
        },
        Err(_) => None,
    }
}

/// Access tokens that live 400 days would leave a 60-day refresh token idle: it is used at 54
/// days (90%), with the reason `KeepAlive`, and not before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_token_is_kept_alive_before_the_idle_limit_even_when_the_access_token_is_good() {
    let (base, book) = connected_server(400 * 86_400).await;
    book.grant_refresh("rt-seed");
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(
        tmp.path().join("books.yaml"),
        seeded_manifests(&base, None, Some("60d")),
    )
    .unwrap();
    let mut runner = LocalRunner::new(engine(), tmp.path().to_path_buf(), tmp.path().join("out"));
    let now = Timestamp::now();
    let first = runner.pass_at(now).await.unwrap();
    assert_eq!(issued_for(&first[0]), Some(Reason::NoToken), "{}", first[0].line());
    let kept = runner.pass_at(now + (53 * 24).hours()).await.unwrap();
    assert_eq!(issued_for(&kept[0]), None, "{}", kept[0].line());
    assert_eq!(book.grants().len(), 1);
    let alive = runner.pass_at(now + (54 * 24).hours() + 1.hours()).await.unwrap();
    assert_eq!(issued_for(&alive[0]), Some(Reason::KeepAlive), "{}", alive[0].line());
    assert_eq!(book.grants(), ["refresh_token", "refresh_token"]);
    assert_eq!(
        book.refused(),
        Vec::<String>::new(),
        "the rotated token was the one sent"
    );
    // The next keep-alive counts from this refresh.
    let kept = runner.pass_at(now + (100 * 24).hours()).await.unwrap();
    assert_eq!(issued_for(&kept[0]), None, "{}", kept[0].line());
}

/// A refresh token the provider refuses for good (here with HTTP 200 and `ok: false`): one
/// state, `RefreshTokenRevoked`; no further request however many passes; a renewal request
/// sends the kept token once more and recovers once the provider accepts it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_token_refused_for_good_stops_all_calls_until_a_renewal_request() {
    let (base, book) = connected_server(3600).await;
    book.grant_refresh("rt-seed");
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("books.yaml");
    std::fs::write(&path, seeded_manifests(&base, None, None)).unwrap();
    let mut runner = LocalRunner::new(engine(), tmp.path().to_path_buf(), tmp.path().join("out"));
    let now = Timestamp::now();
    assert!(runner.pass_at(now).await.unwrap()[0].ok());

    *book.refresh_answer.lock().unwrap() = RefreshAnswer::OkFalse;
    let refused = runner.pass_at(now + 1.hours()).await.unwrap();
    assert_eq!(
        reason_of(&refused[0]),
        Some(Reason::RefreshTokenRevoked),
        "{}",
        refused[0].line()
    );
    assert_eq!(book.grants().len(), 2);
    for days in [1, 2, 30] {
        let r = runner.pass_at(now + (days * 24).hours()).await.unwrap();
        assert_eq!(reason_of(&r[0]), Some(Reason::RefreshTokenRevoked), "{}", r[0].line());
    }
    assert_eq!(book.grants().len(), 2, "nothing more is sent to the provider");

    *book.refresh_answer.lock().unwrap() = RefreshAnswer::Rotate;
    std::fs::write(&path, seeded_manifests(&base, Some("2026-12-07T15:00:00Z"), None)).unwrap();
    let renewed = runner.pass_at(now + (31 * 24).hours()).await.unwrap();
    assert!(renewed[0].ok(), "{}", renewed[0].line());
    // Taken because someone asked; the token it replaces had expired meanwhile.
    assert_eq!(issued_for(&renewed[0]), Some(Reason::Expired));
    assert_eq!(book.grants().len(), 3);
    assert_eq!(book.refused(), Vec::<String>::new());
}
