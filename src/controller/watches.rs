//! What the controller watches, and which ConnectorAuths a change concerns. Secrets and
//! ConfigMaps are watched metadata-only and never cached: memory does not grow with the
//! number or size of unrelated objects.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use std::fmt::Debug;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::{FutureExt, Stream, StreamExt, TryStreamExt, future};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, ListParams};
use kube::core::PartialObjectMeta;
use kube::runtime::controller::{self, Controller};
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tokio::sync::watch;
use tracing::{debug, info, warn};

use super::cache::Cached;
use super::context::Context;
use super::index::Index;
use super::pass::{Scope, error_policy, reconcile};
use super::requeue::Requeues;
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
    let requeues = Arc::new(Requeues::default());
    let forget_requeue = requeues.clone();
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
        .inspect_ok(move |event| match event {
            watcher::Event::Delete(cached) => {
                forget_requeue.set(cached, None);
                if let Ok(ca) = cached.decode() {
                    forget.forget(&ca);
                }
            }
            // The reflector has just made the cache ready. (Told here rather than by a second
            // `wait_until_ready`: kube-runtime wakes only the last of several waiters, so a
            // second one could leave the runner, which waits too, asleep.)
            watcher::Event::InitDone => {
                ready.send_if_modified(|r| !std::mem::replace(r, true));
            }
            _ => {}
        })
        .applied_objects();
    let controller = Controller::for_stream(stream, reader.clone())
        .with_config(controller::Config::default().concurrency(ctx.config.concurrency))
        .reconcile_on(requeues.clone().stream());
    let (secret_index, cm_index, provider_index) = (index.clone(), index.clone(), index);
    // Cluster-scoped, so watched cluster-wide even when the operator watches some namespaces.
    let providers: Api<PartialObjectMeta<ClusterConnectorAuthProvider>> = Api::all(ctx.client.clone());
    // kube-runtime's runner starts no pass before the cache has synced and waits for that sync
    // even once told to stop, but from then on no longer reads the watch that would bring it:
    // a controller stopped before its cache synced would never end. Having run no pass, it
    // simply ends. (Only this task polls the controller, so the cache cannot sync between the
    // check and the drop.)
    let shutdown = shutdown.shared();
    let stopped_unsynced = {
        let (shutdown, synced) = (shutdown.clone(), reader.clone());
        async move {
            shutdown.await;
            if synced.wait_until_ready().now_or_never().is_some() {
                future::pending::<()>().await;
            }
        }
    };
    let controller = controller
        .watches_stream(isolated(secrets, "Secrets"), move |s| {
            in_shard(shard, affected(&lock(&secret_index), &s))
        })
        .watches_stream(isolated(config_maps, "ConfigMaps"), move |cm| {
            in_shard(shard, readers_of_config_map(&lock(&cm_index), &cm))
        });
    let controller = if providers_served(&providers).await {
        controller.watches_stream(isolated(providers, "ClusterConnectorAuthProviders"), move |p| {
            users_of_provider(&lock(&provider_index), &p)
        })
    } else {
        controller
    };
    let controller = controller
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, Arc::new(Scope { ctx, requeues }))
        .for_each(|res| async move {
            if let Err(e) = res {
                debug!(error = %e, "controller event");
            }
        });
    tokio::select! {
        () = controller => {}
        () = stopped_unsynced => debug!("stopped before the cache synced"),
    }
}

/// A watch that only triggers reconciles, with its own backoff, its errors logged here rather
/// than passed on: the controller pauses every trigger stream on an error from any of them,
/// so one failing watch (a permission missing, say) would otherwise stall the ConnectorAuth
/// list and every other trigger with it.
fn isolated<K>(api: Api<K>, what: &'static str) -> impl Stream<Item = Result<K, watcher::Error>> + Send + 'static
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + 'static,
{
    quiet_errors(
        watcher(api, watcher::Config::default().any_semantic())
            .default_backoff()
            .touched_objects(),
        what,
    )
}

/// Drops the errors of `stream`, logging the first of each run of them as a warning and the
/// recovery after it, so a watch failing for minutes logs two lines, not one per retry.
fn quiet_errors<T, E: std::fmt::Display>(
    stream: impl Stream<Item = Result<T, E>>,
    what: &'static str,
) -> impl Stream<Item = Result<T, E>> {
    let mut failing = false;
    stream.filter_map(move |item| {
        future::ready(match item {
            Ok(o) => {
                if std::mem::take(&mut failing) {
                    info!(watch = what, "watch works again");
                }
                Some(Ok(o))
            }
            Err(e) => {
                if std::mem::replace(&mut failing, true) {
                    debug!(watch = what, error = %e, "watch still failing");
                } else {
                    warn!(watch = what, error = %e, "watch failing; retrying with backoff (other watches go on)");
                }
                None
            }
        })
    })
}

/// Whether the ClusterConnectorAuthProvider CRD is installed. It came after the ConnectorAuth
/// CRD, and `helm upgrade` does not install CRDs a chart gained: without it, `spec.provider`
/// resolves to built-in entries only, and there is nothing to watch. Said once per process.
async fn providers_served(api: &Api<PartialObjectMeta<ClusterConnectorAuthProvider>>) -> bool {
    static SAID: AtomicBool = AtomicBool::new(false);
    match api.list_metadata(&ListParams::default().limit(1)).await {
        Err(kube::Error::Api(s)) if s.code == 404 => {
            if !SAID.swap(true, Ordering::Relaxed) {
                warn!(
                    "the ClusterConnectorAuthProvider CRD (clusterconnectorauthproviders.connectorauth.dev) is not \
                     installed: spec.provider resolves to built-in catalog entries only. Install it with \
                     `connector-auth-operator crd | kubectl apply -f -` (helm upgrade does not add CRDs) and restart \
                     the operator"
                );
            }
            false
        }
        // Served (or not known yet: the watch retries and says why it fails).
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_failing_watch_passes_on_what_it_sees_and_keeps_its_errors_to_itself() {
        let items: Vec<Result<u32, String>> = vec![
            Ok(1),
            Err("403".into()),
            Err("403".into()),
            Ok(2),
            Err("410".into()),
            Ok(3),
        ];
        let seen: Vec<Result<u32, String>> = quiet_errors(futures::stream::iter(items), "test").collect().await;
        assert_eq!(seen, vec![Ok(1), Ok(2), Ok(3)]);
    }
}
