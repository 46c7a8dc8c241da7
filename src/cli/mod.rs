//! The command line: `run`, `crd`, `local`, `demo`, `import`, `providers`, and `status`,
//! `renew`, `check` against a cluster. Invoked as `kubectl-connectorauth` (a kubectl plugin) it
//! names itself `kubectl connectorauth`.

use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};

use crate::engine::HttpSettings;
use crate::engine::renewal::parse_duration;

mod demo;
mod local_mode;
mod operations;
mod operator;
mod providers;
mod proxy;

pub use demo::DemoArgs;
use demo::run_demo;
pub use local_mode::LocalArgs;
use local_mode::run_local;
pub use operations::{CheckArgs, RenewArgs, StatusArgs};
use operations::{run_check, run_renew, run_status};
pub use operator::RunArgs;
use operator::run_operator;
pub use providers::{
    ImportArgs, ProvidersCommand, all_crds_yaml, crd_yaml, import_yaml, provider_crd_yaml, providers_text,
};
pub use proxy::ProxyArgs;

#[derive(Parser, Debug)]
#[command(
    name = "connector-auth-operator",
    version,
    about = "Keeps third-party API credentials fresh"
)]
pub struct Cli {
    /// Log filter (tracing `EnvFilter` syntax), e.g. `info` or `connector_auth_operator=debug`.
    #[arg(long, env = "LOG_LEVEL", default_value = "warn", global = true)]
    pub log_level: String,
    /// Log format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the Kubernetes controller (in-cluster or with KUBECONFIG).
    Run(RunArgs),
    /// Print the CustomResourceDefinitions (ConnectorAuth, ClusterConnectorAuthProvider) as YAML.
    Crd,
    /// Issue and refresh tokens for the manifests in a folder, without a cluster.
    Local(LocalArgs),
    /// Start a demo OAuth2 provider on loopback and run local mode against it.
    Demo(DemoArgs),
    /// Translate another platform's authentication settings (Locoia, ChiefOnboarding, Sesam,
    /// Nango) into a ConnectorAuth and a credentials Secret skeleton, printed as YAML.
    Import(ImportArgs),
    /// The built-in provider catalog (`spec.provider`).
    Providers {
        #[command(subcommand)]
        command: ProvidersCommand,
    },
    /// Show a ConnectorAuth in a cluster: conditions, expiry, failures, consent, the output
    /// Secret's keys (values redacted) and recent Events. Exits 1 when it is not Ready.
    Status(StatusArgs),
    /// Ask the operator to renew tokens now (the `connectorauth.dev/renew` annotation).
    Renew(RenewArgs),
    /// Send a ConnectorAuth's `spec.verify` request with its published headers and print the
    /// HTTP status. Exits 1 when the provider does not accept the credential.
    Check(CheckArgs),
    /// Forward workloads' requests to one upstream per route, adding the published credential
    /// (for workloads that cannot re-read a mounted Secret): a sidecar or a Deployment.
    Proxy(ProxyArgs),
}

/// How `status` prints.
#[derive(ValueEnum, Clone, Copy, Debug, Default)]
pub enum OutputFormat {
    #[default]
    Text,
    Json,
}

/// Settings of the token HTTP client.
#[derive(Args, Debug, Clone)]
pub struct HttpArgs {
    /// Total timeout of one token request.
    #[arg(long, default_value = "30s", value_parser = duration_arg)]
    pub token_timeout: Duration,
    /// Largest token response accepted, in bytes.
    #[arg(long, default_value_t = 1024 * 1024)]
    pub max_response_bytes: usize,
    /// Allow token URLs on link-local addresses (169.254.0.0/16, fe80::/10) and cloud metadata
    /// host names. Off by default: they serve cloud credentials.
    #[arg(long, env = "TOKEN_URL_ALLOW_LINK_LOCAL")]
    pub allow_link_local_token_urls: bool,
    /// Allow token URLs on private, loopback, shared (100.64/10) and unique-local addresses.
    /// Off by default: whoever may create a ConnectorAuth could otherwise read services in the
    /// operator's network. To reach one internal provider, name its network in
    /// --token-url-allow instead.
    #[arg(long, env = "TOKEN_URL_ALLOW_PRIVATE")]
    pub allow_private_token_urls: bool,
    /// Only these token hosts/networks (comma-separated: `api.example.com`, `*.example.com`,
    /// `10.0.0.0/8`); default: any not otherwise refused.
    #[arg(long, env = "TOKEN_URL_ALLOW", value_delimiter = ',', value_parser = rule_arg)]
    pub token_url_allow: Vec<crate::engine::policy::Rule>,
    /// Never these token hosts/networks (same syntax).
    #[arg(long, env = "TOKEN_URL_DENY", value_delimiter = ',', value_parser = rule_arg)]
    pub token_url_deny: Vec<crate::engine::policy::Rule>,
    /// Send token requests through this HTTP(S) proxy (`http://proxy.corp:3128`). HTTP_PROXY,
    /// HTTPS_PROXY and ALL_PROXY are ignored. Through a proxy, names this pod cannot resolve
    /// are refused unless a host rule of --token-url-allow names them.
    #[arg(long, env = "TOKEN_PROXY", value_parser = proxy_arg)]
    pub token_proxy: Option<url::Url>,
}

fn proxy_arg(s: &str) -> Result<url::Url, String> {
    let url = url::Url::parse(s).map_err(|e| format!("`{s}` is not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(format!("`{s}` is not an http(s):// proxy URL"));
    }
    reqwest::Proxy::all(url.as_str()).map_err(|e| format!("`{s}`: {e}"))?;
    Ok(url)
}

fn rule_arg(s: &str) -> Result<crate::engine::policy::Rule, String> {
    crate::engine::policy::Rule::parse(s)
}

impl HttpArgs {
    pub fn settings(&self) -> HttpSettings {
        HttpSettings {
            timeout: self.token_timeout,
            max_response_bytes: self.max_response_bytes,
            policy: crate::engine::policy::UrlPolicy {
                allow_link_local: self.allow_link_local_token_urls,
                allow_private: self.allow_private_token_urls,
                allow: self.token_url_allow.clone(),
                deny: self.token_url_deny.clone(),
            },
            proxy: self.token_proxy.clone(),
            ..HttpSettings::default()
        }
    }
}

pub(super) fn duration_arg(s: &str) -> Result<Duration, String> {
    parse_duration("argument", s).map_err(|e| e.to_string())
}

/// Entry point of the binary.
pub fn main() -> anyhow::Result<std::process::ExitCode> {
    let mut command = Cli::command();
    if invoked_as_plugin(std::env::args_os().next().as_deref()) {
        command = command.name("kubectl connectorauth").bin_name("kubectl connectorauth");
    }
    let cli = Cli::from_arg_matches(&command.get_matches()).unwrap_or_else(|e| e.exit());
    init_tracing(&cli.log_level, cli.log_format)?;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(run(cli))
}

/// Whether the binary runs as the kubectl plugin: kubectl runs `kubectl-connectorauth` for
/// `kubectl connectorauth …` (the file may carry an extension, e.g. `.exe`).
pub fn invoked_as_plugin(argv0: Option<&std::ffi::OsStr>) -> bool {
    argv0
        .map(std::path::Path::new)
        .and_then(|p| p.file_stem())
        .and_then(|n| n.to_str())
        .is_some_and(|n| n == PLUGIN_NAME)
}

/// The kubectl plugin's executable name.
pub const PLUGIN_NAME: &str = "kubectl-connectorauth";

pub fn init_tracing(filter: &str, format: LogFormat) -> anyhow::Result<()> {
    let filter =
        tracing_subscriber::EnvFilter::try_new(filter).with_context(|| format!("invalid --log-level `{filter}`"))?;
    use std::io::IsTerminal as _;
    let colour = log_colour(std::io::stderr().is_terminal(), std::env::var_os("NO_COLOR").as_deref());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colour);
    let result = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
    result.map_err(|e| anyhow::anyhow!("cannot initialise logging: {e}"))
}

/// Whether text logs are coloured: only on a terminal (escape codes garble files and pipes),
/// and never while `NO_COLOR` is set to anything but the empty string (no-color.org).
pub fn log_colour(stderr_is_terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    stderr_is_terminal && no_color.is_none_or(|v| v.is_empty())
}

pub async fn run(cli: Cli) -> anyhow::Result<std::process::ExitCode> {
    match cli.command {
        Command::Crd => {
            print!("{}", all_crds_yaml()?);
            Ok(std::process::ExitCode::SUCCESS)
        }
        Command::Local(args) => run_local(args).await,
        Command::Run(args) => run_operator(args).await,
        Command::Demo(args) => run_demo(args).await,
        Command::Providers { command } => {
            print!("{}", providers_text(&command)?);
            Ok(std::process::ExitCode::SUCCESS)
        }
        Command::Import(args) => {
            print!("{}", import_yaml(&args)?);
            Ok(std::process::ExitCode::SUCCESS)
        }
        Command::Status(args) => run_status(args).await,
        Command::Proxy(args) => proxy::run_proxy(args).await,
        Command::Renew(args) => run_renew(args).await,
        Command::Check(args) => run_check(args).await,
    }
}

pub(super) fn exit(ok: bool) -> std::process::ExitCode {
    if ok {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    }
}

pub(super) async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

#[cfg(test)]
mod tests {
    use super::log_colour;
    use std::ffi::OsStr;

    #[test]
    fn logs_are_coloured_only_on_a_terminal_without_no_color() {
        assert!(log_colour(true, None));
        assert!(log_colour(true, Some(OsStr::new(""))), "an empty NO_COLOR is unset");
        assert!(!log_colour(true, Some(OsStr::new("1"))));
        assert!(
            !log_colour(true, Some(OsStr::new("false"))),
            "any value means no colour"
        );
        assert!(!log_colour(false, None));
        assert!(!log_colour(false, Some(OsStr::new(""))));
    }
}
