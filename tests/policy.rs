//! The veto layer: rule combinations, CEL, audit mode, selectors.

use serde_json::json;
use xct::crd::XctPolicySpec;
use xct::policy::{Loaded, PolicyInput, RunInfo, Verdict, judge, load};

mod support;

fn policy(name: &str, yaml: &str) -> Loaded {
    let spec: XctPolicySpec = serde_yaml::from_str(yaml).unwrap_or_else(|e| panic!("{name}: {e}"));
    load(name, Some(1), &spec)
}

fn input(tool: &str, args: serde_json::Value) -> PolicyInput {
    PolicyInput {
        tool: tool.into(),
        arguments: args,
        goal: "g".into(),
        proposal_target: serde_json::Value::Null,
        run: RunInfo {
            name: "r".into(),
            namespace: "demo".into(),
            labels: [("team".to_string(), "web".to_string())].into(),
            namespace_labels: [("xct.dev/scaling".to_string(), "allowed".to_string())].into(),
            metadata: json!({"name": "r", "namespace": "demo"}),
            spec: json!({"goal": "g"}),
            step: 3,
            mutations: 1,
            errors: 0,
        },
        target: Some(serde_json::Value::Null),
    }
}

#[test]
fn rule_combinations() {
    let allow_read = policy("read", "rules: [{name: read, tools: ['k8s.get', 'k8s.list'], effect: Allow}]");
    let allow_all = policy("all", "rules: [{name: all, tools: ['*'], effect: Allow}]");
    let deny_delete = policy(
        "nodelete",
        "rules: [{name: no-delete, tools: ['k8s.delete'], effect: Deny, message: deletes are not allowed}]",
    );
    let approve_delete =
        policy("approve", "rules: [{name: approve-delete, tools: ['k8s.delete'], effect: RequireApproval}]");
    let scale_cap = policy(
        "scale",
        "rules: [{name: cap, tools: ['k8s.scale'], effect: Allow, when: 'proposal.arguments.replicas <= 5'}]",
    );
    type Case<'a> = (&'a str, Vec<&'a Loaded>, &'a str, serde_json::Value, Verdict, Option<&'a str>);
    let cases: Vec<Case> = vec![
        ("nothing allows", vec![], "k8s.get", json!({}), Verdict::Deny, None),
        ("allow matches", vec![&allow_read], "k8s.get", json!({}), Verdict::Allow, Some("read/read")),
        ("allow does not match tool", vec![&allow_read], "k8s.scale", json!({}), Verdict::Deny, None),
        (
            "deny overrides allow",
            vec![&allow_all, &deny_delete],
            "k8s.delete",
            json!({}),
            Verdict::Deny,
            Some("nodelete/no-delete"),
        ),
        (
            "deny overrides approval",
            vec![&approve_delete, &deny_delete],
            "k8s.delete",
            json!({}),
            Verdict::Deny,
            Some("nodelete/no-delete"),
        ),
        (
            "approval over allow",
            vec![&allow_all, &approve_delete],
            "k8s.delete",
            json!({}),
            Verdict::RequireApproval,
            Some("approve/approve-delete"),
        ),
        ("when true", vec![&scale_cap], "k8s.scale", json!({"replicas": 3}), Verdict::Allow, Some("scale/cap")),
        ("when false", vec![&scale_cap], "k8s.scale", json!({"replicas": 50}), Verdict::Deny, None),
        (
            "when error fails closed",
            vec![&scale_cap, &allow_all],
            "k8s.scale",
            json!({}),
            Verdict::Deny,
            Some("scale/cap"),
        ),
    ];
    for (what, ps, tool, args, verdict, by) in cases {
        let owned: Vec<Loaded> = ps.into_iter().cloned().collect();
        let j = judge(&owned, &input(tool, args));
        assert_eq!(j.verdict, verdict, "{what}: {j:?}");
        assert_eq!(j.decided_by.as_deref(), by, "{what}: {j:?}");
        if by.is_none() {
            assert!(j.message.contains("no XctPolicy allows"), "{what}: {}", j.message);
        }
    }
    let j = judge(&[allow_all.clone(), deny_delete.clone()], &input("k8s.delete", json!({})));
    assert_eq!(j.message, "deletes are not allowed");
    let j = judge(&[scale_cap.clone(), allow_all.clone()], &input("k8s.scale", json!({})));
    assert!(j.message.contains("CEL error (fail closed)"), "{}", j.message);
}

#[test]
fn cel_sees_proposal_run_and_target() {
    let p = policy(
        "ctx",
        r#"rules:
- name: ctx
  tools: ['*']
  effect: Allow
  when: >-
    proposal.tool == 'k8s.patch' && run.step == 3 && run.mutations < 2 && run.metadata.namespace == 'demo'
    && proposal.arguments.patch.spec.replicas > 2 && target != null && target.metadata.labels.app == 'web'
    && proposal.arguments.patch.spec.keys.all(k, k != 'forbidden')
"#,
    );
    let Loaded::Ready(_) = &p else { panic!("compiles: {p:?}") };
    let mut i = input("k8s.patch", json!({"patch": {"spec": {"replicas": 3, "keys": ["a", "b"]}}}));
    i.target = Some(json!({"metadata": {"labels": {"app": "web"}}}));
    assert_eq!(judge(std::slice::from_ref(&p), &i).verdict, Verdict::Allow);
    i.target = Some(serde_json::Value::Null);
    assert_eq!(judge(std::slice::from_ref(&p), &i).verdict, Verdict::Deny);
}

#[test]
fn compile_errors_name_the_rule_and_position_and_veto() {
    let bad = policy(
        "bad",
        "rules: [{name: ok, tools: ['*'], effect: Allow}, {name: broken, tools: ['*'], effect: Deny, when: 'proposal.tool == '}]",
    );
    let Loaded::Invalid(invalid) = &bad else { panic!("must not compile") };
    let error = &invalid.error;
    assert_eq!((error.policy.as_str(), error.rule.as_str()), ("bad", "broken"));
    assert!(error.position.is_some(), "{error}");
    // An invalid policy vetoes everything it selects, even beside an allow-all.
    let allow_all = policy("all", "rules: [{name: all, tools: ['*'], effect: Allow}]");
    let j = judge(&[allow_all, bad], &input("k8s.get", json!({})));
    assert_eq!(j.verdict, Verdict::Deny);
    assert!(j.message.contains("is invalid"), "{}", j.message);
    let unknown = policy("u", "rules: [{name: u, tools: ['*'], effect: Allow, when: 'request.user == \"x\"'}]");
    let Loaded::Invalid(invalid) = &unknown else { panic!("unknown variables are refused") };
    let error = &invalid.error;
    assert!(error.message.contains("request"), "{error}");
    let dup = policy("d", "rules: [{name: a, tools: ['*'], effect: Allow}, {name: a, tools: ['*'], effect: Deny}]");
    assert!(matches!(dup, Loaded::Invalid(_)));
}

#[test]
fn audit_policies_record_without_blocking() {
    let allow_all = policy("all", "rules: [{name: all, tools: ['*'], effect: Allow}]");
    let audit = policy(
        "watch",
        "enforcement: Audit\nrules: [{name: no-scale, tools: ['k8s.scale'], effect: Deny, message: would block}]",
    );
    let j = judge(&[allow_all, audit.clone()], &input("k8s.scale", json!({})));
    assert_eq!(j.verdict, Verdict::Allow);
    assert_eq!(j.audit, vec!["audit: Deny by watch/no-scale: would block".to_string()]);
    // An audit policy whose rules do not match records nothing.
    let allow_all = policy("all", "rules: [{name: all, tools: ['*'], effect: Allow}]");
    let j = judge(&[allow_all, audit.clone()], &input("k8s.get", json!({})));
    assert!(j.audit.is_empty(), "{:?}", j.audit);
    // Audit alone allows nothing.
    assert_eq!(judge(&[audit], &input("k8s.scale", json!({}))).verdict, Verdict::Deny);
}

#[test]
fn selectors_choose_runs() {
    let ns_scoped = policy(
        "ns",
        "selector: {namespaceSelector: {matchLabels: {xct.dev/scaling: allowed}}}\nrules: [{name: scale, tools: ['k8s.scale'], effect: Allow}]",
    );
    let other_team = policy(
        "team",
        "selector: {runSelector: {matchExpressions: [{key: team, operator: In, values: [db]}]}}\nrules: [{name: all, tools: ['*'], effect: Allow}]",
    );
    assert_eq!(judge(std::slice::from_ref(&ns_scoped), &input("k8s.scale", json!({}))).verdict, Verdict::Allow);
    let mut elsewhere = input("k8s.scale", json!({}));
    elsewhere.run.namespace_labels.clear();
    assert_eq!(judge(&[ns_scoped], &elsewhere).verdict, Verdict::Deny);
    assert_eq!(judge(&[other_team], &input("k8s.get", json!({}))).verdict, Verdict::Deny);
}

/// Selectors are Kubernetes label selectors, parsed once with kube's
/// Selector: an operator it does not know makes the policy invalid, naming
/// the selector, and an invalid policy whose selection is unknown vetoes
/// every run (it fails closed, never open).
#[test]
fn an_invalid_selector_makes_the_policy_invalid_and_veto_everything() {
    let bad = policy(
        "bad",
        "selector: {runSelector: {matchExpressions: [{key: team, operator: Near, values: [db]}]}}\nrules: [{name: all, tools: ['*'], effect: Allow}]",
    );
    let Loaded::Invalid(p) = &bad else { panic!("an unknown operator compiled") };
    assert!(p.error.to_string().contains("selector.runSelector"), "{}", p.error);
    let allow = policy("allow", "rules: [{name: all, tools: ['*'], effect: Allow}]");
    let j = judge(&[allow, bad], &input("k8s.get", json!({})));
    assert_eq!((j.verdict, j.decided_by.as_deref()), (Verdict::Deny, Some("bad/-")));
    // NotIn and DoesNotExist as kube-apiserver reads them.
    let not_db = policy(
        "notdb",
        "selector: {runSelector: {matchExpressions: [{key: team, operator: NotIn, values: [db]}, {key: frozen, operator: DoesNotExist}]}}\nrules: [{name: all, tools: ['*'], effect: Allow}]",
    );
    assert_eq!(judge(&[not_db], &input("k8s.get", json!({}))).verdict, Verdict::Allow);
}

#[test]
fn globs() {
    use xct::policy::judge::glob;
    assert!(
        glob("k8s.*", "k8s.get") && glob("*", "fs.write") && glob("*.get", "k8s.get") && glob("k8s.get", "k8s.get")
    );
    assert!(!glob("k8s.*", "fs.get") && !glob("k8s.get", "k8s.gets") && !glob("fs.*", "k8s.fs.x"));
}

/// Comprehensions nested over a list the model writes: three deep over 300
/// items is 27 million iterations, far past the evaluation timeout. On the
/// helper thread such an evaluation ran on after its timeout had vetoed,
/// one spinning thread per proposal; now the cost is estimated from the
/// input before anything runs, and a condition too costly for its input
/// vetoes at once, naming the estimate. The same condition over a short
/// list, and one comprehension over a long list, still decide.
#[test]
fn a_condition_too_costly_for_its_input_vetoes_before_it_runs() {
    let nested = policy(
        "nested",
        "rules: [{name: triples, tools: ['k8s.patch'], effect: Allow, when: 'proposal.arguments.patch.items.all(a, proposal.arguments.patch.items.all(b, proposal.arguments.patch.items.all(c, a + b + c >= 0)))'}]",
    );
    let patch = |n: i64| input("k8s.patch", json!({"patch": {"items": (0..n).collect::<Vec<_>>()}}));
    let started = std::time::Instant::now();
    let j = judge(std::slice::from_ref(&nested), &patch(300));
    let took = started.elapsed();
    assert_eq!((j.verdict, j.decided_by.as_deref()), (Verdict::Deny, Some("nested/triples")));
    assert!(j.message.contains("27000000") && j.message.contains("cost"), "{}", j.message);
    assert!(took < xct::policy::judge::EVAL_TIMEOUT / 2, "the costly condition ran: {took:?}");
    // Other tests of this binary evaluate conditions too, each for a moment.
    let quiet = std::time::Instant::now() + std::time::Duration::from_secs(1);
    while cel_threads() > 0 && std::time::Instant::now() < quiet {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_eq!(cel_threads(), 0, "an evaluation is still running a second later");

    assert_eq!(judge(std::slice::from_ref(&nested), &patch(20)).verdict, Verdict::Allow);
    let linear = policy(
        "linear",
        "rules: [{name: all, tools: ['k8s.patch'], effect: Allow, when: 'proposal.arguments.patch.items.all(a, a >= 0)'}]",
    );
    assert_eq!(judge(&[linear], &patch(20_000)).verdict, Verdict::Allow);
}

/// Threads of this process evaluating a CEL condition (named `xct-cel`).
fn cel_threads() -> usize {
    let tasks = std::fs::read_dir("/proc/self/task").expect("procfs");
    tasks
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|c| c.trim() == "xct-cel")
        .count()
}

/// A tool pattern with many stars against a tool name it almost matches:
/// matching by trying every split point backtracked exponentially (30
/// stars against 40 letters did not end), on the reconcile's own thread,
/// outside any timeout. Matching is linear in pattern times name.
#[test]
fn a_pattern_of_many_stars_matches_in_linear_time() {
    use xct::policy::judge::glob;
    let pattern = format!("{}b", "*a".repeat(30));
    let name = "a".repeat(40);
    let started = std::time::Instant::now();
    assert!(!glob(&pattern, &name));
    assert!(glob(&pattern, &format!("{name}b")));
    assert!(started.elapsed() < std::time::Duration::from_millis(100), "{:?}", started.elapsed());
}

/// A judgement does not hold the async thread it is awaited on. The
/// operator's reconciles, watches and probes share a few runtime threads,
/// and the judge waited on the calling thread for each matching rule's
/// evaluation (up to the 200 ms timeout each; some 45 ms within the cost
/// bound), so a policy of several rules over a long list stalled everything
/// else on that thread for the whole judgement. On a runtime of one thread,
/// a ticker keeps ticking while such a policy is judged.
#[test]
fn a_judgement_leaves_the_runtime_it_is_awaited_on_free() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::{Duration, Instant};

    use kube::api::{Api, PostParams};
    use xct::engine::{GateVerdict, Judge, Proposal};
    use xct::operator::policy::{PolicyCache, PolicyJudge};

    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let srv = xct_testapi::TestApiServer::start().await.unwrap();
        support::install_crds(&srv.client()).await;
        // Each rule is within the cost bound: one comprehension over the list.
        let rules: Vec<_> = (0..6)
            .map(|i| {
                json!({"name": format!("all-{i}"), "tools": ["k8s.patch"], "effect": "Allow",
                             "when": "proposal.arguments.patch.items.all(a, a >= 0)"})
            })
            .collect();
        let wide: xct::crd::XctPolicy = serde_json::from_value(json!({
            "apiVersion": "xct.dev/v1alpha1", "kind": "XctPolicy",
            "metadata": {"name": "wide"}, "spec": {"rules": rules},
        }))
        .unwrap();
        Api::<xct::crd::XctPolicy>::all(srv.client()).create(&PostParams::default(), &wide).await.unwrap();
        let cache = PolicyCache::start(srv.client());
        while cache.loaded().is_empty() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let judge = PolicyJudge {
            cache,
            run: input("k8s.patch", json!({})).run,
            run_uid: "6f1c7a52-0000-4000-8000-000000000001".into(),
            metrics: xct::operator::metrics::Metrics::new(vec![]),
        };
        let patch = json!({"kind": "ConfigMap", "name": "settings", "patch": {"items": vec![0; 50_000]}});
        let step = xct::protocol::NextStep {
            tool: "k8s.patch".into(),
            arguments: patch.as_object().cloned().unwrap(),
            goal: "g".into(),
        };
        let dir = tempfile::tempdir().unwrap();
        let tools = xct::tools::fs::Workspace::open(dir.path()).unwrap().tools();
        let live = serde_json::Value::Null;
        let proposal = Proposal { step: &step, tool: tools[0].as_ref(), target: None, mutating: true, live: &live };

        let ticks = Arc::new(AtomicUsize::new(0));
        let ticker = tokio::spawn({
            let ticks = ticks.clone();
            async move {
                loop {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    ticks.fetch_add(1, Ordering::SeqCst);
                }
            }
        });
        while ticks.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        let (before, started) = (ticks.load(Ordering::SeqCst), Instant::now());
        let verdict = judge.judge(&proposal).await;
        let (took, during) = (started.elapsed(), ticks.load(Ordering::SeqCst) - before);
        ticker.abort();
        assert!(matches!(verdict, GateVerdict::Allow { .. }), "{verdict:?}");
        assert!(took >= Duration::from_millis(30), "the judgement took {took:?}, too short to show anything");
        assert!(
            during >= 5,
            "the runtime's one thread ran nothing else in the {took:?} of the judgement ({during} ticks)"
        );
    });
}
