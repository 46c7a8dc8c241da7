//! What the proxy serves: routes, each one upstream and one mounted credential folder, from a
//! YAML file (`--config`) or, for one route, from flags.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

/// The proxy's settings.
#[derive(Deserialize, Clone, Debug)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProxyConfig {
    /// Where workloads send their requests. Default `127.0.0.1:8080` (a sidecar's loopback).
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Prometheus metrics (`/metrics`) and health (`/healthz`), on a port of their own.
    #[serde(default)]
    pub metrics: Option<SocketAddr>,
    pub routes: Vec<RouteConfig>,
}

fn default_listen() -> SocketAddr {
    "127.0.0.1:8080".parse().expect("a valid address")
}

/// One route: requests whose path starts with `prefix` go to `upstream` (the prefix replaced
/// by the upstream's path), with the credential of the folder `credentials`.
#[derive(Deserialize, Clone, Debug)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RouteConfig {
    /// Path prefix, e.g. `/crm/`. Default `/`.
    #[serde(default = "root")]
    pub prefix: String,
    /// The one place requests of this route go, e.g. `https://api.crm.example.com/v2`.
    pub upstream: String,
    /// The mounted output Secret of the ConnectorAuth (`headers.json`, `expires_at`, …).
    pub credentials: PathBuf,
    /// Keep the workload's own `Authorization` header (dropped by default: it would shadow
    /// the credential, or leak something meant for elsewhere).
    #[serde(default)]
    pub pass_authorization: bool,
    /// On a 401 from upstream, ask the operator to renew this ConnectorAuth (at most once a
    /// minute) and send the request once more with the new credential.
    #[serde(default)]
    pub renew: Option<RenewTarget>,
    /// TLS towards the upstream: a CA bundle, and the client certificate of mTLS-bound tokens.
    #[serde(default)]
    pub tls: Option<UpstreamTls>,
    /// DPoP-bound tokens: the key (the file of the credentials Secret key the operator signs
    /// with) each request's proof is signed with.
    #[serde(default)]
    pub dpop: Option<DpopKeyFile>,
    /// Time limit of one upstream request, in seconds. Default 60.
    #[serde(default)]
    pub timeout_seconds: Option<u64>,
}

fn root() -> String {
    "/".into()
}

/// The ConnectorAuth the proxy asks to renew.
#[derive(Deserialize, Clone, Debug)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RenewTarget {
    pub namespace: String,
    pub name: String,
}

/// TLS towards the upstream.
#[derive(Deserialize, Clone, Debug, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpstreamTls {
    /// PEM CA certificates the upstream's certificate must chain to (instead of the system's).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate and key presented upstream (RFC 8705 certificate-bound tokens:
    /// the same the operator presented to the token endpoint).
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    #[serde(default)]
    pub key_file: Option<PathBuf>,
}

/// A DPoP key file and its algorithm.
#[derive(Deserialize, Clone, Debug)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DpopKeyFile {
    pub private_key_file: PathBuf,
    #[serde(default)]
    pub algorithm: Option<crate::engine::spec::JwtAlgorithm>,
}

impl ProxyConfig {
    /// Reads and checks a YAML file.
    pub fn from_yaml(text: &str) -> anyhow::Result<Self> {
        let c: ProxyConfig = serde_saphyr::from_str(text).map_err(|e| anyhow::anyhow!("proxy config: {e}"))?;
        c.check()?;
        Ok(c)
    }

    /// Routes must be unambiguous and point at http(s) URLs without query or fragment.
    pub fn check(&self) -> anyhow::Result<()> {
        anyhow::ensure!(!self.routes.is_empty(), "proxy config: no routes");
        for (i, r) in self.routes.iter().enumerate() {
            anyhow::ensure!(r.prefix.starts_with('/'), "routes[{i}].prefix must start with `/`");
            let u = url::Url::parse(&r.upstream).map_err(|e| anyhow::anyhow!("routes[{i}].upstream: {e}"))?;
            anyhow::ensure!(
                matches!(u.scheme(), "http" | "https") && u.host().is_some(),
                "routes[{i}].upstream must be an http or https URL"
            );
            anyhow::ensure!(
                u.query().is_none() && u.fragment().is_none() && u.username().is_empty() && u.password().is_none(),
                "routes[{i}].upstream has no query, fragment or user info"
            );
            anyhow::ensure!(
                !self.routes[..i].iter().any(|o| o.prefix == r.prefix),
                "routes[{i}].prefix {} is used twice",
                r.prefix
            );
        }
        Ok(())
    }
}
