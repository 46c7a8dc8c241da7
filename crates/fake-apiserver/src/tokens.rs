//! ServiceAccount tokens as kube-apiserver issues them: the TokenRequest subresource
//! (`POST /api/v1/namespaces/{ns}/serviceaccounts/{name}/token`) answers with a JWT signed by
//! the server's own key, bound to the audiences asked for, and the issuer's OpenID discovery
//! document (`/.well-known/openid-configuration`) and keys (`/openid/v1/jwks`) let anyone
//! verify it, as providers do with a cluster's issuer for workload identity federation.
//!
//! What kube-apiserver refuses is refused here too (pkg/registry/core/serviceaccount/storage/
//! token.go, pkg/apis/authentication/validation): an unknown ServiceAccount (404), a lifetime
//! under ten minutes or above 2^32 seconds (422), a body that is not a TokenRequest (400), a
//! bound object (422: this server binds tokens to nothing).

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

use crate::error::ApiError;

/// The shortest lifetime kube-apiserver issues (`spec.expirationSeconds`).
pub const MIN_EXPIRATION_SECONDS: i64 = 600;
/// The lifetime when a TokenRequest asks for none.
pub const DEFAULT_EXPIRATION_SECONDS: i64 = 3600;

/// The server's signing key and the issuer URL its tokens name.
pub(crate) struct Issuer {
    key: EcdsaKeyPair,
    kid: String,
    pub(crate) url: String,
}

impl Issuer {
    pub(crate) fn new(url: String) -> Self {
        let key = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).expect("an ECDSA P-256 key");
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, key.public_key().as_ref());
        let kid = URL_SAFE_NO_PAD.encode(&digest.as_ref()[..16]);
        Issuer { key, kid, url }
    }

    /// `/.well-known/openid-configuration`, as kube-apiserver serves it.
    pub(crate) fn discovery(&self) -> Value {
        json!({
            "issuer": self.url,
            "jwks_uri": format!("{}/openid/v1/jwks", self.url),
            "response_types_supported": ["id_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["ES256"],
        })
    }

    /// `/openid/v1/jwks`: the public key, as a JWK (RFC 7517/7518).
    pub(crate) fn jwks(&self) -> Value {
        // An uncompressed P-256 point: 0x04, then x and y, 32 bytes each.
        let point = self.key.public_key().as_ref();
        json!({"keys": [{
            "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": self.kid,
            "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
            "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
        }]})
    }

    /// Answers a TokenRequest for the ServiceAccount `sa` (as stored) with a signed token.
    pub(crate) fn token_request(&self, sa: &Value, body: &Value, now: i64) -> Result<Value, ApiError> {
        let name = sa["metadata"]["name"].as_str().unwrap_or_default();
        if body
            .get("kind")
            .and_then(Value::as_str)
            .is_some_and(|k| k != "TokenRequest")
        {
            return Err(ApiError::bad_request(
                "the body of a token request must be a TokenRequest",
            ));
        }
        let spec = body.get("spec").cloned().unwrap_or_else(|| json!({}));
        let expiration = match spec.get("expirationSeconds") {
            None | Some(Value::Null) => DEFAULT_EXPIRATION_SECONDS,
            Some(v) => v
                .as_i64()
                .ok_or_else(|| ApiError::bad_request("spec.expirationSeconds must be an integer"))?,
        };
        if expiration < MIN_EXPIRATION_SECONDS {
            return Err(invalid(
                name,
                &format!(
                    "spec.expirationSeconds: Invalid value: {expiration}: may not specify a duration less than 10 minutes"
                ),
            ));
        }
        if expiration > 1 << 32 {
            return Err(invalid(
                name,
                &format!(
                    "spec.expirationSeconds: Invalid value: {expiration}: may not specify a duration larger than 2^32 seconds"
                ),
            ));
        }
        if spec.get("boundObjectRef").is_some_and(|b| !b.is_null()) {
            return Err(invalid(
                name,
                "spec.boundObjectRef: Unsupported value: this test server binds tokens to no object",
            ));
        }
        let mut audiences: Vec<String> = spec
            .get("audiences")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect();
        if audiences.is_empty() {
            // The API server's own audience, as `--api-audiences` defaults to the issuer.
            audiences.push(self.url.clone());
        }
        let meta = &sa["metadata"];
        let (ns, uid) = (
            meta["namespace"].as_str().unwrap_or_default(),
            meta["uid"].as_str().unwrap_or_default(),
        );
        let exp = now + expiration;
        let claims = json!({
            "aud": audiences,
            "exp": exp,
            "iat": now,
            "nbf": now,
            "iss": self.url,
            "jti": uuid(),
            "sub": format!("system:serviceaccount:{ns}:{name}"),
            "kubernetes.io": {"namespace": ns, "serviceaccount": {"name": name, "uid": uid}},
        });
        let token = self.sign(&claims);
        let expires = jiff::Timestamp::from_second(exp)
            .map(|t| t.to_string())
            .unwrap_or_default();
        Ok(json!({
            "kind": "TokenRequest",
            "apiVersion": "authentication.k8s.io/v1",
            "metadata": {"name": name, "namespace": ns, "creationTimestamp": null},
            "spec": {"audiences": audiences, "expirationSeconds": expiration, "boundObjectRef": null},
            "status": {"token": token, "expirationTimestamp": expires},
        }))
    }

    fn sign(&self, claims: &Value) -> String {
        let header = json!({"alg": "ES256", "kid": self.kid, "typ": "JWT"});
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature = self
            .key
            .sign(&SystemRandom::new(), input.as_bytes())
            .expect("ECDSA signing");
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature.as_ref()))
    }
}

/// `422 Invalid` as `errors.NewInvalid` words it for a TokenRequest.
fn invalid(name: &str, error: &str) -> ApiError {
    ApiError::new(
        422,
        "Invalid",
        format!("TokenRequest.authentication.k8s.io \"{name}\" is invalid: {error}"),
    )
}

fn uuid() -> String {
    let b: [u8; 16] = rand::random();
    format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
        u16::from_be_bytes([b[4], b[5]]),
        u16::from_be_bytes([b[6], b[7]]) & 0x0fff | 0x4000,
        u16::from_be_bytes([b[8], b[9]]) & 0x3fff | 0x8000,
        u64::from_be_bytes([0, 0, b[10], b[11], b[12], b[13], b[14], b[15]])
    )
}
