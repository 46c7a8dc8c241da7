//! DPoP (RFC 9449): proofs of possession of a key, one per request. The operator sends one
//! with each token request (so the provider binds the token to the key, `cnf.jkt`); the proxy
//! sends one with each API call (with `ath`, the access token's hash). Both read the same key.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::error::{EngineError, Result};
use crate::spec::JwtAlgorithm;

/// A DPoP key: an EC private key (P-256 for ES256, P-384 for ES384) and its public JWK.
pub struct DpopKey {
    pair: EcdsaKeyPair,
    alg: &'static str,
    jwk: Value,
}

impl std::fmt::Debug for DpopKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DpopKey({})", self.alg)
    }
}

impl DpopKey {
    /// The key of a PEM `PRIVATE KEY` (PKCS#8) or `EC PRIVATE KEY` (SEC1); `what` names it in
    /// errors (the Secret and key, never the content).
    pub fn from_pem(pem: &str, algorithm: JwtAlgorithm, what: &str) -> Result<Self> {
        let bad = |reason: &str| EngineError::InvalidKey {
            field: "spec.oauth2.dpop".into(),
            secret: what.into(),
            key: String::new(),
            reason: reason.into(),
        };
        let (signing, alg, crv, len) = match algorithm {
            JwtAlgorithm::ES256 => (&ECDSA_P256_SHA256_FIXED_SIGNING, "ES256", "P-256", 32),
            JwtAlgorithm::ES384 => (&ECDSA_P384_SHA384_FIXED_SIGNING, "ES384", "P-384", 48),
            _ => return Err(bad("is for ES256 or ES384: DPoP keys here are EC keys")),
        };
        use rustls_pki_types::pem::PemObject as _;
        let der = rustls_pki_types::PrivateKeyDer::from_pem_slice(pem.as_bytes())
            .map_err(|_| bad("is not a PEM private key"))?;
        let pair = match &der {
            rustls_pki_types::PrivateKeyDer::Pkcs8(k) => EcdsaKeyPair::from_pkcs8(signing, k.secret_pkcs8_der()),
            rustls_pki_types::PrivateKeyDer::Sec1(k) => {
                EcdsaKeyPair::from_private_key_der(signing, k.secret_sec1_der())
            }
            _ => return Err(bad("is not an EC private key")),
        }
        .map_err(|_| bad(&format!("is not a {crv} key")))?;
        let point = pair.public_key().as_ref().to_vec();
        let jwk = json!({
            "kty": "EC", "crv": crv,
            "x": URL_SAFE_NO_PAD.encode(&point[1..1 + len]),
            "y": URL_SAFE_NO_PAD.encode(&point[1 + len..1 + 2 * len]),
        });
        Ok(DpopKey { pair, alg, jwk })
    }

    /// The public key as a JWK.
    pub fn jwk(&self) -> &Value {
        &self.jwk
    }

    /// The JWK SHA-256 thumbprint (RFC 7638), the token's `cnf.jkt`.
    pub fn thumbprint(&self) -> String {
        jwk_thumbprint(&self.jwk)
    }

    /// A proof for one request: `htm`, `htu` (the URL without query and fragment), `iat`, a
    /// fresh `jti`, `ath` of the access token when there is one, and the server's nonce.
    pub fn proof(
        &self,
        method: &str,
        url: &url::Url,
        access_token: Option<&str>,
        nonce: Option<&str>,
        iat: i64,
    ) -> String {
        let mut htu = url.clone();
        htu.set_query(None);
        htu.set_fragment(None);
        let mut claims = json!({
            "jti": URL_SAFE_NO_PAD.encode(rand::random::<[u8; 16]>()),
            "htm": method,
            "htu": htu.as_str(),
            "iat": iat,
        });
        if let Some(t) = access_token {
            claims["ath"] = json!(URL_SAFE_NO_PAD.encode(Sha256::digest(t.as_bytes())));
        }
        if let Some(n) = nonce {
            claims["nonce"] = json!(n);
        }
        let header = json!({"typ": "dpop+jwt", "alg": self.alg, "jwk": self.jwk});
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature = self
            .pair
            .sign(&SystemRandom::new(), input.as_bytes())
            .map(|s| URL_SAFE_NO_PAD.encode(s.as_ref()))
            .unwrap_or_default();
        format!("{input}.{signature}")
    }
}

/// RFC 7638 thumbprint of an EC or RSA public JWK: SHA-256 of its required members, in
/// lexicographic order, without whitespace.
pub fn jwk_thumbprint(jwk: &Value) -> String {
    let canonical = match jwk["kty"].as_str() {
        Some("EC") => format!(
            r#"{{"crv":{},"kty":"EC","x":{},"y":{}}}"#,
            jwk["crv"], jwk["x"], jwk["y"]
        ),
        Some("RSA") => format!(r#"{{"e":{},"kty":"RSA","n":{}}}"#, jwk["e"], jwk["n"]),
        _ => String::new(),
    };
    URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> DpopKey {
        let pkcs8 = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING)
            .unwrap()
            .to_pkcs8v1()
            .unwrap();
        let pem = format!(
            "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
            base64::engine::general_purpose::STANDARD.encode(pkcs8.as_ref())
        );
        DpopKey::from_pem(&pem, JwtAlgorithm::ES256, "s/k").unwrap()
    }

    fn part(jwt: &str, i: usize) -> Value {
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(jwt.split('.').nth(i).unwrap()).unwrap()).unwrap()
    }

    #[test]
    fn a_proof_names_the_request_the_key_and_the_token() {
        let k = key();
        let url = url::Url::parse("https://api.example.com/v1/items?page=2#x").unwrap();
        let p = k.proof("GET", &url, Some("at-1"), Some("n-1"), 1_700_000_000);
        let (header, claims) = (part(&p, 0), part(&p, 1));
        assert_eq!(header["typ"], "dpop+jwt");
        assert_eq!(header["alg"], "ES256");
        assert_eq!(header["jwk"], *k.jwk());
        assert!(header["jwk"].get("d").is_none(), "never the private key");
        assert_eq!(claims["htm"], "GET");
        assert_eq!(claims["htu"], "https://api.example.com/v1/items");
        assert_eq!(claims["ath"], URL_SAFE_NO_PAD.encode(Sha256::digest(b"at-1")));
        assert_eq!(claims["nonce"], "n-1");
        let again = k.proof("GET", &url, Some("at-1"), Some("n-1"), 1_700_000_000);
        assert_ne!(part(&again, 1)["jti"], claims["jti"], "a fresh jti each time");
    }

    /// RFC 7638 §3.1's example key and thumbprint (RSA).
    #[test]
    fn the_thumbprint_is_rfc_7638s() {
        let jwk = json!({"kty": "RSA", "e": "AQAB", "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"});
        assert_eq!(jwk_thumbprint(&jwk), "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs");
    }
}
