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
        }
    }
}

/// The callback values the code exchange may use: `code` and the declared ones, checked.
/// Unknown parameters are dropped unread.
pub fn accept<'a>(
    flow: &Flow,
    query: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Result<BTreeMap<String, SecretString>, Refused> {
    let mut kept: BTreeMap<String, SecretString> = BTreeMap::new();
    for (name, value) in query {
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
        let kept = accept(&flow(&["realmId"], false), q).unwrap();
        assert_eq!(keys(&kept), ["code", "realmId"]);
        assert_eq!(kept["realmId"].expose(), "4620816365");
        let kept = accept(&flow(&[], false), q).unwrap();
        assert_eq!(keys(&kept), ["code"]);
    }

    #[test]
    fn values_are_bounded_and_free_of_control_characters() {
        let f = flow(&["realmId"], false);
        let long = "a".repeat(MAX_VALUE_BYTES + 1);
        assert_eq!(
            accept(&f, [("code", long.as_str())]),
            Err(Refused::TooLong { name: "code".into() })
        );
        assert_eq!(
            accept(&f, [("code", "c"), ("realmId", "1\r\nX-Injected: 1")]),
            Err(Refused::ControlCharacters { name: "realmId".into() })
        );
        assert_eq!(
            accept(&f, [("code", "c"), ("code", "d")]),
            Err(Refused::Ambiguous { name: "code".into() })
        );
        // A long unknown parameter is not even looked at.
        assert!(accept(&f, [("code", "c"), ("junk", long.as_str())]).is_ok());
    }

    #[test]
    fn a_code_is_required_unless_without_code() {
        assert_eq!(accept(&flow(&[], false), [("state", "s")]), Err(Refused::NoCode));
        assert_eq!(accept(&flow(&[], false), [("code", "")]), Err(Refused::NoCode));
        let kept = accept(&flow(&["install_id"], true), [("install_id", "i-1"), ("x", "y")]).unwrap();
        assert_eq!(keys(&kept), ["install_id"]);
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
