//! `run`: the operator, wired from flags and environment.

use std::net::SocketAddr;

use super::{HttpArgs, shutdown_signal};
use anyhow::Context as _;
use clap::Args;

#[derive(Args, Debug)]
pub struct RunArgs {
    /// Namespaces to watch (comma-separated or repeated); default: all.
    #[arg(long, env = "WATCH_NAMESPACES", value_delimiter = ',')]
    pub watch_namespaces: Vec<String>,
    /// Reconciles running at once.
    #[arg(long, env = "CONCURRENCY", default_value_t = 32)]
    pub concurrency: u16,
    /// Concurrent token requests per token-endpoint host.
    #[arg(long, env = "MAX_REQUESTS_PER_HOST", default_value_t = 8)]
    pub max_requests_per_host: usize,
    /// Address of /metrics, /healthz and /readyz.
    #[arg(long, env = "METRICS_ADDR", default_value = "0.0.0.0:8080")]
    pub metrics_addr: SocketAddr,
    /// Elect a leader with a coordination.k8s.io Lease, so only one replica refreshes.
    #[arg(long, env = "LEADER_ELECTION", default_value_t = true, action = clap::ArgAction::Set)]
    pub leader_election: bool,
    /// Name of the Lease.
    #[arg(long, env = "LEASE_NAME", default_value = "connector-auth-operator")]
    pub lease_name: String,
    /// Namespace of the Lease; default: the pod's namespace (POD_NAMESPACE) or `default`.
    #[arg(long, env = "LEASE_NAMESPACE")]
    pub lease_namespace: Option<String>,
    /// Lease duration in seconds; a standby takes over this long after the leader stops renewing.
    #[arg(long, env = "LEASE_DURATION_SECONDS", default_value_t = 15)]
    pub lease_duration_seconds: u64,
    /// Split the resources into this many shards (by namespace/name), each with its own Lease
    /// (`<lease-name>-<i>-of-<n>`); replicas share the shards, so N replicas share the load.
    /// Needs leader election.
    #[arg(long, env = "SHARDS", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub shards: u32,
    /// Value of `{{ redirect_url }}` in templates. Default with --callback-url:
    /// `<callback-url>/oauth2/callback`.
    #[arg(long, env = "REDIRECT_URL")]
    pub redirect_url: Option<String>,
    /// External base URL of the OAuth2 consent callback (what browsers reach, e.g.
    /// `https://connector-auth.example.com`). Enables the authorization-code consent flow.
    #[arg(long, env = "CALLBACK_URL")]
    pub callback_url: Option<String>,
    /// Address the consent callback listens on.
    #[arg(long, env = "CALLBACK_ADDR", default_value = "0.0.0.0:8081")]
    pub callback_addr: SocketAddr,
    /// Where the other replicas reach this replica's consent callback listener, so a standby
    /// hands a callback to the leader. Default: `http://$POD_IP:<callback port>`.
    #[arg(long, env = "CALLBACK_ADVERTISE_URL")]
    pub callback_advertise_url: Option<String>,
    #[command(flatten)]
    pub http: HttpArgs,
}

pub(super) async fn run_operator(args: RunArgs) -> anyhow::Result<std::process::ExitCode> {
    let client = kube::Client::try_default()
        .await
        .context("cannot configure the Kubernetes client (in-cluster or KUBECONFIG)")?;
    let identity = std::env::var("POD_NAME")
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| format!("connector-auth-operator-{}", std::process::id()));
    let mut http = args.http.settings();
    http.max_requests_per_host = args.max_requests_per_host;
    let operator_namespace = args
        .lease_namespace
        .clone()
        .or_else(|| std::env::var("POD_NAMESPACE").ok())
        .unwrap_or_else(|| "default".into());
    let config = crate::controller::Config {
        namespaces: args.watch_namespaces.into_iter().filter(|n| !n.is_empty()).collect(),
        concurrency: args.concurrency,
        redirect_url: args.redirect_url,
        http,
        identity,
        consent: args.callback_url.map(|external_url| crate::controller::ConsentConfig {
            listen: args.callback_addr,
            external_url,
            key_namespace: operator_namespace.clone(),
            advertise_url: args.callback_advertise_url.clone().or_else(|| {
                std::env::var("POD_IP").ok().map(|ip| {
                    format!(
                        "http://{}",
                        SocketAddr::new(ip.parse().unwrap_or(args.callback_addr.ip()), args.callback_addr.port())
                    )
                })
            }),
        }),
    };
    if args.shards > 1 && !args.leader_election {
        anyhow::bail!(
            "--shards {} splits the resources over Leases held by the replicas; it needs --leader-election true",
            args.shards
        );
    }
    let election = args.leader_election.then_some(crate::controller::LeaderElection {
        lease_name: args.lease_name,
        lease_namespace: operator_namespace,
        lease_duration: args.lease_duration_seconds,
        shards: args.shards,
    });
    crate::controller::run(client, config, election, args.metrics_addr, shutdown_signal()).await?;
    Ok(std::process::ExitCode::SUCCESS)
}
