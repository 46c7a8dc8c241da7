//! Every scheme compiles to one generic flow: login and refresh steps (render request → send →
//! extract), an optional static token, and an output plan. Scheme differences are defaults.

use std::collections::BTreeMap;

use crate::api::{self, ClientAuth, GrantType, Method, Scheme, SuperOfficeEnvironment};

use super::error::{EngineError, Result};
use super::extract::Locator;
use super::renewal::RenewalPolicy;
use super::template::Templates;

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
    pub method: reqwest::Method,
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
    pub default_token_type: &'static str,
    pub output: OutputPlan,
    pub renewal: RenewalPolicy,
}

impl Flow {
    /// Every template of the flow, for validation.
    pub fn templates(&self) -> Vec<&Tmpl> {
        let mut all: Vec<&Tmpl> = Vec::new();
        all.extend(self.static_token.iter());
        all.extend(self.authorization_url.iter());
        for step in [&self.login, &self.refresh, &self.code_exchange].into_iter().flatten() {
            all.push(&step.url);
            all.extend(step.headers.iter().map(|(_, t)| t));
            match &step.body {
                Body::None => {}
                Body::Raw(t) => all.push(t),
                Body::Form(f) => all.extend(f.iter().map(|f| &f.value)),
            }
            if let Some((u, p)) = &step.basic_auth {
                all.push(u);
                all.extend(p.iter());
            }
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
pub fn compile(spec: &api::ConnectorAuthSpec, templates: &Templates) -> Result<Flow> {
    let renewal = RenewalPolicy::from_spec(&spec.renewal)?;
    let mut flow = match &spec.scheme {
        Scheme::RefreshableToken(s) => refreshable(s)?,
        Scheme::OAuth2(s) => oauth2(
            "spec.oauth2",
            s,
            None,
            GrantType::ClientCredentials,
            ClientAuth::ClientSecretBasic,
        )?,
        Scheme::ApiKey(s) => api_key(s),
        Scheme::Jwt(s) => jwt(s)?,
        Scheme::Tripletex(s) => tripletex(s)?,
        Scheme::SuperOffice(s) => super_office(s)?,
    };
    flow.renewal = renewal;
    apply_output(&mut flow, &spec.output);
    for t in flow.templates() {
        templates.check(&t.field, &t.source)?;
    }
    Ok(flow)
}

fn method(m: Option<Method>) -> reqwest::Method {
    match m.unwrap_or(Method::Post) {
        Method::Get => reqwest::Method::GET,
        Method::Post => reqwest::Method::POST,
        Method::Put => reqwest::Method::PUT,
        Method::Patch => reqwest::Method::PATCH,
    }
}

fn request_step(name: &'static str, field: &str, r: &api::Request, extraction: Extraction) -> Result<Step> {
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

fn one(field: &str, e: &Option<api::Extract>) -> Result<Vec<Locator>> {
    e.as_ref()
        .map(|e| Locator::compile(field, e))
        .transpose()
        .map(|l| l.into_iter().collect())
}

/// Compiles extraction settings; unset fields fall back to `defaults`.
fn extraction(field: &str, e: &api::Extraction, defaults: &Extraction) -> Result<Extraction> {
    let pick = |name: &str, v: &Option<api::Extract>, d: &Vec<Locator>| -> Result<Vec<Locator>> {
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

fn json(paths: &[&str]) -> Vec<Locator> {
    paths
        .iter()
        .map(|p| Locator::json("default", p).expect("built-in JSONPath is valid"))
        .collect()
}

/// RFC 6749 §5.1 response fields.
fn oauth_defaults() -> Extraction {
    Extraction {
        access_token: json(&["access_token"]),
        refresh_token: json(&["refresh_token"]),
        expires_in: json(&["expires_in"]),
        expires_at: vec![],
        token_type: json(&["token_type"]),
        extras: vec![],
    }
}

fn base_flow(scheme: &'static str) -> Flow {
    Flow {
        scheme,
        static_token: None,
        login: None,
        refresh: None,
        seed_refresh_key: None,
        code_exchange: None,
        authorization_url: None,
        without_code: false,
        default_token_type: "Bearer",
        output: OutputPlan {
            header_name: "Authorization".into(),
            header_format: Tmpl::new("spec.output.header.format", "{{ access_token }}"),
            header_encode: false,
            header_value: Tmpl::new("spec.output.header.value", "Bearer {{ token_format }}"),
            extra_headers: vec![],
            templates: vec![],
            expose_refresh_token: false,
        },
        renewal: RenewalPolicy::default(),
    }
}

fn refreshable(s: &api::RefreshableToken) -> Result<Flow> {
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

fn jwt(s: &api::Jwt) -> Result<Flow> {
    let field = "spec.jwt";
    let defaults = Extraction {
        access_token: json(&["AccessToken", "access_token", "accessToken"]),
        refresh_token: json(&["RefreshToken", "refresh_token", "refreshToken"]),
        ..Default::default()
    };
    let login_ext = extraction(field, &s.extraction, &defaults)?;
    let mut flow = base_flow("jwt");
    if let Some(r) = &s.refresh {
        let ext = extraction(&format!("{field}.refresh"), &r.extraction, &login_ext)?;
        flow.refresh = Some(request_step("refresh", &format!("{field}.refresh"), &r.request, ext)?);
    }
    flow.login = Some(request_step("login", &format!("{field}.login"), &s.login, login_ext)?);
    Ok(flow)
}

fn api_key(s: &api::ApiKey) -> Flow {
    let mut flow = base_flow("apiKey");
    flow.static_token = Some(Tmpl::new(
        "spec.apiKey.key",
        s.key.as_deref().unwrap_or("{{ api_key }}"),
    ));
    flow.default_token_type = "ApiKey";
    flow.output.header_value = Tmpl::new("spec.output.header.value", "{{ token_format }}");
    flow
}

fn tripletex(s: &api::Tripletex) -> Result<Flow> {
    let base = s
        .base_url
        .as_deref()
        .unwrap_or("https://tripletex.no")
        .trim_end_matches('/');
    let days = s.session_days.unwrap_or(1);
    if !(1..=365).contains(&days) {
        return Err(EngineError::InvalidSpec {
            field: "spec.tripletex.sessionDays".into(),
            reason: format!("{days} is outside 1..365"),
        });
    }
    let consumer = s.consumer_token.as_deref().unwrap_or("{{ consumer_token }}");
    let employee = s.employee_token.as_deref().unwrap_or("{{ employee_token }}");
    let url = format!(
        "{base}/v2/token/session/:create?consumerToken={{{{ ({consumer}) | urlencode }}}}&employeeToken={{{{ ({employee}) | urlencode }}}}&expirationDate={{{{ now | date_add(days={days}) | date('%Y-%m-%d') }}}}",
        consumer = strip_braces(consumer),
        employee = strip_braces(employee),
    );
    let mut flow = base_flow("tripletex");
    flow.login = Some(Step {
        name: "login",
        method: reqwest::Method::PUT,
        url: Tmpl::new("spec.tripletex", url),
        headers: vec![],
        body: Body::None,
        basic_auth: None,
        extraction: Extraction {
            access_token: json(&["$.value.token"]),
            expires_at: json(&["$.value.expirationDate"]),
            ..Default::default()
        },
    });
    flow.default_token_type = "Basic";
    // Tripletex authenticates API calls as HTTP Basic with company id 0 (the employee's own
    // company) as user name and the session token as password.
    flow.output.header_format = Tmpl::new("spec.output.header.format", "0:{{ access_token }}");
    flow.output.header_encode = true;
    flow.output.header_value = Tmpl::new("spec.output.header.value", "Basic {{ token_format }}");
    Ok(flow)
}

/// `{{ consumer_token }}` → `consumer_token`, so a template can be embedded in an expression;
/// anything else becomes a string literal.
fn strip_braces(t: &str) -> String {
    let inner = t.trim();
    if let Some(expr) = inner.strip_prefix("{{").and_then(|s| s.strip_suffix("}}"))
        && !expr.contains("{{")
        && !expr.contains("}}")
    {
        return expr.trim().to_string();
    }
    serde_json::to_string(t).unwrap_or_default()
}

fn super_office(s: &api::SuperOffice) -> Result<Flow> {
    let env = match s.environment {
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
    let mut flow = oauth2(
        "spec.superOffice",
        o,
        Some(&default_url),
        GrantType::RefreshToken,
        ClientAuth::ClientSecretPost,
    )?;
    flow.scheme = "superOffice";
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

fn oauth2(
    field: &str,
    o: &api::OAuth2,
    default_url: Option<&str>,
    default_grant: GrantType,
    default_auth: ClientAuth,
) -> Result<Flow> {
    let grant = o.grant_type.unwrap_or(default_grant);
    let ext = extraction(field, &o.extraction, &oauth_defaults())?;
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

    let generated = |name: &'static str, grant_fields: Vec<(&str, Tmpl, bool)>, with_scope: bool| -> Result<Step> {
        let url = token_url.ok_or_else(|| EngineError::InvalidSpec {
            field: format!("{field}.tokenUrl"),
            reason: "is required unless tokenRequest and refreshRequest are both given".into(),
        })?;
        let mut form: Vec<FormField> = grant_fields
            .into_iter()
            .map(|(n, v, optional)| FormField {
                name: n.into(),
                value: v,
                optional,
            })
            .collect();
        if with_scope {
            form.extend(extra_params.iter().cloned());
        } else {
            form.extend(extra_params.iter().filter(|f| f.name != "scope").cloned());
        }
        let mut basic_auth = None;
        match o.client_auth.unwrap_or(default_auth) {
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
        }
        let mut headers: Vec<(String, Tmpl)> = vec![("Accept".into(), Tmpl::new(field, "application/json"))];
        headers.extend(
            o.headers
                .iter()
                .map(|(k, v)| (k.clone(), Tmpl::new(format!("{field}.headers.{k}"), v))),
        );
        Ok(Step {
            name,
            method: reqwest::Method::POST,
            url: Tmpl::new(format!("{field}.tokenUrl"), url),
            headers,
            body: Body::Form(form),
            basic_auth,
            extraction: ext.clone(),
        })
    };
    let t = |suffix: &str, src: &str| Tmpl::new(format!("{field}.{suffix}"), src);

    let mut flow = base_flow("oauth2");
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
        GrantType::RefreshToken => {
            flow.seed_refresh_key = Some(o.refresh_token_key.clone().unwrap_or_else(|| "refresh_token".into()));
        }
        GrantType::AuthorizationCode => {
            flow.code_exchange = Some(match custom_first("code exchange")? {
                Some(s) => s,
                None => generated(
                    "code exchange",
                    vec![
                        ("grant_type", t("grantType", "authorization_code"), false),
                        ("code", t("grantType", "{{ code }}"), o.without_code), // withoutCode: no code in the callback
                        ("redirect_uri", t("grantType", "{{ redirect_url }}"), true),
                    ],
                    false,
                )?,
            });
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
            // A refresh token put into the credentials (e.g. migrated from another platform)
            // is used instead of asking for consent again.
            flow.seed_refresh_key = o.refresh_token_key.clone().or_else(|| Some("refresh_token".into()));
        }
    }
    Ok(flow)
}

fn apply_output(flow: &mut Flow, o: &api::Output) {
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
];

/// A map with string keys sorted, for stable `headers.json`.
pub type Headers = BTreeMap<String, String>;
