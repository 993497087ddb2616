//! kube-rs `watcher` / `reflector` against the simulated cluster: adds, updates and deletes
//! arrive, and a forced 410 Expired makes the watcher re-list and carry on.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code may fail loudly

use std::time::Duration;

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::{WatchStreamExt, watcher};
use ripcord::sim::scenario::Scenario;
use ripcord::sim::{SimCluster, SimOptions};
use serde_json::json;

/// Bound on waiting for one expected event.
const EVENT_TIMEOUT: Duration = Duration::from_secs(20);

fn cm(name: &str, value: &str) -> ConfigMap {
    serde_json::from_value(json!({"metadata": {"name": name}, "data": {"v": value}})).unwrap()
}

/// Pulls events until `pred` matches one (bounded); returns the events seen, last matching.
async fn until<S>(
    stream: &mut S,
    what: &str,
    pred: impl Fn(&watcher::Event<ConfigMap>) -> bool,
) -> Vec<watcher::Event<ConfigMap>>
where
    S: Stream<Item = Result<watcher::Event<ConfigMap>, watcher::Error>> + Unpin,
{
    let mut seen = Vec::new();
    let found = tokio::time::timeout(EVENT_TIMEOUT, async {
        while let Some(item) = stream.next().await {
            // Errors (like the 410) are retried by the backoff; keep reading.
            if let Ok(ev) = item {
                let done = pred(&ev);
                seen.push(ev);
                if done {
                    return true;
                }
            }
        }
        false
    })
    .await
    .unwrap_or(false);
    assert!(found, "never saw {what}; events: {seen:?}");
    seen
}

fn is_apply(ev: &watcher::Event<ConfigMap>, name: &str, value: &str) -> bool {
    matches!(ev, watcher::Event::Apply(c) | watcher::Event::InitApply(c)
        if c.metadata.name.as_deref() == Some(name)
            && c.data.as_ref().and_then(|d| d.get("v")).map(String::as_str) == Some(value))
}

async fn start() -> SimCluster {
    SimCluster::start(SimOptions {
        scenario: Scenario::empty(),
        addr: None,
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn reflector_sees_adds_updates_and_deletes() {
    let sim = start().await;
    let api: Api<ConfigMap> = Api::namespaced(sim.client(), "default");
    let (reader, writer) = reflector::store();
    let mut stream = reflector::reflector(
        writer,
        watcher(api.clone(), watcher::Config::default()).default_backoff(),
    )
    .boxed();
    until(&mut stream, "InitDone", |e| {
        matches!(e, watcher::Event::InitDone)
    })
    .await;

    api.create(&PostParams::default(), &cm("a", "1"))
        .await
        .unwrap();
    until(&mut stream, "add of a", |e| is_apply(e, "a", "1")).await;
    api.patch(
        "a",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"v": "2"}})),
    )
    .await
    .unwrap();
    until(&mut stream, "update of a", |e| is_apply(e, "a", "2")).await;
    let key = ObjectRef::new("a").within("default");
    assert_eq!(
        reader.get(&key).and_then(|c| c.data.clone()).unwrap()["v"],
        "2"
    );
    api.delete("a", &DeleteParams::default()).await.unwrap();
    until(
        &mut stream,
        "delete of a",
        |e| matches!(e, watcher::Event::Delete(c) if c.metadata.name.as_deref() == Some("a")),
    )
    .await;
    assert!(reader.get(&key).is_none());
    sim.shutdown().await;
}

#[tokio::test]
async fn watcher_relists_after_a_forced_410() {
    let sim = start().await;
    let api: Api<ConfigMap> = Api::namespaced(sim.client(), "default");
    api.create(&PostParams::default(), &cm("before", "1"))
        .await
        .unwrap();
    let (reader, writer) = reflector::store();
    let mut stream = reflector::reflector(
        writer,
        watcher(api.clone(), watcher::Config::default()).default_backoff(),
    )
    .boxed();
    until(&mut stream, "InitDone", |e| {
        matches!(e, watcher::Event::InitDone)
    })
    .await;

    // The next watch from a resourceVersion is answered with an ERROR event carrying 410
    // Expired; a watch already open closes after its next event and re-watches into it.
    sim.faults().expire_next_watches(1);
    sim.faults().drop_watches_after(1);
    api.create(&PostParams::default(), &cm("during", "1"))
        .await
        .unwrap();
    let seen = until(&mut stream, "a re-list after the 410", |e| {
        matches!(e, watcher::Event::InitDone)
    })
    .await;
    assert!(
        seen.iter().any(|e| matches!(e, watcher::Event::Init)),
        "{seen:?}"
    );
    sim.faults().clear();
    api.create(&PostParams::default(), &cm("after", "1"))
        .await
        .unwrap();
    until(&mut stream, "add after recovery", |e| {
        is_apply(e, "after", "1")
    })
    .await;
    let mut names: Vec<String> = reader
        .state()
        .iter()
        .filter_map(|c| c.metadata.name.clone())
        .collect();
    names.sort();
    assert_eq!(names, vec!["after", "before", "during"]);
    let lists = sim
        .request_log()
        .iter()
        .filter(|r| r.verb == "list" && r.path == "/api/v1/namespaces/default/configmaps")
        .count();
    assert!(lists >= 2, "the 410 forced a second list, saw {lists}");
    sim.shutdown().await;
}

#[tokio::test]
async fn streaming_list_watcher_sees_initial_state_and_changes() {
    let sim = start().await;
    let api: Api<ConfigMap> = Api::namespaced(sim.client(), "default");
    api.create(&PostParams::default(), &cm("first", "1"))
        .await
        .unwrap();
    let mut stream = watcher(api.clone(), watcher::Config::default().streaming_lists())
        .default_backoff()
        .boxed();
    let init = until(&mut stream, "InitDone", |e| {
        matches!(e, watcher::Event::InitDone)
    })
    .await;
    assert!(init.iter().any(|e| is_apply(e, "first", "1")), "{init:?}");
    api.create(&PostParams::default(), &cm("second", "1"))
        .await
        .unwrap();
    until(&mut stream, "add of second", |e| is_apply(e, "second", "1")).await;
    assert!(
        sim.request_log()
            .iter()
            .all(|r| r.verb != "list" || r.path != "/api/v1/namespaces/default/configmaps"),
        "a streaming list needs no list request"
    );
    sim.shutdown().await;
}
