//! `superOffice`: OAuth2 plus `so_ticket`, a claim of the `id_token`; API calls use
//! `Authorization: SOTicket <ticket>` and `SO-AppToken`.

use crate::error::Result;
use crate::extract::Locator;
use crate::flow::{Flow, Tmpl};
use crate::spec::{self, ClientAuth, GrantType, SuperOfficeEnvironment};

pub(crate) fn compile(s: &spec::SuperOffice) -> Result<Flow> {
    let env = match s.environment.unwrap_or_default() {
        SuperOfficeEnvironment::Sod => "sod",
        SuperOfficeEnvironment::Stage => "qaonline",
        SuperOfficeEnvironment::Online => "online",
    };
    let default_url = format!("https://{env}.superoffice.com/login/common/oauth/tokens");
    let o = &s.oauth2;
    let claim = s
        .ticket_claim
        .as_deref()
        .unwrap_or("http://schemes.superoffice.net/identity/ticket");
    let mut flow = super::oauth2::compile(
        "spec.superOffice",
        o,
        Some(&default_url),
        GrantType::RefreshToken,
        ClientAuth::ClientSecretPost,
    )?;
    let ticket = (
        "so_ticket".to_string(),
        Locator::json("default", "id_token")?.with_claim(claim),
    );
    for step in [&mut flow.login, &mut flow.refresh, &mut flow.code_exchange]
        .into_iter()
        .flatten()
    {
        if !step.extraction.extras.iter().any(|(k, _)| k == "so_ticket") {
            step.extraction.extras.push(ticket.clone());
        }
    }
    flow.output.header_format = Tmpl::new("spec.output.header.format", "{{ so_ticket }}");
    flow.output.header_value = Tmpl::new("spec.output.header.value", "SOTicket {{ token_format }}");
    let app_token = o.client_secret.clone().unwrap_or_else(|| "{{ client_secret }}".into());
    flow.output.extra_headers = vec![(
        "SO-AppToken".into(),
        Tmpl::new("spec.superOffice.clientSecret", app_token),
    )];
    Ok(flow)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::fixtures::{flow, form};

    #[test]
    fn online_refresh_with_the_ticket_claim_and_the_app_token_header() {
        let f = flow(json!({"superOffice": {"oauth2": {}}}));
        assert_eq!(f.scheme, "superOffice");
        let refresh = f.refresh.as_ref().expect("a refresh request");
        assert_eq!(
            refresh.url.source,
            "https://online.superoffice.com/login/common/oauth/tokens"
        );
        assert!(
            form(refresh).contains(&("client_secret", "{{ client_secret }}")),
            "client_secret_post"
        );
        assert!(refresh.extraction.extras.iter().any(|(k, _)| k == "so_ticket"));
        assert_eq!(f.output.header_value.source, "SOTicket {{ token_format }}");
        assert_eq!(f.output.extra_headers[0].0, "SO-AppToken");
        let sod = flow(json!({"superOffice": {"environment": "sod", "oauth2": {}}}));
        assert!(
            sod.refresh
                .unwrap()
                .url
                .source
                .starts_with("https://sod.superoffice.com/")
        );
    }
}
