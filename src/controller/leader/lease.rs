//! Reading and writing the shard Leases. Every write is conditional on the resourceVersion
//! last read (an update) or on the Lease not existing yet (a create), so when two replicas act
//! on one Lease at once the API server lets exactly one of them through.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};

use super::plan::Observed;

/// Lease annotation: the identity whose callback [`CALLBACK_URL`] is.
pub const CALLBACK_HOLDER: &str = "connectorauth.dev/callback-holder";
/// Lease annotation: the holder's consent callback listener, for the other replicas.
pub const CALLBACK_URL: &str = "connectorauth.dev/callback-url";
/// Lease annotation: a replica asking the holder to give this shard up.
pub const WANTED_BY: &str = "connectorauth.dev/wanted-by";
/// Lease annotation: until when that ask stands (RFC 3339).
pub const WANTED_UNTIL: &str = "connectorauth.dev/wanted-until";

/// Annotation of the base Lease: the shard count of the replicas that may act.
pub const SHARDS: &str = "connectorauth.dev/shards";
/// Annotation of the base Lease: since when (RFC 3339) [`SHARDS`] says so.
pub const SHARDS_SINCE: &str = "connectorauth.dev/shards-since";

/// The Lease of `shard` among `shards`. Shard 0's is the configured name itself, whatever the
/// shard count (a single-shard install keeps the Lease it always had, and every configuration
/// shares this *base* Lease, which records the shard count in force); the others are
/// `<name>-<i>-of-<n>`, so replicas configured with different counts never share one.
pub fn lease_name(base: &str, shard: u32, shards: u32) -> String {
    if shard == 0 {
        base.to_string()
    } else {
        format!("{base}-{shard}-of-{shards}")
    }
}

/// The shard count the base Lease records, and since when.
pub fn recorded_shards(base: Option<&Lease>) -> Option<(u32, SystemTime)> {
    let annotations = base?.metadata.annotations.as_ref()?;
    let shards = annotations.get(SHARDS)?.parse().ok()?;
    let since: Timestamp = annotations.get(SHARDS_SINCE)?.parse().ok()?;
    Some((shards, since.into()))
}

/// When a Lease runs out: renew time plus duration.
pub fn expiry(lease: &Lease) -> Option<SystemTime> {
    let spec = lease.spec.as_ref()?;
    let renew: SystemTime = spec.renew_time.as_ref()?.0.into();
    Some(renew + Duration::from_secs(u64::try_from(spec.lease_duration_seconds?).ok()?))
}

/// What the plan needs of a Lease (`None`: it does not exist yet).
pub fn observe(lease: Option<&Lease>) -> Observed {
    let Some(lease) = lease else {
        return Observed::default();
    };
    let annotations = lease.metadata.annotations.as_ref();
    let wanted_by = annotations.and_then(|a| {
        let who = a.get(WANTED_BY)?;
        let until: Timestamp = a.get(WANTED_UNTIL)?.parse().ok()?;
        Some((who.clone(), SystemTime::from(until)))
    });
    Observed {
        holder: lease
            .spec
            .as_ref()
            .and_then(|s| s.holder_identity.clone())
            .filter(|h| !h.is_empty()),
        valid_until: expiry(lease),
        wanted_by,
    }
}

/// One replica's hand on the Leases of its election.
pub struct Leases {
    pub api: Api<Lease>,
    /// This replica's shard count, recorded on the base Lease when it holds that.
    pub shards: u32,
    pub me: String,
    pub duration: Duration,
    pub field_manager: String,
    /// This replica's consent callback listener, announced on the Leases it holds.
    pub callback_url: Option<String>,
}

impl Leases {
    fn params(&self) -> PostParams {
        PostParams {
            field_manager: Some(self.field_manager.clone()),
            ..PostParams::default()
        }
    }

    pub async fn read(&self, name: &str) -> Result<Option<Lease>, kube::Error> {
        self.api.get_opt(name).await
    }

    /// Takes or renews `name` (as last read: `current`) for this replica, as of `now`; the
    /// `base` Lease also records this replica's shard count. Returns the Lease as written;
    /// this replica holds it until [`expiry`] of that.
    pub async fn hold(
        &self,
        name: &str,
        current: Option<&Lease>,
        now: SystemTime,
        base: bool,
    ) -> Result<Lease, kube::Error> {
        let stamp = MicroTime(Timestamp::try_from(now).unwrap_or_else(|_| Timestamp::now()));
        let duration = i32::try_from(self.duration.as_secs()).unwrap_or(i32::MAX);
        let mut lease = current.cloned().unwrap_or_else(|| Lease {
            metadata: ObjectMeta {
                name: Some(name.to_string()),
                ..ObjectMeta::default()
            },
            spec: None,
        });
        let mut spec = lease.spec.take().unwrap_or_default();
        let taking = spec.holder_identity.as_deref() != Some(self.me.as_str());
        if taking {
            spec.acquire_time = Some(stamp.clone());
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + i32::from(current.is_some()));
        }
        spec = LeaseSpec {
            holder_identity: Some(self.me.clone()),
            lease_duration_seconds: Some(duration),
            renew_time: Some(stamp),
            ..spec
        };
        lease.spec = Some(spec);
        let annotations = lease.metadata.annotations.get_or_insert_with(BTreeMap::new);
        if base {
            let recorded = recorded_shards(current);
            if recorded.map(|(n, _)| n) != Some(self.shards) {
                // Replicas of another shard count may still act on shards of theirs until they
                // read this; only a single-shard configuration acted through this Lease alone
                // (and this replica holding it now means it no longer does).
                let since = match recorded {
                    None | Some((1, _)) => Timestamp::UNIX_EPOCH,
                    Some(_) => Timestamp::try_from(now).unwrap_or_else(|_| Timestamp::now()),
                };
                annotations.insert(SHARDS.into(), self.shards.to_string());
                annotations.insert(SHARDS_SINCE.into(), since.to_string());
            }
        }
        if annotations.get(WANTED_BY) == Some(&self.me) {
            annotations.remove(WANTED_BY);
            annotations.remove(WANTED_UNTIL);
        }
        match &self.callback_url {
            Some(url) => {
                annotations.insert(CALLBACK_HOLDER.into(), self.me.clone());
                annotations.insert(CALLBACK_URL.into(), url.clone());
            }
            None => {
                annotations.remove(CALLBACK_HOLDER);
                annotations.remove(CALLBACK_URL);
            }
        }
        if current.is_some() {
            self.api.replace(name, &self.params(), &lease).await
        } else {
            self.api.create(&self.params(), &lease).await
        }
    }

    /// Gives `current` up: no holder, so any replica may take it at once.
    pub async fn release(&self, name: &str, current: &Lease) -> Result<Lease, kube::Error> {
        let mut lease = current.clone();
        if let Some(spec) = lease.spec.as_mut() {
            spec.holder_identity = None;
        }
        self.api.replace(name, &self.params(), &lease).await
    }

    /// Asks the holder of `current` to give it up, until `now` plus a Lease duration.
    pub async fn ask(&self, name: &str, current: &Lease, now: SystemTime) -> Result<Lease, kube::Error> {
        let mut lease = current.clone();
        let until = Timestamp::try_from(now + self.duration).unwrap_or_else(|_| Timestamp::now());
        let annotations = lease.metadata.annotations.get_or_insert_with(BTreeMap::new);
        annotations.insert(WANTED_BY.into(), self.me.clone());
        annotations.insert(WANTED_UNTIL.into(), until.to_string());
        self.api.replace(name, &self.params(), &lease).await
    }
}

/// The consent callback listener of whoever holds `lease` now, unless that is `me`.
pub fn holder_callback(lease: &Lease, me: &str, now: SystemTime) -> Option<String> {
    let holder = lease.spec.as_ref()?.holder_identity.clone()?;
    let annotations = lease.metadata.annotations.as_ref()?;
    let valid = expiry(lease).is_some_and(|e| e > now);
    (valid && holder != me && annotations.get(CALLBACK_HOLDER) == Some(&holder))
        .then(|| annotations.get(CALLBACK_URL).cloned())
        .flatten()
}
