//! The signed-assertion parts of `oauth2` (RFC 7523): grant `jwtBearer` (§2.1) and client
//! authentication `private_key_jwt` (§2.2, OpenID Connect Core §9).

use crate::assertion::{Defaults, Plan};
use crate::error::{EngineError, Result};
use crate::flow::{FormField, Tmpl};
use crate::spec::{self, ClientAuth, GrantType};

pub const JWT_BEARER_GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
pub const JWT_BEARER_CLIENT_ASSERTION: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// The JWT bearer grant authenticates by its assertion: no client authentication unless asked.
pub(crate) fn default_client_auth(grant: GrantType, otherwise: ClientAuth) -> ClientAuth {
    if grant == GrantType::JwtBearer {
        ClientAuth::None
    } else {
        otherwise
    }
}

/// The form fields of the `jwtBearer` grant.
pub(crate) fn grant_fields(field: &str) -> Vec<(&'static str, Tmpl, bool)> {
    vec![
        (
            "grant_type",
            Tmpl::new(format!("{field}.grantType"), JWT_BEARER_GRANT),
            false,
        ),
        (
            "assertion",
            Tmpl::new(format!("{field}.assertion"), "{{ assertion }}"),
            false,
        ),
    ]
}

/// The form fields of `private_key_jwt` client authentication.
pub(crate) fn client_auth_fields(field: &str, client_id: &str) -> Vec<FormField> {
    let f = |name: &str, suffix: &str, src: &str| FormField {
        name: name.into(),
        value: Tmpl::new(format!("{field}.{suffix}"), src),
        optional: false,
    };
    vec![
        f("client_id", "clientId", client_id),
        f("client_assertion_type", "clientAuth", JWT_BEARER_CLIENT_ASSERTION),
        f("client_assertion", "clientAssertion", "{{ client_assertion }}"),
    ]
}

/// The assertions an oauth2 block signs; an assertion block without its grant or client
/// authentication (or the reverse) is an error.
pub(crate) fn plans(
    field: &str,
    o: &spec::OAuth2,
    grant: GrantType,
    auth: ClientAuth,
    client_id: &str,
) -> Result<Vec<Plan>> {
    let mut plans = Vec::new();
    match (grant == GrantType::JwtBearer, &o.assertion) {
        (true, Some(a)) => {
            let mut claims = vec![("iss", client_id.to_string()), ("aud", "{{ token_url }}".to_string())];
            if !o.scopes.is_empty() {
                claims.push(("scope", o.scopes.join(" ")));
            }
            plans.push(Plan::compile(
                &format!("{field}.assertion"),
                "assertion",
                a,
                Defaults {
                    claims,
                    lifetime: "2m",
                    backdate_secs: 0,
                    not_before: false,
                    jti: true,
                    iss_from_key_file: true,
                },
            )?);
        }
        (true, None) => return Err(missing(field, "assertion", "grantType jwtBearer")),
        (false, Some(_)) => return Err(unused(field, "assertion", "grantType jwtBearer")),
        (false, None) => {}
    }
    match (auth == ClientAuth::PrivateKeyJwt, &o.client_assertion) {
        (true, Some(a)) => plans.push(Plan::compile(
            &format!("{field}.clientAssertion"),
            "client_assertion",
            a,
            Defaults {
                claims: vec![
                    ("iss", client_id.to_string()),
                    ("sub", client_id.to_string()),
                    ("aud", "{{ token_url }}".to_string()),
                ],
                lifetime: "2m",
                backdate_secs: 0,
                not_before: true,
                jti: true,
                iss_from_key_file: false,
            },
        )?),
        (true, None) => return Err(missing(field, "clientAssertion", "clientAuth private_key_jwt")),
        (false, Some(_)) => return Err(unused(field, "clientAssertion", "clientAuth private_key_jwt")),
        (false, None) => {}
    }
    Ok(plans)
}

fn missing(field: &str, name: &str, by: &str) -> EngineError {
    EngineError::InvalidSpec {
        field: format!("{field}.{name}"),
        reason: format!("is required by {by}"),
    }
}

fn unused(field: &str, name: &str, by: &str) -> EngineError {
    EngineError::InvalidSpec {
        field: format!("{field}.{name}"),
        reason: format!("is only used with {by}"),
    }
}
