//! What a platform team observes: one JSON log line per recorded step
//! inside a reconcile span naming the run; metrics scraped from /metrics
//! (build info, leader, model loaded, policy decisions by rule, approval
//! wait, runs by phase from the watch store, so a replica that never ran
//! the run counts it too); and every metric the chart's alerts and
//! dashboard use is one the operator exports.

mod support;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kube::api::{Api, PostParams};
use serde_json::{Value, json};
use support::*;
use xct::crd::{RunPhase, XctApproval, XctRun};
use xct::model::ScriptedDecider;
use xct::operator::health::{Health, Readiness};
use xct::operator::leader::Leadership;

/// Log lines written by the subscriber this test installs.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn lines(&self) -> Vec<Value> {
        let text = String::from_utf8(self.0.lock().unwrap().clone()).unwrap();
        text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
    }
}

/// An operator replica with its own metrics and a health server; returns
/// the health server's address and the controller task.
async fn replica(
    srv: &xct_testapi::TestApiServer,
    decider: Arc<dyn xct::model::Decider>,
    leadership: Arc<Leadership>,
) -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    let metrics = xct::operator::default_metrics();
    let readiness = Arc::new(Readiness::default());
    readiness.model_loaded.store(true, std::sync::atomic::Ordering::SeqCst);
    let health =
        Arc::new(Health { readiness: readiness.clone(), metrics: metrics.clone(), decider: Default::default() });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, xct::operator::health::router(health)).await });
    let config = operator_config(srv);
    let ctx =
        xct::operator::Context::with_metrics(kube::Client::try_from(config.clone()).unwrap(), config, decider, metrics)
            .with_leadership(leadership);
    (addr, tokio::spawn(xct::operator::run(Arc::new(ctx), None, readiness)))
}

/// GET /metrics.
async fn scrape(addr: std::net::SocketAddr) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n").await.unwrap();
    let mut out = String::new();
    stream.read_to_string(&mut out).await.unwrap();
    out.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default()
}

/// Metric names as they appear in samples, from the `# TYPE` lines.
fn exported_names(exposition: &str) -> Vec<String> {
    exposition
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .flat_map(|l| {
            let (name, kind) = l.split_once(' ').unwrap();
            match kind {
                "counter" => vec![format!("{name}_total")],
                "histogram" => ["_bucket", "_sum", "_count"].iter().map(|s| format!("{name}{s}")).collect(),
                "info" => vec![format!("{name}_info")],
                _ => vec![name.to_string()],
            }
        })
        .collect()
}

/// Every `xct_...` name in a text.
fn referenced_names(text: &str) -> Vec<String> {
    let mut names: Vec<String> = text
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("xct_"))
        .map(str::to_string)
        .collect();
    names.sort();
    names.dedup();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steps_are_logged_and_counted_and_the_charts_alerts_use_exported_metrics() {
    let captured = Captured::default();
    let writer = captured.clone();
    tracing_subscriber::fmt()
        .json()
        .with_env_filter("warn,xct=info")
        .with_writer(move || writer.clone())
        .try_init()
        .unwrap();
    let srv = cluster().await;
    let admin = srv.client();
    // A scale (allowed by scaling/bounded-scale), then a delete that needs
    // an approval, approved by bob, then done.
    let cms: Api<k8s_openapi::api::core::v1::ConfigMap> = Api::namespaced(admin.clone(), NS);
    cms.create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": "old"}})).unwrap())
        .await
        .unwrap();
    let decider = Arc::new(ScriptedDecider::new(vec![
        json!({"next_step": {"tool": "k8s.scale", "arguments": {"kind": "Deployment", "name": "web", "replicas": 3}, "goal": "scale"}}).to_string(),
        json!({"next_step": {"tool": "k8s.delete", "arguments": {"kind": "ConfigMap", "name": "old"}, "goal": "clean up"}}).to_string(),
        r#"{"done":true,"message":"scaled and cleaned"}"#.into(),
    ]));
    let (leader_url, leader) = replica(&srv, decider.clone(), Arc::new(Leadership::always())).await;
    let runs: Api<XctRun> = Api::namespaced(admin.clone(), NS);
    let run: XctRun = serde_yaml::from_str(&format!(
        "apiVersion: xct.dev/v1alpha1\nkind: XctRun\nmetadata: {{name: observed, annotations: {{xct.dev/created-by: alice}}}}\nspec:\n  goal: g\n  tools: [k8s.scale, k8s.delete]\n  serviceAccountName: {SA}\n"
    ))
    .unwrap();
    runs.create(&PostParams::default(), &run).await.unwrap();
    // Answer the approval once the delete waits for it.
    let mut pending = None;
    for _ in 0..300 {
        let r = runs.get("observed").await.unwrap();
        if let Some(s) = r.status.as_ref().filter(|s| s.phase == RunPhase::AwaitingApproval) {
            pending = Some((r.metadata.uid.clone().unwrap(), s.steps.last().unwrap().clone()));
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (uid, step) = pending.expect("the delete awaits approval");
    grant_edit(&admin, &["bob"]).await;
    let approval: XctApproval = serde_json::from_value(json!({
        "apiVersion": "xct.dev/v1alpha1", "kind": "XctApproval", "metadata": {"name": "ok"},
        "spec": {"runName": "observed", "runUid": uid, "step": step.index, "proposalDigest": step.proposal_digest, "decision": "Approve", "reason": "reviewed", "approver": "bob"}
    }))
    .unwrap();
    Api::<XctApproval>::namespaced(srv.client_with_token("bob"), NS)
        .create(&PostParams::default(), &approval)
        .await
        .unwrap();
    let done = wait_all_terminal(&runs, 1).await;
    let status = done[0].status.clone().unwrap();
    assert_eq!(status.phase, RunPhase::Succeeded, "{:?}", status.message);
    assert_eq!(status.steps.len(), 3);

    // One log line per recorded step (the awaiting delete is recorded
    // twice: waiting, then answered), in the reconcile span of the run.
    let lines = captured.lines();
    let steps: Vec<&Value> = lines.iter().filter(|l| l["fields"]["message"] == "step recorded").collect();
    let seen: Vec<(u64, &str, &str)> = steps
        .iter()
        .map(|l| {
            (
                l["fields"]["step"].as_u64().unwrap(),
                l["fields"]["tool"].as_str().unwrap(),
                l["fields"]["outcome"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            (1, "k8s.scale", "Success"),
            (2, "k8s.delete", "AwaitingApproval"),
            (2, "k8s.delete", "Success"),
            (3, "", "Done")
        ]
    );
    for (l, rec) in steps.iter().zip([&status.steps[0], &status.steps[1], &status.steps[1], &status.steps[2]]) {
        assert_eq!(l["target"], xct::operator::observe::STEP_TARGET);
        assert_eq!((l["fields"]["run"].as_str(), l["fields"]["namespace"].as_str()), (Some("observed"), Some(NS)));
        assert_eq!(l["span"]["name"], "reconcile");
        assert_eq!((l["span"]["run"].as_str(), l["span"]["uid"].as_str()), (Some("observed"), Some(uid.as_str())));
        // The span carries the step's fields as well.
        for field in ["step", "tool", "verdict", "outcome", "proposal_digest"] {
            assert_eq!(l["span"][field], l["fields"][field], "{field} in {l}");
        }
        assert_eq!(l["fields"]["proposal_digest"].as_str(), Some(rec.proposal_digest.as_deref().unwrap_or_default()));
        for field in ["verdict", "decided_by", "error_code", "model_ms", "validation_ms", "execution_ms"] {
            assert!(l["fields"].get(field).is_some(), "{field} missing in {l}");
        }
    }
    assert_eq!(steps[0]["fields"]["decided_by"], "scaling/bounded-scale");

    // xct_runs is counted from the operator's watch, which sees the last
    // status write a moment after the API server answers it.
    let mut text = scrape(leader_url).await;
    for _ in 0..100 {
        if text.lines().any(|l| l == "xct_runs{phase=\"Succeeded\"} 1") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        text = scrape(leader_url).await;
    }
    for line in [
        "xct_build_info{version=\"0.1.0\"} 1",
        "xct_leader 1",
        "xct_model_loaded 1",
        "xct_runs{phase=\"Succeeded\"} 1",
        "xct_runs{phase=\"AwaitingApproval\"} 0",
        "xct_policy_decisions_total{policy=\"scaling\",rule=\"bounded-scale\",effect=\"Allow\"} 1",
        "xct_approval_wait_seconds_count{answer=\"approved\"} 1",
    ] {
        assert!(text.lines().any(|l| l == line), "{line} not in\n{text}");
    }
    let deletes = text
        .lines()
        .filter(|l| l.starts_with("xct_policy_decisions_total{policy=\"baseline\",rule=\"deletes-need-approval\""))
        .count();
    assert_eq!(deletes, 1, "{text}");

    // A replica that never led: its runs gauge comes from its own watch.
    let (follower_url, follower) = replica(&srv, decider, Arc::new(Leadership::default())).await;
    let mut follower_text = String::new();
    for _ in 0..100 {
        follower_text = scrape(follower_url).await;
        if follower_text.lines().any(|l| l == "xct_runs{phase=\"Succeeded\"} 1") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(follower_text.lines().any(|l| l == "xct_runs{phase=\"Succeeded\"} 1"), "{follower_text}");
    assert!(follower_text.lines().any(|l| l == "xct_leader 0"), "{follower_text}");
    leader.abort();
    follower.abort();

    // The chart's alerts and dashboard name only metrics that exist.
    let exported = exported_names(&text);
    let chart = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("charts/xct-operator/files/monitoring");
    let mut checked = 0;
    for file in ["alerts.yaml", "grafana-dashboard.json"] {
        let used = referenced_names(&std::fs::read_to_string(chart.join(file)).unwrap());
        assert!(used.len() >= 4, "{file}: {used:?}");
        let missing: Vec<_> = used.iter().filter(|n| !exported.contains(n)).collect();
        assert!(missing.is_empty(), "{file} uses metrics the operator does not export: {missing:?}");
        checked += used.len();
    }
    assert!(checked >= 12, "{checked}");
}
