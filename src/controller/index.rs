//! The controller's cache of ConnectorAuths, and the index the watch mappers look up in it:
//! which resources read or own a Secret, read a ConfigMap or use a provider. A Secret event
//! costs a hash lookup instead of a scan of every cached resource (that scan, per event, kept
//! the operator CPU-bound at 50,000 resources).
//!
//! Each resource is one shared [`Entry`], found by its `namespace/name` and by the hashes of
//! the names it reads or owns (~100 bytes per resource). A hash can collide, so a lookup
//! yields candidates and the mappers check each against its [`Reads`](super::cache::Reads),
//! which they do anyway.
//!
//! It follows the ConnectorAuth watch (this controller's shard only, the shard filter coming
//! first). A relist is buffered and swapped in on `InitDone`, dropping what the relist no
//! longer has without a `Delete` event; until then the cache answers from the last one.

use std::hash::{BuildHasher, Hash, RandomState};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use hashbrown::HashTable;
use kube::Resource;
use kube::runtime::watcher::Event;

use super::cache::{Cached, Entry, Key as EntryKey};
use super::store::STATE_SUFFIX;
use crate::engine::tls::Kind;

/// What a resource is found by. Secrets and ConfigMaps are in the resource's namespace;
/// providers are cluster-scoped.
#[derive(Hash)]
enum Key<'a> {
    Secret(&'a str, &'a str),
    ConfigMap(&'a str, &'a str),
    Provider(&'a str),
}

/// The cached resources, by key and by the names they read or own. See the module
/// documentation.
#[derive(Default)]
pub struct ReferenceIndex {
    /// Seeded per process: names come from users, and must not be able to pile up in one
    /// bucket.
    hasher: RandomState,
    /// Every cached resource, by `namespace/name`.
    objects: HashTable<Arc<Entry>>,
    /// One (key hash, resource) pair per distinct key of a resource.
    by_key: HashTable<(u64, Arc<Entry>)>,
    /// A relist under way: what it brought so far.
    relist: Option<Vec<Entry>>,
}

/// What a watch event changed in the cache.
#[derive(Debug)]
pub enum Change {
    /// This resource was created or changed; the cache holds this version of it.
    Applied(EntryKey, Option<String>),
    /// This resource was deleted (as it was last seen).
    Deleted(Entry),
    /// A list completed: the cache holds exactly what it brought (every resource may have
    /// changed), and no longer these, deleted while the watch was down.
    Relisted(Vec<Arc<Entry>>),
    /// Nothing yet (a relist under way).
    Nothing,
}

impl ReferenceIndex {
    /// Applies a ConnectorAuth watch event.
    pub fn apply(&mut self, event: Event<Cached>) -> Change {
        match event {
            Event::Apply(mut ca) => {
                let version = ca.meta_mut().resource_version.take();
                let entry = Arc::new(Entry::from(ca));
                let key = entry.key().clone();
                self.insert(entry);
                Change::Applied(key, version)
            }
            Event::Delete(ca) => {
                let entry = Entry::from(ca);
                self.remove(entry.key());
                Change::Deleted(entry)
            }
            Event::Init => {
                self.relist = Some(Vec::new());
                Change::Nothing
            }
            Event::InitApply(ca) => {
                self.relist.get_or_insert_default().push(Entry::from(ca));
                Change::Nothing
            }
            Event::InitDone => {
                let listed = self.relist.take().unwrap_or_default();
                let before = std::mem::take(&mut self.objects);
                self.by_key = HashTable::new();
                for ca in listed {
                    self.insert(Arc::new(ca));
                }
                let gone = before.into_iter().filter(|o| self.get(o.key()).is_none()).collect();
                Change::Relisted(gone)
            }
        }
    }

    /// The resource `namespace/name`, if cached.
    pub fn get(&self, key: &str) -> Option<Arc<Entry>> {
        self.objects
            .find(self.hasher.hash_one(key), |o| o.key().as_ref() == key)
            .cloned()
    }

    /// The keys of every cached resource.
    pub fn keys(&self) -> impl Iterator<Item = &EntryKey> {
        self.objects.iter().map(|o| o.key())
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.objects.len()
    }

    /// The resources in `namespace` that may read or own the Secret `name`: as credentials,
    /// TLS object, output (named, or the default `<resource>-token`) or state Secret.
    pub fn secret_candidates<'a>(&'a self, namespace: &'a str, name: &str) -> impl Iterator<Item = &'a Entry> {
        self.in_namespace(namespace, Key::Secret(namespace, name))
    }

    /// The resources in `namespace` that may read the ConfigMap `name` (as TLS object).
    pub fn config_map_candidates<'a>(&'a self, namespace: &'a str, name: &str) -> impl Iterator<Item = &'a Entry> {
        self.in_namespace(namespace, Key::ConfigMap(namespace, name))
    }

    /// The resources, in any namespace, that may use the provider `name`.
    pub fn provider_candidates(&self, name: &str) -> impl Iterator<Item = &Entry> {
        self.candidates(Key::Provider(name))
    }

    fn in_namespace<'a>(&'a self, namespace: &'a str, key: Key<'_>) -> impl Iterator<Item = &'a Entry> + use<'a> {
        self.candidates(key).filter(move |ca| ca.namespace() == namespace)
    }

    fn candidates<'a>(&'a self, key: Key<'_>) -> impl Iterator<Item = &'a Entry> + use<'a> {
        let hash = self.hasher.hash_one(key);
        self.by_key
            .iter_hash(hash)
            .filter(move |(k, _)| *k == hash)
            .map(|(_, ca)| ca.as_ref())
    }

    /// Caches `ca`, replacing what was cached under its key.
    fn insert(&mut self, ca: Arc<Entry>) {
        self.remove(ca.key());
        for key in self.keys_of(&ca) {
            self.by_key.insert_unique(key, (key, ca.clone()), |(k, _)| *k);
        }
        let hasher = &self.hasher;
        let hash = hasher.hash_one(ca.key().as_ref());
        self.objects
            .insert_unique(hash, ca, |o| hasher.hash_one(o.key().as_ref()));
    }

    fn remove(&mut self, key: &str) {
        let hash = self.hasher.hash_one(key);
        let Ok(entry) = self.objects.find_entry(hash, |o| o.key().as_ref() == key) else {
            return;
        };
        let (old, _) = entry.remove();
        for key in self.keys_of(&old) {
            if let Ok(entry) = self.by_key.find_entry(key, |(k, o)| *k == key && Arc::ptr_eq(o, &old)) {
                entry.remove();
            }
        }
    }

    /// The hashes of the distinct keys of `ca` (a name may serve twice, e.g. credentials
    /// that are also the output of the same resource).
    fn keys_of(&self, ca: &Entry) -> Vec<u64> {
        let (ns, name) = (ca.namespace(), ca.name());
        let reads = ca.reads();
        let output = reads.output.clone().unwrap_or_else(|| format!("{name}-token"));
        let state = format!("{name}{STATE_SUFFIX}");
        let mut keys = vec![
            self.hasher.hash_one(Key::Secret(ns, &reads.credentials)),
            self.hasher.hash_one(Key::Secret(ns, &output)),
            self.hasher.hash_one(Key::Secret(ns, &state)),
        ];
        keys.extend(reads.tls.iter().map(|o| match o.kind {
            Kind::Secret => self.hasher.hash_one(Key::Secret(ns, &o.name)),
            Kind::ConfigMap => self.hasher.hash_one(Key::ConfigMap(ns, &o.name)),
        }));
        keys.extend(
            reads
                .provider
                .as_deref()
                .map(|p| self.hasher.hash_one(Key::Provider(p))),
        );
        keys.sort_unstable();
        keys.dedup();
        keys
    }
}

/// Locks the cache. A panic while it was held (none is expected) would at worst leave one
/// resource out of it until the next relist, which beats failing every later event.
pub fn lock(index: &Mutex<ReferenceIndex>) -> MutexGuard<'_, ReferenceIndex> {
    index.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    fn resource(namespace: &str, name: &str, spec: Value) -> Cached {
        let mut spec_with_defaults = json!({
            "credentialsRef": {"name": format!("{name}-credentials")},
            "oauth2": {"tokenUrl": "https://idp.example/token", "grantType": "clientCredentials"},
        });
        spec_with_defaults
            .as_object_mut()
            .unwrap()
            .extend(spec.as_object().unwrap().clone());
        serde_json::from_value(json!({
            "apiVersion": "connectorauth.dev/v1alpha1", "kind": "ConnectorAuth",
            "metadata": {"name": name, "namespace": namespace, "uid": format!("u-{name}"), "resourceVersion": "1"},
            "spec": spec_with_defaults,
        }))
        .unwrap()
    }

    /// An index fed events, as in the controller.
    #[derive(Default)]
    struct Fed {
        index: ReferenceIndex,
    }

    impl Fed {
        fn new() -> Self {
            Fed::default()
        }

        fn send(&mut self, event: Event<Cached>) -> Change {
            self.index.apply(event)
        }

        fn relist(&mut self, objects: Vec<Cached>) {
            self.send(Event::Init);
            for ca in objects {
                self.send(Event::InitApply(ca));
            }
            self.send(Event::InitDone);
        }
    }

    fn names<'a>(found: impl Iterator<Item = &'a Entry>) -> Vec<String> {
        let mut names: Vec<String> = found.map(|ca| ca.key().to_string()).collect();
        names.sort();
        names
    }

    fn secret(index: &ReferenceIndex, ns: &str, name: &str) -> Vec<String> {
        names(index.secret_candidates(ns, name))
    }

    #[test]
    fn a_resource_is_found_by_every_name_it_reads_or_owns_and_by_no_other() {
        let mut fed = Fed::new();
        fed.relist(vec![resource(
            "team-a",
            "crm",
            json!({
                "output": {"secretName": "crm-out"},
                "tls": {"caBundleRef": {"kind": "ConfigMap", "name": "ca"}, "clientCertificateRef": {"name": "cert"}},
                "provider": "salesforce",
            }),
        )]);
        let index = &fed.index;
        for name in ["crm-credentials", "crm-out", "crm-connectorauth-state", "cert"] {
            assert_eq!(secret(index, "team-a", name), ["team-a/crm"], "Secret {name}");
        }
        assert_eq!(names(index.config_map_candidates("team-a", "ca")), ["team-a/crm"]);
        assert_eq!(names(index.provider_candidates("salesforce")), ["team-a/crm"]);

        assert!(secret(index, "team-a", "crm-token").is_empty(), "the output is named");
        assert!(secret(index, "team-a", "ca").is_empty(), "the CA bundle is a ConfigMap");
        assert!(
            secret(index, "team-b", "crm-credentials").is_empty(),
            "another namespace"
        );
        assert!(index.config_map_candidates("team-a", "cert").next().is_none());
        assert!(index.provider_candidates("hubspot").next().is_none());
    }

    #[test]
    fn a_resource_without_an_output_name_is_found_by_the_default_one() {
        let mut fed = Fed::new();
        fed.send(Event::Apply(resource("team-a", "crm", json!({}))));
        assert_eq!(secret(&fed.index, "team-a", "crm-token"), ["team-a/crm"]);
    }

    #[test]
    fn resources_reading_the_same_secret_are_all_found_and_a_deleted_one_no_longer() {
        let mut fed = Fed::new();
        let shared = json!({"credentialsRef": {"name": "shared"}});
        fed.send(Event::Apply(resource("team-a", "crm", shared.clone())));
        fed.send(Event::Apply(resource("team-a", "erp", shared.clone())));
        fed.send(Event::Apply(resource("team-b", "crm", shared.clone())));
        assert_eq!(secret(&fed.index, "team-a", "shared"), ["team-a/crm", "team-a/erp"]);

        fed.send(Event::Delete(resource("team-a", "crm", shared)));
        assert_eq!(secret(&fed.index, "team-a", "shared"), ["team-a/erp"]);
        assert!(secret(&fed.index, "team-a", "crm-token").is_empty());
        assert_eq!(secret(&fed.index, "team-b", "crm-token"), ["team-b/crm"]);
    }

    #[test]
    fn a_resource_whose_reads_change_is_found_by_the_new_names_only() {
        let mut fed = Fed::new();
        fed.send(Event::Apply(resource(
            "team-a",
            "crm",
            json!({"credentialsRef": {"name": "old"}, "output": {"secretName": "old-out"}, "provider": "old"}),
        )));
        fed.send(Event::Apply(resource(
            "team-a",
            "crm",
            json!({"credentialsRef": {"name": "new"}, "tls": {"caBundleRef": {"kind": "ConfigMap", "name": "ca"}}}),
        )));
        let index = &fed.index;
        assert!(secret(index, "team-a", "old").is_empty());
        assert!(secret(index, "team-a", "old-out").is_empty());
        assert!(index.provider_candidates("old").next().is_none());
        assert_eq!(secret(index, "team-a", "new"), ["team-a/crm"]);
        assert_eq!(secret(index, "team-a", "crm-token"), ["team-a/crm"]);
        assert_eq!(names(index.config_map_candidates("team-a", "ca")), ["team-a/crm"]);
        assert_eq!(index.objects.len(), 1);
    }

    #[test]
    fn a_name_read_twice_by_one_resource_finds_it_once() {
        let mut fed = Fed::new();
        fed.send(Event::Apply(resource(
            "team-a",
            "crm",
            json!({"credentialsRef": {"name": "crm-token"}, "tls": {"clientCertificateRef": {"name": "crm-token"}}}),
        )));
        assert_eq!(secret(&fed.index, "team-a", "crm-token"), ["team-a/crm"]);
    }

    #[test]
    fn a_relist_drops_the_resources_it_no_longer_has_once_it_is_complete() {
        let mut fed = Fed::new();
        fed.relist(vec![
            resource("team-a", "crm", json!({})),
            resource("team-a", "erp", json!({})),
        ]);
        assert_eq!(secret(&fed.index, "team-a", "erp-credentials"), ["team-a/erp"]);

        // `erp` was deleted while the watch was down: the relist just does not have it.
        fed.send(Event::Init);
        fed.send(Event::InitApply(resource(
            "team-a",
            "crm",
            json!({"credentialsRef": {"name": "moved"}}),
        )));
        assert_eq!(
            secret(&fed.index, "team-a", "erp-credentials"),
            ["team-a/erp"],
            "until the relist is complete, the cache answers from the last one"
        );
        assert!(fed.index.get("team-a/erp").is_some());
        let Change::Relisted(gone) = fed.send(Event::InitDone) else {
            panic!("a relist")
        };
        assert_eq!(
            gone.iter().map(|g| g.key().to_string()).collect::<Vec<_>>(),
            ["team-a/erp"]
        );
        assert!(fed.index.get("team-a/erp").is_none());
        assert!(secret(&fed.index, "team-a", "erp-credentials").is_empty());
        assert!(secret(&fed.index, "team-a", "erp-token").is_empty());
        assert!(secret(&fed.index, "team-a", "crm-credentials").is_empty());
        assert_eq!(secret(&fed.index, "team-a", "moved"), ["team-a/crm"]);
        assert_eq!(fed.index.objects.len(), 1);
    }

    #[test]
    fn the_cache_fills_when_a_list_completes_and_says_what_each_event_changed() {
        let mut fed = Fed::new();
        fed.send(Event::Init);
        assert!(matches!(
            fed.send(Event::InitApply(resource("team-a", "crm", json!({})))),
            Change::Nothing
        ));
        assert!(fed.index.get("team-a/crm").is_none(), "not before the list is complete");
        assert!(matches!(fed.send(Event::InitDone), Change::Relisted(gone) if gone.is_empty()));
        assert_eq!(
            fed.index.keys().map(|k| k.to_string()).collect::<Vec<_>>(),
            ["team-a/crm"]
        );

        let Change::Applied(key, version) = fed.send(Event::Apply(resource("team-a", "erp", json!({})))) else {
            panic!("an applied resource")
        };
        assert_eq!(version.as_deref(), Some("1"));
        assert_eq!(key.as_ref(), "team-a/erp");
        let stored = fed.index.get("team-a/erp").unwrap();
        assert!(Arc::ptr_eq(stored.key(), &key), "the key is shared, not copied");
        let indexed = fed.index.secret_candidates("team-a", "erp-credentials").next().unwrap();
        assert!(std::ptr::eq(stored.as_ref(), indexed), "one entry, found both ways");

        let Change::Deleted(gone) = fed.send(Event::Delete(resource("team-a", "erp", json!({})))) else {
            panic!("a deleted resource")
        };
        assert_eq!(gone.decode().unwrap().metadata.uid.as_deref(), Some("u-erp"));
        assert!(fed.index.get("team-a/erp").is_none());
        assert_eq!(fed.index.len(), 1);
    }
}
