//! The one reconcile pass, shared by the controller and local mode:
//! gather (the resource's inputs, read through a [`Source`]) → decide and act (the [`driver`],
//! which keeps state and output in a [`Store`]) → a [`Pass`], which the adapter turns into
//! status, Events and metrics (controller) or a printed line (local mode).
//!
//! Adapters supply only reads and writes: the Kubernetes one reads the API and writes
//! Secrets, the local one reads manifests and writes files. Both therefore refuse a bad
//! resource in the same order, with the same reason and message. The OAuth2 consent callback
//! is shared the same way ([`callback`]).

pub mod callback;
pub mod decide;
pub mod driver;
pub mod lead;
pub mod pages;
pub mod record;
pub mod renew;

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::{Arc, Mutex, OnceLock};

use jiff::Timestamp;
use kube::ResourceExt;

use crate::api::ConnectorAuth;
use crate::api::provider::ClusterConnectorAuthProviderSpec as ProviderSpec;
use crate::catalog;
use crate::consent::{self, ConsentState};
use crate::engine::tls::{self, Kind};
use crate::engine::{self, Engine, EngineError, Inputs, SecretString, ServiceAccountTokens, Verification};
use crate::reason::Reason;
pub use lead::{Held, Lead, shard_of};
pub use record::{Action, Gathered, Outcome, PassError, Store, StoreError, Unsaved};

/// Why a resource could not even be attempted.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    pub reason: Reason,
    pub message: String,
}

impl From<&EngineError> for Refusal {
    fn from(e: &EngineError) -> Self {
        Refusal {
            reason: e.reason(),
            message: e.to_string(),
        }
    }
}

/// What a pass came to. One lives for one pass, so its size does not matter.
#[derive(Debug, Clone, PartialEq)]
#[allow(clippy::large_enum_variant)]
pub enum Verdict {
    /// Not attempted: the resource cannot work as it stands.
    Refused(Refusal),
    /// Decided and acted upon.
    Ran(Outcome),
}

/// The result of one pass over one resource.
#[derive(Debug, Clone, PartialEq)]
pub struct Pass {
    /// The scheme's name (`oauth2`, `tripletex`, …).
    pub scheme: &'static str,
    /// The provider entry used (`status.provider`), once the resource got that far.
    pub provider: Option<String>,
    /// The output Secret's name.
    pub secret_name: String,
    pub verdict: Verdict,
    /// For resources awaiting consent: the link a person opens.
    pub authorization_url: Option<String>,
    /// Secrets an earlier resource of the same name left, replaced unread.
    pub replaced: Vec<String>,
    /// What `spec.verify` came to, when this pass verified the published credential.
    pub verification: Option<Verification>,
}

impl Pass {
    /// The outcome, when the pass ran.
    pub fn outcome(&self) -> Option<&Outcome> {
        match &self.verdict {
            Verdict::Ran(o) => Some(o),
            Verdict::Refused(_) => None,
        }
    }
}

/// The values of a Secret or ConfigMap, by key.
pub type Data = BTreeMap<String, Vec<u8>>;

/// What a pass reads besides the resource itself. Only the resource's own namespace is ever
/// asked for.
pub trait Source: Sync {
    /// A Secret's values; `None` when it does not exist.
    fn secret(&self, namespace: &str, name: &str) -> impl Future<Output = Result<Option<Data>, StoreError>> + Send;
    /// A ConfigMap's values (`data` and `binaryData`); `None` when it does not exist.
    fn config_map(&self, namespace: &str, name: &str) -> impl Future<Output = Result<Option<Data>, StoreError>> + Send;
    /// The ClusterConnectorAuthProvider of this name; `None` when there is none.
    fn provider(&self, name: &str) -> impl Future<Output = Result<Option<ProviderSpec>, StoreError>> + Send;
    /// Whether the ServiceAccount exists and lets the ConnectorAuth `ca` use its tokens
    /// ([`crate::api::SERVICE_ACCOUNT_OPT_IN`]): `None` when it does not exist (and in a mode
    /// without ServiceAccounts).
    fn service_account_allows(
        &self,
        _namespace: &str,
        _name: &str,
        _ca: &str,
    ) -> impl Future<Output = Result<Option<bool>, StoreError>> + Send {
        async { Ok(None) }
    }
    /// How this mode gets a fresh token of the ServiceAccount (nothing is fetched yet).
    fn service_account_tokens(
        &self,
        _namespace: &str,
        source: &crate::api::ServiceAccountTokenSource,
    ) -> ServiceAccountTokens {
        let name = source.name.clone();
        ServiceAccountTokens(std::sync::Arc::new(move || {
            let name = name.clone();
            Box::pin(async move {
                Err(EngineError::MissingReference {
                    field: "spec.serviceAccountToken".into(),
                    reason: format!("this mode cannot get tokens of ServiceAccount {name}"),
                })
            })
        }))
    }
}

/// A mode: its reads, and where each resource's state and output are kept.
pub trait Adapter: Source {
    type Store: Store + Send + Sync;
    /// The store of one resource; `None` while it has no identity yet (no uid).
    fn store(&self, ca: &ConnectorAuth, secret_name: &str) -> Option<Self::Store>;
    /// The `metadata.generation` the resource's credential was last verified for
    /// (`spec.verify`), where the mode keeps that: then a changed spec is verified at once,
    /// not only at the next issuance.
    fn verified_generation(&self, _ca: &ConnectorAuth) -> Option<i64> {
        None
    }
}

/// The namespace of a resource (`default` when the manifest names none).
pub fn namespace_of(ca: &ConnectorAuth) -> String {
    ca.namespace().unwrap_or_else(|| "default".into())
}

/// The output Secret's name: `spec.output.secretName`, default `<name>-token`.
pub fn output_secret_name(ca: &ConnectorAuth) -> String {
    ca.spec
        .output
        .secret_name
        .clone()
        .unwrap_or_else(|| format!("{}-token", ca.name_any()))
}

/// The identity a consent `state` is bound to: the uid (manifests have none: `local`).
pub fn uid_of(ca: &ConnectorAuth) -> String {
    ca.uid().unwrap_or_else(|| "local".into())
}

/// Gathers a resource's inputs, refusing it when it cannot be attempted. The order is the
/// same in every mode: the reference's namespace, the provider entry, the spec, the
/// credentials and the provider's parameters, then the TLS material (whose absence is reported
/// only when a request is to be sent).
pub async fn gather<S: Source>(
    engine: &Engine,
    source: &S,
    ca: &ConnectorAuth,
    redirect_url: Option<String>,
    callback: BTreeMap<String, SecretString>,
) -> Result<Result<Gathered, Refusal>, StoreError> {
    let ns = namespace_of(ca);
    let cref = &ca.spec.credentials_ref;
    if let Some(other) = cref.namespace.as_deref().filter(|o| *o != ns) {
        return Ok(Err(Refusal {
            reason: Reason::CrossNamespaceReference,
            message: format!(
                "credentialsRef.namespace {other} differs from the resource's namespace {ns}: cross-namespace references are refused"
            ),
        }));
    }
    // A ClusterConnectorAuthProvider of the name wins over a built-in entry.
    let cluster = match &ca.spec.provider {
        Some(name) => source.provider(name).await?,
        None => None,
    };
    let found = match &ca.spec.provider {
        Some(name) => match catalog::find(name, cluster.as_ref()) {
            Some(f) => Some(f),
            None => {
                return Ok(Err(Refusal {
                    reason: Reason::ProviderNotFound,
                    message: catalog::not_found(name),
                }));
            }
        },
        None => None,
    };
    let resolved = match &found {
        Some(f) => match catalog::apply(f, &ca.spec) {
            Ok(r) => r,
            Err(e) => return Ok(Err(Refusal::from(&e))),
        },
        None => match catalog::resolve(&ca.spec) {
            Ok(r) => r,
            Err(e) => return Ok(Err(Refusal::from(&e))),
        },
    };
    let spec = resolved.spec();
    let flow = match engine.compile(&resolved.engine()) {
        Ok(f) => f,
        Err(e) => return Ok(Err(Refusal::from(&e))),
    };
    let Some(credentials) = source.secret(&ns, &cref.name).await? else {
        return Ok(Err(Refusal {
            reason: Reason::CredentialsNotFound,
            message: format!("credentials Secret {ns}/{} not found", cref.name),
        }));
    };
    let mut credentials: BTreeMap<String, SecretString> = credentials
        .into_iter()
        .map(|(k, v)| (k, SecretString::new(String::from_utf8_lossy(&v).into_owned())))
        .collect();
    if let Some(f) = &found
        && let Err(e) = catalog::fill_params(f, &ca.spec, &mut credentials)
    {
        return Ok(Err(Refusal::from(&e)));
    }
    let mut fetched = tls::Fetched::new();
    for obj in tls::references(spec) {
        let data = match obj.kind {
            Kind::Secret => source.secret(&ns, &obj.name).await?,
            Kind::ConfigMap => source.config_map(&ns, &obj.name).await?,
        };
        fetched.insert(obj, data);
    }
    // The ServiceAccount must exist and have opted in before any token of it is asked for.
    let service_account_tokens = match &spec.service_account_token {
        None if flow.uses_service_account_token => {
            return Ok(Err(Refusal {
                reason: Reason::InvalidSpec,
                message: "the templates read `service_account_token`: set spec.serviceAccountToken".into(),
            }));
        }
        None => None,
        Some(sa) => match source.service_account_allows(&ns, &sa.name, &ca.name_any()).await? {
            None => {
                return Ok(Err(Refusal {
                    reason: Reason::ServiceAccountNotFound,
                    message: format!("ServiceAccount {ns}/{} (spec.serviceAccountToken) not found", sa.name),
                }));
            }
            Some(false) => {
                return Ok(Err(Refusal {
                    reason: Reason::ServiceAccountNotAllowed,
                    message: format!(
                        "ServiceAccount {ns}/{} does not let this ConnectorAuth use its tokens: its annotation {} must list `{}` (or `*`)",
                        sa.name,
                        crate::api::SERVICE_ACCOUNT_OPT_IN,
                        ca.name_any()
                    ),
                }));
            }
            Some(true) => Some(source.service_account_tokens(&ns, sa)),
        },
    };
    let fingerprint = engine::fingerprint(&resolved.engine(), &credentials);
    // Another ServiceAccount or audience is another identity: the token is issued anew.
    let fingerprint = match &spec.service_account_token {
        Some(sa) => engine::state::digest(&format!(
            "{fingerprint}/{}",
            serde_json::to_string(sa).unwrap_or_default()
        )),
        None => fingerprint,
    };
    let inputs = Inputs {
        credentials,
        redirect_url,
        callback,
        code_verifier: None,
        http: tls::resolve(spec, &fetched),
        service_account_tokens,
        fresh: BTreeMap::new(),
    };
    Ok(Ok(Gathered {
        flow,
        inputs,
        fingerprint,
        provider: found.zip(ca.spec.provider.as_deref()).map(|(f, name)| f.describe(name)),
        renew_request: ca.annotations().get(crate::api::RENEW_ANNOTATION).cloned(),
    }))
}

/// One lock per resource, holding what its passes could not persist yet: a pass and a consent
/// callback for the same resource never interleave. An entry lives only while it is held or
/// holds something ([`ResourceLocks::release`]), not one per resource for the life of the process.
#[derive(Default)]
pub struct ResourceLocks(Mutex<HashMap<String, Arc<tokio::sync::Mutex<Unsaved>>>>);

impl ResourceLocks {
    fn key(ca: &ConnectorAuth) -> String {
        format!("{}/{}/{}", namespace_of(ca), ca.name_any(), uid_of(ca))
    }

    /// Waits for the resource's lock.
    pub async fn hold(&self, ca: &ConnectorAuth) -> tokio::sync::OwnedMutexGuard<Unsaved> {
        let entry = self
            .0
            .lock()
            .expect("ledger lock")
            .entry(Self::key(ca))
            .or_default()
            .clone();
        entry.lock_owned().await
    }

    /// Gives the lock back, dropping the resource's entry when nobody else waits for it and
    /// nothing is left unsaved.
    pub fn release(&self, ca: &ConnectorAuth, held: tokio::sync::OwnedMutexGuard<Unsaved>) {
        let idle = held.is_empty();
        drop(held);
        if !idle {
            return;
        }
        let key = Self::key(ca);
        let mut entries = self.0.lock().expect("ledger lock");
        // Waiters clone the entry under this lock, so a count of one means none waits.
        if entries.get(&key).is_some_and(|e| Arc::strong_count(e) == 1) {
            entries.remove(&key);
        }
    }

    /// Drops what is kept for a deleted resource.
    pub fn forget(&self, ca: &ConnectorAuth) {
        self.0.lock().expect("ledger lock").remove(&Self::key(ca));
    }
}

/// What every pass of one process shares.
pub struct Core {
    pub engine: Engine,
    /// `{{ redirect_url }}` for templates.
    pub redirect_url: Option<String>,
    /// The key that signs consent `state`; set once consent is enabled (in a cluster: by the
    /// leader, when it takes the lead).
    pub consent_key: OnceLock<Vec<u8>>,
    /// Whether this process may act.
    pub lead: Lead,
    pub ledger: ResourceLocks,
}

impl Core {
    pub fn new(engine: Engine, redirect_url: Option<String>, lead: Lead) -> Self {
        Core {
            engine,
            redirect_url,
            consent_key: OnceLock::new(),
            lead,
            ledger: ResourceLocks::default(),
        }
    }

    /// One pass over `ca`: gather, decide and act. `Err` only when the store (or source) failed,
    /// the lead was lost or the pass panicked; everything about the resource itself is in the
    /// [`Pass`]. A panic ends this pass only ([`PassError::Panicked`]).
    pub async fn reconcile<A: Adapter>(
        &self,
        adapter: &A,
        ca: &ConnectorAuth,
        now: Timestamp,
    ) -> Result<Pass, PassError> {
        use futures::FutureExt;
        match std::panic::AssertUnwindSafe(self.pass(adapter, ca, now))
            .catch_unwind()
            .await
        {
            Ok(r) => r,
            Err(_) => {
                tracing::error!(namespace = %namespace_of(ca), name = %ca.name_any(), "a pass panicked");
                Err(PassError::Panicked)
            }
        }
    }

    async fn pass<A: Adapter>(&self, adapter: &A, ca: &ConnectorAuth, now: Timestamp) -> Result<Pass, PassError> {
        let secret_name = output_secret_name(ca);
        let pass = |verdict, authorization_url, replaced, provider| Pass {
            scheme: ca.spec.scheme.name(),
            provider,
            secret_name: secret_name.clone(),
            verdict,
            authorization_url,
            replaced,
            verification: None,
        };
        let g = match gather(&self.engine, adapter, ca, self.redirect_url.clone(), BTreeMap::new()).await? {
            Ok(g) => g,
            Err(refusal) => return Ok(pass(Verdict::Refused(refusal), None, Vec::new(), None)),
        };
        let Some(store) = adapter.store(ca, &secret_name) else {
            return Err(PassError::Store(StoreError::new(
                "the resource has no uid yet",
                "not persisted",
            )));
        };
        let mut unsaved = self.ledger.hold(ca).await;
        let lead = self.lead.for_resource(&namespace_of(ca), &ca.name_any());
        let result = driver::reconcile(&self.engine, &g, &store, &mut unsaved, &lead, now).await;
        self.ledger.release(ca, unsaved);
        let outcome = match result {
            Ok(o) => o,
            Err(PassError::Store(e @ (StoreError::OwnedElsewhere { .. } | StoreError::Rejected { .. }))) => {
                let reason = match e {
                    StoreError::OwnedElsewhere { .. } => Reason::SecretOwnedElsewhere,
                    _ => Reason::SecretRejected,
                };
                let refusal = Refusal {
                    reason,
                    message: e.to_string(),
                };
                return Ok(pass(
                    Verdict::Refused(refusal),
                    None,
                    store.replaced(),
                    g.provider.clone(),
                ));
            }
            Err(e) => return Err(e),
        };
        let url = self.consent_link(ca, &g, &outcome, now);
        let verified_for = adapter.verified_generation(ca);
        let verification = self.verify(ca, &g, &outcome, verified_for, now).await;
        Ok(Pass {
            verification,
            ..pass(Verdict::Ran(outcome), url, store.replaced(), g.provider.clone())
        })
    }

    /// Verifies the published credential (`spec.verify`) when [`decide::verify_due`] says so.
    /// Only ever reads: whatever the answer, the token stays as it is.
    async fn verify(
        &self,
        ca: &ConnectorAuth,
        g: &Gathered,
        outcome: &Outcome,
        verified_for: Option<i64>,
        now: Timestamp,
    ) -> Option<Verification> {
        let issued = matches!(outcome.action, Action::Issued { .. });
        let configured = g.flow.verify.is_some();
        if !decide::verify_due(configured, issued, verified_for, ca.metadata.generation)
            || !self.lead.holds(&namespace_of(ca), &ca.name_any())
        {
            return None;
        }
        let step = g.flow.verify.as_ref()?;
        let token = outcome
            .token
            .as_ref()
            .filter(|t| t.expires_at.is_none_or(|e| e > now))?;
        let output = self.engine.render_output(&g.flow, &g.inputs, token).ok()?;
        Some(self.engine.verify(step, &g.inputs, &output, now).await)
    }

    /// The consent link for a resource awaiting consent, signed for its pending nonce.
    fn consent_link(&self, ca: &ConnectorAuth, g: &Gathered, outcome: &Outcome, now: Timestamp) -> Option<String> {
        let key = self.consent_key.get()?;
        let pending = outcome.pending_consent.as_ref()?;
        if !matches!(
            outcome.action,
            Action::Failed {
                error: EngineError::AuthorizationRequired
            }
        ) {
            return None;
        }
        let state = ConsentState {
            namespace: namespace_of(ca),
            name: ca.name_any(),
            uid: uid_of(ca),
            nonce: pending.nonce.clone(),
            expires: pending.expires.as_second(),
        };
        let challenge = g
            .flow
            .pkce
            .then(|| consent::pkce_challenge(&consent::pkce_verifier(key, &pending.nonce)));
        match self.engine.authorization_url(
            &g.flow,
            &g.inputs,
            &consent::sign(key, &state),
            challenge.as_deref(),
            now,
        ) {
            Ok(url) => url,
            Err(e) => {
                tracing::warn!(error = %e, "cannot render the consent URL");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resource() -> ConnectorAuth {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "connectorauth.dev/v1alpha1", "kind": "ConnectorAuth",
            "metadata": {"name": "crm", "namespace": "team-a", "uid": "u-1"},
            "spec": {"credentialsRef": {"name": "c"}, "apiKey": {}},
        }))
        .unwrap()
    }

    /// A mode whose reads panic, as a bug in a pass would.
    struct Panicking;

    impl Source for Panicking {
        async fn secret(&self, _: &str, _: &str) -> Result<Option<Data>, StoreError> {
            panic!("a bug")
        }
        async fn config_map(&self, _: &str, _: &str) -> Result<Option<Data>, StoreError> {
            Ok(None)
        }
        async fn provider(&self, _: &str) -> Result<Option<ProviderSpec>, StoreError> {
            Ok(None)
        }
    }

    struct Nowhere;

    impl Store for Nowhere {
        async fn load(&self) -> Result<Option<record::Record>, StoreError> {
            Ok(None)
        }
        async fn save(&self, _: &record::Record) -> Result<(), StoreError> {
            Ok(())
        }
        async fn publish(&self, _: &BTreeMap<String, String>) -> Result<bool, StoreError> {
            Ok(false)
        }
    }

    impl Adapter for Panicking {
        type Store = Nowhere;
        fn store(&self, _: &ConnectorAuth, _: &str) -> Option<Nowhere> {
            Some(Nowhere)
        }
    }

    #[tokio::test]
    async fn a_panic_in_a_pass_ends_that_pass_only() {
        let engine = Engine::new(engine::HttpSettings::default()).unwrap();
        let core = Core::new(engine, None, Lead::always());
        let ca = resource();
        let result = core.reconcile(&Panicking, &ca, Timestamp::now()).await;
        assert!(matches!(result, Err(PassError::Panicked)), "{result:?}");
        // The process, the core and its ledger go on: the resource's lock was given back.
        let again = core.reconcile(&Panicking, &ca, Timestamp::now()).await;
        assert!(matches!(again, Err(PassError::Panicked)));
        assert!(core.ledger.0.lock().is_ok(), "no lock was poisoned");
    }

    fn entries(ledger: &ResourceLocks) -> usize {
        ledger.0.lock().unwrap().len()
    }

    #[tokio::test]
    async fn a_ledger_entry_lives_only_while_a_pass_holds_or_waits_for_it() {
        let ledger = Arc::new(ResourceLocks::default());
        let ca = resource();
        let held = ledger.hold(&ca).await;
        assert_eq!(entries(&ledger), 1);
        ledger.release(&ca, held);
        assert_eq!(entries(&ledger), 0, "an idle, empty entry is dropped");

        let first = ledger.hold(&ca).await;
        let (l, c) = (ledger.clone(), ca.clone());
        let waiter = tokio::spawn(async move {
            let held = l.hold(&c).await;
            l.release(&c, held);
        });
        // The map, the held guard and the waiter.
        while Arc::strong_count(ledger.0.lock().unwrap().values().next().unwrap()) < 3 {
            tokio::task::yield_now().await;
        }
        ledger.release(&ca, first);
        assert_eq!(entries(&ledger), 1, "kept while another pass waits for it");
        waiter.await.unwrap();
        assert_eq!(entries(&ledger), 0);
    }
}
