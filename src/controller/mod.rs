//! The Kubernetes controller: a thin adapter that gathers (the ConnectorAuth, its credentials
//! Secret, the stored record), lets the engine's driver decide and act, then writes status and
//! Events only when they changed.

pub mod callback;
pub mod events;
pub mod metrics;
pub mod status;
pub mod store;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{StreamExt, TryStreamExt, future};
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::core::PartialObjectMeta;
use kube::runtime::controller::{self, Action as Requeue, Controller};
use kube::runtime::reflector::{self, ObjectRef, Store as Reader};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use serde_json::json;
use tokio::sync::watch;
use tracing::{debug, info, instrument, warn};

use crate::api::ConnectorAuth;
use crate::engine::driver::{self, Action, Outcome, Unsaved};
use crate::engine::tls::{self, Kind};
use crate::engine::{self, ClientOptions, Engine, Inputs, SecretString};
use events::{Event, EventType, Publisher};
use metrics::{Metrics, OutcomeLabels, ReasonLabels, ResourceLabels};
use status::{Refusal, Verdict};
use store::{FIELD_MANAGER, KubeStore, Memory};

/// Errors that make a reconcile pass fail (provider errors are outcomes, not errors).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[source] kube::Error),
    #[error("{0}")]
    Store(#[source] driver::StoreError),
}

impl Error {
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube(_) => "KubeApi",
            Error::Store(_) => "StateStore",
        }
    }
}

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
    /// Identity for Events and the Lease.
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
}

impl ConsentConfig {
    /// `{{ redirect_url }}`: the callback URL as providers must redirect to it.
    pub fn redirect_url(&self) -> String {
        format!("{}{}", self.external_url.trim_end_matches('/'), callback::CALLBACK_PATH)
    }
}

/// Shared by all reconciles.
pub struct Context {
    pub client: Client,
    pub engine: Engine,
    pub events: Publisher,
    pub metrics: Metrics,
    pub config: Config,
    memory: Memory,
    unsaved: Mutex<BTreeMap<String, Unsaved>>,
    /// Key that signs consent `state`; None when consent is not configured.
    pub consent_key: Option<Vec<u8>>,
    /// The status last written per resource (uid). Our own Secret writes trigger reconciles
    /// that may still see the previous status in the cache; this avoids patching it twice.
    written_status: Mutex<BTreeMap<String, crate::api::ConnectorAuthStatus>>,
    /// One lock per resource, so a consent callback and a reconcile never interleave.
    locks: Mutex<BTreeMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl Context {
    pub fn new(
        client: Client,
        mut config: Config,
        metrics: Metrics,
        consent_key: Option<Vec<u8>>,
    ) -> anyhow::Result<Arc<Self>> {
        if let Some(c) = &config.consent {
            config.redirect_url.get_or_insert_with(|| c.redirect_url());
        }
        Ok(Arc::new(Context {
            events: Publisher::new(client.clone(), "connector-auth-operator", &config.identity),
            engine: Engine::new(config.http.clone())?,
            client,
            metrics,
            config,
            memory: Memory::default(),
            unsaved: Mutex::default(),
            consent_key,
            written_status: Mutex::default(),
            locks: Mutex::default(),
        }))
    }

    /// The resource's current status: what we last wrote if the cache has not caught up.
    /// Forgets the written copy once the cache shows it, so the map only holds statuses in
    /// flight rather than one per resource.
    fn previous_status(&self, ca: &ConnectorAuth) -> Option<crate::api::ConnectorAuthStatus> {
        let uid = ca.uid().unwrap_or_default();
        let mut written = self.written_status.lock().expect("lock");
        match written.get(&uid) {
            Some(w) if ca.status.as_ref() == Some(w) => {
                written.remove(&uid);
                ca.status.clone()
            }
            Some(w) => Some(w.clone()),
            None => ca.status.clone(),
        }
    }

    /// Drops what is kept per resource once it is deleted, so memory follows the live set
    /// rather than every resource ever seen.
    fn forget(&self, ca: &ConnectorAuth) {
        let uid = ca.uid().unwrap_or_default();
        self.memory.lock().expect("memory lock").remove(&uid);
        self.unsaved.lock().expect("lock").remove(&uid);
        self.written_status.lock().expect("lock").remove(&uid);
        self.locks.lock().expect("locks").remove(&uid);
        self.metrics.token_expiry.remove(&ResourceLabels {
            namespace: ca.namespace().unwrap_or_default(),
            name: ca.name_any(),
        });
    }

    fn lock(&self, uid: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.locks
            .lock()
            .expect("locks")
            .entry(uid.to_string())
            .or_default()
            .clone()
    }
}

/// Output Secret name of a ConnectorAuth.
pub fn output_secret_name(ca: &ConnectorAuth) -> String {
    crate::local::secret_name(ca)
}

#[instrument(skip(ca, ctx), fields(namespace = ca.namespace().unwrap_or_default(), name = ca.name_any()))]
pub async fn reconcile(ca: Arc<ConnectorAuth>, ctx: Arc<Context>) -> Result<Requeue, Error> {
    ctx.metrics.reconciles.inc();
    if ca.meta().deletion_timestamp.is_some() {
        // Owned Secrets are garbage-collected with it.
        return Ok(Requeue::await_change());
    }
    let ns = ca.namespace().unwrap_or_else(|| "default".into());
    let secret_name = output_secret_name(&ca);
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
    let now = Timestamp::now();

    let refused = |reason: &'static str, message: String| Refusal { reason, message };
    let cref = &ca.spec.credentials_ref;
    if let Some(other) = cref.namespace.as_deref().filter(|o| *o != ns) {
        let r = refused(
            "CrossNamespaceReference",
            format!(
                "credentialsRef.namespace {other} differs from the resource's namespace {ns}: cross-namespace references are refused"
            ),
        );
        return refuse(&ca, &ctx, r, None).await;
    }
    let flow = match ctx.engine.compile(&ca.spec) {
        Ok(f) => f,
        Err(e) => return refuse(&ca, &ctx, refused(e.reason(), e.to_string()), None).await,
    };
    let credentials = match secrets.get_opt(&cref.name).await.map_err(Error::Kube)? {
        Some(s) => secret_data(s),
        None => {
            let r = refused(
                "CredentialsNotFound",
                format!("credentials Secret {ns}/{} not found", cref.name),
            );
            // The Secret watch brings it back promptly; the requeue is a safety net.
            return refuse(&ca, &ctx, r, Some(Duration::from_secs(300))).await;
        }
    };
    let inputs = Inputs {
        credentials,
        redirect_url: ctx.config.redirect_url.clone(),
        callback: BTreeMap::new(),
        http: http_options(&ctx.client, &ns, &ca.spec).await.map_err(Error::Kube)?,
    };
    let fingerprint = engine::fingerprint(&ca.spec, &inputs.credentials);
    let Some(store) = KubeStore::new(secrets, &ca, &secret_name, ctx.memory.clone()) else {
        return Ok(Requeue::await_change()); // not yet persisted (no uid)
    };
    let uid = ca.uid().unwrap_or_default();
    let lock = ctx.lock(&uid);
    let _guard = lock.lock().await;
    let mut unsaved = ctx.unsaved.lock().expect("lock").remove(&uid).unwrap_or_default();
    let started = std::time::Instant::now();
    let result = driver::reconcile(&ctx.engine, &flow, &inputs, &fingerprint, &store, &mut unsaved, now).await;
    if !unsaved.is_empty() {
        ctx.unsaved.lock().expect("lock").insert(uid, unsaved);
    }
    let outcome = match result {
        Ok(outcome) => outcome,
        // The API server refuses this Secret write as invalid and will refuse it again: say so
        // rather than retry in a loop.
        Err(e) => match e.source.downcast_ref::<store::Rejected>() {
            Some(r) => {
                let r = refused(r.reason, r.message.clone());
                return refuse(&ca, &ctx, r, Some(Duration::from_secs(300))).await;
            }
            None => return Err(Error::Store(e)),
        },
    };
    let writes = store.writes.load(std::sync::atomic::Ordering::Relaxed);
    ctx.metrics.write("secret", writes > 0);
    observe(&ca, &ctx, &outcome, started.elapsed());
    announce(&ca, &ctx, &outcome).await;

    let authorization_url = match (&outcome.pending_consent, &ctx.consent_key, &outcome.action) {
        (
            Some(p),
            Some(key),
            Action::Failed {
                error: engine::EngineError::AuthorizationRequired,
            },
        ) => {
            match ctx
                .engine
                .authorization_url(&flow, &inputs, &callback::state_for(key, &ca, p))
            {
                Ok(url) => url,
                Err(e) => {
                    warn!(error = %e, "cannot render the consent URL");
                    None
                }
            }
        }
        _ => None,
    };
    let previous = ctx.previous_status(&ca);
    let status = status::desired(
        previous.as_ref(),
        &Verdict::Ran(&outcome),
        ca.meta().generation,
        flow.scheme,
        &secret_name,
        authorization_url.as_deref(),
        now,
    );
    let status = spec_warnings(&ca, &ctx, previous.as_ref(), status, now).await;
    patch_status(&ca, &ctx, status).await?;
    Ok(match outcome.next {
        Some(next) => Requeue::requeue(until(next)),
        None => Requeue::await_change(),
    })
}

/// Time from now until `t`, at least a second.
fn until(t: Timestamp) -> Duration {
    let secs = t.duration_since(Timestamp::now()).as_secs_f64();
    Duration::from_secs_f64(secs.max(1.0))
}

/// Reads the Secrets and ConfigMaps `spec.tls` names, from the resource's namespace only
/// (nothing at all for resources without them). They are read on each pass and never
/// cached, so a renewed client certificate or CA bundle is used by the next token request.
/// Only API failures are errors here; a missing object or key is the engine's to report, when
/// a request is to be sent (a valid token stays published meanwhile).
pub(crate) async fn http_options(
    client: &Client,
    ns: &str,
    spec: &crate::api::ConnectorAuthSpec,
) -> Result<engine::Result<ClientOptions>, kube::Error> {
    let mut fetched = tls::Fetched::new();
    for obj in tls::references(spec) {
        let data = match obj.kind {
            Kind::Secret => Api::<Secret>::namespaced(client.clone(), ns)
                .get_opt(&obj.name)
                .await?
                .map(secret_bytes),
            Kind::ConfigMap => Api::<ConfigMap>::namespaced(client.clone(), ns)
                .get_opt(&obj.name)
                .await?
                .map(|c| {
                    let mut data: BTreeMap<String, Vec<u8>> = c
                        .binary_data
                        .unwrap_or_default()
                        .into_iter()
                        .map(|(k, v)| (k, v.0))
                        .collect();
                    for (k, v) in c.data.unwrap_or_default() {
                        data.insert(k, v.into_bytes());
                    }
                    data
                }),
        };
        fetched.insert(obj, data);
    }
    Ok(tls::resolve(spec, &fetched))
}

/// Adds the conditions that follow from the spec itself (the `InsecureTLS` warning) and
/// records one Warning Event when such a condition appears.
async fn spec_warnings(
    ca: &ConnectorAuth,
    ctx: &Context,
    previous: Option<&crate::api::ConnectorAuthStatus>,
    mut next: crate::api::ConnectorAuthStatus,
    now: Timestamp,
) -> crate::api::ConnectorAuthStatus {
    status::warn_insecure_tls(&mut next, previous, &ca.spec, ca.meta().generation, now);
    if let Some(c) = status::raised(previous, &next, status::INSECURE_TLS) {
        warn!(reason = %c.reason, "TLS verification of token requests is disabled");
        publish_event(ca, ctx, EventType::Warning, &c.reason, &c.message, "Validate").await;
    }
    next
}

/// A Secret's values by key: `data`, overlaid by `stringData` (set by clients that have not
/// been through the API server's conversion, e.g. in tests).
fn secret_bytes(s: Secret) -> BTreeMap<String, Vec<u8>> {
    let mut out: BTreeMap<String, Vec<u8>> = s.data.unwrap_or_default().into_iter().map(|(k, v)| (k, v.0)).collect();
    for (k, v) in s.string_data.unwrap_or_default() {
        out.insert(k, v.into_bytes());
    }
    out
}

fn secret_data(s: Secret) -> BTreeMap<String, SecretString> {
    secret_bytes(s)
        .into_iter()
        .map(|(k, v)| (k, SecretString::new(String::from_utf8_lossy(&v).into_owned())))
        .collect()
}

async fn refuse(ca: &ConnectorAuth, ctx: &Context, r: Refusal, requeue: Option<Duration>) -> Result<Requeue, Error> {
    let previous_reason = ca
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == status::READY))
        .map(|c| c.reason.clone());
    if previous_reason.as_deref() != Some(r.reason) {
        publish_event(ca, ctx, EventType::Warning, r.reason, &r.message, "Validate").await;
    }
    warn!(reason = r.reason, message = %r.message, "refused");
    let previous = ctx.previous_status(ca);
    let now = Timestamp::now();
    let status = status::desired(
        previous.as_ref(),
        &Verdict::Refused(r),
        ca.meta().generation,
        ca.spec.scheme.name(),
        &output_secret_name(ca),
        None,
        now,
    );
    let status = spec_warnings(ca, ctx, previous.as_ref(), status, now).await;
    patch_status(ca, ctx, status).await?;
    Ok(requeue.map(Requeue::requeue).unwrap_or_else(Requeue::await_change))
}

async fn patch_status(ca: &ConnectorAuth, ctx: &Context, status: crate::api::ConnectorAuthStatus) -> Result<(), Error> {
    let uid = ca.uid().unwrap_or_default();
    let already =
        ca.status.as_ref() == Some(&status) || ctx.written_status.lock().expect("lock").get(&uid) == Some(&status);
    if already {
        ctx.metrics.write("status", false);
        return Ok(());
    }
    let api: Api<ConnectorAuth> = Api::namespaced(ctx.client.clone(), &ca.namespace().unwrap_or_default());
    let patch = json!({ "apiVersion": ConnectorAuth::api_version(&()), "kind": "ConnectorAuth", "status": status });
    match api
        .patch_status(
            &ca.name_any(),
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await
    {
        Ok(_) => {}
        // Refused as invalid (e.g. by a CRD older than this operator): retrying cannot help and
        // the status cannot say so, an Event can.
        Err(kube::Error::Api(s)) if s.code == 422 => {
            warn!(message = %s.message, "the API server refused the status");
            let note = format!("the API server refused the status: {}", s.message);
            publish_event(ca, ctx, EventType::Warning, status::STATUS_REJECTED, &note, "Validate").await;
            return Ok(());
        }
        Err(e) => return Err(Error::Kube(e)),
    }
    ctx.written_status.lock().expect("lock").insert(uid, status);
    ctx.metrics.write("status", true);
    Ok(())
}

fn observe(ca: &ConnectorAuth, ctx: &Context, o: &Outcome, elapsed: Duration) {
    let labels = ResourceLabels {
        namespace: ca.namespace().unwrap_or_default(),
        name: ca.name_any(),
    };
    if let Some(exp) = o.token.as_ref().and_then(|t| t.expires_at) {
        ctx.metrics
            .token_expiry
            .get_or_create(&labels)
            .set(exp.as_second() as f64);
    }
    let (result, reason) = match &o.action {
        Action::Issued {
            reason,
            refreshed: true,
        } => ("refreshed", reason.to_string()),
        Action::Issued {
            reason,
            refreshed: false,
        } => ("issued", reason.to_string()),
        Action::Failed { error } => ("failed", error.reason().to_string()),
        Action::Kept | Action::BackingOff => return,
    };
    ctx.metrics
        .refreshes
        .get_or_create(&OutcomeLabels {
            result: result.into(),
            reason,
        })
        .inc();
    ctx.metrics.refresh_duration.observe(elapsed.as_secs_f64());
}

/// Events for what a person wants to know: first issuance, re-authentication after a change,
/// failures and recovery. Routine refreshes are visible in status and metrics, not as Events,
/// to keep API writes per refresh low.
async fn announce(ca: &ConnectorAuth, ctx: &Context, o: &Outcome) {
    let was_failing = ca
        .status
        .as_ref()
        .is_some_and(|s| s.conditions.iter().any(|c| c.type_ == status::REFRESH_FAILING));
    match &o.action {
        Action::Issued { reason, refreshed } => {
            info!(reason, refreshed, expires_at = ?o.token.as_ref().and_then(|t| t.expires_at), "token obtained");
            if was_failing {
                publish_event(
                    ca,
                    ctx,
                    EventType::Normal,
                    "Recovered",
                    "token obtained after failures",
                    "Refresh",
                )
                .await;
            } else if *reason != "RenewalDue" && *reason != "Expired" {
                let note = format!("token issued ({reason}) into Secret {}", output_secret_name(ca));
                publish_event(ca, ctx, EventType::Normal, "Issued", &note, "Issue").await;
            }
        }
        Action::Failed { error } => {
            warn!(reason = error.reason(), error = %error, "token request failed");
            publish_event(
                ca,
                ctx,
                EventType::Warning,
                error.reason(),
                &error.to_string(),
                "Refresh",
            )
            .await;
        }
        Action::Kept | Action::BackingOff => debug!("token kept"),
    }
}

async fn publish_event(ca: &ConnectorAuth, ctx: &Context, type_: EventType, reason: &str, note: &str, action: &str) {
    let ev = Event {
        type_,
        reason,
        note,
        action,
    };
    if let Err(e) = ctx.events.publish(&ev, &ca.object_ref(&())).await {
        warn!(error = %e, "could not publish Event");
    }
}

fn error_policy(ca: Arc<ConnectorAuth>, error: &Error, ctx: Arc<Context>) -> Requeue {
    warn!(name = ca.name_any(), error = %error, "reconcile failed");
    ctx.metrics
        .reconcile_errors
        .get_or_create(&ReasonLabels {
            reason: error.metric_label().into(),
        })
        .inc();
    Requeue::requeue(Duration::from_secs(5) + Duration::from_millis(rand::random::<u64>() % 5000))
}

/// Which ConnectorAuths a Secret change concerns: the ones reading it (as credentials, CA
/// bundle or client certificate) and the one owning it (output or state Secret).
fn affected(reader: &Reader<ConnectorAuth>, secret: &PartialObjectMeta<Secret>) -> Vec<ObjectRef<ConnectorAuth>> {
    let ns = secret.metadata.namespace.as_deref();
    let name = secret.metadata.name.as_deref().unwrap_or_default();
    let mut refs: Vec<ObjectRef<ConnectorAuth>> = secret
        .owner_references()
        .iter()
        .filter(|o| o.kind == "ConnectorAuth" && o.api_version.starts_with(crate::api::GROUP))
        .map(|o| ObjectRef::new(&o.name).within(ns.unwrap_or_default()))
        .collect();
    // A state Secret is private to its owner; any other Secret (an output one included, since
    // outputs can be chained into another resource's credentials) may be read by others.
    let private = secret.labels().get(store::ROLE_LABEL).map(String::as_str) == Some("state");
    if !private {
        refs.extend(readers(reader, ns, |ca| {
            ca.spec.credentials_ref.name == name || tls::references_object(&ca.spec, Kind::Secret, name)
        }));
    }
    refs
}

/// The ConnectorAuths in `ns` for which `reads` holds. Scans the cache without copying names:
/// it runs for every Secret event.
fn readers(
    reader: &Reader<ConnectorAuth>,
    ns: Option<&str>,
    reads: impl Fn(&ConnectorAuth) -> bool,
) -> Vec<ObjectRef<ConnectorAuth>> {
    reader
        .state()
        .iter()
        .filter(|ca| ca.metadata.namespace.as_deref() == ns && reads(ca))
        .map(|ca| ObjectRef::from_obj(ca.as_ref()))
        .collect()
}

/// Strips the fields the controller never reads from a cached ConnectorAuth.
fn slim(ca: &mut ConnectorAuth) {
    ca.managed_fields_mut().clear();
    if let Some(a) = ca.meta_mut().annotations.as_mut() {
        a.remove(LAST_APPLIED);
    }
}

const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Which ConnectorAuths read a ConfigMap (as CA bundle).
fn readers_of_config_map(
    reader: &Reader<ConnectorAuth>,
    cm: &PartialObjectMeta<ConfigMap>,
) -> Vec<ObjectRef<ConnectorAuth>> {
    let name = cm.metadata.name.as_deref().unwrap_or_default();
    readers(reader, cm.metadata.namespace.as_deref(), |ca| {
        tls::references_object(&ca.spec, Kind::ConfigMap, name)
    })
}

/// Runs the controller for one namespace (or all) until `shutdown` fires.
pub async fn run_controller(
    ctx: Arc<Context>,
    namespace: Option<String>,
    ready: watch::Sender<bool>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    // Secrets and ConfigMaps are watched metadata-only and not cached: memory does not grow
    // with the number or size of unrelated objects. Deletions trigger too (a deleted output is
    // restored). ConfigMaps matter only as CA bundles: a fixed or created one is used at once.
    let (cas, secrets, config_maps): (
        Api<ConnectorAuth>,
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
    // The cache holds every ConnectorAuth; drop what the operator never reads (field ownership
    // and kubectl's copy of the last applied spec), which is most of an object's size on a
    // real API server.
    let (reader, writer) = reflector::store();
    let forget = ctx.clone();
    let stream = watcher(cas, watcher::Config::default().any_semantic())
        .default_backoff()
        .modify(slim)
        .reflect(writer)
        .inspect_ok(move |event| {
            if let watcher::Event::Delete(ca) = event {
                forget.forget(ca);
            }
        })
        .applied_objects();
    let controller = Controller::for_stream(stream, reader.clone())
        .with_config(controller::Config::default().concurrency(ctx.config.concurrency));
    let mapper_reader = reader.clone();
    let cm_reader = reader.clone();
    let readiness = reader.clone();
    tokio::spawn(async move {
        if readiness.wait_until_ready().await.is_ok() {
            let _ = ready.send(true);
        }
    });
    controller
        .watches(secrets, watcher::Config::default().any_semantic(), move |s| {
            affected(&mapper_reader, &s)
        })
        .watches(config_maps, watcher::Config::default().any_semantic(), move |cm| {
            readers_of_config_map(&cm_reader, &cm)
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

/// Checks that the CRD is installed, with an actionable message if not. Lists (limit 1) where
/// the operator watches: cluster-wide, or in the first watched namespace, so a namespaced
/// install needs no cluster-wide permission.
pub async fn check_crd(client: &Client, namespaces: &[String]) -> anyhow::Result<()> {
    let api: Api<ConnectorAuth> = match namespaces.first() {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    match api.list(&ListParams::default().limit(1)).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => anyhow::bail!(
            "the ConnectorAuth CRD (connectorauths.connectorauth.dev) is not installed in this cluster; \
             install the Helm chart or run `connector-auth-operator crd | kubectl apply -f -`"
        ),
        Err(kube::Error::Api(s)) if s.code == 403 => anyhow::bail!(
            "not allowed to list ConnectorAuths ({}); check the operator's RBAC (the Helm chart's ClusterRole, \
             or its Roles in the watched namespaces)",
            s.message
        ),
        Err(e) => Err(anyhow::anyhow!("cannot reach the Kubernetes API: {e}")),
    }
}

/// Leader-election settings.
#[derive(Clone, Debug)]
pub struct LeaderElection {
    pub lease_name: String,
    pub lease_namespace: String,
    pub lease_duration: u64,
}

/// Runs the operator: HTTP endpoints, leader election, one controller per namespace (or one for
/// all), until `shutdown` resolves. Only the leader reconciles; on losing the lease the
/// controllers stop and the process waits to lead again.
pub async fn run(
    client: Client,
    config: Config,
    election: Option<LeaderElection>,
    metrics_addr: SocketAddr,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    check_crd(&client, &config.namespaces).await?;
    let metrics = Metrics::default();
    let consent_key = match &config.consent {
        Some(c) => Some(callback::ensure_key(&client, &c.key_namespace).await?),
        None => None,
    };
    let ctx = Context::new(client.clone(), config.clone(), metrics.clone(), consent_key)?;
    let consent_server = match &config.consent {
        Some(c) => {
            let listener = tokio::net::TcpListener::bind(c.listen).await?;
            info!(address = %listener.local_addr()?, redirect_url = %c.redirect_url(), "serving the OAuth2 consent callback");
            let router = callback::router(ctx.clone());
            Some(tokio::spawn(async move {
                if let Err(e) = axum::serve(listener, router).await {
                    tracing::error!(error = %e, "consent callback server stopped");
                }
            }))
        }
        None => None,
    };
    let (ready_tx, ready_rx) = watch::channel(election.is_some());
    let listener = tokio::net::TcpListener::bind(metrics_addr).await?;
    info!(address = %listener.local_addr()?, "serving /metrics, /healthz, /readyz");
    let server = tokio::spawn(crate::server::serve(listener, metrics.clone(), ready_rx.clone()));

    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };

    let namespaces: Vec<Option<String>> = if config.namespaces.is_empty() {
        vec![None]
    } else {
        config.namespaces.iter().cloned().map(Some).collect()
    };

    let run_all = |until: watch::Receiver<bool>| {
        let ctx = ctx.clone();
        let ready_tx = ready_tx.clone();
        let namespaces = namespaces.clone();
        async move {
            let (ns_ready_tx, mut ns_ready_rx) = watch::channel(0usize);
            let total = namespaces.len();
            let mut tasks = Vec::new();
            for ns in namespaces {
                let (one_tx, mut one_rx) = watch::channel(false);
                let counter = ns_ready_tx.clone();
                tokio::spawn(async move {
                    if one_rx.wait_for(|r| *r).await.is_ok() {
                        counter.send_modify(|n| *n += 1);
                    }
                });
                let until = until.clone();
                tasks.push(run_controller(ctx.clone(), ns, one_tx, async move {
                    let mut until = until;
                    let _ = until.wait_for(|s| *s).await;
                }));
            }
            tokio::spawn(async move {
                if ns_ready_rx.wait_for(|n| *n >= total).await.is_ok() {
                    let _ = ready_tx.send(true);
                }
            });
            future::join_all(tasks).await;
        }
    };

    match election {
        None => run_all(stop_rx.clone()).await,
        Some(le) => {
            let manager = kube_lease_manager::LeaseManagerBuilder::new(client.clone(), &le.lease_name)
                .with_namespace(&le.lease_namespace)
                .with_identity(&config.identity)
                .with_duration(le.lease_duration)
                .with_grace((le.lease_duration / 3).max(1))
                .with_field_manager(FIELD_MANAGER)
                .build()
                .await?;
            let (mut leading, lease_task) = manager.watch().await;
            loop {
                tokio::select! {
                    _ = stopped(stop_rx.clone()) => break,
                    r = leading.wait_for(|l| *l) => { if r.is_err() { break } }
                }
                info!(identity = %config.identity, "acquired leadership");
                let (lost_tx, lost_rx) = watch::channel(false);
                let mut watch_lead = leading.clone();
                let mut stop = stop_rx.clone();
                let relay = tokio::spawn(async move {
                    tokio::select! {
                        _ = watch_lead.wait_for(|l| !*l) => {},
                        _ = stop.wait_for(|s| *s) => {},
                    }
                    let _ = lost_tx.send(true);
                });
                run_all(lost_rx).await;
                relay.abort();
                if *stop_rx.borrow() {
                    break;
                }
                warn!("lost leadership; waiting to lead again");
            }
            drop(leading);
            // Dropping the receiver makes the manager release the lease.
            match lease_task.await {
                Ok(Ok(manager)) => {
                    let _ = manager.release().await;
                }
                Ok(Err(e)) => warn!(error = %e, "lease manager stopped"),
                Err(e) => warn!(error = %e, "lease task panicked"),
            }
        }
    }
    server.abort();
    if let Some(s) = consent_server {
        s.abort();
    }
    info!("stopped");
    Ok(())
}
