//! Watch streams: newline-delimited JSON `WatchEvent`s over a chunked response.
//!
//! A stream reads the resource's change history from its current position rather
//! than receiving events pushed into a bounded channel: a slow client therefore
//! never silently loses events. It only fails, with a 410 ERROR event like a real
//! server's watch cache, once the history it still needs has been trimmed.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::Shared;
use crate::error::ApiError;
use crate::meta::{META_API_VERSION, ObjectView};
use crate::registry::ResourceInfo;
use crate::store::{Change, CollKey, EventType, Filter, TooOld};

/// Changes read from the history per lock acquisition.
const BATCH: usize = 512;

#[derive(Serialize)]
struct EventLine<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    object: ObjectView<'a>,
}

/// State of one open watch.
struct WatchStream {
    shared: Arc<Shared>,
    ck: CollKey,
    info: Arc<ResourceInfo>,
    namespace: Option<String>,
    filter: Filter,
    metadata_only: bool,
    /// Current objects still to send as ADDED (rv 0 / absent / sendInitialEvents).
    initial: VecDeque<Arc<Value>>,
    /// rv of the `k8s.io/initial-events-end` bookmark still to send.
    initial_end: Option<u64>,
    /// rv of the last change delivered (or skipped as not matching).
    position: u64,
    changed: watch::Receiver<u64>,
    closer: watch::Receiver<u64>,
    deadline: Option<Instant>,
    done: bool,
}

/// Starts a watch; see [`WatchStream`]. Query parameters: `resourceVersion`,
/// `sendInitialEvents`, `timeoutSeconds` (selectors are already in `filter`).
pub(crate) fn start(
    shared: Arc<Shared>,
    info: Arc<ResourceInfo>,
    ck: CollKey,
    namespace: Option<String>,
    filter: Filter,
    query: &HashMap<String, String>,
    metadata_only: bool,
) -> Result<Response, ApiError> {
    let param = |k: &str| query.get(k).map(String::as_str).filter(|v| !v.is_empty());
    let from = match param("resourceVersion") {
        None | Some("0") => None,
        Some(rv) => Some(
            rv.parse::<u64>()
                .map_err(|_| ApiError::bad_request(format!("invalid resource version: {rv}")))?,
        ),
    };
    let send_initial = matches!(param("sendInitialEvents"), Some("true" | "1"));
    let deadline = param("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .filter(|t| *t > 0)
        .map(|t| Instant::now() + Duration::from_secs(t));

    let closer = shared.closer();
    let (initial, position, changed) = {
        let store = shared.store();
        let mut changed = store.subscribe(&ck).ok_or_else(ApiError::unknown_resource)?;
        changed.borrow_and_update();
        match from {
            Some(rv) if !send_initial => {
                let oldest = store.oldest_resumable(&ck);
                if rv < oldest {
                    drop(store);
                    shared.record_gone(&ck);
                    let line = error_line(&too_old(rv, oldest));
                    return Ok(stream_response(Body::from(line)));
                }
                (VecDeque::new(), rv, changed)
            }
            // Without a resourceVersion (or with "0"), or with sendInitialEvents,
            // the watch starts with the current state as synthetic ADDED events.
            _ => (store.snapshot(&ck, namespace.as_deref()).into(), store.rv, changed),
        }
    };
    let stream = WatchStream {
        shared,
        ck,
        info,
        namespace,
        filter,
        metadata_only,
        initial,
        initial_end: send_initial.then_some(position),
        position,
        changed,
        closer,
        deadline,
        done: false,
    };
    let body = futures::stream::unfold(stream, |mut s| async move {
        s.next_chunk().await.map(|chunk| (Ok::<_, Infallible>(chunk), s))
    });
    Ok(stream_response(Body::from_stream(body)))
}

fn too_old(requested: u64, oldest: u64) -> ApiError {
    ApiError::expired(format!("too old resource version: {requested} ({oldest})"))
}

fn error_line(err: &ApiError) -> Vec<u8> {
    let mut line = serde_json::to_vec(&json!({ "type": "ERROR", "object": err.to_status() })).expect("serializable");
    line.push(b'\n');
    line
}

impl WatchStream {
    fn push_event(&self, buf: &mut Vec<u8>, kind: &'static str, obj: &Value) {
        let line = EventLine {
            kind,
            object: ObjectView::new(obj, self.metadata_only),
        };
        serde_json::to_writer(&mut *buf, &line).expect("serializable");
        buf.push(b'\n');
    }

    /// The event a watcher with this filter sees for a change, if any: an object
    /// that starts or stops matching the selectors is ADDED or DELETED for it.
    fn translate(&self, change: &Change) -> Option<&'static str> {
        if self.namespace.as_ref().is_some_and(|ns| *ns != change.namespace) {
            return None;
        }
        let now = self.filter.matches(&change.object);
        match change.kind {
            EventType::Added => now.then_some("ADDED"),
            EventType::Deleted => now.then_some("DELETED"),
            EventType::Modified => {
                let before = change.old.as_ref().is_some_and(|o| self.filter.matches(o));
                match (before, now) {
                    (true, true) => Some("MODIFIED"),
                    (false, true) => Some("ADDED"),
                    (true, false) => Some("DELETED"),
                    (false, false) => None,
                }
            }
        }
    }

    /// The next chunk of event lines, or `None` when the stream ends (timeout,
    /// `close_watches`, server shutdown, 410 after an ERROR event).
    async fn next_chunk(&mut self) -> Option<Bytes> {
        loop {
            if self.done || self.closer.has_changed().unwrap_or(true) {
                return None;
            }
            let mut buf = Vec::new();
            while buf.is_empty() && !self.initial.is_empty() {
                for obj in self.initial.drain(..self.initial.len().min(BATCH)).collect::<Vec<_>>() {
                    if self.filter.matches(&obj) {
                        self.push_event(&mut buf, "ADDED", &obj);
                    }
                }
            }
            if !buf.is_empty() {
                return Some(buf.into());
            }
            if let Some(rv) = self.initial_end.take() {
                return Some(self.initial_end_bookmark(rv).into());
            }

            // Mark notifications seen before reading, so a change committed right
            // after the read still wakes us up.
            self.changed.borrow_and_update();
            let read = self.shared.store().changes_after(&self.ck, self.position, BATCH);
            match read {
                Err(TooOld { oldest }) => {
                    self.done = true;
                    self.shared.record_gone(&self.ck);
                    return Some(error_line(&too_old(self.position, oldest)).into());
                }
                Ok(None) => return None,
                Ok(Some(changes)) if !changes.is_empty() => {
                    for change in &changes {
                        if let Some(kind) = self.translate(change) {
                            self.push_event(&mut buf, kind, &change.object);
                        }
                    }
                    self.position = changes.last().map_or(self.position, |c| c.rv);
                    if !buf.is_empty() {
                        return Some(buf.into());
                    }
                    continue;
                }
                Ok(Some(_)) => {}
            }

            let deadline = self.deadline;
            let timeout = async move {
                match deadline {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                changed = self.changed.changed() => {
                    if changed.is_err() {
                        return None;
                    }
                }
                _ = self.closer.changed() => return None,
                () = timeout => return None,
            }
        }
    }

    /// The BOOKMARK that ends the initial events of a `sendInitialEvents` watch.
    fn initial_end_bookmark(&self, rv: u64) -> Vec<u8> {
        let (api_version, kind) = if self.metadata_only {
            (META_API_VERSION.to_string(), "PartialObjectMetadata".to_string())
        } else {
            (self.info.api_version(), self.info.kind.clone())
        };
        let object = json!({
            "apiVersion": api_version,
            "kind": kind,
            "metadata": {
                "resourceVersion": rv.to_string(),
                "annotations": { "k8s.io/initial-events-end": "true" },
            },
        });
        let mut line = serde_json::to_vec(&json!({ "type": "BOOKMARK", "object": object })).expect("serializable");
        line.push(b'\n');
        line
    }
}
/// Builds a streaming `application/json` response.
fn stream_response(body: Body) -> Response {
    (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}
