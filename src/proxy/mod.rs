//! `connector-auth-operator proxy`: for workloads that cannot read a file. A small reverse
//! proxy, run as a sidecar (or as a Deployment in front of many pods), that forwards each
//! request to its route's one upstream and adds the credential the operator published.
//!
//! - The credential is the mounted output Secret's folder (`headers.json`, `expires_at`,
//!   `access_token`, `token_type`). Every request looks at the file (one `stat`): the kubelet's
//!   atomic swap of the `..data` symlink is seen by the next request, with no restart; a token
//!   that has expired is never sent (503 until the new one is there).
//! - Only the route's upstream is ever contacted: the request's own host, an absolute-form
//!   URI naming another host, `CONNECT` — none of them choose where a request goes.
//! - An incoming `Authorization` header is dropped (the workload's own cannot shadow the
//!   credential) unless the route says `passAuthorization`.
//! - On a 401 the route can ask the operator to renew (`connectorauth.dev/renew`, at most once
//!   a minute) and sends the request once more when the new credential arrives (bodies up to
//!   1 MiB are kept for that; larger ones stream and are not retried).
//! - DPoP (RFC 9449): with a route's `dpop` key, each request carries a fresh proof
//!   (`htm`, `htu`, `iat`, `jti`, `ath`, and the server's `DPoP-Nonce` once it sent one).
//! - mTLS-bound tokens (RFC 8705): the route's client certificate is presented upstream.
//!
//! Nothing here logs a header value or a body.

pub mod config;
pub mod credential;
mod metrics;
mod server;

pub use config::{ProxyConfig, RouteConfig};
pub use server::{Proxy, metrics_router, router, serve};
