//! Local mode: the same pass as the controller ([`crate::reconcile`]), backed by files instead
//! of a cluster.
//!
//! Manifests (ConnectorAuth, Secret and ConfigMap YAML) are read from a folder
//! ([`manifests`]); each output Secret is written as `OUTPUT/<namespace>/<secretName>/<key>` in
//! the layout kubelet uses for a mounted Secret volume (a timestamped data directory behind a
//! `..data` symlink that is swapped atomically), and private state goes to `OUTPUT/.state/`
//! with 0600 permissions ([`files`]).

pub mod files;
pub mod manifests;
pub mod report;
mod summary;

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use jiff::Timestamp;
use kube::ResourceExt;

use crate::api::ConnectorAuth;
use crate::api::provider::ClusterConnectorAuthProviderSpec as ProviderSpec;
use crate::engine::{Engine, tls};
use crate::reconcile::callback::{self, CALLBACK_PATH, Consent, ConsentHost};
use crate::reconcile::record::Failure;
use crate::reconcile::{
    Adapter, Core, Data, Lead, Outcome, Pass, Source, StoreError, Verdict, namespace_of, output_secret_name,
};
pub use files::FileStore;
pub use manifests::{ConfigMapManifest, Manifests, SecretManifest, load_manifests};
pub use report::{Report, failed};
pub use summary::Summary;

/// Local mode's adapter for one pass: reads from the manifests loaded for it, state and
/// output in files under `output`.
struct Files<'a> {
    manifests: &'a Manifests,
    output: &'a Path,
    service_account_tokens: Option<&'a Path>,
}

/// Local mode's ServiceAccount tokens: `<dir>/<name>/token`, as a projected volume mounts them
/// (the kubelet keeps the file fresh); read anew for each request. A ServiceAccount exists
/// when its file does; the person running local mode is the one who put it there.
fn local_service_account(dir: Option<&Path>, name: &str) -> Option<PathBuf> {
    let valid = crate::api::names::is_dns1123_subdomain(name);
    dir.filter(|_| valid)
        .map(|d| d.join(name).join("token"))
        .filter(|p| p.is_file())
}

fn local_service_account_tokens(dir: Option<&Path>, name: &str) -> crate::engine::ServiceAccountTokens {
    let path = dir.map(|d| d.join(name).join("token"));
    let name = name.to_string();
    crate::engine::ServiceAccountTokens(Arc::new(move || {
        let (path, name) = (path.clone(), name.clone());
        Box::pin(async move {
            let missing = |why: String| crate::engine::EngineError::MissingReference {
                field: "spec.serviceAccountToken".into(),
                reason: why,
            };
            let path = path.ok_or_else(|| {
                missing(format!(
                    "no token of ServiceAccount {name}: run with --service-account-tokens DIR"
                ))
            })?;
            let token = tokio::fs::read_to_string(&path).await.map_err(|e| {
                missing(format!(
                    "reading the token of ServiceAccount {name} at {}: {e}",
                    path.display()
                ))
            })?;
            Ok(crate::engine::SecretString::new(token.trim().to_string()))
        })
    }))
}

impl Source for Files<'_> {
    async fn secret(&self, namespace: &str, name: &str) -> Result<Option<Data>, StoreError> {
        Source::secret(self.manifests, namespace, name).await
    }

    async fn config_map(&self, namespace: &str, name: &str) -> Result<Option<Data>, StoreError> {
        Source::config_map(self.manifests, namespace, name).await
    }

    async fn provider(&self, name: &str) -> Result<Option<ProviderSpec>, StoreError> {
        Source::provider(self.manifests, name).await
    }

    async fn service_account_allows(&self, _: &str, name: &str, _: &str) -> Result<Option<bool>, StoreError> {
        Ok(local_service_account(self.service_account_tokens, name).map(|_| true))
    }

    fn service_account_tokens(
        &self,
        _: &str,
        source: &crate::api::ServiceAccountTokenSource,
    ) -> crate::engine::ServiceAccountTokens {
        local_service_account_tokens(self.service_account_tokens, &source.name)
    }
}

impl Adapter for Files<'_> {
    type Store = FileStore;

    fn store(&self, ca: &ConnectorAuth, secret_name: &str) -> Option<FileStore> {
        Some(FileStore::new(
            self.output,
            &namespace_of(ca),
            &ca.name_any(),
            secret_name,
        ))
    }
}

/// Runs local mode: passes over all resources, sleeping until the next one is due.
pub struct LocalRunner {
    pub manifests: PathBuf,
    pub output: PathBuf,
    /// Longest sleep between passes; manifests are re-read every pass.
    pub poll: Duration,
    core: Arc<Core>,
    /// Resources already warned about `spec.tls.insecureSkipVerify` (once per process).
    warned_insecure: BTreeSet<(String, String)>,
    /// Where ServiceAccount tokens are read (`<dir>/<name>/token`, `--service-account-tokens`).
    pub service_account_tokens: Option<PathBuf>,
}

impl LocalRunner {
    pub fn new(engine: Engine, manifests: PathBuf, output: PathBuf) -> Self {
        LocalRunner {
            manifests,
            output,
            poll: Duration::from_secs(10),
            core: Arc::new(Core::new(engine, None, Lead::always())),
            warned_insecure: BTreeSet::new(),
            service_account_tokens: None,
        }
    }

    /// Sets `{{ redirect_url }}` for templates (before [`Self::enable_consent`]).
    pub fn set_redirect_url(&mut self, url: Option<String>) {
        self.core_mut().redirect_url = url;
    }

    fn core_mut(&mut self) -> &mut Core {
        Arc::get_mut(&mut self.core).expect("configured before the consent callback starts")
    }

    /// Serves the OAuth2 consent callback on `listen` (use loopback) and makes
    /// `{{ redirect_url }}` point at it, unless set already. The signing key is kept in
    /// `OUTPUT/.state/consent-key`. Returns the bound address.
    pub async fn enable_consent(&mut self, listen: std::net::SocketAddr) -> anyhow::Result<std::net::SocketAddr> {
        // The callback completes consents for every resource here: only this machine may reach it.
        if !listen.ip().is_loopback() {
            anyhow::bail!(
                "--callback-addr {listen}: local mode serves the consent callback on a loopback address only (127.0.0.1 or [::1])"
            );
        }
        let key = files::consent_key(&self.output)?;
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("cannot listen on {listen}"))?;
        let addr = listener.local_addr()?;
        let core = self.core_mut();
        core.redirect_url
            .get_or_insert_with(|| format!("http://{addr}{CALLBACK_PATH}"));
        let _ = core.consent_key.set(key);
        let host = Arc::new(LocalHost {
            core: self.core.clone(),
            manifests: self.manifests.clone(),
            output: self.output.clone(),
            service_account_tokens: self.service_account_tokens.clone(),
        });
        let router = callback::router(host);
        tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Ok(addr)
    }

    /// One pass over every resource.
    pub async fn pass(&mut self) -> anyhow::Result<Vec<Report>> {
        self.pass_at(Timestamp::now()).await
    }

    /// One pass as of `now` (a test's way to reach a renewal that is due later).
    pub async fn pass_at(&mut self, now: Timestamp) -> anyhow::Result<Vec<Report>> {
        let manifests = load_manifests(&self.manifests)?;
        fs::create_dir_all(&self.output).with_context(|| format!("creating {}", self.output.display()))?;
        let files = Files {
            manifests: &manifests,
            output: &self.output,
            service_account_tokens: self.service_account_tokens.as_deref(),
        };
        let mut reports = Vec::new();
        for ca in &manifests.resources {
            let pass = self.core.reconcile(&files, ca, now).await;
            let mut report = self.report(ca, pass);
            let id = (report.namespace.clone(), report.name.clone());
            if ca.spec.tls.as_ref().is_some_and(|t| t.insecure_skip_verify) {
                if self.warned_insecure.insert(id) {
                    report.warning = Some(tls::INSECURE_SKIP_VERIFY_WARNING.into());
                }
            } else {
                self.warned_insecure.remove(&id);
            }
            reports.push(report);
        }
        Ok(reports)
    }

    fn report(&self, ca: &ConnectorAuth, pass: Result<Pass, crate::reconcile::PassError>) -> Report {
        let namespace = namespace_of(ca);
        let secret = output_secret_name(ca);
        let (mut authorization_url, mut verification) = (None, None);
        let result = match pass {
            Ok(p) => {
                authorization_url = p.authorization_url;
                verification = p.verification;
                match p.verdict {
                    Verdict::Ran(o) => Ok(o),
                    Verdict::Refused(r) => Err(Failure::new(r.reason, r.message)),
                }
            }
            Err(e) => Err(Failure::new(crate::reason::Reason::StateWriteFailed, e.to_string())),
        };
        Report {
            secret: format!("{}", self.output.join(&namespace).join(&secret).display()),
            namespace,
            name: ca.name_any(),
            scheme: ca.spec.scheme.name().into(),
            result,
            authorization_url,
            warning: None,
            verification,
        }
    }

    /// Keeps every token fresh until `shutdown` resolves. Prints a line per change.
    pub async fn run(&mut self, shutdown: impl std::future::Future<Output = ()>) -> anyhow::Result<()> {
        tokio::pin!(shutdown);
        let mut shown = std::collections::BTreeMap::new();
        loop {
            let reports = self.pass().await?;
            let now = Timestamp::now();
            let mut sleep = self.poll;
            let previous = std::mem::take(&mut shown);
            for r in &reports {
                if let Some(w) = r.warning_line() {
                    eprintln!("{w}");
                }
                let id = (r.namespace.clone(), r.name.clone());
                let summary = Summary::of(r);
                if summary::worth_printing(previous.get(&id), &summary) {
                    println!("{}", r.line());
                }
                shown.insert(id, summary);
                if let Ok(Outcome { next: Some(next), .. }) = &r.result {
                    let longest = crate::engine::renewal::MAX_DURATION.as_secs_f64();
                    let d = next.duration_since(now).as_secs_f64().clamp(0.05, longest);
                    sleep = sleep.min(Duration::from_secs_f64(d));
                }
            }
            tokio::select! {
                _ = &mut shutdown => return Ok(()),
                _ = tokio::time::sleep(sleep) => {}
            }
        }
    }
}

/// The consent callback's view of local mode: the manifests as they are on disk now.
struct LocalHost {
    core: Arc<Core>,
    manifests: PathBuf,
    output: PathBuf,
    service_account_tokens: Option<PathBuf>,
}

impl LocalHost {
    fn load(&self) -> Result<Manifests, StoreError> {
        load_manifests(&self.manifests).map_err(|e| StoreError::new(format!("reading {}", self.manifests.display()), e))
    }
}

impl Source for LocalHost {
    async fn secret(&self, namespace: &str, name: &str) -> Result<Option<Data>, StoreError> {
        Source::secret(&self.load()?, namespace, name).await
    }

    async fn config_map(&self, namespace: &str, name: &str) -> Result<Option<Data>, StoreError> {
        Source::config_map(&self.load()?, namespace, name).await
    }

    async fn provider(&self, name: &str) -> Result<Option<ProviderSpec>, StoreError> {
        Source::provider(&self.load()?, name).await
    }

    async fn service_account_allows(&self, _: &str, name: &str, _: &str) -> Result<Option<bool>, StoreError> {
        Ok(local_service_account(self.service_account_tokens.as_deref(), name).map(|_| true))
    }

    fn service_account_tokens(
        &self,
        _: &str,
        source: &crate::api::ServiceAccountTokenSource,
    ) -> crate::engine::ServiceAccountTokens {
        local_service_account_tokens(self.service_account_tokens.as_deref(), &source.name)
    }
}

impl Adapter for LocalHost {
    type Store = FileStore;

    fn store(&self, ca: &ConnectorAuth, secret_name: &str) -> Option<FileStore> {
        Some(FileStore::new(
            &self.output,
            &namespace_of(ca),
            &ca.name_any(),
            secret_name,
        ))
    }
}

impl ConsentHost for LocalHost {
    fn core(&self) -> &Core {
        &self.core
    }

    async fn resource(&self, namespace: &str, name: &str) -> Result<Option<ConnectorAuth>, StoreError> {
        Ok(self
            .load()?
            .resources
            .into_iter()
            .find(|ca| namespace_of(ca) == namespace && ca.name_any() == name))
    }

    async fn consented(&self, ca: &ConnectorAuth, consent: Consent<'_>) {
        let what = format!("ConnectorAuth {}/{}", namespace_of(ca), ca.name_any());
        match consent {
            Consent::Denied { code } => eprintln!("{what}: the provider returned `{code}` instead of consent"),
            Consent::Completed(Ok(Ok(_))) => println!("{what}: consent granted, token published"),
            Consent::Completed(Ok(Err(e))) => eprintln!("{what}: consent not completed: {e}"),
            Consent::Completed(Err(e)) => eprintln!("{what}: {e}"),
        }
    }

    async fn leader_callback(&self, _resource: Option<(String, String)>) -> Option<String> {
        None
    }
}
