//! `refreshableToken`: the generic form (Locoia's refreshable token): a login request, an
//! optional separate refresh request, values extracted from JSON, headers or cookies.

use crate::api;
use crate::engine::error::Result;
use crate::engine::flow::{Flow, base_flow, extraction, oauth_defaults, request_step};

pub(crate) fn compile(s: &api::RefreshableToken) -> Result<Flow> {
    let field = "spec.refreshableToken";
    let login_ext = extraction(field, &s.extraction, &oauth_defaults())?;
    let mut flow = base_flow("refreshableToken");
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
    Ok(flow)
}
