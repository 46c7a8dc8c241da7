//! Operating it from the command line against a running operator: `status` of a healthy, a
//! failing and a consent-pending resource; `renew` acted upon exactly once (one token call,
//! across a restart and with two replicas whose leader dies mid-call); `check` against the
//! provider's protected endpoint; and `spec.verify` after issuance (Verified, a Warning Event
//! and the metric when it fails, the token kept).

mod support;

#[path = "support/custom_operator.rs"]
#[allow(dead_code)] // only the consent setting is used here
mod custom_operator;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Output;
use std::time::Duration;

use connector_auth_operator::api::{ConnectorAuth, RENEW_ANNOTATION};
use connector_auth_operator::ops::{self, Target};
use custom_operator::{CustomOperator, Settings};
use fake_apiserver::FakeApiServer;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, PostParams};
use serde_json::{Value, json};
use support::operator::{Operator, Source, leaders, start_together};
use support::*;

const NS: &str = "ns";
const BIN: &str = env!("CARGO_BIN_EXE_connector-auth-operator");

/// Credentials of the rotating provider's password grant.
fn rotating_creds() -> Value {
    json!({"client_id": "rot-client", "client_secret": "rot-secret", "username": "rot-user", "password": "rot-pass"})
}

async fn secret(client: &kube::Client, name: &str, data: Value) {
    let s: Secret = serde_json::from_value(json!({"metadata": {"name": name}, "stringData": data})).unwrap();
    Api::<Secret>::namespaced(client.clone(), NS)
        .create(&PostParams::default(), &s)
        .await
        .unwrap();
}

async fn connector(client: &kube::Client, name: &str, spec: Value) {
    create_connector(client, NS, name, spec).await;
}

/// A password-grant resource against the rotating provider, verified at its `/api/me`.
fn password_grant(base: &str) -> Value {
    json!({
        "credentialsRef": {"name": "creds"},
        "oauth2": {"tokenUrl": format!("{base}/oauth/token"), "grantType": "password"},
        "verify": {"url": format!("{base}/api/me")},
    })
}

fn status(server: &FakeApiServer, name: &str) -> Value {
    server
        .object("connectorauth.dev", "connectorauths", Some(NS), name)
        .map(|ca| ca["status"].clone())
        .unwrap_or(Value::Null)
}

fn condition(server: &FakeApiServer, name: &str, type_: &str) -> Option<Value> {
    status(server, name)["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
        .cloned()
}

fn ready(server: &FakeApiServer, name: &str) -> bool {
    condition(server, name, "Ready").is_some_and(|c| c["status"] == "True")
}

/// A kubeconfig whose current context is the fake API server, namespace `ns`.
fn kubeconfig(dir: &Path, server: &FakeApiServer) -> std::path::PathBuf {
    let path = dir.join("kubeconfig");
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster: {{server: '{}'}}\nusers:\n- name: tester\n  user: {{}}\ncontexts:\n- name: fake\n  context: {{cluster: fake, user: tester, namespace: {NS}}}\ncurrent-context: fake\n",
        server.url()
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// Runs the binary (or a link to it named `as_name`) with `args` against the kubeconfig.
async fn run(program: &Path, kubeconfig: &Path, args: &[&str]) -> Output {
    let (program, kubeconfig) = (program.to_path_buf(), kubeconfig.to_path_buf());
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        std::process::Command::new(program)
            .args(args)
            .env("KUBECONFIG", kubeconfig)
            .env_remove("KUBERNETES_SERVICE_HOST")
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The binary linked as the kubectl plugin, the way the README installs it.
fn plugin(dir: &Path) -> std::path::PathBuf {
    let link = dir.join("kubectl-connectorauth");
    std::os::unix::fs::symlink(BIN, &link).unwrap();
    link
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_shows_a_healthy_a_failing_and_a_consent_pending_resource_with_exit_codes() {
    let (base, _book) = rotating(3600).await;
    let (google, _g) = google().await;
    let server = api_server().await;
    let client = server.client();
    secret(&client, "creds", rotating_creds()).await;
    secret(
        &client,
        "google-creds",
        json!({"client_id": "g-client", "client_secret": "g-secret"}),
    )
    .await;
    connector(&client, "good", password_grant(&base)).await;
    connector(
        &client,
        "bad",
        json!({"credentialsRef": {"name": "missing"}, "apiKey": {}}),
    )
    .await;
    connector(&client, "google", json!({
        "credentialsRef": {"name": "google-creds"},
        "oauth2": {
            "tokenUrl": format!("{google}/token"), "grantType": "authorizationCode", "clientAuth": "client_secret_post",
            "authorizationUrl": format!("{google}/o/oauth2/v2/auth?client_id={{{{ client_id }}}}&redirect_uri={{{{ redirect_url | urlencode }}}}&response_type=code"),
        },
    }))
    .await;
    let op = CustomOperator::start(&server.url(), Settings::new("op").consent("operators"));
    eventually(15, "all three reported", || async {
        let consent = condition(&server, "google", "Ready").is_some_and(|c| c["reason"] == "AuthorizationRequired")
            && status(&server, "google")["authorizationUrl"].is_string();
        let bad = condition(&server, "bad", "Ready").is_some_and(|c| c["reason"] == "CredentialsNotFound");
        (ready(&server, "good") && bad && consent).then_some(())
    })
    .await;
    let token = eventually(5, "the published token", || async {
        let s = server.object("", "secrets", Some(NS), "good-token")?;
        let b = s["data"]["access_token"].as_str()?.to_string();
        Some(String::from_utf8(base64::Engine::decode(&base64::engine::general_purpose::STANDARD, b).unwrap()).unwrap())
    })
    .await;

    // The library, as the commands use it.
    let target = |name: &str| Target::parse(name, None, NS).unwrap();
    let good = ops::status::status(&client, &target("good")).await.unwrap();
    assert!(good.ready);
    assert_eq!(good.failure_count, 0);
    assert!(good.expires_at.is_some() && good.next_refresh_time.is_some());
    let text = good.text(jiff::Timestamp::now());
    assert!(text.contains("Ready:        True"), "{text}");
    assert!(text.contains("Secret ns/good-token:"), "{text}");
    assert!(text.contains("access_token: <redacted,"), "{text}");
    assert!(
        text.contains("headers.json: {Authorization} (values redacted)"),
        "{text}"
    );
    assert!(text.contains("Verified        True   VerificationSucceeded"), "{text}");
    assert!(
        text.contains("Normal  Issued: token issued (NoToken) into Secret good-token"),
        "{text}"
    );
    assert!(!text.contains(&token), "the token itself is never shown");
    assert!(!serde_json::to_string(&good.json()).unwrap().contains(&token));

    let bad = ops::status::status(&client, &target("bad")).await.unwrap();
    assert!(!bad.ready);
    let (reason, message) = bad.last_error.clone().unwrap();
    assert_eq!(reason, "CredentialsNotFound");
    assert_eq!(message, "credentials Secret ns/missing not found");
    let text = bad.text(jiff::Timestamp::now());
    assert!(
        text.contains("Last error:   CredentialsNotFound: credentials Secret ns/missing not found"),
        "{text}"
    );
    assert!(
        text.contains("Warning CredentialsNotFound: credentials Secret ns/missing not found"),
        "{text}"
    );
    assert!(text.contains("Secret ns/bad-token: not found"), "{text}");

    let pending = ops::status::status(&client, &target("google")).await.unwrap();
    assert!(!pending.ready && pending.consent_pending && pending.last_error.is_none());
    let link = pending.authorization_url.clone().unwrap();
    assert!(link.starts_with(&format!("{google}/o/oauth2/v2/auth?")), "{link}");
    assert!(
        pending
            .text(jiff::Timestamp::now())
            .contains(&format!("Consent:      pending: open {link}"))
    );

    // The commands themselves: exit 0 only when Ready; the plugin name works the same.
    let dir = tempfile::tempdir().unwrap();
    let config = kubeconfig(dir.path(), &server);
    let out = run(Path::new(BIN), &config, &["status", "ns/good"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    assert!(stdout(&out).contains("Name:         ns/good"));
    let kubectl = plugin(dir.path());
    let out = run(&kubectl, &config, &["status", "bad"]).await;
    assert_eq!(out.status.code(), Some(1), "not Ready: {}", stdout(&out));
    assert!(stdout(&out).contains("CredentialsNotFound"));
    let out = run(&kubectl, &config, &["status", "-n", NS, "google", "-o", "json"]).await;
    assert_eq!(out.status.code(), Some(1));
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["consentPending"], true);
    assert_eq!(json["authorizationUrl"], link.as_str());
    let help = run(&kubectl, &config, &["--help"]).await;
    assert!(stdout(&help).contains("kubectl connectorauth"), "{}", stdout(&help));
    let out = run(&kubectl, &config, &["status", "ns/nothing"]).await;
    assert_eq!(out.status.code(), Some(2), "an error is not a verdict");
    assert!(String::from_utf8_lossy(&out.stderr).contains("ConnectorAuth ns/nothing not found"));
    op.stop().await;
}

/// Creates the credentials and the password-grant resource `crm`.
async fn ready_resource(server: &FakeApiServer, base: &str) {
    let client = server.client();
    secret(&client, "creds", rotating_creds()).await;
    connector(&client, "crm", password_grant(base)).await;
}

async fn handled(server: &FakeApiServer, value: &str) {
    eventually(15, "the renewal request acted upon", || async {
        (status(server, "crm")["lastRenewRequest"] == value).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renew_makes_exactly_one_token_call_per_request_even_across_a_restart() {
    let (base, book) = rotating(3600).await;
    let server = api_server().await;
    ready_resource(&server, &base).await;
    let op = Operator::start(Source::Url(server.url()), "op-a", false);
    eventually(15, "first issuance", || async { ready(&server, "crm").then_some(()) }).await;
    assert_eq!(book.grants(), ["password"]);

    let dir = tempfile::tempdir().unwrap();
    let config = kubeconfig(dir.path(), &server);
    server.clear_requests();
    let out = run(Path::new(BIN), &config, &["renew", "crm", "--wait", "--timeout", "20s"]).await;
    let writes: Vec<String> = server
        .requests()
        .into_iter()
        .filter(|r| r.user_agent.as_deref() == Some("op-a") && matches!(r.verb.as_str(), "create" | "patch" | "update"))
        .filter(|r| r.resource != "leases")
        .map(|r| format!("{} {}/{}", r.verb, r.resource, r.subresource.unwrap_or_default()))
        .collect();
    // What a routine refresh with a rotating provider writes, plus the Event: the request is
    // taken in the same state write as the in-flight mark.
    assert_eq!(
        writes,
        [
            "patch secrets/",
            "patch secrets/",
            "patch secrets/",
            "create events/",
            "patch connectorauths/status"
        ],
        "mark and request, new refresh token, output, Event, status"
    );
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    assert!(stdout(&out).contains("ns/crm: renewed, Ready"), "{}", stdout(&out));
    let ca = server
        .object("connectorauth.dev", "connectorauths", Some(NS), "crm")
        .unwrap();
    let first = ca["metadata"]["annotations"][RENEW_ANNOTATION]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(status(&server, "crm")["lastRenewRequest"], first.as_str());
    assert_eq!(
        book.grants(),
        ["password", "refresh_token"],
        "one token call for the request"
    );
    let events = serde_json::to_string(&server.objects("events.k8s.io", "events")).unwrap();
    assert!(
        events.contains("token issued (RenewRequested) into Secret crm-token"),
        "{events}"
    );

    // A new process sees the annotation still set, and the request recorded as acted upon.
    op.stop().await;
    let op = Operator::start(Source::Url(server.url()), "op-b", false);
    passed(&op).await;
    let client = server.client();
    let second = ops::renew::request_value(jiff::Timestamp::now());
    ops::renew::request(&client, &Target::parse("crm", None, NS).unwrap(), &second)
        .await
        .unwrap();
    handled(&server, &second).await;
    assert_eq!(
        book.grants(),
        ["password", "refresh_token", "refresh_token"],
        "the old request was not acted upon again; the new one once"
    );
    assert!(!book.family_revoked());
    op.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renew_request_whose_leader_dies_mid_call_is_not_acted_upon_again_by_the_next_leader() {
    let (base, book) = rotating(3600).await;
    let server = api_server().await;
    ready_resource(&server, &base).await;
    let ops_ = start_together(&server.url(), &["op-a", "op-b"], |_, _| {});
    eventually(15, "first issuance", || async { ready(&server, "crm").then_some(()) }).await;
    let leader = eventually(5, "a leader", || async { leaders(&ops_).await.first().copied() }).await;
    assert_eq!(book.grants(), ["password"]);

    // The leader's refresh for the request reaches the provider, which rotates the token; the
    // leader dies before the answer arrives.
    let gate = book.hold_next_answer();
    let client = server.client();
    let crm = Target::parse("ns/crm", None, NS).unwrap();
    let first = ops::renew::request_value(jiff::Timestamp::now());
    ops::renew::request(&client, &crm, &first).await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), gate.arrived())
        .await
        .expect("the refresh reached the provider");
    let mut ops_: Vec<Option<Operator>> = ops_.into_iter().map(Some).collect();
    ops_[leader].take().unwrap().kill();
    gate.open();
    let standby = 1 - leader;
    eventually(15, "the standby leads", || async {
        leaders(std::slice::from_ref(ops_[standby].as_ref().unwrap()))
            .await
            .first()
            .map(|_| ())
    })
    .await;
    passed(ops_[standby].as_ref().unwrap()).await;

    // A second request shows the new leader at work: it logs in (the refresh token of the
    // interrupted call is in doubt) and acts upon the first request never.
    let second = ops::renew::request_value(jiff::Timestamp::now());
    ops::renew::request(&client, &crm, &second).await.unwrap();
    handled(&server, &second).await;
    assert_eq!(
        book.grants(),
        ["password", "refresh_token", "password"],
        "one token call per request, none sent twice"
    );
    assert!(!book.family_revoked(), "no refresh token was sent twice");
    eventually(10, "Ready with the new token", || async {
        ready(&server, "crm").then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_calls_the_protected_endpoint_with_the_published_headers_and_reports_its_status() {
    let (base, book) = rotating(3600).await;
    let server = api_server().await;
    ready_resource(&server, &base).await;
    let op = Operator::start(Source::Url(server.url()), "op", false);
    eventually(15, "issued and verified", || async {
        condition(&server, "crm", "Verified")
            .filter(|c| c["status"] == "True")
            .map(|c| c["message"].as_str().unwrap().to_string())
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let config = kubeconfig(dir.path(), &server);
    let kubectl = plugin(dir.path());

    let out = run(&kubectl, &config, &["check", "--allow-private-token-urls", "ns/crm"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    let host = base.trim_start_matches("http://");
    assert_eq!(
        stdout(&out).trim(),
        format!(
            "ns/crm: verify request GET {host} answered HTTP 200: the published credential works [VerificationSucceeded]"
        )
    );

    // The provider revokes the access: the same check now fails, and says how.
    book.valid.lock().unwrap().clear();
    let out = run(&kubectl, &config, &["check", "--allow-private-token-urls", "crm"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("answered HTTP 401: the published credential was not accepted [VerificationRejected]"),
        "{}",
        stdout(&out)
    );
    let checked = ops::check::check(&server.client(), &engine(), &Target::parse("crm", None, NS).unwrap())
        .await
        .unwrap();
    assert_eq!(checked.verification.status(), Some(401));
    assert!(checked.note.is_none(), "{:?}", checked.note);

    // Without spec.verify there is nothing to check: an error, not a verdict.
    connector(
        &server.client(),
        "plain",
        json!({"credentialsRef": {"name": "creds"}, "apiKey": {"key": "k"}}),
    )
    .await;
    let out = run(&kubectl, &config, &["check", "--allow-private-token-urls", "plain"]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("has no spec.verify"));
    op.stop().await;
}

/// Waits until `op` has finished a pass that changed nothing (it skipped a status write).
async fn passed(op: &Operator) {
    eventually(15, "a pass of the new process", || async {
        scrape(op)
            .await
            .lines()
            .any(|l| l.starts_with("connectorauth_skipped_writes_total{kind=\"status\"}"))
            .then_some(())
    })
    .await;
}

/// The operator's /metrics.
async fn scrape(op: &Operator) -> String {
    match reqwest::get(format!("http://{}/metrics", op.metrics)).await {
        Ok(r) => r.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_verification_is_a_condition_an_event_and_a_metric_and_the_token_stays() {
    let (base, book) = rotating(3600).await;
    let faulty = faulty().await;
    let server = api_server().await;
    let client = server.client();
    secret(&client, "creds", rotating_creds()).await;
    let mut spec = password_grant(&base);
    spec["verify"] = json!({"url": format!("{faulty}/unauthorized")});
    connector(&client, "crm", spec).await;
    let op = Operator::start(Source::Url(server.url()), "op", false);
    let verified = eventually(15, "Verified False", || async {
        condition(&server, "crm", "Verified").filter(|c| c["status"] == "False")
    })
    .await;
    assert_eq!(verified["reason"], "VerificationRejected");
    let host = faulty.trim_start_matches("http://");
    assert_eq!(
        verified["message"],
        format!("verify request GET {host} answered HTTP 401: the published credential was not accepted")
    );
    assert!(ready(&server, "crm"), "the token is published all the same");
    let token = server.object("", "secrets", Some(NS), "crm-token").unwrap();
    assert!(token["data"]["access_token"].is_string());
    assert_eq!(book.requests(), 1, "a failed verification asks for no new token");
    let events = server.objects("events.k8s.io", "events");
    let warning = events
        .iter()
        .find(|e| e["reason"] == "VerificationRejected")
        .unwrap_or_else(|| panic!("{events:?}"));
    assert_eq!(warning["type"], "Warning");
    assert_eq!(warning["note"], verified["message"]);
    let series = format!(
        "connectorauth_verification_failing{{namespace=\"{NS}\",name=\"crm\",reason=\"VerificationRejected\"}} 1"
    );
    eventually(10, "the verification_failing series", || async {
        scrape(&op).await.lines().any(|l| l == series).then_some(())
    })
    .await;

    // Fixed: verified again at once (the spec changed), the series goes.
    let cas: Api<ConnectorAuth> = Api::namespaced(client.clone(), NS);
    let fix = json!({"spec": {"verify": {"url": format!("{base}/api/me")}}});
    cas.patch(
        "crm",
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(&fix),
    )
    .await
    .unwrap();
    eventually(15, "Verified True", || async {
        condition(&server, "crm", "Verified")
            .filter(|c| c["status"] == "True")
            .map(|_| ())
    })
    .await;
    eventually(10, "no verification_failing series", || async {
        (!scrape(&op).await.contains("connectorauth_verification_failing{")).then_some(())
    })
    .await;
    assert_eq!(book.requests(), 1, "verifying the new spec asked for no token");
    let data: BTreeMap<String, Value> =
        serde_json::from_value(server.object("", "secrets", Some(NS), "crm-token").unwrap()["data"].clone()).unwrap();
    assert_eq!(
        data["access_token"], token["data"]["access_token"],
        "the same token throughout"
    );
    op.stop().await;
}

#[tokio::test]
async fn local_mode_verifies_each_issuance_and_a_refused_credential_fails_the_run_but_stays_published() {
    let (base, book) = rotating(3600).await;
    let faulty = faulty().await;
    let dir = tempfile::tempdir().unwrap();
    let manifests = dir.path().join("manifests");
    std::fs::create_dir_all(&manifests).unwrap();
    let resource = |name: &str, verify: &str| {
        format!(
            "apiVersion: connectorauth.dev/v1alpha1\nkind: ConnectorAuth\nmetadata: {{name: {name}}}\nspec:\n  credentialsRef: {{name: creds}}\n  oauth2: {{tokenUrl: '{base}/oauth/token', grantType: password}}\n  verify: {{url: '{verify}'}}\n"
        )
    };
    let text = format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: creds}}\nstringData: {{client_id: rot-client, client_secret: rot-secret, username: rot-user, password: rot-pass}}\n---\n{}---\n{}",
        resource("good", &format!("{base}/api/me")),
        resource("refused", &format!("{faulty}/unauthorized")),
    );
    std::fs::write(manifests.join("all.yaml"), text).unwrap();
    let out = dir.path().join("out");
    let mut runner = connector_auth_operator::local::LocalRunner::new(engine(), manifests, out.clone());

    let reports = runner.pass().await.unwrap();
    let by_name = |name: &str| reports.iter().find(|r| r.name == name).unwrap().clone();
    let good = by_name("good");
    assert!(good.line().ends_with(", verified (HTTP 200)"), "{}", good.line());
    assert!(good.ok());
    let refused = by_name("refused");
    let host = faulty.trim_start_matches("http://");
    assert!(
        refused.line().ends_with(&format!(
            ", VERIFY FAILED: verify request GET {host} answered HTTP 401: the published credential was not accepted [VerificationRejected]"
        )),
        "{}",
        refused.line()
    );
    assert!(!refused.ok(), "`--once` exits 1");
    assert!(connector_auth_operator::local::failed(&reports));
    let published =
        connector_auth_operator::local::FileStore::new(&out, "default", "refused", "refused-token").published();
    assert!(
        !published["access_token"].is_empty(),
        "the token is published all the same"
    );
    assert_eq!(book.requests(), 2);

    // Tokens kept: nothing issued, nothing verified, no token call.
    let again = runner.pass().await.unwrap();
    assert!(
        again.iter().all(|r| r.verification.is_none()),
        "verified at issuance only"
    );
    assert_eq!(book.requests(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renew_annotates_the_named_the_labelled_or_all_resources_of_a_namespace() {
    let server = api_server().await;
    let client = server.client();
    for (name, team) in [("crm", "sales"), ("erp", "finance"), ("wiki", "sales")] {
        let ca: ConnectorAuth = serde_json::from_value(json!({
            "apiVersion": "connectorauth.dev/v1alpha1", "kind": "ConnectorAuth",
            "metadata": {"name": name, "namespace": NS, "labels": {"team": team}},
            "spec": {"credentialsRef": {"name": "creds"}, "apiKey": {}},
        }))
        .unwrap();
        Api::<ConnectorAuth>::namespaced(client.clone(), NS)
            .create(&PostParams::default(), &ca)
            .await
            .unwrap();
    }
    let requested = |name: &str| {
        server
            .object("connectorauth.dev", "connectorauths", Some(NS), name)
            .and_then(|ca| {
                ca["metadata"]["annotations"][RENEW_ANNOTATION]
                    .as_str()
                    .map(str::to_string)
            })
    };
    let dir = tempfile::tempdir().unwrap();
    let config = kubeconfig(dir.path(), &server);

    let out = run(Path::new(BIN), &config, &["renew", "-l", "team=sales"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let (crm, wiki) = (requested("crm").unwrap(), requested("wiki").unwrap());
    assert_eq!(crm, wiki, "one request value per run");
    assert_eq!(requested("erp"), None);
    assert!(stdout(&out).contains(&format!("ns/crm: renewal requested ({RENEW_ANNOTATION}={crm})")));

    let out = run(Path::new(BIN), &config, &["renew", "ns/erp"]).await;
    assert_eq!(out.status.code(), Some(0));
    assert!(requested("erp").is_some());
    assert_eq!(requested("crm").unwrap(), crm, "the others untouched");

    let out = run(Path::new(BIN), &config, &["renew", "--all"]).await;
    assert_eq!(out.status.code(), Some(0));
    assert!(
        ["crm", "erp", "wiki"].iter().all(|n| requested(n).unwrap() != crm),
        "each asked again"
    );

    let out = run(Path::new(BIN), &config, &["renew"]).await;
    assert_eq!(out.status.code(), Some(2), "nothing named: a usage error");
    let out = run(Path::new(BIN), &config, &["renew", "ns/missing"]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("ConnectorAuth ns/missing not found"));
}
