//! Settings for a test operator with a caller-chosen `Config` and leader election, e.g. with
//! the OAuth2 consent callback enabled; it runs as `support::operator::Operator`. Include it with
//! `#[path = "support/custom_operator.rs"] mod custom_operator;`.

use std::net::SocketAddr;

use connector_auth_operator::controller::{Config, ConsentConfig, LeaderElection};

use crate::support::operator::{Operator, Source, default_config};

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
            config: default_config(identity),
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
            shards: 1,
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
            advertise_url: None,
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

/// A running operator: `support::operator::Operator` started with these settings.
pub struct CustomOperator;

impl CustomOperator {
    /// Starts an operator against the API server at `url`.
    pub fn start(url: &str, settings: Settings) -> Operator {
        Operator::run(Source::Url(url.to_string()), settings.config, settings.election)
    }
}
