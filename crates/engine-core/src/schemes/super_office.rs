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
