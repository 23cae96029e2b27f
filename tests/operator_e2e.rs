//! End to end with the real model: the test API server, a real kubectl,
//! the `xct controller` binary with SmolLM2, and an example run.

mod support;

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use support::{OPERATOR_USER, enforce_chart_rbac, model_path};
use xct::crd::XctRun;
use xct::engine::record::VerdictOutcome;
use xct::protocol::parse_decision;
use xct_testapi::TestApiServer;
use xct_testapi::kubectl::run_async as kubectl;

struct Controller(Child);

impl Drop for Controller {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes()).ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    let code = buf.split_whitespace().nth(1)?.parse().ok()?;
    let body = buf.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    Some((code, body))
}

fn http_status(port: u16, path: &str) -> Option<u16> {
    http_get(port, path).map(|(c, _)| c)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_apply_a_run_and_the_controller_drives_it_with_the_real_model() {
    let model = model_path();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let srv = TestApiServer::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let admin_kc = dir.path().join("admin.kubeconfig");
    let operator_kc = dir.path().join("operator.kubeconfig");
    srv.write_kubeconfig(&admin_kc, None).unwrap();
    srv.write_kubeconfig(&operator_kc, Some(OPERATOR_USER)).unwrap();
    // The policies as GitOps applies them: their kustomization.
    for (how, f) in [
        ("-f", "crds/"),
        ("-k", "examples/gitops/policies"),
        ("-f", "examples/cluster/demo.yaml"),
        ("-f", "examples/cluster/scale-web.yaml"),
    ] {
        let path = root.join(f);
        let o = kubectl(&admin_kc, &["apply", how, path.to_str().unwrap()], None).await;
        assert!(o.ok, "kubectl apply {how} {f}: {}{}", o.stdout, o.stderr);
    }
    enforce_chart_rbac(&srv, "tests/fixtures/rbac/chart.yaml").await;
    let port = free_port();
    let _controller = Controller(
        Command::new(env!("CARGO_BIN_EXE_xct"))
            .args(["controller", "--threads", "2", "--health-addr", &format!("127.0.0.1:{port}")])
            .arg("--model")
            .arg(&model)
            .env("KUBECONFIG", &operator_kc)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    );
    // Ready once the model is loaded and the watch synced.
    let mut ready = false;
    for _ in 0..300 {
        if http_status(port, "/readyz") == Some(200) {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ready, "the controller never became ready");
    assert_eq!(http_status(port, "/livez"), Some(200));
    // /readyz names where the model runs (this build: CPU, nothing offloaded).
    let (_, body) = http_get(port, "/readyz").unwrap();
    assert!(body.starts_with("ok: CPU") && body.contains("0 of 31 layers offloaded"), "{body}");

    let mut run: Option<XctRun> = None;
    for _ in 0..240 {
        let o = kubectl(&admin_kc, &["get", "xctrun", "scale-web", "-n", "demo", "-o", "json"], None).await;
        assert!(o.ok, "{}", o.stderr);
        let r: XctRun = serde_json::from_str(&o.stdout).unwrap();
        if r.status.as_ref().is_some_and(|s| s.phase.is_terminal()) {
            run = Some(r);
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let run = run.expect("the run reaches a terminal phase within its budget");
    let status = run.status.unwrap();
    println!("phase {:?}: {:?}", status.phase, status.message);
    assert!(!status.steps.is_empty() && status.steps.len() as u32 <= run.spec.limits.max_steps);
    for (i, s) in status.steps.iter().enumerate() {
        println!("{}", xct::local::step_line(s));
        assert_eq!(s.index as usize, i + 1, "steps in order");
        assert!(!s.decision.is_empty() && !s.verdict.reason.is_empty() || s.verdict.outcome == VerdictOutcome::Done);
        if s.verdict.outcome != VerdictOutcome::Done {
            assert!(s.signal.is_some(), "step {} has a signal", s.index);
        }
        if s.verdict.outcome != VerdictOutcome::Invalid {
            parse_decision(&s.decision, false).expect("grammar-constrained output parses");
        }
    }
    // kstatus: `kubectl wait` reads the Succeeded condition of the finished run.
    let outcome = if status.phase == xct::crd::RunPhase::Succeeded { "True" } else { "False" };
    let o = kubectl(
        &admin_kc,
        &["wait", "-n", "demo", "xctrun/scale-web", &format!("--for=condition=Succeeded={outcome}"), "--timeout=20s"],
        None,
    )
    .await;
    assert!(o.ok, "kubectl wait --for=condition=Succeeded={outcome}: {}{}", o.stdout, o.stderr);
    // The table view and describe work on the run.
    let o = kubectl(&admin_kc, &["get", "xr", "-n", "demo"], None).await;
    assert!(o.ok && o.stdout.contains("scale-web") && o.stdout.contains("PHASE"), "{}", o.stdout);
    assert!(!o.stdout.contains("MESSAGE"), "the message column is for -o wide only: {}", o.stdout);
    let o = kubectl(&admin_kc, &["get", "xr", "-n", "demo", "-o", "wide"], None).await;
    let message = status.message.clone().unwrap_or_default();
    let shown = message.chars().take(20).collect::<String>();
    assert!(o.ok && o.stdout.contains("MESSAGE") && o.stdout.contains(&shown), "{message}\n{}", o.stdout);
    // The xct category: one `kubectl get` for runs, policies and approvals.
    let o = kubectl(&admin_kc, &["get", "xct", "-A"], None).await;
    assert!(o.ok, "kubectl get xct -A: {}", o.stderr);
    // The SelfSubjectReview `xct approve` relies on, as kubectl asks it.
    let whoami = kubectl(&admin_kc, &["auth", "whoami", "-o", "jsonpath={.status.userInfo.username}"], None).await;
    assert!(whoami.ok && whoami.stdout == "admin", "{whoami:?}");
    assert!(
        o.stdout.contains("xctrun.xct.dev/scale-web") && o.stdout.contains("xctpolicy.xct.dev/baseline"),
        "{}",
        o.stdout
    );

    let log = srv.requests();
    let sa = xct::k8s::service_account_user("demo", "xct-runner");
    let operator: Vec<_> = log.iter().filter(|r| r.authenticated_user == OPERATOR_USER).collect();
    // The operator's own requests: runs, policies, approvals, events, the
    // run's namespace (labels for policy selectors). Everything else is a tool's.
    let own = |r: &xct_testapi::RequestRecord| {
        !r.impersonated
            && (matches!(r.resource.as_str(), "xctruns" | "events" | "xctpolicies" | "xctapprovals")
                || (r.resource == "namespaces" && r.verb == "get"))
    };
    let tool_requests: Vec<_> = operator.iter().filter(|r| !own(r)).collect();
    assert!(!tool_requests.is_empty(), "the run's tools reached the API");
    for r in &tool_requests {
        assert_eq!(r.user, sa, "every tool request impersonates the run's ServiceAccount: {r:?}");
        // The run may use k8s.scale, k8s.get, k8s.list: deployments and their scale, read or patch.
        assert_eq!(r.resource, "deployments", "no request outside the run's tools: {r:?}");
        assert!(matches!(r.verb.as_str(), "get" | "list" | "patch"), "no request outside the run's tools: {r:?}");
        assert!(r.verb != "patch" || r.subresource == "scale", "{r:?}");
    }
    // What reached storage is exactly what the history records as executed
    // mutations, and each was dry-run first.
    let persisted: Vec<_> = tool_requests.iter().filter(|r| r.is_persisted_mutation()).collect();
    let executed = status.steps.iter().filter(|s| s.mutating && s.verdict.outcome == VerdictOutcome::Allowed).count();
    assert_eq!(persisted.len(), executed, "mutations on the API == executed mutating steps");
    for m in &persisted {
        assert!(
            log.iter().any(|d| d.seq < m.seq && d.dry_run && d.path == m.path && d.verb == m.verb && d.user == sa),
            "mutation without a prior dry run: {m:?}"
        );
    }
    println!("{} tool requests, {} persisted mutations", tool_requests.len(), persisted.len());
    // Policies decided every proposal that got past the schema check.
    for s in status.steps.iter().filter(|s| s.verdict.outcome == VerdictOutcome::Allowed) {
        assert!(
            s.verdict.decided_by.as_deref().is_some_and(|b| b.contains('/')),
            "decided by a policy rule: {:?}",
            s.verdict
        );
    }
    // Metrics: one count per recorded step, tokens counted, closed labels.
    let (code, metrics) = http_get(port, "/metrics").unwrap();
    assert_eq!(code, 200);
    let steps_counted: u64 = metrics
        .lines()
        .filter(|l| l.starts_with("xct_steps_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum();
    assert_eq!(steps_counted as usize, status.steps.len(), "{metrics}");
    assert!(metrics.contains("xct_tokens_total{kind=\"prompt\"}"), "{metrics}");
    assert!(metrics.contains("xct_step_duration_seconds_bucket{"), "{metrics}");
    assert!(
        metrics.contains("xct_runs{phase=\"Failed\"} 1") || metrics.contains("xct_runs{phase=\"Succeeded\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("xct_inference_queue_depth 0"), "{metrics}");
    let value: Value = serde_json::to_value(&status.steps).unwrap();
    assert!(value.to_string().len() < 256 * 1024);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_model_is_reported_and_the_controller_stays_up_and_unready() {
    let srv = TestApiServer::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let kc = dir.path().join("operator.kubeconfig");
    srv.write_kubeconfig(&kc, Some(OPERATOR_USER)).unwrap();
    enforce_chart_rbac(&srv, "tests/fixtures/rbac/chart.yaml").await;
    let corrupt = dir.path().join("corrupt.gguf");
    std::fs::write(&corrupt, b"GGUF this is not a model").unwrap();
    let port = free_port();
    let mut controller = Controller(
        Command::new(env!("CARGO_BIN_EXE_xct"))
            .args(["controller", "--health-addr", &format!("127.0.0.1:{port}"), "--model"])
            .arg(&corrupt)
            .env("KUBECONFIG", &kc)
            .env("POD_NAME", "xct-operator-0")
            .env("POD_NAMESPACE", "xct-system")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let events: kube::Api<k8s_openapi::api::events::v1::Event> = kube::Api::namespaced(srv.client(), "xct-system");
    let mut reported = None;
    for _ in 0..100 {
        let list = events.list(&Default::default()).await.unwrap();
        if let Some(e) = list.items.into_iter().find(|e| e.reason.as_deref() == Some("ModelUnavailable")) {
            reported = Some(e);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let e = reported.expect("a ModelUnavailable event");
    assert_eq!(e.type_.as_deref(), Some("Warning"));
    assert!(e.note.unwrap_or_default().contains("cannot load model"));
    let (code, body) = http_get(port, "/readyz").unwrap();
    assert_eq!(code, 503);
    assert!(body.contains("cannot load model"), "{body}");
    assert!(controller.0.try_wait().unwrap().is_none(), "no crash loop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_model_the_controller_stays_up_and_unready() {
    let srv = TestApiServer::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let kc = dir.path().join("operator.kubeconfig");
    srv.write_kubeconfig(&kc, Some(OPERATOR_USER)).unwrap();
    let port = free_port();
    let mut controller = Controller(
        Command::new(env!("CARGO_BIN_EXE_xct"))
            .args(["controller", "--model", "/nonexistent/model.gguf", "--health-addr", &format!("127.0.0.1:{port}")])
            .env("KUBECONFIG", &kc)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut live = false;
    for _ in 0..50 {
        if http_status(port, "/livez") == Some(200) {
            live = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(live, "liveness is served without a model");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (code, body) = http_get(port, "/readyz").unwrap();
    assert_eq!(code, 503);
    assert!(body.contains("model loaded false"), "{body}");
    assert!(controller.0.try_wait().unwrap().is_none(), "no crash loop: the process stays up");
    assert!(!srv.requests().iter().any(|r| r.resource == "xctruns"), "no run is touched without a model");
}
