//! Property tests: template rendering, extraction (JSONPath, header, cookie, JWT claim), expiry
//! and duration parsing, renewal arithmetic, token-URL policy checks and consent callback query
//! strings never panic on arbitrary input, and errors never echo secret values.

use std::collections::BTreeMap;

use connector_auth_operator::engine::SecretString;
use connector_auth_operator::engine::extract::{Locator, Parsed, find_cookie, jwt_claims, jwt_expiry, normalize_path};
use connector_auth_operator::engine::http::{HttpResponse, parse_retry_after};
use connector_auth_operator::engine::renewal::{MAX_DURATION, RenewalPolicy, expiry, parse_duration, renew_at};
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
        let r = response(body.clone().into_bytes(), &[]);
        let loc = Locator::json("f", "access_token").unwrap();
        let found = Parsed::new("login", &r).find("x", &loc);
        // Scalars are values (or absent); a list or object is never published whole.
        if body.contains("[]") || body.contains("{}}") {
            prop_assert_eq!(found.unwrap_err().reason().as_str(), "InvalidValue");
        } else {
            prop_assert!(found.is_ok());
        }
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

    #[test]
    fn any_lifetime_a_provider_states_gives_a_timestamp_within_ten_years(secs in any::<f64>(), abs in any::<i64>(), interval in 1u64..u64::MAX, jitter in any::<f64>()) {
        let issued = jiff::Timestamp::from_second(1_700_000_000).unwrap();
        let longest = issued + jiff::SignedDuration::try_from(MAX_DURATION).unwrap();
        let exp = expiry(issued, Some(secs), None, None).unwrap();
        prop_assert!(exp >= issued && exp <= longest, "{exp}");
        let absolute = jiff::Timestamp::from_second(abs).ok();
        if let Some(e) = expiry(issued, None, absolute, None) {
            prop_assert!(e <= longest);
        }
        let policy = RenewalPolicy { refresh_interval: Some(std::time::Duration::from_secs(interval)), ..Default::default() };
        let r = renew_at(issued, None, &policy, jitter).unwrap();
        prop_assert!(r >= issued && r <= longest, "{r}");
        let r = renew_at(issued, Some(exp), &RenewalPolicy::default(), jitter).unwrap();
        prop_assert!(r >= issued && r <= exp, "{r}");
    }

    #[test]
    fn durations_are_bounded_or_refused(n in any::<u64>(), unit in prop::sample::select(vec!["ms", "s", "m", "h", "d"])) {
        match parse_duration("f", &format!("{n}{unit}")) {
            Ok(d) => prop_assert!(d <= MAX_DURATION && !d.is_zero()),
            Err(e) => prop_assert!(e.to_string().contains("`f`") || e.to_string().contains("f:"), "{e}"),
        }
    }

    #[test]
    fn callback_query_strings_keep_only_code_and_declared_values(query in "[a-zA-Z_=&%0-9.\\-\r\n]{0,200}", declared in prop::collection::vec("[a-zA-Z][a-zA-Z0-9_]{0,8}", 0..3)) {
        let spec: connector_auth_operator::api::ConnectorAuthSpec = serde_json::from_value(serde_json::json!({
            "credentialsRef": {"name": "c"},
            "oauth2": {"grantType": "authorizationCode", "tokenUrl": "https://idp.example/token", "authorizationUrl": "https://idp.example/auth", "callbackValues": declared},
        })).unwrap();
        let Ok(flow) = connector_auth_operator::engine::compile(&connector_auth_operator::catalog::resolve(&spec).unwrap().engine(), &Templates::new()) else { return Ok(()) };
        let pairs: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes()).into_owned().collect();
        if let Ok(kept) = connector_auth_operator::engine::callback::accept(&flow, pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())), None) {
            for (k, v) in &kept {
                prop_assert!(k == "code" || declared.contains(k), "{k}");
                prop_assert!(v.expose().len() <= 4096 && !v.expose().chars().any(char::is_control));
            }
        }
    }

    #[test]
    fn the_url_policy_never_panics_and_never_admits_metadata(a in any::<u128>(), b in any::<u32>(), host in "[a-z0-9.-]{0,30}") {
        let p = connector_auth_operator::engine::policy::UrlPolicy { allow_private: true, ..Default::default() };
        let v6 = std::net::IpAddr::V6(std::net::Ipv6Addr::from(a));
        let v4 = std::net::IpAddr::V4(std::net::Ipv4Addr::from(b));
        let _ = p.check(&host, &[v6, v4]);
        let meta = std::net::IpAddr::V4(std::net::Ipv4Addr::new(169, 254, 169, 254));
        prop_assert!(p.check(&host, &[v6, meta]).is_err());
    }
}
