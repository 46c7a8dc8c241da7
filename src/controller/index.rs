//! Which ConnectorAuths read or own a Secret, read a ConfigMap or use a provider: the index the
//! watch mappers look up, so that a Secret event costs a hash lookup instead of a scan of every
//! cached resource (that scan, per event, kept the operator CPU-bound at 50,000 resources).
//!
//! The index holds the reflector store's own `Arc`s, not copies, and names are kept only as
//! hashes: ~100 bytes per resource. A hash can collide, so a lookup yields candidates and the
//! mappers check each against its [`Reads`](super::cache::Reads), which they do anyway.
//!
//! It follows the store: [`Index::follow`] runs on each watcher event after the reflector has
//! applied it, so both hold the same resources (this controller's shard only, the shard
//! filter coming before both). A relist is buffered by the store and swapped in on `InitDone`,
//! dropping what the relist no longer has without a `Delete` event; the index is then rebuilt
//! from the store, and until then answers from the old one, like the store.

use std::hash::{BuildHasher, Hash, RandomState};
use std::sync::Arc;

use hashbrown::HashTable;
use kube::Resource;
use kube::runtime::reflector::{ObjectRef, Store as Reader};
use kube::runtime::watcher::Event;

use super::cache::Cached;
use super::store::STATE_SUFFIX;
use crate::engine::tls::Kind;

/// What a resource is found by. Secrets and ConfigMaps are in the resource's namespace;
/// providers are cluster-scoped.
#[derive(Hash)]
enum Key<'a> {
    Secret(Option<&'a str>, &'a str),
    ConfigMap(Option<&'a str>, &'a str),
    Provider(&'a str),
}

/// The resources by the names they read or own. See the module documentation.
#[derive(Default)]
pub struct Index {
    /// Seeded per process: names come from users, and must not be able to pile up in one
    /// bucket.
    hasher: RandomState,
    /// Every indexed resource, by namespace and name.
    objects: HashTable<Arc<Cached>>,
    /// One (key hash, resource) pair per distinct key of a resource.
    by_key: HashTable<(u64, Arc<Cached>)>,
}

impl Index {
    /// Brings the index in step with the reflector store `reader` after it applied `event`.
    pub fn follow(&mut self, reader: &Reader<Cached>, event: &Event<Cached>) {
        match event {
            Event::Apply(ca) => {
                if let Some(stored) = reader.get(&ObjectRef::from_obj(ca)) {
                    self.insert(stored);
                }
            }
            Event::Delete(ca) => self.remove(ca.meta().namespace.as_deref(), ca.meta().name.as_deref()),
            // The store buffers a relist until it is complete; so does the index, by not
            // changing until then.
            Event::Init | Event::InitApply(_) => {}
            Event::InitDone => self.replace_all(reader.state()),
        }
    }

    /// The resources in `namespace` that may read or own the Secret `name`: as credentials,
    /// TLS object, output (named, or the default `<resource>-token`) or state Secret.
    pub fn secret_candidates<'a>(&'a self, namespace: Option<&'a str>, name: &str) -> impl Iterator<Item = &'a Cached> {
        self.in_namespace(namespace, Key::Secret(namespace, name))
    }

    /// The resources in `namespace` that may read the ConfigMap `name` (as TLS object).
    pub fn config_map_candidates<'a>(
        &'a self,
        namespace: Option<&'a str>,
        name: &str,
    ) -> impl Iterator<Item = &'a Cached> {
        self.in_namespace(namespace, Key::ConfigMap(namespace, name))
    }

    /// The resources, in any namespace, that may use the provider `name`.
    pub fn provider_candidates(&self, name: &str) -> impl Iterator<Item = &Cached> {
        self.candidates(Key::Provider(name))
    }

    fn in_namespace<'a>(
        &'a self,
        namespace: Option<&'a str>,
        key: Key<'_>,
    ) -> impl Iterator<Item = &'a Cached> + use<'a> {
        self.candidates(key)
            .filter(move |ca| ca.meta().namespace.as_deref() == namespace)
    }

    fn candidates<'a>(&'a self, key: Key<'_>) -> impl Iterator<Item = &'a Cached> + use<'a> {
        let hash = self.hasher.hash_one(key);
        self.by_key
            .iter_hash(hash)
            .filter(move |(k, _)| *k == hash)
            .map(|(_, ca)| ca.as_ref())
    }

    /// Indexes `ca`, replacing what was indexed under its namespace and name.
    fn insert(&mut self, ca: Arc<Cached>) {
        let (namespace, name) = identity(&ca);
        self.remove(namespace, name);
        let hash = self.hasher.hash_one((namespace, name));
        for key in self.keys(&ca) {
            self.by_key.insert_unique(key, (key, ca.clone()), |(k, _)| *k);
        }
        let hasher = &self.hasher;
        self.objects.insert_unique(hash, ca, |o| hasher.hash_one(identity(o)));
    }

    fn remove(&mut self, namespace: Option<&str>, name: Option<&str>) {
        let hash = self.hasher.hash_one((namespace, name));
        let Ok(entry) = self.objects.find_entry(hash, |o| identity(o) == (namespace, name)) else {
            return;
        };
        let (old, _) = entry.remove();
        for key in self.keys(&old) {
            if let Ok(entry) = self.by_key.find_entry(key, |(k, o)| *k == key && Arc::ptr_eq(o, &old)) {
                entry.remove();
            }
        }
    }

    /// Replaces the whole index by `objects`: what is not among them is dropped.
    fn replace_all(&mut self, objects: impl IntoIterator<Item = Arc<Cached>>) {
        let mut fresh = Index {
            hasher: self.hasher.clone(),
            ..Index::default()
        };
        for ca in objects {
            fresh.insert(ca);
        }
        *self = fresh;
    }

    /// The hashes of the distinct keys of `ca` (a name may serve twice, e.g. credentials
    /// that are also the output of the same resource).
    fn keys(&self, ca: &Cached) -> Vec<u64> {
        let (ns, name) = identity(ca);
        let name = name.unwrap_or_default();
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

fn identity(ca: &Cached) -> (Option<&str>, Option<&str>) {
    (ca.meta().namespace.as_deref(), ca.meta().name.as_deref())
}

#[cfg(test)]
mod tests {
    use kube::runtime::reflector::{self, store::Writer};
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

    /// A store and an index fed the same events, as in the controller.
    struct Fed {
        writer: Writer<Cached>,
        reader: Reader<Cached>,
        index: Index,
    }

    impl Fed {
        fn new() -> Self {
            let (reader, writer) = reflector::store();
            Fed {
                writer,
                reader,
                index: Index::default(),
            }
        }

        fn send(&mut self, event: Event<Cached>) {
            self.writer.apply_watcher_event(&event);
            self.index.follow(&self.reader, &event);
        }

        fn relist(&mut self, objects: Vec<Cached>) {
            self.send(Event::Init);
            for ca in objects {
                self.send(Event::InitApply(ca));
            }
            self.send(Event::InitDone);
        }
    }

    fn names<'a>(found: impl Iterator<Item = &'a Cached>) -> Vec<String> {
        let mut names: Vec<String> = found
            .map(|ca| {
                format!(
                    "{}/{}",
                    ca.meta().namespace.as_deref().unwrap(),
                    ca.meta().name.as_deref().unwrap()
                )
            })
            .collect();
        names.sort();
        names
    }

    fn secret(index: &Index, ns: &str, name: &str) -> Vec<String> {
        names(index.secret_candidates(Some(ns), name))
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
        assert_eq!(names(index.config_map_candidates(Some("team-a"), "ca")), ["team-a/crm"]);
        assert_eq!(names(index.provider_candidates("salesforce")), ["team-a/crm"]);

        assert!(secret(index, "team-a", "crm-token").is_empty(), "the output is named");
        assert!(secret(index, "team-a", "ca").is_empty(), "the CA bundle is a ConfigMap");
        assert!(
            secret(index, "team-b", "crm-credentials").is_empty(),
            "another namespace"
        );
        assert!(index.config_map_candidates(Some("team-a"), "cert").next().is_none());
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
        assert_eq!(names(index.config_map_candidates(Some("team-a"), "ca")), ["team-a/crm"]);
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
            "until the relist is complete, the index answers like the store: from the last one"
        );
        assert!(fed.reader.get(&ObjectRef::new("erp").within("team-a")).is_some());
        fed.send(Event::InitDone);

        assert!(fed.reader.get(&ObjectRef::new("erp").within("team-a")).is_none());
        assert!(secret(&fed.index, "team-a", "erp-credentials").is_empty());
        assert!(secret(&fed.index, "team-a", "erp-token").is_empty());
        assert!(secret(&fed.index, "team-a", "crm-credentials").is_empty());
        assert_eq!(secret(&fed.index, "team-a", "moved"), ["team-a/crm"]);
        assert_eq!(fed.index.objects.len(), 1);
    }

    #[test]
    fn the_index_shares_the_stores_objects_instead_of_copying_them() {
        let mut fed = Fed::new();
        fed.send(Event::Apply(resource("team-a", "crm", json!({}))));
        let stored = fed.reader.get(&ObjectRef::new("crm").within("team-a")).unwrap();
        let indexed = fed
            .index
            .secret_candidates(Some("team-a"), "crm-credentials")
            .next()
            .unwrap();
        assert!(std::ptr::eq(stored.as_ref(), indexed));
    }
}
