//! `local`: local mode on a folder of manifests.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use crate::engine::Engine;
use crate::local::{self, LocalRunner};

use super::{HttpArgs, duration_arg, shutdown_signal};
use crate::ops::redacted;

#[derive(Args, Debug)]
pub struct LocalArgs {
    /// Folder (searched recursively) or file with ConnectorAuth and Secret manifests.
    #[arg(long, short = 'm')]
    pub manifests: PathBuf,
    /// Folder for the generated Secrets (`<namespace>/<secretName>/<key>`) and private state
    /// (`.state/`).
    #[arg(long, short = 'o')]
    pub output: PathBuf,
    /// Make sure every token is issued once, print a summary and exit (non-zero if any failed).
    #[arg(long)]
    pub once: bool,
    /// With --once: also print each generated Secret, values redacted.
    #[arg(long)]
    pub show: bool,
    /// Longest pause between passes (manifests are re-read every pass).
    #[arg(long, default_value = "10s", value_parser = duration_arg)]
    pub poll: Duration,
    /// Value of `{{ redirect_url }}` in templates. Default with --callback-addr:
    /// `http://<callback-addr>/oauth2/callback`.
    #[arg(long)]
    pub redirect_url: Option<String>,
    /// Serve the OAuth2 consent callback on this loopback address (others are refused), for
    /// authorization-code resources; their consent URLs are printed.
    #[arg(long)]
    pub callback_addr: Option<SocketAddr>,
    /// Folder of ServiceAccount tokens for `spec.serviceAccountToken`: `<dir>/<name>/token`,
    /// as a projected volume (or `kubectl create token NAME > <dir>/NAME/token`) gives them.
    #[arg(long)]
    pub service_account_tokens: Option<PathBuf>,
    #[command(flatten)]
    pub http: HttpArgs,
}

pub(super) async fn run_local(args: LocalArgs) -> anyhow::Result<std::process::ExitCode> {
    let engine = Engine::new(args.http.settings())?;
    let mut runner = LocalRunner::new(engine, args.manifests.clone(), args.output.clone());
    runner.set_redirect_url(args.redirect_url.clone());
    runner.poll = args.poll;
    runner.service_account_tokens = args.service_account_tokens.clone();
    if let Some(addr) = args.callback_addr {
        let bound = runner.enable_consent(addr).await?;
        eprintln!(
            "consent callback on http://{bound}{}",
            crate::reconcile::callback::CALLBACK_PATH
        );
    }
    if args.once {
        let reports = runner.pass().await?;
        if reports.is_empty() {
            anyhow::bail!("no ConnectorAuth found under {}", args.manifests.display());
        }
        for r in &reports {
            if let Some(w) = r.warning_line() {
                eprintln!("{w}");
            }
            println!("{}", r.line());
            if args.show {
                let store = local::FileStore::new(&args.output, &r.namespace, &r.name, secret_leaf(&r.secret));
                for line in redacted(&store.published()) {
                    println!("    {line}");
                }
            }
        }
        let failed = local::failed(&reports);
        return Ok(if failed {
            std::process::ExitCode::FAILURE
        } else {
            std::process::ExitCode::SUCCESS
        });
    }
    eprintln!(
        "local mode: {} -> {} (Ctrl-C to stop)",
        args.manifests.display(),
        args.output.display()
    );
    runner.run(shutdown_signal()).await?;
    Ok(std::process::ExitCode::SUCCESS)
}

fn secret_leaf(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}
