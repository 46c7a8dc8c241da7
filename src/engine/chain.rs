//! Chained logins (`refreshableToken.steps`): requests sent in order before the login request,
//! each offering the values it extracted to the later templates as
//! `{{ steps.<name>.<key> }}` (log in → session → token).

use jiff::Timestamp;

use std::collections::BTreeMap;

use super::{Engine, Inputs, TokenState};
pub use engine_core::chain::{lookup_variable, lookups_due, variable};
use engine_core::error::{EngineError, Result};
use engine_core::extract;
pub use engine_core::flow::ChainStep;
use engine_core::flow::Flow;
use engine_core::secret::SecretString;
use engine_core::template::TemplateContext;

impl Engine {
    /// Runs the flow's chained steps in order; returns `ctx` with their values added.
    pub(crate) async fn run_chain(
        &self,
        flow: &Flow,
        inputs: &Inputs,
        mut ctx: TemplateContext,
        now: Timestamp,
    ) -> Result<TemplateContext> {
        for c in &flow.chain {
            let label = c.label();
            let signed = self.with_assertions(flow, &c.step, &ctx, now)?;
            let req = self.build_request(&c.step, &signed)?;
            let options = inputs.client_options()?;
            let resp = self.http.send(&label, req, options).await?;
            tracing::debug!(step = %label, host = %resp.host, status = resp.status, "chained step response");
            let parsed = extract::Parsed::new(&label, &resp);
            for (key, loc) in &c.extract {
                let v = parsed
                    .require(key, std::slice::from_ref(loc))
                    .map_err(|err| resp.redirect_error(&label, options.allow_redirects).unwrap_or(err))?;
                ctx.extra.insert(variable(&c.name, key), SecretString::from(v));
            }
        }
        Ok(ctx)
    }
}

impl Engine {
    /// Runs the post-connect lookups (`oauth2.lookups`) with `token`, in order, each seeing the
    /// values of those before it; returns every value, keyed `<lookup>.<key>`. A failure names
    /// the lookup ([`EngineError::LookupFailed`]).
    pub async fn lookups(
        &self,
        flow: &Flow,
        inputs: &Inputs,
        token: &TokenState,
        now: Timestamp,
    ) -> Result<BTreeMap<String, SecretString>> {
        let fresh = inputs
            .with_fresh_tokens(flow)
            .await
            .map_err(|cause| EngineError::LookupFailed {
                lookup: flow.lookups.first().map(|l| l.name.clone()).unwrap_or_default(),
                cause: Box::new(cause),
            })?;
        let inputs = fresh.as_ref();
        let mut ctx = self.context(inputs, Some(token), token.refresh_token.as_ref(), now);
        ctx.extra.extend(token.extras.clone());
        ctx.extra.insert("token_type".into(), token.token_type.clone().into());
        let mut found = BTreeMap::new();
        for l in &flow.lookups {
            let failed = |cause: EngineError| EngineError::LookupFailed {
                lookup: l.name.clone(),
                cause: Box::new(cause),
            };
            let label = l.label();
            let req = self.build_request(&l.step, &ctx).map_err(failed)?;
            let options = inputs.client_options().map_err(failed)?;
            let resp = self.http.send(&label, req, options).await.map_err(failed)?;
            tracing::debug!(step = %label, host = %resp.host, status = resp.status, "lookup response");
            let parsed = extract::Parsed::new(&label, &resp);
            for (key, loc) in &l.extract {
                let v = parsed.require(key, std::slice::from_ref(loc)).map_err(failed)?;
                if v.chars().any(char::is_control) {
                    return Err(failed(EngineError::InvalidValue {
                        step: label.clone(),
                        what: key.clone(),
                        reason: "it contains control characters (CR, LF, NUL…)".into(),
                    }));
                }
                let stored = format!("{}.{key}", l.name);
                ctx.extra
                    .insert(lookup_variable(&stored), SecretString::from(v.clone()));
                found.insert(stored, SecretString::from(v));
            }
        }
        Ok(found)
    }
}
