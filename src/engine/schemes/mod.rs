//! The schemes: each compiles its spec block into the generic [`Flow`](super::flow::Flow) by
//! filling in its defaults.

pub mod api_key;
pub mod jwt;
pub mod oauth2;
pub mod refreshable_token;
pub mod super_office;
pub mod tripletex;
