//! The scale benchmark's counting (benches/scale/counting.rs): cold-start token calls per
//! client, API writes from a kube-apiserver's request counters and from the operator's own.

#[path = "../benches/scale/counting.rs"]
mod counting;

use std::collections::BTreeMap;

use counting::*;

#[test]
fn renewals_during_a_long_cold_start_are_not_cold_start_calls() {
    let mut f = FirstIssue::default();
    f.record("client-1", false); // a provider error: a cold-start retry
    f.record("client-1", true);
    f.record("client-2", true);
    f.record("client-1", true); // renewed before client-3 got its first token
    f.record("client-3", true);
    assert_eq!((f.until_issued, f.after_issued), (4, 1));
}

#[test]
fn apiserver_writes_are_read_by_verb_and_resource_from_request_counters() {
    let metrics = r#"# HELP apiserver_request_total [STABLE] Counter of apiserver requests broken out for each verb, dry run value, group, version, resource, scope, component, and HTTP response code.
# TYPE apiserver_request_total counter
apiserver_request_total{code="201",component="apiserver",dry_run="",group="",resource="events",scope="resource",subresource="",verb="CREATE",version="v1"} 1000
apiserver_request_total{code="201",component="apiserver",dry_run="",group="events.k8s.io",resource="events",scope="resource",subresource="",verb="CREATE",version="v1"} 5
apiserver_request_total{code="200",component="apiserver",dry_run="",group="",resource="secrets",scope="resource",subresource="",verb="APPLY",version="v1"} 1.5e+03
apiserver_request_total{code="409",component="apiserver",dry_run="",group="",resource="secrets",scope="resource",subresource="",verb="APPLY",version="v1"} 3
apiserver_request_total{code="200",component="apiserver",dry_run="All",group="",resource="secrets",scope="resource",subresource="",verb="APPLY",version="v1"} 7
apiserver_request_total{code="200",component="apiserver",dry_run="",group="",resource="secrets",scope="namespace",subresource="",verb="LIST",version="v1"} 40
apiserver_request_total{code="200",component="apiserver",dry_run="",group="connectorauth.dev",resource="connectorauths",scope="resource",subresource="status",verb="APPLY",version="v1alpha1"} 999
apiserver_request_total{code="200",component="apiserver",dry_run="",group="coordination.k8s.io",resource="leases",scope="resource",subresource="",verb="UPDATE",version="v1"} 77
apiserver_request_total{code="201",component="apiserver",dry_run="",group="",resource="secrets",scope="resource",subresource="",verb="CREATE",version="v1"} 2
apiserver_request_duration_seconds_bucket{verb="APPLY",resource="secrets",le="0.1"} 50
"#;
    let writes = apiserver_writes(metrics, &["secrets", "connectorauths", "events"]).unwrap();
    assert_eq!(
        writes,
        BTreeMap::from([
            ("apply connectorauths/status".to_string(), 999),
            ("apply secrets".to_string(), 1503),
            ("create events".to_string(), 1005),
            ("create secrets".to_string(), 2),
        ])
    );
    let before = BTreeMap::from([("apply secrets".to_string(), 1500), ("create secrets".to_string(), 2)]);
    assert_eq!(
        delta(&before, &writes),
        BTreeMap::from([
            ("apply connectorauths/status".to_string(), 999),
            ("apply secrets".to_string(), 3),
            ("create events".to_string(), 1005),
        ])
    );
}

#[test]
fn label_values_with_escapes_and_commas_are_read_whole() {
    let metrics = r#"apiserver_request_total{code="200",dry_run="",note="a,b=\"c\"\\",resource="secrets",subresource="",verb="PATCH"} 4"#;
    assert_eq!(
        apiserver_writes(metrics, &["secrets"]),
        Some(BTreeMap::from([("patch secrets".to_string(), 4)]))
    );
}

/// A kube-apiserver (v1.24 seen) exposes a request counter only once a request of its labels
/// was made: before the operator's first write there are counters (for the benchmark's
/// namespaces) but none of the written resources. That is zero writes so far, not "no counters".
#[test]
fn a_server_that_has_not_written_the_resources_yet_still_counts_them_later() {
    let start = r#"apiserver_request_total{code="201",component="apiserver",dry_run="",group="",resource="namespaces",scope="resource",subresource="",verb="POST",version="v1"} 8"#;
    let before = apiserver_writes(start, &["secrets"]).unwrap();
    assert!(before.is_empty());
    let later = format!(
        "{start}\napiserver_request_total{{code=\"200\",component=\"apiserver\",dry_run=\"\",group=\"\",resource=\"secrets\",scope=\"resource\",subresource=\"\",verb=\"APPLY\",version=\"v1\"}} 12"
    );
    let after = apiserver_writes(&later, &["secrets"]).unwrap();
    assert_eq!(
        delta(&before, &after),
        BTreeMap::from([("apply secrets".to_string(), 12)])
    );
    assert_eq!(apiserver_writes("process_cpu_seconds_total 3\n", &["secrets"]), None);
}

#[test]
fn the_operators_write_counters_are_keyed_like_api_writes() {
    let metrics = "# TYPE connectorauth_writes counter\n\
                   connectorauth_writes_total{kind=\"secret\"} 12\n\
                   connectorauth_writes_total{kind=\"status\"} 10\n\
                   connectorauth_writes_total_created 1.7e9\n\
                   connectorauth_skipped_writes_total{kind=\"secret\"} 99\n";
    assert_eq!(
        operator_writes(metrics),
        BTreeMap::from([
            ("write connectorauths/status".to_string(), 10),
            ("write secrets".to_string(), 12),
        ])
    );
}
