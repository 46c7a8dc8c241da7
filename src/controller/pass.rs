//! The controller's pass over one resource: the shared pass ([`crate::reconcile`]) over the
//! Kubernetes adapter, then status, Events and metrics, then when to look again (which the
//! runner hands to the work queue).

use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use jiff::Timestamp;
use kube::{Resource, ResourceExt};
use tracing::{instrument, warn};

use super::cache::Entry;
use super::context::Context;
use super::decide::finalizer::FinalizerStep;
use super::error::Error;
use super::metrics::ReasonLabels;
use super::report;
use super::{revocation, rollout};
use crate::api::ConnectorAuth;
use crate::reason::Reason;
use crate::reconcile::Verdict;

/// How long a resource whose pass panicked waits before the next: a bug does not heal in
/// seconds, and retrying it fast would only repeat it.
const PANIC_RETRY: Duration = Duration::from_secs(300);

/// One pass over `entry`; says when to look again without a change (`None`: only on change).
/// A failed pass is retried after 5 to 10 seconds.
pub async fn reconcile(entry: &Entry, ctx: &Arc<Context>) -> Option<Duration> {
    // A panic ends this resource's pass only, never the runner and the passes beside it.
    let result = match std::panic::AssertUnwindSafe(pass(entry, ctx)).catch_unwind().await {
        Ok(r) => r,
        Err(_) => Err(Error::Pass(crate::reconcile::PassError::Panicked)),
    };
    match result {
        Ok(after) => after,
        Err(error @ Error::Pass(crate::reconcile::PassError::Panicked)) => {
            tracing::error!(namespace = entry.namespace(), name = entry.name(), error = %error, "reconcile panicked");
            ctx.metrics
                .reconcile_errors
                .get_or_create(&ReasonLabels {
                    reason: error.metric_label().as_str().into(),
                })
                .inc();
            Some(PANIC_RETRY)
        }
        Err(error) => {
            warn!(namespace = entry.namespace(), name = entry.name(), error = %error, "reconcile failed");
            ctx.metrics
                .reconcile_errors
                .get_or_create(&ReasonLabels {
                    reason: error.metric_label().as_str().into(),
                })
                .inc();
            Some(Duration::from_secs(5) + Duration::from_millis(rand::random::<u64>() % 5000))
        }
    }
}

/// One pass; says when to look again without a change (`None`: only on change): the
/// [`STEPS`] in order, each of which may end the pass.
#[instrument(skip(entry, ctx), fields(namespace = entry.namespace(), name = entry.name()))]
async fn pass(entry: &Entry, ctx: &Arc<Context>) -> Result<Option<Duration>, Error> {
    ctx.metrics.reconciles.inc();
    let ca: ConnectorAuth = entry.decode().map_err(|e| Error::Kube(kube::Error::SerdeError(e)))?;
    if ca.uid().is_none() {
        return Ok(None);
    }
    let mut state = State {
        ctx,
        ca: &ca,
        now: Timestamp::now(),
        pass: None,
        restarts_pending: false,
    };
    for step in STEPS {
        if let Next::Done(after) = step.run(&mut state).await? {
            return Ok(after);
        }
    }
    Ok(None)
}

/// The steps of a controller pass, in order.
const STEPS: [Step; 4] = [Step::Finalizer, Step::Reconcile, Step::Rollout, Step::Requeue];

#[derive(Clone, Copy, Debug)]
enum Step {
    /// The revocation finalizer: added, removed, or acted upon when the resource is deleted
    /// (which ends the pass: owned Secrets are garbage-collected with it).
    Finalizer,
    /// The shared pass, then its status, Events and metrics.
    Reconcile,
    /// `output.rolloutRestart`, once a token is published.
    Rollout,
    /// When to look again.
    Requeue,
}

/// What a pass has so far.
struct State<'a> {
    ctx: &'a Arc<Context>,
    ca: &'a ConnectorAuth,
    now: Timestamp,
    pass: Option<crate::reconcile::Pass>,
    restarts_pending: bool,
}

/// Whether the pass goes on after a step.
enum Next {
    Continue,
    /// The pass ends here; look again after this (`None`: only on change).
    Done(Option<Duration>),
}

impl Step {
    async fn run(self, s: &mut State<'_>) -> Result<Next, Error> {
        let (ctx, ca, now) = (s.ctx, s.ca, s.now);
        match self {
            Step::Finalizer => {
                match revocation::step(ca) {
                    FinalizerStep::Revoke => revocation::on_delete(ctx, ca, now).await?,
                    FinalizerStep::Add => revocation::set(ctx, ca, true).await?,
                    FinalizerStep::Remove => revocation::set(ctx, ca, false).await?,
                    FinalizerStep::Leave => {}
                }
                if ca.meta().deletion_timestamp.is_some() {
                    return Ok(Next::Done(None));
                }
            }
            Step::Reconcile => {
                let started = std::time::Instant::now();
                let pass = ctx.core.reconcile(ctx.as_ref(), ca, now).await.map_err(Error::Pass)?;
                report::pass(ctx, ca, &pass, started.elapsed(), now).await?;
                s.pass = Some(pass);
            }
            Step::Rollout => {
                if s.pass
                    .as_ref()
                    .and_then(|p| p.outcome())
                    .is_some_and(|o| o.token.is_some())
                {
                    s.restarts_pending = rollout::run(ctx, ca, now).await?;
                }
            }
            Step::Requeue => {
                let mut after = s.pass.as_ref().and_then(requeue_after);
                if s.restarts_pending {
                    // Restarts not allowed yet (or failed) are tried again, not only at the
                    // next renewal.
                    after = Some(after.map_or(RESTART_RETRY, |d| d.min(RESTART_RETRY)));
                }
                return Ok(Next::Done(after));
            }
        }
        Ok(Next::Continue)
    }
}

/// How soon restarts left pending are tried again, at most.
const RESTART_RETRY: Duration = Duration::from_secs(60);

/// When a pass wants its resource looked at again (`None`: only on change).
fn requeue_after(pass: &crate::reconcile::Pass) -> Option<Duration> {
    match &pass.verdict {
        // The Secret watch brings a created credentials Secret (or a freed Secret name)
        // promptly; the requeue is a safety net, and what retries a write the API server refused.
        Verdict::Refused(r)
            if matches!(
                r.reason,
                Reason::CredentialsNotFound
                    | Reason::ProviderNotFound
                    | Reason::SecretOwnedElsewhere
                    | Reason::SecretRejected
            ) =>
        {
            Some(Duration::from_secs(300))
        }
        Verdict::Refused(_) => None,
        Verdict::Ran(o) => o.next.map(|next| until(next, Timestamp::now())),
    }
}

/// Time from `now` until `t`, at least a second.
fn until(t: Timestamp, now: Timestamp) -> Duration {
    let secs = t.duration_since(now).as_secs_f64();
    let longest = crate::engine::renewal::MAX_DURATION.as_secs_f64();
    Duration::from_secs_f64(secs.clamp(1.0, longest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_requeue_waits_until_the_time_and_at_least_a_second() {
        let now: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        assert_eq!(
            until("2026-01-01T00:01:00Z".parse().unwrap(), now),
            Duration::from_secs(60)
        );
        assert_eq!(
            until("2025-01-01T00:00:00Z".parse().unwrap(), now),
            Duration::from_secs(1)
        );
    }
}
