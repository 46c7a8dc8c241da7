//! The OAuth2 consent callback (`/oauth2/callback`), one for both modes. A provider redirects a
//! person's browser here with `code` and `state`; the state must be ours (signed), current
//! (unexpired, the pending nonce) and for a resource that still exists with the same uid.
//! Only then is the code exchanged and anything written — and only by the process that holds
//! the lead: a standby hands the request, unchanged, to the leader's callback and shows the
//! person the leader's answer, writing nothing itself.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use jiff::Timestamp;

use super::driver;
use super::pages::{consent_result_page, page};
use super::record::{ConsentError, Outcome, PassError, StoreError};
use super::{Adapter, Core, gather, namespace_of, output_secret_name, uid_of};
use crate::api::ConnectorAuth;
use crate::consent;
use crate::engine;
use kube::ResourceExt;

pub const CALLBACK_PATH: &str = "/oauth2/callback";

/// Marks a callback a standby handed on, so it is never handed on twice.
const HANDED_ON: &str = "x-connectorauth-handed-on";

/// How long a standby waits for the leader's answer.
const HAND_ON_TIMEOUT: Duration = Duration::from_secs(30);

/// What became of a consent callback, for the mode to report (Events and status, or a line).
pub enum Consent<'a> {
    /// The provider sent the person back with an error code instead of consent.
    Denied { code: &'a str },
    /// The code was exchanged (or that failed).
    Completed(&'a Result<Result<Outcome, ConsentError>, PassError>),
}

/// What the callback needs from a mode besides its reads and stores.
pub trait ConsentHost: Adapter + Send + Sync + 'static {
    fn core(&self) -> &Core;
    /// The resource as it is now; `None` when it no longer exists.
    fn resource(
        &self,
        namespace: &str,
        name: &str,
    ) -> impl Future<Output = Result<Option<ConnectorAuth>, StoreError>> + Send;
    /// Told what became of a consent.
    fn consented(&self, ca: &ConnectorAuth, consent: Consent<'_>) -> impl Future<Output = ()> + Send;
    /// The base URL of the callback listener of the replica that holds the shard of
    /// `namespace/name` (of any shard when unknown), for a standby to hand callbacks to.
    fn leader_callback(&self, resource: Option<(String, String)>) -> impl Future<Output = Option<String>> + Send;
}

pub fn router<H: ConsentHost>(host: Arc<H>) -> Router {
    Router::new().route(CALLBACK_PATH, get(callback::<H>)).with_state(host)
}

/// Longest callback query string read. Providers send a code, a state and a few values; a
/// longer query is not a consent callback.
const MAX_QUERY_BYTES: usize = 16 * 1024;

async fn callback<H: ConsentHost>(State(host): State<Arc<H>>, RawQuery(raw): RawQuery, headers: HeaderMap) -> Response {
    let raw = raw.unwrap_or_default();
    if raw.len() > MAX_QUERY_BYTES {
        return page(
            StatusCode::URI_TOO_LONG,
            "Consent link not accepted",
            &format!("the callback's query string is longer than {MAX_QUERY_BYTES} bytes; nothing was saved"),
        );
    }
    let params: Vec<(String, String)> = url::form_urlencoded::parse(raw.as_bytes()).into_owned().collect();
    let first = |name: &str| params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    // Which resource the link is for decides which replica completes it: the holder of that
    // resource's shard. Read unverified, for routing only; the holder verifies the signature.
    let addressed = first("state").and_then(consent::addressed_to);
    let holds = match &addressed {
        Some((ns, name)) => host.core().lead.holds(ns, name),
        None => host.core().lead.held(),
    };
    if !holds {
        if headers.contains_key(HANDED_ON) {
            return no_leader();
        }
        return hand_on(host.as_ref(), addressed, &raw).await;
    }
    complete(host.as_ref(), &params).await
}

fn no_leader() -> Response {
    page(
        StatusCode::SERVICE_UNAVAILABLE,
        "The operator is changing leaders",
        "No replica is leading right now, so nothing was saved. Reload this page in a few seconds.",
    )
}

/// A standby's answer: the leader's own, for the same request. The standby writes nothing.
async fn hand_on<H: ConsentHost>(host: &H, addressed: Option<(String, String)>, query: &str) -> Response {
    let Some(base) = host.leader_callback(addressed).await else {
        return no_leader();
    };
    let url = format!("{}{CALLBACK_PATH}?{query}", base.trim_end_matches('/'));
    let client = match reqwest::Client::builder()
        .timeout(HAND_ON_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .build()
    {
        Ok(c) => c,
        Err(_) => return no_leader(),
    };
    match client.get(&url).header(HANDED_ON, "1").send().await {
        Ok(resp) => {
            let status = StatusCode::from_u16(resp.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
            match resp.text().await {
                Ok(body) => (status, axum::response::Html(body)).into_response(),
                Err(_) => no_leader(),
            }
        }
        Err(e) => {
            // Never log the URL: it carries the authorization code.
            tracing::warn!(error = %e.without_url(), "could not hand a consent callback to the leader");
            no_leader()
        }
    }
}

async fn complete<H: ConsentHost>(host: &H, params: &[(String, String)]) -> Response {
    let first = |name: &str| params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    let core = host.core();
    let Some(key) = core.consent_key.get() else {
        return page(
            StatusCode::NOT_FOUND,
            "Consent is not enabled",
            "This operator has no callback URL configured.",
        );
    };
    let Some(state_param) = first("state") else {
        return page(
            StatusCode::BAD_REQUEST,
            "Missing state",
            "The request has no state parameter; start again from the resource's status.authorizationUrl.",
        );
    };
    let state = match consent::verify(key, state_param, Timestamp::now().as_second()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(reason = %e.reason(), "consent callback refused");
            return page(StatusCode::BAD_REQUEST, "Consent link not accepted", &e.to_string());
        }
    };
    let what = format!("ConnectorAuth {}/{}", state.namespace, state.name);
    let ca = match host.resource(&state.namespace, &state.name).await {
        Ok(Some(ca)) if uid_of(&ca) == state.uid && namespace_of(&ca) == state.namespace => ca,
        Ok(_) => {
            return page(
                StatusCode::GONE,
                "Resource no longer exists",
                &format!("{what} was deleted or replaced; nothing was saved."),
            );
        }
        Err(e) => return page(StatusCode::SERVICE_UNAVAILABLE, "Resources unavailable", &e.to_string()),
    };
    debug_assert_eq!(ca.name_any(), state.name);
    if let Some(err) = first("error") {
        // Provider error codes are short tokens (RFC 6749 §4.1.2.1); keep only safe characters.
        let code: String = err
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
            .take(64)
            .collect();
        host.consented(&ca, Consent::Denied { code: &code }).await;
        let note = format!("the provider returned error `{code}` instead of consent; nothing was saved");
        return page(StatusCode::FORBIDDEN, "Consent was not granted", &note);
    }
    let mut g = match gather(&core.engine, host, &ca, core.redirect_url.clone(), BTreeMap::new()).await {
        Ok(Ok(g)) => g,
        Ok(Err(refusal)) => {
            let detail = format!("{} [{}]", refusal.message, refusal.reason);
            return page(StatusCode::CONFLICT, "The resource cannot be authorized", &detail);
        }
        Err(e) => return page(StatusCode::SERVICE_UNAVAILABLE, "Resources unavailable", &e.to_string()),
    };
    let hmac_key = match core.engine.callback_hmac_key(&g.flow, &g.inputs, Timestamp::now()) {
        Ok(k) => k,
        Err(e) => {
            let detail = format!("{e} [{}]", e.reason());
            return page(StatusCode::CONFLICT, "The resource cannot be authorized", &detail);
        }
    };
    // Only `code` and the declared callback values go on, checked; the rest is dropped here.
    let query = params.iter().map(|(k, v)| (k.as_str(), v.as_str()));
    match engine::callback::accept(&g.flow, query, hmac_key.as_ref().map(|k| k.expose().as_bytes())) {
        Ok(values) => g.inputs.callback = values,
        Err(refused) => {
            tracing::warn!(reason = %refused, "consent callback refused");
            return page(
                StatusCode::BAD_REQUEST,
                "Consent link not accepted",
                &format!("{refused}; nothing was saved"),
            );
        }
    }
    if g.flow.pkce {
        g.inputs.code_verifier = Some(consent::pkce_verifier(key, &state.nonce).into());
    }
    let Some(store) = host.store(&ca, &output_secret_name(&ca)) else {
        return page(
            StatusCode::CONFLICT,
            "Resource not ready",
            "the resource has no uid yet",
        );
    };
    let mut unsaved = core.ledger.hold(&ca).await;
    let result = driver::complete_consent(
        &core.engine,
        &g,
        &store,
        &mut unsaved,
        &state.nonce,
        &core.lead.for_resource(&state.namespace, &state.name),
        Timestamp::now(),
    )
    .await;
    core.ledger.release(&ca, unsaved);
    host.consented(&ca, Consent::Completed(&result)).await;
    if matches!(result, Err(PassError::NotLeader)) {
        return no_leader();
    }
    consent_result_page(&result, &what)
}
