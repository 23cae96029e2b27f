//! The same API scenarios on the in-memory test API server (always) and on
//! a real cluster (`#[ignore]`; run by `tests/cluster/run.sh` with kind or
//! k3d, or `cargo test --test cluster -- --ignored` with any KUBECONFIG).

mod scenarios;

#[tokio::test]
async fn scenarios_on_the_test_api_server() {
    let srv = xct_testapi::TestApiServer::start().await.unwrap();
    scenarios::all(srv.client(), "xct-scenarios").await;
}

#[tokio::test]
#[ignore = "needs a real cluster: tests/cluster/run.sh"]
async fn scenarios_on_a_real_cluster() {
    let client = kube::Client::try_default().await.expect("a KUBECONFIG pointing at a real cluster");
    let ns = format!("xct-scenarios-{}", std::process::id());
    scenarios::all(client, &ns).await;
}
