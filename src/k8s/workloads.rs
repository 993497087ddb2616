//! Reads for evidence capture and actions: pods, pod logs, events, nodes, any namespaced typed
//! kind, and Secret *names* (metadata only — Secret data is never requested).

use super::{K8sError, call, describe};
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::core::v1::{Node, Pod, Secret};
use kube::api::{ListParams, LogParams};
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;
use std::fmt::Debug;
use std::time::Duration;

/// Read helpers, each call bounded by one per-call timeout.
#[derive(Clone)]
pub struct Workloads {
    client: Client,
    timeout: Duration,
}

// === impl Workloads ===

impl Workloads {
    /// Helpers using `client`, each call bounded by `call_timeout`.
    pub fn new(client: Client, call_timeout: Duration) -> Workloads {
        Workloads {
            client,
            timeout: call_timeout,
        }
    }

    /// The client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Lists any namespaced typed kind in one namespace.
    pub async fn list<K>(&self, namespace: &str, params: &ListParams) -> Result<Vec<K>, K8sError>
    where
        K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
            + Clone
            + DeserializeOwned
            + Debug,
    {
        let api: Api<K> = Api::namespaced(self.client.clone(), namespace);
        let object = describe(&K::plural(&()), Some(namespace), "*");
        let list = call("list", &object, self.timeout, api.list(params)).await?;
        Ok(list.items)
    }

    /// Like [`Workloads::list`], following `continue` tokens page by page (`params.limit` is
    /// the page size) until the list ends or `max_items` are read. Returns the items and
    /// whether the list was cut at `max_items`.
    pub async fn list_paged<K>(
        &self,
        namespace: &str,
        params: &ListParams,
        max_items: usize,
    ) -> Result<(Vec<K>, bool), K8sError>
    where
        K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
            + Clone
            + DeserializeOwned
            + Debug,
    {
        let api: Api<K> = Api::namespaced(self.client.clone(), namespace);
        let object = describe(&K::plural(&()), Some(namespace), "*");
        let mut params = params.clone();
        let mut items = Vec::new();
        loop {
            let page = call("list", &object, self.timeout, api.list(&params)).await?;
            items.extend(page.items);
            let next = page.metadata.continue_.filter(|token| !token.is_empty());
            match next {
                Some(_) if items.len() >= max_items => {
                    items.truncate(max_items);
                    return Ok((items, true));
                }
                Some(token) => params.continue_token = Some(token),
                None => {
                    let cut = items.len() > max_items;
                    items.truncate(max_items);
                    return Ok((items, cut));
                }
            }
        }
    }

    /// Pods of a namespace matching a label selector (empty: all).
    pub async fn pods(&self, namespace: &str, selector: &str) -> Result<Vec<Pod>, K8sError> {
        let mut params = ListParams::default();
        if !selector.is_empty() {
            params = params.labels(selector);
        }
        self.list(namespace, &params).await
    }

    /// The last `tail_lines` lines of a container's log (`previous`: the prior instance).
    pub async fn pod_log(
        &self,
        namespace: &str,
        pod: &str,
        container: Option<&str>,
        previous: bool,
        tail_lines: u32,
    ) -> Result<String, K8sError> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        let params = LogParams {
            container: container.map(str::to_string),
            previous,
            tail_lines: Some(i64::from(tail_lines)),
            ..LogParams::default()
        };
        let object = describe("Pod", Some(namespace), pod);
        call("read log of", &object, self.timeout, api.logs(pod, &params)).await
    }

    /// Reads a Node.
    pub async fn node(&self, name: &str) -> Result<Node, K8sError> {
        let api: Api<Node> = Api::all(self.client.clone());
        call(
            "get",
            &describe("Node", None, name),
            self.timeout,
            api.get(name),
        )
        .await
    }

    /// The names of the Secrets of a namespace: metadata only, the data is never requested.
    pub async fn secret_names(&self, namespace: &str) -> Result<Vec<String>, K8sError> {
        let api: Api<Secret> = Api::namespaced(self.client.clone(), namespace);
        let object = describe("secrets", Some(namespace), "*");
        let list = call(
            "list",
            &object,
            self.timeout,
            api.list_metadata(&ListParams::default()),
        )
        .await?;
        Ok(list
            .items
            .into_iter()
            .filter_map(|m| m.metadata.name)
            .collect())
    }
}
