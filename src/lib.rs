//! connector-auth-operator: keeps third-party API credentials fresh.
//!
//! - [`engine`]: the scheme engine: the pure core (templates, request building, extraction,
//!   expiry and renewal maths, scheme definitions) plus the one piece of I/O it owns, sending
//!   a token request (`engine::http`).
//! - [`reconcile`]: the one reconcile pass (gather → decide → act) both modes share, with its
//!   pure decisions, and the one consent callback.
//! - [`controller`]: the Kubernetes adapter; [`controller::leader`] says who writes and when.
//! - [`local`]: the file-backed adapter (local mode).
//! - [`api`]: the `ConnectorAuth` resource; [`reason`]: every reason the operator reports.
//! - [`ops`]: `status`, `renew` and `check` against a cluster (also the kubectl plugin).
//! - [`server`], [`cli`], [`demo`]: HTTP endpoints, the command line, the demo.
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
pub mod reason;
pub mod reconcile;
pub mod server;
