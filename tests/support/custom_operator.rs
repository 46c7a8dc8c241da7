//! An operator process with a caller-chosen `Config` and leader election, e.g. with the OAuth2
//! consent callback enabled. Like `operator::Operator` it has its own runtime, so dropping it
//! stops everything it runs at once. Include it with
//! `#[path = "support/custom_operator.rs"] mod custom_operator;`.

use std::net::SocketAddr;
use std::time::Duration;

use connector_auth_operator::controller::{self, Config, ConsentConfig, LeaderElection};
use connector_auth_operator::engine::HttpSettings;
use tokio::sync::oneshot;

/// What a test operator runs with.
pub struct Settings {
    pub config: Config,
    pub election: Option<LeaderElection>,
}

impl Settings {
    /// The defaults of `support::operator::Operator`: four reconciles at once, every
    /// namespace, no consent, no election.
    pub fn new(identity: &str) -> Settings {
        Settings {
            config: Config {
                namespaces: vec![],
                concurrency: 4,
                redirect_url: None,
                http: HttpSettings::default(),
                identity: identity.to_string(),
                consent: None,
            },
            election: None,
        }
    }

    /// Watches only these namespaces (`--watch-namespaces`).
    pub fn namespaces(mut self, namespaces: &[&str]) -> Settings {
        self.config.namespaces = namespaces.iter().map(|n| n.to_string()).collect();
        self
    }

    /// Elects a leader with the Lease `lease_namespace/lease_name` (2 s lease).
    pub fn election(mut self, lease_name: &str, lease_namespace: &str) -> Settings {
        self.election = Some(LeaderElection {
            lease_name: lease_name.into(),
            lease_namespace: lease_namespace.into(),
            lease_duration: 2,
        });
        self
    }

    /// Serves the consent callback on a free loopback port; the signing key lives in
    /// `key_namespace` (the operator's own namespace, like `POD_NAMESPACE` in a cluster).
    pub fn consent(mut self, key_namespace: &str) -> Settings {
        let listen = free_port();
        self.config.consent = Some(ConsentConfig {
            listen,
            external_url: format!("http://{listen}"),
            key_namespace: key_namespace.into(),
        });
        self
    }
}

fn free_port() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// A running operator.
pub struct CustomOperator {
    rt: Option<tokio::runtime::Runtime>,
    stop: Option<oneshot::Sender<()>>,
    done: Option<oneshot::Receiver<anyhow::Result<()>>>,
}

impl CustomOperator {
    /// Starts an operator against the API server at `url`.
    pub fn start(url: &str, settings: Settings) -> CustomOperator {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let (done_tx, done_rx) = oneshot::channel();
        let url = url.to_string();
        let metrics = free_port();
        rt.spawn(async move {
            let client = kube::Client::try_from(kube::Config::new(url.parse().unwrap())).unwrap();
            let r = controller::run(client, settings.config, settings.election, metrics, async {
                let _ = stop_rx.await;
            })
            .await;
            let _ = done_tx.send(r);
        });
        CustomOperator {
            rt: Some(rt),
            stop: Some(stop_tx),
            done: Some(done_rx),
        }
    }

    /// Graceful stop (SIGTERM): running reconciles finish, the Lease is released.
    pub async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        let r = tokio::time::timeout(Duration::from_secs(10), self.done.take().unwrap()).await;
        assert!(matches!(r, Ok(Ok(Ok(())))), "operator did not stop cleanly: {r:?}");
        self.rt.take().unwrap().shutdown_background();
    }
}

impl Drop for CustomOperator {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}
