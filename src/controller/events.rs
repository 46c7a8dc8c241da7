//! Kubernetes Events (`events.k8s.io/v1`) with series for repeats, at a fixed small cost per
//! resource.
//!
//! kube's `Recorder` keeps a full copy of every Event it published for six minutes and scans
//! that cache on each publish: at a cold start of 10,000 resources that is ~18 MB and quadratic
//! work. Here an Event is remembered only by a digest of what makes it "the same Event", its
//! generated name and its count; a repeat within [`SERIES_WINDOW`] bumps the series of the
//! existing Event with a small merge patch instead of creating a new one.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Mutex;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event as K8sEvent;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;

/// How long a published Event absorbs identical repeats (as kube's recorder and client-go).
pub const SERIES_WINDOW: SignedDuration = SignedDuration::from_mins(6);

/// Limits the API server enforces on `events.k8s.io/v1` Events: longer values are refused.
const MAX_NAME: usize = 253;
const MAX_NOTE: usize = 1024;
const MAX_INSTANCE: usize = 128;

/// The Event's name, `<object>.<time in hex>` as client-go makes it, but within the 253
/// characters a name may have: object names may be that long themselves, so theirs is cut.
pub fn event_name(object: &str, nanos: i128) -> String {
    let suffix = format!(".{nanos:x}");
    let kept = cut(object, MAX_NAME - suffix.len());
    // A DNS subdomain's parts end with a letter or digit.
    format!("{}{suffix}", kept.trim_end_matches(['-', '.']))
}

/// The longest prefix of `s` of at most `max` bytes.
fn cut(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// A note within the API server's limit, marked `…` where it was cut.
fn note(text: &str) -> String {
    if text.len() <= MAX_NOTE {
        return text.to_string();
    }
    format!("{}…", cut(text, MAX_NOTE - '…'.len_utf8()))
}

/// Normal or Warning.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventType {
    Normal,
    Warning,
}

impl EventType {
    fn as_str(self) -> &'static str {
        match self {
            EventType::Normal => "Normal",
            EventType::Warning => "Warning",
        }
    }
}

/// One Event about a resource.
#[derive(Clone, Debug, Hash)]
pub struct Event<'a> {
    pub type_: EventType,
    pub reason: &'a str,
    pub note: &'a str,
    pub action: &'a str,
}

/// What is remembered of a published Event.
#[derive(Clone, Debug, PartialEq)]
pub struct Published {
    name: String,
    count: i32,
    last: Timestamp,
}

/// Create a new Event, or bump the series of one published earlier.
#[derive(Debug, PartialEq)]
pub enum Publish {
    Create,
    Bump { name: String, count: i32 },
}

/// Whether an Event repeats one published at `earlier` (within the series window) or is new.
pub fn decide(earlier: Option<&Published>, now: Timestamp) -> Publish {
    match earlier {
        Some(p) if p.last + SERIES_WINDOW > now => Publish::Bump {
            name: p.name.clone(),
            count: p.count + 1,
        },
        _ => Publish::Create,
    }
}

/// Publishes Events for one reporting controller instance.
pub struct Publisher {
    client: Client,
    controller: String,
    instance: String,
    published: Mutex<History>,
}

#[derive(Default)]
struct History {
    by_key: HashMap<u64, Published>,
    swept: Option<Timestamp>,
}

impl Publisher {
    pub fn new(client: Client, controller: &str, instance: &str) -> Self {
        Publisher {
            client,
            controller: controller.into(),
            instance: instance.into(),
            published: Mutex::default(),
        }
    }

    async fn create(
        &self,
        api: &Api<K8sEvent>,
        ev: &Event<'_>,
        regarding: &ObjectReference,
        ns: &str,
        now: Timestamp,
    ) -> Result<Published, kube::Error> {
        let name = event_name(
            regarding.name.as_deref().unwrap_or(&self.controller),
            now.as_nanosecond(),
        );
        let event = K8sEvent {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(ns.to_string()),
                ..Default::default()
            },
            action: Some(ev.action.into()),
            reason: Some(ev.reason.into()),
            note: Some(note(ev.note)),
            type_: Some(ev.type_.as_str().into()),
            event_time: Some(MicroTime(now)),
            regarding: Some(regarding.clone()),
            reporting_controller: Some(self.controller.clone()),
            reporting_instance: Some(cut(&self.instance, MAX_INSTANCE).to_string()),
            ..Default::default()
        };
        api.create(&PostParams::default(), &event).await?;
        Ok(Published {
            name,
            count: 1,
            last: now,
        })
    }

    fn key(&self, ev: &Event<'_>, regarding: &ObjectReference) -> u64 {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        ev.hash(&mut h);
        (&regarding.namespace, &regarding.name, &regarding.uid).hash(&mut h);
        h.finish()
    }

    /// Creates the Event, or bumps the series of the same Event published recently.
    pub async fn publish(&self, ev: &Event<'_>, regarding: &ObjectReference) -> Result<(), kube::Error> {
        let now = Timestamp::now();
        let key = self.key(ev, regarding);
        let decision = {
            let mut state = self.published.lock().expect("events lock");
            // Forget expired entries at most once a minute: the map stays bounded by what was
            // published in the last window, without scanning it on every publish.
            if state.swept.is_none_or(|s| s + SignedDuration::from_mins(1) < now) {
                state.by_key.retain(|_, p| p.last + SERIES_WINDOW > now);
                state.swept = Some(now);
            }
            decide(state.by_key.get(&key), now)
        };
        let ns = regarding.namespace.clone().unwrap_or_else(|| "default".into());
        let api: Api<K8sEvent> = Api::namespaced(self.client.clone(), &ns);
        let published = match decision {
            Publish::Bump { name, count } => {
                let patch = json!({ "series": { "count": count, "lastObservedTime": MicroTime(now) } });
                match api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await {
                    Ok(_) => Published { name, count, last: now },
                    // The Event is gone (deleted, or expired by the API server's event TTL):
                    // start a new one rather than lose the occurrence.
                    Err(kube::Error::Api(s)) if s.code == 404 => self.create(&api, ev, regarding, &ns, now).await?,
                    Err(e) => return Err(e),
                }
            }
            Publish::Create => self.create(&api, ev, regarding, &ns, now).await?,
        };
        self.published
            .lock()
            .expect("events lock")
            .by_key
            .insert(key, published);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + secs).unwrap()
    }

    #[test]
    fn event_names_stay_within_253_characters() {
        let nanos = 1_800_000_000_000_000_000;
        assert_eq!(event_name("crm", nanos), "crm.18fae27693b40000");
        let long = format!("crm-{}", "a".repeat(249));
        let name = event_name(&long, nanos);
        assert_eq!(name.len(), 253);
        assert!(name.starts_with("crm-aaa") && name.ends_with(".18fae27693b40000"));
        // Cut where a part ends with a dash or dot, the part still ends alphanumeric.
        let dashed = format!("{}-{}", "a".repeat(235), "b".repeat(17));
        assert_eq!(
            event_name(&dashed, nanos),
            format!("{}.18fae27693b40000", "a".repeat(235))
        );
    }

    #[test]
    fn long_notes_are_cut_to_the_api_limit() {
        assert_eq!(note("short"), "short");
        let cut = note(&"é".repeat(600));
        assert!(cut.len() <= 1024 && cut.ends_with('…'), "{}", cut.len());
    }

    #[test]
    fn first_event_is_created() {
        assert_eq!(decide(None, at(0)), Publish::Create);
    }

    #[test]
    fn repeat_within_the_window_bumps_the_series() {
        let p = Published {
            name: "app.1".into(),
            count: 1,
            last: at(0),
        };
        assert_eq!(
            decide(Some(&p), at(300)),
            Publish::Bump {
                name: "app.1".into(),
                count: 2
            }
        );
        let p = Published { count: 7, ..p };
        assert_eq!(
            decide(Some(&p), at(1)),
            Publish::Bump {
                name: "app.1".into(),
                count: 8
            }
        );
    }

    #[test]
    fn repeat_after_the_window_is_a_new_event() {
        let p = Published {
            name: "app.1".into(),
            count: 3,
            last: at(0),
        };
        assert_eq!(decide(Some(&p), at(360)), Publish::Create);
        assert_eq!(decide(Some(&p), at(4000)), Publish::Create);
    }
}
