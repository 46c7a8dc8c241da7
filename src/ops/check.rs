//! `check`: sends the resource's `spec.verify` request with what the operator published, as a
//! workload would, and tells whether the provider accepts the credential. Reads only.

use std::collections::BTreeMap;

use jiff::Timestamp;
use kube::api::Api;

use super::Target;
use crate::api::ConnectorAuth;
use crate::controller::source::ApiSource;
use crate::engine::{Engine, Inputs, Verification};
use crate::reconcile::{gather, output_secret_name};

/// What `check` found: the verification, and why the templates may lack the credentials.
#[derive(Debug)]
pub struct Checked {
    pub verification: Verification,
    /// Set when the resource's inputs could not be gathered (e.g. the credentials Secret is
    /// not readable with these permissions): the request was rendered from the output alone.
    pub note: Option<String>,
}

/// Verifies `target`'s published credential.
pub async fn check(client: &kube::Client, engine: &Engine, target: &Target) -> anyhow::Result<Checked> {
    let api: Api<ConnectorAuth> = Api::namespaced(client.clone(), &target.namespace);
    let ca = api
        .get_opt(&target.name)
        .await?
        .ok_or_else(|| anyhow::anyhow!("ConnectorAuth {target} not found"))?;
    if ca.spec.verify.is_none() {
        anyhow::bail!(
            "ConnectorAuth {target} has no spec.verify: add a request that only a working credential passes, e.g. `verify: {{url: https://api.example.com/v1/me}}`"
        );
    }
    let secret = ca
        .status
        .as_ref()
        .and_then(|s| s.secret_name.clone())
        .unwrap_or_else(|| output_secret_name(&ca));
    let output: BTreeMap<String, String> = super::secret_text(client, &target.namespace, &secret)
        .await
        .map_err(|e| anyhow::anyhow!("cannot read the output Secret {}/{secret}: {e}", target.namespace))?
        .ok_or_else(|| {
            anyhow::anyhow!(
                "the output Secret {}/{secret} does not exist: no token was published yet (see `status {target}`)",
                target.namespace
            )
        })?;
    let (flow, inputs, note) = match gather(engine, &ApiSource(client.clone()), &ca, None, BTreeMap::new()).await {
        Ok(Ok(g)) => (g.flow, g.inputs, None),
        Ok(Err(refusal)) => (
            crate::catalog::compile(engine, &ca.spec)?,
            Inputs::default(),
            Some(format!("{} ({})", refusal.message, refusal.reason)),
        ),
        Err(e) => (
            crate::catalog::compile(engine, &ca.spec)?,
            Inputs::default(),
            Some(e.to_string()),
        ),
    };
    let step = flow.verify.as_ref().expect("spec.verify compiles to a step");
    let verification = engine.verify(step, &inputs, &output, Timestamp::now()).await;
    Ok(Checked { verification, note })
}
