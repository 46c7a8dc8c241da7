//! Every scheme compiles to one generic flow: login and refresh steps (render request → send →
//! extract), an optional static token, and an output plan. Scheme differences are defaults,
//! each in a file named after its scheme (`engine/schemes/`); this file holds the shared parts.

use std::collections::BTreeMap;

use crate::spec::{self, Method};

use crate::assertion;
use crate::error::{EngineError, Result};
use crate::extract::Locator;
pub use crate::extract::ResponseFields;
use crate::renewal::RenewalPolicy;
pub use crate::template::Tmpl;

#[derive(Debug, Clone)]
pub enum Body {
    None,
    Raw(Tmpl),
    /// Form fields; optional ones are left out when their variables are undefined.
    Form(Vec<FormField>),
}

#[derive(Debug, Clone)]
pub struct FormField {
    pub name: String,
    pub value: Tmpl,
    pub optional: bool,
}

/// How values are read from a step's response.
#[derive(Debug, Clone, Default)]
pub struct Extraction {
    pub access_token: Vec<Locator>,
    pub refresh_token: Vec<Locator>,
    pub expires_in: Vec<Locator>,
    pub expires_at: Vec<Locator>,
    pub token_type: Vec<Locator>,
    pub extras: Vec<(String, Locator)>,
    /// `oauth2.errorCode`: an error code in an answer that otherwise looks like a success.
    pub error: Option<ErrorRule>,
}

/// Where an answer reports an error despite its status, and which codes mean `invalid_grant`.
#[derive(Debug, Clone)]
pub struct ErrorRule {
    pub at: Locator,
    pub invalid_grant: Vec<String>,
}

/// One token request.
#[derive(Debug, Clone)]
pub struct Step {
    /// `login`, `refresh` or `code exchange`: names the step in errors and logs.
    pub name: &'static str,
    pub method: http::Method,
    pub url: Tmpl,
    pub headers: Vec<(String, Tmpl)>,
    pub body: Body,
    /// HTTP Basic client authentication (user, optional password).
    pub basic_auth: Option<(Tmpl, Option<Tmpl>)>,
    pub extraction: Extraction,
}

/// How the output Secret is rendered.
#[derive(Debug, Clone)]
pub struct OutputPlan {
    pub header_name: String,
    pub header_format: Tmpl,
    pub header_encode: bool,
    pub header_value: Tmpl,
    pub extra_headers: Vec<(String, Tmpl)>,
    pub templates: Vec<(String, Tmpl)>,
    pub expose_refresh_token: bool,
    /// Publish the previous token beside the current one until it expires.
    pub keep_previous: bool,
}

/// One compiled step of a chained login.
#[derive(Debug, Clone)]
pub struct ChainStep {
    /// The user's name for it: template variable prefix and label in errors.
    pub name: String,
    pub step: Step,
    pub extract: Vec<(String, Locator)>,
}

impl ChainStep {
    /// How errors and logs name the step.
    pub fn label(&self) -> String {
        let kind = if self.step.name == "lookup" { "lookup" } else { "step" };
        format!("{kind} {}", self.name)
    }
}

/// A compiled scheme.
#[derive(Debug, Clone)]
pub struct Flow {
    pub scheme: &'static str,
    /// API keys: the token is rendered, not requested.
    pub static_token: Option<Tmpl>,
    /// Gets a token from the credentials alone.
    pub login: Option<Step>,
    /// Gets a token from `{{ refresh_token }}`.
    pub refresh: Option<Step>,
    /// Credentials key holding a refresh token issued at onboarding.
    pub seed_refresh_key: Option<String>,
    /// Authorization-code grant: exchanges `{{ code }}` for tokens.
    pub code_exchange: Option<Step>,
    pub authorization_url: Option<Tmpl>,
    pub without_code: bool,
    /// PKCE (S256): the consent link carries a challenge, the code exchange the verifier.
    pub pkce: bool,
    /// Consent callback parameters kept besides `code` (`spec.oauth2.callbackValues`), as
    /// `{{ callback.<name> }}`; every other parameter is dropped where it enters.
    pub callback_values: Vec<String>,
    /// The callback parameter carrying the code (`oauth2.codeParameter`, default `code`).
    pub code_parameter: String,
    /// `oauth2.callbackHmac`: the parameter holding the signature and the key's template.
    pub callback_hmac: Option<(String, Tmpl)>,
    /// Extra query parameters of the consent link (`oauth2.authorizationParams`).
    pub authorization_params: Vec<(String, Tmpl)>,
    /// Requests run once per grant after the token is issued; their values are kept with it
    /// (`oauth2.lookups`, see `engine::chain`).
    pub lookups: Vec<ChainStep>,
    /// The code exchange's templates do not place `{{ code }}`: the code is appended to its URL
    /// as a query parameter, as ChiefOnboarding does with its `access_token` request.
    pub append_code: bool,
    /// Which fields of a token response are kept for `{{ oauth.<field> }}` templates.
    pub response_fields: ResponseFields,
    /// A refresh answer without any expiry keeps the previous lifetime (oauth2: the token
    /// responses are merged, so the last `expires_in` still holds).
    pub refresh_keeps_lifetime: bool,
    pub default_token_type: &'static str,
    pub output: OutputPlan,
    pub renewal: RenewalPolicy,
    /// JWTs signed for each request that uses their variable (see `engine::assertion`).
    pub assertions: Vec<assertion::Plan>,
    /// Requests sent in order before `login` (see `engine::chain`).
    pub chain: Vec<ChainStep>,
    /// `oauth2.dpop`: the credentials key of the DPoP key and its algorithm.
    pub dpop: Option<(String, spec::JwtAlgorithm)>,
    /// Some template reads `{{ service_account_token }}`: a fresh ServiceAccount token is
    /// fetched before each request that may read it (never stored).
    pub uses_service_account_token: bool,
    /// `spec.verify`: proves a published credential works (see `engine::verify`).
    pub verify: Option<Step>,
    /// RFC 7009 revocation on delete (oauth2 with `revocationUrl`).
    pub revocation: Option<Revocation>,
}

/// The two revocation requests (refresh token, then access token) and their time limit.
#[derive(Debug, Clone)]
pub struct Revocation {
    pub refresh: Step,
    pub access: Step,
    /// For both requests together.
    pub timeout: std::time::Duration,
}

/// The templates of one request.
pub(crate) fn step_templates(step: &Step) -> impl Iterator<Item = &Tmpl> {
    let body: Vec<&Tmpl> = match &step.body {
        Body::None => vec![],
        Body::Raw(t) => vec![t],
        Body::Form(f) => f.iter().map(|f| &f.value).collect(),
    };
    std::iter::once(&step.url)
        .chain(step.headers.iter().map(|(_, t)| t))
        .chain(body)
        .chain(
            step.basic_auth
                .iter()
                .flat_map(|(u, p)| std::iter::once(u).chain(p.iter())),
        )
}

impl Flow {
    /// Every template of the flow, for validation.
    pub fn templates(&self) -> Vec<&Tmpl> {
        let mut all: Vec<&Tmpl> = Vec::new();
        all.extend(self.static_token.iter());
        all.extend(self.authorization_url.iter());
        for plan in &self.assertions {
            all.extend(plan.templates());
        }
        all.extend(self.authorization_params.iter().map(|(_, t)| t));
        all.extend(self.callback_hmac.iter().map(|(_, t)| t));
        let chained = self.chain.iter().chain(&self.lookups).map(|c| &c.step);
        let revocation = self.revocation.iter().flat_map(|r| [&r.refresh, &r.access]);
        for step in [&self.login, &self.refresh, &self.code_exchange, &self.verify]
            .into_iter()
            .flatten()
            .chain(chained)
            .chain(revocation)
        {
            all.extend(step_templates(step));
        }
        let o = &self.output;
        all.extend([&o.header_format, &o.header_value]);
        all.extend(o.extra_headers.iter().map(|(_, t)| t));
        all.extend(o.templates.iter().map(|(_, t)| t));
        all
    }
}

pub(crate) fn method(m: Option<Method>) -> http::Method {
    match m.unwrap_or(Method::Post) {
        Method::Get => http::Method::GET,
        Method::Post => http::Method::POST,
        Method::Put => http::Method::PUT,
        Method::Patch => http::Method::PATCH,
    }
}

pub(crate) fn request_step(name: &'static str, field: &str, r: &spec::Request, extraction: Extraction) -> Result<Step> {
    if r.url.trim().is_empty() {
        return Err(EngineError::InvalidSpec {
            field: format!("{field}.url"),
            reason: "must not be empty".into(),
        });
    }
    if r.body.is_some() && !r.form.is_empty() {
        return Err(EngineError::InvalidSpec {
            field: field.into(),
            reason: "set either body or form, not both".into(),
        });
    }
    let body = if let Some(b) = &r.body {
        Body::Raw(Tmpl::new(format!("{field}.body"), b))
    } else if !r.form.is_empty() {
        Body::Form(
            r.form
                .iter()
                .map(|(k, v)| FormField {
                    name: k.clone(),
                    value: Tmpl::new(format!("{field}.form.{k}"), v),
                    optional: false,
                })
                .collect(),
        )
    } else {
        Body::None
    };
    Ok(Step {
        name,
        method: method(r.method),
        url: Tmpl::new(format!("{field}.url"), &r.url),
        headers: r
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), Tmpl::new(format!("{field}.headers.{k}"), v)))
            .collect(),
        body,
        basic_auth: None,
        extraction,
    })
}

/// Compiles chained requests (`refreshableToken.steps`, `oauth2.lookups`): names unique and
/// usable as template variables, each extracting something. `kind` names them in errors.
pub(crate) fn chain_steps(field: &str, kind: &'static str, steps: &[spec::ChainStep]) -> Result<Vec<ChainStep>> {
    let mut out: Vec<ChainStep> = Vec::new();
    for s in steps {
        let f = format!("{field}[{}]", s.name);
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
            step: request_step(kind, &f, &s.request, Extraction::default())?,
            extract,
        });
    }
    Ok(out)
}

pub(crate) fn one(field: &str, e: &Option<spec::Extract>) -> Result<Vec<Locator>> {
    e.as_ref()
        .map(|e| Locator::compile(field, e))
        .transpose()
        .map(|l| l.into_iter().collect())
}

/// Compiles extraction settings; unset fields fall back to `defaults`.
pub(crate) fn extraction(field: &str, e: &spec::Extraction, defaults: &Extraction) -> Result<Extraction> {
    let pick = |name: &str, v: &Option<spec::Extract>, d: &Vec<Locator>| -> Result<Vec<Locator>> {
        let l = one(&format!("{field}.{name}"), v)?;
        Ok(if l.is_empty() { d.clone() } else { l })
    };
    let mut extras = defaults.extras.clone();
    for (k, v) in &e.extras {
        extras.retain(|(name, _)| name != k);
        extras.push((k.clone(), Locator::compile(&format!("{field}.extras.{k}"), v)?));
    }
    Ok(Extraction {
        access_token: pick("accessToken", &e.access_token, &defaults.access_token)?,
        refresh_token: pick("refreshToken", &e.refresh_token, &defaults.refresh_token)?,
        expires_in: pick("expiresIn", &e.expires_in, &defaults.expires_in)?,
        expires_at: pick("expiresAt", &e.expires_at, &defaults.expires_at)?,
        token_type: pick("tokenType", &e.token_type, &defaults.token_type)?,
        extras,
        error: defaults.error.clone(),
    })
}

pub(crate) fn json(paths: &[&str]) -> Vec<Locator> {
    paths
        .iter()
        .map(|p| Locator::json("default", p).expect("built-in JSONPath is valid"))
        .collect()
}

/// RFC 6749 §5.1 response fields.
pub(crate) fn oauth_defaults() -> Extraction {
    Extraction {
        access_token: json(&["access_token"]),
        refresh_token: json(&["refresh_token"]),
        expires_in: json(&["expires_in"]),
        expires_at: vec![],
        token_type: json(&["token_type"]),
        extras: vec![],
        error: None,
    }
}

pub(crate) fn base_flow() -> Flow {
    Flow {
        scheme: "",
        static_token: None,
        login: None,
        refresh: None,
        seed_refresh_key: None,
        code_exchange: None,
        authorization_url: None,
        without_code: false,
        pkce: false,
        callback_values: vec![],
        code_parameter: "code".into(),
        callback_hmac: None,
        authorization_params: vec![],
        lookups: vec![],
        append_code: false,
        response_fields: ResponseFields::None,
        refresh_keeps_lifetime: false,
        default_token_type: "Bearer",
        output: OutputPlan {
            header_name: "Authorization".into(),
            header_format: Tmpl::new("spec.output.header.format", "{{ access_token }}"),
            header_encode: false,
            header_value: Tmpl::new("spec.output.header.value", "Bearer {{ token_format }}"),
            extra_headers: vec![],
            templates: vec![],
            expose_refresh_token: false,
            keep_previous: false,
        },
        renewal: RenewalPolicy::default(),
        assertions: vec![],
        chain: vec![],
        dpop: None,
        uses_service_account_token: false,
        verify: None,
        revocation: None,
    }
}

/// The output Secret keys the engine itself writes; templates may not overwrite them.
pub const RESERVED_KEYS: &[&str] = &[
    "access_token",
    "token_type",
    "expires_at",
    "header_name",
    "header_value",
    "headers.json",
    "refresh_token",
    "previous_access_token",
    "previous_headers.json",
    "cnf_x5t_s256",
];

/// A map with string keys sorted, for stable `headers.json`.
pub type Headers = BTreeMap<String, String>;
