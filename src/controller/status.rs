//! Status as a pure function of the reconcile outcome. Deterministic: the same outcome gives the
//! same status (no fresh timestamps), so an unchanged resource is never patched, and condition
//! `lastTransitionTime` moves only when a condition's status flips.

use jiff::Timestamp;

use crate::api::{Condition, ConnectorAuthSpec, ConnectorAuthStatus};
use crate::engine::Verification;
use crate::reason::Reason;
use crate::reconcile::record::Failure;
use crate::reconcile::{Action, Verdict};

pub const READY: &str = "Ready";
pub const REFRESH_FAILING: &str = "RefreshFailing";
/// Warning condition while `spec.tls.insecureSkipVerify` is set.
pub const INSECURE_TLS: &str = "InsecureTLS";
/// With `spec.verify`: whether the provider accepted the published credential when last asked.
pub const VERIFIED: &str = "Verified";
/// The desired status. `previous` supplies condition transition times to keep.
pub fn desired(
    previous: Option<&ConnectorAuthStatus>,
    verdict: &Verdict,
    generation: Option<i64>,
    scheme: &str,
    secret_name: &str,
    authorization_url: Option<&str>,
    now: Timestamp,
) -> ConnectorAuthStatus {
    let mut status = ConnectorAuthStatus {
        scheme: Some(scheme.to_string()),
        secret_name: Some(secret_name.to_string()),
        observed_generation: generation,
        last_renew_request: previous.and_then(|p| p.last_renew_request.clone()),
        ..Default::default()
    };
    let mut conditions = Vec::new();
    match verdict {
        Verdict::Refused(r) => {
            conditions.push(cond(READY, false, r.reason.as_str(), &r.message, generation));
        }
        Verdict::Ran(o) => {
            let token = o.token.as_ref();
            let valid = token.is_some_and(|t| t.expires_at.is_none_or(|e| e > now));
            if let Some(t) = token {
                status.expires_at = t.expires_at.map(|e| e.to_string());
                status.last_refresh_time = Some(t.issued_at.to_string());
            }
            status.next_refresh_time = o.next.map(|n| n.to_string());
            status.failure_count = (o.failures > 0).then_some(o.failures);
            status.last_renew_request = o.renew_handled.clone();
            if let Action::Failed {
                error: crate::engine::EngineError::AuthorizationRequired,
            } = &o.action
            {
                let url = authorization_url.map(str::to_string);
                let how = match (&url, &o.pending_consent) {
                    (Some(_), Some(p)) => format!("open status.authorizationUrl (valid until {})", p.expires),
                    _ => "but no consent link could be made: the operator needs --callback-url".to_string(),
                };
                status.authorization_url = url;
                match token.and_then(|t| t.expires_at).filter(|_| valid) {
                    // Consent was revoked but the last token still works for a while.
                    Some(exp) => {
                        let msg = format!("token published in Secret {secret_name}, valid until {exp}");
                        conditions.push(cond(READY, true, Reason::TokenValid.as_str(), &msg, generation));
                        let warn = format!("consent must be granted again before {exp}: {how}");
                        conditions.push(cond(
                            REFRESH_FAILING,
                            true,
                            Reason::AuthorizationRequired.as_str(),
                            &warn,
                            generation,
                        ));
                    }
                    None => {
                        let msg = format!("a person must grant consent: {how}");
                        conditions.push(cond(
                            READY,
                            false,
                            Reason::AuthorizationRequired.as_str(),
                            &msg,
                            generation,
                        ));
                    }
                }
                let prev = previous.map(|p| p.conditions.as_slice()).unwrap_or_default();
                status.conditions = merge_conditions(prev, conditions, now);
                return status;
            }
            let failing = match &o.action {
                Action::Failed { error } => Some(Failure::of(error)),
                Action::BackingOff => o.last_error.clone(),
                _ => None,
            };
            if valid {
                let t = token.expect("valid implies a token");
                let msg = match t.expires_at {
                    Some(e) => format!("token published in Secret {secret_name}, valid until {e}"),
                    None => format!("token published in Secret {secret_name}, no expiry"),
                };
                conditions.push(cond(READY, true, Reason::TokenValid.as_str(), &msg, generation));
            } else if let Some(f) = &failing {
                let message = match token.and_then(|t| t.expires_at) {
                    Some(e) => format!("token expired at {e}; {}", f.message),
                    None => f.message.clone(),
                };
                conditions.push(cond(READY, false, f.reason.as_str(), &message, generation));
            } else {
                conditions.push(cond(
                    READY,
                    false,
                    Reason::Pending.as_str(),
                    "no token issued yet",
                    generation,
                ));
            }
            if let Some(f) = failing {
                conditions.push(cond(REFRESH_FAILING, true, f.reason.as_str(), &f.message, generation));
            }
        }
    }
    status.conditions = merge_conditions(
        previous.map(|p| p.conditions.as_slice()).unwrap_or_default(),
        conditions,
        now,
    );
    status
}

/// Adds the `InsecureTLS` condition while the spec skips certificate verification: the token
/// may well be Ready, but a person should know that credentials could go to an impostor.
pub fn warn_insecure_tls(
    status: &mut ConnectorAuthStatus,
    previous: Option<&ConnectorAuthStatus>,
    spec: &ConnectorAuthSpec,
    generation: Option<i64>,
    now: Timestamp,
) {
    if !spec.tls.as_ref().is_some_and(|t| t.insecure_skip_verify) {
        return;
    }
    let message = crate::engine::tls::INSECURE_SKIP_VERIFY_WARNING;
    let c = cond(
        INSECURE_TLS,
        true,
        Reason::InsecureSkipVerify.as_str(),
        message,
        generation,
    );
    let prev = previous.map(|p| p.conditions.as_slice()).unwrap_or_default();
    status.conditions.extend(merge_conditions(prev, vec![c], now));
}

/// Adds the `Verified` condition of a resource with `spec.verify`: from this pass's
/// verification if it made one, else as it was (it is re-evaluated at each issuance and spec
/// change, not on every pass).
pub fn verified(
    status: &mut ConnectorAuthStatus,
    previous: Option<&ConnectorAuthStatus>,
    configured: bool,
    verification: Option<&Verification>,
    generation: Option<i64>,
    now: Timestamp,
) {
    if !configured {
        return;
    }
    let prev = previous.map(|p| p.conditions.as_slice()).unwrap_or_default();
    match verification {
        Some(v) => {
            let c = cond(VERIFIED, v.ok(), v.reason().as_str(), &v.message(), generation);
            status.conditions.extend(merge_conditions(prev, vec![c], now));
        }
        None => status
            .conditions
            .extend(prev.iter().find(|c| c.type_ == VERIFIED).cloned()),
    }
}

/// The `metadata.generation` the `Verified` condition was computed for.
pub fn verified_generation(status: Option<&ConnectorAuthStatus>) -> Option<i64> {
    status?
        .conditions
        .iter()
        .find(|c| c.type_ == VERIFIED)?
        .observed_generation
}

/// The condition of type `type_` if it is True in `next` but was not in `previous` (it just
/// appeared): the moment to record an Event once.
pub fn raised<'a>(
    previous: Option<&ConnectorAuthStatus>,
    next: &'a ConnectorAuthStatus,
    type_: &str,
) -> Option<&'a Condition> {
    let is_true = |s: &ConnectorAuthStatus| s.conditions.iter().any(|c| c.type_ == type_ && c.status == "True");
    let c = next
        .conditions
        .iter()
        .find(|c| c.type_ == type_ && c.status == "True")?;
    (!previous.is_some_and(is_true)).then_some(c)
}

/// What a status says for alerting: the reason renewal is failing (if it is, other than for
/// consent), and whether a person must grant consent.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Health {
    pub failing: Option<String>,
    pub consent_required: bool,
    /// The reason the last verification failed (`spec.verify`), while it is failing.
    pub verification_failing: Option<String>,
}

/// Reads a status for the per-resource alerting metrics.
pub fn health(status: &ConnectorAuthStatus) -> Health {
    let find = |type_: &str, value: &str| {
        status
            .conditions
            .iter()
            .find(|c| c.type_ == type_ && c.status == value)
            .map(|c| c.reason.as_str())
    };
    let consent = Reason::AuthorizationRequired.as_str();
    let renewal = find(REFRESH_FAILING, "True");
    let not_ready = find(READY, "False");
    Health {
        verification_failing: find(VERIFIED, "False").map(str::to_string),
        consent_required: renewal == Some(consent) || not_ready == Some(consent),
        failing: renewal
            .or(not_ready)
            .filter(|r| *r != consent && *r != Reason::Pending.as_str())
            .map(str::to_string),
    }
}

fn cond(type_: &str, status: bool, reason: &str, message: &str, generation: Option<i64>) -> Condition {
    Condition {
        type_: type_.into(),
        status: if status { "True" } else { "False" }.into(),
        reason: reason.into(),
        message: message.into(),
        last_transition_time: String::new(),
        observed_generation: generation,
    }
}

/// Keeps a condition's `lastTransitionTime` unless its status changed; new or flipped
/// conditions get `now`.
pub fn merge_conditions(previous: &[Condition], next: Vec<Condition>, now: Timestamp) -> Vec<Condition> {
    next.into_iter()
        .map(|mut c| {
            c.last_transition_time = match previous.iter().find(|p| p.type_ == c.type_) {
                Some(p) if p.status == c.status && !p.last_transition_time.is_empty() => p.last_transition_time.clone(),
                _ => now.round(jiff::Unit::Second).unwrap_or(now).to_string(),
            };
            c
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{EngineError, TokenState};
    use crate::reconcile::Outcome;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn token(exp: &str) -> TokenState {
        TokenState {
            refresh_token: Some("secret-refresh".into()),
            expires_at: Some(ts(exp)),
            renew_at: Some(ts("2026-01-01T00:40:00Z")),
            extras: Default::default(),
            oauth: Default::default(),
            ..TokenState::new("secret-token", "Bearer", ts("2026-01-01T00:00:00Z"), "f")
        }
    }

    fn outcome(action: Action, exp: &str, failures: u32) -> Outcome {
        Outcome {
            action,
            token: Some(token(exp)),
            next: Some(ts("2026-01-01T00:40:00Z")),
            written: true,
            failures,
            last_error: None,
            pending_consent: None,
            renew_handled: None,
        }
    }

    #[test]
    fn a_verification_sets_verified_and_later_passes_keep_it_until_the_next() {
        let now = ts("2026-01-01T00:10:00Z");
        let rejected = Verification::Answered {
            method: "GET".into(),
            host: "api.example.com".into(),
            status: 401,
        };
        let mut s1 = ConnectorAuthStatus::default();
        verified(&mut s1, None, true, Some(&rejected), Some(2), now);
        let c = &s1.conditions[0];
        assert_eq!(
            (c.type_.as_str(), c.status.as_str(), c.reason.as_str()),
            (VERIFIED, "False", "VerificationRejected")
        );
        assert!(c.message.contains("HTTP 401"), "{}", c.message);
        assert_eq!(verified_generation(Some(&s1)), Some(2));
        assert_eq!(
            health(&s1).verification_failing.as_deref(),
            Some("VerificationRejected")
        );

        let mut s2 = ConnectorAuthStatus::default();
        verified(&mut s2, Some(&s1), true, None, Some(2), ts("2026-01-01T00:20:00Z"));
        assert_eq!(s2, s1, "kept as it was: nothing to patch");

        let accepted = Verification::Answered {
            method: "GET".into(),
            host: "api.example.com".into(),
            status: 200,
        };
        let mut s3 = ConnectorAuthStatus::default();
        verified(
            &mut s3,
            Some(&s2),
            true,
            Some(&accepted),
            Some(2),
            ts("2026-01-01T00:30:00Z"),
        );
        assert_eq!(s3.conditions[0].status, "True");
        assert_eq!(s3.conditions[0].last_transition_time, "2026-01-01T00:30:00Z");
        assert_eq!(health(&s3).verification_failing, None);

        let mut gone = ConnectorAuthStatus::default();
        verified(&mut gone, Some(&s3), false, None, Some(3), now);
        assert!(gone.conditions.is_empty(), "spec.verify removed: no condition");
    }

    #[test]
    fn the_last_renew_request_acted_upon_is_in_status_even_when_refused_later() {
        let now = ts("2026-01-01T00:10:00Z");
        let o = Outcome {
            renew_handled: Some("r1".into()),
            ..outcome(Action::Kept, "2026-01-01T01:00:00Z", 0)
        };
        let s = desired(None, &Verdict::Ran(o), None, "oauth2", "x", None, now);
        assert_eq!(s.last_renew_request.as_deref(), Some("r1"));
        let r = crate::reconcile::Refusal {
            reason: Reason::CredentialsNotFound,
            message: "m".into(),
        };
        let later = desired(Some(&s), &Verdict::Refused(r), None, "oauth2", "x", None, now);
        assert_eq!(later.last_renew_request.as_deref(), Some("r1"));
    }

    #[test]
    fn a_valid_token_is_ready_and_the_status_is_stable() {
        let now = ts("2026-01-01T00:10:00Z");
        let o = outcome(
            Action::Issued {
                reason: Reason::NoToken,
                refreshed: false,
            },
            "2026-01-01T01:00:00Z",
            0,
        );
        let s1 = desired(None, &Verdict::Ran(o.clone()), Some(3), "oauth2", "x-token", None, now);
        assert_eq!(s1.conditions.len(), 1);
        assert_eq!(s1.conditions[0].status, "True");
        assert_eq!(s1.conditions[0].reason, "TokenValid");
        assert_eq!(s1.expires_at.as_deref(), Some("2026-01-01T01:00:00Z"));
        assert_eq!(s1.next_refresh_time.as_deref(), Some("2026-01-01T00:40:00Z"));
        assert_eq!(s1.observed_generation, Some(3));
        // Later, same outcome: identical status, transition time kept.
        let kept = Outcome {
            action: Action::Kept,
            ..o.clone()
        };
        let s2 = desired(
            Some(&s1),
            &Verdict::Ran(kept.clone()),
            Some(3),
            "oauth2",
            "x-token",
            None,
            ts("2026-01-01T00:20:00Z"),
        );
        assert_eq!(s1, s2);
        assert!(!format!("{s2:?}").contains("secret-token"));
    }

    #[test]
    fn failing_refresh_keeps_ready_while_the_token_lasts_then_flips() {
        let error = EngineError::ProviderUnavailable {
            step: "refresh".into(),
            host: "h".into(),
            status: 503,
            retry_after: None,
        };
        let o = outcome(Action::Failed { error }, "2026-01-01T01:00:00Z", 2);
        let s = desired(
            None,
            &Verdict::Ran(o.clone()),
            None,
            "oauth2",
            "x",
            None,
            ts("2026-01-01T00:50:00Z"),
        );
        assert_eq!(s.conditions[0].status, "True", "the last good token is still valid");
        assert_eq!(s.conditions[1].type_, REFRESH_FAILING);
        assert_eq!(s.conditions[1].reason, "ProviderUnavailable");
        assert_eq!(s.failure_count, Some(2));

        let s2 = desired(
            Some(&s),
            &Verdict::Ran(o.clone()),
            None,
            "oauth2",
            "x",
            None,
            ts("2026-01-01T01:00:01Z"),
        );
        assert_eq!(s2.conditions[0].status, "False");
        assert_eq!(s2.conditions[0].reason, "ProviderUnavailable");
        assert!(
            s2.conditions[0]
                .message
                .starts_with("token expired at 2026-01-01T01:00:00Z;")
        );
        assert_eq!(
            s2.conditions[0].last_transition_time, "2026-01-01T01:00:01Z",
            "Ready flipped"
        );
        assert_eq!(
            s2.conditions[1].last_transition_time, s.conditions[1].last_transition_time,
            "still failing"
        );
    }

    #[test]
    fn awaiting_consent_shows_the_link_and_is_stable() {
        let pending = crate::reconcile::record::PendingConsent {
            nonce: "n".into(),
            expires: ts("2026-01-01T00:15:00Z"),
        };
        let o = Outcome {
            action: Action::Failed {
                error: EngineError::AuthorizationRequired,
            },
            token: None,
            next: Some(ts("2026-01-01T00:14:00Z")),
            written: false,
            failures: 0,
            last_error: None,
            pending_consent: Some(pending),
            renew_handled: None,
        };
        let url = "https://accounts.example.com/auth?state=abc";
        let s = desired(
            None,
            &Verdict::Ran(o.clone()),
            Some(1),
            "oauth2",
            "x",
            Some(url),
            ts("2026-01-01T00:00:00Z"),
        );
        assert_eq!(s.authorization_url.as_deref(), Some(url));
        assert_eq!(s.conditions.len(), 1);
        assert_eq!(s.conditions[0].reason, "AuthorizationRequired");
        assert!(s.conditions[0].message.contains("valid until 2026-01-01T00:15:00Z"));
        let again = desired(
            Some(&s),
            &Verdict::Ran(o.clone()),
            Some(1),
            "oauth2",
            "x",
            Some(url),
            ts("2026-01-01T00:05:00Z"),
        );
        assert_eq!(s, again);
    }

    #[test]
    fn revoked_consent_warns_while_the_old_token_lasts() {
        let pending = crate::reconcile::record::PendingConsent {
            nonce: "n".into(),
            expires: ts("2026-01-01T00:30:00Z"),
        };
        let o = Outcome {
            pending_consent: Some(pending),
            ..outcome(
                Action::Failed {
                    error: EngineError::AuthorizationRequired,
                },
                "2026-01-01T01:00:00Z",
                0,
            )
        };
        let s = desired(
            None,
            &Verdict::Ran(o.clone()),
            None,
            "oauth2",
            "x",
            Some("https://a/?state=s"),
            ts("2026-01-01T00:20:00Z"),
        );
        assert_eq!(
            (s.conditions[0].status.as_str(), s.conditions[0].reason.as_str()),
            ("True", "TokenValid")
        );
        assert_eq!(s.conditions[1].reason, "AuthorizationRequired");
        assert!(
            s.conditions[1]
                .message
                .starts_with("consent must be granted again before 2026-01-01T01:00:00Z")
        );
        assert_eq!(s.authorization_url.as_deref(), Some("https://a/?state=s"));
        let later = desired(
            Some(&s),
            &Verdict::Ran(o.clone()),
            None,
            "oauth2",
            "x",
            Some("https://a/?state=s"),
            ts("2026-01-01T01:00:00Z"),
        );
        assert_eq!(
            (later.conditions[0].status.as_str(), later.conditions[0].reason.as_str()),
            ("False", "AuthorizationRequired")
        );
    }

    #[test]
    fn insecure_tls_is_a_stable_warning_raised_once() {
        let spec = |insecure: bool| -> ConnectorAuthSpec {
            serde_json::from_value(serde_json::json!({
                "credentialsRef": {"name": "c"}, "apiKey": {},
                "tls": {"insecureSkipVerify": insecure},
            }))
            .unwrap()
        };
        let o = outcome(Action::Kept, "2026-01-01T01:00:00Z", 0);
        let at = |t: &str, prev: Option<&ConnectorAuthStatus>, insecure: bool| {
            let mut s = desired(prev, &Verdict::Ran(o.clone()), Some(1), "apiKey", "x", None, ts(t));
            warn_insecure_tls(&mut s, prev, &spec(insecure), Some(1), ts(t));
            s
        };
        let s1 = at("2026-01-01T00:10:00Z", None, true);
        let c = &s1.conditions[1];
        assert_eq!(
            (c.type_.as_str(), c.status.as_str(), c.reason.as_str()),
            (INSECURE_TLS, "True", "InsecureSkipVerify")
        );
        assert!(c.message.contains("not verified"), "{}", c.message);
        assert_eq!(s1.conditions[0].status, "True", "Ready is unaffected");
        assert!(raised(None, &s1, INSECURE_TLS).is_some(), "new: an Event");

        let s2 = at("2026-01-01T00:20:00Z", Some(&s1), true);
        assert_eq!(s1, s2, "stable: nothing to patch");
        assert!(raised(Some(&s1), &s2, INSECURE_TLS).is_none(), "no second Event");

        let s3 = at("2026-01-01T00:30:00Z", Some(&s2), false);
        assert!(s3.conditions.iter().all(|c| c.type_ != INSECURE_TLS), "gone once unset");
        let s4 = at("2026-01-01T00:40:00Z", Some(&s3), true);
        assert!(raised(Some(&s3), &s4, INSECURE_TLS).is_some(), "set again: a new Event");
    }

    #[test]
    fn health_separates_failing_renewals_from_consent_and_from_pending() {
        let status = |conds: &[(&str, bool, &str)]| ConnectorAuthStatus {
            conditions: conds.iter().map(|(t, v, r)| cond(t, *v, r, "m", None)).collect(),
            ..Default::default()
        };
        let h = health(&status(&[(READY, true, "TokenValid")]));
        assert_eq!(h, Health::default());
        let h = health(&status(&[(READY, false, "Pending")]));
        assert_eq!(h, Health::default(), "not yet issued is not failing");
        let h = health(&status(&[
            (READY, true, "TokenValid"),
            (REFRESH_FAILING, true, "RateLimited"),
        ]));
        assert_eq!(h.failing.as_deref(), Some("RateLimited"));
        let h = health(&status(&[(READY, false, "CredentialsNotFound")]));
        assert_eq!(h.failing.as_deref(), Some("CredentialsNotFound"));
        let h = health(&status(&[(READY, false, "AuthorizationRequired")]));
        assert_eq!((h.failing, h.consent_required), (None, true));
        let h = health(&status(&[
            (READY, true, "TokenValid"),
            (REFRESH_FAILING, true, "AuthorizationRequired"),
        ]));
        assert_eq!((h.failing, h.consent_required), (None, true));
    }

    #[test]
    fn refusals_are_not_ready_with_their_reason() {
        let r = crate::reconcile::Refusal {
            reason: Reason::CrossNamespaceReference,
            message: "m".into(),
        };
        let s = desired(
            None,
            &Verdict::Refused(r),
            Some(1),
            "apiKey",
            "x",
            None,
            ts("2026-01-01T00:00:00Z"),
        );
        assert_eq!(s.conditions[0].reason, "CrossNamespaceReference");
        assert_eq!(s.conditions[0].status, "False");
        assert_eq!(s.expires_at, None);
    }
}
