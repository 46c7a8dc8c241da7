//! `refreshableToken`: the generic form (Locoia's refreshable token): a login request, an
//! optional separate refresh request, values extracted from JSON, headers or cookies.

use crate::error::Result;
use crate::flow::{Flow, base_flow, chain_steps, extraction, oauth_defaults, request_step};
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
    flow.chain = chain_steps(&format!("{field}.steps"), "chained step", &s.steps)?;
    Ok(flow)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::fixtures::{flow, refused};

    #[test]
    fn the_login_reads_oauth_fields_and_the_refresh_reads_what_the_login_reads() {
        let f = flow(json!({"refreshableToken": {
            "authorization": {"url": "https://api.example/login", "form": {"user": "{{ username }}"}},
            "refresh": {"url": "https://api.example/refresh"},
        }}));
        assert_eq!(f.scheme, "refreshableToken");
        let login = f.login.as_ref().unwrap();
        assert_eq!(login.method, http::Method::POST, "POST unless told otherwise");
        assert_eq!(login.extraction.access_token.len(), 1, "access_token");
        let refresh = f.refresh.as_ref().unwrap();
        assert_eq!(refresh.extraction.expires_in.len(), login.extraction.expires_in.len());
    }

    #[test]
    fn a_step_name_must_be_usable_as_a_template_variable() {
        let e = refused(json!({"refreshableToken": {
            "authorization": {"url": "https://api.example/login"},
            "steps": [{"name": "1st", "request": {"url": "https://api.example/session"}, "extract": {"sid": {"header": "X-Session"}}}],
        }}));
        assert!(e.to_string().contains("spec.refreshableToken.steps[1st]"), "{e}");
    }
}
