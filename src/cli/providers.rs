//! `providers`, `import` and `crd`: what the binary knows, printed.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use kube::CustomResourceExt;

use crate::api::ConnectorAuth;

#[derive(Subcommand, Debug)]
pub enum ProvidersCommand {
    /// One line per provider: name, scheme, what is unusual.
    List,
    /// A provider's settings (the spec it fills in), source and credentials keys.
    Show { name: String },
}

/// What `providers list` / `providers show NAME` print.
pub fn providers_text(command: &ProvidersCommand) -> anyhow::Result<String> {
    use crate::catalog;
    match command {
        ProvidersCommand::List => Ok(catalog::entries()
            .iter()
            .map(|e| format!("{:<30} {:<17} {}\n", e.name, e.scheme(), e.display_name()))
            .collect()),
        ProvidersCommand::Show { name } => {
            let e = catalog::get(name).with_context(|| {
                format!(
                    "no provider `{name}`; known: {}",
                    catalog::entries().iter().map(|e| e.name).collect::<Vec<_>>().join(", ")
                )
            })?;
            let params = e.params();
            Ok(format!(
                "# documentation: {} (checked {})\n# credentials keys: {}\n# parameters (spec.providerParams or credentials keys): {}\n# use: spec.provider: {} with an empty `{}: {{}}` block; fields you set win.\n# Applied as it stands, this manifest replaces the built-in entry in a cluster.\n{}",
                e.source(),
                e.checked(),
                e.credentials().join(", "),
                if params.is_empty() {
                    "none".to_string()
                } else {
                    params.join(", ")
                },
                e.name,
                e.scheme(),
                e.manifest
            ))
        }
    }
}

#[derive(Args, Debug)]
pub struct ImportArgs {
    /// The platform the file comes from.
    #[arg(value_enum)]
    pub platform: crate::import::Platform,
    /// The platform's own JSON (Nango: its providers.yaml).
    pub file: PathBuf,
    /// Name of the ConnectorAuth (the Secret is `<name>-credentials`). Default: the Nango
    /// provider, else the file name.
    #[arg(long)]
    pub name: Option<String>,
    #[arg(long, default_value = "default")]
    pub namespace: String,
    /// The entry of a Nango providers.yaml to import.
    #[arg(long)]
    pub provider: Option<String>,
    /// Nango: try every entry of the file and print, instead of resources, one line per entry
    /// (imported, or why not) and how many imported.
    #[arg(long, conflicts_with = "provider")]
    pub all: bool,
}

/// What `import` prints: the ConnectorAuth, `---`, the credentials Secret.
pub fn import_yaml(args: &ImportArgs) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(&args.file).with_context(|| format!("reading {}", args.file.display()))?;
    if args.all {
        anyhow::ensure!(
            args.platform == crate::import::Platform::Nango,
            "--all reads a Nango providers.yaml"
        );
        let all =
            crate::import::import_all_nango(&text).with_context(|| format!("cannot read {}", args.file.display()))?;
        let mut out = String::new();
        let ok = all.iter().filter(|(_, r)| r.is_ok()).count();
        for (name, r) in &all {
            match r {
                Ok(_) => out.push_str(&format!("{name}: imported\n")),
                Err(e) => out.push_str(&format!("{name}: refused: {e}\n")),
            }
        }
        out.push_str(&format!("# {ok} of {} entries imported\n", all.len()));
        return Ok(out);
    }
    let imported = crate::import::import(args.platform, &text, args.provider.as_deref())
        .with_context(|| format!("cannot import {}", args.file.display()))?;
    let name = args.name.clone().or_else(|| args.provider.clone()).unwrap_or_else(|| {
        let stem = args.file.file_stem().and_then(|s| s.to_str()).unwrap_or("imported");
        stem.to_ascii_lowercase()
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect::<String>()
            .trim_matches('-')
            .to_string()
    });
    let target = crate::import::Target {
        name,
        namespace: args.namespace.clone(),
    };
    let (ca, secret) = crate::import::render(&imported, &target);
    Ok(format!("{ca}---\n{secret}"))
}

/// The ConnectorAuth CRD as YAML, exactly as committed in `crds/connectorauth.yaml`.
pub fn crd_yaml() -> anyhow::Result<String> {
    Ok(serde_saphyr::to_string(&ConnectorAuth::crd())?)
}

/// The ClusterConnectorAuthProvider CRD as YAML, exactly as committed in
/// `crds/clusterconnectorauthprovider.yaml`.
pub fn provider_crd_yaml() -> anyhow::Result<String> {
    Ok(serde_saphyr::to_string(
        &crate::api::provider::ClusterConnectorAuthProvider::crd(),
    )?)
}

/// What `crd` prints: every CRD, as one multi-document YAML stream.
pub fn all_crds_yaml() -> anyhow::Result<String> {
    Ok(format!("{}---\n{}", crd_yaml()?, provider_crd_yaml()?))
}
