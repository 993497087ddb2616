//! `application/vnd.kubernetes.protobuf` request bodies, as kubectl's typed clients send them
//! (`kubectl create namespace|configmap|secret|deployment|…`).
//!
//! A body is the 4-byte magic `k8s\0` followed by a `runtime.Unknown` envelope whose `typeMeta`
//! names the kind and whose `raw` bytes are the object's protobuf encoding. The object is
//! decoded with the `k8s-pb` message types (prost) and turned into the JSON a client would have
//! sent, so every later step (defaulting, validation, storage) is the JSON path's. `k8s-pb`
//! types are not serde, so the per-type field lists live in the generated
//! [`super::protobuf_json`]; the well-known types whose JSON form differs from their protobuf
//! structure (Time, Quantity, IntOrString, RawExtension, FieldsV1, Duration) are written here.
//! Responses stay JSON: clients read the `Content-Type` of the answer.

use prost::Message;
use serde_json::{Value, json};

use crate::protobuf_json;

/// The media type of Kubernetes protobuf bodies.
pub const PROTOBUF: &str = "application/vnd.kubernetes.protobuf";

/// The prefix of every Kubernetes protobuf body.
const MAGIC: &[u8; 4] = b"k8s\0";

/// Why a protobuf body could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum ProtobufError {
    /// The body does not start with `k8s\0`.
    #[error("provided object is not a Kubernetes protobuf message (missing the k8s magic prefix)")]
    MissingMagic,
    /// The `runtime.Unknown` envelope or the object inside it is not valid protobuf.
    #[error("unable to decode {what} from protobuf: {source}")]
    Decode {
        /// What was being decoded (`runtime.Unknown`, `apps/v1 Deployment`).
        what: String,
        /// The cause.
        #[source]
        source: prost::DecodeError,
    },
    /// The envelope names a kind the sim has no protobuf type for.
    #[error("no protobuf decoder for {api_version} {kind}")]
    UnknownKind {
        /// `apiVersion` from the envelope.
        api_version: String,
        /// `kind` from the envelope.
        kind: String,
    },
}

impl ProtobufError {
    /// Stable category.
    pub fn category(&self) -> &'static str {
        match self {
            ProtobufError::MissingMagic => "protobuf_magic",
            ProtobufError::Decode { .. } => "protobuf_decode",
            ProtobufError::UnknownKind { .. } => "protobuf_unknown_kind",
        }
    }
}

/// Whether a `Content-Type` header names Kubernetes protobuf.
pub fn is_protobuf(content_type: &str) -> bool {
    content_type
        .split(';')
        .next()
        .is_some_and(|mt| mt.trim().eq_ignore_ascii_case(PROTOBUF))
}

/// Decodes a protobuf request body into the object's JSON form, with `apiVersion` and `kind`
/// set from the envelope.
pub fn decode(body: &[u8]) -> Result<Value, ProtobufError> {
    let payload = body
        .strip_prefix(MAGIC.as_slice())
        .ok_or(ProtobufError::MissingMagic)?;
    let unknown =
        k8s_pb::apimachinery::pkg::runtime::Unknown::decode(payload).map_err(|source| {
            ProtobufError::Decode {
                what: "runtime.Unknown".into(),
                source,
            }
        })?;
    let type_meta = unknown.type_meta.unwrap_or_default();
    let api_version = type_meta.api_version.unwrap_or_default();
    let kind = type_meta.kind.unwrap_or_default();
    let raw = unknown.raw.unwrap_or_default();
    let decoded = protobuf_json::decode_kind(&api_version, &kind, &raw).ok_or_else(|| {
        ProtobufError::UnknownKind {
            api_version: api_version.clone(),
            kind: kind.clone(),
        }
    })?;
    let mut obj = decoded.map_err(|source| ProtobufError::Decode {
        what: format!("{api_version} {kind}"),
        source,
    })?;
    if let Some(m) = obj.as_object_mut() {
        m.insert("apiVersion".into(), json!(api_version));
        m.insert("kind".into(), json!(kind));
    } else {
        obj = json!({"apiVersion": api_version, "kind": kind});
    }
    Ok(obj)
}

/// A protobuf message's JSON form; `None` when the field is unset (and omitted, as Go's
/// `omitempty` does).
pub trait ToJson {
    /// The JSON value.
    fn to_json(&self) -> Option<Value>;
}

/// Implements [`ToJson`] for a generated prost message by listing every field with its JSON
/// name and conversion (`scalar`, `scalars`, `msg`, `msgs`, `bytes`, `bytes_list`,
/// `map_scalar`, `map_bytes`, `map_msg`). The struct is destructured exhaustively, so a field
/// missing from the list fails to compile.
macro_rules! message {
    ($($ty:ident)::+ { $($field:ident : $json:literal $conv:ident),* $(,)? }) => {
        impl ToJson for $($ty)::+ {
            fn to_json(&self) -> Option<Value> {
                #[allow(unused_mut)]
                let mut m = serde_json::Map::new();
                let $($ty)::+ { $($field),* } = self;
                $(
                    if let Some(v) = $crate::protobuf::conv::$conv($field) {
                        m.insert($json.into(), v);
                    }
                )*
                Some(Value::Object(m))
            }
        }
    };
}
pub(crate) use message;

/// The conversions named in [`message!`].
pub mod conv {
    use std::collections::BTreeMap;

    use serde_json::Value;

    use super::{ToJson, base64};

    /// An optional scalar. Go encodes its non-pointer string fields even when empty; JSON
    /// (`omitempty`) leaves them out, so an empty string is unset.
    pub fn scalar<T: Clone + Into<Value>>(v: &Option<T>) -> Option<Value> {
        v.clone().map(Into::into).filter(|v| v.as_str() != Some(""))
    }
    /// A repeated scalar; empty is unset.
    pub fn scalars<T: Clone + Into<Value>>(v: &[T]) -> Option<Value> {
        (!v.is_empty()).then(|| Value::Array(v.iter().cloned().map(Into::into).collect()))
    }
    /// An optional message.
    pub fn msg<T: ToJson>(v: &Option<T>) -> Option<Value> {
        v.as_ref().and_then(ToJson::to_json)
    }
    /// A repeated message; empty is unset.
    pub fn msgs<T: ToJson>(v: &[T]) -> Option<Value> {
        (!v.is_empty()).then(|| {
            Value::Array(
                v.iter()
                    .map(|m| m.to_json().unwrap_or(Value::Null))
                    .collect(),
            )
        })
    }
    /// Optional bytes, base64 as in JSON.
    pub fn bytes(v: &Option<Vec<u8>>) -> Option<Value> {
        v.as_deref().map(|b| Value::String(base64(b)))
    }
    /// Repeated bytes.
    pub fn bytes_list(v: &[Vec<u8>]) -> Option<Value> {
        (!v.is_empty()).then(|| Value::Array(v.iter().map(|b| Value::String(base64(b))).collect()))
    }
    /// A map of strings; empty is unset.
    pub fn map_scalar(v: &BTreeMap<String, String>) -> Option<Value> {
        (!v.is_empty()).then(|| {
            Value::Object(
                v.iter()
                    .map(|(k, s)| (k.clone(), Value::String(s.clone())))
                    .collect(),
            )
        })
    }
    /// A map of bytes (base64); empty is unset.
    pub fn map_bytes(v: &BTreeMap<String, Vec<u8>>) -> Option<Value> {
        (!v.is_empty()).then(|| {
            Value::Object(
                v.iter()
                    .map(|(k, b)| (k.clone(), Value::String(base64(b))))
                    .collect(),
            )
        })
    }
    /// A map of messages; empty is unset.
    pub fn map_msg<T: ToJson>(v: &BTreeMap<String, T>) -> Option<Value> {
        (!v.is_empty()).then(|| {
            Value::Object(
                v.iter()
                    .map(|(k, m)| (k.clone(), m.to_json().unwrap_or(Value::Null)))
                    .collect(),
            )
        })
    }
}

/// Standard base64 with padding (how Go's encoding/json writes `[]byte`).
pub fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18u32, 12, 6, 0].into_iter().enumerate() {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> shift) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// RFC 3339 text of a protobuf timestamp, with `fraction_digits` of sub-second precision.
fn timestamp(seconds: Option<i64>, nanos: Option<i32>, fraction_digits: usize) -> Option<Value> {
    let secs = seconds?;
    let nanos = nanos.unwrap_or(0).max(0);
    let ts = jiff::Timestamp::new(secs, nanos).ok()?;
    let text = if fraction_digits == 0 {
        ts.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
    } else {
        let frac = format!("{nanos:09}");
        format!(
            "{}.{}Z",
            ts.strftime("%Y-%m-%dT%H:%M:%S"),
            frac.get(..fraction_digits).unwrap_or("000000")
        )
    };
    Some(Value::String(text))
}

// === well-known types ===

impl ToJson for k8s_pb::apimachinery::pkg::apis::meta::v1::Time {
    /// The zero time (Go encodes non-pointer times even when unset) is `null`.
    fn to_json(&self) -> Option<Value> {
        if self.seconds.unwrap_or(0) == 0 && self.nanos.unwrap_or(0) == 0 {
            return None;
        }
        timestamp(self.seconds, self.nanos, 0)
    }
}

impl ToJson for k8s_pb::apimachinery::pkg::apis::meta::v1::MicroTime {
    fn to_json(&self) -> Option<Value> {
        timestamp(self.seconds, self.nanos, 6)
    }
}

impl ToJson for k8s_pb::apimachinery::pkg::apis::meta::v1::Duration {
    /// Go's `time.Duration` text (`1h2m3s`, `1.5s`, `0s`).
    fn to_json(&self) -> Option<Value> {
        let nanos = self.duration?;
        let sign = if nanos < 0 { "-" } else { "" };
        let n = nanos.unsigned_abs();
        let (h, m) = (n / 3_600_000_000_000, (n / 60_000_000_000) % 60);
        let (s, frac) = ((n / 1_000_000_000) % 60, n % 1_000_000_000);
        let mut text = String::from(sign);
        if h > 0 {
            text.push_str(&format!("{h}h"));
        }
        if h > 0 || m > 0 {
            text.push_str(&format!("{m}m"));
        }
        if frac == 0 {
            text.push_str(&format!("{s}s"));
        } else {
            let f = format!("{frac:09}");
            text.push_str(&format!("{s}.{}s", f.trim_end_matches('0')));
        }
        Some(Value::String(text))
    }
}

/// JSON carried as raw bytes (FieldsV1, RawExtension): parsed, or a string when not JSON.
fn raw_json(raw: &Option<Vec<u8>>) -> Option<Value> {
    let raw = raw.as_deref()?;
    Some(
        serde_json::from_slice(raw)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(raw).into_owned())),
    )
}

impl ToJson for k8s_pb::apimachinery::pkg::apis::meta::v1::FieldsV1 {
    fn to_json(&self) -> Option<Value> {
        raw_json(&self.raw)
    }
}

impl ToJson for k8s_pb::apimachinery::pkg::runtime::RawExtension {
    fn to_json(&self) -> Option<Value> {
        raw_json(&self.raw)
    }
}

impl ToJson for k8s_pb::apimachinery::pkg::api::resource::Quantity {
    fn to_json(&self) -> Option<Value> {
        self.string.clone().map(Value::String)
    }
}

impl ToJson for k8s_pb::apimachinery::pkg::util::intstr::IntOrString {
    /// `type` 0 is an integer, 1 a string.
    fn to_json(&self) -> Option<Value> {
        match self.r#type {
            Some(1) => Some(Value::String(self.str_val.clone().unwrap_or_default())),
            _ => Some(Value::from(self.int_val.unwrap_or(0))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_pb::api::core::v1 as core;
    use k8s_pb::apimachinery::pkg::apis::meta::v1 as meta;
    use k8s_pb::apimachinery::pkg::runtime::{TypeMeta, Unknown};

    fn envelope(api_version: &str, kind: &str, raw: Vec<u8>) -> Vec<u8> {
        let unknown = Unknown {
            type_meta: Some(TypeMeta {
                api_version: Some(api_version.into()),
                kind: Some(kind.into()),
            }),
            raw: Some(raw),
            content_encoding: Some(String::new()),
            content_type: Some(String::new()),
        };
        let mut body = MAGIC.to_vec();
        body.extend(unknown.encode_to_vec());
        body
    }

    #[test]
    fn base64_matches_go() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"value-1"), "dmFsdWUtMQ==");
    }

    #[test]
    fn secret_decodes_to_json() {
        let secret = core::Secret {
            metadata: Some(meta::ObjectMeta {
                name: Some("creds".into()),
                labels: [("app".to_string(), "web".to_string())].into(),
                ..Default::default()
            }),
            data: [("password".to_string(), b"hunter2".to_vec())].into(),
            r#type: Some("Opaque".into()),
            ..Default::default()
        };
        let obj = decode(&envelope("v1", "Secret", secret.encode_to_vec())).unwrap();
        assert_eq!(
            obj,
            json!({"apiVersion": "v1", "kind": "Secret",
                   "metadata": {"name": "creds", "labels": {"app": "web"}},
                   "data": {"password": "aHVudGVyMg=="}, "type": "Opaque"})
        );
    }

    #[test]
    fn int_or_string_and_time() {
        use k8s_pb::apimachinery::pkg::util::intstr::IntOrString;
        let int = IntOrString {
            r#type: Some(0),
            int_val: Some(8080),
            str_val: None,
        };
        assert_eq!(int.to_json(), Some(json!(8080)));
        let s = IntOrString {
            r#type: Some(1),
            int_val: None,
            str_val: Some("25%".into()),
        };
        assert_eq!(s.to_json(), Some(json!("25%")));
        let t = meta::Time {
            seconds: Some(86400),
            nanos: None,
        };
        assert_eq!(t.to_json(), Some(json!("1970-01-02T00:00:00Z")));
        let zero = meta::Time {
            seconds: Some(0),
            nanos: Some(0),
        };
        assert_eq!(zero.to_json(), None);
    }

    #[test]
    fn bad_bodies_are_errors() {
        assert!(matches!(decode(b"{}"), Err(ProtobufError::MissingMagic)));
        assert!(matches!(
            decode(&envelope("v1", "Nope", vec![])),
            Err(ProtobufError::UnknownKind { .. })
        ));
        assert!(is_protobuf("application/vnd.kubernetes.protobuf"));
        assert!(!is_protobuf("application/json"));
    }
}
