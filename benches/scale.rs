//! Scale benchmark: the real operator binary (`connector-auth-operator run`, a child process)
//! against the in-process test API server — or a real cluster when `KUBECONFIG` is set — with a
//! loopback OAuth2 token provider of configurable TTL, latency and error rate.
//!
//! ```sh
//! cargo bench --bench scale                          # N = 1,000 and 10,000; every scenario
//! cargo bench --bench scale -- --n 1000 --ttl 30     # one size, 30 s tokens
//! KUBECONFIG=~/.kube/config cargo bench --bench scale -- --n 1000   # against a real cluster
//! ```
//!
//! Options: `--n 1000,10000`, `--ttl SECS` (token lifetime; default 60, and 60 × N / 10,000 above
//! 10,000 so the renewal demand stays within the per-host limit: 300 for 50,000), `--ttls K` (length of the
//! steady-state windows in TTLs, default 3), `--latency-ms MS` (provider latency, default 20),
//! `--error-rate R` (provider errors in the fault scenario, default 0.05), `--unrelated COUNT`
//! (unrelated 100 KB Secrets, default 10000; on a real cluster 0 unless given),
//! `--operator-args "--concurrency 64 …"` (extra flags for `run`; leader election is off unless
//! they turn it on), `--replicas R` (R operator processes side by side, identities
//! `bench-op-<i>`; needs leader election; memory is the largest replica's, CPU and writes the
//! sum), `--scenarios steady,errors,kill,restart,unrelated` (which run after the cold start;
//! default all; `kill` only with `--replicas` above 1), `--wrap "heaptrack -o DIR/{}"` (run the operator under a profiler, `{}` becoming
//! `operator-<N>-<run>-<replica>`; RSS and CPU then describe the wrapper), `--wrap-run RUN`
//! (wrap only the operator runs named `main`, `restart` or `unrelated`),
//! `--slow-state-writes-ms MS` (test API server only: each write of a private state Secret is
//! answered MS late, so first issuances are slow and renewals are not — a cold start that
//! outlasts the first tokens' renewal point, as seen against a busy real API server).
//!
//! Each size runs: cold start (N ConnectorAuths and their credentials Secrets created within one
//! second, then the operator starts); steady state over `--ttls` TTLs (which begins with the
//! mass-expiry wave of the fleet issued together); the same window with `--error-rate` provider
//! errors; with several replicas, the same window again with the replica holding the most shards
//! killed (SIGKILL) at its start: how long until its shards are held again, and how many tokens
//! lapsed meanwhile; restart with all tokens valid; and a fresh cold start with `--unrelated`
//! unrelated 100 KB Secrets present. A *refresh* is a new access token appearing in an output Secret, seen
//! by this harness through its own watch, independent of the operator's counters. Cold-start
//! token requests are counted per client until its first token, so renewals during a long cold
//! start are not taken for cold-start calls. API writes are counted by the API server: the test
//! API server's request log, or a real API server's `apiserver_request_total` (its `/metrics`);
//! only where that is not readable, the operator's own `connectorauth_writes_total`. The table
//! says which. RSS and CPU come from `/proc/<pid>` of the operator; with several replicas the
//! notes give each replica's peak RSS. Against the test API server the notes also count its
//! `410 Gone` answers (each makes a watcher list everything again).
//!
//! The operator runs with the container image's malloc settings (`GLIBC_TUNABLES` from the
//! Dockerfile) unless `GLIBC_TUNABLES` is set for the benchmark.
//!
//! Results: a Markdown table on stdout and in `target/bench/scale.md` (copy into BENCHMARKS.md).

#[path = "scale/counting.rs"]
mod counting;

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::post;
use base64::Engine as _;
use connector_auth_operator::api::ConnectorAuth;
use connector_auth_operator::api::provider::ClusterConnectorAuthProvider;
use connector_auth_operator::controller::leader::lease_name;
use connector_auth_operator::reconcile::shard_of;
use counting::FirstIssue;
use fake_apiserver::FakeApiServer;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::runtime::watcher;
use serde_json::{Value, json};

const NAMESPACES: usize = 10;
/// Where the replicas keep their shard Leases: the operator's defaults (`--lease-name`, and the
/// namespace when POD_NAMESPACE is unset).
const LEASE_NAME: &str = "connector-auth-operator";
const LEASE_NAMESPACE: &str = "default";
const MANAGED_BY: &str = "app.kubernetes.io/managed-by=connector-auth-operator";

// ------------------------------------------------------------------ options

/// The scenarios a size runs, in order. The cold start always runs: the others start from it.
#[derive(Clone, Copy, PartialEq)]
enum Scenario {
    Steady,
    Errors,
    Kill,
    Restart,
    Unrelated,
}

const SCENARIOS: [(&str, Scenario); 5] = [
    ("steady", Scenario::Steady),
    ("errors", Scenario::Errors),
    ("kill", Scenario::Kill),
    ("restart", Scenario::Restart),
    ("unrelated", Scenario::Unrelated),
];

struct Options {
    sizes: Vec<usize>,
    /// Token lifetime for every size; `None`: [`default_ttl`] per size.
    ttl: Option<u64>,
    ttls: u64,
    latency: Duration,
    error_rate: f64,
    unrelated: Option<usize>,
    operator_args: Vec<String>,
    /// A command the operator runs under (a profiler); RSS and CPU then describe the wrapper.
    wrap: Vec<String>,
    /// Wrap only the operator runs of this name (`main`, `restart`, `unrelated`).
    wrap_run: Option<String>,
    /// Test API server only: how late each write of a private state Secret is answered.
    slow_state_writes: Option<Duration>,
    scenarios: Vec<Scenario>,
    /// Operator processes (replicas) running side by side.
    replicas: usize,
}

/// The default token lifetime for `n` resources: 60 s, and longer above 10,000 so the steady
/// renewal demand (each token renewed at ~2/3 of its lifetime: 1.5 n / TTL requests per second)
/// stays at 250/s, two thirds of what the default per-host limit serves (8 in flight at 20 ms
/// latency: ~400/s). 300 s for 50,000.
fn default_ttl(n: usize) -> u64 {
    (n as u64 * 60).div_ceil(10_000).max(60)
}

impl Options {
    /// Whether the operator flags turn leader election on (the benchmark turns it off otherwise).
    fn elects_leader(&self) -> bool {
        self.operator_args
            .iter()
            .any(|a| a.starts_with("--leader-election") && a != "--leader-election=false")
    }

    fn ttl(&self, n: usize) -> u64 {
        self.ttl.unwrap_or_else(|| default_ttl(n))
    }

    fn runs(&self, s: Scenario) -> bool {
        self.scenarios.contains(&s)
    }

    /// The shard count the operator flags set (`--shards N`), 1 without.
    fn shards(&self) -> u32 {
        let args = &self.operator_args;
        args.iter()
            .enumerate()
            .find_map(|(i, a)| match a.strip_prefix("--shards") {
                Some("") => args.get(i + 1)?.parse().ok(),
                Some(v) => v.strip_prefix('=')?.parse().ok(),
                None => None,
            })
            .unwrap_or(1)
    }
}

fn options() -> anyhow::Result<Options> {
    let mut o = Options {
        sizes: vec![1_000, 10_000],
        ttl: None,
        ttls: 3,
        latency: Duration::from_millis(20),
        error_rate: 0.05,
        unrelated: None,
        operator_args: vec![],
        wrap: vec![],
        wrap_run: None,
        slow_state_writes: None,
        scenarios: SCENARIOS.iter().map(|(_, s)| *s).collect(),
        replicas: 1,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = |name: &str| args.next().with_context(|| format!("{name} needs a value"));
        match a.as_str() {
            "--n" => {
                o.sizes = value("--n")?
                    .split(',')
                    .map(|s| s.trim().replace('_', "").parse().context("--n: a list of numbers"))
                    .collect::<anyhow::Result<_>>()?
            }
            "--ttl" => o.ttl = Some(value("--ttl")?.parse().context("--ttl: seconds")?),
            "--ttls" => o.ttls = value("--ttls")?.parse().context("--ttls: a number")?,
            "--latency-ms" => {
                o.latency = Duration::from_millis(value("--latency-ms")?.parse().context("--latency-ms")?)
            }
            "--error-rate" => o.error_rate = value("--error-rate")?.parse().context("--error-rate: 0..1")?,
            "--unrelated" => o.unrelated = Some(value("--unrelated")?.parse().context("--unrelated: a number")?),
            "--operator-args" => {
                o.operator_args = value("--operator-args")?.split_whitespace().map(String::from).collect()
            }
            "--wrap" => o.wrap = value("--wrap")?.split_whitespace().map(String::from).collect(),
            "--wrap-run" => o.wrap_run = Some(value("--wrap-run")?),
            "--slow-state-writes-ms" => {
                let ms = value("--slow-state-writes-ms")?
                    .parse()
                    .context("--slow-state-writes-ms")?;
                o.slow_state_writes = Some(Duration::from_millis(ms))
            }
            "--scenarios" => {
                o.scenarios = value("--scenarios")?
                    .split(',')
                    .map(|name| {
                        let name = name.trim();
                        SCENARIOS
                            .iter()
                            .find(|(n, _)| *n == name)
                            .map(|(_, s)| *s)
                            .with_context(|| {
                                let known: Vec<&str> = SCENARIOS.iter().map(|(n, _)| *n).collect();
                                format!(
                                    "--scenarios: unknown scenario {name}; known: {} (the cold start always runs)",
                                    known.join(", ")
                                )
                            })
                    })
                    .collect::<anyhow::Result<_>>()?
            }
            "--replicas" => o.replicas = value("--replicas")?.parse().context("--replicas: a number")?,
            "--bench" => {} // passed by `cargo bench`
            other => bail!("unknown option {other}; see the top of benches/scale.rs"),
        }
    }
    if o.ttl.is_some_and(|t| t < 6) {
        bail!("--ttl must be at least 6 seconds");
    }
    if o.replicas == 0 {
        bail!("--replicas must be at least 1");
    }
    if o.replicas > 1 && !o.elects_leader() {
        bail!("--replicas above 1 needs leader election: --operator-args \"--leader-election=true …\"");
    }
    Ok(o)
}

// ------------------------------------------------------------------ the token provider

/// A loopback OAuth2 token endpoint (client_credentials): every token is new, lives `ttl`.
struct Provider {
    addr: SocketAddr,
    /// Lifetime of issued tokens, seconds.
    ttl: AtomicU64,
    latency: Duration,
    /// Errors per million requests.
    error_ppm: AtomicU64,
    requests: AtomicU64,
    errors: AtomicU64,
    issued: AtomicU64,
    /// Requests per wall-clock second (Unix time).
    per_second: Mutex<BTreeMap<u64, u64>>,
    /// Calls per client until its first token, since the last cold start began.
    first_issue: Mutex<FirstIssue>,
}

impl Provider {
    async fn start(ttl: u64, latency: Duration) -> Arc<Provider> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let p = Arc::new(Provider {
            addr: listener.local_addr().unwrap(),
            ttl: AtomicU64::new(ttl),
            latency,
            error_ppm: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            issued: AtomicU64::new(0),
            per_second: Mutex::new(BTreeMap::new()),
            first_issue: Mutex::new(FirstIssue::default()),
        });
        let app = Router::new().route("/token", post(token)).with_state(p.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        p
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn set_error_rate(&self, rate: f64) {
        self.error_ppm.store((rate * 1e6) as u64, Ordering::Relaxed);
    }

    fn snapshot(&self) -> ProviderSnapshot {
        ProviderSnapshot {
            requests: self.requests.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            at: unix_now(),
        }
    }

    /// The busiest second since `since` (Unix seconds).
    fn peak_rps(&self, since: u64) -> u64 {
        let per_second = self.per_second.lock().unwrap();
        per_second.range(since..).map(|(_, n)| *n).max().unwrap_or(0)
    }
}

#[derive(Clone, Copy)]
struct ProviderSnapshot {
    requests: u64,
    errors: u64,
    at: u64,
}

async fn token(State(p): State<Arc<Provider>>, headers: HeaderMap, body: String) -> Response {
    tokio::time::sleep(p.latency).await;
    p.requests.fetch_add(1, Ordering::Relaxed);
    *p.per_second.lock().unwrap().entry(unix_now()).or_default() += 1;
    let fail = rand::random_range(0..1_000_000) < p.error_ppm.load(Ordering::Relaxed);
    p.first_issue.lock().unwrap().record(&client_id(&headers, &body), !fail);
    if fail {
        p.errors.fetch_add(1, Ordering::Relaxed);
        return (StatusCode::INTERNAL_SERVER_ERROR, "<html>upstream error</html>").into_response();
    }
    let n = p.issued.fetch_add(1, Ordering::Relaxed);
    Json(json!({"access_token": format!("bench-token-{n}"), "token_type": "Bearer", "expires_in": p.ttl.load(Ordering::Relaxed)})).into_response()
}

/// The OAuth2 client of a token request: HTTP Basic (the operator's default) or `client_id` in
/// the form body.
fn client_id(headers: &HeaderMap, body: &str) -> String {
    let basic = headers
        .get("authorization")
        .and_then(|h| h.to_str().ok()?.strip_prefix("Basic "))
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| Some(s.split_once(':')?.0.to_string()));
    basic
        .or_else(|| {
            url::form_urlencoded::parse(body.as_bytes())
                .find(|(k, _)| k == "client_id")
                .map(|(_, v)| v.into_owned())
        })
        .unwrap_or_default()
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

// ------------------------------------------------------------------ the cluster

/// Where the operator runs against: the in-process test API server, or a real cluster.
enum Cluster {
    Fake {
        server: FakeApiServer,
        kubeconfig: PathBuf,
    },
    Real {
        client: kube::Client,
        prefix: String,
        /// The API server's write counters at the last reading, if its /metrics is readable.
        apiserver: Option<Mutex<BTreeMap<String, u64>>>,
    },
}

/// The resources the operator writes, as `apiserver_request_total` names them.
const WRITTEN_RESOURCES: [&str; 3] = ["secrets", "connectorauths", "events"];

/// Where a row's API writes were counted.
#[derive(Clone, Copy, PartialEq)]
enum WriteSource {
    /// The test API server's log of every request.
    ServerLog,
    /// A real kube-apiserver's `apiserver_request_total`.
    ApiServer,
    /// The operator's own `connectorauth_writes_total`, when the API server's /metrics is not
    /// readable.
    Operator,
}

impl WriteSource {
    fn label(self) -> &'static str {
        match self {
            WriteSource::ServerLog => "API server log",
            WriteSource::ApiServer => "apiserver_request_total",
            WriteSource::Operator => "operator metric",
        }
    }
}

/// API writes in a window, by "verb resource[/subresource]".
#[derive(Clone)]
struct Writes {
    source: WriteSource,
    by_kind: BTreeMap<String, u64>,
}

/// The write counters of a real API server, by "verb resource[/subresource]"; `None` if its
/// /metrics has no `apiserver_request_total`.
async fn apiserver_writes(client: &kube::Client) -> anyhow::Result<Option<BTreeMap<String, u64>>> {
    let request = axum::http::Request::get("/metrics").body(Vec::new())?;
    let text = client.request_text(request).await?;
    Ok(counting::apiserver_writes(&text, &WRITTEN_RESOURCES))
}

fn namespace(cluster_prefix: &str, i: usize) -> String {
    format!("{cluster_prefix}{}", i % NAMESPACES)
}

impl Cluster {
    async fn fake(dir: &Path, o: &Options) -> Cluster {
        let server = FakeApiServer::start().await;
        // Both CRDs, as the chart installs them.
        server.register_crd(&<ConnectorAuth as kube::CustomResourceExt>::crd());
        server.register_crd(&<ClusterConnectorAuthProvider as kube::CustomResourceExt>::crd());
        if let Some(late) = o.slow_state_writes {
            server.delay_next(
                fake_apiserver::Delay::by(late, "-connectorauth-state")
                    .method("PATCH")
                    .times(u32::MAX),
            );
        }
        let kubeconfig = dir.join("kubeconfig");
        std::fs::write(
            &kubeconfig,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {}\n\
                 users:\n- name: fake\n  user: {{}}\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\n\
                 current-context: fake\n",
                server.url()
            ),
        )
        .unwrap();
        Cluster::Fake { server, kubeconfig }
    }

    async fn real() -> anyhow::Result<Cluster> {
        let client = kube::Client::try_default().await.context("KUBECONFIG")?;
        Api::<ConnectorAuth>::all(client.clone())
            .list(&ListParams::default().limit(1))
            .await
            .context("the ConnectorAuth CRD must be installed: connector-auth-operator crd | kubectl apply -f -")?;
        let prefix = format!("cao-bench-{}-", std::process::id());
        let namespaces: Api<Namespace> = Api::all(client.clone());
        for i in 0..NAMESPACES {
            let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": namespace(&prefix, i)}}))?;
            namespaces.create(&PostParams::default(), &ns).await?;
        }
        let apiserver = match apiserver_writes(&client).await {
            Ok(Some(w)) => Some(Mutex::new(w)),
            Ok(None) => {
                eprintln!(
                    "the API server's /metrics has no apiserver_request_total; API writes come from the operator's metrics"
                );
                None
            }
            Err(e) => {
                eprintln!(
                    "the API server's /metrics is not readable ({e}); API writes come from the operator's metrics"
                );
                None
            }
        };
        Ok(Cluster::Real {
            client,
            prefix,
            apiserver,
        })
    }

    fn client(&self) -> kube::Client {
        match self {
            Cluster::Fake { server, .. } => server.client(),
            Cluster::Real { client, .. } => client.clone(),
        }
    }

    fn prefix(&self) -> &str {
        match self {
            Cluster::Fake { .. } => "bench-",
            Cluster::Real { prefix, .. } => prefix,
        }
    }

    /// Creates `n` credentials Secrets and ConnectorAuths (and `unrelated` 100 KB Secrets
    /// first); returns how long creating the ConnectorAuths took.
    async fn seed(&self, n: usize, token_url: &str, unrelated: usize) -> anyhow::Result<Duration> {
        let prefix = self.prefix().to_string();
        let blob = base64::engine::general_purpose::STANDARD.encode(vec![b'x'; 100 * 1024]);
        let unrelated_secret = |i: usize| {
            json!({"apiVersion": "v1", "kind": "Secret",
                   "metadata": {"name": format!("unrelated-{i}"), "namespace": namespace(&prefix, i)},
                   "type": "Opaque", "data": {"blob": blob}})
        };
        let credentials = |i: usize| {
            json!({"apiVersion": "v1", "kind": "Secret",
                   "metadata": {"name": format!("app-{i}-credentials"), "namespace": namespace(&prefix, i)},
                   "type": "Opaque",
                   "stringData": {"client_id": format!("client-{i}"), "client_secret": format!("secret-{i}"), "token_url": token_url}})
        };
        let connector_auth = |i: usize| {
            json!({"apiVersion": "connectorauth.dev/v1alpha1", "kind": "ConnectorAuth",
                   "metadata": {"name": format!("app-{i}"), "namespace": namespace(&prefix, i)},
                   "spec": {"credentialsRef": {"name": format!("app-{i}-credentials")},
                            "oauth2": {"grantType": "clientCredentials", "tokenUrl": "{{ token_url }}"}}})
        };
        match self {
            Cluster::Fake { server, .. } => {
                for i in 0..unrelated {
                    server
                        .create_object("", "secrets", unrelated_secret(i))
                        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
                }
                for i in 0..n {
                    let mut s = credentials(i);
                    // Stored objects hold `data`; the fake server does not convert stringData.
                    let data: serde_json::Map<String, Value> = s["stringData"]
                        .as_object()
                        .unwrap()
                        .iter()
                        .map(|(k, v)| {
                            let b = base64::engine::general_purpose::STANDARD.encode(v.as_str().unwrap());
                            (k.clone(), Value::String(b))
                        })
                        .collect();
                    s["data"] = Value::Object(data);
                    s.as_object_mut().unwrap().remove("stringData");
                    server
                        .create_object("", "secrets", s)
                        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
                }
                let started = Instant::now();
                for i in 0..n {
                    server
                        .create_object("connectorauth.dev", "connectorauths", connector_auth(i))
                        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
                }
                Ok(started.elapsed())
            }
            Cluster::Real { client, .. } => {
                let create = |obj: Value| {
                    let client = client.clone();
                    async move {
                        let ns = obj["metadata"]["namespace"].as_str().unwrap().to_string();
                        if obj["kind"] == "Secret" {
                            let s: Secret = serde_json::from_value(obj)?;
                            Api::<Secret>::namespaced(client, &ns)
                                .create(&PostParams::default(), &s)
                                .await?;
                        } else {
                            let c: ConnectorAuth = serde_json::from_value(obj)?;
                            Api::<ConnectorAuth>::namespaced(client, &ns)
                                .create(&PostParams::default(), &c)
                                .await?;
                        }
                        anyhow::Ok(())
                    }
                };
                let all = |objs: Vec<Value>| {
                    futures::stream::iter(objs.into_iter().map(create))
                        .buffer_unordered(64)
                        .try_collect::<Vec<()>>()
                };
                all((0..unrelated).map(unrelated_secret).collect()).await?;
                all((0..n).map(credentials).collect()).await?;
                let started = Instant::now();
                all((0..n).map(connector_auth).collect()).await?;
                Ok(started.elapsed())
            }
        }
    }

    async fn ready(&self) -> anyhow::Result<usize> {
        fn is_ready(ca: &Value) -> bool {
            ca["status"]["conditions"]
                .as_array()
                .is_some_and(|cs| cs.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"))
        }
        match self {
            Cluster::Fake { server, .. } => Ok(server.count("connectorauth.dev", "connectorauths", is_ready)),
            Cluster::Real { client, prefix, .. } => {
                let api: Api<ConnectorAuth> = Api::all(client.clone());
                let mut ready = 0;
                let mut params = ListParams::default().limit(500);
                loop {
                    let page = api.list(&params).await?;
                    ready += page
                        .items
                        .iter()
                        .filter(|ca| {
                            ca.metadata
                                .namespace
                                .as_deref()
                                .unwrap_or("")
                                .starts_with(prefix.as_str())
                        })
                        .filter(|ca| is_ready(&serde_json::to_value(ca).unwrap_or_default()))
                        .count();
                    match page.metadata.continue_ {
                        Some(c) if !c.is_empty() => params = params.continue_token(&c),
                        _ => break,
                    }
                }
                Ok(ready)
            }
        }
    }

    /// API writes since the last call, counted by the API server: the test API server's
    /// request log, or a real API server's `apiserver_request_total`. `None` where the API
    /// server does not tell (its /metrics not readable).
    async fn take_writes(&self) -> Option<Writes> {
        let server = match self {
            Cluster::Fake { server, .. } => server,
            Cluster::Real { apiserver: None, .. } => return None,
            Cluster::Real {
                client,
                apiserver: Some(last),
                ..
            } => {
                let now = match apiserver_writes(client).await {
                    Ok(Some(w)) => w,
                    Ok(None) => {
                        eprintln!("the API server's /metrics no longer has apiserver_request_total");
                        return None;
                    }
                    Err(e) => {
                        eprintln!("reading the API server's /metrics failed: {e}");
                        return None;
                    }
                };
                let before = std::mem::replace(&mut *last.lock().unwrap(), now.clone());
                return Some(Writes {
                    source: WriteSource::ApiServer,
                    by_kind: counting::delta(&before, &now),
                });
            }
        };
        let mut out = BTreeMap::new();
        // Lists and watches (each one a page or a watch started): a relist after a 410 shows as
        // more of them. Metadata-only ones are the operator's Secret and ConfigMap watches.
        let mut reads: BTreeMap<String, u64> = BTreeMap::new();
        // Each pass reads its resource's credentials: the resources reconciled at least once.
        let mut passed = std::collections::HashSet::new();
        for r in server.requests() {
            if matches!(r.verb.as_str(), "list" | "watch") {
                let only = if r.metadata_only { " (metadata)" } else { "" };
                *reads.entry(format!("{} {}{only}", r.verb, r.resource)).or_default() += 1;
            }
            if r.verb == "get"
                && r.resource == "secrets"
                && r.name.as_deref().is_some_and(|n| n.ends_with("-credentials"))
            {
                passed.insert((r.namespace, r.name));
            }
            if matches!(
                r.verb.as_str(),
                "create" | "update" | "patch" | "delete" | "deletecollection"
            ) {
                let resource = match &r.subresource {
                    Some(sub) => format!("{}/{sub}", r.resource),
                    None => r.resource.clone(),
                };
                *out.entry(format!("{} {resource}", r.verb)).or_default() += 1;
            }
        }
        server.clear_requests();
        eprintln!(
            "since the last count: {} resources' credentials read; lists and watches: {reads:?}",
            passed.len()
        );
        Some(Writes {
            source: WriteSource::ServerLog,
            by_kind: out,
        })
    }

    /// The test API server's `410 Gone` answers so far, by resource; empty on a real cluster.
    fn gone(&self) -> BTreeMap<String, u64> {
        match self {
            Cluster::Fake { server, .. } => server.gone_answers(),
            Cluster::Real { .. } => BTreeMap::new(),
        }
    }

    /// Which replica holds each shard (by identity), as the shard Leases say; `None` where the
    /// Lease is missing, unheld or ran out.
    async fn shard_holders(&self, shards: u32) -> anyhow::Result<Vec<Option<String>>> {
        let api: Api<Lease> = Api::namespaced(self.client(), LEASE_NAMESPACE);
        let now = std::time::SystemTime::now();
        let mut holders = Vec::new();
        for shard in 0..shards {
            let lease = api.get_opt(&lease_name(LEASE_NAME, shard, shards)).await?;
            let holder = lease.and_then(|l| {
                let spec = l.spec?;
                let renewed = std::time::SystemTime::from(spec.renew_time?.0);
                let valid = renewed + Duration::from_secs(u64::try_from(spec.lease_duration_seconds?).ok()?) > now;
                spec.holder_identity.filter(|h| valid && !h.is_empty())
            });
            holders.push(holder);
        }
        Ok(holders)
    }

    fn kubeconfig(&self) -> Option<&Path> {
        match self {
            Cluster::Fake { kubeconfig, .. } => Some(kubeconfig),
            Cluster::Real { .. } => None,
        }
    }

    async fn cleanup(&self) {
        if let Cluster::Real { client, prefix, .. } = self {
            let namespaces: Api<Namespace> = Api::all(client.clone());
            for i in 0..NAMESPACES {
                let _ = namespaces.delete(&namespace(prefix, i), &DeleteParams::default()).await;
            }
        }
    }
}

// ------------------------------------------------------------------ watching output Secrets

/// Counts tokens published in output Secrets, through a watch of this harness's own.
#[derive(Default)]
struct Published {
    /// Output Secrets seen with a token (first issuance).
    issued: AtomicU64,
    /// Times an output Secret's access token changed (refreshes).
    refreshed: AtomicU64,
    /// Refreshes that arrived after the previous token had expired (a gap for workloads).
    lapsed: AtomicU64,
    /// Per output Secret (namespace/name): digest of the token and its expiry (Unix seconds).
    tokens: Mutex<HashMap<String, (u64, Option<u64>)>>,
    /// While set, each refresh is also recorded in `trace`.
    tracing: AtomicBool,
    trace: Mutex<Vec<Traced>>,
    stop: AtomicBool,
}

impl Published {
    /// Output Secrets whose token has expired and has not been replaced, as last seen.
    fn expired(&self) -> Vec<String> {
        let now = unix_now();
        let tokens = self.tokens.lock().unwrap();
        tokens
            .iter()
            .filter(|(_, (_, expiry))| expiry.is_some_and(|e| e < now))
            .map(|(key, _)| key.clone())
            .collect()
    }
}

/// One refresh seen while [`Published::tracing`].
struct Traced {
    namespace: String,
    /// The output Secret's name.
    secret: String,
    at: Instant,
    lapsed: bool,
}

fn watch_published(client: kube::Client, prefix: String) -> Arc<Published> {
    let published = Arc::new(Published::default());
    let p = published.clone();
    tokio::spawn(async move {
        let api: Api<Secret> = Api::all(client);
        let mut stream = watcher(api, watcher::Config::default().labels(MANAGED_BY)).boxed();
        while let Some(event) = stream.next().await {
            if p.stop.load(Ordering::Relaxed) {
                break;
            }
            let secret = match event {
                Ok(watcher::Event::Apply(s) | watcher::Event::InitApply(s)) => s,
                _ => continue,
            };
            let ns = secret.metadata.namespace.clone().unwrap_or_default();
            let Some(token) = secret.data.as_ref().and_then(|d| d.get("access_token")) else {
                continue;
            };
            if !ns.starts_with(&prefix) {
                continue;
            }
            let key = format!("{ns}/{}", secret.metadata.name.clone().unwrap_or_default());
            let digest = {
                use std::hash::{Hash, Hasher};
                let mut h = std::collections::hash_map::DefaultHasher::new();
                token.0.hash(&mut h);
                h.finish()
            };
            let expires = secret
                .data
                .as_ref()
                .and_then(|d| d.get("expires_at"))
                .and_then(|e| std::str::from_utf8(&e.0).ok()?.parse::<jiff::Timestamp>().ok())
                .map(|t| t.as_second() as u64);
            let previous = p.tokens.lock().unwrap().insert(key, (digest, expires));
            match previous {
                None => {
                    p.issued.fetch_add(1, Ordering::Relaxed);
                }
                Some((old, old_expiry)) if old != digest => {
                    p.refreshed.fetch_add(1, Ordering::Relaxed);
                    let lapsed = old_expiry.is_some_and(|e| e < unix_now());
                    if lapsed {
                        p.lapsed.fetch_add(1, Ordering::Relaxed);
                    }
                    if p.tracing.load(Ordering::Relaxed) {
                        p.trace.lock().unwrap().push(Traced {
                            namespace: ns,
                            secret: secret.metadata.name.clone().unwrap_or_default(),
                            at: Instant::now(),
                            lapsed,
                        });
                    }
                }
                Some(_) => {}
            };
        }
    });
    published
}

// ------------------------------------------------------------------ the operator processes

/// The container image's malloc settings (its Dockerfile's `ENV GLIBC_TUNABLES=…`), so the
/// benchmark measures the operator as the image runs it.
fn image_malloc_tunables() -> &'static str {
    include_str!("../Dockerfile")
        .lines()
        .find_map(|l| l.strip_prefix("ENV GLIBC_TUNABLES="))
        .expect("the Dockerfile sets GLIBC_TUNABLES")
        .trim()
}

/// One operator process.
struct Operator {
    /// Its identity (`POD_NAME`), as the shard Leases name their holders.
    identity: String,
    child: Child,
    metrics: SocketAddr,
    log: PathBuf,
}

impl Operator {
    /// Starts replica `replica` (its identity `bench-op-<replica>`); `run` names the run (a log
    /// and a `{}` in `--wrap` become `operator-<run>-<replica>`).
    fn start(cluster: &Cluster, o: &Options, dir: &Path, run: &str, replica: usize) -> anyhow::Result<Operator> {
        let metrics: SocketAddr = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
        let name = format!("operator-{run}-{replica}");
        let log = dir.join(format!("{name}.log"));
        let binary = env!("CARGO_BIN_EXE_connector-auth-operator");
        let wrapped = o.wrap_run.as_deref().is_none_or(|r| run.ends_with(&format!("-{r}")));
        let mut cmd = match o.wrap.split_first().filter(|_| wrapped) {
            Some((wrapper, args)) => {
                let mut c = Command::new(wrapper);
                c.args(args.iter().map(|a| a.replace("{}", &name))).arg(binary);
                c
            }
            None => Command::new(binary),
        };
        cmd.args(["run", "--log-format=text"]);
        if !o.elects_leader() {
            cmd.arg("--leader-election=false");
        }
        if std::env::var_os("GLIBC_TUNABLES").is_none() {
            cmd.env("GLIBC_TUNABLES", image_malloc_tunables());
        }
        cmd.arg(format!("--metrics-addr={metrics}"))
            // The provider emulator listens on loopback, which the default policy refuses.
            .arg("--token-url-allow=127.0.0.0/8")
            .args(&o.operator_args)
            // Shard hand-overs and cache syncs, and watch errors (a 410 Gone among them).
            .env(
                "LOG_LEVEL",
                "warn,connector_auth_operator::controller::leader=info,kube_runtime::watcher=debug",
            )
            .env("POD_NAME", format!("bench-op-{replica}"))
            .env_remove("POD_NAMESPACE")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?);
        if let Some(k) = cluster.kubeconfig() {
            cmd.env("KUBECONFIG", k);
        }
        // Its own process group, so that stopping it reaches the operator under a wrapper too.
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let child = cmd.spawn().context("starting the operator binary")?;
        Ok(Operator {
            identity: format!("bench-op-{replica}"),
            child,
            metrics,
            log,
        })
    }

    /// Fails if the operator exited.
    fn check_alive(&mut self) -> anyhow::Result<()> {
        match self.child.try_wait()? {
            Some(status) => bail!("the operator exited ({status}); see {}", self.log.display()),
            None => Ok(()),
        }
    }

    /// Peak resident set size (VmHWM) in KiB.
    fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }

    /// CPU time (user + system) in seconds.
    fn cpu_seconds(&self) -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap_or_default();
        // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
        let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
        (ticks(11) + ticks(12)) / clock_ticks()
    }

    async fn metrics_text(&self) -> String {
        let Ok(resp) = reqwest::get(format!("http://{}/metrics", self.metrics)).await else {
            return String::new();
        };
        resp.text().await.unwrap_or_default()
    }

    /// Signals the operator's process group (the wrapper and the operator under it).
    fn signal(&self, signal: &str) -> std::io::Result<std::process::ExitStatus> {
        Command::new("kill")
            .args([signal, "--", &format!("-{}", self.child.id())])
            .status()
    }

    /// Sends SIGTERM and waits for the process to end.
    fn stop(mut self) -> anyhow::Result<()> {
        self.signal("-TERM")?;
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if self.child.try_wait()?.is_some() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.signal("-KILL")?;
        bail!("the operator did not stop within 30 s of SIGTERM")
    }
}

/// A benchmark that fails half-way must not leave its operator running.
impl Drop for Operator {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.signal("-KILL");
            let _ = self.child.wait();
        }
    }
}

/// The operator replicas of one run (`--replicas`): memory is reported for the largest
/// replica, CPU, counters and writes summed over all.
struct Fleet {
    replicas: Vec<Operator>,
}

impl Fleet {
    fn start(cluster: &Cluster, o: &Options, dir: &Path, run: &str) -> anyhow::Result<Fleet> {
        let replicas = (0..o.replicas)
            .map(|i| Operator::start(cluster, o, dir, run, i))
            .collect::<anyhow::Result<_>>()?;
        Ok(Fleet { replicas })
    }

    /// Fails if any replica exited.
    fn check_alive(&mut self) -> anyhow::Result<()> {
        self.replicas.iter_mut().try_for_each(Operator::check_alive)
    }

    /// The largest replica's peak resident set size (VmHWM) in KiB.
    fn peak_rss_kib(&self) -> u64 {
        self.replicas.iter().map(Operator::peak_rss_kib).max().unwrap_or(0)
    }

    /// Each replica's peak RSS, for the notes: empty with one replica (the row says it).
    fn rss_note(&self) -> String {
        if self.replicas.len() < 2 {
            return String::new();
        }
        let each: Vec<String> = self
            .replicas
            .iter()
            .map(|op| format!("{:.1}", op.peak_rss_kib() as f64 / 1024.0))
            .collect();
        format!("peak RSS per replica {} MiB", each.join(" / "))
    }

    /// CPU time (user + system) of all replicas, in seconds.
    fn cpu_seconds(&self) -> f64 {
        self.replicas.iter().map(Operator::cpu_seconds).sum()
    }

    /// A counter from the replicas' /metrics, summed over labels and replicas.
    async fn metric(&self, name: &str) -> f64 {
        let mut sum = 0.0;
        for op in &self.replicas {
            sum += op
                .metrics_text()
                .await
                .lines()
                .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum::<f64>();
        }
        sum
    }

    /// The replicas' own write counters (`connectorauth_writes_total`), summed.
    async fn writes(&self) -> BTreeMap<String, u64> {
        let mut sum = BTreeMap::new();
        for op in &self.replicas {
            for (k, v) in counting::operator_writes(&op.metrics_text().await) {
                *sum.entry(k).or_default() += v;
            }
        }
        sum
    }

    fn stop(self) -> anyhow::Result<()> {
        self.replicas.into_iter().try_for_each(Operator::stop)
    }
}

fn clock_ticks() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok()?.trim().parse().ok())
            .unwrap_or(100.0)
    })
}

// ------------------------------------------------------------------ measurements

/// One row of results.
#[derive(Default, Clone)]
struct Row {
    scenario: String,
    n: usize,
    /// Seconds from operator start until all N are Ready.
    ready_secs: Option<f64>,
    refreshes: u64,
    token_requests: u64,
    provider_errors: u64,
    /// API writes; `None` where not measured.
    writes: Option<Writes>,
    /// Renewals that fell within a cold start (it outlasted the first tokens' renewal point):
    /// their token calls are left out of the row, their API writes are in it.
    renewals_within: u64,
    peak_token_rps: u64,
    peak_rss_mib: f64,
    cpu_secs: f64,
    /// ConnectorAuths not Ready at the end of the window.
    not_ready: usize,
    /// Refreshes published only after the previous token had expired.
    lapsed: u64,
    note: String,
}

impl Row {
    /// Adds a note (none when empty).
    fn note(&mut self, note: &str) {
        if note.is_empty() {
            return;
        }
        if !self.note.is_empty() {
            self.note.push_str("; ");
        }
        self.note.push_str(note);
    }

    fn per_refresh(&self, v: u64) -> String {
        if self.refreshes == 0 {
            return "–".into();
        }
        format!("{:.2}", v as f64 / self.refreshes as f64)
    }

    fn secret_writes(&self) -> Option<u64> {
        let w = self.writes.as_ref()?;
        Some(
            w.by_kind
                .iter()
                .filter(|(k, _)| k.ends_with(" secrets"))
                .map(|(_, v)| v)
                .sum(),
        )
    }

    fn api_writes(&self) -> Option<u64> {
        Some(self.writes.as_ref()?.by_kind.values().sum())
    }
}

async fn wait_ready(cluster: &Cluster, op: &mut Fleet, n: usize, timeout: Duration) -> anyhow::Result<f64> {
    let started = Instant::now();
    loop {
        op.check_alive()?;
        if cluster.ready().await? >= n {
            return Ok(started.elapsed().as_secs_f64());
        }
        if started.elapsed() > timeout {
            let _ = cluster.take_writes().await;
            bail!("only {} of {n} Ready after {timeout:?}", cluster.ready().await?);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The test API server's `410 Gone` answers since `before`, for the notes (empty on a real
/// cluster).
fn gone_note(cluster: &Cluster, before: &BTreeMap<String, u64>) -> String {
    if !matches!(cluster, Cluster::Fake { .. }) {
        return String::new();
    }
    let gone = counting::delta(before, &cluster.gone());
    let each: Vec<String> = gone
        .iter()
        .filter(|(_, v)| **v > 0)
        .map(|(k, v)| format!("{k} {v}"))
        .collect();
    if each.is_empty() {
        "410 Gone answers: none".into()
    } else {
        format!("410 Gone answers: {}", each.join(", "))
    }
}

/// Runs `window`, then fills the row with what happened in it.
async fn measure(
    row: &mut Row,
    cluster: &Cluster,
    provider: &Provider,
    published: &Published,
    op: &Fleet,
    window: Duration,
) -> anyhow::Result<()> {
    let _ = cluster.take_writes().await;
    let gone = cluster.gone();
    let operator_writes = op.writes().await;
    let before = provider.snapshot();
    let refreshed = published.refreshed.load(Ordering::Relaxed) + published.issued.load(Ordering::Relaxed);
    let lapsed = published.lapsed.load(Ordering::Relaxed);
    let cpu = op.cpu_seconds();
    tokio::time::sleep(window).await;
    let after = provider.snapshot();
    row.token_requests = after.requests - before.requests;
    row.provider_errors = after.errors - before.errors;
    row.refreshes = published.refreshed.load(Ordering::Relaxed) + published.issued.load(Ordering::Relaxed) - refreshed;
    row.peak_token_rps = provider.peak_rps(before.at + 1);
    row.cpu_secs = op.cpu_seconds() - cpu;
    row.peak_rss_mib = op.peak_rss_kib() as f64 / 1024.0;
    row.not_ready = row.n - cluster.ready().await?;
    row.lapsed = published.lapsed.load(Ordering::Relaxed) - lapsed;
    row.writes = writes_since(cluster, op, &operator_writes).await;
    row.note(&op.rss_note());
    row.note(&gone_note(cluster, &gone));
    Ok(())
}

/// API writes since `cluster.take_writes()` was last called: as the API server counted them
/// where it tells, else as the operator counted them (its counters less `operator_before`).
async fn writes_since(cluster: &Cluster, op: &Fleet, operator_before: &BTreeMap<String, u64>) -> Option<Writes> {
    match cluster.take_writes().await {
        Some(w) => Some(w),
        None => Some(Writes {
            source: WriteSource::Operator,
            by_kind: counting::delta(operator_before, &op.writes().await),
        }),
    }
}

async fn run_size(n: usize, o: &Options, dir: &Path, rows: &mut Vec<Row>) -> anyhow::Result<()> {
    let ttl_secs = o.ttl(n);
    let ttl = Duration::from_secs(ttl_secs);
    let window = ttl * o.ttls as u32;
    let ready_timeout = Duration::from_secs(600);
    let provider = Provider::start(ttl_secs, o.latency).await;
    let token_url = format!("{}/token", provider.url());
    let run = |name: &str| format!("{n}-{name}");
    let real = std::env::var_os("KUBECONFIG").is_some();

    // Cold start: everything created within a second, then the operator starts.
    let cluster = if real {
        Cluster::real().await?
    } else {
        Cluster::fake(dir, o).await
    };
    let published = watch_published(cluster.client(), cluster.prefix().to_string());
    let seeded = cluster.seed(n, &token_url, 0).await?;
    let _ = cluster.take_writes().await;
    let before = provider.snapshot();
    *provider.first_issue.lock().unwrap() = FirstIssue::default();
    eprintln!("N={n}: {n} ConnectorAuths created in {seeded:.2?}; cold start (TTL {ttl_secs} s)");
    let gone = cluster.gone();
    let mut op = Fleet::start(&cluster, o, dir, &run("main"))?;
    let ready = wait_ready(&cluster, &mut op, n, ready_timeout).await?;
    // Token calls until each resource's first token; renewals of tokens issued early in a cold
    // start longer than their renewal point are not cold-start calls.
    let calls = std::mem::take(&mut *provider.first_issue.lock().unwrap());
    let mut cold = Row {
        scenario: "cold start".into(),
        n,
        ready_secs: Some(ready),
        refreshes: published.issued.load(Ordering::Relaxed),
        token_requests: calls.until_issued,
        renewals_within: calls.after_issued,
        peak_token_rps: provider.peak_rps(before.at),
        peak_rss_mib: op.peak_rss_kib() as f64 / 1024.0,
        cpu_secs: op.cpu_seconds(),
        writes: writes_since(&cluster, &op, &BTreeMap::new()).await,
        note: format!("created within {seeded:.1?}"),
        ..Row::default()
    };
    if calls.after_issued > 0 {
        cold.note.push_str(&format!(
            "; † {} token calls renewed tokens issued earlier in this cold start (it outlasted their \
             renewal point at ~2/3 of the TTL): left out of token requests, included in API writes; \
             a --ttl above 3 × {ready:.0} s avoids them",
            calls.after_issued
        ));
        eprintln!(
            "N={n}: the cold start ({ready:.0} s) outlasted the renewal point of its first tokens; \
             pass --ttl above {:.0} for cold-start write counts without renewals",
            ready * 3.0
        );
    }
    cold.note(&op.rss_note());
    cold.note(&gone_note(&cluster, &gone));
    // Let the watch catch up with the last outputs before counting issuances.
    tokio::time::sleep(Duration::from_secs(2)).await;
    cold.refreshes = published.issued.load(Ordering::Relaxed);
    eprintln!("N={n}: all Ready after {ready:.1} s");
    rows.push(cold);

    // Steady state: begins with the renewal wave of the fleet issued together (mass expiry).
    if o.runs(Scenario::Steady) {
        eprintln!("N={n}: steady state for {window:?}");
        let mut steady = Row {
            scenario: format!("steady state, {} TTLs (incl. mass expiry)", o.ttls),
            n,
            ..Row::default()
        };
        measure(&mut steady, &cluster, &provider, &published, &op, window).await?;
        rows.push(steady);
    }

    if o.runs(Scenario::Errors) {
        eprintln!("N={n}: {}% provider errors for {window:?}", o.error_rate * 100.0);
        provider.set_error_rate(o.error_rate);
        let mut errors = Row {
            scenario: format!("{}% provider errors, {} TTLs", o.error_rate * 100.0, o.ttls),
            n,
            ..Row::default()
        };
        measure(&mut errors, &cluster, &provider, &published, &op, window).await?;
        provider.set_error_rate(0.0);
        rows.push(errors);
    }
    if o.runs(Scenario::Kill) {
        if o.replicas > 1 {
            rows.push(kill(n, o, &cluster, &provider, &published, &mut op).await?);
        } else {
            eprintln!("N={n}: the kill scenario needs --replicas above 1; skipped");
        }
    }
    if o.runs(Scenario::Restart) {
        rows.push(restart(n, o, dir, &cluster, &provider, &published, op).await?);
    } else {
        op.stop()?;
    }
    published.stop.store(true, Ordering::Relaxed);
    cluster.cleanup().await;
    drop(cluster);
    provider.ttl.store(ttl_secs, Ordering::Relaxed);

    // Unrelated Secrets: a fresh cold start with many large Secrets around, then one TTL.
    let unrelated = o.unrelated.unwrap_or(if real { 0 } else { 10_000 });
    if o.runs(Scenario::Unrelated) && unrelated > 0 {
        eprintln!("N={n}: cold start with {unrelated} unrelated 100 KB Secrets");
        let cluster = if real {
            Cluster::real().await?
        } else {
            Cluster::fake(dir, o).await
        };
        let published = watch_published(cluster.client(), cluster.prefix().to_string());
        cluster.seed(n, &token_url, unrelated).await?;
        let _ = cluster.take_writes().await;
        let mut op = Fleet::start(&cluster, o, dir, &run("unrelated"))?;
        let ready = wait_ready(&cluster, &mut op, n, ready_timeout).await?;
        let mut row = Row {
            scenario: format!("{unrelated} unrelated 100 KB Secrets, cold start + 1 TTL"),
            n,
            ready_secs: Some(ready),
            ..Row::default()
        };
        measure(&mut row, &cluster, &provider, &published, &op, ttl).await?;
        row.writes = None; // this row is about time and memory
        rows.push(row);
        op.stop()?;
        published.stop.store(true, Ordering::Relaxed);
        cluster.cleanup().await;
    }
    Ok(())
}

/// Kills (SIGKILL) the replica holding the most shards, at the start of a window of `--ttls`
/// TTLs: the row's time is from the kill until every shard it held is held by another replica
/// (its Leases run out first), and the window shows what that cost the survivors' resources
/// (tokens lapsed, not Ready at the end) and their memory. No replacement is started.
async fn kill(
    n: usize,
    o: &Options,
    cluster: &Cluster,
    provider: &Provider,
    published: &Published,
    op: &mut Fleet,
) -> anyhow::Result<Row> {
    let shards = o.shards();
    let window = Duration::from_secs(o.ttl(n)) * o.ttls as u32;
    let holders = cluster.shard_holders(shards).await?;
    let holds = |id: &str| -> Vec<u32> {
        (0..shards)
            .filter(|&s| holders[s as usize].as_deref() == Some(id))
            .collect()
    };
    let victim = (0..op.replicas.len())
        .max_by_key(|&i| holds(&op.replicas[i].identity).len())
        .context("no replica to kill")?;
    let dead = op.replicas.remove(victim);
    let its = holds(&dead.identity);
    let dead_rss = dead.peak_rss_kib() as f64 / 1024.0;
    let identity = dead.identity.clone();
    eprintln!("N={n}: killing {identity} (shards {its:?}), then {window:?}");
    let mut row = Row {
        scenario: format!(
            "replica holding {} of {shards} shards killed, {} TTLs",
            its.len(),
            o.ttls
        ),
        n,
        ..Row::default()
    };
    published.trace.lock().unwrap().clear();
    published.tracing.store(true, Ordering::Relaxed);
    dead.signal("-KILL")?;
    let killed = Instant::now();
    drop(dead);
    let taken_over = async {
        loop {
            let now = cluster.shard_holders(shards).await?;
            if its
                .iter()
                .all(|&s| now[s as usize].as_ref().is_some_and(|h| *h != identity))
            {
                return anyhow::Ok(Some(killed.elapsed().as_secs_f64()));
            }
            if killed.elapsed() > window {
                return Ok(None);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let (taken_over, measured) = tokio::join!(taken_over, measure(&mut row, cluster, provider, published, op, window));
    measured?;
    published.tracing.store(false, Ordering::Relaxed);
    row.ready_secs = taken_over?;
    // The refreshes of the killed replica's resources (outputs are `<name>-token`).
    let trace = std::mem::take(&mut *published.trace.lock().unwrap());
    let (theirs, others): (Vec<&Traced>, Vec<&Traced>) = trace.iter().partition(|t| {
        let name = t.secret.strip_suffix("-token").unwrap_or(&t.secret);
        its.contains(&shard_of(&t.namespace, name, shards))
    });
    let first = theirs.iter().map(|t| t.at).min().map(|at| at - killed);
    let lapsed = |ts: &[&Traced]| ts.iter().filter(|t| t.lapsed).count();
    // Tokens still expired at the end of the window lapsed too, without a refresh yet.
    let expired = published.expired();
    let expired_theirs = expired
        .iter()
        .filter(|key| {
            let (ns, secret) = key.split_once('/').unwrap_or_default();
            its.contains(&shard_of(ns, secret.strip_suffix("-token").unwrap_or(secret), shards))
        })
        .count();
    row.lapsed += expired.len() as u64;
    let after = cluster.shard_holders(shards).await?;
    let survivors: Vec<String> = op
        .replicas
        .iter()
        .map(|r| {
            let held = after.iter().filter(|h| h.as_deref() == Some(&r.identity)).count();
            format!("{} {held}", r.identity)
        })
        .collect();
    let mut note = format!(
        "time: from the SIGKILL until every shard {identity} held was held by another replica{}; \
         first refresh of its resources after {}; tokens lapsed: refreshed late {} of its resources \
         and {} others, still expired at the end {} of its and {} others; \
         {identity}'s peak RSS before the kill {dead_rss:.1} MiB; shards held at the end: {}",
        if row.ready_secs.is_none() {
            " (not within the window)"
        } else {
            ""
        },
        first.map_or("none within the window".into(), |d| format!("{:.1} s", d.as_secs_f64())),
        lapsed(&theirs),
        lapsed(&others),
        expired_theirs,
        expired.len() - expired_theirs,
        survivors.join(", ")
    );
    std::mem::swap(&mut row.note, &mut note);
    row.note(&note);
    Ok(row)
}

/// Restart with every token valid. Tokens renewed in the normal course during the window would
/// blur the count, so first every resource renews once onto hour-long tokens; then `op` stops
/// and a new fleet starts.
async fn restart(
    n: usize,
    o: &Options,
    dir: &Path,
    cluster: &Cluster,
    provider: &Provider,
    published: &Published,
    mut op: Fleet,
) -> anyhow::Result<Row> {
    let ready_timeout = Duration::from_secs(600);
    let ttl = Duration::from_secs(o.ttl(n));
    eprintln!("N={n}: hour-long tokens for one renewal cycle, then restart");
    provider.ttl.store(3600, Ordering::Relaxed);
    let renewed = published.refreshed.load(Ordering::Relaxed);
    let started = Instant::now();
    while published.refreshed.load(Ordering::Relaxed) - renewed < n as u64 {
        op.check_alive()?;
        if started.elapsed() > ttl * 2 + ready_timeout {
            bail!("not every resource renewed onto a long-lived token");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    op.stop()?;
    let _ = cluster.take_writes().await;
    let before = provider.snapshot();
    let gone = cluster.gone();
    let mut op = Fleet::start(cluster, o, dir, &format!("{n}-restart"))?;
    let started = Instant::now();
    while op.metric("connectorauth_reconciles_total").await < n as f64 {
        op.check_alive()?;
        if started.elapsed() > ready_timeout {
            bail!("restart: not every ConnectorAuth reconciled");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let caught_up = started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let rss = op.rss_note();
    let mut row = Row {
        scenario: "restart, all tokens valid".into(),
        n,
        ready_secs: Some(caught_up),
        token_requests: provider.snapshot().requests - before.requests,
        peak_rss_mib: op.peak_rss_kib() as f64 / 1024.0,
        cpu_secs: op.cpu_seconds(),
        writes: writes_since(cluster, &op, &BTreeMap::new()).await,
        note: "time: until every resource was reconciled once; tokens valid for an hour".into(),
        ..Row::default()
    };
    row.note(&rss);
    row.note(&gone_note(cluster, &gone));
    row.not_ready = n - cluster.ready().await?;
    op.stop()?;
    Ok(row)
}

// ------------------------------------------------------------------ the report

fn report(rows: &[Row], o: &Options) -> String {
    let mut s = String::new();
    let ttls = o
        .sizes
        .iter()
        .map(|&n| format!("{} s for N = {n}", o.ttl(n)))
        .collect::<Vec<_>>()
        .join(", ");
    let _ = writeln!(
        s,
        "TTL {}, provider latency {} ms, operator flags: `{}`, {} operator replica{}; {}.\n",
        ttls,
        o.latency.as_millis(),
        if o.operator_args.is_empty() {
            "(defaults)".to_string()
        } else {
            o.operator_args.join(" ")
        },
        o.replicas,
        if o.replicas == 1 { "" } else { "s" },
        if std::env::var_os("KUBECONFIG").is_some() {
            "real cluster (KUBECONFIG)"
        } else {
            "in-process test API server"
        }
    );
    let _ = writeln!(
        s,
        "| N | scenario | time (s) | refreshes | token requests / refresh | Secret writes / refresh | API writes / refresh | API writes counted by | peak token req/s | peak RSS (MiB) | CPU s / 1,000 refreshes | tokens lapsed | not Ready at end |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for r in rows {
        let restart = r.scenario.starts_with("restart");
        let dagger = if r.renewals_within > 0 { " †" } else { "" };
        let per = |v: u64| {
            if restart {
                v.to_string()
            } else {
                r.per_refresh(v) + dagger
            }
        };
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.1} | {} | {} | {} |",
            r.n,
            r.scenario,
            r.ready_secs.map(|t| format!("{t:.1}")).unwrap_or("–".into()),
            if restart { "–".into() } else { r.refreshes.to_string() },
            if restart {
                format!("{} calls", r.token_requests)
            } else {
                r.per_refresh(r.token_requests)
            },
            match r.secret_writes() {
                None => "–".into(),
                Some(w) if restart => format!("{w} writes"),
                Some(w) => per(w),
            },
            match r.api_writes() {
                None => "–".into(),
                Some(w) if restart => format!("{w} writes"),
                Some(w) => per(w),
            },
            r.writes.as_ref().map_or("–", |w| w.source.label()),
            if restart {
                "–".into()
            } else {
                r.peak_token_rps.to_string()
            },
            r.peak_rss_mib,
            if r.refreshes == 0 || restart {
                "–".into()
            } else {
                format!("{:.2}", r.cpu_secs * 1000.0 / r.refreshes as f64)
            },
            if restart { "–".into() } else { r.lapsed.to_string() },
            r.not_ready,
        );
    }
    let mut sources: Vec<WriteSource> = rows.iter().filter_map(|r| Some(r.writes.as_ref()?.source)).collect();
    sources.dedup();
    for source in sources {
        let _ = writeln!(
            s,
            "\nAPI writes counted by {}: {}",
            source.label(),
            match source {
                WriteSource::ServerLog => "every request the in-process test API server received.",
                WriteSource::ApiServer =>
                    "the kube-apiserver's request counters (its /metrics) for secrets, connectorauths and \
                     events, any response code; writes by other clients to these resources during the \
                     window count too.",
                WriteSource::Operator =>
                    "the operator's own connectorauth_writes_total, because the API server's /metrics was \
                     not readable; it counts a reconcile that wrote Secrets once however many it wrote, \
                     and no Events, so it is a lower bound.",
            }
        );
    }
    let _ = writeln!(
        s,
        "\nAPI writes by verb and resource (per refresh; totals for restart):\n"
    );
    for r in rows {
        let Some(writes) = &r.writes else { continue };
        let restart = r.scenario.starts_with("restart");
        let detail: Vec<String> = writes
            .by_kind
            .iter()
            .map(|(k, v)| {
                if restart {
                    format!("{k} {v}")
                } else {
                    format!("{k} {}", r.per_refresh(*v))
                }
            })
            .collect();
        let mut extra = if r.provider_errors > 0 {
            format!(" (provider errors: {})", r.provider_errors)
        } else {
            String::new()
        };
        if !r.note.is_empty() {
            extra.push_str(&format!("; {}", r.note));
        }
        let _ = writeln!(
            s,
            "- N={} {}: {}{extra}",
            r.n,
            r.scenario,
            if detail.is_empty() {
                "none".into()
            } else {
                detail.join(", ")
            }
        );
    }
    s
}

fn main() -> anyhow::Result<()> {
    let o = options()?;
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("../bench");
    std::fs::create_dir_all(&dir)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let mut rows = Vec::new();
    rt.block_on(async {
        for &n in &o.sizes {
            run_size(n, &o, &dir, &mut rows).await?;
            eprintln!("{}", report(&rows, &o));
        }
        anyhow::Ok(())
    })?;
    let table = report(&rows, &o);
    println!("{table}");
    let out = dir.join("scale.md");
    std::fs::write(&out, &table)?;
    eprintln!("written to {}", out.display());
    Ok(())
}
