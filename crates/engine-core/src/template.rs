//! Templates: every string of a scheme is a minijinja template over the credentials and the
//! current token state. Undefined variables are errors that name the variable, never a silent
//! empty string.

use std::collections::BTreeMap;

/// Template variables the operator fills in itself; every other variable a template reads is a
/// key of the credentials Secret.
pub const PROVIDED_VARIABLES: &[&str] = &[
    "access_token",
    "refresh_token",
    "oauth",
    "redirect_url",
    "now",
    "code",
    "state",
    "token_type",
    "expires_at",
    "token_format",
    // Locoia's name for the access token in output templates.
    "token",
    "so_ticket",
    // Signed per request (signed assertions, GitHub Apps) and chained steps' values.
    "assertion",
    "client_assertion",
    "github_app_jwt",
    "token_url",
    "steps",
    // Values of the post-connect lookups (`{{ lookup.tenant.id }}`).
    "lookup",
    // Values of the consent callback (`{{ callback.realmId }}`).
    "callback",
    // The PKCE verifier of the consent being completed (`oauth2.pkce`).
    "code_verifier",
    // A fresh bound token of `spec.serviceAccountToken` (TokenRequest, or a projected file).
    "service_account_token",
];

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jiff::{Timestamp, ToSpan};
use minijinja::value::{Kwargs, Value};
use minijinja::{Environment, ErrorKind, UndefinedBehavior};

use crate::error::{EngineError, Result};
use crate::secret::SecretString;

/// Prefixes of [`TemplateContext::extra`] keys that nest (`steps.<step>.<key>`).
const NESTED: &[&str] = &["steps", "lookup"];

/// Everything a template can see.
#[derive(Clone, Debug, Default)]
pub struct TemplateContext {
    /// The credentials Secret's keys, as given.
    pub credentials: BTreeMap<String, SecretString>,
    pub access_token: Option<SecretString>,
    pub refresh_token: Option<SecretString>,
    /// Fields of the last token response kept for `{{ oauth.<field> }}` (ChiefOnboarding keeps
    /// the whole response as `oauth`); `access_token` and `refresh_token` above take precedence.
    pub oauth: BTreeMap<String, SecretString>,
    /// The operator's OAuth2 callback URL, when it serves one.
    pub redirect_url: Option<String>,
    /// Values of the current issuance (`token_type`, `expires_at`, extras, `token_format`…).
    pub extra: BTreeMap<String, SecretString>,
    /// Values of a consent callback ([`crate::callback::accept`]): `{{ callback.<name> }}`, and
    /// `code` also as `{{ code }}` unless a credential has that name. Nothing here ever
    /// replaces a credential.
    pub callback: BTreeMap<String, SecretString>,
    pub now: Option<Timestamp>,
}

impl TemplateContext {
    fn to_value(&self) -> Value {
        let mut map: BTreeMap<String, Value> = BTreeMap::new();
        for (k, v) in &self.credentials {
            map.insert(k.clone(), Value::from(v.expose()));
        }
        let mut oauth: BTreeMap<&str, Value> = self
            .oauth
            .iter()
            .map(|(k, v)| (k.as_str(), Value::from(v.expose())))
            .collect();
        if let Some(t) = &self.access_token {
            map.insert("access_token".into(), Value::from(t.expose()));
            oauth.insert("access_token", Value::from(t.expose()));
        }
        if let Some(t) = &self.refresh_token {
            map.insert("refresh_token".into(), Value::from(t.expose()));
            oauth.insert("refresh_token", Value::from(t.expose()));
        }
        map.insert(
            "oauth".into(),
            Value::from(
                oauth
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v))
                    .collect::<BTreeMap<String, Value>>(),
            ),
        );
        if let Some(r) = &self.redirect_url {
            map.insert("redirect_url".into(), Value::from(r.as_str()));
        }
        // Values of chained steps (`steps.<step>.<key>`) and lookups (`lookup.<name>.<key>`)
        // nest, so `{{ steps.login.id }}` works.
        let mut nested: BTreeMap<&str, BTreeMap<String, BTreeMap<String, Value>>> = BTreeMap::new();
        for (k, v) in &self.extra {
            let split = k.split_once('.').filter(|(p, _)| NESTED.contains(p));
            match split.and_then(|(p, r)| Some((p, r.split_once('.')?))) {
                Some((prefix, (name, key))) => {
                    nested
                        .entry(prefix)
                        .or_default()
                        .entry(name.to_string())
                        .or_default()
                        .insert(key.to_string(), Value::from(v.expose()));
                }
                None => {
                    map.insert(k.clone(), Value::from(v.expose()));
                }
            }
        }
        if !self.callback.is_empty() {
            if let Some(code) = self.callback.get("code")
                && !self.credentials.contains_key("code")
            {
                map.insert("code".into(), Value::from(code.expose()));
            }
            let values: BTreeMap<String, Value> = self
                .callback
                .iter()
                .map(|(k, v)| (k.clone(), Value::from(v.expose())))
                .collect();
            map.insert("callback".into(), Value::from(values));
        }
        for (prefix, names) in nested {
            let names: BTreeMap<String, Value> = names.into_iter().map(|(k, v)| (k, Value::from(v))).collect();
            map.insert(prefix.into(), Value::from(names));
        }
        let now = self.now.unwrap_or_else(Timestamp::now);
        map.insert("now".into(), Value::from(now.to_string()));
        Value::from(map)
    }

    /// Names a template may use, for error messages (names only, never values).
    fn available(&self) -> String {
        let mut names: Vec<String> = self.credentials.keys().cloned().collect();
        if self.access_token.is_some() {
            names.push("access_token".into());
            names.push("oauth.access_token".into());
        }
        if self.refresh_token.is_some() {
            names.push("refresh_token".into());
            names.push("oauth.refresh_token".into());
        }
        if self.redirect_url.is_some() {
            names.push("redirect_url".into());
        }
        names.extend(self.oauth.keys().map(|k| format!("oauth.{k}")));
        names.extend(self.extra.keys().cloned());
        names.extend(self.callback.keys().map(|k| format!("callback.{k}")));
        if self.callback.contains_key("code") {
            names.push("code".into());
        }
        names.push("now".into());
        names.sort();
        names.dedup();
        names.join(", ")
    }
}

/// The work one render may do, in minijinja fuel: about one unit per instruction and per 64
/// bytes of data made. 200,000 is some 12 MB at the very most, and thousands of times what any
/// real template needs (a 4 KiB private key through `b64encode` costs about 150).
pub const TEMPLATE_FUEL: u64 = 200_000;

/// The longest text one template may render to. A Secret holds 1 MiB in all.
pub const MAX_OUTPUT_BYTES: usize = 256 * 1024;

/// The template environment: strict undefined, no auto-escaping, our filters.
pub struct Templates {
    env: Environment<'static>,
}

impl Default for Templates {
    fn default() -> Self {
        Self::new()
    }
}

impl Templates {
    pub fn new() -> Self {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_fuel(Some(TEMPLATE_FUEL));
        env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
        env.add_filter("b64encode", |s: &str| STANDARD.encode(s.as_bytes()));
        env.add_filter("b64url_encode", |s: &str| URL_SAFE_NO_PAD.encode(s.as_bytes()));
        env.add_filter("b64decode", b64decode);
        env.add_filter("date", date_format);
        env.add_filter("date_add", date_add);
        env.add_filter("timestamp", |s: &str| -> std::result::Result<i64, minijinja::Error> {
            Ok(parse_time(s)?.as_second())
        });
        Self { env }
    }

    /// Checks that `source` parses, naming `field` if it does not.
    pub fn check(&self, field: &str, source: &str) -> Result<()> {
        self.env
            .template_from_str(source)
            .map(|_| ())
            .map_err(|e| EngineError::Template {
                field: field.to_string(),
                reason: describe(&e),
            })
    }

    /// The top-level variables a template reads.
    pub fn variables(&self, source: &str) -> Vec<String> {
        match self.env.template_from_str(source) {
            Ok(t) => {
                let mut v: Vec<String> = t.undeclared_variables(false).into_iter().collect();
                v.sort();
                v
            }
            Err(_) => Vec::new(),
        }
    }

    /// The variables a template reads, with attribute paths (`oauth.refresh_token`); a variable
    /// read in a way that names no attribute (`oauth['x']`, `oauth | tojson`) is given bare.
    pub fn paths(&self, source: &str) -> Vec<String> {
        match self.env.template_from_str(source) {
            Ok(t) => t.undeclared_variables(true).into_iter().collect(),
            Err(_) => Vec::new(),
        }
    }

    /// Renders `source`; `field` names it in errors (e.g. `spec.oauth2.tokenUrl`).
    pub fn render(&self, field: &str, source: &str, ctx: &TemplateContext) -> Result<String> {
        let tmpl = self.env.template_from_str(source).map_err(|e| EngineError::Template {
            field: field.to_string(),
            reason: describe(&e),
        })?;
        let value = ctx.to_value();
        let out = tmpl.render(&value).map_err(|e| {
            if e.kind() == ErrorKind::OutOfFuel {
                EngineError::Template {
                    field: field.to_string(),
                    reason: format!(
                        "the template does too much work (more than {TEMPLATE_FUEL} steps or about {} MB of data): simplify its loops and string operations",
                        TEMPLATE_FUEL * 64 / 1_000_000
                    ),
                }
            } else if e.kind() == ErrorKind::UndefinedError {
                let missing = tmpl
                    .undeclared_variables(true)
                    .into_iter()
                    .filter(|name| !is_defined(&value, name))
                    .min()
                    .unwrap_or_else(|| "?".to_string());
                EngineError::UndefinedVariable {
                    field: field.to_string(),
                    variable: missing,
                    available: ctx.available(),
                }
            } else {
                EngineError::Template {
                    field: field.to_string(),
                    reason: describe(&e),
                }
            }
        })?;
        if out.len() > MAX_OUTPUT_BYTES {
            return Err(EngineError::Template {
                field: field.to_string(),
                reason: format!(
                    "renders to {} bytes, more than the {} KiB a template may produce",
                    out.len(),
                    MAX_OUTPUT_BYTES / 1024
                ),
            });
        }
        Ok(out)
    }
}

/// Whether a dotted variable path resolves in the context.
fn is_defined(ctx: &Value, path: &str) -> bool {
    let mut cur = ctx.clone();
    for part in path.split('.') {
        match cur.get_attr(part) {
            Ok(v) if !v.is_undefined() => cur = v,
            _ => return false,
        }
    }
    true
}

/// Error text without template source or values: the kind and minijinja's short detail.
fn describe(e: &minijinja::Error) -> String {
    match e.detail() {
        Some(d) => format!("{}: {d}", e.kind()),
        None => e.kind().to_string(),
    }
}

fn b64decode(s: &str) -> std::result::Result<String, minijinja::Error> {
    let bytes = STANDARD
        .decode(s.trim())
        .or_else(|_| URL_SAFE_NO_PAD.decode(s.trim().trim_end_matches('=')))
        .map_err(|_| minijinja::Error::new(ErrorKind::InvalidOperation, "b64decode: input is not base64"))?;
    String::from_utf8(bytes)
        .map_err(|_| minijinja::Error::new(ErrorKind::InvalidOperation, "b64decode: result is not UTF-8"))
}

/// Parses RFC 3339 timestamps, dates (`2026-11-22`, taken as midnight UTC) and Unix seconds.
pub fn parse_time(s: &str) -> std::result::Result<Timestamp, minijinja::Error> {
    let s = s.trim();
    if let Ok(t) = s.parse::<Timestamp>() {
        return Ok(t);
    }
    if let Ok(d) = s.parse::<jiff::civil::Date>()
        && let Ok(z) = d.to_zoned(jiff::tz::TimeZone::UTC)
    {
        return Ok(z.timestamp());
    }
    if let Ok(secs) = s.parse::<i64>()
        && let Ok(t) = Timestamp::from_second(secs)
    {
        return Ok(t);
    }
    // Unix seconds written as a JSON number with a fraction or exponent (`1.7e9`, AWS's JSON
    // answers).
    if let Ok(secs) = s.parse::<f64>()
        && secs.is_finite()
        && secs.abs() < 1e15
        && let Ok(t) = Timestamp::from_second(secs.trunc() as i64)
    {
        return Ok(t);
    }
    Err(minijinja::Error::new(
        ErrorKind::InvalidOperation,
        "not a time (expected RFC 3339, YYYY-MM-DD or Unix seconds)",
    ))
}

fn time_arg(v: &Value) -> std::result::Result<Timestamp, minijinja::Error> {
    if let Some(s) = v.as_str() {
        return parse_time(s);
    }
    if let Ok(n) = i64::try_from(v.clone()) {
        return Timestamp::from_second(n)
            .map_err(|_| minijinja::Error::new(ErrorKind::InvalidOperation, "Unix time out of range"));
    }
    Err(minijinja::Error::new(ErrorKind::InvalidOperation, "not a time"))
}

/// `{{ now | date("%Y-%m-%d") }}`: strftime formatting in UTC.
fn date_format(v: Value, fmt: Option<&str>) -> std::result::Result<String, minijinja::Error> {
    let t = time_arg(&v)?;
    let fmt = fmt.unwrap_or("%Y-%m-%d");
    let zoned = t.to_zoned(jiff::tz::TimeZone::UTC);
    jiff::fmt::strtime::format(fmt, &zoned)
        .map_err(|_| minijinja::Error::new(ErrorKind::InvalidOperation, "date: invalid format string"))
}

/// `{{ now | date_add(days=1) }}`: calendar arithmetic in UTC, returns RFC 3339.
fn date_add(v: Value, kwargs: Kwargs) -> std::result::Result<String, minijinja::Error> {
    let t = time_arg(&v)?;
    let days: i64 = kwargs.get::<Option<i64>>("days")?.unwrap_or(0);
    let hours: i64 = kwargs.get::<Option<i64>>("hours")?.unwrap_or(0);
    let minutes: i64 = kwargs.get::<Option<i64>>("minutes")?.unwrap_or(0);
    let seconds: i64 = kwargs.get::<Option<i64>>("seconds")?.unwrap_or(0);
    kwargs.assert_all_used()?;
    let zoned = t.to_zoned(jiff::tz::TimeZone::UTC);
    let out = zoned
        .checked_add(days.days())
        .and_then(|z| z.checked_add(hours.hours().minutes(minutes).seconds(seconds)))
        .map_err(|_| minijinja::Error::new(ErrorKind::InvalidOperation, "date_add: out of range"))?;
    Ok(out.timestamp().to_string())
}

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

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(pairs: &[(&str, &str)]) -> TemplateContext {
        TemplateContext {
            credentials: pairs
                .iter()
                .map(|(k, v)| (k.to_string(), SecretString::new(*v)))
                .collect(),
            now: Some("2026-11-22T10:00:00Z".parse().unwrap()),
            ..Default::default()
        }
    }

    #[test]
    fn renders_credentials_as_given() {
        let t = Templates::new();
        let c = ctx(&[("username", "u"), ("CLIENT_ID", "abc")]);
        assert_eq!(t.render("f", "{{ username }}:{{ CLIENT_ID }}", &c).unwrap(), "u:abc");
    }

    #[test]
    fn undefined_variable_is_an_error_naming_it_and_not_the_values() {
        let t = Templates::new();
        let c = ctx(&[("username", "alice"), ("password", "s3cret")]);
        let err = t
            .render(
                "spec.refreshableToken.authorization.body",
                "u={{ username }}&d={{ domain }}",
                &c,
            )
            .unwrap_err();
        assert_eq!(err.reason(), "UndefinedVariable");
        let msg = err.to_string();
        assert!(msg.contains("`domain`"), "{msg}");
        assert!(msg.contains("spec.refreshableToken.authorization.body"), "{msg}");
        assert!(msg.contains("password, username"), "{msg}");
        assert!(!msg.contains("s3cret") && !msg.contains("alice"), "{msg}");
    }

    #[test]
    fn oauth_namespace_and_missing_refresh_token() {
        let t = Templates::new();
        let mut c = ctx(&[]);
        let err = t.render("f", "{{ oauth.refresh_token }}", &c).unwrap_err();
        assert!(
            matches!(&err, EngineError::UndefinedVariable { variable, .. } if variable == "oauth.refresh_token"),
            "{err}"
        );
        c.refresh_token = Some("rt".into());
        assert_eq!(
            t.render("f", "{{ oauth.refresh_token }}/{{ refresh_token }}", &c)
                .unwrap(),
            "rt/rt"
        );
    }

    #[test]
    fn filters_encode_and_do_date_arithmetic() {
        let t = Templates::new();
        let c = ctx(&[("token", "abc")]);
        assert_eq!(
            t.render("f", "{{ ('0:' ~ token) | b64encode }}", &c).unwrap(),
            "MDphYmM="
        );
        assert_eq!(t.render("f", "{{ 'MDphYmM=' | b64decode }}", &c).unwrap(), "0:abc");
        assert_eq!(t.render("f", "{{ 'a b&c' | urlencode }}", &c).unwrap(), "a%20b%26c");
        assert_eq!(
            t.render("f", "{{ now | date_add(days=1) | date('%Y-%m-%d') }}", &c)
                .unwrap(),
            "2026-11-23"
        );
        assert_eq!(t.render("f", "{{ now | date }}", &c).unwrap(), "2026-11-22");
        assert_eq!(t.render("f", "{{ now | timestamp }}", &c).unwrap(), "1795341600");
    }

    #[test]
    fn a_template_cannot_spin_or_fill_the_memory() {
        let t = Templates::new();
        let c = ctx(&[]);
        for (source, says) in [
            // Would allocate 100 MB per term.
            ("{{ ('x' * 100000000) ~ ('x' * 100000000) }}", "too much work"),
            (
                "{% for i in range(10000) %}{% for j in range(10000) %}{% endfor %}{% endfor %}",
                "too much work",
            ),
            (
                "{% for i in range(10000) %}{{ 'y' * 100 }}{% endfor %}",
                "more than the 256 KiB",
            ),
        ] {
            let err = t.render("spec.output.template.big", source, &c).unwrap_err();
            let msg = err.to_string();
            assert!(
                msg.contains("spec.output.template.big") && msg.contains(says),
                "{source}: {msg}"
            );
        }
        // Real templates are nowhere near the budget.
        let key = "k".repeat(4096);
        let c = ctx(&[("private_key", key.as_str())]);
        assert!(t.render("f", "{{ private_key | b64encode }}", &c).is_ok());
    }

    #[test]
    fn syntax_errors_name_the_field() {
        let t = Templates::new();
        let err = t
            .check("spec.output.header.value", "Bearer {{ access_token")
            .unwrap_err();
        assert_eq!(err.reason(), "TemplateError");
        assert!(err.to_string().contains("spec.output.header.value"));
    }
}
