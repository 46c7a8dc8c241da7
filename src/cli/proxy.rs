//! `proxy`: the auth-injecting proxy (see [`crate::proxy`]), from a config file or, for one
//! route, from flags.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;

use crate::proxy::{ProxyConfig, RouteConfig};

#[derive(Args, Debug)]
pub struct ProxyArgs {
    /// A YAML file of routes (`listen`, `metrics`, `routes: [{prefix, upstream, credentials,
    /// passAuthorization, renew, tls, dpop}]`). Without it, one route from the flags below.
    #[arg(long, conflicts_with_all = ["upstream", "credentials"])]
    pub config: Option<PathBuf>,
    /// Where workloads send their requests.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Metrics and health (`/metrics`, `/healthz`).
    #[arg(long)]
    pub metrics: Option<SocketAddr>,
    /// The one upstream of the route, e.g. https://api.example.com.
    #[arg(long, required_unless_present = "config")]
    pub upstream: Option<String>,
    /// The mounted output Secret's folder.
    #[arg(long, required_unless_present = "config")]
    pub credentials: Option<PathBuf>,
    /// Keep the workload's own Authorization header.
    #[arg(long)]
    pub pass_authorization: bool,
    /// On a 401, ask the operator to renew this ConnectorAuth (NAMESPACE/NAME) and retry once.
    #[arg(long)]
    pub renew: Option<String>,
}

impl ProxyArgs {
    pub fn config(&self) -> anyhow::Result<ProxyConfig> {
        if let Some(path) = &self.config {
            let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
            return ProxyConfig::from_yaml(&text);
        }
        let renew = match &self.renew {
            Some(r) => {
                let (namespace, name) = r.split_once('/').context("--renew is NAMESPACE/NAME")?;
                Some(crate::proxy::config::RenewTarget {
                    namespace: namespace.into(),
                    name: name.into(),
                })
            }
            None => None,
        };
        let config = ProxyConfig {
            listen: self.listen,
            metrics: self.metrics,
            routes: vec![RouteConfig {
                prefix: "/".into(),
                upstream: self.upstream.clone().unwrap_or_default(),
                credentials: self.credentials.clone().unwrap_or_default(),
                pass_authorization: self.pass_authorization,
                renew,
                tls: None,
                dpop: None,
                timeout_seconds: None,
            }],
        };
        config.check()?;
        Ok(config)
    }
}

pub(super) async fn run_proxy(args: ProxyArgs) -> anyhow::Result<std::process::ExitCode> {
    let config = args.config()?;
    let kube = if config.routes.iter().any(|r| r.renew.is_some()) {
        Some(
            kube::Client::try_default()
                .await
                .context("routes with renew need the Kubernetes API")?,
        )
    } else {
        None
    };
    crate::proxy::serve(config, kube, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await?;
    Ok(std::process::ExitCode::SUCCESS)
}
