//! The controller's reconcile: the shared pass ([`crate::reconcile`]) over the Kubernetes
//! adapter, then status, Events and metrics, then the requeue.

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use kube::runtime::controller::Action as Requeue;
use kube::{Resource, ResourceExt};
use tracing::{instrument, warn};

use super::cache::Cached;
use super::context::Context;
use super::error::Error;
use super::metrics::ReasonLabels;
use super::report;
use crate::api::ConnectorAuth;
use crate::reason::Reason;
use crate::reconcile::Verdict;

#[instrument(skip(cached, ctx), fields(namespace = cached.namespace().unwrap_or_default(), name = cached.name_any()))]
pub async fn reconcile(cached: Arc<Cached>, ctx: Arc<Context>) -> Result<Requeue, Error> {
    ctx.metrics.reconciles.inc();
    if cached.meta().deletion_timestamp.is_some() || cached.uid().is_none() {
        // Owned Secrets are garbage-collected with it.
        return Ok(Requeue::await_change());
    }
    let ca: ConnectorAuth = cached.decode().map_err(|e| Error::Kube(kube::Error::SerdeError(e)))?;
    let now = Timestamp::now();
    let started = std::time::Instant::now();
    let pass = ctx.core.reconcile(ctx.as_ref(), &ca, now).await.map_err(Error::Pass)?;
    report::pass(&ctx, &ca, &pass, started.elapsed(), now).await?;
    Ok(match &pass.verdict {
        // The Secret watch brings a created credentials Secret (or a freed Secret name)
        // promptly; the requeue is a safety net, and what retries a write the API server refused.
        Verdict::Refused(r)
            if matches!(
                r.reason,
                Reason::CredentialsNotFound | Reason::SecretOwnedElsewhere | Reason::SecretRejected
            ) =>
        {
            Requeue::requeue(Duration::from_secs(300))
        }
        Verdict::Refused(_) => Requeue::await_change(),
        Verdict::Ran(o) => match o.next {
            Some(next) => Requeue::requeue(until(next, Timestamp::now())),
            None => Requeue::await_change(),
        },
    })
}

/// Time from `now` until `t`, at least a second.
fn until(t: Timestamp, now: Timestamp) -> Duration {
    let secs = t.duration_since(now).as_secs_f64();
    Duration::from_secs_f64(secs.max(1.0))
}

pub fn error_policy(ca: Arc<Cached>, error: &Error, ctx: Arc<Context>) -> Requeue {
    warn!(name = ca.name_any(), error = %error, "reconcile failed");
    ctx.metrics
        .reconcile_errors
        .get_or_create(&ReasonLabels {
            reason: error.metric_label().as_str().into(),
        })
        .inc();
    Requeue::requeue(Duration::from_secs(5) + Duration::from_millis(rand::random::<u64>() % 5000))
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
