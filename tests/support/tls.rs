//! TLS for loopback providers: certificates made at test time with `rcgen` (a private CA and a
//! server certificate for 127.0.0.1/localhost, a client CA and a client certificate, a
//! self-signed server certificate, an unrelated CA), and a server that speaks HTTPS with
//! `tokio-rustls`, optionally requiring client certificates, counting TLS handshakes.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, post};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};
use serde_json::json;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{RootCertStore, ServerConfig};

/// A certificate and its private key, PEM.
#[derive(Clone)]
pub struct CertKey {
    pub cert: String,
    pub key: String,
}

/// Everything a TLS test needs, made fresh per call.
pub struct Pki {
    /// The private CA that issued `server`.
    pub ca: String,
    /// For 127.0.0.1 and localhost, issued by `ca`.
    pub server: CertKey,
    /// The CA that issued `client` (what an mTLS server trusts).
    pub client_ca: String,
    /// A client certificate (clientAuth), issued by `client_ca`.
    pub client: CertKey,
    /// A client certificate issued by `other_ca`, which no server here trusts.
    pub stranger: CertKey,
    /// Self-signed, for 127.0.0.1 and localhost.
    pub self_signed: CertKey,
    /// A CA that issued nothing the servers present.
    pub other_ca: String,
}

fn new_ca(name: &str) -> (String, Issuer<'static, KeyPair>) {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let key = KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    (cert.pem(), Issuer::new(params, key))
}

fn leaf(names: &[&str], usage: ExtendedKeyUsagePurpose, issuer: Option<&Issuer<'static, KeyPair>>) -> CertKey {
    let mut params = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
    params.distinguished_name.push(DnType::CommonName, names[0]);
    params.extended_key_usages = vec![usage];
    let key = KeyPair::generate().unwrap();
    let cert = match issuer {
        Some(i) => params.signed_by(&key, i).unwrap(),
        None => params.self_signed(&key).unwrap(),
    };
    CertKey {
        cert: cert.pem(),
        key: key.serialize_pem(),
    }
}

pub fn pki() -> Pki {
    let hosts = ["127.0.0.1", "localhost"];
    let (ca_pem, ca) = new_ca("connector-auth test CA");
    let (client_ca_pem, client_ca) = new_ca("connector-auth test client CA");
    let (other_ca_pem, other_ca) = new_ca("some other CA");
    Pki {
        server: leaf(&hosts, ExtendedKeyUsagePurpose::ServerAuth, Some(&ca)),
        client: leaf(
            &["connector-client"],
            ExtendedKeyUsagePurpose::ClientAuth,
            Some(&client_ca),
        ),
        stranger: leaf(&["stranger"], ExtendedKeyUsagePurpose::ClientAuth, Some(&other_ca)),
        self_signed: leaf(&hosts, ExtendedKeyUsagePurpose::ServerAuth, None),
        ca: ca_pem,
        client_ca: client_ca_pem,
        other_ca: other_ca_pem,
    }
}

/// A running HTTPS server.
pub struct TlsServer {
    /// `https://127.0.0.1:PORT`
    pub url: String,
    /// Completed TLS handshakes (a pooled client makes one for many requests).
    pub handshakes: Arc<AtomicU64>,
    /// Handshakes the server refused (no or untrusted client certificate, …).
    pub refused: Arc<AtomicU64>,
}

/// Serves `router` over TLS with `server` on 127.0.0.1; with `client_ca`, every client must
/// present a certificate issued by it.
pub async fn serve_tls(router: Router, server: &CertKey, client_ca: Option<&str>) -> TlsServer {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(server.cert.as_bytes())
        .collect::<Result<_, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_slice(server.key.as_bytes()).unwrap();
    let builder = ServerConfig::builder();
    let config = match client_ca {
        Some(pem) => {
            let mut roots = RootCertStore::empty();
            for c in CertificateDer::pem_slice_iter(pem.as_bytes()) {
                roots.add(c.unwrap()).unwrap();
            }
            let verifier = WebPkiClientVerifier::builder(Arc::new(roots)).build().unwrap();
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    }
    .with_single_cert(certs, key)
    .unwrap();
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = tcp.local_addr().unwrap();
    let handshakes = Arc::new(AtomicU64::new(0));
    let refused = Arc::new(AtomicU64::new(0));
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    let (ok, bad) = (handshakes.clone(), refused.clone());
    // Handshakes run in their own tasks, so a stalled client never holds up the others.
    tokio::spawn(async move {
        loop {
            let Ok((stream, peer)) = tcp.accept().await else {
                continue;
            };
            let (acceptor, tx, ok, bad) = (acceptor.clone(), tx.clone(), ok.clone(), bad.clone());
            tokio::spawn(async move {
                match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream)).await {
                    Ok(Ok(tls)) => {
                        ok.fetch_add(1, Ordering::SeqCst);
                        let _ = tx.send((tls, peer)).await;
                    }
                    _ => {
                        bad.fetch_add(1, Ordering::SeqCst);
                    }
                }
            });
        }
    });
    tokio::spawn(async move {
        axum::serve(Handshaken { rx, addr }, router).await.unwrap();
    });
    TlsServer {
        url: format!("https://{addr}"),
        handshakes,
        refused,
    }
}

/// Connections whose TLS handshake succeeded, as an axum listener.
struct Handshaken {
    rx: tokio::sync::mpsc::Receiver<(tokio_rustls::server::TlsStream<TcpStream>, SocketAddr)>,
    addr: SocketAddr,
}

impl axum::serve::Listener for Handshaken {
    type Io = tokio_rustls::server::TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.rx.recv().await {
            Some(conn) => conn,
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.addr)
    }
}

/// Counts token requests.
#[derive(Default)]
pub struct Hits(pub AtomicU64);

impl Hits {
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// A client-credentials token endpoint at `POST /oauth/token` (client `tls-client`, secret
/// `tls-secret`, in the form body), one-hour tokens, and `GET /api/me` that accepts them.
/// Also `ANY /moved` answering `307` to `location`, if given (the body and method go along).
pub fn token_router(hits: Arc<Hits>, location: Option<String>) -> Router {
    async fn token(State(s): State<(Arc<Hits>, Option<String>)>, body: axum::body::Bytes) -> Response {
        let form: std::collections::HashMap<String, String> = url::form_urlencoded::parse(&body).into_owned().collect();
        let ok = form.get("grant_type").map(String::as_str) == Some("client_credentials")
            && form.get("client_id").map(String::as_str) == Some("tls-client")
            && form.get("client_secret").map(String::as_str) == Some("tls-secret");
        if !ok {
            return (StatusCode::UNAUTHORIZED, axum::Json(json!({"error": "invalid_client"}))).into_response();
        }
        let n = s.0.0.fetch_add(1, Ordering::SeqCst) + 1;
        axum::Json(json!({"access_token": format!("tls-at-{n}"), "token_type": "Bearer", "expires_in": 3600}))
            .into_response()
    }
    async fn me(headers: HeaderMap) -> StatusCode {
        let ok = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("Bearer tls-at-"));
        if ok { StatusCode::OK } else { StatusCode::UNAUTHORIZED }
    }
    async fn moved(State(s): State<(Arc<Hits>, Option<String>)>) -> Response {
        match s.1 {
            Some(l) => (StatusCode::TEMPORARY_REDIRECT, [(header::LOCATION, l)]).into_response(),
            None => StatusCode::NOT_FOUND.into_response(),
        }
    }
    Router::new()
        .route("/oauth/token", post(token))
        .route("/api/me", axum::routing::get(me))
        .route("/moved", any(moved))
        .with_state((hits, location))
}

/// A ConnectorAuth spec (YAML) for [`token_router`]: client credentials in the form body, at
/// `token_url`, plus `extra` (e.g. a `tls:` block) appended as is.
pub fn token_spec(token_url: &str, extra: &str) -> String {
    format!(
        "credentialsRef: {{name: creds}}\noauth2:\n  tokenUrl: \"{token_url}\"\n  clientAuth: client_secret_post\n{extra}"
    )
}

/// Credentials for [`token_spec`].
pub const CLIENT_ID: &str = "tls-client";
pub const CLIENT_SECRET: &str = "tls-secret";

/// The client of a mutual-TLS connection: its address and its certificate's SHA-256
/// thumbprint (base64url, as RFC 8705's `cnf.x5t#S256`). Handlers read it as
/// `ConnectInfo<PeerCert>` from [`serve_mtls_with_peers`].
#[derive(Clone, Debug)]
pub struct PeerCert {
    pub addr: SocketAddr,
    pub thumbprint: Option<String>,
}

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, PeerListener>> for PeerCert {
    fn connect_info(stream: axum::serve::IncomingStream<'_, PeerListener>) -> Self {
        stream.remote_addr().clone()
    }
}

/// Connections whose mutual-TLS handshake succeeded, with their client's certificate.
pub struct PeerListener {
    rx: tokio::sync::mpsc::Receiver<(tokio_rustls::server::TlsStream<TcpStream>, PeerCert)>,
    addr: SocketAddr,
}

impl axum::serve::Listener for PeerListener {
    type Io = tokio_rustls::server::TlsStream<TcpStream>;
    type Addr = PeerCert;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.rx.recv().await {
            Some(conn) => conn,
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(PeerCert {
            addr: self.addr,
            thumbprint: None,
        })
    }
}

/// [`serve_tls`] requiring a client certificate from `client_ca`, telling handlers which one
/// each connection presented.
pub async fn serve_mtls_with_peers(router: Router, server: &CertKey, client_ca: &str) -> String {
    use base64::Engine as _;
    use sha2::Digest as _;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(server.cert.as_bytes())
        .collect::<Result<_, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_slice(server.key.as_bytes()).unwrap();
    let mut roots = RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(client_ca.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let verifier = WebPkiClientVerifier::builder(Arc::new(roots)).build().unwrap();
    let config = ServerConfig::builder()
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .unwrap();
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = tcp.local_addr().unwrap();
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    tokio::spawn(async move {
        loop {
            let Ok((stream, peer)) = tcp.accept().await else {
                continue;
            };
            let (acceptor, tx) = (acceptor.clone(), tx.clone());
            tokio::spawn(async move {
                if let Ok(Ok(tls)) = tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream)).await {
                    let thumbprint = tls.get_ref().1.peer_certificates().and_then(|c| c.first()).map(|c| {
                        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(c.as_ref()))
                    });
                    let _ = tx.send((tls, PeerCert { addr: peer, thumbprint })).await;
                }
            });
        }
    });
    tokio::spawn(async move {
        axum::serve(
            PeerListener { rx, addr },
            router.into_make_service_with_connect_info::<PeerCert>(),
        )
        .await
        .unwrap();
    });
    format!("https://{addr}")
}
