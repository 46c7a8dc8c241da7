//! Request/response behaviour of the fake API server, exercised through the real
//! `kube::Client`.

use std::collections::BTreeMap;

use fake_apiserver::{FakeApiServer, Fault, Recorded, ResourceDef};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, ObjectMeta, Patch, PatchParams,
    PostParams,
};
use kube::core::Request;
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

fn labels(pairs: &[(&str, &str)]) -> Option<BTreeMap<String, String>> {
    Some(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
}

fn secret(name: &str, label_pairs: &[(&str, &str)]) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: labels(label_pairs),
            ..Default::default()
        },
        data: Some([("key".to_string(), ByteString(b"value".to_vec()))].into()),
        ..Default::default()
    }
}

fn configmap(name: &str, data: &[(&str, &str)]) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        data: labels(data),
        ..Default::default()
    }
}

fn api_error(err: kube::Error) -> (u16, String) {
    match err {
        kube::Error::Api(status) => (status.code, status.reason.clone()),
        other => panic!("expected an API error, got {other:?}"),
    }
}

fn names<K: ResourceExt>(items: impl IntoIterator<Item = K>) -> Vec<String> {
    let mut names: Vec<String> = items.into_iter().map(|o| o.name_any()).collect();
    names.sort();
    names
}

fn widget_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("example.dev", "v1", "Widget"), "widgets")
}

fn rv(obj: &impl ResourceExt) -> u64 {
    obj.resource_version().unwrap().parse().unwrap()
}

#[tokio::test]
async fn secrets_create_get_list_with_selectors() {
    let server = FakeApiServer::start().await;
    let client = server.client();
    let secrets: Api<Secret> = Api::default_namespaced(client.clone());
    let other: Api<Secret> = Api::namespaced(client.clone(), "other");

    let a = secrets
        .create(&PostParams::default(), &secret("a", &[("app", "x"), ("tier", "front")]))
        .await
        .unwrap();
    secrets
        .create(&PostParams::default(), &secret("b", &[("app", "y")]))
        .await
        .unwrap();
    secrets
        .create(&PostParams::default(), &secret("c", &[("app", "x"), ("tier", "back")]))
        .await
        .unwrap();
    other
        .create(&PostParams::default(), &secret("d", &[("app", "x")]))
        .await
        .unwrap();

    // Server-filled metadata and defaults.
    assert_eq!(a.metadata.namespace.as_deref(), Some("default"));
    assert_eq!(a.metadata.generation, Some(1));
    assert_eq!(a.metadata.uid.as_ref().map(String::len), Some(36));
    assert!(a.metadata.creation_timestamp.is_some());
    assert_eq!(a.type_.as_deref(), Some("Opaque"));
    assert_eq!(rv(&a), 1);

    let got = secrets.get("a").await.unwrap();
    assert_eq!(got.metadata.uid, a.metadata.uid);
    assert_eq!(got.data.unwrap()["key"].0, b"value");

    let list = |selector: &str| {
        let secrets = secrets.clone();
        let selector = selector.to_string();
        async move { names(secrets.list(&ListParams::default().labels(&selector)).await.unwrap()) }
    };
    assert_eq!(list("app=x").await, ["a", "c"]);
    assert_eq!(list("app==x").await, ["a", "c"]);
    assert_eq!(list("app!=x").await, ["b"]);
    assert_eq!(list("tier in (front,middle)").await, ["a"]);
    assert_eq!(list("app,tier notin (front)").await, ["b", "c"]);
    assert_eq!(list("!tier").await, ["b"]);
    assert_eq!(list("tier").await, ["a", "c"]);
    let by_field = secrets
        .list(&ListParams::default().fields("metadata.name=b"))
        .await
        .unwrap();
    assert_eq!(names(by_field), ["b"]);
    let invalid = secrets
        .list(&ListParams::default().labels("app in (x"))
        .await
        .unwrap_err();
    assert_eq!(api_error(invalid), (400, "BadRequest".to_string()));

    let full = secrets.list(&ListParams::default()).await.unwrap();
    assert_eq!(full.types.kind, "SecretList");
    assert_eq!(full.types.api_version, "v1");
    assert_eq!(
        full.metadata.resource_version,
        Some(server.resource_version().to_string())
    );
    assert_eq!(names(full), ["a", "b", "c"]);

    let everywhere: Api<Secret> = Api::all(client.clone());
    let all = everywhere.list(&ListParams::default().labels("app=x")).await.unwrap();
    assert_eq!(names(all), ["a", "c", "d"]);

    let duplicate = secrets
        .create(&PostParams::default(), &secret("a", &[]))
        .await
        .unwrap_err();
    assert_eq!(api_error(duplicate), (409, "AlreadyExists".to_string()));
    let missing = secrets.get("nope").await.unwrap_err();
    assert_eq!(api_error(missing), (404, "NotFound".to_string()));
    assert!(secrets.get_opt("nope").await.unwrap().is_none());

    assert_eq!(server.objects("", "secrets").len(), 4);
    assert_eq!(
        server.object("", "secrets", Some("other"), "d").unwrap()["metadata"]["labels"]["app"],
        "x"
    );
    assert!(server.object("", "secrets", Some("default"), "d").is_none());
}

#[tokio::test]
async fn replace_detects_stale_resource_versions() {
    let server = FakeApiServer::start().await;
    let secrets: Api<Secret> = Api::default_namespaced(server.client());
    let created = secrets.create(&PostParams::default(), &secret("s", &[])).await.unwrap();

    let mut changed = created.clone();
    changed.data = Some([("key".to_string(), ByteString(b"new".to_vec()))].into());
    let replaced = secrets.replace("s", &PostParams::default(), &changed).await.unwrap();
    assert!(rv(&replaced) > rv(&created));
    assert_eq!(replaced.metadata.generation, Some(2));
    assert_eq!(replaced.metadata.uid, created.metadata.uid);
    assert_eq!(
        replaced.metadata.creation_timestamp,
        created.metadata.creation_timestamp
    );

    // Replacing with the old resourceVersion is an optimistic-concurrency conflict.
    let stale = secrets
        .replace("s", &PostParams::default(), &changed)
        .await
        .unwrap_err();
    assert_eq!(api_error(stale), (409, "Conflict".to_string()));

    // Metadata-only changes keep the generation.
    let mut relabelled = replaced.clone();
    relabelled.metadata.labels = labels(&[("l", "1")]);
    let relabelled = secrets.replace("s", &PostParams::default(), &relabelled).await.unwrap();
    assert_eq!(relabelled.metadata.generation, Some(2));

    // Without a resourceVersion the update is unconditional.
    let mut unconditional = secret("s", &[]);
    unconditional.metadata.resource_version = None;
    let forced = secrets
        .replace("s", &PostParams::default(), &unconditional)
        .await
        .unwrap();
    assert!(forced.labels().is_empty());

    let missing = secrets
        .replace("missing", &PostParams::default(), &secret("missing", &[]))
        .await
        .unwrap_err();
    assert_eq!(api_error(missing), (404, "NotFound".to_string()));
    let mismatch = secrets
        .replace("s", &PostParams::default(), &secret("other", &[]))
        .await
        .unwrap_err();
    assert_eq!(api_error(mismatch), (400, "BadRequest".to_string()));
}

#[tokio::test]
async fn delete_honours_finalizers_and_collects_owned_objects() {
    let server = FakeApiServer::start().await;
    let client = server.client();
    let configmaps: Api<ConfigMap> = Api::default_namespaced(client.clone());
    let secrets: Api<Secret> = Api::default_namespaced(client.clone());

    let mut owner = configmap("owner", &[]);
    owner.metadata.finalizers = Some(vec!["example.dev/cleanup".into()]);
    let owner = configmaps.create(&PostParams::default(), &owner).await.unwrap();
    let other_owner = configmaps
        .create(&PostParams::default(), &configmap("other-owner", &[]))
        .await
        .unwrap();
    let owner_ref = |cm: &ConfigMap| OwnerReference {
        api_version: "v1".into(),
        kind: "ConfigMap".into(),
        name: cm.name_any(),
        uid: cm.uid().unwrap(),
        ..Default::default()
    };

    let mut child = secret("child", &[]);
    child.metadata.owner_references = Some(vec![owner_ref(&owner)]);
    let child = secrets.create(&PostParams::default(), &child).await.unwrap();
    let mut shared_child = secret("shared-child", &[]);
    shared_child.metadata.owner_references = Some(vec![owner_ref(&owner), owner_ref(&other_owner)]);
    secrets.create(&PostParams::default(), &shared_child).await.unwrap();
    let mut grandchild = configmap("grandchild", &[]);
    grandchild.metadata.owner_references = Some(vec![OwnerReference {
        api_version: "v1".into(),
        kind: "Secret".into(),
        name: "child".into(),
        uid: child.uid().unwrap(),
        ..Default::default()
    }]);
    configmaps.create(&PostParams::default(), &grandchild).await.unwrap();

    // With a finalizer, delete only marks the object.
    let pending = configmaps.delete("owner", &DeleteParams::default()).await.unwrap();
    let pending = pending.left().expect("object still exists");
    assert!(pending.metadata.deletion_timestamp.is_some());
    assert_eq!(
        pending.metadata.generation,
        owner.metadata.generation.map(|g| g + 1),
        "marking for deletion moves the generation on, as kube-apiserver's markAsDeleting does"
    );
    assert!(configmaps.get("owner").await.is_ok());
    assert!(secrets.get("child").await.is_ok());

    // No new finalizers while deleting.
    let add = json!({ "metadata": { "finalizers": ["example.dev/cleanup", "another"] } });
    let refused = configmaps
        .patch("owner", &PatchParams::default(), &Patch::Merge(&add))
        .await
        .unwrap_err();
    assert_eq!(api_error(refused), (422, "Invalid".to_string()));

    // Removing the last finalizer completes the deletion, then dependents whose
    // owners are all gone are collected, recursively.
    let release = json!({ "metadata": { "finalizers": null } });
    configmaps
        .patch("owner", &PatchParams::default(), &Patch::Merge(&release))
        .await
        .unwrap();
    assert!(configmaps.get_opt("owner").await.unwrap().is_none());
    assert!(secrets.get_opt("child").await.unwrap().is_none());
    assert!(configmaps.get_opt("grandchild").await.unwrap().is_none());
    assert!(secrets.get_opt("shared-child").await.unwrap().is_some());

    // An immediate delete of a built-in type answers a Success Status.
    let done = secrets.delete("shared-child", &DeleteParams::default()).await.unwrap();
    let status = done.right().expect("deleted immediately");
    assert_eq!(status.status, Some(kube::core::response::StatusSummary::Success));
    let gone = secrets
        .delete("shared-child", &DeleteParams::default())
        .await
        .unwrap_err();
    assert_eq!(api_error(gone), (404, "NotFound".to_string()));

    // Orphan propagation leaves dependents alone.
    let mut orphan = secret("orphan", &[]);
    orphan.metadata.owner_references = Some(vec![owner_ref(&other_owner)]);
    secrets.create(&PostParams::default(), &orphan).await.unwrap();
    configmaps.delete("other-owner", &DeleteParams::orphan()).await.unwrap();
    assert!(secrets.get_opt("orphan").await.unwrap().is_some());

    // Preconditions.
    let wrong_uid = DeleteParams {
        preconditions: Some(kube::api::Preconditions {
            uid: Some("not-the-uid".into()),
            resource_version: None,
        }),
        ..Default::default()
    };
    let failed = secrets.delete("orphan", &wrong_uid).await.unwrap_err();
    assert_eq!(api_error(failed), (409, "Conflict".to_string()));

    // Deleting a namespace deletes its contents.
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &Namespace {
                metadata: ObjectMeta {
                    name: Some("doomed".into()),
                    ..Default::default()
                },
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let doomed: Api<Secret> = Api::namespaced(client.clone(), "doomed");
    doomed.create(&PostParams::default(), &secret("x", &[])).await.unwrap();
    namespaces.delete("doomed", &DeleteParams::default()).await.unwrap();
    assert!(server.object("", "secrets", Some("doomed"), "x").is_none());
    assert!(server.object("", "secrets", Some("default"), "orphan").is_some());
}

#[tokio::test]
async fn merge_and_json_patches() {
    let server = FakeApiServer::start().await;
    let configmaps: Api<ConfigMap> = Api::default_namespaced(server.client());
    let created = configmaps
        .create(&PostParams::default(), &configmap("cm", &[("a", "1"), ("b", "2")]))
        .await
        .unwrap();

    let merge = json!({ "metadata": { "labels": { "l": "v" } }, "data": { "a": "10", "b": null, "c": "3" } });
    let merged = configmaps
        .patch("cm", &PatchParams::default(), &Patch::Merge(&merge))
        .await
        .unwrap();
    assert_eq!(merged.labels()["l"], "v");
    assert_eq!(
        merged.data.clone().unwrap(),
        labels(&[("a", "10"), ("c", "3")]).unwrap()
    );
    assert!(rv(&merged) > rv(&created));

    let strategic = json!({ "data": { "d": "4" } });
    let strategic = configmaps
        .patch("cm", &PatchParams::default(), &Patch::Strategic(&strategic))
        .await
        .unwrap();
    assert_eq!(strategic.data.clone().unwrap()["d"], "4");

    let ops: json_patch::Patch = serde_json::from_value(json!([
        { "op": "replace", "path": "/data/a", "value": "100" },
        { "op": "remove", "path": "/data/c" },
        { "op": "add", "path": "/metadata/annotations", "value": { "note": "x" } },
    ]))
    .unwrap();
    let patched = configmaps
        .patch("cm", &PatchParams::default(), &Patch::<()>::Json(ops))
        .await
        .unwrap();
    assert_eq!(
        patched.data.clone().unwrap(),
        labels(&[("a", "100"), ("d", "4")]).unwrap()
    );
    assert_eq!(patched.annotations()["note"], "x");

    let failing: json_patch::Patch =
        serde_json::from_value(json!([{ "op": "test", "path": "/data/a", "value": "wrong" }])).unwrap();
    let failed = configmaps
        .patch("cm", &PatchParams::default(), &Patch::<()>::Json(failing))
        .await
        .unwrap_err();
    assert_eq!(api_error(failed), (422, "Invalid".to_string()));

    // A resourceVersion in the patch body is a precondition.
    let stale = json!({ "metadata": { "resourceVersion": created.resource_version() }, "data": { "x": "1" } });
    let conflict = configmaps
        .patch("cm", &PatchParams::default(), &Patch::Merge(&stale))
        .await
        .unwrap_err();
    assert_eq!(api_error(conflict), (409, "Conflict".to_string()));
    let fresh = json!({ "metadata": { "resourceVersion": patched.resource_version() }, "data": { "x": "1" } });
    configmaps
        .patch("cm", &PatchParams::default(), &Patch::Merge(&fresh))
        .await
        .unwrap();

    let missing = configmaps
        .patch("missing", &PatchParams::default(), &Patch::Merge(&merge))
        .await
        .unwrap_err();
    assert_eq!(api_error(missing), (404, "NotFound".to_string()));
}

#[tokio::test]
async fn noop_writes_do_not_bump_resource_version() {
    let server = FakeApiServer::start().await;
    let configmaps: Api<ConfigMap> = Api::default_namespaced(server.client());
    let patch = json!({ "metadata": { "labels": { "l": "v" } }, "data": { "a": "1" } });
    let first = configmaps
        .patch(
            "cm",
            &PatchParams::apply("mgr").force(),
            &Patch::Apply(&json!({
                "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": "cm", "labels": { "l": "v" } },
                "data": { "a": "1" }
            })),
        )
        .await
        .unwrap();
    let before = server.resource_version();

    let merged = configmaps
        .patch("cm", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    assert_eq!(merged.resource_version(), first.resource_version());
    let applied = configmaps
        .patch(
            "cm",
            &PatchParams::apply("mgr").force(),
            &Patch::Apply(&json!({
                "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": "cm", "labels": { "l": "v" } },
                "data": { "a": "1" }
            })),
        )
        .await
        .unwrap();
    assert_eq!(applied.resource_version(), first.resource_version());
    let replaced = configmaps.replace("cm", &PostParams::default(), &merged).await.unwrap();
    assert_eq!(replaced.resource_version(), first.resource_version());
    assert_eq!(server.resource_version(), before);
}

#[tokio::test]
async fn server_side_apply_tracks_field_ownership() {
    let server = FakeApiServer::start().await;
    let configmaps: Api<ConfigMap> = Api::default_namespaced(server.client());
    let apply = |manager: &'static str, force: bool, body: Value| {
        let configmaps = configmaps.clone();
        async move {
            let mut pp = PatchParams::apply(manager);
            pp.force = force;
            let mut body = body;
            body["apiVersion"] = json!("v1");
            body["kind"] = json!("ConfigMap");
            body["metadata"]["name"] = json!("cm");
            configmaps.patch("cm", &pp, &Patch::Apply(&body)).await
        }
    };

    // Apply creates a missing object.
    let created = apply(
        "a",
        true,
        json!({
            "metadata": { "labels": { "a1": "x", "a2": "x" } },
            "data": { "owned": "1", "shared": "s", "changed": "1" }
        }),
    )
    .await
    .unwrap();
    assert_eq!(created.labels().len(), 2);
    apply(
        "b",
        true,
        json!({ "metadata": { "labels": { "b1": "y" } }, "data": { "shared": "s" } }),
    )
    .await
    .unwrap();
    // Someone else changes a field manager "a" applied: "a" no longer owns it.
    configmaps
        .patch(
            "cm",
            &PatchParams::default(),
            &Patch::Merge(json!({ "data": { "changed": "2" } })),
        )
        .await
        .unwrap();

    // "a" stops applying a2, owned, shared and changed.
    let after = apply("a", true, json!({ "metadata": { "labels": { "a1": "x" } } }))
        .await
        .unwrap();
    assert_eq!(after.labels(), &labels(&[("a1", "x"), ("b1", "y")]).unwrap());
    assert_eq!(
        after.data.clone().unwrap(),
        labels(&[("shared", "s"), ("changed", "2")]).unwrap(),
        "removes only what manager a still solely owned"
    );

    // A non-forced apply changing another manager's field conflicts; force takes it over.
    let conflict = apply("a", false, json!({ "metadata": { "labels": { "b1": "mine" } } }))
        .await
        .unwrap_err();
    assert_eq!(api_error(conflict), (409, "Conflict".to_string()));
    let unchanged = apply(
        "a",
        false,
        json!({ "metadata": { "labels": { "a1": "x", "b1": "y" } } }),
    )
    .await
    .unwrap();
    assert_eq!(unchanged.labels()["b1"], "y");
    let forced = apply(
        "a",
        true,
        json!({ "metadata": { "labels": { "a1": "x", "b1": "mine" } } }),
    )
    .await
    .unwrap();
    assert_eq!(forced.labels()["b1"], "mine");

    let recorded: Vec<Recorded> = server
        .requests()
        .into_iter()
        .filter(|r| r.patch_type.as_deref() == Some("apply"))
        .collect();
    assert_eq!(recorded.len(), 6);
    assert_eq!(recorded[0].field_manager.as_deref(), Some("a"));
    assert_eq!(recorded[0].verb, "patch");
}

#[tokio::test]
async fn custom_resources_with_status_subresource_and_generation() {
    let server = FakeApiServer::start().await;
    let client = server.client();
    let ar = widget_resource();
    let widgets: Api<DynamicObject> = Api::namespaced_with(client.clone(), "default", &ar);

    // Before registration the resource does not exist, like a missing CRD.
    let missing = widgets.list(&ListParams::default()).await.unwrap_err();
    assert_eq!(api_error(missing), (404, "NotFound".to_string()));

    server.register("example.dev", "v1", "widgets", "Widget", true);
    let obj = DynamicObject::new("w", &ar).data(json!({ "spec": { "size": 1 }, "status": { "ready": true } }));
    let created = widgets.create(&PostParams::default(), &obj).await.unwrap();
    assert_eq!(created.metadata.generation, Some(1));
    assert_eq!(created.types.as_ref().unwrap().api_version, "example.dev/v1");
    assert_eq!(created.types.as_ref().unwrap().kind, "Widget");
    assert!(created.data.get("status").is_none(), "status is dropped on create");

    let spec = json!({ "spec": { "size": 2 }, "status": { "ready": true } });
    let patched = widgets
        .patch("w", &PatchParams::default(), &Patch::Merge(&spec))
        .await
        .unwrap();
    assert_eq!(patched.metadata.generation, Some(2));
    assert_eq!(patched.data["spec"]["size"], 2);
    assert!(patched.data.get("status").is_none(), "main resource ignores status");

    let status = json!({ "spec": { "size": 99 }, "status": { "ready": true } });
    let with_status = widgets
        .patch_status("w", &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap();
    assert_eq!(with_status.data["status"]["ready"], true);
    assert_eq!(with_status.data["spec"]["size"], 2, "status subresource ignores spec");
    assert_eq!(with_status.metadata.generation, Some(2));
    assert!(rv(&with_status) > rv(&patched));

    let apply = json!({
        "apiVersion": "example.dev/v1", "kind": "Widget", "metadata": { "name": "w" },
        "status": { "phase": "Ready" }
    });
    let applied = widgets
        .patch_status("w", &PatchParams::apply("ctrl").force(), &Patch::Apply(&apply))
        .await
        .unwrap();
    assert_eq!(applied.data["status"], json!({ "ready": true, "phase": "Ready" }));
    assert_eq!(widgets.get_status("w").await.unwrap().data["status"]["phase"], "Ready");

    let labelled = widgets
        .patch(
            "w",
            &PatchParams::default(),
            &Patch::Merge(json!({ "metadata": { "labels": { "x": "y" } } })),
        )
        .await
        .unwrap();
    assert_eq!(
        labelled.metadata.generation,
        Some(2),
        "metadata changes keep the generation"
    );

    // A custom resource answers an immediate delete with the object.
    let deleted = widgets.delete("w", &DeleteParams::default()).await.unwrap();
    assert_eq!(deleted.left().unwrap().name_any(), "w");

    // Other versions and unknown subresources are not served.
    let v2 = ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("example.dev", "v2", "Widget"), "widgets");
    let v2: Api<DynamicObject> = Api::namespaced_with(client.clone(), "default", &v2);
    assert_eq!(api_error(v2.list(&ListParams::default()).await.unwrap_err()).0, 404);

    // Cluster-scoped resources without a status subresource.
    server.register_resource(ResourceDef::new("example.dev", "v1", "gadgets", "Gadget", false));
    let gadget_ar = ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("example.dev", "v1", "Gadget"), "gadgets");
    let gadgets: Api<DynamicObject> = Api::all_with(client.clone(), &gadget_ar);
    let gadget = DynamicObject::new("g", &gadget_ar).data(json!({ "status": { "kept": true } }));
    let gadget = gadgets.create(&PostParams::default(), &gadget).await.unwrap();
    assert_eq!(gadget.metadata.namespace, None);
    assert_eq!(gadget.data["status"]["kept"], true);
    let no_status = gadgets.get_status("g").await.unwrap_err();
    assert_eq!(api_error(no_status).0, 404);
    assert!(server.object("example.dev", "gadgets", None, "g").is_some());
}

#[tokio::test]
async fn fault_injection() {
    let server = FakeApiServer::start().await;
    let secrets: Api<Secret> = Api::default_namespaced(server.client());
    secrets.create(&PostParams::default(), &secret("s", &[])).await.unwrap();
    server.clear_requests();

    server.fail_next(Fault {
        method: Some("GET".into()),
        path_contains: "/secrets/s".into(),
        status: 500,
        count: 1,
    });
    server.fail_next(Fault::new(403, "/secrets").method("POST").times(2));
    let err = secrets.get("s").await.unwrap_err();
    assert_eq!(api_error(err), (500, "InternalError".to_string()));
    assert!(secrets.get("s").await.is_ok(), "fault used up");
    for _ in 0..2 {
        let err = secrets
            .create(&PostParams::default(), &secret("t", &[]))
            .await
            .unwrap_err();
        assert_eq!(api_error(err), (403, "Forbidden".to_string()));
    }
    secrets.create(&PostParams::default(), &secret("t", &[])).await.unwrap();

    // kube::Client retries 503 by itself; both attempts are recorded.
    server.clear_requests();
    server.fail_next(Fault::new(503, "/secrets/s"));
    assert!(secrets.get("s").await.is_ok());
    let verbs: Vec<String> = server.requests().into_iter().map(|r| r.verb).collect();
    assert_eq!(verbs, ["get", "get"]);
}

#[tokio::test]
async fn requests_are_recorded() {
    let server = FakeApiServer::start().await;
    let client = server.client();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "ns");
    let leases: Api<k8s_openapi::api::coordination::v1::Lease> = Api::namespaced(client.clone(), "ns");
    secrets.create(&PostParams::default(), &secret("s", &[])).await.unwrap();
    secrets.get("s").await.unwrap();
    secrets.list(&ListParams::default().labels("a=b")).await.unwrap();
    secrets.list_metadata(&ListParams::default()).await.unwrap();
    secrets
        .patch("s", &PatchParams::apply("me"), &Patch::Apply(&secret("s", &[])))
        .await
        .unwrap();
    secrets
        .patch("s", &PatchParams::default(), &Patch::Merge(json!({})))
        .await
        .unwrap();
    let current = secrets.get("s").await.unwrap();
    secrets.replace("s", &PostParams::default(), &current).await.unwrap();
    secrets.delete("s", &DeleteParams::default()).await.unwrap();
    secrets
        .delete_collection(&DeleteParams::default(), &ListParams::default())
        .await
        .unwrap();
    leases.get_opt("l").await.unwrap();
    client.apiserver_version().await.unwrap();

    let requests = server.requests();
    let summary: Vec<(&str, &str)> = requests.iter().map(|r| (r.method.as_str(), r.verb.as_str())).collect();
    assert_eq!(
        summary,
        [
            ("POST", "create"),
            ("GET", "get"),
            ("GET", "list"),
            ("GET", "list"),
            ("PATCH", "patch"),
            ("PATCH", "patch"),
            ("GET", "get"),
            ("PUT", "update"),
            ("DELETE", "delete"),
            ("DELETE", "deletecollection"),
            ("GET", "get"),
            ("GET", "get"),
        ]
    );
    assert_eq!(
        requests[0],
        Recorded {
            method: "POST".into(),
            verb: "create".into(),
            group: String::new(),
            version: "v1".into(),
            resource: "secrets".into(),
            subresource: None,
            namespace: Some("ns".into()),
            name: None,
            patch_type: None,
            field_manager: None,
            label_selector: None,
            metadata_only: false,
            user_agent: None,
        }
    );
    assert_eq!(requests[1].name.as_deref(), Some("s"));
    assert_eq!(requests[2].label_selector.as_deref(), Some("a=b"));
    assert!(requests[3].metadata_only);
    assert_eq!(requests[4].patch_type.as_deref(), Some("apply"));
    assert_eq!(requests[4].field_manager.as_deref(), Some("me"));
    assert_eq!(requests[5].patch_type.as_deref(), Some("merge"));
    assert_eq!(requests[10].group, "coordination.k8s.io");
    assert_eq!(requests[10].resource, "leases");
    assert_eq!(requests[11].resource, "/version");

    server.clear_requests();
    assert!(server.requests().is_empty());
}

#[tokio::test]
async fn metadata_only_responses() {
    let server = FakeApiServer::start().await;
    let client = server.client();
    let secrets: Api<Secret> = Api::default_namespaced(client.clone());
    secrets
        .create(&PostParams::default(), &secret("s", &[("app", "x")]))
        .await
        .unwrap();

    let meta = secrets.get_metadata("s").await.unwrap();
    assert_eq!(meta.metadata.labels, labels(&[("app", "x")]));
    assert_eq!(meta.types.unwrap().kind, "PartialObjectMetadata");
    let list = secrets.list_metadata(&ListParams::default()).await.unwrap();
    assert_eq!(list.items.len(), 1);
    assert_eq!(list.items[0].metadata.name.as_deref(), Some("s"));

    // The raw body carries no data, only metadata.
    let request = Request::new("/api/v1/namespaces/default/secrets")
        .list_metadata(&ListParams::default())
        .unwrap();
    let raw: Value = serde_json::from_str(&client.request_text(request).await.unwrap()).unwrap();
    assert_eq!(raw["apiVersion"], "meta.k8s.io/v1");
    assert_eq!(raw["kind"], "PartialObjectMetadataList");
    assert_eq!(
        raw["metadata"]["resourceVersion"],
        server.resource_version().to_string()
    );
    assert_eq!(raw["items"][0]["kind"], "PartialObjectMetadata");
    assert_eq!(raw["items"][0]["metadata"]["name"], "s");
    assert_eq!(
        raw["items"][0].as_object().unwrap().len(),
        3,
        "apiVersion, kind, metadata only"
    );
}

#[tokio::test]
async fn generate_name_dry_run_and_pagination() {
    let server = FakeApiServer::start().await;
    let client = server.client();
    let configmaps: Api<ConfigMap> = Api::default_namespaced(client.clone());

    let mut generated = configmap("", &[]);
    generated.metadata.name = None;
    generated.metadata.generate_name = Some("gen-".into());
    let generated = configmaps.create(&PostParams::default(), &generated).await.unwrap();
    assert!(generated.name_any().starts_with("gen-"));
    assert_eq!(generated.name_any().len(), 9);

    let dry = PostParams {
        dry_run: true,
        ..Default::default()
    };
    configmaps.create(&dry, &configmap("dry", &[])).await.unwrap();
    assert!(configmaps.get_opt("dry").await.unwrap().is_none());

    for i in 0..4 {
        configmaps
            .create(&PostParams::default(), &configmap(&format!("cm-{i}"), &[]))
            .await
            .unwrap();
    }
    let first = configmaps.list(&ListParams::default().limit(2)).await.unwrap();
    assert_eq!(names(first.items.clone()), ["cm-0", "cm-1"]);
    let token = first.metadata.continue_.clone().expect("more pages");
    let second = configmaps
        .list(&ListParams::default().limit(2).continue_token(&token))
        .await
        .unwrap();
    assert_eq!(names(second.items.clone()), ["cm-2", "cm-3"]);
    assert_eq!(second.metadata.resource_version, first.metadata.resource_version);
    let last_token = second.metadata.continue_.clone().expect("one more page");
    let third = configmaps
        .list(&ListParams::default().limit(2).continue_token(&last_token))
        .await
        .unwrap();
    assert_eq!(third.items.len(), 1);
    assert!(third.metadata.continue_.is_none());

    // Continuing a list across a compaction is 410 Gone, as on real servers.
    server.expire_watch_history();
    let expired = configmaps
        .list(&ListParams::default().limit(2).continue_token(&token))
        .await
        .unwrap_err();
    assert_eq!(api_error(expired), (410, "Expired".to_string()));
    assert_eq!(server.gone_answers(), [("configmaps".to_string(), 1)].into());
}

#[tokio::test]
async fn discovery_version_and_direct_access() {
    let server = FakeApiServer::start().await;
    server.register("example.dev", "v1", "widgets", "Widget", true);
    let client: Client = server.client();

    let version = client.apiserver_version().await.unwrap();
    assert_eq!(version.major, "1");
    let discovery = kube::Discovery::new(client.clone()).run().await.unwrap();
    assert!(discovery.has_group("example.dev"));
    assert!(discovery.has_group("coordination.k8s.io"));
    let (resource, caps) = discovery
        .resolve_gvk(&GroupVersionKind::gvk("example.dev", "v1", "Widget"))
        .unwrap();
    assert_eq!(resource.plural, "widgets");
    assert!(caps.subresources.iter().any(|(sub, _)| sub.plural == "status"));

    // Objects seeded without HTTP are visible to clients; direct deletes too.
    let seeded = server
        .create_object(
            "",
            "secrets",
            json!({ "metadata": { "name": "seed", "namespace": "ns" } }),
        )
        .unwrap();
    assert_eq!(seeded["apiVersion"], "v1");
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "ns");
    assert_eq!(secrets.get("seed").await.unwrap().type_.as_deref(), Some("Opaque"));
    assert!(server.delete_object("", "secrets", Some("ns"), "seed").unwrap());
    assert!(secrets.get_opt("seed").await.unwrap().is_none());
    assert!(
        server
            .requests()
            .iter()
            .all(|r| r.name.as_deref() != Some("seed") || r.verb == "get")
    );
}

/// Waits for `f`, failing the test after 5 s.
async fn within<T>(f: impl std::future::Future<Output = T>) -> Result<T, tokio::time::error::Elapsed> {
    tokio::time::timeout(std::time::Duration::from_secs(5), f).await
}

#[tokio::test]
async fn delays_hold_requests_at_a_gate_or_for_a_while() {
    use fake_apiserver::{Delay, Gate};
    use std::time::{Duration, Instant};
    let server = FakeApiServer::start().await;
    let secrets: Api<Secret> = Api::default_namespaced(server.client());
    secrets.create(&PostParams::default(), &secret("s", &[])).await.unwrap();
    let label = |v: &str| Patch::Merge(json!({"metadata": {"labels": {"v": v}}}));
    let stored = |server: &FakeApiServer| {
        server.object("", "secrets", Some("default"), "s").unwrap()["metadata"]["labels"]["v"].clone()
    };

    // Held, then let through: the write takes effect only then.
    let gate = Gate::new();
    server.delay_next(Delay::at(&gate, "/secrets/s").method("PATCH"));
    let held = tokio::spawn({
        let secrets = secrets.clone();
        async move { secrets.patch("s", &PatchParams::default(), &label("1")).await }
    });
    within(gate.arrived()).await.unwrap();
    assert_eq!(stored(&server), Value::Null, "not applied while held");
    assert!(secrets.get("s").await.is_ok(), "other requests pass");
    gate.open();
    within(held).await.unwrap().unwrap().unwrap();
    assert_eq!(stored(&server), "1");

    // Held, then answered: the client gets the status, nothing is applied.
    let gate = Gate::new();
    server.delay_next(Delay::at(&gate, "/secrets/s").method("PATCH"));
    let held = tokio::spawn({
        let secrets = secrets.clone();
        async move { secrets.patch("s", &PatchParams::default(), &label("2")).await }
    });
    within(gate.arrived()).await.unwrap();
    gate.answer(500);
    let err = within(held).await.unwrap().unwrap().unwrap_err();
    assert_eq!(api_error(err), (500, "InternalError".to_string()));
    assert_eq!(stored(&server), "1");

    // The client goes away while its write is held; opened afterwards, the write still lands.
    let gate = Gate::new();
    server.delay_next(Delay::at(&gate, "/secrets/s").method("PATCH"));
    let client_gone = tokio::spawn({
        let secrets = secrets.clone();
        async move { secrets.patch("s", &PatchParams::default(), &label("3")).await }
    });
    within(gate.arrived()).await.unwrap();
    client_gone.abort();
    assert!(client_gone.await.unwrap_err().is_cancelled());
    gate.open();
    within(async {
        while stored(&server) != "3" {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the abandoned write landed");
    assert_eq!(gate.arrivals(), 1);

    // A fixed delay: handled after it, and only for the next `count` matching requests.
    server.delay_next(
        Delay::by(Duration::from_millis(300), "/secrets/s")
            .method("GET")
            .times(2),
    );
    for _ in 0..2 {
        let started = Instant::now();
        secrets.get("s").await.unwrap();
        assert!(started.elapsed() >= Duration::from_millis(300));
    }
    let started = Instant::now();
    secrets.get("s").await.unwrap();
    assert!(started.elapsed() < Duration::from_millis(300), "delay used up");
}

#[tokio::test]
async fn apps_workloads_are_served_and_a_pod_template_patch_is_a_new_generation() {
    use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
    let server = FakeApiServer::start().await;
    let client = server.client();
    let deployments: Api<Deployment> = Api::default_namespaced(client.clone());
    let d: Deployment = serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "labels": {"app": "web"}},
        "spec": {"selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}},
    }))
    .unwrap();
    let d = deployments.create(&PostParams::default(), &d).await.unwrap();
    let restart = json!({"spec": {"template": {"metadata": {"annotations": {"example.dev/restartedAt": "now"}}}}});
    let patched = deployments
        .patch("web", &PatchParams::default(), &Patch::Merge(&restart))
        .await
        .unwrap();
    assert_eq!(patched.metadata.generation, d.metadata.generation.map(|g| g + 1));
    let annotations = patched.spec.template.metadata.unwrap().annotations.unwrap();
    assert_eq!(annotations["example.dev/restartedAt"], "now");
    let listed = deployments
        .list(&kube::api::ListParams::default().labels("app=web"))
        .await
        .unwrap();
    assert_eq!(listed.items.len(), 1);
    assert!(
        Api::<StatefulSet>::default_namespaced(client.clone())
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );
    assert!(
        Api::<DaemonSet>::default_namespaced(client)
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );
}
