//! What the controller tells people after a pass or a consent: status (written only when it
//! changed), Events (chosen by [`decide::event_for`]) and metrics.

use std::time::Duration;

use jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::{Resource, ResourceExt};
use serde_json::json;
use tracing::{debug, info, warn};

use super::context::{Context, regarding};
use super::decide::events::{self, EventAction, EventPlan};
use super::error::Error;
use super::events::{Event, EventType};
use super::metrics::{OutcomeLabels, ResourceLabels};
use super::status;
use super::store::FIELD_MANAGER;
use crate::api::{ConnectorAuth, ConnectorAuthStatus};
use crate::engine::Verification;
use crate::reason::Reason;
use crate::reconcile::callback::Consent;
use crate::reconcile::record::ConsentError;
use crate::reconcile::{Action, Outcome, Pass, Verdict, output_secret_name};

/// Reports a pass: metrics, Events, then status.
pub async fn pass(
    ctx: &Context,
    ca: &ConnectorAuth,
    pass: &Pass,
    elapsed: Duration,
    now: Timestamp,
) -> Result<(), Error> {
    for secret in &pass.replaced {
        let note =
            format!("Secret {secret} was left by an earlier ConnectorAuth of this name; replaced without reading it");
        publish(
            ctx,
            ca,
            &plan(false, Reason::StaleSecretReplaced, note, EventAction::Adopt),
        )
        .await;
    }
    match &pass.verdict {
        Verdict::Ran(o) => {
            observe(ctx, ca, o, elapsed);
            log(o);
            let was_failing = ca
                .status
                .as_ref()
                .is_some_and(|s| s.conditions.iter().any(|c| c.type_ == status::REFRESH_FAILING));
            if let Some(ev) = events::event_for(o, was_failing, &pass.secret_name) {
                publish(ctx, ca, &ev).await;
            }
            if let Some(v) = pass.verification.as_ref().filter(|v| !v.ok()) {
                warn!(reason = %v.reason(), message = %v.message(), "verification failed; the token stays published");
                publish(ctx, ca, &plan(true, v.reason(), v.message(), EventAction::Verify)).await;
            }
        }
        Verdict::Refused(r) => {
            warn!(reason = %r.reason, message = %r.message, "refused");
            let previous_reason = ca
                .status
                .as_ref()
                .and_then(|s| s.conditions.iter().find(|c| c.type_ == status::READY))
                .map(|c| c.reason.clone());
            if previous_reason.as_deref() != Some(r.reason.as_str()) {
                publish(ctx, ca, &plan(true, r.reason, r.message.clone(), EventAction::Validate)).await;
            }
        }
    }
    write_status(
        ctx,
        ca,
        &pass.verdict,
        pass.scheme,
        pass.provider.as_deref(),
        &pass.secret_name,
        pass.authorization_url.as_deref(),
        pass.verification.as_ref(),
        now,
    )
    .await
}

/// Reports a consent callback's result.
pub async fn consent(ctx: &Context, ca: &ConnectorAuth, consent: Consent<'_>) {
    let secret_name = output_secret_name(ca);
    let ev = match consent {
        Consent::Denied { code } => plan(
            true,
            Reason::ConsentDenied,
            format!("the provider returned error `{code}` instead of consent; nothing was saved"),
            EventAction::Authorize,
        ),
        Consent::Completed(Ok(Err(e @ ConsentError::NotPending))) => {
            plan(true, Reason::ConsentReplayed, e.to_string(), EventAction::Authorize)
        }
        Consent::Completed(Ok(Err(ConsentError::Engine(e)))) => {
            plan(true, e.reason(), e.to_string(), EventAction::Authorize)
        }
        Consent::Completed(Ok(Ok(outcome))) => {
            let verdict = Verdict::Ran(outcome.clone());
            let now = Timestamp::now();
            // The pass that asked for consent found the provider entry; it is unchanged since.
            let provider = ca.status.as_ref().and_then(|s| s.provider.clone());
            let scheme = ca.spec.scheme.name();
            if let Err(e) = write_status(
                ctx,
                ca,
                &verdict,
                scheme,
                provider.as_deref(),
                &secret_name,
                None,
                None,
                now,
            )
            .await
            {
                warn!(error = %e, "status after consent");
            }
            let note = format!("consent granted; token published in Secret {secret_name}");
            plan(false, Reason::Authorized, note, EventAction::Authorize)
        }
        Consent::Completed(Err(e)) => {
            warn!(error = %e, "consent not completed");
            return;
        }
    };
    publish(ctx, ca, &ev).await;
}

fn plan(warning: bool, reason: Reason, note: String, action: EventAction) -> EventPlan {
    EventPlan {
        warning,
        reason,
        note,
        action,
    }
}

/// Records an Event; a failure to do so is logged, never fatal.
pub async fn publish(ctx: &Context, ca: &ConnectorAuth, ev: &EventPlan) {
    let event = Event {
        type_: if ev.warning {
            EventType::Warning
        } else {
            EventType::Normal
        },
        reason: ev.reason.as_str(),
        note: &ev.note,
        action: ev.action.as_str(),
    };
    match ctx.events.publish(&event, &regarding(ca)).await {
        Ok(()) => ctx.metrics.write("event", true),
        Err(e) => warn!(error = %e, "could not publish Event"),
    }
}

fn log(o: &Outcome) {
    match &o.action {
        Action::Issued { reason, refreshed } => {
            info!(%reason, refreshed, expires_at = ?o.token.as_ref().and_then(|t| t.expires_at), "token obtained")
        }
        Action::Failed { error } => warn!(reason = %error.reason(), error = %error, "token request failed"),
        Action::Kept | Action::BackingOff => debug!("token kept"),
    }
}

fn observe(ctx: &Context, ca: &ConnectorAuth, o: &Outcome, elapsed: Duration) {
    let labels = ResourceLabels {
        namespace: ca.namespace().unwrap_or_default(),
        name: ca.name_any(),
    };
    if let Some(exp) = o.token.as_ref().and_then(|t| t.expires_at) {
        ctx.metrics
            .token_expiry
            .get_or_create(&labels)
            .set(exp.as_second() as f64);
    }
    let (result, reason) = match &o.action {
        Action::Issued {
            reason,
            refreshed: true,
        } => ("refreshed", *reason),
        Action::Issued {
            reason,
            refreshed: false,
        } => ("issued", *reason),
        Action::Failed { error } => ("failed", error.reason()),
        Action::Kept | Action::BackingOff => return,
    };
    ctx.metrics
        .refreshes
        .get_or_create(&OutcomeLabels {
            result: result.into(),
            reason: reason.as_str().into(),
        })
        .inc();
    ctx.metrics.refresh_duration.observe(elapsed.as_secs_f64());
}

/// Writes the status the verdict calls for, with the conditions that follow from the spec
/// itself (the `InsecureTLS` warning, with one Warning Event when it appears) and from a
/// verification (`Verified`).
#[allow(clippy::too_many_arguments)]
async fn write_status(
    ctx: &Context,
    ca: &ConnectorAuth,
    verdict: &Verdict,
    scheme: &str,
    provider: Option<&str>,
    secret_name: &str,
    authorization_url: Option<&str>,
    verification: Option<&Verification>,
    now: Timestamp,
) -> Result<(), Error> {
    let previous = ctx.previous_status(ca);
    let generation = ca.meta().generation;
    let mut next = status::desired(
        previous.as_ref(),
        verdict,
        generation,
        scheme,
        secret_name,
        authorization_url,
        now,
    );
    next.provider = provider.map(str::to_string);
    status::warn_insecure_tls(&mut next, previous.as_ref(), &ca.spec, generation, now);
    let verify = ca.spec.verify.is_some();
    status::verified(&mut next, previous.as_ref(), verify, verification, generation, now);
    ctx.observe_health(ca, &status::health(&next));
    if let Some(c) = status::raised(previous.as_ref(), &next, status::INSECURE_TLS) {
        warn!(reason = %c.reason, "TLS verification of token requests is disabled");
        let ev = plan(
            true,
            Reason::InsecureSkipVerify,
            c.message.clone(),
            EventAction::Validate,
        );
        publish(ctx, ca, &ev).await;
    }
    patch_status(ctx, ca, next).await
}

async fn patch_status(ctx: &Context, ca: &ConnectorAuth, status: ConnectorAuthStatus) -> Result<(), Error> {
    if ctx.status_is(ca, &status) {
        ctx.metrics.write("status", false);
        return Ok(());
    }
    let api: Api<ConnectorAuth> = Api::namespaced(ctx.client.clone(), &ca.namespace().unwrap_or_default());
    let patch = json!({ "apiVersion": ConnectorAuth::api_version(&()), "kind": "ConnectorAuth", "status": status });
    let version = match api
        .patch_status(
            &ca.name_any(),
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await
    {
        Ok(written) => written.metadata.resource_version,
        // Refused as invalid (e.g. by a CRD older than this operator): retrying cannot help and
        // the status cannot say so; an Event can.
        Err(kube::Error::Api(s)) if s.code == 422 => {
            warn!(message = %s.message, "the API server refused the status");
            let note = format!("the API server refused the status: {}", s.message);
            publish(
                ctx,
                ca,
                &plan(true, Reason::StatusRejected, note, EventAction::Validate),
            )
            .await;
            return Ok(());
        }
        Err(e) => return Err(Error::Kube(e)),
    };
    ctx.wrote_status(ca, status, version);
    ctx.metrics.write("status", true);
    Ok(())
}
