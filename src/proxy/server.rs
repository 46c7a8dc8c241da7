//! The proxy's HTTP side: one listener for the workloads' requests, one for metrics.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use jiff::Timestamp;

use super::config::{ProxyConfig, RouteConfig};
use super::credential::{Credential, CredentialFolder, Unavailable};
use super::metrics::{Metrics, RouteLabel, RouteReason, RouteStatus};
use crate::engine::dpop::DpopKey;

/// Request bodies up to this size are kept, so the request can be sent again after a renewal
/// or with a DPoP nonce; larger ones stream through and are sent once.
const REPLAYABLE_BODY: u64 = 1024 * 1024;
/// Renewal requests per route: at most one in this time.
const RENEW_EVERY: Duration = Duration::from_secs(60);
/// How long a request waits for the renewed credential before it is answered as it stands.
const RENEW_WAIT: Duration = Duration::from_secs(15);

/// Hop-by-hop headers (RFC 9110 §7.6.1): never forwarded either way.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

struct Route {
    config: RouteConfig,
    upstream: url::Url,
    folder: CredentialFolder,
    client: reqwest::Client,
    dpop: Option<DpopKey>,
    /// The last `DPoP-Nonce` the upstream sent.
    nonce: Mutex<Option<String>>,
    last_renew: Mutex<Option<Instant>>,
}

/// A running configuration: routes with their clients and credential folders.
pub struct Proxy {
    routes: Vec<Route>,
    pub metrics: Metrics,
    kube: Option<kube::Client>,
}

impl Proxy {
    /// Builds the routes (reading TLS material and DPoP keys now, so a bad file stops the
    /// start, naming it). `kube` is needed only by routes with `renew`.
    pub fn new(config: &ProxyConfig, kube: Option<kube::Client>) -> anyhow::Result<Self> {
        config.check()?;
        let mut routes = Vec::new();
        for (i, r) in config.routes.iter().enumerate() {
            let read = |p: &std::path::Path| {
                std::fs::read(p).map_err(|e| anyhow::anyhow!("routes[{i}]: reading {}: {e}", p.display()))
            };
            let mut builder = reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .no_proxy()
                .timeout(Duration::from_secs(r.timeout_seconds.unwrap_or(60)));
            if let Some(tls) = &r.tls {
                if let Some(ca) = &tls.ca_file {
                    builder = builder.tls_certs_only(
                        reqwest::Certificate::from_pem_bundle(&read(ca)?)
                            .map_err(|e| anyhow::anyhow!("routes[{i}].tls.caFile: {e}"))?,
                    );
                }
                match (&tls.cert_file, &tls.key_file) {
                    (Some(c), Some(k)) => {
                        let mut pem = read(c)?;
                        pem.push(b'\n');
                        pem.extend(read(k)?);
                        builder = builder.identity(
                            reqwest::Identity::from_pem(&pem)
                                .map_err(|e| anyhow::anyhow!("routes[{i}].tls: the client certificate: {e}"))?,
                        );
                    }
                    (None, None) => {}
                    _ => anyhow::bail!("routes[{i}].tls: certFile and keyFile go together"),
                }
            }
            let dpop = match &r.dpop {
                Some(d) => {
                    let pem = String::from_utf8(read(&d.private_key_file)?)?;
                    let alg = d.algorithm.unwrap_or(crate::engine::spec::JwtAlgorithm::ES256);
                    Some(
                        DpopKey::from_pem(&pem, alg, &d.private_key_file.display().to_string())
                            .map_err(|e| anyhow::anyhow!("routes[{i}].dpop: {e}"))?,
                    )
                }
                None => None,
            };
            anyhow::ensure!(
                r.renew.is_none() || kube.is_some(),
                "routes[{i}].renew needs access to the Kubernetes API (in-cluster or KUBECONFIG)"
            );
            routes.push(Route {
                config: r.clone(),
                upstream: url::Url::parse(&r.upstream)?,
                folder: CredentialFolder::new(r.credentials.clone()),
                client: builder.build()?,
                dpop,
                nonce: Mutex::new(None),
                last_renew: Mutex::new(None),
            });
        }
        Ok(Proxy {
            routes,
            metrics: Metrics::new(),
            kube,
        })
    }

    /// The route of a path: the longest prefix that matches.
    fn route(&self, path: &str) -> Option<&Route> {
        self.routes
            .iter()
            .filter(|r| path.starts_with(&r.config.prefix) || path == r.config.prefix.trim_end_matches('/'))
            .max_by_key(|r| r.config.prefix.len())
    }
}

/// The workloads' router.
pub fn router(proxy: Arc<Proxy>) -> Router {
    Router::new().fallback(handle).with_state(proxy)
}

/// The metrics and health router.
pub fn metrics_router(proxy: Arc<Proxy>) -> Router {
    Router::new()
        .route(
            "/metrics",
            axum::routing::get(|State(p): State<Arc<Proxy>>| async move {
                (
                    [(
                        header::CONTENT_TYPE,
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    )],
                    p.metrics.encode(),
                )
            }),
        )
        .route("/healthz", axum::routing::get(|| async { "ok" }))
        .with_state(proxy)
}

/// Serves until `shutdown` resolves.
pub async fn serve(
    config: ProxyConfig,
    kube: Option<kube::Client>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let proxy = Arc::new(Proxy::new(&config, kube)?);
    if let Some(addr) = config.metrics {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let app = metrics_router(proxy.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
    }
    let listener = tokio::net::TcpListener::bind(config.listen).await?;
    tracing::info!(listen = %config.listen, routes = config.routes.len(), "proxy serving");
    axum::serve(listener, router(proxy))
        .with_graceful_shutdown(shutdown)
        .await?;
    Ok(())
}

fn answer(status: StatusCode, text: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("{text}\n"),
    )
        .into_response()
}

async fn handle(State(p): State<Arc<Proxy>>, req: Request) -> Response {
    let path = req.uri().path().to_string();
    let Some(route) = p.route(&path) else {
        return answer(StatusCode::NOT_FOUND, "no route for this path");
    };
    let label = route.config.prefix.clone();
    let refuse = |reason: &str, status: StatusCode, text: &str| {
        p.metrics
            .refused
            .get_or_create(&RouteReason {
                route: label.clone(),
                reason: reason.into(),
            })
            .inc();
        p.metrics
            .requests
            .get_or_create(&RouteStatus {
                route: label.clone(),
                status: status.as_u16().to_string(),
            })
            .inc();
        answer(status, text)
    };
    if req.method() == Method::CONNECT {
        return refuse(
            "connect",
            StatusCode::METHOD_NOT_ALLOWED,
            "CONNECT is not served: this proxy forwards to its routes' upstreams only",
        );
    }
    // An absolute-form HTTP/1 request (`GET http://elsewhere/…`, a client using this as a
    // forward proxy) names where it wants to go: refused unless that is the upstream. (HTTP/2's
    // `:authority`, like `Host`, only names the proxy and chooses nothing.)
    if req.version() < axum::http::Version::HTTP_2
        && let Some(authority) = req.uri().authority()
        && !same_authority(authority.as_str(), &route.upstream)
    {
        return refuse(
            "other host",
            StatusCode::FORBIDDEN,
            "this proxy forwards only to its routes' upstreams",
        );
    }
    let rest = path.strip_prefix(route.config.prefix.as_str()).unwrap_or("");
    // `..` (also percent-encoded, which URL parsing treats the same) would walk out of the
    // upstream's path.
    let dot = |s: &str| {
        let s = s.to_ascii_lowercase().replace("%2e", ".");
        s == "." || s == ".."
    };
    if rest.split('/').any(|s| dot(s) || s.contains('\\')) {
        return refuse("path", StatusCode::BAD_REQUEST, "dot segments are not forwarded");
    }
    let mut url = route.upstream.clone();
    let base = url.path().trim_end_matches('/').to_string();
    url.set_path(&format!("{base}/{}", rest.trim_start_matches('/')));
    url.set_query(req.uri().query());
    if !same_authority(&authority_of(&url), &route.upstream) {
        return refuse(
            "other host",
            StatusCode::FORBIDDEN,
            "this proxy forwards only to its routes' upstreams",
        );
    }

    let (parts, body) = req.into_parts();
    let replayable = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .is_some_and(|n| n <= REPLAYABLE_BODY)
        || parts.method == Method::GET
        || parts.method == Method::HEAD;
    let mut body = if replayable {
        match axum::body::to_bytes(body, REPLAYABLE_BODY as usize).await {
            Ok(b) => Outgoing::Kept(b),
            Err(_) => {
                return refuse(
                    "body",
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "the request body is larger than it said",
                );
            }
        }
    } else {
        Outgoing::Stream(Some(body))
    };

    let mut credential = match route.folder.current(Timestamp::now()) {
        Ok(c) => c,
        Err(e) => {
            let reason = match e {
                Unavailable::Missing(_) => "no credential",
                Unavailable::Expired(_) => "expired",
            };
            tracing::warn!(route = %label, reason, "request not forwarded");
            return refuse(reason, StatusCode::SERVICE_UNAVAILABLE, &e.to_string());
        }
    };
    let mut attempt = 0;
    loop {
        attempt += 1;
        let Some(outgoing) = body.take() else {
            return refuse("body", StatusCode::BAD_GATEWAY, "the request could not be sent again");
        };
        let headers = forwarded_headers(&parts.headers, route, &credential, &parts.method, &url);
        let sent = route
            .client
            .request(parts.method.clone(), url.clone())
            .headers(headers)
            .body(outgoing)
            .send()
            .await;
        let resp = match sent {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(route = %label, error = %e.without_url(), "upstream request failed");
                return refuse(
                    "upstream unreachable",
                    StatusCode::BAD_GATEWAY,
                    "the upstream could not be reached",
                );
            }
        };
        p.metrics
            .upstream
            .get_or_create(&RouteStatus {
                route: label.clone(),
                status: resp.status().as_u16().to_string(),
            })
            .inc();
        if let Some(n) = resp.headers().get("dpop-nonce").and_then(|v| v.to_str().ok())
            && route.dpop.is_some()
            && n.len() <= 256
        {
            *route.nonce.lock().expect("lock") = Some(n.to_string());
        }
        if resp.status() == StatusCode::UNAUTHORIZED && attempt == 1 && body.can_replay() {
            let wants_nonce = route.dpop.is_some()
                && resp
                    .headers()
                    .get(header::WWW_AUTHENTICATE)
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|v| v.contains("use_dpop_nonce"));
            if wants_nonce {
                p.metrics
                    .retries
                    .get_or_create(&RouteReason {
                        route: label.clone(),
                        reason: "dpop nonce".into(),
                    })
                    .inc();
                continue;
            }
            if let Some(target) = &route.config.renew
                && let Some(kube) = &p.kube
                && let Some(fresh) = renew_and_wait(route, target, kube, &credential).await
            {
                p.metrics
                    .retries
                    .get_or_create(&RouteReason {
                        route: label.clone(),
                        reason: "renewed".into(),
                    })
                    .inc();
                credential = fresh;
                continue;
            }
        }
        p.metrics
            .token_age
            .get_or_create(&RouteLabel { route: label.clone() })
            .set(Timestamp::now().duration_since(credential.written).as_secs());
        p.metrics
            .requests
            .get_or_create(&RouteStatus {
                route: label.clone(),
                status: resp.status().as_u16().to_string(),
            })
            .inc();
        return streamed(resp);
    }
}

/// The request body: kept (can be sent again) or streamed (once).
enum Outgoing {
    Kept(axum::body::Bytes),
    Stream(Option<Body>),
}

impl Outgoing {
    fn take(&mut self) -> Option<reqwest::Body> {
        match self {
            Outgoing::Kept(b) => Some(reqwest::Body::from(b.clone())),
            Outgoing::Stream(s) => s.take().map(|b| reqwest::Body::wrap_stream(b.into_data_stream())),
        }
    }

    fn can_replay(&self) -> bool {
        matches!(self, Outgoing::Kept(_))
    }
}

/// The workload's headers, less hop-by-hop ones, `Host`, and (unless the route passes it) its
/// `Authorization`; then the credential's headers, which win; then a DPoP proof.
fn forwarded_headers(
    incoming: &HeaderMap,
    route: &Route,
    credential: &Credential,
    method: &Method,
    url: &url::Url,
) -> HeaderMap {
    let connection_named: Vec<String> = incoming
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|s| s.trim().to_ascii_lowercase())
        .collect();
    let mut out = HeaderMap::new();
    for (name, value) in incoming {
        let n = name.as_str();
        let dropped = HOP_BY_HOP.contains(&n)
            || connection_named.iter().any(|c| c == n)
            || n == "host"
            || n == "content-length"
            || n == "dpop"
            || (n == "authorization" && !route.config.pass_authorization);
        if !dropped {
            out.append(name.clone(), value.clone());
        }
    }
    for (name, value) in &credential.headers {
        out.insert(name.clone(), value.clone());
    }
    if let Some(key) = &route.dpop {
        let nonce = route.nonce.lock().expect("lock").clone();
        let proof = key.proof(
            method.as_str(),
            url,
            Some(&credential.access_token),
            nonce.as_deref(),
            Timestamp::now().as_second(),
        );
        if let Ok(v) = axum::http::HeaderValue::try_from(proof) {
            out.insert("dpop", v);
        }
    }
    out
}

/// Asks the operator to renew (at most once a minute per route) and waits for a credential
/// other than `had`; `None` when none came in time (the 401 then goes back as it is).
async fn renew_and_wait(
    route: &Route,
    target: &super::config::RenewTarget,
    kube: &kube::Client,
    had: &Arc<Credential>,
) -> Option<Arc<Credential>> {
    let due = {
        let mut last = route.last_renew.lock().expect("lock");
        let due = last.is_none_or(|t| t.elapsed() >= RENEW_EVERY);
        if due {
            *last = Some(Instant::now());
        }
        due
    };
    if due {
        let api: kube::Api<crate::api::ConnectorAuth> = kube::Api::namespaced(kube.clone(), &target.namespace);
        let mut annotations = serde_json::Map::new();
        annotations.insert(crate::api::RENEW_ANNOTATION.into(), Timestamp::now().to_string().into());
        let patch = serde_json::json!({"metadata": {"annotations": annotations}});
        if let Err(e) = api
            .patch(
                &target.name,
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Merge(&patch),
            )
            .await
        {
            tracing::warn!(namespace = %target.namespace, name = %target.name, error = %e, "asking for a renewal failed");
            return None;
        }
        tracing::info!(namespace = %target.namespace, name = %target.name, "upstream answered 401: renewal requested");
    }
    let deadline = Instant::now() + RENEW_WAIT;
    while Instant::now() < deadline {
        if let Ok(c) = route.folder.current(Timestamp::now())
            && !Arc::ptr_eq(&c, had)
        {
            return Some(c);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

/// The upstream's answer, streamed back, less hop-by-hop headers.
fn streamed(resp: reqwest::Response) -> Response {
    let status = resp.status();
    let mut headers = HeaderMap::new();
    for (name, value) in resp.headers() {
        if !HOP_BY_HOP.contains(&name.as_str()) && name != header::CONTENT_LENGTH {
            headers.append(name.clone(), value.clone());
        }
    }
    let mut out = Response::new(Body::from_stream(resp.bytes_stream()));
    *out.status_mut() = status;
    *out.headers_mut() = headers;
    out
}

fn authority_of(url: &url::Url) -> String {
    match url.port() {
        Some(p) => format!("{}:{p}", url.host_str().unwrap_or_default()),
        None => url.host_str().unwrap_or_default().to_string(),
    }
}

/// Whether `authority` (`host[:port]`) is the upstream's, default ports included.
fn same_authority(authority: &str, upstream: &url::Url) -> bool {
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || authority.starts_with('[') => (h, p.parse::<u16>().ok()),
        _ => (authority, None),
    };
    // No port: the scheme's own (an absolute-form `http://host/` means port 80).
    let port = port.or(match upstream.scheme() {
        "https" => Some(443),
        _ => Some(80),
    });
    host.trim_start_matches('[').trim_end_matches(']').eq_ignore_ascii_case(
        upstream
            .host_str()
            .unwrap_or_default()
            .trim_start_matches('[')
            .trim_end_matches(']'),
    ) && port == upstream.port_or_known_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_upstreams_own_authority_is_the_same() {
        let u = url::Url::parse("https://api.example.com/v2").unwrap();
        assert!(same_authority("api.example.com", &u));
        assert!(same_authority("api.example.com:443", &u));
        assert!(same_authority("API.example.com", &u));
        assert!(!same_authority("api.example.com:8443", &u));
        assert!(!same_authority("evil.example.com", &u));
        assert!(!same_authority("api.example.com.evil.example", &u));
        let u = url::Url::parse("http://127.0.0.1:9000").unwrap();
        assert!(same_authority("127.0.0.1:9000", &u));
        assert!(!same_authority("127.0.0.1", &u));
    }
}
