//! Watch behaviour, exercised with `kube::runtime` watchers and reflectors and
//! with raw `Api::watch` streams.

use std::collections::BTreeMap;
use std::future::ready;
use std::time::Duration;

use fake_apiserver::FakeApiServer;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, DeleteParams, ObjectMeta, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use kube::core::PartialObjectMeta;
use kube::core::Request;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Resource, ResourceExt};
use serde_json::{Value, json};

fn secret(name: &str, app: &str) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: Some(BTreeMap::from([("app".to_string(), app.to_string())])),
            ..Default::default()
        },
        data: Some(BTreeMap::from([("token".to_string(), ByteString(b"s3cr3t".to_vec()))])),
        ..Default::default()
    }
}

/// Polls `condition` until it holds, failing the test after 5 s.
async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !condition() {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Runs a reflector over `api` in the background; returns its store once synced
/// and its watch request has reached the server.
async fn reflect<K>(server: &FakeApiServer, api: Api<K>, config: watcher::Config) -> Store<K>
where
    K: Resource<DynamicType = ()> + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + Sync + 'static,
{
    let (reader, writer) = reflector::store();
    let stream = reflector::reflector(writer, watcher(api, config)).default_backoff();
    tokio::spawn(stream.for_each(|_| ready(())));
    tokio::time::timeout(Duration::from_secs(5), reader.wait_until_ready())
        .await
        .expect("reflector synced in time")
        .unwrap();
    let plural = K::plural(&()).to_string();
    eventually("watch started", || {
        server
            .requests()
            .iter()
            .any(|r| r.verb == "watch" && r.resource == plural)
    })
    .await;
    reader
}

fn data_of(store: &Store<Secret>, name: &str) -> Option<Vec<u8>> {
    let obj = store.get(&ObjectRef::new(name).within("default"))?;
    Some(obj.data.as_ref()?["token"].0.clone())
}

fn verbs(server: &FakeApiServer, resource: &str) -> Vec<String> {
    server
        .requests()
        .into_iter()
        .filter(|r| r.resource == resource)
        .map(|r| r.verb)
        .collect()
}

#[tokio::test]
async fn reflector_follows_create_modify_delete() {
    let server = FakeApiServer::start().await;
    let secrets: Api<Secret> = Api::default_namespaced(server.client());
    secrets
        .create(&PostParams::default(), &secret("existing", "x"))
        .await
        .unwrap();
    let store = reflect(&server, secrets.clone(), watcher::Config::default()).await;
    assert_eq!(store.state().len(), 1);

    secrets
        .create(&PostParams::default(), &secret("new", "x"))
        .await
        .unwrap();
    eventually("ADDED", || data_of(&store, "new").is_some()).await;

    let patch = json!({ "data": { "token": "Y2hhbmdlZA==" } });
    secrets
        .patch("new", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    eventually("MODIFIED", || data_of(&store, "new").as_deref() == Some(b"changed")).await;

    secrets.delete("existing", &DeleteParams::default()).await.unwrap();
    eventually("DELETED", || data_of(&store, "existing").is_none()).await;
    assert_eq!(store.state().len(), 1);

    // The default watcher lists once, then watches from the list's resourceVersion.
    assert_eq!(verbs(&server, "secrets")[..3], ["create", "list", "watch"]);
}

#[tokio::test]
async fn raw_watch_events_selectors_and_timeout() {
    let server = FakeApiServer::start().await;
    let secrets: Api<Secret> = Api::default_namespaced(server.client());
    secrets
        .create(&PostParams::default(), &secret("before", "x"))
        .await
        .unwrap();
    let start = server.resource_version().to_string();

    let params = WatchParams::default().labels("app=x").timeout(2);
    let mut events = secrets.watch(&params, &start).await.unwrap().boxed();
    secrets.create(&PostParams::default(), &secret("s", "x")).await.unwrap();
    secrets
        .create(&PostParams::default(), &secret("ignored", "y"))
        .await
        .unwrap();
    let relabel = |app: &str| json!({ "metadata": { "labels": { "app": app } } });
    secrets
        .patch("s", &PatchParams::default(), &Patch::Merge(relabel("x2")))
        .await
        .unwrap();
    secrets
        .patch("s", &PatchParams::default(), &Patch::Merge(relabel("x")))
        .await
        .unwrap();
    secrets
        .patch(
            "s",
            &PatchParams::default(),
            &Patch::Merge(json!({ "data": { "more": "eA==" } })),
        )
        .await
        .unwrap();
    secrets.delete("s", &DeleteParams::default()).await.unwrap();

    let mut seen = Vec::new();
    let mut last_rv = 0;
    for _ in 0..5 {
        let event = tokio::time::timeout(Duration::from_secs(2), events.try_next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        let (kind, obj) = match event {
            WatchEvent::Added(o) => ("ADDED", o),
            WatchEvent::Modified(o) => ("MODIFIED", o),
            WatchEvent::Deleted(o) => ("DELETED", o),
            other => panic!("unexpected {other:?}"),
        };
        assert_eq!(obj.name_any(), "s");
        let rv: u64 = obj.resource_version().unwrap().parse().unwrap();
        assert!(rv > last_rv, "events arrive in resourceVersion order");
        last_rv = rv;
        seen.push(kind);
    }
    // Leaving the selector looks like a deletion, re-entering like an addition.
    assert_eq!(seen, ["ADDED", "DELETED", "ADDED", "MODIFIED", "DELETED"]);

    // timeoutSeconds ends the stream.
    let started = std::time::Instant::now();
    let end = tokio::time::timeout(Duration::from_secs(4), events.try_next())
        .await
        .unwrap()
        .unwrap();
    assert!(end.is_none());
    assert!(started.elapsed() < Duration::from_secs(3));

    // Without a resourceVersion the current objects come first, as ADDED.
    let mut fresh = secrets
        .watch(&WatchParams::default().labels("app=x"), "0")
        .await
        .unwrap()
        .boxed();
    match fresh.try_next().await.unwrap().unwrap() {
        WatchEvent::Added(o) => assert_eq!(o.name_any(), "before"),
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
// The operator still uses `metadata_watcher`, deprecated in kube 5.
#[allow(deprecated)]
async fn metadata_watcher_receives_only_metadata() {
    let server = FakeApiServer::start().await;
    let client = server.client();
    let secrets: Api<Secret> = Api::default_namespaced(client.clone());

    let mut events = kube::runtime::metadata_watcher(secrets.clone(), watcher::Config::default())
        .applied_objects()
        .boxed();
    // The kube 5 replacement: a watcher over `Api<PartialObjectMeta<K>>`.
    let partial: Api<PartialObjectMeta<Secret>> = Api::default_namespaced(client.clone());
    let mut partial_events = watcher(partial, watcher::Config::default()).applied_objects().boxed();
    secrets.create(&PostParams::default(), &secret("m", "x")).await.unwrap();
    for stream in [&mut events, &mut partial_events] {
        let meta = tokio::time::timeout(Duration::from_secs(5), stream.try_next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(meta.name_any(), "m");
        assert_eq!(meta.labels()["app"], "x");
    }
    // Both watchers listed (the object arrived with the initial list).
    let lists: Vec<_> = server.requests().into_iter().filter(|r| r.verb == "list").collect();
    assert_eq!(lists.len(), 2);
    assert!(lists.iter().all(|r| r.metadata_only));

    // On the wire, watch events carry PartialObjectMetadata without data.
    let request = Request::new("/api/v1/namespaces/default/secrets")
        .watch_metadata(&WatchParams::default(), "0")
        .unwrap();
    let mut raw = client.request_events::<Value>(request).await.unwrap().boxed();
    match raw.try_next().await.unwrap().unwrap() {
        WatchEvent::Added(obj) => {
            assert_eq!(obj["apiVersion"], "meta.k8s.io/v1");
            assert_eq!(obj["kind"], "PartialObjectMetadata");
            assert_eq!(obj["metadata"]["name"], "m");
            assert!(obj.get("data").is_none());
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn expired_history_makes_watchers_relist() {
    let server = FakeApiServer::start().await;
    let secrets: Api<Secret> = Api::default_namespaced(server.client());
    for name in ["keep", "drop"] {
        secrets
            .create(&PostParams::default(), &secret(name, "x"))
            .await
            .unwrap();
    }
    let old_rv = server.resource_version().to_string();
    let store = reflect(&server, secrets.clone(), watcher::Config::default()).await;
    assert_eq!(store.state().len(), 2);
    server.clear_requests();

    // The watch resumes with an expired resourceVersion and gets 410, so the
    // watcher lists again; an object deleted meanwhile disappears from the store.
    server.expire_watch_history();
    server.close_watches();
    server.delete_object("", "secrets", Some("default"), "drop").unwrap();
    eventually("relisted", || data_of(&store, "drop").is_none()).await;
    assert!(data_of(&store, "keep").is_some());
    let verbs = verbs(&server, "secrets");
    let relist = verbs.iter().position(|v| v == "list").expect("relisted");
    assert_eq!(
        verbs[..relist],
        ["watch"],
        "the resumed watch got 410, then the watcher relisted"
    );

    // After relisting, the watch works again.
    secrets
        .create(&PostParams::default(), &secret("later", "x"))
        .await
        .unwrap();
    eventually("watching again", || data_of(&store, "later").is_some()).await;

    // On the wire: an ERROR event with code 410.
    let mut stream = secrets.watch(&WatchParams::default(), &old_rv).await.unwrap().boxed();
    match stream.try_next().await.unwrap().unwrap() {
        WatchEvent::Error(status) => {
            assert_eq!(status.code, 410);
            assert_eq!(status.reason, "Expired");
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(stream.try_next().await.unwrap().is_none());
}

#[tokio::test]
async fn trimmed_history_gives_gone_to_lagging_watches() {
    let server = FakeApiServer::start().await;
    server.set_history_limit(3);
    let configmaps: Api<ConfigMap> = Api::default_namespaced(server.client());
    let mut start = String::new();
    for i in 0..6 {
        let cm = ConfigMap {
            metadata: ObjectMeta {
                name: Some(format!("cm-{i}")),
                ..Default::default()
            },
            ..Default::default()
        };
        configmaps.create(&PostParams::default(), &cm).await.unwrap();
        if i == 0 {
            // ("0" would mean "any version": start with the current state.)
            start = server.resource_version().to_string();
        }
    }
    let mut stream = configmaps.watch(&WatchParams::default(), &start).await.unwrap().boxed();
    match stream.try_next().await.unwrap().unwrap() {
        WatchEvent::Error(status) => assert_eq!(status.code, 410),
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(server.gone_answers(), [("configmaps".to_string(), 1)].into());
    // Recent enough positions still replay from the history.
    let recent = (server.resource_version() - 2).to_string();
    let mut stream = configmaps
        .watch(&WatchParams::default(), &recent)
        .await
        .unwrap()
        .boxed();
    for expected in ["cm-4", "cm-5"] {
        match stream.try_next().await.unwrap().unwrap() {
            WatchEvent::Added(o) => assert_eq!(o.name_any(), expected),
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[tokio::test]
async fn closed_watches_resume_without_relisting() {
    let server = FakeApiServer::start().await;
    let secrets: Api<Secret> = Api::default_namespaced(server.client());
    secrets.create(&PostParams::default(), &secret("a", "x")).await.unwrap();
    let store = reflect(&server, secrets.clone(), watcher::Config::default()).await;
    server.clear_requests();

    server.close_watches();
    // Changes made while no watch is open are replayed from the history.
    secrets.create(&PostParams::default(), &secret("b", "x")).await.unwrap();
    eventually("resumed", || data_of(&store, "b").is_some()).await;
    let verbs = verbs(&server, "secrets");
    assert!(verbs.contains(&"watch".to_string()), "{verbs:?}");
    assert!(!verbs.contains(&"list".to_string()), "{verbs:?}");
}

#[tokio::test]
async fn streaming_lists_use_initial_events() {
    let server = FakeApiServer::start().await;
    let client = server.client();
    let secrets: Api<Secret> = Api::default_namespaced(client.clone());
    for name in ["a", "b"] {
        secrets
            .create(&PostParams::default(), &secret(name, "x"))
            .await
            .unwrap();
    }
    let store = reflect(&server, secrets.clone(), watcher::Config::default().streaming_lists()).await;
    assert_eq!(store.state().len(), 2);
    assert_eq!(verbs(&server, "secrets"), ["create", "create", "watch"]);
    secrets.create(&PostParams::default(), &secret("c", "x")).await.unwrap();
    eventually("streamed", || data_of(&store, "c").is_some()).await;

    // On the wire: ADDED events, then the initial-events-end BOOKMARK.
    let params = WatchParams::streaming_lists();
    let mut raw = secrets.watch(&params, "0").await.unwrap().boxed();
    let mut added = 0;
    loop {
        match raw.try_next().await.unwrap().unwrap() {
            WatchEvent::Added(_) => added += 1,
            WatchEvent::Bookmark(bookmark) => {
                assert_eq!(bookmark.metadata.annotations["k8s.io/initial-events-end"], "true");
                assert_eq!(
                    bookmark.metadata.resource_version,
                    server.resource_version().to_string()
                );
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(added, 3);
}

#[tokio::test]
async fn watches_scope_to_namespace_or_all_namespaces() {
    let server = FakeApiServer::start().await;
    let client = server.client();
    let start = {
        let seed: Api<Secret> = Api::namespaced(client.clone(), "a");
        seed.create(&PostParams::default(), &secret("seed", "x")).await.unwrap();
        server.resource_version().to_string()
    };
    let all: Api<Secret> = Api::all(client.clone());
    let only_b: Api<Secret> = Api::namespaced(client.clone(), "b");
    let mut all_events = all.watch(&WatchParams::default(), &start).await.unwrap().boxed();
    let mut b_events = only_b.watch(&WatchParams::default(), &start).await.unwrap().boxed();
    for ns in ["a", "b"] {
        let api: Api<Secret> = Api::namespaced(client.clone(), ns);
        api.create(&PostParams::default(), &secret(&format!("in-{ns}"), "x"))
            .await
            .unwrap();
    }
    for expected in ["in-a", "in-b"] {
        match all_events.try_next().await.unwrap().unwrap() {
            WatchEvent::Added(o) => assert_eq!(o.name_any(), expected),
            other => panic!("unexpected {other:?}"),
        }
    }
    match b_events.try_next().await.unwrap().unwrap() {
        WatchEvent::Added(o) => assert_eq!(o.namespace().as_deref(), Some("b")),
        other => panic!("unexpected {other:?}"),
    }
    // Nothing else is pending for the namespaced watch.
    assert!(
        tokio::time::timeout(Duration::from_millis(100), b_events.try_next())
            .await
            .is_err()
    );
}
