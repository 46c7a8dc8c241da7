//! connector-auth-operator: keeps third-party API credentials fresh.
//!
//! - [`engine`]: the pure core (templates, token requests, extraction, expiry maths).
//! - [`api`]: the `ConnectorAuth` resource.
//! - [`local`]: the file-backed runner (local mode).
//! - [`cli`]: the command line.
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]

pub mod api;
pub mod cli;
pub mod consent;
pub mod controller;
pub mod demo;
pub mod engine;
pub mod local;
pub mod server;
