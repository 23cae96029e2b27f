//! Watches through the kube client and kube-runtime's watcher.

mod common;

use std::time::Duration;

use common::*;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use kube::runtime::watcher::{self, Event};
use serde_json::json;
use xct_testapi::TestApiServer;

fn cm(name: &str) -> ConfigMap {
    serde_json::from_value(json!({"metadata": {"name": name}, "data": {"k": "v"}})).unwrap()
}

#[tokio::test]
async fn watch_replays_from_a_resource_version() {
    let srv = TestApiServer::start().await.unwrap();
    let client = srv.client();
    namespace(&client, "w").await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "w");
    cms.create(&PostParams::default(), &cm("before")).await.unwrap();
    let rv = cms.list(&ListParams::default()).await.unwrap().metadata.resource_version.unwrap();
    cms.create(&PostParams::default(), &cm("a")).await.unwrap();
    cms.patch("a", &PatchParams::default(), &Patch::Merge(json!({"data": {"k": "2"}}))).await.unwrap();
    cms.delete("a", &DeleteParams::default()).await.unwrap();
    let mut stream = cms.watch(&WatchParams::default().timeout(5), &rv).await.unwrap().boxed();
    let mut seen = vec![];
    while seen.len() < 3 {
        match stream.try_next().await.unwrap().unwrap() {
            WatchEvent::Added(c) => seen.push(format!("ADDED {}", c.metadata.name.unwrap())),
            WatchEvent::Modified(c) => seen.push(format!("MODIFIED {}", c.data.unwrap()["k"])),
            WatchEvent::Deleted(c) => seen.push(format!("DELETED {}", c.metadata.name.unwrap())),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(seen, ["ADDED a", "MODIFIED 2", "DELETED a"]);
}

#[tokio::test]
async fn a_compacted_resource_version_is_gone() {
    let srv = TestApiServer::start().await.unwrap();
    let client = srv.client();
    namespace(&client, "g").await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "g");
    let rv = cms.list(&ListParams::default()).await.unwrap().metadata.resource_version.unwrap();
    cms.create(&PostParams::default(), &cm("x")).await.unwrap();
    srv.compact();
    let mut stream = cms.watch(&WatchParams::default().timeout(5), &rv).await.unwrap().boxed();
    match stream.try_next().await.unwrap().unwrap() {
        WatchEvent::Error(e) => assert_eq!(e.code, 410),
        other => panic!("expected 410 Gone, got {other:?}"),
    }
}

#[tokio::test]
async fn bookmarks_selectors_and_timeouts() {
    let srv = TestApiServer::start().await.unwrap();
    let client = srv.client();
    namespace(&client, "b").await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "b");
    let rv = cms.list(&ListParams::default()).await.unwrap().metadata.resource_version.unwrap();
    let wp = WatchParams { bookmarks: true, ..WatchParams::default().fields("metadata.name=wanted").timeout(3) };
    let mut stream = cms.watch(&wp, &rv).await.unwrap().boxed();
    cms.create(&PostParams::default(), &cm("other")).await.unwrap();
    cms.create(&PostParams::default(), &cm("wanted")).await.unwrap();
    let mut added = vec![];
    let mut bookmarks = 0;
    while let Some(ev) = tokio::time::timeout(Duration::from_secs(5), stream.try_next())
        .await
        .expect("the stream ends by itself")
        .unwrap()
    {
        match ev {
            WatchEvent::Added(c) => added.push(c.metadata.name.unwrap()),
            WatchEvent::Bookmark(_) => bookmarks += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(added, ["wanted"], "the field selector filters events");
    assert!(bookmarks >= 1, "bookmarks arrive when allowed");
}

#[tokio::test]
async fn kube_runtime_watcher_lists_then_watches_and_streams_initial_events() {
    let srv = TestApiServer::start().await.unwrap();
    let client = srv.client();
    namespace(&client, "r").await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "r");
    for n in ["one", "two"] {
        cms.create(&PostParams::default(), &cm(n)).await.unwrap();
    }
    for config in [watcher::Config::default(), watcher::Config::default().streaming_lists()] {
        let expected: Vec<String> = cms
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .map(|c| c.metadata.name.unwrap())
            .collect();
        assert!(expected.len() >= 2);
        let mut w = watcher::watcher(cms.clone(), config).boxed();
        let mut init = vec![];
        loop {
            match w.try_next().await.unwrap().unwrap() {
                Event::Init => {}
                Event::InitApply(c) => init.push(c.metadata.name.unwrap()),
                Event::InitDone => break,
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(init, expected);
        let name = format!("late-{}", init.len() + srv.resource_version() as usize);
        cms.create(&PostParams::default(), &cm(&name)).await.unwrap();
        match w.try_next().await.unwrap().unwrap() {
            Event::Apply(c) => assert_eq!(c.metadata.name.unwrap(), name),
            other => panic!("unexpected {other:?}"),
        }
    }
    let log = srv.requests();
    assert!(log.iter().any(|r| r.verb == "watch" && r.query.contains("sendInitialEvents=true")));
}
