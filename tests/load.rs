//! Load: 200 concurrent runs with a scripted decider against the test API
//! server. No step lost or duplicated, memory bounded; steps/s reported.

mod support;

use std::sync::Arc;
use std::time::Instant;

use kube::api::Api;
use support::*;
use xct::crd::{RunPhase, XctRun};
use xct::engine::record::verify_chain;

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_runs() {
    const RUNS: usize = 200;
    let srv = cluster().await;
    let admin = srv.client();
    let controller = start_operator(&srv, Arc::new(FourReads), None);
    let runs: Api<XctRun> = Api::namespaced(admin.clone(), NS);
    let rss_before = rss_kib();
    let started = Instant::now();
    create_runs(&runs, RUNS, "load").await;
    let all = wait_all_terminal(&runs, RUNS).await;
    let elapsed = started.elapsed();
    controller.abort();
    let mut steps = 0;
    for r in &all {
        let s = r.status.as_ref().expect("every run has a status");
        assert_eq!(s.phase, RunPhase::Succeeded, "{:?}: {:?}", r.metadata.name, s.message);
        assert_eq!(s.steps.len(), 5, "{:?}: no step lost or duplicated", r.metadata.name);
        verify_chain(&s.steps, "", 1).unwrap();
        steps += s.steps.len();
    }
    let rss_growth_mib = rss_kib().saturating_sub(rss_before) / 1024;
    let rate = steps as f64 / elapsed.as_secs_f64();
    println!(
        "{RUNS} runs, {steps} steps in {:.1}s: {rate:.0} steps/s; RSS growth {rss_growth_mib} MiB (test API server included)",
        elapsed.as_secs_f64()
    );
    assert_eq!(steps, RUNS * 5);
    assert!(rss_growth_mib < 512, "memory bounded: grew {rss_growth_mib} MiB");
}
