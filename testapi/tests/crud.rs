//! The server's behaviour through the real kube client.

mod common;

use common::*;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod};
use kube::api::{Api, DeleteParams, ListParams, LogParams, Patch, PatchParams, PostParams};
use kube::discovery::Discovery;
use serde_json::json;
use xct_testapi::TestApiServer;

fn cm(name: &str, labels: serde_json::Value) -> ConfigMap {
    serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}, "data": {"k": "v"}})).unwrap()
}

#[tokio::test]
async fn discovery_lists_builtins_and_registered_crds() {
    let srv = TestApiServer::start().await.unwrap();
    let client = srv.client();
    let d = Discovery::new(client.clone()).run().await.unwrap();
    let apps = d.get("apps").expect("apps group");
    assert!(apps.recommended_resources().iter().any(|(r, _)| r.plural == "deployments"));
    assert!(d.get("example.dev").is_none());
    install_widgets(&client).await;
    let d = Discovery::new(client.clone()).run().await.unwrap();
    let (res, caps) = d
        .get("example.dev")
        .expect("CRD group is served")
        .recommended_resources()
        .into_iter()
        .find(|(r, _)| r.kind == "Widget")
        .unwrap();
    assert_eq!(res.plural, "widgets");
    assert!(caps.subresources.iter().any(|(s, _)| s.plural.ends_with("status")), "{:?}", caps.subresources);
    let v = client.apiserver_version().await.unwrap();
    assert_eq!(v.major, "1");
}

#[tokio::test]
async fn crud_status_codes() {
    let srv = TestApiServer::start().await.unwrap();
    let client = srv.client();
    namespace(&client, "a").await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "a");
    let created = cms.create(&PostParams::default(), &cm("one", json!({}))).await.unwrap();
    assert_eq!(created.metadata.namespace.as_deref(), Some("a"));
    assert!(created.metadata.uid.is_some() && created.metadata.creation_timestamp.is_some());
    assert_eq!(code(cms.create(&PostParams::default(), &cm("one", json!({}))).await.unwrap_err()), 409);
    assert_eq!(code(cms.get("missing").await.unwrap_err()), 404);
    // Stale resourceVersion on update: 409 Conflict.
    let mut stale = created.clone();
    let mut fresh = created.clone();
    fresh.data = Some([("k".to_string(), "v2".to_string())].into());
    cms.replace("one", &PostParams::default(), &fresh).await.unwrap();
    stale.data = Some([("k".to_string(), "v3".to_string())].into());
    let e = cms.replace("one", &PostParams::default(), &stale).await.unwrap_err();
    assert!(matches!(&e, kube::Error::Api(s) if s.code == 409 && s.reason == "Conflict"), "{e:?}");
    // Invalid name: 422.
    assert_eq!(code(cms.create(&PostParams::default(), &cm("Not_Valid", json!({}))).await.unwrap_err()), 422);
    // Namespace that does not exist: 404.
    let other: Api<ConfigMap> = Api::namespaced(client.clone(), "nope");
    assert_eq!(code(other.create(&PostParams::default(), &cm("x", json!({}))).await.unwrap_err()), 404);
    // Unknown patch content type: 415.
    let req = http::Request::patch(format!("{}/api/v1/namespaces/a/configmaps/one", srv.url()))
        .header("content-type", "text/plain")
        .body(b"{}".to_vec())
        .unwrap();
    let e = client.request::<ConfigMap>(req).await.unwrap_err();
    assert_eq!(code(e), 415);
    cms.delete("one", &DeleteParams::default()).await.unwrap();
    assert_eq!(code(cms.get("one").await.unwrap_err()), 404);
}

#[tokio::test]
async fn generation_and_the_status_subresource() {
    let srv = TestApiServer::start().await.unwrap();
    let client = srv.client();
    install_widgets(&client).await;
    namespace(&client, "w").await;
    let api = widgets(&client, "w");
    let mut w = widget("one", 1);
    w.data["status"] = json!({"phase": "Ignored"});
    let w = api.create(&PostParams::default(), &w).await.unwrap();
    assert_eq!(w.metadata.generation, Some(1));
    assert!(w.data.get("status").is_none(), "status is dropped on create when it is a subresource");
    // Spec change: generation +1. Status in the main endpoint is ignored.
    let w = api
        .patch(
            "one",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"size": 2}, "status": {"phase": "Sneaky"}})),
        )
        .await
        .unwrap();
    assert_eq!(w.metadata.generation, Some(2));
    assert!(w.data.get("status").is_none());
    // Status write: generation unchanged.
    let w = api
        .patch_status(
            "one",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"phase": "Ready"}, "spec": {"size": 99}})),
        )
        .await
        .unwrap();
    assert_eq!(w.metadata.generation, Some(2));
    assert_eq!(w.data["status"]["phase"], "Ready");
    assert_eq!(w.data["spec"]["size"], 2, "the status endpoint ignores spec");
    // A status write that changes nothing: same resourceVersion.
    let before = srv.resource_version();
    let same = api
        .patch_status("one", &PatchParams::default(), &Patch::Merge(json!({"status": {"phase": "Ready"}})))
        .await
        .unwrap();
    assert_eq!(rv(&same), rv(&w));
    assert_eq!(srv.resource_version(), before);
    // Metadata-only change: new resourceVersion, same generation.
    let l = api
        .patch("one", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"labels": {"a": "b"}}})))
        .await
        .unwrap();
    assert!(rv(&l) > rv(&w));
    assert_eq!(l.metadata.generation, Some(2));
    // Schema validation at admission: required field and minimum.
    let mut bad = widget("bad", -1);
    assert_eq!(code(api.create(&PostParams::default(), &bad).await.unwrap_err()), 422);
    bad.data["spec"] = json!({"color": "red"});
    let e = api.create(&PostParams::default(), &bad).await.unwrap_err();
    assert!(
        matches!(&e, kube::Error::Api(s) if s.code == 422 && s.message.contains("spec.size: Required value")),
        "{e:?}"
    );
}

#[tokio::test]
async fn patch_types_and_apply() {
    let srv = TestApiServer::start().await.unwrap();
    let client = srv.client();
    namespace(&client, "p").await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "p");
    // Apply creates, then merges.
    let applied = cms
        .patch(
            "cfg",
            &PatchParams::apply("tester"),
            &Patch::Apply(
                json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg"}, "data": {"a": "1"}}),
            ),
        )
        .await
        .unwrap();
    assert_eq!(applied.data.unwrap()["a"], "1");
    let applied = cms
        .patch(
            "cfg",
            &PatchParams::apply("tester"),
            &Patch::Apply(
                json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg"}, "data": {"b": "2"}}),
            ),
        )
        .await
        .unwrap();
    assert_eq!(applied.data.as_ref().unwrap()["b"], "2");
    // Apply without a field manager is refused.
    let req = http::Request::patch(format!("{}/api/v1/namespaces/p/configmaps/cfg", srv.url()))
        .header("content-type", "application/apply-patch+yaml")
        .body(b"data: {c: '3'}".to_vec())
        .unwrap();
    assert_eq!(code(client.request::<ConfigMap>(req).await.unwrap_err()), 422);
    // JSON patch with a failing test op: 422 and nothing changes.
    let jp: json_patch::Patch = serde_json::from_value(
        json!([{"op": "test", "path": "/data/a", "value": "nope"}, {"op": "replace", "path": "/data/a", "value": "x"}]),
    )
    .unwrap();
    assert_eq!(code(cms.patch("cfg", &PatchParams::default(), &Patch::<()>::Json(jp)).await.unwrap_err()), 422);
    let jp: json_patch::Patch = serde_json::from_value(
        json!([{"op": "test", "path": "/data/a", "value": "1"}, {"op": "replace", "path": "/data/a", "value": "x"}]),
    )
    .unwrap();
    assert_eq!(
        cms.patch("cfg", &PatchParams::default(), &Patch::<()>::Json(jp)).await.unwrap().data.unwrap()["a"],
        "x"
    );
    // Strategic merge is accepted (as merge).
    let s = cms.patch("cfg", &PatchParams::default(), &Patch::Strategic(json!({"data": {"s": "1"}}))).await.unwrap();
    assert_eq!(s.data.unwrap()["s"], "1");
    // A patch carrying a stale resourceVersion conflicts.
    let e = cms
        .patch(
            "cfg",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"resourceVersion": "1"}, "data": {"z": "1"}})),
        )
        .await
        .unwrap_err();
    assert_eq!(code(e), 409);
}

#[tokio::test]
async fn scale_subresource() {
    let srv = TestApiServer::start().await.unwrap();
    let client = srv.client();
    namespace(&client, "s").await;
    let deploys: Api<Deployment> = Api::namespaced(client.clone(), "s");
    let d: Deployment = serde_json::from_value(json!({"metadata": {"name": "web"}, "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}}, "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}})).unwrap();
    deploys.create(&PostParams::default(), &d).await.unwrap();
    let scale = deploys.get_scale("web").await.unwrap();
    assert_eq!(scale.spec.unwrap().replicas, Some(2));
    assert_eq!(scale.status.unwrap().selector.as_deref(), Some("app=web"));
    let scaled = deploys
        .patch_scale("web", &PatchParams::default(), &Patch::Merge(json!({"spec": {"replicas": 5}})))
        .await
        .unwrap();
    assert_eq!(scaled.spec.unwrap().replicas, Some(5));
    let d = deploys.get("web").await.unwrap();
    assert_eq!(d.spec.replicas, Some(5));
    assert_eq!(d.metadata.generation, Some(2));
    assert_eq!(d.status.unwrap().replicas, Some(5));
    let e = deploys
        .patch_scale("web", &PatchParams::default(), &Patch::Merge(json!({"spec": {"replicas": -1}})))
        .await
        .unwrap_err();
    assert_eq!(code(e), 422);
}

#[tokio::test]
async fn finalizers_and_namespace_deletion() {
    let srv = TestApiServer::start().await.unwrap();
    let client = srv.client();
    namespace(&client, "f").await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "f");
    let mut held = cm("held", json!({}));
    held.metadata.finalizers = Some(vec!["example.dev/keep".into()]);
    cms.create(&PostParams::default(), &held).await.unwrap();
    cms.create(&PostParams::default(), &cm("free", json!({}))).await.unwrap();
    cms.delete("held", &DeleteParams::default()).await.unwrap();
    let h = cms.get("held").await.unwrap();
    assert!(h.metadata.deletion_timestamp.is_some(), "marked, not gone");
    cms.patch("held", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"finalizers": null}}))).await.unwrap();
    assert_eq!(code(cms.get("held").await.unwrap_err()), 404, "removing the last finalizer deletes");
    // Namespace deletion removes its objects (and then the namespace).
    let mut held = cm("held2", json!({}));
    held.metadata.finalizers = Some(vec!["example.dev/keep".into()]);
    cms.create(&PostParams::default(), &held).await.unwrap();
    let nss: Api<Namespace> = Api::all(client.clone());
    nss.delete("f", &DeleteParams::default()).await.unwrap();
    assert_eq!(code(cms.get("free").await.unwrap_err()), 404);
    assert_eq!(nss.get("f").await.unwrap().status.unwrap().phase.as_deref(), Some("Terminating"));
    assert_eq!(code(cms.create(&PostParams::default(), &cm("late", json!({}))).await.unwrap_err()), 403);
    cms.patch("held2", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"finalizers": []}}))).await.unwrap();
    assert_eq!(code(nss.get("f").await.unwrap_err()), 404, "an emptied terminating namespace goes");
}

#[tokio::test]
async fn selectors_and_paging() {
    let srv = TestApiServer::start().await.unwrap();
    let client = srv.client();
    namespace(&client, "l").await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "l");
    for i in 0..7 {
        let tier = if i % 2 == 0 { "front" } else { "back" };
        cms.create(&PostParams::default(), &cm(&format!("c{i}"), json!({"tier": tier, "n": i.to_string()})))
            .await
            .unwrap();
    }
    let names = |l: kube::core::ObjectList<ConfigMap>| {
        l.items.into_iter().map(|c| c.metadata.name.unwrap()).collect::<Vec<_>>()
    };
    assert_eq!(names(cms.list(&ListParams::default().labels("tier=front")).await.unwrap()), ["c0", "c2", "c4", "c6"]);
    assert_eq!(
        names(cms.list(&ListParams::default().labels("tier in (back),n notin (1)")).await.unwrap()),
        ["c3", "c5"]
    );
    assert_eq!(names(cms.list(&ListParams::default().fields("metadata.name=c3")).await.unwrap()), ["c3"]);
    assert_eq!(
        names(cms.list(&ListParams::default().fields("metadata.name!=c3").labels("tier=back")).await.unwrap()),
        ["c1", "c5"]
    );
    let mut seen = vec![];
    let mut lp = ListParams::default().limit(3);
    loop {
        let page = cms.list(&lp).await.unwrap();
        let next = page.metadata.continue_.clone();
        seen.extend(names(page));
        match next {
            Some(c) if !c.is_empty() => lp = lp.continue_token(&c),
            _ => break,
        }
    }
    assert_eq!(seen, ["c0", "c1", "c2", "c3", "c4", "c5", "c6"]);
    let all: Api<ConfigMap> = Api::all(client.clone());
    assert_eq!(all.list(&ListParams::default()).await.unwrap().items.len(), 7);
    assert_eq!(code(cms.list(&ListParams::default().labels("a in b")).await.unwrap_err()), 400);
}

#[tokio::test]
async fn dry_run_persists_nothing() {
    let srv = TestApiServer::start().await.unwrap();
    let client = srv.client();
    namespace(&client, "d").await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "d");
    let rv0 = srv.resource_version();
    let created = cms.create(&PostParams { dry_run: true, ..Default::default() }, &cm("dry", json!({}))).await.unwrap();
    assert_eq!(created.metadata.name.as_deref(), Some("dry"));
    assert_eq!(code(cms.get("dry").await.unwrap_err()), 404);
    assert_eq!(srv.resource_version(), rv0, "no new resourceVersion");
    // Validation still runs in a dry run.
    assert_eq!(
        code(
            cms.create(&PostParams { dry_run: true, ..Default::default() }, &cm("Bad!", json!({}))).await.unwrap_err()
        ),
        422
    );
    cms.create(&PostParams::default(), &cm("real", json!({}))).await.unwrap();
    let rv1 = srv.resource_version();
    let pp = PatchParams { dry_run: true, ..Default::default() };
    let p = cms.patch("real", &pp, &Patch::Merge(json!({"data": {"k": "dry"}}))).await.unwrap();
    assert_eq!(p.data.unwrap()["k"], "dry");
    assert_eq!(cms.get("real").await.unwrap().data.unwrap()["k"], "v");
    cms.delete("real", &DeleteParams { dry_run: true, ..Default::default() }).await.unwrap();
    assert!(cms.get("real").await.is_ok());
    assert_eq!(srv.resource_version(), rv1);
    let log = srv.requests();
    assert_eq!(log.iter().filter(|r| r.dry_run && r.is_mutation()).count(), 4);
    assert!(log.iter().filter(|r| r.dry_run).all(|r| !r.is_persisted_mutation()));
}

#[tokio::test]
async fn impersonation_request_log_and_authorization() {
    let srv = TestApiServer::start().await.unwrap();
    let admin = srv.client();
    namespace(&admin, "i").await;
    let sa = "system:serviceaccount:i:runner";
    let as_sa: Api<ConfigMap> = Api::namespaced(srv.client_as(sa), "i");
    srv.clear_requests();
    as_sa.create(&PostParams::default(), &cm("by-sa", json!({}))).await.unwrap();
    let log = srv.requests();
    assert_eq!(log.len(), 1);
    let r = &log[0];
    assert_eq!(
        (r.verb.as_str(), r.resource.as_str(), r.namespace.as_str(), r.user.as_str()),
        ("create", "configmaps", "i", sa)
    );
    assert!(r.impersonated && r.authenticated_user == "admin" && r.status == 201);
    // Authorization hook: the SA may read configmaps but not write; nobody reads secrets.
    srv.set_authorizer(Some(std::sync::Arc::new(|a: &xct_testapi::Attributes| {
        a.resource != "secrets"
            && (a.verb == "impersonate" || a.user == "admin" || matches!(a.verb.as_str(), "get" | "list" | "watch"))
    })));
    assert!(as_sa.get("by-sa").await.is_ok());
    let e = as_sa.create(&PostParams::default(), &cm("nope", json!({}))).await.unwrap_err();
    assert!(
        matches!(&e, kube::Error::Api(s) if s.code == 403 && s.message.contains("cannot create resource \"configmaps\"")),
        "{e:?}"
    );
    let secrets: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(admin.clone(), "i");
    assert_eq!(code(secrets.get("x").await.unwrap_err()), 403);
    // Impersonating is itself authorized.
    srv.set_authorizer(Some(std::sync::Arc::new(|a: &xct_testapi::Attributes| a.verb != "impersonate")));
    assert_eq!(code(as_sa.get("by-sa").await.unwrap_err()), 403);
    assert!(srv.requests().iter().any(|r| r.status == 403 && r.user == sa));
}

/// As kube-apiserver's `SplitUsername`: a ServiceAccount user name has
/// exactly a namespace and a valid name after the prefix; any other
/// (`...:i:runner:x`, `...:i:Runner`) is a plain user, so impersonating it
/// needs `impersonate` on users, and it gets no ServiceAccount groups.
#[tokio::test]
async fn only_a_well_formed_service_account_name_is_impersonated_as_one() {
    let srv = TestApiServer::start().await.unwrap();
    namespace(&srv.client(), "i").await;
    let asked = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = asked.clone();
    srv.set_authorizer(Some(std::sync::Arc::new(move |a: &xct_testapi::Attributes| {
        if a.verb == "impersonate" {
            seen.lock().unwrap().push((a.resource.clone(), a.namespace.clone(), a.name.clone()));
        }
        a.verb != "impersonate" || a.resource == "serviceaccounts"
    })));
    let get = |user: &str| {
        let cms: Api<ConfigMap> = Api::namespaced(srv.client_as(user), "i");
        async move { cms.get_opt("x").await }
    };
    assert!(get("system:serviceaccount:i:runner").await.is_ok());
    for user in ["system:serviceaccount:i:runner:x", "system:serviceaccount:i:Runner", "system:serviceaccount:i.j:r"] {
        assert_eq!(code(get(user).await.unwrap_err()), 403, "{user}");
    }
    let asked = asked.lock().unwrap().clone();
    assert_eq!(asked[0], ("serviceaccounts".to_string(), "i".to_string(), "runner".to_string()));
    assert_eq!(asked.len(), 4);
    assert!(asked[1..].iter().all(|(resource, ns, _)| resource == "users" && ns.is_empty()), "{asked:?}");
    let groups: Vec<_> = srv.requests().into_iter().map(|r| (r.user, r.groups)).collect();
    assert!(
        groups.iter().any(|(u, g)| u.ends_with(":i:runner") && g.contains(&"system:serviceaccounts:i".to_string()))
    );
    assert!(groups.iter().filter(|(u, _)| u.ends_with(":runner:x")).all(|(_, g)| g.is_empty()), "{groups:?}");
}

#[tokio::test]
async fn pod_logs() {
    let srv = TestApiServer::start().await.unwrap();
    let client = srv.client();
    namespace(&client, "pl").await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "pl");
    let p: Pod = serde_json::from_value(json!({"metadata": {"name": "p", "annotations": {"testapi.xct.dev/log": "one\ntwo\nthree"}}, "spec": {"containers": [{"name": "c", "image": "x"}]}})).unwrap();
    pods.create(&PostParams::default(), &p).await.unwrap();
    assert_eq!(pods.logs("p", &LogParams::default()).await.unwrap(), "one\ntwo\nthree");
    assert_eq!(pods.logs("p", &LogParams { tail_lines: Some(2), ..Default::default() }).await.unwrap(), "two\nthree");
}
