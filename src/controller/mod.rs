//! The Kubernetes adapter around the shared pass ([`crate::reconcile`]): it reads through the
//! API, keeps state and output in Secrets, watches what concerns a ConnectorAuth, and reports
//! passes as status, Events and metrics. [`leader`] says who writes and when.

mod cache;
mod compact;
mod config;
mod consent_host;
pub mod consent_key;
pub mod context;
mod crd;
pub mod decide;
mod error;
pub mod events;
mod index;
pub mod leader;
pub mod metrics;
mod pass;
mod queue;
mod report;
pub mod revocation;
pub mod rollout;
mod runner;
pub mod server;
pub mod source;
pub mod status;
pub mod store;
mod watches;

pub use config::{Config, ConsentConfig, LeaderElection};
pub use context::Context;
pub use crd::check_crd;
pub use error::Error;
pub use leader::run;
