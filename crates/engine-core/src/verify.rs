//! `spec.verify`: one request that proves a published credential works at the provider, and
//! its verdict. Sent with the published headers; never changes the token.

use crate::error::{EngineError, Result};
use crate::flow::{self, Extraction, Step};
use crate::reason::Reason;
use crate::spec;

/// Compiles `spec.verify`: a request like a token request, GET unless it says otherwise.
pub fn compile(r: &spec::Request) -> Result<Step> {
    let mut step = flow::request_step("verify", "spec.verify", r, Extraction::default())?;
    if r.method.is_none() {
        step.method = http::Method::GET;
    }
    Ok(step)
}

/// What a verification came to. Its messages name method, host and HTTP status, never a value.
#[derive(Debug, Clone, PartialEq)]
pub enum Verification {
    /// The provider answered.
    Answered { method: String, host: String, status: u16 },
    /// The request could not be rendered or sent, or got no answer.
    Failed(EngineError),
}

impl Verification {
    /// Whether the provider accepted the credential (a 2xx answer).
    pub fn ok(&self) -> bool {
        matches!(self, Verification::Answered { status, .. } if (200..300).contains(status))
    }

    /// The HTTP status, when there was an answer.
    pub fn status(&self) -> Option<u16> {
        match self {
            Verification::Answered { status, .. } => Some(*status),
            Verification::Failed(_) => None,
        }
    }

    /// The `Verified` condition's reason: a 4xx (other than 408 and 429) is a refusal of the
    /// credential; other answers say nothing about it.
    pub fn reason(&self) -> Reason {
        match self {
            Verification::Answered { status, .. } => match status {
                200..=299 => Reason::VerificationSucceeded,
                408 | 429 => Reason::VerificationFailed,
                400..=499 => Reason::VerificationRejected,
                _ => Reason::VerificationFailed,
            },
            Verification::Failed(e) => e.reason(),
        }
    }

    pub fn message(&self) -> String {
        match self {
            Verification::Answered { method, host, status } => {
                let what = match self.reason() {
                    Reason::VerificationSucceeded => "the published credential works",
                    Reason::VerificationRejected => "the published credential was not accepted",
                    _ => "no verdict on the published credential",
                };
                format!("verify request {method} {host} answered HTTP {status}: {what}")
            }
            Verification::Failed(e) => e.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answered(status: u16) -> Verification {
        Verification::Answered {
            method: "GET".into(),
            host: "api.example.com".into(),
            status,
        }
    }

    #[test]
    fn only_a_4xx_says_the_credential_is_refused_and_every_message_names_the_status() {
        assert!(answered(204).ok());
        assert_eq!(answered(200).reason(), Reason::VerificationSucceeded);
        assert_eq!(answered(401).reason(), Reason::VerificationRejected);
        assert_eq!(answered(403).reason(), Reason::VerificationRejected);
        assert_eq!(answered(429).reason(), Reason::VerificationFailed);
        assert_eq!(answered(503).reason(), Reason::VerificationFailed);
        assert_eq!(answered(302).reason(), Reason::VerificationFailed);
        assert!(!answered(302).ok());
        assert_eq!(
            answered(401).message(),
            "verify request GET api.example.com answered HTTP 401: the published credential was not accepted"
        );
        let e = Verification::Failed(EngineError::Connection {
            step: "verify".into(),
            host: "api.example.com".into(),
            reason: "refused".into(),
        });
        assert_eq!(e.reason(), Reason::ConnectionFailed);
        assert_eq!(e.status(), None);
    }

    #[test]
    fn a_verify_request_is_a_get_unless_it_says_otherwise() {
        let r = spec::Request {
            url: "https://api.example.com/me".into(),
            ..Default::default()
        };
        assert_eq!(compile(&r).unwrap().method, http::Method::GET);
        let post = spec::Request {
            method: Some(spec::Method::Post),
            ..r
        };
        assert_eq!(compile(&post).unwrap().method, http::Method::POST);
        let empty = spec::Request::default();
        assert!(compile(&empty).unwrap_err().to_string().contains("spec.verify.url"));
    }
}
