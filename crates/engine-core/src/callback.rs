//! What of a consent callback's query string the code exchange may see. The query comes from
//! a person's browser, so it is hostile until checked: only `code` and the parameters the
//! resource declares (`spec.oauth2.callbackValues`) are kept, each bounded and free of control
//! characters, and they live in their own template namespace (`{{ callback.<name> }}`, plus
//! `{{ code }}`), where they can never replace a credential or a provider parameter.

use std::collections::BTreeMap;

use crate::flow::Flow;
use crate::secret::SecretString;

/// Longest callback value kept. Authorization codes are short (Google's are ~100 bytes, JWT
/// codes a few hundred); anything longer is not a value a provider sends.
pub const MAX_VALUE_BYTES: usize = 4096;

/// Parameters that the callback itself reads and that are never values for templates.
const CONSUMED: &[&str] = &["state", "error", "error_description", "error_uri"];

/// Whether `name` may be declared as a callback value (the CRD checks the same).
pub fn is_value_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && name.len() <= 64
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        && !CONSUMED.contains(&name)
}

/// Why a callback's values were not accepted. Names the parameter, never its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// The provider sent no `code` and the resource does not say `withoutCode`.
    NoCode,
    /// A kept parameter is longer than [`MAX_VALUE_BYTES`].
    TooLong { name: String },
    /// A kept parameter holds control characters (CR, LF, NUL, …).
    ControlCharacters { name: String },
    /// A kept parameter came more than once with different values.
    Ambiguous { name: String },
    /// `oauth2.callbackHmac`: the signature parameter is missing, or does not match.
    BadSignature { name: String },
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refused::NoCode => f.write_str("the callback carried no `code`"),
            Refused::TooLong { name } => {
                write!(f, "callback parameter `{name}` is longer than {MAX_VALUE_BYTES} bytes")
            }
            Refused::ControlCharacters { name } => {
                write!(f, "callback parameter `{name}` contains control characters")
            }
            Refused::Ambiguous { name } => write!(f, "callback parameter `{name}` was given more than once"),
            Refused::BadSignature { name } => {
                write!(
                    f,
                    "the callback's signature `{name}` is missing or does not match its parameters"
                )
            }
        }
    }
}

/// The callback values the code exchange may use: `code` and the declared ones, checked.
/// Unknown parameters are dropped unread.
///
/// With `oauth2.callbackHmac`, `hmac_key` is its rendered key and the signature is checked
/// over the whole query first: nothing of a callback with a bad signature is used. The code
/// arrives under `oauth2.codeParameter` and is kept as `code`.
pub fn accept<'a>(
    flow: &Flow,
    query: impl IntoIterator<Item = (&'a str, &'a str)>,
    hmac_key: Option<&[u8]>,
) -> Result<BTreeMap<String, SecretString>, Refused> {
    let query: Vec<(&str, &str)> = query.into_iter().collect();
    if let Some((parameter, _)) = &flow.callback_hmac {
        let key = hmac_key.ok_or_else(|| Refused::BadSignature {
            name: parameter.clone(),
        })?;
        if !signature_matches(parameter, key, &query) {
            return Err(Refused::BadSignature {
                name: parameter.clone(),
            });
        }
    }
    let mut kept: BTreeMap<String, SecretString> = BTreeMap::new();
    for (name, value) in query {
        let name = if name == flow.code_parameter {
            "code"
        } else if name == "code" || name == "state" {
            continue;
        } else {
            name
        };
        let wanted = name == "code" || flow.callback_values.iter().any(|v| v == name);
        if !wanted {
            continue;
        }
        if value.len() > MAX_VALUE_BYTES {
            return Err(Refused::TooLong { name: name.into() });
        }
        if value.chars().any(char::is_control) {
            return Err(Refused::ControlCharacters { name: name.into() });
        }
        match kept.get(name) {
            Some(v) if v.expose() != value => return Err(Refused::Ambiguous { name: name.into() }),
            Some(_) => {}
            None => {
                kept.insert(name.into(), SecretString::new(value));
            }
        }
    }
    if !flow.without_code && kept.get("code").is_none_or(|c| c.is_empty()) {
        return Err(Refused::NoCode);
    }
    Ok(kept)
}

/// Shopify's callback signature: HMAC-SHA256 (hex) over the other parameters, sorted by name,
/// form-encoded and joined with `&`. Compared in constant time.
fn signature_matches(parameter: &str, key: &[u8], query: &[(&str, &str)]) -> bool {
    let mut given = query.iter().filter(|(n, _)| *n == parameter).map(|(_, v)| *v);
    let (Some(given), None) = (given.next(), given.next()) else {
        return false;
    };
    let Some(given) = unhex(given) else {
        return false;
    };
    let rest: Vec<(&str, &str)> = query.iter().copied().filter(|(n, _)| *n != parameter).collect();
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, key);
    aws_lc_rs::hmac::verify(&key, signed_message(&rest).as_bytes(), &given).is_ok()
}

/// The signature a provider would send, for tests and emulators.
pub fn sign(key: &[u8], query: &[(&str, &str)]) -> String {
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, key);
    crate::state::hex(aws_lc_rs::hmac::sign(&key, signed_message(query).as_bytes()).as_ref())
}

/// What is signed: the parameters sorted by name, form-encoded, joined with `&`.
fn signed_message(query: &[(&str, &str)]) -> String {
    let mut sorted = query.to_vec();
    sorted.sort();
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(sorted)
        .finish()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || s.len() > 128 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flow(values: &[&str], without_code: bool) -> Flow {
        let mut f = crate::flow::base_flow();
        f.callback_values = values.iter().map(|s| s.to_string()).collect();
        f.without_code = without_code;
        f
    }

    fn keys(m: &BTreeMap<String, SecretString>) -> Vec<&str> {
        m.keys().map(String::as_str).collect()
    }

    #[test]
    fn only_code_and_declared_values_are_kept() {
        let q = [
            ("code", "c-1"),
            ("state", "s"),
            ("base_url", "http://attacker.example"),
            ("client_secret", "x"),
            ("realmId", "4620816365"),
            ("shop", "attacker.example/x?"),
        ];
        let kept = accept(&flow(&["realmId"], false), q, None).unwrap();
        assert_eq!(keys(&kept), ["code", "realmId"]);
        assert_eq!(kept["realmId"].expose(), "4620816365");
        let kept = accept(&flow(&[], false), q, None).unwrap();
        assert_eq!(keys(&kept), ["code"]);
    }

    #[test]
    fn values_are_bounded_and_free_of_control_characters() {
        let f = flow(&["realmId"], false);
        let long = "a".repeat(MAX_VALUE_BYTES + 1);
        assert_eq!(
            accept(&f, [("code", long.as_str())], None),
            Err(Refused::TooLong { name: "code".into() })
        );
        assert_eq!(
            accept(&f, [("code", "c"), ("realmId", "1\r\nX-Injected: 1")], None),
            Err(Refused::ControlCharacters { name: "realmId".into() })
        );
        assert_eq!(
            accept(&f, [("code", "c"), ("code", "d")], None),
            Err(Refused::Ambiguous { name: "code".into() })
        );
        // A long unknown parameter is not even looked at.
        assert!(accept(&f, [("code", "c"), ("junk", long.as_str())], None).is_ok());
    }

    #[test]
    fn a_code_is_required_unless_without_code() {
        assert_eq!(accept(&flow(&[], false), [("state", "s")], None), Err(Refused::NoCode));
        assert_eq!(accept(&flow(&[], false), [("code", "")], None), Err(Refused::NoCode));
        let kept = accept(&flow(&["install_id"], true), [("install_id", "i-1"), ("x", "y")], None).unwrap();
        assert_eq!(keys(&kept), ["install_id"]);
    }

    #[test]
    fn the_code_may_arrive_under_another_name_and_then_only_there() {
        let mut f = flow(&["selling_partner_id"], false);
        f.code_parameter = "spapi_oauth_code".into();
        let q = [
            ("spapi_oauth_code", "c-1"),
            ("code", "c-evil"),
            ("selling_partner_id", "A1"),
        ];
        let kept = accept(&f, q, None).unwrap();
        assert_eq!(keys(&kept), ["code", "selling_partner_id"]);
        assert_eq!(kept["code"].expose(), "c-1");
        assert_eq!(accept(&f, [("code", "c-1")], None), Err(Refused::NoCode));
    }

    #[test]
    fn a_signed_callback_is_used_only_with_its_signature() {
        let mut f = flow(&["shop"], false);
        f.callback_hmac = Some(("hmac".into(), crate::template::Tmpl::new("k", "{{ client_secret }}")));
        let params = [
            ("code", "c-1"),
            ("shop", "acme.myshopify.com"),
            ("state", "s"),
            ("timestamp", "1700000000"),
        ];
        let sig = sign(b"the-secret", &params);
        let mut signed: Vec<(&str, &str)> = params.to_vec();
        signed.push(("hmac", &sig));
        let kept = accept(&f, signed.iter().copied(), Some(b"the-secret")).unwrap();
        assert_eq!(kept["shop"].expose(), "acme.myshopify.com");
        let bad = Err(Refused::BadSignature { name: "hmac".into() });
        // Another key, a changed parameter, no signature, two signatures: refused.
        assert_eq!(accept(&f, signed.iter().copied(), Some(b"other")), bad);
        let mut changed = signed.clone();
        changed[1] = ("shop", "attacker.myshopify.com");
        assert_eq!(accept(&f, changed.iter().copied(), Some(b"the-secret")), bad);
        assert_eq!(accept(&f, params.iter().copied(), Some(b"the-secret")), bad);
        let mut twice = signed.clone();
        twice.push(("hmac", &sig));
        assert_eq!(accept(&f, twice.iter().copied(), Some(b"the-secret")), bad);
        assert_eq!(accept(&f, signed.iter().copied(), None), bad);
    }

    /// The example of Shopify's "Verify a request" documentation: its secret, query and hmac.
    #[test]
    fn shopifys_documented_example_verifies() {
        let mut f = flow(&["shop"], false);
        f.callback_hmac = Some(("hmac".into(), crate::template::Tmpl::new("k", "{{ client_secret }}")));
        let q = [
            ("code", "0907a61c0c8d55e99db179b68161bc00"),
            (
                "hmac",
                "700e2dadb827fcc8609e9d5ce208b2e9cdaab9df07390d2cbca10d7c328fc4bf",
            ),
            ("shop", "some-shop.myshopify.com"),
            ("state", "0.6784241404160823"),
            ("timestamp", "1337178173"),
        ];
        assert!(accept(&f, q, Some(b"hush")).is_ok());
    }

    #[test]
    fn value_names() {
        for ok in ["realmId", "accounts-server", "selling_partner_id", "a.b"] {
            assert!(is_value_name(ok), "{ok}");
        }
        for bad in ["", "state", "error", "1abc", "a b", "a/b", &"a".repeat(65)] {
            assert!(!is_value_name(bad), "{bad}");
        }
    }
}
