//! The decisions of a pass, as small pure functions of what was gathered and `now`. The
//! driver and the adapters only carry them out.

use std::collections::BTreeMap;

use jiff::{SignedDuration, Timestamp};

use super::driver::{Action, InFlight, Outcome, PendingConsent, Record};
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
}
