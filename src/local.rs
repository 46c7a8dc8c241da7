//! Local mode: the same engine and driver, backed by files instead of a cluster.
//!
//! Manifests (ConnectorAuth, Secret and ConfigMap YAML) are read from a folder; each output
//! Secret is written as `OUTPUT/<namespace>/<secretName>/<key>` in the layout kubelet uses for a
//! mounted Secret volume (a timestamped data directory behind a `..data` symlink that is swapped
//! atomically), and private state goes to `OUTPUT/.state/` with 0600 permissions.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use base64::Engine as _;
use jiff::Timestamp;
use kube::ResourceExt;

mod summary;

pub use summary::Summary;

use crate::api::ConnectorAuth;
use crate::consent;
use crate::engine::driver::{self, Action, Outcome, Record, Store, StoreError, Unsaved};
use crate::engine::tls::{self, Kind};
use crate::engine::{self, ClientOptions, Engine, EngineError, Inputs, SecretString};

/// A credentials Secret read from a manifest.
#[derive(Debug, Clone)]
pub struct SecretManifest {
    pub namespace: String,
    pub name: String,
    pub data: BTreeMap<String, SecretString>,
}

/// A ConfigMap read from a manifest (a CA bundle for `spec.tls.caBundleRef`): `data` and
/// `binaryData` merged.
#[derive(Debug, Clone)]
pub struct ConfigMapManifest {
    pub namespace: String,
    pub name: String,
    pub data: BTreeMap<String, Vec<u8>>,
}

/// Everything found under a manifests folder.
#[derive(Debug, Default)]
pub struct Manifests {
    pub resources: Vec<ConnectorAuth>,
    pub secrets: Vec<SecretManifest>,
    pub config_maps: Vec<ConfigMapManifest>,
}

impl Manifests {
    pub fn secret(&self, namespace: &str, name: &str) -> Option<&SecretManifest> {
        self.secrets.iter().find(|s| s.namespace == namespace && s.name == name)
    }

    pub fn config_map(&self, namespace: &str, name: &str) -> Option<&ConfigMapManifest> {
        self.config_maps
            .iter()
            .find(|c| c.namespace == namespace && c.name == name)
    }

    /// How `ca`'s token requests are sent, with the TLS material of `spec.tls` taken from the
    /// Secrets and ConfigMaps of its namespace in these manifests, as in a cluster.
    pub fn client_options(&self, ca: &ConnectorAuth) -> engine::Result<ClientOptions> {
        let namespace = ca.namespace().unwrap_or_else(|| "default".into());
        let mut fetched = tls::Fetched::new();
        for obj in tls::references(&ca.spec) {
            let data = match obj.kind {
                Kind::Secret => self.secret(&namespace, &obj.name).map(|s| {
                    s.data
                        .iter()
                        .map(|(k, v)| (k.clone(), v.expose().as_bytes().to_vec()))
                        .collect()
                }),
                Kind::ConfigMap => self.config_map(&namespace, &obj.name).map(|c| c.data.clone()),
            };
            fetched.insert(obj, data);
        }
        tls::resolve(&ca.spec, &fetched)
    }
}

/// Reads every `*.yaml`/`*.yml` under `path` (a folder, searched recursively, or one file).
/// Unknown kinds are skipped; malformed documents are errors naming file and document.
pub fn load_manifests(path: &Path) -> anyhow::Result<Manifests> {
    let mut files = Vec::new();
    collect_yaml(path, &mut files).with_context(|| format!("reading {}", path.display()))?;
    files.sort();
    let mut m = Manifests::default();
    for file in files {
        let text = fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
        let docs: Vec<serde_json::Value> =
            serde_saphyr::from_multiple(&text).with_context(|| format!("{}: not valid YAML", file.display()))?;
        for (i, doc) in docs.into_iter().enumerate() {
            let at = || format!("{} (document {})", file.display(), i + 1);
            if doc.is_null() {
                continue;
            }
            crate::api::strict::check(&doc).map_err(|e| anyhow::anyhow!("{}: {e}", at()))?;
            match doc.get("kind").and_then(|k| k.as_str()) {
                Some("ConnectorAuth") => {
                    if let Err(e) = crate::api::validate_document(&doc) {
                        bail!("{}: refused by the CRD's validation rules: {e}", at());
                    }
                    let mut ca: ConnectorAuth = serde_json::from_value(doc.clone())
                        .with_context(|| format!("{}: invalid ConnectorAuth", at()))?;
                    if ca.metadata.namespace.is_none() {
                        ca.metadata.namespace = Some("default".into());
                    }
                    if let Err(e) = ca.validate_cel() {
                        bail!(
                            "{}: ConnectorAuth {} is refused by the CRD's validation rules: {e}",
                            at(),
                            ca.name_any()
                        );
                    }
                    m.resources.push(ca);
                }
                Some("Secret") => m
                    .secrets
                    .push(parse_secret(&doc).with_context(|| format!("{}: invalid Secret", at()))?),
                Some("ConfigMap") => m
                    .config_maps
                    .push(parse_config_map(&doc).with_context(|| format!("{}: invalid ConfigMap", at()))?),
                _ => {}
            }
        }
    }
    Ok(m)
}

fn collect_yaml(path: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    if path.is_file() {
        out.push(path.to_path_buf());
        return Ok(());
    }
    for entry in fs::read_dir(path)? {
        let p = entry?.path();
        if p.is_dir() {
            collect_yaml(&p, out)?;
        } else if matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")) {
            out.push(p);
        }
    }
    Ok(())
}

/// `metadata.namespace` (default `default`) and `metadata.name` of a manifest.
fn namespace_and_name(doc: &serde_json::Value) -> anyhow::Result<(String, String)> {
    let meta = doc.get("metadata").context("metadata is missing")?;
    let name = meta
        .get("name")
        .and_then(|n| n.as_str())
        .context("metadata.name is missing")?
        .to_string();
    let namespace = meta
        .get("namespace")
        .and_then(|n| n.as_str())
        .unwrap_or("default")
        .to_string();
    Ok((namespace, name))
}

fn parse_config_map(doc: &serde_json::Value) -> anyhow::Result<ConfigMapManifest> {
    let (namespace, name) = namespace_and_name(doc)?;
    let mut data = BTreeMap::new();
    if let Some(d) = doc.get("binaryData").and_then(|d| d.as_object()) {
        for (k, v) in d {
            let raw = v.as_str().with_context(|| format!("binaryData.{k} is not a string"))?;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(raw.trim())
                .with_context(|| format!("binaryData.{k} is not base64"))?;
            data.insert(k.clone(), bytes);
        }
    }
    if let Some(d) = doc.get("data").and_then(|d| d.as_object()) {
        for (k, v) in d {
            let s = v.as_str().with_context(|| format!("data.{k} is not a string"))?;
            data.insert(k.clone(), s.as_bytes().to_vec());
        }
    }
    Ok(ConfigMapManifest { namespace, name, data })
}

fn parse_secret(doc: &serde_json::Value) -> anyhow::Result<SecretManifest> {
    let (namespace, name) = namespace_and_name(doc)?;
    let mut data = BTreeMap::new();
    if let Some(d) = doc.get("data").and_then(|d| d.as_object()) {
        for (k, v) in d {
            let raw = v.as_str().with_context(|| format!("data.{k} is not a string"))?;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(raw.trim())
                .with_context(|| format!("data.{k} is not base64"))?;
            let s = String::from_utf8(bytes).with_context(|| format!("data.{k} is not UTF-8"))?;
            data.insert(k.clone(), SecretString::new(s));
        }
    }
    if let Some(d) = doc.get("stringData").and_then(|d| d.as_object()) {
        for (k, v) in d {
            let s = match v {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            data.insert(k.clone(), SecretString::new(s));
        }
    }
    Ok(SecretManifest { namespace, name, data })
}

/// The output Secret name of a resource.
pub fn secret_name(ca: &ConnectorAuth) -> String {
    ca.spec
        .output
        .secret_name
        .clone()
        .unwrap_or_else(|| format!("{}-token", ca.name_any()))
}

/// Files for one resource: private record and published output.
pub struct FileStore {
    state_file: PathBuf,
    output_dir: PathBuf,
}

impl FileStore {
    pub fn new(root: &Path, namespace: &str, name: &str, secret: &str) -> Self {
        FileStore {
            state_file: root.join(".state").join(namespace).join(format!("{name}.json")),
            output_dir: root.join(namespace).join(secret),
        }
    }

    /// The data currently published, read through `..data`.
    pub fn published(&self) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        if let Ok(entries) = fs::read_dir(self.output_dir.join("..data")) {
            for e in entries.flatten() {
                if let (Some(name), Ok(v)) = (e.file_name().to_str().map(str::to_string), fs::read_to_string(e.path()))
                {
                    out.insert(name, v);
                }
            }
        }
        out
    }
}

fn mkdir_private(dir: &Path) -> std::io::Result<()> {
    fs::create_dir_all(dir)?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
}

/// Writes `bytes` to `path` atomically (temp file, fsync, rename, fsync dir), mode 0600.
fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().expect("path has a parent");
    let tmp = dir.join(format!(
        ".{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("state")
    ));
    {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, path)?;
    fs::File::open(dir)?.sync_all()
}

impl Store for FileStore {
    async fn load(&self) -> Result<Option<Record>, StoreError> {
        match fs::read(&self.state_file) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| StoreError::new(format!("state file {} is corrupt", self.state_file.display()), e)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StoreError::new(format!("reading {}", self.state_file.display()), e)),
        }
    }

    async fn save(&self, record: &Record) -> Result<(), StoreError> {
        let what = || format!("writing {}", self.state_file.display());
        let dir = self.state_file.parent().expect("state file has a parent");
        // Both levels of .state are private: they hold refresh tokens.
        mkdir_private(dir.parent().expect(".state")).map_err(|e| StoreError::new(what(), e))?;
        mkdir_private(dir).map_err(|e| StoreError::new(what(), e))?;
        let bytes = serde_json::to_vec_pretty(record).map_err(|e| StoreError::new(what(), e))?;
        write_atomic(&self.state_file, &bytes).map_err(|e| StoreError::new(what(), e))
    }

    async fn publish(&self, data: &BTreeMap<String, String>) -> Result<bool, StoreError> {
        // Also restore key links removed by hand.
        let links_intact = data.keys().all(|k| self.output_dir.join(k).exists());
        if links_intact && &self.published() == data {
            return Ok(false);
        }
        let what = || format!("writing {}", self.output_dir.display());
        publish_dir(&self.output_dir, data).map_err(|e| StoreError::new(what(), e))?;
        Ok(true)
    }
}

/// kubelet's atomic writer, in short: write a fresh `..<timestamp>` directory, point a
/// temporary symlink at it, rename that over `..data`, link each key to `..data/<key>`, and
/// remove the old directory and keys that are gone. Readers always see one complete version.
fn publish_dir(dir: &Path, data: &BTreeMap<String, String>) -> std::io::Result<()> {
    fs::create_dir_all(dir)?;
    let old = fs::read_link(dir.join("..data")).ok();
    let stamp = Timestamp::now().strftime("..%Y_%m_%d_%H_%M_%S.%f").to_string();
    let fresh = dir.join(&stamp);
    fs::create_dir(&fresh)?;
    for (k, v) in data {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(fresh.join(k))?;
        f.write_all(v.as_bytes())?;
        f.sync_all()?;
    }
    fs::set_permissions(&fresh, fs::Permissions::from_mode(0o700))?;
    let tmp_link = dir.join("..data_tmp");
    let _ = fs::remove_file(&tmp_link);
    std::os::unix::fs::symlink(&stamp, &tmp_link)?;
    fs::rename(&tmp_link, dir.join("..data"))?;
    for k in data.keys() {
        let link = dir.join(k);
        if fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink(Path::new("..data").join(k), &link)?;
        }
    }
    for entry in fs::read_dir(dir)?.flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        if !name.starts_with("..") && !data.contains_key(&name) {
            fs::remove_file(entry.path())?;
        }
    }
    if let Some(old) = old.filter(|o| o.as_os_str() != stamp.as_str()) {
        let _ = fs::remove_dir_all(dir.join(old));
    }
    fs::File::open(dir)?.sync_all()
}

/// One resource's result of a pass, for summaries.
#[derive(Debug, Clone)]
pub struct Report {
    pub namespace: String,
    pub name: String,
    pub scheme: String,
    pub secret: String,
    pub result: Result<Outcome, String>,
    /// For resources awaiting consent: the link to open.
    pub authorization_url: Option<String>,
    /// A warning about the spec, given once per resource and process (`insecureSkipVerify`).
    pub warning: Option<String>,
}

impl Report {
    /// The warning as printed on stderr, if there is one.
    pub fn warning_line(&self) -> Option<String> {
        let w = self.warning.as_ref()?;
        Some(format!("WARNING {}/{}: {w}", self.namespace, self.name))
    }

    pub fn ok(&self) -> bool {
        matches!(&self.result, Ok(o) if !matches!(o.action, Action::Failed { .. } | Action::BackingOff))
            && self.result.as_ref().is_ok_and(|o| o.token.is_some())
    }

    /// One line, without secret values.
    pub fn line(&self) -> String {
        let who = format!("{}/{}", self.namespace, self.name);
        match &self.result {
            Err(e) => format!("{who:<32} {:<17} FAILED  {e}", self.scheme),
            Ok(o) => {
                let (word, detail) = match &o.action {
                    Action::Kept => ("kept", String::new()),
                    Action::Issued {
                        refreshed: true,
                        reason,
                    } => ("refreshed", format!(" ({reason})")),
                    Action::Issued {
                        refreshed: false,
                        reason,
                    } => ("issued", format!(" ({reason})")),
                    Action::Failed { error } => ("FAILED", format!(" {} [{}]", error, error.reason())),
                    Action::BackingOff => (
                        "backoff",
                        o.last_error
                            .as_ref()
                            .map(|(r, m)| format!(" {m} [{r}]"))
                            .unwrap_or_default(),
                    ),
                };
                let now = Timestamp::now();
                let expires = match &o.token {
                    Some(t) => t
                        .expires_at
                        .map(|e| format!("expires {}", when(e, now)))
                        .unwrap_or_else(|| "no expiry".into()),
                    None => "no token".into(),
                };
                let next = o
                    .next
                    .map(|n| format!(", next check {}", when(n, now)))
                    .unwrap_or_default();
                if let (
                    Action::Failed {
                        error: EngineError::AuthorizationRequired,
                    },
                    Some(url),
                ) = (&o.action, &self.authorization_url)
                {
                    return format!(
                        "{who:<32} {:<17} CONSENT   open this URL to grant consent: {url}",
                        self.scheme
                    );
                }
                format!(
                    "{who:<32} {:<17} {word:<9} {expires}{next} -> {}{detail}",
                    self.scheme, self.secret
                )
            }
        }
    }
}

/// `2026-11-22T14:55:13Z (in 6s)`.
fn when(t: Timestamp, now: Timestamp) -> String {
    let t = t.round(jiff::Unit::Second).unwrap_or(t);
    let secs = t.duration_since(now).as_secs_f64().round() as i64;
    let rel = match secs {
        s if s < 0 => format!("{}s ago", -s),
        s if s < 120 => format!("in {s}s"),
        s if s < 7200 => format!("in {}m", s / 60),
        s => format!("in {}h", s / 3600),
    };
    format!("{t} ({rel})")
}

/// Runs local mode: passes over all resources, sleeping until the next one is due.
pub struct LocalRunner {
    pub engine: Engine,
    pub manifests: PathBuf,
    pub output: PathBuf,
    pub redirect_url: Option<String>,
    /// Longest sleep between passes; manifests are re-read every pass.
    pub poll: Duration,
    consent_key: Option<Vec<u8>>,
    /// Unsaved records per resource; the lock also serializes passes and consent callbacks.
    unsaved: SharedUnsaved,
    /// Resources already warned about `spec.tls.insecureSkipVerify` (once per process).
    warned_insecure: BTreeSet<(String, String)>,
}

type SharedUnsaved = Arc<tokio::sync::Mutex<BTreeMap<(String, String), Unsaved>>>;

/// Identity of a local resource in a consent `state` (manifests have no uid).
fn local_uid(ca: &ConnectorAuth) -> String {
    ca.uid().unwrap_or_else(|| "local".into())
}

impl LocalRunner {
    pub fn new(engine: Engine, manifests: PathBuf, output: PathBuf) -> Self {
        LocalRunner {
            engine,
            manifests,
            output,
            redirect_url: None,
            poll: Duration::from_secs(10),
            consent_key: None,
            unsaved: Arc::default(),
            warned_insecure: BTreeSet::new(),
        }
    }

    /// Serves the OAuth2 consent callback on `listen` (use loopback) and makes
    /// `{{ redirect_url }}` point at it, unless set already. The signing key is kept in
    /// `OUTPUT/.state/consent-key`. Returns the bound address.
    pub async fn enable_consent(&mut self, listen: std::net::SocketAddr) -> anyhow::Result<std::net::SocketAddr> {
        let key = consent_key(&self.output)?;
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("cannot listen on {listen}"))?;
        let addr = listener.local_addr()?;
        let redirect = self
            .redirect_url
            .get_or_insert_with(|| format!("http://{addr}{}", crate::controller::callback::CALLBACK_PATH))
            .clone();
        self.consent_key = Some(key.clone());
        let shared = Arc::new(CallbackState {
            engine: self.engine.clone(),
            manifests: self.manifests.clone(),
            output: self.output.clone(),
            redirect_url: redirect,
            key,
            unsaved: self.unsaved.clone(),
        });
        let router = axum::Router::new()
            .route(
                crate::controller::callback::CALLBACK_PATH,
                axum::routing::get(local_callback),
            )
            .with_state(shared);
        tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Ok(addr)
    }

    /// One pass over every resource.
    pub async fn pass(&mut self) -> anyhow::Result<Vec<Report>> {
        let manifests = load_manifests(&self.manifests)?;
        fs::create_dir_all(&self.output).with_context(|| format!("creating {}", self.output.display()))?;
        let unsaved = self.unsaved.clone();
        let mut unsaved = unsaved.lock().await;
        let mut reports = Vec::new();
        for ca in &manifests.resources {
            let mut report = self.reconcile(&manifests, ca, &mut unsaved).await;
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

    async fn reconcile(
        &self,
        manifests: &Manifests,
        ca: &ConnectorAuth,
        unsaved: &mut BTreeMap<(String, String), Unsaved>,
    ) -> Report {
        let namespace = ca.namespace().unwrap_or_else(|| "default".into());
        let name = ca.name_any();
        let secret = secret_name(ca);
        let mut report = Report {
            namespace: namespace.clone(),
            name: name.clone(),
            scheme: ca.spec.scheme.name().into(),
            secret: format!("{}", self.output.join(&namespace).join(&secret).display()),
            result: Err(String::new()),
            authorization_url: None,
            warning: None,
        };
        let r = &ca.spec.credentials_ref;
        if let Some(ns) = r.namespace.as_deref().filter(|ns| *ns != namespace) {
            report.result = Err(format!(
                "credentialsRef.namespace {ns} differs from the resource's namespace {namespace}: cross-namespace references are refused [CrossNamespaceReference]"
            ));
            return report;
        }
        let Some(creds) = manifests.secret(&namespace, &r.name) else {
            report.result = Err(format!(
                "credentials Secret {namespace}/{} not found [CredentialsNotFound]",
                r.name
            ));
            return report;
        };
        let flow = match self.engine.compile(&ca.spec) {
            Ok(f) => f,
            Err(e) => {
                report.result = Err(format!("{e} [{}]", e.reason()));
                return report;
            }
        };
        let inputs = Inputs {
            credentials: creds.data.clone(),
            redirect_url: self.redirect_url.clone(),
            callback: BTreeMap::new(),
            http: manifests.client_options(ca),
        };
        let fp = engine::fingerprint(&ca.spec, &inputs.credentials);
        let store = FileStore::new(&self.output, &namespace, &name, &secret);
        let entry = unsaved.entry((namespace.clone(), name.clone())).or_default();
        report.result = driver::reconcile(&self.engine, &flow, &inputs, &fp, &store, entry, Timestamp::now())
            .await
            .map_err(|e| format!("{e} [StateWriteFailed]"));
        if let (Ok(o), Some(key)) = (&report.result, &self.consent_key)
            && let (
                Some(p),
                Action::Failed {
                    error: EngineError::AuthorizationRequired,
                },
            ) = (&o.pending_consent, &o.action)
        {
            let state = consent::ConsentState {
                namespace,
                name,
                uid: local_uid(ca),
                nonce: p.nonce.clone(),
                expires: p.expires.as_second(),
            };
            report.authorization_url = self
                .engine
                .authorization_url(&flow, &inputs, &consent::sign(key, &state))
                .ok()
                .flatten();
        }
        report
    }

    /// Keeps every token fresh until `shutdown` resolves. Prints a line per change.
    pub async fn run(&mut self, shutdown: impl std::future::Future<Output = ()>) -> anyhow::Result<()> {
        tokio::pin!(shutdown);
        let mut shown = BTreeMap::new();
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
                    let d = next.duration_since(now).as_secs_f64().max(0.05);
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

/// Whether an error is worth a non-zero exit in `--once`.
pub fn failed(reports: &[Report]) -> bool {
    reports.iter().any(|r| !r.ok())
}

/// The consent signing key of local mode, created on first use (0600).
fn consent_key(output: &Path) -> anyhow::Result<Vec<u8>> {
    let path = output.join(".state").join("consent-key");
    if let Ok(k) = fs::read(&path)
        && k.len() >= 32
    {
        return Ok(k);
    }
    mkdir_private(&output.join(".state"))?;
    let key: Vec<u8> = (0..32).map(|_| rand::random::<u8>()).collect();
    write_atomic(&path, &key)?;
    Ok(key)
}

struct CallbackState {
    engine: Engine,
    manifests: PathBuf,
    output: PathBuf,
    redirect_url: String,
    key: Vec<u8>,
    unsaved: SharedUnsaved,
}

/// The consent callback of local mode: same checks as the controller's, against the manifests.
async fn local_callback(
    axum::extract::State(s): axum::extract::State<Arc<CallbackState>>,
    axum::extract::Query(params): axum::extract::Query<std::collections::HashMap<String, String>>,
) -> axum::response::Response {
    use crate::server::page;
    use axum::http::StatusCode;
    let Some(state) = params.get("state") else {
        return page(
            StatusCode::BAD_REQUEST,
            "Missing state",
            "The request has no state parameter.",
        );
    };
    let state = match consent::verify(&s.key, state, Timestamp::now().as_second()) {
        Ok(st) => st,
        Err(e) => return page(StatusCode::BAD_REQUEST, "Consent link not accepted", &e.to_string()),
    };
    let manifests = match load_manifests(&s.manifests) {
        Ok(m) => m,
        Err(e) => return page(StatusCode::CONFLICT, "Manifests unreadable", &format!("{e:#}")),
    };
    let what = format!("ConnectorAuth {}/{}", state.namespace, state.name);
    let found = manifests.resources.iter().find(|ca| {
        ca.namespace().as_deref() == Some(state.namespace.as_str())
            && ca.name_any() == state.name
            && local_uid(ca) == state.uid
    });
    let Some(ca) = found else {
        return page(
            StatusCode::GONE,
            "Resource no longer exists",
            &format!("{what} is no longer in the manifests; nothing was saved."),
        );
    };
    if let Some(err) = params.get("error") {
        let code: String = err
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
            .take(64)
            .collect();
        eprintln!("{what}: the provider returned `{code}` instead of consent");
        return page(
            StatusCode::FORBIDDEN,
            "Consent was not granted",
            &format!("the provider returned error `{code}`; nothing was saved"),
        );
    }
    let Some(creds) = manifests.secret(&state.namespace, &ca.spec.credentials_ref.name) else {
        return page(
            StatusCode::CONFLICT,
            "Credentials missing",
            "the credentials Secret is not in the manifests",
        );
    };
    let flow = match s.engine.compile(&ca.spec) {
        Ok(f) => f,
        Err(e) => return page(StatusCode::CONFLICT, "The resource's spec is invalid", &e.to_string()),
    };
    let callback = params
        .iter()
        .filter(|(k, _)| *k != "state")
        .map(|(k, v)| (k.clone(), SecretString::new(v.clone())))
        .collect();
    let inputs = Inputs {
        credentials: creds.data.clone(),
        redirect_url: Some(s.redirect_url.clone()),
        callback,
        http: manifests.client_options(ca),
    };
    let fp = engine::fingerprint(&ca.spec, &inputs.credentials);
    let store = FileStore::new(&s.output, &state.namespace, &state.name, &secret_name(ca));
    let mut unsaved = s.unsaved.lock().await;
    let entry = unsaved
        .entry((state.namespace.clone(), state.name.clone()))
        .or_default();
    let result = driver::complete_consent(
        &s.engine,
        &flow,
        &inputs,
        &fp,
        &store,
        entry,
        &state.nonce,
        Timestamp::now(),
    )
    .await;
    match &result {
        Ok(Ok(_)) => println!("{what}: consent granted, token published"),
        Ok(Err(e)) => eprintln!("{what}: consent not completed: {e}"),
        Err(e) => eprintln!("{what}: {e}"),
    }
    crate::server::consent_result_page(&result, &what)
}
