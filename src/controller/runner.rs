//! Runs passes: takes resources from the work queue, at most the queue's limit at once, finds
//! them in the cache and runs a pass on each, then hands the queue the pass's next time.

use std::pin::pin;
use std::sync::{Arc, Mutex};

use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use tokio::sync::watch;
use tracing::debug;

use super::context::Context;
use super::index::{ReferenceIndex, lock};
use super::pass;
use super::queue::Work;

/// Runs passes until `shutdown` fires, from the moment the cache has synced (a pass before
/// that would see no Secrets' owners and no neighbours; and until then there is nothing to
/// run on). Once told to stop, it starts no pass and returns when those running have ended.
pub async fn run(
    ctx: Arc<Context>,
    index: Arc<Mutex<ReferenceIndex>>,
    work: Arc<Work>,
    mut synced: watch::Receiver<bool>,
    shutdown: impl Future<Output = ()> + Send,
) {
    let mut shutdown = pin!(shutdown.fuse());
    tokio::select! {
        r = synced.wait_for(|s| *s) => if r.is_err() { return },
        () = &mut shutdown => {
            debug!("stopped before the cache synced");
            return;
        }
    }
    let mut running = FuturesUnordered::new();
    let mut stopping = false;
    loop {
        tokio::select! {
            // Ending passes first: each frees a place for the next.
            biased;
            Some((key, entry, after)) = running.next() => {
                forget_if_gone(&ctx, &index, &key, &entry);
                work.done(&key, after);
            }
            () = &mut shutdown, if !stopping => stopping = true,
            key = work.next(), if !stopping => {
                let entry = lock(&index).get(&key);
                match entry {
                    Some(entry) => {
                        let ctx = ctx.clone();
                        running.push(async move {
                            let after = pass::reconcile(&entry, &ctx).await;
                            (key, entry, after)
                        });
                    }
                    // Deleted (or dropped by a relist) since it was queued.
                    None => work.done(&key, None),
                }
            }
        }
        if stopping && running.is_empty() {
            return;
        }
    }
}

/// A resource deleted while its pass ran was forgotten when the deletion was seen, and the
/// pass may have put back what is kept about it (its metrics series, its last record): forget
/// it again once the pass is over, unless the cache still holds that same resource. Decoding
/// is needed only when the cached entry changed during the pass.
fn forget_if_gone(
    ctx: &Context,
    index: &Mutex<ReferenceIndex>,
    key: &super::cache::Key,
    ran: &Arc<super::cache::Entry>,
) {
    let uid = |e: &super::cache::Entry| e.decode().ok().and_then(|ca| kube::ResourceExt::uid(&ca));
    let now = lock(index).get(key);
    let still = now.is_some_and(|now| Arc::ptr_eq(&now, ran) || uid(&now) == uid(ran));
    if !still && let Ok(ca) = ran.decode() {
        ctx.forget(&ca);
    }
}
