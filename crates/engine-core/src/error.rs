//! Engine errors. Each has a stable PascalCase reason (used for conditions, Events and metric
//! labels), says whether retrying can help, and never carries a secret value: messages name
//! fields, variables, hosts and HTTP statuses only.

use crate::reason::Reason;
use std::time::Duration;

use thiserror::Error;

pub type Result<T, E = EngineError> = std::result::Result<T, E>;

#[derive(Debug, Error, Clone, PartialEq)]
pub enum EngineError {
    /// The spec cannot work as written (bad JSONPath, bad duration, missing required field).
    #[error("invalid spec: {field}: {reason}")]
    InvalidSpec { field: String, reason: String },

    /// A template references something the context does not have.
    #[error("template {field} uses undefined variable `{variable}`; available: {available}")]
    UndefinedVariable {
        field: String,
        variable: String,
        available: String,
    },

    /// A template failed to parse or render for another reason.
    #[error("template {field} failed: {reason}")]
    Template { field: String, reason: String },

    /// The credentials Secret lacks a key the scheme needs (outside templates).
    #[error("credentials Secret has no key `{key}` (needed by {field})")]
    MissingCredential { key: String, field: String },

    /// A Secret or ConfigMap named in `spec.tls`, or the key read from it, does not exist.
    #[error("{field}: {reason}")]
    MissingReference { field: String, reason: String },

    /// The TLS material named in `spec.tls` is unusable: not PEM, no certificate, no private
    /// key, a key that does not belong to the certificate. Names the Secret or ConfigMap and
    /// key, never their content.
    #[error("{field}: {reason}")]
    TlsMaterial { field: String, reason: String },

    /// The signing key of a signed assertion is unusable: not a private key, not the kind the
    /// algorithm needs, not PEM or JSON, or not the key of its certificate. Names the Secret
    /// and key, never their content.
    #[error("{field}: key `{key}` of Secret {secret} {reason}")]
    InvalidKey {
        field: String,
        secret: String,
        key: String,
        reason: String,
    },

    /// The rendered request is not sendable (bad URL, bad header).
    #[error("{step} request: {reason}")]
    InvalidRequest { step: String, reason: String },

    /// The token URL points somewhere the address policy forbids (cloud metadata, link-local,
    /// private ranges when denied, outside the allow list).
    #[error("{step} request to {host} refused by the token-URL policy: {reason}")]
    Forbidden { step: String, host: String, reason: String },

    /// The provider refused the credentials or grant (401/403, OAuth `invalid_grant`,
    /// `invalid_client`, …). Retrying with the same input will not help.
    #[error("{step} request to {host} was rejected: HTTP {status}{}", oauth_suffix(.oauth_error))]
    Rejected {
        step: String,
        host: String,
        status: u16,
        oauth_error: Option<String>,
    },

    /// 429 Too Many Requests.
    #[error("{step} request to {host} was rate limited: HTTP 429{}", retry_suffix(.retry_after))]
    RateLimited {
        step: String,
        host: String,
        retry_after: Option<Duration>,
    },

    /// 5xx or another status that may pass.
    #[error("{step} request to {host} failed: HTTP {status}{}", retry_suffix(.retry_after))]
    ProviderUnavailable {
        step: String,
        host: String,
        status: u16,
        retry_after: Option<Duration>,
    },

    /// No answer in time.
    #[error("{step} request to {host} timed out after {}s", .after.as_secs_f64())]
    Timeout {
        step: String,
        host: String,
        after: Duration,
    },

    /// The TLS handshake failed: certificate not trusted or not for this host, a client
    /// certificate required or refused, …
    #[error("{step} request to {host}: TLS handshake failed: {reason}")]
    Tls { step: String, host: String, reason: String },

    /// A redirect was not followed: the resource does not allow redirects, there were too
    /// many, or one led from https to plain http. Names hosts only, never a Location's path
    /// or query.
    #[error("{step} request to {host}: {reason}")]
    Redirect { step: String, host: String, reason: String },

    /// Connection-level failure (refused, reset, DNS).
    #[error("{step} request to {host} failed: {reason}")]
    Connection { step: String, host: String, reason: String },

    /// The response body was larger than allowed.
    #[error("{step} response from {host} exceeds the {limit}-byte limit")]
    ResponseTooLarge { step: String, host: String, limit: usize },

    /// The response was not what the extraction expects (not JSON, an HTML page, …).
    #[error("{step} response from {host} (HTTP {status}) is not valid JSON{}", content_type_suffix(.content_type))]
    InvalidResponse {
        step: String,
        host: String,
        status: u16,
        content_type: Option<String>,
    },

    /// The extraction found nothing.
    #[error("{what} not found in {step} response: {location}")]
    ValueNotFound {
        step: String,
        what: String,
        location: String,
    },

    /// A value was found but is unusable (expiry that is not a number, JWT that is not a JWT).
    #[error("{what} in {step} response is unusable: {reason}")]
    InvalidValue { step: String, what: String, reason: String },

    /// The scheme needs a person to grant consent first (authorization-code grant).
    #[error("authorization required: open status.authorizationUrl to grant consent")]
    AuthorizationRequired,

    /// A refresh with the stored refresh token was under way when the operator stopped, so
    /// the provider may have acted on it (rotating the token) without the answer being
    /// stored. Sending it again could make the provider revoke the whole token family, and the
    /// scheme has no other way to get a token.
    #[error(
        "the stored refresh token was being used by a refresh that was interrupted (started {since}) before its answer was stored; \
         the provider may have replaced it, and sending it again could revoke the whole token family, so it is not sent again: \
         put a new refresh token into the credentials Secret (key `{key}`)"
    )]
    RefreshTokenInDoubt { since: String, key: String },

    /// The stored refresh token was issued for one refresh endpoint and the spec now sends
    /// refreshes to another (an edited `tokenUrl`, say): it is not sent there. It is kept, so
    /// putting the old endpoint back makes it usable again.
    #[error(
        "the stored refresh token belongs to {was} and is not sent to {now}: put a refresh token for the new endpoint into the credentials Secret (key `{key}`), or change the endpoint back"
    )]
    RefreshTokenEndpointChanged { was: String, now: String, key: String },

    /// A post-connect lookup (`oauth2.lookups`) failed. The token is kept; the lookup is tried
    /// again after the backoff, without a new consent.
    #[error("post-connect lookup `{lookup}` failed: {cause}")]
    LookupFailed { lookup: String, cause: Box<EngineError> },

    /// The provider refused the refresh token for good (`invalid_grant`, or a code that
    /// `errorCode.invalidGrant` names) and the scheme has no other way to a token: nothing is
    /// sent to the provider again until the credentials or the spec change, or someone renews.
    #[error(
        "the provider refused the refresh token for good ({cause}); no further requests are sent until the credentials Secret (key `{key}`) or the spec changes, or a renewal is requested"
    )]
    RefreshTokenRevoked { cause: Box<EngineError>, key: String },
}

fn oauth_suffix(e: &Option<String>) -> String {
    e.as_ref().map(|e| format!(" ({e})")).unwrap_or_default()
}

fn retry_suffix(d: &Option<Duration>) -> String {
    d.map(|d| format!(", retry after {}s", d.as_secs())).unwrap_or_default()
}

fn content_type_suffix(c: &Option<String>) -> String {
    c.as_ref().map(|c| format!(" (Content-Type {c})")).unwrap_or_default()
}

impl EngineError {
    /// Stable category for conditions, Events and metrics.
    pub fn reason(&self) -> Reason {
        match self {
            EngineError::InvalidSpec { .. } => Reason::InvalidSpec,
            EngineError::UndefinedVariable { .. } => Reason::UndefinedVariable,
            EngineError::Template { .. } => Reason::TemplateError,
            EngineError::MissingCredential { .. } => Reason::MissingCredential,
            EngineError::MissingReference { .. } => Reason::ReferenceNotFound,
            EngineError::TlsMaterial { .. } => Reason::InvalidTLSMaterial,
            EngineError::InvalidKey { .. } => Reason::InvalidKey,
            EngineError::InvalidRequest { .. } => Reason::InvalidRequest,
            EngineError::Forbidden { .. } => Reason::TokenUrlForbidden,
            EngineError::Rejected {
                oauth_error: Some(e), ..
            } if e == "invalid_grant" => Reason::InvalidGrant,
            EngineError::Rejected { .. } => Reason::CredentialsRejected,
            EngineError::RateLimited { .. } => Reason::RateLimited,
            EngineError::ProviderUnavailable { .. } => Reason::ProviderUnavailable,
            EngineError::Timeout { .. } => Reason::Timeout,
            EngineError::Connection { .. } => Reason::ConnectionFailed,
            EngineError::Tls { .. } => Reason::TLSHandshakeFailed,
            EngineError::Redirect { .. } => Reason::RedirectNotFollowed,
            EngineError::ResponseTooLarge { .. } => Reason::ResponseTooLarge,
            EngineError::InvalidResponse { .. } => Reason::InvalidResponse,
            EngineError::ValueNotFound { .. } => Reason::ValueNotFound,
            EngineError::InvalidValue { .. } => Reason::InvalidValue,
            EngineError::AuthorizationRequired => Reason::AuthorizationRequired,
            EngineError::RefreshTokenInDoubt { .. } => Reason::RefreshTokenInDoubt,
            EngineError::RefreshTokenEndpointChanged { .. } => Reason::RefreshTokenEndpointChanged,
            EngineError::LookupFailed { .. } => Reason::LookupFailed,
            EngineError::RefreshTokenRevoked { .. } => Reason::RefreshTokenRevoked,
        }
    }

    /// Whether the same attempt may succeed later without any change to spec or credentials.
    /// Terminal errors are still retried by the runners, but slowly (capped backoff), since a
    /// provider can misbehave in ways that look terminal. TLS handshake failures and missing
    /// TLS references count as transient: a provider fixes its certificate, and a CA bundle is
    /// often created after the resource that names it (a changed Secret or ConfigMap is
    /// retried at once anyway, see `reconcile::driver`).
    pub fn is_transient(&self) -> bool {
        if let EngineError::LookupFailed { cause, .. } = self {
            return cause.is_transient();
        }
        matches!(
            self,
            EngineError::Tls { .. }
                | EngineError::MissingReference { .. }
                | EngineError::RateLimited { .. }
                | EngineError::ProviderUnavailable { .. }
                | EngineError::Timeout { .. }
                | EngineError::Connection { .. }
                | EngineError::InvalidResponse { .. }
                | EngineError::ResponseTooLarge { .. }
        )
    }

    /// The provider's `Retry-After`, if it sent one.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            EngineError::LookupFailed { cause, .. } => cause.retry_after(),
            EngineError::RateLimited { retry_after, .. } | EngineError::ProviderUnavailable { retry_after, .. } => {
                *retry_after
            }
            _ => None,
        }
    }

    /// The refresh token was refused: it is revoked or expired, so it must not be sent again.
    pub fn is_invalid_grant(&self) -> bool {
        match self {
            EngineError::Rejected {
                oauth_error: Some(e), ..
            } => e == "invalid_grant",
            EngineError::RefreshTokenRevoked { .. } => true,
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_step_host_and_status() {
        let e = EngineError::Rejected {
            step: "refresh".into(),
            host: "oauth2.example.com".into(),
            status: 400,
            oauth_error: Some("invalid_grant".into()),
        };
        assert_eq!(
            e.to_string(),
            "refresh request to oauth2.example.com was rejected: HTTP 400 (invalid_grant)"
        );
        assert_eq!(e.reason(), "InvalidGrant");
        assert!(e.is_invalid_grant());
        assert!(!e.is_transient());

        let e = EngineError::RateLimited {
            step: "login".into(),
            host: "api.snov.io".into(),
            retry_after: Some(Duration::from_secs(30)),
        };
        assert_eq!(
            e.to_string(),
            "login request to api.snov.io was rate limited: HTTP 429, retry after 30s"
        );
        assert!(e.is_transient());
        assert_eq!(e.retry_after(), Some(Duration::from_secs(30)));
    }
}
