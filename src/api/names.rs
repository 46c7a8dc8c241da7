//! Kubernetes object names, checked as the API server checks them. Local mode has no API
//! server, and it turns names into paths: a name that is not what the API server would accept
//! (`../..`, `/etc`, `a/b`) never reaches the file system.

/// A DNS-1123 label (namespaces): at most 63 lower case alphanumerics or `-`, starting and
/// ending with an alphanumeric.
pub fn is_dns1123_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// A DNS-1123 subdomain (Secret and ConnectorAuth names): at most 253 characters, labels of
/// lower case alphanumerics and `-` joined by `.`.
pub fn is_dns1123_subdomain(s: &str) -> bool {
    s.len() <= 253
        && s.split('.').all(|label| {
            let b = label.as_bytes();
            !b.is_empty()
                && b.iter()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
                && b[0] != b'-'
                && b[b.len() - 1] != b'-'
        })
}

/// `None` when `namespace` and `name` are valid; else what is wrong, naming the field.
pub fn check(namespace: &str, name: &str) -> Option<String> {
    if !is_dns1123_label(namespace) {
        return Some(format!(
            "metadata.namespace {namespace:?} is not a valid namespace: at most 63 lower case letters, digits or '-', starting and ending with a letter or digit"
        ));
    }
    if !is_dns1123_subdomain(name) {
        return Some(format!(
            "metadata.name {name:?} is not a valid name: at most 253 lower case letters, digits, '-' or '.', each part starting and ending with a letter or digit"
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_would_be_paths_are_refused() {
        for bad in [
            "", "..", ".", "../..", "/etc", "a/b", "A", "-a", "a-", "a..b", ".a", "a\0b", "a b",
        ] {
            assert!(!is_dns1123_subdomain(bad), "{bad:?}");
            assert!(!is_dns1123_label(bad), "{bad:?}");
        }
        assert!(is_dns1123_subdomain("docuware-token.v2"));
        assert!(!is_dns1123_label("docuware.v2"), "no dots in a namespace");
        assert!(is_dns1123_label("team-a"));
        assert!(!is_dns1123_label(&"a".repeat(64)));
        assert!(!is_dns1123_subdomain(&"a".repeat(254)));
        assert!(check("team-a", "crm").is_none());
        assert!(check("/tmp", "crm").unwrap().contains("metadata.namespace"));
        assert!(check("team-a", "../x").unwrap().contains("metadata.name"));
    }
}
