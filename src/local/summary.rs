//! Which lines `local` prints while it keeps running: one per change, not one per pass. A pass
//! is summarised without times (state word, reason, consent link), and a resource's line is
//! printed when a token was published or its summary differs from the previous pass's.

use crate::engine::EngineError;
use crate::reconcile::Action;

use super::Report;
use super::report::State;

/// What a pass showed for one resource, comparable across passes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub state: State,
    /// The reason category (`RenewalDue`, `ProviderUnavailable`, …), or the whole message of a
    /// failure that has none.
    pub reason: String,
    /// The consent link on offer.
    pub link: Option<String>,
    /// A token or restored output was published in this pass.
    pub published: bool,
}

impl Summary {
    pub fn of(report: &Report) -> Summary {
        let summary = |state, reason: &str| Summary {
            state,
            reason: reason.to_string(),
            link: None,
            published: false,
        };
        let o = match &report.result {
            Err(failure) => return summary(State::Failed, &failure.to_string()),
            Ok(o) => o,
        };
        let mut s = match &o.action {
            Action::Kept => summary(State::Kept, ""),
            Action::Issued { reason, refreshed } => summary(
                if *refreshed { State::Refreshed } else { State::Issued },
                reason.as_str(),
            ),
            Action::BackingOff => summary(
                State::BackingOff,
                o.last_error.as_ref().map_or("", |f| f.reason.as_str()),
            ),
            Action::Failed {
                error: EngineError::AuthorizationRequired,
            } if report.authorization_url.is_some() => Summary {
                link: report.authorization_url.clone(),
                ..summary(State::Consent, EngineError::AuthorizationRequired.reason().as_str())
            },
            Action::Failed { error } => summary(State::Failed, error.reason().as_str()),
        };
        s.published = o.written || matches!(o.action, Action::Issued { .. });
        s
    }
}

/// Whether to print `current`'s line, given the summary of the resource's previous pass
/// (`None` on its first). Publishing is always news; a token kept or a backoff waited out is
/// never; a failure or a consent link is news when it differs from the previous pass.
pub fn worth_printing(previous: Option<&Summary>, current: &Summary) -> bool {
    if current.published {
        return true;
    }
    match current.state {
        State::Kept | State::BackingOff => false,
        _ => previous != Some(current),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reason::Reason;
    use crate::reconcile::Outcome;
    use crate::reconcile::record::Failure;

    fn report(action: Action, written: bool, link: Option<&str>) -> Report {
        Report {
            namespace: "ns".into(),
            name: "a".into(),
            scheme: "oauth2".into(),
            secret: "out/ns/a-token".into(),
            result: Ok(Outcome {
                action,
                token: None,
                next: None,
                written,
                failures: 0,
                last_error: Some(Failure::new(Reason::ProviderUnavailable, "HTTP 503")),
                pending_consent: None,
                renew_handled: None,
            }),
            authorization_url: link.map(str::to_string),
            warning: None,
            verification: None,
        }
    }

    fn consent(link: &str) -> Summary {
        Summary::of(&report(
            Action::Failed {
                error: EngineError::AuthorizationRequired,
            },
            false,
            Some(link),
        ))
    }

    fn unavailable(status: u16) -> Summary {
        Summary::of(&report(
            Action::Failed {
                error: EngineError::ProviderUnavailable {
                    step: "token".into(),
                    host: "h".into(),
                    status,
                    retry_after: None,
                },
            },
            false,
            None,
        ))
    }

    #[test]
    fn a_pending_consent_is_printed_once_and_again_only_when_its_link_changes() {
        let first = consent("https://idp/authorize?state=1");
        assert!(worth_printing(None, &first));
        assert!(!worth_printing(Some(&first), &consent("https://idp/authorize?state=1")));
        assert!(worth_printing(Some(&first), &consent("https://idp/authorize?state=2")));
    }

    #[test]
    fn every_published_token_is_printed_even_with_the_same_reason() {
        let refreshed = Summary::of(&report(
            Action::Issued {
                reason: crate::reason::Reason::RenewalDue,
                refreshed: true,
            },
            true,
            None,
        ));
        assert!(worth_printing(Some(&refreshed), &refreshed.clone()));
        let restored = Summary::of(&report(Action::Kept, true, None));
        assert!(worth_printing(
            Some(&Summary::of(&report(Action::Kept, false, None))),
            &restored
        ));
    }

    #[test]
    fn kept_tokens_and_backoff_are_never_printed() {
        let kept = Summary::of(&report(Action::Kept, false, None));
        let backoff = Summary::of(&report(Action::BackingOff, false, None));
        assert!(!worth_printing(None, &kept));
        assert!(!worth_printing(Some(&unavailable(503)), &kept));
        assert!(!worth_printing(Some(&unavailable(503)), &backoff));
    }

    #[test]
    fn a_failure_is_printed_when_it_begins_or_changes_and_after_each_backoff_not_every_pass() {
        let failed = unavailable(503);
        assert!(worth_printing(None, &failed));
        assert!(
            !worth_printing(Some(&failed), &unavailable(502)),
            "same reason, details aside"
        );
        let backoff = Summary::of(&report(Action::BackingOff, false, None));
        assert!(worth_printing(Some(&backoff), &failed), "a new attempt failed");
        assert!(worth_printing(Some(&failed), &consent("https://idp/authorize?state=1")));
        let missing = Report {
            result: Err(Failure::new(
                Reason::CredentialsNotFound,
                "credentials Secret ns/c not found",
            )),
            ..report(Action::Kept, false, None)
        };
        let other = Report {
            result: Err(Failure::new(
                Reason::CredentialsNotFound,
                "credentials Secret ns/d not found",
            )),
            ..report(Action::Kept, false, None)
        };
        assert!(!worth_printing(Some(&Summary::of(&missing)), &Summary::of(&missing)));
        assert!(worth_printing(Some(&Summary::of(&missing)), &Summary::of(&other)));
    }
}
