//! The controller's work queue: which resource gets a pass next, and when. Every trigger (a
//! watch event, a requeue after a pass, a retry after an error) goes through it, and the
//! runner takes from it only while fewer than `limit` passes run, earliest due first.
//!
//! It replaces kube-runtime's scheduler and runner, for two reasons measured in
//! BENCHMARKS.md. That runner keeps the resources due beyond its concurrency limit in a hash
//! set and serves them in hash order: when more falls due than is served (a cold start of
//! 50,000, a slow provider), the same resources keep winning and the rest never get a pass.
//! And its tables cost ~0.8 KB per resource (two `ObjectRef`s of four Strings each, and
//! delay-queue bookkeeping), where an entry here is a time and the cache's shared key.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use super::cache::Key;

/// Where a resource stands, when it has an entry at all (one with nothing due and no pass
/// running has none).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Slot {
    /// Due at this time.
    Waiting(Instant),
    /// A pass is running; it is due again at this time once the pass ends (a trigger during
    /// a pass is not lost, and never starts a second pass of the same resource).
    Running(Option<Instant>),
}

/// The queue, pure: no clock, no waking.
#[derive(Debug)]
struct Queue {
    due: BTreeSet<(Instant, Key)>,
    slots: HashMap<Key, Slot>,
    running: usize,
    limit: usize,
}

/// What the queue says when asked for the next resource.
#[derive(Debug, PartialEq)]
enum Next {
    Due(Key),
    /// Nothing due before this time.
    At(Instant),
    /// Nothing due, or `limit` passes running.
    Idle,
}

fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

impl Queue {
    fn new(limit: usize) -> Self {
        Queue {
            due: BTreeSet::new(),
            slots: HashMap::new(),
            running: 0,
            limit: limit.max(1),
        }
    }

    /// `key` is due at `when` at the latest (it may already be due earlier). Says whether the
    /// earliest time moved earlier, so a waiting reader wakes.
    fn wake(&mut self, key: &Key, when: Instant) -> bool {
        match self.slots.get_mut(key) {
            Some(Slot::Running(again)) => {
                *again = earliest(*again, Some(when));
                false
            }
            Some(Slot::Waiting(t)) if *t <= when => false,
            _ => self.wait(key.clone(), when),
        }
    }

    /// Sets `key` waiting until `when`, whatever it waited for before.
    fn wait(&mut self, key: Key, when: Instant) -> bool {
        let first = self.due.first().map(|(t, _)| *t);
        if let Some(Slot::Waiting(old)) = self.slots.insert(key.clone(), Slot::Waiting(when)) {
            self.due.remove(&(old, key.clone()));
        }
        self.due.insert((when, key));
        first.is_none_or(|f| when < f)
    }

    /// Takes the earliest resource due by `now`, if a pass may start. It is running until
    /// [`Queue::done`].
    fn take(&mut self, now: Instant) -> Next {
        if self.running >= self.limit {
            return Next::Idle;
        }
        match self.due.first() {
            None => Next::Idle,
            Some((t, _)) if *t > now => Next::At(*t),
            Some(_) => {
                let (_, key) = self.due.pop_first().expect("not empty");
                self.slots.insert(key.clone(), Slot::Running(None));
                self.running += 1;
                Next::Due(key)
            }
        }
    }

    /// The pass of `key` ended; it is due again at `then` (`None`: only on change), or
    /// earlier if triggered while it ran.
    fn done(&mut self, key: &Key, then: Option<Instant>) {
        let Some(Slot::Running(again)) = self.slots.remove(key) else {
            return;
        };
        self.running -= 1;
        if let Some(t) = earliest(again, then) {
            self.wait(key.clone(), t);
        }
    }

    /// Forgets a deleted resource's time. (A pass running for it ends as usual, and is not
    /// followed by another: the runner finds nothing cached to run it on.)
    fn forget(&mut self, key: &str) {
        if let Some((key, Slot::Waiting(t))) = self.slots.remove_entry(key) {
            self.due.remove(&(t, key));
        } else if let Some(Slot::Running(again)) = self.slots.get_mut(key) {
            *again = None;
        }
    }

    fn running(&self, key: &str) -> bool {
        matches!(self.slots.get(key), Some(Slot::Running(_)))
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.slots.len()
    }
}

/// The work queue of one controller: its watches trigger it, its passes say when they want
/// to run again, and its runner takes from it ([`Work::next`]).
#[derive(Debug)]
pub struct Work {
    queue: Mutex<Queue>,
    wake: Notify,
}

impl Work {
    /// A queue that lets `limit` passes run at once (0: as many as there are resources).
    pub fn new(limit: u16) -> Self {
        let limit = if limit == 0 { usize::MAX } else { usize::from(limit) };
        Work {
            queue: Mutex::new(Queue::new(limit)),
            wake: Notify::new(),
        }
    }

    fn queue(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Something `key` reads changed: it gets a pass as soon as one may start.
    pub fn trigger(&self, key: &Key) {
        if self.queue().wake(key, Instant::now()) {
            self.wake.notify_one();
        }
    }

    /// The pass of `key` ended, and wants another after `after` (`None`: only on change).
    pub fn done(&self, key: &Key, after: Option<Duration>) {
        self.queue().done(key, after.map(|d| Instant::now() + d));
        // A pass may start now.
        self.wake.notify_one();
    }

    /// Whether a pass of `key` is running.
    pub fn running(&self, key: &str) -> bool {
        self.queue().running(key)
    }

    /// `key` was deleted.
    pub fn forget(&self, key: &str) {
        self.queue().forget(key);
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.queue().len()
    }

    /// The next resource due, once a pass may start; it is running until [`Work::done`].
    /// Cancel-safe: a resource is taken only when this returns it.
    pub async fn next(&self) -> Key {
        loop {
            // Registered before looking, so a change between the look and the wait wakes it.
            let woken = self.wake.notified();
            let next = self.queue().take(Instant::now());
            match next {
                Next::Due(key) => return key,
                Next::At(t) => {
                    tokio::select! {
                        () = tokio::time::sleep_until(t) => {}
                        () = woken => {}
                    }
                }
                Next::Idle => woken.await,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn t(base: Instant, secs: u64) -> Instant {
        base + Duration::from_secs(secs)
    }

    fn k(s: &str) -> Key {
        Arc::from(s)
    }

    #[test]
    fn resources_are_taken_earliest_first_and_a_trigger_never_delays_one() {
        let (mut q, base) = (Queue::new(8), Instant::now());
        assert!(q.wake(&k("a/x"), t(base, 60)), "the first entry is the earliest");
        assert!(!q.wake(&k("a/y"), t(base, 90)));
        assert!(!q.wake(&k("a/y"), t(base, 120)), "a later time does not delay it");
        assert!(q.wake(&k("a/z"), t(base, 30)));
        assert_eq!(q.len(), 3);
        assert_eq!(q.take(t(base, 10)), Next::At(t(base, 30)));
        assert_eq!(q.take(t(base, 100)), Next::Due(k("a/z")));
        assert_eq!(q.take(t(base, 100)), Next::Due(k("a/x")));
        assert_eq!(q.take(t(base, 100)), Next::Due(k("a/y")));
        assert_eq!(q.take(t(base, 500)), Next::Idle);
    }

    #[test]
    fn no_more_than_the_limit_run_and_the_longest_waiting_goes_first_when_one_ends() {
        let (mut q, base) = (Queue::new(2), Instant::now());
        for (name, at) in [("a/1", 1), ("a/2", 2), ("a/3", 3), ("a/4", 4)] {
            q.wake(&k(name), t(base, at));
        }
        let now = t(base, 10);
        assert_eq!(q.take(now), Next::Due(k("a/1")));
        assert_eq!(q.take(now), Next::Due(k("a/2")));
        assert_eq!(q.take(now), Next::Idle, "two running");
        // `a/1` wants to run again at once: it queues behind those waiting longer.
        q.done(&k("a/1"), Some(now));
        assert_eq!(q.take(now), Next::Due(k("a/3")));
        q.done(&k("a/2"), None);
        assert_eq!(q.take(now), Next::Due(k("a/4")));
        q.done(&k("a/3"), None);
        assert_eq!(q.take(now), Next::Due(k("a/1")));
        assert_eq!(q.take(now), Next::Idle);
    }

    #[test]
    fn a_trigger_during_a_pass_runs_the_resource_again_after_it_not_beside_it() {
        let (mut q, base) = (Queue::new(8), Instant::now());
        q.wake(&k("a/x"), base);
        assert_eq!(q.take(base), Next::Due(k("a/x")));
        assert!(q.running("a/x"));
        q.wake(&k("a/x"), t(base, 1));
        assert_eq!(q.take(t(base, 2)), Next::Idle, "not while its pass runs");
        // The pass wants the next look in an hour; the trigger during it wins.
        q.done(&k("a/x"), Some(t(base, 3600)));
        assert!(!q.running("a/x"));
        assert_eq!(q.take(t(base, 2)), Next::Due(k("a/x")));
        q.done(&k("a/x"), None);
        assert_eq!(q.len(), 0, "nothing due: no entry");
    }

    #[test]
    fn a_deleted_resource_is_forgotten_waiting_or_running() {
        let (mut q, base) = (Queue::new(8), Instant::now());
        q.wake(&k("a/x"), base);
        q.wake(&k("a/y"), base);
        q.forget("a/x");
        assert_eq!(q.take(base), Next::Due(k("a/y")));
        q.wake(&k("a/y"), base);
        q.forget("a/y");
        q.done(&k("a/y"), None);
        assert_eq!(q.take(base), Next::Idle);
        assert_eq!(q.len(), 0);
        q.done(&k("a/unknown"), Some(base));
        assert_eq!(q.len(), 0, "only a running resource ends a pass");
    }

    #[tokio::test(start_paused = true)]
    async fn the_runner_is_handed_resources_as_they_fall_due_and_as_passes_end() {
        let work = Arc::new(Work::new(1));
        let start = Instant::now();
        work.queue().wake(&k("team-a/later"), t(start, 600));
        let reader = {
            let work = work.clone();
            tokio::spawn(async move {
                let mut seen = Vec::new();
                while seen.len() < 3 {
                    let key = work.next().await;
                    seen.push((key.to_string(), (Instant::now() - start).as_secs()));
                    if key.as_ref() == "team-a/sooner" {
                        // A 20 s pass; `team-a/change` waits for it.
                        tokio::time::sleep(Duration::from_secs(20)).await;
                    }
                    work.done(&key, None);
                }
                seen
            })
        };
        tokio::time::sleep(Duration::from_secs(10)).await;
        // The runner sleeps until 600 s; this one is due at 40 s.
        work.queue().wake(&k("team-a/sooner"), t(start, 40));
        work.wake.notify_one();
        tokio::time::sleep(Duration::from_secs(40)).await;
        work.trigger(&k("team-a/change"));
        let seen = reader.await.unwrap();
        assert_eq!(
            seen,
            [
                ("team-a/sooner".to_string(), 40),
                ("team-a/change".to_string(), 60),
                ("team-a/later".to_string(), 600)
            ]
        );
        assert_eq!(work.len(), 0);
    }
}
