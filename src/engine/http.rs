//! Sending token requests: one shared `reqwest::Client` with timeouts, no redirects and a
//! response size cap, plus a bounded cache of clients for resources with their own TLS or
//! redirect settings (`spec.tls`, `spec.allowRedirects`), one per distinct settings and
//! material, so those keep connection pooling too. Errors are mapped to [`EngineError`] without
//! URLs (which may carry credentials in their query) or bodies (which may echo them).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Semaphore;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue, RETRY_AFTER};
use url::Url;

use super::tls::{self, ClientOptions};
use engine_core::error::{EngineError, Result};
use engine_core::policy::UrlPolicy;
pub use engine_core::request::{HttpRequest, HttpResponse};

/// Redirects followed in a row at most, for resources that allow them.
pub const MAX_REDIRECTS: usize = 5;

/// Per-resource clients kept at most (each has its own connection pool); the least recently
/// used one is dropped beyond that. Resources with the default settings share one client.
const MAX_CLIENTS: usize = 64;

/// Limits of the token HTTP client.
#[derive(Clone, Debug)]
pub struct HttpSettings {
    pub connect_timeout: Duration,
    /// Whole request, including reading the body.
    pub timeout: Duration,
    pub max_response_bytes: usize,
    /// Token requests in flight per host, so a fleet renewing together does not hammer one
    /// provider.
    pub max_requests_per_host: usize,
    /// Which addresses may be reached.
    pub policy: UrlPolicy,
    /// The HTTP(S) proxy token requests go through (`--token-proxy`). `HTTP_PROXY`,
    /// `HTTPS_PROXY` and `ALL_PROXY` in the environment are ignored: a proxy resolves names
    /// itself, out of the policy's sight, so it is used only where configured on purpose.
    pub proxy: Option<Url>,
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            connect_timeout: Duration::from_secs(10),
            timeout: Duration::from_secs(30),
            max_response_bytes: 1024 * 1024,
            max_requests_per_host: 8,
            policy: UrlPolicy::default(),
            proxy: None,
        }
    }
}

#[derive(Clone)]
pub struct HttpClient {
    /// For every resource with the default settings (no `spec.tls`, no redirects).
    default: reqwest::Client,
    custom: Arc<Mutex<ClientCache>>,
    settings: HttpSettings,
    per_host: Arc<Mutex<HashMap<String, Arc<Semaphore>>>>,
}

/// Clients by [`ClientOptions::digest`], with a use counter for eviction.
#[derive(Default)]
struct ClientCache {
    clients: HashMap<[u8; 32], (reqwest::Client, u64)>,
    tick: u64,
}

impl ClientCache {
    fn get(&mut self, key: &[u8; 32]) -> Option<reqwest::Client> {
        self.tick += 1;
        let tick = self.tick;
        self.clients.get_mut(key).map(|(c, used)| {
            *used = tick;
            c.clone()
        })
    }

    fn insert(&mut self, key: [u8; 32], client: reqwest::Client) {
        if self.clients.len() >= MAX_CLIENTS
            && let Some(oldest) = self.clients.iter().min_by_key(|(_, (_, used))| *used).map(|(k, _)| *k)
        {
            self.clients.remove(&oldest);
        }
        self.tick += 1;
        self.clients.insert(key, (client, self.tick));
    }
}

fn builder(settings: &HttpSettings) -> Result<reqwest::ClientBuilder, reqwest::Error> {
    let b = reqwest::Client::builder();
    let b = match &settings.proxy {
        Some(url) => b.proxy(reqwest::Proxy::all(url.as_str())?),
        None => b.no_proxy(),
    };
    Ok(b.connect_timeout(settings.connect_timeout)
        .timeout(settings.timeout)
        // Redirects are followed by `HttpClient::fetch`, which decides what a hop may carry.
        .redirect(reqwest::redirect::Policy::none())
        // A Referer would carry the previous URL, query (and credentials in it) included.
        .referer(false)
        .dns_resolver(Arc::new(PolicyResolver(settings.policy.clone())))
        .user_agent(concat!("connector-auth-operator/", env!("CARGO_PKG_VERSION"))))
}

impl HttpClient {
    pub fn new(settings: HttpSettings) -> Result<Self, reqwest::Error> {
        Ok(HttpClient {
            default: builder(&settings)?.build()?,
            custom: Arc::default(),
            settings,
            per_host: Arc::default(),
        })
    }

    pub fn settings(&self) -> &HttpSettings {
        &self.settings
    }

    /// The client for `opts`: the shared default one, or a cached one built for these
    /// options. Bad material is an [`EngineError::InvalidSpec`] naming field and source.
    pub fn client_for(&self, opts: &ClientOptions) -> Result<reqwest::Client> {
        if opts.is_default() {
            return Ok(self.default.clone());
        }
        let key = opts.digest();
        if let Some(c) = self.custom.lock().expect("client cache").get(&key) {
            return Ok(c);
        }
        // The proxy was accepted when the default client was built, so this cannot fail.
        let mut b = builder(&self.settings).map_err(|e| tls::build_error(opts, &e))?;
        if let Some(ca) = &opts.ca_bundle {
            b = b.tls_certs_only(tls::ca_certificates(ca)?);
        }
        if let Some(id) = &opts.client_certificate {
            b = b.identity(tls::identity(id)?);
        }
        if opts.insecure_skip_verify {
            b = b.tls_danger_accept_invalid_certs(true);
        }
        let client = b.build().map_err(|e| tls::build_error(opts, &e))?;
        self.custom.lock().expect("client cache").insert(key, client.clone());
        Ok(client)
    }

    /// Sends `req` with the client for `opts`; `step` (e.g. `login`, `refresh`) names it in
    /// errors, as does a status other than 2xx or 3xx.
    pub async fn send(&self, step: &str, req: HttpRequest, opts: &ClientOptions) -> Result<HttpResponse> {
        let resp = self.fetch(step, req, opts).await?;
        classify_status(step, &resp.host, resp.status, &resp.headers, &resp.body)?;
        Ok(resp)
    }

    /// [`send`](Self::send), but any status is an answer: for callers that judge it themselves
    /// (a verification request).
    ///
    /// Redirects are followed here, not by reqwest, and only with `spec.allowRedirects`: each
    /// hop is checked against the token-URL policy, and a hop to another origin carries none
    /// of the request's own headers, Basic credentials or body (a 307/308 that would re-send a
    /// body elsewhere is refused), so a redirect never hands a secret to another host.
    pub async fn fetch(&self, step: &str, req: HttpRequest, opts: &ClientOptions) -> Result<HttpResponse> {
        let client = self.client_for(opts)?;
        let host = host_of(&req.url);
        let limit = {
            let mut map = self.per_host.lock().expect("per-host lock");
            map.entry(host.clone())
                .or_insert_with(|| Arc::new(Semaphore::new(self.settings.max_requests_per_host.max(1))))
                .clone()
        };
        let _permit = limit.acquire_owned().await.expect("semaphore never closed");
        let mut previous: Vec<Url> = Vec::new();
        let mut req = req;
        loop {
            self.check_policy(step, &req.url).await?;
            let url = req.url.clone();
            let method = req.method.clone();
            let resp = self
                .request(step, &client, req.clone())?
                .send()
                .await
                .map_err(|e| self.transport_error(step, &host_of(&url), e, opts))?;
            let next = resp
                .headers()
                .get(reqwest::header::LOCATION)
                .filter(|_| resp.status().is_redirection())
                .and_then(|l| l.to_str().ok())
                .and_then(|l| url.join(l).ok());
            let follow =
                opts.allow_redirects && matches!(resp.status().as_u16(), 301 | 302 | 303 | 307 | 308) && next.is_some();
            if !follow {
                return self.read(step, resp, next.as_ref().map(origin_of), opts).await;
            }
            let next = next.expect("checked above");
            previous.push(url.clone());
            check_hop(&self.settings.policy, &next, &previous).map_err(|r| match r {
                Refusal::Policy { host, reason } => EngineError::Forbidden {
                    step: step.into(),
                    host,
                    reason,
                },
                Refusal::Redirect(reason) => EngineError::Redirect {
                    step: step.into(),
                    host: host_of(&url),
                    reason,
                },
            })?;
            let status = resp.status().as_u16();
            drop(resp);
            req = next_request(req, next, status, method).map_err(|reason| EngineError::Redirect {
                step: step.into(),
                host: host_of(&url),
                reason,
            })?;
        }
    }

    /// The reqwest request for `req`, its headers marked sensitive.
    fn request(&self, step: &str, client: &reqwest::Client, req: HttpRequest) -> Result<reqwest::RequestBuilder> {
        let mut builder = client.request(req.method, req.url);
        for (name, value) in &req.headers {
            let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| EngineError::InvalidRequest {
                step: step.into(),
                reason: format!("`{name}` is not a valid header name"),
            })?;
            let mut value = HeaderValue::from_str(value.expose()).map_err(|_| EngineError::InvalidRequest {
                step: step.into(),
                reason: format!("the value of header `{name}` contains characters not allowed in headers"),
            })?;
            value.set_sensitive(true);
            builder = builder.header(name, value);
        }
        if let Some((user, pass)) = &req.basic_auth {
            builder = builder.basic_auth(user.expose(), pass.as_ref().map(|p| p.expose()));
        }
        if let Some(body) = req.body {
            builder = builder.body(body.expose().to_string());
        }
        Ok(builder)
    }

    /// Reads a response's body within the size limit.
    async fn read(
        &self,
        step: &str,
        mut resp: reqwest::Response,
        location: Option<String>,
        opts: &ClientOptions,
    ) -> Result<HttpResponse> {
        let host = host_of(resp.url());
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let limit = self.settings.max_response_bytes;
        let too_large = || EngineError::ResponseTooLarge {
            step: step.into(),
            host: host.clone(),
            limit,
        };
        if resp.content_length().is_some_and(|n| n > limit as u64) {
            return Err(too_large());
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| self.transport_error(step, &host, e, opts))?
        {
            if body.len() + chunk.len() > limit {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(HttpResponse {
            status,
            host,
            headers,
            body,
            location,
        })
    }

    /// Refuses forbidden destinations before anything is sent, with a clear error. The
    /// resolver checks again at connect time, so a name re-resolving elsewhere is caught too.
    async fn check_policy(&self, step: &str, url: &Url) -> Result<()> {
        let host = url.host_str().unwrap_or_default().to_string();
        let ips: Vec<std::net::IpAddr> = match url.host() {
            Some(url::Host::Ipv4(ip)) => vec![ip.into()],
            Some(url::Host::Ipv6(ip)) => vec![ip.into()],
            _ => match tokio::net::lookup_host((host.as_str(), url.port_or_known_default().unwrap_or(443))).await {
                Ok(addrs) => addrs.map(|a| a.ip()).collect(),
                // Resolution failures are reported by the request itself.
                Err(_) => vec![],
            },
        };
        // Through a proxy, the proxy resolves the name and connects where it likes: a name
        // this pod cannot resolve would pass unchecked. Only names on the allow list may.
        if self.settings.proxy.is_some() && ips.is_empty() && !self.settings.policy.allows_host(&host) {
            return Err(EngineError::Forbidden {
                step: step.into(),
                host: host_of(url),
                reason: format!(
                    "{host} cannot be resolved here, so its address cannot be checked before the proxy connects to it; add it to --token-url-allow to reach it through the proxy"
                ),
            });
        }
        self.settings
            .policy
            .check(&host, &ips)
            .map_err(|reason| EngineError::Forbidden {
                step: step.into(),
                host: host_of(url),
                reason,
            })
    }

    fn transport_error(&self, step: &str, host: &str, e: reqwest::Error, opts: &ClientOptions) -> EngineError {
        if e.is_timeout() {
            return EngineError::Timeout {
                step: step.into(),
                host: host.into(),
                after: self.settings.timeout,
            };
        }
        // The URL is stripped; the source chain (io, hyper, rustls) never holds it.
        let e = e.without_url();
        match tls::find_in_chain::<Refusal>(&e) {
            Some(Refusal::Policy { host, reason }) => {
                return EngineError::Forbidden {
                    step: step.into(),
                    host: host.clone(),
                    reason: reason.clone(),
                };
            }
            Some(Refusal::Redirect(reason)) => {
                return EngineError::Redirect {
                    step: step.into(),
                    host: host.into(),
                    reason: reason.clone(),
                };
            }
            None => {}
        }
        if let Some(t) = tls::find_rustls_error(&e) {
            return EngineError::Tls {
                step: step.into(),
                host: host.into(),
                reason: tls::describe_tls_failure(t, opts),
            };
        }
        let mut reason = String::new();
        let mut source: Option<&dyn std::error::Error> = Some(&e);
        while let Some(s) = source {
            let text = s.to_string();
            if !reason.contains(&text) {
                if !reason.is_empty() {
                    reason.push_str(": ");
                }
                reason.push_str(&text);
            }
            source = s.source();
        }
        EngineError::Connection {
            step: step.into(),
            host: host.into(),
            reason,
        }
    }
}

/// Why the client refused to go somewhere; found again in reqwest's error chain.
#[derive(Debug)]
enum Refusal {
    /// The token-URL policy refused a host or an address it resolves to.
    Policy { host: String, reason: String },
    /// A redirect hop that is not followed.
    Redirect(String),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Policy { reason, .. } => write!(f, "refused by the token-URL policy: {reason}"),
            Refusal::Redirect(reason) => f.write_str(reason),
        }
    }
}

impl std::error::Error for Refusal {}

/// The request a redirect leads to. To the same origin it is the same request (301, 302 and 303
/// turn a POST into a bodiless GET, as browsers do); to another origin it carries nothing of
/// the original but its method: no headers of the spec, no Basic credentials, no body.
fn next_request(req: HttpRequest, next: Url, status: u16, method: reqwest::Method) -> Result<HttpRequest, String> {
    let same_origin = req.url.scheme() == next.scheme()
        && req.url.host_str() == next.host_str()
        && req.url.port_or_known_default() == next.port_or_known_default();
    let keeps_method = matches!(status, 307 | 308) || matches!(method, reqwest::Method::GET | reqwest::Method::HEAD);
    let (method, body) = if keeps_method {
        (method, req.body)
    } else {
        (reqwest::Method::GET, None)
    };
    if same_origin {
        return Ok(HttpRequest {
            method,
            url: next,
            headers: req.headers,
            body,
            basic_auth: req.basic_auth,
        });
    }
    if body.is_some() {
        return Err(format!(
            "a redirect (HTTP {status}) to another host ({}) would send the request body there again; not followed",
            origin_of(&next)
        ));
    }
    Ok(HttpRequest {
        method,
        url: next,
        headers: Vec::new(),
        body: None,
        basic_auth: None,
    })
}

/// Whether a redirect to `next` may be followed, `previous` being the URLs requested so far
/// (the first is the token URL itself).
fn check_hop(policy: &UrlPolicy, next: &Url, previous: &[Url]) -> Result<(), Refusal> {
    let to = origin_of(next);
    if !matches!(next.scheme(), "http" | "https") {
        return Err(Refusal::Redirect(format!(
            "a redirect to a {} URL is not followed",
            next.scheme()
        )));
    }
    let ips: Vec<std::net::IpAddr> = match next.host() {
        Some(url::Host::Ipv4(ip)) => vec![ip.into()],
        Some(url::Host::Ipv6(ip)) => vec![ip.into()],
        _ => vec![],
    };
    if let Err(reason) = policy.check(next.host_str().unwrap_or_default(), &ips) {
        let from = previous.last().map(origin_of).unwrap_or_default();
        return Err(Refusal::Policy {
            host: host_of(next),
            reason: format!("{reason}; a redirect from {from} led there"),
        });
    }
    if previous.len() > MAX_REDIRECTS {
        return Err(Refusal::Redirect(format!(
            "stopped after {MAX_REDIRECTS} redirects in a row (the next one was to {to})"
        )));
    }
    if next.scheme() == "http" && previous.last().is_some_and(|p| p.scheme() == "https") {
        return Err(Refusal::Redirect(format!(
            "a redirect from https to plain http ({to}) is not followed: the request would be sent unencrypted"
        )));
    }
    Ok(())
}

/// DNS resolution that applies the address policy to every answer.
struct PolicyResolver(UrlPolicy);

impl reqwest::dns::Resolve for PolicyResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.0.clone();
        let host = name.as_str().to_string();
        Box::pin(async move {
            let addrs: Vec<std::net::SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let ips: Vec<std::net::IpAddr> = addrs.iter().map(|a| a.ip()).collect();
            policy
                .check(&host, &ips)
                .map_err(|reason| -> Box<dyn std::error::Error + Send + Sync> {
                    Box::new(Refusal::Policy {
                        host: host.clone(),
                        reason,
                    })
                })?;
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// `host[:port]` of a URL: what error messages show instead of the URL.
pub fn host_of(url: &Url) -> String {
    match (url.host_str(), url.port()) {
        (Some(h), Some(p)) => format!("{h}:{p}"),
        (Some(h), None) => h.to_string(),
        _ => "<no host>".to_string(),
    }
}

/// `scheme://host[:port]` of a URL: where a redirect leads, without path or query.
pub fn origin_of(url: &Url) -> String {
    format!("{}://{}", url.scheme(), host_of(url))
}

/// Maps a non-success status to its error; 2xx and 3xx pass (a login may answer with a
/// redirect that sets the session cookie).
pub fn classify_status(step: &str, host: &str, status: u16, headers: &HeaderMap, body: &[u8]) -> Result<()> {
    let retry_after = headers
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_retry_after);
    match status {
        200..=399 => Ok(()),
        429 => Err(EngineError::RateLimited {
            step: step.into(),
            host: host.into(),
            retry_after,
        }),
        408 | 425 | 500..=599 => Err(EngineError::ProviderUnavailable {
            step: step.into(),
            host: host.into(),
            status,
            retry_after,
        }),
        _ => Err(EngineError::Rejected {
            step: step.into(),
            host: host.into(),
            status,
            oauth_error: oauth_error(body),
        }),
    }
}

/// The RFC 6749 §5.2 `error` code of a JSON error body, if it looks like one. Only the code is
/// kept (a short token of `[A-Za-z0-9_.-]`); descriptions may echo input and are dropped.
fn oauth_error(body: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    safe_error_code(v.get("error")?.as_str()?)
}

/// An error code as a provider's answer gives it, if it is a short token of
/// `[A-Za-z0-9_.-]` (anything else may echo input, and is not repeated).
pub fn safe_error_code(code: &str) -> Option<String> {
    let ok = !code.is_empty()
        && code.len() <= 64
        && code
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    ok.then(|| code.to_string())
}

/// `Retry-After` as delay-seconds or an HTTP date.
pub fn parse_retry_after(v: &str) -> Option<Duration> {
    let v = v.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = jiff::fmt::rfc2822::parse(v).ok()?.timestamp();
    let delta = when.as_second() - jiff::Timestamp::now().as_second();
    Some(Duration::from_secs(delta.max(0) as u64))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::SecretString;

    #[test]
    fn retry_after_accepts_seconds_and_dates() {
        assert_eq!(parse_retry_after("120"), Some(Duration::from_secs(120)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon"), None);
    }

    fn u(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    #[test]
    fn redirect_hops_are_checked_against_the_policy_and_capped() {
        let p = UrlPolicy::default();
        let start = vec![u("https://login.example.com/token?client_secret=s3cr3t")];
        assert!(check_hop(&p, &u("https://other.example.com/t"), &start).is_ok());
        match check_hop(&p, &u("http://169.254.169.254/latest/meta-data/?x=1"), &start) {
            Err(Refusal::Policy { host, reason }) => {
                assert_eq!(host, "169.254.169.254");
                assert!(reason.contains("link-local"), "{reason}");
                assert!(reason.contains("https://login.example.com"), "{reason}");
                assert!(!reason.contains("s3cr3t") && !reason.contains("meta-data"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            check_hop(&p, &u("http://[fe80::1]/"), &start),
            Err(Refusal::Policy { .. })
        ));
        assert!(matches!(
            check_hop(&p, &u("http://metadata.google.internal/"), &start),
            Err(Refusal::Policy { .. })
        ));
        match check_hop(&p, &u("http://other.example.com/t"), &start) {
            Err(Refusal::Redirect(r)) => assert!(r.contains("plain http"), "{r}"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            check_hop(&p, &u("file:///etc/passwd"), &start),
            Err(Refusal::Redirect(_))
        ));
        let five: Vec<Url> = (0..=MAX_REDIRECTS)
            .map(|i| u(&format!("https://h{i}.example/")))
            .collect();
        assert!(check_hop(&p, &u("https://next.example/"), &five[..MAX_REDIRECTS]).is_ok());
        match check_hop(&p, &u("https://next.example/"), &five) {
            Err(Refusal::Redirect(r)) => assert!(r.contains("stopped after 5 redirects"), "{r}"),
            other => panic!("{other:?}"),
        }
    }

    fn request(url: &str, method: reqwest::Method, body: Option<&str>) -> HttpRequest {
        HttpRequest {
            method,
            url: u(url),
            headers: vec![("Ocp-Apim-Subscription-Key".into(), "k".into())],
            body: body.map(SecretString::from),
            basic_auth: Some(("id".into(), Some("secret".into()))),
        }
    }

    #[test]
    fn a_redirect_to_another_host_carries_no_header_credential_or_body() {
        use reqwest::Method;
        // Same origin (the default port spelled out or not): everything goes on; a 303 turns the
        // POST into a bodiless GET.
        let r = request("https://idp.example/token", Method::POST, Some("client_secret=s"));
        let n = next_request(r.clone(), u("https://idp.example:443/v2/token"), 307, Method::POST).unwrap();
        assert_eq!(
            (n.method, n.body.is_some(), n.headers.len(), n.basic_auth.is_some()),
            (Method::POST, true, 1, true)
        );
        let n = next_request(r.clone(), u("https://idp.example/done"), 303, Method::POST).unwrap();
        assert_eq!(
            (n.method, n.body.is_none(), n.basic_auth.is_some()),
            (Method::GET, true, true)
        );
        // Another host: a 307 would re-send the body, so it is not followed at all.
        let e = next_request(r.clone(), u("https://attacker.example/t"), 307, Method::POST).unwrap_err();
        assert!(e.contains("would send the request body there again"), "{e}");
        // A 302 elsewhere becomes a GET with nothing of the original request.
        let n = next_request(r, u("https://cdn.example/t"), 302, Method::POST).unwrap();
        assert_eq!(
            (n.method, n.body.is_none(), n.headers.is_empty(), n.basic_auth.is_none()),
            (Method::GET, true, true, true)
        );
        // Another port is another origin.
        let r = request("https://idp.example/token", Method::GET, None);
        let n = next_request(r, u("https://idp.example:8443/token"), 301, Method::GET).unwrap();
        assert!(n.headers.is_empty() && n.basic_auth.is_none());
    }

    #[test]
    fn a_redirect_response_without_token_names_status_and_the_setting() {
        let resp = HttpResponse {
            status: 302,
            host: "login.example.com".into(),
            headers: HeaderMap::new(),
            body: vec![],
            location: Some("https://sso.example.com".into()),
        };
        let e = resp.redirect_error("login", false).unwrap();
        assert_eq!(e.reason(), "RedirectNotFollowed");
        assert_eq!(
            e.to_string(),
            "login request to login.example.com: answered HTTP 302 (a redirect to https://sso.example.com) instead of the token; redirects are not followed unless spec.allowRedirects is true"
        );
        assert!(!e.is_transient());
        let ok = HttpResponse { status: 200, ..resp };
        assert!(ok.redirect_error("login", false).is_none());
    }

    #[test]
    fn status_classification() {
        let h = HeaderMap::new();
        assert!(classify_status("login", "h", 200, &h, b"").is_ok());
        assert!(classify_status("login", "h", 302, &h, b"").is_ok());
        let e = classify_status(
            "refresh",
            "h",
            400,
            &h,
            br#"{"error":"invalid_grant","error_description":"tok abc"}"#,
        )
        .unwrap_err();
        assert!(e.is_invalid_grant());
        assert!(!e.to_string().contains("abc"));
        let e = classify_status("login", "h", 401, &h, b"<html>no</html>").unwrap_err();
        assert_eq!(e.reason(), "CredentialsRejected");
        let e = classify_status("login", "h", 503, &h, b"").unwrap_err();
        assert!(e.is_transient());
        let e = classify_status("login", "h", 400, &h, br#"{"error":"<script>"}"#).unwrap_err();
        assert!(matches!(e, EngineError::Rejected { oauth_error: None, .. }));
    }
}
