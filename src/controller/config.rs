//! Operator settings.

use std::net::SocketAddr;

use crate::engine;
use crate::reconcile::callback::CALLBACK_PATH;

/// Operator settings.
#[derive(Clone, Debug)]
pub struct Config {
    /// Namespaces to watch; empty: all.
    pub namespaces: Vec<String>,
    /// Reconciles running at once.
    pub concurrency: u16,
    /// `{{ redirect_url }}` for templates.
    pub redirect_url: Option<String>,
    pub http: engine::HttpSettings,
    /// This replica's identity: the Lease holder name, the Events' reporting instance.
    pub identity: String,
    /// OAuth2 consent: where the callback listens, its external base URL (what browsers reach)
    /// and the namespace of the signing-key Secret.
    pub consent: Option<ConsentConfig>,
}

#[derive(Clone, Debug)]
pub struct ConsentConfig {
    pub listen: SocketAddr,
    pub external_url: String,
    pub key_namespace: String,
    /// Where the other replicas reach this one's callback listener (`http://<pod IP>:<port>`),
    /// so a standby can hand a callback to the leader. Default: the listen address, when it
    /// is a specific one.
    pub advertise_url: Option<String>,
}

impl ConsentConfig {
    /// `{{ redirect_url }}`: the callback URL as providers must redirect to it.
    pub fn redirect_url(&self) -> String {
        format!("{}{}", self.external_url.trim_end_matches('/'), CALLBACK_PATH)
    }

    /// The base URL other replicas use to reach this replica's callback listener.
    pub fn advertised(&self, bound: SocketAddr) -> Option<String> {
        self.advertise_url
            .clone()
            .or_else(|| (!bound.ip().is_unspecified()).then(|| format!("http://{bound}")))
    }
}

/// Leader-election settings.
#[derive(Clone, Debug)]
pub struct LeaderElection {
    pub lease_name: String,
    pub lease_namespace: String,
    pub lease_duration: u64,
    /// Shards the resources are split into, one Lease each (1: one Lease, one writer).
    pub shards: u32,
}
