//! `connector-auth-operator proxy`, in-process, in front of loopback upstreams: the credential
//! of a mounted Secret folder (in the kubelet's `..data` symlink layout) added to every
//! request, the workload's own `Authorization` dropped, a swapped Secret used by the next
//! request with no restart, an expired token never sent, other hosts refused, a 401 answered
//! by asking the operator to renew and sending once more, and many requests across rotations
//! with none sent with an old token.

mod support;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use connector_auth_operator::proxy::{Proxy, ProxyConfig};
use jiff::{Timestamp, ToSpan};
use serde_json::json;
use support::*;

/// A folder as the kubelet mounts a Secret: the files are symlinks into `..data`, itself a
/// symlink to a timestamped folder; an update writes a new folder and swaps `..data` at once.
struct Mounted {
    dir: PathBuf,
    version: AtomicUsize,
}

impl Mounted {
    fn new(dir: &Path) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        Mounted {
            dir: dir.to_path_buf(),
            version: AtomicUsize::new(0),
        }
    }

    /// Publishes `token` (expiring at `expires`) as the operator's output would be.
    fn publish(&self, token: &str, expires: Timestamp) {
        let v = self.version.fetch_add(1, Ordering::SeqCst);
        let data = self.dir.join(format!("..2026_12_07_{v:04}"));
        std::fs::create_dir_all(&data).unwrap();
        let headers = json!({"Authorization": format!("Bearer {token}")}).to_string();
        for (k, value) in [
            ("headers.json", headers.as_str()),
            ("access_token", token),
            ("expires_at", &expires.to_string()),
            ("token_type", "Bearer"),
        ] {
            std::fs::write(data.join(k), value).unwrap();
        }
        let tmp = self.dir.join("..data_tmp");
        let _ = std::fs::remove_file(&tmp);
        std::os::unix::fs::symlink(data.file_name().unwrap(), &tmp).unwrap();
        std::fs::rename(&tmp, self.dir.join("..data")).unwrap();
        for k in ["headers.json", "access_token", "expires_at", "token_type"] {
            let link = self.dir.join(k);
            if std::fs::symlink_metadata(&link).is_err() {
                std::os::unix::fs::symlink(format!("..data/{k}"), &link).unwrap();
            }
        }
    }
}

/// An API that accepts only the token it considers current, and records what it saw.
#[derive(Default)]
struct Upstream {
    valid: Mutex<Vec<String>>,
    seen: Mutex<Vec<HashMap<String, String>>>,
    requests: AtomicUsize,
    refused: AtomicUsize,
}

async fn upstream() -> (String, Arc<Upstream>) {
    let book = Arc::new(Upstream::default());
    let app = Router::new()
        .fallback(
            |axum::extract::State(b): axum::extract::State<Arc<Upstream>>,
             uri: axum::http::Uri,
             h: HeaderMap,
             body: axum::body::Bytes| async move {
                b.requests.fetch_add(1, Ordering::SeqCst);
                let headers: HashMap<String, String> = h
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or_default().to_string()))
                    .collect();
                b.seen.lock().unwrap().push(headers);
                let token = h
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.strip_prefix("Bearer "))
                    .unwrap_or_default()
                    .to_string();
                if !b.valid.lock().unwrap().contains(&token) {
                    b.refused.fetch_add(1, Ordering::SeqCst);
                    return (StatusCode::UNAUTHORIZED, "invalid token".to_string()).into_response();
                }
                (StatusCode::OK, format!("{} {}", uri, body.len())).into_response()
            },
        )
        .with_state(book.clone())
        .layer(axum::extract::DefaultBodyLimit::disable());
    (serve(app).await, book)
}

/// A GET of `path` exactly as written (clients normalise dot segments before sending).
async fn raw_get(base: &str, path: &str) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = base.trim_start_matches("http://");
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out.split(' ').nth(1).unwrap().parse().unwrap()
}

fn config(upstream: &str, credentials: &Path, extra: serde_json::Value) -> ProxyConfig {
    let mut route = json!({"prefix": "/crm/", "upstream": format!("{upstream}/v2"), "credentials": credentials});
    if let Some(m) = extra.as_object() {
        for (k, v) in m {
            route[k] = v.clone();
        }
    }
    ProxyConfig::from_yaml(&json!({"listen": "127.0.0.1:0", "routes": [route]}).to_string()).unwrap()
}

async fn start(config: &ProxyConfig, kube: Option<kube::Client>) -> String {
    let proxy = Arc::new(Proxy::new(config, kube).unwrap());
    serve(connector_auth_operator::proxy::router(proxy)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_credential_is_added_the_workloads_own_dropped_and_a_swapped_secret_used_at_once() {
    let (up, book) = upstream().await;
    let tmp = tempfile::tempdir().unwrap();
    let mount = Mounted::new(&tmp.path().join("crm-token"));
    book.valid.lock().unwrap().push("t-1".into());
    mount.publish("t-1", Timestamp::now() + 1.hour());
    let proxy = start(&config(&up, &mount.dir, json!({})), None).await;
    let http = reqwest::Client::new();

    let resp = http
        .post(format!("{proxy}/crm/items?page=2"))
        .header("authorization", "Bearer the-workloads-own")
        .header("x-request-id", "r-1")
        .body("hello")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.text().await.unwrap(),
        "/v2/items?page=2 5",
        "path, query and body forwarded"
    );
    let seen = book.seen.lock().unwrap()[0].clone();
    assert_eq!(seen["authorization"], "Bearer t-1");
    assert_eq!(seen["x-request-id"], "r-1");

    // The operator renews, the kubelet swaps `..data`: the next request has the new token.
    book.valid.lock().unwrap().push("t-2".into());
    mount.publish("t-2", Timestamp::now() + 1.hour());
    book.valid.lock().unwrap().retain(|t| t != "t-1");
    let resp = http.get(format!("{proxy}/crm/items")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(book.seen.lock().unwrap()[1]["authorization"], "Bearer t-2");

    // A token that expired is not sent: 503 until a fresh one is there.
    mount.publish("t-old", Timestamp::now() - 1.second());
    let resp = http.get(format!("{proxy}/crm/items")).send().await.unwrap();
    assert_eq!(resp.status(), 503);
    assert!(resp.text().await.unwrap().contains("expired"));
    assert_eq!(book.requests.load(Ordering::SeqCst), 2, "nothing was sent with it");
    mount.publish("t-2", Timestamp::now() + 1.hour());
    assert_eq!(
        http.get(format!("{proxy}/crm/items")).send().await.unwrap().status(),
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_for_other_hosts_are_refused_and_never_leave() {
    let (up, book) = upstream().await;
    let (elsewhere, other) = upstream().await;
    let tmp = tempfile::tempdir().unwrap();
    let mount = Mounted::new(&tmp.path().join("crm-token"));
    mount.publish("t-1", Timestamp::now() + 1.hour());
    let proxy = start(&config(&up, &mount.dir, json!({})), None).await;
    // A client configured to use it as a forward proxy sends absolute-form requests.
    let via = reqwest::Client::builder()
        .proxy(reqwest::Proxy::http(&proxy).unwrap())
        .build()
        .unwrap();
    let resp = via.get(format!("{elsewhere}/crm/steal")).send().await.unwrap();
    assert_eq!(resp.status(), 403);
    // The Host header chooses nothing either: the route's upstream is where it goes.
    let resp = reqwest::Client::new()
        .get(format!("{proxy}/crm/x"))
        .header("host", elsewhere.trim_start_matches("http://"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401, "the upstream's answer (its token list is empty)");
    assert_eq!(
        other.requests.load(Ordering::SeqCst),
        0,
        "the other host was never contacted"
    );
    assert_eq!(book.requests.load(Ordering::SeqCst), 1);
    // Dot segments do not walk out of the route's path; unrouted paths are not forwarded.
    for path in ["/crm/../admin", "/crm/%2e%2e/admin", "/crm/a/%2E./%2e%2E/b"] {
        assert_eq!(raw_get(&proxy, path).await, 400, "{path}");
    }
    assert_eq!(reqwest::get(format!("{proxy}/other/x")).await.unwrap().status(), 404);
}

/// A 401 from upstream: the proxy asks the operator to renew (the `connectorauth.dev/renew`
/// annotation, through the API), waits for the new Secret and sends the request once more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_401_asks_for_a_renewal_and_the_request_is_sent_again_with_the_new_token() {
    let (up, book) = upstream().await;
    let server = api_server().await;
    let ca: connector_auth_operator::api::ConnectorAuth = serde_json::from_value(json!({
        "apiVersion": "connectorauth.dev/v1alpha1", "kind": "ConnectorAuth",
        "metadata": {"name": "crm", "namespace": "team-a"},
        "spec": {"credentialsRef": {"name": "c"}, "apiKey": {}},
    }))
    .unwrap();
    kube::Api::<connector_auth_operator::api::ConnectorAuth>::namespaced(server.client(), "team-a")
        .create(&Default::default(), &ca)
        .await
        .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let mount = Arc::new(Mounted::new(&tmp.path().join("crm-token")));
    // The provider revoked t-1 early; the proxy does not know yet.
    mount.publish("t-1", Timestamp::now() + 1.hour());
    let proxy = start(
        &config(
            &up,
            &mount.dir,
            json!({"renew": {"namespace": "team-a", "name": "crm"}}),
        ),
        Some(server.client()),
    )
    .await;
    // The operator, as far as the proxy can tell: it sees the annotation and publishes t-2.
    let (m, b, api) = (
        mount.clone(),
        book.clone(),
        kube::Api::<connector_auth_operator::api::ConnectorAuth>::namespaced(server.client(), "team-a"),
    );
    let operator = tokio::spawn(async move {
        loop {
            let ca = api.get("crm").await.unwrap();
            if ca
                .metadata
                .annotations
                .unwrap_or_default()
                .contains_key("connectorauth.dev/renew")
            {
                b.valid.lock().unwrap().push("t-2".into());
                m.publish("t-2", Timestamp::now() + 1.hour());
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    });
    let resp = reqwest::Client::new()
        .post(format!("{proxy}/crm/orders"))
        .body("{\"id\": 1}")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap(), "/v2/orders 9", "the same body, sent again");
    operator.await.unwrap();
    let seen = book.seen.lock().unwrap().clone();
    assert_eq!(
        seen.iter().map(|h| h["authorization"].as_str()).collect::<Vec<_>>(),
        ["Bearer t-1", "Bearer t-2"]
    );
}

/// Many requests at once across token rotations (the old token refused the moment the new one
/// is published): none is sent with a token the upstream no longer accepts once the new one
/// is there, and none fails. Latency is the benchmark's business (BENCHMARKS.md).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_across_rotations_never_carry_a_replaced_token() {
    let (up, book) = upstream().await;
    let tmp = tempfile::tempdir().unwrap();
    let mount = Arc::new(Mounted::new(&tmp.path().join("crm-token")));
    book.valid.lock().unwrap().push("t-0".into());
    mount.publish("t-0", Timestamp::now() + 1.hour());
    let proxy = start(&config(&up, &mount.dir, json!({})), None).await;
    let http = reqwest::Client::new();
    let statuses = Arc::new(Mutex::new(Vec::new()));
    for round in 1..=5 {
        // The new token is accepted before it is published, the old one only until then.
        let new = format!("t-{round}");
        book.valid.lock().unwrap().push(new.clone());
        mount.publish(&new, Timestamp::now() + 1.hour());
        book.valid.lock().unwrap().retain(|t| *t == new);
        let batch: Vec<_> = (0..200)
            .map(|_| {
                let (http, url, statuses) = (http.clone(), format!("{proxy}/crm/ping"), statuses.clone());
                tokio::spawn(async move {
                    let s = http.get(url).send().await.map(|r| r.status().as_u16()).unwrap_or(0);
                    statuses.lock().unwrap().push(s);
                })
            })
            .collect();
        for t in batch {
            t.await.unwrap();
        }
    }
    let statuses = statuses.lock().unwrap().clone();
    assert_eq!(statuses.len(), 1000);
    assert!(
        statuses.iter().all(|s| *s == 200),
        "{:?}",
        statuses.iter().filter(|s| **s != 200).count()
    );
    assert_eq!(book.refused.load(Ordering::SeqCst), 0);
}

/// DPoP end to end: the operator (local mode) gets a token bound to its key, answering the
/// server's nonce; the proxy signs a fresh proof for each API call with the same key (and the
/// API's own nonce), so the workload sends a plain request and never sees the key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dpop_bound_tokens_from_the_operator_are_usable_only_through_the_proxy() {
    let (base, book) = dpop_server().await;
    let tmp = tempfile::tempdir().unwrap();
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .unwrap()
        .serialize_pem();
    let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "dpop-credentials"},
        "stringData": {"client_id": "dpop-client", "dpop.key": key}});
    let ca = json!({"apiVersion": "connectorauth.dev/v1alpha1", "kind": "ConnectorAuth", "metadata": {"name": "bank"},
        "spec": {"credentialsRef": {"name": "dpop-credentials"}, "oauth2": {
            "tokenUrl": format!("{base}/token"), "clientAuth": "client_secret_post", "dpop": {}}}});
    std::fs::write(tmp.path().join("m.yaml"), format!("{secret}\n---\n{ca}\n")).unwrap();
    let out = tmp.path().join("out");
    let mut runner = connector_auth_operator::local::LocalRunner::new(engine(), tmp.path().join("m.yaml"), out.clone());
    let reports = runner.pass().await.unwrap();
    assert!(reports[0].ok(), "{}", reports[0].line());
    assert_eq!(
        *book.token_requests.lock().unwrap(),
        2,
        "the first proof was answered with a nonce, the second accepted"
    );
    let folder = out.join("default/bank-token");
    assert_eq!(std::fs::read_to_string(folder.join("token_type")).unwrap(), "DPoP");
    let headers = std::fs::read_to_string(folder.join("headers.json")).unwrap();
    assert!(headers.contains("\"Authorization\":\"DPoP "), "{headers}");

    // The token alone is refused: it is bound to the key.
    let at = std::fs::read_to_string(folder.join("access_token")).unwrap();
    let direct = reqwest::Client::new()
        .get(format!("{base}/accounts"))
        .header("authorization", format!("DPoP {at}"))
        .send()
        .await
        .unwrap();
    assert_eq!(direct.status(), 401);

    let key_file = tmp.path().join("dpop.key");
    std::fs::write(&key_file, &key).unwrap();
    let config = ProxyConfig::from_yaml(
        &json!({"listen": "127.0.0.1:0", "routes": [{"upstream": base, "credentials": folder, "dpop": {"privateKeyFile": key_file}}]})
            .to_string(),
    )
    .unwrap();
    let proxy = start(&config, None).await;
    let http = reqwest::Client::new();
    for path in ["/accounts", "/accounts/1/balances", "/accounts"] {
        let resp = http.get(format!("{proxy}{path}")).send().await.unwrap();
        assert_eq!(resp.status(), 200, "{path}");
    }
    let post = http.post(format!("{proxy}/payments")).body("{}").send().await.unwrap();
    assert_eq!(post.status(), 200);
    // The one refusal: the direct call without a proof.
    assert_eq!(book.refused(), ["api: 0 DPoP headers"]);
}

/// Certificate-bound tokens (RFC 8705): the operator gets the token over mutual TLS and the
/// provider binds it to that certificate (`cnf.x5t#S256`); the API accepts it only over a
/// connection with the same certificate, which the proxy presents from the same files.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_bound_tokens_go_through_the_proxy_with_the_same_client_certificate() {
    use axum::extract::ConnectInfo;
    use support::tls::{PeerCert, pki, serve_mtls_with_peers};
    let pki = pki();
    let bound: Arc<Mutex<HashMap<String, String>>> = Arc::default();
    let b = bound.clone();
    let app = Router::new()
        .route(
            "/token",
            axum::routing::post(move |ConnectInfo(peer): ConnectInfo<PeerCert>| {
                let b = b.clone();
                async move {
                    let at = format!("mtls-{}", rand::random::<u32>());
                    let Some(x5t) = peer.thumbprint else {
                        return (StatusCode::UNAUTHORIZED, "no client certificate").into_response();
                    };
                    b.lock().unwrap().insert(at.clone(), x5t);
                    axum::Json(json!({"access_token": at, "token_type": "Bearer", "expires_in": 3600})).into_response()
                }
            }),
        )
        .fallback({
            let b = bound.clone();
            move |ConnectInfo(peer): ConnectInfo<PeerCert>, h: HeaderMap| {
                let b = b.clone();
                async move {
                    let token = h
                        .get("authorization")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.strip_prefix("Bearer "))
                        .unwrap_or_default();
                    let bound_to = b.lock().unwrap().get(token).cloned();
                    if bound_to.is_some() && bound_to == peer.thumbprint {
                        StatusCode::OK
                    } else {
                        StatusCode::UNAUTHORIZED
                    }
                }
            }
        });
    let base = serve_mtls_with_peers(app, &pki.server, &pki.client_ca).await;

    let tmp = tempfile::tempdir().unwrap();
    let manifests = json!([
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "mtls-credentials"}, "stringData": {"client_id": "c", "client_secret": "s"}},
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "client-cert"}, "stringData": {"tls.crt": pki.client.cert, "tls.key": pki.client.key}},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "server-ca"}, "data": {"ca.crt": pki.ca}},
        {"apiVersion": "connectorauth.dev/v1alpha1", "kind": "ConnectorAuth", "metadata": {"name": "bank"},
            "spec": {"credentialsRef": {"name": "mtls-credentials"}, "oauth2": {"tokenUrl": format!("{base}/token")},
                "tls": {"clientCertificateRef": {"name": "client-cert"}, "caBundleRef": {"kind": "ConfigMap", "name": "server-ca"}}}},
    ]);
    let docs: Vec<String> = manifests.as_array().unwrap().iter().map(|d| d.to_string()).collect();
    std::fs::write(tmp.path().join("m.yaml"), docs.join("\n---\n")).unwrap();
    let out = tmp.path().join("out");
    let mut runner = connector_auth_operator::local::LocalRunner::new(engine(), tmp.path().join("m.yaml"), out.clone());
    let reports = runner.pass().await.unwrap();
    assert!(reports[0].ok(), "{}", reports[0].line());

    for (name, text) in [
        ("ca.crt", &pki.ca),
        ("tls.crt", &pki.client.cert),
        ("tls.key", &pki.client.key),
    ] {
        std::fs::write(tmp.path().join(name), text).unwrap();
    }
    let folder = out.join("default/bank-token");
    let config = ProxyConfig::from_yaml(
        &json!({"listen": "127.0.0.1:0", "routes": [{"upstream": base, "credentials": folder, "tls": {
            "caFile": tmp.path().join("ca.crt"), "certFile": tmp.path().join("tls.crt"), "keyFile": tmp.path().join("tls.key")}}]})
        .to_string(),
    )
    .unwrap();
    let proxy = start(&config, None).await;
    assert_eq!(reqwest::get(format!("{proxy}/accounts")).await.unwrap().status(), 200);
    // Published as certificate-bound: the thumbprint the provider bound the token to.
    let token = std::fs::read_to_string(folder.join("access_token")).unwrap();
    assert_eq!(
        std::fs::read_to_string(folder.join("cnf_x5t_s256")).ok(),
        bound.lock().unwrap().get(&token).cloned()
    );

    // The token without the certificate does not get through: no handshake without one.
    let direct = reqwest::Client::builder()
        .tls_certs_only(reqwest::Certificate::from_pem_bundle(pki.ca.as_bytes()).unwrap())
        .build()
        .unwrap()
        .get(format!("{base}/accounts"))
        .bearer_auth(&token)
        .send()
        .await;
    assert!(direct.is_err() || direct.unwrap().status() == 401);
}

/// The sidecar example's configuration is one the proxy accepts.
#[test]
fn the_sidecar_examples_configuration_is_valid() {
    let text = std::fs::read_to_string(format!(
        "{}/examples/proxy-sidecar/deployment.yaml",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let docs: Vec<serde_json::Value> = text
        .split("\n---\n")
        .map(|d| serde_saphyr::from_str(d).unwrap())
        .collect();
    let config = docs[0]["data"]["proxy.yaml"].as_str().unwrap();
    let c = ProxyConfig::from_yaml(config).unwrap();
    assert_eq!(c.routes[0].upstream, "https://api.crm.example.com/v2");
    assert!(ProxyConfig::from_yaml("routes: [{prefix: crm, upstream: 'https://x', credentials: /c}]").is_err());
    assert!(ProxyConfig::from_yaml("routes: [{upstream: 'ftp://x', credentials: /c}]").is_err());
    assert!(ProxyConfig::from_yaml("routes: [{upstream: 'https://x', credentials: /c, upstrem: 1}]").is_err());
}

/// HTTP/2 to the proxy (prior knowledge, as a gRPC-style client speaks it) and a body larger
/// than what is kept for a retry, streamed through; no header value or key is ever logged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_and_streamed_bodies_go_through_and_nothing_secret_is_logged() {
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let logs = Captured::default();
    let writer = logs.clone();
    let _ = tracing_subscriber::fmt()
        .with_env_filter("trace")
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .try_init();
    let (up, book) = upstream().await;
    let tmp = tempfile::tempdir().unwrap();
    let mount = Mounted::new(&tmp.path().join("crm-token"));
    book.valid.lock().unwrap().push("secret-token-77".into());
    mount.publish("secret-token-77", Timestamp::now() + 1.hour());
    let proxy = start(&config(&up, &mount.dir, json!({})), None).await;
    let h2 = reqwest::Client::builder().http2_prior_knowledge().build().unwrap();
    let resp = h2.get(format!("{proxy}/crm/h2")).send().await.unwrap();
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    assert_eq!(resp.status(), 200);
    let big = vec![b'x'; 3 * 1024 * 1024];
    let chunks = futures::stream::iter(
        big.chunks(64 * 1024)
            .map(|c| Ok::<_, std::io::Error>(c.to_vec()))
            .collect::<Vec<_>>(),
    );
    let resp = reqwest::Client::new()
        .post(format!("{proxy}/crm/upload"))
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap(), format!("/v2/upload {}", big.len()));
    // A refused request is logged, by route and reason only.
    book.valid.lock().unwrap().clear();
    mount.publish("secret-token-88", Timestamp::now() - 1.second());
    assert_eq!(reqwest::get(format!("{proxy}/crm/x")).await.unwrap().status(), 503);
    let logs = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(logs.contains("request not forwarded"), "the proxy logged its work");
    for secret in ["secret-token-77", "secret-token-88"] {
        assert!(!logs.contains(secret), "{secret} was logged");
    }
}
