//! Who writes, and when. This is the one place that decides it.
//!
//! - **Shards.** Resources are split into `--shards` shards by a stable hash of
//!   namespace/name ([`crate::reconcile::shard_of`]); each shard has one
//!   `coordination.k8s.io` Lease ([`lease::lease_name`]; one shard: the configured Lease name).
//!   Every replica competes for every shard's Lease under its own identity (the pod name), and
//!   shares them fairly with the others ([`plan`]).
//! - **One writer per resource.** Only while it holds a resource's shard does a replica
//!   reconcile it, send its token requests, exchange its consent codes, and write its state and
//!   output Secrets, status and Events. "Holds" is [`Held`]: the replica's own last write of the
//!   Lease named it, and that write plus the Lease duration has not passed by its own clock,
//!   so a replica cut off from the API server stops acting when its Lease runs out, before
//!   another may take it over. Every Lease write is conditional ([`lease`]): two replicas
//!   taking one free Lease at once get one winner from the API server.
//! - **Handing a shard over** (fair share, shutdown): the holder first stops counting the shard
//!   as held, stops its controller and waits for its passes to end, and only then releases the
//!   Lease. It keeps renewing meanwhile, so nobody else acts on the shard until it is idle.
//! - **Mid-pass loss.** A pass checks the lead on its resource right before a token request or
//!   a code exchange (`reconcile::driver`) and stops if it was lost. The one write still made
//!   after a loss is the state write that stores a token response already received: a rotated
//!   refresh token must never be dropped.
//! - **Consent callbacks** reach any replica; one that does not hold the resource's shard
//!   hands the request, unchanged, to the holder's callback listener (announced on the shard's
//!   Lease) and answers with the holder's page. It writes nothing.
//! - Replicas that hold nothing serve `/readyz` (ready, so rollouts proceed), `/metrics` and
//!   the consent callback, and make no write at all.

mod lease;
pub mod plan;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures::future;
use k8s_openapi::api::coordination::v1::Lease;
use kube::Client;
use kube::api::Api;
use sha2::{Digest, Sha256};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use super::config::LeaderElection;
use super::context::Context;
use super::store::FIELD_MANAGER;
use super::watches::{Shard, run_controller};
use crate::reconcile::Held;
pub use lease::{CALLBACK_HOLDER, CALLBACK_URL, lease_name};
use lease::{Leases, expiry, observe, recorded_shards};
use plan::{Step, in_force, plan};

/// The field manager of this replica's Lease writes: one per replica, at most 128 characters
/// (the API server's limit).
pub fn lease_field_manager(identity: &str) -> String {
    let name = format!("{FIELD_MANAGER}/{identity}");
    if name.len() <= 128 {
        return name;
    }
    let digest: String = Sha256::digest(identity.as_bytes())[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("{FIELD_MANAGER}/{}-{digest}", &identity[..80.min(identity.len())])
}

/// The consent callback listener of the replica holding `shard`, read from its Lease: only
/// while the Lease is valid and held by the identity that announced it, and never `me`'s own.
pub async fn holder_callback(
    client: &Client,
    election: &LeaderElection,
    shards: u32,
    shard: u32,
    me: &str,
) -> Option<String> {
    let api: Api<Lease> = Api::namespaced(client.clone(), &election.lease_namespace);
    let lease = api
        .get_opt(&lease_name(&election.lease_name, shard, shards))
        .await
        .ok()??;
    lease::holder_callback(&lease, me, SystemTime::now())
}

/// How often a replica reads and renews its Leases: a fifth of their duration, so a holder
/// renews several times before its Lease could run out.
fn round_period(lease_duration: u64) -> Duration {
    Duration::from_millis((lease_duration * 1000 / 5).clamp(200, 3000))
}

/// The election: each round reads every shard's Lease, plans ([`plan`]) and writes; publishes
/// what this replica holds to `held`. A shard being handed over is released only once
/// `running` no longer lists it. On `stop`: stops holding anything, waits until no controller
/// runs, releases every Lease it holds, and returns.
async fn elect(
    leases: Leases,
    names: Vec<String>,
    held: watch::Sender<Held>,
    mut running: watch::Receiver<BTreeSet<u32>>,
    mut stop: watch::Receiver<bool>,
) {
    let period = round_period(leases.duration.as_secs());
    let mut last: Vec<Option<Lease>> = vec![None; names.len()];
    loop {
        let stopping = *stop.borrow();
        for (i, name) in names.iter().enumerate() {
            match leases.read(name).await {
                Ok(l) => last[i] = l,
                // Keep what was last read: a Lease runs out on its own.
                Err(e) => warn!(lease = %name, error = %e, "cannot read the Lease"),
            }
        }
        let observed: Vec<_> = last.iter().map(|l| observe(l.as_ref())).collect();
        let now = SystemTime::now();
        let config_ok = in_force(recorded_shards(last[0].as_ref()), leases.shards, now, leases.duration);
        if !config_ok {
            // Hold Leases as usual, but act on none until the base Lease says this
            // configuration is the one in force (see `plan::in_force`).
            held.send_if_modified(|h| {
                let none = Held::none(h.shards());
                std::mem::replace(h, none.clone()) != none
            });
        }
        let steps = plan(&leases.me, now, &observed, leases.duration, stopping);
        let mut releasing = Vec::new();
        for step in steps {
            match step {
                Step::Renew(i) | Step::Take(i) => {
                    let i = i as usize;
                    match leases
                        .hold(&names[i], last[i].as_ref(), SystemTime::now(), i == 0)
                        .await
                    {
                        Ok(l) => {
                            if matches!(step, Step::Take(_)) {
                                info!(lease = %names[i], "took the shard's Lease");
                            }
                            if config_ok {
                                held.send_if_modified(|h| set(h, i as u32, expiry(&l)));
                            }
                            last[i] = Some(l);
                        }
                        // Someone else wrote it since it was read (409), or the API server
                        // is out of reach: the next round reads again.
                        Err(e) => debug!(lease = %names[i], error = %e, "could not hold the Lease"),
                    }
                }
                Step::Release(i) => releasing.push(i),
                Step::Ask(i) => {
                    let i = i as usize;
                    if let Some(current) = &last[i]
                        && let Err(e) = leases.ask(&names[i], current, SystemTime::now()).await
                    {
                        debug!(lease = %names[i], error = %e, "could not ask for the Lease");
                    }
                }
            }
        }
        for &i in &releasing {
            held.send_if_modified(|h| set(h, i, None));
        }
        // Stopping and holding nothing live: done. (A Lease that still names this replica but
        // ran out is nobody's to release: any replica may take it.)
        if stopping && releasing.is_empty() {
            return;
        }
        for i in releasing {
            let (i, name) = (i as usize, &names[i as usize]);
            let Some(current) = last[i].clone() else { continue };
            let idle = !running.borrow().contains(&(i as u32));
            let written = if idle {
                leases
                    .release(name, &current)
                    .await
                    .inspect(|_| info!(lease = %name, "released the shard's Lease"))
            } else {
                // Still finishing its passes: keep others out until it is idle.
                leases.hold(name, Some(&current), SystemTime::now(), i == 0).await
            };
            match written {
                Ok(l) => last[i] = Some(l),
                Err(e) => debug!(lease = %name, error = %e, "could not hand the Lease over"),
            }
        }
        tokio::select! {
            _ = stop.changed(), if !stopping => {}
            // Once the supervisor has ended there is nothing more to hear from it.
            r = running.changed() => if r.is_err() { tokio::time::sleep(period).await },
            _ = tokio::time::sleep(period) => {}
        }
    }
}

/// Sets one shard's hold; whether that changed anything.
fn set(held: &mut Held, shard: u32, until: Option<SystemTime>) -> bool {
    let before = held.clone();
    held.set(shard, until);
    *held != before
}

/// A shard's controller, and since when it has been told to stop.
struct Running {
    until: watch::Sender<bool>,
    task: JoinHandle<()>,
    stopping_since: Option<std::time::Instant>,
}

/// Runs a controller for each shard this replica holds, starting and stopping them as `held`
/// changes, and says in `running` which shards still have one (a stopping controller counts
/// until its passes have ended). Returns once `stop` is set and every controller has ended.
async fn supervise(
    ctx: Arc<Context>,
    mut held: watch::Receiver<Held>,
    running_tx: watch::Sender<BTreeSet<u32>>,
    ready_tx: watch::Sender<bool>,
    mut stop: watch::Receiver<bool>,
    period: Duration,
) {
    let shards = held.borrow().shards();
    // A controller told to stop ends once its running passes have (at once if its cache had
    // not synced yet: it has run none); one that has not after this long is ended. By then no
    // pass of it may start a token request (the shard is no longer held) and any request it
    // had under way has timed out, so nothing it holds is lost.
    let drain_limit = period * 5 + ctx.config.http.timeout + ctx.config.http.connect_timeout;
    let mut controllers: BTreeMap<u32, Running> = BTreeMap::new();
    let mut prepared = false;
    loop {
        let stopping = *stop.borrow();
        let want: BTreeSet<u32> = if stopping {
            BTreeSet::new()
        } else {
            held.borrow_and_update().held_at(SystemTime::now()).collect()
        };
        if !want.is_empty() && !prepared {
            match take_lead(&ctx).await {
                Ok(()) => prepared = true,
                Err(e) => warn!(error = %e, "cannot prepare to act; retrying"),
            }
        }
        let starting: Vec<u32> = want.iter().copied().filter(|s| !controllers.contains_key(s)).collect();
        for shard in starting.into_iter().take_while(|_| prepared) {
            info!(shard, shards, "reconciling the shard");
            let (until_tx, until_rx) = watch::channel(false);
            let task = tokio::spawn(run_controllers(
                ctx.clone(),
                ready_tx.clone(),
                Some(Shard {
                    index: shard,
                    count: shards,
                }),
                until_rx,
            ));
            controllers.insert(
                shard,
                Running {
                    until: until_tx,
                    task,
                    stopping_since: None,
                },
            );
        }
        for (shard, c) in controllers.iter_mut() {
            match c.stopping_since {
                None if !want.contains(shard) => {
                    info!(shard, "stopping work on the shard");
                    let _ = c.until.send(true);
                    c.stopping_since = Some(std::time::Instant::now());
                }
                Some(since) if since.elapsed() > drain_limit && !c.task.is_finished() => {
                    warn!(shard, "the shard's controller did not stop in time; ending it");
                    c.task.abort();
                }
                _ => {}
            }
        }
        controllers.retain(|_, c| !c.task.is_finished());
        let now_running: BTreeSet<u32> = controllers.keys().copied().collect();
        ctx.metrics.shards_held.set(want.len() as i64);
        ctx.metrics.leader.set(i64::from(!want.is_empty()));
        running_tx.send_if_modified(|r| std::mem::replace(r, now_running.clone()) != now_running);
        if stopping && controllers.is_empty() {
            return;
        }
        tokio::select! {
            // The election ends first when stopping with nothing left to release; a closed
            // channel would otherwise wake this loop at once, over and over.
            r = held.changed() => if r.is_err() { tokio::time::sleep(period).await },
            _ = stop.changed(), if !stopping => {}
            _ = tokio::time::sleep(period) => {}
        }
    }
}

/// Runs one controller per watched namespace (or one for all), for one shard or all of them,
/// until `until` turns true; marks the process ready once every cache has synced.
async fn run_controllers(
    ctx: Arc<Context>,
    ready_tx: watch::Sender<bool>,
    shard: Option<Shard>,
    until: watch::Receiver<bool>,
) {
    let namespaces: Vec<Option<String>> = if ctx.config.namespaces.is_empty() {
        vec![None]
    } else {
        ctx.config.namespaces.iter().cloned().map(Some).collect()
    };
    let (synced_tx, mut synced_rx) = watch::channel(0usize);
    let total = namespaces.len();
    let mut tasks = Vec::new();
    for ns in namespaces {
        let (one_tx, mut one_rx) = watch::channel(false);
        let counter = synced_tx.clone();
        tokio::spawn(async move {
            if one_rx.wait_for(|r| *r).await.is_ok() {
                counter.send_modify(|n| *n += 1);
            }
        });
        let mut until = until.clone();
        tasks.push(run_controller(ctx.clone(), ns, shard, one_tx, async move {
            let _ = until.wait_for(|s| *s).await;
        }));
    }
    let started = std::time::Instant::now();
    tokio::spawn(async move {
        if synced_rx.wait_for(|n| *n >= total).await.is_ok() {
            let after_ms = started.elapsed().as_millis() as u64;
            info!(shard = ?shard.map(|s| s.index), after_ms, "the caches synced");
            let _ = ready_tx.send(true);
        }
    });
    future::join_all(tasks).await;
}

/// What a replica does before it first acts: the consent signing key (created by the first
/// replica to need it).
async fn take_lead(ctx: &Context) -> anyhow::Result<()> {
    if let Some(c) = &ctx.config.consent
        && ctx.core.consent_key.get().is_none()
    {
        let key = super::consent_key::ensure(&ctx.client, &c.key_namespace).await?;
        let _ = ctx.core.consent_key.set(key);
    }
    Ok(())
}

/// Runs the operator until `shutdown` resolves: HTTP endpoints, the consent callback, the
/// election, and a controller for each shard this replica holds.
pub async fn run(
    client: Client,
    config: super::config::Config,
    election: Option<LeaderElection>,
    metrics_addr: SocketAddr,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    super::crd::check_crd(&client, &config.namespaces).await?;
    let metrics = super::metrics::Metrics::default();
    let shards = election.as_ref().map_or(1, |e| e.shards.max(1));
    let (held_tx, held_rx) = watch::channel(Held::none(shards));
    let lead = match &election {
        Some(_) => crate::reconcile::Lead::following(held_rx.clone()),
        None => crate::reconcile::Lead::always(),
    };
    let ctx = Context::new(client.clone(), config.clone(), metrics.clone(), election.clone(), lead)?;

    let mut callback_url = None;
    let consent_server = match &config.consent {
        Some(c) => {
            let listener = tokio::net::TcpListener::bind(c.listen).await?;
            let bound = listener.local_addr()?;
            callback_url = c.advertised(bound);
            info!(address = %bound, redirect_url = %c.redirect_url(), "serving the OAuth2 consent callback");
            let router = crate::reconcile::callback::router(ctx.clone());
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
    let server = tokio::spawn(super::server::serve(listener, metrics.clone(), ready_rx));

    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });

    match &election {
        None => {
            take_lead(&ctx).await?;
            metrics.leader.set(1);
            metrics.shards_held.set(1);
            run_controllers(ctx.clone(), ready_tx, None, stop_rx.clone()).await;
        }
        Some(le) => {
            let leases = Leases {
                api: Api::namespaced(client.clone(), &le.lease_namespace),
                shards,
                me: config.identity.clone(),
                duration: Duration::from_secs(le.lease_duration.max(1)),
                field_manager: lease_field_manager(&config.identity),
                callback_url,
            };
            let names = (0..shards).map(|i| lease_name(&le.lease_name, i, shards)).collect();
            let (running_tx, running_rx) = watch::channel(BTreeSet::new());
            let election_task = tokio::spawn(elect(leases, names, held_tx, running_rx, stop_rx.clone()));
            supervise(
                ctx.clone(),
                held_rx,
                running_tx,
                ready_tx,
                stop_rx,
                round_period(le.lease_duration),
            )
            .await;
            if let Err(e) = election_task.await {
                warn!(error = %e, "the election task panicked");
            }
        }
    }
    metrics.leader.set(0);
    metrics.shards_held.set(0);
    server.abort();
    if let Some(s) = consent_server {
        s.abort();
    }
    info!("stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_replica_applies_the_lease_under_its_own_field_manager() {
        assert_eq!(
            lease_field_manager("op-7d9f-abc"),
            "connector-auth-operator/op-7d9f-abc"
        );
        assert_ne!(lease_field_manager("a"), lease_field_manager("b"));
        let long = "x".repeat(250);
        let m = lease_field_manager(&long);
        assert!(m.len() <= 128, "{}", m.len());
        assert_ne!(
            m,
            lease_field_manager(&"x".repeat(249)),
            "long identities stay distinct"
        );
    }
}
