//! A token request as the engine renders it, and the answer as the engine reads it: plain
//! data between the pure core and the HTTP client that sends it.

use http::HeaderMap;
use url::Url;

use crate::error::EngineError;
use crate::secret::SecretString;

/// A request ready to send.
#[derive(Debug, Clone)]
pub struct HttpRequest {
    pub method: http::Method,
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
    /// For a redirect: where its `Location` points, as `scheme://host[:port]` (never the path
    /// or query, which may carry codes or credentials).
    pub location: Option<String>,
}

impl HttpResponse {
    /// The error for a redirect response that did not carry the token (a login that answers
    /// with a redirect *and* sets the session cookie is fine without following it).
    pub fn redirect_error(&self, step: &str, allow_redirects: bool) -> Option<EngineError> {
        if !(300..400).contains(&self.status) {
            return None;
        }
        let to = match &self.location {
            Some(l) => format!("a redirect to {l}"),
            None => "a redirect without a usable Location".into(),
        };
        let reason = if allow_redirects || self.location.is_none() {
            format!("answered HTTP {} ({to}) that could not be followed", self.status)
        } else {
            format!(
                "answered HTTP {} ({to}) instead of the token; redirects are not followed unless spec.allowRedirects is true",
                self.status
            )
        };
        Some(EngineError::Redirect {
            step: step.into(),
            host: self.host.clone(),
            reason,
        })
    }
}
