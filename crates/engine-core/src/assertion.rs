//! Signed assertions (RFC 7523): JWTs the operator signs with a private key from the
//! credentials Secret — the `assertion` of the JWT bearer grant, the `client_assertion` of
//! `private_key_jwt` client authentication, the app JWT of GitHub Apps.
//!
//! A flow's [`Plan`]s are signed afresh for each request that uses their template variable
//! (`{{ assertion }}`, `{{ client_assertion }}`, …), so every request carries a new `jti` and
//! current times. Key loading and signing are pure: [`SigningKey::load`] and [`sign`] take the
//! key text, claims, `now` and the `jti`. Errors name the spec field, the Secret and the key,
//! never key material or the JWT.

use std::collections::BTreeMap;
use std::fmt;

use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair,
};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jiff::Timestamp;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rustls_pki_types::pem::SectionKind;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::error::{EngineError, Result};
use crate::spec::{JwtAlgorithm, SignedAssertion};
use crate::template::Tmpl;

/// A compiled [`SignedAssertion`]: which template variable it provides and how it is made.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The template variable the signed JWT is offered as, e.g. `client_assertion`.
    pub var: &'static str,
    /// The spec field, for messages (`spec.oauth2.clientAssertion`).
    pub field: String,
    /// The credentials Secret's name, for messages; set by [`crate::flow::compile`].
    pub secret: String,
    pub private_key_key: String,
    pub certificate_key: Option<String>,
    pub algorithm: Option<JwtAlgorithm>,
    pub key_id: Option<Tmpl>,
    /// String claims (defaults merged with the spec's; emptied ones left out).
    pub claims: Vec<(String, Tmpl)>,
    /// `iss` was not set in the spec: a JSON key file's `client_email` replaces the default.
    pub iss_from_key_file: bool,
    pub lifetime_secs: i64,
    /// `iat` this far in the past (GitHub asks for 60 s against clock drift).
    pub backdate_secs: i64,
    pub not_before: bool,
    pub jti: bool,
}

/// How a flow fills in a [`SignedAssertion`]'s defaults.
pub struct Defaults<'a> {
    pub claims: Vec<(&'a str, String)>,
    pub lifetime: &'a str,
    pub backdate_secs: i64,
    pub not_before: bool,
    pub jti: bool,
    /// A JSON key file's `client_email` is the default `iss` (Google service accounts).
    pub iss_from_key_file: bool,
}

impl Plan {
    pub fn compile(field: &str, var: &'static str, s: &SignedAssertion, d: Defaults<'_>) -> Result<Plan> {
        let lifetime = s.lifetime.as_deref().unwrap_or(d.lifetime);
        let lifetime_secs = crate::renewal::parse_duration(&format!("{field}.lifetime"), lifetime)?.as_secs() as i64;
        if lifetime_secs < 1 {
            return Err(EngineError::InvalidSpec {
                field: format!("{field}.lifetime"),
                reason: "must be at least one second".into(),
            });
        }
        let mut claims: BTreeMap<String, String> = d.claims.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
        for (k, v) in &s.claims {
            if ["iat", "exp", "nbf"].contains(&k.as_str()) || (d.jti && k == "jti") {
                return Err(EngineError::InvalidSpec {
                    field: format!("{field}.claims.{k}"),
                    reason: "this claim is set by the operator for each request".into(),
                });
            }
            claims.insert(k.clone(), v.clone());
        }
        Ok(Plan {
            var,
            field: field.into(),
            secret: String::new(),
            private_key_key: s.private_key_key.clone().unwrap_or_else(|| "private_key".into()),
            certificate_key: s.certificate_key.clone(),
            algorithm: s.algorithm,
            key_id: s.key_id.as_ref().map(|k| Tmpl::new(format!("{field}.keyId"), k)),
            claims: claims
                .into_iter()
                .filter(|(_, v)| !v.is_empty())
                .map(|(k, v)| {
                    let t = Tmpl::new(format!("{field}.claims.{k}"), v);
                    (k, t)
                })
                .collect(),
            iss_from_key_file: d.iss_from_key_file && !s.claims.contains_key("iss"),
            lifetime_secs,
            backdate_secs: d.backdate_secs,
            not_before: d.not_before,
            jti: d.jti,
        })
    }

    pub fn templates(&self) -> impl Iterator<Item = &Tmpl> {
        self.key_id.iter().chain(self.claims.iter().map(|(_, t)| t))
    }
}

/// The kind of a private key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyKind {
    Rsa,
    P256,
    P384,
    Ed25519,
}

impl fmt::Display for KeyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KeyKind::Rsa => "an RSA key",
            KeyKind::P256 => "an EC P-256 key",
            KeyKind::P384 => "an EC P-384 key",
            KeyKind::Ed25519 => "an Ed25519 key",
        })
    }
}

/// A parsed private key. `Debug` shows its kind only.
pub struct SigningKey {
    pub kind: KeyKind,
    encoding: EncodingKey,
    /// The public key as a certificate's SubjectPublicKeyInfo carries it.
    public: Vec<u8>,
    /// From a JSON key file: `client_email` and `private_key_id`.
    pub client_email: Option<String>,
    pub private_key_id: Option<String>,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SigningKey({:?})", self.kind)
    }
}

impl SigningKey {
    /// Parses PEM (PKCS#8, PKCS#1, SEC1) or a JSON key file with a `private_key` field. The
    /// error is the reason only (the caller says which Secret and key).
    pub fn load(text: &str) -> std::result::Result<SigningKey, String> {
        let trimmed = text.trim();
        if trimmed.starts_with('{') {
            let v: Value =
                serde_json::from_str(trimmed).map_err(|_| "is neither PEM nor a valid JSON key file".to_string())?;
            let pem = v
                .get("private_key")
                .and_then(Value::as_str)
                .ok_or_else(|| "is a JSON document without a `private_key` field".to_string())?;
            let mut key = Self::from_pem(pem).map_err(|r| format!("has a `private_key` field that {r}"))?;
            let field = |name: &str| v.get(name).and_then(Value::as_str).map(str::to_string);
            key.client_email = field("client_email");
            key.private_key_id = field("private_key_id");
            return Ok(key);
        }
        Self::from_pem(trimmed)
    }

    fn from_pem(text: &str) -> std::result::Result<SigningKey, String> {
        if text.contains("ENCRYPTED PRIVATE KEY") {
            return Err("is an encrypted private key; store it unencrypted (e.g. `openssl pkcs8 -nocrypt`)".into());
        }
        let mut rd = text.as_bytes();
        let mut others = Vec::new();
        loop {
            match rustls_pki_types::pem::from_buf(&mut rd) {
                Ok(Some((kind, der))) => match kind {
                    SectionKind::RsaPrivateKey => return Self::rsa(RsaKeyPair::from_der(&der), der),
                    SectionKind::EcPrivateKey => return Self::sec1(&der),
                    SectionKind::PrivateKey => return Self::pkcs8(&der),
                    SectionKind::Certificate => others.push("a certificate"),
                    SectionKind::PublicKey => others.push("a public key"),
                    _ => others.push("another PEM block"),
                },
                Ok(None) => break,
                Err(_) => return Err("is not valid PEM".into()),
            }
        }
        match others.first() {
            Some(what) => Err(format!("holds {what}, not a private key")),
            None => Err("is not PEM (expected `-----BEGIN PRIVATE KEY-----`) nor a JSON key file".into()),
        }
    }

    fn rsa(
        pair: std::result::Result<RsaKeyPair, aws_lc_rs::error::KeyRejected>,
        pkcs1: Vec<u8>,
    ) -> std::result::Result<SigningKey, String> {
        let pair = pair.map_err(|e| format!("is not a usable RSA private key ({e})"))?;
        Ok(SigningKey {
            kind: KeyKind::Rsa,
            public: pair.public_key().as_ref().to_vec(),
            encoding: EncodingKey::from_rsa_der(&pkcs1),
            client_email: None,
            private_key_id: None,
        })
    }

    fn ec(pair: &EcdsaKeyPair, kind: KeyKind) -> std::result::Result<SigningKey, String> {
        let pkcs8 = pair
            .to_pkcs8v1()
            .map_err(|_| "cannot be re-encoded as PKCS#8".to_string())?;
        Ok(SigningKey {
            kind,
            public: pair.public_key().as_ref().to_vec(),
            encoding: EncodingKey::from_ec_der(pkcs8.as_ref()),
            client_email: None,
            private_key_id: None,
        })
    }

    fn sec1(der: &[u8]) -> std::result::Result<SigningKey, String> {
        if let Ok(p) = EcdsaKeyPair::from_private_key_der(&ECDSA_P256_SHA256_FIXED_SIGNING, der) {
            return Self::ec(&p, KeyKind::P256);
        }
        if let Ok(p) = EcdsaKeyPair::from_private_key_der(&ECDSA_P384_SHA384_FIXED_SIGNING, der) {
            return Self::ec(&p, KeyKind::P384);
        }
        Err("is not a usable EC private key (P-256 and P-384 are supported)".into())
    }

    fn pkcs8(der: &[u8]) -> std::result::Result<SigningKey, String> {
        if let Ok(pair) = RsaKeyPair::from_pkcs8(der) {
            // jsonwebtoken signs with the PKCS#1 key inside the PKCS#8 wrapper.
            let inner = pkcs8_inner(der).ok_or_else(|| "is a malformed PKCS#8 RSA key".to_string())?;
            return Self::rsa(Ok(pair), inner.to_vec());
        }
        if let Ok(p) = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der) {
            return Self::ec(&p, KeyKind::P256);
        }
        if let Ok(p) = EcdsaKeyPair::from_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, der) {
            return Self::ec(&p, KeyKind::P384);
        }
        if let Ok(p) = Ed25519KeyPair::from_pkcs8_maybe_unchecked(der) {
            return Ok(SigningKey {
                kind: KeyKind::Ed25519,
                public: p.public_key().as_ref().to_vec(),
                encoding: EncodingKey::from_ed_der(der),
                client_email: None,
                private_key_id: None,
            });
        }
        Err("is a PKCS#8 key of an unsupported type (RSA, EC P-256, EC P-384 and Ed25519 are supported)".into())
    }

    /// The algorithm to sign with: the one asked for if the key fits it, else the key's own.
    pub fn algorithm(&self, asked: Option<JwtAlgorithm>) -> std::result::Result<Algorithm, String> {
        use JwtAlgorithm as J;
        let Some(a) = asked else {
            return Ok(match self.kind {
                KeyKind::Rsa => Algorithm::RS256,
                KeyKind::P256 => Algorithm::ES256,
                KeyKind::P384 => Algorithm::ES384,
                KeyKind::Ed25519 => Algorithm::EdDSA,
            });
        };
        let (alg, needs) = match a {
            J::RS256 => (Algorithm::RS256, KeyKind::Rsa),
            J::RS384 => (Algorithm::RS384, KeyKind::Rsa),
            J::RS512 => (Algorithm::RS512, KeyKind::Rsa),
            J::PS256 => (Algorithm::PS256, KeyKind::Rsa),
            J::PS384 => (Algorithm::PS384, KeyKind::Rsa),
            J::PS512 => (Algorithm::PS512, KeyKind::Rsa),
            J::ES256 => (Algorithm::ES256, KeyKind::P256),
            J::ES384 => (Algorithm::ES384, KeyKind::P384),
            J::EdDSA => (Algorithm::EdDSA, KeyKind::Ed25519),
        };
        if needs != self.kind {
            return Err(format!("is {}, but algorithm {a:?} needs {needs}", self.kind));
        }
        Ok(alg)
    }
}

/// A certificate's thumbprints for the `x5t` and `x5t#S256` headers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Thumbprints {
    pub sha1: String,
    pub sha256: String,
}

/// Reads the first certificate of `text` and checks that `key` belongs to it.
pub fn thumbprints(text: &str, key: &SigningKey) -> std::result::Result<Thumbprints, String> {
    let mut rd = text.as_bytes();
    let der = loop {
        match rustls_pki_types::pem::from_buf(&mut rd) {
            Ok(Some((SectionKind::Certificate, der))) => break der,
            Ok(Some(_)) => continue,
            Ok(None) => return Err("holds no PEM certificate (`-----BEGIN CERTIFICATE-----`)".into()),
            Err(_) => return Err("is not valid PEM".into()),
        }
    };
    match spki_public_key(&der) {
        Some(public) if public == key.public.as_slice() => {}
        Some(_) => return Err("holds a certificate that the private key does not belong to".into()),
        None => return Err("holds a certificate that cannot be parsed".into()),
    }
    let sha1 = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, &der);
    Ok(Thumbprints {
        sha1: URL_SAFE_NO_PAD.encode(sha1.as_ref()),
        sha256: URL_SAFE_NO_PAD.encode(Sha256::digest(&der)),
    })
}

/// One DER element: (tag, content, rest).
fn tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (first as usize, rest)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n].iter().fold(0usize, |acc, b| (acc << 8) | *b as usize);
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

/// The `privateKey` OCTET STRING of a PKCS#8 `PrivateKeyInfo`.
fn pkcs8_inner(der: &[u8]) -> Option<&[u8]> {
    let (_, info, _) = tlv(der)?;
    let (_, _, rest) = tlv(info)?; // version
    let (_, _, rest) = tlv(rest)?; // algorithm
    let (tag, key, _) = tlv(rest)?;
    (tag == 0x04).then_some(key)
}

/// The subject public key (the BIT STRING's bytes) of an X.509 certificate.
fn spki_public_key(cert: &[u8]) -> Option<&[u8]> {
    let (_, c, _) = tlv(cert)?;
    let (_, tbs, _) = tlv(c)?;
    let mut rest = tbs;
    let (tag, _, r) = tlv(rest)?;
    if tag == 0xa0 {
        rest = r; // explicit version
    }
    // serial, signature, issuer, validity, subject
    for _ in 0..5 {
        rest = tlv(rest)?.2;
    }
    let (_, spki, _) = tlv(rest)?;
    let (_, _, r) = tlv(spki)?; // algorithm
    let (tag, bits, _) = tlv(r)?;
    (tag == 0x03 && bits.first() == Some(&0)).then(|| &bits[1..])
}

/// Signs `claims` (plus `iat`, `exp`, and `nbf`/`jti` when asked) as a compact JWS.
#[allow(clippy::too_many_arguments)]
pub fn sign(
    key: &SigningKey,
    alg: Algorithm,
    kid: Option<String>,
    thumbprints: Option<&Thumbprints>,
    mut claims: Map<String, Value>,
    now: Timestamp,
    plan: &Plan,
    jti: &str,
) -> std::result::Result<String, String> {
    let iat = now.as_second() - plan.backdate_secs;
    claims.insert("iat".into(), iat.into());
    claims.insert("exp".into(), (now.as_second() + plan.lifetime_secs).into());
    if plan.not_before {
        claims.insert("nbf".into(), iat.into());
    }
    if plan.jti {
        claims.insert("jti".into(), jti.into());
    }
    let mut header = Header::new(alg);
    header.kid = kid;
    if let Some(t) = thumbprints {
        header.x5t = Some(t.sha1.clone());
        header.x5t_s256 = Some(t.sha256.clone());
    }
    jsonwebtoken::encode(&header, &claims, &key.encoding).map_err(|e| format!("could not sign: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn der_reader_finds_the_pkcs8_inner_key() {
        // SEQUENCE { INTEGER 0, SEQUENCE { NULL }, OCTET STRING 'ab' }
        let der = [0x30, 0x0a, 0x02, 0x01, 0x00, 0x30, 0x02, 0x05, 0x00, 0x04, 0x01, 0xab];
        assert_eq!(pkcs8_inner(&der), Some(&[0xab][..]));
        assert_eq!(pkcs8_inner(&der[..der.len() - 1]), None, "truncated");
    }

    #[test]
    fn not_a_key_is_named_for_what_it_is() {
        let e = SigningKey::load("hello").unwrap_err();
        assert!(e.starts_with("is not PEM"), "{e}");
        let e = SigningKey::load(r#"{"type": "service_account"}"#).unwrap_err();
        assert_eq!(e, "is a JSON document without a `private_key` field");
        let e = SigningKey::load("-----BEGIN ENCRYPTED PRIVATE KEY-----\nAA==\n-----END ENCRYPTED PRIVATE KEY-----\n")
            .unwrap_err();
        assert!(e.starts_with("is an encrypted private key"), "{e}");
    }
}
