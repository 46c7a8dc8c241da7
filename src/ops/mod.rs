//! Operating a cluster's ConnectorAuths from the command line (`status`, `renew`, `check`),
//! also as the kubectl plugin `kubectl connectorauth`. These commands read what the operator
//! published and ask it to act through the resource's `connectorauth.dev/renew` annotation;
//! they never write Secrets or status, so the one-writer rule holds.

pub mod check;
pub mod renew;
pub mod status;

use std::collections::BTreeMap;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;

/// One ConnectorAuth, by namespace and name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub namespace: String,
    pub name: String,
}

impl Target {
    /// `NS/NAME`, or `NAME` in `namespace` (`-n`), else in the kubeconfig's namespace.
    pub fn parse(arg: &str, namespace: Option<&str>, default_namespace: &str) -> anyhow::Result<Target> {
        let (ns, name) = match arg.split_once('/') {
            Some((ns, name)) => {
                if let Some(n) = namespace.filter(|n| *n != ns) {
                    anyhow::bail!("`{arg}` names namespace {ns} but -n says {n}");
                }
                (ns, name)
            }
            None => (namespace.unwrap_or(default_namespace), arg),
        };
        if ns.is_empty() || name.is_empty() || name.contains('/') {
            anyhow::bail!("`{arg}` is not NAME or NAMESPACE/NAME");
        }
        Ok(Target {
            namespace: ns.to_string(),
            name: name.to_string(),
        })
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// Reads a Secret's values as text; `None` when it does not exist.
pub async fn secret_text(
    client: &kube::Client,
    namespace: &str,
    name: &str,
) -> Result<Option<BTreeMap<String, String>>, kube::Error> {
    let secret = Api::<Secret>::namespaced(client.clone(), namespace)
        .get_opt(name)
        .await?;
    Ok(secret.map(|s| {
        crate::controller::source::secret_bytes(s)
            .into_iter()
            .map(|(k, v)| (k, String::from_utf8_lossy(&v).into_owned()))
            .collect()
    }))
}

/// Output Secret data for humans: metadata in clear, secret values as lengths only.
pub fn redacted(data: &BTreeMap<String, String>) -> Vec<String> {
    data.iter()
        .map(|(k, v)| match k.as_str() {
            "token_type" | "expires_at" | "header_name" => format!("{k}: {v}"),
            "headers.json" => {
                let names: Vec<String> = serde_json::from_str::<BTreeMap<String, String>>(v)
                    .map(|m| m.into_keys().collect())
                    .unwrap_or_default();
                format!("{k}: {{{}}} (values redacted)", names.join(", "))
            }
            _ => format!("{k}: <redacted, {} bytes>", v.len()),
        })
        .collect()
}

/// `2026-11-22T14:55:13Z (in 6s)`, for a time in status.
pub fn when(t: &str, now: Timestamp) -> String {
    let Ok(at) = t.parse::<Timestamp>() else {
        return t.to_string();
    };
    let secs = at.duration_since(now).as_secs_f64().round() as i64;
    let rel = match secs {
        s if s <= -7200 => format!("{}h ago", -s / 3600),
        s if s <= -120 => format!("{}m ago", -s / 60),
        s if s < 0 => format!("{}s ago", -s),
        s if s < 120 => format!("in {s}s"),
        s if s < 7200 => format!("in {}m", s / 60),
        s => format!("in {}h", s / 3600),
    };
    format!("{t} ({rel})")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_target_is_ns_slash_name_or_a_name_in_the_chosen_namespace() {
        let t = |a, n| Target::parse(a, n, "default").map(|t| t.to_string());
        assert_eq!(t("team/crm", None).unwrap(), "team/crm");
        assert_eq!(t("crm", Some("team")).unwrap(), "team/crm");
        assert_eq!(t("crm", None).unwrap(), "default/crm");
        assert_eq!(t("team/crm", Some("team")).unwrap(), "team/crm");
        assert!(
            t("team/crm", Some("other"))
                .unwrap_err()
                .to_string()
                .contains("-n says other")
        );
        assert!(t("a/b/c", None).is_err());
        assert!(t("/crm", None).is_err());
    }

    #[test]
    fn secret_values_are_shown_as_lengths_and_header_names_only() {
        let data: BTreeMap<String, String> = [
            ("access_token", "s3cr3t"),
            ("headers.json", r#"{"Authorization":"Bearer s3cr3t"}"#),
            ("token_type", "Bearer"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let lines = redacted(&data).join("\n");
        assert!(!lines.contains("s3cr3t"), "{lines}");
        assert!(lines.contains("access_token: <redacted, 6 bytes>"));
        assert!(lines.contains("headers.json: {Authorization} (values redacted)"));
        assert!(lines.contains("token_type: Bearer"));
    }
}
