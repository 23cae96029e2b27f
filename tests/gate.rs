//! Every way around the gate, attacked through the operator and checked
//! from the test API server's request log: hostile names for every
//! Kubernetes tool, a Secret hidden in `k8s.apply`, repeated JSON keys.

mod support;

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, DynamicObject, PostParams};
use serde_json::{Value, json};
use support::*;
use xct::crd::{RunPhase, XctPolicy, XctRun};
use xct::engine::record::StepRecord;
use xct::model::ScriptedDecider;
use xct::protocol::Signal;
use xct_testapi::RequestRecord;

/// The names from the security review: URL syntax, traversal, encodings,
/// empty, too long, Unicode, uppercase.
fn hostile_names() -> Vec<String> {
    ["?", "/", "a/status", "x:8080/proxy/y", "%2F", "..", "", "wéb", "Web", "web?watch=true", "web/../../secrets"]
        .into_iter()
        .map(str::to_string)
        .chain([&"a".repeat(300)].into_iter().cloned())
        .collect()
}

fn step(tool: &str, args: Value) -> String {
    json!({"next_step": {"tool": tool, "arguments": args, "goal": "test"}}).to_string()
}

/// Every single-object argument of every Kubernetes tool, set to `n`.
fn hostile_proposals(n: &str) -> Vec<String> {
    vec![
        step("k8s.get", json!({"kind": "ConfigMap", "name": n})),
        step("k8s.get", json!({"kind": "Secret", "name": n})),
        step("k8s.delete", json!({"kind": "ConfigMap", "name": n})),
        step("k8s.scale", json!({"kind": "Deployment", "name": n, "replicas": 2})),
        step("k8s.patch", json!({"kind": "Service", "name": n, "patch": {"metadata": {"labels": {"x": "y"}}}})),
        step(
            "k8s.apply",
            json!({"manifest": {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": n}, "data": {}}}),
        ),
        step("k8s.rollout_restart", json!({"kind": "Deployment", "name": n})),
        step("k8s.logs", json!({"pod": n})),
        step("k8s.logs", json!({"pod": "web-0", "container": n})),
        step("k8s.events", json!({"name": n})),
    ]
}

/// Label selectors that must not reach the server's selector parser.
const HOSTILE_SELECTORS: [&str; 4] = ["app=web&watch=true", "a?b", "x:8080", "%2F"];

const ALL_TOOLS: &str =
    "[k8s.get, k8s.list, k8s.scale, k8s.patch, k8s.apply, k8s.delete, k8s.rollout_restart, k8s.logs, k8s.events]";

async fn create(client: &kube::Client, api_version: &str, kind: &str, plural: &str, body: Value) {
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let ar =
        kube::api::ApiResource::from_gvk_with_plural(&kube::api::GroupVersionKind::gvk(group, version, kind), plural);
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), NS, &ar);
    api.create(&PostParams::default(), &serde_json::from_value(body).unwrap()).await.unwrap();
}

/// The demo namespace plus a Pod, a Service, a ConfigMap and a Secret whose
/// value must never be shown.
async fn cluster_with_objects(policies: bool) -> xct_testapi::TestApiServer {
    let srv = xct_testapi::TestApiServer::start().await.unwrap();
    let admin = srv.client();
    install_crds(&admin).await;
    install_demo(&admin).await;
    if policies {
        install_policies(&admin).await;
    }
    create(&admin, "v1", "Pod", "pods", json!({"metadata": {"name": "web-0", "labels": {"app": "web"}}, "spec": {"containers": [{"name": "web", "image": "nginx"}]}})).await;
    create(
        &admin,
        "v1",
        "Service",
        "services",
        json!({"metadata": {"name": "web"}, "spec": {"ports": [{"port": 80}]}}),
    )
    .await;
    create(&admin, "v1", "ConfigMap", "configmaps", json!({"metadata": {"name": "settings"}, "data": {"mode": "on"}}))
        .await;
    create(
        &admin,
        "v1",
        "Secret",
        "secrets",
        json!({"metadata": {"name": "db"}, "data": {"password": "aHVudGVyMg=="}}),
    )
    .await;
    srv
}

async fn allow_policy(client: &kube::Client, name: &str, tools: &str) {
    let p: XctPolicy = serde_yaml::from_str(&format!(
        "apiVersion: xct.dev/v1alpha1\nkind: XctPolicy\nmetadata: {{name: {name}}}\nspec:\n  rules: [{{name: allow, tools: {tools}, effect: Allow}}]\n"
    ))
    .unwrap();
    Api::<XctPolicy>::all(client.clone()).create(&PostParams::default(), &p).await.unwrap();
}

async fn run_to_end(
    srv: &xct_testapi::TestApiServer,
    name: &str,
    tools: &str,
    outputs: Vec<String>,
) -> Vec<StepRecord> {
    let admin = srv.client();
    let max = outputs.len() + 1;
    // maxTokens at its largest: the 300-character names then fit the
    // argument bounds it derives (engine/bounds.rs) and reach the target
    // check this file is about (a smaller budget refuses them at the schema).
    let controller = start_operator(srv, Arc::new(ScriptedDecider::new(outputs)), None);
    let runs: Api<XctRun> = Api::namespaced(admin.clone(), NS);
    let run: XctRun = serde_yaml::from_str(&format!(
        "apiVersion: xct.dev/v1alpha1\nkind: XctRun\nmetadata: {{name: {name}}}\nspec:\n  goal: g\n  tools: {tools}\n  serviceAccountName: {SA}\n  limits: {{maxSteps: {max}, maxConsecutiveErrors: 1000}}\n  model: {{maxTokens: 4096}}\n"
    ))
    .unwrap();
    runs.create(&PostParams::default(), &run).await.unwrap();
    let mut done = false;
    for _ in 0..1200 {
        if runs.get(name).await.unwrap().status.is_some_and(|s| s.phase.is_terminal()) {
            done = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    controller.abort();
    assert!(done, "run {name} did not finish: {:?}", runs.get(name).await.unwrap().status);
    let (run, steps) = xct::operator::archive::full_history(&admin, NS, name).await.unwrap();
    assert_eq!(run.status.unwrap().phase, RunPhase::Succeeded);
    steps
}

fn sa_requests(log: &[RequestRecord]) -> Vec<RequestRecord> {
    let sa = xct::k8s::service_account_user(NS, SA);
    log.iter().filter(|r| r.user == sa).cloned().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_names_never_leave_the_gate() {
    let srv = cluster_with_objects(false).await;
    allow_policy(&srv.client(), "allow-everything", "['*']").await;
    let mut outputs = Vec::new();
    for n in hostile_names() {
        outputs.extend(hostile_proposals(&n));
    }
    outputs.extend(HOSTILE_SELECTORS.iter().map(|s| step("k8s.list", json!({"kind": "Pod", "labelSelector": s}))));
    let hostile = outputs.len();
    // A repeated key: the text reads 3 first, serde_json alone would run 0.
    outputs.push(r#"{"next_step":{"tool":"k8s.scale","arguments":{"kind":"Deployment","name":"web","replicas":3,"replicas":0},"goal":"g"}}"#.into());
    // Controls: the same tools with valid names do reach the API.
    let controls = [
        step("k8s.get", json!({"kind": "ConfigMap", "name": "settings"})),
        step("k8s.get", json!({"kind": "Secret", "name": "db"})),
        step("k8s.logs", json!({"pod": "web-0", "container": "web"})),
        step("k8s.scale", json!({"kind": "Deployment", "name": "web", "replicas": 2})),
        step("k8s.events", json!({"name": "web"})),
        step("k8s.list", json!({"kind": "Pod", "labelSelector": "app=web"})),
    ];
    outputs.extend(controls.iter().cloned());
    // The first done is held back once: the refused hostile changes were
    // refused for how they were written and are unmade.
    outputs.extend([r#"{"done":true,"message":"probed"}"#.to_string(), r#"{"done":true,"message":"probed"}"#.into()]);
    srv.clear_requests();
    let steps = run_to_end(&srv, "hostile", ALL_TOOLS, outputs.clone()).await;
    assert_eq!(steps.len(), outputs.len());

    // Every hostile proposal: a coded refusal from the target check.
    for s in &steps[..hostile] {
        assert_eq!(s.outcome_label(), "INVALID_ARGUMENTS", "{}: {:?}", s.decision, s.signal);
        assert_eq!(s.verdict.decided_by.as_deref(), Some("target"), "{}", s.decision);
    }
    assert!(
        format!("{:?}", steps[0].signal).contains("DNS-1123"),
        "the refusal teaches the rule: {:?}",
        steps[0].signal
    );
    let repeated = &steps[hostile];
    assert_eq!(repeated.outcome_label(), "INVALID_PROPOSAL", "{:?}", repeated.signal);
    assert!(format!("{:?}", repeated.signal).contains("repeats the key \\\"replicas\\\""), "{:?}", repeated.signal);
    for s in &steps[hostile + 1..steps.len() - 2] {
        assert_eq!(s.outcome_label(), "Success", "{}: {:?}", s.decision, s.signal);
    }
    assert_eq!(steps[steps.len() - 2].verdict.decided_by.as_deref(), Some(xct::engine::UNMADE_DONE));

    // From the request log: only the controls were sent, each about exactly
    // its validated object, and nothing else.
    let sent = sa_requests(&srv.requests());
    let mut seen: Vec<String> =
        sent.iter().map(|r| format!("{} {}/{}/{} {}", r.verb, r.resource, r.name, r.subresource, r.dry_run)).collect();
    seen.sort();
    let mut expected = vec![
        "get configmaps/settings/ false", // the judge's read, then k8s.get
        "get configmaps/settings/ false",
        "get secrets/db/ false",             // k8s.get only: the judge never reads a Secret
        "get pods/web-0/ false",             // the judge's read of the pod
        "get pods/web-0/log false",          // k8s.logs
        "get deployments/web/ false",        // the judge's read
        "patch deployments/web/scale true",  // the dry run
        "get deployments/web/scale false",   // replicas before
        "patch deployments/web/scale false", // the one mutation
        "list events// false",               // k8s.events about web: none, so
        "list events// false",               // all of them, for the hint
        "list pods// false",                 // k8s.list
    ];
    expected.sort();
    assert_eq!(seen, expected, "requests made as the run's ServiceAccount: {sent:#?}");
    for r in &sent {
        assert!(!r.path.contains("proxy") && !r.query.contains("watch"), "{r:?}");
        assert!(matches!(r.verb.as_str(), "get" | "list" | "patch"), "{r:?}");
    }
    let logs = sent.iter().find(|r| r.subresource == "log").unwrap();
    assert!(logs.query.contains(&format!("limitBytes={}", xct::k8s::tools::MAX_LOG_BYTES)), "{}", logs.query);
    let events = sent.iter().find(|r| r.resource == "events").unwrap();
    assert!(events.query.contains("fieldSelector=involvedObject.name%3Dweb"), "{}", events.query);
    // The one mutation happened once, to 2 replicas (not 0, not 3).
    let deploys: Api<Deployment> = Api::namespaced(srv.client(), NS);
    assert_eq!(deploys.get("web").await.unwrap().spec.replicas, Some(2));
    // The Secret's value never reached the history.
    let secret_step = &steps[hostile + 2];
    assert!(format!("{:?}", secret_step.signal).contains("<redacted>"), "{:?}", secret_step.signal);
    let text = serde_json::to_string(&steps).unwrap();
    assert!(!text.contains("aHVudGVyMg==") && !text.contains("hunter2"));
}

/// `k8s.apply` of a Secret: the kind is in `manifest.kind`, not in
/// `arguments.kind`. The baseline's no-secrets rule reads the normalized
/// `proposal.target`, so it holds even where a site policy allows apply.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn applying_a_secret_is_denied_by_the_baseline() {
    let srv = cluster_with_objects(true).await;
    allow_policy(&srv.client(), "site-apply", "['k8s.apply']").await;
    let apply = |kind: &str, name: &str| {
        step(
            "k8s.apply",
            json!({"manifest": {"apiVersion": "v1", "kind": kind, "metadata": {"name": name}, "stringData": {"token": "s3cr3t"}, "data": {}}}),
        )
    };
    let outputs = vec![
        apply("Secret", "leaked"),
        step(
            "k8s.apply",
            json!({"manifest": {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "fine"}, "data": {"a": "b"}}}),
        ),
        r#"{"done":true,"message":"applied"}"#.to_string(),
    ];
    srv.clear_requests();
    let steps = run_to_end(&srv, "apply-secret", "[k8s.apply]", outputs).await;
    assert_eq!(steps[0].outcome_label(), "POLICY_VETO", "{:?}", steps[0].signal);
    assert_eq!(steps[0].verdict.decided_by.as_deref(), Some("baseline/no-secrets"));
    assert_eq!(steps[1].outcome_label(), "Success", "{:?}", steps[1].signal);
    let sent = sa_requests(&srv.requests());
    assert!(!sent.iter().any(|r| r.resource == "secrets"), "nothing about the Secret was sent: {sent:#?}");
    let applied: Vec<_> = sent.iter().filter(|r| r.resource == "configmaps" && r.is_persisted_mutation()).collect();
    assert_eq!(applied.len(), 1, "the allowed apply ran once: {sent:#?}");
    assert_eq!(applied[0].name, "fine");
}

/// A patch with fields the kind does not have (a misspelt field) would be
/// accepted by kube-apiserver's default field validation, the unknown field
/// dropped, and reported to the model as "patched": a success that changed
/// nothing. The tools ask for `fieldValidation=Strict`, so the server's dry
/// run refuses it and nothing is written. A JSON Patch operation sent as
/// the patch fails `k8s.patch`'s schema (a patch's top-level fields are
/// those of a resource) and nothing is sent at all. Patches are strategic
/// merges: a container without its name is refused, the refusal saying
/// which list needs names, and a container given by name is changed in
/// place, its other fields and the other containers kept (a JSON merge
/// patch would have replaced the list, dropping them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_patch_with_fields_the_kind_lacks_is_refused_at_the_dry_run() {
    let srv = cluster_with_objects(false).await;
    allow_policy(&srv.client(), "site-patch", "['k8s.patch']").await;
    let web = json!({"name": "web", "image": "nginx:1.26", "env": [{"name": "MODE", "value": "live"}]});
    let shop = json!({"metadata": {"name": "shop"}, "spec": {"selector": {"matchLabels": {"app": "shop"}}, "template": {"metadata": {"labels": {"app": "shop"}}, "spec": {"containers": [web, {"name": "proxy", "image": "envoy:1"}]}}}});
    create(&srv.client(), "apps/v1", "Deployment", "deployments", shop).await;
    let patch = |name: &str, p: Value| step("k8s.patch", json!({"kind": "Deployment", "name": name, "patch": p}));
    let container =
        |field: &str| json!({"spec": {"template": {"spec": {"containers": [{"name": "web", field: "nginx:1.27"}]}}}});
    let outputs = vec![
        patch("web", json!({"op": "replace", "path": "/spec/template/spec/containers/0/image", "value": "nginx:1.27"})),
        patch("web", container("imagee")),
        patch("web", json!({"spec": {"template": {"spec": {"containers": [{"image": "nginx:1.27"}]}}}})),
        patch("web", container("image")),
        patch("shop", container("image")),
        r#"{"done":true,"message":"patched"}"#.to_string(),
    ];
    srv.clear_requests();
    let steps = run_to_end(&srv, "strict-patch", "[k8s.patch]", outputs).await;
    let text = |i: usize| serde_json::to_string(&steps[i].signal).unwrap();
    assert_eq!(steps[0].outcome_label(), "INVALID_ARGUMENTS", "{}", text(0));
    assert!(text(0).contains("arguments do not match the schema of k8s.patch: /patch"), "{}", text(0));
    assert!(text(0).contains("'op'"), "the refusal names the field no resource has: {}", text(0));
    assert_eq!(steps[0].verdict.decided_by.as_deref(), Some("schema"));
    assert_eq!(steps[1].outcome_label(), "DRY_RUN_FAILED", "{}", text(1));
    assert!(text(1).contains(r#"unknown field \"spec.template.spec.containers[0].imagee\""#), "{}", text(1));
    assert_eq!(steps[2].outcome_label(), "DRY_RUN_FAILED", "{}", text(2));
    assert!(text(2).contains("map[image:nginx:1.27] does not contain declared merge key: name"), "{}", text(2));
    assert!(
        text(2).contains(
            r#"a patch matches the items of /spec/template/spec/containers by name: give each item the \"name\""#
        ),
        "the refusal says which list needs names: {}",
        text(2)
    );
    assert_eq!(steps[3].outcome_label(), "Success", "{}", text(3));
    assert_eq!(steps[4].outcome_label(), "Success", "{}", text(4));

    let sent = sa_requests(&srv.requests());
    let patches: Vec<_> = sent.iter().filter(|r| r.verb == "patch").collect();
    let shown: Vec<String> = patches.iter().map(|r| format!("{} {} {}", r.name, r.dry_run, r.status)).collect();
    assert_eq!(
        shown,
        ["web true 400", "web true 500", "web true 200", "web false 200", "shop true 200", "shop false 200"],
        "no patch for the JSON Patch; dry runs, then one write each: {patches:#?}"
    );
    for r in &patches {
        assert!(r.query.contains("fieldValidation=Strict"), "{r:?}");
        assert_eq!(r.content_type, "application/strategic-merge-patch+json", "{r:?}");
    }
    let deploys: Api<Deployment> = Api::namespaced(srv.client(), NS);
    let web = deploys.get("web").await.unwrap();
    let image = web.spec.template.spec.map(|p| p.containers[0].image.clone());
    assert_eq!(image, Some(Some("nginx:1.27".to_string())));
    let shop = deploys.get("shop").await.unwrap().spec.template.spec.unwrap();
    let kept: Vec<_> =
        shop.containers.iter().map(|c| (c.name.as_str(), c.image.as_deref().unwrap_or_default())).collect();
    assert_eq!(kept, [("web", "nginx:1.27"), ("proxy", "envoy:1")], "the other container is kept");
    let env = shop.containers[0].env.as_ref().unwrap();
    assert_eq!((env.len(), env[0].name.as_str(), env[0].value.as_deref()), (1, "MODE", Some("live")), "and its env");
}

/// A name the model guessed: the signal names the objects of that kind
/// that do exist (and, for events, the objects events are about), read
/// with one list as the run's ServiceAccount, so the next step can use a
/// real name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_name_is_answered_with_the_names_that_exist() {
    let srv = cluster_with_objects(false).await;
    allow_policy(&srv.client(), "site", "['k8s.get', 'k8s.events', 'k8s.scale']").await;
    let about_web = json!({"metadata": {"name": "web.failed"}, "involvedObject": {"kind": "Deployment", "name": "web", "namespace": NS}, "reason": "Failed", "type": "Warning", "message": "Failed to pull image"});
    create(&srv.client(), "v1", "Event", "events", about_web).await;
    let outputs = vec![
        step("k8s.get", json!({"kind": "Pod", "name": "web-deployment-0"})),
        step("k8s.events", json!({"name": "web-deployment"})),
        step("k8s.scale", json!({"kind": "Deployment", "name": "api", "replicas": 2})),
        step("k8s.events", json!({"name": "web"})),
        r#"{"done":true,"message":"looked"}"#.to_string(),
        r#"{"done":true,"message":"looked"}"#.to_string(),
    ];
    srv.clear_requests();
    let steps = run_to_end(&srv, "guessed", "[k8s.get, k8s.events, k8s.scale]", outputs).await;
    let text = |i: usize| serde_json::to_string(&steps[i].signal).unwrap();
    assert_eq!(steps[0].outcome_label(), "EXECUTION_FAILED", "{}", text(0));
    assert!(text(0).contains("the Pod objects in demo are: web-0"), "{}", text(0));
    assert!(text(0).contains(r#""existing":["web-0"]"#), "{}", text(0));
    assert_eq!(steps[1].outcome_label(), "Success", "{}", text(1));
    assert!(
        text(1).contains("no events are about web-deployment; events in demo are about: Deployment/web"),
        "{}",
        text(1)
    );
    assert_eq!(steps[2].outcome_label(), "DRY_RUN_FAILED", "{}", text(2));
    assert!(text(2).contains("the Deployment objects in demo are: web"), "{}", text(2));
    assert!(!text(3).contains("hint"), "events that exist need no hint: {}", text(3));
    assert!(text(4).contains("done while a change is unmade: step 3 (k8s.scale)"), "the guessed scale: {}", text(4));

    let sent = sa_requests(&srv.requests());
    let lists: Vec<String> =
        sent.iter().filter(|r| r.verb == "list").map(|r| format!("{} {}", r.resource, r.query)).collect();
    assert_eq!(lists.len(), 5, "the Pods, two event lists, the Deployments, the events about web: {lists:#?}");
    assert!(!sent.iter().any(|r| r.is_persisted_mutation()), "nothing was written: {sent:#?}");
}

/// `k8s.logs` with `contains`: the tool counts the matching lines of the
/// log it fetched; a search over two lines is refused before any request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_search_counts_the_matching_lines() {
    let srv = cluster_with_objects(false).await;
    allow_policy(&srv.client(), "site", "['k8s.logs']").await;
    let log = "10:00 starting\n10:01 ERROR disk full\n10:02 retry\n10:03 ERROR disk full\n";
    let pod = json!({"metadata": {"name": "api-0", "annotations": {"testapi.xct.dev/log": log}}, "spec": {"containers": [{"name": "api", "image": "api:1.0"}]}});
    create(&srv.client(), "v1", "Pod", "pods", pod).await;
    let outputs = vec![
        step("k8s.logs", json!({"pod": "api-0", "contains": "disk\nfull"})),
        step("k8s.logs", json!({"pod": "api-0", "contains": "ERROR"})),
        step("k8s.logs", json!({"pod": "api-0", "tailLines": 1, "contains": "starting"})),
        r#"{"done":true,"message":"2 errors"}"#.to_string(),
    ];
    srv.clear_requests();
    let steps = run_to_end(&srv, "search", "[k8s.logs]", outputs).await;
    assert_eq!(steps[0].outcome_label(), "INVALID_ARGUMENTS", "{:?}", steps[0].signal);
    let Some(Signal::Success { result }) = &steps[1].signal else { panic!("{:?}", steps[1].signal) };
    assert_eq!(result["count"], 2);
    assert_eq!(result["lines"], json!(["10:01 ERROR disk full", "10:03 ERROR disk full"]));
    assert_eq!(result["contains"], "ERROR");
    assert_eq!(result.get("older"), None, "the whole log was read");
    // A search of the newest line only finds nothing there, and says that
    // older lines were not read.
    let Some(Signal::Success { result }) = &steps[2].signal else { panic!("{:?}", steps[2].signal) };
    assert_eq!((&result["count"], &result["lines"]), (&json!(0), &json!(["10:03 ERROR disk full"])));
    assert!(result["older"].as_str().unwrap().contains("only the newest 1 lines were read"), "{result}");
    let logs: Vec<_> = sa_requests(&srv.requests()).into_iter().filter(|r| r.subresource == "log").collect();
    assert_eq!(logs.len(), 2, "only the valid searches fetched the log: {logs:#?}");
}

/// `k8s.list` reads one page: the model is shown at most 100 items, so the
/// request asks for no more (`limit`), and the result says how many there
/// are and that it was cut. Before, the whole list was read as the run's
/// ServiceAccount (every object of the kind in the namespace, however many)
/// and all but 100 dropped after it arrived.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_list_reads_one_page_and_says_how_many_there_are() {
    let srv = cluster_with_objects(false).await;
    allow_policy(&srv.client(), "allow-everything", "['*']").await;
    let cms: Api<k8s_openapi::api::core::v1::ConfigMap> = Api::namespaced(srv.client(), NS);
    for i in 0..130 {
        let cm = serde_json::from_value(json!({"metadata": {"name": format!("cm-{i:03}")}})).unwrap();
        cms.create(&PostParams::default(), &cm).await.unwrap();
    }
    let there = cms.list(&Default::default()).await.unwrap().items.len();
    let done = r#"{"done":true,"message":"listed"}"#.to_string();
    let outputs = vec![step("k8s.list", json!({"kind": "ConfigMap"})), done.clone(), done];
    srv.clear_requests();
    let steps = run_to_end(&srv, "lister", ALL_TOOLS, outputs).await;
    let Some(Signal::Success { result }) = &steps[0].signal else { panic!("{:?}", steps[0].signal) };
    assert_eq!(result["items"].as_array().unwrap().len(), 100, "{result}");
    assert_eq!((result["total"].as_u64(), result["truncated"].as_bool()), (Some(there as u64), Some(true)), "{result}");
    let lists: Vec<_> =
        sa_requests(&srv.requests()).into_iter().filter(|r| r.verb == "list" && r.resource == "configmaps").collect();
    assert_eq!(lists.len(), 1, "{lists:#?}");
    assert!(lists[0].query.contains("limit=100"), "{}", lists[0].query);
}
