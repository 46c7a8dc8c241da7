//! The proxy's metrics: requests by route and outcome, the upstream's answers, and the age of
//! each route's credential.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteStatus {
    pub route: String,
    /// The HTTP status the workload got.
    pub status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabel {
    pub route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteReason {
    pub route: String,
    pub reason: String,
}

pub struct Metrics {
    pub registry: Registry,
    pub requests: Family<RouteStatus, Counter>,
    pub upstream: Family<RouteStatus, Counter>,
    pub refused: Family<RouteReason, Counter>,
    pub token_age: Family<RouteLabel, Gauge>,
    pub retries: Family<RouteReason, Counter>,
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("connectorauth_proxy");
        let requests = Family::<RouteStatus, Counter>::default();
        registry.register(
            "requests",
            "Requests answered, by route and HTTP status",
            requests.clone(),
        );
        let upstream = Family::<RouteStatus, Counter>::default();
        registry.register(
            "upstream_responses",
            "Upstream answers, by route and HTTP status",
            upstream.clone(),
        );
        let refused = Family::<RouteReason, Counter>::default();
        registry.register(
            "refused",
            "Requests not forwarded, by route and reason (other host, no credential, expired)",
            refused.clone(),
        );
        let token_age = Family::<RouteLabel, Gauge>::default();
        registry.register(
            "token_age_seconds",
            "Seconds since the route's credential was written, when last used",
            token_age.clone(),
        );
        let retries = Family::<RouteReason, Counter>::default();
        registry.register(
            "retries",
            "Requests sent again (after a renewal, or with a DPoP nonce)",
            retries.clone(),
        );
        Metrics {
            registry,
            requests,
            upstream,
            refused,
            token_age,
            retries,
        }
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
