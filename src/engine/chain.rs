//! Chained logins (`refreshableToken.steps`): requests sent in order before the login request,
//! each offering the values it extracted to the later templates as
//! `{{ steps.<name>.<key> }}` (log in → session → token).

use jiff::Timestamp;

use super::{Engine, Inputs};
pub use engine_core::chain::variable;
use engine_core::error::Result;
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
