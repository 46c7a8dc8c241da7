//! The pass's other decisions, as small pure functions of what was gathered and `now`:
//! when a failure is retried, the consent link's renewal, verification, the previous token.
//! Renew-or-keep itself is [`super::renew::plan`]. The driver only carries them out.

use jiff::{SignedDuration, Timestamp};

use super::record::{PendingConsent, Previous};
use crate::engine::TokenState;

/// How long before a consent link expires a fresh one replaces it.
pub const CONSENT_RENEW_MARGIN: SignedDuration = SignedDuration::from_secs(60);

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

/// Whether a pass verifies the published credential (`spec.verify`): after every issuance, and
/// otherwise when the last verification was made for another generation of the spec (none
/// yet, or the spec changed since). `verified_for` is that generation as the adapter knows it.
pub fn verify_due(configured: bool, issued: bool, verified_for: Option<i64>, generation: Option<i64>) -> bool {
    configured && (issued || verified_for != generation)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
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
    fn a_previous_token_is_kept_while_valid_and_its_expiry_is_the_next_look() {
        let now = ts("2026-01-01T00:00:00Z");
        let old = |access: &str, exp: Option<&str>| TokenState {
            expires_at: exp.map(ts),
            ..TokenState::new(access, "Bearer", ts("2025-12-31T23:00:00Z"), "f")
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
