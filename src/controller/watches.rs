//! What the controller watches, and which ConnectorAuths a change concerns. Secrets and
//! ConfigMaps are watched metadata-only and never cached: memory does not grow with the
//! number or size of unrelated objects.

use std::sync::{Arc, Mutex};

use std::fmt::Debug;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::{Stream, StreamExt, TryStreamExt, future};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, ListParams};
use kube::core::PartialObjectMeta;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tokio::sync::watch;
use tracing::{debug, info, warn};

use super::cache::{Cached, Entry, Key, key};
use super::context::Context;
use super::index::{Change, ReferenceIndex, lock};
use super::queue::Work;
use super::runner;
use super::store::{ROLE_LABEL, STATE_SUFFIX};
use crate::api::provider::ClusterConnectorAuthProvider;
use crate::engine::tls::Kind;
use crate::reconcile::shard_of;

/// Which ConnectorAuths a Secret change concerns: the ones reading it (as credentials, CA
/// bundle or client certificate) and the one owning it (output or state Secret). Only cached
/// ones: another shard's resources are not.
fn affected(index: &ReferenceIndex, secret: &PartialObjectMeta<Secret>) -> Vec<Key> {
    let ns = secret.metadata.namespace.as_deref().unwrap_or_default();
    let name = secret.metadata.name.as_deref().unwrap_or_default();
    let mut keys: Vec<Key> = secret
        .owner_references()
        .iter()
        .filter(|o| o.kind == "ConnectorAuth" && o.api_version.starts_with(crate::api::GROUP))
        .filter_map(|o| index.get(&key(Some(ns), Some(&o.name))))
        .map(|ca| ca.key().clone())
        .collect();
    // A state Secret is private to its owner; any other Secret (an output one included, since
    // outputs can be chained into another resource's credentials) may be read by others.
    let private = secret.labels().get(ROLE_LABEL).map(String::as_str) == Some("state");
    let concerned = index.secret_candidates(ns, name).filter(|ca| {
        let reads = ca.reads();
        let reading = !private && (reads.credentials == name || reads.tls_object(Kind::Secret, name));
        // A resource refused because its output or state name was taken hears when it is
        // freed. (Compared without building names.)
        let own = ca.name();
        let output = match reads.output.as_deref() {
            Some(n) => n == name,
            None => name.strip_suffix("-token") == Some(own),
        };
        reading || output || name.strip_suffix(STATE_SUFFIX) == Some(own)
    });
    keys.extend(concerned.map(|ca| ca.key().clone()));
    keys
}

/// Which ConnectorAuths use a ClusterConnectorAuthProvider (by `spec.provider`), in every
/// watched namespace: a created, changed or deleted entry changes what they resolve to.
fn users_of_provider(index: &ReferenceIndex, provider: &PartialObjectMeta<ClusterConnectorAuthProvider>) -> Vec<Key> {
    let name = provider.metadata.name.as_deref().unwrap_or_default();
    index
        .provider_candidates(name)
        .filter(|ca| ca.reads().provider.as_deref() == Some(name))
        .map(|ca| ca.key().clone())
        .collect()
}

/// Which ConnectorAuths read a ConfigMap (as CA bundle).
fn readers_of_config_map(index: &ReferenceIndex, cm: &PartialObjectMeta<ConfigMap>) -> Vec<Key> {
    let name = cm.metadata.name.as_deref().unwrap_or_default();
    index
        .config_map_candidates(cm.metadata.namespace.as_deref().unwrap_or_default(), name)
        .filter(|ca| ca.reads().tls_object(Kind::ConfigMap, name))
        .map(|ca| ca.key().clone())
        .collect()
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
///
/// The watches fill the cache and trigger the work queue; the runner takes from the queue
/// and runs passes, at most `concurrency` at once, and once told to stop starts no more and
/// waits for those running.
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
    // Cluster-scoped, so watched cluster-wide even when the operator watches some namespaces.
    let providers: Api<PartialObjectMeta<ClusterConnectorAuthProvider>> = Api::all(ctx.client.clone());
    let watch_providers = providers_served(&providers).await;

    let index = Arc::new(Mutex::new(ReferenceIndex::default()));
    let work = Arc::new(Work::new(ctx.config.concurrency));
    let synced = ready.subscribe();
    let ours =
        move |ca: &Cached| shard.is_none_or(|s| s.contains(ca.meta().namespace.as_deref(), ca.meta().name.as_deref()));
    let connector_auths = {
        let (index, work, ctx) = (index.clone(), work.clone(), ctx.clone());
        let events = watcher(cas, watcher::Config::default().any_semantic())
            .default_backoff()
            .try_filter(move |event| {
                future::ready(match event {
                    watcher::Event::Apply(ca) | watcher::Event::Delete(ca) | watcher::Event::InitApply(ca) => ours(ca),
                    watcher::Event::Init | watcher::Event::InitDone => true,
                })
            });
        quiet_errors(events, "ConnectorAuths").for_each(move |event| {
            let mut cache = lock(&index);
            match cache.apply(event) {
                Change::Applied(key, version) => {
                    drop(cache);
                    // A pass under way may hold the copy before this one, and still needs the
                    // status it wrote (the pass after it drops that).
                    if !work.running(&key) {
                        ctx.cached(&key, version.as_deref());
                    }
                    work.trigger(&key);
                }
                Change::Deleted(gone) => {
                    drop(cache);
                    forget(&ctx, &work, &gone);
                }
                Change::Relisted(gone) => {
                    // Anything may have changed while the watch was down (and after a start,
                    // every resource wants its first pass).
                    for key in cache.keys() {
                        work.trigger(key);
                    }
                    drop(cache);
                    for g in &gone {
                        forget(&ctx, &work, g);
                    }
                    ready.send_if_modified(|r| !std::mem::replace(r, true));
                }
                Change::Nothing => {}
            }
            future::ready(())
        })
    };
    let secrets = triggers(isolated(secrets, "Secrets"), index.clone(), work.clone(), affected);
    let config_maps = triggers(
        isolated(config_maps, "ConfigMaps"),
        index.clone(),
        work.clone(),
        readers_of_config_map,
    );
    let providers = {
        let (index, work) = (index.clone(), work.clone());
        async move {
            if watch_providers {
                let providers = isolated(providers, "ClusterConnectorAuthProviders");
                triggers(providers, index, work, users_of_provider).await;
            }
            future::pending::<()>().await;
        }
    };
    let watches = async move {
        tokio::join!(connector_auths, secrets, config_maps, providers);
    };
    tokio::select! {
        () = runner::run(ctx, index, work, synced, shutdown) => {}
        () = watches => {}
    }
}

/// Triggers, for each object `objects` brings, the resources `concerned` finds for it.
async fn triggers<K>(
    objects: impl Stream<Item = K>,
    index: Arc<Mutex<ReferenceIndex>>,
    work: Arc<Work>,
    concerned: fn(&ReferenceIndex, &K) -> Vec<Key>,
) {
    objects
        .for_each(|o| {
            let keys = concerned(&lock(&index), &o);
            keys.iter().for_each(|k| work.trigger(k));
            future::ready(())
        })
        .await;
}

/// Forgets a deleted resource: its place in the queue, and what the process keeps about it.
fn forget(ctx: &Context, work: &Work, gone: &Entry) {
    work.forget(gone.key());
    if let Ok(ca) = gone.decode() {
        ctx.forget(&ca);
    }
}

/// A watch that only triggers reconciles, with its own backoff, its errors logged here rather
/// than passed on: the controller pauses every trigger stream on an error from any of them,
/// so one failing watch (a permission missing, say) would otherwise stall the ConnectorAuth
/// list and every other trigger with it.
fn isolated<K>(api: Api<K>, what: &'static str) -> impl Stream<Item = K> + Send + 'static
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
) -> impl Stream<Item = T> {
    let mut failing = false;
    stream.filter_map(move |item| {
        future::ready(match item {
            Ok(o) => {
                if std::mem::take(&mut failing) {
                    info!(watch = what, "watch works again");
                }
                Some(o)
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
        let seen: Vec<u32> = quiet_errors(futures::stream::iter(items), "test").collect().await;
        assert_eq!(seen, vec![1, 2, 3]);
    }
}
