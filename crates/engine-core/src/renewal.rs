//! Expiry and renewal maths, and the renew-or-keep decision. Pure functions of their inputs.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};

use crate::error::{EngineError, Result};

/// Renewal settings, parsed from `spec.renewal`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RenewalPolicy {
    pub renew_before: Option<Duration>,
    pub renew_before_percentage: Option<u8>,
    pub refresh_interval: Option<Duration>,
    /// `renewal.refreshTokenIdleLimit`.
    pub refresh_token_idle_limit: Option<Duration>,
}

impl RenewalPolicy {
    pub fn from_spec(r: &crate::spec::Renewal) -> Result<Self> {
        Ok(RenewalPolicy {
            renew_before: r
                .renew_before
                .as_deref()
                .map(|d| parse_duration("spec.renewal.renewBefore", d))
                .transpose()?,
            renew_before_percentage: match r.renew_before_percentage {
                Some(p) if !(1..=99).contains(&p) => {
                    return Err(EngineError::InvalidSpec {
                        field: "spec.renewal.renewBeforePercentage".into(),
                        reason: format!("{p} is outside 1..99"),
                    });
                }
                p => p,
            },
            refresh_interval: r
                .refresh_interval
                .as_deref()
                .map(|d| parse_duration("spec.renewal.refreshInterval", d))
                .transpose()?,
            refresh_token_idle_limit: r
                .refresh_token_idle_limit
                .as_deref()
                .map(|d| parse_duration("spec.renewal.refreshTokenIdleLimit", d))
                .transpose()?,
        })
    }

    /// When a refresh token issued at `issued_at` must be used again so that the provider does
    /// not revoke it for lying idle: at 90% of `refreshTokenIdleLimit`. `None` without a limit
    /// or without a refresh token.
    pub fn keep_alive(&self, issued_at: Timestamp, has_refresh_token: bool) -> Option<Timestamp> {
        let idle = self.refresh_token_idle_limit.filter(|_| has_refresh_token)?;
        Some(add_clamped(issued_at, idle.as_secs_f64() * 0.9))
    }
}

/// The longest duration a spec may give and the longest lifetime a token is taken to have:
/// ten years. Providers answer `expires_in: 1e12` or an `exp` in the year 9999 for tokens
/// that do not expire; beyond this they are renewed as if they lived ten years, and timestamp
/// arithmetic never leaves its range.
pub const MAX_DURATION: Duration = Duration::from_secs(3650 * 86_400);

/// `t` plus `secs` seconds (negative and NaN count as zero), at most [`MAX_DURATION`] later.
pub fn add_clamped(t: Timestamp, secs: f64) -> Timestamp {
    let secs = if secs.is_nan() {
        0.0
    } else {
        secs.clamp(0.0, MAX_DURATION.as_secs_f64())
    };
    t.checked_add(SignedDuration::from_secs_f64(secs))
        .unwrap_or(Timestamp::MAX)
}

/// Parses `30s`, `5m`, `1h30m`, `2d`, `500ms`. Zero and negative durations are refused, and so
/// are durations longer than [`MAX_DURATION`] (3650d).
pub fn parse_duration(field: &str, text: &str) -> Result<Duration> {
    let bad = |why: &str| EngineError::InvalidSpec {
        field: field.into(),
        reason: format!("`{text}` is not a valid duration ({why}); use e.g. 30s, 5m, 1h30m or 2d"),
    };
    let mut total = Duration::ZERO;
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(bad("empty"));
    }
    while !rest.is_empty() {
        let digits = rest.chars().take_while(|c| c.is_ascii_digit()).count();
        if digits == 0 {
            return Err(bad("expected a number"));
        }
        let n: u64 = rest[..digits].parse().map_err(|_| bad("number too large"))?;
        rest = &rest[digits..];
        let unit_len = rest.chars().take_while(|c| c.is_ascii_alphabetic()).count();
        let unit = match &rest[..unit_len] {
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" => Duration::from_secs(n.saturating_mul(60)),
            "h" => Duration::from_secs(n.saturating_mul(3600)),
            "d" => Duration::from_secs(n.saturating_mul(86400)),
            "" => return Err(bad("missing unit")),
            _ => return Err(bad("unknown unit")),
        };
        rest = &rest[unit_len..];
        total = total.saturating_add(unit);
    }
    if total.is_zero() {
        return Err(bad("must be greater than zero"));
    }
    if total > MAX_DURATION {
        return Err(bad("longer than 3650d, ten years"));
    }
    Ok(total)
}

/// How long a token lives, by the first source that knows: the response's lifetime, its
/// absolute expiry, the JWT `exp` of the access token, else unknown.
pub fn expiry(
    issued_at: Timestamp,
    expires_in_secs: Option<f64>,
    expires_at: Option<Timestamp>,
    jwt_exp: Option<Timestamp>,
) -> Option<Timestamp> {
    if let Some(secs) = expires_in_secs {
        return Some(add_clamped(issued_at, secs));
    }
    let longest = add_clamped(issued_at, f64::INFINITY);
    expires_at.or(jwt_exp).map(|e| e.min(longest))
}

/// When to renew a token issued at `issued_at`. `jitter` in `[0, 1)` is drawn once per
/// issuance: it moves renewal up to 10% of the way earlier so a fleet issued together spreads
/// out, and is never re-rolled (the result is persisted).
///
/// - known expiry: `renewBefore` / `renewBeforePercentage` before it, default at 2/3 of the
///   lifetime; a `renewBefore` not shorter than the lifetime falls back to the default;
/// - unknown expiry: every `refreshInterval`, or never (permanent).
pub fn renew_at(
    issued_at: Timestamp,
    expires_at: Option<Timestamp>,
    policy: &RenewalPolicy,
    jitter: f64,
) -> Option<Timestamp> {
    let jitter = jitter.clamp(0.0, 0.999_999);
    let window = match expires_at {
        Some(exp) => {
            let lifetime = exp.duration_since(issued_at).as_secs_f64().max(0.0);
            let default_before = lifetime / 3.0;
            let before = match (policy.renew_before, policy.renew_before_percentage) {
                (Some(b), _) if b.as_secs_f64() < lifetime => b.as_secs_f64(),
                (Some(_), _) => default_before,
                (None, Some(p)) => lifetime * f64::from(p) / 100.0,
                (None, None) => default_before,
            };
            lifetime - before
        }
        None => policy.refresh_interval?.as_secs_f64(),
    };
    let window = window * (1.0 - 0.1 * jitter);
    Some(add_clamped(issued_at, window))
}

/// Delay before retry number `failures` (1-based): exponential from 5 s, capped at 5 min for
/// transient errors and 30 min for terminal ones, with ±20% jitter from `jitter` in `[0, 1)`;
/// a provider's `Retry-After` is honoured when it asks for longer.
pub fn backoff(failures: u32, transient: bool, retry_after: Option<Duration>, jitter: f64) -> Duration {
    let cap = if transient { 300.0 } else { 1800.0 };
    let exp = 5.0 * 2f64.powi(failures.saturating_sub(1).min(20) as i32);
    let base = exp.min(cap) * (0.8 + 0.4 * jitter.clamp(0.0, 1.0));
    let d = Duration::from_secs_f64(base);
    match retry_after {
        Some(r) if r > d => r.min(Duration::from_secs(3600)),
        _ => d,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn durations_parse_and_refuse_nonsense() {
        assert_eq!(parse_duration("f", "5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("f", "1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("f", "2d").unwrap(), Duration::from_secs(172800));
        assert_eq!(parse_duration("f", "250ms").unwrap(), Duration::from_millis(250));
        for bad in ["", "5", "-5m", "5x", "0s", "m"] {
            let e = parse_duration("spec.renewal.renewBefore", bad).unwrap_err();
            assert!(e.to_string().contains("spec.renewal.renewBefore"), "{e}");
        }
    }

    #[test]
    fn expiry_prefers_response_lifetime_then_absolute_then_jwt() {
        let now = ts("2026-01-01T00:00:00Z");
        let abs = ts("2026-01-02T00:00:00Z");
        let jwt = ts("2026-01-03T00:00:00Z");
        assert_eq!(
            expiry(now, Some(3600.0), Some(abs), Some(jwt)),
            Some(ts("2026-01-01T01:00:00Z"))
        );
        assert_eq!(expiry(now, None, Some(abs), Some(jwt)), Some(abs));
        assert_eq!(expiry(now, None, None, Some(jwt)), Some(jwt));
        assert_eq!(expiry(now, None, None, None), None);
    }

    #[test]
    fn default_renewal_is_two_thirds_of_the_lifetime() {
        let now = ts("2026-01-01T00:00:00Z");
        let exp = ts("2026-01-01T03:00:00Z");
        let p = RenewalPolicy::default();
        assert_eq!(renew_at(now, Some(exp), &p, 0.0), Some(ts("2026-01-01T02:00:00Z")));
        // Full jitter moves it 10% earlier, never later.
        assert_eq!(
            renew_at(now, Some(exp), &p, 0.999999).unwrap().as_second(),
            ts("2026-01-01T01:48:00Z").as_second()
        );
    }

    #[test]
    fn keep_alive_is_at_nine_tenths_of_the_idle_limit_and_only_with_a_refresh_token() {
        let issued = ts("2026-01-01T00:00:00Z");
        let p = RenewalPolicy {
            refresh_token_idle_limit: Some(Duration::from_secs(60 * 86_400)),
            ..Default::default()
        };
        assert_eq!(p.keep_alive(issued, true), Some(ts("2026-02-24T00:00:00Z")));
        assert_eq!(p.keep_alive(issued, false), None);
        assert_eq!(RenewalPolicy::default().keep_alive(issued, true), None);
    }

    #[test]
    fn renew_before_and_percentage() {
        let now = ts("2026-01-01T00:00:00Z");
        let exp = ts("2026-01-01T01:00:00Z");
        let before = RenewalPolicy {
            renew_before: Some(Duration::from_secs(300)),
            ..Default::default()
        };
        assert_eq!(renew_at(now, Some(exp), &before, 0.0), Some(ts("2026-01-01T00:55:00Z")));
        let pct = RenewalPolicy {
            renew_before_percentage: Some(25),
            ..Default::default()
        };
        assert_eq!(renew_at(now, Some(exp), &pct, 0.0), Some(ts("2026-01-01T00:45:00Z")));
        // renewBefore longer than the lifetime: fall back to 2/3 rather than renew in a loop.
        let long = RenewalPolicy {
            renew_before: Some(Duration::from_secs(7200)),
            ..Default::default()
        };
        assert_eq!(renew_at(now, Some(exp), &long, 0.0), Some(ts("2026-01-01T00:40:00Z")));
    }

    #[test]
    fn unknown_expiry_uses_refresh_interval_or_is_permanent() {
        let now = ts("2026-01-01T00:00:00Z");
        let p = RenewalPolicy {
            refresh_interval: Some(Duration::from_secs(3600)),
            ..Default::default()
        };
        assert_eq!(renew_at(now, None, &p, 0.0), Some(ts("2026-01-01T01:00:00Z")));
        assert_eq!(renew_at(now, None, &RenewalPolicy::default(), 0.5), None);
    }

    #[test]
    fn backoff_grows_caps_and_honours_retry_after() {
        assert_eq!(backoff(1, true, None, 0.5), Duration::from_secs(5));
        assert_eq!(backoff(3, true, None, 0.5), Duration::from_secs(20));
        assert_eq!(backoff(30, true, None, 0.5), Duration::from_secs(300));
        assert_eq!(backoff(30, false, None, 0.5), Duration::from_secs(1800));
        assert_eq!(
            backoff(1, true, Some(Duration::from_secs(90)), 0.5),
            Duration::from_secs(90)
        );
        assert_eq!(
            backoff(10, true, Some(Duration::from_secs(1)), 0.5),
            Duration::from_secs(300)
        );
        assert!(backoff(2, true, None, 0.0) < backoff(2, true, None, 0.99));
    }
}
