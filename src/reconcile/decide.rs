//! The decisions of a pass, as small pure functions of what was gathered and `now`. The
//! driver and the adapters only carry them out.

use std::collections::BTreeMap;

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::driver::{Action, InFlight, Outcome, PendingConsent, Previous, Record};
use crate::api::Output;
use crate::engine::TokenState;
use crate::engine::renewal::Decision;
use crate::reason::Reason;

/// How long before a consent link expires a fresh one replaces it.
pub const CONSENT_RENEW_MARGIN: SignedDuration = SignedDuration::from_secs(60);

/// The end of the backoff that still holds: set, in the future, and for the same inputs (a
/// changed Secret, spec or CA bundle is tried at once).
pub fn backing_off(record: &Record, attempt: &str, now: Timestamp) -> Option<Timestamp> {
    let same_inputs = record.failed_fingerprint.as_deref() == Some(attempt);
    record.retry_at.filter(|r| *r > now && same_inputs)
}

/// When a failed attempt is tried again: after `delay`, but a token that expires sooner gets
/// one more try just before it does, unless the provider asked us to wait (`Retry-After`).
pub fn retry_time(
    now: Timestamp,
    delay: SignedDuration,
    expires_at: Option<Timestamp>,
    provider_asked_to_wait: bool,
) -> Timestamp {
    let retry_at = now + delay;
    match expires_at {
        Some(exp) if exp > now && exp < retry_at && !provider_asked_to_wait => exp,
        _ => retry_at,
    }
}

/// Whether the consent link on offer can still be handed out, or a fresh one must replace it
/// (it expires within [`CONSENT_RENEW_MARGIN`], or there is none).
pub fn consent_link_fresh(pending: Option<&PendingConsent>, now: Timestamp) -> bool {
    pending.is_some_and(|p| p.expires - CONSENT_RENEW_MARGIN > now)
}

/// When a resource awaiting consent is looked at again: when its link needs renewing, or when
/// a still-valid old token expires, whichever is first.
pub fn consent_recheck(
    pending: Option<&PendingConsent>,
    expires_at: Option<Timestamp>,
    now: Timestamp,
) -> Option<Timestamp> {
    let link_renewal = pending.map(|p| p.expires - CONSENT_RENEW_MARGIN);
    let expiry = expires_at.filter(|e| *e > now);
    match (link_renewal, expiry) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The renewal request to act upon in this pass: the `connectorauth.dev/renew` annotation's
/// value, unless it is empty or is the one acted upon last (each value is acted upon once,
/// however often the resource is reconciled, and by whichever replica leads).
pub fn renew_request<'a>(annotation: Option<&'a str>, handled: Option<&str>) -> Option<&'a str> {
    annotation
        .map(str::trim)
        .filter(|v| !v.is_empty() && Some(*v) != handled)
}

/// A requested renewal turns a decision to keep the token into one to renew it; a token due
/// anyway keeps the reason it is due for.
pub fn with_request(decision: Decision, requested: bool) -> Decision {
    match decision {
        Decision::Keep { .. } if requested => Decision::Renew {
            reason: Reason::RenewRequested,
        },
        d => d,
    }
}

/// Whether a pass verifies the published credential (`spec.verify`): after every issuance, and
/// otherwise when the last verification was made for another generation of the spec (none
/// yet, or the spec changed since). `verified_for` is that generation as the adapter knows it.
pub fn verify_due(configured: bool, issued: bool, verified_for: Option<i64>, generation: Option<i64>) -> bool {
    configured && (issued || verified_for != generation)
}

/// What may be done with the refresh token a renewal would send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Guard {
    /// Send it: there is none, or the provider is known to accept it again.
    Send,
    /// Store the write-ahead mark first, then send it.
    MarkThenSend,
    /// A refresh with this very token was interrupted before its answer was stored and the
    /// scheme can get a token without it: log in (or ask for consent) instead.
    LoginInstead,
    /// As above, but the scheme has no other way: report it, send nothing.
    InDoubt,
}

/// Decides about the refresh token a renewal would send (its digest, and whether the provider
/// is known to accept it again), given the mark an earlier pass left, if any, and whether the
/// scheme can log in (or ask for consent) without a refresh token.
pub fn guard(mark: Option<&InFlight>, token_digest: Option<&str>, reusable: bool, can_login: bool) -> Guard {
    match token_digest {
        None => Guard::Send,
        Some(d) if mark.is_some_and(|m| m.digest == d) => {
            if can_login {
                Guard::LoginInstead
            } else {
                Guard::InDoubt
            }
        }
        Some(_) if reusable => Guard::Send,
        Some(_) => Guard::MarkThenSend,
    }
}

/// An Event to record about a pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventPlan {
    pub warning: bool,
    pub reason: Reason,
    pub note: String,
    pub action: &'static str,
}

/// Which Event, if any, an outcome deserves: first issuance, re-authentication after a change,
/// failures and recovery. Routine refreshes are visible in status and metrics, not as Events,
/// to keep API writes per refresh low.
pub fn event_for(outcome: &Outcome, was_failing: bool, secret_name: &str) -> Option<EventPlan> {
    match &outcome.action {
        Action::Issued { .. } if was_failing => Some(EventPlan {
            warning: false,
            reason: Reason::Recovered,
            note: "token obtained after failures".into(),
            action: "Refresh",
        }),
        Action::Issued {
            reason: Reason::RenewalDue | Reason::Expired,
            ..
        } => None,
        Action::Issued { reason, .. } => Some(EventPlan {
            warning: false,
            reason: Reason::Issued,
            note: format!("token issued ({reason}) into Secret {secret_name}"),
            action: "Issue",
        }),
        Action::Failed { error } => Some(EventPlan {
            warning: true,
            reason: error.reason(),
            note: error.to_string(),
            action: "Refresh",
        }),
        Action::Kept | Action::BackingOff => None,
    }
}

/// What an output Secret looks like, as far as the operator manages it.
#[derive(Debug, Clone, Copy)]
pub struct OutputView<'a> {
    pub data: &'a BTreeMap<String, String>,
    pub annotations: &'a BTreeMap<String, String>,
    pub labels: &'a BTreeMap<String, String>,
    /// Whether it names this resource (uid) as its owner.
    pub owned: bool,
}

/// Whether the existing output already is what would be written: same data, every annotation
/// and label the operator sets present with the same value, owned by the resource. Other
/// annotations and labels (added by people or tools) do not count.
pub fn output_unchanged(
    existing: OutputView<'_>,
    data: &BTreeMap<String, String>,
    annotations: &BTreeMap<String, String>,
    labels: &BTreeMap<String, String>,
) -> bool {
    let contains = |have: &BTreeMap<String, String>, want: &BTreeMap<String, String>| {
        want.iter().all(|(k, v)| have.get(k) == Some(v))
    };
    existing.owned
        && existing.data == data
        && contains(existing.annotations, annotations)
        && contains(existing.labels, labels)
}

/// Whether a token with this expiry is still valid at `now` (no expiry: it is).
pub fn still_valid(expires_at: Option<Timestamp>, now: Timestamp) -> bool {
    expires_at.is_none_or(|e| e > now)
}

/// Whether an issuance keeps the token it replaces as the previous one: asked for, a real
/// token (not the placeholder of a lost output), and still valid.
pub fn keeps_previous(asked: bool, old: &TokenState, now: Timestamp) -> bool {
    asked && !old.access_token.is_empty() && still_valid(old.expires_at, now)
}

/// When to look at a resource again: at `next`, or when the previous token it still publishes
/// expires (to drop it in one write), whichever is first.
pub fn next_look(next: Option<Timestamp>, previous: Option<&Previous>) -> Option<Timestamp> {
    match (next, previous.and_then(|p| p.expires_at)) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// What the workloads of `output.rolloutRestart` were last restarted for. Kept in the private
/// state, so each change restarts each workload once, across retried passes and operator
/// restarts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RolloutMark {
    /// See [`RolloutTrigger::change`].
    pub change: String,
    /// See [`RolloutTrigger::issued`].
    pub issued: String,
    /// The `restartedAt` value of this mark's restarts: a workload whose pod template carries
    /// it was restarted for this mark already.
    pub at: String,
    /// Targets (by [`target_key`]) not restarted for this mark yet.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pending: Vec<String>,
}

/// What the published credential is, as far as restarts are concerned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RolloutTrigger {
    /// Changes with what matters: the token's inputs (scheme, renewal policy, credentials)
    /// and the output spec.
    pub change: String,
    /// Changes with every issuance (routine refreshes included).
    pub issued: String,
}

/// The trigger of a published token under an output spec.
pub fn rollout_trigger(token: &TokenState, output: &Output) -> RolloutTrigger {
    // Only what shapes the published values: not the restart list itself, nor keepPrevious.
    let shaping = serde_json::json!([
        output.secret_name,
        output.header,
        output.template,
        output.expose_refresh_token
    ]);
    let mut h = Sha256::new();
    h.update(token.fingerprint.as_bytes());
    h.update(shaping.to_string().as_bytes());
    RolloutTrigger {
        change: h.finalize()[..16].iter().map(|b| format!("{b:02x}")).collect(),
        issued: token.issued_at.to_string(),
    }
}

/// The stable key of a restart target: `Deployment/name` or `Deployment?selector`.
pub fn target_key(kind: &str, name: Option<&str>, selector: Option<&str>) -> String {
    match (name, selector) {
        (Some(n), _) => format!("{kind}/{n}"),
        (None, s) => format!("{kind}?{}", s.unwrap_or_default()),
    }
}

/// Decides the restarts a pass owes: `None` when none are owed; else the mark to store
/// *before* restarting, whose `pending` are the targets to restart now.
///
/// - No mark yet: the workloads run with what is published (they started with it, or
///   restarting is being set up); the mark is stored as a baseline and nothing restarts.
/// - A change that matters: every target. A routine refresh: the `onRefresh` targets.
/// - Targets left pending by an earlier attempt stay pending (while still listed).
///
/// `targets` are the keys of the listed targets, each with its `onRefresh`.
pub fn rollout(
    mark: Option<&RolloutMark>,
    trigger: &RolloutTrigger,
    targets: &[(String, bool)],
    now: Timestamp,
) -> Option<RolloutMark> {
    if targets.is_empty() {
        return None;
    }
    let Some(mark) = mark else {
        return Some(RolloutMark {
            change: trigger.change.clone(),
            issued: trigger.issued.clone(),
            at: now.to_string(),
            pending: Vec::new(),
        });
    };
    let changed = mark.change != trigger.change;
    let refreshed = mark.issued != trigger.issued;
    let pending: Vec<String> = targets
        .iter()
        .filter(|(key, on_refresh)| changed || (refreshed && *on_refresh) || mark.pending.contains(key))
        .map(|(key, _)| key.clone())
        .collect();
    if !changed && !refreshed {
        // Only retries of what is pending, under the same mark (same `at`).
        return (!pending.is_empty()).then(|| RolloutMark {
            pending,
            ..mark.clone()
        });
    }
    Some(RolloutMark {
        change: trigger.change.clone(),
        issued: trigger.issued.clone(),
        at: now.to_string(),
        pending,
    })
}

/// What to do about the revocation finalizer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinalizerStep {
    /// Nothing.
    Leave,
    /// Add it before any token is obtained, so every token obtained is revoked on delete.
    Add,
    /// Remove it: the spec no longer asks for revocation.
    Remove,
    /// The resource is being deleted: revoke, then remove it.
    Revoke,
}

/// Decides about the revocation finalizer from whether the spec has a `revocationUrl`, whether
/// the resource carries the finalizer, and whether it is being deleted.
pub fn finalizer_step(wants: bool, has: bool, deleting: bool) -> FinalizerStep {
    match (wants, has, deleting) {
        (true, true, true) => FinalizerStep::Revoke,
        (false, true, _) => FinalizerStep::Remove,
        (true, false, false) => FinalizerStep::Add,
        _ => FinalizerStep::Leave,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::EngineError;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn a_backoff_holds_only_until_its_time_and_for_the_same_inputs() {
        let now = ts("2026-01-01T00:00:00Z");
        let record = Record {
            retry_at: Some(ts("2026-01-01T00:05:00Z")),
            failed_fingerprint: Some("a".into()),
            ..Record::default()
        };
        assert_eq!(backing_off(&record, "a", now), record.retry_at);
        assert_eq!(backing_off(&record, "b", now), None, "changed inputs are tried at once");
        assert_eq!(
            backing_off(&record, "a", ts("2026-01-01T00:05:00Z")),
            None,
            "the time has come"
        );
        assert_eq!(backing_off(&Record::default(), "a", now), None);
    }

    #[test]
    fn a_retry_is_pulled_before_expiry_unless_the_provider_asked_to_wait() {
        let now = ts("2026-01-01T00:00:00Z");
        let five = SignedDuration::from_mins(5);
        let soon = ts("2026-01-01T00:02:00Z");
        assert_eq!(retry_time(now, five, None, false), ts("2026-01-01T00:05:00Z"));
        assert_eq!(retry_time(now, five, Some(soon), false), soon);
        assert_eq!(retry_time(now, five, Some(soon), true), ts("2026-01-01T00:05:00Z"));
        let later = ts("2026-01-01T01:00:00Z");
        assert_eq!(retry_time(now, five, Some(later), false), ts("2026-01-01T00:05:00Z"));
        let gone = ts("2025-12-31T00:00:00Z");
        assert_eq!(
            retry_time(now, five, Some(gone), false),
            ts("2026-01-01T00:05:00Z"),
            "already expired"
        );
    }

    #[test]
    fn a_consent_link_is_renewed_a_minute_before_it_expires() {
        let now = ts("2026-01-01T00:00:00Z");
        let link = |exp: &str| PendingConsent {
            nonce: "n".into(),
            expires: ts(exp),
        };
        assert!(consent_link_fresh(Some(&link("2026-01-01T00:10:00Z")), now));
        assert!(!consent_link_fresh(Some(&link("2026-01-01T00:00:30Z")), now));
        assert!(!consent_link_fresh(None, now));
        let l = link("2026-01-01T00:10:00Z");
        assert_eq!(consent_recheck(Some(&l), None, now), Some(ts("2026-01-01T00:09:00Z")));
        assert_eq!(
            consent_recheck(Some(&l), Some(ts("2026-01-01T00:03:00Z")), now),
            Some(ts("2026-01-01T00:03:00Z")),
            "an old token still valid expires first"
        );
        assert_eq!(consent_recheck(None, Some(ts("2025-01-01T00:00:00Z")), now), None);
    }

    #[test]
    fn a_refresh_token_is_marked_before_use_and_never_resent_while_in_doubt() {
        let mark = InFlight {
            digest: "d1".into(),
            since: ts("2026-01-01T00:00:00Z"),
        };
        // Nothing to send: nothing to guard (a login, a consent, a permanent token).
        assert_eq!(guard(None, None, false, false), Guard::Send);
        assert_eq!(guard(Some(&mark), None, false, false), Guard::Send);
        // A token that may be single-use is marked first.
        assert_eq!(guard(None, Some("d1"), false, false), Guard::MarkThenSend);
        // A provider known not to rotate accepts it again: no mark, no write.
        assert_eq!(guard(None, Some("d1"), true, false), Guard::Send);
        // The marked token itself: an earlier refresh with it was interrupted.
        assert_eq!(guard(Some(&mark), Some("d1"), false, false), Guard::InDoubt);
        assert_eq!(guard(Some(&mark), Some("d1"), false, true), Guard::LoginInstead);
        assert_eq!(
            guard(Some(&mark), Some("d1"), true, false),
            Guard::InDoubt,
            "a mark is only ever left for a token not known to be reusable"
        );
        // Another token (a new onboarding token in the credentials): marked afresh.
        assert_eq!(guard(Some(&mark), Some("d2"), false, false), Guard::MarkThenSend);
    }

    fn outcome(action: Action) -> Outcome {
        Outcome {
            action,
            token: None,
            next: None,
            written: false,
            failures: 0,
            last_error: None,
            pending_consent: None,
            renew_handled: None,
        }
    }

    #[test]
    fn a_renew_request_is_acted_upon_once_per_value() {
        assert_eq!(
            renew_request(Some("2026-01-01T00:00:00Z"), None),
            Some("2026-01-01T00:00:00Z")
        );
        assert_eq!(
            renew_request(Some("2026-01-01T00:00:00Z"), Some("2026-01-01T00:00:00Z")),
            None,
            "already acted upon"
        );
        assert_eq!(
            renew_request(Some("2026-01-02T00:00:00Z"), Some("2026-01-01T00:00:00Z")),
            Some("2026-01-02T00:00:00Z"),
            "a new request"
        );
        assert_eq!(renew_request(Some(" "), None), None, "an empty value asks nothing");
        assert_eq!(renew_request(None, Some("x")), None);
    }

    #[test]
    fn a_requested_renewal_renews_a_kept_token_and_keeps_the_reason_of_a_due_one() {
        let keep = Decision::Keep { until: None };
        assert_eq!(
            with_request(keep.clone(), true),
            Decision::Renew {
                reason: Reason::RenewRequested
            }
        );
        assert_eq!(with_request(keep.clone(), false), keep);
        let due = Decision::Renew {
            reason: Reason::Expired,
        };
        assert_eq!(with_request(due.clone(), true), due);
    }

    #[test]
    fn a_credential_is_verified_after_issuance_and_when_the_spec_changed() {
        assert!(verify_due(true, true, Some(3), Some(3)), "every issuance");
        assert!(!verify_due(true, false, Some(3), Some(3)), "verified for this spec");
        assert!(verify_due(true, false, Some(2), Some(3)), "the spec changed");
        assert!(verify_due(true, false, None, Some(3)), "never verified");
        assert!(
            !verify_due(true, false, None, None),
            "no generation (local mode): on issuance only"
        );
        assert!(!verify_due(false, true, None, Some(1)), "nothing to verify");
    }

    #[test]
    fn events_tell_people_about_issuance_failure_and_recovery_but_not_routine_refreshes() {
        let issued = |reason| {
            outcome(Action::Issued {
                reason,
                refreshed: true,
            })
        };
        assert_eq!(event_for(&issued(Reason::RenewalDue), false, "s"), None);
        assert_eq!(event_for(&issued(Reason::Expired), false, "s"), None);
        let e = event_for(&issued(Reason::NoToken), false, "crm-token").unwrap();
        assert_eq!(
            (e.warning, e.reason, e.note.as_str()),
            (false, Reason::Issued, "token issued (NoToken) into Secret crm-token")
        );
        let e = event_for(&issued(Reason::RenewalDue), true, "s").unwrap();
        assert_eq!(e.reason, Reason::Recovered);
        let failed = outcome(Action::Failed {
            error: EngineError::AuthorizationRequired,
        });
        let e = event_for(&failed, false, "s").unwrap();
        assert!(e.warning);
        assert_eq!(e.reason, Reason::AuthorizationRequired);
        assert_eq!(event_for(&outcome(Action::Kept), true, "s"), None);
        assert_eq!(event_for(&outcome(Action::BackingOff), true, "s"), None);
    }

    #[test]
    fn output_is_unchanged_only_when_data_annotations_labels_and_owner_match() {
        let m = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
        };
        let data = m(&[("access_token", "t")]);
        let ann = m(&[("a", "1")]);
        let lbl = m(&[("l", "x")]);
        let more_ann = m(&[("a", "1"), ("someone-else", "y")]);
        fn view<'a>(
            data: &'a BTreeMap<String, String>,
            annotations: &'a BTreeMap<String, String>,
            labels: &'a BTreeMap<String, String>,
            owned: bool,
        ) -> OutputView<'a> {
            OutputView {
                data,
                annotations,
                labels,
                owned,
            }
        }
        let old = m(&[("access_token", "old")]);
        let other_ann = m(&[("a", "2")]);
        let no_labels = m(&[]);
        assert!(output_unchanged(view(&data, &more_ann, &lbl, true), &data, &ann, &lbl));
        assert!(
            !output_unchanged(view(&data, &ann, &lbl, false), &data, &ann, &lbl),
            "not owned"
        );
        assert!(!output_unchanged(view(&old, &ann, &lbl, true), &data, &ann, &lbl));
        assert!(!output_unchanged(
            view(&data, &other_ann, &lbl, true),
            &data,
            &ann,
            &lbl
        ));
        assert!(!output_unchanged(
            view(&data, &ann, &no_labels, true),
            &data,
            &ann,
            &lbl
        ));
    }

    fn trigger(change: &str, issued: &str) -> RolloutTrigger {
        RolloutTrigger {
            change: change.into(),
            issued: issued.into(),
        }
    }

    #[test]
    fn restarts_follow_credential_changes_and_routine_refreshes_only_for_on_refresh_targets() {
        let now = ts("2026-01-01T00:00:00Z");
        let later = ts("2026-01-01T01:00:00Z");
        let targets = vec![
            ("Deployment/api".to_string(), false),
            ("DaemonSet?app=x".to_string(), true),
        ];
        // First sight: a baseline, nothing restarts.
        let base = rollout(None, &trigger("c1", "i1"), &targets, now).unwrap();
        assert_eq!(base.pending, Vec::<String>::new());
        assert_eq!((base.change.as_str(), base.issued.as_str()), ("c1", "i1"));
        // Nothing new: nothing owed.
        assert_eq!(rollout(Some(&base), &trigger("c1", "i1"), &targets, later), None);
        // A routine refresh: only the onRefresh target.
        let refresh = rollout(Some(&base), &trigger("c1", "i2"), &targets, later).unwrap();
        assert_eq!(refresh.pending, vec!["DaemonSet?app=x".to_string()]);
        assert_eq!(refresh.at, later.to_string(), "a new change gets a new restartedAt");
        // New credentials (which also means a new token): every target.
        let change = rollout(Some(&base), &trigger("c2", "i2"), &targets, later).unwrap();
        assert_eq!(change.pending.len(), 2);
        // No targets listed: nothing, whatever changed.
        assert_eq!(rollout(Some(&base), &trigger("c2", "i2"), &[], later), None);
        assert_eq!(rollout(None, &trigger("c2", "i2"), &[], later), None);
    }

    #[test]
    fn a_restart_left_pending_is_retried_under_the_same_mark_until_done() {
        let now = ts("2026-01-01T00:00:00Z");
        let later = ts("2026-01-01T00:05:00Z");
        let targets = vec![("Deployment/a".to_string(), false), ("Deployment/b".to_string(), false)];
        let mark = RolloutMark {
            change: "c".into(),
            issued: "i".into(),
            at: now.to_string(),
            pending: vec!["Deployment/b".into()],
        };
        let retry = rollout(Some(&mark), &trigger("c", "i"), &targets, later).unwrap();
        assert_eq!(
            retry, mark,
            "same restartedAt: a workload already restarted is recognised"
        );
        // A pending target no longer listed is dropped.
        let fewer = vec![("Deployment/a".to_string(), false)];
        assert_eq!(rollout(Some(&mark), &trigger("c", "i"), &fewer, later), None);
        // A pending target survives the next routine refresh even if it is not onRefresh.
        let next = rollout(Some(&mark), &trigger("c", "i2"), &targets, later).unwrap();
        assert_eq!(next.pending, vec!["Deployment/b".to_string()]);
    }

    #[test]
    fn the_trigger_changes_with_inputs_and_output_shape_but_not_with_the_restart_list() {
        let token = |fingerprint: &str, issued: &str| TokenState {
            access_token: "t".into(),
            refresh_token: None,
            token_type: "Bearer".into(),
            issued_at: ts(issued),
            expires_at: None,
            renew_at: None,
            extras: BTreeMap::new(),
            fingerprint: fingerprint.into(),
            seed_refresh_token: None,
            refresh_token_reusable: false,
            oauth: BTreeMap::new(),
            refresh_origin: None,
        };
        let out = Output::default();
        let a = rollout_trigger(&token("f1", "2026-01-01T00:00:00Z"), &out);
        let refreshed = rollout_trigger(&token("f1", "2026-01-01T01:00:00Z"), &out);
        assert_eq!(a.change, refreshed.change);
        assert_ne!(a.issued, refreshed.issued);
        assert_ne!(
            a.change,
            rollout_trigger(&token("f2", "2026-01-01T00:00:00Z"), &out).change
        );
        let mut templated = out.clone();
        templated.template.insert("url".into(), "x".into());
        assert_ne!(
            a.change,
            rollout_trigger(&token("f1", "2026-01-01T00:00:00Z"), &templated).change
        );
        let mut listed = out.clone();
        listed.keep_previous = true;
        listed.rollout_restart = vec![crate::api::RolloutTarget {
            kind: crate::api::WorkloadKind::Deployment,
            name: Some("d".into()),
            selector: None,
            on_refresh: false,
        }];
        assert_eq!(
            a.change,
            rollout_trigger(&token("f1", "2026-01-01T00:00:00Z"), &listed).change
        );
        assert_eq!(target_key("Deployment", Some("api"), None), "Deployment/api");
        assert_eq!(target_key("StatefulSet", None, Some("app=x")), "StatefulSet?app=x");
    }

    #[test]
    fn the_finalizer_exists_exactly_while_revocation_is_asked_for_and_revokes_on_delete() {
        use FinalizerStep::*;
        assert_eq!(finalizer_step(true, false, false), Add);
        assert_eq!(finalizer_step(true, true, false), Leave);
        assert_eq!(finalizer_step(true, true, true), Revoke);
        assert_eq!(finalizer_step(false, true, false), Remove);
        assert_eq!(
            finalizer_step(false, true, true),
            Remove,
            "revocationUrl removed: let it go"
        );
        assert_eq!(finalizer_step(false, false, false), Leave);
        assert_eq!(finalizer_step(true, false, true), Leave, "never added while deleting");
    }

    #[test]
    fn a_previous_token_is_kept_while_valid_and_its_expiry_is_the_next_look() {
        let now = ts("2026-01-01T00:00:00Z");
        let old = |access: &str, exp: Option<&str>| TokenState {
            access_token: access.into(),
            refresh_token: None,
            token_type: "Bearer".into(),
            issued_at: ts("2025-12-31T23:00:00Z"),
            expires_at: exp.map(ts),
            renew_at: None,
            extras: BTreeMap::new(),
            fingerprint: "f".into(),
            seed_refresh_token: None,
            refresh_token_reusable: false,
            oauth: BTreeMap::new(),
            refresh_origin: None,
        };
        assert!(keeps_previous(true, &old("a", Some("2026-01-01T00:10:00Z")), now));
        assert!(
            keeps_previous(true, &old("a", None), now),
            "no expiry: kept until replaced"
        );
        assert!(!keeps_previous(false, &old("a", Some("2026-01-01T00:10:00Z")), now));
        assert!(
            !keeps_previous(true, &old("a", Some("2025-12-31T23:59:00Z")), now),
            "expired"
        );
        assert!(
            !keeps_previous(true, &old("", Some("2026-01-01T00:10:00Z")), now),
            "placeholder"
        );
        let prev = Previous {
            access_token: "a".into(),
            headers_json: "{}".into(),
            expires_at: Some(ts("2026-01-01T00:10:00Z")),
        };
        let renew = Some(ts("2026-01-01T00:40:00Z"));
        assert_eq!(next_look(renew, Some(&prev)), prev.expires_at);
        assert_eq!(next_look(None, Some(&prev)), prev.expires_at);
        assert_eq!(
            next_look(Some(ts("2026-01-01T00:05:00Z")), Some(&prev)),
            Some(ts("2026-01-01T00:05:00Z"))
        );
        assert_eq!(next_look(renew, None), renew);
    }
}
