//! The proxy under load (BENCHMARKS.md, "The proxy"): a fixed rate of requests for a while,
//! across token rotations, through `connector-auth-operator proxy` and then directly, against a
//! loopback API that accepts a token only until its expiry.
//!
//! Tokens live 15 s and a new one is published every 10 s (the operator renews at two thirds),
//! in the kubelet's `..data` layout, swapped atomically. The API counts every request that
//! arrives with an expired or unknown token: through the proxy there must be none.
//!
//! `cargo bench --bench proxy -- --rps 1000 --seconds 60`

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::{HeaderMap, StatusCode};
use connector_auth_operator::proxy::{Proxy, ProxyConfig};
use jiff::Timestamp;

#[derive(Default)]
struct Api {
    /// token -> expiry
    tokens: Mutex<HashMap<String, Timestamp>>,
    ok: AtomicU64,
    expired: AtomicU64,
    unknown: AtomicU64,
}

fn publish(dir: &Path, version: u64, token: &str, expires: Timestamp) {
    let data = dir.join(format!("..v{version:06}"));
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(
        data.join("headers.json"),
        format!("{{\"Authorization\":\"Bearer {token}\"}}"),
    )
    .unwrap();
    std::fs::write(data.join("access_token"), token).unwrap();
    std::fs::write(data.join("expires_at"), expires.to_string()).unwrap();
    let tmp = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(data.file_name().unwrap(), &tmp).unwrap();
    std::fs::rename(&tmp, dir.join("..data")).unwrap();
    for k in ["headers.json", "access_token", "expires_at"] {
        let link = dir.join(k);
        if std::fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink(format!("..data/{k}"), &link).unwrap();
        }
    }
}

async fn serve(app: Router) -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    url
}

struct Phase {
    latencies: Vec<Duration>,
    statuses: HashMap<u16, u64>,
    errors: u64,
}

/// `rps` requests a second for `seconds`, each on its own task; `request` makes one.
async fn load<F, Fut>(rps: u64, seconds: u64, request: F) -> Phase
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<u16, ()>> + Send,
{
    let request = Arc::new(request);
    let results = Arc::new(Mutex::new(Vec::new()));
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / rps));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut tasks = Vec::new();
    for _ in 0..rps * seconds {
        tick.tick().await;
        let (request, results) = (request.clone(), results.clone());
        tasks.push(tokio::spawn(async move {
            let start = Instant::now();
            let status = request().await;
            results.lock().unwrap().push((start.elapsed(), status));
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let mut phase = Phase {
        latencies: Vec::new(),
        statuses: HashMap::new(),
        errors: 0,
    };
    for (d, s) in results.lock().unwrap().iter() {
        phase.latencies.push(*d);
        match s {
            Ok(code) => *phase.statuses.entry(*code).or_default() += 1,
            Err(()) => phase.errors += 1,
        }
    }
    phase.latencies.sort();
    phase
}

fn pct(l: &[Duration], p: f64) -> f64 {
    if l.is_empty() {
        return 0.0;
    }
    let i = ((l.len() as f64 - 1.0) * p).round() as usize;
    l[i].as_secs_f64() * 1000.0
}

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let rps = arg("--rps", 1000);
    let seconds = arg("--seconds", 60);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let api = Arc::new(Api::default());
        let a = api.clone();
        let app = Router::new().fallback(move |h: HeaderMap| {
            let a = a.clone();
            async move {
                let token = h
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.strip_prefix("Bearer "))
                    .unwrap_or_default()
                    .to_string();
                let expiry = a.tokens.lock().unwrap().get(&token).copied();
                match expiry {
                    Some(e) if e > Timestamp::now() => {
                        a.ok.fetch_add(1, Ordering::Relaxed);
                        StatusCode::OK
                    }
                    Some(_) => {
                        a.expired.fetch_add(1, Ordering::Relaxed);
                        StatusCode::UNAUTHORIZED
                    }
                    None => {
                        a.unknown.fetch_add(1, Ordering::Relaxed);
                        StatusCode::UNAUTHORIZED
                    }
                }
            }
        });
        let upstream = serve(app).await;
        let tmp = std::env::temp_dir().join(format!("proxy-bench-{}", std::process::id()));
        let dir: PathBuf = tmp.join("crm-token");
        std::fs::create_dir_all(&dir).unwrap();
        let rotate = {
            let (api, dir) = (api.clone(), dir.clone());
            move |v: u64| {
                let token = format!("tok-{v}");
                let exp = Timestamp::now() + jiff::SignedDuration::from_secs(15);
                api.tokens.lock().unwrap().insert(token.clone(), exp);
                publish(&dir, v, &token, exp);
            }
        };
        rotate(0);
        let rotations = Arc::new(AtomicU64::new(1));
        {
            let (rotate, rotations) = (rotate.clone(), rotations.clone());
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_secs(10)).await;
                    rotate(rotations.fetch_add(1, Ordering::SeqCst));
                }
            });
        }
        let config = ProxyConfig::from_yaml(&format!(
            "listen: 127.0.0.1:0\nroutes:\n- upstream: {upstream}\n  credentials: {}\n",
            dir.display()
        ))
        .unwrap();
        let proxy = serve(connector_auth_operator::proxy::router(Arc::new(Proxy::new(&config, None).unwrap()))).await;
        let client = reqwest::Client::builder().pool_max_idle_per_host(256).build().unwrap();

        let c = client.clone();
        let via = load(rps, seconds, move || {
            let (c, url) = (c.clone(), format!("{proxy}/items"));
            async move { c.get(url).send().await.map(|r| r.status().as_u16()).map_err(|_| ()) }
        })
        .await;
        let (expired_via, unknown_via) = (api.expired.load(Ordering::SeqCst), api.unknown.load(Ordering::SeqCst));
        let rotations_via = rotations.load(Ordering::SeqCst) - 1;

        // Directly: the client reads the token itself (as a workload re-reading the file would).
        let (c, d) = (client.clone(), dir.clone());
        let direct = load(rps, seconds, move || {
            let (c, url) = (c.clone(), format!("{upstream}/items"));
            let token = std::fs::read_to_string(d.join("access_token")).unwrap_or_default();
            async move {
                c.get(url)
                    .bearer_auth(token)
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
                    .map_err(|_| ())
            }
        })
        .await;
        let _ = std::fs::remove_dir_all(&tmp);

        let row = |name: &str, p: &Phase| {
            format!(
                "| {name} | {} | {} | {} | {:.2} | {:.2} | {:.2} | {:.2} |",
                p.latencies.len(),
                p.statuses.get(&200).copied().unwrap_or(0),
                p.statuses.iter().filter(|(s, _)| **s != 200).map(|(_, n)| n).sum::<u64>() + p.errors,
                pct(&p.latencies, 0.5),
                pct(&p.latencies, 0.9),
                pct(&p.latencies, 0.99),
                p.latencies.last().map(|d| d.as_secs_f64() * 1000.0).unwrap_or(0.0),
            )
        };
        println!("proxy under load: {rps} requests/s for {seconds} s each way, tokens rotated every 10 s (15 s lifetime)\n");
        println!("| path | requests | 200 | other | p50 ms | p90 ms | p99 ms | max ms |");
        println!("|---|---|---|---|---|---|---|---|");
        println!("{}", row("through the proxy", &via));
        println!("{}", row("direct", &direct));
        println!(
            "\nthrough the proxy: {rotations_via} rotations, {expired_via} requests arrived with an expired token, {unknown_via} with an unknown one; added p99 latency {:.2} ms",
            pct(&via.latencies, 0.99) - pct(&direct.latencies, 0.99)
        );
    });
}
