//! Whether this process may act: send token requests and write. See `controller::leader` for
//! who holds it in a cluster; local mode always does.

use tokio::sync::watch;

/// A view of this process's leadership, cheap to clone and to ask.
#[derive(Clone, Debug)]
pub struct Lead(Option<watch::Receiver<bool>>);

impl Lead {
    /// A process that is the only writer by construction (local mode, or the controller
    /// without leader election).
    pub fn always() -> Self {
        Lead(None)
    }

    /// Follows a leadership flag (true while the Lease is held).
    pub fn following(flag: watch::Receiver<bool>) -> Self {
        Lead(Some(flag))
    }

    /// Whether this process holds the lead right now.
    pub fn held(&self) -> bool {
        self.0.as_ref().is_none_or(|f| *f.borrow())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lead_follows_its_flag() {
        assert!(Lead::always().held());
        let (tx, rx) = watch::channel(false);
        let lead = Lead::following(rx);
        assert!(!lead.held());
        tx.send(true).unwrap();
        assert!(lead.held());
        tx.send(false).unwrap();
        assert!(!lead.held());
        drop(tx);
        assert!(!lead.held(), "a dropped flag keeps its last value");
    }
}
