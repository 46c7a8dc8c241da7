//! connector-auth-operator: keeps third-party API credentials fresh.
//!
//! - `engine_core` (the workspace crate `crates/engine-core`): the pure core — spec types,
//!   compile, schemes, templates, extraction, renewal maths, token-URL policy, token state. It
//!   cannot import the catalog, the importers, kube or the controller: it has none of them as
//!   dependencies.
//! - [`engine`]: the engine's I/O — sends what the core renders (HTTP, TLS, obtain, exchange,
//!   chained steps, verify, revoke); re-exports the core's modules.
//! - [`catalog`]: provider resolution, once, before the engine ([`catalog::Resolved`]).
//! - [`reconcile`]: the one reconcile pass (gather → decide → act) both modes share, with its
//!   pure decisions, and the one consent callback.
//! - [`controller`]: the Kubernetes adapter; [`controller::leader`] says who writes and when.
//! - [`local`]: the file-backed adapter (local mode).
//! - [`api`]: the `ConnectorAuth` resource; [`reason`]: every reason the operator reports.
//! - [`ops`]: `status`, `renew` and `check` against a cluster (also the kubectl plugin).
//! - [`proxy`]: the auth-injecting proxy for workloads that cannot read a file (`proxy`).
//! - [`cli`], [`demo`]: the command line, the demo. (The controller's metrics and health endpoints
//!   are `controller::server`; the consent pages `reconcile::pages`.)
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]

pub mod api;
pub mod catalog;
pub mod cli;
pub mod consent;
pub mod controller;
pub mod demo;
pub mod engine;
pub mod import;
pub mod local;
pub mod ops;
pub mod proxy;
pub mod reconcile;
pub use engine_core::reason;
