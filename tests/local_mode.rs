//! Local mode end to end: manifests in a folder, a loopback provider, files out.

mod support;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use connector_auth_operator::local::LocalRunner;
use connector_auth_operator::reconcile::Lead;
use connector_auth_operator::reconcile::driver;
use connector_auth_operator::reconcile::record::{Action, Record, Store, StoreError, Unsaved};
use support::*;

const BIN: &str = env!("CARGO_BIN_EXE_connector-auth-operator");

fn write_manifests(dir: &Path, base: &str, refresh_token: &str) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join("rot.yaml"),
        format!(
            r#"
apiVersion: v1
kind: Secret
metadata: {{name: rot-credentials, namespace: team-a}}
stringData:
  base_url: "{base}"
  client_id: rot-client
  client_secret: rot-secret
  refresh_token: {refresh_token}
---
apiVersion: connectorauth.dev/v1alpha1
kind: ConnectorAuth
metadata: {{name: rot, namespace: team-a}}
spec:
  credentialsRef: {{name: rot-credentials}}
  oauth2:
    tokenUrl: "{{{{ base_url }}}}/oauth/token"
    grantType: refreshToken
"#
        ),
    )
    .unwrap();
}

fn runner(manifests: &Path, out: &Path) -> LocalRunner {
    LocalRunner::new(engine(), manifests.to_path_buf(), out.to_path_buf())
}

fn data_link(out: &Path) -> std::path::PathBuf {
    std::fs::read_link(out.join("team-a/rot-token/..data")).unwrap()
}

#[tokio::test]
async fn once_writes_a_mounted_secret_layout_and_private_state() {
    let (base, book) = rotating(3600).await;
    let tmp = tempfile::tempdir().unwrap();
    let (m, out) = (tmp.path().join("m"), tmp.path().join("out"));
    write_manifests(&m, &base, "rt-seed");

    let reports = runner(&m, &out).pass().await.unwrap();
    assert_eq!(reports.len(), 1);
    assert!(reports[0].ok(), "{}", reports[0].line());
    assert_eq!(book.requests(), 1);

    let secret = out.join("team-a/rot-token");
    let token = std::fs::read_to_string(secret.join("access_token")).unwrap();
    assert!(token.starts_with("at-"));
    assert_eq!(
        std::fs::read_link(secret.join("access_token")).unwrap(),
        Path::new("..data/access_token")
    );
    assert!(
        std::fs::symlink_metadata(secret.join("..data"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
    let headers: BTreeMap<String, String> =
        serde_json::from_str(&std::fs::read_to_string(secret.join("headers.json")).unwrap()).unwrap();
    assert_eq!(headers["Authorization"], format!("Bearer {token}"));
    assert!(
        !secret.join("refresh_token").exists(),
        "refresh tokens are not published by default"
    );

    let state = out.join(".state/team-a/rot.json");
    assert_eq!(std::fs::metadata(&state).unwrap().permissions().mode() & 0o777, 0o600);
    assert_eq!(
        std::fs::metadata(out.join(".state")).unwrap().permissions().mode() & 0o777,
        0o700
    );
    let record: Record = serde_json::from_slice(&std::fs::read(&state).unwrap()).unwrap();
    let rt = record.token.unwrap().refresh_token.unwrap();
    assert!(
        rt.expose().starts_with("rt-"),
        "the rotated refresh token is kept privately"
    );
    // The summary line is redacted.
    assert!(!reports[0].line().contains(&token) && !reports[0].line().contains(rt.expose()));
}

#[tokio::test]
async fn a_restart_with_valid_tokens_makes_no_calls_and_no_writes() {
    let (base, book) = rotating(3600).await;
    let tmp = tempfile::tempdir().unwrap();
    let (m, out) = (tmp.path().join("m"), tmp.path().join("out"));
    write_manifests(&m, &base, "rt-seed");
    runner(&m, &out).pass().await.unwrap();
    let before = data_link(&out);

    // A fresh runner is a restarted process.
    let reports = runner(&m, &out).pass().await.unwrap();
    let outcome = reports[0].result.as_ref().unwrap();
    assert_eq!(outcome.action, Action::Kept);
    assert!(!outcome.written);
    assert_eq!(book.requests(), 1, "no token call");
    assert_eq!(data_link(&out), before, "no rewrite");
}

#[tokio::test]
async fn deleted_or_edited_output_is_restored_without_a_token_call() {
    let (base, book) = rotating(3600).await;
    let tmp = tempfile::tempdir().unwrap();
    let (m, out) = (tmp.path().join("m"), tmp.path().join("out"));
    write_manifests(&m, &base, "rt-seed");
    let mut r = runner(&m, &out);
    r.pass().await.unwrap();
    let token = std::fs::read_to_string(out.join("team-a/rot-token/access_token")).unwrap();

    std::fs::remove_dir_all(out.join("team-a/rot-token")).unwrap();
    let reports = r.pass().await.unwrap();
    assert!(reports[0].result.as_ref().unwrap().written);
    assert_eq!(
        std::fs::read_to_string(out.join("team-a/rot-token/access_token")).unwrap(),
        token
    );

    let link = data_link(&out);
    std::fs::write(
        out.join("team-a/rot-token").join(&link).join("header_value"),
        "tampered",
    )
    .unwrap();
    r.pass().await.unwrap();
    assert_eq!(
        std::fs::read_to_string(out.join("team-a/rot-token/header_value")).unwrap(),
        format!("Bearer {token}")
    );
    assert_eq!(book.requests(), 1);
}

#[tokio::test]
async fn changed_credentials_re_authenticate_promptly() {
    let (base, book) = rotating(3600).await;
    let tmp = tempfile::tempdir().unwrap();
    let (m, out) = (tmp.path().join("m"), tmp.path().join("out"));
    write_manifests(&m, &base, "rt-seed");
    let mut r = runner(&m, &out);
    r.pass().await.unwrap();
    book.refresh
        .lock()
        .unwrap()
        .insert("rt-new-onboarding".into(), (9, true));
    write_manifests(&m, &base, "rt-new-onboarding");
    let reports = r.pass().await.unwrap();
    assert!(matches!(
        reports[0].result.as_ref().unwrap().action,
        Action::Issued {
            reason: connector_auth_operator::reason::Reason::InputsChanged,
            ..
        }
    ));
    assert_eq!(book.requests(), 2);
    assert!(!book.family_revoked());
}

#[tokio::test]
async fn tokens_are_refreshed_before_expiry_without_ever_reusing_a_refresh_token() {
    let (base, book) = rotating(2).await;
    let tmp = tempfile::tempdir().unwrap();
    let (m, out) = (tmp.path().join("m"), tmp.path().join("out"));
    write_manifests(&m, &base, "rt-seed");
    let mut r = runner(&m, &out);
    r.poll = Duration::from_millis(200);
    r.run(tokio::time::sleep(Duration::from_millis(4500))).await.unwrap();
    // 2 s tokens renew at ~1.2–1.33 s: the first issue plus at least two refreshes.
    assert!(book.requests() >= 3, "{} token requests", book.requests());
    assert!(!book.family_revoked());
    let headers = BTreeMap::from([(
        "headers.json".to_string(),
        std::fs::read_to_string(out.join("team-a/rot-token/headers.json")).unwrap(),
    )]);
    assert_eq!(
        call_api(&format!("{base}/api/me"), &headers).await,
        200,
        "the published token is current"
    );
}

#[tokio::test]
async fn provider_outage_keeps_the_last_token_and_backs_off() {
    let (base, book) = rotating(3600).await;
    let tmp = tempfile::tempdir().unwrap();
    let (m, out) = (tmp.path().join("m"), tmp.path().join("out"));
    write_manifests(&m, &base, "rt-seed");
    runner(&m, &out).pass().await.unwrap();
    let token = std::fs::read_to_string(out.join("team-a/rot-token/access_token")).unwrap();

    // Force renewal, then take the provider down (503).
    let state = out.join(".state/team-a/rot.json");
    let mut record: Record = serde_json::from_slice(&std::fs::read(&state).unwrap()).unwrap();
    record.token.as_mut().unwrap().renew_at = Some(jiff::Timestamp::now() - jiff::SignedDuration::from_secs(1));
    std::fs::write(&state, serde_json::to_vec(&record).unwrap()).unwrap();
    book.down.store(true, std::sync::atomic::Ordering::SeqCst);

    let mut r = runner(&m, &out);
    let reports = r.pass().await.unwrap();
    let outcome = reports[0].result.as_ref().unwrap();
    assert!(
        matches!(&outcome.action, Action::Failed { error } if error.reason() == "ProviderUnavailable"),
        "{outcome:?}"
    );
    assert_eq!(outcome.failures, 1);
    assert_eq!(
        std::fs::read_to_string(out.join("team-a/rot-token/access_token")).unwrap(),
        token,
        "last good token kept"
    );
    // The next pass is within the backoff: no new attempt.
    let reports = r.pass().await.unwrap();
    assert_eq!(reports[0].result.as_ref().unwrap().action, Action::BackingOff);
    assert!(
        reports[0].line().contains("[ProviderUnavailable]"),
        "{}",
        reports[0].line()
    );
    assert_eq!(book.requests(), 2, "the first issuance and the one failed renewal");
}

#[tokio::test]
async fn cross_namespace_references_and_missing_secrets_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(
        tmp.path().join("x.yaml"),
        r#"
apiVersion: connectorauth.dev/v1alpha1
kind: ConnectorAuth
metadata: {name: thief, namespace: tenant-a}
spec:
  credentialsRef: {name: bank, namespace: tenant-b}
  apiKey: {}
---
apiVersion: connectorauth.dev/v1alpha1
kind: ConnectorAuth
metadata: {name: orphan, namespace: tenant-a}
spec:
  credentialsRef: {name: nowhere}
  apiKey: {}
---
apiVersion: v1
kind: Secret
metadata: {name: bank, namespace: tenant-b}
data: {api_key: c2VjcmV0}
"#,
    )
    .unwrap();
    let reports = runner(tmp.path(), &tmp.path().join("out")).pass().await.unwrap();
    let lines: Vec<String> = reports.iter().map(|r| r.line()).collect();
    assert!(lines[0].contains("[CrossNamespaceReference]"), "{}", lines[0]);
    assert!(
        lines[1].contains("credentials Secret tenant-a/nowhere not found"),
        "{}",
        lines[1]
    );
    assert!(!tmp.path().join("out/tenant-a").exists(), "nothing published");
}

/// Manifests as JSON documents (valid YAML), so PEM text needs no block scalars.
fn write_documents(path: &Path, docs: &[serde_json::Value]) {
    let text: Vec<String> = docs.iter().map(|d| serde_json::to_string_pretty(d).unwrap()).collect();
    std::fs::write(path, text.join("\n---\n")).unwrap();
}

fn tls_resource(name: &str, token_url: &str, tls: serde_json::Value) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "connectorauth.dev/v1alpha1", "kind": "ConnectorAuth",
        "metadata": {"name": name, "namespace": "team-a"},
        "spec": {
            "credentialsRef": {"name": "creds"},
            "oauth2": {"tokenUrl": token_url, "clientAuth": "client_secret_post"},
            "tls": tls,
        },
    })
}

#[tokio::test]
async fn tls_material_comes_from_secret_and_config_map_manifests_like_in_a_cluster() {
    use support::tls::*;
    let pki = pki();
    let hits = std::sync::Arc::new(Hits::default());
    let provider = serve_tls(token_router(hits.clone(), None), &pki.server, Some(&pki.client_ca)).await;
    let url = format!("{}/oauth/token", provider.url);
    let tmp = tempfile::tempdir().unwrap();
    let b64 = |s: &str| base64::Engine::encode(&base64::engine::general_purpose::STANDARD, s);
    write_documents(
        &tmp.path().join("m.yaml"),
        &[
            serde_json::json!({
                "apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": "creds", "namespace": "team-a"},
                "stringData": {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET},
            }),
            // As `kubectl create configmap corp-ca --from-file=ca.crt=ca.pem -o yaml` writes it.
            serde_json::json!({
                "apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "corp-ca", "namespace": "team-a"},
                "data": {"ca.crt": pki.ca},
            }),
            // As `kubectl create secret tls client-tls --cert=… --key=… -o yaml` writes it.
            serde_json::json!({
                "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
                "metadata": {"name": "client-tls", "namespace": "team-a"},
                "data": {"tls.crt": b64(&pki.client.cert), "tls.key": b64(&pki.client.key)},
            }),
            tls_resource(
                "mtls",
                &url,
                serde_json::json!({
                    "caBundleRef": {"kind": "ConfigMap", "name": "corp-ca"},
                    "clientCertificateRef": {"name": "client-tls"},
                }),
            ),
            tls_resource(
                "no-ca",
                &url,
                serde_json::json!({"caBundleRef": {"kind": "ConfigMap", "name": "elsewhere"}}),
            ),
        ],
    );
    let out = tmp.path().join("out");
    let reports = runner(tmp.path(), &out).pass().await.unwrap();
    assert!(reports[0].ok(), "{}", reports[0].line());
    let token = std::fs::read_to_string(out.join("team-a/mtls-token/access_token")).unwrap();
    assert_eq!(token, "tls-at-1");
    assert!(!reports[1].ok());
    assert!(
        reports[1].line().contains(
            "spec.tls.caBundleRef: ConfigMap elsewhere not found in the resource's namespace (key `ca.crt` is read from it) [ReferenceNotFound]"
        ),
        "{}",
        reports[1].line()
    );
    assert_eq!(hits.get(), 1);
}

#[tokio::test]
async fn insecure_skip_verify_works_and_is_warned_about_once() {
    use support::tls::*;
    let pki = pki();
    let hits = std::sync::Arc::new(Hits::default());
    let provider = serve_tls(token_router(hits.clone(), None), &pki.self_signed, None).await;
    let tmp = tempfile::tempdir().unwrap();
    let creds = serde_json::json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "creds", "namespace": "team-a"},
        "stringData": {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET},
    });
    let lab = |insecure: bool| {
        tls_resource(
            "lab",
            &format!("{}/oauth/token", provider.url),
            serde_json::json!({"insecureSkipVerify": insecure}),
        )
    };
    let manifests = tmp.path().join("m.yaml");
    write_documents(&manifests, &[creds.clone(), lab(true)]);
    let mut runner = runner(&manifests, &tmp.path().join("out"));

    let first = runner.pass().await.unwrap();
    assert!(first[0].ok(), "{}", first[0].line());
    assert_eq!(
        first[0].warning_line().unwrap(),
        "WARNING team-a/lab: spec.tls.insecureSkipVerify is true: the token endpoint's certificate is not verified, \
         so credentials and tokens may be exchanged with an impostor; set spec.tls.caBundleRef for a private CA instead"
    );
    let second = runner.pass().await.unwrap();
    assert!(second[0].warning.is_none(), "warned once");

    // Unset and set again: warned again.
    write_documents(&manifests, &[creds.clone(), lab(false)]);
    assert!(runner.pass().await.unwrap()[0].warning.is_none());
    write_documents(&manifests, &[creds, lab(true)]);
    assert!(runner.pass().await.unwrap()[0].warning.is_some());
    assert_eq!(hits.get(), 1, "the valid token is kept throughout");
}

/// A store whose saves fail a given number of times, recording what was saved.
struct FlakyStore {
    /// Saves that succeed before `fail_saves` fail.
    ok_saves: AtomicU32,
    fail_saves: AtomicU32,
    saved: Mutex<Option<Record>>,
    published: Mutex<Option<BTreeMap<String, String>>>,
}

impl Store for FlakyStore {
    async fn load(&self) -> Result<Option<Record>, StoreError> {
        Ok(self.saved.lock().unwrap().clone())
    }
    async fn save(&self, record: &Record) -> Result<(), StoreError> {
        if self.ok_saves.load(Ordering::SeqCst) > 0 {
            self.ok_saves.fetch_sub(1, Ordering::SeqCst);
        } else if self.fail_saves.load(Ordering::SeqCst) > 0 {
            self.fail_saves.fetch_sub(1, Ordering::SeqCst);
            return Err(StoreError::new("state", std::io::Error::other("disk full")));
        }
        *self.saved.lock().unwrap() = Some(record.clone());
        Ok(())
    }
    async fn publish(&self, data: &BTreeMap<String, String>) -> Result<bool, StoreError> {
        let mut p = self.published.lock().unwrap();
        let changed = p.as_ref() != Some(data);
        *p = Some(data.clone());
        Ok(changed)
    }
}

#[tokio::test]
async fn a_rotated_refresh_token_that_cannot_be_persisted_is_held_and_never_reused() {
    let (base, book) = rotating(3600).await;
    let engine = engine();
    let g = refresh_only(&engine, &base, "rt-seed");
    // The write-ahead mark is stored; then every save of the answer fails (1 + 5 retries), then
    // the disk recovers.
    let store = FlakyStore {
        ok_saves: AtomicU32::new(1),
        fail_saves: AtomicU32::new(6),
        saved: Mutex::new(None),
        published: Mutex::new(None),
    };
    let mut unsaved = Unsaved::default();
    let now = jiff::Timestamp::now();

    let err = driver::reconcile(&engine, &g, &store, &mut unsaved, &Lead::always(), now)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("disk full"));
    assert!(
        store.published.lock().unwrap().is_none(),
        "nothing is published before the state is durable"
    );
    assert_eq!(book.requests(), 1);
    assert!(
        store.saved.lock().unwrap().as_ref().unwrap().in_flight.is_some(),
        "the seed was marked before it was sent"
    );

    // Next pass: the held record is persisted first (clearing the mark), so the seed is not
    // sent again and the mark is not taken for an interrupted refresh.
    let outcome = driver::reconcile(&engine, &g, &store, &mut unsaved, &Lead::always(), now)
        .await
        .unwrap();
    assert_eq!(outcome.action, Action::Kept);
    assert!(outcome.written);
    assert_eq!(book.requests(), 1, "no second token call");
    assert!(!book.family_revoked());
    let saved = store.saved.lock().unwrap().clone().unwrap();
    assert!(saved.in_flight.is_none());
    assert!(saved.token.unwrap().refresh_token.unwrap().expose().starts_with("rt-"));
}

#[tokio::test]
async fn a_process_that_dies_holding_the_answer_leaves_the_token_in_doubt_never_resent() {
    let (base, book) = rotating(3600).await;
    let engine = engine();
    let g = refresh_only(&engine, &base, "rt-seed");
    let store = FlakyStore {
        ok_saves: AtomicU32::new(1),
        fail_saves: AtomicU32::new(6),
        saved: Mutex::new(None),
        published: Mutex::new(None),
    };
    let now = jiff::Timestamp::now();
    driver::reconcile(&engine, &g, &store, &mut Unsaved::default(), &Lead::always(), now)
        .await
        .unwrap_err();
    assert_eq!(book.requests(), 1);

    // A new process: the answer (held in the old one's memory) is gone, the mark is stored.
    let outcome = driver::reconcile(&engine, &g, &store, &mut Unsaved::default(), &Lead::always(), now)
        .await
        .unwrap();
    assert!(
        matches!(&outcome.action, Action::Failed { error } if error.reason() == "RefreshTokenInDoubt"),
        "{outcome:?}"
    );
    assert_eq!(book.requests(), 1, "the used seed is not sent again");
    assert!(!book.family_revoked());
    assert!(
        outcome
            .last_error
            .as_ref()
            .is_some_and(|f| f.message.contains("credentials Secret (key `refresh_token`)")),
        "{outcome:?}"
    );

    // A new onboarding token is used at once.
    book.refresh.lock().unwrap().insert("rt-new".into(), (7, true));
    let g = refresh_only(&engine, &base, "rt-new");
    let outcome = driver::reconcile(&engine, &g, &store, &mut Unsaved::default(), &Lead::always(), now)
        .await
        .unwrap();
    assert!(matches!(outcome.action, Action::Issued { .. }), "{outcome:?}");
    assert_eq!(book.requests(), 2);
    assert!(!book.family_revoked());
    assert!(store.saved.lock().unwrap().as_ref().unwrap().in_flight.is_none());
}

/// Runs `local --once` over one manifest file `name` holding `yaml`; the output folder is
/// `out` beside it.
fn local_once(name: &str, yaml: &str) -> (std::process::Output, tempfile::TempDir) {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join(name), yaml).unwrap();
    let out = Command::new(BIN)
        .args(["local", "--once", "--allow-private-token-urls", "--manifests"])
        .arg(tmp.path().join(name))
        .arg("--output")
        .arg(tmp.path().join("out"))
        .output()
        .unwrap();
    (out, tmp)
}

#[test]
fn the_cli_once_exits_non_zero_on_failure_and_prints_the_reason() {
    let (out, _tmp) = local_once(
        "bad.yaml",
        "apiVersion: connectorauth.dev/v1alpha1\nkind: ConnectorAuth\nmetadata: {name: k}\nspec:\n  credentialsRef: {name: c}\n  apiKey: {key: '{{ apikey }}'}\n---\napiVersion: v1\nkind: Secret\nmetadata: {name: c}\nstringData: {api_key: hunter2}\n",
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("uses undefined variable `apikey`; available: api_key, now [UndefinedVariable]"),
        "{stdout}"
    );
    assert!(!stdout.contains("hunter2"));
}

#[test]
fn the_cli_refuses_manifests_the_api_server_would_refuse() {
    let (out, _tmp) = local_once(
        "two.yaml",
        "apiVersion: connectorauth.dev/v1alpha1\nkind: ConnectorAuth\nmetadata: {name: k}\nspec:\n  credentialsRef: {name: c}\n  apiKey: {}\n  jwt: {login: {url: 'https://x'}}\n",
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr.contains("two.yaml (document 1): refused by the CRD's validation rules"),
        "{stderr}"
    );
    assert!(stderr.contains("exactly one scheme must be set"), "{stderr}");
}

#[test]
fn the_cli_refuses_a_misspelt_field_naming_its_path_and_the_field_meant() {
    let (out, tmp) = local_once(
        "typo.yaml",
        "apiVersion: connectorauth.dev/v1alpha1\nkind: ConnectorAuth\nmetadata: {name: k, labelz: {a: b}}\nspec:\n  credentialsRef: {name: c}\n  refreshableToken:\n    authorization: {url: 'http://127.0.0.1:9/login', methd: GET}\n",
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(
            "typo.yaml (document 1): unknown field \"metadata.labelz\" (did you mean \"labels\"?); \
             unknown field \"spec.refreshableToken.authorization.methd\" (did you mean \"method\"?); \
             kubectl apply would refuse them too"
        ),
        "{stderr}"
    );
    assert!(!tmp.path().join("out").join(".state").exists(), "nothing was run");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_consent_is_printed_once_not_on_every_pass() {
    // 1 s tokens next to the consent resource: every provider request is a further pass.
    let (base, book) = rotating(1).await;
    let tmp = tempfile::tempdir().unwrap();
    let (m, out) = (tmp.path().join("m"), tmp.path().join("out"));
    write_manifests(&m, &base, "rt-seed");
    std::fs::write(
        m.join("consent.yaml"),
        r#"
apiVersion: v1
kind: Secret
metadata: {name: idp-credentials}
stringData: {client_id: c, client_secret: s}
---
apiVersion: connectorauth.dev/v1alpha1
kind: ConnectorAuth
metadata: {name: idp}
spec:
  credentialsRef: {name: idp-credentials}
  oauth2:
    grantType: authorizationCode
    tokenUrl: "http://127.0.0.1:9/token"
    authorizationUrl: "https://idp.example/auth?client_id={{ client_id }}&redirect_uri={{ redirect_url | urlencode }}"
"#,
    )
    .unwrap();
    let mut child = std::process::Command::new(BIN)
        .args([
            "local",
            "--allow-private-token-urls",
            "--poll",
            "100ms",
            "--callback-addr",
            "127.0.0.1:0",
            "-m",
        ])
        .arg(&m)
        .arg("-o")
        .arg(&out)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut waited = Duration::ZERO;
    while book.requests() < 4 {
        assert!(child.try_wait().unwrap().is_none(), "local mode exited");
        assert!(
            waited < Duration::from_secs(60),
            "only {} token requests",
            book.requests()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
        waited += Duration::from_millis(100);
    }
    child.kill().unwrap();
    let stdout = String::from_utf8(child.wait_with_output().unwrap().stdout).unwrap();
    let consent: Vec<&str> = stdout.lines().filter(|l| l.contains("CONSENT")).collect();
    assert_eq!(consent.len(), 1, "{stdout}");
    assert!(consent[0].contains("https://idp.example/auth?client_id=c"), "{stdout}");
    let tokens = stdout.lines().filter(|l| l.starts_with("team-a/rot ")).count();
    assert!(tokens >= 3, "each published token is printed: {stdout}");
}

/// Runs `demo` for `duration` with tokens living `ttl`, on a free port.
fn demo(duration: &str, ttl: &str, log_level: &str) -> std::process::Output {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let tmp = tempfile::tempdir().unwrap();
    let demo = std::fs::read_to_string("examples/demo/demo.yaml")
        .unwrap()
        .replace("127.0.0.1:18080", &format!("127.0.0.1:{port}"));
    std::fs::write(tmp.path().join("demo.yaml"), demo).unwrap();
    Command::new(BIN)
        .args(["--log-level", log_level, "demo", "--duration", duration, "--ttl", ttl])
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--manifests")
        .arg(tmp.path())
        .arg("--output")
        .arg(tmp.path().join("out"))
        .env_remove("NO_COLOR")
        .output()
        .unwrap()
}

#[test]
fn the_demo_issues_refreshes_and_proves_the_token_works() {
    let out = demo("4s", "2s", "warn");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains(" issued "), "{stdout}");
    assert!(stdout.contains(" refreshed "), "{stdout}");
    assert!(stdout.contains("-> HTTP 200"), "{stdout}");
}

#[test]
fn text_logs_written_to_a_pipe_carry_no_colour_codes() {
    let out = demo("1s", "60s", "debug");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("token response"), "{stderr}");
    assert!(!stderr.contains('\x1b'), "{stderr:?}");
}
