//! `traffic.setWeights`: set the weights of named backendRefs of a Gateway API HTTPRoute.
//!
//! Already satisfied when every named backend has its weight. Otherwise one mutation: a merge
//! patch of `spec.rules` (a merge patch replaces lists whole, so the rules are written as
//! observed with only the named weights changed); the inverse patches the observed rules back,
//! and `expected` holds the rules as ripcord left them so cleanup can detect later changes.
//! Naming a backend the route does not have is an error listing the ones it has.
//!
//! The route helpers here are shared with `zone.failout` (weight to 0) and `zone.failback`
//! (the ramp).

use super::{Action, ActionContext, ActionError, Applied, Diff, Inverse, Mutation, ObjectRef};
use crate::k8s::http_routes::{self, HttpRoutes};
use crate::playbook::catalog;
use futures::future::BoxFuture;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

/// The reference of an HTTPRoute.
pub(crate) fn route_ref(namespace: &str, name: &str) -> ObjectRef {
    ObjectRef {
        api_version: http_routes::API_VERSION.into(),
        kind: http_routes::KIND.into(),
        namespace: Some(namespace.to_string()),
        name: name.to_string(),
    }
}

/// The objects a zone's traffic shift touches, for the snapshot: its HTTPRoute, if it has one
/// (a traffic-manager webhook is not a Kubernetes object).
pub(crate) fn shift_targets(
    traffic: Option<&catalog::TrafficShift>,
    default_namespace: &str,
) -> Vec<ObjectRef> {
    traffic
        .and_then(|t| t.http_route.as_ref())
        .map(|backend| {
            let ns = super::namespace_or(backend.namespace.as_deref(), default_namespace);
            route_ref(ns, &backend.name)
        })
        .into_iter()
        .collect()
}

/// A change of an HTTPRoute's weights (and annotations) as one mutation. `annotations`: key →
/// new value (`None` removes it). Returns `None` when nothing would change. Backends the
/// route does not have are an error.
pub(crate) fn route_mutation(
    route: &Value,
    namespace: &str,
    name: &str,
    weights: &BTreeMap<String, u32>,
    annotations: &BTreeMap<String, Option<String>>,
    id: String,
    description: String,
) -> Result<Option<Mutation>, ActionError> {
    let current = http_routes::backend_weights(route);
    let unknown: Vec<&str> = weights
        .keys()
        .filter(|b| !current.contains_key(*b))
        .map(String::as_str)
        .collect();
    if !unknown.is_empty() {
        return Err(ActionError::Invalid {
            object: crate::k8s::describe(http_routes::KIND, Some(namespace), name),
            reason: format!(
                "no backendRef named {} (the route has: {})",
                unknown.join(", "),
                current.keys().cloned().collect::<Vec<_>>().join(", ")
            ),
        });
    }
    let weights_change = weights.iter().any(|(b, w)| current.get(b) != Some(w));
    let annotations_change = annotations
        .iter()
        .any(|(k, v)| http_routes::annotation(route, k) != v.as_deref());
    if !weights_change && !annotations_change {
        return Ok(None);
    }
    let old_rules = http_routes::rules(route);
    let new_rules = http_routes::rules_with_weights(route, weights);
    let mut new_annotations = Map::new();
    let mut old_annotations = Map::new();
    for (key, value) in annotations {
        new_annotations.insert(key.clone(), json!(value));
        old_annotations.insert(key.clone(), json!(http_routes::annotation(route, key)));
    }
    let request = json!({
        "metadata": { "annotations": new_annotations },
        "spec": { "rules": new_rules },
    });
    let mut diff = String::new();
    for (backend, weight) in weights {
        let before = current.get(backend).copied().unwrap_or_default();
        if before != *weight {
            diff.push_str(&format!(
                "  backendRef {backend}:\n-   weight: {before}\n+   weight: {weight}\n"
            ));
        }
    }
    Ok(Some(Mutation {
        id,
        target: route_ref(namespace, name),
        description,
        diff,
        pre_image: json!({
            "metadata": { "name": name, "namespace": namespace,
                          "resourceVersion": http_routes::resource_version(route),
                          "annotations": old_annotations.clone() },
            "spec": { "rules": old_rules.clone() },
        }),
        resource_version: http_routes::resource_version(route),
        inverse: Inverse::MergePatch {
            patch: json!({
                "metadata": { "annotations": old_annotations },
                "spec": { "rules": old_rules },
            }),
            expected: request.clone(),
        },
        request,
    }))
}

/// Applies a route mutation (its `request` is the merge patch).
pub(crate) async fn apply_route_patch(
    ctx: &ActionContext,
    mutation: &Mutation,
) -> Result<Applied, ActionError> {
    let routes = HttpRoutes::new(ctx.client.clone(), ctx.call_timeout);
    let namespace = mutation.target.namespace.clone().unwrap_or_default();
    let written = routes
        .patch_merge(&namespace, &mutation.target.name, &mutation.request)
        .await?;
    tracing::info!(run = %ctx.run_id, step = %ctx.step, route = %mutation.target,
                   mutation = %mutation.id, "route weights written");
    Ok(Applied {
        id: mutation.id.clone(),
        target: mutation.target.clone(),
        resource_version_after: http_routes::resource_version(&written),
    })
}

/// The `traffic.setWeights` action.
#[derive(Debug, Clone)]
pub struct TrafficSetWeights {
    args: catalog::TrafficSetWeights,
}

// === impl TrafficSetWeights ===

impl TrafficSetWeights {
    /// Checks the arguments (at least one weight).
    pub fn new(args: catalog::TrafficSetWeights) -> Result<TrafficSetWeights, ActionError> {
        if args.weights.is_empty() {
            return Err(ActionError::Invalid {
                object: format!("httproute/{}", args.name),
                reason: "name at least one backend in `weights`".into(),
            });
        }
        Ok(TrafficSetWeights { args })
    }

    async fn compute(&self, ctx: &ActionContext) -> Result<Diff, ActionError> {
        let namespace = ctx.namespace(self.args.namespace.as_deref());
        let name = &self.args.name;
        let routes = HttpRoutes::new(ctx.client.clone(), ctx.call_timeout);
        let route = routes.get(&namespace, name).await?;
        let description = format!(
            "set weights of httproute/{namespace}/{name}: {}",
            self.args
                .weights
                .iter()
                .map(|(b, w)| format!("{b}={w}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let mutation = route_mutation(
            &route,
            &namespace,
            name,
            &self.args.weights,
            &BTreeMap::new(),
            format!("weights/{namespace}/{name}"),
            description.clone(),
        )?;
        Ok(match mutation {
            Some(m) => Diff {
                summary: description,
                mutations: vec![m],
                progress: None,
            },
            None => Diff {
                summary: format!("httproute/{namespace}/{name} already has these weights"),
                mutations: Vec::new(),
                progress: None,
            },
        })
    }
}

impl Action for TrafficSetWeights {
    fn kind(&self) -> &'static str {
        "traffic.setWeights"
    }

    fn targets(&self, default_namespace: &str) -> Vec<ObjectRef> {
        let ns = super::namespace_or(self.args.namespace.as_deref(), default_namespace);
        vec![route_ref(ns, &self.args.name)]
    }

    fn diff<'a>(&'a self, ctx: &'a ActionContext) -> BoxFuture<'a, Result<Diff, ActionError>> {
        Box::pin(self.compute(ctx))
    }

    fn apply<'a>(
        &'a self,
        ctx: &'a ActionContext,
        mutation: &'a Mutation,
    ) -> BoxFuture<'a, Result<Applied, ActionError>> {
        Box::pin(apply_route_patch(ctx, mutation))
    }

    fn verify<'a>(
        &'a self,
        _ctx: &'a ActionContext,
        _applied: &'a [Applied],
    ) -> BoxFuture<'a, Result<(), ActionError>> {
        // The patch response already carries the new weights; nothing to wait for.
        Box::pin(async { Ok(()) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route() -> Value {
        json!({"metadata": {"resourceVersion": "5"},
               "spec": {"rules": [{"backendRefs": [{"name": "a", "weight": 100}, {"name": "b", "weight": 100}]}]}})
    }

    #[test]
    fn mutation_sets_weights_and_inverse_restores() {
        let weights = BTreeMap::from([("a".to_string(), 0)]);
        let annotations = BTreeMap::from([("ripcord.dev/x".to_string(), Some("100".to_string()))]);
        let m = route_mutation(
            &route(),
            "shop",
            "web",
            &weights,
            &annotations,
            "t".into(),
            "d".into(),
        );
        let Ok(Some(m)) = m else {
            panic!("expected a mutation: {m:?}");
        };
        assert_eq!(m.request["spec"]["rules"][0]["backendRefs"][0]["weight"], 0);
        assert_eq!(
            m.request["spec"]["rules"][0]["backendRefs"][1]["weight"],
            100
        );
        assert_eq!(m.request["metadata"]["annotations"]["ripcord.dev/x"], "100");
        let Inverse::MergePatch { patch, .. } = &m.inverse else {
            panic!("wrong inverse");
        };
        assert_eq!(patch["spec"]["rules"][0]["backendRefs"][0]["weight"], 100);
        assert_eq!(
            patch["metadata"]["annotations"]["ripcord.dev/x"],
            Value::Null
        );
        assert!(m.diff.contains("+   weight: 0"));
    }

    #[test]
    fn same_weights_are_satisfied_and_unknown_backends_fail() {
        let same = BTreeMap::from([("a".to_string(), 100)]);
        let none = route_mutation(
            &route(),
            "shop",
            "web",
            &same,
            &BTreeMap::new(),
            "t".into(),
            "d".into(),
        );
        assert!(matches!(none, Ok(None)));
        let unknown = BTreeMap::from([("zz".to_string(), 1)]);
        let err = route_mutation(
            &route(),
            "shop",
            "web",
            &unknown,
            &BTreeMap::new(),
            "t".into(),
            "d".into(),
        );
        assert!(matches!(err, Err(ActionError::Invalid { reason, .. }) if reason.contains("a, b")));
    }
}
