//! HTTP layer: URL routing, request recording, fault injection and rendering of
//! responses in the shapes `kube::Client` expects.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::oneshot;

use crate::error::ApiError;
use crate::meta::{self, META_API_VERSION, ObjectView};
use crate::registry::ResourceInfo;
use crate::selector::{FieldSelector, LabelSelector};
use crate::store::{CollKey, DeleteOpts, Deleted, Filter, PatchKind, Target, WriteOpts};
use crate::{Recorded, Shared, Wait, watch};

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .fallback(handle)
        .with_state(shared)
        // Objects such as 100 KB Secrets (and bulk benchmarks) exceed axum's 2 MB default.
        .layer(DefaultBodyLimit::disable())
}

/// A parsed resource URL.
#[derive(Clone, Debug, PartialEq)]
struct ResourcePath {
    group: String,
    version: String,
    plural: String,
    namespace: Option<String>,
    name: Option<String>,
    subresource: Option<String>,
}

#[derive(Clone, Debug, PartialEq)]
enum Route {
    Version,
    Health,
    /// `/api`
    CoreVersions,
    /// `/apis`
    Groups,
    /// `/api/v1`, `/apis/{group}/{version}`
    GroupVersion(String, String),
    Resource(ResourcePath),
    /// `/.well-known/openid-configuration`: the ServiceAccount issuer's discovery document.
    OpenIdConfiguration,
    /// `/openid/v1/jwks`: the keys ServiceAccount tokens are signed with.
    Jwks,
    Unknown,
}

impl Route {
    fn parse(path: &str) -> Self {
        let decoded: Vec<String> = path
            .split('/')
            .filter(|s| !s.is_empty())
            .map(|s| percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned())
            .collect();
        let segs: Vec<&str> = decoded.iter().map(String::as_str).collect();
        match segs.as_slice() {
            ["version"] => Self::Version,
            [".well-known", "openid-configuration"] => Self::OpenIdConfiguration,
            ["openid", "v1", "jwks"] => Self::Jwks,
            ["healthz" | "livez" | "readyz", ..] => Self::Health,
            ["api"] => Self::CoreVersions,
            ["apis"] => Self::Groups,
            ["api", version] => Self::GroupVersion(String::new(), (*version).into()),
            ["apis", group, version] => Self::GroupVersion((*group).into(), (*version).into()),
            ["api", version, rest @ ..] => Self::resource("", version, rest),
            ["apis", group, version, rest @ ..] => Self::resource(group, version, rest),
            _ => Self::Unknown,
        }
    }

    fn resource(group: &str, version: &str, rest: &[&str]) -> Self {
        // `/api/v1/namespaces/{name}/status` is the Namespace status subresource,
        // not a namespaced resource called "status".
        let namespace_subresource = group.is_empty() && rest.len() == 3 && matches!(rest[2], "status" | "finalize");
        let (namespace, rest) = match rest {
            ["namespaces", ns, tail @ ..] if !tail.is_empty() && !namespace_subresource => (Some(*ns), tail),
            _ => (None, rest),
        };
        let (plural, tail) = match rest {
            [plural, tail @ ..] if tail.len() <= 2 => (*plural, tail),
            _ => return Self::Unknown,
        };
        Self::Resource(ResourcePath {
            group: group.into(),
            version: version.into(),
            plural: plural.into(),
            namespace: namespace.map(Into::into),
            name: tail.first().map(|s| (*s).into()),
            subresource: tail.get(1).map(|s| (*s).into()),
        })
    }
}

/// Everything a resource handler needs from the request.
struct Request {
    shared: Arc<Shared>,
    method: Method,
    query: HashMap<String, String>,
    metadata_only: bool,
    content_type: String,
    user_agent: Option<String>,
    body: Bytes,
}

impl Request {
    fn param(&self, key: &str) -> Option<&str> {
        self.query.get(key).map(String::as_str).filter(|v| !v.is_empty())
    }

    fn flag(&self, key: &str) -> bool {
        matches!(self.param(key), Some("true" | "1"))
    }

    fn is_watch(&self) -> bool {
        self.method == Method::GET && self.flag("watch")
    }

    fn write_opts(&self) -> WriteOpts {
        WriteOpts {
            dry_run: self.param("dryRun").is_some(),
            field_manager: self.param("fieldManager").map(Into::into),
            force: self.flag("force"),
        }
    }

    fn json_body(&self) -> Result<Value, ApiError> {
        serde_json::from_slice(&self.body)
            .map_err(|e| ApiError::bad_request(format!("error decoding the request body: {e}")))
    }

    fn filter(&self) -> Result<Filter, ApiError> {
        let labels = LabelSelector::parse(self.param("labelSelector").unwrap_or(""))
            .map_err(|e| ApiError::bad_request(format!("unable to parse requirement: {e}")))?;
        let fields = FieldSelector::parse(self.param("fieldSelector").unwrap_or(""))
            .map_err(|e| ApiError::bad_request(format!("invalid field selector: {e}")))?;
        Ok(Filter { labels, fields })
    }
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let query: HashMap<String, String> = uri
        .query()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default();
    let header_str = |name| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let request = Request {
        shared,
        method,
        query,
        metadata_only: header_str(header::ACCEPT).contains("as=PartialObjectMetadata"),
        content_type: header_str(header::CONTENT_TYPE),
        user_agent: Some(header_str(header::USER_AGENT)).filter(|u| !u.is_empty()),
        body,
    };
    let route = Route::parse(uri.path());
    request.shared.record(recorded(&request, &route, uri.path()));

    let target = uri.path_and_query().map_or(uri.path(), |pq| pq.as_str());
    if let Some(status) = request.shared.take_fault(request.method.as_str(), target) {
        return error_response(&ApiError::from_code(status));
    }
    let host = header_str(header::HOST);
    let Some(wait) = request.shared.take_delay(request.method.as_str(), target) else {
        return dispatch(request, route, &host);
    };
    // A delayed request is finished in a task of its own: a real server completes a request it
    // has received even when the client goes away meanwhile (e.g. is killed while waiting).
    let (answer, answered) = oneshot::channel();
    tokio::spawn(async move {
        let verdict = match wait {
            Wait::Gate(gate) => gate.enter().await,
            Wait::For(duration) => {
                tokio::time::sleep(duration).await;
                None
            }
        };
        let response = match verdict {
            Some(status) => error_response(&ApiError::from_code(status)),
            None => dispatch(request, route, &host),
        };
        let _ = answer.send(response);
    });
    answered
        .await
        .unwrap_or_else(|_| error_response(&ApiError::internal("delayed request dropped".to_string())))
}

fn dispatch(request: Request, route: Route, host: &str) -> Response {
    let result = match route {
        Route::Version => Ok(json_response(StatusCode::OK, &version_info())),
        Route::Health => Ok((StatusCode::OK, "ok").into_response()),
        Route::CoreVersions => Ok(json_response(StatusCode::OK, &core_versions(host))),
        Route::Groups => Ok(json_response(StatusCode::OK, &api_groups(&request))),
        Route::GroupVersion(group, version) => api_resources(&request, &group, &version),
        Route::Resource(path) => serve_resource(request, path),
        Route::OpenIdConfiguration => Ok(json_response(StatusCode::OK, &request.shared.issuer.discovery())),
        Route::Jwks => Ok(json_response(StatusCode::OK, &request.shared.issuer.jwks())),
        Route::Unknown => Err(ApiError::unknown_resource()),
    };
    result.unwrap_or_else(|e| error_response(&e))
}

fn verb(request: &Request, route: &Route) -> &'static str {
    let named = matches!(route, Route::Resource(ResourcePath { name: Some(_), .. }));
    match request.method {
        Method::GET if request.flag("watch") => "watch",
        Method::GET if named || !matches!(route, Route::Resource(_)) => "get",
        Method::GET => "list",
        Method::POST => "create",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE if named => "delete",
        Method::DELETE => "deletecollection",
        _ => "unknown",
    }
}

fn recorded(request: &Request, route: &Route, path: &str) -> Recorded {
    let mut rec = Recorded {
        method: request.method.as_str().to_string(),
        verb: verb(request, route).to_string(),
        group: String::new(),
        version: String::new(),
        resource: path.to_string(),
        subresource: None,
        namespace: None,
        name: None,
        patch_type: None,
        field_manager: request.param("fieldManager").map(Into::into),
        label_selector: request.param("labelSelector").map(Into::into),
        metadata_only: request.metadata_only,
        user_agent: request.user_agent.clone(),
    };
    if request.method == Method::PATCH {
        rec.patch_type = PatchKind::from_content_type(&request.content_type).map(|k| k.label().to_string());
    }
    if let Route::Resource(p) = route {
        rec.group.clone_from(&p.group);
        rec.version.clone_from(&p.version);
        rec.resource.clone_from(&p.plural);
        rec.subresource.clone_from(&p.subresource);
        rec.namespace.clone_from(&p.namespace);
        rec.name.clone_from(&p.name);
    }
    rec
}

pub(crate) fn json_response<T: Serialize + ?Sized>(status: StatusCode, body: &T) -> Response {
    match serde_json::to_vec(body) {
        Ok(bytes) => (status, [(header::CONTENT_TYPE, "application/json")], bytes).into_response(),
        Err(e) => error_response(&ApiError::internal(format!("serializing response: {e}"))),
    }
}

pub(crate) fn error_response(err: &ApiError) -> Response {
    let status = StatusCode::from_u16(err.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = serde_json::to_vec(&err.to_status()).unwrap_or_default();
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn object_response(status: StatusCode, obj: &Value, metadata_only: bool) -> Response {
    json_response(status, &ObjectView::new(obj, metadata_only))
}

fn serve_resource(request: Request, path: ResourcePath) -> Result<Response, ApiError> {
    let ck: CollKey = (path.group.clone(), path.plural.clone());
    let info = request
        .shared
        .store()
        .collection(&ck)
        .map(|c| c.info.clone())
        .ok_or_else(ApiError::unknown_resource)?;
    let scope_ok = match (&path.namespace, &path.name) {
        (Some(_), _) => info.namespaced,
        // Named cluster-wide URLs only exist for cluster-scoped resources.
        (None, Some(_)) => !info.namespaced,
        (None, None) => true,
    };
    if info.group.is_empty() && info.plural == "serviceaccounts" && path.subresource.as_deref() == Some("token") {
        return token_request(&request, &info, &ck, &path);
    }
    let target = match path.subresource.as_deref() {
        None => Target::Main,
        Some("status") if info.status_subresource => Target::Status,
        Some(_) => return Err(ApiError::unknown_resource()),
    };
    if info.version != path.version || !scope_ok {
        return Err(ApiError::unknown_resource());
    }
    let ns = path.namespace.clone().unwrap_or_default();
    match (&request.method, path.name.as_deref()) {
        (&Method::GET, name) if request.is_watch() => {
            let mut filter = request.filter()?;
            if let Some(name) = name {
                filter.fields = std::mem::take(&mut filter.fields).and(FieldSelector::name(name));
            }
            watch::start(
                request.shared.clone(),
                info,
                ck,
                path.namespace.clone(),
                filter,
                &request.query,
                request.metadata_only,
            )
        }
        (&Method::GET, Some(name)) => {
            let obj = request
                .shared
                .store()
                .get(&ck, &ns, name)
                .cloned()
                .ok_or_else(|| ApiError::not_found(&info, name))?;
            Ok(object_response(StatusCode::OK, &obj, request.metadata_only))
        }
        (&Method::GET, None) => list(&request, &info, &ck, path.namespace.as_deref()),
        (&Method::POST, None) if info.namespaced == path.namespace.is_some() => {
            let body = request.json_body()?;
            let obj = request.shared.store().create(&ck, &ns, body, &request.write_opts())?;
            Ok(object_response(StatusCode::CREATED, &obj, request.metadata_only))
        }
        (&Method::PUT, Some(name)) => {
            let body = request.json_body()?;
            let (obj, created) = request
                .shared
                .store()
                .update(&ck, &ns, name, body, target, &request.write_opts())?;
            Ok(object_response(created_status(created), &obj, request.metadata_only))
        }
        (&Method::PATCH, Some(name)) => {
            let kind = PatchKind::from_content_type(&request.content_type)
                .ok_or_else(|| ApiError::unsupported_media_type(&request.content_type))?;
            let body = request.json_body()?;
            let (obj, created) =
                request
                    .shared
                    .store()
                    .patch(&ck, &ns, name, kind, body, target, &request.write_opts())?;
            Ok(object_response(created_status(created), &obj, request.metadata_only))
        }
        (&Method::DELETE, Some(name)) if target == Target::Main => {
            let opts = delete_opts(&request)?;
            let outcome = request.shared.store().delete(&ck, &ns, name, &opts)?;
            Ok(match outcome {
                Deleted::Removed(obj) if !info.return_deleted_object => {
                    json_response(StatusCode::OK, &success_status(&info, &obj))
                }
                Deleted::Removed(obj) | Deleted::Pending(obj) => {
                    object_response(StatusCode::OK, &obj, request.metadata_only)
                }
            })
        }
        (&Method::DELETE, None) => delete_collection(&request, &info, &ck, path.namespace.as_deref()),
        _ => Err(ApiError::method_not_allowed()),
    }
}

/// `POST .../serviceaccounts/{name}/token`: a TokenRequest, answered with a signed token.
fn token_request(
    request: &Request,
    info: &ResourceInfo,
    ck: &CollKey,
    path: &ResourcePath,
) -> Result<Response, ApiError> {
    let (Some(ns), Some(name)) = (path.namespace.as_deref(), path.name.as_deref()) else {
        return Err(ApiError::unknown_resource());
    };
    if request.method != Method::POST {
        return Err(ApiError::method_not_allowed());
    }
    let body = request.json_body()?;
    let sa = request
        .shared
        .store()
        .get(ck, ns, name)
        .cloned()
        .ok_or_else(|| ApiError::not_found(info, name))?;
    let answer = request
        .shared
        .issuer
        .token_request(&sa, &body, jiff::Timestamp::now().as_second())?;
    Ok(json_response(StatusCode::CREATED, &answer))
}

fn created_status(created: bool) -> StatusCode {
    if created { StatusCode::CREATED } else { StatusCode::OK }
}

/// Parses `DeleteOptions` from the body (kube sends them there) and query.
fn delete_opts(request: &Request) -> Result<DeleteOpts, ApiError> {
    let body: Value = if request.body.iter().all(u8::is_ascii_whitespace) {
        Value::Null
    } else {
        request.json_body()?
    };
    let text = |v: Option<&Value>| v.and_then(Value::as_str).map(String::from);
    let policy = text(body.get("propagationPolicy")).or_else(|| request.param("propagationPolicy").map(Into::into));
    let dry_run = body
        .get("dryRun")
        .and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty())
        || request.param("dryRun").is_some();
    Ok(DeleteOpts {
        dry_run,
        precondition_uid: text(body.pointer("/preconditions/uid")),
        precondition_rv: text(body.pointer("/preconditions/resourceVersion")),
        orphan: policy.as_deref() == Some("Orphan") || body.get("orphanDependents") == Some(&Value::Bool(true)),
    })
}

/// The `Status` built-in types answer to an immediate delete.
fn success_status(info: &ResourceInfo, obj: &Value) -> Value {
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": {
            "name": meta::name(obj),
            "group": info.group,
            "kind": info.plural,
            "uid": meta::uid(obj),
        },
    })
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ListMeta {
    resource_version: String,
    #[serde(rename = "continue", skip_serializing_if = "Option::is_none")]
    continue_token: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ListBody<'a> {
    api_version: String,
    kind: String,
    metadata: ListMeta,
    items: Vec<ObjectView<'a>>,
}

fn list_response(info: &ResourceInfo, metadata_only: bool, metadata: ListMeta, items: &[Arc<Value>]) -> Response {
    let (api_version, kind) = if metadata_only {
        (META_API_VERSION.to_string(), "PartialObjectMetadataList".to_string())
    } else {
        (info.api_version(), format!("{}List", info.kind))
    };
    let body = ListBody {
        api_version,
        kind,
        metadata,
        items: items.iter().map(|o| ObjectView::new(o, metadata_only)).collect(),
    };
    json_response(StatusCode::OK, &body)
}

/// `GET` of a collection, with selectors and `limit`/`continue` pagination.
///
/// Continuation pages show the objects' current state (real servers show the
/// snapshot of the first page); a watch from the list's resourceVersion replays
/// the differences, so watchers still converge.
fn list(request: &Request, info: &ResourceInfo, ck: &CollKey, namespace: Option<&str>) -> Result<Response, ApiError> {
    let filter = request.filter()?;
    let limit = request
        .param("limit")
        .and_then(|l| l.parse::<usize>().ok())
        .filter(|l| *l > 0);
    let continuation = request.param("continue").map(parse_continue).transpose()?;
    let (items, metadata) = {
        let store = request.shared.store();
        let rv = match &continuation {
            Some((rv, _)) if *rv < store.compacted_rv => {
                drop(store);
                request.shared.record_gone(ck);
                return Err(ApiError::expired(
                    "The provided continue parameter is too old to display a consistent list result. \
                     You can start a new list without the continue parameter.",
                ));
            }
            Some((rv, _)) => *rv,
            None => store.rv,
        };
        let after = continuation.as_ref().map(|(_, key)| key);
        let page = store.list(ck, namespace, &filter, after, limit);
        let continue_token = page.next.map(|(ns, name)| format!("{rv}:{ns}:{name}"));
        let metadata = ListMeta {
            resource_version: rv.to_string(),
            continue_token,
        };
        (page.items, metadata)
    };
    Ok(list_response(info, request.metadata_only, metadata, &items))
}

fn parse_continue(token: &str) -> Result<(u64, (String, String)), ApiError> {
    let mut parts = token.splitn(3, ':');
    match (parts.next().and_then(|rv| rv.parse().ok()), parts.next(), parts.next()) {
        (Some(rv), Some(ns), Some(name)) => Ok((rv, (ns.to_string(), name.to_string()))),
        _ => Err(ApiError::bad_request("invalid continue token")),
    }
}

/// `DELETE` of a collection: deletes each matching object; answers the list of
/// affected objects.
fn delete_collection(
    request: &Request,
    info: &ResourceInfo,
    ck: &CollKey,
    namespace: Option<&str>,
) -> Result<Response, ApiError> {
    let filter = request.filter()?;
    let opts = delete_opts(request)?;
    let (items, rv) = {
        let mut store = request.shared.store();
        let targets = store.list(ck, namespace, &filter, None, None).items;
        let mut items = Vec::with_capacity(targets.len());
        for obj in targets {
            let ns = obj.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or("");
            let name = meta::name(&obj).unwrap_or_default();
            // Already collected as a dependent of an earlier deletion: skip.
            match store.delete(ck, ns, name, &opts) {
                Ok(Deleted::Removed(o) | Deleted::Pending(o)) => items.push(o),
                Err(e) if e.code == 404 => {}
                Err(e) => return Err(e),
            }
        }
        (items, store.rv)
    };
    let metadata = ListMeta {
        resource_version: rv.to_string(),
        continue_token: None,
    };
    Ok(list_response(info, request.metadata_only, metadata, &items))
}

fn version_info() -> Value {
    json!({
        "major": "1",
        "minor": "34",
        "gitVersion": "v1.34.0-fake",
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2025-01-01T00:00:00Z",
        "goVersion": "go1.24.0",
        "compiler": "gc",
        "platform": "linux/amd64",
    })
}

fn core_versions(host: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{ "clientCIDR": "0.0.0.0/0", "serverAddress": host }],
    })
}

/// `/apis`: one group per registered non-core group.
fn api_groups(request: &Request) -> Value {
    let store = request.shared.store();
    let mut versions: Vec<(String, String)> = store
        .infos()
        .filter(|i| !i.group.is_empty())
        .map(|i| (i.group.clone(), i.version.clone()))
        .collect();
    versions.sort();
    versions.dedup();
    let mut groups: Vec<Value> = Vec::new();
    for (group, version) in versions {
        let gv = json!({ "groupVersion": format!("{group}/{version}"), "version": version });
        match groups.iter_mut().find(|g| g["name"] == group.as_str()) {
            Some(g) => g["versions"].as_array_mut().expect("built as array").push(gv),
            None => groups.push(json!({ "name": group, "versions": [gv.clone()], "preferredVersion": gv })),
        }
    }
    json!({ "kind": "APIGroupList", "apiVersion": "v1", "groups": groups })
}

/// `/api/v1` and `/apis/{group}/{version}`: the resources served there.
fn api_resources(request: &Request, group: &str, version: &str) -> Result<Response, ApiError> {
    let store = request.shared.store();
    let mut infos: Vec<&Arc<ResourceInfo>> = store
        .infos()
        .filter(|i| i.group == group && i.version == version)
        .collect();
    if infos.is_empty() {
        return Err(ApiError::unknown_resource());
    }
    infos.sort_by(|a, b| a.plural.cmp(&b.plural));
    let verbs = [
        "create",
        "delete",
        "deletecollection",
        "get",
        "list",
        "patch",
        "update",
        "watch",
    ];
    let mut resources = Vec::new();
    for info in infos {
        resources.push(json!({
            "name": info.plural,
            "singularName": info.kind.to_lowercase(),
            "namespaced": info.namespaced,
            "kind": info.kind,
            "verbs": verbs,
        }));
        if info.status_subresource {
            resources.push(json!({
                "name": format!("{}/status", info.plural),
                "singularName": "",
                "namespaced": info.namespaced,
                "kind": info.kind,
                "verbs": ["get", "patch", "update"],
            }));
        }
    }
    let group_version = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Ok(json_response(
        StatusCode::OK,
        &json!({ "kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": resources }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(group: &str, plural: &str, ns: Option<&str>, name: Option<&str>, sub: Option<&str>) -> Route {
        Route::Resource(ResourcePath {
            group: group.into(),
            version: "v1".into(),
            plural: plural.into(),
            namespace: ns.map(Into::into),
            name: name.map(Into::into),
            subresource: sub.map(Into::into),
        })
    }

    #[test]
    fn routes() {
        assert_eq!(
            Route::parse("/api/v1/namespaces/ns/secrets"),
            res("", "secrets", Some("ns"), None, None)
        );
        assert_eq!(
            Route::parse("/api/v1/namespaces/ns/secrets/s"),
            res("", "secrets", Some("ns"), Some("s"), None)
        );
        assert_eq!(Route::parse("/api/v1/secrets"), res("", "secrets", None, None, None));
        assert_eq!(
            Route::parse("/api/v1/namespaces"),
            res("", "namespaces", None, None, None)
        );
        assert_eq!(
            Route::parse("/api/v1/namespaces/ns"),
            res("", "namespaces", None, Some("ns"), None)
        );
        assert_eq!(
            Route::parse("/api/v1/namespaces/ns/status"),
            res("", "namespaces", None, Some("ns"), Some("status"))
        );
        assert_eq!(
            Route::parse("/apis/x.dev/v1/namespaces/ns/widgets/w/status"),
            res("x.dev", "widgets", Some("ns"), Some("w"), Some("status"))
        );
        assert_eq!(
            Route::parse("/apis/x.dev/v1"),
            Route::GroupVersion("x.dev".into(), "v1".into())
        );
        assert_eq!(Route::parse("/version"), Route::Version);
        assert_eq!(
            Route::parse("/apis/x.dev/v1/widgets/system%3Afoo"),
            res("x.dev", "widgets", None, Some("system:foo"), None)
        );
        assert_eq!(
            Route::parse("/apis/x.dev/v1/namespaces/ns/widgets/w/status/extra"),
            Route::Unknown
        );
    }
}
