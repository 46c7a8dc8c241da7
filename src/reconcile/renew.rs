//! Renew-or-keep: whether a pass gets a token, keeps the one it has or backs off, and what it
//! may do with the refresh token — one ordered chain ([`plan`]) of small pure rules.

use jiff::Timestamp;

use super::record::{InFlight, Record};
use crate::engine::state::{self, Decision};
use crate::reason::Reason;

/// What renew-or-keep is decided from: the record, the inputs, the renewal request and the
/// refresh token a renewal would send.
#[derive(Clone, Copy, Debug)]
pub struct Facts<'a> {
    pub record: &'a Record,
    /// Digest of what the token depends on (scheme, renewal, credentials).
    pub fingerprint: &'a str,
    /// Digest of what an attempt depends on: the fingerprint plus how requests are sent.
    pub attempt: &'a str,
    /// The renewal request to act upon ([`renew_request`]), if any.
    pub requested: Option<&'a str>,
    /// Digest of the refresh token a renewal would send, if it would send one.
    pub refresh_token: Option<&'a str>,
    /// Whether the provider is known to accept that refresh token again.
    pub reusable: bool,
    /// Whether the scheme can log in (or ask for consent) without a refresh token.
    pub can_login: bool,
    /// When the stored refresh token must be used again lest the provider revoke it as idle
    /// (`renewal.refreshTokenIdleLimit`; see `RenewalPolicy::keep_alive`).
    pub keep_alive: Option<Timestamp>,
    pub now: Timestamp,
}

/// What a pass does about the token.
#[derive(Clone, Debug, PartialEq)]
pub enum Plan {
    /// Still backing off from a failed attempt with the same inputs: no provider call before
    /// `until`; what is published stays.
    BackOff { until: Timestamp },
    /// The stored token is good; look again at `until` (None: only on change).
    Keep { until: Option<Timestamp> },
    /// The provider refused the refresh token for good and there is no other way to a token:
    /// nothing is sent until the inputs change or someone asks for a renewal.
    Stopped,
    /// Get a token, for `reason`; `guard` says what may be done with the refresh token.
    Renew { reason: Reason, guard: Guard },
}

/// Renew-or-keep, rule by rule, the first that applies deciding:
///
/// 1. **Backoff**: a failed attempt with the same inputs is not retried before its time,
///    unless someone asked for a renewal.
/// 2. **Renewal** ([`state::decide`]): no token, changed inputs, expired, or due.
/// 3. **Renew request**: a token that would be kept is renewed when asked (a due token keeps
///    the reason it is due for).
/// 4. **Keep-alive**: a token that would be kept is renewed when its refresh token would
///    otherwise lie idle too long.
/// 5. Otherwise the token is kept, looked at again by the keep-alive time at the latest.
///
/// A renewal then passes the **refresh guard** ([`guard`]): a refresh token that may have been
/// sent without its answer being stored is never sent again.
pub fn plan(f: &Facts<'_>) -> Plan {
    if f.requested.is_none()
        && let Some(until) = backing_off(f.record, f.attempt, f.now)
    {
        return Plan::BackOff { until };
    }
    if f.requested.is_none() && stopped(f.record, f.attempt) {
        return Plan::Stopped;
    }
    let reason = match state::decide(f.now, f.record.token.as_ref(), f.fingerprint) {
        Decision::Renew { reason } => reason,
        Decision::Keep { .. } if f.requested.is_some() => Reason::RenewRequested,
        Decision::Keep { .. } if f.keep_alive.is_some_and(|k| k <= f.now) => Reason::KeepAlive,
        Decision::Keep { until } => {
            let until = match (until, f.keep_alive) {
                (Some(u), Some(k)) => Some(u.min(k)),
                (u, k) => u.or(k),
            };
            return Plan::Keep { until };
        }
    };
    Plan::Renew {
        reason,
        guard: guard(f.record.in_flight.as_ref(), f.refresh_token, f.reusable, f.can_login),
    }
}

/// The end of the backoff that still holds: set, in the future, and for the same inputs (a
/// changed Secret, spec or CA bundle is tried at once).
pub fn backing_off(record: &Record, attempt: &str, now: Timestamp) -> Option<Timestamp> {
    let same_inputs = record.failed_fingerprint.as_deref() == Some(attempt);
    record.retry_at.filter(|r| *r > now && same_inputs)
}

/// Whether the last attempt with these very inputs ended with the refresh token refused for
/// good ([`Reason::RefreshTokenRevoked`]).
pub fn stopped(record: &Record, attempt: &str) -> bool {
    record.failed_fingerprint.as_deref() == Some(attempt)
        && record
            .last_error
            .as_ref()
            .is_some_and(|e| e.reason == Reason::RefreshTokenRevoked)
}

/// The renewal request to act upon in this pass: the `connectorauth.dev/renew` annotation's
/// value, unless it is empty or is the one acted upon last (each value is acted upon once,
/// however often the resource is reconciled, and by whichever replica leads).
pub fn renew_request<'a>(annotation: Option<&'a str>, handled: Option<&str>) -> Option<&'a str> {
    annotation
        .map(str::trim)
        .filter(|v| !v.is_empty() && Some(*v) != handled)
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

#[cfg(test)]
mod tests {

    use super::*;
    use crate::engine::TokenState;

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

    fn token(fingerprint: &str, renew_at: &str, expires_at: &str) -> TokenState {
        TokenState {
            refresh_token: Some("rt".into()),
            expires_at: Some(ts(expires_at)),
            renew_at: Some(ts(renew_at)),
            ..TokenState::new("at", "Bearer", ts("2026-01-01T00:00:00Z"), fingerprint)
        }
    }

    /// One row per rule, in the chain's order; each row differs from a kept token by the one
    /// fact its rule reads.
    #[test]
    fn renew_or_keep_applies_its_rules_in_order() {
        let now = ts("2026-01-01T01:00:00Z");
        let good = Record {
            token: Some(token("fp", "2026-01-01T01:40:00Z", "2026-01-01T02:00:00Z")),
            ..Record::default()
        };
        let failed = Record {
            failures: 2,
            retry_at: Some(ts("2026-01-01T01:05:00Z")),
            failed_fingerprint: Some("fp".into()),
            ..good.clone()
        };
        let due = Record {
            token: Some(token("fp", "2026-01-01T00:40:00Z", "2026-01-01T02:00:00Z")),
            ..Record::default()
        };
        let expired = Record {
            token: Some(token("fp", "2026-01-01T00:40:00Z", "2026-01-01T00:59:00Z")),
            ..Record::default()
        };
        let in_doubt = Record {
            in_flight: Some(InFlight {
                digest: "d1".into(),
                since: ts("2026-01-01T00:59:00Z"),
            }),
            ..due.clone()
        };
        fn facts(record: &Record, now: Timestamp) -> Facts<'_> {
            Facts {
                record,
                fingerprint: "fp",
                attempt: "fp",
                requested: None,
                refresh_token: Some("d1"),
                reusable: false,
                can_login: false,
                keep_alive: None,
                now,
            }
        }
        let none = Record::default();
        let renew = |reason, guard| Plan::Renew { reason, guard };
        let rows: Vec<(&str, Facts<'_>, Plan)> = vec![
            (
                "kept",
                facts(&good, now),
                Plan::Keep {
                    until: Some(ts("2026-01-01T01:40:00Z")),
                },
            ),
            // 1. backoff
            (
                "backing off",
                facts(&failed, now),
                Plan::BackOff {
                    until: ts("2026-01-01T01:05:00Z"),
                },
            ),
            (
                "backoff over",
                Facts {
                    now: ts("2026-01-01T01:06:00Z"),
                    ..facts(&failed, now)
                },
                Plan::Keep {
                    until: Some(ts("2026-01-01T01:40:00Z")),
                },
            ),
            (
                "inputs changed since the failure",
                Facts {
                    fingerprint: "fp2",
                    attempt: "fp2",
                    ..facts(&failed, now)
                },
                renew(Reason::InputsChanged, Guard::MarkThenSend),
            ),
            (
                "renew request during backoff",
                Facts {
                    requested: Some("r1"),
                    ..facts(&failed, now)
                },
                renew(Reason::RenewRequested, Guard::MarkThenSend),
            ),
            // 2. renewal
            (
                "no token",
                facts(&none, now),
                renew(Reason::NoToken, Guard::MarkThenSend),
            ),
            (
                "spec or credentials changed",
                Facts {
                    fingerprint: "fp2",
                    attempt: "fp2",
                    ..facts(&good, now)
                },
                renew(Reason::InputsChanged, Guard::MarkThenSend),
            ),
            (
                "expired",
                facts(&expired, now),
                renew(Reason::Expired, Guard::MarkThenSend),
            ),
            ("due", facts(&due, now), renew(Reason::RenewalDue, Guard::MarkThenSend)),
            // 3. renew request
            (
                "renew request",
                Facts {
                    requested: Some("r1"),
                    ..facts(&good, now)
                },
                renew(Reason::RenewRequested, Guard::MarkThenSend),
            ),
            (
                "renew request of a due token",
                Facts {
                    requested: Some("r1"),
                    ..facts(&due, now)
                },
                renew(Reason::RenewalDue, Guard::MarkThenSend),
            ),
            // 4. keep-alive
            (
                "refresh token about to lie idle too long",
                Facts {
                    keep_alive: Some(now),
                    ..facts(&good, now)
                },
                renew(Reason::KeepAlive, Guard::MarkThenSend),
            ),
            (
                "keep-alive later than the renewal",
                Facts {
                    keep_alive: Some(ts("2026-01-01T05:00:00Z")),
                    ..facts(&good, now)
                },
                Plan::Keep {
                    until: Some(ts("2026-01-01T01:40:00Z")),
                },
            ),
            (
                "keep-alive before the renewal",
                Facts {
                    keep_alive: Some(ts("2026-01-01T01:10:00Z")),
                    ..facts(&good, now)
                },
                Plan::Keep {
                    until: Some(ts("2026-01-01T01:10:00Z")),
                },
            ),
            // refresh guard
            (
                "nothing to refresh with",
                Facts {
                    refresh_token: None,
                    ..facts(&due, now)
                },
                renew(Reason::RenewalDue, Guard::Send),
            ),
            (
                "a reusable refresh token",
                Facts {
                    reusable: true,
                    ..facts(&due, now)
                },
                renew(Reason::RenewalDue, Guard::Send),
            ),
            (
                "in doubt, cannot log in",
                facts(&in_doubt, now),
                renew(Reason::RenewalDue, Guard::InDoubt),
            ),
            (
                "in doubt, can log in",
                Facts {
                    can_login: true,
                    ..facts(&in_doubt, now)
                },
                renew(Reason::RenewalDue, Guard::LoginInstead),
            ),
            (
                "another refresh token than the one in doubt",
                Facts {
                    refresh_token: Some("d2"),
                    ..facts(&in_doubt, now)
                },
                renew(Reason::RenewalDue, Guard::MarkThenSend),
            ),
        ];
        for (name, f, want) in rows {
            assert_eq!(plan(&f), want, "{name}");
        }
    }
}
