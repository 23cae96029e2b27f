//! Benchmark (d): operator overhead per step (everything but the model:
//! API calls, policy evaluation, dry runs, status writes) with a scripted
//! decider against the in-process test API server, alone and with 100
//! concurrent runs, and the bytes written per step.
//! Run: `cargo test --release --test overhead -- --nocapture` (numbers in the
//! README are from that command; the debug build is several times slower).

mod support;

use std::sync::Arc;
use std::time::Instant;

use kube::api::Api;
use support::*;
use xct::crd::XctRun;
use xct::operator::{Context, health::Readiness};

async fn measure(runs_n: usize) -> (f64, f64, u64, usize) {
    let srv = cluster().await;
    let admin = srv.client();
    let ctx = Arc::new(Context::new(
        kube::Client::try_from(operator_config(&srv)).unwrap(),
        operator_config(&srv),
        Arc::new(FourReads),
    ));
    let metrics = ctx.metrics.clone();
    let controller = tokio::spawn(xct::operator::run(ctx, None, Arc::new(Readiness::default())));
    let runs: Api<XctRun> = Api::namespaced(admin.clone(), NS);
    let t = Instant::now();
    create_runs(&runs, runs_n, "o").await;
    wait_all_terminal(&runs, runs_n).await;
    let wall = t.elapsed();
    controller.abort();
    let (median_us, steps) = metrics.overhead_median_us();
    let bytes = metrics.status_bytes.get() / steps.max(1) as u64;
    (median_us as f64 / 1000.0, wall.as_secs_f64() * 1000.0 / steps.max(1) as f64, bytes, steps)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_overhead_per_step() {
    let (alone_ms, _, alone_bytes, alone_steps) = measure(1).await;
    let (busy_ms, amortized_ms, busy_bytes, busy_steps) = measure(100).await;
    println!("(d) operator overhead per step (scripted decider, in-process test API server)");
    println!("| runs | steps | median overhead per step | wall time per step | status bytes per step |");
    println!("|---:|---:|---:|---:|---:|");
    println!("| 1 | {alone_steps} | {alone_ms:.2} ms | - | {alone_bytes} |");
    println!(
        "| 100 | {busy_steps} | {busy_ms:.2} ms (queued behind 99 others) | {amortized_ms:.2} ms | {busy_bytes} |"
    );
    assert_eq!(alone_steps, 5);
    assert_eq!(busy_steps, 500, "every step measured");
    assert!(alone_ms < 50.0, "overhead of a lone step: {alone_ms} ms");
    assert!(busy_bytes < 16 * 1024, "status patches send only what changed");
}
