//! `spec.verify`: one request that proves a published credential works at the provider, and
//! its verdict. Sent with the published headers; never changes the token.

use std::collections::BTreeMap;

use jiff::Timestamp;

pub use engine_core::verify::{Verification, compile};

use super::{Engine, Inputs};
use engine_core::flow::Step;
use engine_core::{Result, SecretString, TemplateContext};

impl Engine {
    /// Sends the verification request with the published `output` (its `headers.json` headers,
    /// overridden by the request's own), its templates seeing the credentials and the output
    /// keys.
    pub async fn verify(
        &self,
        step: &Step,
        inputs: &Inputs,
        output: &BTreeMap<String, String>,
        now: Timestamp,
    ) -> Verification {
        match self.send_verify(step, inputs, output, now).await {
            Ok(v) => v,
            Err(e) => Verification::Failed(e),
        }
    }

    async fn send_verify(
        &self,
        step: &Step,
        inputs: &Inputs,
        output: &BTreeMap<String, String>,
        now: Timestamp,
    ) -> Result<Verification> {
        let ctx = TemplateContext {
            credentials: inputs.credentials.clone(),
            access_token: output.get("access_token").map(|t| SecretString::from(t.as_str())),
            refresh_token: None,
            oauth: BTreeMap::new(),
            redirect_url: inputs.redirect_url.clone(),
            extra: output
                .iter()
                .filter(|(k, _)| *k != "access_token")
                .map(|(k, v)| (k.clone(), SecretString::from(v.as_str())))
                .collect(),
            callback: BTreeMap::new(),
            now: Some(now),
        };
        let mut req = self.build_request(step, &ctx)?;
        let published: BTreeMap<String, String> = output
            .get("headers.json")
            .and_then(|h| serde_json::from_str(h).ok())
            .unwrap_or_default();
        for (name, value) in published.into_iter().rev() {
            if !req.headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(&name)) {
                req.headers.insert(0, (name, value.into()));
            }
        }
        let method = req.method.to_string();
        let resp = self.http.fetch(step.name, req, inputs.client_options()?).await?;
        Ok(Verification::Answered {
            method,
            host: resp.host,
            status: resp.status,
        })
    }
}
