//! The OAuth2 consent callback (`/oauth2/callback`) on its own listener. A provider redirects a
//! person's browser here with `code` and `state`; the state must be ours (signed), current
//! (unexpired, the pending nonce) and for a resource that still exists with the same uid.
//! Only then is the code exchanged and anything written.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use super::events::EventType;
use axum::Router;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, PostParams};
use kube::{Resource, ResourceExt};

use super::status::{self, Verdict};
use super::store::KubeStore;
use super::{Context, output_secret_name, patch_status, publish_event, secret_data, spec_warnings};
use crate::api::ConnectorAuth;
use crate::consent::{self, ConsentState};
use crate::engine::driver::{self, ConsentError};
use crate::engine::{self, Inputs, SecretString};
use crate::server::{consent_result_page, page};

pub const CALLBACK_PATH: &str = "/oauth2/callback";
pub const KEY_SECRET: &str = "connector-auth-operator-consent-key";

/// The signing key for `state`, kept in an operator-owned Secret (created on first start).
pub async fn ensure_key(client: &kube::Client, namespace: &str) -> anyhow::Result<Vec<u8>> {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let read = |s: &Secret| {
        s.data
            .as_ref()
            .and_then(|d| d.get("key"))
            .map(|k| k.0.clone())
            .filter(|k| k.len() >= 32)
    };
    if let Some(key) = api.get_opt(KEY_SECRET).await?.as_ref().and_then(read) {
        return Ok(key);
    }
    let key: Vec<u8> = (0..32).map(|_| rand::random::<u8>()).collect();
    let secret: Secret = serde_json::from_value(serde_json::json!({
        "metadata": {"name": KEY_SECRET, "labels": {super::store::MANAGED_BY.0: super::store::MANAGED_BY.1}},
        "type": "Opaque",
        "data": {"key": k8s_openapi::ByteString(key.clone())},
    }))?;
    match api.create(&PostParams::default(), &secret).await {
        Ok(_) => Ok(key),
        // Another replica created it first: use theirs.
        Err(kube::Error::Api(s)) if s.code == 409 => api
            .get(KEY_SECRET)
            .await?
            .data
            .and_then(|d| d.get("key").map(|k| k.0.clone()))
            .ok_or_else(|| anyhow::anyhow!("Secret {namespace}/{KEY_SECRET} has no `key`")),
        Err(e) => Err(e.into()),
    }
}

/// The signed `state` for a resource's pending consent.
pub fn state_for(key: &[u8], ca: &ConnectorAuth, pending: &driver::PendingConsent) -> String {
    consent::sign(
        key,
        &ConsentState {
            namespace: ca.namespace().unwrap_or_default(),
            name: ca.name_any(),
            uid: ca.uid().unwrap_or_default(),
            nonce: pending.nonce.clone(),
            expires: pending.expires.as_second(),
        },
    )
}

pub fn router(ctx: Arc<Context>) -> Router {
    Router::new().route(CALLBACK_PATH, get(callback)).with_state(ctx)
}

async fn callback(State(ctx): State<Arc<Context>>, Query(params): Query<HashMap<String, String>>) -> Response {
    let Some(key) = ctx.consent_key.as_deref() else {
        return page(
            StatusCode::NOT_FOUND,
            "Consent is not enabled",
            "This operator has no callback URL configured.",
        );
    };
    let Some(state_param) = params.get("state") else {
        return page(
            StatusCode::BAD_REQUEST,
            "Missing state",
            "The request has no state parameter; start again from the resource's status.authorizationUrl.",
        );
    };
    let state = match consent::verify(key, state_param, Timestamp::now().as_second()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(reason = e.reason(), "consent callback refused");
            return page(StatusCode::BAD_REQUEST, "Consent link not accepted", &e.to_string());
        }
    };
    let api: Api<ConnectorAuth> = Api::namespaced(ctx.client.clone(), &state.namespace);
    let ca = match api.get_opt(&state.name).await {
        Ok(Some(ca)) if ca.uid().as_deref() == Some(state.uid.as_str()) => ca,
        Ok(_) => {
            return page(
                StatusCode::GONE,
                "Resource no longer exists",
                &format!(
                    "ConnectorAuth {}/{} was deleted or replaced; nothing was saved.",
                    state.namespace, state.name
                ),
            );
        }
        Err(e) => {
            return page(
                StatusCode::SERVICE_UNAVAILABLE,
                "Kubernetes API unavailable",
                &e.to_string(),
            );
        }
    };
    if let Some(err) = params.get("error") {
        // Provider error codes are short tokens (RFC 6749 §4.1.2.1); keep only safe characters.
        let code: String = err
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
            .take(64)
            .collect();
        let note = format!("the provider returned error `{code}` instead of consent; nothing was saved");
        publish_event(&ca, &ctx, EventType::Warning, "ConsentDenied", &note, "Authorize").await;
        return page(StatusCode::FORBIDDEN, "Consent was not granted", &note);
    }
    let lock = ctx.lock(&state.uid);
    let _guard = lock.lock().await;
    complete(&ctx, &ca, &state, params).await
}

async fn complete(
    ctx: &Context,
    ca: &ConnectorAuth,
    state: &ConsentState,
    params: HashMap<String, String>,
) -> Response {
    let ns = state.namespace.as_str();
    let flow = match ctx.engine.compile(&ca.spec) {
        Ok(f) => f,
        Err(e) => return page(StatusCode::CONFLICT, "The resource's spec is invalid", &e.to_string()),
    };
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), ns);
    let credentials = match secrets.get_opt(&ca.spec.credentials_ref.name).await {
        Ok(Some(s)) => secret_data(s),
        Ok(None) => {
            let detail = format!("credentials Secret {ns}/{} not found", ca.spec.credentials_ref.name);
            return page(StatusCode::CONFLICT, "Credentials missing", &detail);
        }
        Err(e) => {
            return page(
                StatusCode::SERVICE_UNAVAILABLE,
                "Kubernetes API unavailable",
                &e.to_string(),
            );
        }
    };
    let callback: BTreeMap<String, SecretString> = params
        .into_iter()
        .filter(|(k, _)| k != "state")
        .map(|(k, v)| (k, SecretString::new(v)))
        .collect();
    let http = match super::http_options(&ctx.client, ns, &ca.spec).await {
        Ok(h) => h,
        Err(e) => {
            return page(
                StatusCode::SERVICE_UNAVAILABLE,
                "Kubernetes API unavailable",
                &e.to_string(),
            );
        }
    };
    let inputs = Inputs {
        credentials,
        redirect_url: ctx.config.redirect_url.clone(),
        callback,
        http,
    };
    let fingerprint = engine::fingerprint(&ca.spec, &inputs.credentials);
    let secret_name = output_secret_name(ca);
    let Some(store) = KubeStore::new(secrets, ca, &secret_name, ctx.memory.clone()) else {
        return page(
            StatusCode::CONFLICT,
            "Resource not ready",
            "the resource has no uid yet",
        );
    };
    let mut unsaved = ctx.unsaved.lock().expect("lock").remove(&state.uid).unwrap_or_default();
    let result = driver::complete_consent(
        &ctx.engine,
        &flow,
        &inputs,
        &fingerprint,
        &store,
        &mut unsaved,
        &state.nonce,
        Timestamp::now(),
    )
    .await;
    ctx.unsaved.lock().expect("lock").insert(state.uid.clone(), unsaved);
    match &result {
        Ok(Err(ConsentError::NotPending)) => {
            let note = ConsentError::NotPending.to_string();
            publish_event(ca, ctx, EventType::Warning, "ConsentReplayed", &note, "Authorize").await;
        }
        Ok(Err(ConsentError::Engine(e))) => {
            publish_event(ca, ctx, EventType::Warning, e.reason(), &e.to_string(), "Authorize").await;
        }
        Ok(Ok(outcome)) => {
            let previous = ctx.previous_status(ca);
            let now = Timestamp::now();
            let st = status::desired(
                previous.as_ref(),
                &Verdict::Ran(outcome),
                ca.meta().generation,
                flow.scheme,
                &secret_name,
                None,
                now,
            );
            let st = spec_warnings(ca, ctx, previous.as_ref(), st, now).await;
            if let Err(e) = patch_status(ca, ctx, st).await {
                tracing::warn!(error = %e, "status after consent");
            }
            let note = format!("consent granted; token published in Secret {secret_name}");
            publish_event(ca, ctx, EventType::Normal, "Authorized", &note, "Authorize").await;
        }
        Err(_) => {}
    }
    consent_result_page(&result, &format!("ConnectorAuth {ns}/{}", state.name))
}
