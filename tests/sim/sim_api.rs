//! The simulated API server over loopback HTTP, driven by the real `kube::Client` and raw
//! HTTP: discovery, CRUD, optimistic concurrency, patches, selectors, paging, watches, tables,
//! CRDs, subresources, errors and fault injection. Most tests run the server without
//! controllers; `sim_cluster_serves_controller_metrics` and the `sim serve` test start the full
//! cluster (see `sim_kubectl.rs` for kubectl against it).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code may fail loudly

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Node, Pod};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::core::{DynamicObject, GroupVersionKind};
use kube::discovery::{ApiResource, Discovery};
use ripcord::sim::clock::SimClock;
use ripcord::sim::faults::{Faults, RequestLog};
use ripcord::sim::server::{SimHooks, SimServer};
use ripcord::sim::store::{Store, kinds};
use serde_json::{Value, json};

struct Harness {
    server: SimServer,
    store: Store,
    faults: Faults,
    log: RequestLog,
    client: kube::Client,
    http: reqwest::Client,
}

impl Harness {
    async fn start() -> Harness {
        let store = Store::new(SimClock::new(1.0));
        for ns in ["default", "kube-system"] {
            store
                .create(&kinds::namespaces(), json!({"metadata": {"name": ns}}))
                .unwrap();
        }
        let faults = Faults::new(7);
        let log = RequestLog::default();
        let server = SimServer::start(
            store.clone(),
            faults.clone(),
            log.clone(),
            SimHooks::default(),
            None,
        )
        .await
        .unwrap();
        let mut config = kube::Config::new(server.url().parse().unwrap());
        config.default_retry = false;
        let client = kube::Client::try_from(config).unwrap();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        Harness {
            server,
            store,
            faults,
            log,
            client,
            http,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.server.url())
    }
}

fn deployment(name: &str, replicas: i32) -> Deployment {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "labels": {"app": name, "tier": "web"}},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}},
                              "spec": {"containers": [{"name": "app", "image": "app:1"}]}}}
    }))
    .unwrap()
}

fn api_error(err: kube::Error) -> kube::core::Status {
    match err {
        kube::Error::Api(status) => *status,
        other => panic!("expected an API error, got {other:?}"),
    }
}

#[tokio::test]
async fn discovery_finds_resources_and_subresources() {
    let h = Harness::start().await;
    let discovery = Discovery::new(h.client.clone()).run().await.unwrap();
    let apps = discovery.get("apps").expect("apps group");
    let (deploy, caps) = apps
        .recommended_resources()
        .into_iter()
        .find(|(r, _)| r.plural == "deployments")
        .expect("deployments");
    assert_eq!(deploy.kind, "Deployment");
    assert!(caps.subresources.iter().any(|(r, _)| r.plural == "scale"));
    let core = discovery.get("").expect("core group");
    let pods = core
        .recommended_resources()
        .into_iter()
        .find(|(r, _)| r.plural == "pods")
        .expect("pods");
    assert!(
        pods.1
            .subresources
            .iter()
            .any(|(r, _)| r.plural == "eviction")
    );
    let version = h.client.apiserver_version().await.unwrap();
    assert_eq!(version.minor, "34");
    h.server.shutdown().await;
}

#[tokio::test]
async fn crud_conflict_and_not_found_use_real_status_objects() {
    let h = Harness::start().await;
    let api: Api<Deployment> = Api::namespaced(h.client.clone(), "default");
    let created = api
        .create(&PostParams::default(), &deployment("web", 2))
        .await
        .unwrap();
    assert_eq!(created.metadata.generation, Some(1));
    let spec = created.spec.clone().unwrap();
    assert_eq!(spec.revision_history_limit, Some(10), "defaults applied");

    let err = api_error(
        api.create(&PostParams::default(), &deployment("web", 2))
            .await
            .unwrap_err(),
    );
    assert_eq!(err.code, 409);
    assert_eq!(err.reason, "AlreadyExists");
    assert_eq!(err.message, "deployments.apps \"web\" already exists");

    let mut first = created.clone();
    first.spec.as_mut().unwrap().replicas = Some(3);
    let updated = api
        .replace("web", &PostParams::default(), &first)
        .await
        .unwrap();
    assert_eq!(updated.metadata.generation, Some(2));

    let mut stale = created;
    stale.spec.as_mut().unwrap().replicas = Some(4);
    let err = api_error(
        api.replace("web", &PostParams::default(), &stale)
            .await
            .unwrap_err(),
    );
    assert_eq!(err.code, 409);
    assert_eq!(err.reason, "Conflict");
    assert_eq!(
        err.message,
        "Operation cannot be fulfilled on deployments.apps \"web\": the object has been modified; please apply your changes to the latest version and try again"
    );

    let err = api_error(api.get("missing").await.unwrap_err());
    assert_eq!(err.code, 404);
    assert_eq!(err.reason, "NotFound");
    assert_eq!(err.message, "deployments.apps \"missing\" not found");

    api.delete("web", &DeleteParams::background())
        .await
        .unwrap();
    assert!(api.get_opt("web").await.unwrap().is_none());

    let other_ns: Api<ConfigMap> = Api::namespaced(h.client.clone(), "nope");
    let err = api_error(
        other_ns
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({"metadata": {"name": "c"}})).unwrap(),
            )
            .await
            .unwrap_err(),
    );
    assert_eq!(err.message, "namespaces \"nope\" not found");
    h.server.shutdown().await;
}

#[tokio::test]
async fn patches_of_every_kind() {
    let h = Harness::start().await;
    let api: Api<Deployment> = Api::namespaced(h.client.clone(), "default");
    api.create(&PostParams::default(), &deployment("web", 2))
        .await
        .unwrap();
    let pp = PatchParams::default();

    let smp = json!({"spec": {"template": {"spec": {
        "$setElementOrder/containers": [{"name": "app"}],
        "containers": [{"name": "app", "image": "app:2"}]}}}});
    let d = api
        .patch("web", &pp, &Patch::Strategic(&smp))
        .await
        .unwrap();
    let c = &d
        .spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap()
        .containers[0];
    assert_eq!(c.image.as_deref(), Some("app:2"));
    assert_eq!(c.name, "app");

    let d = api
        .patch(
            "web",
            &pp,
            &Patch::Merge(json!({"metadata": {"labels": {"tier": null}}})),
        )
        .await
        .unwrap();
    assert!(!d.metadata.labels.unwrap().contains_key("tier"));

    let jp: json_patch::Patch = serde_json::from_value(json!([
        {"op": "replace", "path": "/spec/replicas", "value": 5}
    ]))
    .unwrap();
    let d = api.patch("web", &pp, &Patch::Json::<()>(jp)).await.unwrap();
    assert_eq!(d.spec.unwrap().replicas, Some(5));

    let apply = PatchParams::apply("ripcord");
    let cfg = json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "applied", "namespace": "default"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "applied"}},
                 "template": {"metadata": {"labels": {"app": "applied"}},
                              "spec": {"containers": [{"name": "app", "image": "a:1"}]}}}});
    let d = api
        .patch("applied", &apply, &Patch::Apply(&cfg))
        .await
        .unwrap();
    let mf = d.metadata.managed_fields.unwrap();
    assert_eq!(mf[0].manager.as_deref(), Some("ripcord"));
    assert_eq!(mf[0].operation.as_deref(), Some("Apply"));

    let mut other = cfg.clone();
    other["spec"]["replicas"] = json!(4);
    let err = api_error(
        api.patch(
            "applied",
            &PatchParams::apply("someone-else"),
            &Patch::Apply(&other),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(err.code, 409);
    assert!(
        err.message.contains("conflict with \"ripcord\""),
        "{}",
        err.message
    );
    let forced = api
        .patch(
            "applied",
            &PatchParams::apply("someone-else").force(),
            &Patch::Apply(&other),
        )
        .await
        .unwrap();
    assert_eq!(forced.spec.unwrap().replicas, Some(4));

    let err = api_error(
        api.patch("missing", &pp, &Patch::Merge(json!({"spec": {}})))
            .await
            .unwrap_err(),
    );
    assert_eq!(err.code, 404);
    h.server.shutdown().await;
}

#[tokio::test]
async fn status_and_scale_subresources() {
    let h = Harness::start().await;
    let api: Api<Deployment> = Api::namespaced(h.client.clone(), "default");
    api.create(&PostParams::default(), &deployment("web", 2))
        .await
        .unwrap();
    let status = json!({"status": {"replicas": 2, "readyReplicas": 1}});
    let d = api
        .patch_status("web", &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap();
    assert_eq!(d.status.unwrap().ready_replicas, Some(1));
    // Status in a main-resource patch is ignored.
    let d = api
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"readyReplicas": 9}})),
        )
        .await
        .unwrap();
    assert_eq!(d.status.unwrap().ready_replicas, Some(1));

    let scale = api.get_scale("web").await.unwrap();
    assert_eq!(scale.spec.unwrap().replicas, Some(2));
    assert_eq!(scale.status.unwrap().selector.as_deref(), Some("app=web"));
    let scale = api
        .patch_scale(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 7}})),
        )
        .await
        .unwrap();
    assert_eq!(scale.spec.unwrap().replicas, Some(7));
    assert_eq!(
        api.get("web").await.unwrap().spec.unwrap().replicas,
        Some(7)
    );
    h.server.shutdown().await;
}

#[tokio::test]
async fn selectors_paging_and_all_namespaces() {
    let h = Harness::start().await;
    h.store
        .create(&kinds::namespaces(), json!({"metadata": {"name": "other"}}))
        .unwrap();
    for i in 0..7 {
        let ns = if i % 2 == 0 { "default" } else { "other" };
        h.store
            .create(
                &kinds::pods(),
                json!({"metadata": {"name": format!("p{i}"), "namespace": ns,
                        "labels": {"app": if i < 4 { "web" } else { "api" }}},
                       "spec": {"nodeName": format!("n{}", i % 3), "containers": []},
                       "status": {"phase": if i == 0 { "Succeeded" } else { "Running" }}}),
            )
            .unwrap();
    }
    let all: Api<Pod> = Api::all(h.client.clone());
    assert_eq!(
        all.list(&ListParams::default()).await.unwrap().items.len(),
        7
    );
    let web = all
        .list(&ListParams::default().labels("app in (web),app!=api"))
        .await
        .unwrap();
    assert_eq!(web.items.len(), 4);
    let on_n0 = all
        .list(&ListParams::default().fields("spec.nodeName=n0,status.phase!=Succeeded"))
        .await
        .unwrap();
    let names: Vec<_> = on_n0
        .items
        .iter()
        .map(|p| p.metadata.name.clone().unwrap())
        .collect();
    // All-namespace lists are ordered by namespace, then name (etcd key order).
    assert_eq!(names, vec!["p6".to_string(), "p3".to_string()]);

    let page1 = all.list(&ListParams::default().limit(3)).await.unwrap();
    assert_eq!(page1.items.len(), 3);
    assert_eq!(page1.metadata.remaining_item_count, Some(4));
    let token = page1.metadata.continue_.clone().unwrap();
    let page2 = all
        .list(&ListParams::default().limit(3).continue_token(&token))
        .await
        .unwrap();
    let page3 = all
        .list(
            &ListParams::default()
                .limit(3)
                .continue_token(page2.metadata.continue_.as_deref().unwrap()),
        )
        .await
        .unwrap();
    assert_eq!(page3.items.len(), 1);
    assert!(page3.metadata.continue_.is_none());

    let default_ns: Api<Pod> = Api::namespaced(h.client.clone(), "default");
    assert_eq!(
        default_ns
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .len(),
        4
    );
    let err = api_error(
        all.list(&ListParams::default().labels("app in web"))
            .await
            .unwrap_err(),
    );
    assert_eq!(err.code, 400);
    h.server.shutdown().await;
}

#[tokio::test]
async fn watch_streams_changes_and_expires_old_versions() {
    let h = Harness::start().await;
    let rv = h.store.current_rv();
    h.store
        .create(
            &kinds::configmaps(),
            json!({"metadata": {"name": "a", "namespace": "default"}}),
        )
        .unwrap();
    h.store
        .delete(&kinds::configmaps(), Some("default"), "a")
        .unwrap();
    let resp = h
        .http
        .get(h.url(&format!(
            "/api/v1/namespaces/default/configmaps?watch=1&resourceVersion={rv}&timeoutSeconds=1"
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap();
    let types: Vec<String> = text
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["type"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(types, vec!["ADDED", "DELETED"]);

    h.store.compact();
    let text = h
        .http
        .get(h.url(&format!(
            "/api/v1/configmaps?watch=true&resourceVersion={rv}"
        )))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let ev: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(ev["type"], "ERROR");
    assert_eq!(ev["object"]["code"], 410);
    assert_eq!(ev["object"]["reason"], "Expired");

    // Streaming list: initial ADDED events, then the initial-events-end bookmark.
    h.store
        .create(
            &kinds::configmaps(),
            json!({"metadata": {"name": "b", "namespace": "default"}}),
        )
        .unwrap();
    let text = h
        .http
        .get(h.url(
            "/api/v1/configmaps?watch=1&sendInitialEvents=true&allowWatchBookmarks=true&resourceVersionMatch=NotOlderThan&timeoutSeconds=1",
        ))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let events: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(events[0]["type"], "ADDED");
    assert_eq!(events[1]["type"], "BOOKMARK");
    assert_eq!(
        events[1]["object"]["metadata"]["annotations"]["k8s.io/initial-events-end"],
        "true"
    );
    h.server.shutdown().await;
}

#[tokio::test]
async fn tables_protobuf_and_dry_run() {
    let h = Harness::start().await;
    let api: Api<Deployment> = Api::namespaced(h.client.clone(), "default");
    api.create(&PostParams::default(), &deployment("web", 2))
        .await
        .unwrap();
    let table: Value = h
        .http
        .get(h.url("/apis/apps/v1/namespaces/default/deployments"))
        .header(
            "Accept",
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json",
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(table["kind"], "Table");
    let cols: Vec<_> = table["columnDefinitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        &cols[..5],
        &["Name", "Ready", "Up-to-date", "Available", "Age"]
    );
    assert_eq!(table["rows"][0]["cells"][1], "0/2");

    let resp = h
        .http
        .post(h.url("/api/v1/namespaces/default/configmaps"))
        .header("Content-Type", "application/vnd.kubernetes.protobuf")
        .body(vec![0x6b, 0x38, 0x73, 0x00])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 415);
    let status: Value = resp.json().await.unwrap();
    assert_eq!(status["reason"], "UnsupportedMediaType");

    let pp = PostParams {
        dry_run: true,
        ..Default::default()
    };
    api.create(&pp, &deployment("dry", 1)).await.unwrap();
    assert!(api.get_opt("dry").await.unwrap().is_none());
    h.server.shutdown().await;
}

#[tokio::test]
async fn crds_register_their_resources() {
    let h = Harness::start().await;
    let crds: Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> =
        Api::all(h.client.clone());
    let crd = serde_json::from_value(json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "runs.ripcord.dev"},
        "spec": {"group": "ripcord.dev", "scope": "Namespaced",
                 "names": {"plural": "runs", "singular": "run", "kind": "Run", "shortNames": ["rr"]},
                 "versions": [{"name": "v1", "served": true, "storage": true,
                               "subresources": {"status": {}},
                               "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]}
    }))
    .unwrap();
    let created = crds.create(&PostParams::default(), &crd).await.unwrap();
    let conditions = created.status.unwrap().conditions.unwrap();
    assert!(
        conditions
            .iter()
            .any(|c| c.type_ == "Established" && c.status == "True")
    );

    let discovery = Discovery::new(h.client.clone()).run().await.unwrap();
    let group = discovery
        .get("ripcord.dev")
        .expect("custom group discovered");
    let (ar, caps) = group
        .recommended_resources()
        .into_iter()
        .find(|(r, _)| r.plural == "runs")
        .unwrap();
    assert!(caps.subresources.iter().any(|(r, _)| r.plural == "status"));

    let runs: Api<DynamicObject> = Api::namespaced_with(h.client.clone(), "default", &ar);
    let run: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "ripcord.dev/v1", "kind": "Run",
        "metadata": {"name": "r1"}, "spec": {"playbook": "rollback"}, "status": {"phase": "ignored"}
    }))
    .unwrap();
    let created = runs.create(&PostParams::default(), &run).await.unwrap();
    assert!(
        created.data.get("status").is_none(),
        "status dropped on create"
    );
    let patched = runs
        .patch_status(
            "r1",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"phase": "Running"}})),
        )
        .await
        .unwrap();
    assert_eq!(patched.data["status"]["phase"], "Running");
    let ar2 = ApiResource::from_gvk(&GroupVersionKind::gvk("ripcord.dev", "v1", "Run"));
    let listed: Api<DynamicObject> = Api::all_with(h.client.clone(), &ar2);
    assert_eq!(
        listed
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .len(),
        1
    );
    h.server.shutdown().await;
}

#[tokio::test]
async fn faults_throttle_and_log_requests() {
    let h = Harness::start().await;
    let nodes: Api<Node> = Api::all(h.client.clone());
    nodes.list(&ListParams::default()).await.unwrap();
    h.faults.set_error_rate(429, 1.0);
    h.faults.set_retry_after(3);
    let resp = h.http.get(h.url("/api/v1/nodes")).send().await.unwrap();
    assert_eq!(resp.status(), 429);
    assert_eq!(resp.headers()["retry-after"], "3");
    let err = api_error(nodes.list(&ListParams::default()).await.unwrap_err());
    assert_eq!(err.reason, "TooManyRequests");
    h.faults.clear();
    h.faults.set_error_rate(409, 1.0);
    nodes.list(&ListParams::default()).await.unwrap();
    let ns: Api<Namespace> = Api::all(h.client.clone());
    let err = api_error(
        ns.create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "x"}})).unwrap(),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(err.code, 409);
    h.faults.clear();

    let log = h.log.records();
    assert!(
        log.iter()
            .any(|r| r.verb == "list" && r.status == 429 && r.path == "/api/v1/nodes")
    );
    assert!(log.windows(2).all(|w| w[0].seq < w[1].seq));
    assert_eq!(h.log.write_count(), 1);
    h.server.shutdown().await;
}

#[tokio::test]
async fn eviction_and_logs_use_hooks() {
    let h = Harness::start().await;
    h.store
        .create(
            &kinds::pods(),
            json!({"metadata": {"name": "p", "namespace": "default"}, "spec": {"containers": []}}),
        )
        .unwrap();
    let pods: Api<Pod> = Api::namespaced(h.client.clone(), "default");
    assert_eq!(pods.logs("p", &Default::default()).await.unwrap(), "");
    pods.evict("p", &Default::default()).await.unwrap();
    assert!(pods.get_opt("p").await.unwrap().is_none());
    let err = api_error(pods.evict("p", &Default::default()).await.unwrap_err());
    assert_eq!(err.code, 404);
    h.server.shutdown().await;
}

#[tokio::test]
async fn sim_serve_prints_kubeconfig_and_stops_on_ctrl_c() {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    let scenario = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/scenarios/empty.yaml"
    );
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_ripcord"))
        .args(["sim", "serve", "--scenario", scenario, "--kubeconfig-out"])
        .arg(&kubeconfig)
        .stdout(std::process::Stdio::piped())
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut printed = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), async {
        while let Ok(Some(line)) = lines.next_line().await {
            let done = line.contains("Ctrl-C");
            printed.push(line);
            if done {
                break;
            }
        }
    })
    .await
    .expect("sim serve did not start");
    let url = printed[0].rsplit(' ').next().unwrap().to_string();
    assert!(url.starts_with("http://127.0.0.1:"), "{printed:?}");
    assert!(
        printed.iter().any(|l| l.contains("export KUBECONFIG=")),
        "{printed:?}"
    );
    let config = std::fs::read_to_string(&kubeconfig).unwrap();
    assert!(config.contains(&format!("server: {url}")), "{config}");
    let version: Value = reqwest::get(format!("{url}/version"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(version["major"], "1");

    let pid = child.id().unwrap().to_string();
    let killed = tokio::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .await
        .unwrap();
    assert!(killed.success());
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("sim serve did not stop on SIGINT")
        .unwrap();
    assert!(status.success(), "{status:?}");
}

#[tokio::test]
async fn watch_with_selector_reports_objects_leaving_it_as_deleted() {
    let h = Harness::start().await;
    let rt = kinds::configmaps();
    h.store
        .create(
            &rt,
            json!({"metadata": {"name": "a", "namespace": "default", "labels": {"app": "web"}}}),
        )
        .unwrap();
    let rv = h.store.current_rv();
    h.store
        .modify(&rt, Some("default"), "a", |o| {
            o["metadata"]["labels"]["app"] = json!("other");
            Ok(())
        })
        .unwrap();
    h.store
        .modify(&rt, Some("default"), "a", |o| {
            o["metadata"]["labels"]["app"] = json!("web");
            Ok(())
        })
        .unwrap();
    let text = h
        .http
        .get(h.url(&format!(
            "/api/v1/namespaces/default/configmaps?watch=1&labelSelector=app%3Dweb&resourceVersion={rv}&timeoutSeconds=1"
        )))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let types: Vec<String> = text
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["type"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(types, vec!["DELETED", "ADDED"]);
    h.server.shutdown().await;
}

#[tokio::test]
async fn aggregated_discovery_when_asked() {
    let h = Harness::start().await;
    let resp = h
        .http
        .get(h.url("/apis"))
        .header(
            "Accept",
            "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.headers()["content-type"],
        "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
    );
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["kind"], "APIGroupDiscoveryList");
    let apps = body["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["metadata"]["name"] == "apps")
        .unwrap();
    let deployments = apps["versions"][0]["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["resource"] == "deployments")
        .unwrap();
    assert_eq!(deployments["shortNames"], json!(["deploy"]));
    assert!(
        deployments["subresources"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["subresource"] == "scale" && s["responseKind"]["kind"] == "Scale")
    );
    let legacy: Value = h
        .http
        .get(h.url("/apis"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(legacy["kind"], "APIGroupList");
    h.server.shutdown().await;
}

#[tokio::test]
async fn sim_cluster_serves_controller_metrics() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/scenarios/three-zones.yaml"
    );
    let scenario = ripcord::sim::scenario::Scenario::load_file(std::path::Path::new(path)).unwrap();
    let sim = ripcord::sim::SimCluster::start(ripcord::sim::SimOptions {
        scenario,
        addr: None,
    })
    .await
    .unwrap();
    let resp = reqwest::get(format!("{}/metrics", sim.url()))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = resp.text().await.unwrap();
    assert!(text.contains("sim_http_requests_total"), "{text}");
    let deployments: Api<Deployment> = Api::namespaced(sim.client(), "shop");
    assert_eq!(
        deployments
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .len(),
        2
    );
    assert_eq!(sim.write_request_count(), 0);
    assert!(sim.request_log().iter().any(|r| r.path == "/metrics"));
    sim.shutdown().await;
}

/// Issue 15: every write records its field manager; server-side apply conflicts with the
/// manager that last set a field (409 naming it) unless forced; a JSON patch that sets a stale
/// `metadata.resourceVersion` is a 409; `dryRun` in a DELETE body or an Eviction's
/// `deleteOptions` deletes nothing.
#[tokio::test]
async fn issue15_field_ownership_and_dry_run_bodies() {
    let h = Harness::start().await;
    let api: Api<Deployment> = Api::namespaced(h.client.clone(), "default");
    let created = api
        .create(
            &PostParams {
                field_manager: Some("creator".into()),
                ..PostParams::default()
            },
            &deployment("web", 2),
        )
        .await
        .unwrap();
    let managers = |d: &Deployment| -> Vec<String> {
        d.metadata
            .managed_fields
            .iter()
            .flatten()
            .filter_map(|m| m.manager.clone())
            .collect()
    };
    assert_eq!(managers(&created), ["creator"]);
    let ops = json!([{"op": "replace", "path": "/spec/template/spec/containers/0/image", "value": "app:2"}]);
    let patched = api
        .patch(
            "web",
            &PatchParams {
                field_manager: Some("ripcord".into()),
                ..PatchParams::default()
            },
            &Patch::Json::<()>(serde_json::from_value(ops).unwrap()),
        )
        .await
        .unwrap();
    assert_eq!(managers(&patched), ["creator", "ripcord"]);
    let raw = serde_json::to_value(&patched).unwrap();
    let ripcord = raw["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["manager"] == "ripcord")
        .unwrap()
        .clone();
    assert_eq!(ripcord["operation"], "Update");
    assert!(
        ripcord["fieldsV1"]["f:spec"]["f:template"]["f:spec"]["f:containers"]
            ["k:{\"name\":\"app\"}"]["f:image"]
            .is_object(),
        "{ripcord}"
    );

    // Another manager applying a different image conflicts with ripcord, the last writer.
    let applied = json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {"selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "app", "image": "app:9"}]}}}});
    let err = api
        .patch(
            "web",
            &PatchParams::apply("deployer"),
            &Patch::Apply(&applied),
        )
        .await
        .unwrap_err();
    match err {
        kube::Error::Api(status) => {
            assert_eq!(status.code, 409);
            assert!(
                status.message.contains("conflict with \"ripcord\""),
                "{}",
                status.message
            );
        }
        other => panic!("expected a 409, got {other:?}"),
    }
    let forced = api
        .patch(
            "web",
            &PatchParams::apply("deployer").force(),
            &Patch::Apply(&applied),
        )
        .await
        .unwrap();
    let forced_raw = serde_json::to_value(&forced).unwrap();
    assert_eq!(
        forced_raw["spec"]["template"]["spec"]["containers"][0]["image"],
        "app:9"
    );
    let image_owners: Vec<&str> = forced_raw["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| {
            m["fieldsV1"]["f:spec"]["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"app\"}"]
                ["f:image"]
                .is_object()
        })
        .filter_map(|m| m["manager"].as_str())
        .collect();
    assert_eq!(image_owners, ["deployer"]);

    // A stale resourceVersion set by a JSON patch is a precondition.
    let stale = json!([
        {"op": "replace", "path": "/spec/replicas", "value": 5},
        {"op": "replace", "path": "/metadata/resourceVersion",
         "value": created.metadata.resource_version.clone().unwrap()},
    ]);
    let err = api
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Json::<()>(serde_json::from_value(stale).unwrap()),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, kube::Error::Api(s) if s.code == 409),
        "{err:?}"
    );

    // dryRun in the DELETE body deletes nothing.
    let dp = DeleteParams {
        dry_run: true,
        ..DeleteParams::default()
    };
    let _ = api.delete("web", &dp).await.unwrap();
    assert!(
        h.store
            .get(&kinds::deployments(), Some("default"), "web")
            .is_some()
    );
    let raw = h
        .http
        .delete(h.url("/apis/apps/v1/namespaces/default/deployments/web"))
        .json(&json!({"kind": "DeleteOptions", "apiVersion": "v1", "dryRun": ["All"]}))
        .send()
        .await
        .unwrap();
    assert!(raw.status().is_success());
    assert!(
        h.store
            .get(&kinds::deployments(), Some("default"), "web")
            .is_some()
    );

    // dryRun in an Eviction's deleteOptions evicts nothing.
    h.store
        .create(
            &kinds::pods(),
            json!({"metadata": {"name": "p", "namespace": "default"},
                   "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "i"}]}}),
        )
        .unwrap();
    let resp = h
        .http
        .post(h.url("/api/v1/namespaces/default/pods/p/eviction"))
        .json(&json!({"apiVersion": "policy/v1", "kind": "Eviction",
                      "metadata": {"name": "p", "namespace": "default"},
                      "deleteOptions": {"dryRun": ["All"]}}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 201);
    let pod = h.store.get(&kinds::pods(), Some("default"), "p").unwrap();
    assert!(pod["metadata"].get("deletionTimestamp").is_none());
    // A real eviction of a bound pod leaves it Terminating for its grace period (no
    // kubelet runs here to end it).
    let resp = h
        .http
        .post(h.url("/api/v1/namespaces/default/pods/p/eviction"))
        .json(&json!({"apiVersion": "policy/v1", "kind": "Eviction",
                      "metadata": {"name": "p", "namespace": "default"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 201);
    let pod = h.store.get(&kinds::pods(), Some("default"), "p").unwrap();
    assert!(pod["metadata"]["deletionTimestamp"].is_string(), "{pod}");
    assert_eq!(pod["metadata"]["deletionGracePeriodSeconds"], 30);
    // The Eviction's gracePeriodSeconds overrides the pod's.
    h.store
        .create(
            &kinds::pods(),
            json!({"metadata": {"name": "q", "namespace": "default"},
                   "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "i"}]}}),
        )
        .unwrap();
    let resp = h
        .http
        .post(h.url("/api/v1/namespaces/default/pods/q/eviction"))
        .json(&json!({"apiVersion": "policy/v1", "kind": "Eviction",
                      "metadata": {"name": "q", "namespace": "default"},
                      "deleteOptions": {"gracePeriodSeconds": 5}}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 201);
    let pod = h.store.get(&kinds::pods(), Some("default"), "q").unwrap();
    assert_eq!(pod["metadata"]["deletionGracePeriodSeconds"], 5);
}

/// A Kubernetes protobuf body: `k8s\0` + `runtime.Unknown{typeMeta, raw}`.
fn protobuf_body(api_version: &str, kind: &str, raw: Vec<u8>) -> Vec<u8> {
    use prost::Message;
    let unknown = k8s_pb::apimachinery::pkg::runtime::Unknown {
        type_meta: Some(k8s_pb::apimachinery::pkg::runtime::TypeMeta {
            api_version: Some(api_version.into()),
            kind: Some(kind.into()),
        }),
        raw: Some(raw),
        content_encoding: Some(String::new()),
        content_type: Some(String::new()),
    };
    let mut body = b"k8s\0".to_vec();
    body.extend(unknown.encode_to_vec());
    body
}

#[tokio::test]
async fn issue15_protobuf_bodies_are_decoded_for_builtin_kinds() {
    use prost::Message;
    let h = Harness::start().await;
    let cm = k8s_pb::api::core::v1::ConfigMap {
        metadata: Some(k8s_pb::apimachinery::pkg::apis::meta::v1::ObjectMeta {
            name: Some("from-protobuf".into()),
            // Go encodes unset non-pointer strings as "": they must read as unset.
            generate_name: Some(String::new()),
            ..Default::default()
        }),
        data: [("key".to_string(), "value".to_string())].into(),
        binary_data: [("bin".to_string(), vec![0u8, 1, 2])].into(),
        ..Default::default()
    };
    let resp = h
        .http
        .post(h.url("/api/v1/namespaces/default/configmaps"))
        .header("Content-Type", "application/vnd.kubernetes.protobuf")
        .header("Accept", "application/vnd.kubernetes.protobuf, */*")
        .body(protobuf_body("v1", "ConfigMap", cm.encode_to_vec()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let stored = h
        .store
        .get(&kinds::configmaps(), Some("default"), "from-protobuf")
        .unwrap();
    assert_eq!(stored["data"]["key"], "value");
    assert_eq!(stored["binaryData"]["bin"], "AAEC");
    assert!(stored.pointer("/metadata/generateName").is_none());

    // A Service with the empty clusterIP Go sends gets one allocated.
    let svc = k8s_pb::api::core::v1::Service {
        metadata: Some(k8s_pb::apimachinery::pkg::apis::meta::v1::ObjectMeta {
            name: Some("pb-svc".into()),
            ..Default::default()
        }),
        spec: Some(k8s_pb::api::core::v1::ServiceSpec {
            cluster_ip: Some(String::new()),
            ports: vec![k8s_pb::api::core::v1::ServicePort {
                port: Some(80),
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    };
    let resp = h
        .http
        .post(h.url("/api/v1/namespaces/default/services"))
        .header("Content-Type", "application/vnd.kubernetes.protobuf")
        .body(protobuf_body("v1", "Service", svc.encode_to_vec()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let body: Value = resp.json().await.unwrap();
    assert!(
        body["spec"]["clusterIP"]
            .as_str()
            .is_some_and(|ip| ip.starts_with("10.96.")),
        "{body}"
    );
    h.server.shutdown().await;
}

#[tokio::test]
async fn issue15_invalid_objects_answer_422_with_causes() {
    let h = Harness::start().await;
    let resp = h
        .http
        .post(h.url("/api/v1/namespaces/default/configmaps"))
        .json(&json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "Bad_Name", "labels": {"bad key!": "v"}}}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 422);
    let status: Value = resp.json().await.unwrap();
    assert_eq!(status["reason"], "Invalid");
    assert_eq!(status["details"]["name"], "Bad_Name");
    assert_eq!(status["details"]["kind"], "ConfigMap");
    let causes = status["details"]["causes"].as_array().unwrap();
    assert_eq!(causes.len(), 2, "{status}");
    assert_eq!(causes[0]["reason"], "FieldValueInvalid");
    assert_eq!(causes[0]["field"], "metadata.name");
    assert!(
        causes[0]["message"]
            .as_str()
            .unwrap()
            .starts_with("Invalid value: \"Bad_Name\": a lowercase RFC 1123 subdomain")
    );
    assert_eq!(causes[1]["field"], "metadata.labels");
    assert!(
        status["message"]
            .as_str()
            .unwrap()
            .starts_with("ConfigMap \"Bad_Name\" is invalid: [metadata.name: Invalid value"),
        "{status}"
    );

    // Immutable selector, as apimachinery words it.
    let api: Api<Deployment> = Api::namespaced(h.client.clone(), "default");
    api.create(&PostParams::default(), &deployment("web", 1))
        .await
        .unwrap();
    let patch = json!({"spec": {"selector": {"matchLabels": {"app": "other"}},
        "template": {"metadata": {"labels": {"app": "other"}}}}});
    let err = api
        .patch("web", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap_err();
    let status = api_error(err);
    assert_eq!(status.code, 422);
    let details = status.details.unwrap();
    assert_eq!(details.kind, "Deployment");
    assert_eq!(details.group, "apps");
    assert_eq!(details.causes[0].field, "spec.selector");
    assert!(details.causes[0].message.ends_with("field is immutable"));

    // A wrongly typed merge patch: 422 on the field `patch`.
    let err = api
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"replicas": "three"}})),
        )
        .await
        .unwrap_err();
    let status = api_error(err);
    assert_eq!(status.code, 422);
    assert_eq!(status.details.unwrap().causes[0].field, "patch");
    assert!(status.message.contains("json: cannot unmarshal string into Go struct field DeploymentSpec.spec.replicas of type int32"), "{}", status.message);
    h.server.shutdown().await;
}

#[tokio::test]
async fn issue15_unsupported_field_selectors_are_rejected() {
    let h = Harness::start().await;
    let pods: Api<Pod> = Api::namespaced(h.client.clone(), "default");
    let err = pods
        .list(&ListParams::default().fields("spec.nonexistent=x"))
        .await
        .unwrap_err();
    let status = api_error(err);
    assert_eq!(status.code, 400);
    assert_eq!(
        status.message,
        "field label not supported: spec.nonexistent"
    );
    pods.list(&ListParams::default().fields("spec.nodeName=n0,status.phase!=Failed"))
        .await
        .unwrap();
    let nodes: Api<Node> = Api::all(h.client.clone());
    nodes
        .list(&ListParams::default().fields("spec.unschedulable=false"))
        .await
        .unwrap();
    h.server.shutdown().await;
}

#[tokio::test]
async fn issue15_replace_with_resource_version_zero_is_unconditional() {
    let h = Harness::start().await;
    let api: Api<ConfigMap> = Api::namespaced(h.client.clone(), "default");
    let mut cm: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "cm"}, "data": {"a": "1"}})).unwrap();
    api.create(&PostParams::default(), &cm).await.unwrap();
    api.patch(
        "cm",
        &PatchParams::default(),
        &Patch::Merge(&json!({"data": {"a": "2"}})),
    )
    .await
    .unwrap();
    cm.metadata.resource_version = Some("0".into());
    cm.data = Some([("a".to_string(), "3".to_string())].into());
    let replaced = api
        .replace("cm", &PostParams::default(), &cm)
        .await
        .unwrap();
    assert_eq!(replaced.data.unwrap()["a"], "3");
    cm.metadata.resource_version = Some("1".into());
    assert_eq!(
        api_error(
            api.replace("cm", &PostParams::default(), &cm)
                .await
                .unwrap_err()
        )
        .code,
        409
    );
    h.server.shutdown().await;
}

#[tokio::test]
async fn issue15_resumed_watch_sends_deleted_for_objects_that_left_the_selector() {
    let h = Harness::start().await;
    let rt = kinds::configmaps();
    h.store
        .create(
            &rt,
            json!({"metadata": {"name": "leaver", "namespace": "default", "labels": {"app": "web"}}}),
        )
        .unwrap();
    let rv = h.store.current_rv();
    // Created after rv and never selected: the client never held it.
    h.store
        .create(
            &rt,
            json!({"metadata": {"name": "stranger", "namespace": "default", "labels": {"app": "other"}}}),
        )
        .unwrap();
    for name in ["leaver", "stranger"] {
        h.store
            .modify(&rt, Some("default"), name, |o| {
                o["metadata"]["labels"]["app"] = json!("gone");
                Ok(())
            })
            .unwrap();
    }
    let text = h
        .http
        .get(h.url(&format!(
            "/api/v1/namespaces/default/configmaps?watch=1&labelSelector=app%3Dweb&resourceVersion={rv}&timeoutSeconds=1"
        )))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let events: Vec<(String, String)> = text
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            (
                v["type"].as_str().unwrap().to_string(),
                v["object"]["metadata"]["name"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
            )
        })
        .collect();
    assert_eq!(events, vec![("DELETED".to_string(), "leaver".to_string())]);
    h.server.shutdown().await;
}

#[tokio::test]
async fn issue15_namespaces_get_a_default_service_account_and_kubernetes_service() {
    let h = Harness::start().await;
    for ns in ["default", "kube-system"] {
        assert!(
            h.store
                .get(&kinds::service_accounts(), Some(ns), "default")
                .is_some(),
            "{ns}"
        );
    }
    let svc = h
        .store
        .get(&kinds::services(), Some("default"), "kubernetes")
        .unwrap();
    assert_eq!(svc["spec"]["clusterIP"], "10.96.0.1");
    for (group, version, plural) in [
        ("batch", "v1", "jobs"),
        ("batch", "v1", "cronjobs"),
        ("autoscaling", "v2", "horizontalpodautoscalers"),
        ("autoscaling", "v1", "horizontalpodautoscalers"),
        ("discovery.k8s.io", "v1", "endpointslices"),
        ("", "v1", "persistentvolumeclaims"),
        ("", "v1", "replicationcontrollers"),
        ("networking.k8s.io", "v1", "ingresses"),
    ] {
        let path = if group.is_empty() {
            format!("/api/{version}/namespaces/default/{plural}")
        } else {
            format!("/apis/{group}/{version}/namespaces/default/{plural}")
        };
        let resp = h.http.get(h.url(&path)).send().await.unwrap();
        assert_eq!(resp.status(), 200, "{path}");
    }
    // autoscaling/v1 is a view of the v2 storage.
    let resp = h
        .http
        .post(h.url("/apis/autoscaling/v1/namespaces/default/horizontalpodautoscalers"))
        .json(&json!({"apiVersion": "autoscaling/v1", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "web"},
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                     "minReplicas": 1, "maxReplicas": 3, "targetCPUUtilizationPercentage": 70}}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let v2 = h
        .store
        .get(&kinds::horizontal_pod_autoscalers(), Some("default"), "web")
        .unwrap();
    assert_eq!(
        v2["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"],
        70
    );
    h.server.shutdown().await;
}

#[tokio::test]
async fn issue15_blocked_eviction_names_the_disruption_budget() {
    let scenario = ripcord::sim::scenario::Scenario::from_yaml(
        "issue15-pdb",
        r#"
name: issue15-pdb
settings: {timeFactor: 20, podReadyDelaySeconds: 1, podStartDelaySeconds: 1}
zones: [{name: zone-a, nodes: 1}]
namespaces: [shop]
deployments:
  - {namespace: shop, name: web, replicas: 1, port: 8080, releases: [{image: registry.local/web:1.0.0}]}
podDisruptionBudgets:
  - {namespace: shop, name: web, selector: {app: web}, minAvailable: 1}
"#,
    )
    .unwrap();
    let sim = ripcord::sim::SimCluster::start(ripcord::sim::SimOptions {
        scenario,
        addr: None,
    })
    .await
    .unwrap();
    let pods: Api<Pod> = Api::namespaced(sim.client(), "shop");
    let mut ready = None;
    for _ in 0..200 {
        let list = pods.list(&ListParams::default()).await.unwrap();
        ready = list.items.into_iter().find(|p| {
            p.status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        });
        if ready.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let pod = ready.expect("a ready pod within 20 s");
    let name = pod.metadata.name.unwrap();
    let resp = reqwest::Client::new()
        .post(format!(
            "{}/api/v1/namespaces/shop/pods/{name}/eviction",
            sim.url()
        ))
        .json(&json!({"apiVersion": "policy/v1", "kind": "Eviction",
            "metadata": {"name": name, "namespace": "shop"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 429);
    let status: Value = resp.json().await.unwrap();
    assert_eq!(
        status["message"],
        "Cannot evict pod as it would violate the pod's disruption budget."
    );
    assert_eq!(status["details"]["causes"][0]["reason"], "DisruptionBudget");
    assert_eq!(
        status["details"]["causes"][0]["message"],
        "The disruption budget web needs 1 healthy pods and has 1 currently"
    );
    sim.shutdown().await;
}

/// Issue 16: `pods/NAME/status` PATCH adds a readiness gate condition — strategic merge keyed
/// by condition `type` (the kubelet's conditions stay) and JSON patch — and the pod becomes
/// Ready; a main-resource patch cannot write status.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_status_patch_releases_a_readiness_gate() {
    let scenario = ripcord::sim::scenario::Scenario::from_yaml(
        "gates",
        "settings: {timeFactor: 20, podReadyDelaySeconds: 1, podStartDelaySeconds: 1}
zones:
  - {name: zone-a, nodes: 1}
namespaces: [shop]
deployments:
  - namespace: shop
    name: web
    replicas: 1
    readinessGates: [ripcord.dev/warmed, example.com/other]
    releases:
      - image: registry.local/web:1
",
    )
    .unwrap();
    let sim = ripcord::sim::SimCluster::start(ripcord::sim::SimOptions {
        scenario,
        addr: None,
    })
    .await
    .unwrap();
    let pods: Api<Pod> = Api::namespaced(sim.client(), "shop");
    let name = pods.list(&ListParams::default()).await.unwrap().items[0]
        .metadata
        .name
        .clone()
        .unwrap();
    // Replace the scenario's released pod with a fresh one (held back by both gates).
    pods.delete(&name, &DeleteParams::default().grace_period(0))
        .await
        .unwrap();
    let condition = |pod: &Pod, t: &str| -> Option<String> {
        pod.status
            .as_ref()?
            .conditions
            .as_ref()?
            .iter()
            .find(|c| c.type_ == t)
            .map(|c| c.status.clone())
    };
    let mut fresh = None;
    for _ in 0..300 {
        let list = pods.list(&ListParams::default()).await.unwrap().items;
        if let Some(p) = list.into_iter().find(|p| {
            p.metadata.name.as_deref() != Some(&name)
                && condition(p, "ContainersReady").as_deref() == Some("True")
        }) {
            fresh = Some(p);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let fresh = fresh.expect("a replacement with ready containers");
    let fresh_name = fresh.metadata.name.clone().unwrap();
    assert_eq!(condition(&fresh, "Ready").as_deref(), Some("False"));

    // Strategic merge: conditions merge by type.
    let patched = pods
        .patch_status(
            &fresh_name,
            &PatchParams::default(),
            &Patch::Strategic(json!({"status": {"conditions": [
                {"type": "ripcord.dev/warmed", "status": "True", "reason": "Warmed",
                 "message": "warm-up answered 200", "lastTransitionTime": "2026-01-01T00:00:00Z"}
            ]}})),
        )
        .await
        .unwrap();
    assert_eq!(
        condition(&patched, "ContainersReady").as_deref(),
        Some("True")
    );
    assert_eq!(
        condition(&patched, "ripcord.dev/warmed").as_deref(),
        Some("True")
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let still = pods.get(&fresh_name).await.unwrap();
    assert_eq!(
        condition(&still, "Ready").as_deref(),
        Some("False"),
        "one gate left"
    );
    assert_eq!(
        condition(&still, "ripcord.dev/warmed").as_deref(),
        Some("True")
    );

    // JSON patch: append the second gate's condition.
    pods.patch_status(
        &fresh_name,
        &PatchParams::default(),
        &Patch::Json::<()>(
            serde_json::from_value(json!([{"op": "add", "path": "/status/conditions/-",
                "value": {"type": "example.com/other", "status": "True"}}]))
            .unwrap(),
        ),
    )
    .await
    .unwrap();
    let mut ready = false;
    for _ in 0..100 {
        let p = pods.get(&fresh_name).await.unwrap();
        if condition(&p, "Ready").as_deref() == Some("True") {
            assert_eq!(condition(&p, "ripcord.dev/warmed").as_deref(), Some("True"));
            assert_eq!(condition(&p, "example.com/other").as_deref(), Some("True"));
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ready, "the pod became Ready once both gates passed");
    sim.shutdown().await;
}
