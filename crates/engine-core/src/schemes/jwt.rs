//! `jwt`: an application token exchanged for a JWT access token and refresh token (webCRM
//! style); the expiry comes from the JWT's `exp` when the response gives none.

use crate::error::Result;
use crate::flow::{Extraction, Flow, base_flow, extraction, json, request_step};
use crate::spec;

pub(crate) fn compile(s: &spec::Jwt) -> Result<Flow> {
    let field = "spec.jwt";
    let defaults = Extraction {
        access_token: json(&["AccessToken", "access_token", "accessToken"]),
        refresh_token: json(&["RefreshToken", "refresh_token", "refreshToken"]),
        ..Default::default()
    };
    let login_ext = extraction(field, &s.extraction, &defaults)?;
    let mut flow = base_flow();
    if let Some(r) = &s.refresh {
        let ext = extraction(&format!("{field}.refresh"), &r.extraction, &login_ext)?;
        flow.refresh = Some(request_step("refresh", &format!("{field}.refresh"), &r.request, ext)?);
    }
    flow.login = Some(request_step("login", &format!("{field}.login"), &s.login, login_ext)?);
    Ok(flow)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::fixtures::flow;

    #[test]
    fn a_refresh_request_reads_what_the_login_reads_unless_told_otherwise() {
        let f = flow(json!({"jwt": {
            "login": {"url": "https://crm.example/Auth/ApiLogin", "body": "{\"authCode\": \"{{ code }}\"}"},
            "refresh": {"url": "https://crm.example/Auth/ApiRefresh"},
        }}));
        assert_eq!(f.scheme, "jwt");
        let login = f.login.as_ref().unwrap();
        let refresh = f.refresh.as_ref().unwrap();
        assert_eq!(
            login.extraction.access_token.len(),
            3,
            "AccessToken, access_token, accessToken"
        );
        assert_eq!(
            refresh.extraction.access_token.len(),
            login.extraction.access_token.len()
        );
        assert_eq!(refresh.extraction.refresh_token.len(), 3);
    }
}
