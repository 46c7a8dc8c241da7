//! What a replica does with the shard Leases on each round: a pure function of what it last
//! read, so every rule of the election is unit-tested here.
//!
//! - **Renew** every Lease it holds.
//! - **Share fairly.** Members are the replicas that hold a live Lease or ask for one, plus
//!   this one. With `n` shards over `m` members, a replica takes free Leases up to
//!   `ceil(n / m)`, releases what it holds beyond that, and gives up one more when it holds
//!   over `floor(n / m)` while another member asks for a Lease of its.
//! - **Ask** when it holds fewer than `floor(n / m)` and none is free: it marks one Lease of
//!   the member holding most as wanted; the holder releases it (after stopping work on it) and
//!   the asker takes it. A replica that starts while others hold everything gets its share.
//! - A Lease is **live** while its holder renewed it within its duration, by this replica's
//!   clock; anything else is free, and two replicas taking one free Lease at once are told
//!   apart by the API server (conditional writes), never by this plan.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

/// One shard Lease as last read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Observed {
    /// The holder, if any (the Lease may have run out: see `valid_until`).
    pub holder: Option<String>,
    /// Renew time plus duration.
    pub valid_until: Option<SystemTime>,
    /// A replica asking for this Lease, and until when its ask stands.
    pub wanted_by: Option<(String, SystemTime)>,
}

impl Observed {
    fn live_holder(&self, now: SystemTime) -> Option<&str> {
        self.holder
            .as_deref()
            .filter(|_| self.valid_until.is_some_and(|v| now < v))
    }

    fn asker(&self, now: SystemTime) -> Option<&str> {
        self.wanted_by
            .as_ref()
            .filter(|(_, until)| now < *until)
            .map(|(who, _)| who.as_str())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Keep holding the shard: renew its Lease.
    Renew(u32),
    /// Take a free Lease.
    Take(u32),
    /// Give the shard up: stop work on it, then release its Lease.
    Release(u32),
    /// Ask the holder of this Lease to give it up.
    Ask(u32),
}

/// This round's steps for replica `me`. `stopping`: the replica is shutting down and releases
/// everything. `ask_for`: how long an ask stands (one Lease duration).
pub fn plan(me: &str, now: SystemTime, leases: &[Observed], ask_for: Duration, stopping: bool) -> Vec<Step> {
    let mine: Vec<u32> = (0..leases.len() as u32)
        .filter(|&i| leases[i as usize].live_holder(now) == Some(me))
        .collect();
    if stopping {
        return mine.into_iter().map(Step::Release).collect();
    }
    let mut held_by: BTreeMap<&str, u32> = BTreeMap::new();
    held_by.insert(me, 0);
    for l in leases {
        if let Some(h) = l.live_holder(now) {
            *held_by.entry(h).or_default() += 1;
        }
        if let Some(a) = l.asker(now) {
            held_by.entry(a).or_default();
        }
    }
    let (n, m) = (leases.len(), held_by.len());
    let (lo, hi) = (n / m, n.div_ceil(m));
    let wanted_by_other = |i: u32| leases[i as usize].asker(now).is_some_and(|a| a != me);

    let mut steps = Vec::new();
    let mut releasing: Vec<u32> = Vec::new();
    if mine.len() > hi {
        // Asked-for Leases first, then the highest shards.
        let mut order = mine.clone();
        order.sort_by_key(|&i| (!wanted_by_other(i), std::cmp::Reverse(i)));
        releasing.extend(order.into_iter().take(mine.len() - hi));
    } else if mine.len() > lo
        && let Some(&i) = mine.iter().rev().find(|&&i| wanted_by_other(i))
    {
        releasing.push(i);
    }
    steps.extend(mine.iter().filter(|i| !releasing.contains(i)).map(|&i| Step::Renew(i)));
    steps.extend(releasing.iter().map(|&i| Step::Release(i)));
    if !releasing.is_empty() {
        return steps;
    }

    // Free Leases, from a starting point of this replica's own, so replicas starting together
    // mostly try different ones.
    let start = crate::reconcile::shard_of("", me, n as u32) as usize;
    let free: Vec<u32> = (0..n)
        .map(|k| ((start + k) % n) as u32)
        .filter(|&i| leases[i as usize].live_holder(now).is_none())
        .collect();
    let taking = hi.saturating_sub(mine.len()).min(free.len());
    steps.extend(free.iter().take(taking).map(|&i| Step::Take(i)));

    if mine.len() + taking < lo && free.len() == taking {
        // Ask the member holding most (over `lo`) for its highest Lease nobody else asks for.
        let ask = (0..n as u32)
            .rev()
            .filter_map(|i| {
                let l = &leases[i as usize];
                let holder = l.live_holder(now)?;
                let count = held_by[holder];
                (holder != me && count > lo as u32 && l.asker(now).is_none_or(|a| a == me)).then_some((count, i))
            })
            .max_by_key(|&(count, i)| (count, i));
        if let Some((_, i)) = ask {
            let standing = leases[i as usize]
                .wanted_by
                .as_ref()
                .is_some_and(|(who, until)| who == me && *until > now + ask_for / 2);
            if !standing {
                steps.push(Step::Ask(i));
            }
        }
    }
    steps
}

/// Whether replicas configured with `shards` shards may act, given what the base Lease records
/// (`recorded`: shard count and since when). Replicas of another count (during a rollout that
/// changes it) may still act on their own shards until they re-read the base Lease, which they
/// do more often than once per Lease duration: so a count takes force one duration after it
/// was recorded. A count recorded "since the epoch" takes force at once: it replaced one that
/// acted through the base Lease alone.
pub fn in_force(recorded: Option<(u32, SystemTime)>, shards: u32, now: SystemTime, duration: Duration) -> bool {
    recorded.is_some_and(|(n, since)| n == shards && since + duration <= now)
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: Duration = Duration::from_secs(15);

    fn at() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000)
    }

    fn held(by: &str) -> Observed {
        Observed {
            holder: Some(by.into()),
            valid_until: Some(at() + D),
            wanted_by: None,
        }
    }

    fn wanted(mut o: Observed, by: &str) -> Observed {
        o.wanted_by = Some((by.into(), at() + D));
        o
    }

    fn steps(me: &str, leases: &[Observed]) -> Vec<Step> {
        plan(me, at(), leases, D, false)
    }

    #[test]
    fn a_lone_replica_takes_every_shard() {
        let mut s = steps("a", &vec![Observed::default(); 4]);
        s.sort_by_key(|s| format!("{s:?}"));
        assert_eq!(s, vec![Step::Take(0), Step::Take(1), Step::Take(2), Step::Take(3)]);
    }

    #[test]
    fn with_one_shard_the_holder_keeps_it_and_others_wait() {
        let leases = [held("a")];
        assert_eq!(steps("a", &leases), vec![Step::Renew(0)]);
        assert_eq!(steps("b", &leases), vec![], "a standby neither takes nor asks");
    }

    #[test]
    fn a_lease_not_renewed_in_time_is_free() {
        let mut stale = held("dead");
        stale.valid_until = Some(at() - Duration::from_secs(1));
        assert_eq!(steps("b", &[stale]), vec![Step::Take(0)]);
        let released = Observed::default();
        assert_eq!(steps("b", &[released]), vec![Step::Take(0)]);
    }

    #[test]
    fn a_newcomer_asks_the_busiest_holder_and_gets_its_share() {
        let all_a = vec![held("a"); 4];
        assert_eq!(steps("b", &all_a), vec![Step::Ask(3)]);
        // The holder sees the ask: it now shares with two members and gives up two Leases,
        // the asked-for one first.
        let asked: Vec<Observed> = (0..4)
            .map(|i| if i == 3 { wanted(held("a"), "b") } else { held("a") })
            .collect();
        assert_eq!(
            steps("a", &asked),
            vec![Step::Renew(0), Step::Renew(1), Step::Release(3), Step::Release(2)]
        );
        // Released Leases are free (the ask stays on its Lease until the asker takes it): the
        // asker takes them, and the holder, counting the asker, leaves them.
        let after = vec![
            held("a"),
            held("a"),
            Observed::default(),
            wanted(Observed::default(), "b"),
        ];
        let mut s = steps("b", &after);
        s.sort_by_key(|s| format!("{s:?}"));
        assert_eq!(s, vec![Step::Take(2), Step::Take(3)]);
        assert_eq!(
            steps("a", &after),
            vec![Step::Renew(0), Step::Renew(1)],
            "a holds its share"
        );
    }

    #[test]
    fn a_holder_at_its_ceiling_gives_one_up_to_a_member_below_its_floor() {
        // Four shards over three replicas: floor 1, ceiling 2.
        let leases = vec![held("a"), held("a"), held("b"), held("b")];
        assert_eq!(steps("c", &leases), vec![Step::Ask(3)]);
        let asked = vec![held("a"), held("a"), held("b"), wanted(held("b"), "c")];
        assert_eq!(steps("b", &asked), vec![Step::Renew(2), Step::Release(3)]);
        assert_eq!(
            steps("a", &asked),
            vec![Step::Renew(0), Step::Renew(1)],
            "not asked: keeps both"
        );
    }

    #[test]
    fn an_ask_stands_without_being_rewritten_every_round() {
        let leases = vec![held("a"), wanted(held("a"), "b")];
        assert_eq!(steps("b", &leases), vec![], "the ask is fresh");
        let mut old = wanted(held("a"), "b");
        old.wanted_by = Some(("b".into(), at() + Duration::from_secs(2)));
        assert_eq!(
            steps("b", &[held("a"), old]),
            vec![Step::Ask(1)],
            "renewed before it lapses"
        );
    }

    #[test]
    fn an_expired_ask_counts_no_member() {
        let mut lapsed = wanted(held("a"), "gone");
        lapsed.wanted_by = Some(("gone".into(), at() - Duration::from_secs(1)));
        assert_eq!(steps("a", &[held("a"), lapsed]), vec![Step::Renew(0), Step::Renew(1)]);
    }

    #[test]
    fn a_dead_members_shards_go_to_the_members_below_their_ceiling() {
        let mut dead = held("d");
        dead.valid_until = Some(at() - Duration::from_secs(1));
        let leases = vec![held("a"), held("b"), held("c"), dead];
        // Three members: ceiling 2, so each of them may take it; the API server lets one win.
        for me in ["a", "b", "c"] {
            assert!(steps(me, &leases).contains(&Step::Take(3)), "{me}");
        }
    }

    #[test]
    fn a_shard_count_takes_force_a_lease_duration_after_it_was_recorded() {
        assert!(!in_force(None, 4, at(), D), "nothing recorded: nobody acts yet");
        assert!(
            !in_force(Some((2, SystemTime::UNIX_EPOCH)), 4, at(), D),
            "another count is in force"
        );
        assert!(in_force(Some((4, SystemTime::UNIX_EPOCH)), 4, at(), D));
        let recorded = at() - Duration::from_secs(3);
        assert!(
            !in_force(Some((4, recorded)), 4, at(), D),
            "others may not have read it yet"
        );
        assert!(in_force(Some((4, recorded)), 4, at() + D, D));
    }

    #[test]
    fn stopping_releases_everything_held() {
        let leases = vec![held("a"), held("b"), held("a")];
        assert_eq!(
            plan("a", at(), &leases, D, true),
            vec![Step::Release(0), Step::Release(2)]
        );
    }
}
