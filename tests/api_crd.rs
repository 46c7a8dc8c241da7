//! The ConnectorAuth API: the committed CRD matches the code, the CEL rules refuse bad specs at
//! apply time, and every bundled example is valid and compiles.

use std::path::Path;

use connector_auth_operator::api::ConnectorAuth;
use connector_auth_operator::engine::{Engine, HttpSettings};
use connector_auth_operator::local::load_manifests;

#[test]
fn committed_provider_crd_matches_the_generated_one_and_crd_prints_both() {
    let generated = connector_auth_operator::cli::provider_crd_yaml().unwrap();
    let committed = std::fs::read_to_string("crds/clusterconnectorauthprovider.yaml").unwrap();
    assert!(
        committed == generated,
        "crds/clusterconnectorauthprovider.yaml is stale: run `cargo run -- crd` and copy its second document"
    );
    let all = connector_auth_operator::cli::all_crds_yaml().unwrap();
    let connector_auth = std::fs::read_to_string("crds/connectorauth.yaml").unwrap();
    assert_eq!(all, format!("{connector_auth}---\n{committed}"));
}

#[test]
fn committed_crd_matches_the_generated_one() {
    let generated = connector_auth_operator::cli::crd_yaml().unwrap();
    let committed = std::fs::read_to_string("crds/connectorauth.yaml").expect("crds/connectorauth.yaml exists");
    assert!(
        committed == generated,
        "crds/connectorauth.yaml is stale: run `cargo run -- crd > crds/connectorauth.yaml`"
    );
}

#[test]
fn crd_is_structural_with_descriptions_and_printer_columns() {
    let crd: serde_json::Value = serde_json::to_value(<ConnectorAuth as kube::CustomResourceExt>::crd()).unwrap();
    let version = &crd["spec"]["versions"][0];
    let columns: Vec<&str> = version["additionalPrinterColumns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(columns, ["Ready", "Scheme", "Expires", "Next refresh", "Age"]);
    assert_eq!(version["subresources"]["status"], serde_json::json!({}));
    assert_eq!(crd["spec"]["names"]["shortNames"][0], "cauth");

    // Structural: every property has a type (or is an int-or-string / preserve-unknown field),
    // and every spec field has a description for `kubectl explain`.
    fn walk(path: &str, s: &serde_json::Value, missing: &mut Vec<String>) {
        if let Some(props) = s.get("properties").and_then(|p| p.as_object()) {
            for (k, v) in props {
                let p = format!("{path}.{k}");
                if v.get("type").is_none() {
                    missing.push(format!("{p}: no type"));
                }
                if v.get("description").is_none() && !p.starts_with(".status.conditions") {
                    missing.push(format!("{p}: no description"));
                }
                walk(&p, v, missing);
            }
        }
        if let Some(items) = s.get("items") {
            walk(&format!("{path}[]"), items, missing);
        }
        if let Some(ap) = s.get("additionalProperties").filter(|a| a.is_object()) {
            walk(&format!("{path}{{}}"), ap, missing);
        }
    }
    let mut missing = Vec::new();
    let schema = &version["schema"]["openAPIV3Schema"];
    walk("", &schema["properties"]["spec"], &mut missing);
    assert!(missing.is_empty(), "{missing:#?}");
}

#[test]
fn no_enum_in_the_crd_lists_null() {
    // kubectl's OpenAPI v2 validation refuses the whole CRD over a `null` enum value, and an
    // optional field is not a nullable one.
    fn walk(path: &str, v: &serde_json::Value, enums: &mut Vec<(String, Vec<serde_json::Value>)>) {
        match v {
            serde_json::Value::Object(map) => {
                for (k, child) in map {
                    if k == "enum" {
                        enums.push((path.to_string(), child.as_array().cloned().unwrap_or_default()));
                    }
                    walk(&format!("{path}.{k}"), child, enums);
                }
            }
            serde_json::Value::Array(items) => {
                for (i, child) in items.iter().enumerate() {
                    walk(&format!("{path}[{i}]"), child, enums);
                }
            }
            _ => {}
        }
    }
    let crd = serde_json::to_value(<ConnectorAuth as kube::CustomResourceExt>::crd()).unwrap();
    let mut enums = Vec::new();
    walk("", &crd, &mut enums);
    assert!(enums.len() >= 8, "{enums:#?}");
    let with_null: Vec<_> = enums
        .iter()
        .filter(|(_, values)| values.contains(&serde_json::Value::Null))
        .collect();
    assert!(with_null.is_empty(), "{with_null:#?}");
    let committed = std::fs::read_to_string("crds/connectorauth.yaml").unwrap();
    assert!(!committed.contains("- null"), "crds/connectorauth.yaml lists null");

    let method = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["refreshableToken"]
        ["properties"]["authorization"]["properties"]["method"];
    assert_eq!(method["enum"], serde_json::json!(["GET", "POST", "PUT", "PATCH"]));
    assert_eq!(method["type"], "string");
    assert_eq!(method.get("nullable"), None);
}

fn cel_error(spec: &str) -> String {
    let yaml = format!(
        "apiVersion: connectorauth.dev/v1alpha1\nkind: ConnectorAuth\nmetadata: {{name: t, namespace: ns}}\nspec:\n{spec}"
    );
    let doc: serde_json::Value = serde_saphyr::from_str(&yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
    match connector_auth_operator::api::validate_document(&doc) {
        Ok(()) => String::new(),
        Err(e) => e,
    }
}

#[test]
fn cel_rules_refuse_bad_specs_with_readable_messages() {
    let ok = "  credentialsRef: {name: c}\n  apiKey: {}\n";
    assert_eq!(cel_error(ok), "");

    let two = "  credentialsRef: {name: c}\n  apiKey: {}\n  tripletex: {}\n";
    assert!(
        cel_error(two).contains("exactly one scheme must be set"),
        "{}",
        cel_error(two)
    );

    let none = "  credentialsRef: {name: c}\n";
    assert!(
        cel_error(none).contains("exactly one scheme must be set"),
        "{}",
        cel_error(none)
    );

    let empty_name = "  credentialsRef: {name: ''}\n  apiKey: {}\n";
    assert!(cel_error(empty_name).contains("credentialsRef.name must not be empty"));

    let both_renewals =
        "  credentialsRef: {name: c}\n  apiKey: {}\n  renewal: {renewBefore: 5m, renewBeforePercentage: 20}\n";
    assert!(cel_error(both_renewals).contains("either renewBefore or renewBeforePercentage"));

    let bad_duration = "  credentialsRef: {name: c}\n  apiKey: {}\n  renewal: {renewBefore: five minutes}\n";
    assert!(cel_error(bad_duration).contains("renewBefore must be a duration"));

    let negative = "  credentialsRef: {name: c}\n  apiKey: {}\n  renewal: {refreshInterval: -5m}\n";
    assert!(cel_error(negative).contains("refreshInterval must be a duration"));

    let two_sources = "  credentialsRef: {name: c}\n  refreshableToken:\n    authorization: {url: 'https://x'}\n    accessToken: {jsonPath: a, cookie: b}\n";
    assert!(
        cel_error(two_sources).contains("exactly one of jsonPath, header or cookie"),
        "{}",
        cel_error(two_sources)
    );

    let body_and_form = "  credentialsRef: {name: c}\n  refreshableToken:\n    authorization: {url: 'https://x', body: 'a', form: {b: c}}\n";
    assert!(cel_error(body_and_form).contains("either body or form"));

    let no_token_url = "  credentialsRef: {name: c}\n  oauth2: {grantType: clientCredentials}\n";
    assert!(cel_error(no_token_url).contains("oauth2 needs tokenUrl"));
}

#[test]
fn every_example_is_valid_compiles_and_has_its_credentials() {
    let engine = Engine::new(HttpSettings::default()).unwrap(); // compiles only
    let mut seen = 0;
    let mut dirs: Vec<_> = std::fs::read_dir("examples")
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    dirs.sort();
    for dir in dirs {
        let m = load_manifests(&dir).unwrap_or_else(|e| panic!("{}: {e:#}", dir.display()));
        assert!(!m.resources.is_empty(), "{} has no ConnectorAuth", dir.display());
        for ca in &m.resources {
            let flow = connector_auth_operator::catalog::compile(&engine, &ca.spec)
                .unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
            let ns = kube::ResourceExt::namespace(ca).unwrap();
            let secret = m
                .secret(&ns, &ca.spec.credentials_ref.name)
                .unwrap_or_else(|| panic!("{}: credentials Secret missing", dir.display()));
            // Every variable the login/refresh/output templates read is a credentials key or
            // one the engine provides.
            let provided = connector_auth_operator::engine::template::PROVIDED_VARIABLES;
            // The default `{{ client_secret }}` is optional (public clients); a signed
            // assertion's default `iss` gives way to a JSON key file's `client_email`.
            let optional = |t: &connector_auth_operator::engine::flow::Tmpl| {
                t.source == "{{ client_secret }}" || (t.field.ends_with(".claims.iss") && t.source == "{{ client_id }}")
            };
            for t in flow
                .templates()
                .into_iter()
                .filter(|t| !optional(t))
                .map(|t| t.source.clone())
            {
                for var in engine.templates().variables(&t) {
                    assert!(
                        secret.data.contains_key(&var) || provided.contains(&var.as_str()),
                        "{}: template `{t}` uses `{var}`, which the credentials Secret lacks",
                        dir.display()
                    );
                }
            }
            seen += 1;
        }
    }
    assert!(seen >= 11, "one example per seed system plus the demo, found {seen}");
    assert!(Path::new("examples/demo").exists());
}
