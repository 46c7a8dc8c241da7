//! What every reconcile shares: the client, the shared pass's core, Events, metrics, settings,
//! and what is remembered per resource. Plain state; how a pass reads and stores through it is
//! `source.rs`, how a consent callback uses it `consent_host.rs`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use kube::{Client, Resource, ResourceExt};

use super::config::{Config, LeaderElection};
use super::events::Publisher;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

use super::metrics::{FailingLabels, Metrics, ResourceLabels};
use super::status::Health;
use super::store::LastRecords;
use crate::api::{ConnectorAuth, ConnectorAuthStatus};
use crate::engine::Engine;
use crate::reconcile::{Core, Lead};

/// The statuses this process wrote that the cache may not show yet, by `namespace/name`.
/// Each is dropped as soon as the watch brings the version the write made (not by the next
/// pass, which may be an hour away: a cold start writes every resource's status at once, and
/// kept until then they were ~1 KB each), or when a pass finds the cache showing it.
#[derive(Default)]
struct StatusesAhead(BTreeMap<String, Written>);

struct Written {
    uid: Option<String>,
    /// The resource version the write made.
    version: Option<String>,
    status: ConnectorAuthStatus,
}

fn key_of(ca: &ConnectorAuth) -> String {
    super::cache::key(ca.meta().namespace.as_deref(), ca.meta().name.as_deref())
}

impl StatusesAhead {
    fn previous(&mut self, ca: &ConnectorAuth) -> Option<ConnectorAuthStatus> {
        let key = key_of(ca);
        match self.0.get(&key) {
            Some(w) if w.uid == ca.uid() && ca.status.as_ref() != Some(&w.status) => Some(w.status.clone()),
            Some(_) => {
                self.0.remove(&key);
                ca.status.clone()
            }
            None => ca.status.clone(),
        }
    }

    fn is(&self, ca: &ConnectorAuth, status: &ConnectorAuthStatus) -> bool {
        self.0
            .get(&key_of(ca))
            .is_some_and(|w| w.uid == ca.uid() && w.status == *status)
    }

    fn wrote(&mut self, ca: &ConnectorAuth, status: ConnectorAuthStatus, version: Option<String>) {
        let written = Written {
            uid: ca.uid(),
            version,
            status,
        };
        self.0.insert(key_of(ca), written);
    }

    fn cached(&mut self, key: &str, version: Option<&str>) {
        if version.is_some() && self.0.get(key).is_some_and(|w| w.version.as_deref() == version) {
            self.0.remove(key);
        }
    }

    fn forget(&mut self, ca: &ConnectorAuth) {
        self.0.remove(&key_of(ca));
    }
}

/// Shared by all reconciles.
pub struct Context {
    pub client: Client,
    pub core: Core,
    pub events: Publisher,
    pub metrics: Metrics,
    pub config: Config,
    /// Where the Lease is, for a standby to find the leader's callback.
    pub election: Option<LeaderElection>,
    pub(super) memory: LastRecords,
    /// The status last written per resource (by `namespace/name`), until the cache shows it.
    /// Our own Secret writes trigger passes that may still see the previous status in the
    /// cache; this avoids patching it twice.
    written_status: Mutex<StatusesAhead>,
    /// The `reason` label of each resource's `refresh_failing` series, to remove it when the
    /// resource recovers (only failing resources are here).
    failing: Mutex<BTreeMap<(String, String), String>>,
    /// The same for `verification_failing`.
    verification_failing: Mutex<BTreeMap<(String, String), String>>,
}

impl Context {
    pub fn new(
        client: Client,
        mut config: Config,
        metrics: Metrics,
        election: Option<LeaderElection>,
        lead: Lead,
    ) -> anyhow::Result<Arc<Self>> {
        if let Some(c) = &config.consent {
            config.redirect_url.get_or_insert_with(|| c.redirect_url());
        }
        let engine = Engine::new(config.http.clone())?;
        Ok(Arc::new(Context {
            events: Publisher::new(client.clone(), "connector-auth-operator", &config.identity),
            core: Core::new(engine, config.redirect_url.clone(), lead),
            client,
            metrics,
            config,
            election,
            memory: LastRecords::default(),
            written_status: Mutex::default(),
            failing: Mutex::default(),
            verification_failing: Mutex::default(),
        }))
    }

    /// The resource's current status: what we last wrote if the cache has not caught up.
    pub(crate) fn previous_status(&self, ca: &ConnectorAuth) -> Option<ConnectorAuthStatus> {
        self.written_status.lock().expect("lock").previous(ca)
    }

    /// Whether `status` is what the resource has, or what we last wrote for it.
    pub(crate) fn status_is(&self, ca: &ConnectorAuth, status: &ConnectorAuthStatus) -> bool {
        ca.status.as_ref() == Some(status) || self.written_status.lock().expect("lock").is(ca, status)
    }

    /// We wrote `status`; the API server made it `version` of the resource.
    pub(crate) fn wrote_status(&self, ca: &ConnectorAuth, status: ConnectorAuthStatus, version: Option<String>) {
        self.written_status.lock().expect("lock").wrote(ca, status, version);
    }

    /// The cache now holds `version` of the resource `key`.
    pub(crate) fn cached(&self, key: &str, version: Option<&str>) {
        self.written_status.lock().expect("lock").cached(key, version);
    }

    /// Whether this process may act on `ca` now (restart its workloads, revoke its tokens, move
    /// its finalizer): the one place that asks the lead for these side effects.
    pub(crate) fn leads(&self, ca: &ConnectorAuth) -> bool {
        self.core
            .lead
            .holds(&crate::reconcile::namespace_of(ca), &ca.name_any())
    }

    /// The resource's record as last loaded or saved by a pass.
    pub(crate) fn recall(&self, ca: &ConnectorAuth) -> Option<crate::reconcile::record::Record> {
        let uid = ca.uid()?;
        self.memory.get(&uid)
    }

    /// Drops what is kept per resource once it is deleted, so memory follows the live set
    /// rather than every resource ever seen.
    pub(crate) fn forget(&self, ca: &ConnectorAuth) {
        let uid = ca.uid().unwrap_or_default();
        self.memory.remove(&uid);
        self.written_status.lock().expect("lock").forget(ca);
        self.core.ledger.forget(ca);
        self.metrics.token_expiry.remove(&ResourceLabels {
            namespace: ca.namespace().unwrap_or_default(),
            name: ca.name_any(),
        });
        self.observe_health(ca, &Health::default());
    }

    /// Keeps the per-resource alerting series (`refresh_failing`, `consent_required`,
    /// `verification_failing`) in step with what the resource's status says.
    pub(crate) fn observe_health(&self, ca: &ConnectorAuth, health: &Health) {
        let (namespace, name) = (ca.namespace().unwrap_or_default(), ca.name_any());
        let resource = ResourceLabels {
            namespace: namespace.clone(),
            name: name.clone(),
        };
        if health.consent_required {
            self.metrics.consent_required.get_or_create(&resource).set(1);
        } else {
            self.metrics.consent_required.remove(&resource);
        }
        let key = (namespace, name);
        follow(&self.metrics.failing, &self.failing, &key, health.failing.as_ref());
        follow(
            &self.metrics.verification_failing,
            &self.verification_failing,
            &key,
            health.verification_failing.as_ref(),
        );
    }
}

/// Sets a resource's series of a `*_failing` family to 1 with the current reason, or removes
/// it; `seen` remembers each resource's reason label so the series of an old reason goes too.
fn follow(
    family: &Family<FailingLabels, Gauge>,
    seen: &Mutex<BTreeMap<(String, String), String>>,
    key: &(String, String),
    reason: Option<&String>,
) {
    let labels = |reason: String| FailingLabels {
        namespace: key.0.clone(),
        name: key.1.clone(),
        reason,
    };
    let mut seen = seen.lock().expect("lock");
    if let Some(old) = seen.remove(key).filter(|old| reason != Some(old)) {
        family.remove(&labels(old));
    }
    if let Some(reason) = reason {
        family.get_or_create(&labels(reason.clone())).set(1);
        seen.insert(key.clone(), reason.clone());
    }
}

/// The object reference of a resource, for Events.
pub(crate) fn regarding(ca: &ConnectorAuth) -> k8s_openapi::api::core::v1::ObjectReference {
    ca.object_ref(&())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resource(uid: &str, status: Option<&str>) -> ConnectorAuth {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "connectorauth.dev/v1alpha1", "kind": "ConnectorAuth",
            "metadata": {"name": "crm", "namespace": "team-a", "uid": uid},
            "spec": {"credentialsRef": {"name": "c"}, "apiKey": {}},
            "status": status.map(|s| serde_json::json!({"secretName": s})),
        }))
        .unwrap()
    }

    fn status(s: &str) -> ConnectorAuthStatus {
        ConnectorAuthStatus {
            secret_name: Some(s.into()),
            ..ConnectorAuthStatus::default()
        }
    }

    #[test]
    fn a_written_status_stands_in_for_the_cached_one_until_the_watch_brings_its_version() {
        let mut w = StatusesAhead::default();
        let stale = resource("u-1", Some("old"));
        w.wrote(&stale, status("new"), Some("42".into()));
        assert_eq!(w.previous(&stale), Some(status("new")), "the cache has not caught up");
        assert!(w.is(&stale, &status("new")));
        w.cached("team-a/crm", Some("41"));
        assert!(w.is(&stale, &status("new")), "an older version does not show it");
        w.cached("team-a/crm", Some("42"));
        assert!(w.0.is_empty(), "the version the write made is cached: nothing kept");
        assert_eq!(w.previous(&stale), Some(status("old")));
    }

    #[test]
    fn a_written_status_is_dropped_once_a_pass_sees_it_cached_and_ignored_for_a_new_resource() {
        let mut w = StatusesAhead::default();
        w.wrote(&resource("u-1", Some("old")), status("new"), None);
        let recreated = resource("u-2", Some("other"));
        assert!(!w.is(&recreated, &status("new")));
        assert_eq!(w.previous(&recreated), Some(status("other")));
        assert!(w.0.is_empty());

        w.wrote(&resource("u-1", Some("old")), status("new"), None);
        assert_eq!(w.previous(&resource("u-1", Some("new"))), Some(status("new")));
        assert!(w.0.is_empty(), "the cache shows it");
    }
}
