//! HTTP front: identity and impersonation, authorization, routing of
//! resource paths, verbs, and the request log.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::audit::{Attributes, Audit, Authorizer, RequestRecord};
use crate::error::ApiError;
use crate::kinds::{Kind, Registry};
use crate::patch::{self, PatchType};
use crate::select::{FieldSelector, LabelSelector};
use crate::store::{Store, Sub, WriteOpts};
use crate::{discovery, strict, table, watch};

/// Annotation whose value a pod's `/log` returns (tests set it).
pub const POD_LOG_ANNOTATION: &str = "testapi.xct.dev/log";

/// Shared server state.
pub struct App {
    pub store: Arc<Store>,
    pub audit: Arc<Audit>,
    pub authorizer: RwLock<Option<Authorizer>>,
    pub addr: String,
}

/// Where a resource request points.
#[derive(Debug, Clone)]
struct Target {
    kind: Kind,
    namespace: Option<String>,
    name: Option<String>,
    sub: Option<String>,
}

struct Identity {
    user: String,
    groups: Vec<String>,
    authenticated: String,
    authenticated_groups: Vec<String>,
    impersonated: bool,
}

/// The groups kube-apiserver gives a user: a ServiceAccount's two groups,
/// and `system:authenticated` for everyone.
/// The namespace and name of a ServiceAccount user name, as kube-apiserver's
/// `serviceaccount.SplitUsername` reads it: exactly two parts after the
/// prefix, each a valid name. Anything else (`...:demo:a:b`) is a plain user,
/// impersonated only with `impersonate` on users.
fn service_account_of(user: &str) -> Option<(&str, &str)> {
    let (ns, name) = user.strip_prefix("system:serviceaccount:")?.split_once(':')?;
    let ns_ok = crate::validate::check_name(ns).is_none() && ns.len() <= 63 && !ns.contains('.');
    (ns_ok && !name.contains(':') && crate::validate::check_name(name).is_none()).then_some((ns, name))
}

fn groups_of(user: &str) -> Vec<String> {
    match service_account_of(user) {
        Some((ns, _)) => {
            vec!["system:serviceaccounts".into(), format!("system:serviceaccounts:{ns}"), "system:authenticated".into()]
        }
        None => vec!["system:authenticated".into()],
    }
}

fn identity(headers: &HeaderMap) -> Identity {
    let authenticated = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_string)
        .unwrap_or_else(|| crate::rbac::ADMIN_USER.to_string());
    let authenticated_groups = groups_of(&authenticated);
    let imp_user = headers.get("impersonate-user").and_then(|v| v.to_str().ok()).map(str::to_string);
    let imp_groups: Vec<String> =
        headers.get_all("impersonate-group").iter().filter_map(|v| v.to_str().ok().map(str::to_string)).collect();
    match imp_user {
        // As kube-apiserver does: an impersonated ServiceAccount without
        // requested groups gets its own groups.
        Some(user) if imp_groups.is_empty() && service_account_of(&user).is_some() => {
            let groups = groups_of(&user);
            Identity { user, groups, authenticated, authenticated_groups, impersonated: true }
        }
        Some(user) => Identity { user, groups: imp_groups, authenticated, authenticated_groups, impersonated: true },
        None => Identity {
            user: authenticated.clone(),
            groups: authenticated_groups.clone(),
            authenticated,
            authenticated_groups,
            impersonated: false,
        },
    }
}

fn json_response(code: u16, v: &Value) -> Response {
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, [(header::CONTENT_TYPE, "application/json")], v.to_string()).into_response()
}

fn error_response(e: &ApiError) -> Response {
    json_response(e.code, &e.status())
}

fn parse_target(reg: &Registry, path: &str) -> Option<Target> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, rest) = match segs.as_slice() {
        ["api", v, rest @ ..] => ("", *v, rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => return None,
    };
    if rest.is_empty() {
        return None;
    }
    let s = |x: &&str| x.to_string();
    if rest.len() >= 3
        && rest[0] == "namespaces"
        && let Some(kind) = reg.find(group, version, rest[2]).filter(|k| k.namespaced)
    {
        if rest.len() > 5 {
            return None;
        }
        let (namespace, name, sub) = (Some(rest[1].to_string()), rest.get(3).map(s), rest.get(4).map(s));
        return Some(Target { kind: kind.clone(), namespace, name, sub });
    }
    if rest.len() > 3 {
        return None;
    }
    let kind = reg.find(group, version, rest[0])?;
    Some(Target { kind: kind.clone(), namespace: None, name: rest.get(1).map(s), sub: rest.get(2).map(s) })
}

fn query_pairs(uri: &Uri) -> Vec<(String, String)> {
    uri.query().and_then(|q| serde_urlencoded::from_str(q).ok()).unwrap_or_default()
}

fn param<'a>(q: &'a [(String, String)], key: &str) -> Option<&'a str> {
    q.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

fn verb_of(method: &Method, t: &Target, q: &[(String, String)]) -> &'static str {
    let watching = matches!(param(q, "watch"), Some("true" | "1"));
    match (method.as_str(), t.name.is_some()) {
        ("GET", false) if watching => "watch",
        ("GET", false) => "list",
        ("GET", true) => "get",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", true) => "delete",
        ("DELETE", false) => "deletecollection",
        _ => "other",
    }
}

/// The single entry point for every request.
pub async fn handle(
    State(app): State<Arc<App>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_string();
    let q = query_pairs(&uri);
    let who = identity(&headers);
    let reg = app.store.registry();
    let mut rec = RequestRecord {
        seq: 0,
        method: method.to_string(),
        path: path.clone(),
        query: uri.query().unwrap_or_default().to_string(),
        verb: "discovery".into(),
        group: String::new(),
        resource: String::new(),
        subresource: String::new(),
        namespace: String::new(),
        name: String::new(),
        user: who.user.clone(),
        authenticated_user: who.authenticated.clone(),
        impersonated: who.impersonated,
        groups: who.groups.clone(),
        dry_run: param(&q, "dryRun") == Some("All") || delete_dry_run(&method, &body),
        status: 200,
        content_type: headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string(),
    };
    let response = match parse_target(&reg, &path) {
        Some(target) => {
            rec.verb = verb_of(&method, &target, &q).into();
            rec.group = target.kind.group.clone();
            rec.resource = target.kind.plural.clone();
            rec.subresource = target.sub.clone().unwrap_or_default();
            rec.namespace = target.namespace.clone().unwrap_or_default();
            rec.name = target.name.clone().unwrap_or_default();
            match authorize(&app, &who, &rec) {
                Err(e) => error_response(&e),
                Ok(()) if target.kind.review => self_subject_review(&method, &who),
                Ok(()) => resource(&app, &method, &target, &q, &headers, &body, rec.dry_run).await,
            }
        }
        None => other(&app, &method, &path, &reg),
    };
    rec.status = response.status().as_u16();
    app.audit.push(rec);
    response
}

/// `SelfSubjectReview` (authentication.k8s.io/v1): who the caller is, as
/// `kubectl auth whoami` asks; answered, never stored.
fn self_subject_review(method: &Method, who: &Identity) -> Response {
    if method != Method::POST {
        return error_response(&ApiError::method_not_allowed("selfsubjectreviews can only be created"));
    }
    json_response(
        201,
        &json!({
            "apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview",
            "metadata": {"creationTimestamp": null},
            "status": {"userInfo": {"username": who.user, "groups": who.groups}},
        }),
    )
}

/// DeleteOptions carry `dryRun` in the body.
fn delete_dry_run(method: &Method, body: &[u8]) -> bool {
    method == Method::DELETE
        && serde_json::from_slice::<Value>(body)
            .ok()
            .and_then(|o| o["dryRun"].as_array().map(|a| a.iter().any(|v| v == "All")))
            .unwrap_or(false)
}

fn authorize(app: &App, who: &Identity, rec: &RequestRecord) -> Result<(), ApiError> {
    let guard = app.authorizer.read().unwrap_or_else(|e| e.into_inner());
    let Some(auth) = guard.as_ref() else {
        return Ok(());
    };
    if who.impersonated {
        let (resource, namespace, name) = match service_account_of(&who.user) {
            Some((ns, n)) => ("serviceaccounts", ns.to_string(), n.to_string()),
            None => ("users", String::new(), who.user.clone()),
        };
        let attrs = Attributes {
            user: who.authenticated.clone(),
            groups: who.authenticated_groups.clone(),
            verb: "impersonate".into(),
            group: String::new(),
            resource: resource.into(),
            subresource: String::new(),
            namespace,
            name,
        };
        if !auth(&attrs) {
            return Err(ApiError::forbidden(format!(
                "{resource} \"{}\" is forbidden: User \"{}\" cannot impersonate resource \"{resource}\" in API group \"\"",
                attrs.name, who.authenticated
            )));
        }
    }
    let attrs = Attributes {
        user: who.user.clone(),
        groups: who.groups.clone(),
        verb: rec.verb.clone(),
        group: rec.group.clone(),
        resource: rec.resource.clone(),
        subresource: rec.subresource.clone(),
        namespace: rec.namespace.clone(),
        name: rec.name.clone(),
    };
    if auth(&attrs) {
        return Ok(());
    }
    let scope = if rec.namespace.is_empty() {
        "at the cluster scope".to_string()
    } else {
        format!("in the namespace \"{}\"", rec.namespace)
    };
    let res =
        if rec.subresource.is_empty() { rec.resource.clone() } else { format!("{}/{}", rec.resource, rec.subresource) };
    Err(ApiError::forbidden(format!(
        "{res} \"{}\" is forbidden: User \"{}\" cannot {} resource \"{res}\" in API group \"{}\" {scope}",
        rec.name, who.user, rec.verb, rec.group
    )))
}

fn other(app: &App, method: &Method, path: &str, reg: &Registry) -> Response {
    let segs: Vec<&str> = path.trim_matches('/').split('/').filter(|s| !s.is_empty()).collect();
    let doc = match (method.as_str(), segs.as_slice()) {
        ("GET", ["version"]) => Some(discovery::version()),
        ("GET", ["healthz" | "livez" | "readyz"]) => return (StatusCode::OK, "ok").into_response(),
        ("GET", ["api"]) => Some(discovery::core_versions(&app.addr)),
        ("GET", ["api", v]) => discovery::resources(reg, "", v),
        ("GET", ["apis"]) => Some(discovery::groups(reg)),
        ("GET", ["apis", g]) => discovery::group(reg, g),
        ("GET", ["apis", g, v]) => discovery::resources(reg, g, v),
        ("GET", ["openapi", "v3"]) => Some(discovery::openapi_root(reg)),
        ("GET", ["openapi", "v3", "api", v]) => discovery::openapi_group_version(reg, "", v),
        ("GET", ["openapi", "v3", "apis", g, v]) => discovery::openapi_group_version(reg, g, v),
        ("GET", ["_testapi", "requests"]) => Some(serde_json::to_value(app.audit.records()).unwrap_or_default()),
        ("POST", ["_testapi", "compact"]) => {
            app.store.compact();
            Some(json!({"compacted": true}))
        }
        _ => None,
    };
    match doc {
        Some(d) => json_response(200, &d),
        None => error_response(&ApiError::not_found("path", path)),
    }
}

fn parse_object(headers: &HeaderMap, body: &[u8]) -> Result<Value, ApiError> {
    let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("application/json");
    let base = ct.split(';').next().unwrap_or_default().trim();
    if !matches!(base, "application/json" | "application/yaml" | "") {
        // Protobuf and CBOR are not served; clients fall back to JSON on 415.
        return Err(ApiError::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml; got {ct:?}"
            ),
        ));
    }
    let v: Result<Value, String> = if ct.contains("yaml") {
        serde_yaml::from_slice(body).map_err(|e| e.to_string())
    } else {
        serde_json::from_slice(body).map_err(|e| e.to_string())
    };
    v.map_err(|e| ApiError::bad_request(format!("the request body could not be decoded: {e}")))
}

async fn resource(
    app: &App,
    method: &Method,
    t: &Target,
    q: &[(String, String)],
    headers: &HeaderMap,
    body: &[u8],
    dry_run: bool,
) -> Response {
    let store = &app.store;
    let kind = &t.kind;
    let ns = t.namespace.clone().unwrap_or_default();
    if kind.namespaced && t.namespace.is_none() && (t.name.is_some() || method != Method::GET) {
        return error_response(&ApiError::not_found(&kind.resource_name(), t.name.as_deref().unwrap_or("")));
    }
    if method == Method::GET && t.name.is_none() && matches!(param(q, "watch"), Some("true" | "1")) {
        return watch_response(app, t, q);
    }
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let result = (|| -> Result<(u16, Value), ApiError> {
        let labels = LabelSelector::parse(param(q, "labelSelector").unwrap_or_default())?;
        let fields = FieldSelector::parse(param(q, "fieldSelector").unwrap_or_default())?;
        let sub = t.sub.as_deref();
        let strict = strict::requested(param(q, "fieldValidation"));
        // The object a write would store, refused here when strict field
        // validation was asked for and it has a field its kind lacks.
        let checked = |obj: Value| -> Result<Value, ApiError> {
            if strict {
                strict::check(kind, &obj)?;
            }
            Ok(obj)
        };
        if let Some(s) = sub {
            let known = (s == "status" && kind.status) || (s == "scale" && kind.scale) || (s == "log" && kind.log);
            if !known {
                return Err(ApiError::not_found(
                    &format!("{}/{s}", kind.resource_name()),
                    t.name.as_deref().unwrap_or(""),
                ));
            }
        }
        let out = match (method.as_str(), t.name.as_deref(), sub) {
            ("GET", None, _) => {
                let limit = param(q, "limit").and_then(|l| l.parse().ok());
                let page = store.list(kind, t.namespace.as_deref(), &labels, &fields, limit, param(q, "continue"))?;
                if table::wants_table(accept) {
                    (200, table::table(kind, &page.items, page.resource_version))
                } else {
                    let mut meta = json!({"resourceVersion": page.resource_version.to_string()});
                    if let Some(c) = page.continue_token {
                        meta["continue"] = json!(c);
                        meta["remainingItemCount"] = json!(page.remaining);
                    }
                    (
                        200,
                        json!({"kind": format!("{}List", kind.kind), "apiVersion": kind.api_version(), "metadata": meta, "items": page.items}),
                    )
                }
            }
            ("GET", Some(name), Some("scale")) => (200, scale_of(&store.get(kind, &ns, name)?)),
            ("GET", Some(name), Some("log")) => {
                let pod = store.get(kind, &ns, name)?;
                let text = pod["metadata"]["annotations"][POD_LOG_ANNOTATION].as_str().unwrap_or_default().to_string();
                let tail = param(q, "tailLines").and_then(|n| n.parse::<usize>().ok());
                let lines: Vec<&str> = text.lines().collect();
                let start = tail.map_or(0, |n| lines.len().saturating_sub(n));
                return Ok((200, Value::String(lines[start..].join("\n"))));
            }
            ("GET", Some(name), _) => {
                let obj = store.get(kind, &ns, name)?;
                if table::wants_table(accept) {
                    (200, table::table(kind, &[obj], store.resource_version()))
                } else {
                    (200, obj)
                }
            }
            ("POST", None, None) => {
                let obj = parse_object(headers, body)?;
                (201, store.create(kind, &ns, checked(obj)?, dry_run)?)
            }
            ("PUT", Some(name), Some("scale")) => {
                let body = parse_object(headers, body)?;
                (200, set_scale(store, kind, &ns, name, dry_run, &body)?)
            }
            ("PUT", Some(name), sub) => {
                let body = parse_object(headers, body)?;
                let s = if sub == Some("status") { Sub::Status } else { Sub::Main };
                (200, store.update(kind, &ns, name, WriteOpts { sub: s, dry_run }, |_| checked(body), None)?)
            }
            ("PATCH", Some(name), sub) => {
                let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
                let pt = PatchType::from_content_type(ct)?;
                if pt == PatchType::Strategic && kind.crd.is_some() {
                    // kube-apiserver serves strategic merge for built-in kinds only.
                    return Err(ApiError::unsupported_media(ct));
                }
                let p = patch::parse_body(pt, body)?;
                if sub == Some("scale") {
                    let current = scale_of(&store.get(kind, &ns, name)?);
                    let patched = patch::apply(pt, &current, &p)?;
                    return Ok((200, set_scale(store, kind, &ns, name, dry_run, &patched)?));
                }
                let s = if sub == Some("status") { Sub::Status } else { Sub::Main };
                let create = if pt == PatchType::Apply {
                    if param(q, "fieldManager").is_none_or(str::is_empty) {
                        return Err(ApiError::invalid(
                            "PatchOptions",
                            "",
                            vec!["fieldManager: Required value: is required for apply patch".into()],
                        ));
                    }
                    Some(p.clone())
                } else {
                    None
                };
                let existed = store.get(kind, &ns, name).is_ok();
                if let Some(manifest) = create.as_ref().filter(|_| !existed) {
                    checked(manifest.clone())?;
                }
                let obj = store.update(
                    kind,
                    &ns,
                    name,
                    WriteOpts { sub: s, dry_run },
                    |cur| checked(patch::apply(pt, cur, &p)?),
                    create,
                )?;
                (if existed { 200 } else { 201 }, obj)
            }
            ("DELETE", Some(name), None) => {
                let opts: Value = if body.is_empty() {
                    json!({})
                } else {
                    serde_json::from_slice(body).unwrap_or_else(|_| json!({}))
                };
                (200, store.delete(kind, &ns, name, &opts["preconditions"], dry_run)?)
            }
            ("DELETE", None, None) => {
                let page = store.list(kind, t.namespace.as_deref(), &labels, &fields, None, None)?;
                for item in &page.items {
                    let n = item["metadata"]["name"].as_str().unwrap_or_default();
                    let item_ns = item["metadata"]["namespace"].as_str().unwrap_or_default();
                    store.delete(kind, item_ns, n, &Value::Null, dry_run)?;
                }
                (200, json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"}))
            }
            _ => {
                return Err(ApiError::method_not_allowed(format!("{method} is not supported on this path")));
            }
        };
        Ok(out)
    })();
    match result {
        Ok((code, Value::String(text))) => {
            (StatusCode::from_u16(code).unwrap_or(StatusCode::OK), [(header::CONTENT_TYPE, "text/plain")], text)
                .into_response()
        }
        Ok((code, v)) => json_response(code, &v),
        Err(e) => error_response(&e),
    }
}

fn watch_response(app: &App, t: &Target, q: &[(String, String)]) -> Response {
    let labels = LabelSelector::parse(param(q, "labelSelector").unwrap_or_default());
    let fields = FieldSelector::parse(param(q, "fieldSelector").unwrap_or_default());
    let (labels, fields) = match (labels, fields) {
        (Ok(l), Ok(f)) => (l, f),
        (Err(e), _) | (_, Err(e)) => return error_response(&e),
    };
    let from = param(q, "resourceVersion").filter(|v| !v.is_empty() && *v != "0").map(|v| v.parse::<u64>());
    let from = match from {
        None => None,
        Some(Ok(v)) => Some(v),
        Some(Err(_)) => {
            return error_response(&ApiError::bad_request("resourceVersion must be a number"));
        }
    };
    let req = watch::WatchRequest {
        kind: t.kind.clone(),
        namespace: t.namespace.clone(),
        labels,
        fields,
        from,
        send_initial_events: param(q, "sendInitialEvents") == Some("true"),
        bookmarks: param(q, "allowWatchBookmarks") == Some("true"),
        timeout: Duration::from_secs(param(q, "timeoutSeconds").and_then(|s| s.parse().ok()).unwrap_or(1800)),
    };
    let rx = watch::start(app.store.clone(), req);
    let stream = futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) });
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from_stream(stream))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

fn scale_of(obj: &Value) -> Value {
    let m = &obj["metadata"];
    let selector = obj["spec"]["selector"]["matchLabels"]
        .as_object()
        .map(|l| l.iter().map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default())).collect::<Vec<_>>().join(","))
        .unwrap_or_default();
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {"name": m["name"], "namespace": m["namespace"], "uid": m["uid"], "resourceVersion": m["resourceVersion"], "creationTimestamp": m["creationTimestamp"]},
        "spec": {"replicas": obj["spec"]["replicas"].as_i64().unwrap_or(1)},
        "status": {"replicas": obj["status"]["replicas"].as_i64().unwrap_or(0), "selector": selector},
    })
}

fn set_scale(
    store: &Store,
    kind: &Kind,
    ns: &str,
    name: &str,
    dry_run: bool,
    scale: &Value,
) -> Result<Value, ApiError> {
    let replicas = scale["spec"]["replicas"].as_i64().filter(|r| *r >= 0).ok_or_else(|| {
        ApiError::invalid("Scale", name, vec!["spec.replicas: Invalid value: must be a non-negative integer".into()])
    })?;
    let precondition = scale["metadata"]["resourceVersion"].as_str().map(str::to_string);
    let updated = store.update(
        kind,
        ns,
        name,
        WriteOpts { sub: Sub::Main, dry_run },
        |cur| {
            let mut n = cur.clone();
            n["spec"]["replicas"] = json!(replicas);
            if let Some(rv) = &precondition {
                n["metadata"]["resourceVersion"] = json!(rv);
            }
            Ok(n)
        },
        None,
    )?;
    Ok(scale_of(&updated))
}
