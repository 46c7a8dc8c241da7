//! `status NS/NAME`: what a person needs when a credential misbehaves, in one place —
//! conditions, expiry and renewal, failures, consent, renewal requests, the output Secret's
//! keys (values redacted) and the resource's recent Events.

use jiff::Timestamp;
use k8s_openapi::api::events::v1::Event;
use kube::ResourceExt;
use kube::api::{Api, ListParams};
use serde::Serialize;

use super::{Target, redacted, when};
use crate::api::{Condition, ConnectorAuth, RENEW_ANNOTATION};
use crate::controller::status::{READY, REFRESH_FAILING};
use crate::reason::Reason;
use crate::reconcile::output_secret_name;

/// Events shown at most, newest last.
const EVENTS_SHOWN: usize = 10;

/// What `status` found.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub namespace: String,
    pub name: String,
    pub ready: bool,
    pub scheme: Option<String>,
    pub conditions: Vec<Condition>,
    pub expires_at: Option<String>,
    pub next_refresh_time: Option<String>,
    pub last_refresh_time: Option<String>,
    pub failure_count: u32,
    /// The reason and message of the failure renewal reports, if it is failing.
    pub last_error: Option<(String, String)>,
    /// Whether a person must grant consent, and the link to open.
    pub consent_pending: bool,
    pub authorization_url: Option<String>,
    /// The renewal asked for by the annotation, and the last one the operator acted upon.
    pub renew_requested: Option<String>,
    pub last_renew_request: Option<String>,
    pub secret_name: String,
    /// The output Secret's keys with redacted values; the error when it could not be read.
    pub secret: Result<Option<Vec<String>>, String>,
    pub events: Result<Vec<EventLine>, String>,
}

/// One Event about the resource.
#[derive(Debug, Clone, Serialize)]
pub struct EventLine {
    pub time: String,
    #[serde(rename = "type")]
    pub type_: String,
    pub reason: String,
    pub count: i32,
    pub note: String,
}

/// Reads the resource, its output Secret and its Events.
pub async fn status(client: &kube::Client, target: &Target) -> anyhow::Result<Report> {
    let api: Api<ConnectorAuth> = Api::namespaced(client.clone(), &target.namespace);
    let ca = api
        .get_opt(&target.name)
        .await?
        .ok_or_else(|| anyhow::anyhow!("ConnectorAuth {target} not found"))?;
    let secret_name = ca
        .status
        .as_ref()
        .and_then(|s| s.secret_name.clone())
        .unwrap_or_else(|| output_secret_name(&ca));
    let secret = match super::secret_text(client, &target.namespace, &secret_name).await {
        Ok(data) => Ok(data.map(|d| redacted(&d))),
        Err(e) => Err(e.to_string()),
    };
    let events = events(client, &ca).await.map_err(|e| e.to_string());
    Ok(report(&ca, secret_name, secret, events))
}

/// The resource's Events, oldest first, the last [`EVENTS_SHOWN`].
async fn events(client: &kube::Client, ca: &ConnectorAuth) -> Result<Vec<EventLine>, kube::Error> {
    let api: Api<Event> = Api::namespaced(client.clone(), &ca.namespace().unwrap_or_default());
    let selector = format!("regarding.uid={}", ca.uid().unwrap_or_default());
    let mut lines: Vec<(Timestamp, EventLine)> = api
        .list(&ListParams::default().fields(&selector))
        .await?
        .items
        .into_iter()
        .map(|e| {
            let last = e
                .series
                .as_ref()
                .map(|s| s.last_observed_time.0)
                .or(e.event_time.as_ref().map(|t| t.0))
                .unwrap_or(Timestamp::UNIX_EPOCH);
            let line = EventLine {
                time: last.round(jiff::Unit::Second).unwrap_or(last).to_string(),
                type_: e.type_.unwrap_or_default(),
                reason: e.reason.unwrap_or_default(),
                count: e.series.map_or(1, |s| s.count),
                note: e.note.unwrap_or_default(),
            };
            (last, line)
        })
        .collect();
    lines.sort_by_key(|(t, _)| *t);
    let skip = lines.len().saturating_sub(EVENTS_SHOWN);
    Ok(lines.into_iter().skip(skip).map(|(_, l)| l).collect())
}

fn find<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// The report of a resource, as read.
pub fn report(
    ca: &ConnectorAuth,
    secret_name: String,
    secret: Result<Option<Vec<String>>, String>,
    events: Result<Vec<EventLine>, String>,
) -> Report {
    let status = ca.status.clone().unwrap_or_default();
    let ready = find(&status.conditions, READY).is_some_and(|c| c.status == "True");
    let consent = Reason::AuthorizationRequired.as_str();
    let failing = find(&status.conditions, REFRESH_FAILING)
        .filter(|c| c.status == "True")
        .or_else(|| {
            find(&status.conditions, READY).filter(|c| c.status == "False" && c.reason != Reason::Pending.as_str())
        });
    let consent_pending = failing.is_some_and(|c| c.reason == consent);
    Report {
        namespace: ca.namespace().unwrap_or_default(),
        name: ca.name_any(),
        ready,
        scheme: status.scheme.clone(),
        expires_at: status.expires_at.clone(),
        next_refresh_time: status.next_refresh_time.clone(),
        last_refresh_time: status.last_refresh_time.clone(),
        failure_count: status.failure_count.unwrap_or(0),
        last_error: failing
            .filter(|c| c.reason != consent)
            .map(|c| (c.reason.clone(), c.message.clone())),
        consent_pending,
        authorization_url: status.authorization_url.clone().filter(|_| consent_pending),
        renew_requested: ca.annotations().get(RENEW_ANNOTATION).cloned(),
        last_renew_request: status.last_renew_request.clone(),
        conditions: status.conditions,
        secret_name,
        secret,
        events,
    }
}

impl Report {
    /// For people: one fact per line, values of the Secret redacted.
    pub fn text(&self, now: Timestamp) -> String {
        let mut out = String::new();
        let mut line = |k: &str, v: String| out.push_str(&format!("{k:<14}{v}\n"));
        line("Name:", format!("{}/{}", self.namespace, self.name));
        line("Scheme:", self.scheme.clone().unwrap_or_else(|| "-".into()));
        line("Ready:", if self.ready { "True".into() } else { "False".into() });
        line(
            "Expires:",
            self.expires_at.as_deref().map_or("-".into(), |t| when(t, now)),
        );
        line(
            "Next refresh:",
            self.next_refresh_time.as_deref().map_or("-".into(), |t| when(t, now)),
        );
        line(
            "Last refresh:",
            self.last_refresh_time.as_deref().map_or("-".into(), |t| when(t, now)),
        );
        line("Failures:", self.failure_count.to_string());
        if let Some((reason, message)) = &self.last_error {
            line("Last error:", format!("{reason}: {message}"));
        }
        if self.consent_pending {
            line(
                "Consent:",
                match &self.authorization_url {
                    Some(url) => format!("pending: open {url}"),
                    None => "pending, but there is no link: the operator needs --callback-url".into(),
                },
            );
        }
        let renewal = match (&self.renew_requested, &self.last_renew_request) {
            (Some(r), Some(h)) if r == h => Some(format!("requested {r}, acted upon")),
            (Some(r), _) => Some(format!("requested {r}, not acted upon yet")),
            (None, Some(h)) => Some(format!("last request acted upon: {h}")),
            (None, None) => None,
        };
        if let Some(r) = renewal {
            line("Renewal:", r);
        }
        out.push_str("Conditions:\n");
        for c in &self.conditions {
            out.push_str(&format!(
                "  {:<15} {:<6} {:<24} {}\n",
                c.type_, c.status, c.reason, c.message
            ));
        }
        match &self.secret {
            Ok(Some(keys)) => {
                out.push_str(&format!("Secret {}/{}:\n", self.namespace, self.secret_name));
                for k in keys {
                    out.push_str(&format!("  {k}\n"));
                }
            }
            Ok(None) => out.push_str(&format!("Secret {}/{}: not found\n", self.namespace, self.secret_name)),
            Err(e) => out.push_str(&format!(
                "Secret {}/{}: cannot read it: {e}\n",
                self.namespace, self.secret_name
            )),
        }
        match &self.events {
            Ok(events) if events.is_empty() => out.push_str("Events:       none\n"),
            Ok(events) => {
                out.push_str("Events:\n");
                for e in events {
                    let count = if e.count > 1 {
                        format!(" (x{})", e.count)
                    } else {
                        String::new()
                    };
                    out.push_str(&format!(
                        "  {}  {:<7} {}{count}: {}\n",
                        e.time, e.type_, e.reason, e.note
                    ));
                }
            }
            Err(e) => out.push_str(&format!("Events:       cannot list them: {e}\n")),
        }
        out
    }

    /// For scripts: the same facts as JSON.
    pub fn json(&self) -> serde_json::Value {
        let mut v = serde_json::to_value(self).unwrap_or_default();
        let secret = match &self.secret {
            Ok(Some(keys)) => serde_json::json!({ "name": self.secret_name, "keys": keys }),
            Ok(None) => serde_json::json!({ "name": self.secret_name, "found": false }),
            Err(e) => serde_json::json!({ "name": self.secret_name, "error": e }),
        };
        v["secret"] = secret;
        v["events"] = match &self.events {
            Ok(e) => serde_json::to_value(e).unwrap_or_default(),
            Err(e) => serde_json::json!({ "error": e }),
        };
        if let Some(o) = v.as_object_mut() {
            o.remove("secretName");
        }
        v
    }
}
