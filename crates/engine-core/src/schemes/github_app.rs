//! `githubApp`: GitHub App installation tokens. A JWT signed with the app's private key (RS256,
//! `iss` = app id, at most 10 minutes, `iat` backdated 60 s as GitHub advises) is exchanged at
//! `POST {apiUrl}/app/installations/{id}/access_tokens` for a token that lives an hour.

use crate::assertion::{Defaults, Plan};
use crate::error::{EngineError, Result};
use crate::flow::{Body, Extraction, Flow, Step, Tmpl, base_flow, json};
use crate::spec;

/// The template variable the app JWT is offered as.
const APP_JWT: &str = "github_app_jwt";

pub(crate) fn compile(s: &spec::GithubApp) -> Result<Flow> {
    let field = "spec.githubApp";
    let api_url = s
        .api_url
        .as_deref()
        .unwrap_or("https://api.github.com")
        .trim_end_matches('/');
    let installation = s.installation_id.as_deref().unwrap_or("{{ installation_id }}");
    let app_id = s.app_id.as_deref().unwrap_or("{{ app_id }}");
    if s.assertion.claims.contains_key("iss") {
        return Err(EngineError::InvalidSpec {
            field: format!("{field}.assertion.claims.iss"),
            reason: "the app JWT's iss is appId".into(),
        });
    }
    let plan = Plan::compile(
        &format!("{field}.assertion"),
        APP_JWT,
        &s.assertion,
        Defaults {
            claims: vec![("iss", app_id.to_string())],
            lifetime: "9m",
            backdate_secs: 60,
            not_before: false,
            jti: false,
            iss_from_key_file: false,
        },
    )?;
    if plan.lifetime_secs + plan.backdate_secs > 600 {
        return Err(EngineError::InvalidSpec {
            field: format!("{field}.assertion.lifetime"),
            reason: "GitHub accepts app JWTs valid for at most 10 minutes (iat is set 60s in the past)".into(),
        });
    }
    let mut body = serde_json::Map::new();
    if !s.repositories.is_empty() {
        body.insert("repositories".into(), s.repositories.clone().into());
    }
    if !s.permissions.is_empty() {
        body.insert(
            "permissions".into(),
            serde_json::to_value(&s.permissions).unwrap_or_default(),
        );
    }
    let t = |suffix: &str, src: &str| Tmpl::new(format!("{field}.{suffix}"), src);
    let mut headers = vec![
        ("Accept".to_string(), t("apiUrl", "application/vnd.github+json")),
        ("X-GitHub-Api-Version".to_string(), t("apiUrl", "2022-11-28")),
        ("User-Agent".to_string(), t("apiUrl", "connector-auth-operator")),
        (
            "Authorization".to_string(),
            t("assertion", &format!("Bearer {{{{ {APP_JWT} }}}}")),
        ),
    ];
    let body = if body.is_empty() {
        Body::None
    } else {
        headers.push(("Content-Type".to_string(), t("apiUrl", "application/json")));
        // Repository names and permissions are data, not templates: `{% raw %}` keeps them so.
        let json = serde_json::Value::Object(body).to_string();
        Body::Raw(t("repositories", &format!("{{% raw %}}{json}{{% endraw %}}")))
    };
    let mut flow = base_flow();
    flow.login = Some(Step {
        name: "installation token",
        method: http::Method::POST,
        url: t(
            "installationId",
            &format!("{api_url}/app/installations/{installation}/access_tokens"),
        ),
        headers,
        body,
        basic_auth: None,
        extraction: Extraction {
            access_token: json(&["token"]),
            expires_at: json(&["expires_at"]),
            ..Default::default()
        },
    });
    flow.assertions.push(plan);
    Ok(flow)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::fixtures::{flow, refused};

    #[test]
    fn an_installation_token_is_asked_for_with_a_nine_minute_app_jwt() {
        let f = flow(json!({"githubApp": {"assertion": {"privateKeyKey": "private_key"}}}));
        assert_eq!(f.scheme, "githubApp");
        let login = f.login.as_ref().unwrap();
        assert_eq!(login.method, http::Method::POST);
        assert_eq!(
            login.url.source,
            "https://api.github.com/app/installations/{{ installation_id }}/access_tokens"
        );
        let auth = login.headers.iter().find(|(n, _)| n == "Authorization").unwrap();
        assert_eq!(auth.1.source, "Bearer {{ github_app_jwt }}");
        let plan = &f.assertions[0];
        assert_eq!((plan.lifetime_secs, plan.backdate_secs), (540, 60));
    }

    #[test]
    fn github_refuses_app_jwts_over_ten_minutes_and_iss_is_the_app_id() {
        let e = refused(json!({"githubApp": {"assertion": {"privateKeyKey": "k", "lifetime": "10m"}}}));
        assert!(e.to_string().contains("spec.githubApp.assertion.lifetime"), "{e}");
        let e = refused(json!({"githubApp": {"assertion": {"privateKeyKey": "k", "claims": {"iss": "x"}}}}));
        assert!(e.to_string().contains("spec.githubApp.assertion.claims.iss"), "{e}");
    }
}
