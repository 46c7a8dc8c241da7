//! What the controller watches, and which ConnectorAuths a change concerns. Secrets and
//! ConfigMaps are watched metadata-only and never cached: memory does not grow with the
//! number or size of unrelated objects.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use futures::{StreamExt, TryStreamExt, future};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::Api;
use kube::core::PartialObjectMeta;
use kube::runtime::controller::{self, Controller};
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Resource, ResourceExt};
use tokio::sync::watch;
use tracing::debug;

use super::cache::Cached;
use super::context::Context;
use super::index::Index;
use super::pass::{error_policy, reconcile};
use super::store::{ROLE_LABEL, STATE_SUFFIX};
use crate::api::provider::ClusterConnectorAuthProvider;
use crate::engine::tls::Kind;
use crate::reconcile::shard_of;

/// Which ConnectorAuths a Secret change concerns: the ones reading it (as credentials, CA
/// bundle or client certificate) and the one owning it (output or state Secret).
fn affected(index: &Index, secret: &PartialObjectMeta<Secret>) -> Vec<ObjectRef<Cached>> {
    let ns = secret.metadata.namespace.as_deref();
    let name = secret.metadata.name.as_deref().unwrap_or_default();
    let mut refs: Vec<ObjectRef<Cached>> = secret
        .owner_references()
        .iter()
        .filter(|o| o.kind == "ConnectorAuth" && o.api_version.starts_with(crate::api::GROUP))
        .map(|o| ObjectRef::new(&o.name).within(ns.unwrap_or_default()))
        .collect();
    // A state Secret is private to its owner; any other Secret (an output one included, since
    // outputs can be chained into another resource's credentials) may be read by others.
    let private = secret.labels().get(ROLE_LABEL).map(String::as_str) == Some("state");
    let concerned = index.secret_candidates(ns, name).filter(|ca| {
        let reads = ca.reads();
        let reading = !private && (reads.credentials == name || reads.tls_object(Kind::Secret, name));
        // A resource refused because its output or state name was taken hears when it is
        // freed. (Compared without building names.)
        let own = ca.meta().name.as_deref().unwrap_or_default();
        let output = match reads.output.as_deref() {
            Some(n) => n == name,
            None => name.strip_suffix("-token") == Some(own),
        };
        reading || output || name.strip_suffix(STATE_SUFFIX) == Some(own)
    });
    refs.extend(concerned.map(ObjectRef::from_obj));
    refs
}

/// The references among `refs` that belong to `shard`.
fn in_shard(shard: Option<Shard>, mut refs: Vec<ObjectRef<Cached>>) -> Vec<ObjectRef<Cached>> {
    if let Some(s) = shard {
        refs.retain(|r| s.contains(r.namespace.as_deref(), Some(&r.name)));
    }
    refs
}

/// Which ConnectorAuths use a ClusterConnectorAuthProvider (by `spec.provider`), in every
/// watched namespace: a created, changed or deleted entry changes what they resolve to.
fn users_of_provider(
    index: &Index,
    provider: &PartialObjectMeta<ClusterConnectorAuthProvider>,
) -> Vec<ObjectRef<Cached>> {
    let name = provider.metadata.name.as_deref().unwrap_or_default();
    index
        .provider_candidates(name)
        .filter(|ca| ca.reads().provider.as_deref() == Some(name))
        .map(ObjectRef::from_obj)
        .collect()
}

/// Which ConnectorAuths read a ConfigMap (as CA bundle).
fn readers_of_config_map(index: &Index, cm: &PartialObjectMeta<ConfigMap>) -> Vec<ObjectRef<Cached>> {
    let name = cm.metadata.name.as_deref().unwrap_or_default();
    index
        .config_map_candidates(cm.metadata.namespace.as_deref(), name)
        .filter(|ca| ca.reads().tls_object(Kind::ConfigMap, name))
        .map(ObjectRef::from_obj)
        .collect()
}

/// The index. A panic while it was held (none is expected) would at worst leave one resource
/// out of it until the next relist, which beats failing every later event.
fn lock(index: &Mutex<Index>) -> MutexGuard<'_, Index> {
    index.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One shard of the resources: those whose [`shard_of`] is `index` among `count`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

impl Shard {
    fn contains(&self, namespace: Option<&str>, name: Option<&str>) -> bool {
        shard_of(namespace.unwrap_or_default(), name.unwrap_or_default(), self.count) == self.index
    }
}

/// Runs the controller for one namespace (or all) and one shard (or all) until `shutdown`
/// fires. Resources of other shards are neither cached nor reconciled.
pub async fn run_controller(
    ctx: Arc<Context>,
    namespace: Option<String>,
    shard: Option<Shard>,
    ready: watch::Sender<bool>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    // Deletions trigger too (a deleted output is restored). ConfigMaps matter only as CA
    // bundles: a fixed or created one is used at once.
    let (cas, secrets, config_maps): (
        Api<Cached>,
        Api<PartialObjectMeta<Secret>>,
        Api<PartialObjectMeta<ConfigMap>>,
    ) = match &namespace {
        Some(ns) => (
            Api::namespaced(ctx.client.clone(), ns),
            Api::namespaced(ctx.client.clone(), ns),
            Api::namespaced(ctx.client.clone(), ns),
        ),
        None => (
            Api::all(ctx.client.clone()),
            Api::all(ctx.client.clone()),
            Api::all(ctx.client.clone()),
        ),
    };
    // The cache holds every ConnectorAuth, encoded (see `cache`).
    let (reader, writer) = reflector::store();
    // What the mappers look up, kept in step with the store (see `index`).
    let index = Arc::new(Mutex::new(Index::default()));
    let (follower, followed) = (index.clone(), reader.clone());
    let forget = ctx.clone();
    let ours =
        move |ca: &Cached| shard.is_none_or(|s| s.contains(ca.meta().namespace.as_deref(), ca.meta().name.as_deref()));
    let stream = watcher(cas, watcher::Config::default().any_semantic())
        .default_backoff()
        .try_filter(move |event| {
            future::ready(match event {
                watcher::Event::Apply(ca) | watcher::Event::Delete(ca) | watcher::Event::InitApply(ca) => ours(ca),
                watcher::Event::Init | watcher::Event::InitDone => true,
            })
        })
        .reflect(writer)
        .inspect_ok(move |event| lock(&follower).follow(&followed, event))
        .inspect_ok(move |event| {
            if let watcher::Event::Delete(cached) = event
                && let Ok(ca) = cached.decode()
            {
                forget.forget(&ca);
            }
        })
        .applied_objects();
    let controller = Controller::for_stream(stream, reader.clone())
        .with_config(controller::Config::default().concurrency(ctx.config.concurrency));
    let (secret_index, cm_index, provider_index) = (index.clone(), index.clone(), index);
    // Cluster-scoped, so watched cluster-wide even when the operator watches some namespaces.
    let providers: Api<PartialObjectMeta<ClusterConnectorAuthProvider>> = Api::all(ctx.client.clone());
    let readiness = reader.clone();
    tokio::spawn(async move {
        if readiness.wait_until_ready().await.is_ok() {
            let _ = ready.send(true);
        }
    });
    controller
        .watches(secrets, watcher::Config::default().any_semantic(), move |s| {
            in_shard(shard, affected(&lock(&secret_index), &s))
        })
        .watches(config_maps, watcher::Config::default().any_semantic(), move |cm| {
            in_shard(shard, readers_of_config_map(&lock(&cm_index), &cm))
        })
        .watches(providers, watcher::Config::default().any_semantic(), move |p| {
            users_of_provider(&lock(&provider_index), &p)
        })
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|res| async move {
            if let Err(e) = res {
                debug!(error = %e, "controller event");
            }
        })
        .await;
}
