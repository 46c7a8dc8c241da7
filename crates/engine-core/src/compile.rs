//! Compiling a spec: the scheme's defaults (`schemes/`), then the shared parts (output,
//! renewal, verify), then every template, JSONPath and duration checked, so a broken spec fails
//! here with the field named, before any request is sent.

use crate::error::{EngineError, Result};
use crate::extract::ResponseFields;
use crate::flow::{Flow, OutputPlan, Tmpl, step_templates};
use crate::renewal::RenewalPolicy;
use crate::schemes;
use crate::spec::{self, ClientAuth, GrantType, Publish, Scheme, Spec};
use crate::template::Templates;

/// Compiles a spec: applies the scheme's defaults, parses JSONPaths, durations and templates,
/// so a broken spec fails here with the field named, before any request is sent.
pub fn compile(spec: &Spec<'_>, templates: &Templates) -> Result<Flow> {
    let renewal = RenewalPolicy::from_spec(spec.renewal)?;
    let mut flow = match spec.scheme {
        Scheme::RefreshableToken(s) => schemes::refreshable_token::compile(s)?,
        Scheme::OAuth2(s) => schemes::oauth2::compile(
            "spec.oauth2",
            s,
            None,
            GrantType::ClientCredentials,
            ClientAuth::ClientSecretBasic,
        )?,
        Scheme::ApiKey(s) => schemes::api_key::compile(s),
        Scheme::Jwt(s) => schemes::jwt::compile(s)?,
        Scheme::Tripletex(s) => schemes::tripletex::compile(s)?,
        Scheme::SuperOffice(s) => schemes::super_office::compile(s)?,
        Scheme::GithubApp(s) => schemes::github_app::compile(s)?,
    };
    flow.scheme = spec.scheme.name();
    for plan in &mut flow.assertions {
        plan.secret = spec.credentials_secret.to_string();
    }
    flow.renewal = renewal;
    flow.refresh_keeps_lifetime = matches!(spec.scheme, Scheme::OAuth2(_) | Scheme::SuperOffice(_));
    apply_output(&mut flow, &spec.publish);
    check_header_names(&flow.output)?;
    flow.verify = spec.verify.map(crate::verify::compile).transpose()?;
    for t in flow.templates() {
        templates.check(&t.field, &t.source)?;
    }
    let paths: Vec<String> = flow
        .templates()
        .iter()
        .flat_map(|t| templates.paths(&t.source))
        .collect();
    flow.response_fields = ResponseFields::of(paths.iter().map(String::as_str));
    flow.uses_service_account_token = paths.iter().any(|p| p == "service_account_token");
    for t in flow.templates() {
        for path in templates.paths(&t.source) {
            if let Some(name) = path.strip_prefix("callback.").map(|p| p.split('.').next().unwrap_or(p))
                && name != "code"
                && !flow.callback_values.iter().any(|v| v == name)
            {
                return Err(EngineError::InvalidSpec {
                    field: t.field.clone(),
                    reason: format!(
                        "reads `callback.{name}`, which is not declared in spec.oauth2.callbackValues (only declared callback values are kept)"
                    ),
                });
            }
        }
    }
    for t in flow.templates() {
        for path in templates.paths(&t.source) {
            let Some(rest) = path.strip_prefix("lookup.") else {
                continue;
            };
            let mut parts = rest.split('.');
            let (name, key) = (parts.next().unwrap_or_default(), parts.next());
            let declared = flow
                .lookups
                .iter()
                .find(|l| l.name == name)
                .is_some_and(|l| key.is_none_or(|k| l.extract.iter().any(|(e, _)| e == k)));
            if !declared {
                return Err(EngineError::InvalidSpec {
                    field: t.field.clone(),
                    reason: format!("reads `lookup.{rest}`, which no entry of spec.oauth2.lookups extracts"),
                });
            }
        }
    }
    if let Some(step) = &flow.code_exchange {
        flow.append_code = !flow.without_code
            && !step_templates(step).any(|t| templates.variables(&t.source).iter().any(|v| v == "code"));
    }
    Ok(flow)
}

fn apply_output(flow: &mut Flow, o: &Publish<'_>) {
    if let Some(h) = &o.header {
        if let Some(n) = &h.name {
            flow.output.header_name = n.clone();
        }
        if let Some(f) = &h.format {
            flow.output.header_format = Tmpl::new("spec.output.header.format", f);
        }
        if h.encode {
            flow.output.header_encode = true;
        }
        if let Some(v) = &h.value {
            flow.output.header_value = Tmpl::new("spec.output.header.value", v);
        }
        for (k, v) in &h.extra {
            flow.output
                .extra_headers
                .retain(|(name, _)| !name.eq_ignore_ascii_case(k));
            flow.output
                .extra_headers
                .push((k.clone(), Tmpl::new(format!("spec.output.header.extra.{k}"), v)));
        }
    }
    flow.output.templates = o
        .template
        .iter()
        .map(|(k, v)| (k.clone(), Tmpl::new(format!("spec.output.template.{k}"), v)))
        .collect();
    flow.output.expose_refresh_token = o.expose_refresh_token;
    flow.output.keep_previous = o.keep_previous;
}

/// Header names are published and sent as they are: they must be HTTP tokens (the CRD checks
/// the same; local mode has no API server to do it).
fn check_header_names(o: &OutputPlan) -> Result<()> {
    let fields = std::iter::once(("spec.output.header.name".to_string(), &o.header_name)).chain(
        o.extra_headers
            .iter()
            .map(|(n, _)| (format!("spec.output.header.extra.{n}"), n)),
    );
    for (field, name) in fields {
        if !spec::is_header_name(name) {
            return Err(EngineError::InvalidSpec {
                field,
                reason: "is not an HTTP header name (letters, digits and !#$%&*+.^_|~- only, at most 256)".into(),
            });
        }
    }
    Ok(())
}
