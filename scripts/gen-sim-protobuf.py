#!/usr/bin/env python3
"""Generates crates/ripcord-sim/src/protobuf_json.rs: protobuf -> JSON conversion for the k8s-pb message types
reachable from the kinds the sim serves.

Usage: scripts/gen-sim-protobuf.py PATH/TO/k8s-pb-X.Y.Z/src > crates/ripcord-sim/src/protobuf_json.rs
       cargo fmt

Each message type becomes one `message!` line listing every field of the prost struct (the
macro destructures exhaustively, so a k8s-pb upgrade that adds a field fails to compile until
this file is regenerated). Field JSON names are the Go json names: lowerCamelCase with the
Kubernetes acronyms (IP, IPs, ID, UID, URL, CIDR, ...) upper-cased.
"""
import os
import re
import sys

ROOTS = [
    ("v1", "Namespace", "api::core::v1::Namespace"),
    ("v1", "ConfigMap", "api::core::v1::ConfigMap"),
    ("v1", "Secret", "api::core::v1::Secret"),
    ("v1", "ServiceAccount", "api::core::v1::ServiceAccount"),
    ("v1", "Service", "api::core::v1::Service"),
    ("v1", "Pod", "api::core::v1::Pod"),
    ("v1", "Node", "api::core::v1::Node"),
    ("v1", "Endpoints", "api::core::v1::Endpoints"),
    ("v1", "Event", "api::core::v1::Event"),
    ("v1", "PersistentVolumeClaim", "api::core::v1::PersistentVolumeClaim"),
    ("v1", "PersistentVolume", "api::core::v1::PersistentVolume"),
    ("v1", "ReplicationController", "api::core::v1::ReplicationController"),
    ("apps/v1", "Deployment", "api::apps::v1::Deployment"),
    ("apps/v1", "ReplicaSet", "api::apps::v1::ReplicaSet"),
    ("apps/v1", "DaemonSet", "api::apps::v1::DaemonSet"),
    ("apps/v1", "StatefulSet", "api::apps::v1::StatefulSet"),
    ("apps/v1", "ControllerRevision", "api::apps::v1::ControllerRevision"),
    ("batch/v1", "Job", "api::batch::v1::Job"),
    ("batch/v1", "CronJob", "api::batch::v1::CronJob"),
    ("autoscaling/v2", "HorizontalPodAutoscaler", "api::autoscaling::v2::HorizontalPodAutoscaler"),
    ("autoscaling/v1", "Scale", "api::autoscaling::v1::Scale"),
    ("autoscaling/v1", "HorizontalPodAutoscaler", "api::autoscaling::v1::HorizontalPodAutoscaler"),
    ("networking.k8s.io/v1", "Ingress", "api::networking::v1::Ingress"),
    ("policy/v1", "PodDisruptionBudget", "api::policy::v1::PodDisruptionBudget"),
    ("policy/v1", "Eviction", "api::policy::v1::Eviction"),
    ("discovery.k8s.io/v1", "EndpointSlice", "api::discovery::v1::EndpointSlice"),
    ("coordination.k8s.io/v1", "Lease", "api::coordination::v1::Lease"),
    ("events.k8s.io/v1", "Event", "api::events::v1::Event"),
    ("meta.k8s.io/v1", "DeleteOptions", "apimachinery::pkg::apis::meta::v1::DeleteOptions"),
    ("v1", "DeleteOptions", "apimachinery::pkg::apis::meta::v1::DeleteOptions"),
]

# Hand-written conversions (well-known types whose JSON form is not their proto structure).
SPECIAL = {
    "apimachinery::pkg::apis::meta::v1::Time",
    "apimachinery::pkg::apis::meta::v1::MicroTime",
    "apimachinery::pkg::apis::meta::v1::Duration",
    "apimachinery::pkg::apis::meta::v1::FieldsV1",
    "apimachinery::pkg::api::resource::Quantity",
    "apimachinery::pkg::util::intstr::IntOrString",
    "apimachinery::pkg::runtime::RawExtension",
}

ACRONYMS = {"ip": "IP", "ips": "IPs", "id": "ID", "uid": "UID", "uuid": "UUID", "uri": "URI",
            "url": "URL", "cidr": "CIDR", "cidrs": "CIDRs", "fqdn": "FQDN", "pid": "PID",
            "ipc": "IPC", "tls": "TLS", "io": "IO", "wwns": "WWNs"}

FIELD_RE = re.compile(
    r'#\[prost\(([^)]*)\)\]\s*pub (r#)?([a-z_0-9]+):\s*(.*?),\s*\n(?=\s*(?:///|#\[|\Z))', re.S)
STRUCT_RE = re.compile(r'pub struct (\w+) \{(.*?)\n\}', re.S)


# Field names prost's snake-casing mangled beyond the acronym rules.
OVERRIDES = {"target_ww_ns": "targetWWNs"}


def json_name(field):
    if field in OVERRIDES:
        return OVERRIDES[field]
    parts = field.split("_")
    out = parts[0]
    for p in parts[1:]:
        out += ACRONYMS.get(p, p[:1].upper() + p[1:])
    return out


def load(src):
    types = {}
    for dirpath, _, files in os.walk(src):
        for f in files:
            if f != "mod.rs":
                continue
            rel = os.path.relpath(dirpath, src)
            module = rel.split(os.sep)
            text = open(os.path.join(dirpath, f)).read()
            for m in STRUCT_RE.finditer(text):
                name, body = m.group(1), m.group(2)
                fields = []
                for fm in FIELD_RE.finditer(body + "\n"):
                    attr, raw, fname, ty = fm.group(1), fm.group(2), fm.group(3), fm.group(4)
                    fields.append((attr, (raw or "") + fname, fname,
                                   "".join(ty.split()).replace(",>", ">")))
                types["::".join(module + [name])] = (module, fields)
    return types


def resolve(module, ty):
    # innermost path: strip Option<...>, Vec<...>, BTreeMap<String, ...>
    inner = ty
    for wrap in ("::core::option::Option<", "::prost::alloc::vec::Vec<"):
        if inner.startswith(wrap):
            inner = inner[len(wrap):-1].strip()
    if inner.startswith("::prost::alloc::collections::BTreeMap<"):
        inner = inner[len("::prost::alloc::collections::BTreeMap<"):-1]
        inner = inner.split(",", 1)[1].strip()
    segs = inner.split("::")
    mod = list(module)
    while segs and segs[0] == "super":
        mod.pop()
        segs.pop(0)
    return "::".join(mod + segs)


def conv(attr):
    kind = attr.split(",")[0].strip()
    repeated = "repeated" in attr
    if kind.startswith("btree_map"):
        value = re.match(r'btree_map = "string, (\w+)"', attr).group(1)
        return {"string": "map_scalar", "bytes": "map_bytes", "message": "map_msg"}[value]
    if kind.startswith("bytes"):
        return "bytes_list" if repeated else "bytes"
    if kind == "message":
        return "msgs" if repeated else "msg"
    return "scalars" if repeated else "scalar"


def main():
    src = sys.argv[1]
    types = load(src)
    seen, order, queue = set(), [], [r[2] for r in ROOTS]
    while queue:
        t = queue.pop(0)
        if t in seen:
            continue
        seen.add(t)
        if t in SPECIAL:
            continue
        module, fields = types[t]
        order.append(t)
        for attr, _, _, ty in fields:
            if conv(attr) in ("msg", "msgs", "map_msg"):
                queue.append(resolve(module, ty))
    print("//! protobuf -> JSON for the k8s-pb messages the sim accepts, GENERATED by")
    print("//! `scripts/gen-sim-protobuf.py` from k8s-pb's sources (then `cargo fmt`): do not edit by")
    print("//! hand.")
    print("//! One `message!` line per type lists every field with its Go JSON name.")
    print()
    print("use super::protobuf::{ToJson, message};")
    print("use serde_json::Value;")
    print()
    for t in sorted(order):
        _, fields = types[t]
        parts = ", ".join(f'{rust}: "{json_name(f)}" {conv(a)}' for a, rust, f, _ in fields)
        print(f"message!(k8s_pb::{t} {{ {parts} }});")
    print()
    print("/// Decodes `raw` as the protobuf encoding of `api_version`/`kind` into its JSON form;")
    print("/// `None` when the kind is not one the sim decodes.")
    print("pub fn decode_kind(api_version: &str, kind: &str, raw: &[u8]) -> Option<Result<Value, prost::DecodeError>> {")
    print("    use prost::Message;")
    print("    Some(match (api_version, kind) {")
    for av, kind, t in ROOTS:
        print(f'        ("{av}", "{kind}") => k8s_pb::{t}::decode(raw).map(|m| m.to_json().unwrap_or(Value::Null)),')
    print("        _ => return None,")
    print("    })")
    print("}")


main()
