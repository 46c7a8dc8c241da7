//! `refreshableToken`: the generic form (Locoia's refreshable token): a login request, an
//! optional separate refresh request, values extracted from JSON, headers or cookies.

use crate::chain::ChainStep;
use crate::error::{EngineError, Result};
use crate::extract::Locator;
use crate::flow::{Extraction, Flow, base_flow, extraction, oauth_defaults, request_step};
use crate::spec;

pub(crate) fn compile(s: &spec::RefreshableToken) -> Result<Flow> {
    let field = "spec.refreshableToken";
    let login_ext = extraction(field, &s.extraction, &oauth_defaults())?;
    let mut flow = base_flow();
    if let Some(r) = &s.refresh {
        let ext = extraction(&format!("{field}.refresh"), &r.extraction, &login_ext)?;
        flow.refresh = Some(request_step("refresh", &format!("{field}.refresh"), &r.request, ext)?);
    }
    flow.login = Some(request_step(
        "login",
        &format!("{field}.authorization"),
        &s.authorization,
        login_ext,
    )?);
    flow.chain = chain(field, &s.steps)?;
    Ok(flow)
}

/// Compiles `steps`: names unique and usable as template variables, each extracting something.
fn chain(field: &str, steps: &[spec::ChainStep]) -> Result<Vec<ChainStep>> {
    let mut out: Vec<ChainStep> = Vec::new();
    for s in steps {
        let f = format!("{field}.steps[{}]", s.name);
        let valid = s
            .name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && s.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        let problem = if !valid {
            Some("a step name is a letter or underscore followed by letters, digits or underscores")
        } else if out.iter().any(|c| c.name == s.name) {
            Some("two steps have this name")
        } else if s.extract.is_empty() {
            Some("extract names no value: a step's only effect is the values it extracts")
        } else {
            None
        };
        if let Some(reason) = problem {
            return Err(EngineError::InvalidSpec {
                field: f,
                reason: reason.into(),
            });
        }
        let extract = s
            .extract
            .iter()
            .map(|(k, e)| Ok((k.clone(), Locator::compile(&format!("{f}.extract.{k}"), e)?)))
            .collect::<Result<Vec<_>>>()?;
        out.push(ChainStep {
            name: s.name.clone(),
            step: request_step("chained step", &f, &s.request, Extraction::default())?,
            extract,
        });
    }
    Ok(out)
}
