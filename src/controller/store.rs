//! The Kubernetes side of [`Store`]: a private state Secret and the output Secret.
//!
//! The record is split so that a routine refresh costs one Secret write:
//! - the **state Secret** (`<name>-connectorauth-state`) holds what must never be lost or shown
//!   to pods — the refresh token, the input fingerprint, backoff — and is written only when that
//!   changes (a rotated refresh token, new credentials, a failure);
//! - the **output Secret** carries the public token fields (the access token is in it anyway)
//!   plus annotations for issue and renewal time and a digest that detects hand edits.
//!
//! A resource with nothing private to keep but the input fingerprint (no refresh token, no
//! failure, no consent under way: `client_credentials`, API keys, most logins) gets no state
//! Secret at all: the fingerprint travels as an annotation of the output Secret, so its first
//! issuance costs one Secret write, and a credentials change made while the operator was down
//! is still noticed. Once a resource has a state Secret, that stays the one place of its
//! private state.
//!
//! A rotated refresh token is therefore persisted before the access token that came with it is
//! published. The last record per resource is also kept in memory, so a deleted or edited
//! output Secret is restored without a token call.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use jiff::Timestamp;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, Patch, PatchParams};
use kube::{Resource, ResourceExt};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};

use super::compact::Compactor;
use super::decide::output::{self, OutputView};
use super::metrics::Metrics;
use crate::api::ConnectorAuth;
use crate::engine::{SecretString, TokenState};
use crate::reconcile::driver::{PREVIOUS_ACCESS_TOKEN, PREVIOUS_HEADERS};
use crate::reconcile::record::{Failure, InFlight, PendingConsent, Previous, Record, RolloutMark, Store, StoreError};

pub const FIELD_MANAGER: &str = "connector-auth-operator";
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "connector-auth-operator");
pub const NAME_LABEL: &str = "connectorauth.dev/name";
pub const ROLE_LABEL: &str = "connectorauth.dev/role";
const STATE_KEY: &str = "state.json";
const ANN_ISSUED: &str = "connectorauth.dev/issued-at";
const ANN_RENEW: &str = "connectorauth.dev/renew-at";
const ANN_EXTRAS: &str = "connectorauth.dev/extras";
const ANN_DIGEST: &str = "connectorauth.dev/data-digest";
const ANN_PREVIOUS_EXPIRES: &str = "connectorauth.dev/previous-expires-at";
/// The input fingerprint of the published token, for resources without a state Secret. A
/// digest, as in the state Secret: both are read through the same Secret permission (mounted
/// Secrets show pods their data, not their annotations).
const ANN_FINGERPRINT: &str = "connectorauth.dev/input-fingerprint";

/// Name of the private state Secret of a ConnectorAuth: `<name>-connectorauth-state`, or, for
/// names too long for that (object names go up to 253 characters), a shortened name ending in
/// a digest of the whole one, so that no two resources share a state Secret.
pub const STATE_SUFFIX: &str = "-connectorauth-state";

pub fn state_secret_name(ca_name: &str) -> String {
    const SUFFIX: &str = STATE_SUFFIX;
    if ca_name.len() + SUFFIX.len() <= 253 {
        return format!("{ca_name}{SUFFIX}");
    }
    let digest: String = Sha256::digest(ca_name.as_bytes())[..5]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let kept = &ca_name[..253 - SUFFIX.len() - digest.len() - 1];
    format!("{}-{digest}{SUFFIX}", kept.trim_end_matches(['-', '.']))
}

/// What the state Secret holds.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Private {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    refresh_token: Option<SecretString>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    seed_refresh_token: Option<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    fingerprint: String,
    #[serde(default)]
    failures: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    retry_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    failed_fingerprint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    last_error: Option<Failure>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pending_consent: Option<PendingConsent>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    refresh_token_reusable: bool,
    /// The write-ahead mark of a refresh under way (see the driver).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    in_flight: Option<InFlight>,
    /// Token response fields read as `{{ oauth.<field> }}` (they may be credentials).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    oauth: BTreeMap<String, SecretString>,
    /// The last renewal request acted upon (see the driver).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    renew_handled: Option<String>,
    /// What `output.rolloutRestart` workloads were last restarted for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    rollout: Option<RolloutMark>,
    /// Where the refresh token may be sent (see `TokenState::refresh_origin`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    refresh_origin: Option<String>,
    /// Consent callback values and lookup values of the grant (see `TokenState`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    callback: BTreeMap<String, SecretString>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    lookups: BTreeMap<String, SecretString>,
}

impl Private {
    /// The private part that only says which inputs the token was issued for.
    fn fingerprint_only(fingerprint: &str) -> Self {
        Private {
            fingerprint: fingerprint.to_string(),
            ..Private::default()
        }
    }

    /// Whether there is nothing to keep but the fingerprint (which the output Secret can carry).
    fn is_fingerprint_only(&self) -> bool {
        *self == Private::fingerprint_only(&self.fingerprint)
    }

    fn of(r: &Record) -> Self {
        Private {
            refresh_token: r.token.as_ref().and_then(|t| t.refresh_token.clone()),
            seed_refresh_token: r.token.as_ref().and_then(|t| t.seed_refresh_token.clone()),
            fingerprint: r.token.as_ref().map(|t| t.fingerprint.clone()).unwrap_or_default(),
            failures: r.failures,
            retry_at: r.retry_at,
            failed_fingerprint: r.failed_fingerprint.clone(),
            last_error: r.last_error.clone(),
            pending_consent: r.pending_consent.clone(),
            refresh_token_reusable: r.token.as_ref().is_some_and(|t| t.refresh_token_reusable),
            in_flight: r.in_flight.clone(),
            oauth: r.token.as_ref().map(|t| t.oauth.clone()).unwrap_or_default(),
            callback: r.token.as_ref().map(|t| t.callback.clone()).unwrap_or_default(),
            lookups: r.token.as_ref().map(|t| t.lookups.clone()).unwrap_or_default(),
            renew_handled: r.renew_handled.clone(),
            rollout: r.rollout.clone(),
            refresh_origin: r.token.as_ref().and_then(|t| t.refresh_origin.clone()),
        }
    }
}

/// The records' compression (see [`Compactor`]).
static RECORDS: Compactor = Compactor::new(
    r#"{"token":{"accessToken":"","refreshToken":"","tokenType":"Bearer","issuedAt":"","expiresAt":"","renewAt":"","fingerprint":""},"failures":0}"#,
);

/// Last known record per resource (by uid), shared by all passes. It restores a deleted or
/// edited output Secret without a token call. Kept encoded and compressed: one per resource,
/// and a decoded record takes about three times the space of its JSON.
#[derive(Clone, Default)]
pub struct LastRecords(Arc<Mutex<BTreeMap<String, Box<[u8]>>>>);

impl LastRecords {
    fn insert(&self, uid: &str, record: &Record) {
        // A record always encodes (plain strings, numbers and timestamps).
        let Ok(encoded) = serde_json::to_vec(record) else {
            return;
        };
        let packed = RECORDS.compress(&encoded);
        self.0.lock().expect("memory lock").insert(uid.to_string(), packed);
    }

    pub(crate) fn get(&self, uid: &str) -> Option<Record> {
        let memory = self.0.lock().expect("memory lock");
        serde_json::from_slice(&RECORDS.decompress(memory.get(uid)?).ok()?).ok()
    }

    /// Forgets a deleted resource.
    pub fn remove(&self, uid: &str) {
        self.0.lock().expect("memory lock").remove(uid);
    }
}

/// Store for one ConnectorAuth during one reconcile pass.
pub struct KubeStore {
    secrets: Api<Secret>,
    owner: k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference,
    ca_name: String,
    uid: String,
    output_name: String,
    memory: LastRecords,
    /// The output Secret as read by `load`, to compare against without another GET.
    observed_output: Mutex<Option<Secret>>,
    /// The private part as last read from or written to the state Secret, so unchanged state
    /// is not rewritten.
    observed_private: Mutex<Option<Private>>,
    /// Whether the state Secret exists; `None` until `load` has looked.
    state_exists: Mutex<Option<bool>>,
    /// Secrets left by an earlier resource of the same name, found by `load` and replaced
    /// unread (for an Event).
    replaced: Mutex<Vec<String>>,
    metrics: Metrics,
}

/// Whose a Secret at one of the resource's names is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ownership {
    /// Owned by this resource (its uid): read and written.
    Ours,
    /// Left by an earlier ConnectorAuth of the same name (deleted, not yet garbage-collected):
    /// never read, replaced on the next write.
    Stale,
    /// Someone else's (another owner, or none): never read, never written.
    Foreign(String),
}

/// Classifies a Secret by its owner references and labels.
pub fn ownership(secret: &Secret, ca_name: &str, uid: &str) -> Ownership {
    let owners = secret.owner_references();
    if owners.iter().any(|o| o.uid == uid) {
        return Ownership::Ours;
    }
    // Names over 63 characters carry no name label (a label value's limit).
    let name_label = secret.labels().get(NAME_LABEL).map(String::as_str);
    let ours_by_label = (name_label == Some(ca_name) || (name_label.is_none() && ca_name.len() > 63))
        && secret.labels().get(MANAGED_BY.0).map(String::as_str) == Some(MANAGED_BY.1);
    let earlier_self = !owners.is_empty()
        && owners
            .iter()
            .all(|o| o.kind == "ConnectorAuth" && o.api_version.starts_with(crate::api::GROUP) && o.name == ca_name);
    if ours_by_label && earlier_self {
        return Ownership::Stale;
    }
    Ownership::Foreign(
        match owners.iter().find(|o| o.controller == Some(true)).or(owners.first()) {
            Some(o) => format!("{} {} (uid {})", o.kind, o.name, o.uid),
            None => "no owner (created by hand or by another tool)".into(),
        },
    )
}

impl KubeStore {
    pub fn new(
        secrets: Api<Secret>,
        ca: &ConnectorAuth,
        output_name: &str,
        memory: LastRecords,
        metrics: Metrics,
    ) -> Option<Self> {
        Some(KubeStore {
            secrets,
            owner: ca.controller_owner_ref(&())?,
            ca_name: ca.name_any(),
            uid: ca.uid()?,
            output_name: output_name.to_string(),
            memory,
            observed_output: Mutex::new(None),
            observed_private: Mutex::new(None),
            state_exists: Mutex::new(None),
            replaced: Mutex::default(),
            metrics,
        })
    }

    /// Reads one of the resource's Secrets, if it is the resource's own: a stale one (an
    /// earlier resource's) reads as absent, a foreign one is an error.
    async fn get_own(&self, name: &str) -> Result<Option<Secret>, StoreError> {
        let Some(secret) = self.get(name).await? else {
            return Ok(None);
        };
        match ownership(&secret, &self.ca_name, &self.uid) {
            Ownership::Ours => Ok(Some(secret)),
            Ownership::Stale => {
                self.replaced.lock().expect("lock").push(name.to_string());
                Ok(None)
            }
            Ownership::Foreign(owner) => Err(StoreError::OwnedElsewhere {
                secret: format!("{}/{name}", self.secrets.namespace().unwrap_or_default()),
                owner,
            }),
        }
    }

    fn labels(&self, role: &str) -> serde_json::Value {
        let mut labels = json!({ MANAGED_BY.0: MANAGED_BY.1, ROLE_LABEL: role });
        // A label value has at most 63 characters, a name up to 253: longer names go without
        // this label rather than have every write refused.
        if self.ca_name.len() <= 63 {
            labels[NAME_LABEL] = json!(self.ca_name);
        }
        labels
    }

    /// The error of a failed Secret write: a refusal as invalid becomes
    /// [`StoreError::Rejected`] (or [`StoreError::OwnedElsewhere`] for another controller), naming
    /// the Secret and, when it already has another controller, that controller.
    async fn write_error(&self, name: &str, what: String, e: kube::Error) -> StoreError {
        let kube::Error::Api(status) = &e else {
            return StoreError::new(what, e);
        };
        if status.code != 422 {
            return StoreError::new(what, e);
        }
        let ns = self.secrets.namespace().unwrap_or_default();
        let causes = status.details.iter().flat_map(|d| d.causes.iter());
        let second_controller = causes.into_iter().any(|c| {
            c.field == "metadata.ownerReferences" && c.message.contains("Only one reference can have Controller")
        });
        let other = if second_controller {
            self.secrets.get_opt(name).await.ok().flatten().and_then(|s| {
                s.owner_references()
                    .iter()
                    .find(|o| o.controller == Some(true) && o.uid != self.owner.uid)
                    .map(|o| format!("{} {}", o.kind, o.name))
            })
        } else {
            None
        };
        let remedy = if name == self.output_name {
            "choose another output.secretName, or remove that owner reference"
        } else {
            "remove that owner reference"
        };
        match other {
            Some(owner) => StoreError::OwnedElsewhere {
                secret: format!("{ns}/{name}"),
                owner: format!("{owner} as its controller ({remedy})"),
            },
            None => StoreError::Rejected {
                secret: format!("{ns}/{name}"),
                message: status.message.clone(),
            },
        }
    }

    async fn get(&self, name: &str) -> Result<Option<Secret>, StoreError> {
        self.secrets
            .get_opt(name)
            .await
            .map_err(|e| StoreError::new(format!("reading Secret {name}"), e))
    }

    fn remember(&self, record: &Record) {
        self.memory.insert(&self.uid, record);
    }

    fn recall(&self) -> Option<Record> {
        self.memory.get(&self.uid)
    }
}

fn decoded(secret: &Secret) -> BTreeMap<String, String> {
    secret
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), String::from_utf8_lossy(&v.0).into_owned()))
        .collect()
}

/// Digest of output data, stored beside it to notice hand edits.
fn data_digest(data: &BTreeMap<String, String>) -> String {
    let mut h = Sha256::new();
    for (k, v) in data {
        h.update((k.len() as u64).to_le_bytes());
        h.update(k.as_bytes());
        h.update((v.len() as u64).to_le_bytes());
        h.update(v.as_bytes());
    }
    h.finalize()[..16].iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether the output Secret is as the operator wrote it (its data matches the digest).
fn untouched(secret: &Secret) -> bool {
    secret.annotations().get(ANN_DIGEST) == Some(&data_digest(&decoded(secret)))
}

/// The previous token an untouched output Secret publishes beside the current one.
fn previous_of(secret: &Secret) -> Option<Previous> {
    let data = decoded(secret);
    Some(Previous {
        access_token: data.get(PREVIOUS_ACCESS_TOKEN)?.as_str().into(),
        headers_json: data.get(PREVIOUS_HEADERS)?.as_str().into(),
        expires_at: secret
            .annotations()
            .get(ANN_PREVIOUS_EXPIRES)
            .and_then(|e| e.parse().ok()),
    })
}

/// Rebuilds the public token fields from an untouched output Secret.
fn public_token(secret: &Secret, private: &Private) -> Option<TokenState> {
    let data = decoded(secret);
    let ann = secret.metadata.annotations.as_ref()?;
    let extras: Vec<&str> = ann
        .get(ANN_EXTRAS)
        .map(|e| e.split(',').filter(|s| !s.is_empty()).collect())
        .unwrap_or_default();
    Some(TokenState {
        access_token: data.get("access_token")?.as_str().into(),
        refresh_token: private.refresh_token.clone(),
        token_type: data.get("token_type").cloned().unwrap_or_else(|| "Bearer".into()),
        issued_at: ann.get(ANN_ISSUED)?.parse().ok()?,
        expires_at: data.get("expires_at").and_then(|e| e.parse().ok()),
        renew_at: ann.get(ANN_RENEW).and_then(|r| r.parse().ok()),
        extras: extras
            .into_iter()
            .filter_map(|k| Some((k.to_string(), data.get(k)?.as_str().into())))
            .collect(),
        fingerprint: private.fingerprint.clone(),
        seed_refresh_token: private.seed_refresh_token.clone(),
        refresh_token_reusable: private.refresh_token_reusable,
        oauth: private.oauth.clone(),
        refresh_origin: private.refresh_origin.clone(),
        callback: private.callback.clone(),
        lookups: private.lookups.clone(),
    })
}

impl Store for KubeStore {
    async fn load(&self) -> Result<Option<Record>, StoreError> {
        let state = self.get_own(&state_secret_name(&self.ca_name)).await?;
        let output = self.get_own(&self.output_name).await?;
        let private: Option<Private> = match &state {
            None => None,
            Some(s) => {
                let raw = s
                    .data
                    .as_ref()
                    .and_then(|d| d.get(STATE_KEY))
                    .map(|b| b.0.clone())
                    .unwrap_or_default();
                Some(serde_json::from_slice(&raw).map_err(|e| {
                    StoreError::new(
                        format!("state Secret {} is corrupt", state_secret_name(&self.ca_name)),
                        e,
                    )
                })?)
            }
        };
        *self.observed_output.lock().expect("lock") = output.clone();
        *self.observed_private.lock().expect("lock") = private.clone();
        *self.state_exists.lock().expect("lock") = Some(state.is_some());
        // Without a state Secret, the output Secret says which inputs its token was issued for.
        let private = private.or_else(|| {
            let fingerprint = output.as_ref()?.annotations().get(ANN_FINGERPRINT)?;
            Some(Private::fingerprint_only(fingerprint))
        });
        let memory = self.recall();
        let Some(private) = private else {
            // No state yet: a first issuance (or the state Secret was removed; the memory copy,
            // if any, still holds the newest refresh token).
            return Ok(memory);
        };
        let untouched = output.as_ref().filter(|o| untouched(o));
        let previous = match untouched {
            Some(o) => previous_of(o),
            None => memory.as_ref().and_then(|m| m.previous.clone()),
        };
        let token = untouched.and_then(|o| public_token(o, &private)).or_else(|| {
            // Output deleted or edited: restore from memory when it describes the same token.
            memory
                .and_then(|m| m.token)
                .filter(|t| t.refresh_token == private.refresh_token && t.fingerprint == private.fingerprint)
        });
        // Public fields lost (output deleted after a restart): keep the private refresh token
        // in an already-expired placeholder, so the next request refreshes with it instead of
        // falling back to a spent onboarding token. Expired tokens are never published.
        let token = token.or_else(|| {
            (private.refresh_token.is_some() || !private.fingerprint.is_empty()).then(|| TokenState {
                refresh_token: private.refresh_token.clone(),
                expires_at: Some(Timestamp::UNIX_EPOCH),
                renew_at: Some(Timestamp::UNIX_EPOCH),
                seed_refresh_token: private.seed_refresh_token.clone(),
                refresh_token_reusable: private.refresh_token_reusable,
                oauth: private.oauth.clone(),
                refresh_origin: private.refresh_origin.clone(),
                callback: private.callback.clone(),
                lookups: private.lookups.clone(),
                ..TokenState::new(
                    SecretString::default(),
                    String::new(),
                    Timestamp::UNIX_EPOCH,
                    private.fingerprint.clone(),
                )
            })
        });
        let record = Record {
            token,
            failures: private.failures,
            retry_at: private.retry_at,
            failed_fingerprint: private.failed_fingerprint,
            last_error: private.last_error,
            pending_consent: private.pending_consent,
            in_flight: private.in_flight,
            renew_handled: private.renew_handled,
            previous,
            rollout: private.rollout,
        };
        self.remember(&record);
        Ok(Some(record))
    }

    async fn save(&self, record: &Record) -> Result<(), StoreError> {
        self.remember(record);
        let private = Private::of(record);
        let carried_by_output =
            *self.state_exists.lock().expect("lock") == Some(false) && private.is_fingerprint_only();
        if carried_by_output || self.observed_private.lock().expect("lock").as_ref() == Some(&private) {
            self.metrics.write("state", false);
            return Ok(());
        }
        let name = state_secret_name(&self.ca_name);
        let bytes = serde_json::to_vec(&private).map_err(|e| StoreError::new("encoding state", e))?;
        let patch = json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": { "name": name, "labels": self.labels("state"), "ownerReferences": [self.owner] },
            "type": "Opaque",
            "data": { STATE_KEY: ByteString(bytes) },
        });
        if let Err(e) = self
            .secrets
            .patch(&name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&patch))
            .await
        {
            return Err(self.write_error(&name, format!("writing state Secret {name}"), e).await);
        }
        self.metrics.write("state", true);
        *self.observed_private.lock().expect("lock") = Some(private);
        *self.state_exists.lock().expect("lock") = Some(true);
        Ok(())
    }

    async fn publish(&self, data: &BTreeMap<String, String>) -> Result<bool, StoreError> {
        let record = self.recall();
        let token = record.as_ref().and_then(|r| r.token.clone());
        let mut annotations = BTreeMap::new();
        annotations.insert(ANN_DIGEST.to_string(), data_digest(data));
        if data.contains_key(PREVIOUS_ACCESS_TOKEN)
            && let Some(exp) = record
                .as_ref()
                .and_then(|r| r.previous.as_ref())
                .and_then(|p| p.expires_at)
        {
            annotations.insert(ANN_PREVIOUS_EXPIRES.to_string(), exp.to_string());
        }
        if let Some(t) = &token {
            annotations.insert(ANN_ISSUED.to_string(), t.issued_at.to_string());
            if let Some(r) = t.renew_at {
                annotations.insert(ANN_RENEW.to_string(), r.to_string());
            }
            if !t.extras.is_empty() {
                annotations.insert(
                    ANN_EXTRAS.to_string(),
                    t.extras.keys().cloned().collect::<Vec<_>>().join(","),
                );
            }
            // Where the state Secret exists it holds the fingerprint: no annotation then, so
            // outputs written before this annotation existed are not rewritten for it.
            if *self.state_exists.lock().expect("lock") == Some(false) && !t.fingerprint.is_empty() {
                annotations.insert(ANN_FINGERPRINT.to_string(), t.fingerprint.clone());
            }
        }
        let labels: BTreeMap<String, String> = serde_json::from_value(self.labels("output")).expect("string labels");
        if let Some(existing) = self.observed_output.lock().expect("lock").as_ref() {
            let view = OutputView {
                data: &decoded(existing),
                annotations: existing.annotations(),
                labels: existing.labels(),
                owned: existing.owner_references().iter().any(|o| o.uid == self.owner.uid),
            };
            if output::output_unchanged(view, data, &annotations, &labels) {
                self.metrics.write("output", false);
                return Ok(false);
            }
        }
        let encoded: BTreeMap<&String, ByteString> = data
            .iter()
            .map(|(k, v)| (k, ByteString(v.as_bytes().to_vec())))
            .collect();
        let patch = json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": self.output_name,
                "labels": labels,
                "annotations": annotations,
                "ownerReferences": [self.owner],
            },
            "type": "Opaque",
            "data": encoded,
        });
        let written = match self
            .secrets
            .patch(
                &self.output_name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&patch),
            )
            .await
        {
            Ok(written) => written,
            Err(e) => {
                let what = format!("writing Secret {}", self.output_name);
                return Err(self.write_error(&self.output_name, what, e).await);
            }
        };
        self.metrics.write("output", true);
        *self.observed_output.lock().expect("lock") = Some(written);
        Ok(true)
    }

    fn replaced(&self) -> Vec<String> {
        self.replaced.lock().expect("lock").clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_record_with_nothing_but_a_fingerprint_goes_without_a_state_secret() {
        let token = TokenState {
            ..TokenState::new("at", "Bearer", Timestamp::UNIX_EPOCH, "f")
        };
        let issued = Record {
            token: Some(token.clone()),
            ..Record::default()
        };
        assert!(Private::of(&issued).is_fingerprint_only());
        let private = [
            Record {
                token: Some(TokenState {
                    refresh_token: Some("rt".into()),
                    ..token.clone()
                }),
                ..Record::default()
            },
            Record {
                token: Some(TokenState {
                    oauth: BTreeMap::from([("id_token".to_string(), "x".into())]),
                    ..token.clone()
                }),
                ..Record::default()
            },
            Record {
                failures: 1,
                ..issued.clone()
            },
            Record {
                pending_consent: Some(PendingConsent {
                    nonce: "n".into(),
                    expires: Timestamp::UNIX_EPOCH,
                }),
                ..Record::default()
            },
        ];
        for record in private {
            assert!(!Private::of(&record).is_fingerprint_only(), "{record:?}");
        }
    }

    #[test]
    fn the_memory_gives_back_every_field_of_a_record() {
        let record = Record {
            token: Some(TokenState {
                refresh_token: Some("rt".into()),
                expires_at: Some("2026-01-01T01:00:00Z".parse().unwrap()),
                renew_at: Some("2026-01-01T00:40:00.5Z".parse().unwrap()),
                extras: BTreeMap::from([("so_ticket".to_string(), "t".into())]),
                seed_refresh_token: Some("seed-digest".into()),
                refresh_token_reusable: true,
                oauth: BTreeMap::from([("id_token".to_string(), "x".into())]),
                refresh_origin: Some("https://idp.example".into()),
                ..TokenState::new("at", "Bearer", "2026-01-01T00:00:00.123456789Z".parse().unwrap(), "f")
            }),
            failures: 2,
            retry_at: Some("2026-01-01T00:01:00Z".parse().unwrap()),
            failed_fingerprint: Some("g".into()),
            last_error: Some(Failure::new(crate::reason::Reason::Timeout, "timed out")),
            pending_consent: Some(PendingConsent {
                nonce: "n".into(),
                expires: "2026-01-01T00:10:00Z".parse().unwrap(),
            }),
            in_flight: Some(InFlight {
                digest: "d".into(),
                since: "2026-01-01T00:00:01Z".parse().unwrap(),
            }),
            renew_handled: Some("2026-01-01T00:00:02Z".into()),
            previous: Some(Previous {
                access_token: "old".into(),
                headers_json: "{}".into(),
                expires_at: Some("2026-01-01T00:30:00Z".parse().unwrap()),
            }),
            rollout: Some(RolloutMark {
                change: "c".into(),
                issued: "i".into(),
                at: "2026-01-01T00:00:03Z".into(),
                pending: vec!["Deployment/api".into()],
            }),
        };
        let memory = LastRecords::default();
        memory.insert("uid-1", &record);
        assert_eq!(memory.get("uid-1"), Some(record));
        memory.remove("uid-1");
        assert_eq!(memory.get("uid-1"), None);
    }

    #[test]
    fn state_secret_names_fit_every_resource_name() {
        assert_eq!(state_secret_name("crm"), "crm-connectorauth-state");
        let longest = "a".repeat(253);
        let name = state_secret_name(&longest);
        assert_eq!(name.len(), 253);
        assert!(name.ends_with("-connectorauth-state"));
        let other = state_secret_name(&format!("{}b", "a".repeat(252)));
        assert_ne!(name, other, "distinct resources, distinct state Secrets");
    }
}
