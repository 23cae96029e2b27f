//! RBAC is the outer bound, enforced by the test API server from the
//! chart's rendered RBAC (tests/fixtures/rbac, kept equal to the chart by
//! scripts/check-chart.sh): the chart grants the operator what a run needs
//! (no request of its own is refused, cluster-wide or with watchNamespace),
//! what it does not grant is refused with a real cluster's 403, and a run
//! whose ServiceAccount lacks a verb gets a coded error with nothing
//! changed.

mod support;

use std::sync::Arc;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::json;
use support::*;
use xct::crd::{RunPhase, XctRun};
use xct::model::ScriptedDecider;
use xct::protocol::{ErrorCode, Signal};
use xct_testapi::RequestRecord;

fn scale_then_done() -> Vec<String> {
    vec![
        json!({"next_step": {"tool": "k8s.scale", "arguments": {"kind": "Deployment", "name": "web", "replicas": 3}, "goal": "scale"}}).to_string(),
        r#"{"done":true,"message":"scaled"}"#.into(),
    ]
}

/// The operator's requests (its own and those it made impersonating).
fn operators(log: &[RequestRecord]) -> Vec<&RequestRecord> {
    log.iter().filter(|r| r.authenticated_user == OPERATOR_USER).collect()
}

async fn scale_run_succeeds(srv: &xct_testapi::TestApiServer, namespace: Option<&str>) {
    let admin = srv.client();
    let runs: Api<XctRun> = Api::namespaced(admin.clone(), NS);
    let operator = start_operator(srv, Arc::new(ScriptedDecider::new(scale_then_done())), namespace);
    create_scale_run(&runs, "scale-web", 5).await;
    let done = wait_all_terminal(&runs, 1).await;
    operator.abort();
    let status = done[0].status.clone().unwrap();
    assert_eq!(status.phase, RunPhase::Succeeded, "{:?}", status.steps.iter().map(|s| &s.verdict).collect::<Vec<_>>());
    let deploys: Api<Deployment> = Api::namespaced(admin, NS);
    assert_eq!(deploys.get("web").await.unwrap().spec.replicas, Some(3));
    let log = srv.requests();
    let ops = operators(&log);
    // Watches, the status writes, the policy's namespace read, the Event,
    // the dry run and the patch: all of them made, none refused.
    let refused: Vec<_> = ops.iter().filter(|r| r.status == 403).collect();
    assert!(refused.is_empty(), "the chart's RBAC refused the operator: {refused:#?}");
    let kinds = |f: &dyn Fn(&&&RequestRecord) -> bool| ops.iter().filter(f).count();
    assert!(kinds(&|r| r.resource == "xctruns" && r.subresource == "status" && r.verb == "patch") >= 2);
    assert!(kinds(&|r| r.resource == "xctpolicies" && r.verb == "list") >= 1);
    assert!(kinds(&|r| r.resource == "namespaces" && r.verb == "get") >= 1);
    assert!(kinds(&|r| r.resource == "events" && r.verb == "create") >= 1);
    let patches: Vec<_> = ops.iter().filter(|r| r.resource == "deployments" && r.verb == "patch").collect();
    assert_eq!(patches.len(), 2, "a dry run, then the patch: {patches:#?}");
    assert!(patches.iter().all(|r| r.impersonated && r.user == xct::k8s::service_account_user(NS, SA)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chart_grants_the_operator_what_a_run_needs() {
    let srv = cluster().await;
    scale_run_succeeds(&srv, None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_watch_namespace_the_charts_roles_grant_what_a_run_needs() {
    let srv = cluster_with_rbac("tests/fixtures/rbac/chart-watch-demo.yaml").await;
    scale_run_succeeds(&srv, Some(NS)).await;
    // That Role is the bound: the same operator cannot read runs elsewhere.
    let op = kube::Client::try_from(operator_config(&srv)).unwrap();
    let err = Api::<XctRun>::all(op).list(&Default::default()).await.unwrap_err();
    assert!(matches!(err, kube::Error::Api(ref e) if e.code == 403), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_the_chart_does_not_grant_is_refused_with_a_403() {
    let srv = cluster().await;
    let op = kube::Client::try_from(operator_config(&srv)).unwrap();
    let forbidden = |r: Result<_, kube::Error>, what: &str| match r {
        Err(kube::Error::Api(e)) => assert_eq!(e.code, 403, "{what}: {e:?}"),
        other => panic!("{what}: expected 403, got {:?}", other.map(|_| ())),
    };
    // As itself: no Deployments, no Secrets, no deletes of anything.
    forbidden(
        Api::<Deployment>::namespaced(op.clone(), NS).delete("web", &DeleteParams::default()).await.map(|_| ()),
        "delete a Deployment",
    );
    forbidden(Api::<Secret>::namespaced(op.clone(), NS).list(&Default::default()).await.map(|_| ()), "list Secrets");
    forbidden(Api::<ConfigMap>::namespaced(op.clone(), NS).get("any").await.map(|_| ()), "read a ConfigMap");
    // Impersonation: only ServiceAccounts named xct-runner (resourceNames).
    let mut cfg = operator_config(&srv);
    cfg.auth_info.impersonate = Some(xct::k8s::service_account_user(NS, "deployer"));
    let as_deployer = kube::Client::try_from(cfg).unwrap();
    forbidden(Api::<Deployment>::namespaced(as_deployer, NS).get("web").await.map(|_| ()), "impersonate deployer");
    // A user with no binding cannot create runs; one bound to edit can,
    // through the chart's run-editor role aggregated into edit.
    let run: XctRun = serde_yaml::from_str(&format!(
        "apiVersion: xct.dev/v1alpha1\nkind: XctRun\nmetadata: {{name: r}}\nspec:\n  goal: g\n  tools: [k8s.get]\n  serviceAccountName: {SA}\n"
    ))
    .unwrap();
    let carol = srv.client_with_token("carol");
    forbidden(
        Api::<XctRun>::namespaced(carol.clone(), NS).create(&PostParams::default(), &run).await.map(|_| ()),
        "carol creates",
    );
    grant_edit(&srv.client(), &["carol"]).await;
    Api::<XctRun>::namespaced(carol, NS).create(&PostParams::default(), &run).await.unwrap();
}

/// The runs' ServiceAccount with only examples/cluster/demo.yaml's Role: a
/// delete of a ConfigMap is refused at the server-side dry run (before any
/// human is asked to approve it), the model gets DRY_RUN_FAILED with the
/// 403, and no delete reaches storage.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_whose_service_account_lacks_a_verb_gets_a_coded_error_and_nothing_changes() {
    let srv = cluster().await;
    let admin = srv.client();
    Api::<k8s_openapi::api::rbac::v1::RoleBinding>::namespaced(admin.clone(), NS)
        .delete("xct-runner-tests", &DeleteParams::default())
        .await
        .unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(admin.clone(), NS);
    cms.create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": "old"}})).unwrap())
        .await
        .unwrap();
    let delete = json!({"next_step": {"tool": "k8s.delete", "arguments": {"kind": "ConfigMap", "name": "old"}, "goal": "clean up"}});
    let decider = ScriptedDecider::new(vec![delete.to_string(), r#"{"done":true,"message":"cannot"}"#.into()]);
    srv.clear_requests();
    let operator = start_operator(&srv, Arc::new(decider), None);
    let runs: Api<XctRun> = Api::namespaced(admin.clone(), NS);
    let run: XctRun = serde_yaml::from_str(&format!(
        "apiVersion: xct.dev/v1alpha1\nkind: XctRun\nmetadata: {{name: cleanup, annotations: {{xct.dev/created-by: alice}}}}\nspec:\n  goal: delete old config\n  tools: [k8s.delete]\n  serviceAccountName: {SA}\n"
    ))
    .unwrap();
    runs.create(&PostParams::default(), &run).await.unwrap();
    let done = wait_all_terminal(&runs, 1).await;
    operator.abort();
    let status = done[0].status.clone().unwrap();
    let step = &status.steps[0];
    match step.signal.as_ref() {
        Some(Signal::Error { code, details, .. }) => {
            assert_eq!(*code, ErrorCode::DryRunFailed);
            assert_eq!(details.as_ref().unwrap()["httpCode"], 403);
        }
        other => panic!("expected DRY_RUN_FAILED, got {other:?}"),
    }
    assert!(cms.get("old").await.is_ok(), "the ConfigMap is still there");
    let deletes: Vec<_> =
        srv.requests().into_iter().filter(|r| r.verb == "delete" && r.resource == "configmaps").collect();
    assert_eq!(deletes.len(), 1, "one dry run was tried: {deletes:#?}");
    assert!(
        deletes[0].dry_run && deletes[0].status == 403 && deletes[0].user == xct::k8s::service_account_user(NS, SA)
    );
    let approvals = srv.requests().into_iter().filter(|r| r.resource == "xctapprovals" && r.verb == "create").count();
    assert_eq!(approvals, 0, "nobody is asked to approve what RBAC refuses");
}
