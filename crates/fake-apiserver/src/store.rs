//! The object store: every write path (create, update, patch, apply, delete) with the
//! validation real servers do, the owner-reference garbage collector, Event expiry and the
//! per-resource watch history.
//!
//! Everything here runs under the server's single mutex and never awaits.
//! Objects are kept as `Arc<Value>` so reads (get, list, watch) only clone
//! pointers under the lock and serialize after releasing it.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap, VecDeque};
use std::ops::Bound;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::{Notify, watch};
use tokio::time::Instant;

use crate::apply;
use crate::error::ApiError;
use crate::field::FieldError;
use crate::meta::{self, meta_mut};
use crate::registry::ResourceInfo;
use crate::selector::{FieldSelector, LabelSelector};
use crate::validation;

/// `(group, plural)` of a resource.
pub(crate) type CollKey = (String, String);
/// `(namespace, name)` of an object; the namespace is `""` for cluster-scoped objects.
pub(crate) type ObjKey = (String, String);

/// Identifies one stored object.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct ObjRef {
    pub coll: CollKey,
    pub key: ObjKey,
}

/// The type of a watch event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum EventType {
    Added,
    Modified,
    Deleted,
}

/// One committed change, kept in the watch history of its resource.
#[derive(Debug)]
pub(crate) struct Change {
    pub rv: u64,
    pub kind: EventType,
    pub namespace: String,
    /// The object after the change (for deletions: its last state, with the deletion's rv).
    pub object: Arc<Value>,
    /// The object before a modification, so watches with selectors can turn a
    /// modification into ADDED/DELETED when the object starts/stops matching.
    pub old: Option<Arc<Value>>,
}

/// Which part of an object a write targets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Target {
    /// The main resource: `.status` is ignored for resources with a status subresource.
    Main,
    /// The `/status` subresource: only `.status` changes.
    Status,
}

/// Supported patch content types.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PatchKind {
    Merge,
    Strategic,
    Json,
    Apply,
}

impl PatchKind {
    pub(crate) fn from_content_type(content_type: &str) -> Option<Self> {
        match content_type.split(';').next().unwrap_or("").trim() {
            "application/merge-patch+json" => Some(Self::Merge),
            "application/strategic-merge-patch+json" => Some(Self::Strategic),
            "application/json-patch+json" => Some(Self::Json),
            "application/apply-patch+yaml" | "application/apply-patch+json" => Some(Self::Apply),
            _ => None,
        }
    }

    /// The name used in [`crate::Recorded::patch_type`].
    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::Merge => "merge",
            Self::Strategic => "strategic",
            Self::Json => "json",
            Self::Apply => "apply",
        }
    }
}

/// Options shared by write requests.
#[derive(Clone, Debug, Default)]
pub(crate) struct WriteOpts {
    /// `dryRun=All`: validate and compute the result without persisting it.
    pub dry_run: bool,
    pub field_manager: Option<String>,
    /// `force=true` for server-side apply.
    pub force: bool,
}

/// Options of a delete request (from the `DeleteOptions` body).
#[derive(Clone, Debug, Default)]
pub(crate) struct DeleteOpts {
    pub dry_run: bool,
    pub precondition_uid: Option<String>,
    pub precondition_rv: Option<String>,
    /// `propagationPolicy: Orphan`: dependents are not garbage-collected.
    pub orphan: bool,
}

/// Result of deleting one object.
#[derive(Clone, Debug)]
pub(crate) enum Deleted {
    /// Finalizers are pending: the object got a deletionTimestamp and remains.
    Pending(Arc<Value>),
    /// The object is gone.
    Removed(Arc<Value>),
}

/// Counts of an object's owner references that resolve, and that do not.
#[derive(Default)]
struct Owners {
    solid: usize,
    dangling: usize,
}

/// Label/field/name filter of list and watch requests.
#[derive(Clone, Debug, Default)]
pub(crate) struct Filter {
    pub labels: LabelSelector,
    pub fields: FieldSelector,
}

impl Filter {
    pub(crate) fn matches(&self, obj: &Value) -> bool {
        self.labels.matches(obj) && self.fields.matches(obj)
    }
}

/// One page of a list.
pub(crate) struct Page {
    pub items: Vec<Arc<Value>>,
    /// Key of the last returned item when more matching items follow.
    pub next: Option<ObjKey>,
}

/// Why a watch cannot continue from the requested position.
pub(crate) struct TooOld {
    pub oldest: u64,
}

struct Entry {
    obj: Arc<Value>,
    /// Last configuration applied by each server-side-apply manager (see [`apply`]);
    /// keyed by manager name, with `/status` appended for status-subresource applies.
    applied: BTreeMap<String, Value>,
    /// Field manager of the last non-apply write, blamed for apply conflicts.
    updater: Option<String>,
    /// When an Event expires (its TTL counts from its last write).
    expires: Option<Instant>,
}

/// Work of the garbage collector: look at the dependents of a deleted owner, or at one object
/// whose owners may be gone (or may never have existed).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Gc {
    Owner(String),
    Dependent(ObjRef),
}

/// Deferred work, run by the server's background task when due.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    Gc(Gc),
    Expire(ObjRef),
}

/// All objects of one resource plus its watch history.
pub(crate) struct Collection {
    pub info: Arc<ResourceInfo>,
    objects: BTreeMap<ObjKey, Entry>,
    history: VecDeque<Arc<Change>>,
    /// rv of the newest change dropped from `history`; watches from older rvs get 410.
    history_floor: u64,
    /// Carries the rv of the latest change; open watches wait on it.
    notify: watch::Sender<u64>,
}

impl Collection {
    fn new(info: ResourceInfo) -> Self {
        Self {
            info: Arc::new(info),
            objects: BTreeMap::new(),
            history: VecDeque::new(),
            history_floor: 0,
            notify: watch::channel(0).0,
        }
    }

    /// Objects in `namespace` (all namespaces when `None`) after `after`, in key order.
    fn range<'a>(
        &'a self,
        namespace: Option<&'a str>,
        after: Option<&ObjKey>,
    ) -> impl Iterator<Item = (&'a ObjKey, &'a Arc<Value>)> + 'a {
        let start = match (after, namespace) {
            (Some(key), _) => Bound::Excluded(key.clone()),
            (None, Some(ns)) => Bound::Included((ns.to_string(), String::new())),
            (None, None) => Bound::Unbounded,
        };
        self.objects
            .range((start, Bound::Unbounded))
            .take_while(move |(key, _)| namespace.is_none_or(|ns| key.0 == ns))
            .map(|(key, entry)| (key, &entry.obj))
    }

    fn record(&mut self, change: Change, limit: usize) {
        let rv = change.rv;
        self.history.push_back(Arc::new(change));
        while self.history.len() > limit.max(1) {
            if let Some(dropped) = self.history.pop_front() {
                self.history_floor = dropped.rv;
            }
        }
        self.notify.send_replace(rv);
    }
}

/// The whole server state except request recording.
pub(crate) struct Store {
    /// The global resourceVersion counter (like etcd's revision).
    pub rv: u64,
    /// Watches resuming from an rv below this get 410 Gone (see `expire_watch_history`).
    pub compacted_rv: u64,
    pub history_limit: usize,
    collections: HashMap<CollKey, Collection>,
    /// uid → object, to tell whether an owner still exists.
    uid_index: HashMap<String, ObjRef>,
    /// owner uid → objects listing it in ownerReferences, for garbage collection.
    dependents: HashMap<String, BTreeSet<ObjRef>>,
    /// How long garbage collection waits; `None`: it runs inside the request that deletes.
    pub gc_delay: Option<Duration>,
    /// How long an Event lives after its last write.
    pub event_ttl: Duration,
    /// Garbage collection found by the request being handled, done when it ends.
    pending: Vec<Gc>,
    timers: BinaryHeap<Reverse<(Instant, Timer)>>,
    /// Wakes the background task when a timer is added.
    pub wake: Arc<Notify>,
}

fn key_of(ns: &str, name: &str) -> ObjKey {
    (ns.to_string(), name.to_string())
}

impl Store {
    pub(crate) fn new(history_limit: usize, event_ttl: Duration) -> Self {
        let mut store = Self {
            rv: 0,
            compacted_rv: 0,
            history_limit,
            collections: HashMap::new(),
            uid_index: HashMap::new(),
            dependents: HashMap::new(),
            gc_delay: None,
            event_ttl,
            pending: Vec::new(),
            timers: BinaryHeap::new(),
            wake: Arc::new(Notify::new()),
        };
        for info in ResourceInfo::builtins() {
            store.register(info);
        }
        store
    }

    /// Adds a resource type, or replaces its definition keeping its objects.
    pub(crate) fn register(&mut self, info: ResourceInfo) {
        let key = (info.group.clone(), info.plural.clone());
        match self.collections.get_mut(&key) {
            Some(coll) => coll.info = Arc::new(info),
            None => {
                self.collections.insert(key, Collection::new(info));
            }
        }
    }

    pub(crate) fn infos(&self) -> impl Iterator<Item = &Arc<ResourceInfo>> {
        self.collections.values().map(|c| &c.info)
    }

    pub(crate) fn collection(&self, ck: &CollKey) -> Option<&Collection> {
        self.collections.get(ck)
    }

    fn coll(&self, ck: &CollKey) -> Result<&Collection, ApiError> {
        self.collections.get(ck).ok_or_else(ApiError::unknown_resource)
    }

    fn coll_mut(&mut self, ck: &CollKey) -> &mut Collection {
        self.collections.get_mut(ck).expect("collection checked by caller")
    }

    fn info(&self, ck: &CollKey) -> Result<Arc<ResourceInfo>, ApiError> {
        Ok(self.coll(ck)?.info.clone())
    }

    pub(crate) fn get(&self, ck: &CollKey, ns: &str, name: &str) -> Option<&Arc<Value>> {
        self.collections.get(ck)?.objects.get(&key_of(ns, name)).map(|e| &e.obj)
    }

    fn get_ref(&self, r: &ObjRef) -> Option<&Arc<Value>> {
        self.collections.get(&r.coll)?.objects.get(&r.key).map(|e| &e.obj)
    }

    fn get_or_404(&self, ck: &CollKey, ns: &str, name: &str) -> Result<Arc<Value>, ApiError> {
        let coll = self.coll(ck)?;
        coll.objects
            .get(&key_of(ns, name))
            .map(|e| e.obj.clone())
            .ok_or_else(|| ApiError::not_found(&coll.info, name))
    }

    /// Up to `limit` matching objects of `namespace` (all when `None`) after `after`.
    pub(crate) fn list(
        &self,
        ck: &CollKey,
        namespace: Option<&str>,
        filter: &Filter,
        after: Option<&ObjKey>,
        limit: Option<usize>,
    ) -> Page {
        let Some(coll) = self.collections.get(ck) else {
            return Page {
                items: Vec::new(),
                next: None,
            };
        };
        let mut matching = coll.range(namespace, after).filter(|(_, o)| filter.matches(o));
        let mut items = Vec::new();
        let mut last = None;
        for (key, obj) in matching.by_ref() {
            items.push(obj.clone());
            last = Some(key);
            if limit.is_some_and(|l| items.len() >= l) {
                break;
            }
        }
        let more = limit.is_some() && matching.next().is_some();
        Page {
            items,
            next: last.filter(|_| more).cloned(),
        }
    }

    /// All objects of `namespace` (all when `None`), for the initial events of a watch.
    pub(crate) fn snapshot(&self, ck: &CollKey, namespace: Option<&str>) -> Vec<Arc<Value>> {
        self.collections
            .get(ck)
            .map(|c| c.range(namespace, None).map(|(_, o)| o.clone()).collect())
            .unwrap_or_default()
    }

    /// Subscribes to change notifications of a resource.
    pub(crate) fn subscribe(&self, ck: &CollKey) -> Option<watch::Receiver<u64>> {
        self.collections.get(ck).map(|c| c.notify.subscribe())
    }

    /// The oldest rv a watch of this resource may resume from.
    pub(crate) fn oldest_resumable(&self, ck: &CollKey) -> u64 {
        let floor = self.collections.get(ck).map_or(0, |c| c.history_floor);
        floor.max(self.compacted_rv)
    }

    /// Up to `max` changes with rv greater than `position`, oldest first.
    /// `Ok(None)` means the resource was unregistered.
    pub(crate) fn changes_after(
        &self,
        ck: &CollKey,
        position: u64,
        max: usize,
    ) -> Result<Option<Vec<Arc<Change>>>, TooOld> {
        let Some(coll) = self.collections.get(ck) else {
            return Ok(None);
        };
        // Open watches are only cut off by history trimming (not by
        // `expire_watch_history`, which like etcd compaction affects new requests).
        if position < coll.history_floor {
            return Err(TooOld {
                oldest: coll.history_floor,
            });
        }
        let start = coll.history.partition_point(|c| c.rv <= position);
        Ok(Some(coll.history.range(start..).take(max).cloned().collect()))
    }

    fn next_rv(&mut self) -> u64 {
        self.rv += 1;
        self.rv
    }

    /// Persists `obj` as the new version of an object: assigns a fresh
    /// resourceVersion, maintains the owner index and records a watch event. An Event's TTL
    /// starts again; an object some of whose owners do not exist is left to the garbage
    /// collector.
    fn commit(&mut self, ck: &CollKey, ns: &str, name: &str, mut obj: Value) -> Arc<Value> {
        let rv = self.next_rv();
        meta_mut(&mut obj).insert("resourceVersion".into(), Value::String(rv.to_string()));
        let obj = Arc::new(obj);
        let limit = self.history_limit;
        let expires = Instant::now() + self.event_ttl;
        let coll = self.coll_mut(ck);
        let expires = coll.info.is_events().then_some(expires);
        let key = key_of(ns, name);
        let old = match coll.objects.get_mut(&key) {
            Some(entry) => {
                entry.expires = expires;
                Some(std::mem::replace(&mut entry.obj, obj.clone()))
            }
            None => {
                let entry = Entry {
                    obj: obj.clone(),
                    applied: BTreeMap::new(),
                    updater: None,
                    expires,
                };
                coll.objects.insert(key.clone(), entry);
                None
            }
        };
        let kind = if old.is_some() {
            EventType::Modified
        } else {
            EventType::Added
        };
        let change = Change {
            rv,
            kind,
            namespace: ns.to_string(),
            object: obj.clone(),
            old: old.clone(),
        };
        coll.record(change, limit);
        let r = ObjRef { coll: ck.clone(), key };
        if let (None, Some(at)) = (&old, expires) {
            self.schedule(at, Timer::Expire(r.clone()));
        }
        self.reindex(&r, old.as_deref(), Some(&obj));
        if self.owners(&obj).dangling > 0 {
            self.pending.push(Gc::Dependent(r));
        }
        obj
    }

    /// Removes an object, recording a DELETED event carrying a fresh resourceVersion.
    fn remove(&mut self, r: &ObjRef) -> Option<Arc<Value>> {
        let entry = self.collections.get_mut(&r.coll)?.objects.remove(&r.key)?;
        let rv = self.next_rv();
        let limit = self.history_limit;
        let mut last = (*entry.obj).clone();
        meta_mut(&mut last).insert("resourceVersion".into(), Value::String(rv.to_string()));
        let last = Arc::new(last);
        let coll = self.coll_mut(&r.coll);
        let change = Change {
            rv,
            kind: EventType::Deleted,
            namespace: r.key.0.clone(),
            object: last.clone(),
            old: Some(entry.obj.clone()),
        };
        coll.record(change, limit);
        self.reindex(r, Some(&entry.obj), None);
        Some(last)
    }

    /// Keeps `uid_index` and `dependents` in sync with an object's new version.
    fn reindex(&mut self, r: &ObjRef, old: Option<&Value>, new: Option<&Value>) {
        match (old.and_then(meta::uid), new.and_then(meta::uid)) {
            (Some(uid), None) => {
                self.uid_index.remove(uid);
            }
            (None, Some(uid)) => {
                self.uid_index.insert(uid.to_string(), r.clone());
            }
            _ => {}
        }
        let old_owners: BTreeSet<&str> = old.map(meta::owner_uids).unwrap_or_default().into_iter().collect();
        let new_owners: BTreeSet<&str> = new.map(meta::owner_uids).unwrap_or_default().into_iter().collect();
        for gone in old_owners.difference(&new_owners) {
            if let Some(deps) = self.dependents.get_mut(*gone) {
                deps.remove(r);
                if deps.is_empty() {
                    self.dependents.remove(*gone);
                }
            }
        }
        for added in new_owners.difference(&old_owners) {
            self.dependents
                .entry((*added).to_string())
                .or_default()
                .insert(r.clone());
        }
    }

    /// Validates and completes an object for creation: identity, server-owned
    /// metadata, type meta and defaults.
    fn prepare_create(
        &self,
        info: &ResourceInfo,
        ns: &str,
        mut obj: Value,
        url_name: Option<&str>,
    ) -> Result<Value, ApiError> {
        if !obj.is_object() {
            return Err(ApiError::bad_request("the request body must be a JSON object"));
        }
        check_namespace(info, &obj, ns)?;
        if meta::resource_version(&obj).is_some() {
            // The same error kube-apiserver's storage layer answers.
            return Err(ApiError::internal(
                "resourceVersion should not be set on objects to be created",
            ));
        }
        let name = match (url_name, meta::name(&obj)) {
            (Some(url), Some(body)) if url != body => return Err(name_mismatch(body, url)),
            (Some(url), _) => url.to_string(),
            (None, Some(body)) => body.to_string(),
            (None, None) => match meta::meta_str(&obj, "generateName") {
                Some(prefix) => meta::generate_name(prefix),
                None => {
                    let missing = FieldError::required("metadata.name", "name or generateName is required");
                    return Err(ApiError::invalid(info, "", &[missing]));
                }
            },
        };
        meta::clear_system_fields(&mut obj);
        if info.status_subresource {
            obj.as_object_mut().expect("checked").remove("status");
        }
        set_type_meta(info, &mut obj);
        let meta = meta_mut(&mut obj);
        meta.insert("name".into(), Value::String(name));
        if info.namespaced {
            meta.insert("namespace".into(), Value::String(ns.to_string()));
        } else {
            meta.remove("namespace");
        }
        meta.insert("uid".into(), Value::String(meta::new_uid()));
        meta.insert("creationTimestamp".into(), Value::String(meta::now_rfc3339()));
        meta.insert("generation".into(), json!(1));
        prune_and_default(info, &mut obj)?;
        check(info, &obj, None, Target::Main)?;
        Ok(obj)
    }

    /// Builds the new version of an existing object from a client-provided one.
    fn prepare_update(
        &self,
        info: &ResourceInfo,
        old: &Value,
        mut new: Value,
        target: Target,
    ) -> Result<Value, ApiError> {
        let name = meta::name(old).unwrap_or_default();
        if !new.is_object() {
            return Err(ApiError::bad_request("the request body must be a JSON object"));
        }
        if let Some(body_name) = meta::name(&new)
            && body_name != name
        {
            return Err(name_mismatch(body_name, name));
        }
        check_namespace(
            info,
            &new,
            old.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or(""),
        )?;
        if let Some(rv) = meta::resource_version(&new)
            && Some(rv) != meta::resource_version(old)
        {
            return Err(ApiError::stale_resource_version(info, name));
        }
        if target == Target::Status {
            // Like the real status strategy: copy the old object, take only `.status`.
            let status = new.as_object_mut().expect("checked").remove("status");
            let mut result = old.clone();
            let root = result.as_object_mut().expect("stored objects are maps");
            match status {
                Some(status) => root.insert("status".into(), status),
                None => root.remove("status"),
            };
            if let Some(schema) = &info.schema {
                schema.prune(&mut result);
            }
            check(info, &result, Some(old), Target::Status)?;
            return Ok(result);
        }
        meta::restore_system_fields(&mut new, old);
        set_type_meta(info, &mut new);
        {
            let meta = meta_mut(&mut new);
            meta.insert("name".into(), Value::String(name.to_string()));
            match old.pointer("/metadata/namespace") {
                Some(ns) => meta.insert("namespace".into(), ns.clone()),
                None => meta.remove("namespace"),
            };
        }
        if info.status_subresource {
            let root = new.as_object_mut().expect("checked");
            match old.get("status") {
                Some(status) => root.insert("status".into(), status.clone()),
                None => root.remove("status"),
            };
        }
        prune_and_default(info, &mut new)?;
        let generation = old.pointer("/metadata/generation").and_then(Value::as_i64).unwrap_or(1);
        if meta::spec_changed(old, &new, info.status_subresource) {
            meta_mut(&mut new).insert("generation".into(), json!(generation + 1));
        }
        check(info, &new, Some(old), Target::Main)?;
        Ok(new)
    }

    /// Stores a prepared new version unless it is a no-op (real servers skip those:
    /// no resourceVersion bump, no watch event). Completes a pending deletion once
    /// the last finalizer is gone.
    fn finish_write(
        &mut self,
        ck: &CollKey,
        old: &Arc<Value>,
        new: Value,
        opts: &WriteOpts,
        updater: Option<&str>,
    ) -> Arc<Value> {
        if new == **old {
            return old.clone();
        }
        if opts.dry_run {
            return Arc::new(new);
        }
        let ns = old
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let name = meta::name(old).unwrap_or_default().to_string();
        let stored = self.commit(ck, &ns, &name, new);
        let r = ObjRef {
            coll: ck.clone(),
            key: key_of(&ns, &name),
        };
        if let Some(updater) = updater
            && let Some(entry) = self.coll_mut(ck).objects.get_mut(&r.key)
        {
            entry.updater = Some(updater.to_string());
        }
        if meta::is_deleting(&stored)
            && meta::finalizers(&stored).is_empty()
            && let Some(removed) = self.remove(&r)
        {
            self.removed(r.coll, removed);
        }
        stored
    }

    /// `POST`: creates an object.
    pub(crate) fn create(
        &mut self,
        ck: &CollKey,
        ns: &str,
        body: Value,
        opts: &WriteOpts,
    ) -> Result<Arc<Value>, ApiError> {
        self.settled(|store| {
            let info = store.info(ck)?;
            let obj = store.prepare_create(&info, ns, body, None)?;
            store.insert_new(ck, &info, ns, obj, opts, None)
        })
    }

    /// Runs a write, then the garbage collection it gave rise to (see [`Store::settle`]).
    fn settled<T>(&mut self, write: impl FnOnce(&mut Self) -> T) -> T {
        let result = write(self);
        self.settle();
        result
    }

    fn insert_new(
        &mut self,
        ck: &CollKey,
        info: &ResourceInfo,
        ns: &str,
        obj: Value,
        opts: &WriteOpts,
        applied: Option<(String, Value)>,
    ) -> Result<Arc<Value>, ApiError> {
        let name = meta::name(&obj).unwrap_or_default().to_string();
        let ns = if info.namespaced { ns } else { "" };
        if self.get(ck, ns, &name).is_some() {
            return Err(ApiError::already_exists(info, &name));
        }
        if opts.dry_run {
            return Ok(Arc::new(obj));
        }
        let stored = self.commit(ck, ns, &name, obj);
        let entry = self
            .coll_mut(ck)
            .objects
            .get_mut(&key_of(ns, &name))
            .expect("just stored");
        match applied {
            Some((manager, config)) => {
                entry.applied.insert(manager, config);
            }
            None => entry.updater = opts.field_manager.clone(),
        }
        Ok(stored)
    }

    /// `PUT`: replaces an object (or its status). Returns the result and whether it was created.
    pub(crate) fn update(
        &mut self,
        ck: &CollKey,
        ns: &str,
        name: &str,
        body: Value,
        target: Target,
        opts: &WriteOpts,
    ) -> Result<(Arc<Value>, bool), ApiError> {
        self.settled(|store| store.replace(ck, ns, name, body, target, opts))
    }

    fn replace(
        &mut self,
        ck: &CollKey,
        ns: &str,
        name: &str,
        body: Value,
        target: Target,
        opts: &WriteOpts,
    ) -> Result<(Arc<Value>, bool), ApiError> {
        let info = self.info(ck)?;
        let Some(old) = self.get(ck, ns, name).cloned() else {
            if target == Target::Main && info.allow_create_on_update {
                let obj = self.prepare_create(&info, ns, body, Some(name))?;
                return Ok((self.insert_new(ck, &info, ns, obj, opts, None)?, true));
            }
            return Err(ApiError::not_found(&info, name));
        };
        let new = self.prepare_update(&info, &old, body, target)?;
        let updater = opts.field_manager.as_deref().unwrap_or("unknown");
        Ok((self.finish_write(ck, &old, new, opts, Some(updater)), false))
    }

    /// `PATCH` with a merge, strategic-merge, JSON or apply patch.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn patch(
        &mut self,
        ck: &CollKey,
        ns: &str,
        name: &str,
        kind: PatchKind,
        body: Value,
        target: Target,
        opts: &WriteOpts,
    ) -> Result<(Arc<Value>, bool), ApiError> {
        self.settled(|store| store.patch_object(ck, ns, name, kind, body, target, opts))
    }

    #[allow(clippy::too_many_arguments)]
    fn patch_object(
        &mut self,
        ck: &CollKey,
        ns: &str,
        name: &str,
        kind: PatchKind,
        body: Value,
        target: Target,
        opts: &WriteOpts,
    ) -> Result<(Arc<Value>, bool), ApiError> {
        let info = self.info(ck)?;
        if kind == PatchKind::Apply {
            return self.apply(ck, &info, ns, name, body, target, opts);
        }
        let old = self.get_or_404(ck, ns, name)?;
        let mut candidate = (*old).clone();
        match kind {
            PatchKind::Merge | PatchKind::Strategic => {
                let mut patch = body;
                if !patch.is_object() {
                    return Err(ApiError::bad_request("a merge patch must be a JSON object"));
                }
                if kind == PatchKind::Strategic {
                    apply::strip_directives(&mut patch);
                }
                json_patch::merge(&mut candidate, &patch);
            }
            PatchKind::Json => {
                let ops: json_patch::Patch = serde_json::from_value(body)
                    .map_err(|e| ApiError::bad_request(format!("invalid JSON patch: {e}")))?;
                // Real servers do not say why (`NewGenericServerResponse(422, ...)`).
                json_patch::patch(&mut candidate, &ops.0).map_err(|_| {
                    ApiError::new(
                        422,
                        "Invalid",
                        "the server rejected our request due to an error in our request",
                    )
                })?;
            }
            PatchKind::Apply => unreachable!("handled above"),
        }
        let new = self.prepare_update(&info, &old, candidate, target)?;
        let updater = opts.field_manager.as_deref().unwrap_or("unknown");
        Ok((self.finish_write(ck, &old, new, opts, Some(updater)), false))
    }

    /// Server-side apply (see [`apply`] for the ownership approximation).
    #[allow(clippy::too_many_arguments)]
    fn apply(
        &mut self,
        ck: &CollKey,
        info: &ResourceInfo,
        ns: &str,
        name: &str,
        body: Value,
        target: Target,
        opts: &WriteOpts,
    ) -> Result<(Arc<Value>, bool), ApiError> {
        let Some(manager) = opts.field_manager.clone() else {
            return Err(ApiError::bad_request(
                "PATCH: fieldManager is required for apply requests",
            ));
        };
        if !body.is_object() {
            return Err(ApiError::bad_request("the applied configuration must be an object"));
        }
        if let Some(body_name) = meta::name(&body)
            && body_name != name
        {
            return Err(name_mismatch(body_name, name));
        }
        let manager_key = match target {
            Target::Main => manager.clone(),
            Target::Status => format!("{manager}/status"),
        };
        let mut config = apply::managed_config(body.clone());
        apply::key_lists(&mut config);
        if let Some(root) = config.as_object_mut() {
            match target {
                Target::Status => root.retain(|k, _| k == "status"),
                Target::Main if info.status_subresource => {
                    root.remove("status");
                }
                Target::Main => {}
            }
        }
        let key = key_of(if info.namespaced { ns } else { "" }, name);
        let Some(entry) = self.coll(ck)?.objects.get(&key) else {
            if target == Target::Status {
                return Err(ApiError::not_found(info, name));
            }
            if meta::resource_version(&body).is_some() {
                return Err(ApiError::stale_resource_version(info, name));
            }
            let obj = self.prepare_create(info, ns, body, Some(name))?;
            let stored = self.insert_new(ck, info, ns, obj, opts, Some((manager_key, config)))?;
            return Ok((stored, true));
        };
        let old = entry.obj.clone();
        if let Some(rv) = meta::resource_version(&body)
            && Some(rv) != meta::resource_version(&old)
        {
            return Err(ApiError::stale_resource_version(info, name));
        }
        let mut keyed = (*old).clone();
        apply::key_lists(&mut keyed);
        let last = entry.applied.get(&manager_key);
        let others: Vec<apply::Other<'_>> = entry
            .applied
            .iter()
            .filter(|(k, _)| **k != manager_key)
            .map(|(k, v)| (k.as_str(), v))
            .collect();
        if !opts.force {
            let updater = entry.updater.as_deref().unwrap_or("unknown");
            let found = apply::conflicts(&keyed, &config, last, &others, updater);
            if !found.is_empty() {
                let list: Vec<String> = found
                    .iter()
                    .map(|(path, owner)| format!("conflict with \"{owner}\": {path}"))
                    .collect();
                let plural = if found.len() == 1 { "" } else { "s" };
                return Err(ApiError::conflict(
                    info,
                    name,
                    &format!(
                        "Apply failed with {} conflict{plural}: {}",
                        found.len(),
                        list.join(", ")
                    ),
                ));
            }
        }
        let mut candidate = keyed;
        if let Some(last) = last {
            apply::prune(&mut candidate, last, &config, &others);
        }
        json_patch::merge(&mut candidate, &config);
        apply::unkey_lists(&mut candidate, &old, &body);
        let new = self.prepare_update(info, &old, candidate, target)?;
        let stored = self.finish_write(ck, &old, new, opts, None);
        if !opts.dry_run
            && let Some(entry) = self.coll_mut(ck).objects.get_mut(&key)
        {
            entry.applied.insert(manager_key, config);
        }
        Ok((stored, false))
    }

    /// `DELETE` of one object.
    pub(crate) fn delete(
        &mut self,
        ck: &CollKey,
        ns: &str,
        name: &str,
        opts: &DeleteOpts,
    ) -> Result<Deleted, ApiError> {
        let info = self.info(ck)?;
        let old = self.get_or_404(ck, ns, name)?;
        let uid = meta::uid(&old).unwrap_or_default();
        if let Some(want) = &opts.precondition_uid
            && want != uid
        {
            let why = format!("Precondition failed: UID in precondition: {want}, UID in object meta: {uid}");
            return Err(ApiError::conflict(&info, name, &why));
        }
        let rv = meta::resource_version(&old).unwrap_or_default();
        if let Some(want) = &opts.precondition_rv
            && want != rv
        {
            let why = format!(
                "Precondition failed: ResourceVersion in precondition: {want}, ResourceVersion in object meta: {rv}"
            );
            return Err(ApiError::conflict(&info, name, &why));
        }
        if opts.dry_run {
            if meta::finalizers(&old).is_empty() {
                return Ok(Deleted::Removed(old));
            }
            let mut pending = (*old).clone();
            mark_deleting(&mut pending);
            return Ok(Deleted::Pending(Arc::new(pending)));
        }
        let r = ObjRef {
            coll: ck.clone(),
            key: key_of(ns, name),
        };
        let outcome = self.delete_one(&r).ok_or_else(|| ApiError::not_found(&info, name))?;
        if let Deleted::Removed(obj) = &outcome {
            if opts.orphan {
                self.orphan_dependents(uid);
            }
            self.removed(r.coll, obj.clone());
        }
        self.settle();
        Ok(outcome)
    }

    /// Deletes one object without cascading: with finalizers it only gets a
    /// deletionTimestamp (a MODIFIED event), otherwise it is removed.
    fn delete_one(&mut self, r: &ObjRef) -> Option<Deleted> {
        let obj = self.get_ref(r)?.clone();
        if meta::finalizers(&obj).is_empty() {
            return self.remove(r).map(Deleted::Removed);
        }
        if meta::is_deleting(&obj) {
            return Some(Deleted::Pending(obj));
        }
        let mut pending = (*obj).clone();
        mark_deleting(&mut pending);
        Some(Deleted::Pending(self.commit(&r.coll, &r.key.0, &r.key.1, pending)))
    }

    /// After an object is gone: the contents of a deleted namespace go at once (the namespace
    /// controller's work); its dependents are left to the garbage collector.
    fn removed(&mut self, coll: CollKey, gone: Arc<Value>) {
        let mut queue = VecDeque::from([(coll, gone)]);
        while let Some((coll, obj)) = queue.pop_front() {
            if let Some(uid) = meta::uid(&obj)
                && self.dependents.contains_key(uid)
            {
                self.pending.push(Gc::Owner(uid.to_string()));
            }
            if coll.0.is_empty() && coll.1 == "namespaces" {
                let ns = meta::name(&obj).unwrap_or_default();
                let mut victims = Vec::new();
                for (ck, c) in &self.collections {
                    if c.info.namespaced {
                        victims.extend(c.range(Some(ns), None).map(|(key, _)| ObjRef {
                            coll: ck.clone(),
                            key: key.clone(),
                        }));
                    }
                }
                for victim in victims {
                    if let Some(Deleted::Removed(gone)) = self.delete_one(&victim) {
                        queue.push_back((victim.coll, gone));
                    }
                }
            }
        }
    }

    /// `propagationPolicy: Orphan`: dependents lose their reference to the deleted owner.
    fn orphan_dependents(&mut self, uid: &str) {
        let deps: Vec<ObjRef> = self
            .dependents
            .get(uid)
            .map(|d| d.iter().cloned().collect())
            .unwrap_or_default();
        for dep in deps {
            self.drop_owner_refs(&dep, |r| r.get("uid").and_then(Value::as_str) == Some(uid));
        }
    }

    /// Rewrites an object without the owner references `drop` selects.
    fn drop_owner_refs(&mut self, r: &ObjRef, drop: impl Fn(&Value) -> bool) {
        let Some(obj) = self.get_ref(r) else { return };
        let mut kept = (**obj).clone();
        if let Some(Value::Array(refs)) = meta_mut(&mut kept).get_mut("ownerReferences") {
            refs.retain(|o| !drop(o));
            if refs.is_empty() {
                meta_mut(&mut kept).remove("ownerReferences");
            }
        }
        self.commit(&r.coll, &r.key.0, &r.key.1, kept);
    }

    /// Whether an owner reference points at an object that does not exist: nothing has its
    /// uid, though its kind is served here (an owner of a kind this server does not know is
    /// left alone, as real garbage collection cannot look it up either).
    fn dangling(&self, owner: &Value) -> bool {
        let uid = owner.get("uid").and_then(Value::as_str).unwrap_or_default();
        if self.uid_index.contains_key(uid) {
            return false;
        }
        let api_version = owner.get("apiVersion").and_then(Value::as_str).unwrap_or_default();
        let kind = owner.get("kind").and_then(Value::as_str).unwrap_or_default();
        let Some((group, _)) = validation::parse_group_version(api_version) else {
            return false;
        };
        self.collections
            .values()
            .any(|c| c.info.group == group && c.info.kind == kind)
    }

    /// How many of an object's owners exist (or cannot be checked), and how many do not.
    fn owners(&self, obj: &Value) -> Owners {
        let mut owners = Owners::default();
        for owner in obj
            .pointer("/metadata/ownerReferences")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if self.dangling(owner) {
                owners.dangling += 1;
            } else {
                owners.solid += 1;
            }
        }
        owners
    }

    /// What the garbage collector does about one object: with all its owners gone it is
    /// deleted; with some gone, its references to those are removed.
    fn collect_dependent(&mut self, r: &ObjRef) {
        let Some(obj) = self.get_ref(r).cloned() else { return };
        let owners = self.owners(&obj);
        if owners.dangling == 0 {
            return;
        }
        if owners.solid > 0 {
            let dangling: Vec<Value> = obj
                .pointer("/metadata/ownerReferences")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter(|o| self.dangling(o))
                .cloned()
                .collect();
            self.drop_owner_refs(r, |o| dangling.contains(o));
            return;
        }
        if let Some(Deleted::Removed(gone)) = self.delete_one(r) {
            self.removed(r.coll.clone(), gone);
        }
    }

    fn collect(&mut self, work: Gc) {
        match work {
            Gc::Owner(uid) => {
                let deps: Vec<ObjRef> = self
                    .dependents
                    .get(&uid)
                    .map(|d| d.iter().cloned().collect())
                    .unwrap_or_default();
                for dep in deps {
                    self.collect_dependent(&dep);
                }
            }
            Gc::Dependent(r) => self.collect_dependent(&r),
        }
    }

    /// Ends a request's work: the garbage collection it gave rise to runs now (synchronous
    /// mode, the default) or is scheduled after the configured delay.
    pub(crate) fn settle(&mut self) {
        match self.gc_delay {
            None => {
                while let Some(work) = self.pending.pop() {
                    self.collect(work);
                }
            }
            Some(delay) => {
                let at = Instant::now() + delay;
                for work in std::mem::take(&mut self.pending) {
                    self.schedule(at, Timer::Gc(work));
                }
            }
        }
    }

    fn schedule(&mut self, at: Instant, timer: Timer) {
        self.timers.push(Reverse((at, timer)));
        self.wake.notify_one();
    }

    /// When the next deferred work is due.
    pub(crate) fn next_due(&self) -> Option<Instant> {
        self.timers.peek().map(|Reverse((at, _))| *at)
    }

    /// Does all scheduled garbage collection at once, due or not.
    pub(crate) fn run_gc_now(&mut self) {
        let (gc, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut self.timers)
            .into_iter()
            .partition(|Reverse((_, t))| matches!(t, Timer::Gc(_)));
        self.timers = rest.into_iter().collect();
        let mut gc: Vec<(Instant, Timer)> = gc.into_iter().map(|Reverse(t)| t).collect();
        gc.sort();
        for (_, timer) in gc {
            if let Timer::Gc(work) = timer {
                self.collect(work);
            }
        }
        // Cascades go on at once too.
        while !self.pending.is_empty() {
            for work in std::mem::take(&mut self.pending) {
                self.collect(work);
            }
        }
    }

    /// Does the deferred work due by `now`: garbage collection and expired Events.
    pub(crate) fn run_due(&mut self, now: Instant) {
        while let Some(Reverse((at, _))) = self.timers.peek()
            && *at <= now
        {
            let Some(Reverse((_, timer))) = self.timers.pop() else {
                break;
            };
            match timer {
                Timer::Gc(work) => self.collect(work),
                Timer::Expire(r) => {
                    let entry = self.collections.get(&r.coll).and_then(|c| c.objects.get(&r.key));
                    match entry.and_then(|e| e.expires) {
                        Some(at) if at <= now => {
                            if let Some(gone) = self.remove(&r) {
                                self.removed(r.coll.clone(), gone);
                            }
                        }
                        // Written again since: its TTL started over.
                        Some(at) => self.timers.push(Reverse((at, Timer::Expire(r)))),
                        None => {}
                    }
                }
            }
        }
        self.settle();
    }

    /// Live objects of a resource, for [`crate::FakeApiServer::objects`].
    pub(crate) fn all(&self, ck: &CollKey) -> Vec<Value> {
        self.collections
            .get(ck)
            .map(|c| c.objects.values().map(|e| (*e.obj).clone()).collect())
            .unwrap_or_default()
    }

    pub(crate) fn count(&self, ck: &CollKey, pred: impl Fn(&Value) -> bool) -> usize {
        self.collections
            .get(ck)
            .map(|c| c.objects.values().filter(|e| pred(&e.obj)).count())
            .unwrap_or_default()
    }

    /// Makes every rv issued so far too old to resume a watch from, like an etcd
    /// compaction. The counter moves on so fresh lists yield a usable rv.
    pub(crate) fn expire_history(&mut self) {
        self.compacted_rv = self.next_rv();
    }
}

/// Sets `apiVersion`/`kind` from the registry, whatever the client sent.
fn set_type_meta(info: &ResourceInfo, obj: &mut Value) {
    let root = obj.as_object_mut().expect("objects are maps");
    root.insert("apiVersion".into(), Value::String(info.api_version()));
    root.insert("kind".into(), Value::String(info.kind.clone()));
}

/// What decoding a request does before validation: unknown fields of custom resources pruned,
/// a Secret's `stringData` moved into `data`, defaults set.
fn prune_and_default(info: &ResourceInfo, obj: &mut Value) -> Result<(), ApiError> {
    if let Some(schema) = &info.schema {
        schema.prune(obj);
    }
    validation::normalize_secret(info, obj)?;
    apply_defaults(info, obj);
    Ok(())
}

/// Validates an object about to be stored (`old`: the stored version, for updates): metadata,
/// the rules of its kind, its CRD's schema.
fn check(info: &ResourceInfo, new: &Value, old: Option<&Value>, target: Target) -> Result<(), ApiError> {
    let mut errors = validation::validate(info, new, old);
    if let Some(schema) = &info.schema {
        errors = schema.validate(new, old, target == Target::Status, errors);
    }
    if errors.is_empty() {
        return Ok(());
    }
    Err(ApiError::invalid(info, meta::name(new).unwrap_or_default(), &errors))
}

/// Defaulting real servers do for the built-in types.
fn apply_defaults(info: &ResourceInfo, obj: &mut Value) {
    let root = obj.as_object_mut().expect("objects are maps");
    if info.group.is_empty() && info.plural == "secrets" && !root.contains_key("type") {
        root.insert("type".into(), json!("Opaque"));
    }
    if info.is_namespaces() && root.get("status").is_none_or(Value::is_null) {
        root.insert("status".into(), json!({ "phase": "Active" }));
    }
}

fn mark_deleting(obj: &mut Value) {
    let meta = meta_mut(obj);
    // As `markAsDeleting` in kube-apiserver's generic registry: marking an object for deletion
    // is a change of its desired state, so its generation moves on.
    if let Some(g) = meta.get("generation").and_then(Value::as_i64)
        && g > 0
    {
        meta.insert("generation".into(), json!(g + 1));
    }
    meta.insert("deletionTimestamp".into(), Value::String(meta::now_rfc3339()));
    meta.insert("deletionGracePeriodSeconds".into(), json!(0));
}

fn check_namespace(info: &ResourceInfo, obj: &Value, ns: &str) -> Result<(), ApiError> {
    if info.namespaced
        && let Some(body_ns) = meta::meta_str(obj, "namespace")
        && body_ns != ns
    {
        return Err(ApiError::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        ));
    }
    Ok(())
}

fn name_mismatch(body: &str, url: &str) -> ApiError {
    ApiError::bad_request(format!(
        "the name of the object ({body}) does not match the name on the URL ({url})"
    ))
}
