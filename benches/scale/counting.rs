//! The scale benchmark's counting, apart from its plumbing so that it can be tested
//! (`tests/bench_counting.rs` includes this file and holds its tests).

use std::collections::{BTreeMap, HashSet};

/// Token calls of a cold start: per client, the calls until its first token (that one
/// included). Calls by clients that already have a token are renewals — they happen when the
/// cold start outlasts the renewal point of the first tokens — and are counted apart.
#[derive(Debug, Default)]
pub struct FirstIssue {
    issued: HashSet<String>,
    /// Calls by clients without a token yet, the one that got it included.
    pub until_issued: u64,
    /// Calls by clients that had their first token already.
    pub after_issued: u64,
}

impl FirstIssue {
    pub fn record(&mut self, client: &str, issued: bool) {
        if self.issued.contains(client) {
            self.after_issued += 1;
            return;
        }
        self.until_issued += 1;
        if issued {
            self.issued.insert(client.to_string());
        }
    }
}

/// The write verbs of `apiserver_request_total` (server-side apply is `APPLY`).
const WRITE_VERBS: [&str; 6] = ["CREATE", "UPDATE", "PATCH", "APPLY", "DELETE", "DELETECOLLECTION"];

/// Writes by "verb resource[/subresource]" (verb in lower case, as the test API server's log
/// names them) from a kube-apiserver's `/metrics`: the `apiserver_request_total` counters of
/// write verbs on `resources`, any response code, dry runs left out, summed over the other
/// labels (group, version, scope, code, component). `None` when the exposition has no
/// `apiserver_request_total` at all; a server that has not written any of `resources` yet
/// (a counter appears with its first request) has counters all the same: an empty map.
pub fn apiserver_writes(metrics: &str, resources: &[&str]) -> Option<BTreeMap<String, u64>> {
    samples(metrics, "apiserver_request_total").next()?;
    let mut out = BTreeMap::new();
    for (labels, value) in samples(metrics, "apiserver_request_total") {
        let label = |name: &str| labels.iter().find(|(k, _)| k == name).map_or("", |(_, v)| v.as_str());
        if !WRITE_VERBS.contains(&label("verb"))
            || !resources.contains(&label("resource"))
            || !label("dry_run").is_empty()
        {
            continue;
        }
        let resource = match label("subresource") {
            "" => label("resource").to_string(),
            sub => format!("{}/{sub}", label("resource")),
        };
        *out.entry(format!("{} {resource}", label("verb").to_lowercase()))
            .or_default() += value.round() as u64;
    }
    Some(out)
}

/// The operator's own `connectorauth_writes_total{kind}`, keyed like API writes. It counts a
/// reconcile that wrote Secrets once however many it wrote, and no Events: a lower bound.
pub fn operator_writes(metrics: &str) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for (labels, value) in samples(metrics, "connectorauth_writes_total") {
        let kind = labels.iter().find(|(k, _)| k == "kind").map_or("", |(_, v)| v.as_str());
        let key = match kind {
            "secret" => "write secrets".to_string(),
            "status" => "write connectorauths/status".to_string(),
            other => format!("write {other}"),
        };
        *out.entry(key).or_default() += value.round() as u64;
    }
    out
}

/// The labels and values of the samples of `name` in a Prometheus text exposition.
fn samples<'a>(metrics: &'a str, name: &'a str) -> impl Iterator<Item = (Vec<(String, String)>, f64)> + 'a {
    metrics.lines().filter_map(move |line| {
        let rest = line.strip_prefix(name)?;
        let (labels, value) = match rest.strip_prefix('{') {
            Some(r) => r.rsplit_once('}')?,
            None => ("", rest),
        };
        if !value.starts_with(' ') {
            return None; // another metric whose name starts with this one
        }
        Some((parse_labels(labels), value.trim().parse().ok()?))
    })
}

/// `name="value",…` of a Prometheus text-format sample, with `\"`, `\\` and `\n` unescaped.
fn parse_labels(s: &str) -> Vec<(String, String)> {
    let mut labels = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        let name: String = chars
            .by_ref()
            .skip_while(|c| *c == ',' || c.is_whitespace())
            .take_while(|c| *c != '=')
            .collect();
        if name.is_empty() || chars.next() != Some('"') {
            return labels;
        }
        let mut value = String::new();
        while let Some(c) = chars.next() {
            match c {
                '"' => break,
                '\\' => match chars.next() {
                    Some('n') => value.push('\n'),
                    Some(other) => value.push(other),
                    None => {}
                },
                c => value.push(c),
            }
        }
        labels.push((name.trim().to_string(), value));
    }
}

/// What was counted between two readings of growing counters.
pub fn delta(before: &BTreeMap<String, u64>, after: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    after
        .iter()
        .map(|(k, v)| (k.clone(), v.saturating_sub(before.get(k).copied().unwrap_or(0))))
        .filter(|(_, v)| *v > 0)
        .collect()
}
