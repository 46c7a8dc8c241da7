//! The command line: `run`, `crd`, `local`, `demo`, `import`, `providers`, and `status`,
//! `renew`, `check` against a cluster. Invoked as `kubectl-connectorauth` (a kubectl plugin) it
//! names itself `kubectl connectorauth`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};
use kube::CustomResourceExt;

use crate::api::ConnectorAuth;
use crate::engine::renewal::parse_duration;
use crate::engine::{Engine, HttpSettings};
use crate::local::{self, LocalRunner};
use crate::ops;

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
}

/// How `status` prints.
#[derive(ValueEnum, Clone, Copy, Debug, Default)]
pub enum OutputFormat {
    #[default]
    Text,
    Json,
}

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

#[derive(Subcommand, Debug)]
pub enum ProvidersCommand {
    /// One line per provider: name, scheme, what is unusual.
    List,
    /// A provider's settings (the spec it fills in), source and credentials keys.
    Show { name: String },
}

/// What `providers list` / `providers show NAME` print.
pub fn providers_text(command: &ProvidersCommand) -> anyhow::Result<String> {
    use crate::catalog;
    match command {
        ProvidersCommand::List => Ok(catalog::entries()
            .iter()
            .map(|e| format!("{:<30} {:<17} {}\n", e.name, e.scheme(), e.display_name()))
            .collect()),
        ProvidersCommand::Show { name } => {
            let e = catalog::get(name).with_context(|| {
                format!(
                    "no provider `{name}`; known: {}",
                    catalog::entries().iter().map(|e| e.name).collect::<Vec<_>>().join(", ")
                )
            })?;
            let params = e.params();
            Ok(format!(
                "# credentials keys: {}\n# parameters (spec.providerParams or credentials keys): {}\n# use: spec.provider: {} with an empty `{}: {{}}` block; fields you set win.\n# Applied as it stands, this manifest replaces the built-in entry in a cluster.\n{}",
                e.credentials().join(", "),
                if params.is_empty() {
                    "none".to_string()
                } else {
                    params.join(", ")
                },
                e.name,
                e.scheme(),
                e.manifest
            ))
        }
    }
}

#[derive(Args, Debug)]
pub struct ImportArgs {
    /// The platform the file comes from.
    #[arg(value_enum)]
    pub platform: crate::import::Platform,
    /// The platform's own JSON (Nango: its providers.yaml).
    pub file: PathBuf,
    /// Name of the ConnectorAuth (the Secret is `<name>-credentials`). Default: the Nango
    /// provider, else the file name.
    #[arg(long)]
    pub name: Option<String>,
    #[arg(long, default_value = "default")]
    pub namespace: String,
    /// The entry of a Nango providers.yaml to import.
    #[arg(long)]
    pub provider: Option<String>,
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
    #[command(flatten)]
    pub http: HttpArgs,
}

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

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Address of the demo provider; the bundled demo manifests expect 127.0.0.1:18080.
    #[arg(long, default_value = "127.0.0.1:18080")]
    pub listen: SocketAddr,
    /// Manifests to run.
    #[arg(long, default_value = "examples/demo")]
    pub manifests: PathBuf,
    /// Output folder. Default: a new temporary folder.
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// How long to keep refreshing.
    #[arg(long, default_value = "15s", value_parser = duration_arg)]
    pub duration: Duration,
    /// Lifetime of the demo provider's access tokens.
    #[arg(long, default_value = "6s", value_parser = duration_arg)]
    pub ttl: Duration,
}

fn duration_arg(s: &str) -> Result<Duration, String> {
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
        Command::Renew(args) => run_renew(args).await,
        Command::Check(args) => run_check(args).await,
    }
}

/// The client and namespace of the kubeconfig (or in-cluster configuration), as kubectl uses.
async fn cluster() -> anyhow::Result<kube::Client> {
    kube::Client::try_default()
        .await
        .context("cannot configure the Kubernetes client (KUBECONFIG or in-cluster)")
}

fn exit(ok: bool) -> std::process::ExitCode {
    if ok {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    }
}

async fn run_status(args: StatusArgs) -> anyhow::Result<std::process::ExitCode> {
    let client = cluster().await?;
    let target = ops::Target::parse(&args.target, args.namespace.as_deref(), client.default_namespace())?;
    let report = ops::status::status(&client, &target).await?;
    match args.output {
        OutputFormat::Text => print!("{}", report.text(jiff::Timestamp::now())),
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&report.json())?),
    }
    Ok(exit(report.ready))
}

async fn run_renew(args: RenewArgs) -> anyhow::Result<std::process::ExitCode> {
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

async fn run_check(args: CheckArgs) -> anyhow::Result<std::process::ExitCode> {
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

/// The CRD as YAML, exactly as committed in `crds/`.
/// What `import` prints: the ConnectorAuth, `---`, the credentials Secret.
pub fn import_yaml(args: &ImportArgs) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(&args.file).with_context(|| format!("reading {}", args.file.display()))?;
    let imported = crate::import::import(args.platform, &text, args.provider.as_deref())
        .with_context(|| format!("cannot import {}", args.file.display()))?;
    let name = args.name.clone().or_else(|| args.provider.clone()).unwrap_or_else(|| {
        let stem = args.file.file_stem().and_then(|s| s.to_str()).unwrap_or("imported");
        stem.to_ascii_lowercase()
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect::<String>()
            .trim_matches('-')
            .to_string()
    });
    let target = crate::import::Target {
        name,
        namespace: args.namespace.clone(),
    };
    let (ca, secret) = crate::import::render(&imported, &target);
    Ok(format!("{ca}---\n{secret}"))
}

/// The ConnectorAuth CRD as YAML, exactly as committed in `crds/connectorauth.yaml`.
pub fn crd_yaml() -> anyhow::Result<String> {
    Ok(serde_saphyr::to_string(&ConnectorAuth::crd())?)
}

/// The ClusterConnectorAuthProvider CRD as YAML, exactly as committed in
/// `crds/clusterconnectorauthprovider.yaml`.
pub fn provider_crd_yaml() -> anyhow::Result<String> {
    Ok(serde_saphyr::to_string(
        &crate::api::provider::ClusterConnectorAuthProvider::crd(),
    )?)
}

/// What `crd` prints: every CRD, as one multi-document YAML stream.
pub fn all_crds_yaml() -> anyhow::Result<String> {
    Ok(format!("{}---\n{}", crd_yaml()?, provider_crd_yaml()?))
}

async fn shutdown_signal() {
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

async fn run_operator(args: RunArgs) -> anyhow::Result<std::process::ExitCode> {
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

async fn run_local(args: LocalArgs) -> anyhow::Result<std::process::ExitCode> {
    let engine = Engine::new(args.http.settings())?;
    let mut runner = LocalRunner::new(engine, args.manifests.clone(), args.output.clone());
    runner.set_redirect_url(args.redirect_url.clone());
    runner.poll = args.poll;
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

pub use crate::ops::redacted;

async fn run_demo(args: DemoArgs) -> anyhow::Result<std::process::ExitCode> {
    let provider = crate::demo::DemoProvider::new(args.ttl, "demo-user", "demo-password");
    let (addr, server) = provider.serve(args.listen).await.with_context(|| {
        format!(
            "cannot listen on {} (pass --listen with a free address and update the manifests' base_url)",
            args.listen
        )
    })?;
    let output = match args.output {
        Some(o) => o,
        None => std::env::temp_dir().join(format!("connector-auth-demo-{}", std::process::id())),
    };
    println!(
        "demo provider on http://{addr} (access tokens live {}s, refresh tokens rotate)",
        args.ttl.as_secs()
    );
    println!("local mode: {} -> {}", args.manifests.display(), output.display());
    // The demo's provider is on loopback, which the default policy refuses: allow exactly it.
    let mut http = HttpSettings::default();
    http.policy.allow = vec![crate::engine::policy::Rule::Net(addr.ip().into())];
    let engine = Engine::new(http)?;
    let mut runner = LocalRunner::new(engine, args.manifests.clone(), output.clone());
    runner.poll = Duration::from_secs(1);
    let deadline = tokio::time::sleep(args.duration);
    tokio::pin!(deadline);
    let stop = async {
        tokio::select! {
            _ = &mut deadline => {},
            _ = shutdown_signal() => {},
        }
    };
    runner.run(stop).await?;

    // Prove the published headers work: call the protected endpoint with them.
    let manifests = local::load_manifests(&args.manifests)?;
    let client = reqwest::Client::new();
    let mut ok = true;
    for ca in &manifests.resources {
        let ns = kube::ResourceExt::namespace(ca).unwrap_or_else(|| "default".into());
        let name = kube::ResourceExt::name_any(ca);
        let store = local::FileStore::new(&output, &ns, &name, &crate::reconcile::output_secret_name(ca));
        let data = store.published();
        let headers: BTreeMap<String, String> = data
            .get("headers.json")
            .and_then(|h| serde_json::from_str(h).ok())
            .unwrap_or_default();
        let mut req = client.get(format!("http://{addr}/api/me"));
        for (k, v) in &headers {
            req = req.header(k, v);
        }
        let status = req.send().await.map(|r| r.status().as_u16()).unwrap_or(0);
        ok &= status == 200;
        println!(
            "GET /api/me with {ns}/{} headers.json -> HTTP {status}",
            crate::reconcile::output_secret_name(ca)
        );
        for line in redacted(&data) {
            println!("    {line}");
        }
    }
    println!("token requests served by the provider: {}", provider.token_requests());
    server.abort();
    Ok(if ok {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    })
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
