//! `tripletex`: consumer token + employee token → `PUT /v2/token/session/:create` with an
//! `expirationDate`; API calls use `Basic base64("0:" + session token)`.

use crate::error::{EngineError, Result};
use crate::flow::{Body, Extraction, Flow, Step, Tmpl, base_flow, json};
use crate::spec;

pub(crate) fn compile(s: &spec::Tripletex) -> Result<Flow> {
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
    let mut flow = base_flow();
    flow.login = Some(Step {
        name: "login",
        method: http::Method::PUT,
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::fixtures::{flow, refused};

    #[test]
    fn a_session_is_created_with_put_and_published_as_basic_with_company_zero() {
        let f = flow(json!({"tripletex": {}}));
        assert_eq!(f.scheme, "tripletex");
        let login = f.login.as_ref().unwrap();
        assert_eq!(login.method, http::Method::PUT);
        assert!(
            login.url.source.starts_with(
                "https://tripletex.no/v2/token/session/:create?consumerToken={{ (consumer_token) | urlencode }}"
            ),
            "{}",
            login.url.source
        );
        assert!(login.url.source.contains("date_add(days=1)"), "one day by default");
        assert_eq!(f.output.header_format.source, "0:{{ access_token }}");
        assert!(f.output.header_encode);
        assert_eq!(f.output.header_value.source, "Basic {{ token_format }}");
    }

    #[test]
    fn a_session_length_outside_a_year_is_refused() {
        let e = refused(json!({"tripletex": {"sessionDays": 366}}));
        assert!(e.to_string().contains("spec.tripletex.sessionDays"), "{e}");
    }
}
