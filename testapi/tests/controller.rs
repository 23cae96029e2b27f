//! A kube-runtime Controller driven by the server's watch events sees
//! creates, spec changes and deletes, and no-op status writes do not make
//! it loop.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use futures::StreamExt;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use serde_json::json;
use xct_testapi::TestApiServer;

#[derive(Debug)]
struct Never;

impl std::fmt::Display for Never {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("never")
    }
}

impl std::error::Error for Never {}

struct Ctx {
    api: Api<DynamicObject>,
    seen: Mutex<HashMap<String, Vec<i64>>>,
}

async fn reconcile(obj: Arc<DynamicObject>, ctx: Arc<Ctx>) -> Result<Action, Never> {
    let name = obj.metadata.name.clone().unwrap_or_default();
    let generation = obj.metadata.generation.unwrap_or(0);
    ctx.seen.lock().unwrap().entry(name.clone()).or_default().push(generation);
    // The same status every time for a generation: after the first write these are no-ops.
    let status = json!({"status": {"observedGeneration": generation, "phase": "Seen"}});
    let _ = ctx.api.patch_status(&name, &PatchParams::default(), &Patch::Merge(status)).await;
    Ok(Action::await_change())
}

fn error_policy(_: Arc<DynamicObject>, _: &Never, _: Arc<Ctx>) -> Action {
    Action::requeue(Duration::from_secs(1))
}

#[tokio::test]
async fn controller_sees_creates_changes_and_deletes_without_hot_loops() {
    let srv = TestApiServer::start().await.unwrap();
    let client = srv.client();
    install_widgets(&client).await;
    namespace(&client, "c").await;
    let api = widgets(&client, "c");
    let ctx = Arc::new(Ctx { api: api.clone(), seen: Mutex::new(HashMap::new()) });
    let controller = Controller::new_with(api.clone(), watcher::Config::default(), widget_resource());
    let store = controller.store();
    let runner = tokio::spawn(controller.run(reconcile, error_policy, ctx.clone()).for_each(|_| async {}));

    api.create(&PostParams::default(), &widget("w1", 1)).await.unwrap();
    wait_for(|| ctx.seen.lock().unwrap().get("w1").is_some_and(|g| g.contains(&1))).await;
    api.patch("w1", &PatchParams::default(), &Patch::Merge(json!({"spec": {"size": 2}}))).await.unwrap();
    wait_for(|| ctx.seen.lock().unwrap().get("w1").is_some_and(|g| g.contains(&2))).await;
    // Let it settle: each status write that changes something triggers one
    // more reconcile, whose identical write is a no-op and triggers nothing.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let count = ctx.seen.lock().unwrap()["w1"].len();
    assert!(count <= 5, "no hot loop: {count} reconciles for 2 generations");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(ctx.seen.lock().unwrap()["w1"].len(), count, "quiet once settled");
    let w = api.get("w1").await.unwrap();
    assert_eq!(w.data["status"]["observedGeneration"], 2);

    api.delete("w1", &DeleteParams::default()).await.unwrap();
    wait_for(|| store.state().iter().all(|o| o.metadata.name.as_deref() != Some("w1"))).await;
    runner.abort();
}

async fn wait_for(mut cond: impl FnMut() -> bool) {
    for _ in 0..100 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("condition not reached within 5 s");
}
