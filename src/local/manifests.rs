//! Manifests: ConnectorAuth, ClusterConnectorAuthProvider, Secret and ConfigMap YAML read from
//! a folder, as local mode's source of resources and of what they read.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use base64::Engine as _;
use kube::ResourceExt;

use crate::api::ConnectorAuth;
use crate::api::provider::{ClusterConnectorAuthProvider, ClusterConnectorAuthProviderSpec};
use crate::engine::SecretString;
use crate::reconcile::{Data, Source, StoreError};

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
    pub providers: Vec<ClusterConnectorAuthProvider>,
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
}

/// A mode's reads, from the manifests: only what they hold exists.
impl Source for Manifests {
    async fn secret(&self, namespace: &str, name: &str) -> Result<Option<Data>, StoreError> {
        Ok(Manifests::secret(self, namespace, name).map(|s| {
            s.data
                .iter()
                .map(|(k, v)| (k.clone(), v.expose().as_bytes().to_vec()))
                .collect()
        }))
    }

    async fn config_map(&self, namespace: &str, name: &str) -> Result<Option<Data>, StoreError> {
        Ok(Manifests::config_map(self, namespace, name).map(|c| c.data.clone()))
    }

    async fn provider(&self, name: &str) -> Result<Option<ClusterConnectorAuthProviderSpec>, StoreError> {
        Ok(self
            .providers
            .iter()
            .find(|p| p.metadata.name.as_deref() == Some(name))
            .map(|p| p.spec.clone()))
    }
}

/// Documents one manifest file may hold (YAML parsers cap this against separator storms; the
/// default of 1,024 is too few for a file of all one's resources).
pub const MAX_DOCUMENTS_PER_FILE: usize = 100_000;

/// Reads every `*.yaml`/`*.yml` under `path` (a folder, searched recursively, or one file).
/// Unknown kinds are skipped; malformed documents, names the API server would refuse and
/// duplicates are errors naming file and document.
pub fn load_manifests(path: &Path) -> anyhow::Result<Manifests> {
    let mut files = Vec::new();
    collect_yaml(path, &mut files).with_context(|| format!("reading {}", path.display()))?;
    files.sort();
    let mut m = Manifests::default();
    // Where each object, and each resource's output Secret, was first seen.
    let mut seen: BTreeMap<(&'static str, String, String), String> = BTreeMap::new();
    let mut outputs: BTreeMap<(String, String), String> = BTreeMap::new();
    let options = || {
        let mut budget = serde_saphyr::Budget::default();
        budget.max_documents = MAX_DOCUMENTS_PER_FILE;
        budget.max_nodes = 20_000_000;
        budget.max_events = 100_000_000;
        let mut options = serde_saphyr::Options::default();
        options.budget = Some(budget);
        options
    };
    for file in files {
        let text = fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
        // The error is shown without the source lines around it: they may be secret values.
        let docs: Vec<serde_json::Value> = serde_saphyr::from_multiple_with_options(&text, options())
            .map_err(|e| anyhow::anyhow!("{}: not valid YAML: {}", file.display(), e.without_snippet()))?;
        for (i, doc) in docs.into_iter().enumerate() {
            let at = || format!("{} (document {})", file.display(), i + 1);
            if doc.is_null() {
                continue;
            }
            crate::api::strict::check(&doc).map_err(|e| anyhow::anyhow!("{}: {e}", at()))?;
            let kind = match doc.get("kind").and_then(|k| k.as_str()) {
                Some("ConnectorAuth") => "ConnectorAuth",
                Some("Secret") => "Secret",
                Some("ConfigMap") => "ConfigMap",
                Some("ClusterConnectorAuthProvider") => "ClusterConnectorAuthProvider",
                _ => "",
            };
            if !kind.is_empty() {
                let (namespace, name) =
                    namespace_and_name(&doc).with_context(|| format!("{}: invalid {kind}", at()))?;
                // Names become paths in local mode: only what the API server would accept.
                let bad = match kind {
                    "ClusterConnectorAuthProvider" => (!crate::api::names::is_dns1123_subdomain(&name))
                        .then(|| format!("metadata.name {name:?} is not a valid name")),
                    _ => crate::api::names::check(&namespace, &name),
                };
                if let Some(why) = bad {
                    bail!("{}: {kind} refused: {why}", at());
                }
                if let Some(first) = seen.insert((kind, namespace.clone(), name.clone()), at()) {
                    bail!(
                        "{}: {kind} {namespace}/{name} is also defined in {first}; each object may be defined once",
                        at()
                    );
                }
            }
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
                    let secret = crate::reconcile::output_secret_name(&ca);
                    let ns = crate::reconcile::namespace_of(&ca);
                    if !crate::api::names::is_dns1123_subdomain(&secret) {
                        bail!(
                            "{}: ConnectorAuth refused: its output Secret name {secret:?} is not a valid name",
                            at()
                        );
                    }
                    if let Some(first) = outputs.insert((ns.clone(), secret.clone()), at()) {
                        bail!(
                            "{}: ConnectorAuth {} writes Secret {ns}/{secret}, which the ConnectorAuth in {first} writes too; give one of them another output.secretName",
                            at(),
                            ca.name_any()
                        );
                    }
                    m.resources.push(ca);
                }
                Some("ClusterConnectorAuthProvider") => {
                    let p = crate::catalog::parse(&doc.to_string())
                        .map_err(|e| anyhow::anyhow!("{}: refused by the CRD's validation rules: {e}", at()))?;
                    m.providers.push(p);
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
