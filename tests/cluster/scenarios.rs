//! API scenarios written against any `kube::Client`: run on the in-memory
//! test API server in CI, and on a real cluster by `tests/cluster/run.sh`.

use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams};
use kube::{Client, Discovery};
use serde_json::json;

const CRD: &str = include_str!("widget-crd.yaml");

async fn eventually<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..120 {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("timed out waiting for {what}");
}

fn code(e: kube::Error) -> u16 {
    match e {
        kube::Error::Api(s) => s.code,
        other => panic!("expected an API error, got {other:?}"),
    }
}

/// Every scenario, in a fresh namespace `ns`.
pub async fn all(client: Client, ns: &str) {
    let crds: Api<DynamicObject> = Api::all_with(
        client.clone(),
        &ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("apiextensions.k8s.io", "v1", "CustomResourceDefinition"),
            "customresourcedefinitions",
        ),
    );
    let crd: DynamicObject = serde_yaml::from_str(CRD).unwrap();
    crds.patch("widgets.example.dev", &PatchParams::apply("xct-tests").force(), &Patch::Apply(&crd)).await.unwrap();
    eventually("the CRD to be served", || {
        let c = client.clone();
        async move { Discovery::new(c).run().await.is_ok_and(|d| d.get("example.dev").is_some()) }
    })
    .await;
    let nss: Api<Namespace> = Api::all(client.clone());
    let n: Namespace = serde_json::from_value(json!({"metadata": {"name": ns}})).unwrap();
    nss.create(&PostParams::default(), &n).await.unwrap();

    let res = ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("example.dev", "v1", "Widget"), "widgets");
    let widgets: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &res);
    let w: DynamicObject = serde_json::from_value(
        json!({"apiVersion": "example.dev/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": {"size": 1}}),
    )
    .unwrap();
    // Create, conflict, generation, status subresource.
    let created = widgets.create(&PostParams::default(), &w).await.unwrap();
    assert_eq!(code(widgets.create(&PostParams::default(), &w).await.unwrap_err()), 409);
    let mut stale = created.clone();
    widgets.patch("w", &PatchParams::default(), &Patch::Merge(json!({"spec": {"size": 2}}))).await.unwrap();
    stale.data["spec"]["size"] = json!(5);
    assert_eq!(code(widgets.replace("w", &PostParams::default(), &stale).await.unwrap_err()), 409);
    let s = widgets
        .patch_status("w", &PatchParams::default(), &Patch::Merge(json!({"status": {"phase": "Ok"}})))
        .await
        .unwrap();
    assert_eq!(s.metadata.generation, Some(2));
    assert_eq!(s.data["status"]["phase"], "Ok");
    // Schema validation at admission.
    let bad: DynamicObject = serde_json::from_value(
        json!({"apiVersion": "example.dev/v1", "kind": "Widget", "metadata": {"name": "bad"}, "spec": {"size": -1}}),
    )
    .unwrap();
    assert_eq!(code(widgets.create(&PostParams::default(), &bad).await.unwrap_err()), 422);
    // Dry run stores nothing.
    let dry: DynamicObject = serde_json::from_value(
        json!({"apiVersion": "example.dev/v1", "kind": "Widget", "metadata": {"name": "dry"}, "spec": {"size": 1}}),
    )
    .unwrap();
    widgets.create(&PostParams { dry_run: true, ..Default::default() }, &dry).await.unwrap();
    assert_eq!(code(widgets.get("dry").await.unwrap_err()), 404);
    // Finalizers hold deletion until removed.
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let held: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "held", "finalizers": ["example.dev/hold"]}})).unwrap();
    cms.create(&PostParams::default(), &held).await.unwrap();
    cms.delete("held", &DeleteParams::default()).await.unwrap();
    assert!(cms.get("held").await.unwrap().metadata.deletion_timestamp.is_some());
    cms.patch("held", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"finalizers": null}}))).await.unwrap();
    eventually("the configmap to go", || {
        let cms = cms.clone();
        async move { cms.get("held").await.is_err() }
    })
    .await;
    // Namespace deletion removes what is in it.
    nss.delete(ns, &DeleteParams::default()).await.unwrap();
    eventually("the namespace to go", || {
        let nss = nss.clone();
        let ns = ns.to_string();
        async move { nss.get(&ns).await.is_err() }
    })
    .await;
}
