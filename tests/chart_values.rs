//! The Helm chart stays in step with the binary: the CRD it installs, its appVersion, and the
//! settings its Deployment passes. Rendering and schema validation need helm and run in
//! `.ci/run`; the RBAC rules are checked against the operator's requests in tests/chart_rbac.rs.

use std::collections::BTreeSet;

const CHART: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/charts/connector-auth-operator");

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// One copy of the CRDs: the chart's `crds/` is a symlink to `crds/` (helm follows it), not a
/// second hand-kept copy that could fall behind.
#[test]
fn the_chart_installs_crds_dir_itself() {
    let link = std::fs::read_link(format!("{CHART}/crds"))
        .unwrap_or_else(|e| panic!("charts/connector-auth-operator/crds must be a symlink to ../../crds: {e}"));
    assert_eq!(link, std::path::Path::new("../../crds"));
}

#[test]
fn app_version_is_the_crate_version() {
    let chart: serde_json::Value = serde_saphyr::from_str(&read(&format!("{CHART}/Chart.yaml"))).unwrap();
    assert_eq!(chart["apiVersion"], "v2");
    assert_eq!(chart["appVersion"], env!("CARGO_PKG_VERSION"), "Chart.yaml appVersion");
}

/// Quoted upper-case names after `marker` in `text`, e.g. `env = "LOG_LEVEL"`.
fn names_after(text: &str, marker: &str) -> BTreeSet<String> {
    text.match_indices(marker)
        .filter_map(|(i, _)| {
            let rest = &text[i + marker.len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
                .collect();
            (!name.is_empty()).then_some(name)
        })
        .collect()
}

#[test]
fn the_deployment_sets_every_setting_the_binary_reads_and_nothing_else() {
    // Every command's flags: src/cli/*.rs.
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src/cli");
    let mut files: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    let cli: String = files.iter().map(|p| read(&p.display().to_string())).collect();
    let deployment = read(&format!("{CHART}/templates/deployment.yaml"));
    let read_by_binary = names_after(&cli, "env = \"");
    let set_by_chart = names_after(&deployment, "- name: ");

    // Read with std::env::var rather than clap; set from the downward API.
    for downward in ["POD_NAME", "POD_NAMESPACE", "POD_IP"] {
        assert!(
            cli.contains(&format!("\"{downward}\"")),
            "src/cli/ no longer reads {downward}"
        );
        assert!(set_by_chart.contains(downward), "the chart does not set {downward}");
    }
    // The lease namespace is the release namespace, through POD_NAMESPACE (the Role is there).
    // The callback's advertised URL is derived from POD_IP.
    let deliberately_unset = ["LEASE_NAMESPACE", "CALLBACK_ADVERTISE_URL"];

    let unknown: Vec<&String> = set_by_chart
        .iter()
        .filter(|n| !read_by_binary.contains(*n) && !["POD_NAME", "POD_NAMESPACE", "POD_IP"].contains(&n.as_str()))
        .collect();
    assert!(
        unknown.is_empty(),
        "the chart sets variables the binary does not read: {unknown:?}"
    );
    let missing: Vec<&String> = read_by_binary
        .iter()
        .filter(|n| !set_by_chart.contains(*n) && !deliberately_unset.contains(&n.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "settings of the binary the chart does not pass: {missing:?}"
    );

    // Flags without an environment variable, passed as arguments.
    for (flag, field) in [
        ("--token-timeout=", "pub token_timeout:"),
        ("--max-response-bytes=", "pub max_response_bytes:"),
    ] {
        assert!(cli.contains(field), "src/cli/ has no {field}");
        assert!(deployment.contains(flag), "the chart does not pass {flag}");
    }
}

#[test]
fn every_value_is_in_the_schema_and_the_schema_refuses_unknown_keys() {
    let values: serde_json::Value = serde_saphyr::from_str(&read(&format!("{CHART}/values.yaml"))).unwrap();
    let schema: serde_json::Value = serde_json::from_str(&read(&format!("{CHART}/values.schema.json"))).unwrap();
    assert_eq!(schema["$schema"], "http://json-schema.org/draft-07/schema#");
    assert_eq!(schema["additionalProperties"], false);
    // Every key of values.yaml, at every depth, is described where the schema is closed.
    fn walk(v: &serde_json::Value, s: &serde_json::Value, path: &str, errors: &mut Vec<String>) {
        let Some(map) = v.as_object() else { return };
        if s["additionalProperties"] != false {
            return; // free-form (resources, affinity, …)
        }
        for (k, child) in map {
            match s["properties"].get(k) {
                Some(cs) => walk(child, cs, &format!("{path}.{k}"), errors),
                None => errors.push(format!("{path}.{k}")),
            }
        }
    }
    let mut errors = Vec::new();
    walk(&values, &schema, "", &mut errors);
    assert!(
        errors.is_empty(),
        "values.yaml keys missing from values.schema.json: {errors:?}"
    );
    let documented: BTreeSet<&String> = values.as_object().unwrap().keys().collect();
    let described: BTreeSet<&String> = schema["properties"].as_object().unwrap().keys().collect();
    let extra: Vec<&&String> = described
        .difference(&documented)
        .filter(|k| k.as_str() != "global")
        .collect();
    assert!(
        extra.is_empty(),
        "schema keys without a default in values.yaml: {extra:?}"
    );
}

/// Dotted paths of the chart's values, down to the settings users set (not into pod specs).
fn value_paths(prefix: &str, v: &serde_json::Value, out: &mut Vec<String>) {
    const OPAQUE: [&str; 5] = [
        "resources",
        "podSecurityContext",
        "securityContext",
        "namespaceSelector",
        "podSelector",
    ];
    for (k, x) in v.as_object().expect("a mapping") {
        let path = format!("{prefix}{k}");
        match x.as_object() {
            Some(m) if !m.is_empty() && !OPAQUE.contains(&k.as_str()) => value_paths(&format!("{path}."), x, out),
            _ => out.push(path),
        }
    }
}

#[test]
fn every_chart_value_is_in_the_readme_values_table() {
    let values: serde_json::Value = serde_saphyr::from_str(&read(&format!("{CHART}/values.yaml"))).unwrap();
    let readme = read(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"));
    let table = &readme[readme.find("### Chart values").expect("README: ### Chart values")..];
    let mut paths = Vec::new();
    value_paths("", &values, &mut paths);
    assert!(paths.len() > 40, "{paths:?}");
    let missing: Vec<&String> = paths.iter().filter(|p| !table.contains(&format!("`{p}`"))).collect();
    assert!(
        missing.is_empty(),
        "values.yaml settings missing from README's values table: {missing:?}"
    );
}
