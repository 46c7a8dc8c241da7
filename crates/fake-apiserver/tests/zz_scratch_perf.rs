use std::time::Instant;
use fake_apiserver::FakeApiServer;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ListParams, PostParams, Patch, PatchParams};
use kube::core::PartialObjectMeta;
use kube::runtime::{watcher, reflector, WatchStreamExt};
use futures::StreamExt;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn perf() {
    let server = FakeApiServer::start().await;
    server.set_recording(false);
    let big = "A".repeat(100_000);
    let t = Instant::now();
    for i in 0..20_000 {
        let data = if i % 10 == 0 { json!({"k": big}) } else { json!({"k": "eA=="}) };
        server.create_object("", "secrets", json!({"metadata": {"name": format!("s-{i}"), "namespace": format!("ns-{}", i % 20), "labels": {"i": (i % 7).to_string()}}, "data": data})).unwrap();
    }
    println!("seed: {:?}", t.elapsed());
    let client = server.client();
    let all: Api<Secret> = Api::all(client.clone());
    let t = Instant::now();
    let l = all.list(&ListParams::default()).await.unwrap();
    println!("full list {} items: {:?}", l.items.len(), t.elapsed());
    let meta: Api<PartialObjectMeta<Secret>> = Api::all(client.clone());
    let t = Instant::now();
    let l = meta.list(&ListParams::default()).await.unwrap();
    println!("meta list {} items: {:?}", l.items.len(), t.elapsed());
    let t = Instant::now();
    let l = all.list(&ListParams::default().labels("i=3")).await.unwrap();
    println!("selector list {} items: {:?}", l.items.len(), t.elapsed());
    let ns: Api<Secret> = Api::namespaced(client.clone(), "ns-3");
    let t = Instant::now();
    for i in 0..1000 { let _ = ns.get(&format!("s-{}", 3 + 20 * (i % 1000))).await.unwrap(); }
    println!("1000 gets: {:?}", t.elapsed());
    // watcher sync via pages
    let (reader, writer) = reflector::store();
    let t = Instant::now();
    tokio::spawn(reflector::reflector(writer, watcher(meta.clone(), watcher::Config::default())).default_backoff().for_each(|_| async {}));
    reader.wait_until_ready().await.unwrap();
    println!("meta reflector sync {}: {:?}", reader.state().len(), t.elapsed());
    let t = Instant::now();
    for i in 0..1000 {
        ns.patch(&format!("s-{}", 3 + 20 * i), &PatchParams::apply("x").force(), &Patch::Apply(json!({"apiVersion":"v1","kind":"Secret","metadata":{"labels":{"new":"y"}}}))).await.unwrap();
    }
    println!("1000 applies: {:?}", t.elapsed());
}
