//! TLS and redirects of token requests, against real HTTPS servers on 127.0.0.1 with
//! certificates made at test time: verification on by default, a CA bundle from a Secret or a
//! ConfigMap, mutual TLS, `insecureSkipVerify`, redirects refused unless allowed and then
//! checked against the token-URL policy on every hop, one pooled client per TLS config.

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;

use connector_auth_operator::engine::policy::{Rule, UrlPolicy};
use connector_auth_operator::engine::tls::{self, Fetched, Kind, ObjectKey};
use connector_auth_operator::engine::{Engine, EngineError, HttpSettings, Inputs, TokenState};
use support::tls::*;
use support::{creds, engine, serve, spec};

/// A Secret or ConfigMap the test provides: kind, name, keys.
type Object<'a> = (Kind, &'a str, Vec<(&'a str, &'a str)>);

/// Obtains a token for `spec_yaml` with the TLS material of `objects` (looked up as the
/// controller and local mode do, through `tls::resolve`).
async fn obtain(engine: &Engine, spec_yaml: &str, objects: &[Object<'_>]) -> Result<TokenState, EngineError> {
    let spec = spec(spec_yaml);
    let mut fetched = Fetched::new();
    for obj in tls::references(&spec) {
        let data = objects
            .iter()
            .find(|(k, n, _)| *k == obj.kind && *n == obj.name)
            .map(|(_, _, d)| {
                d.iter()
                    .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
                    .collect::<BTreeMap<_, _>>()
            });
        fetched.insert(obj, data);
    }
    let inputs = Inputs {
        credentials: creds(&[("client_id", CLIENT_ID), ("client_secret", CLIENT_SECRET)]),
        http: tls::resolve(&spec, &fetched),
        ..Default::default()
    };
    let flow = connector_auth_operator::catalog::compile(engine, &spec)?;
    engine.obtain(&flow, &inputs, None, "fp", jiff::Timestamp::now()).await
}

async fn provider(server: &CertKey, client_ca: Option<&str>) -> (TlsServer, Arc<Hits>) {
    let hits = Arc::new(Hits::default());
    let s = serve_tls(token_router(hits.clone(), None), server, client_ca).await;
    (s, hits)
}

fn ca_ref(kind: &str, name: &str) -> String {
    format!("tls:\n  caBundleRef: {{kind: {kind}, name: {name}}}\n")
}

fn assert_no_material(e: &EngineError, pki: &Pki) {
    let text = format!("{e} {e:?}");
    for pem in [&pki.ca, &pki.client.cert, &pki.client.key, &pki.self_signed.cert] {
        // A line from the middle of each PEM: base64 of key or certificate bytes.
        let line = pem.lines().nth(2).unwrap();
        assert!(!text.contains(line), "material in the error: {text}");
    }
}

#[tokio::test]
async fn default_verification_refuses_a_self_signed_provider_with_a_clear_error() {
    let pki = pki();
    let (server, hits) = provider(&pki.self_signed, None).await;
    let e = obtain(&engine(), &token_spec(&format!("{}/oauth/token", server.url), ""), &[])
        .await
        .unwrap_err();
    assert_eq!(e.reason(), "TLSHandshakeFailed");
    let host = server.url.trim_start_matches("https://");
    assert_eq!(
        e.to_string(),
        format!(
            "login request to {host}: TLS handshake failed: the server's certificate is not trusted: it is not issued by the system's trusted CAs (set spec.tls.caBundleRef for a private CA)"
        )
    );
    assert!(e.is_transient(), "a provider may fix its certificate");
    assert_eq!(hits.get(), 0, "no request was sent");
    assert_no_material(&e, &pki);
}

#[tokio::test]
async fn a_ca_bundle_from_a_secret_or_a_config_map_makes_a_private_provider_work() {
    let pki = pki();
    let (server, hits) = provider(&pki.server, None).await;
    let url = format!("{}/oauth/token", server.url);
    let engine = engine();

    let from_secret = obtain(
        &engine,
        &token_spec(&url, &ca_ref("Secret", "corp-ca")),
        &[(Kind::Secret, "corp-ca", vec![("ca.crt", pki.ca.as_str())])],
    )
    .await
    .unwrap();
    assert_eq!(from_secret.access_token.expose(), "tls-at-1");

    let bundle = "tls:\n  caBundleRef: {kind: ConfigMap, name: trust, key: bundle.pem}\n";
    // A bundle of several CAs (trust-manager style): any of them may have issued the server's.
    let several = format!("{}{}", pki.other_ca, pki.ca);
    let from_config_map = obtain(
        &engine,
        &token_spec(&url, bundle),
        &[(Kind::ConfigMap, "trust", vec![("bundle.pem", several.as_str())])],
    )
    .await
    .unwrap();
    assert_eq!(from_config_map.access_token.expose(), "tls-at-2");
    assert_eq!(hits.get(), 2);

    // The bundle replaces the system's CAs: a CA that did not issue the server's certificate
    // is refused, and the message says which trust was used.
    let e = obtain(
        &engine,
        &token_spec(&url, &ca_ref("Secret", "wrong-ca")),
        &[(Kind::Secret, "wrong-ca", vec![("ca.crt", pki.other_ca.as_str())])],
    )
    .await
    .unwrap_err();
    assert_eq!(e.reason(), "TLSHandshakeFailed");
    assert!(
        e.to_string().ends_with(
            "the server's certificate is not trusted: it is not issued by the CA bundle of spec.tls.caBundleRef"
        ),
        "{e}"
    );
}

#[tokio::test]
async fn missing_or_bad_tls_material_names_the_object_and_key_but_never_the_content() {
    let pki = pki();
    let (server, hits) = provider(&pki.server, None).await;
    let url = format!("{}/oauth/token", server.url);
    let engine = engine();

    let e = obtain(&engine, &token_spec(&url, &ca_ref("ConfigMap", "corp-ca")), &[])
        .await
        .unwrap_err();
    assert_eq!(e.reason(), "ReferenceNotFound");
    assert_eq!(
        e.to_string(),
        "spec.tls.caBundleRef: ConfigMap corp-ca not found in the resource's namespace (key `ca.crt` is read from it)"
    );

    let e = obtain(
        &engine,
        &token_spec(&url, &ca_ref("ConfigMap", "corp-ca")),
        &[(Kind::ConfigMap, "corp-ca", vec![("ca.pem", pki.ca.as_str())])],
    )
    .await
    .unwrap_err();
    assert_eq!(e.reason(), "ReferenceNotFound");
    assert_eq!(
        e.to_string(),
        "spec.tls.caBundleRef: ConfigMap corp-ca has no key `ca.crt` (it has: ca.pem)"
    );

    // Not PEM at all: a private key where the CA should be.
    let e = obtain(
        &engine,
        &token_spec(&url, &ca_ref("Secret", "corp-ca")),
        &[(Kind::Secret, "corp-ca", vec![("ca.crt", pki.client.key.as_str())])],
    )
    .await
    .unwrap_err();
    assert_eq!(e.reason(), "InvalidTLSMaterial");
    assert!(
        e.to_string()
            .starts_with("spec.tls.caBundleRef: no certificate in key ca.crt of Secret corp-ca"),
        "{e}"
    );
    assert_no_material(&e, &pki);

    // A client certificate with somebody else's key.
    let mtls = "tls:\n  clientCertificateRef: {name: client-tls}\n";
    let e = obtain(
        &engine,
        &token_spec(
            &url,
            &format!("{mtls}  caBundleRef: {{kind: Secret, name: client-tls}}\n"),
        ),
        &[(
            Kind::Secret,
            "client-tls",
            vec![
                ("tls.crt", pki.client.cert.as_str()),
                ("tls.key", pki.stranger.key.as_str()),
                ("ca.crt", pki.ca.as_str()),
            ],
        )],
    )
    .await
    .unwrap_err();
    assert_eq!(e.reason(), "InvalidTLSMaterial");
    assert_eq!(
        e.to_string(),
        "spec.tls.clientCertificateRef: the private key in key tls.key of Secret client-tls does not belong to the certificate in key tls.crt of Secret client-tls"
    );
    assert_no_material(&e, &pki);

    let e = obtain(
        &engine,
        &token_spec(&url, mtls),
        &[(
            Kind::Secret,
            "client-tls",
            vec![("tls.crt", pki.client.cert.as_str()), ("tls.key", "garbage")],
        )],
    )
    .await
    .unwrap_err();
    assert_eq!(e.reason(), "InvalidTLSMaterial");
    assert!(
        e.to_string()
            .starts_with("spec.tls.clientCertificateRef: no private key in key tls.key of Secret client-tls"),
        "{e}"
    );
    assert_eq!(hits.get(), 0);
}

#[tokio::test]
async fn mutual_tls_is_refused_without_and_accepted_with_the_client_certificate() {
    let pki = pki();
    let (server, hits) = provider(&pki.server, Some(&pki.client_ca)).await;
    let url = format!("{}/oauth/token", server.url);
    let engine = engine();
    let ca = (Kind::ConfigMap, "corp-ca", vec![("ca.crt", pki.ca.as_str())]);

    let e = obtain(
        &engine,
        &token_spec(&url, &ca_ref("ConfigMap", "corp-ca")),
        std::slice::from_ref(&ca),
    )
    .await
    .unwrap_err();
    assert_eq!(e.reason(), "TLSHandshakeFailed");
    assert!(
        e.to_string()
            .ends_with("the server requires a client certificate (set spec.tls.clientCertificateRef)"),
        "{e}"
    );

    let mtls = "tls:\n  caBundleRef: {kind: ConfigMap, name: corp-ca}\n  clientCertificateRef: {name: client-tls}\n";
    // A kubernetes.io/tls Secret as cert-manager writes it (with ca.crt, which is ignored).
    fn client<'a>(c: &'a CertKey, pki: &'a Pki) -> Object<'a> {
        (
            Kind::Secret,
            "client-tls",
            vec![
                ("tls.crt", c.cert.as_str()),
                ("tls.key", c.key.as_str()),
                ("ca.crt", pki.client_ca.as_str()),
            ],
        )
    }
    let t = obtain(
        &engine,
        &token_spec(&url, mtls),
        &[ca.clone(), client(&pki.client, &pki)],
    )
    .await
    .unwrap();
    assert_eq!(t.access_token.expose(), "tls-at-1");

    // A certificate the server does not trust.
    let e = obtain(
        &engine,
        &token_spec(&url, mtls),
        &[ca.clone(), client(&pki.stranger, &pki)],
    )
    .await
    .unwrap_err();
    assert_eq!(e.reason(), "TLSHandshakeFailed");
    assert!(
        e.to_string()
            .contains("the server rejected the client certificate of spec.tls.clientCertificateRef"),
        "{e}"
    );
    assert_no_material(&e, &pki);
    assert_eq!(hits.get(), 1, "only the request with the right certificate got through");
    assert_eq!(server.refused.load(std::sync::atomic::Ordering::SeqCst), 2);
}

#[tokio::test]
async fn insecure_skip_verify_accepts_a_self_signed_provider() {
    let pki = pki();
    let (server, hits) = provider(&pki.self_signed, None).await;
    let t = obtain(
        &engine(),
        &token_spec(
            &format!("{}/oauth/token", server.url),
            "tls:\n  insecureSkipVerify: true\n",
        ),
        &[],
    )
    .await
    .unwrap();
    assert_eq!(t.access_token.expose(), "tls-at-1");
    assert_eq!(hits.get(), 1);
}

#[tokio::test]
async fn one_pooled_client_per_distinct_tls_config() {
    use std::sync::atomic::Ordering::SeqCst;
    let pki = pki();
    let (server, hits) = provider(&pki.server, None).await;
    let url = format!("{}/oauth/token", server.url);
    let engine = engine();
    let a = [(Kind::Secret, "corp-ca", vec![("ca.crt", pki.ca.as_str())])];
    for _ in 0..3 {
        obtain(&engine, &token_spec(&url, &ca_ref("Secret", "corp-ca")), &a)
            .await
            .unwrap();
    }
    assert_eq!(hits.get(), 3);
    assert_eq!(
        server.handshakes.load(SeqCst),
        1,
        "the same TLS config reuses its client and its connection"
    );

    // Same material under another name: the same client.
    let b = [(Kind::ConfigMap, "copy", vec![("ca.crt", pki.ca.as_str())])];
    obtain(&engine, &token_spec(&url, &ca_ref("ConfigMap", "copy")), &b)
        .await
        .unwrap();
    assert_eq!(server.handshakes.load(SeqCst), 1);

    // Different material (a renewed bundle): a new client, a new connection.
    let renewed = format!("{}{}", pki.ca, pki.other_ca);
    let c = [(Kind::Secret, "corp-ca", vec![("ca.crt", renewed.as_str())])];
    obtain(&engine, &token_spec(&url, &ca_ref("Secret", "corp-ca")), &c)
        .await
        .unwrap();
    assert_eq!(server.handshakes.load(SeqCst), 2);
    assert_eq!(hits.get(), 5);
}

// ------------------------------------------------------------------ redirects

/// A plain-http server whose `/moved` answers 307 to `location`.
async fn redirector(location: &str) -> (String, Arc<Hits>) {
    let hits = Arc::new(Hits::default());
    let base = serve(token_router(hits.clone(), Some(location.into()))).await;
    (base, hits)
}

#[tokio::test]
async fn a_redirect_is_refused_by_default_with_a_clear_message() {
    let target_hits = Arc::new(Hits::default());
    let target = serve(token_router(target_hits.clone(), None)).await;
    let (base, _) = redirector(&format!("{target}/oauth/token?code=s3cr3t")).await;
    let e = obtain(&engine(), &token_spec(&format!("{base}/moved"), ""), &[])
        .await
        .unwrap_err();
    assert_eq!(e.reason(), "RedirectNotFollowed");
    let (from, to) = (base.trim_start_matches("http://"), target.as_str());
    assert_eq!(
        e.to_string(),
        format!(
            "login request to {from}: answered HTTP 307 (a redirect to {to}) instead of the token; redirects are not followed unless spec.allowRedirects is true"
        )
    );
    assert!(!e.to_string().contains("s3cr3t"), "no path or query of the Location");
    assert_eq!(target_hits.get(), 0, "not followed");
}

#[tokio::test]
async fn redirects_are_followed_when_allowed_also_between_private_https_hosts() {
    let pki = pki();
    // The redirecting server speaks https with the private CA: the resource's client (CA bundle
    // included) is used on every hop. Its 307 stays within its own origin, so the form body
    // (the client secret in it) goes on.
    let target_hits = Arc::new(Hits::default());
    let first = serve_tls(
        token_router(target_hits.clone(), Some("/oauth/token".into())),
        &pki.server,
        None,
    )
    .await;
    let extra = "allowRedirects: true\ntls:\n  caBundleRef: {kind: Secret, name: corp-ca}\n";
    let t = obtain(
        &engine(),
        &token_spec(&format!("{}/moved", first.url), extra),
        &[(Kind::Secret, "corp-ca", vec![("ca.crt", pki.ca.as_str())])],
    )
    .await
    .unwrap();
    assert_eq!(t.access_token.expose(), "tls-at-1", "the 307 resent the form body");
    assert_eq!(target_hits.get(), 1);
}

#[tokio::test]
async fn a_redirect_to_cloud_metadata_is_refused_even_when_redirects_are_allowed() {
    let (base, _) = redirector("http://169.254.169.254/latest/meta-data/iam/security-credentials/").await;
    let e = obtain(
        &engine(),
        &token_spec(&format!("{base}/moved"), "allowRedirects: true\n"),
        &[],
    )
    .await
    .unwrap_err();
    assert_eq!(e.reason(), "TokenUrlForbidden");
    let from = base.trim_start_matches("http://");
    assert_eq!(
        e.to_string(),
        format!(
            "login request to 169.254.169.254 refused by the token-URL policy: 169.254.169.254 resolves to 169.254.169.254, a link-local or cloud metadata address (cloud credentials are served there); a redirect from http://{from} led there"
        ),
    );
    assert!(!e.to_string().contains("security-credentials"));
}

#[tokio::test]
async fn a_redirect_to_a_denied_host_is_refused_even_when_redirects_are_allowed() {
    let target_hits = Arc::new(Hits::default());
    let target = serve(token_router(target_hits.clone(), None)).await;
    let port = target.rsplit(':').next().unwrap();
    let (base, _) = redirector(&format!("http://localhost:{port}/oauth/token")).await;
    let engine = Engine::new(HttpSettings {
        policy: UrlPolicy {
            deny: vec![Rule::parse("localhost").unwrap()],
            allow_private: true,
            ..Default::default()
        },
        ..Default::default()
    })
    .unwrap();
    let e = obtain(
        &engine,
        &token_spec(&format!("{base}/moved"), "allowRedirects: true\n"),
        &[],
    )
    .await
    .unwrap_err();
    assert_eq!(e.reason(), "TokenUrlForbidden");
    let from = base.trim_start_matches("http://");
    assert_eq!(
        e.to_string(),
        format!(
            "login request to localhost:{port} refused by the token-URL policy: localhost is on the deny list; a redirect from http://{from} led there"
        )
    );
    assert_eq!(target_hits.get(), 0);

    // The same engine follows a redirect to an allowed address (within the token endpoint's
    // own origin: a 307 elsewhere would re-send the body with the secret, and is refused).
    let (base, moved_hits) = redirector("/oauth/token").await;
    obtain(
        &engine,
        &token_spec(&format!("{base}/moved"), "allowRedirects: true\n"),
        &[],
    )
    .await
    .unwrap();
    assert_eq!((target_hits.get(), moved_hits.get()), (0, 1));
}

#[tokio::test]
async fn redirect_loops_and_https_to_http_downgrades_are_not_followed() {
    let (base, _) = redirector("/moved").await;
    let e = obtain(
        &engine(),
        &token_spec(&format!("{base}/moved"), "allowRedirects: true\n"),
        &[],
    )
    .await
    .unwrap_err();
    assert_eq!(e.reason(), "RedirectNotFollowed");
    assert!(e.to_string().contains("stopped after 5 redirects"), "{e}");

    let pki = pki();
    let plain_hits = Arc::new(Hits::default());
    let plain = serve(token_router(plain_hits.clone(), None)).await;
    let hits = Arc::new(Hits::default());
    let secure = serve_tls(
        token_router(hits, Some(format!("{plain}/oauth/token"))),
        &pki.self_signed,
        None,
    )
    .await;
    let e = obtain(
        &engine(),
        &token_spec(
            &format!("{}/moved", secure.url),
            "allowRedirects: true\ntls: {insecureSkipVerify: true}\n",
        ),
        &[],
    )
    .await
    .unwrap_err();
    assert_eq!(e.reason(), "RedirectNotFollowed");
    assert!(e.to_string().contains("from https to plain http"), "{e}");
    assert_eq!(plain_hits.get(), 0);
}

#[test]
fn references_are_only_in_the_resources_namespace_and_named_once() {
    let s = spec(
        "credentialsRef: {name: c}\napiKey: {}\ntls:\n  caBundleRef: {kind: Secret, name: both}\n  clientCertificateRef: {name: both}\n",
    );
    assert_eq!(
        tls::references(&s),
        vec![ObjectKey {
            kind: Kind::Secret,
            name: "both".into()
        }]
    );
}
