//! Pod scheduling and the simulated kubelet.
//!
//! The scheduler binds pods without `spec.nodeName` (see [`super::scheduler`]). The kubelet
//! then moves a bound pod Pending → Running after the scenario's `podStartDelay` (assigning
//! `podIP` from the node's podCIDR and `hostIP`), and Running → Ready after `podReadyDelay`.
//! Both delays keep time when the controllers run late under load: the containers start at
//! their due time (binding + `podStartDelay`) even if the pass that starts them comes later
//! (up to 10 simulated seconds later), and readiness counts from that start.
//!
//! Readiness gates follow the kubelet: a pod whose `spec.readinessGates` name condition types
//! gets `ContainersReady: True` when its containers are ready, but `Ready: True` only once every
//! gate's condition in `status.conditions` is `True` (written by someone else through
//! `pods/status`); until then `Ready` is `False` with reason `ReadinessGatesNotReady` and the
//! kubelet's message. Conditions the kubelet does not own are kept whenever it rewrites the
//! list, and a gate condition turning back to non-`True` makes the pod not Ready again.
//! Pods of a bad release never become ready (the readiness probe fails) or crash-loop with a
//! growing restartCount and the kubelet's exponential back-off (10 s doubling to 5 min).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use super::events::{EventType, emit, emit_once};
use super::scheduler::{self, NodeInfo, PodRequest};
use super::util::{self, at, str_at};
use super::{Controllers, PodTimes};
use crate::scenario::{BAD_RELEASE_ANNOTATION, BadMode};
use crate::store::kinds;

/// How long a crash-looping container runs before it exits (simulated).
const CRASH_AFTER: Duration = Duration::from_secs(3);
/// First crash-loop back-off; doubles per restart up to [`MAX_BACKOFF`].
const BASE_BACKOFF: Duration = Duration::from_secs(10);
const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// How late (simulated) a pass may get round to starting a bound pod's containers and still
/// start them at their due time (see [`kubelet`]).
const LATE_START_CATCH_UP: Duration = Duration::from_secs(10);

/// Hands out pod IPs from each node's podCIDR (`10.244.N.0/24`), never reusing a live one.
#[derive(Debug, Default)]
pub struct IpAllocator {
    used: BTreeSet<String>,
}

impl IpAllocator {
    /// An allocator aware of the IPs of `pods`.
    pub fn from_pods<P: std::borrow::Borrow<Value>>(pods: &[P]) -> IpAllocator {
        IpAllocator {
            used: pods
                .iter()
                .filter_map(|p| str_at(p.borrow(), &["status", "podIP"]))
                .map(str::to_string)
                .collect(),
        }
    }

    /// The next free IP on `node` (falls back to a 10.245.x.y address when the /24 is full).
    pub fn allocate(&mut self, node: &Value) -> String {
        let prefix = str_at(node, &["spec", "podCIDR"])
            .and_then(|cidr| cidr.strip_suffix(".0/24"))
            .unwrap_or("10.244.0")
            .to_string();
        for host in 2..255 {
            let ip = format!("{prefix}.{host}");
            if self.used.insert(ip.clone()) {
                return ip;
            }
        }
        for n in 0..65536u32 {
            let ip = format!("10.245.{}.{}", n / 256, n % 256);
            if self.used.insert(ip.clone()) {
                return ip;
            }
        }
        "10.246.0.1".to_string()
    }
}

fn container_names(pod: &Value) -> Vec<(String, String)> {
    at(pod, &["spec", "containers"])
        .and_then(Value::as_array)
        .map(|cs| {
            cs.iter()
                .map(|c| {
                    (
                        c.get("name")
                            .and_then(Value::as_str)
                            .unwrap_or("")
                            .to_string(),
                        c.get("image")
                            .and_then(Value::as_str)
                            .unwrap_or("")
                            .to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// How the pod misbehaves, from its annotation or its images.
pub fn bad_mode_of(c: &Controllers, pod: &Value) -> Option<BadMode> {
    let annotation = util::annotation(pod, BAD_RELEASE_ANNOTATION);
    if annotation.is_none() && c.settings.bad_images.is_empty() {
        return None;
    }
    let images: Vec<&str> = at(pod, &["spec", "containers"])
        .and_then(Value::as_array)
        .map(|cs| {
            cs.iter()
                .filter_map(|c| c.get("image").and_then(Value::as_str))
                .collect()
        })
        .unwrap_or_default();
    c.settings.bad_mode(annotation, &images)
}

fn image_id(image: &str) -> String {
    format!(
        "{image}@sha256:{:064x}",
        u128::from(util::fnv32a(image.as_bytes()))
    )
}

fn container_status(
    name: &str,
    image: &str,
    state: Value,
    ready: bool,
    restarts: i64,
    last: Option<Value>,
) -> Value {
    let running = state.get("running").is_some();
    let mut s = json!({
        "name": name,
        "image": image,
        "imageID": image_id(image),
        "containerID": format!("containerd://{:064x}", u128::from(util::fnv32a(format!("{name}{image}{restarts}").as_bytes()))),
        "ready": ready,
        "started": running,
        "restartCount": restarts,
        "state": state,
    });
    if let Some(last) = last {
        util::set_at(&mut s, &["lastState"], last);
    } else {
        util::set_at(&mut s, &["lastState"], json!({}));
    }
    s
}

fn conditions(
    now: &str,
    scheduled: &str,
    started: bool,
    ready: bool,
    not_ready_names: &[String],
) -> Value {
    let reason = |ok: bool| {
        if ok {
            Value::Null
        } else {
            json!("ContainersNotReady")
        }
    };
    let message = |ok: bool| {
        if ok {
            Value::Null
        } else {
            json!(format!(
                "containers with unready status: [{}]",
                not_ready_names.join(" ")
            ))
        }
    };
    json!([
        {"type": "PodReadyToStartContainers", "status": if started { "True" } else { "False" }, "lastProbeTime": Value::Null, "lastTransitionTime": now},
        {"type": "Initialized", "status": "True", "lastProbeTime": Value::Null, "lastTransitionTime": scheduled},
        {"type": "Ready", "status": if ready { "True" } else { "False" }, "lastProbeTime": Value::Null, "lastTransitionTime": now,
         "reason": reason(ready), "message": message(ready)},
        {"type": "ContainersReady", "status": if ready { "True" } else { "False" }, "lastProbeTime": Value::Null, "lastTransitionTime": now,
         "reason": reason(ready), "message": message(ready)},
        {"type": "PodScheduled", "status": "True", "lastProbeTime": Value::Null, "lastTransitionTime": scheduled},
    ])
}

/// The condition types the kubelet (and the scheduler) own; any other condition — a readiness
/// gate's, written by a controller through `pods/status` — survives their rewrites.
const KUBELET_CONDITIONS: &[&str] = &[
    "PodReadyToStartContainers",
    "Initialized",
    "Ready",
    "ContainersReady",
    "PodScheduled",
];

/// `owned` (the kubelet's or scheduler's conditions) followed by the conditions of `current`
/// they do not own.
fn with_foreign_conditions(owned: Value, current: &Value) -> Value {
    let mut list = owned.as_array().cloned().unwrap_or_default();
    if let Some(existing) = at(current, &["status", "conditions"]).and_then(Value::as_array) {
        list.extend(
            existing
                .iter()
                .filter(|c| {
                    !KUBELET_CONDITIONS
                        .contains(&c.get("type").and_then(Value::as_str).unwrap_or(""))
                })
                .cloned(),
        );
    }
    Value::Array(list)
}

/// Sets the `Ready` condition of a pod whose containers are ready from its readiness gates:
/// `True` when every gate's condition is `True`, else `False` with the kubelet's reason and
/// message. Returns whether anything changed.
fn sync_gated_ready(v: &mut Value, now: &str) -> bool {
    let unready = util::readiness_gates_unready(v);
    let Some(conds) = v
        .pointer_mut("/status/conditions")
        .and_then(Value::as_array_mut)
    else {
        return false;
    };
    let Some(ready) = conds
        .iter_mut()
        .find(|c| c.get("type").and_then(Value::as_str) == Some("Ready"))
        .and_then(Value::as_object_mut)
    else {
        return false;
    };
    let status = if unready.is_none() { "True" } else { "False" };
    let was = ready.get("status").and_then(Value::as_str).unwrap_or("");
    let reason = unready.as_ref().map(|_| json!("ReadinessGatesNotReady"));
    let message = unready.map(Value::String);
    if was == status
        && ready.get("message") == message.as_ref()
        && ready.get("reason") == reason.as_ref()
    {
        return false;
    }
    if was != status {
        ready.insert("lastTransitionTime".into(), json!(now));
    }
    ready.insert("status".into(), json!(status));
    match (reason, message) {
        (Some(reason), Some(message)) => {
            ready.insert("reason".into(), reason);
            ready.insert("message".into(), message);
        }
        _ => {
            ready.remove("reason");
            ready.remove("message");
        }
    }
    true
}

/// Puts a pod straight into its settled state on `node` (used when loading a scenario):
/// Running, and Ready unless `bad`. A scenario describes a steady state, so the conditions of
/// the pod's readiness gates are `True` (released before the scenario starts).
pub fn settle(pod: &mut Value, node: &Value, ip: &str, now: &str, bad: Option<BadMode>) {
    util::set_at(pod, &["spec", "nodeName"], json!(util::name(node)));
    let ready = bad.is_none();
    let names = container_names(pod);
    let statuses: Vec<Value> = names
        .iter()
        .map(|(n, i)| {
            container_status(n, i, json!({"running": {"startedAt": now}}), ready, 0, None)
        })
        .collect();
    let unready: Vec<String> = if ready {
        Vec::new()
    } else {
        names.iter().map(|(n, _)| n.clone()).collect()
    };
    let status = util::object_at_mut(pod, &["status"]);
    status.insert("phase".into(), json!("Running"));
    status.insert("hostIP".into(), json!(node_ip(node)));
    status.insert("hostIPs".into(), json!([{"ip": node_ip(node)}]));
    status.insert("podIP".into(), json!(ip));
    status.insert("podIPs".into(), json!([{"ip": ip}]));
    status.insert("startTime".into(), json!(now));
    status.insert("containerStatuses".into(), json!(statuses));
    let mut conds = conditions(now, now, true, ready, &unready);
    if let Some(list) = conds.as_array_mut() {
        for gate in util::readiness_gates(pod) {
            list.push(
                json!({"type": gate, "status": "True", "lastProbeTime": Value::Null,
                             "lastTransitionTime": now, "reason": "ScenarioSettled"}),
            );
        }
    }
    let status = util::object_at_mut(pod, &["status"]);
    status.insert("conditions".into(), conds);
    // Only the status: the spec keeps its empty defaults (`resources: {}`,
    // `securityContext: {}`) as a real server stores them.
    if let Some(n) = pod.get("status").and_then(util::normalize) {
        pod["status"] = n;
    }
}

fn node_ip(node: &Value) -> String {
    at(node, &["status", "addresses"])
        .and_then(Value::as_array)
        .and_then(|a| {
            a.iter()
                .find(|x| x.get("type").and_then(Value::as_str) == Some("InternalIP"))
                .and_then(|x| x.get("address"))
                .and_then(Value::as_str)
        })
        .unwrap_or("10.0.0.1")
        .to_string()
}

/// Runs the scheduler and the kubelet over every pod.
pub fn reconcile(c: &mut Controllers) {
    let pods = c.cache.list(&kinds::pods());
    if pods.is_empty() {
        return;
    }
    let nodes = c.cache.list(&kinds::nodes());
    let node_by_name: BTreeMap<&str, usize> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (util::name(n), i))
        .collect();
    let unscheduled = pods.iter().any(|p| {
        util::is_pod_active(p) && str_at(p, &["spec", "nodeName"]).is_none_or(str::is_empty)
    });
    let mut placement = unscheduled.then(|| Placement::new(&pods, &nodes, &node_by_name));
    // The pod IPs in use are only gathered when a container actually starts (not for every
    // pass in which some pod waits for its start or readiness delay).
    let mut ips: Option<IpAllocator> = None;
    let mut allocate_ip = |node: &Value| {
        ips.get_or_insert_with(|| IpAllocator::from_pods(&pods))
            .allocate(node)
    };
    for pod in &pods {
        if let Some(deadline) = util::time_at(pod, &["metadata", "deletionTimestamp"]) {
            finish_termination(c, pod, deadline);
            continue;
        }
        if !util::is_pod_active(pod) || settled(c, pod) {
            continue;
        }
        let node_name = str_at(pod, &["spec", "nodeName"]).unwrap_or("");
        if node_name.is_empty() {
            if let Some(placement) = placement.as_mut() {
                schedule(c, pod, &nodes, placement);
            }
            continue;
        }
        let Some(i) = node_by_name.get(node_name) else {
            // The node is gone; the pod garbage collector removes the pod.
            continue;
        };
        kubelet(c, pod, &nodes[*i], &mut allocate_ip);
    }
}

/// The kubelet's side of graceful deletion: once the grace period (the pod's
/// `deletionTimestamp`) has passed, the containers are stopped and the pod is removed.
fn finish_termination(c: &mut Controllers, pod: &Value, deadline: jiff::Timestamp) {
    if deadline > c.now {
        c.wake_at(deadline);
        return;
    }
    let pending_grace = at(pod, &["metadata", "deletionGracePeriodSeconds"])
        .and_then(Value::as_i64)
        .is_some_and(|g| g > 0);
    if pending_grace {
        c.delete_with_grace("kubelet", &kinds::pods(), pod, Some(0));
    }
}

/// Whether a pod needs nothing from the kubelet: running, ready with its readiness gates
/// passing, and not of a bad release.
fn settled(c: &Controllers, pod: &Value) -> bool {
    str_at(pod, &["status", "phase"]) == Some("Running")
        && util::is_pod_ready(pod)
        && util::readiness_gates_unready(pod).is_none()
        && bad_mode_of(c, pod).is_none()
}

/// What the scheduler needs across one pass: node usage and per-owner placement counts.
struct Placement {
    infos: Vec<NodeInfo>,
    /// owner uid -> node name -> pods, for spreading.
    owner_counts: BTreeMap<String, BTreeMap<String, i64>>,
}

impl Placement {
    fn new(
        pods: &[Arc<Value>],
        nodes: &[Arc<Value>],
        node_by_name: &BTreeMap<&str, usize>,
    ) -> Placement {
        let mut infos: Vec<NodeInfo> = nodes.iter().map(|n| NodeInfo::from_node(n)).collect();
        let mut owner_counts: BTreeMap<String, BTreeMap<String, i64>> = BTreeMap::new();
        // A terminating pod still holds its node's resources until it is gone (as the real
        // scheduler counts it), but no longer counts for spreading its owner's pods.
        let not_terminal = |p: &&Arc<Value>| {
            !matches!(
                str_at(p, &["status", "phase"]),
                Some("Succeeded" | "Failed")
            )
        };
        for p in pods.iter().filter(not_terminal) {
            if let Some(node) = str_at(p, &["spec", "nodeName"]).filter(|n| !n.is_empty()) {
                if let Some(i) = node_by_name.get(node) {
                    // Only the requests: no copy of the spec, no tolerations (every pod, every
                    // pass that schedules).
                    let (cpu, memory) = util::pod_requests(p.get("spec").unwrap_or(&Value::Null));
                    infos[*i].add_pod(cpu, memory);
                }
                if !util::is_pod_active(p) {
                    continue;
                }
                if let Some((_, _, uid)) = util::controller_ref(p) {
                    *owner_counts
                        .entry(uid.to_string())
                        .or_default()
                        .entry(node.to_string())
                        .or_default() += 1;
                }
            }
        }
        Placement {
            infos,
            owner_counts,
        }
    }
}

fn schedule(c: &mut Controllers, pod: &Value, nodes: &[Arc<Value>], placement: &mut Placement) {
    let Placement {
        infos,
        owner_counts,
    } = placement;
    let req = PodRequest::from_pod(pod);
    let owner = util::controller_ref(pod)
        .map(|(_, _, uid)| uid.to_string())
        .unwrap_or_default();
    let empty = BTreeMap::new();
    let same = owner_counts.get(&owner).unwrap_or(&empty);
    let Some(i) = scheduler::pick_node(infos, &req, same) else {
        let total = infos.len();
        let message = format!(
            "0/{total} nodes are available: {total} node(s) didn't match pod placement (unschedulable, tainted, not ready or insufficient resources). preemption: 0/{total} nodes are available: {total} Preemption is not helpful for scheduling."
        );
        let now = c.now_str();
        let m = message.clone();
        c.modify("default-scheduler", &kinds::pods(), pod, |v| {
            let cond = json!({"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": m,
                              "lastProbeTime": Value::Null, "lastTransitionTime": now});
            let has = util::pod_condition(v, "PodScheduled")
                .is_some_and(|c| c.get("reason").and_then(Value::as_str) == Some("Unschedulable"));
            if !has {
                let conds = with_foreign_conditions(json!([cond]), v);
                util::set_at(v, &["status", "conditions"], conds);
            }
        });
        emit_once(
            c,
            pod,
            "FailedScheduling",
            EventType::Warning,
            "FailedScheduling",
            &message,
            "default-scheduler",
        );
        return;
    };
    infos[i].add_pod(req.cpu_millis, req.memory_bytes);
    let node_name = infos[i].name.clone();
    *owner_counts
        .entry(owner)
        .or_default()
        .entry(node_name.clone())
        .or_default() += 1;
    let now = c.now_str();
    let bound = c.modify("default-scheduler", &kinds::pods(), pod, |v| {
        util::set_at(v, &["spec", "nodeName"], json!(node_name));
        let conds = with_foreign_conditions(
            json!([{"type": "PodScheduled", "status": "True",
            "lastProbeTime": Value::Null, "lastTransitionTime": now}]),
            v,
        );
        util::set_at(v, &["status", "conditions"], conds);
    });
    if let Some(bound) = bound {
        let times = c
            .state
            .pod_times
            .entry(util::uid(pod).to_string())
            .or_default();
        times.bound_at = Some(c.now);
        let due = c
            .now
            .checked_add(c.settings.pod_start_delay)
            .unwrap_or(c.now);
        c.wake_at(due);
        let message = format!(
            "Successfully assigned {}/{} to {}",
            util::namespace(pod).unwrap_or(""),
            util::name(pod),
            util::name(&nodes[i])
        );
        emit(
            c,
            &bound,
            EventType::Normal,
            "Scheduled",
            &message,
            "default-scheduler",
        );
    }
}

fn backoff(restarts: i64) -> Duration {
    let exp = restarts.clamp(1, 10) - 1;
    BASE_BACKOFF.saturating_mul(1u32 << exp).min(MAX_BACKOFF)
}

fn kubelet(
    c: &mut Controllers,
    pod: &Value,
    node: &Value,
    allocate_ip: &mut dyn FnMut(&Value) -> String,
) {
    let uid = util::uid(pod).to_string();
    let phase = str_at(pod, &["status", "phase"])
        .unwrap_or("Pending")
        .to_string();
    let now = c.now;
    let now_s = c.now_str();
    let bad = bad_mode_of(c, pod);
    let names = container_names(pod);
    let mut times = c.state.pod_times.get(&uid).cloned().unwrap_or_default();
    if phase == "Pending" {
        let bound_at = *times.bound_at.get_or_insert_with(|| {
            util::pod_condition(pod, "PodScheduled")
                .and_then(|c| c.get("lastTransitionTime"))
                .and_then(Value::as_str)
                .and_then(util::parse_time)
                .unwrap_or(now)
        });
        let due = bound_at
            .checked_add(c.settings.pod_start_delay)
            .unwrap_or(bound_at);
        if due > now {
            c.state.pod_times.insert(uid, times);
            c.wake_at(due);
            return;
        }
        // The containers start at their due time, not when this pass got round to them: a
        // pass that runs late (a busy API server, a loaded machine) must not push the
        // readiness delay, which counts from the start, further out. A pod that has waited
        // much longer (bound long ago by someone else) starts now.
        let late = jiff::SignedDuration::try_from(LATE_START_CATCH_UP)
            .unwrap_or(jiff::SignedDuration::ZERO);
        let started = if now.duration_since(due) <= late {
            due
        } else {
            now
        };
        let started_s = crate::clock::format_k8s_time(started);
        let ip = allocate_ip(node);
        let host = node_ip(node);
        let scheduled = util::pod_condition(pod, "PodScheduled")
            .and_then(|c| c.get("lastTransitionTime").cloned())
            .unwrap_or(json!(started_s));
        let scheduled = scheduled.as_str().unwrap_or(&started_s).to_string();
        let statuses: Vec<Value> = names
            .iter()
            .map(|(n, i)| {
                container_status(
                    n,
                    i,
                    json!({"running": {"startedAt": started_s}}),
                    false,
                    0,
                    None,
                )
            })
            .collect();
        let unready: Vec<String> = names.iter().map(|(n, _)| n.clone()).collect();
        let conds = conditions(&started_s, &scheduled, true, false, &unready);
        let updated = c.modify("kubelet", &kinds::pods(), pod, |v| {
            let conds = with_foreign_conditions(conds, v);
            let s = util::object_at_mut(v, &["status"]);
            s.insert("phase".into(), json!("Running"));
            s.insert("hostIP".into(), json!(host));
            s.insert("hostIPs".into(), json!([{"ip": host}]));
            s.insert("podIP".into(), json!(ip));
            s.insert("podIPs".into(), json!([{"ip": ip}]));
            s.insert("startTime".into(), json!(started_s));
            s.insert("containerStatuses".into(), json!(statuses));
            s.insert("conditions".into(), conds);
            if let Some(n) = v.get("status").and_then(util::normalize) {
                v["status"] = n;
            }
        });
        times.started_at = Some(started);
        c.state.pod_times.insert(uid, times);
        if let Some(updated) = updated {
            for (n, i) in &names {
                emit(
                    c,
                    &updated,
                    EventType::Normal,
                    "Pulled",
                    &format!("Container image \"{i}\" already present on machine"),
                    "kubelet",
                );
                emit(
                    c,
                    &updated,
                    EventType::Normal,
                    "Started",
                    &format!("Started container {n}"),
                    "kubelet",
                );
            }
        }
        let next = match bad {
            None => started
                .checked_add(c.settings.pod_ready_delay)
                .unwrap_or(started),
            Some(BadMode::CrashLoop) => started.checked_add(CRASH_AFTER).unwrap_or(started),
            Some(BadMode::NotReady) => started
                .checked_add(c.settings.pod_ready_delay)
                .unwrap_or(started),
        };
        c.wake_at(next);
        return;
    }
    if phase != "Running" {
        return;
    }
    let started_at = *times.started_at.get_or_insert_with(|| {
        at(pod, &["status", "containerStatuses"])
            .and_then(Value::as_array)
            .and_then(|cs| cs.first())
            .and_then(|cs| at(cs, &["state", "running", "startedAt"]))
            .and_then(Value::as_str)
            .and_then(util::parse_time)
            .unwrap_or(now)
    });
    match bad {
        None => {
            let containers_ready = util::pod_condition(pod, "ContainersReady")
                .is_some_and(|c| c.get("status").and_then(Value::as_str) == Some("True"));
            if containers_ready {
                // Ready follows the readiness gates (a no-op for a pod without gates).
                c.state.pod_times.insert(uid, times);
                let mut probe = pod.clone();
                if sync_gated_ready(&mut probe, &now_s) {
                    c.modify("kubelet", &kinds::pods(), pod, |v| {
                        sync_gated_ready(v, &now_s);
                    });
                }
                return;
            }
            if util::is_pod_ready(pod) {
                c.state.pod_times.insert(uid, times);
                return;
            }
            let running = at(pod, &["status", "containerStatuses"])
                .and_then(Value::as_array)
                .is_some_and(|cs| cs.iter().all(|s| at(s, &["state", "running"]).is_some()));
            let due = started_at
                .checked_add(c.settings.pod_ready_delay)
                .unwrap_or(started_at);
            if !running || due > now {
                c.state.pod_times.insert(uid, times);
                if running {
                    c.wake_at(due);
                }
                return;
            }
            c.state.pod_times.insert(uid, times);
            c.modify("kubelet", &kinds::pods(), pod, |v| {
                if let Some(cs) = v
                    .pointer_mut("/status/containerStatuses")
                    .and_then(Value::as_array_mut)
                {
                    for s in cs {
                        if let Some(m) = s.as_object_mut() {
                            m.insert("ready".into(), json!(true));
                            m.insert("started".into(), json!(true));
                        }
                    }
                }
                if let Some(conds) = v
                    .pointer_mut("/status/conditions")
                    .and_then(Value::as_array_mut)
                {
                    for cond in conds {
                        let t = cond
                            .get("type")
                            .and_then(Value::as_str)
                            .unwrap_or("")
                            .to_string();
                        if (t == "Ready" || t == "ContainersReady")
                            && let Some(m) = cond.as_object_mut()
                        {
                            m.insert("status".into(), json!("True"));
                            m.insert("lastTransitionTime".into(), json!(now_s));
                            m.remove("reason");
                            m.remove("message");
                        }
                    }
                }
                // With readiness gates, Ready waits for their conditions.
                if util::readiness_gates_unready(v).is_some() {
                    sync_gated_ready(v, &now_s);
                }
            });
        }
        Some(BadMode::NotReady) => {
            c.state.pod_times.insert(uid, times);
            let due = started_at
                .checked_add(c.settings.pod_ready_delay)
                .unwrap_or(started_at);
            if due > now {
                c.wake_at(due);
                return;
            }
            let port = at(pod, &["spec", "containers"])
                .and_then(Value::as_array)
                .and_then(|cs| cs.first())
                .and_then(|c0| at(c0, &["readinessProbe", "httpGet", "port"]))
                .map(|p| p.to_string())
                .unwrap_or_else(|| "8080".to_string());
            let ip = str_at(pod, &["status", "podIP"]).unwrap_or("").to_string();
            emit_once(
                c,
                pod,
                "Unhealthy",
                EventType::Warning,
                "Unhealthy",
                &format!(
                    "Readiness probe failed: Get \"http://{ip}:{port}/healthz\": HTTP probe failed with statuscode: 503"
                ),
                "kubelet",
            );
        }
        Some(BadMode::CrashLoop) => crash_loop(c, pod, times, started_at),
    }
}

fn crash_loop(c: &mut Controllers, pod: &Value, mut times: PodTimes, started_at: jiff::Timestamp) {
    let uid = util::uid(pod).to_string();
    let now = c.now;
    let now_s = c.now_str();
    let first = at(pod, &["status", "containerStatuses"])
        .and_then(Value::as_array)
        .and_then(|cs| cs.first())
        .cloned()
        .unwrap_or(json!({}));
    let restarts = first
        .get("restartCount")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    let running = at(&first, &["state", "running"]).is_some();
    let container = super::replicaset::first_container(pod).to_string();
    let pod_ref = format!(
        "{}_{}({})",
        util::name(pod),
        util::namespace(pod).unwrap_or(""),
        util::uid(pod)
    );
    if running {
        let crash_at = started_at.checked_add(CRASH_AFTER).unwrap_or(started_at);
        if crash_at > now {
            c.state.pod_times.insert(uid, times);
            c.wake_at(crash_at);
            return;
        }
        let restarts = restarts + 1;
        let wait = backoff(restarts);
        let restart_at = now.checked_add(wait).unwrap_or(now);
        times.restart_at = Some(restart_at);
        c.state.pod_times.insert(uid, times);
        c.wake_at(restart_at);
        let started = at(&first, &["state", "running", "startedAt"])
            .cloned()
            .unwrap_or(json!(now_s));
        let message = format!(
            "back-off {}s restarting failed container={container} pod={pod_ref}",
            wait.as_secs()
        );
        let ns = now_s.clone();
        c.modify("kubelet", &kinds::pods(), pod, |v| {
            if let Some(cs) = v
                .pointer_mut("/status/containerStatuses")
                .and_then(Value::as_array_mut)
            {
                for s in cs {
                    if let Some(m) = s.as_object_mut() {
                        m.insert("ready".into(), json!(false));
                        m.insert("started".into(), json!(false));
                        m.insert("restartCount".into(), json!(restarts));
                        m.insert(
                            "state".into(),
                            json!({"waiting": {"reason": "CrashLoopBackOff", "message": message}}),
                        );
                        m.insert(
                            "lastState".into(),
                            json!({"terminated": {"exitCode": 1, "reason": "Error",
                            "startedAt": started, "finishedAt": ns}}),
                        );
                    }
                }
            }
        });
        emit(
            c,
            pod,
            EventType::Warning,
            "BackOff",
            &format!("Back-off restarting failed container {container} in pod {pod_ref}"),
            "kubelet",
        );
        return;
    }
    // Waiting in back-off: restart when due.
    let restart_at = times.restart_at.unwrap_or(now);
    if restart_at > now {
        c.state.pod_times.insert(uid, times);
        c.wake_at(restart_at);
        return;
    }
    times.started_at = Some(now);
    times.restart_at = None;
    c.state.pod_times.insert(uid, times);
    c.wake_at(now.checked_add(CRASH_AFTER).unwrap_or(now));
    c.modify("kubelet", &kinds::pods(), pod, |v| {
        if let Some(cs) = v
            .pointer_mut("/status/containerStatuses")
            .and_then(Value::as_array_mut)
        {
            for s in cs {
                if let Some(m) = s.as_object_mut() {
                    m.insert("started".into(), json!(true));
                    m.insert("state".into(), json!({"running": {"startedAt": now_s}}));
                }
            }
        }
    });
    emit(
        c,
        pod,
        EventType::Normal,
        "Started",
        &format!("Started container {container}"),
        "kubelet",
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        assert_eq!(backoff(1), Duration::from_secs(10));
        assert_eq!(backoff(2), Duration::from_secs(20));
        assert_eq!(backoff(4), Duration::from_secs(80));
        assert_eq!(backoff(9), Duration::from_secs(300));
    }

    #[test]
    fn ip_allocator_uses_pod_cidr_and_skips_used() {
        let node = json!({"spec": {"podCIDR": "10.244.3.0/24"}});
        let pods = vec![json!({"status": {"podIP": "10.244.3.2"}})];
        let mut ips = IpAllocator::from_pods(&pods);
        assert_eq!(ips.allocate(&node), "10.244.3.3");
        assert_eq!(ips.allocate(&node), "10.244.3.4");
    }

    #[test]
    fn settled_pod_is_running_and_ready_unless_bad() {
        let node = json!({"metadata": {"name": "n1"}, "status": {"addresses": [{"type": "InternalIP", "address": "10.0.0.9"}]}});
        let base = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "app", "image": "app:1"}]}});
        let mut good = base.clone();
        settle(&mut good, &node, "10.244.1.2", "2026-01-01T00:00:00Z", None);
        assert!(util::is_pod_ready(&good));
        assert_eq!(str_at(&good, &["status", "hostIP"]), Some("10.0.0.9"));
        assert_eq!(str_at(&good, &["spec", "nodeName"]), Some("n1"));
        let mut bad = base;
        settle(
            &mut bad,
            &node,
            "10.244.1.3",
            "2026-01-01T00:00:00Z",
            Some(BadMode::NotReady),
        );
        assert!(!util::is_pod_ready(&bad));
        assert_eq!(str_at(&bad, &["status", "phase"]), Some("Running"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_late_pass_does_not_push_readiness_out() {
        use crate::clock::SimClock;
        use crate::invariants::InvariantMonitor;
        use crate::scenario::SimSettings;
        use crate::store::Store;
        let store = Store::new(SimClock::new(1.0));
        store
            .create(
                &kinds::nodes(),
                json!({"metadata": {"name": "n1"}, "spec": {"podCIDR": "10.244.1.0/24"},
                       "status": {"conditions": [{"type": "Ready", "status": "True"}],
                                  "allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"}}}),
            )
            .expect("node");
        store
            .create(
                &kinds::pods(),
                json!({"metadata": {"name": "p", "namespace": "default"},
                       "spec": {"containers": [{"name": "app", "image": "app:1"}]},
                       "status": {"phase": "Pending"}}),
            )
            .expect("pod");
        let settings = SimSettings {
            pod_start_delay: Duration::from_secs(1),
            pod_ready_delay: Duration::from_secs(3),
            ..SimSettings::default()
        };
        let mut c = Controllers::new(store.clone(), settings, InvariantMonitor::new());
        let pod = |store: &Store| {
            store
                .get(&kinds::pods(), Some("default"), "p")
                .expect("pod")
        };
        c.settle(20);
        assert!(
            str_at(&pod(&store), &["spec", "nodeName"]).is_some(),
            "bound"
        );
        let bound = store.clock().now();
        // The kubelet gets round to the start 2.5 s late (start due after 1 s).
        tokio::time::advance(Duration::from_millis(3500)).await;
        c.settle(20);
        let running = pod(&store);
        assert_eq!(str_at(&running, &["status", "phase"]), Some("Running"));
        let started = at(&running, &["status", "containerStatuses"])
            .and_then(|cs| cs.get(0))
            .and_then(|cs| str_at(cs, &["state", "running", "startedAt"]))
            .and_then(util::parse_time)
            .expect("startedAt");
        let expected = bound
            .checked_add(jiff::SignedDuration::from_secs(1))
            .expect("time");
        assert!(
            started.duration_since(expected).abs() < jiff::SignedDuration::from_secs(1),
            "started at its due time {expected}, not when the pass ran: {started}"
        );
        assert!(!util::is_pod_ready(&running));
        // Ready 3 s after the start: 1 s + 3 s after binding, 0.5 s after the late pass + 1 s.
        tokio::time::advance(Duration::from_millis(600)).await;
        c.settle(20);
        assert!(util::is_pod_ready(&pod(&store)), "ready on time");
    }
}
