//! Which workloads of `output.rolloutRestart` a pass restarts, and when.

use jiff::Timestamp;
use sha2::{Digest, Sha256};

use crate::api::Output;
use crate::engine::TokenState;
use crate::reconcile::record::RolloutMark;

/// What the published credential is, as far as restarts are concerned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RolloutTrigger {
    /// Changes with what matters: the token's inputs (scheme, renewal policy, credentials)
    /// and the output spec.
    pub change: String,
    /// Changes with every issuance (routine refreshes included).
    pub issued: String,
}

/// The trigger of a published token under an output spec.
pub fn rollout_trigger(token: &TokenState, output: &Output) -> RolloutTrigger {
    // Only what shapes the published values: not the restart list itself, nor keepPrevious.
    let shaping = serde_json::json!([
        output.secret_name,
        output.header,
        output.template,
        output.expose_refresh_token
    ]);
    let mut h = Sha256::new();
    h.update(token.fingerprint.as_bytes());
    h.update(shaping.to_string().as_bytes());
    RolloutTrigger {
        change: h.finalize()[..16].iter().map(|b| format!("{b:02x}")).collect(),
        issued: token.issued_at.to_string(),
    }
}

/// The stable key of a restart target: `Deployment/name` or `Deployment?selector`.
pub fn target_key(kind: &str, name: Option<&str>, selector: Option<&str>) -> String {
    match (name, selector) {
        (Some(n), _) => format!("{kind}/{n}"),
        (None, s) => format!("{kind}?{}", s.unwrap_or_default()),
    }
}

/// Decides the restarts a pass owes: `None` when none are owed; else the mark to store
/// *before* restarting, whose `pending` are the targets to restart now.
///
/// - No mark yet: the workloads run with what is published (they started with it, or
///   restarting is being set up); the mark is stored as a baseline and nothing restarts.
/// - A change that matters: every target. A routine refresh: the `onRefresh` targets.
/// - Targets left pending by an earlier attempt stay pending (while still listed).
///
/// `targets` are the keys of the listed targets, each with its `onRefresh`.
pub fn rollout(
    mark: Option<&RolloutMark>,
    trigger: &RolloutTrigger,
    targets: &[(String, bool)],
    now: Timestamp,
) -> Option<RolloutMark> {
    if targets.is_empty() {
        return None;
    }
    let Some(mark) = mark else {
        return Some(RolloutMark {
            change: trigger.change.clone(),
            issued: trigger.issued.clone(),
            at: now.to_string(),
            pending: Vec::new(),
        });
    };
    let changed = mark.change != trigger.change;
    let refreshed = mark.issued != trigger.issued;
    let pending: Vec<String> = targets
        .iter()
        .filter(|(key, on_refresh)| changed || (refreshed && *on_refresh) || mark.pending.contains(key))
        .map(|(key, _)| key.clone())
        .collect();
    if !changed && !refreshed {
        // Only retries of what is pending, under the same mark (same `at`).
        return (!pending.is_empty()).then(|| RolloutMark {
            pending,
            ..mark.clone()
        });
    }
    Some(RolloutMark {
        change: trigger.change.clone(),
        issued: trigger.issued.clone(),
        at: now.to_string(),
        pending,
    })
}

#[cfg(test)]
mod tests {

    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn trigger(change: &str, issued: &str) -> RolloutTrigger {
        RolloutTrigger {
            change: change.into(),
            issued: issued.into(),
        }
    }

    #[test]
    fn restarts_follow_credential_changes_and_routine_refreshes_only_for_on_refresh_targets() {
        let now = ts("2026-01-01T00:00:00Z");
        let later = ts("2026-01-01T01:00:00Z");
        let targets = vec![
            ("Deployment/api".to_string(), false),
            ("DaemonSet?app=x".to_string(), true),
        ];
        // First sight: a baseline, nothing restarts.
        let base = rollout(None, &trigger("c1", "i1"), &targets, now).unwrap();
        assert_eq!(base.pending, Vec::<String>::new());
        assert_eq!((base.change.as_str(), base.issued.as_str()), ("c1", "i1"));
        // Nothing new: nothing owed.
        assert_eq!(rollout(Some(&base), &trigger("c1", "i1"), &targets, later), None);
        // A routine refresh: only the onRefresh target.
        let refresh = rollout(Some(&base), &trigger("c1", "i2"), &targets, later).unwrap();
        assert_eq!(refresh.pending, vec!["DaemonSet?app=x".to_string()]);
        assert_eq!(refresh.at, later.to_string(), "a new change gets a new restartedAt");
        // New credentials (which also means a new token): every target.
        let change = rollout(Some(&base), &trigger("c2", "i2"), &targets, later).unwrap();
        assert_eq!(change.pending.len(), 2);
        // No targets listed: nothing, whatever changed.
        assert_eq!(rollout(Some(&base), &trigger("c2", "i2"), &[], later), None);
        assert_eq!(rollout(None, &trigger("c2", "i2"), &[], later), None);
    }

    #[test]
    fn a_restart_left_pending_is_retried_under_the_same_mark_until_done() {
        let now = ts("2026-01-01T00:00:00Z");
        let later = ts("2026-01-01T00:05:00Z");
        let targets = vec![("Deployment/a".to_string(), false), ("Deployment/b".to_string(), false)];
        let mark = RolloutMark {
            change: "c".into(),
            issued: "i".into(),
            at: now.to_string(),
            pending: vec!["Deployment/b".into()],
        };
        let retry = rollout(Some(&mark), &trigger("c", "i"), &targets, later).unwrap();
        assert_eq!(
            retry, mark,
            "same restartedAt: a workload already restarted is recognised"
        );
        // A pending target no longer listed is dropped.
        let fewer = vec![("Deployment/a".to_string(), false)];
        assert_eq!(rollout(Some(&mark), &trigger("c", "i"), &fewer, later), None);
        // A pending target survives the next routine refresh even if it is not onRefresh.
        let next = rollout(Some(&mark), &trigger("c", "i2"), &targets, later).unwrap();
        assert_eq!(next.pending, vec!["Deployment/b".to_string()]);
    }

    #[test]
    fn the_trigger_changes_with_inputs_and_output_shape_but_not_with_the_restart_list() {
        let token = |fingerprint: &str, issued: &str| TokenState {
            ..TokenState::new("t", "Bearer", ts(issued), fingerprint)
        };
        let out = Output::default();
        let a = rollout_trigger(&token("f1", "2026-01-01T00:00:00Z"), &out);
        let refreshed = rollout_trigger(&token("f1", "2026-01-01T01:00:00Z"), &out);
        assert_eq!(a.change, refreshed.change);
        assert_ne!(a.issued, refreshed.issued);
        assert_ne!(
            a.change,
            rollout_trigger(&token("f2", "2026-01-01T00:00:00Z"), &out).change
        );
        let mut templated = out.clone();
        templated.template.insert("url".into(), "x".into());
        assert_ne!(
            a.change,
            rollout_trigger(&token("f1", "2026-01-01T00:00:00Z"), &templated).change
        );
        let mut listed = out.clone();
        listed.keep_previous = true;
        listed.rollout_restart = vec![crate::api::RolloutTarget {
            kind: crate::api::WorkloadKind::Deployment,
            name: Some("d".into()),
            selector: None,
            on_refresh: false,
        }];
        assert_eq!(
            a.change,
            rollout_trigger(&token("f1", "2026-01-01T00:00:00Z"), &listed).change
        );
        assert_eq!(target_key("Deployment", Some("api"), None), "Deployment/api");
        assert_eq!(target_key("StatefulSet", None, Some("app=x")), "StatefulSet?app=x");
    }
}
