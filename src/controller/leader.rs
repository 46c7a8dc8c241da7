//! Who writes, and when. This is the one place that decides it.
//!
//! - **One writer.** Every replica competes for one `coordination.k8s.io` Lease, each under
//!   its own holder identity (the pod name) *and* its own field manager
//!   ([`lease_field_manager`]): server-side apply never conflicts a manager with itself, so a
//!   shared manager would let two replicas both take an unheld Lease.
//! - **Only while it holds the Lease** does a replica run the controllers, send token
//!   requests, exchange consent codes, and write anything: state and output Secrets, status,
//!   Events, the consent signing key, and the Lease annotation that says where its consent
//!   callback listens. "Holds" is [`leading`]: the lease manager says so *and* the Lease as
//!   last read names this replica and has not expired by this replica's clock, so a leader
//!   cut off from the API server stops acting when its Lease runs out, before a standby may
//!   take it over.
//! - **Mid-pass loss.** A pass checks the lead right before a token request or a code
//!   exchange (`reconcile::driver`) and stops if it was lost. The one write still made after a
//!   loss is the state write that stores a token response already received: a rotated
//!   refresh token must never be dropped.
//! - **Standbys** serve `/readyz` (ready, so rollouts proceed), `/metrics`, and the consent
//!   callback, which they hand unchanged to the leader's callback listener (found through
//!   the Lease annotation) and answer with the leader's page. They make no write at all.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures::future;
use k8s_openapi::api::coordination::v1::Lease;
use kube::Client;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;
use sha2::{Digest, Sha256};
use tokio::sync::watch;
use tracing::{info, warn};

use super::config::LeaderElection;
use super::context::Context;
use super::store::FIELD_MANAGER;
use super::watches::run_controller;

/// Lease annotation: the identity whose callback [`CALLBACK_URL`] is.
pub const CALLBACK_HOLDER: &str = "connectorauth.dev/callback-holder";
/// Lease annotation: the leader's consent callback listener, for standbys.
pub const CALLBACK_URL: &str = "connectorauth.dev/callback-url";

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

/// Whether this replica leads: the lease manager says so, and the Lease as last read names it
/// and is still valid now.
pub fn leading(
    manager_says: bool,
    holder: Option<&str>,
    me: &str,
    valid_until: Option<SystemTime>,
    now: SystemTime,
) -> bool {
    manager_says && holder == Some(me) && valid_until.is_some_and(|v| now < v)
}

/// When a Lease expires: renew time plus duration.
fn expiry(lease: &Lease) -> Option<SystemTime> {
    let spec = lease.spec.as_ref()?;
    let renew: SystemTime = spec.renew_time.as_ref()?.0.into();
    Some(renew + Duration::from_secs(u64::try_from(spec.lease_duration_seconds?).ok()?))
}

/// Follows the lease manager's flag and the Lease itself, and says whether this replica
/// leads (see [`leading`]). Runs until `manager` closes.
async fn fence(
    api: Api<Lease>,
    name: String,
    me: String,
    period: Duration,
    mut manager: watch::Receiver<bool>,
    lead: watch::Sender<bool>,
) {
    let mut holder: Option<String> = None;
    let mut valid_until: Option<SystemTime> = None;
    loop {
        let says = *manager.borrow_and_update();
        if says {
            match api.get_opt(&name).await {
                Ok(Some(lease)) => {
                    holder = lease.spec.as_ref().and_then(|s| s.holder_identity.clone());
                    valid_until = expiry(&lease);
                }
                Ok(None) => holder = None,
                // Keep what was last read: the Lease runs out on its own.
                Err(e) => warn!(error = %e, "cannot read the Lease"),
            }
        }
        let now = leading(says, holder.as_deref(), &me, valid_until, SystemTime::now());
        lead.send_if_modified(|l| std::mem::replace(l, now) != now);
        tokio::select! {
            r = manager.changed() => if r.is_err() { let _ = lead.send(false); return },
            _ = tokio::time::sleep(period) => {}
        }
    }
}

/// The leader's consent callback listener, read from the Lease by a standby: only while the
/// Lease is valid and held by the identity that announced it, and never this replica's own.
pub async fn leader_callback(client: &Client, election: &LeaderElection, me: &str) -> Option<String> {
    let api: Api<Lease> = Api::namespaced(client.clone(), &election.lease_namespace);
    let lease = api.get_opt(&election.lease_name).await.ok()??;
    let holder = lease.spec.as_ref()?.holder_identity.clone()?;
    let annotations = lease.metadata.annotations.as_ref()?;
    let valid = expiry(&lease).is_some_and(|e| e > SystemTime::now());
    (valid && holder != me && annotations.get(CALLBACK_HOLDER) == Some(&holder))
        .then(|| annotations.get(CALLBACK_URL).cloned())
        .flatten()
}

/// Tells standbys where this leader's consent callback listens.
async fn announce_callback(client: &Client, election: &LeaderElection, me: &str, url: &str) -> Result<(), kube::Error> {
    let api: Api<Lease> = Api::namespaced(client.clone(), &election.lease_namespace);
    let patch = json!({
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": { "annotations": { CALLBACK_HOLDER: me, CALLBACK_URL: url } },
    });
    // The annotations are the operator's, whoever leads: one shared manager, forced.
    api.patch(
        &election.lease_name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await
    .map(|_| ())
}

/// Runs one controller per watched namespace (or one for all) until `until` turns true; marks
/// the process ready once every cache has synced.
async fn run_controllers(ctx: Arc<Context>, ready_tx: watch::Sender<bool>, until: watch::Receiver<bool>) {
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
        tasks.push(run_controller(ctx.clone(), ns, one_tx, async move {
            let _ = until.wait_for(|s| *s).await;
        }));
    }
    tokio::spawn(async move {
        if synced_rx.wait_for(|n| *n >= total).await.is_ok() {
            let _ = ready_tx.send(true);
        }
    });
    future::join_all(tasks).await;
}

/// What a replica does when it takes the lead, before reconciling: the consent signing key
/// (created by the first leader) and, with election, the callback announcement.
async fn take_lead(ctx: &Context, election: Option<&LeaderElection>, callback: Option<&str>) -> anyhow::Result<()> {
    if let Some(c) = &ctx.config.consent
        && ctx.core.consent_key.get().is_none()
    {
        let key = super::consent_key::ensure(&ctx.client, &c.key_namespace).await?;
        let _ = ctx.core.consent_key.set(key);
    }
    if let (Some(e), Some(url)) = (election, callback)
        && let Err(err) = announce_callback(&ctx.client, e, &ctx.config.identity, url).await
    {
        warn!(error = %err, "cannot announce the consent callback on the Lease; standbys will ask people to retry");
    }
    Ok(())
}

/// Runs the operator until `shutdown` resolves: HTTP endpoints, the consent callback, leader
/// election, and the controllers while this replica leads.
pub async fn run(
    client: Client,
    config: super::Config,
    election: Option<LeaderElection>,
    metrics_addr: SocketAddr,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    super::check_crd(&client, &config.namespaces).await?;
    let metrics = super::metrics::Metrics::default();
    let (lead_tx, lead_rx) = watch::channel(election.is_none());
    let lead = match &election {
        Some(_) => crate::reconcile::Lead::following(lead_rx.clone()),
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
    let server = tokio::spawn(crate::server::serve(listener, metrics.clone(), ready_rx));

    let (stop_tx, mut stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });

    match &election {
        None => {
            take_lead(&ctx, None, None).await?;
            metrics.leader.set(1);
            run_controllers(ctx.clone(), ready_tx, stop_rx.clone()).await;
        }
        Some(le) => {
            let manager = kube_lease_manager::LeaseManagerBuilder::new(client.clone(), &le.lease_name)
                .with_namespace(&le.lease_namespace)
                .with_identity(&config.identity)
                .with_duration(le.lease_duration)
                .with_grace((le.lease_duration / 3).max(1))
                .with_field_manager(lease_field_manager(&config.identity))
                .build()
                .await?;
            let (manager_flag, lease_task) = manager.watch().await;
            let period = Duration::from_millis((le.lease_duration * 1000 / 5).clamp(200, 3000));
            let fence_task = tokio::spawn(fence(
                Api::namespaced(client.clone(), &le.lease_namespace),
                le.lease_name.clone(),
                config.identity.clone(),
                period,
                manager_flag.clone(),
                lead_tx,
            ));
            let mut leading_rx = lead_rx;
            loop {
                tokio::select! {
                    _ = stop_rx.wait_for(|s| *s) => break,
                    r = leading_rx.wait_for(|l| *l) => if r.is_err() { break },
                }
                info!(identity = %config.identity, "acquired leadership");
                metrics.leader.set(1);
                if let Err(e) = take_lead(&ctx, Some(le), callback_url.as_deref()).await {
                    warn!(error = %e, "cannot prepare to lead; waiting to lead again");
                }
                let (lost_tx, lost_rx) = watch::channel(false);
                let mut watch_lead = leading_rx.clone();
                let mut stop = stop_rx.clone();
                let relay = tokio::spawn(async move {
                    tokio::select! {
                        _ = watch_lead.wait_for(|l| !*l) => {},
                        _ = stop.wait_for(|s| *s) => {},
                    }
                    let _ = lost_tx.send(true);
                });
                run_controllers(ctx.clone(), ready_tx.clone(), lost_rx).await;
                relay.abort();
                metrics.leader.set(0);
                if *stop_rx.borrow() {
                    break;
                }
                warn!("lost leadership; waiting to lead again");
            }
            fence_task.abort();
            drop(manager_flag);
            // Dropping the receivers makes the manager release the lease.
            match lease_task.await {
                Ok(Ok(manager)) => {
                    let _ = manager.release().await;
                }
                Ok(Err(e)) => warn!(error = %e, "lease manager stopped"),
                Err(e) => warn!(error = %e, "lease task panicked"),
            }
        }
    }
    metrics.leader.set(0);
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

    #[test]
    fn a_replica_leads_only_while_the_manager_and_an_unexpired_lease_both_say_so() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        let later = Some(now + Duration::from_secs(5));
        let earlier = Some(now - Duration::from_secs(1));
        assert!(leading(true, Some("me"), "me", later, now));
        assert!(!leading(false, Some("me"), "me", later, now), "the manager lost it");
        assert!(
            !leading(true, Some("other"), "me", later, now),
            "another replica holds it"
        );
        assert!(!leading(true, None, "me", later, now), "released");
        assert!(!leading(true, Some("me"), "me", earlier, now), "not renewed in time");
        assert!(!leading(true, Some("me"), "me", None, now), "never read");
    }
}
