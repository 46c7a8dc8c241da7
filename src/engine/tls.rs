//! Per-resource settings of the token HTTP client (`spec.tls`, `spec.allowRedirects`): which
//! Secrets and ConfigMaps
//! hold the TLS material, checking that material, and saying in plain words why a handshake
//! failed. Adapters fetch the objects named by [`references`]; everything else happens here,
//! without Kubernetes types. Error messages name fields, objects and keys, never their values.

use std::collections::BTreeMap;
use std::fmt;

use base64::Engine as _;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};

use crate::api::{CaBundleKind, ConnectorAuthSpec, TlsConfig};
use engine_core::error::{EngineError, Result};

pub const CA_FIELD: &str = "spec.tls.caBundleRef";
pub const CLIENT_CERT_FIELD: &str = "spec.tls.clientCertificateRef";
pub const DEFAULT_CA_KEY: &str = "ca.crt";
pub const DEFAULT_CERT_KEY: &str = "tls.crt";
pub const DEFAULT_KEY_KEY: &str = "tls.key";

/// What `spec.tls.insecureSkipVerify` means, for the `InsecureTLS` condition and warnings.
pub const INSECURE_SKIP_VERIFY_WARNING: &str = "spec.tls.insecureSkipVerify is true: the token endpoint's certificate \
     is not verified, so credentials and tokens may be exchanged with an impostor; set spec.tls.caBundleRef for a \
     private CA instead";

/// The kind of object TLS material is read from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Secret,
    ConfigMap,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Secret => "Secret",
            Kind::ConfigMap => "ConfigMap",
        })
    }
}

/// An object, in the resource's own namespace, that `spec.tls` reads.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKey {
    pub kind: Kind,
    pub name: String,
}

/// What the adapter found for each [`ObjectKey`]: the object's data (ConfigMap `data` and
/// `binaryData` merged), or `None` if the object does not exist.
pub type Fetched = BTreeMap<ObjectKey, Option<BTreeMap<String, Vec<u8>>>>;

/// PEM text and where it came from. `Debug` shows the origin and size only.
#[derive(Clone, PartialEq, Eq)]
pub struct Pem {
    /// For messages, e.g. `key ca.crt of ConfigMap corp-ca`.
    pub origin: String,
    pub bytes: Vec<u8>,
}

impl fmt::Debug for Pem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pem({}, {} bytes)", self.origin, self.bytes.len())
    }
}

/// A client certificate (with intermediates) and its private key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientIdentity {
    /// The Secret both come from, for messages.
    pub secret: String,
    pub certificate: Pem,
    pub private_key: Pem,
}

/// How one resource's token requests are sent. The default (system CAs, no client
/// certificate, verification on, no redirects) is served by the one shared client.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClientOptions {
    /// CA certificates trusted instead of the system's.
    pub ca_bundle: Option<Pem>,
    pub client_certificate: Option<ClientIdentity>,
    pub insecure_skip_verify: bool,
    pub allow_redirects: bool,
}

impl ClientOptions {
    pub fn is_default(&self) -> bool {
        self == &ClientOptions::default()
    }

    /// Identifies the options (material included) without revealing it: the client cache key,
    /// and part of the fingerprint that tells whether a failed attempt's inputs changed.
    pub fn digest(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        let mut put = |b: &[u8]| {
            h.update((b.len() as u64).to_le_bytes());
            h.update(b);
        };
        put(&[u8::from(self.insecure_skip_verify), u8::from(self.allow_redirects)]);
        match &self.ca_bundle {
            Some(p) => put(&p.bytes),
            None => put(b"-"),
        }
        match &self.client_certificate {
            Some(id) => {
                put(&id.certificate.bytes);
                put(&id.private_key.bytes);
            }
            None => put(b"-"),
        }
        h.finalize().into()
    }
}

fn ca_source(tls: &TlsConfig) -> Option<(ObjectKey, String)> {
    let r = tls.ca_bundle_ref.as_ref()?;
    let kind = match r.kind {
        CaBundleKind::Secret => Kind::Secret,
        CaBundleKind::ConfigMap => Kind::ConfigMap,
    };
    let key = r.key.clone().unwrap_or_else(|| DEFAULT_CA_KEY.into());
    Some((
        ObjectKey {
            kind,
            name: r.name.clone(),
        },
        key,
    ))
}

/// The objects `spec.tls` needs, to be read from the resource's namespace.
pub fn references(spec: &ConnectorAuthSpec) -> Vec<ObjectKey> {
    let Some(tls) = &spec.tls else { return vec![] };
    let mut out = Vec::new();
    if let Some((obj, _)) = ca_source(tls) {
        out.push(obj);
    }
    if let Some(c) = &tls.client_certificate_ref {
        out.push(ObjectKey {
            kind: Kind::Secret,
            name: c.name.clone(),
        });
    }
    out.sort();
    out.dedup();
    out
}

/// Whether `spec.tls` reads the object `kind`/`name` (for mapping watch events).
pub fn references_object(spec: &ConnectorAuthSpec, kind: Kind, name: &str) -> bool {
    references(spec).iter().any(|o| o.kind == kind && o.name == name)
}

fn lookup(fetched: &Fetched, field: &str, obj: &ObjectKey, key: &str) -> Result<Pem> {
    let missing = |reason: String| EngineError::MissingReference {
        field: field.into(),
        reason,
    };
    let data = fetched.get(obj).and_then(|d| d.as_ref()).ok_or_else(|| {
        missing(format!(
            "{} {} not found in the resource's namespace (key `{key}` is read from it)",
            obj.kind, obj.name
        ))
    })?;
    let origin = format!("key {key} of {} {}", obj.kind, obj.name);
    match data.get(key) {
        Some(bytes) if bytes.iter().all(u8::is_ascii_whitespace) => Err(EngineError::TlsMaterial {
            field: field.into(),
            reason: format!("{origin} is empty"),
        }),
        Some(bytes) => Ok(Pem {
            origin,
            bytes: bytes.clone(),
        }),
        None => {
            let keys: Vec<&str> = data.keys().map(String::as_str).collect();
            let has = if keys.is_empty() {
                "it has no keys".to_string()
            } else {
                format!("it has: {}", keys.join(", "))
            };
            Err(missing(format!("{} {} has no key `{key}` ({has})", obj.kind, obj.name)))
        }
    }
}

/// The options for `spec`, from the fetched objects. Missing objects and keys are
/// [`EngineError::MissingReference`]; the PEM itself is checked when a client is built.
pub fn resolve(spec: &ConnectorAuthSpec, fetched: &Fetched) -> Result<ClientOptions> {
    let mut opts = ClientOptions {
        allow_redirects: spec.allow_redirects,
        ..ClientOptions::default()
    };
    let Some(tls) = &spec.tls else {
        return Ok(opts);
    };
    if let Some((obj, key)) = ca_source(tls) {
        opts.ca_bundle = Some(lookup(fetched, CA_FIELD, &obj, &key)?);
    }
    if let Some(c) = &tls.client_certificate_ref {
        let obj = ObjectKey {
            kind: Kind::Secret,
            name: c.name.clone(),
        };
        let cert_key = c.certificate_key.as_deref().unwrap_or(DEFAULT_CERT_KEY);
        let key_key = c.private_key_key.as_deref().unwrap_or(DEFAULT_KEY_KEY);
        opts.client_certificate = Some(ClientIdentity {
            secret: c.name.clone(),
            certificate: lookup(fetched, CLIENT_CERT_FIELD, &obj, cert_key)?,
            private_key: lookup(fetched, CLIENT_CERT_FIELD, &obj, key_key)?,
        });
    }
    opts.insecure_skip_verify = tls.insecure_skip_verify;
    Ok(opts)
}

fn certificates(field: &str, pem: &Pem) -> Result<Vec<CertificateDer<'static>>> {
    let invalid = |reason: String| EngineError::TlsMaterial {
        field: field.into(),
        reason,
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem.bytes)
        .collect::<std::result::Result<_, _>>()
        .map_err(|_| invalid(format!("{} is not valid PEM", pem.origin)))?;
    if certs.is_empty() {
        return Err(invalid(format!(
            "no certificate in {} (expected PEM blocks `-----BEGIN CERTIFICATE-----`)",
            pem.origin
        )));
    }
    Ok(certs)
}

/// The CA certificates of a bundle, each checked to be a usable trust anchor.
pub fn ca_certificates(pem: &Pem) -> Result<Vec<reqwest::Certificate>> {
    let certs = certificates(CA_FIELD, pem)?;
    let mut store = rustls::RootCertStore::empty();
    let (_, bad) = store.add_parsable_certificates(certs.iter().cloned());
    if bad > 0 {
        return Err(EngineError::TlsMaterial {
            field: CA_FIELD.into(),
            reason: format!(
                "{bad} of the {} certificates in {} cannot be parsed",
                certs.len(),
                pem.origin
            ),
        });
    }
    certs
        .iter()
        .map(|c| {
            reqwest::Certificate::from_der(c).map_err(|_| EngineError::TlsMaterial {
                field: CA_FIELD.into(),
                reason: format!("a certificate in {} cannot be used", pem.origin),
            })
        })
        .collect()
}

/// The client identity as reqwest takes it: certificates and key re-encoded as clean PEM (so
/// extra blocks such as `EC PARAMETERS` in the key file do not get in the way).
pub fn identity(id: &ClientIdentity) -> Result<reqwest::Identity> {
    let certs = certificates(CLIENT_CERT_FIELD, &id.certificate)?;
    let key = PrivateKeyDer::from_pem_slice(&id.private_key.bytes).map_err(|_| EngineError::TlsMaterial {
        field: CLIENT_CERT_FIELD.into(),
        reason: format!(
            "no private key in {} (expected PEM `PRIVATE KEY`, `RSA PRIVATE KEY` or `EC PRIVATE KEY`)",
            id.private_key.origin
        ),
    })?;
    let mut pem = String::new();
    for c in &certs {
        pem_block(&mut pem, "CERTIFICATE", c.as_ref());
    }
    let label = match &key {
        PrivateKeyDer::Pkcs1(_) => "RSA PRIVATE KEY",
        PrivateKeyDer::Sec1(_) => "EC PRIVATE KEY",
        _ => "PRIVATE KEY",
    };
    pem_block(&mut pem, label, key.secret_der());
    reqwest::Identity::from_pem(pem.as_bytes()).map_err(|_| EngineError::TlsMaterial {
        field: CLIENT_CERT_FIELD.into(),
        reason: format!("the certificate and private key of Secret {} cannot be used", id.secret),
    })
}

fn pem_block(out: &mut String, label: &str, der: &[u8]) {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    out.push_str(&format!("-----BEGIN {label}-----\n"));
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
}

/// Why building a client from valid-looking material failed (for example a private key that
/// does not belong to the certificate).
pub fn build_error(opts: &ClientOptions, e: &reqwest::Error) -> EngineError {
    let rustls_error = find_rustls_error(e);
    match (&opts.client_certificate, rustls_error) {
        (Some(id), Some(rustls::Error::InconsistentKeys(_))) => EngineError::TlsMaterial {
            field: CLIENT_CERT_FIELD.into(),
            reason: format!(
                "the private key in {} does not belong to the certificate in {}",
                id.private_key.origin, id.certificate.origin
            ),
        },
        (Some(id), Some(r)) => EngineError::TlsMaterial {
            field: CLIENT_CERT_FIELD.into(),
            reason: format!(
                "the certificate and private key of Secret {} cannot be used: {r}",
                id.secret
            ),
        },
        _ => EngineError::TlsMaterial {
            field: "spec.tls".into(),
            reason: "the TLS settings cannot be used to build an HTTP client".into(),
        },
    }
}

/// The rustls error somewhere in `e`'s source chain (also inside `io::Error`s, whose
/// `source()` skips the error they wrap).
pub fn find_rustls_error<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    find_in_chain::<rustls::Error>(e)
}

/// The first error of type `T` in `e`'s source chain, looking inside `io::Error`s too.
pub fn find_in_chain<'a, T: std::error::Error + 'static>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a T> {
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = next {
        if let Some(t) = s.downcast_ref::<T>() {
            return Some(t);
        }
        if let Some(inner) = s.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref())
            && let Some(t) = find_in_chain::<T>(inner)
        {
            return Some(t);
        }
        next = s.source();
    }
    None
}

/// What a failed handshake means, in words a person can act on.
pub fn describe_tls_failure(e: &rustls::Error, opts: &ClientOptions) -> String {
    use rustls::{AlertDescription as A, CertificateError as C, Error as E};
    let has_cert = opts.client_certificate.is_some();
    let trust = if opts.ca_bundle.is_some() {
        "the CA bundle of spec.tls.caBundleRef"
    } else {
        "the system's trusted CAs (set spec.tls.caBundleRef for a private CA)"
    };
    match e {
        E::InvalidCertificate(c) => match c {
            C::UnknownIssuer => format!("the server's certificate is not trusted: it is not issued by {trust}"),
            C::BadSignature => {
                format!("the server's certificate is not trusted: its signature does not verify against {trust}")
            }
            C::NotValidForName => "the server's certificate is not valid for this host name".into(),
            C::NotValidForNameContext { expected, presented } => format!(
                "the server's certificate is not valid for {} (it is for {})",
                expected.to_str(),
                if presented.is_empty() {
                    "no names".to_string()
                } else {
                    presented.join(", ")
                }
            ),
            C::Expired | C::ExpiredContext { .. } => "the server's certificate has expired".into(),
            C::NotValidYet | C::NotValidYetContext { .. } => "the server's certificate is not valid yet".into(),
            C::Revoked => "the server's certificate is revoked".into(),
            C::InvalidPurpose | C::InvalidPurposeContext { .. } => {
                "the server's certificate is not meant for TLS servers".into()
            }
            other => format!("the server's certificate was rejected: {other}"),
        },
        E::AlertReceived(A::CertificateRequired) if !has_cert => {
            "the server requires a client certificate (set spec.tls.clientCertificateRef)".into()
        }
        E::AlertReceived(A::HandshakeFailure) if !has_cert => {
            "the server refused the handshake; it may require a client certificate (spec.tls.clientCertificateRef)"
                .into()
        }
        E::AlertReceived(
            a @ (A::CertificateRequired
            | A::BadCertificate
            | A::UnknownCA
            | A::CertificateUnknown
            | A::UnsupportedCertificate
            | A::CertificateRevoked
            | A::CertificateExpired
            | A::AccessDenied
            | A::HandshakeFailure),
        ) => format!("the server rejected the client certificate of spec.tls.clientCertificateRef (alert {a:?})"),
        E::AlertReceived(a) => format!("the server aborted the handshake (alert {a:?})"),
        E::InvalidMessage(_) => "the server does not speak TLS here (is it an http:// endpoint?)".into(),
        other => format!("{other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> ConnectorAuthSpec {
        serde_json::from_value(serde_json::json!({
            "credentialsRef": {"name": "c"},
            "apiKey": {},
            "allowRedirects": true,
            "tls": {
                "caBundleRef": {"kind": "ConfigMap", "name": "corp-ca"},
                "clientCertificateRef": {"name": "client-tls"},
            },
        }))
        .unwrap()
    }

    fn plain() -> ConnectorAuthSpec {
        serde_json::from_value(serde_json::json!({"credentialsRef": {"name": "c"}, "apiKey": {}})).unwrap()
    }

    fn key(kind: Kind, name: &str) -> ObjectKey {
        ObjectKey {
            kind,
            name: name.into(),
        }
    }

    #[test]
    fn references_name_each_object_once() {
        assert_eq!(references(&plain()), vec![]);
        assert_eq!(
            references(&spec()),
            vec![key(Kind::Secret, "client-tls"), key(Kind::ConfigMap, "corp-ca")]
        );
    }

    #[test]
    fn resolve_uses_default_keys_and_names_what_is_missing() {
        let s = spec();
        let mut fetched = Fetched::new();
        fetched.insert(key(Kind::ConfigMap, "corp-ca"), None);
        fetched.insert(key(Kind::Secret, "client-tls"), None);
        let e = resolve(&s, &fetched).unwrap_err();
        assert_eq!(e.reason(), "ReferenceNotFound");
        assert_eq!(
            e.to_string(),
            "spec.tls.caBundleRef: ConfigMap corp-ca not found in the resource's namespace (key `ca.crt` is read from it)"
        );

        fetched.insert(
            key(Kind::ConfigMap, "corp-ca"),
            Some([("bundle.pem".to_string(), b"x".to_vec())].into()),
        );
        let e = resolve(&s, &fetched).unwrap_err();
        assert_eq!(
            e.to_string(),
            "spec.tls.caBundleRef: ConfigMap corp-ca has no key `ca.crt` (it has: bundle.pem)"
        );

        fetched.insert(
            key(Kind::ConfigMap, "corp-ca"),
            Some([("ca.crt".to_string(), b"CA".to_vec())].into()),
        );
        fetched.insert(
            key(Kind::Secret, "client-tls"),
            Some([("tls.crt".to_string(), b"CERT".to_vec())].into()),
        );
        let e = resolve(&s, &fetched).unwrap_err();
        assert_eq!(
            e.to_string(),
            "spec.tls.clientCertificateRef: Secret client-tls has no key `tls.key` (it has: tls.crt)"
        );

        fetched.insert(
            key(Kind::Secret, "client-tls"),
            Some(
                [
                    ("tls.crt".to_string(), b"CERT".to_vec()),
                    ("tls.key".to_string(), b"KEY-BYTES".to_vec()),
                ]
                .into(),
            ),
        );
        let o = resolve(&s, &fetched).unwrap();
        assert_eq!(o.ca_bundle.as_ref().unwrap().origin, "key ca.crt of ConfigMap corp-ca");
        assert!(o.allow_redirects && !o.insecure_skip_verify);
        assert!(!format!("{o:?}").contains("KEY-BYTES"), "Debug shows no material");
        assert!(!o.is_default());
        assert!(resolve(&plain(), &Fetched::new()).unwrap().is_default());
    }

    #[test]
    fn digest_changes_with_material_and_flags() {
        let a = ClientOptions::default();
        let mut b = a.clone();
        b.allow_redirects = true;
        let mut c = a.clone();
        c.ca_bundle = Some(Pem {
            origin: "o".into(),
            bytes: b"1".to_vec(),
        });
        let mut d = c.clone();
        d.ca_bundle.as_mut().unwrap().bytes = b"2".to_vec();
        let all = [a.digest(), b.digest(), c.digest(), d.digest()];
        for (i, x) in all.iter().enumerate() {
            for y in &all[i + 1..] {
                assert_ne!(x, y);
            }
        }
    }

    #[test]
    fn bad_pem_is_invalid_tls_material_naming_field_and_source_but_not_the_bytes() {
        let pem = Pem {
            origin: "key ca.crt of Secret x".into(),
            bytes: b"hello SECRET-ish text".to_vec(),
        };
        let e = ca_certificates(&pem).unwrap_err();
        assert_eq!(e.reason(), "InvalidTLSMaterial");
        assert!(
            e.to_string()
                .starts_with("spec.tls.caBundleRef: no certificate in key ca.crt of Secret x"),
            "{e}"
        );
        assert!(!e.to_string().contains("SECRET-ish"));

        let id = ClientIdentity {
            secret: "client".into(),
            certificate: Pem {
                origin: "key tls.crt of Secret client".into(),
                bytes: b"-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n".to_vec(),
            },
            private_key: Pem {
                origin: "key tls.key of Secret client".into(),
                bytes: b"nope".to_vec(),
            },
        };
        let e = identity(&id).unwrap_err();
        assert!(e.to_string().contains("spec.tls.clientCertificateRef"), "{e}");
        assert!(e.to_string().contains("key tls.crt of Secret client"), "{e}");
    }
}
