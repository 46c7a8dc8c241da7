//! Revocation on delete (`oauth2.revocationUrl`, RFC 7009) through the finalizer
//! [`FINALIZER`]. It is put only on resources that ask for revocation, before their first token
//! request, so every token obtained is revoked when the resource is deleted. Deletion waits for
//! one best-effort attempt bounded by `revocationTimeoutSeconds`, never longer: whatever the
//! provider answers (or does not), the finalizer is then removed. Only the leader runs it.

use std::collections::BTreeMap;

use jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::{Resource, ResourceExt};
use serde_json::json;
use tracing::warn;

use super::context::Context;
use super::decide::events::{EventAction, EventPlan};
use super::decide::finalizer::{self, FinalizerStep};
use super::error::Error;
use super::report;
use super::store::FIELD_MANAGER;
use crate::api::{ConnectorAuth, Scheme};
use crate::reason::Reason;
use crate::reconcile::{Adapter, PassError, Store, StoreError, gather, output_secret_name};

/// The finalizer that holds a deleted resource until its tokens are revoked.
pub const FINALIZER: &str = "connectorauth.dev/revoke";

/// Whether the spec asks for revocation on delete.
pub fn wanted(ca: &ConnectorAuth) -> bool {
    match &ca.spec.scheme {
        Scheme::OAuth2(o) => o.revocation_url.is_some(),
        Scheme::SuperOffice(s) => s.oauth2.revocation_url.is_some(),
        _ => false,
    }
}

/// What the finalizer calls for now.
pub fn step(ca: &ConnectorAuth) -> FinalizerStep {
    let has = ca.finalizers().iter().any(|f| f == FINALIZER);
    finalizer::finalizer_step(wanted(ca), has, ca.meta().deletion_timestamp.is_some())
}

/// Adds or removes the finalizer, keeping everyone else's. The list is written with the
/// resourceVersion it was read at, so a concurrent change to it is never overwritten; on a
/// conflict it is read again.
pub async fn set(ctx: &Context, ca: &ConnectorAuth, present: bool) -> Result<(), Error> {
    if !ctx.leads(ca) {
        return Err(Error::Pass(PassError::NotLeader));
    }
    let api: Api<ConnectorAuth> = Api::namespaced(ctx.client.clone(), &ca.namespace().unwrap_or_default());
    let mut current = ca.meta().clone();
    for attempt in 0..3 {
        let mut finalizers: Vec<String> = current.finalizers.clone().unwrap_or_default();
        finalizers.retain(|f| f != FINALIZER);
        if present {
            finalizers.push(FINALIZER.into());
        }
        if Some(&finalizers) == current.finalizers.as_ref() || (finalizers.is_empty() && current.finalizers.is_none()) {
            return Ok(());
        }
        let patch = json!({ "metadata": { "finalizers": finalizers, "resourceVersion": current.resource_version } });
        let params = PatchParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..PatchParams::default()
        };
        match api.patch(&ca.name_any(), &params, &Patch::Merge(&patch)).await {
            Ok(_) => {
                ctx.metrics.write("finalizer", true);
                return Ok(());
            }
            // Gone already: nothing holds it any more.
            Err(kube::Error::Api(s)) if s.code == 404 => return Ok(()),
            Err(kube::Error::Api(s)) if s.code == 409 && attempt < 2 => match api.get_opt(&ca.name_any()).await {
                Ok(Some(fresh)) if fresh.uid() == ca.uid() => current = fresh.metadata,
                Ok(_) => return Ok(()),
                Err(e) => return Err(Error::Kube(e)),
            },
            Err(e) => return Err(Error::Kube(e)),
        }
    }
    Ok(())
}

/// The resource is being deleted: revokes what it holds (bounded by its time limit), says how
/// that went in an Event, and lets the resource go. Only API failures make it retry.
pub async fn on_delete(ctx: &Context, ca: &ConnectorAuth, now: Timestamp) -> Result<(), Error> {
    if !ctx.leads(ca) {
        return Err(Error::Pass(PassError::NotLeader));
    }
    // The cached copy may predate a pass that has already revoked and let the resource go
    // (the watch has not brought the deletion yet): revoking runs once, on the API server's
    // word. A deletion is rare; this read is cheap insurance.
    let api: Api<ConnectorAuth> = Api::namespaced(ctx.client.clone(), &ca.namespace().unwrap_or_default());
    match api.get_opt(&ca.name_any()).await.map_err(Error::Kube)? {
        Some(fresh) if fresh.uid() == ca.uid() && step(&fresh) == FinalizerStep::Revoke => {}
        _ => return Ok(()),
    }
    let held = ctx.core.ledger.hold(ca).await;
    let plan = revoke(ctx, ca, held.record().cloned(), now).await?;
    drop(held);
    report::publish(ctx, ca, &plan).await;
    set(ctx, ca, false).await
}

fn plan(ok: bool, note: String) -> EventPlan {
    EventPlan {
        warning: !ok,
        reason: if ok { Reason::Revoked } else { Reason::RevocationFailed },
        note,
        action: EventAction::Revoke,
    }
}

async fn revoke(
    ctx: &Context,
    ca: &ConnectorAuth,
    unsaved: Option<crate::reconcile::record::Record>,
    now: Timestamp,
) -> Result<EventPlan, Error> {
    let core = &ctx.core;
    let g = match gather(&core.engine, ctx, ca, core.redirect_url.clone(), BTreeMap::new())
        .await
        .map_err(|e| Error::Pass(e.into()))?
    {
        Ok(g) => g,
        Err(refusal) => return Ok(plan(false, format!("tokens not revoked: {}", refusal.message))),
    };
    let Some(r) = g.flow.revocation.as_ref() else {
        return Ok(plan(true, "no revocation endpoint, nothing to revoke".into()));
    };
    // What a pass could not persist yet is the newest state.
    let record = match unsaved {
        Some(r) => Some(r),
        None => match ctx
            .store(ca, &output_secret_name(ca))
            .map(|s| async move { s.load().await })
        {
            Some(load) => match load.await {
                Ok(r) => r,
                Err(e @ (StoreError::OwnedElsewhere { .. } | StoreError::Rejected { .. })) => {
                    warn!(error = %e, "no state to revoke");
                    None
                }
                Err(e) => return Err(Error::Pass(e.into())),
            },
            None => None,
        },
    };
    let Some(token) = record.and_then(|r| r.token) else {
        return Ok(plan(true, "no token was obtained, nothing to revoke".into()));
    };
    let Some(revoked) = core.engine.revoke(&g.flow, &g.inputs, &token, now).await else {
        return Ok(plan(true, "no revocation endpoint, nothing to revoke".into()));
    };
    Ok(plan(revoked.complete(), revoked.summary(r.timeout)))
}
