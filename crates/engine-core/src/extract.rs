//! Reading values out of a token response: JSONPath into the body, a header, a cookie, and a
//! claim of a JWT found by any of those.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jiff::Timestamp;
use serde_json::Value;
use serde_json_path::JsonPath;

use std::collections::BTreeMap;

use crate::error::{EngineError, Result};
use crate::request::HttpResponse;
use crate::secret::SecretString;

/// Where one value is found; compiled and validated once.
#[derive(Debug, Clone)]
pub struct Locator {
    pub source: Source,
    pub jwt_claim: Option<String>,
}

#[derive(Debug, Clone)]
pub enum Source {
    Json { path: JsonPath, text: String },
    Header(String),
    Cookie(String),
}

impl Locator {
    /// Compiles an API `Extract`; `field` names it in errors.
    pub fn compile(field: &str, e: &crate::spec::Extract) -> Result<Self> {
        let set = [e.json_path.is_some(), e.header.is_some(), e.cookie.is_some()]
            .iter()
            .filter(|b| **b)
            .count();
        if set != 1 {
            return Err(EngineError::InvalidSpec {
                field: field.into(),
                reason: "set exactly one of jsonPath, header or cookie".into(),
            });
        }
        let source = if let Some(p) = &e.json_path {
            Self::json(field, p)?.source
        } else if let Some(h) = &e.header {
            Source::Header(h.clone())
        } else {
            Source::Cookie(e.cookie.clone().unwrap_or_default())
        };
        Ok(Locator {
            source,
            jwt_claim: e.jwt_claim.clone(),
        })
    }

    /// A JSONPath locator; a plain dotted path (`data.token`, Locoia style) is accepted too.
    pub fn json(field: &str, path: &str) -> Result<Self> {
        let text = normalize_path(path);
        let compiled = JsonPath::parse(&text).map_err(|e| EngineError::InvalidSpec {
            field: field.into(),
            reason: format!("`{path}` is not a valid JSONPath: {e}"),
        })?;
        Ok(Locator {
            source: Source::Json { path: compiled, text },
            jwt_claim: None,
        })
    }

    pub fn with_claim(mut self, claim: &str) -> Self {
        self.jwt_claim = Some(claim.to_string());
        self
    }

    /// Human description for "not found" messages.
    pub fn describe(&self) -> String {
        let base = match &self.source {
            Source::Json { text, .. } => format!("JSONPath `{text}`"),
            Source::Header(h) => format!("header `{h}`"),
            Source::Cookie(c) => format!("cookie `{c}`"),
        };
        match &self.jwt_claim {
            Some(c) => format!("claim `{c}` of the JWT at {base}"),
            None => base,
        }
    }
}

/// Turns `data.items.0.token` into `$['data']['items'][0]['token']`; leaves `$…` alone.
pub fn normalize_path(path: &str) -> String {
    let path = path.trim();
    if path.starts_with('$') {
        return path.to_string();
    }
    let mut out = String::from("$");
    for seg in path.split('.') {
        if !seg.is_empty() && seg.chars().all(|c| c.is_ascii_digit()) {
            out.push_str(&format!("[{seg}]"));
        } else {
            out.push_str(&format!("['{}']", seg.replace('\\', "\\\\").replace('\'', "\\'")));
        }
    }
    out
}

/// A response with its body parsed at most once.
pub struct Parsed<'a> {
    pub step: &'a str,
    pub resp: &'a HttpResponse,
    json: std::cell::OnceCell<Option<Value>>,
}

impl<'a> Parsed<'a> {
    pub fn new(step: &'a str, resp: &'a HttpResponse) -> Self {
        Parsed {
            step,
            resp,
            json: std::cell::OnceCell::new(),
        }
    }

    fn json(&self) -> Result<&Value> {
        self.json
            .get_or_init(|| serde_json::from_slice(&self.resp.body).ok())
            .as_ref()
            .ok_or_else(|| EngineError::InvalidResponse {
                step: self.step.into(),
                host: self.resp.host.clone(),
                status: self.resp.status,
                content_type: self
                    .resp
                    .headers
                    .get(http::header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .map(|s| s.split(';').next().unwrap_or(s).trim().to_string()),
            })
    }

    /// Finds a value; `Ok(None)` when the response simply does not have it.
    pub fn find(&self, what: &str, loc: &Locator) -> Result<Option<String>> {
        let raw = match &loc.source {
            Source::Json { path, text } => match path.query(self.json()?).first() {
                // A whole object or list would publish what the provider sent unread (with
                // `$`, an internal service's entire answer): only single values are taken.
                Some(v @ (Value::Object(_) | Value::Array(_))) => {
                    return Err(EngineError::InvalidValue {
                        step: self.step.into(),
                        what: what.into(),
                        reason: format!(
                            "JSONPath `{text}` finds a JSON {}, not a single value; point it at a string or a number",
                            if v.is_object() { "object" } else { "array" }
                        ),
                    });
                }
                v => v.and_then(scalar_to_string),
            },
            Source::Header(name) => self
                .resp
                .headers
                .get_all(name.as_str())
                .iter()
                .filter_map(|v| v.to_str().ok())
                .find(|v| !v.is_empty())
                .map(str::to_string),
            Source::Cookie(name) => find_cookie(&self.resp.headers, name),
        };
        match (raw, &loc.jwt_claim) {
            (Some(token), Some(claim)) => {
                let claims = jwt_claims(&token).ok_or_else(|| EngineError::InvalidValue {
                    step: self.step.into(),
                    what: what.into(),
                    reason: format!("the value at {} is not a JWT", loc.describe()),
                })?;
                Ok(claims.get(claim).and_then(scalar_to_string))
            }
            (raw, _) => Ok(raw),
        }
    }

    /// Tries each locator in turn; errors name the first one if none matches.
    pub fn require(&self, what: &str, locs: &[Locator]) -> Result<String> {
        for loc in locs {
            if let Some(v) = self.find(what, loc)? {
                return Ok(v);
            }
        }
        Err(EngineError::ValueNotFound {
            step: self.step.into(),
            what: what.into(),
            location: locs.iter().map(Locator::describe).collect::<Vec<_>>().join(" or "),
        })
    }

    /// Like [`Parsed::require`], but absence is fine. A body that is not JSON has no JSON
    /// values: a login answering with a cookie and an HTML or XML body must not fail on the
    /// default `expires_in` lookup.
    pub fn optional(&self, what: &str, locs: &[Locator]) -> Result<Option<String>> {
        for loc in locs {
            match self.find(what, loc) {
                Ok(Some(v)) => return Ok(Some(v)),
                Ok(None) | Err(EngineError::InvalidResponse { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(None)
    }
}

impl Parsed<'_> {
    /// The top-level scalar fields of a JSON object body that `wanted` asks for (strings,
    /// numbers, booleans; not null, not arrays or objects), for `{{ oauth.<field> }}`. A body
    /// that is not a JSON object has none. A field named in a template that is larger than
    /// [`NAMED_FIELD_BYTES`] is an error; with [`ResponseFields::All`] larger fields, and fields
    /// beyond [`ALL_FIELDS_MAX`], are left out.
    pub fn fields(&self, wanted: &ResponseFields) -> Result<BTreeMap<String, SecretString>> {
        let mut out = BTreeMap::new();
        if *wanted == ResponseFields::None {
            return Ok(out);
        }
        let Ok(Value::Object(map)) = self.json() else {
            return Ok(out);
        };
        for (k, v) in map {
            if !wanted.wants(k) || matches!(k.as_str(), "access_token" | "refresh_token") {
                continue;
            }
            let text = match v {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                _ => continue,
            };
            match wanted {
                ResponseFields::Named(_) if text.len() > NAMED_FIELD_BYTES => {
                    return Err(EngineError::InvalidValue {
                        step: self.step.into(),
                        what: format!("oauth.{k}"),
                        reason: format!("the response's `{k}` is larger than {NAMED_FIELD_BYTES} bytes"),
                    });
                }
                ResponseFields::All if text.len() > ALL_FIELD_BYTES || out.len() >= ALL_FIELDS_MAX => continue,
                _ => {}
            }
            out.insert(k.clone(), SecretString::from(text));
        }
        Ok(out)
    }
}

fn scalar_to_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if s.is_empty() => None,
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Null | Value::Object(_) | Value::Array(_) => None,
    }
}

/// The value of cookie `name` among the response's `Set-Cookie` headers. An exact name match
/// wins; otherwise a single cookie whose name contains `name` (Locoia's "unique string").
/// Cookies being cleared (empty value) are skipped.
pub fn find_cookie(headers: &http::header::HeaderMap, name: &str) -> Option<String> {
    let cookies: Vec<(String, String)> = headers
        .get_all(http::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|c| {
            let pair = c.split(';').next()?;
            let (k, v) = pair.split_once('=')?;
            let v = v.trim().trim_matches('"');
            (!v.is_empty()).then(|| (k.trim().to_string(), v.to_string()))
        })
        .collect();
    if let Some((_, v)) = cookies.iter().rev().find(|(k, _)| k == name) {
        return Some(v.clone());
    }
    let mut partial = cookies.iter().filter(|(k, _)| k.contains(name));
    match (partial.next(), partial.next()) {
        (Some((_, v)), None) => Some(v.clone()),
        _ => None,
    }
}

/// The claims of a JWT (signature not verified: the operator only reads what the provider
/// handed it over TLS, to learn expiry and tickets).
pub fn jwt_claims(token: &str) -> Option<serde_json::Map<String, Value>> {
    let mut parts = token.split('.');
    let (_header, payload, _sig) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let bytes = URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    match serde_json::from_slice(&bytes).ok()? {
        Value::Object(m) => Some(m),
        _ => None,
    }
}

/// The `exp` claim of a JWT, if the token is one and has it.
pub fn jwt_expiry(token: &str) -> Option<Timestamp> {
    let exp = jwt_claims(token)?.get("exp")?.as_f64()?;
    Timestamp::from_second(exp as i64).ok()
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
    pub(crate) fn of<'a>(paths: impl IntoIterator<Item = &'a str>) -> Self {
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

#[cfg(test)]
mod tests {
    use super::*;
    use http::header::{HeaderMap, HeaderValue, SET_COOKIE};

    fn resp(headers: HeaderMap, body: &str) -> HttpResponse {
        HttpResponse {
            status: 200,
            host: "h".into(),
            headers,
            body: body.as_bytes().to_vec(),
            location: None,
        }
    }

    pub fn make_jwt(claims: &Value) -> String {
        let h = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
        let p = URL_SAFE_NO_PAD.encode(claims.to_string());
        format!("{h}.{p}.c2ln")
    }

    #[test]
    fn dotted_paths_become_jsonpath() {
        assert_eq!(normalize_path("access_token"), "$['access_token']");
        assert_eq!(normalize_path("data.items.0.token"), "$['data']['items'][0]['token']");
        assert_eq!(normalize_path("$.a.b"), "$.a.b");
    }

    #[test]
    fn json_numbers_and_nested_values() {
        let r = resp(HeaderMap::new(), r#"{"data":{"token":"t","ttl":3600}}"#);
        let p = Parsed::new("login", &r);
        assert_eq!(
            p.find("x", &Locator::json("f", "data.token").unwrap())
                .unwrap()
                .as_deref(),
            Some("t")
        );
        assert_eq!(
            p.find("x", &Locator::json("f", "$.data.ttl").unwrap())
                .unwrap()
                .as_deref(),
            Some("3600")
        );
        let err = p
            .require("access token", &[Locator::json("f", "access_token").unwrap()])
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "access token not found in login response: JSONPath `$['access_token']`"
        );
    }

    #[test]
    fn html_body_is_reported_with_its_content_type() {
        let mut h = HeaderMap::new();
        h.insert("content-type", HeaderValue::from_static("text/html; charset=utf-8"));
        let r = resp(h, "<html>Sign in</html>");
        let err = Parsed::new("login", &r)
            .find("t", &Locator::json("f", "a").unwrap())
            .unwrap_err();
        assert_eq!(err.reason(), "InvalidResponse");
        assert!(err.to_string().contains("Content-Type text/html"), "{err}");
    }

    #[test]
    fn optional_json_values_of_a_non_json_body_are_absent_not_errors() {
        let mut h = HeaderMap::new();
        h.append(SET_COOKIE, HeaderValue::from_static("session=abc"));
        let r = resp(h, "<Logon>ok</Logon>");
        let p = Parsed::new("login", &r);
        assert_eq!(
            p.optional("expires_in", &[Locator::json("f", "expires_in").unwrap()])
                .unwrap(),
            None
        );
        let cookie = Locator {
            source: Source::Cookie("session".into()),
            jwt_claim: None,
        };
        assert_eq!(p.require("access token", &[cookie]).unwrap(), "abc");
        assert_eq!(
            p.require("x", &[Locator::json("f", "x").unwrap()])
                .unwrap_err()
                .reason(),
            "InvalidResponse"
        );
    }

    #[test]
    fn cookie_is_found_by_name_among_several() {
        let mut h = HeaderMap::new();
        h.append(SET_COOKIE, HeaderValue::from_static("dwingressplatform=abc; path=/"));
        h.append(
            SET_COOKIE,
            HeaderValue::from_static(".DWPLATFORMAUTH=; expires=Thu, 01 Jan 1970 00:00:00 GMT"),
        );
        h.append(
            SET_COOKIE,
            HeaderValue::from_static(".DWPLATFORMAUTH=tok123; path=/; HttpOnly"),
        );
        h.append(SET_COOKIE, HeaderValue::from_static("DWPLATFORMBROWSERID=zzz; path=/"));
        assert_eq!(find_cookie(&h, ".DWPLATFORMAUTH").as_deref(), Some("tok123"));
        assert_eq!(find_cookie(&h, "PLATFORMAUTH").as_deref(), Some("tok123"));
        assert_eq!(find_cookie(&h, "DWPLATFORM"), None, "ambiguous partial match");
        assert_eq!(find_cookie(&h, "missing"), None);
    }

    #[test]
    fn jwt_claims_and_expiry() {
        let t = make_jwt(
            &serde_json::json!({"exp": 1795860000, "http://schemes.superoffice.net/identity/ticket": "7T:abc"}),
        );
        assert_eq!(jwt_expiry(&t).unwrap().as_second(), 1795860000);
        let mut h = HeaderMap::new();
        h.insert("x", HeaderValue::from_static("y"));
        let body = serde_json::json!({"id_token": t}).to_string();
        let r = resp(h, &body);
        let loc = Locator::json("f", "id_token")
            .unwrap()
            .with_claim("http://schemes.superoffice.net/identity/ticket");
        assert_eq!(
            Parsed::new("login", &r).find("so_ticket", &loc).unwrap().as_deref(),
            Some("7T:abc")
        );
        assert!(jwt_claims("not-a-jwt").is_none());
        assert!(jwt_expiry("a.b.c").is_none());
    }
}
