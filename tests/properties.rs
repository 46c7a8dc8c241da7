//! Property tests: template rendering, extraction (JSONPath, header, cookie, JWT claim), expiry
//! and duration parsing never panic on arbitrary input, and errors never echo secret values.

use std::collections::BTreeMap;

use connector_auth_operator::engine::SecretString;
use connector_auth_operator::engine::extract::{Locator, Parsed, find_cookie, jwt_claims, jwt_expiry, normalize_path};
use connector_auth_operator::engine::http::{HttpResponse, parse_retry_after};
use connector_auth_operator::engine::renewal::{RenewalPolicy, parse_duration, renew_at};
use connector_auth_operator::engine::template::{TemplateContext, Templates, parse_time};
use proptest::prelude::*;
use reqwest::header::{HeaderMap, HeaderValue, SET_COOKIE};

fn response(body: Vec<u8>, cookies: &[String]) -> HttpResponse {
    let mut headers = HeaderMap::new();
    for c in cookies {
        if let Ok(v) = HeaderValue::from_str(c) {
            headers.append(SET_COOKIE, v);
        }
    }
    HttpResponse {
        status: 200,
        host: "h".into(),
        headers,
        body,
        location: None,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn templates_render_or_fail_cleanly_and_never_echo_the_secret(src in ".{0,80}", secret in "[a-zA-Z0-9]{12,20}") {
        let t = Templates::new();
        let ctx = TemplateContext {
            credentials: BTreeMap::from([("password".to_string(), SecretString::new(secret.clone()))]),
            ..Default::default()
        };
        if let Err(e) = t.render("f", &src, &ctx) {
            prop_assert!(!e.to_string().contains(&secret), "{e}");
        }
    }

    #[test]
    fn template_expressions_with_filters_never_panic(
        expr in prop::sample::select(vec!["password", "'x'", "now", "1", "oauth.refresh_token", "missing"]),
        filter in prop::sample::select(vec!["b64encode", "b64decode", "urlencode", "date", "date('%Y')", "date_add(days=1)", "timestamp", "tojson", "upper"]),
    ) {
        let t = Templates::new();
        let ctx = TemplateContext {
            credentials: BTreeMap::from([("password".to_string(), SecretString::new("p@ss"))]),
            ..Default::default()
        };
        let _ = t.render("f", &format!("{{{{ {expr} | {filter} }}}}"), &ctx);
    }

    #[test]
    fn jsonpath_extraction_never_panics(path in ".{0,40}", body in prop::collection::vec(any::<u8>(), 0..200)) {
        if let Ok(loc) = Locator::json("f", &path) {
            let r = response(body, &[]);
            let _ = Parsed::new("login", &r).find("x", &loc);
        }
        let _ = normalize_path(&path);
    }

    #[test]
    fn json_bodies_extract_or_report_absence(body in r#"\{"access_token": ?("[a-z]{0,8}"|[1-9][0-9]{0,4}|null|true|\[\]|\{\})\}"#) {
        let r = response(body.into_bytes(), &[]);
        let loc = Locator::json("f", "access_token").unwrap();
        prop_assert!(Parsed::new("login", &r).find("x", &loc).is_ok());
    }

    #[test]
    fn cookie_and_jwt_parsing_never_panic(cookies in prop::collection::vec(".{0,60}", 0..5), name in ".{0,12}", token in ".{0,120}") {
        let r = response(Vec::new(), &cookies);
        let _ = find_cookie(&r.headers, &name);
        let _ = jwt_claims(&token);
        let _ = jwt_expiry(&token);
        let loc = Locator::json("f", "t").unwrap().with_claim(&name);
        let body = serde_json::json!({ "t": token }).to_string().into_bytes();
        let r = response(body, &[]);
        let _ = Parsed::new("login", &r).find("x", &loc);
    }

    #[test]
    fn time_duration_and_retry_after_parsing_never_panic(s in ".{0,40}") {
        let _ = parse_time(&s);
        let _ = parse_duration("f", &s);
        let _ = parse_retry_after(&s);
    }

    #[test]
    fn renewal_is_never_after_expiry_nor_before_issue(lifetime in 1i64..10_000_000, before in 0u64..20_000_000, pct in 1u8..100, jitter in 0.0f64..1.0) {
        let issued = jiff::Timestamp::from_second(1_700_000_000).unwrap();
        let exp = issued + jiff::SignedDuration::from_secs(lifetime);
        for policy in [
            RenewalPolicy::default(),
            RenewalPolicy { renew_before: Some(std::time::Duration::from_secs(before)), ..Default::default() },
            RenewalPolicy { renew_before_percentage: Some(pct), ..Default::default() },
        ] {
            let r = renew_at(issued, Some(exp), &policy, jitter).unwrap();
            prop_assert!(r >= issued && r <= exp, "{r} not within [{issued}, {exp}]");
        }
    }
}
