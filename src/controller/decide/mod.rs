//! The controller's own decisions, one pure file per concern: which Event an outcome deserves,
//! whether an output Secret needs writing, which workloads to restart, what to do about the
//! revocation finalizer. Each is a function of model types, `api` and `reason` only, with its
//! table of cases beside it; the controller carries them out.

pub mod events;
pub mod finalizer;
pub mod output;
pub mod rollout;
