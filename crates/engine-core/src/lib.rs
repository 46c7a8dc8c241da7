//! The pure core of the scheme engine: what users write (`spec`), what it compiles to
//! (`flow`, one generic flow per scheme, with the scheme defaults in `schemes`), templates,
//! extraction, the renewal maths, the token-URL policy and the token state with the choices made
//! from it. No Kubernetes, no catalog, no I/O: the operator crate resolves providers before it
//! calls [`compile`], and sends the requests the core renders.
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]

pub mod assertion;
pub mod callback;
pub mod chain;
pub mod compile;
pub mod dpop;
pub mod error;
pub mod extract;
#[cfg(test)]
mod fixtures;
pub mod flow;
pub mod policy;
pub mod reason;
pub mod renewal;
pub mod request;
pub mod schemes;
pub mod secret;
pub mod signing;
pub mod spec;
pub mod state;
pub mod template;
pub mod verify;

pub use compile::compile;
pub use error::{EngineError, Result};
pub use flow::Flow;
pub use secret::SecretString;
pub use spec::Spec;
pub use state::{RefreshChoice, TokenState, fingerprint, refresh_choice};
pub use template::{TemplateContext, Templates};
