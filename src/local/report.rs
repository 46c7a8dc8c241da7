//! What local mode prints: one line per resource, when something about it changed.

use jiff::Timestamp;

use crate::engine::{EngineError, Verification};
use crate::reconcile::record::Failure;
use crate::reconcile::{Action, Outcome};

/// One resource's result of a pass, for summaries.
#[derive(Debug, Clone)]
pub struct Report {
    pub namespace: String,
    pub name: String,
    pub scheme: String,
    pub secret: String,
    /// The pass's outcome, or why there was no pass (a refused spec, a state write that failed).
    pub result: Result<Outcome, Failure>,
    /// For resources awaiting consent: the link to open.
    pub authorization_url: Option<String>,
    /// A warning about the spec, given once per resource and process (`insecureSkipVerify`).
    pub warning: Option<String>,
    /// What `spec.verify` came to, when the pass verified the credential.
    pub verification: Option<Verification>,
}

impl Report {
    /// The warning as printed on stderr, if there is one.
    pub fn warning_line(&self) -> Option<String> {
        let w = self.warning.as_ref()?;
        Some(format!("WARNING {}/{}: {w}", self.namespace, self.name))
    }

    pub fn ok(&self) -> bool {
        matches!(&self.result, Ok(o) if !matches!(o.action, Action::Failed { .. } | Action::BackingOff))
            && self.result.as_ref().is_ok_and(|o| o.token.is_some())
            && self.verification.as_ref().is_none_or(Verification::ok)
    }

    /// One line, without secret values.
    pub fn line(&self) -> String {
        let who = format!("{}/{}", self.namespace, self.name);
        match &self.result {
            Err(e) => format!("{who:<32} {:<17} {}  {e}", self.scheme, State::Failed),
            Ok(o) => {
                let (word, detail) = match &o.action {
                    Action::Kept => (State::Kept, String::new()),
                    Action::Issued {
                        refreshed: true,
                        reason,
                    } => (State::Refreshed, format!(" ({reason})")),
                    Action::Issued {
                        refreshed: false,
                        reason,
                    } => (State::Issued, format!(" ({reason})")),
                    Action::Failed { error } => (State::Failed, format!(" {}", Failure::of(error))),
                    Action::BackingOff => (
                        State::BackingOff,
                        o.last_error.as_ref().map(|f| format!(" {f}")).unwrap_or_default(),
                    ),
                };
                let now = Timestamp::now();
                let expires = match &o.token {
                    Some(t) => t
                        .expires_at
                        .map(|e| format!("expires {}", when(e, now)))
                        .unwrap_or_else(|| "no expiry".into()),
                    None => "no token".into(),
                };
                let next = o
                    .next
                    .map(|n| format!(", next check {}", when(n, now)))
                    .unwrap_or_default();
                if let (
                    Action::Failed {
                        error: EngineError::AuthorizationRequired,
                    },
                    Some(url),
                ) = (&o.action, &self.authorization_url)
                {
                    return format!(
                        "{who:<32} {:<17} {:<9} open this URL to grant consent: {url}",
                        self.scheme,
                        State::Consent
                    );
                }
                let verified = match &self.verification {
                    Some(v) if v.ok() => format!(", verified (HTTP {})", v.status().unwrap_or_default()),
                    Some(v) => format!(", VERIFY FAILED: {} [{}]", v.message(), v.reason()),
                    None => String::new(),
                };
                format!(
                    "{who:<32} {:<17} {word:<9} {expires}{next} -> {}{detail}{verified}",
                    self.scheme, self.secret
                )
            }
        }
    }
}

/// What a pass came to for one resource, as local mode prints it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    Issued,
    Refreshed,
    Kept,
    BackingOff,
    Failed,
    /// Waiting for a person to grant consent.
    Consent,
}

impl State {
    /// The word printed.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Issued => "issued",
            State::Refreshed => "refreshed",
            State::Kept => "kept",
            State::BackingOff => "backoff",
            State::Failed => "FAILED",
            State::Consent => "CONSENT",
        }
    }
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

/// `2026-11-22T14:55:13Z (in 6s)`.
fn when(t: Timestamp, now: Timestamp) -> String {
    let t = t.round(jiff::Unit::Second).unwrap_or(t);
    let secs = t.duration_since(now).as_secs_f64().round() as i64;
    let rel = match secs {
        s if s < 0 => format!("{}s ago", -s),
        s if s < 120 => format!("in {s}s"),
        s if s < 7200 => format!("in {}m", s / 60),
        s => format!("in {}h", s / 3600),
    };
    format!("{t} ({rel})")
}

/// Whether an error is worth a non-zero exit in `--once`.
pub fn failed(reports: &[Report]) -> bool {
    reports.iter().any(|r| !r.ok())
}
