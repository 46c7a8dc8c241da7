//! API errors rendered as `meta.k8s.io/v1` `Status` objects.
//!
//! `kube::Client` only turns a non-2xx response into `kube::Error::Api` with the
//! right `code`/`reason` when the body parses as a `Status`, so every error path of
//! the fake server goes through [`ApiError`].

use serde_json::{Value, json};

use crate::field::{FieldError, aggregate};
use crate::registry::ResourceInfo;

/// `StatusDetails` without its empty fields (they are `omitempty`).
fn details(name: &str, group: &str, kind: &str) -> Value {
    let mut d = serde_json::Map::new();
    for (key, value) in [("name", name), ("group", group), ("kind", kind)] {
        if !value.is_empty() {
            d.insert(key.to_string(), Value::String(value.to_string()));
        }
    }
    Value::Object(d)
}

/// An error answered with an HTTP status code and a `Status` body, like a real API server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status code, also the `code` field of the `Status` body.
    pub code: u16,
    /// Machine-readable reason (`NotFound`, `AlreadyExists`, `Conflict`, ...).
    pub reason: String,
    /// Human-readable message, worded like the real API server's.
    pub message: String,
    details: Option<Value>,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.code, self.reason, self.message)
    }
}

impl std::error::Error for ApiError {}

impl ApiError {
    /// An error with an explicit code, reason and message.
    pub fn new(code: u16, reason: &str, message: impl Into<String>) -> Self {
        Self {
            code,
            reason: reason.to_string(),
            message: message.into(),
            details: None,
        }
    }

    /// An error for an arbitrary status code, with the reason a real server uses for it.
    /// Used by fault injection.
    pub(crate) fn from_code(code: u16) -> Self {
        let reason = match code {
            400 => "BadRequest",
            401 => "Unauthorized",
            403 => "Forbidden",
            404 => "NotFound",
            405 => "MethodNotAllowed",
            409 => "Conflict",
            410 => "Expired",
            415 => "UnsupportedMediaType",
            422 => "Invalid",
            429 => "TooManyRequests",
            500 => "InternalError",
            503 => "ServiceUnavailable",
            504 => "Timeout",
            _ => "Unknown",
        };
        Self::new(code, reason, format!("injected fault: {reason} ({code})"))
    }

    fn with_details(mut self, info: &ResourceInfo, name: &str) -> Self {
        self.details = Some(details(name, &info.group, &info.plural));
        self
    }

    /// The answer for paths no registered resource serves, e.g. a CRD that is not installed.
    pub(crate) fn unknown_resource() -> Self {
        Self::new(404, "NotFound", "the server could not find the requested resource")
    }

    pub(crate) fn not_found(info: &ResourceInfo, name: &str) -> Self {
        Self::new(
            404,
            "NotFound",
            format!("{} \"{name}\" not found", info.qualified_name()),
        )
        .with_details(info, name)
    }

    pub(crate) fn already_exists(info: &ResourceInfo, name: &str) -> Self {
        Self::new(
            409,
            "AlreadyExists",
            format!("{} \"{name}\" already exists", info.qualified_name()),
        )
        .with_details(info, name)
    }

    /// Optimistic-concurrency failure (stale `resourceVersion`, failed precondition,
    /// server-side apply field conflict).
    pub(crate) fn conflict(info: &ResourceInfo, name: &str, why: &str) -> Self {
        Self::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{name}\": {why}",
                info.qualified_name()
            ),
        )
        .with_details(info, name)
    }

    pub(crate) fn stale_resource_version(info: &ResourceInfo, name: &str) -> Self {
        Self::conflict(
            info,
            name,
            "the object has been modified; please apply your changes to the latest version and try again",
        )
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    /// `422 Invalid` for the given field errors, as `errors.NewInvalid` builds it: the message
    /// names the kind (`Secret`, `ConnectorAuth.connectorauth.dev`) and joins the errors; each
    /// error becomes a cause. `details.kind` is the kind here, not the resource.
    pub(crate) fn invalid(info: &ResourceInfo, name: &str, errors: &[FieldError]) -> Self {
        let kind = if info.group.is_empty() {
            info.kind.clone()
        } else {
            format!("{}.{}", info.kind, info.group)
        };
        let message = if errors.is_empty() {
            format!("{kind} \"{name}\" is invalid")
        } else {
            format!("{kind} \"{name}\" is invalid: {}", aggregate(errors))
        };
        let mut details = details(name, &info.group, &info.kind);
        let causes: Vec<Value> = errors
            .iter()
            .map(|e| json!({ "reason": e.kind.reason(), "message": e.body(), "field": e.field }))
            .collect();
        if !causes.is_empty() {
            details["causes"] = Value::Array(causes);
        }
        Self {
            code: 422,
            reason: "Invalid".to_string(),
            message,
            details: Some(details),
        }
    }

    pub(crate) fn method_not_allowed() -> Self {
        Self::new(
            405,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource",
        )
    }

    pub(crate) fn unsupported_media_type(content_type: &str) -> Self {
        Self::new(
            415,
            "UnsupportedMediaType",
            format!("the body of the request was in an unknown format: {content_type}"),
        )
    }

    pub(crate) fn internal(message: impl Into<String>) -> Self {
        Self::new(500, "InternalError", message)
    }

    /// `410 Gone`: the requested resourceVersion is older than the kept watch history.
    pub(crate) fn expired(message: impl Into<String>) -> Self {
        Self::new(410, "Expired", message)
    }

    /// The `Status` object kube parses into `kube::Error::Api`.
    pub(crate) fn to_status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some(details) = &self.details {
            status["details"] = details.clone();
        }
        status
    }
}
