//! `demo`: local mode on the bundled example against a provider emulator, proven working.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;

use crate::engine::{Engine, HttpSettings};
use crate::local::{self, LocalRunner};

use super::{duration_arg, shutdown_signal};
use crate::ops::redacted;

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Address of the demo provider; the bundled demo manifests expect 127.0.0.1:18080.
    #[arg(long, default_value = "127.0.0.1:18080")]
    pub listen: SocketAddr,
    /// Manifests to run.
    #[arg(long, default_value = "examples/demo")]
    pub manifests: PathBuf,
    /// Output folder. Default: a new temporary folder.
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// How long to keep refreshing.
    #[arg(long, default_value = "15s", value_parser = duration_arg)]
    pub duration: Duration,
    /// Lifetime of the demo provider's access tokens.
    #[arg(long, default_value = "6s", value_parser = duration_arg)]
    pub ttl: Duration,
}

pub(super) async fn run_demo(args: DemoArgs) -> anyhow::Result<std::process::ExitCode> {
    let provider = crate::demo::DemoProvider::new(args.ttl, "demo-user", "demo-password");
    let (addr, server) = provider.serve(args.listen).await.with_context(|| {
        format!(
            "cannot listen on {} (pass --listen with a free address and update the manifests' base_url)",
            args.listen
        )
    })?;
    let output = match args.output {
        Some(o) => o,
        None => std::env::temp_dir().join(format!("connector-auth-demo-{}", std::process::id())),
    };
    println!(
        "demo provider on http://{addr} (access tokens live {}s, refresh tokens rotate)",
        args.ttl.as_secs()
    );
    println!("local mode: {} -> {}", args.manifests.display(), output.display());
    // The demo's provider is on loopback, which the default policy refuses: allow exactly it.
    let mut http = HttpSettings::default();
    http.policy.allow = vec![crate::engine::policy::Rule::Net(addr.ip().into())];
    let engine = Engine::new(http)?;
    let mut runner = LocalRunner::new(engine, args.manifests.clone(), output.clone());
    runner.poll = Duration::from_secs(1);
    let deadline = tokio::time::sleep(args.duration);
    tokio::pin!(deadline);
    let stop = async {
        tokio::select! {
            _ = &mut deadline => {},
            _ = shutdown_signal() => {},
        }
    };
    runner.run(stop).await?;

    // Prove the published headers work: call the protected endpoint with them.
    let manifests = local::load_manifests(&args.manifests)?;
    let client = reqwest::Client::new();
    let mut ok = true;
    for ca in &manifests.resources {
        let ns = kube::ResourceExt::namespace(ca).unwrap_or_else(|| "default".into());
        let name = kube::ResourceExt::name_any(ca);
        let store = local::FileStore::new(&output, &ns, &name, &crate::reconcile::output_secret_name(ca));
        let data = store.published();
        let headers: BTreeMap<String, String> = data
            .get("headers.json")
            .and_then(|h| serde_json::from_str(h).ok())
            .unwrap_or_default();
        let mut req = client.get(format!("http://{addr}/api/me"));
        for (k, v) in &headers {
            req = req.header(k, v);
        }
        let status = req.send().await.map(|r| r.status().as_u16()).unwrap_or(0);
        ok &= status == 200;
        println!(
            "GET /api/me with {ns}/{} headers.json -> HTTP {status}",
            crate::reconcile::output_secret_name(ca)
        );
        for line in redacted(&data) {
            println!("    {line}");
        }
    }
    println!("token requests served by the provider: {}", provider.token_requests());
    server.abort();
    Ok(if ok {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    })
}
