//! The provider catalog: `spec.provider` fills in a built-in entry's settings, the resource's
//! own fields win, the result works against the provider's emulator, and README's table lists
//! every entry.

mod support;

use connector_auth_operator::api::ConnectorAuthSpec;
use connector_auth_operator::catalog;
use serde_json::json;
use support::*;

fn with_provider(name: &str, scheme_block: serde_json::Value) -> serde_json::Value {
    let scheme = catalog::get(name).unwrap().scheme();
    json!({"credentialsRef": {"name": "c"}, "provider": name, scheme: scheme_block})
}

/// A resource using `name` with an empty scheme block and a value for every parameter.
fn with_params(name: &str) -> serde_json::Value {
    let e = catalog::get(name).unwrap();
    let mut spec = with_provider(name, json!({}));
    let params: serde_json::Map<String, serde_json::Value> = e.params().into_iter().map(|p| (p, json!("x"))).collect();
    if !params.is_empty() {
        spec["providerParams"] = serde_json::Value::Object(params);
    }
    spec
}

#[test]
fn every_entry_is_a_valid_provider_manifest_that_compiles_for_an_empty_resource() {
    assert!(catalog::entries().len() >= 40);
    for e in catalog::entries() {
        let spec = with_params(e.name);
        let doc = json!({"apiVersion": "connectorauth.dev/v1alpha1", "kind": "ConnectorAuth",
            "metadata": {"name": "x", "namespace": "ns"}, "spec": spec});
        connector_auth_operator::api::validate_document(&doc).unwrap_or_else(|err| panic!("{}: {err}", e.name));
        let spec: ConnectorAuthSpec = serde_json::from_value(spec).unwrap();
        connector_auth_operator::catalog::compile(&engine(), &spec).unwrap_or_else(|err| panic!("{}: {err}", e.name));
        assert!(
            e.source().starts_with("https://") && !e.quirks().is_empty() && !e.display_name().is_empty(),
            "{}",
            e.name
        );
    }
}

#[test]
fn every_file_in_the_catalog_folder_is_built_in() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/catalog");
    let mut files: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|f| f.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    let mut built_in: Vec<String> = catalog::entries().iter().map(|e| format!("{}.yaml", e.name)).collect();
    built_in.sort();
    assert_eq!(files, built_in, "catalog/*.yaml and the list in src/catalog/mod.rs");
}

#[test]
fn a_seed_example_and_its_entry_give_the_same_settings() {
    // Where a bundled example exists for an entry without parameters, `provider: NAME` with an
    // empty block is that example (the entry adds its `verify` request). The google and snov-io
    // examples are the seed platforms' configurations as they were written (ChiefOnboarding's
    // Google manifest, Locoia's snov.io settings); their entries follow the providers' current
    // documentation instead.
    for name in ["webcrm", "wix", "woocommerce", "poweroffice-go", "tripletex"] {
        let e = catalog::get(name).unwrap();
        let spec: ConnectorAuthSpec = serde_json::from_value(with_provider(name, json!({}))).unwrap();
        let resolved = catalog::resolve(&spec).unwrap().into_owned();
        let text = std::fs::read_to_string(format!(
            "{}/examples/{name}/connectorauth.yaml",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap();
        let doc: serde_json::Value = serde_saphyr::from_str(&text).unwrap();
        let mut example = doc["spec"].clone();
        example["credentialsRef"] = json!({"name": "c"});
        if example.get("verify").is_none() {
            example["verify"] = serde_json::to_value(&resolved.verify).unwrap();
        }
        assert_eq!(
            resolved,
            serde_json::from_value::<ConnectorAuthSpec>(example).unwrap(),
            "{}",
            e.name
        );
    }
}

#[tokio::test]
async fn a_provider_resource_with_its_own_token_url_gets_a_token_the_api_accepts() {
    let (base, book) = poweroffice().await;
    // The resource sets only the token URL; client auth, headers and output come from the entry.
    let spec: ConnectorAuthSpec = serde_json::from_value(with_provider(
        "poweroffice-go",
        json!({"tokenUrl": format!("{base}/OAuth/Token")}),
    ))
    .unwrap();
    let c = creds(&[
        ("application_key", "app-key"),
        ("client_key", "client-key"),
        ("subscription_key", "sub-key"),
    ]);
    let (_, out) = issue_with(&engine(), &spec, &c, None).await.unwrap();
    assert_eq!(book.requests(), 1);
    assert_eq!(call_api(&format!("{base}/v2/Customers"), &out).await, 200);
}

#[tokio::test]
async fn local_mode_accepts_a_provider_resource_and_issues_its_token() {
    let (base, _) = poweroffice().await;
    let tmp = tempfile::tempdir().unwrap();
    let mut spec = with_provider("poweroffice-go", json!({"tokenUrl": format!("{base}/OAuth/Token")}));
    spec["verify"] = json!({"url": format!("{base}/v2/Customers")});
    let manifest = json!({"apiVersion": "connectorauth.dev/v1alpha1", "kind": "ConnectorAuth",
        "metadata": {"name": "po"}, "spec": spec});
    std::fs::write(
        tmp.path().join("po.yaml"),
        format!("apiVersion: v1\nkind: Secret\nmetadata: {{name: c}}\nstringData: {{application_key: app-key, client_key: client-key, subscription_key: sub-key}}\n---\n{manifest}"),
    )
    .unwrap();
    let out = tmp.path().join("out");
    let mut runner = connector_auth_operator::local::LocalRunner::new(engine(), tmp.path().to_path_buf(), out.clone());
    let reports = runner.pass().await.unwrap();
    assert!(reports[0].ok(), "{}", reports[0].line());
    let headers = std::collections::BTreeMap::from([(
        "headers.json".to_string(),
        std::fs::read_to_string(out.join("default/po-token/headers.json")).unwrap(),
    )]);
    assert_eq!(call_api(&format!("{base}/v2/Customers"), &headers).await, 200);
}

#[test]
fn an_unknown_provider_or_another_scheme_block_is_refused_naming_spec_provider() {
    let spec: ConnectorAuthSpec =
        serde_json::from_value(json!({"credentialsRef": {"name": "c"}, "provider": "nope", "apiKey": {}})).unwrap();
    let e = connector_auth_operator::catalog::compile(&engine(), &spec)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("spec.provider") && e.contains("`nope` is not a built-in provider") && e.contains("google"),
        "{e}"
    );
    let spec: ConnectorAuthSpec =
        serde_json::from_value(json!({"credentialsRef": {"name": "c"}, "provider": "google", "apiKey": {}})).unwrap();
    let e = connector_auth_operator::catalog::compile(&engine(), &spec)
        .unwrap_err()
        .to_string();
    assert!(e.contains("spec.provider") && e.contains("`oauth2: {}`"), "{e}");
}

#[test]
fn a_changed_provider_changes_the_fingerprint() {
    let a: ConnectorAuthSpec = serde_json::from_value(with_provider("wix", json!({}))).unwrap();
    let b: ConnectorAuthSpec = serde_json::from_value(with_provider("woocommerce", json!({}))).unwrap();
    let c = creds(&[]);
    assert_ne!(
        connector_auth_operator::catalog::fingerprint(&a, &c).unwrap(),
        connector_auth_operator::catalog::fingerprint(&b, &c).unwrap()
    );
}

#[test]
fn the_readme_table_lists_every_provider() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let block = format!(
        "<!-- providers:begin -->\n{}<!-- providers:end -->",
        catalog::markdown_table()
    );
    assert!(
        readme.contains(&block),
        "README.md's provider table is out of date; it should read:\n{block}"
    );
}

#[test]
fn the_cli_lists_and_shows_providers() {
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_connector-auth-operator"))
            .args(args)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, list, _) = run(&["providers", "list"]);
    assert!(ok);
    assert_eq!(list.lines().count(), catalog::entries().len());
    let (ok, show, _) = run(&["providers", "show", "google"]);
    assert!(
        ok && show.contains("tokenUrl: https://oauth2.googleapis.com/token")
            && show.contains("credentials keys: client_id, client_secret")
            && show.contains("# documentation: https://developers.google.com/identity/protocols/oauth2/web-server (checked 2026-12-07)")
            && show.contains("kind: ClusterConnectorAuthProvider"),
        "{show}"
    );
    let (ok, show, _) = run(&["providers", "show", "entra-id"]);
    assert!(
        ok && show.contains("parameters (spec.providerParams or credentials keys): tenant, scope"),
        "{show}"
    );
    let (ok, _, err) = run(&["providers", "show", "nope"]);
    assert!(!ok && err.contains("no provider `nope`"), "{err}");
}
