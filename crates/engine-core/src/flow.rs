//! Every scheme compiles to one generic flow: login and refresh steps (render request → send →
//! extract), an optional static token, and an output plan. Scheme differences are defaults,
//! each in a file named after its scheme (`engine/schemes/`); this file holds the shared parts.

use std::collections::BTreeMap;

use crate::spec::{self, ClientAuth, GrantType, Method, Publish, Scheme, Spec};

use crate::assertion;
use crate::chain::ChainStep;
use crate::error::{EngineError, Result};
use crate::extract::Locator;
use crate::renewal::RenewalPolicy;
use crate::schemes;
use crate::template::Templates;

/// A template together with the spec field it came from (for error messages).
#[derive(Debug, Clone, PartialEq)]
pub struct Tmpl {
    pub field: String,
    pub source: String,
}

impl Tmpl {
    pub fn new(field: impl Into<String>, source: impl Into<String>) -> Self {
        Tmpl {
            field: field.into(),
            source: source.into(),
        }
    }
}

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

/// Fields of the last token response that templates read as `{{ oauth.<field> }}`. Only these
/// are kept (in private state), so a resource that reads none keeps nothing extra.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum ResponseFields {
    #[default]
    None,
    /// The fields named by `oauth.<field>` in the templates.
    Named(std::collections::BTreeSet<String>),
    /// A template reads `oauth` as a whole: every top-level scalar field, within
    /// [`ALL_FIELDS_MAX`] fields of at most [`ALL_FIELD_BYTES`] each.
    All,
}

/// Bounds of [`ResponseFields::All`]: larger fields are not kept.
pub const ALL_FIELDS_MAX: usize = 32;
pub const ALL_FIELD_BYTES: usize = 4096;
/// Bound of a field named in a template; a larger one is an error, never silently cut.
pub const NAMED_FIELD_BYTES: usize = 16 * 1024;

impl ResponseFields {
    /// Which fields the templates read under `oauth.`. `access_token` and `refresh_token` are
    /// the token state's own and are not kept twice.
    fn of<'a>(paths: impl IntoIterator<Item = &'a str>) -> Self {
        let mut named = std::collections::BTreeSet::new();
        for p in paths {
            match p.strip_prefix("oauth") {
                Some("") => return ResponseFields::All,
                Some(rest) => {
                    if let Some(field) = rest.strip_prefix('.').and_then(|r| r.split('.').next())
                        && !matches!(field, "access_token" | "refresh_token")
                    {
                        named.insert(field.to_string());
                    }
                }
                None => {}
            }
        }
        if named.is_empty() {
            ResponseFields::None
        } else {
            ResponseFields::Named(named)
        }
    }

    pub fn wants(&self, field: &str) -> bool {
        match self {
            ResponseFields::None => false,
            ResponseFields::Named(n) => n.contains(field),
            ResponseFields::All => true,
        }
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
    /// Consent callback parameters kept besides `code` (`spec.oauth2.callbackValues`), as
    /// `{{ callback.<name> }}`; every other parameter is dropped where it enters.
    pub callback_values: Vec<String>,
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
fn step_templates(step: &Step) -> impl Iterator<Item = &Tmpl> {
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
        let chained = self.chain.iter().map(|c| &c.step);
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
    if let Some(step) = &flow.code_exchange {
        flow.append_code = !flow.without_code
            && !step_templates(step).any(|t| templates.variables(&t.source).iter().any(|v| v == "code"));
    }
    Ok(flow)
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
        callback_values: vec![],
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
        verify: None,
        revocation: None,
    }
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
];

/// A map with string keys sorted, for stable `headers.json`.
pub type Headers = BTreeMap<String, String>;
