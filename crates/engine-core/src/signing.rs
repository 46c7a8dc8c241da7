//! Signing the assertions a step uses, for that step: claims rendered (`token_url` is the
//! step's URL), the key read from the credentials, a fresh `jti`.

use jiff::Timestamp;
use serde_json::Map;

use crate::assertion::{Plan, SigningKey, sign, thumbprints};
use crate::error::{EngineError, Result};
use crate::flow::{Body, Flow, Step, Tmpl};
use crate::template::{TemplateContext, Templates};

/// Whether a step's templates read `var`.
fn step_uses(templates: &Templates, step: &Step, var: &str) -> bool {
    let mut all: Vec<&Tmpl> = vec![&step.url];
    all.extend(step.headers.iter().map(|(_, t)| t));
    match &step.body {
        Body::None => {}
        Body::Raw(t) => all.push(t),
        Body::Form(f) => all.extend(f.iter().map(|f| &f.value)),
    }
    if let Some((u, p)) = &step.basic_auth {
        all.push(u);
        all.extend(p.iter());
    }
    all.iter()
        .any(|t| templates.variables(&t.source).iter().any(|v| v == var))
}

/// `ctx` with the flow's assertions that `step` uses signed into it.
pub fn with_assertions(
    templates: &Templates,
    flow: &Flow,
    step: &Step,
    ctx: &TemplateContext,
    now: Timestamp,
) -> Result<TemplateContext> {
    let mut out = ctx.clone();
    for plan in &flow.assertions {
        if !step_uses(templates, step, plan.var) {
            continue;
        }
        let jwt = sign_assertion(templates, plan, step, ctx, now, &random_jti())?;
        out.extra.insert(plan.var.into(), jwt.into());
    }
    Ok(out)
}

/// Signs one assertion for `step` (whose URL is the claims' `token_url`).
pub fn sign_assertion(
    templates: &Templates,
    plan: &Plan,
    step: &Step,
    ctx: &TemplateContext,
    now: Timestamp,
    jti: &str,
) -> Result<String> {
    let read = |key: &str| -> Result<&str> {
        ctx.credentials
            .get(key)
            .map(|v| v.expose())
            .ok_or_else(|| EngineError::MissingCredential {
                key: key.into(),
                field: plan.field.clone(),
            })
    };
    let invalid = |key: &str, reason: String| EngineError::InvalidKey {
        field: plan.field.clone(),
        secret: plan.secret.clone(),
        key: key.into(),
        reason,
    };
    let key = SigningKey::load(read(&plan.private_key_key)?).map_err(|r| invalid(&plan.private_key_key, r))?;
    let alg = key
        .algorithm(plan.algorithm)
        .map_err(|r| invalid(&plan.private_key_key, r))?;
    let thumbprints = match &plan.certificate_key {
        Some(c) => Some(thumbprints(read(c)?, &key).map_err(|r| invalid(c, r))?),
        None => None,
    };
    let mut claims_ctx = ctx.clone();
    let token_url = templates.render(&step.url.field, &step.url.source, ctx)?;
    claims_ctx.extra.insert("token_url".into(), token_url.trim().into());
    let mut claims = Map::new();
    for (name, t) in &plan.claims {
        if name == "iss"
            && plan.iss_from_key_file
            && let Some(email) = &key.client_email
        {
            claims.insert(name.clone(), email.clone().into());
            continue;
        }
        let v = templates.render(&t.field, &t.source, &claims_ctx)?;
        claims.insert(name.clone(), v.into());
    }
    let kid = match &plan.key_id {
        Some(t) => Some(templates.render(&t.field, &t.source, &claims_ctx)?),
        None => key.private_key_id.clone(),
    };
    sign(&key, alg, kid, thumbprints.as_ref(), claims, now, plan, jti).map_err(|r| invalid(&plan.private_key_key, r))
}

/// 128 random bits, hex: a `jti` no two requests share.
pub fn random_jti() -> String {
    format!("{:032x}", rand::random::<u128>())
}
