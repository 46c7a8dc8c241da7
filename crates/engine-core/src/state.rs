//! What is kept of a resource's token between passes, and the pure choices made from it: which
//! refresh token a renewal sends, and the digest that tells whether a token is still the one
//! its spec and credentials would issue.

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::flow::Flow;
use crate::reason::Reason;
use crate::secret::SecretString;
use crate::spec::Spec;

/// The private state of one resource's token. It holds the refresh token, so it is stored where
/// workloads cannot read it (the state Secret, or `.state/` in local mode).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenState {
    pub access_token: SecretString,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<SecretString>,
    pub token_type: String,
    pub issued_at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Timestamp>,
    /// Renewal time, jitter included; chosen once per issuance and kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renew_at: Option<Timestamp>,
    /// Scheme extras such as `so_ticket`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extras: BTreeMap<String, SecretString>,
    /// Digest of the scheme spec and credentials the token was issued from.
    pub fingerprint: String,
    /// Digest of the onboarding refresh token last taken from the credentials, so a rotated
    /// token is not replaced by the stale seed, and a new seed is noticed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed_refresh_token: Option<String>,
    /// The provider answered the refresh that produced this state without replacing the
    /// refresh token: it does not rotate them, so sending this one again is harmless. Unknown
    /// (false) until a refresh has shown it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub refresh_token_reusable: bool,
    /// Fields of the token responses that templates read as `{{ oauth.<field> }}`, merged
    /// across refreshes (a refresh answer without a field keeps the earlier value). Private:
    /// they may be credentials.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub oauth: BTreeMap<String, SecretString>,
    /// Where the refresh request went (`scheme://host[:port]`) when the refresh token was
    /// stored: the refresh token is sent nowhere else ([`crate::EngineError::RefreshTokenEndpointChanged`]).
    /// `None` for states written before this was kept, and where the URL did not render.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_origin: Option<String>,
    /// Values of the consent callback that gave this grant (`oauth2.callbackValues`, without
    /// the code), as `{{ callback.<name> }}`; carried across refreshes, replaced on re-consent.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub callback: BTreeMap<String, SecretString>,
    /// Values of the post-connect lookups (`oauth2.lookups`), keyed `<lookup>.<key>`, as
    /// `{{ lookup.<lookup>.<key> }}`; carried across refreshes, made anew for each grant.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub lookups: BTreeMap<String, SecretString>,
}

impl TokenState {
    /// A token just issued, with nothing else known yet (no refresh token, no expiry).
    pub fn new(
        access_token: impl Into<SecretString>,
        token_type: impl Into<String>,
        issued_at: Timestamp,
        fingerprint: impl Into<String>,
    ) -> Self {
        TokenState {
            access_token: access_token.into(),
            refresh_token: None,
            token_type: token_type.into(),
            issued_at,
            expires_at: None,
            renew_at: None,
            extras: BTreeMap::new(),
            fingerprint: fingerprint.into(),
            seed_refresh_token: None,
            refresh_token_reusable: false,
            oauth: BTreeMap::new(),
            refresh_origin: None,
            callback: BTreeMap::new(),
            lookups: BTreeMap::new(),
        }
    }
}

/// Which refresh token a renewal would send, decided before anything is sent (so the caller
/// can record that it is about to be used).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RefreshChoice {
    /// None: no refresh request (log in, ask for consent, or nothing to refresh with).
    pub token: Option<SecretString>,
    /// Digest of the onboarding token to remember as used.
    pub seed_digest: Option<String>,
    /// Whether the provider is known to accept this token again (see
    /// [`TokenState::refresh_token_reusable`]); a new seed is never known to.
    pub reusable: bool,
}

impl RefreshChoice {
    /// Digest of the refresh token to be sent, to recognise it later without storing it twice.
    pub fn digest(&self) -> Option<String> {
        self.token.as_ref().map(|t| digest(t.expose()))
    }
}

/// Digest of everything a token depends on: the scheme block, the renewal policy and the
/// credentials. Output settings are left out: changing them re-renders, it does not re-issue.
/// The spec is the resolved one: with a provider, the settings it fills in count too.
pub fn fingerprint(spec: &Spec<'_>, credentials: &BTreeMap<String, SecretString>) -> String {
    let mut h = Sha256::new();
    h.update(serde_json::to_vec(&spec.scheme).unwrap_or_default());
    h.update(serde_json::to_vec(&spec.renewal).unwrap_or_default());
    for (k, v) in credentials {
        h.update((k.len() as u64).to_le_bytes());
        h.update(k.as_bytes());
        h.update((v.expose().len() as u64).to_le_bytes());
        h.update(v.expose().as_bytes());
    }
    hex(&h.finalize()[..16])
}

pub fn digest(s: &str) -> String {
    hex(&Sha256::digest(s.as_bytes())[..16])
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Which refresh token a renewal sends: a new onboarding token from the credentials wins over
/// the stored one. A seed is used once: after that the stored (possibly rotated) token is the
/// only one, and if that is gone (refused), the spent seed is never tried again.
pub fn refresh_choice(
    flow: &Flow,
    credentials: &BTreeMap<String, SecretString>,
    prev: Option<&TokenState>,
) -> RefreshChoice {
    let seed = flow
        .seed_refresh_key
        .as_ref()
        .and_then(|k| credentials.get(k))
        .filter(|v| !v.is_empty());
    let seed_digest = seed.map(|s| digest(s.expose()));
    let stored = prev.and_then(|p| p.refresh_token.clone());
    let prev_seed = prev.and_then(|p| p.seed_refresh_token.clone());
    let (token, reusable) = match (seed, stored) {
        (Some(s), _) if seed_digest != prev_seed => (Some(s.clone()), false),
        (_, Some(r)) => (Some(r), prev.is_some_and(|p| p.refresh_token_reusable)),
        _ => (None, false),
    };
    RefreshChoice {
        // Only a flow with a refresh request sends it.
        token: token.filter(|_| flow.refresh.is_some()),
        seed_digest: seed_digest.or(prev_seed),
        reusable,
    }
}

/// What to do about a resource's token now, by the token alone (the pass adds backoff, renew
/// requests and the refresh guard).
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// The token is good; look again at `until` (None: permanent).
    Keep { until: Option<Timestamp> },
    /// Get a token; `reason` is a PascalCase word for logs and Events.
    Renew { reason: Reason },
}

/// Renew-or-keep, given the stored token (if any), the fingerprint of the inputs it was issued
/// from and the current inputs' fingerprint.
pub fn decide(now: Timestamp, token: Option<&TokenState>, fingerprint: &str) -> Decision {
    let Some(t) = token else {
        return Decision::Renew {
            reason: Reason::NoToken,
        };
    };
    if t.fingerprint != fingerprint {
        return Decision::Renew {
            reason: Reason::InputsChanged,
        };
    }
    if t.expires_at.is_some_and(|e| e <= now) {
        return Decision::Renew {
            reason: Reason::Expired,
        };
    }
    match t.renew_at {
        Some(r) if r <= now => Decision::Renew {
            reason: Reason::RenewalDue,
        },
        until => Decision::Keep { until },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Templates;
    use crate::spec::Scheme;

    fn flow(grant: &str) -> Flow {
        let scheme: Scheme = serde_json::from_value(serde_json::json!({
            "oauth2": {"tokenUrl": "https://idp.example/token", "grantType": grant},
        }))
        .unwrap();
        crate::compile(&Spec::new(&scheme), &Templates::new()).unwrap()
    }

    fn stored(rt: Option<&str>, seed: Option<&str>, reusable: bool) -> TokenState {
        TokenState {
            refresh_token: rt.map(Into::into),
            seed_refresh_token: seed.map(digest),
            refresh_token_reusable: reusable,
            ..TokenState::new("at", "Bearer", Timestamp::UNIX_EPOCH, "f")
        }
    }

    fn with_seed(seed: Option<&str>) -> BTreeMap<String, SecretString> {
        seed.map(|s| [("refresh_token".to_string(), SecretString::from(s))].into())
            .unwrap_or_default()
    }

    #[test]
    fn a_new_onboarding_token_wins_once_then_the_stored_rotated_one_is_used() {
        let f = flow("refreshToken");
        let token = |c: RefreshChoice| c.token.map(|t| t.expose().to_string());
        // First use of the seed.
        let c = refresh_choice(&f, &with_seed(Some("seed-1")), None);
        assert_eq!(token(c.clone()), Some("seed-1".into()));
        assert!(!c.reusable, "a new seed is never known to be reusable");
        // The seed was used and rotated: the stored token, however stale the seed in the Secret.
        let prev = stored(Some("rt-2"), Some("seed-1"), true);
        let c = refresh_choice(&f, &with_seed(Some("seed-1")), Some(&prev));
        assert_eq!(token(c.clone()), Some("rt-2".into()));
        assert!(c.reusable, "as the provider showed at the last refresh");
        // A person put a new seed in: it wins.
        let c = refresh_choice(&f, &with_seed(Some("seed-2")), Some(&prev));
        assert_eq!(token(c), Some("seed-2".into()));
        // The stored token was refused and dropped: the spent seed is not tried again.
        let refused = stored(None, Some("seed-1"), false);
        assert_eq!(
            token(refresh_choice(&f, &with_seed(Some("seed-1")), Some(&refused))),
            None
        );
        // An empty seed counts as none.
        assert_eq!(token(refresh_choice(&f, &with_seed(Some("")), None)), None);
    }

    #[test]
    fn a_flow_without_a_refresh_request_never_sends_a_refresh_token() {
        let mut f = flow("clientCredentials");
        f.refresh = None;
        let prev = stored(Some("rt"), None, false);
        assert_eq!(refresh_choice(&f, &BTreeMap::new(), Some(&prev)).token, None);
    }

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn token(fp: &str, exp: Option<&str>, renew: Option<&str>) -> TokenState {
        TokenState {
            expires_at: exp.map(ts),
            renew_at: renew.map(ts),
            extras: Default::default(),
            oauth: Default::default(),
            ..TokenState::new("a", "Bearer", ts("2026-01-01T00:00:00Z"), fp)
        }
    }

    #[test]
    fn decisions() {
        let now = ts("2026-01-01T00:30:00Z");
        assert_eq!(
            decide(now, None, "f"),
            Decision::Renew {
                reason: Reason::NoToken
            }
        );
        let t = token("f", Some("2026-01-01T01:00:00Z"), Some("2026-01-01T00:40:00Z"));
        assert_eq!(
            decide(now, Some(&t), "f"),
            Decision::Keep {
                until: Some(ts("2026-01-01T00:40:00Z"))
            }
        );
        assert_eq!(
            decide(now, Some(&t), "g"),
            Decision::Renew {
                reason: Reason::InputsChanged
            }
        );
        assert_eq!(
            decide(ts("2026-01-01T00:45:00Z"), Some(&t), "f"),
            Decision::Renew {
                reason: Reason::RenewalDue
            }
        );
        assert_eq!(
            decide(ts("2026-01-01T01:00:00Z"), Some(&t), "f"),
            Decision::Renew {
                reason: Reason::Expired
            }
        );
        let permanent = token("f", None, None);
        assert_eq!(decide(now, Some(&permanent), "f"), Decision::Keep { until: None });
    }
}
