//! When each resource is looked at again without a change: one entry per resource in a queue
//! that the controller reads as a trigger stream. kube-runtime's own requeue
//! (`Action::requeue`) keeps two `ObjectRef`s of four Strings each and delay-queue bookkeeping
//! per resource, ~0.8 KB: at 10,000 resources the largest owner of memory after the cache
//! (BENCHMARKS.md, "Memory"). Here an entry is a time and one shared `namespace/name`.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use futures::Stream;
use kube::ResourceExt;
use kube::runtime::reflector::ObjectRef;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::cache::Cached;

/// `namespace/name` (neither may contain a `/`).
type Key = Arc<str>;

/// The times, pure: no clock, no waking.
#[derive(Debug, Default)]
struct Queue {
    due: BTreeSet<(Instant, Key)>,
    at: HashMap<Key, Instant>,
}

/// What the queue says when asked for the next resource due.
#[derive(Debug, PartialEq)]
enum Next {
    Due(Key),
    /// Nothing due before this time.
    At(Instant),
    Empty,
}

impl Queue {
    /// Sets when `key` is due, replacing what was set before (the latest pass knows best), or
    /// forgets it. Says whether the earliest time moved earlier, so a waiting reader wakes.
    fn set(&mut self, key: &str, when: Option<Instant>) -> bool {
        let earliest = self.due.first().map(|(t, _)| *t);
        let key: Key = match self.at.remove_entry(key) {
            Some((k, old)) => {
                self.due.remove(&(old, k.clone()));
                k
            }
            None => Arc::from(key),
        };
        let Some(t) = when else { return false };
        self.due.insert((t, key.clone()));
        self.at.insert(key, t);
        earliest.is_none_or(|e| t < e)
    }

    /// Takes the earliest resource due by `now`, if any.
    fn next(&mut self, now: Instant) -> Next {
        match self.due.first() {
            None => Next::Empty,
            Some((t, _)) if *t > now => Next::At(*t),
            Some(_) => {
                let (_, key) = self.due.pop_first().expect("not empty");
                self.at.remove(&key);
                Next::Due(key)
            }
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.at.len()
    }
}

/// The requeues of one controller: its reconciles set them, its trigger stream
/// ([`Requeues::stream`]) hands them to the controller when due.
#[derive(Debug, Default)]
pub struct Requeues {
    queue: Mutex<Queue>,
    wake: Notify,
}

impl Requeues {
    /// Looks at `ca` again after `after`, or only on change (`None`).
    pub fn set(&self, ca: &Cached, after: Option<std::time::Duration>) {
        let key = format!("{}/{}", ca.namespace().unwrap_or_default(), ca.name_any());
        let earlier = self
            .queue
            .lock()
            .expect("lock")
            .set(&key, after.map(|d| Instant::now() + d));
        if earlier {
            self.wake.notify_one();
        }
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.queue.lock().expect("lock").len()
    }

    /// The resources as they fall due, for `Controller::reconcile_on`.
    pub fn stream(self: Arc<Self>) -> impl Stream<Item = ObjectRef<Cached>> + Send + 'static {
        futures::stream::unfold(self, |this| async move {
            loop {
                // Registered before looking, so a `set` between the look and the wait wakes it.
                let woken = this.wake.notified();
                let next = this.queue.lock().expect("lock").next(Instant::now());
                match next {
                    Next::Due(key) => {
                        drop(woken);
                        let (ns, name) = key.split_once('/').unwrap_or(("", &key));
                        let r = ObjectRef::new(name).within(ns);
                        return Some((r, this));
                    }
                    Next::At(t) => {
                        tokio::select! {
                            _ = tokio::time::sleep_until(t) => {}
                            _ = woken => {}
                        }
                    }
                    Next::Empty => woken.await,
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use futures::StreamExt;

    use super::*;

    fn t(base: Instant, secs: u64) -> Instant {
        base + Duration::from_secs(secs)
    }

    #[test]
    fn the_latest_time_set_for_a_resource_is_the_one_kept() {
        let (mut q, base) = (Queue::default(), Instant::now());
        assert!(q.set("a/x", Some(t(base, 60))), "the first entry is the earliest");
        assert!(!q.set("a/y", Some(t(base, 90))));
        assert!(
            !q.set("a/x", Some(t(base, 120))),
            "later than the earliest: no need to wake"
        );
        assert_eq!(q.len(), 2);
        assert_eq!(q.next(t(base, 100)), Next::Due("a/y".into()));
        assert_eq!(q.next(t(base, 100)), Next::At(t(base, 120)));
        assert_eq!(q.next(t(base, 120)), Next::Due("a/x".into()));
        assert_eq!(q.next(t(base, 500)), Next::Empty);
        assert_eq!(q.len(), 0);
    }

    #[test]
    fn an_earlier_time_wakes_the_reader_and_clearing_forgets_the_resource() {
        let (mut q, base) = (Queue::default(), Instant::now());
        q.set("a/x", Some(t(base, 60)));
        assert!(q.set("a/y", Some(t(base, 30))));
        assert!(!q.set("a/y", None));
        assert!(!q.set("a/unknown", None));
        assert_eq!(q.len(), 1);
        assert_eq!(q.next(t(base, 45)), Next::At(t(base, 60)));
    }

    #[tokio::test(start_paused = true)]
    async fn the_stream_hands_over_resources_as_they_fall_due_and_wakes_for_an_earlier_one() {
        let requeues = Arc::new(Requeues::default());
        let cached = |name: &str| -> Cached {
            serde_json::from_value(serde_json::json!({
                "apiVersion": "connectorauth.dev/v1alpha1", "kind": "ConnectorAuth",
                "metadata": {"name": name, "namespace": "team-a", "uid": name},
                "spec": {"credentialsRef": {"name": "c"}, "apiKey": {}},
            }))
            .unwrap()
        };
        requeues.set(&cached("later"), Some(Duration::from_secs(600)));
        let start = Instant::now();
        let mut stream = Box::pin(requeues.clone().stream());
        let reader = tokio::spawn(async move {
            let mut seen = Vec::new();
            while let Some(r) = stream.next().await {
                seen.push((
                    r.name.clone(),
                    r.namespace.clone().unwrap(),
                    (Instant::now() - start).as_secs(),
                ));
                if seen.len() == 2 {
                    return seen;
                }
            }
            seen
        });
        tokio::time::sleep(Duration::from_secs(10)).await;
        // The reader sleeps until 600 s; this one is due at 40 s.
        requeues.set(&cached("sooner"), Some(Duration::from_secs(30)));
        let seen = reader.await.unwrap();
        assert_eq!(
            seen,
            vec![
                ("sooner".into(), "team-a".into(), 40),
                ("later".into(), "team-a".into(), 600)
            ]
        );
        assert_eq!(requeues.len(), 0);
    }
}
