//! `oauth2`: the RFC 6749 token endpoint: client credentials, password, refresh token and
//! authorization code grants, client authentication, scopes, audience and extra parameters,
//! custom token and refresh requests.

use crate::error::{EngineError, Result};
use crate::extract::Locator;
use crate::flow::{
    Body, ErrorRule, Flow, FormField, Revocation, Step, Tmpl, base_flow, chain_steps, extraction, oauth_defaults,
    request_step,
};
use crate::schemes::oauth2_jwt;
use crate::spec::{self, ClientAuth, GrantType};

pub(crate) fn compile(
    field: &str,
    o: &spec::OAuth2,
    default_url: Option<&str>,
    default_grant: GrantType,
    default_auth: ClientAuth,
) -> Result<Flow> {
    let grant = o.grant_type.unwrap_or(default_grant);
    let auth = o
        .client_auth
        .unwrap_or(oauth2_jwt::default_client_auth(grant, default_auth));
    let mut ext = extraction(field, &o.extraction, &oauth_defaults())?;
    if let Some(e) = &o.error_code {
        ext.error = Some(ErrorRule {
            at: Locator::compile(&format!("{field}.errorCode"), &e.at)?,
            invalid_grant: e.invalid_grant.clone(),
        });
    }
    let token_url = o.token_url.as_deref().or(default_url);
    let client_id = o.client_id.clone().unwrap_or_else(|| "{{ client_id }}".into());
    // The default secret is optional (public clients); an explicit template must resolve.
    let (client_secret, secret_optional) = match &o.client_secret {
        Some(s) => (s.clone(), false),
        None => ("{{ client_secret }}".into(), true),
    };
    let mut extra_params: Vec<FormField> = Vec::new();
    if !o.scopes.is_empty() {
        extra_params.push(FormField {
            name: "scope".into(),
            value: Tmpl::new(format!("{field}.scopes"), o.scopes.join(" ")),
            optional: false,
        });
    }
    if let Some(a) = &o.audience {
        extra_params.push(FormField {
            name: "audience".into(),
            value: Tmpl::new(format!("{field}.audience"), a),
            optional: false,
        });
    }
    for (k, v) in &o.extra_params {
        extra_params.push(FormField {
            name: k.clone(),
            value: Tmpl::new(format!("{field}.extraParams.{k}"), v),
            optional: false,
        });
    }

    // A request to `url` with the client's authentication and headers; `params` says which
    // extra parameters go along (all, all but `scope`, or none for revocation).
    let generated_at = |name: &'static str, url: Tmpl, grant_fields: Vec<(&str, Tmpl, bool)>, params: Params| -> Step {
        let mut form: Vec<FormField> = grant_fields
            .into_iter()
            .map(|(n, v, optional)| FormField {
                name: n.into(),
                value: v,
                optional,
            })
            .collect();
        match params {
            Params::All => form.extend(extra_params.iter().cloned()),
            Params::NoScope => form.extend(extra_params.iter().filter(|f| f.name != "scope").cloned()),
            Params::None => {}
        }
        let mut basic_auth = None;
        match auth {
            ClientAuth::ClientSecretBasic => {
                basic_auth = Some((
                    Tmpl::new(format!("{field}.clientId"), &client_id),
                    Some(Tmpl::new(format!("{field}.clientSecret"), &client_secret)),
                ));
            }
            ClientAuth::ClientSecretPost => {
                form.push(FormField {
                    name: "client_id".into(),
                    value: Tmpl::new(format!("{field}.clientId"), &client_id),
                    optional: false,
                });
                form.push(FormField {
                    name: "client_secret".into(),
                    value: Tmpl::new(format!("{field}.clientSecret"), &client_secret),
                    optional: secret_optional,
                });
            }
            ClientAuth::PrivateKeyJwt => form.extend(oauth2_jwt::client_auth_fields(field, &client_id)),
            ClientAuth::None => {}
        }
        let mut headers: Vec<(String, Tmpl)> = vec![("Accept".into(), Tmpl::new(field, "application/json"))];
        headers.extend(
            o.headers
                .iter()
                .map(|(k, v)| (k.clone(), Tmpl::new(format!("{field}.headers.{k}"), v))),
        );
        Step {
            name,
            method: http::Method::POST,
            url,
            headers,
            body: Body::Form(form),
            basic_auth,
            extraction: ext.clone(),
        }
    };
    let generated = |name: &'static str, grant_fields: Vec<(&str, Tmpl, bool)>, with_scope: bool| -> Result<Step> {
        let url = token_url.ok_or_else(|| EngineError::InvalidSpec {
            field: format!("{field}.tokenUrl"),
            reason: "is required unless tokenRequest and refreshRequest are both given".into(),
        })?;
        let url = Tmpl::new(format!("{field}.tokenUrl"), url);
        let params = if with_scope { Params::All } else { Params::NoScope };
        Ok(generated_at(name, url, grant_fields, params))
    };
    let t = |suffix: &str, src: &str| Tmpl::new(format!("{field}.{suffix}"), src);

    let mut flow = base_flow();
    // Without a refresh request and without a token URL to generate one from, tokens are
    // permanent (ChiefOnboarding: "if refresh is not added, the token is permanent").
    flow.refresh = match (&o.refresh_request, token_url) {
        (Some(r), _) => Some(request_step(
            "refresh",
            &format!("{field}.refreshRequest"),
            r,
            ext.clone(),
        )?),
        (None, Some(_)) => Some(generated(
            "refresh",
            vec![
                ("grant_type", t("grantType", "refresh_token"), false),
                ("refresh_token", t("refreshTokenKey", "{{ refresh_token }}"), false),
            ],
            false,
        )?),
        (None, None) => None,
    };
    let custom_first = |name: &'static str| -> Result<Option<Step>> {
        o.token_request
            .as_ref()
            .map(|r| request_step(name, &format!("{field}.tokenRequest"), r, ext.clone()))
            .transpose()
    };
    if o.token_exchange.is_some() && grant != GrantType::TokenExchange {
        return Err(EngineError::InvalidSpec {
            field: format!("{field}.tokenExchange"),
            reason: "is for grantType tokenExchange".into(),
        });
    }
    if o.pkce == Some(true) && grant != GrantType::AuthorizationCode {
        return Err(EngineError::InvalidSpec {
            field: format!("{field}.pkce"),
            reason: "PKCE is part of the consent flow: it needs grantType authorizationCode".into(),
        });
    }
    match grant {
        GrantType::ClientCredentials => {
            flow.login = Some(match custom_first("login")? {
                Some(s) => s,
                None => generated(
                    "login",
                    vec![("grant_type", t("grantType", "client_credentials"), false)],
                    true,
                )?,
            });
        }
        GrantType::Password => {
            let user = o.username.clone().unwrap_or_else(|| "{{ username }}".into());
            let pass = o.password.clone().unwrap_or_else(|| "{{ password }}".into());
            flow.login = Some(match custom_first("login")? {
                Some(s) => s,
                None => generated(
                    "login",
                    vec![
                        ("grant_type", t("grantType", "password"), false),
                        ("username", t("username", &user), false),
                        ("password", t("password", &pass), false),
                    ],
                    true,
                )?,
            });
        }
        GrantType::TokenExchange => {
            let x = o.token_exchange.clone().unwrap_or_default();
            let mut fields = vec![
                (
                    "grant_type",
                    t("grantType", "urn:ietf:params:oauth:grant-type:token-exchange"),
                    false,
                ),
                (
                    "subject_token",
                    t(
                        "tokenExchange.subjectToken",
                        x.subject_token.as_deref().unwrap_or("{{ service_account_token }}"),
                    ),
                    false,
                ),
                (
                    "subject_token_type",
                    t(
                        "tokenExchange.subjectTokenType",
                        x.subject_token_type
                            .as_deref()
                            .unwrap_or("urn:ietf:params:oauth:token-type:jwt"),
                    ),
                    false,
                ),
            ];
            if let Some(r) = &x.requested_token_type {
                fields.push(("requested_token_type", t("tokenExchange.requestedTokenType", r), false));
            }
            if let Some(r) = &x.resource {
                fields.push(("resource", t("tokenExchange.resource", r), false));
            }
            if let Some(a) = &x.actor_token {
                fields.push(("actor_token", t("tokenExchange.actorToken", a), false));
                fields.push((
                    "actor_token_type",
                    t(
                        "tokenExchange.actorTokenType",
                        x.actor_token_type
                            .as_deref()
                            .unwrap_or("urn:ietf:params:oauth:token-type:jwt"),
                    ),
                    false,
                ));
            }
            flow.login = Some(match custom_first("login")? {
                Some(s) => s,
                None => generated("login", fields, true)?,
            });
        }
        GrantType::JwtBearer => {
            flow.login = Some(match custom_first("login")? {
                Some(s) => s,
                None => generated("login", oauth2_jwt::grant_fields(field), false)?,
            });
        }
        GrantType::RefreshToken => {
            flow.seed_refresh_key = Some(o.refresh_token_key.clone().unwrap_or_else(|| "refresh_token".into()));
        }
        GrantType::AuthorizationCode => {
            let pkce = o.pkce.unwrap_or(false);
            flow.code_exchange = Some(match custom_first("code exchange")? {
                Some(s) => s,
                None => {
                    let mut fields = vec![
                        ("grant_type", t("grantType", "authorization_code"), false),
                        ("code", t("grantType", "{{ code }}"), o.without_code), // withoutCode: no code in the callback
                        ("redirect_uri", t("grantType", "{{ redirect_url }}"), true),
                    ];
                    if pkce {
                        fields.push(("code_verifier", t("pkce", "{{ code_verifier }}"), false));
                    }
                    generated("code exchange", fields, false)?
                }
            });
            flow.pkce = pkce;
            flow.authorization_url = o
                .authorization_url
                .as_ref()
                .map(|u| Tmpl::new(format!("{field}.authorizationUrl"), u));
            if flow.authorization_url.is_none() {
                return Err(EngineError::InvalidSpec {
                    field: format!("{field}.authorizationUrl"),
                    reason: "is required for grantType authorizationCode".into(),
                });
            }
            flow.without_code = o.without_code;
            flow.callback_values = callback_values(field, &o.callback_values)?;
            // A refresh token put into the credentials (e.g. migrated from another platform)
            // is used instead of asking for consent again.
            flow.seed_refresh_key = o.refresh_token_key.clone().or_else(|| Some("refresh_token".into()));
        }
    }
    let first = if flow.code_exchange.is_some() {
        &mut flow.code_exchange
    } else {
        &mut flow.login
    };
    add_params(first.as_mut(), &format!("{field}.tokenParams"), &o.token_params)?;
    add_params(
        flow.refresh.as_mut(),
        &format!("{field}.refreshParams"),
        &o.refresh_params,
    )?;
    if !o.authorization_params.is_empty() && flow.authorization_url.is_none() {
        return Err(EngineError::InvalidSpec {
            field: format!("{field}.authorizationParams"),
            reason: "parameters of the consent link need grantType authorizationCode".into(),
        });
    }
    flow.authorization_params = o
        .authorization_params
        .iter()
        .map(|(k, v)| (k.clone(), Tmpl::new(format!("{field}.authorizationParams.{k}"), v)))
        .collect();
    if let Some(p) = &o.code_parameter {
        if flow.code_exchange.is_none() || !crate::callback::is_value_name(p) {
            return Err(EngineError::InvalidSpec {
                field: format!("{field}.codeParameter"),
                reason: "is a callback query parameter name (a letter followed by letters, digits, '_', '-' or '.', not `state`) and needs grantType authorizationCode".into(),
            });
        }
        flow.code_parameter = p.clone();
    }
    if let Some(h) = &o.callback_hmac {
        let parameter = h.parameter.clone().unwrap_or_else(|| "hmac".into());
        if flow.code_exchange.is_none() || !crate::callback::is_value_name(&parameter) {
            return Err(EngineError::InvalidSpec {
                field: format!("{field}.callbackHmac"),
                reason: "verifies a consent callback: it needs grantType authorizationCode and a parameter name as callbackValues have".into(),
            });
        }
        let key = h.key.clone().unwrap_or_else(|| client_secret.clone());
        flow.callback_hmac = Some((parameter, Tmpl::new(format!("{field}.callbackHmac.key"), key)));
    }
    flow.lookups = chain_steps(&format!("{field}.lookups"), "lookup", &o.lookups)?;
    if let Some(d) = &o.dpop {
        let alg = d.algorithm.unwrap_or(spec::JwtAlgorithm::ES256);
        if !matches!(alg, spec::JwtAlgorithm::ES256 | spec::JwtAlgorithm::ES384) {
            return Err(EngineError::InvalidSpec {
                field: format!("{field}.dpop.algorithm"),
                reason: "DPoP keys here are EC keys: ES256 or ES384".into(),
            });
        }
        flow.dpop = Some((d.private_key_key.clone().unwrap_or_else(|| "dpop.key".into()), alg));
        // A DPoP-bound token is sent as `Authorization: DPoP <token>`, with a proof beside it.
        flow.default_token_type = "DPoP";
        flow.output.header_value = Tmpl::new("spec.output.header.value", "DPoP {{ token_format }}");
    }
    // RFC 7009 §2.1: the token and a hint of its type, with the client's authentication.
    flow.revocation = o.revocation_url.as_ref().map(|url| {
        let revoke = |kind: &'static str| {
            let url = Tmpl::new(format!("{field}.revocationUrl"), url);
            let token = Tmpl::new(format!("{field}.revocationUrl"), format!("{{{{ {kind} }}}}"));
            let fields = vec![
                ("token", token, false),
                ("token_type_hint", t("revocationUrl", kind), false),
            ];
            generated_at("revocation", url, fields, Params::None)
        };
        Revocation {
            refresh: revoke("refresh_token"),
            access: revoke("access_token"),
            timeout: std::time::Duration::from_secs(u64::from(
                o.revocation_timeout_seconds.unwrap_or(DEFAULT_REVOCATION_TIMEOUT_SECS),
            )),
        }
    });
    flow.assertions = oauth2_jwt::plans(field, o, grant, auth, &client_id)?;
    Ok(flow)
}

/// How long revocation on delete may take when `revocationTimeoutSeconds` is not set.
pub const DEFAULT_REVOCATION_TIMEOUT_SECS: u32 = 10;

/// Which extra parameters a generated request carries.
#[derive(Clone, Copy)]
enum Params {
    All,
    NoScope,
    None,
}

/// Adds one phase's parameters to its request's form.
fn add_params(step: Option<&mut Step>, field: &str, params: &std::collections::BTreeMap<String, String>) -> Result<()> {
    if params.is_empty() {
        return Ok(());
    }
    let Some(step) = step else {
        return Err(EngineError::InvalidSpec {
            field: field.into(),
            reason: "this grant sends no such request".into(),
        });
    };
    if matches!(step.body, Body::None) {
        step.body = Body::Form(vec![]);
    }
    let Body::Form(fields) = &mut step.body else {
        return Err(EngineError::InvalidSpec {
            field: field.into(),
            reason: "the request has a raw `body`: put the parameters into it instead".into(),
        });
    };
    for (k, v) in params {
        fields.retain(|f| &f.name != k);
        fields.push(FormField {
            name: k.clone(),
            value: Tmpl::new(format!("{field}.{k}"), v),
            optional: false,
        });
    }
    Ok(())
}

/// Checks `callbackValues` names as the CRD does (local mode has no API server to do it).
fn callback_values(field: &str, names: &[String]) -> Result<Vec<String>> {
    for (i, n) in names.iter().enumerate() {
        if !crate::callback::is_value_name(n) {
            return Err(EngineError::InvalidSpec {
                field: format!("{field}.callbackValues[{i}]"),
                reason: "a callback value is named by a letter followed by at most 63 letters, digits, '_', '-' or '.', and not `state`".into(),
            });
        }
    }
    Ok(names.to_vec())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::fixtures::{flow, form, refused};

    #[test]
    fn client_credentials_with_basic_auth_is_the_default_and_scopes_are_one_parameter() {
        let f = flow(json!({"oauth2": {"tokenUrl": "https://idp.example/token", "scopes": ["a", "b"]}}));
        assert_eq!(f.scheme, "oauth2");
        let login = f.login.as_ref().expect("a token request");
        assert_eq!(login.method, http::Method::POST);
        assert_eq!(login.url.source, "https://idp.example/token");
        assert!(login.basic_auth.is_some(), "client_secret_basic");
        let fields = form(login);
        assert!(fields.contains(&("grant_type", "client_credentials")), "{fields:?}");
        assert!(fields.contains(&("scope", "a b")), "{fields:?}");
        assert!(
            !fields.iter().any(|(n, _)| *n == "client_secret"),
            "the secret goes in Basic only"
        );
    }

    #[test]
    fn client_secret_post_sends_the_client_in_the_form() {
        let f = flow(json!({"oauth2": {"tokenUrl": "https://idp.example/token", "clientAuth": "client_secret_post"}}));
        let login = f.login.as_ref().unwrap();
        assert!(login.basic_auth.is_none());
        let fields = form(login);
        assert!(fields.contains(&("client_id", "{{ client_id }}")), "{fields:?}");
        assert!(fields.contains(&("client_secret", "{{ client_secret }}")), "{fields:?}");
    }

    #[test]
    fn token_exchange_sends_the_service_account_token_as_the_subject_by_default() {
        let f = flow(json!({"oauth2": {
            "tokenUrl": "https://sts.example/token", "grantType": "tokenExchange", "clientAuth": "none",
            "audience": "https://api.example", "scopes": ["read"],
            "tokenExchange": {"requestedTokenType": "urn:ietf:params:oauth:token-type:access_token"},
        }}));
        let fields = form(f.login.as_ref().unwrap());
        for want in [
            ("grant_type", "urn:ietf:params:oauth:grant-type:token-exchange"),
            ("subject_token", "{{ service_account_token }}"),
            ("subject_token_type", "urn:ietf:params:oauth:token-type:jwt"),
            ("requested_token_type", "urn:ietf:params:oauth:token-type:access_token"),
            ("audience", "https://api.example"),
            ("scope", "read"),
        ] {
            assert!(fields.contains(&want), "{want:?} in {fields:?}");
        }
        assert!(f.uses_service_account_token);
        let e = refused(json!({"oauth2": {"tokenUrl": "https://x/t", "tokenExchange": {}}}));
        assert!(e.to_string().contains("spec.oauth2.tokenExchange"), "{e}");
    }

    #[test]
    fn state_is_never_a_callback_value() {
        let e = refused(json!({"oauth2": {
            "tokenUrl": "https://idp.example/token",
            "grantType": "authorizationCode",
            "authorizationUrl": "https://idp.example/authorize",
            "callbackValues": ["realmId", "state"],
        }}));
        assert!(e.to_string().contains("spec.oauth2.callbackValues[1]"), "{e}");
    }

    #[test]
    fn pkce_sends_the_verifier_in_the_exchange_and_needs_the_consent_flow() {
        let consent = |pkce: bool| {
            flow(json!({"oauth2": {
                "tokenUrl": "https://idp.example/token",
                "grantType": "authorizationCode",
                "authorizationUrl": "https://idp.example/authorize",
                "pkce": pkce,
            }}))
        };
        let with = consent(true);
        assert!(with.pkce);
        assert!(form(with.code_exchange.as_ref().unwrap()).contains(&("code_verifier", "{{ code_verifier }}")));
        let without = consent(false);
        assert!(!without.pkce);
        assert!(
            !form(without.code_exchange.as_ref().unwrap())
                .iter()
                .any(|(n, _)| *n == "code_verifier")
        );
        let e = refused(json!({"oauth2": {"tokenUrl": "https://idp.example/token", "pkce": true}}));
        assert!(e.to_string().contains("spec.oauth2.pkce"), "{e}");
    }
}
