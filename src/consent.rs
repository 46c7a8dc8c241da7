//! The OAuth2 `state` parameter of the consent flow: signed (HMAC-SHA256 with an operator-held
//! key), bound to one resource (namespace, name, uid) and one pending consent (nonce), and
//! short-lived. Pure: no Kubernetes, no I/O.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// How long a consent link stays valid.
pub const STATE_TTL_SECS: i64 = 15 * 60;

/// What a `state` vouches for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsentState {
    #[serde(rename = "ns")]
    pub namespace: String,
    #[serde(rename = "n")]
    pub name: String,
    #[serde(rename = "u")]
    pub uid: String,
    /// Single-use: must equal the nonce stored as pending for the resource.
    #[serde(rename = "c")]
    pub nonce: String,
    /// Unix seconds.
    #[serde(rename = "x")]
    pub expires: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    #[error("the state parameter is malformed")]
    Malformed,
    #[error("the state parameter's signature is invalid")]
    Forged,
    #[error("the consent link has expired; open the current status.authorizationUrl again")]
    Expired,
}

impl StateError {
    pub fn reason(&self) -> crate::reason::Reason {
        use crate::reason::Reason;
        match self {
            StateError::Malformed => Reason::MalformedState,
            StateError::Forged => Reason::ForgedState,
            StateError::Expired => Reason::ExpiredState,
        }
    }
}

fn mac(key: &[u8]) -> Hmac<Sha256> {
    Hmac::<Sha256>::new_from_slice(key).expect("HMAC accepts any key length")
}

/// The PKCE `code_verifier` (RFC 7636) of the consent link with this nonce: 43 base64url
/// characters (256 bits) derived from the consent key, so it is stored nowhere, never in the
/// link, and every replica holding the key finds the same one for a callback.
pub fn pkce_verifier(key: &[u8], nonce: &str) -> String {
    let mut m = mac(key);
    m.update(b"pkce code_verifier\0");
    m.update(nonce.as_bytes());
    URL_SAFE_NO_PAD.encode(m.finalize().into_bytes())
}

/// The S256 `code_challenge` of a verifier: base64url(SHA-256(verifier)).
pub fn pkce_challenge(verifier: &str) -> String {
    use sha2::Digest as _;
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// `payload.signature`, both base64url.
pub fn sign(key: &[u8], state: &ConsentState) -> String {
    let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(state).expect("serializable"));
    let mut m = mac(key);
    m.update(payload.as_bytes());
    format!("{payload}.{}", URL_SAFE_NO_PAD.encode(m.finalize().into_bytes()))
}

/// Checks signature (constant time) and expiry.
pub fn verify(key: &[u8], token: &str, now_secs: i64) -> Result<ConsentState, StateError> {
    let (payload, sig) = token.split_once('.').ok_or(StateError::Malformed)?;
    let sig = URL_SAFE_NO_PAD.decode(sig).map_err(|_| StateError::Malformed)?;
    let mut m = mac(key);
    m.update(payload.as_bytes());
    m.verify_slice(&sig).map_err(|_| StateError::Forged)?;
    let bytes = URL_SAFE_NO_PAD.decode(payload).map_err(|_| StateError::Malformed)?;
    let state: ConsentState = serde_json::from_slice(&bytes).map_err(|_| StateError::Malformed)?;
    if state.expires <= now_secs {
        return Err(StateError::Expired);
    }
    Ok(state)
}

/// The resource a `state` names, read without checking its signature: only to route a
/// callback to the replica that holds the resource (which then verifies it), never to act on.
pub fn addressed_to(token: &str) -> Option<(String, String)> {
    let payload = token.split_once('.')?.0;
    let state: ConsentState = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()?;
    Some((state.namespace, state.name))
}

/// A fresh random nonce or key.
pub fn random_token(bytes: usize) -> String {
    let v: Vec<u8> = (0..bytes).map(|_| rand::random::<u8>()).collect();
    URL_SAFE_NO_PAD.encode(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> ConsentState {
        ConsentState {
            namespace: "ns".into(),
            name: "google".into(),
            uid: "u-1".into(),
            nonce: "n1".into(),
            expires: 1000,
        }
    }

    #[test]
    fn a_signed_state_verifies_until_it_expires() {
        let t = sign(b"key", &state());
        assert_eq!(verify(b"key", &t, 999), Ok(state()));
        assert_eq!(verify(b"key", &t, 1000), Err(StateError::Expired));
    }

    #[test]
    fn a_state_names_its_resource_for_routing_even_unverified() {
        let token = sign(b"k", &state());
        assert_eq!(addressed_to(&token), Some((state().namespace, state().name)));
        assert_eq!(addressed_to("garbage"), None);
        assert_eq!(addressed_to("bm90IGpzb24.sig"), None);
    }

    #[test]
    fn forged_tampered_and_malformed_states_are_refused() {
        let t = sign(b"key", &state());
        assert_eq!(verify(b"other-key", &t, 0), Err(StateError::Forged));
        let mut other = state();
        other.name = "bank".into();
        let forged_payload = sign(b"attacker", &other);
        let (payload, _) = forged_payload.split_once('.').unwrap();
        let (_, sig) = t.split_once('.').unwrap();
        assert_eq!(verify(b"key", &format!("{payload}.{sig}"), 0), Err(StateError::Forged));
        assert_eq!(verify(b"key", "garbage", 0), Err(StateError::Malformed));
        assert_eq!(verify(b"key", "a.!!!", 0), Err(StateError::Malformed));
    }

    #[test]
    fn a_pkce_verifier_is_per_link_and_per_key_and_its_challenge_is_s256() {
        let v = pkce_verifier(b"key", "nonce-1");
        assert_eq!(v.len(), 43);
        assert_eq!(
            v,
            pkce_verifier(b"key", "nonce-1"),
            "every replica with the key finds it"
        );
        assert_ne!(v, pkce_verifier(b"key", "nonce-2"));
        assert_ne!(v, pkce_verifier(b"other", "nonce-1"));
        // RFC 7636 appendix B.
        assert_eq!(
            pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }
}
