//! Prometheus metrics.

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResourceLabels {
    pub namespace: String,
    pub name: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// `issued`, `refreshed` or `failed`.
    pub result: String,
    /// Stable reason (`RenewalDue`, `InputsChanged`, or an error reason).
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FailingLabels {
    pub namespace: String,
    pub name: String,
    /// The reason of the failure.
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WriteLabels {
    /// `output`, `state`, `status` or `event`.
    pub kind: String,
}

#[derive(Clone)]
pub struct Metrics {
    pub registry: Arc<Registry>,
    pub token_expiry: Family<ResourceLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    pub refreshes: Family<OutcomeLabels, Counter>,
    pub refresh_duration: Histogram,
    pub reconciles: Counter,
    pub reconcile_errors: Family<ReasonLabels, Counter>,
    pub writes: Family<WriteLabels, Counter>,
    pub skipped_writes: Family<WriteLabels, Counter>,
    /// 1 while this replica holds at least one shard (and so may write), else 0.
    pub leader: Gauge,
    /// How many shards this replica holds.
    pub shards_held: Gauge,
    /// 1 per resource that cannot renew (refused, or renewal failing); no series otherwise,
    /// so a healthy fleet costs nothing here.
    pub failing: Family<FailingLabels, Gauge>,
    /// 1 per resource waiting for a person to grant consent; no series otherwise.
    pub consent_required: Family<ResourceLabels, Gauge>,
    /// 1 per resource whose published credential the provider did not accept when last
    /// verified (`spec.verify`); no series otherwise.
    pub verification_failing: Family<FailingLabels, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("connectorauth");
        let token_expiry = Family::<ResourceLabels, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
        registry.register(
            "token_expiry_timestamp_seconds",
            "When the published token expires (Unix seconds)",
            token_expiry.clone(),
        );
        let refreshes = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "token_requests",
            "Token requests by result and reason",
            refreshes.clone(),
        );
        let refresh_duration = Histogram::new([0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0]);
        registry.register(
            "token_request_duration_seconds",
            "Duration of reconcile passes that requested a token",
            refresh_duration.clone(),
        );
        let reconciles = Counter::default();
        registry.register("reconciles", "Reconcile passes", reconciles.clone());
        let reconcile_errors = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "reconcile_errors",
            "Reconcile passes that failed to talk to the API server",
            reconcile_errors.clone(),
        );
        let writes = Family::<WriteLabels, Counter>::default();
        registry.register(
            "writes",
            "API writes by kind (output Secret, state Secret, status, event)",
            writes.clone(),
        );
        let skipped_writes = Family::<WriteLabels, Counter>::default();
        registry.register(
            "skipped_writes",
            "Writes skipped because nothing changed",
            skipped_writes.clone(),
        );
        let leader = Gauge::default();
        registry.register(
            "leader",
            "1 while this replica holds a shard's Lease and so may send token requests and write",
            leader.clone(),
        );
        let shards_held = Gauge::default();
        registry.register(
            "shards_held",
            "Shards whose Lease this replica holds (resources are split over --shards by namespace/name)",
            shards_held.clone(),
        );
        let failing = Family::<FailingLabels, Gauge>::default();
        registry.register(
            "refresh_failing",
            "1 while a resource cannot renew its token (reason: why); absent otherwise",
            failing.clone(),
        );
        let consent_required = Family::<ResourceLabels, Gauge>::default();
        registry.register(
            "consent_required",
            "1 while a resource waits for a person to grant consent; absent otherwise",
            consent_required.clone(),
        );
        let verification_failing = Family::<FailingLabels, Gauge>::default();
        registry.register(
            "verification_failing",
            "1 while the last verification of a resource's published credential (spec.verify) failed (reason: why); absent otherwise",
            verification_failing.clone(),
        );
        Metrics {
            verification_failing,
            failing,
            consent_required,
            leader,
            shards_held,
            registry: Arc::new(registry),
            token_expiry,
            refreshes,
            refresh_duration,
            reconciles,
            reconcile_errors,
            writes,
            skipped_writes,
        }
    }
}

impl Metrics {
    pub fn write(&self, kind: &str, written: bool) {
        let l = WriteLabels { kind: kind.into() };
        if written {
            self.writes.get_or_create(&l).inc()
        } else {
            self.skipped_writes.get_or_create(&l).inc()
        };
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
