//! What a pass is given, keeps and reports: the [`Gathered`] inputs, the durable per-resource
//! [`Record`], the [`Outcome`] of a pass, the [`Store`] a record lives in, and the errors that end a pass.
//! Plain data (and one trait): the decisions and the driver use these, nothing here uses them.

use std::collections::BTreeMap;
use std::future::Future;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::engine::{EngineError, Flow, Inputs, SecretString, TokenState};
use crate::reason::Reason;

/// Private, durable per-resource record.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Record {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<TokenState>,
    /// Consecutive failures.
    #[serde(default)]
    pub failures: u32,
    /// No new attempt before this time (backoff), unless the inputs change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_at: Option<Timestamp>,
    /// Fingerprint of the inputs of the last failed attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_fingerprint: Option<String>,
    /// Reason and message of the last failure (never secret).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<Failure>,
    /// The consent link currently offered (authorization-code flows awaiting a person).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_consent: Option<PendingConsent>,
    /// Write-ahead mark: a refresh with this refresh token was started and its answer is not
    /// stored yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_flight: Option<InFlight>,
    /// The last renewal request (the `connectorauth.dev/renew` annotation's value) acted upon:
    /// stored before its token request is sent, so no process acts on it twice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renew_handled: Option<String>,
    /// The token the current one replaced, published beside it (`output.keepPrevious`) until
    /// it expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<Previous>,
    /// What the workloads of `output.rolloutRestart` were last restarted for (controller).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<RolloutMark>,
}

/// What a resource's token depends on, gathered.
pub struct Gathered {
    pub flow: Flow,
    pub inputs: Inputs,
    pub fingerprint: String,
    /// The provider entry used: `ClusterConnectorAuthProvider/<name>` or `built-in/<name>`.
    pub provider: Option<String>,
    /// The `connectorauth.dev/renew` annotation's value: a renewal someone asked for.
    pub renew_request: Option<String>,
}

/// A failure as reported: its reason and a message naming what failed (never a secret value).
/// Stored as `[reason, message]`, as records always were.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "(String, String)", into = "(String, String)")]
pub struct Failure {
    pub reason: Reason,
    pub message: String,
}

impl Failure {
    pub fn new(reason: Reason, message: impl Into<String>) -> Self {
        Failure {
            reason,
            message: message.into(),
        }
    }

    /// An engine error's reason and message.
    pub fn of(error: &EngineError) -> Self {
        Failure::new(error.reason(), error.to_string())
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} [{}]", self.message, self.reason)
    }
}

/// A stored reason no longer known (a record written by another version) reads as
/// `InternalError`; its message is kept.
impl From<(String, String)> for Failure {
    fn from((reason, message): (String, String)) -> Self {
        Failure::new(Reason::parse(&reason).unwrap_or(Reason::InternalError), message)
    }
}

impl From<Failure> for (String, String) {
    fn from(f: Failure) -> Self {
        (f.reason.as_str().to_string(), f.message)
    }
}

/// A replaced token, as `previous_access_token` and `previous_headers.json` publish it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Previous {
    pub access_token: SecretString,
    /// `headers.json` as rendered for that token.
    pub headers_json: SecretString,
    /// None: it does not expire, and is kept until the next rotation replaces it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Timestamp>,
}

/// A refresh token that was about to be sent (or was sent) without its answer being stored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InFlight {
    /// Digest of the refresh token (see [`crate::engine::RefreshChoice::digest`]).
    pub digest: String,
    /// When the refresh started.
    pub since: Timestamp,
}

/// A consent link's single-use nonce and its expiry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PendingConsent {
    pub nonce: String,
    pub expires: Timestamp,
}

/// Why a consent callback was not accepted.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConsentError {
    #[error("this consent link was already used or replaced by a newer one; open the current status.authorizationUrl")]
    NotPending,
    #[error("{0}")]
    Engine(EngineError),
}

/// A store (or source) could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A Secret the resource would keep its state or output in belongs to someone else: it is
    /// never read as state, and never overwritten.
    #[error(
        "Secret {secret} already exists and belongs to {owner}, not to this resource; delete it or choose another name"
    )]
    OwnedElsewhere { secret: String, owner: String },
    /// The API server refused a write as invalid: the same write would be refused again.
    #[error("the API server refused Secret {secret}: {message}")]
    Rejected { secret: String, message: String },
}

impl StoreError {
    pub fn new(what: impl Into<String>, source: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        StoreError::Io {
            what: what.into(),
            source: source.into(),
        }
    }
}

/// Why a pass ended without an [`Outcome`].
#[derive(Debug, thiserror::Error)]
pub enum PassError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// This process lost the Lease during the pass: it starts no token request and writes
    /// nothing more (the new leader takes the resource from here).
    #[error("no longer the leader: the pass stopped before any token request")]
    NotLeader,
    /// The pass panicked (a bug). Only this resource's pass ended: what it had not persisted
    /// stays with the resource's lock for the next pass.
    #[error("an internal error ended this pass; other resources are not affected")]
    Panicked,
}

/// Where a resource's record and output live.
pub trait Store {
    fn load(&self) -> impl Future<Output = Result<Option<Record>, StoreError>> + Send;
    /// Durably saves the record.
    fn save(&self, record: &Record) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Publishes the output data; returns false (and writes nothing) when it is unchanged.
    fn publish(&self, data: &BTreeMap<String, String>) -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// Secrets left by an earlier resource of the same name that this store found and
    /// replaced without reading them.
    fn replaced(&self) -> Vec<String> {
        Vec::new()
    }
}

/// In-memory companion of a store: a record that could not be persisted yet.
#[derive(Debug, Default)]
pub struct Unsaved(pub(super) Option<Record>);

impl Unsaved {
    /// Nothing is waiting to be persisted.
    pub fn is_empty(&self) -> bool {
        self.0.is_none()
    }

    /// The record waiting to be persisted: the newest there is.
    pub fn record(&self) -> Option<&Record> {
        self.0.as_ref()
    }
}

/// What a pass did.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// The stored token is good.
    Kept,
    /// A new token was obtained.
    Issued { reason: Reason, refreshed: bool },
    /// The attempt failed; the previous token (if any) stays published.
    Failed { error: EngineError },
    /// Still backing off from an earlier failure.
    BackingOff,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub action: Action,
    /// The token currently published, if any.
    pub token: Option<TokenState>,
    /// When this resource wants to be looked at again (None: only on change).
    pub next: Option<Timestamp>,
    /// Whether the output was written.
    pub written: bool,
    pub failures: u32,
    pub last_error: Option<Failure>,
    /// For authorization-code flows awaiting consent: the link's nonce and expiry.
    pub pending_consent: Option<PendingConsent>,
    /// The last renewal request acted upon.
    pub renew_handled: Option<String>,
}

/// What the workloads of `output.rolloutRestart` were last restarted for. Kept in the private
/// state, so each change restarts each workload once, across retried passes and operator
/// restarts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RolloutMark {
    /// What the published credential was for (`controller::decide::rollout::RolloutTrigger`).
    pub change: String,
    /// Which issuance of it was published.
    pub issued: String,
    /// The `restartedAt` value of this mark's restarts: a workload whose pod template carries
    /// it was restarted for this mark already.
    pub at: String,
    /// Targets (by their key, `Deployment/name` or `Deployment?selector`) not restarted for
    /// this mark yet.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pending: Vec<String>,
}
