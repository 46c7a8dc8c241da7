//! Whether this process may act on a resource: send token requests and write. Resources are
//! split into shards by a stable hash of namespace/name; a process acts on a resource only
//! while it holds that resource's shard. See `controller::leader` for how shards are held in a
//! cluster; local mode (and a controller without election) holds every shard.

use std::time::SystemTime;

use tokio::sync::watch;

/// The shard of a resource among `shards`: FNV-1a over `namespace/name`, so every replica and
/// every version of the operator agrees on it without coordination.
pub fn shard_of(namespace: &str, name: &str, shards: u32) -> u32 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0100_0000_01b3;
    let hash = namespace
        .bytes()
        .chain(std::iter::once(b'/'))
        .chain(name.bytes())
        .fold(OFFSET, |h, b| (h ^ u64::from(b)).wrapping_mul(PRIME));
    (hash % u64::from(shards.max(1))) as u32
}

/// Which shards this process holds, and until when by its own clock: a holder that cannot
/// renew stops acting when its Lease runs out, before another replica may take the shard.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Held {
    /// Per shard: held until this instant; `None`: not held.
    until: Vec<Option<SystemTime>>,
}

impl Held {
    /// Holds none of `shards` shards.
    pub fn none(shards: u32) -> Self {
        Held {
            until: vec![None; shards.max(1) as usize],
        }
    }

    /// Holds `shard` until `until` (`None`: not at all).
    pub fn set(&mut self, shard: u32, until: Option<SystemTime>) {
        if let Some(slot) = self.until.get_mut(shard as usize) {
            *slot = until;
        }
    }

    pub fn shards(&self) -> u32 {
        self.until.len() as u32
    }

    /// The shards held at `now`.
    pub fn held_at(&self, now: SystemTime) -> impl Iterator<Item = u32> + '_ {
        (0..self.shards()).filter(move |&s| self.holds_at(s, now))
    }

    fn holds_at(&self, shard: u32, now: SystemTime) -> bool {
        self.until
            .get(shard as usize)
            .copied()
            .flatten()
            .is_some_and(|until| now < until)
    }
}

/// A view of this process's shards, cheap to clone and to ask; scoped to one resource by
/// [`Lead::for_resource`].
#[derive(Clone, Debug)]
pub struct Lead {
    held: Option<watch::Receiver<Held>>,
    /// The resource's shard, once scoped.
    shard: Option<u32>,
}

impl Lead {
    /// A process that is the only writer by construction (local mode, or the controller
    /// without leader election).
    pub fn always() -> Self {
        Lead {
            held: None,
            shard: None,
        }
    }

    /// Follows the shards held (as the election publishes them).
    pub fn following(held: watch::Receiver<Held>) -> Self {
        Lead {
            held: Some(held),
            shard: None,
        }
    }

    /// The shard count: 1 when every resource is in one shard.
    pub fn shards(&self) -> u32 {
        self.held.as_ref().map_or(1, |h| h.borrow().shards())
    }

    /// This lead, asked about one resource only.
    pub fn for_resource(&self, namespace: &str, name: &str) -> Lead {
        Lead {
            held: self.held.clone(),
            shard: Some(shard_of(namespace, name, self.shards())),
        }
    }

    /// Whether this process may act right now: on the resource's shard once scoped, on at
    /// least one shard otherwise.
    pub fn held(&self) -> bool {
        let Some(held) = &self.held else { return true };
        let held = held.borrow();
        let now = SystemTime::now();
        match self.shard {
            Some(s) => held.holds_at(s, now),
            None => held.held_at(now).next().is_some(),
        }
    }

    /// Whether this process may act on `namespace/name` right now.
    pub fn holds(&self, namespace: &str, name: &str) -> bool {
        self.for_resource(namespace, name).held()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_resource_keeps_its_shard_across_processes_and_versions() {
        // Fixed values: the hash is part of the operator's contract between replicas.
        assert_eq!(shard_of("default", "google", 4), shard_of("default", "google", 4));
        assert_eq!(shard_of("team-a", "crm", 1), 0);
        let known: Vec<u32> = ["a", "b", "c", "d", "e", "f"]
            .iter()
            .map(|n| shard_of("ns", n, 4))
            .collect();
        assert_eq!(known, vec![2, 3, 0, 1, 2, 3]);
    }

    #[test]
    fn shards_split_a_fleet_evenly() {
        let mut counts = [0u32; 4];
        for i in 0..10_000 {
            counts[shard_of(&format!("ns-{}", i % 7), &format!("auth-{i}"), 4) as usize] += 1;
        }
        for c in counts {
            assert!((2_300..=2_700).contains(&c), "{counts:?}");
        }
    }

    #[test]
    fn a_lead_acts_only_on_shards_held_and_not_past_their_lease() {
        let (tx, rx) = watch::channel(Held::none(4));
        let lead = Lead::following(rx);
        assert_eq!(lead.shards(), 4);
        let (ns, name) = ("ns", "a");
        let mine = shard_of(ns, name, 4);
        assert!(!lead.held() && !lead.holds(ns, name));
        let later = SystemTime::now() + Duration::from_secs(60);
        tx.send_modify(|h| h.set((mine + 1) % 4, Some(later)));
        assert!(lead.held(), "holds a shard");
        assert!(!lead.holds(ns, name), "but not this resource's");
        tx.send_modify(|h| h.set(mine, Some(later)));
        assert!(lead.for_resource(ns, name).held());
        tx.send_modify(|h| h.set(mine, Some(SystemTime::now() - Duration::from_secs(1))));
        assert!(!lead.holds(ns, name), "a lease not renewed in time is not held");
        drop(tx);
        assert!(lead.held(), "a dropped flag keeps its last value");
        assert!(Lead::always().holds(ns, name));
    }
}
