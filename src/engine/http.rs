//! Sending token requests: one shared `reqwest::Client` with timeouts, no redirects and a
//! response size cap. Errors are mapped to [`EngineError`] without URLs (which may carry
//! credentials in their query) or bodies (which may echo them).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Semaphore;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue, RETRY_AFTER};
use url::Url;

use super::error::{EngineError, Result};
use super::policy::UrlPolicy;
use super::secret::SecretString;

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
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            connect_timeout: Duration::from_secs(10),
            timeout: Duration::from_secs(30),
            max_response_bytes: 1024 * 1024,
            max_requests_per_host: 8,
            policy: UrlPolicy::default(),
        }
    }
}

/// A request ready to send.
#[derive(Debug, Clone)]
pub struct HttpRequest {
    pub method: reqwest::Method,
    pub url: Url,
    pub headers: Vec<(String, SecretString)>,
    pub body: Option<SecretString>,
    pub basic_auth: Option<(SecretString, Option<SecretString>)>,
}

/// What came back; only 2xx and 3xx responses get this far.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    pub host: String,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

#[derive(Clone)]
pub struct HttpClient {
    client: reqwest::Client,
    settings: HttpSettings,
    per_host: Arc<Mutex<HashMap<String, Arc<Semaphore>>>>,
}

impl HttpClient {
    pub fn new(settings: HttpSettings) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .connect_timeout(settings.connect_timeout)
            .timeout(settings.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .dns_resolver(Arc::new(PolicyResolver(settings.policy.clone())))
            .user_agent(concat!("connector-auth-operator/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(HttpClient {
            client,
            settings,
            per_host: Arc::default(),
        })
    }

    pub fn settings(&self) -> &HttpSettings {
        &self.settings
    }

    /// Sends `req`; `step` (e.g. `login`, `refresh`) names it in errors.
    pub async fn send(&self, step: &str, req: HttpRequest) -> Result<HttpResponse> {
        let host = host_of(&req.url);
        let limit = {
            let mut map = self.per_host.lock().expect("per-host lock");
            map.entry(host.clone())
                .or_insert_with(|| Arc::new(Semaphore::new(self.settings.max_requests_per_host.max(1))))
                .clone()
        };
        let _permit = limit.acquire_owned().await.expect("semaphore never closed");
        self.check_policy(step, &req.url).await?;
        let mut builder = self.client.request(req.method, req.url);
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
        let mut resp = builder.send().await.map_err(|e| self.transport_error(step, &host, e))?;
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
        while let Some(chunk) = resp.chunk().await.map_err(|e| self.transport_error(step, &host, e))? {
            if body.len() + chunk.len() > limit {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        classify_status(step, &host, status, &headers, &body)?;
        Ok(HttpResponse {
            status,
            host,
            headers,
            body,
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
        self.settings
            .policy
            .check(&host, &ips)
            .map_err(|reason| EngineError::Forbidden {
                step: step.into(),
                host: host_of(url),
                reason,
            })
    }

    fn transport_error(&self, step: &str, host: &str, e: reqwest::Error) -> EngineError {
        if e.is_timeout() {
            return EngineError::Timeout {
                step: step.into(),
                host: host.into(),
                after: self.settings.timeout,
            };
        }
        // The URL is stripped; the source chain (io, hyper, rustls) never holds it.
        let e = e.without_url();
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
                .map_err(|why| -> Box<dyn std::error::Error + Send + Sync> { why.into() })?;
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
    let code = v.get("error")?.as_str()?;
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

    #[test]
    fn retry_after_accepts_seconds_and_dates() {
        assert_eq!(parse_retry_after("120"), Some(Duration::from_secs(120)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon"), None);
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
