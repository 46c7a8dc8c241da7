//! Decide and act for one resource, independent of where state lives: load the record, let
//! the pure decisions ([`super::decide`], [`renewal::decide`]) choose, then send, persist and
//! publish.
//!
//! The ordering is the durability guarantee: a token response is persisted to the private
//! store *before* anything is published, and a record that could not be persisted is kept in
//! memory and persisted first on the next pass, so a rotated refresh token is never lost while
//! the process lives and the old one is never sent again.
//!
//! Across an abrupt stop, a write-ahead mark covers the one window ordering cannot: between
//! sending a refresh token and storing the answer, the provider may have rotated it. Before a
//! refresh token that may be single-use is sent, its digest is stored as in flight; the answer
//! clears the mark in the same write that stores the new token. A mark found on a later pass
//! means the process stopped inside that window: the token is then never sent again (a
//! provider that revokes the whole family on reuse would otherwise do so); the scheme logs in
//! again or asks for consent, or, if it can do neither, reports `RefreshTokenInDoubt`.
//!
//! A renewal request (the `connectorauth.dev/renew` annotation) is taken the same way: its
//! value is stored as handled before the token request is sent (with the mark, where there is
//! one), so whoever leads next never acts upon it again — at most one token call per request.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

use super::Gathered;
use super::decide::{self, Guard};
use super::lead::Lead;
use crate::engine::renewal::{self, Decision};
use crate::engine::{Engine, EngineError, Flow, Inputs, RefreshChoice, SecretString, TokenState, refresh_choice};
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
    pub last_error: Option<(String, String)>,
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
    pub rollout: Option<decide::RolloutMark>,
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
    /// Digest of the refresh token (see [`RefreshChoice::digest`]).
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
pub struct Unsaved(Option<Record>);

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
    pub last_error: Option<(String, String)>,
    /// For authorization-code flows awaiting consent: the link's nonce and expiry.
    pub pending_consent: Option<PendingConsent>,
    /// The last renewal request acted upon.
    pub renew_handled: Option<String>,
}

/// How long a consent link is offered before a fresh one replaces it.
pub const CONSENT_TTL: SignedDuration = SignedDuration::from_secs(crate::consent::STATE_TTL_SECS);

fn retry_policy() -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(100))
        .with_max_delay(Duration::from_secs(2))
        .with_max_times(5)
        .with_jitter()
}

/// Saves what an earlier pass could not, before anything else.
async fn flush<S: Store + Sync>(store: &S, unsaved: &mut Unsaved) -> Result<(), StoreError> {
    if let Some(pending) = unsaved.0.take()
        && let Err(e) = (|| store.save(&pending)).retry(retry_policy()).await
    {
        unsaved.0 = Some(pending);
        return Err(e);
    }
    Ok(())
}

/// Saves `record`, retrying; on failure keeps it in `unsaved` so the next pass saves it first.
async fn persist<S: Store + Sync>(store: &S, record: &Record, unsaved: &mut Unsaved) -> Result<(), StoreError> {
    if let Err(e) = (|| store.save(record)).retry(retry_policy()).await {
        unsaved.0 = Some(record.clone());
        return Err(e);
    }
    Ok(())
}

/// One pass. `Err` for store failures and a lost Lease; token failures are an `Outcome`.
pub async fn reconcile<S: Store + Sync>(
    engine: &Engine,
    g: &Gathered,
    store: &S,
    unsaved: &mut Unsaved,
    lead: &Lead,
    now: Timestamp,
) -> Result<Outcome, PassError> {
    let (flow, inputs, fingerprint) = (&g.flow, &g.inputs, g.fingerprint.as_str());
    // Anything held only in memory is saved first.
    flush(store, unsaved).await?;
    let mut record = store.load().await?.unwrap_or_default();
    // An expired previous token is no longer published (the next write drops it).
    record.previous = record.previous.filter(|p| decide::still_valid(p.expires_at, now));

    // What an attempt depends on: the token's inputs plus how requests are sent (changing
    // those retries at once, but does not re-issue a valid token).
    let attempt = match inputs.http_digest() {
        Some(http) => format!("{fingerprint}+{http}"),
        None => fingerprint.to_string(),
    };
    // A renewal someone asked for is attempted at once, backoff or not, and only once.
    let requested = decide::renew_request(g.renew_request.as_deref(), record.renew_handled.as_deref());
    if let Some(retry_at) = decide::backing_off(&record, &attempt, now).filter(|_| requested.is_none()) {
        return Ok(
            match publish_current(engine, flow, inputs, &record, store, now).await? {
                Some(written) => outcome(Action::BackingOff, &record, Some(retry_at), written),
                None => unpublished(outcome(Action::BackingOff, &record, Some(retry_at), false)),
            },
        );
    }

    let decision = decide::with_request(
        renewal::decide(now, record.token.as_ref(), fingerprint),
        requested.is_some(),
    );
    let reason = match decision {
        Decision::Keep { until } => {
            let Some(token) = record.token.as_ref() else {
                unreachable!("decide keeps only a stored token")
            };
            return match output(engine, flow, inputs, token, &record) {
                Ok(data) => {
                    let written = store.publish(&data).await?;
                    Ok(outcome(Action::Kept, &record, until, written))
                }
                // Only the output spec is broken: report it, keep what is published, no backoff
                // needed since no provider is called.
                Err(error) => Ok(unpublished(outcome(Action::Failed { error }, &record, until, false))),
            };
        }
        Decision::Renew { reason } => reason,
    };
    let refreshed = record.token.as_ref().is_some_and(|t| t.refresh_token.is_some());
    let mut choice = refresh_choice(flow, &inputs.credentials, record.token.as_ref());
    let digest = choice.digest();
    let can_login = flow.login.is_some() || flow.code_exchange.is_some();
    let guard = decide::guard(record.in_flight.as_ref(), digest.as_deref(), choice.reusable, can_login);
    if !lead.held() {
        return Err(PassError::NotLeader);
    }
    let mut marked = false;
    // The request is taken before anything is sent, in the same write as the mark where there
    // is one: a process that stops after sending never leaves it to another to act on again.
    let untaken = record.clone();
    if let Some(value) = requested {
        record.renew_handled = Some(value.to_string());
    }
    match guard {
        Guard::Send | Guard::LoginInstead if requested.is_some() => {
            if let Err(e) = (|| store.save(&record)).retry(retry_policy()).await {
                unsaved.0 = Some(untaken);
                return Err(e.into());
            }
            if !lead.held() {
                return Err(PassError::NotLeader);
            }
            if guard == Guard::LoginInstead {
                choice = RefreshChoice { token: None, ..choice };
            }
        }
        Guard::Send => {}
        Guard::MarkThenSend => {
            let unmarked = untaken;
            record.in_flight = digest.map(|digest| InFlight { digest, since: now });
            if let Err(e) = (|| store.save(&record)).retry(retry_policy()).await {
                // Nothing was sent, but the mark may be stored all the same (a write whose
                // answer was lost): the record as loaded is written first on the next pass, so
                // this process never takes its own unsent mark for an interrupted refresh.
                unsaved.0 = Some(unmarked);
                return Err(e.into());
            }
            marked = true;
            // The Lease may have been lost while the mark was written.
            if !lead.held() {
                return Err(PassError::NotLeader);
            }
        }
        // Log in again (or ask for consent) instead; the mark stays until that gives a new
        // token.
        Guard::LoginInstead => choice = RefreshChoice { token: None, ..choice },
        Guard::InDoubt => {
            let error = EngineError::RefreshTokenInDoubt {
                since: record
                    .in_flight
                    .as_ref()
                    .map(|m| m.since.to_string())
                    .unwrap_or_default(),
                key: flow.seed_refresh_key.clone().unwrap_or_else(|| "refresh_token".into()),
            };
            return Ok(fail(store, &mut record, error, fingerprint, now, unsaved).await?);
        }
    }
    match engine
        .obtain_with(flow, inputs, record.token.as_ref(), choice, fingerprint, now)
        .await
    {
        Ok(token) => {
            // Saved even if the Lease was lost meanwhile: a rotated refresh token must never be
            // dropped.
            record = Record {
                previous: replaced(engine, flow, inputs, record.token.as_ref(), now),
                rollout: record.rollout.take(),
                token: Some(token),
                pending_consent: record.pending_consent.take(),
                renew_handled: record.renew_handled.take(),
                ..Record::default()
            };
            persist(store, &record, unsaved).await?;
            let token = record.token.as_ref().expect("just set");
            match output(engine, flow, inputs, token, &record) {
                Ok(data) => {
                    let written = store.publish(&data).await?;
                    let next = token.renew_at;
                    Ok(outcome(Action::Issued { reason, refreshed }, &record, next, written))
                }
                Err(error) => Ok(unpublished(
                    fail(store, &mut record, error, &attempt, now, unsaved).await?,
                )),
            }
        }
        Err(EngineError::AuthorizationRequired) => Ok(await_consent(store, record, now, unsaved).await?),
        Err(error) => {
            // This process saw the attempt end: it is retried after the backoff, as any failure
            // is. Only a stop before that leaves the mark behind.
            if marked {
                record.in_flight = None;
            }
            Ok(fail(store, &mut record, error, &attempt, now, unsaved).await?)
        }
    }
}

/// Offers (or keeps offering) a consent link. Not a failure: nothing is retried until a person
/// grants consent; the link is renewed shortly before it expires.
async fn await_consent<S: Store + Sync>(
    store: &S,
    mut record: Record,
    now: Timestamp,
    unsaved: &mut Unsaved,
) -> Result<Outcome, StoreError> {
    let before = record.clone();
    // Any refresh token left was refused (or is in doubt): it must not be sent again.
    if let Some(t) = record.token.as_mut() {
        t.refresh_token = None;
    }
    record.in_flight = None;
    if !decide::consent_link_fresh(record.pending_consent.as_ref(), now) {
        record.pending_consent = Some(PendingConsent {
            nonce: crate::consent::random_token(16),
            expires: now + CONSENT_TTL,
        });
    }
    record.retry_at = None;
    record.failed_fingerprint = None;
    let error = EngineError::AuthorizationRequired;
    record.last_error = Some((error.reason().to_string(), error.to_string()));
    if record != before {
        persist(store, &record, unsaved).await?;
    }
    let expires_at = record.token.as_ref().and_then(|t| t.expires_at);
    let next = decide::consent_recheck(record.pending_consent.as_ref(), expires_at, now);
    Ok(outcome(Action::Failed { error }, &record, next, false))
}

/// Completes a consent: checks the link's nonce is the one pending, exchanges the callback
/// values for tokens, persists, publishes. The outer `Err` is a store failure or a lost Lease.
pub async fn complete_consent<S: Store + Sync>(
    engine: &Engine,
    g: &Gathered,
    store: &S,
    unsaved: &mut Unsaved,
    nonce: &str,
    lead: &Lead,
    now: Timestamp,
) -> Result<Result<Outcome, ConsentError>, PassError> {
    let (flow, inputs, fingerprint) = (&g.flow, &g.inputs, g.fingerprint.as_str());
    flush(store, unsaved).await?;
    let mut record = store.load().await?.unwrap_or_default();
    let pending = record
        .pending_consent
        .as_ref()
        .is_some_and(|p| p.nonce == nonce && p.expires > now);
    if !pending {
        return Ok(Err(ConsentError::NotPending));
    }
    if !lead.held() {
        return Err(PassError::NotLeader);
    }
    match engine.exchange(flow, inputs, fingerprint, now).await {
        Ok(token) => {
            record = Record {
                previous: replaced(engine, flow, inputs, record.token.as_ref(), now),
                rollout: record.rollout.take(),
                token: Some(token),
                renew_handled: record.renew_handled.take(),
                ..Record::default()
            };
            persist(store, &record, unsaved).await?;
            let token = record.token.as_ref().expect("just set");
            let data = match output(engine, flow, inputs, token, &record) {
                Ok(d) => d,
                Err(e) => return Ok(Err(ConsentError::Engine(e))),
            };
            let written = store.publish(&data).await?;
            let next = token.renew_at;
            Ok(Ok(outcome(
                Action::Issued {
                    reason: Reason::Authorized,
                    refreshed: false,
                },
                &record,
                next,
                written,
            )))
        }
        Err(e) => {
            record.last_error = Some((e.reason().to_string(), e.to_string()));
            persist(store, &record, unsaved).await?;
            Ok(Err(ConsentError::Engine(e)))
        }
    }
}

async fn fail<S: Store + Sync>(
    store: &S,
    record: &mut Record,
    error: EngineError,
    fingerprint: &str,
    now: Timestamp,
    unsaved: &mut Unsaved,
) -> Result<Outcome, StoreError> {
    record.failures = record.failures.saturating_add(1);
    let delay = renewal::backoff(
        record.failures,
        error.is_transient(),
        error.retry_after(),
        rand::random(),
    );
    let delay = SignedDuration::try_from(delay).unwrap_or(SignedDuration::from_secs(300));
    let expires_at = record.token.as_ref().and_then(|t| t.expires_at);
    let retry_at = decide::retry_time(now, delay, expires_at, error.retry_after().is_some());
    record.retry_at = Some(retry_at);
    record.failed_fingerprint = Some(fingerprint.to_string());
    record.last_error = Some((error.reason().to_string(), error.to_string()));
    persist(store, record, unsaved).await?;
    Ok(outcome(Action::Failed { error }, record, Some(retry_at), false))
}

/// Re-publishes the stored token if the output went missing or was edited (the store
/// compares). `None` when the output spec cannot be rendered.
async fn publish_current<S: Store + Sync>(
    engine: &Engine,
    flow: &Flow,
    inputs: &Inputs,
    record: &Record,
    store: &S,
    now: Timestamp,
) -> Result<Option<bool>, StoreError> {
    let Some(token) = record.token.as_ref() else {
        return Ok(Some(false));
    };
    if token.expires_at.is_some_and(|e| e <= now) {
        return Ok(Some(false));
    }
    match output(engine, flow, inputs, token, record) {
        Ok(data) => store.publish(&data).await.map(Some),
        // The output spec is broken: what is published (if anything) is not what the spec
        // asks for. Kept as it is until the spec is fixed.
        Err(_) => Ok(None),
    }
}

/// An outcome whose token could not be rendered into the output the spec asks for: no
/// token is reported as published (the stored one is kept for when the spec is fixed).
fn unpublished(mut o: Outcome) -> Outcome {
    o.token = None;
    o
}

/// The output data of `token`, with the previous token beside it while it is kept.
fn output(
    engine: &Engine,
    flow: &Flow,
    inputs: &Inputs,
    token: &TokenState,
    record: &Record,
) -> Result<BTreeMap<String, String>, EngineError> {
    let mut data = engine.render_output(flow, inputs, token)?;
    if flow.output.keep_previous
        && let Some(p) = &record.previous
    {
        data.insert(PREVIOUS_ACCESS_TOKEN.into(), p.access_token.expose().to_string());
        data.insert(PREVIOUS_HEADERS.into(), p.headers_json.expose().to_string());
    }
    Ok(data)
}

/// Output keys of the previous token (`output.keepPrevious`).
pub const PREVIOUS_ACCESS_TOKEN: &str = "previous_access_token";
pub const PREVIOUS_HEADERS: &str = "previous_headers.json";

/// The token an issuance replaces, kept when the spec asks for it and it is still valid.
fn replaced(
    engine: &Engine,
    flow: &Flow,
    inputs: &Inputs,
    old: Option<&TokenState>,
    now: Timestamp,
) -> Option<Previous> {
    let old = old.filter(|t| decide::keeps_previous(flow.output.keep_previous, t, now))?;
    let data = engine.render_output(flow, inputs, old).ok()?;
    Some(Previous {
        access_token: old.access_token.clone(),
        headers_json: data.get("headers.json")?.as_str().into(),
        expires_at: old.expires_at,
    })
}

fn outcome(action: Action, record: &Record, next: Option<Timestamp>, written: bool) -> Outcome {
    Outcome {
        action,
        token: record.token.clone(),
        next: decide::next_look(next, record.previous.as_ref()),
        written,
        failures: record.failures,
        last_error: record.last_error.clone(),
        pending_consent: record.pending_consent.clone(),
        renew_handled: record.renew_handled.clone(),
    }
}
