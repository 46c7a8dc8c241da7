//! Errors that make a reconcile pass fail (provider errors are outcomes, not errors).

use crate::reason::Reason;
use crate::reconcile::PassError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[source] kube::Error),
    #[error("{0}")]
    Pass(#[source] PassError),
}

impl Error {
    /// The `reason` label of `connectorauth_reconcile_errors_total`.
    pub fn metric_label(&self) -> Reason {
        match self {
            Error::Kube(_) => Reason::KubeApi,
            Error::Pass(PassError::NotLeader) => Reason::LeadershipLost,
            Error::Pass(PassError::Store(_)) => Reason::StateWriteFailed,
            Error::Pass(PassError::Panicked) => Reason::InternalError,
        }
    }
}
