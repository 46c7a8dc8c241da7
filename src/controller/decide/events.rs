//! Which Event, if any, a pass's outcome deserves.

use crate::reason::Reason;
use crate::reconcile::record::{Action, Outcome};

/// An Event to record about a pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventPlan {
    pub warning: bool,
    pub reason: Reason,
    pub note: String,
    pub action: EventAction,
}

/// What the operator was doing when it records an Event (the Event's `action`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventAction {
    Adopt,
    Authorize,
    Issue,
    Refresh,
    Restart,
    Revoke,
    Validate,
    Verify,
}

impl EventAction {
    pub fn as_str(self) -> &'static str {
        match self {
            EventAction::Adopt => "Adopt",
            EventAction::Authorize => "Authorize",
            EventAction::Issue => "Issue",
            EventAction::Refresh => "Refresh",
            EventAction::Restart => "Restart",
            EventAction::Revoke => "Revoke",
            EventAction::Validate => "Validate",
            EventAction::Verify => "Verify",
        }
    }
}

/// Which Event, if any, an outcome deserves: first issuance, re-authentication after a change,
/// failures and recovery. Routine refreshes are visible in status and metrics, not as Events,
/// to keep API writes per refresh low.
pub fn event_for(outcome: &Outcome, was_failing: bool, secret_name: &str) -> Option<EventPlan> {
    match &outcome.action {
        Action::Issued { .. } if was_failing => Some(EventPlan {
            warning: false,
            reason: Reason::Recovered,
            note: "token obtained after failures".into(),
            action: EventAction::Refresh,
        }),
        Action::Issued {
            reason: Reason::RenewalDue | Reason::Expired,
            ..
        } => None,
        Action::Issued { reason, .. } => Some(EventPlan {
            warning: false,
            reason: Reason::Issued,
            note: format!("token issued ({reason}) into Secret {secret_name}"),
            action: EventAction::Issue,
        }),
        Action::Failed { error } => Some(EventPlan {
            warning: true,
            reason: error.reason(),
            note: error.to_string(),
            action: EventAction::Refresh,
        }),
        Action::Kept | Action::BackingOff => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::EngineError;

    fn outcome(action: Action) -> Outcome {
        Outcome {
            action,
            token: None,
            next: None,
            written: false,
            failures: 0,
            last_error: None,
            pending_consent: None,
            renew_handled: None,
        }
    }

    #[test]
    fn events_tell_people_about_issuance_failure_and_recovery_but_not_routine_refreshes() {
        let issued = |reason| {
            outcome(Action::Issued {
                reason,
                refreshed: true,
            })
        };
        assert_eq!(event_for(&issued(Reason::RenewalDue), false, "s"), None);
        assert_eq!(event_for(&issued(Reason::Expired), false, "s"), None);
        let e = event_for(&issued(Reason::NoToken), false, "crm-token").unwrap();
        assert_eq!(
            (e.warning, e.reason, e.note.as_str()),
            (false, Reason::Issued, "token issued (NoToken) into Secret crm-token")
        );
        let e = event_for(&issued(Reason::RenewalDue), true, "s").unwrap();
        assert_eq!(e.reason, Reason::Recovered);
        let failed = outcome(Action::Failed {
            error: EngineError::AuthorizationRequired,
        });
        let e = event_for(&failed, false, "s").unwrap();
        assert!(e.warning);
        assert_eq!(e.reason, Reason::AuthorizationRequired);
        assert_eq!(event_for(&outcome(Action::Kept), true, "s"), None);
        assert_eq!(event_for(&outcome(Action::BackingOff), true, "s"), None);
    }
}
