//! The schemes: each compiles its spec block into the generic [`Flow`](super::flow::Flow) by
//! filling in its defaults.

pub mod api_key;
pub mod github_app;
pub mod jwt;
pub mod oauth2;
pub mod oauth2_jwt;
pub mod refreshable_token;
pub mod super_office;
pub mod tripletex;
