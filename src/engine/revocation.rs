//! RFC 7009 token revocation: what the operator holds is revoked when its resource is deleted.
//! Best effort and bounded: the refresh token first (revoking it usually ends its access tokens
//! too, §2.1), then the access token, both within the flow's time limit.

use jiff::Timestamp;

use super::error::Result;
use super::flow::{Flow, Step};
use super::{Engine, Inputs, TokenState};

/// What revocation came to, per token: `None` when there was no such token to revoke.
#[derive(Debug, Clone, PartialEq)]
pub struct Revoked {
    pub refresh_token: Option<Result<()>>,
    pub access_token: Option<Result<()>>,
    /// The time limit ran out before both requests were answered.
    pub timed_out: bool,
}

impl Revoked {
    /// Every token held was revoked (also true when there was none).
    pub fn complete(&self) -> bool {
        !self.timed_out
            && [&self.refresh_token, &self.access_token]
                .iter()
                .all(|r| !matches!(r, Some(Err(_))))
    }

    /// A sentence for an Event: which tokens were revoked, which not and why. Never a token.
    pub fn summary(&self, limit: std::time::Duration) -> String {
        let mut parts = Vec::new();
        for (name, r) in [
            ("refresh token", &self.refresh_token),
            ("access token", &self.access_token),
        ] {
            match r {
                None => {}
                Some(Ok(())) => parts.push(format!("{name} revoked")),
                Some(Err(e)) => parts.push(format!("{name} not revoked: {e}")),
            }
        }
        if self.timed_out {
            parts.push(format!(
                "revocation did not finish within {}s; the resource was released unrevoked",
                limit.as_secs()
            ));
        }
        if parts.is_empty() {
            return "no token was held, nothing to revoke".into();
        }
        parts.join("; ")
    }
}

impl Engine {
    /// Revokes `token`'s refresh token and (still valid) access token at the flow's revocation
    /// endpoint; `None` when the flow has none.
    pub async fn revoke(&self, flow: &Flow, inputs: &Inputs, token: &TokenState, now: Timestamp) -> Option<Revoked> {
        let r = flow.revocation.as_ref()?;
        let refresh = token.refresh_token.as_ref().filter(|t| !t.is_empty());
        let access_valid = !token.access_token.is_empty() && token.expires_at.is_none_or(|e| e > now);
        let ctx = self.context(inputs, Some(token), refresh, now);
        let mut out = Revoked {
            refresh_token: None,
            access_token: None,
            timed_out: false,
        };
        let work = async {
            if refresh.is_some() {
                out.refresh_token = Some(self.send_revocation(flow, &r.refresh, &ctx, inputs, now).await);
            }
            if access_valid {
                out.access_token = Some(self.send_revocation(flow, &r.access, &ctx, inputs, now).await);
            }
        };
        let finished = tokio::time::timeout(r.timeout, work).await.is_ok();
        out.timed_out = !finished;
        Some(out)
    }

    async fn send_revocation(
        &self,
        flow: &Flow,
        step: &Step,
        ctx: &super::TemplateContext,
        inputs: &Inputs,
        now: Timestamp,
    ) -> Result<()> {
        let req = self.build_request(step, &self.with_assertions(flow, step, ctx, now)?)?;
        let options = inputs.client_options()?;
        // Any 2xx is success (RFC 7009 §2.2: 200 also for a token the server no longer knows).
        self.http.send(step.name, req, options).await.map(|_| ())
    }
}
