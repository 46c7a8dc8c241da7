//! RFC 7009 token revocation: what the operator holds is revoked when its resource is deleted.
//! Best effort and bounded: the refresh token first (revoking it usually ends its access tokens
//! too, §2.1), then the access token, both within the flow's time limit.

use jiff::Timestamp;

use super::{Engine, Inputs};
use engine_core::TokenState;
use engine_core::error::Result;
use engine_core::flow::{Flow, Step};

/// What revocation came to, per token: `None` when there was no such token to revoke (or, with
/// `timed_out`, no answer in time).
#[derive(Debug, Clone, PartialEq)]
pub struct Revoked {
    pub refresh_token: Option<Result<()>>,
    pub access_token: Option<Result<()>>,
    /// The tokens that had no answer when the time limit ran out.
    pub unanswered: Vec<&'static str>,
}

impl Revoked {
    /// Every token held was revoked (also true when there was none).
    pub fn complete(&self) -> bool {
        self.unanswered.is_empty()
            && [&self.refresh_token, &self.access_token]
                .iter()
                .all(|r| !matches!(r, Some(Err(_))))
    }

    /// A sentence for an Event: which tokens were revoked, which not and why. Never a token.
    pub fn summary(&self, limit: std::time::Duration) -> String {
        let mut parts = Vec::new();
        for (name, r) in [(REFRESH, &self.refresh_token), (ACCESS, &self.access_token)] {
            match r {
                None => {}
                Some(Ok(())) => parts.push(format!("{name} revoked")),
                Some(Err(e)) => parts.push(format!("{name} not revoked: {e}")),
            }
        }
        if !self.unanswered.is_empty() {
            parts.push(format!(
                "revocation did not finish within {}s: {} not revoked; the resource was deleted all the same",
                limit.as_secs(),
                self.unanswered.join(" and ")
            ));
        }
        if parts.is_empty() {
            return "no token was held, nothing to revoke".into();
        }
        parts.join("; ")
    }
}

const REFRESH: &str = "refresh token";
const ACCESS: &str = "access token";

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
            unanswered: Vec::new(),
        };
        let work = async {
            if refresh.is_some() {
                out.refresh_token = Some(self.send_revocation(flow, &r.refresh, &ctx, inputs, now).await);
            }
            if access_valid {
                out.access_token = Some(self.send_revocation(flow, &r.access, &ctx, inputs, now).await);
            }
        };
        if tokio::time::timeout(r.timeout, work).await.is_err() {
            let planned = [
                (REFRESH, refresh.is_some(), &out.refresh_token),
                (ACCESS, access_valid, &out.access_token),
            ];
            out.unanswered = planned
                .into_iter()
                .filter(|(_, planned, answer)| *planned && answer.is_none())
                .map(|(name, _, _)| name)
                .collect();
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::EngineError;
    use std::time::Duration;

    #[test]
    fn a_revocation_summary_says_what_was_revoked_and_what_not_without_any_token() {
        let all = Revoked {
            refresh_token: Some(Ok(())),
            access_token: Some(Ok(())),
            unanswered: vec![],
        };
        assert!(all.complete());
        assert_eq!(
            all.summary(Duration::from_secs(10)),
            "refresh token revoked; access token revoked"
        );
        let refused = Revoked {
            refresh_token: Some(Ok(())),
            access_token: Some(Err(EngineError::ProviderUnavailable {
                step: "revocation".into(),
                host: "idp.example".into(),
                status: 503,
                retry_after: None,
            })),
            unanswered: vec![],
        };
        assert!(!refused.complete());
        let s = refused.summary(Duration::from_secs(10));
        assert!(
            s.starts_with("refresh token revoked; access token not revoked: "),
            "{s}"
        );
        let hung = Revoked {
            refresh_token: Some(Ok(())),
            access_token: None,
            unanswered: vec![ACCESS],
        };
        assert!(!hung.complete());
        assert_eq!(
            hung.summary(Duration::from_secs(3)),
            "refresh token revoked; revocation did not finish within 3s: access token not revoked; the resource was deleted all the same"
        );
        let none = Revoked {
            refresh_token: None,
            access_token: None,
            unanswered: vec![],
        };
        assert!(none.complete());
        assert_eq!(
            none.summary(Duration::from_secs(3)),
            "no token was held, nothing to revoke"
        );
    }
}
