//! `status`, `renew` and `check`: the operations commands against a cluster (also the kubectl
//! plugin).

use std::time::Duration;

use anyhow::Context as _;
use clap::Args;

use super::{HttpArgs, OutputFormat, duration_arg, exit};
use crate::engine::Engine;
use crate::ops;

#[derive(Args, Debug)]
pub struct StatusArgs {
    /// `NAMESPACE/NAME`, or `NAME` (in `-n`, else the kubeconfig's namespace).
    pub target: String,
    #[arg(long, short = 'n')]
    pub namespace: Option<String>,
    #[arg(long, short = 'o', value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

#[derive(Args, Debug)]
#[command(group = clap::ArgGroup::new("which").required(true).args(["targets", "all", "selector"]))]
pub struct RenewArgs {
    /// `NAMESPACE/NAME` or `NAME`, one or more.
    pub targets: Vec<String>,
    #[arg(long, short = 'n')]
    pub namespace: Option<String>,
    /// Every ConnectorAuth in the namespace.
    #[arg(long, conflicts_with = "targets")]
    pub all: bool,
    /// Those in the namespace with these labels, e.g. `team=crm`.
    #[arg(long, short = 'l', conflicts_with = "targets")]
    pub selector: Option<String>,
    /// Wait until the operator has acted upon the request; exit 1 if a resource is not Ready
    /// then.
    #[arg(long)]
    pub wait: bool,
    /// How long `--wait` waits.
    #[arg(long, default_value = "60s", value_parser = duration_arg)]
    pub timeout: Duration,
}

#[derive(Args, Debug)]
pub struct CheckArgs {
    /// `NAMESPACE/NAME`, or `NAME` (in `-n`, else the kubeconfig's namespace).
    pub target: String,
    #[arg(long, short = 'n')]
    pub namespace: Option<String>,
    #[command(flatten)]
    pub http: HttpArgs,
}

/// The client and namespace of the kubeconfig (or in-cluster configuration), as kubectl uses.
pub(super) async fn cluster() -> anyhow::Result<kube::Client> {
    kube::Client::try_default()
        .await
        .context("cannot configure the Kubernetes client (KUBECONFIG or in-cluster)")
}

pub(super) async fn run_status(args: StatusArgs) -> anyhow::Result<std::process::ExitCode> {
    let client = cluster().await?;
    let target = ops::Target::parse(&args.target, args.namespace.as_deref(), client.default_namespace())?;
    let report = ops::status::status(&client, &target).await?;
    match args.output {
        OutputFormat::Text => print!("{}", report.text(jiff::Timestamp::now())),
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&report.json())?),
    }
    Ok(exit(report.ready))
}

pub(super) async fn run_renew(args: RenewArgs) -> anyhow::Result<std::process::ExitCode> {
    let client = cluster().await?;
    let namespace = args
        .namespace
        .clone()
        .unwrap_or_else(|| client.default_namespace().to_string());
    let selection = if args.targets.is_empty() {
        ops::renew::Selection::All {
            namespace,
            selector: args.selector.clone(),
        }
    } else {
        let targets = args
            .targets
            .iter()
            .map(|t| ops::Target::parse(t, args.namespace.as_deref(), client.default_namespace()))
            .collect::<anyhow::Result<Vec<_>>>()?;
        ops::renew::Selection::Named(targets)
    };
    let targets = ops::renew::targets(&client, &selection).await?;
    let value = ops::renew::request_value(jiff::Timestamp::now());
    for t in &targets {
        ops::renew::request(&client, t, &value).await?;
        println!("{t}: renewal requested ({}={value})", crate::api::RENEW_ANNOTATION);
    }
    if !args.wait {
        return Ok(std::process::ExitCode::SUCCESS);
    }
    let mut ok = true;
    for t in &targets {
        match ops::renew::wait(&client, t, &value, args.timeout).await? {
            Some(true) => println!("{t}: renewed, Ready"),
            Some(false) => {
                ok = false;
                println!("{t}: acted upon, not Ready (see `status {t}`)");
            }
            None => {
                ok = false;
                println!(
                    "{t}: not acted upon within {:?}; is the operator running?",
                    args.timeout
                );
            }
        }
    }
    Ok(exit(ok))
}

pub(super) async fn run_check(args: CheckArgs) -> anyhow::Result<std::process::ExitCode> {
    let client = cluster().await?;
    let target = ops::Target::parse(&args.target, args.namespace.as_deref(), client.default_namespace())?;
    let engine = Engine::new(args.http.settings())?;
    let checked = ops::check::check(&client, &engine, &target).await?;
    if let Some(note) = &checked.note {
        eprintln!("note: the request was rendered without the resource's inputs: {note}");
    }
    let v = &checked.verification;
    println!("{target}: {} [{}]", v.message(), v.reason());
    Ok(exit(v.ok()))
}
