//! The fake refuses what a real kube-apiserver refuses, with the same status code, reason,
//! message and causes (messages as of Kubernetes 1.36, taken from its validation code), and
//! does the background work a cluster does: asynchronous garbage collection, Event expiry.

use std::time::Duration;

use fake_apiserver::FakeApiServer;
use k8s_openapi::ByteString;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::api::events::v1::Event;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ObjectMeta, Patch, PatchParams, PostParams,
};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

/// Code, reason, message and causes (reason, message, field) of an API error.
#[derive(Debug, PartialEq)]
struct Refusal {
    code: u16,
    reason: String,
    message: String,
    causes: Vec<(String, String, String)>,
}

fn refusal(err: kube::Error) -> Refusal {
    let kube::Error::Api(status) = err else {
        panic!("expected an API error, got {err:?}");
    };
    let causes = status
        .details
        .iter()
        .flat_map(|d| d.causes.iter())
        .map(|c| (c.reason.clone(), c.message.clone(), c.field.clone()))
        .collect();
    Refusal {
        code: status.code,
        reason: status.reason.clone(),
        message: status.message.clone(),
        causes,
    }
}

/// The refusal of one invalid field: `<kind> "<name>" is invalid: <field>: <message>`.
fn invalid(kind: &str, name: &str, field: &str, reason: &str, message: &str) -> Refusal {
    Refusal {
        code: 422,
        reason: "Invalid".into(),
        message: format!("{kind} \"{name}\" is invalid: {field}: {message}"),
        causes: vec![(reason.into(), message.into(), field.into())],
    }
}

fn secret(name: &str, data: &[(&str, &[u8])]) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        data: Some(
            data.iter()
                .map(|(k, v)| (k.to_string(), ByteString(v.to_vec())))
                .collect(),
        ),
        ..Default::default()
    }
}

const CONFIG_KEY_RULE: &str = "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')";

#[tokio::test]
async fn secret_data_keys_are_refused_with_the_real_cause() {
    let server = FakeApiServer::start().await;
    let secrets: Api<Secret> = Api::default_namespaced(server.client());
    let expected = invalid(
        "Secret",
        "x",
        "data[a b]",
        "FieldValueInvalid",
        &format!("Invalid value: \"a b\": {CONFIG_KEY_RULE}"),
    );

    let created = secrets
        .create(&PostParams::default(), &secret("x", &[("a b", b"v")]))
        .await;
    assert_eq!(refusal(created.unwrap_err()), expected);

    // Server-side apply is validated the same way.
    let applied =
        json!({ "apiVersion": "v1", "kind": "Secret", "metadata": { "name": "x" }, "data": { "a b": "dg==" } });
    let applied = secrets
        .patch("x", &PatchParams::apply("test").force(), &Patch::Apply(&applied))
        .await;
    assert_eq!(refusal(applied.unwrap_err()), expected);

    let dot_dot = secrets
        .create(&PostParams::default(), &secret("y", &[("..x", b"v")]))
        .await;
    assert_eq!(
        refusal(dot_dot.unwrap_err()),
        invalid(
            "Secret",
            "y",
            "data[..x]",
            "FieldValueInvalid",
            "Invalid value: \"..x\": must not start with '..'"
        )
    );
}

#[tokio::test]
async fn secret_names_must_be_dns_subdomains() {
    let server = FakeApiServer::start().await;
    let secrets: Api<Secret> = Api::default_namespaced(server.client());
    let created = secrets.create(&PostParams::default(), &secret("Bad_Name", &[])).await;
    assert_eq!(
        refusal(created.unwrap_err()),
        invalid(
            "Secret",
            "Bad_Name",
            "metadata.name",
            "FieldValueInvalid",
            "Invalid value: \"Bad_Name\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
        )
    );
    let long = "a".repeat(254);
    let created = secrets.create(&PostParams::default(), &secret(&long, &[])).await;
    assert_eq!(
        refusal(created.unwrap_err()),
        invalid(
            "Secret",
            &long,
            "metadata.name",
            "FieldValueInvalid",
            &format!("Invalid value: \"{long}\": must be no more than 253 characters")
        )
    );
}

#[tokio::test]
async fn secret_data_is_limited_to_one_mebibyte() {
    let server = FakeApiServer::start().await;
    let secrets: Api<Secret> = Api::default_namespaced(server.client());
    let half = vec![b'x'; 512 * 1024];
    secrets
        .create(&PostParams::default(), &secret("full", &[("a", &half), ("b", &half)]))
        .await
        .expect("exactly 1 MiB is allowed");
    let over = secrets
        .create(
            &PostParams::default(),
            &secret("over", &[("a", &half), ("b", &half), ("c", b"!")]),
        )
        .await;
    assert_eq!(
        refusal(over.unwrap_err()),
        invalid(
            "Secret",
            "over",
            "data",
            "FieldValueTooLong",
            "Too long: may not be more than 1048576 bytes"
        )
    );
}

#[tokio::test]
async fn secret_type_is_immutable_and_so_is_the_data_of_an_immutable_secret() {
    let server = FakeApiServer::start().await;
    let secrets: Api<Secret> = Api::default_namespaced(server.client());
    secrets
        .create(&PostParams::default(), &secret("s", &[("a", b"1")]))
        .await
        .unwrap();
    let retyped = merge(&secrets, "s", json!({ "type": "example.com/custom" })).await;
    assert_eq!(
        refusal(retyped.unwrap_err()),
        invalid(
            "Secret",
            "s",
            "type",
            "FieldValueInvalid",
            "Invalid value: \"example.com/custom\": field is immutable"
        )
    );

    let mut frozen = secret("frozen", &[("a", b"1")]);
    frozen.immutable = Some(true);
    secrets.create(&PostParams::default(), &frozen).await.unwrap();
    let changed = merge(&secrets, "frozen", json!({ "data": { "a": "Mg==" } })).await;
    assert_eq!(
        refusal(changed.unwrap_err()),
        invalid(
            "Secret",
            "frozen",
            "data",
            "FieldValueForbidden",
            "Forbidden: field is immutable when `immutable` is set"
        )
    );
    // Metadata may still change.
    merge(&secrets, "frozen", json!({ "metadata": { "labels": { "a": "b" } } }))
        .await
        .unwrap();
}

#[tokio::test]
async fn string_data_is_stored_as_data_and_data_must_be_base64() {
    let server = FakeApiServer::start().await;
    let secrets: Api<Secret> = Api::default_namespaced(server.client());
    let mut s = secret("s", &[("a", b"1")]);
    s.string_data = Some([("b".to_string(), "2".to_string())].into());
    let created = secrets.create(&PostParams::default(), &s).await.unwrap();
    assert!(created.string_data.is_none());
    let data = created.data.unwrap();
    assert_eq!(data["a"].0, b"1");
    assert_eq!(data["b"].0, b"2");

    let raw =
        json!({ "apiVersion": "v1", "kind": "Secret", "metadata": { "name": "raw" }, "data": { "a": "not base64!" } });
    let refused = secrets
        .patch("raw", &PatchParams::apply("test"), &Patch::Apply(&raw))
        .await;
    let r = refusal(refused.unwrap_err());
    assert_eq!((r.code, r.reason.as_str()), (400, "BadRequest"));
    assert_eq!(
        r.message,
        "Secret in version \"v1\" cannot be handled as a Secret: illegal base64 data at input byte 3"
    );
}

/// A JSON merge patch.
async fn merge<K>(api: &Api<K>, name: &str, patch: Value) -> Result<K, kube::Error>
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch)).await
}

fn owner(cm: &ConfigMap, controller: bool) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "name": cm.name_any(),
        "uid": cm.uid().unwrap(),
        "controller": controller,
    })
}

async fn config_maps(client: &Client, names: &[&str]) -> Vec<ConfigMap> {
    let api: Api<ConfigMap> = Api::default_namespaced(client.clone());
    let mut out = Vec::new();
    for name in names {
        let cm = ConfigMap {
            metadata: ObjectMeta {
                name: Some(name.to_string()),
                ..Default::default()
            },
            ..Default::default()
        };
        out.push(api.create(&PostParams::default(), &cm).await.unwrap());
    }
    out
}

fn apply_owners(owners: &[Value]) -> Patch<Value> {
    Patch::Apply(json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": { "name": "out", "ownerReferences": owners },
        "data": { "k": "dg==" },
    }))
}

fn owner_uids(s: &Secret) -> Vec<String> {
    s.owner_references().iter().map(|o| o.uid.clone()).collect()
}

#[tokio::test]
async fn server_side_apply_merges_owner_references_by_uid() {
    let server = FakeApiServer::start().await;
    let client = server.client();
    let cms = config_maps(&client, &["first", "second", "third"]).await;
    let secrets: Api<Secret> = Api::default_namespaced(client);
    let force = |manager: &str| PatchParams::apply(manager).force();

    secrets
        .patch("out", &force("other"), &apply_owners(&[owner(&cms[0], false)]))
        .await
        .unwrap();
    // Another manager's reference stays: the list is a map keyed by uid, not atomic.
    let both = secrets
        .patch("out", &force("mine"), &apply_owners(&[owner(&cms[1], false)]))
        .await
        .unwrap();
    assert_eq!(owner_uids(&both), [cms[0].uid().unwrap(), cms[1].uid().unwrap()]);
    // A manager that applies a different reference gives up the one it applied before.
    let moved = secrets
        .patch("out", &force("mine"), &apply_owners(&[owner(&cms[2], false)]))
        .await
        .unwrap();
    assert_eq!(owner_uids(&moved), [cms[0].uid().unwrap(), cms[2].uid().unwrap()]);
}

#[tokio::test]
async fn a_second_controller_reference_is_refused() {
    let server = FakeApiServer::start().await;
    let client = server.client();
    let cms = config_maps(&client, &["first", "second"]).await;
    let secrets: Api<Secret> = Api::default_namespaced(client);
    secrets
        .patch(
            "out",
            &PatchParams::apply("other").force(),
            &apply_owners(&[owner(&cms[0], true)]),
        )
        .await
        .unwrap();
    let refused = secrets
        .patch(
            "out",
            &PatchParams::apply("mine").force(),
            &apply_owners(&[owner(&cms[1], true)]),
        )
        .await;
    let listed = |cm: &ConfigMap| {
        format!(
            "{{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"name\":\"{}\",\"uid\":\"{}\",\"controller\":true}}",
            cm.name_any(),
            cm.uid().unwrap()
        )
    };
    let mut expected = invalid(
        "Secret",
        "out",
        "metadata.ownerReferences",
        "FieldValueInvalid",
        &format!(
            "Invalid value: [{},{}]: Only one reference can have Controller set to true. Found \"true\" in references for ConfigMap/first and ConfigMap/second",
            listed(&cms[0]),
            listed(&cms[1])
        ),
    );
    // `ValidateSecretUpdate` checks the metadata twice (`ValidateObjectMetaUpdate`, then
    // `ValidateSecret`'s `ValidateObjectMeta`): the cause comes twice, the message says it once.
    expected.causes.push(expected.causes[0].clone());
    assert_eq!(refusal(refused.unwrap_err()), expected);
    let stored = secrets.get("out").await.unwrap();
    assert_eq!(owner_uids(&stored), [cms[0].uid().unwrap()]);
}

fn widget_crd() -> Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": { "name": "widgets.example.dev" },
        "spec": {
            "group": "example.dev",
            "names": { "kind": "Widget", "plural": "widgets", "singular": "widget", "listKind": "WidgetList" },
            "scope": "Namespaced",
            "versions": [{
                "name": "v1",
                "served": true,
                "storage": true,
                "subresources": { "status": {} },
                "schema": { "openAPIV3Schema": {
                    "type": "object",
                    "properties": {
                        "spec": {
                            "type": "object",
                            "required": ["size"],
                            "x-kubernetes-validations": [{
                                "rule": "!has(self.color) || self.color != 'red' || self.size < 5",
                                "message": "red widgets must be smaller than 5"
                            }],
                            "properties": {
                                "size": { "type": "integer", "minimum": 1, "maximum": 10 },
                                "color": { "type": "string", "enum": ["red", "green"] },
                                "name": { "type": "string", "maxLength": 8, "pattern": "^[a-z]+$" },
                                "tags": {
                                    "type": "object",
                                    "additionalProperties": { "type": "string" },
                                    "x-kubernetes-validations": [{
                                        "rule": "self.all(k, k.matches('^[a-z]+$'))",
                                        "message": "tag keys must be lower case letters"
                                    }]
                                }
                            }
                        },
                        "status": {
                            "type": "object",
                            "properties": {
                                "phase": {
                                    "type": "string",
                                    "x-kubernetes-validations": [{
                                        "rule": "self in ['Ready', 'Pending']",
                                        "message": "phase must be Ready or Pending"
                                    }]
                                }
                            }
                        }
                    }
                }}
            }]
        }
    })
}

async fn widgets() -> (FakeApiServer, Api<DynamicObject>) {
    let server = FakeApiServer::start().await;
    server.register_crd(&widget_crd());
    let resource = ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("example.dev", "v1", "Widget"), "widgets");
    let api = Api::default_namespaced_with(server.client(), &resource);
    (server, api)
}

fn widget(name: &str, spec: Value) -> DynamicObject {
    serde_json::from_value(json!({
        "apiVersion": "example.dev/v1",
        "kind": "Widget",
        "metadata": { "name": name },
        "spec": spec,
    }))
    .unwrap()
}

const WIDGET: &str = "Widget.example.dev";

#[tokio::test]
async fn custom_resources_are_pruned_to_their_schema() {
    let (_server, api) = widgets().await;
    let created = api
        .create(
            &PostParams::default(),
            &widget("w", json!({ "size": 1, "shape": "round" })),
        )
        .await
        .unwrap();
    assert_eq!(created.data["spec"], json!({ "size": 1 }));

    // A status field the CRD lacks is dropped, on the status subresource too.
    let status = json!({ "status": { "phase": "Ready", "progress": 50 } });
    let patched = api
        .patch_status("w", &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap();
    assert_eq!(patched.data["status"], json!({ "phase": "Ready" }));
    let applied =
        json!({ "apiVersion": "example.dev/v1", "kind": "Widget", "status": { "phase": "Pending", "extra": true } });
    let applied = api
        .patch_status("w", &PatchParams::apply("test").force(), &Patch::Apply(&applied))
        .await
        .unwrap();
    assert_eq!(applied.data["status"], json!({ "phase": "Pending" }));
}

#[tokio::test]
async fn custom_resources_are_validated_on_every_write() {
    let (_server, api) = widgets().await;
    let red = invalid(
        WIDGET,
        "w",
        "spec",
        "FieldValueInvalid",
        "Invalid value: red widgets must be smaller than 5",
    );
    let refused = api
        .create(
            &PostParams::default(),
            &widget("w", json!({ "size": 7, "color": "red" })),
        )
        .await;
    assert_eq!(refusal(refused.unwrap_err()), red);

    let stored = api
        .create(
            &PostParams::default(),
            &widget("w", json!({ "size": 7, "color": "green" })),
        )
        .await
        .unwrap();
    let mut replaced = stored.clone();
    replaced.data["spec"]["color"] = json!("red");
    let refused = api.replace("w", &PostParams::default(), &replaced).await;
    assert_eq!(refusal(refused.unwrap_err()), red);

    let refused = merge(&api, "w", json!({ "spec": { "color": "red" } })).await;
    assert_eq!(refusal(refused.unwrap_err()), red);

    let apply = json!({ "apiVersion": "example.dev/v1", "kind": "Widget", "spec": { "size": 7, "color": "red" } });
    let refused = api
        .patch("w", &PatchParams::apply("test").force(), &Patch::Apply(&apply))
        .await;
    assert_eq!(refusal(refused.unwrap_err()), red);

    let refused = api
        .patch_status(
            "w",
            &PatchParams::default(),
            &Patch::Merge(json!({ "status": { "phase": "Broken" } })),
        )
        .await;
    assert_eq!(
        refusal(refused.unwrap_err()),
        invalid(
            WIDGET,
            "w",
            "status.phase",
            "FieldValueInvalid",
            "Invalid value: \"Broken\": phase must be Ready or Pending"
        )
    );

    // A rule on a map reports the map, without its value.
    let refused = merge(&api, "w", json!({ "spec": { "tags": { "Upper": "x" } } })).await;
    assert_eq!(
        refusal(refused.unwrap_err()),
        invalid(
            WIDGET,
            "w",
            "spec.tags",
            "FieldValueInvalid",
            "Invalid value: tag keys must be lower case letters"
        )
    );
    assert_eq!(
        api.get("w").await.unwrap().data["spec"],
        json!({ "size": 7, "color": "green" })
    );
}

#[tokio::test]
async fn schema_errors_read_as_kube_openapi_writes_them() {
    let (_server, api) = widgets().await;
    let cases = [
        (
            json!({ "size": 11 }),
            invalid(
                WIDGET,
                "w",
                "spec.size",
                "FieldValueInvalid",
                "Invalid value: 11: spec.size in body should be less than or equal to 10",
            ),
        ),
        (
            json!({ "size": 1, "name": "abc1" }),
            invalid(
                WIDGET,
                "w",
                "spec.name",
                "FieldValueInvalid",
                "Invalid value: \"abc1\": spec.name in body should match '^[a-z]+$'",
            ),
        ),
        // These errors keep the CEL rules from running, which the answer says.
        (
            json!({ "size": 1, "name": "abcdefghi" }),
            blocked(
                "spec.name",
                "FieldValueTooLong",
                "Too long: may not be more than 8 bytes",
            ),
        ),
        (
            json!({ "size": 1, "color": "blue" }),
            blocked(
                "spec.color",
                "FieldValueNotSupported",
                "Unsupported value: \"blue\": supported values: \"red\", \"green\"",
            ),
        ),
        (
            json!({ "size": "big" }),
            blocked(
                "spec.size",
                "FieldValueTypeInvalid",
                "Invalid value: \"string\": spec.size in body must be of type integer: \"string\"",
            ),
        ),
        (json!({}), blocked("spec.size", "FieldValueRequired", "Required value")),
    ];
    for (spec, expected) in cases {
        let refused = api.create(&PostParams::default(), &widget("w", spec.clone())).await;
        assert_eq!(refusal(refused.unwrap_err()), expected, "{spec}");
    }
}

const NOT_CHECKED: &str = "Invalid value: null: some validation rules were not checked because the object was invalid; correct the existing errors to complete validation";

/// The refusal of a Widget "w" with one error that kept the CEL rules from running.
fn blocked(field: &str, reason: &str, message: &str) -> Refusal {
    Refusal {
        code: 422,
        reason: "Invalid".into(),
        message: format!("{WIDGET} \"w\" is invalid: [{field}: {message}, <nil>: {NOT_CHECKED}]"),
        causes: vec![
            (reason.into(), message.into(), field.into()),
            ("FieldValueInvalid".into(), NOT_CHECKED.into(), "<nil>".into()),
        ],
    }
}

#[tokio::test]
async fn unchanged_invalid_values_do_not_block_updates() {
    let (server, api) = widgets().await;
    // Stored before the rule existed: as on a real server after a CRD update.
    server.register("example.dev", "v1", "widgets", "Widget", true);
    api.create(&PostParams::default(), &widget("w", json!({ "size": 50 })))
        .await
        .unwrap();
    server.register_crd(&widget_crd());
    merge(&api, "w", json!({ "metadata": { "labels": { "a": "b" } } }))
        .await
        .expect("ratcheting: the unchanged size is not checked again");
    let refused = merge(&api, "w", json!({ "spec": { "size": 60 } })).await;
    assert_eq!(refusal(refused.unwrap_err()).code, 422);
}

fn dependent(name: &str, owner: &ConfigMap) -> Secret {
    let mut s = secret(name, &[]);
    s.metadata.owner_references = Some(vec![serde_json::from_value(owner_ref(owner)).unwrap()]);
    s
}

fn owner_ref(cm: &ConfigMap) -> Value {
    json!({ "apiVersion": "v1", "kind": "ConfigMap", "name": cm.name_any(), "uid": cm.uid().unwrap() })
}

/// A server whose garbage collection waits `delay`, a ConfigMap "owner" and a Secret "child" it
/// owns; returns the Secrets API and the owner.
async fn owner_and_child(server: &FakeApiServer, delay: Duration) -> (Api<Secret>, ConfigMap) {
    server.set_gc_delay(Some(delay));
    let client = server.client();
    let secrets: Api<Secret> = Api::default_namespaced(client.clone());
    let owner = config_maps(&client, &["owner"]).await.remove(0);
    secrets
        .create(&PostParams::default(), &dependent("child", &owner))
        .await
        .unwrap();
    (secrets, owner)
}

#[tokio::test]
async fn garbage_collection_can_come_late_and_still_collects_after_a_recreate() {
    let server = FakeApiServer::start().await;
    let (secrets, owner) = owner_and_child(&server, Duration::from_secs(3600)).await;
    let client = server.client();
    let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());

    // Delete and recreate the owner before the collector comes round.
    cms.delete("owner", &DeleteParams::default()).await.unwrap();
    let again = config_maps(&client, &["owner"]).await.remove(0);
    assert_ne!(again.uid(), owner.uid());
    assert!(secrets.get_opt("child").await.unwrap().is_some(), "collection is late");

    // The dependent names the old owner's uid: it goes, although an owner of that name exists.
    server.run_garbage_collection();
    assert!(secrets.get_opt("child").await.unwrap().is_none());
}

#[tokio::test]
async fn dependents_of_owners_that_never_existed_are_collected() {
    let server = FakeApiServer::start().await;
    let client = server.client();
    let secrets: Api<Secret> = Api::default_namespaced(client.clone());
    let real = config_maps(&client, &["real"]).await.remove(0);
    let mut phantom = real.clone();
    phantom.metadata.uid = Some("00000000-0000-4000-8000-000000000000".into());

    secrets
        .create(&PostParams::default(), &dependent("orphan", &phantom))
        .await
        .unwrap();
    assert!(secrets.get_opt("orphan").await.unwrap().is_none());

    // With one real owner left, only the reference to the missing one goes.
    let mut both = dependent("shared", &real);
    both.metadata
        .owner_references
        .as_mut()
        .unwrap()
        .push(serde_json::from_value(owner_ref(&phantom)).unwrap());
    secrets.create(&PostParams::default(), &both).await.unwrap();
    let kept = secrets.get("shared").await.unwrap();
    assert_eq!(owner_uids(&kept), [real.uid().unwrap()]);

    // An owner of a kind this server does not serve cannot be checked: left alone.
    let mut foreign = secret("foreign", &[]);
    foreign.metadata.owner_references = Some(vec![
        serde_json::from_value(json!({ "apiVersion": "batch/v1", "kind": "CronJob", "name": "d", "uid": "u" }))
            .unwrap(),
    ]);
    secrets.create(&PostParams::default(), &foreign).await.unwrap();
    assert!(secrets.get_opt("foreign").await.unwrap().is_some());
}

#[tokio::test]
async fn delayed_garbage_collection_happens_on_its_own() {
    let server = FakeApiServer::start().await;
    let (secrets, _owner) = owner_and_child(&server, Duration::from_millis(50)).await;
    Api::<ConfigMap>::default_namespaced(server.client())
        .delete("owner", &DeleteParams::default())
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while secrets.get_opt("child").await.unwrap().is_some() {
        assert!(tokio::time::Instant::now() < deadline, "never collected");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn event(name: &str, regarding: &str, note: &str) -> Event {
    serde_json::from_value(json!({
        "metadata": { "name": name, "namespace": "default" },
        "eventTime": "2030-01-01T00:00:00.000000Z",
        "reportingController": "example.dev/controller",
        "reportingInstance": "controller-0",
        "action": "Reconcile",
        "reason": "Done",
        "type": "Normal",
        "note": note,
        "regarding": { "apiVersion": "v1", "kind": "ConfigMap", "name": regarding, "namespace": "default" },
    }))
    .unwrap()
}

#[tokio::test]
async fn events_expire_after_their_ttl() {
    let server = FakeApiServer::start().await;
    server.set_event_ttl(Duration::from_millis(100));
    let events: Api<Event> = Api::default_namespaced(server.client());
    events
        .create(&PostParams::default(), &event("e", "cm", "done"))
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while events.get_opt("e").await.unwrap().is_some() {
        assert!(tokio::time::Instant::now() < deadline, "the Event never expired");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A series bump on the expired Event finds nothing, as on a cluster.
    let bump = json!({ "series": { "count": 2, "lastObservedTime": "2030-01-01T00:00:01.000000Z" } });
    let gone = merge(&events, "e", bump).await;
    assert_eq!(refusal(gone.unwrap_err()).code, 404);
}

#[tokio::test]
async fn events_k8s_io_names_and_fields_are_validated() {
    let server = FakeApiServer::start().await;
    let events: Api<Event> = Api::default_namespaced(server.client());
    // The name client-go builds for an object with a 250-character name: too long.
    let regarding = "r".repeat(250);
    let name = format!("{regarding}.{:x}", 1_800_000_000_000_000_000u64);
    let refused = events
        .create(&PostParams::default(), &event(&name, &regarding, "done"))
        .await;
    assert_eq!(
        refusal(refused.unwrap_err()),
        invalid(
            "Event.events.k8s.io",
            &name,
            "metadata.name",
            "FieldValueInvalid",
            &format!("Invalid value: \"{name}\": must be no more than 253 characters")
        )
    );

    let refused = events
        .create(&PostParams::default(), &event("long-note", "cm", &"n".repeat(1025)))
        .await;
    assert_eq!(
        refusal(refused.unwrap_err()),
        invalid(
            "Event.events.k8s.io",
            "long-note",
            "message",
            "FieldValueInvalid",
            "Invalid value: \"\": can have at most 1024 characters"
        )
    );

    events
        .create(&PostParams::default(), &event("e", "cm", "done"))
        .await
        .unwrap();
    let bump = json!({ "series": { "count": 1, "lastObservedTime": "2030-01-01T00:00:01.000000Z" } });
    let refused = merge(&events, "e", bump).await;
    assert_eq!(
        refusal(refused.unwrap_err()),
        invalid(
            "Event.events.k8s.io",
            "e",
            "series.count",
            "FieldValueInvalid",
            "Invalid value: \"\": should be at least 2"
        )
    );
    let refused = merge(&events, "e", json!({ "note": "changed" })).await;
    assert_eq!(
        refusal(refused.unwrap_err()),
        invalid(
            "Event.events.k8s.io",
            "e",
            "message",
            "FieldValueInvalid",
            "Invalid value: \"changed\": field is immutable"
        )
    );
}

#[tokio::test]
async fn lease_durations_must_be_positive() {
    let server = FakeApiServer::start().await;
    let leases: Api<Lease> = Api::default_namespaced(server.client());
    let lease: Lease = serde_json::from_value(json!({
        "metadata": { "name": "l" },
        "spec": { "holderIdentity": "a", "leaseDurationSeconds": 0 },
    }))
    .unwrap();
    let refused = leases.create(&PostParams::default(), &lease).await;
    assert_eq!(
        refusal(refused.unwrap_err()),
        invalid(
            "Lease.coordination.k8s.io",
            "l",
            "spec.leaseDurationSeconds",
            "FieldValueInvalid",
            "Invalid value: 0: must be greater than 0"
        )
    );
}

#[tokio::test]
async fn label_values_are_limited_to_63_bytes() {
    let server = FakeApiServer::start().await;
    let secrets: Api<Secret> = Api::default_namespaced(server.client());
    let value = "v".repeat(64);
    let mut s = secret("s", &[]);
    s.metadata.labels = Some([("example.dev/name".to_string(), value.clone())].into());
    let refused = secrets.create(&PostParams::default(), &s).await;
    assert_eq!(
        refusal(refused.unwrap_err()),
        invalid(
            "Secret",
            "s",
            "metadata.labels",
            "FieldValueInvalid",
            &format!("Invalid value: \"{value}\": must be no more than 63 bytes")
        )
    );
}
