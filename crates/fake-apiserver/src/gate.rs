//! [`Gate`]: a point where requests wait until the test lets them go.

use std::sync::Arc;

use tokio::sync::watch;

/// A point where requests wait until the test lets them go, so a test can act (stop a client
/// abruptly, inspect state) while a request is in flight, and then decide whether that request
/// takes effect.
///
/// Used by [`Delay::at`](crate::Delay::at); also usable in other test servers (e.g. a token
/// provider emulator) through [`enter`](Self::enter). Clones share one gate.
#[derive(Clone, Debug)]
pub struct Gate(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    /// How many requests have reached the gate.
    arrived: watch::Sender<u32>,
    /// None while closed; then whether held requests pass or are answered with a status.
    verdict: watch::Sender<Option<Verdict>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Verdict {
    Pass,
    Answer(u16),
}

impl Default for Gate {
    fn default() -> Self {
        Self::new()
    }
}

impl Gate {
    /// A closed gate.
    pub fn new() -> Self {
        Gate(Arc::new(Inner {
            arrived: watch::channel(0).0,
            verdict: watch::channel(None).0,
        }))
    }

    /// How many requests have reached the gate so far (held or let through).
    pub fn arrivals(&self) -> u32 {
        *self.0.arrived.borrow()
    }

    /// Waits until at least one request has reached the gate.
    pub async fn arrived(&self) {
        self.wait_arrivals(1).await;
    }

    /// Waits until at least `n` requests have reached the gate.
    pub async fn wait_arrivals(&self, n: u32) {
        let mut rx = self.0.arrived.subscribe();
        // The sender lives in `self`, so the channel cannot close while waiting.
        let _ = rx.wait_for(|a| *a >= n).await;
    }

    /// Lets held (and later) requests go on: they are handled as if never held, even when
    /// their client has gone away meanwhile (as a real server completes a received write).
    pub fn open(&self) {
        self.0.verdict.send_replace(Some(Verdict::Pass));
    }

    /// Answers held (and later) requests with `status` instead of handling them: they never
    /// take effect, as if lost before reaching storage.
    pub fn answer(&self, status: u16) {
        self.0.verdict.send_replace(Some(Verdict::Answer(status)));
    }

    /// Whether the gate was opened or answered.
    pub fn is_decided(&self) -> bool {
        self.0.verdict.borrow().is_some()
    }

    /// For servers: registers an arrival and waits for the test's decision. `None`: go on and
    /// handle the request; `Some(status)`: answer with `status` without handling it.
    pub async fn enter(&self) -> Option<u16> {
        self.0.arrived.send_modify(|a| *a += 1);
        let mut rx = self.0.verdict.subscribe();
        let verdict = rx.wait_for(Option::is_some).await.map(|v| *v);
        match verdict {
            Ok(Some(Verdict::Answer(status))) => Some(status),
            _ => None,
        }
    }
}
