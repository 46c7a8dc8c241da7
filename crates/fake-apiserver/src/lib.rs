//! A stateful, in-process Kubernetes API server for tests and benchmarks.
//!
//! [`FakeApiServer::start`] serves the Kubernetes REST API on `127.0.0.1` over
//! plain HTTP, so the real [`kube::Client`] (and `kube::runtime` watchers,
//! reflectors, controllers, lease managers) talk to it exactly as they would to a
//! cluster. Unlike a mock, it keeps state and implements the semantics clients
//! depend on: resourceVersions and optimistic concurrency, generation, status
//! subresources, merge/JSON/server-side-apply patches, finalizers and
//! owner-reference garbage collection, label/field selectors, list+watch with
//! resumable history and `410 Gone`, metadata-only (`PartialObjectMetadata`)
//! requests. Tests can inspect every request ([`FakeApiServer::requests`]),
//! read objects directly, inject faults ([`Fault`]) and hold or slow down requests
//! ([`Delay`], [`Gate`]).
//!
//! It refuses what a real server refuses, with the same `422 Invalid` answer (message and
//! `details.causes`, worded as Kubernetes 1.36 words them): object metadata of every kind
//! (names, namespaces, labels, annotations, finalizers, owner references with at most one
//! controller), Secrets and ConfigMaps (key syntax, 1 MiB of data, immutable `type`, and
//! `data` of `immutable` ones), `events.k8s.io` Events (names, field lengths, series, fields
//! that may not change) and Leases. Custom resources registered with
//! [`FakeApiServer::register_crd`] are pruned to their CRD's structural schema and checked
//! against it and its `x-kubernetes-validations` CEL rules. Garbage collection can be made
//! asynchronous ([`FakeApiServer::set_gc_delay`]) and Events expire
//! ([`FakeApiServer::set_event_ttl`]), as on a cluster.
//!
//! ```no_run
//! # async fn demo() {
//! use fake_apiserver::FakeApiServer;
//! let server = FakeApiServer::start().await;
//! server.register("example.dev", "v1", "widgets", "Widget", true);
//! let client = server.client();
//! # let _ = client;
//! # }
//! ```
//!
//! # Where it differs from a real API server
//!
//! * No authentication or admission. Validation covers the kinds served here (Secrets,
//!   ConfigMaps, ServiceAccounts, Events, Namespaces, Leases, custom resources; of the `apps`
//!   workloads — Deployments, StatefulSets, DaemonSets — only their metadata), and not every
//!   rule of theirs (e.g. not the contents of typed Secrets beyond their required keys); the
//!   only defaulting is Secret `type: Opaque` and Namespace `status.phase: Active`; namespaces
//!   need not exist.
//! * Custom resources registered with [`register`](FakeApiServer::register) or
//!   [`register_resource`](FakeApiServer::register_resource) (no CRD) take any content. With a
//!   CRD: no defaulting from its `default`s, no `format` checks, no `x-kubernetes-list-type`
//!   invariants, `metadata` is not pruned, and a failing `oneOf` reports the errors of the
//!   branch with the fewest (not kube-openapi's "best match"). Ratcheting skips every check of
//!   a value an update leaves unchanged, transition rules (`oldSelf`) included.
//! * Server-side apply approximates field ownership from each manager's last
//!   applied configuration (see the `apply` module); lists are atomic except
//!   `metadata.ownerReferences` (merged by `uid`), and no `managedFields` are returned.
//!   Unknown fields in an applied configuration are pruned, not refused.
//! * Strategic merge patches are applied as JSON merge patches.
//! * Every object gets `metadata.generation` (real Secrets/ConfigMaps have none).
//! * Garbage collection runs synchronously inside the request that deletes an owner (or writes
//!   a dependent whose owner does not exist) unless [`set_gc_delay`](FakeApiServer::set_gc_delay)
//!   defers it. `Foreground` propagation behaves like `Background`; `Orphan` removes the
//!   references from dependents at once. Owners of kinds this server does not serve are never
//!   considered missing.
//! * Lists always show the latest state (`resourceVersion`/`resourceVersionMatch`
//!   are ignored); continuation pages show current objects, not a snapshot.
//! * Watches send no periodic bookmarks, only the `k8s.io/initial-events-end`
//!   one for `sendInitialEvents=true`.
//! * One served version per resource; core `events` and `events.k8s.io` events
//!   are separate collections.

mod apply;
mod error;
mod field;
mod gate;
mod http;
mod meta;
mod registry;
mod schema;
mod selector;
mod store;
mod tokens;
mod validation;
mod watch;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;
use tokio::sync::{oneshot, watch as notify};

pub use error::ApiError;
pub use gate::Gate;
pub use registry::ResourceDef;

use registry::ResourceInfo;
use store::{DeleteOpts, Deleted, Store, WriteOpts};

/// How many changes per resource are kept for resuming watches, by default.
/// Watches that fall further behind get `410 Gone` and must relist, as with a
/// real server's watch cache.
pub const DEFAULT_HISTORY_LIMIT: usize = 20_000;

/// How long an Event lives after its last write, by default: kube-apiserver's `--event-ttl`
/// default.
pub const DEFAULT_EVENT_TTL: Duration = Duration::from_secs(60 * 60);

/// One HTTP request received by the fake server, recorded before it is handled.
#[derive(Clone, Debug, PartialEq)]
pub struct Recorded {
    /// HTTP method: `GET`, `POST`, `PUT`, `PATCH`, `DELETE`.
    pub method: String,
    /// Kubernetes verb: `get`, `list`, `watch`, `create`, `update`, `patch`,
    /// `delete`, `deletecollection`. Non-resource paths (`/version`, discovery) are `get`.
    pub verb: String,
    /// API group, `""` for the core group (and for non-resource paths).
    pub group: String,
    pub version: String,
    /// Plural resource name; for non-resource paths, the URL path (e.g. `/version`).
    pub resource: String,
    pub subresource: Option<String>,
    pub namespace: Option<String>,
    pub name: Option<String>,
    /// `apply`, `merge`, `json` or `strategic` for PATCH requests.
    pub patch_type: Option<String>,
    /// The `fieldManager` query parameter.
    pub field_manager: Option<String>,
    /// The `labelSelector` query parameter.
    pub label_selector: Option<String>,
    /// Whether the client asked for `PartialObjectMetadata` (metadata-only) responses.
    pub metadata_only: bool,
    /// The `User-Agent` header: who sent it, as a real server's audit log records it.
    pub user_agent: Option<String>,
}

/// A fault to inject: the next `count` requests matching `method` (any when
/// `None`, compared case-insensitively) and `path_contains` (a substring of the
/// request's path and query string, e.g. `"/secrets"` or `"watch=true"`) are
/// answered with `status` and a matching `Status` body instead of being handled.
///
/// Note that `kube::Client` itself retries 429, 503 and 504 responses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fault {
    pub method: Option<String>,
    pub path_contains: String,
    pub status: u16,
    pub count: u32,
}

impl Fault {
    /// A fault for one request of any method whose path contains `path_contains`.
    pub fn new(status: u16, path_contains: &str) -> Self {
        Self {
            method: None,
            path_contains: path_contains.to_string(),
            status,
            count: 1,
        }
    }

    /// Restricts the fault to one HTTP method.
    pub fn method(mut self, method: &str) -> Self {
        self.method = Some(method.to_string());
        self
    }

    /// Applies the fault to the next `count` matching requests.
    pub fn times(mut self, count: u32) -> Self {
        self.count = count;
        self
    }

    fn matches(&self, method: &str, target: &str) -> bool {
        selects(self.count, self.method.as_deref(), &self.path_contains, method, target)
    }
}

/// Whether a fault or delay with `count` uses left, for `want_method` (any when `None`) and
/// paths containing `path_contains`, applies to a request.
fn selects(count: u32, want_method: Option<&str>, path_contains: &str, method: &str, target: &str) -> bool {
    count > 0 && want_method.is_none_or(|m| m.eq_ignore_ascii_case(method)) && target.contains(path_contains)
}

/// A slow API server: the next `count` requests matching `method` (any when `None`,
/// compared case-insensitively) and `path_contains` (as for [`Fault`]) wait — at a [`Gate`]
/// until the test decides, or for a fixed time — before they are handled. A waiting request
/// is completed even if its client goes away meanwhile, as a real server completes a request
/// it has received: a write held at a gate that is then opened takes effect although nobody
/// hears the answer.
///
/// [`Fault`]s are checked first: a request matching both is answered by the fault at once.
#[derive(Clone, Debug)]
pub struct Delay {
    pub method: Option<String>,
    pub path_contains: String,
    pub count: u32,
    wait: Wait,
}

#[derive(Clone, Debug)]
pub(crate) enum Wait {
    Gate(Gate),
    For(Duration),
}

impl Delay {
    /// Holds one request of any method whose path contains `path_contains` at `gate`, until the
    /// test opens it ([`Gate::open`]: handled) or answers it ([`Gate::answer`]: not handled).
    /// A gate never decided holds the request as long as the server runs: an answer that never
    /// comes, which only a client-side timeout ends.
    pub fn at(gate: &Gate, path_contains: &str) -> Self {
        Self {
            method: None,
            path_contains: path_contains.to_string(),
            count: 1,
            wait: Wait::Gate(gate.clone()),
        }
    }

    /// Delays one request of any method whose path contains `path_contains` by `duration`,
    /// then handles it (its effect and its answer both come late).
    pub fn by(duration: Duration, path_contains: &str) -> Self {
        Self {
            method: None,
            path_contains: path_contains.to_string(),
            count: 1,
            wait: Wait::For(duration),
        }
    }

    /// Restricts the delay to one HTTP method.
    pub fn method(mut self, method: &str) -> Self {
        self.method = Some(method.to_string());
        self
    }

    /// Applies the delay to the next `count` matching requests.
    pub fn times(mut self, count: u32) -> Self {
        self.count = count;
        self
    }

    fn matches(&self, method: &str, target: &str) -> bool {
        selects(self.count, self.method.as_deref(), &self.path_contains, method, target)
    }
}

/// Recorded requests and pending faults; separate from the store so recording
/// never contends with object reads and writes.
#[derive(Default)]
struct RequestLog {
    disabled: bool,
    requests: Vec<Recorded>,
    faults: Vec<Fault>,
    delays: Vec<Delay>,
    /// `410 Gone` answers by resource (plural name).
    gone: BTreeMap<String, u64>,
}

/// State shared by the server task, open watch streams and the test handle.
pub(crate) struct Shared {
    store: Mutex<Store>,
    /// Signs ServiceAccount tokens (TokenRequest) and serves their keys.
    pub(crate) issuer: tokens::Issuer,
    log: Mutex<RequestLog>,
    /// Bumped to end all open watch streams.
    closer: notify::Sender<u64>,
}

/// Locks a mutex, ignoring poisoning: a panicking test thread must not turn every
/// later request into a second panic.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    pub(crate) fn store(&self) -> MutexGuard<'_, Store> {
        lock(&self.store)
    }

    pub(crate) fn closer(&self) -> notify::Receiver<u64> {
        self.closer.subscribe()
    }

    fn record(&self, request: Recorded) {
        let mut log = lock(&self.log);
        if !log.disabled {
            log.requests.push(request);
        }
    }

    /// Consumes one use of the first fault matching the request, if any.
    fn take_fault(&self, method: &str, target: &str) -> Option<u16> {
        let mut log = lock(&self.log);
        let index = log.faults.iter().position(|f| f.matches(method, target))?;
        let fault = &mut log.faults[index];
        fault.count -= 1;
        let status = fault.status;
        if fault.count == 0 {
            log.faults.remove(index);
        }
        Some(status)
    }

    /// Consumes one use of the first delay matching the request, if any.
    pub(crate) fn take_delay(&self, method: &str, target: &str) -> Option<Wait> {
        let mut log = lock(&self.log);
        let index = log.delays.iter().position(|d| d.matches(method, target))?;
        let delay = &mut log.delays[index];
        delay.count -= 1;
        let wait = delay.wait.clone();
        if delay.count == 0 {
            log.delays.remove(index);
        }
        Some(wait)
    }

    /// Counts a `410 Gone` answer: a list continuation or a watch whose resourceVersion is no
    /// longer served.
    pub(crate) fn record_gone(&self, ck: &store::CollKey) {
        *lock(&self.log).gone.entry(ck.1.clone()).or_default() += 1;
    }

    fn close_watches(&self) {
        self.closer.send_modify(|epoch| *epoch += 1);
    }
}

/// A running fake API server. Dropping it stops the server and ends open watches.
pub struct FakeApiServer {
    shared: Arc<Shared>,
    addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    /// Ends the background task that runs deferred garbage collection and Event expiry.
    stop: notify::Sender<bool>,
}

impl FakeApiServer {
    /// Binds `127.0.0.1:0` and serves in a background tokio task. Must be called
    /// inside a tokio runtime, which the server then lives on.
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("listener address");
        let shared = Arc::new(Shared {
            store: Mutex::new(Store::new(DEFAULT_HISTORY_LIMIT, DEFAULT_EVENT_TTL)),
            issuer: tokens::Issuer::new(format!("http://{addr}")),
            log: Mutex::new(RequestLog::default()),
            closer: notify::channel(0).0,
        });
        let (shutdown, stopped) = oneshot::channel::<()>();
        let app = http::router(shared.clone());
        tokio::spawn(async move {
            let serve = axum::serve(listener, app).with_graceful_shutdown(async {
                let _ = stopped.await;
            });
            if let Err(err) = serve.await {
                eprintln!("fake-apiserver: server error: {err}");
            }
        });
        let (stop, stopped) = notify::channel(false);
        tokio::spawn(run_deferred(Arc::downgrade(&shared), stopped));
        Self {
            shared,
            addr,
            shutdown: Some(shutdown),
            stop,
        }
    }

    /// Base URL, `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The issuer of the ServiceAccount tokens this server signs (its `iss` claim): the base
    /// URL, whose `/.well-known/openid-configuration` and `/openid/v1/jwks` are served.
    pub fn issuer(&self) -> String {
        self.shared.issuer.url.clone()
    }

    /// A `kube::Client` for this server, with default namespace `default`.
    pub fn client(&self) -> kube::Client {
        let uri = self.url().parse().expect("valid URL");
        kube::Client::try_from(kube::Config::new(uri)).expect("kube client for the fake server")
    }

    /// Registers a custom resource (like installing its CRD), with a `/status`
    /// subresource as CRDs usually have. Until registered, its URLs answer 404 like
    /// a missing CRD. Use [`register_resource`](Self::register_resource) for more control.
    pub fn register(&self, group: &str, version: &str, plural: &str, kind: &str, namespaced: bool) {
        self.register_resource(ResourceDef::new(group, version, plural, kind, namespaced).with_status(true));
    }

    /// Registers a resource from a full definition. Re-registering a resource
    /// replaces its definition and keeps its objects.
    pub fn register_resource(&self, def: ResourceDef) {
        self.shared.store().register(ResourceInfo::custom(def));
    }

    /// Registers a custom resource from its `CustomResourceDefinition`
    /// (`apiextensions.k8s.io/v1`, e.g. `kube::CustomResourceExt::crd()` or a parsed manifest),
    /// like installing the CRD: its storage version is served, with the CRD's scope and
    /// `/status` subresource, and every write is checked against its schema as a real server
    /// checks it. Unknown fields are pruned; values the structural schema or its
    /// `x-kubernetes-validations` (CEL) rules refuse are answered `422 Invalid`, on create,
    /// update, patch, apply and `/status` alike.
    ///
    /// # Panics
    ///
    /// If the CRD lacks group, names, scope or versions, or its schema has an invalid pattern
    /// or a CEL rule that does not compile (a real server refuses such a CRD).
    pub fn register_crd(&self, crd: &impl Serialize) {
        let crd = serde_json::to_value(crd).expect("the CRD serializes to JSON");
        let info = ResourceInfo::from_crd(&crd).unwrap_or_else(|e| panic!("register_crd: {e}"));
        self.shared.store().register(info);
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<Recorded> {
        lock(&self.shared.log).requests.clone()
    }

    /// How many `410 Gone` answers the server has given, by resource (plural name): list
    /// continuations and watches whose resourceVersion was compacted or fell out of the watch
    /// history, and open watches cut off because they fell behind it. Each one makes a
    /// `kube::runtime` watcher list everything again. Counted even with recording off.
    pub fn gone_answers(&self) -> BTreeMap<String, u64> {
        lock(&self.shared.log).gone.clone()
    }

    /// Forgets the recorded requests.
    pub fn clear_requests(&self) {
        lock(&self.shared.log).requests.clear();
    }

    /// Turns request recording on or off (on by default); long benchmarks may
    /// want it off to keep memory flat.
    pub fn set_recording(&self, enabled: bool) {
        lock(&self.shared.log).disabled = !enabled;
    }

    /// The stored object, read directly (no request is recorded). `group` is `""`
    /// for the core group; `ns` is `None` for cluster-scoped objects.
    pub fn object(&self, group: &str, plural: &str, ns: Option<&str>, name: &str) -> Option<Value> {
        let ck = (group.to_string(), plural.to_string());
        self.shared
            .store()
            .get(&ck, ns.unwrap_or(""), name)
            .map(|o| (**o).clone())
    }

    /// All stored objects of a resource, ordered by namespace and name.
    pub fn objects(&self, group: &str, plural: &str) -> Vec<Value> {
        self.shared.store().all(&(group.to_string(), plural.to_string()))
    }

    /// How many stored objects of a resource satisfy `pred`, without copying them (cheap enough
    /// to poll thousands of objects, e.g. for readiness in benchmarks).
    pub fn count(&self, group: &str, plural: &str, pred: impl Fn(&Value) -> bool) -> usize {
        self.shared
            .store()
            .count(&(group.to_string(), plural.to_string()), pred)
    }

    /// Creates an object directly, without an HTTP request (e.g. to seed
    /// benchmarks quickly). Behaves like `POST`: fills metadata, emits ADDED.
    /// The namespace comes from `metadata.namespace` (`default` if missing).
    pub fn create_object(&self, group: &str, plural: &str, obj: Value) -> Result<Value, ApiError> {
        let ck = (group.to_string(), plural.to_string());
        let ns = meta::meta_str(&obj, "namespace").unwrap_or("default").to_string();
        let mut store = self.shared.store();
        let namespaced = store
            .collection(&ck)
            .ok_or_else(ApiError::unknown_resource)?
            .info
            .namespaced;
        let ns = if namespaced { ns } else { String::new() };
        store.create(&ck, &ns, obj, &WriteOpts::default()).map(|o| (*o).clone())
    }

    /// Deletes an object directly, like `DELETE` with default options (finalizers
    /// are honoured, dependents are garbage-collected). Returns whether it is gone.
    pub fn delete_object(&self, group: &str, plural: &str, ns: Option<&str>, name: &str) -> Result<bool, ApiError> {
        let ck = (group.to_string(), plural.to_string());
        let outcome = self
            .shared
            .store()
            .delete(&ck, ns.unwrap_or(""), name, &DeleteOpts::default())?;
        Ok(matches!(outcome, Deleted::Removed(_)))
    }

    /// Injects a fault; see [`Fault`]. Rules are checked in the order added.
    pub fn fail_next(&self, rule: Fault) {
        if rule.count > 0 {
            lock(&self.shared.log).faults.push(rule);
        }
    }

    /// Injects a delay; see [`Delay`]. Rules are checked in the order added.
    pub fn delay_next(&self, rule: Delay) {
        if rule.count > 0 {
            lock(&self.shared.log).delays.push(rule);
        }
    }

    /// Simulates etcd compaction: afterwards, watches (and list continuations)
    /// from any resourceVersion issued so far get `410 Gone` (an ERROR watch
    /// event with code 410), so watchers must relist. Open watch streams are not
    /// affected; combine with [`close_watches`](Self::close_watches) to force resumption.
    pub fn expire_watch_history(&self) {
        self.shared.store().expire_history();
    }

    /// Ends all open watch streams, as if connections were cut. Clients resume
    /// from their last resourceVersion.
    pub fn close_watches(&self) {
        self.shared.close_watches();
    }

    /// The latest resourceVersion issued.
    pub fn resource_version(&self) -> u64 {
        self.shared.store().rv
    }

    /// Sets how many changes per resource are kept for resuming watches
    /// (default [`DEFAULT_HISTORY_LIMIT`]); applies from the next write on.
    pub fn set_history_limit(&self, limit: usize) {
        self.shared.store().history_limit = limit.max(1);
    }

    /// Makes garbage collection asynchronous, as on a real cluster where
    /// kube-controller-manager does it: dependents of a deleted owner (and objects whose
    /// owners never existed) are collected `delay` after the request that gave rise to it,
    /// checking again then whether their owners exist. `None` (the default) collects inside
    /// that request, before it is answered.
    pub fn set_gc_delay(&self, delay: Option<Duration>) {
        self.shared.store().gc_delay = delay;
    }

    /// Runs the garbage collection scheduled by [`set_gc_delay`](Self::set_gc_delay) now,
    /// however long it still had to wait: tests can hold it back with a long delay, arrange a
    /// race, then let it happen.
    pub fn run_garbage_collection(&self) {
        self.shared.store().run_gc_now();
    }

    /// Sets how long an Event (core or `events.k8s.io`) lives after its last write (default
    /// [`DEFAULT_EVENT_TTL`], like kube-apiserver's `--event-ttl`); applies to Events written
    /// from now on. An expired Event is deleted, with a `DELETED` watch event.
    pub fn set_event_ttl(&self, ttl: Duration) {
        self.shared.store().event_ttl = ttl;
    }
}

/// Runs deferred work (asynchronous garbage collection, Event expiry) when due, until the
/// server is dropped.
async fn run_deferred(shared: Weak<Shared>, mut stopped: notify::Receiver<bool>) {
    loop {
        let Some(strong) = shared.upgrade() else { return };
        let (next, wake) = {
            let store = strong.store();
            (store.next_due(), store.wake.clone())
        };
        drop(strong);
        let due = async {
            match next {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = wake.notified() => {}
            _ = due => {}
            _ = stopped.wait_for(|s| *s) => return,
        }
        let Some(strong) = shared.upgrade() else { return };
        strong.store().run_due(tokio::time::Instant::now());
    }
}

impl Drop for FakeApiServer {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        let _ = self.stop.send(true);
        // Streaming responses would otherwise keep graceful shutdown waiting.
        self.shared.close_watches();
    }
}
