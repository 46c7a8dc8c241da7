//! `output.rolloutRestart`: restarts the listed workloads, as `kubectl rollout restart` does,
//! when the published credential changes in a way that matters. [`decide::rollout`] decides
//! what is owed; this carries it out and records it in the private state, so each change
//! restarts each workload once: the mark is stored before the first restart (write-ahead), and
//! a workload whose pod template already carries the mark's `restartedAt` is not patched again
//! (a pass retried after a failure, or a new leader after a crash).
//!
//! A missing workload or a missing permission is a Warning Event naming the workload; the
//! token is never affected.

use jiff::Timestamp;
use kube::ResourceExt;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams};
use kube::core::Selector;
use serde_json::json;

use super::context::Context;
use super::decide::events::{EventAction, EventPlan};
use super::decide::rollout as decide;
use super::error::Error;
use super::report;
use super::store::FIELD_MANAGER;
use crate::api::{ConnectorAuth, RolloutTarget};
use crate::reason::Reason;
use crate::reconcile::decide::still_valid;
use crate::reconcile::{Adapter, PassError, Store, namespace_of, output_secret_name};

/// The pod template annotation a restart sets (`kubectl rollout restart` sets
/// `kubectl.kubernetes.io/restartedAt` the same way).
pub const RESTARTED_AT: &str = "connectorauth.dev/restartedAt";

/// One listed target, resolved for the API: its key, and its selector when it has one.
struct Target<'a> {
    spec: &'a RolloutTarget,
    key: String,
    selector: Option<Selector>,
}

/// Restarts what the published token calls for. Returns whether restarts are left pending, to
/// be retried.
pub async fn run(ctx: &Context, ca: &ConnectorAuth, now: Timestamp) -> Result<bool, Error> {
    let listed = &ca.spec.output.rollout_restart;
    if listed.is_empty() {
        return Ok(false);
    }
    let unsaved = ctx.core.ledger.hold(ca).await;
    // A record not yet persisted is saved first by the next pass; the mark waits for it.
    if !unsaved.is_empty() {
        return Ok(true);
    }
    let Some(mut record) = ctx.recall(ca) else {
        return Ok(false);
    };
    let Some(token) = record.token.as_ref() else {
        return Ok(false);
    };
    if token.access_token.is_empty() || !still_valid(token.expires_at, now) {
        // Nothing is published: nothing to restart for.
        return Ok(false);
    }
    let trigger = decide::rollout_trigger(token, &ca.spec.output);
    let mut targets = Vec::new();
    for spec in listed {
        let selector = match spec.selector.clone().map(Selector::try_from).transpose() {
            Ok(s) => s,
            Err(e) => {
                let note = format!(
                    "rolloutRestart: the selector of a {} target is invalid: {e}",
                    spec.kind.as_str()
                );
                report::publish(ctx, ca, &warning(note)).await;
                continue;
            }
        };
        let key = decide::target_key(
            spec.kind.as_str(),
            spec.name.as_deref(),
            selector.as_ref().map(ToString::to_string).as_deref(),
        );
        targets.push(Target { spec, key, selector });
    }
    let keys: Vec<(String, bool)> = targets.iter().map(|t| (t.key.clone(), t.spec.on_refresh)).collect();
    let previous = record.rollout.clone();
    let Some(mut mark) = decide::rollout(previous.as_ref(), &trigger, &keys, now) else {
        return Ok(false);
    };
    if !ctx.leads(ca) {
        return Err(Error::Pass(PassError::NotLeader));
    }
    let why = match &previous {
        Some(p) if p.change != mark.change => "the credentials or the spec changed",
        _ => "the token was refreshed",
    };
    let store = ctx
        .store(ca, &output_secret_name(ca))
        .ok_or_else(|| Error::Pass(PassError::NotLeader))?;
    if previous.as_ref() != Some(&mark) {
        record.rollout = Some(mark.clone());
        store.save(&record).await.map_err(|e| Error::Pass(e.into()))?;
    }
    let ns = namespace_of(ca);
    let mut left = Vec::new();
    for target in targets.iter().filter(|t| mark.pending.contains(&t.key)) {
        if !restart(ctx, ca, &ns, target, &mark.at, why).await {
            left.push(target.key.clone());
        }
    }
    drop(unsaved);
    if left != mark.pending {
        mark.pending = left;
        record.rollout = Some(mark.clone());
        store.save(&record).await.map_err(|e| Error::Pass(e.into()))?;
    }
    Ok(!mark.pending.is_empty())
}

fn warning(note: String) -> EventPlan {
    EventPlan {
        warning: true,
        reason: Reason::RolloutRestartFailed,
        note,
        action: EventAction::Restart,
    }
}

/// Restarts the workloads of one target (all that do not carry `at` yet). False when it must be
/// tried again (not allowed, or the API failed); a missing workload is reported, not retried.
async fn restart(ctx: &Context, ca: &ConnectorAuth, ns: &str, target: &Target<'_>, at: &str, why: &str) -> bool {
    let kind = target.spec.kind.as_str();
    let resource = ApiResource::from_gvk(&GroupVersionKind::gvk("apps", "v1", kind));
    let api: Api<DynamicObject> = Api::namespaced_with(ctx.client.clone(), ns, &resource);
    let found = match (&target.spec.name, &target.selector) {
        (Some(name), _) => api.get_opt(name).await.map(|w| w.into_iter().collect::<Vec<_>>()),
        (None, selector) => {
            let params = match selector {
                Some(s) => ListParams::default().labels_from(s),
                None => ListParams::default(),
            };
            api.list(&params).await.map(|l| l.items)
        }
    };
    let workloads = match found {
        Ok(w) => w,
        Err(e) => {
            let what = match &target.spec.name {
                Some(n) => format!("{kind} {ns}/{n}"),
                None => format!(
                    "{kind}s matching {} in {ns}",
                    target.key.split_once('?').map_or("", |s| s.1)
                ),
            };
            report::publish(ctx, ca, &warning(failure(&what, &resource.plural, ns, &e))).await;
            return false;
        }
    };
    if workloads.is_empty()
        && let Some(name) = &target.spec.name
    {
        let note = format!("rolloutRestart: {kind} {ns}/{name} not found; nothing restarted");
        report::publish(ctx, ca, &warning(note)).await;
        return true;
    }
    let mut done = true;
    for w in workloads {
        let name = w.name_any();
        let current = w
            .data
            .pointer("/spec/template/metadata/annotations")
            .and_then(|a| a.get(RESTARTED_AT))
            .and_then(|v| v.as_str());
        if current == Some(at) {
            continue;
        }
        let patch = json!({ "spec": { "template": { "metadata": { "annotations": { RESTARTED_AT: at } } } } });
        let params = PatchParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..PatchParams::default()
        };
        match api.patch(&name, &params, &Patch::Merge(&patch)).await {
            Ok(_) => {
                ctx.metrics.write("workload", true);
                let plan = EventPlan {
                    warning: false,
                    reason: Reason::RolloutRestarted,
                    note: format!("restarted {kind} {ns}/{name}: {why}"),
                    action: EventAction::Restart,
                };
                report::publish(ctx, ca, &plan).await;
            }
            Err(kube::Error::Api(s)) if s.code == 404 => {
                let note = format!("rolloutRestart: {kind} {ns}/{name} not found; nothing restarted");
                report::publish(ctx, ca, &warning(note)).await;
            }
            Err(e) => {
                let what = format!("{kind} {ns}/{name}");
                report::publish(ctx, ca, &warning(failure(&what, &resource.plural, ns, &e))).await;
                done = false;
            }
        }
    }
    done
}

/// The Warning of a failed read or patch, naming the workload and, when it was refused, the
/// permission that is missing.
fn failure(what: &str, plural: &str, ns: &str, e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) if s.code == 403 => format!(
            "rolloutRestart: not allowed to restart {what}: the operator needs get, list and patch on {plural}.apps \
             in namespace {ns} (Helm chart value rbac.rolloutRestart.enabled); will retry"
        ),
        _ => format!("rolloutRestart: cannot restart {what}: {e}; will retry"),
    }
}
