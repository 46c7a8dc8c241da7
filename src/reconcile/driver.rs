//! Decide and act for one resource, independent of where state lives: load the record, let
//! the pure decisions ([`super::renew::plan`], [`super::decide`]) choose, then send, persist and
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
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use jiff::{SignedDuration, Timestamp};

use super::decide;
use super::lead::Lead;
use super::record::{
    Action, ConsentError, Failure, Gathered, InFlight, Outcome, PassError, PendingConsent, Previous, Record, Store,
    StoreError, Unsaved,
};
use super::renew::{self, Guard, Plan};
use crate::engine::chain::lookups_due;
use crate::engine::renewal;
use crate::engine::{Engine, EngineError, Flow, Inputs, RefreshChoice, TokenState, refresh_choice};
use crate::reason::Reason;

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
    let requested = renew::renew_request(g.renew_request.as_deref(), record.renew_handled.as_deref());
    let mut choice = refresh_choice(flow, &inputs.credentials, record.token.as_ref());
    let digest = choice.digest();
    let plan = renew::plan(&renew::Facts {
        record: &record,
        fingerprint,
        attempt: &attempt,
        requested,
        refresh_token: digest.as_deref(),
        reusable: choice.reusable,
        can_login: flow.login.is_some() || flow.code_exchange.is_some(),
        keep_alive: record
            .token
            .as_ref()
            .and_then(|t| flow.renewal.keep_alive(t.issued_at, t.refresh_token.is_some())),
        now,
    });
    let (reason, guard) = match plan {
        Plan::BackOff { until } => {
            return Ok(
                match publish_current(engine, flow, inputs, &record, store, now).await? {
                    Some(written) => outcome(Action::BackingOff, &record, Some(until), written),
                    None => unpublished(outcome(Action::BackingOff, &record, Some(until), false)),
                },
            );
        }
        Plan::Stopped => {
            return Ok(
                match publish_current(engine, flow, inputs, &record, store, now).await? {
                    Some(written) => outcome(Action::BackingOff, &record, None, written),
                    None => unpublished(outcome(Action::BackingOff, &record, None, false)),
                },
            );
        }
        Plan::Keep { until } => {
            if record.token.as_ref().is_some_and(|t| lookups_due(flow, t)) {
                if !lead.held() {
                    return Err(PassError::NotLeader);
                }
                if let Some(error) = run_lookups(engine, flow, inputs, &mut record, store, unsaved, now).await? {
                    return Ok(unpublished(
                        fail(store, &mut record, error, &attempt, now, unsaved).await?,
                    ));
                }
            }
            let Some(token) = record.token.as_ref() else {
                unreachable!("renew-or-keep keeps only a stored token")
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
        Plan::Renew { reason, guard } => (reason, guard),
    };
    let refreshed = record.token.as_ref().is_some_and(|t| t.refresh_token.is_some());
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
            if let Some(error) = run_lookups(engine, flow, inputs, &mut record, store, unsaved, now).await? {
                return Ok(unpublished(
                    fail(store, &mut record, error, &attempt, now, unsaved).await?,
                ));
            }
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
        Err(error @ EngineError::RefreshTokenRevoked { .. }) => {
            // Nothing is retried: the plan stops here until the inputs change or someone
            // renews. The refused token is kept (never dropped): a renewal request sends it
            // once more, for the day the provider's refusal was its own mistake.
            record.in_flight = None;
            record.failures = record.failures.saturating_add(1);
            record.retry_at = None;
            record.failed_fingerprint = Some(attempt.clone());
            record.last_error = Some(Failure::of(&error));
            persist(store, &record, unsaved).await?;
            let expires_at = record.token.as_ref().and_then(|t| t.expires_at);
            Ok(outcome(Action::Failed { error }, &record, expires_at, false))
        }
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
    record.last_error = Some(Failure::of(&error));
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
            // The code is spent and the tokens are kept whatever the lookups do; a failed one
            // is retried by the passes that follow.
            if let Some(error) = run_lookups(engine, flow, inputs, &mut record, store, unsaved, now).await? {
                fail(store, &mut record, error.clone(), fingerprint, now, unsaved).await?;
                return Ok(Err(ConsentError::Engine(error)));
            }
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
            record.last_error = Some(Failure::of(&e));
            persist(store, &record, unsaved).await?;
            Ok(Err(ConsentError::Engine(e)))
        }
    }
}

/// Runs the post-connect lookups of a token that lacks their values, and stores them with it.
/// `Some(error)` when a lookup failed: the token stays stored, and the caller reports the
/// failure (with backoff) so a later pass tries again.
async fn run_lookups<S: Store + Sync>(
    engine: &Engine,
    flow: &Flow,
    inputs: &Inputs,
    record: &mut Record,
    store: &S,
    unsaved: &mut Unsaved,
    now: Timestamp,
) -> Result<Option<EngineError>, StoreError> {
    let Some(token) = record.token.as_ref().filter(|t| lookups_due(flow, t)) else {
        return Ok(None);
    };
    match engine.lookups(flow, inputs, token, now).await {
        Ok(values) => {
            if let Some(t) = record.token.as_mut() {
                t.lookups = values;
            }
            record.failures = 0;
            record.retry_at = None;
            record.failed_fingerprint = None;
            record.last_error = None;
            persist(store, record, unsaved).await?;
            Ok(None)
        }
        Err(e) => Ok(Some(e)),
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
    record.last_error = Some(Failure::of(&error));
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
