//! An operator process for tests: its own runtime, so `kill` stops everything it runs at once
//! (including lease renewal), like a SIGKILL.

use std::time::Duration;

use connector_auth_operator::controller::{self, Config, LeaderElection};
use tokio::sync::oneshot;

/// Where the operator's client connects.
pub enum Source {
    Url(String),
    /// `KUBECONFIG` or in-cluster configuration.
    Kubeconfig,
}

/// One operator process: its own runtime, so `kill` stops everything it runs at once.
pub struct Operator {
    /// Where it serves /metrics, /healthz and /readyz.
    pub metrics: std::net::SocketAddr,
    rt: Option<tokio::runtime::Runtime>,
    stop: Option<oneshot::Sender<()>>,
    done: Option<oneshot::Receiver<anyhow::Result<()>>>,
}

impl Operator {
    pub fn start(source: Source, identity: &str, election: bool) -> Operator {
        Self::start_in(source, identity, election, vec![])
    }

    pub fn start_in(source: Source, identity: &str, election: bool, namespaces: Vec<String>) -> Operator {
        Self::start_with(source, identity, election, move |c| c.namespaces = namespaces)
    }

    /// Starts an operator whose `Config` is adjusted by `configure` first.
    pub fn start_with(source: Source, identity: &str, election: bool, configure: impl FnOnce(&mut Config)) -> Operator {
        if election {
            return Self::start_sharded(source, identity, 1, configure);
        }
        let mut config = default_config(identity);
        configure(&mut config);
        Self::run(source, config, None)
    }

    /// Starts a replica that competes for `shards` shard Leases (2 s each) in `operators`.
    pub fn start_sharded(source: Source, identity: &str, shards: u32, configure: impl FnOnce(&mut Config)) -> Operator {
        let mut config = default_config(identity);
        configure(&mut config);
        let election = LeaderElection {
            lease_name: "connector-auth-operator".into(),
            lease_namespace: "operators".into(),
            lease_duration: 2,
            shards,
        };
        Self::run(source, config, Some(election))
    }

    /// Starts an operator with exactly this `Config` and leader election.
    pub fn run(source: Source, config: Config, election: Option<LeaderElection>) -> Operator {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let (done_tx, done_rx) = oneshot::channel();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let identity = config.identity.clone();
        rt.spawn(async move {
            let client = match source {
                Source::Url(url) => {
                    // Each replica says who it is, so tests can attribute every request.
                    let mut c = kube::Config::new(url.parse().unwrap());
                    c.headers
                        .push((axum::http::header::USER_AGENT, identity.parse().unwrap()));
                    kube::Client::try_from(c).unwrap()
                }
                Source::Kubeconfig => kube::Client::try_default().await.unwrap(),
            };
            let r = controller::run(client, config, election, port, async {
                let _ = stop_rx.await;
            })
            .await;
            let _ = done_tx.send(r);
        });
        Operator {
            metrics: port,
            rt: Some(rt),
            stop: Some(stop_tx),
            done: Some(done_rx),
        }
    }

    /// Graceful stop (SIGTERM).
    pub async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        let r = tokio::time::timeout(Duration::from_secs(10), self.done.take().unwrap()).await;
        assert!(matches!(r, Ok(Ok(Ok(())))), "operator did not stop cleanly: {r:?}");
        self.rt.take().unwrap().shutdown_background();
    }

    /// Abrupt stop: every task of the process ends wherever it is.
    pub fn kill(mut self) {
        self.rt.take().unwrap().shutdown_background();
    }
}

/// Starts one replica per identity, all released by one barrier at the same instant; each
/// with leader election and whatever `configure` adds for it.
pub fn start_together(
    url: &str,
    identities: &[&str],
    configure: impl Fn(&str, &mut Config) + Send + Sync + 'static,
) -> Vec<Operator> {
    start_sharded_together(url, identities, 1, configure)
}

/// [`start_together`], with the resources split into `shards` shards.
pub fn start_sharded_together(
    url: &str,
    identities: &[&str],
    shards: u32,
    configure: impl Fn(&str, &mut Config) + Send + Sync + 'static,
) -> Vec<Operator> {
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(identities.len()));
    let configure = std::sync::Arc::new(configure);
    let threads: Vec<_> = identities
        .iter()
        .map(|id| {
            let (barrier, configure, url, id) = (barrier.clone(), configure.clone(), url.to_string(), id.to_string());
            std::thread::spawn(move || {
                barrier.wait();
                Operator::start_sharded(Source::Url(url), &id, shards, |c| configure(&id, c))
            })
        })
        .collect();
    threads.into_iter().map(|t| t.join().unwrap()).collect()
}

/// Which replicas say they lead (`connectorauth_leader`), read from their /metrics.
pub async fn leaders(ops: &[Operator]) -> Vec<usize> {
    let reads = ops.iter().map(|op| {
        let url = format!("http://{}/metrics", op.metrics);
        async move {
            match reqwest::get(url).await {
                Ok(r) => r.text().await.unwrap_or_default(),
                Err(_) => String::new(),
            }
        }
    });
    futures::future::join_all(reads)
        .await
        .into_iter()
        .enumerate()
        .filter(|(_, body)| body.lines().any(|l| l.trim() == "connectorauth_leader 1"))
        .map(|(i, _)| i)
        .collect()
}

/// Test defaults: four reconciles at once, every namespace, no consent.
pub fn default_config(identity: &str) -> Config {
    Config {
        namespaces: vec![],
        concurrency: 4,
        redirect_url: None,
        http: super::loopback(),
        identity: identity.to_string(),
        consent: None,
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}
