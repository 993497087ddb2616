//! Evidence bundles captured before the first mutation: objects, events, logs, node conditions
//! and impact metrics, with secrets never captured.
//!
//! Two phases, both recorded in one `manifest.json`:
//!
//! - [`capture_targets`] — fast, on the mitigation's critical path: the target objects
//!   themselves (and a Deployment's ReplicaSets, i.e. its revision history, which a rollback
//!   renumbers).
//!   A target a diff already read (`crate::actions::Observed`) is not read again.
//! - [`capture_rest`] — broad, run concurrently with the mitigation: pods with status,
//!   Deployments, ReplicaSets, PDBs, HPAs (autoscaling/v2), Services, EndpointSlices,
//!   ConfigMaps (names and keys only), Secret names, recent Events, pod logs (current and
//!   previous container, bounded tail), the conditions of the nodes running the captured pods
//!   (one LIST of the nodes when there are more than a few), and the configured Prometheus
//!   impact queries. A kind the server does not serve, or any single failed read, is recorded
//!   in the manifest's `failed` list; it never fails the capture. Lists are read in pages of
//!   2,000, each page written to disk as **one file** (on a blocking thread, overlapping the
//!   next page's read) and dropped, so memory is bounded by about two pages plus a small summary
//!   per pod, not by the namespace. An object the targets phase captured is left out of the
//!   broad phase's pages: its record is the one taken before the first mutation, and this phase
//!   (which runs while the mitigation writes) never overwrites or duplicates it.
//!
//! Layout under the bundle directory (pretty JSON), manifest format version 2
//! ([`crate::model::format::Format::SnapshotManifest`]):
//!
//! ```text
//! manifest.json
//! objects/<namespace|_cluster>/<kind>/<name>.json      targets phase: one file per object
//! objects/<namespace|_cluster>/<kind>/page-0001.json   broad phase: one file per kind and page
//! objects/<namespace>/secret-names.json
//! objects/_cluster/node/page-0001.json                 the captured pods' nodes (conditions)
//! events/<namespace>.json
//! logs/<namespace>/<pod>/<container>.log, <container>.previous.log
//! metrics/<name>.json
//! ```
//!
//! A page file is a Kubernetes `List` (`{"apiVersion": "v1", "kind": "List", "items": […]}`),
//! so `kubectl get -f page-0001.json` and `jq '.items[]'` read it. The manifest keeps one entry
//! per object: its `file` (the page) and, for an object in a page, its `index` in `items`
//! ([`load_object`] reads either). A page name a target's own file already took is skipped
//! (`page-0001-2.json`), so the two phases never share a file. Version 1 bundles (one file per
//! object, no `formatVersion` in the manifest) read the same way: no entry has an `index`.
//! Creating a file costs about 0.5 ms on a slow disk, so one file per page instead of per object
//! is what bounds a 10,000-pod capture's write time (docs/performance.md, issue 18).
//!
//! **Secrets are never captured**: Secret data is never even requested (a metadata-only list
//! gives the names). ConfigMaps are recorded as names and keys, without values (they often
//! carry credentials too). Objects lose `metadata.managedFields`. Literal env values and
//! container arguments that look like credentials are redacted, names kept ([`redact`]); the
//! manifest's `redacted` list says what was.
//!
//! Object and page files are not fsynced one by one; the manifest, written last, is.
//!
//! Files are `0600` in `0700` directories, written without following symlinks
//! ([`crate::journal::files`]). File names are bounded (a long object name is truncated and
//! suffixed with a hash of the full name), and a file that cannot be written is a `failed`
//! entry of the manifest (for a page: one entry naming the page and its object count): it never
//! loses the rest of the bundle. Redaction works inside pages too; the manifest's `redacted`
//! lines then name the page and the item (`objects/shop/pod/page-0001.json:
//! items[3].spec.containers[0].env DB_PASSWORD`).

mod capture;
pub mod redact;
mod shared;

pub use capture::{RestOptions, TargetReads, capture_rest, capture_rest_with, capture_targets};
pub use shared::{SHARE_WINDOW, SharedCaptures};

use crate::actions::ObjectRef;
use crate::model::format::{Format, FormatVersion, UnsupportedFormat};
use crate::playbook::SnapshotSpec;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The manifest's file name inside a bundle.
pub const MANIFEST_FILE: &str = "manifest.json";

/// What to capture.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotRequest {
    /// The objects the run touches.
    pub targets: Vec<ObjectRef>,
    /// Namespaces to capture broadly (the targets' own plus the playbook's extra ones).
    pub namespaces: Vec<String>,
    /// The playbook's snapshot settings (log tail, previous logs, events, impact queries).
    pub spec: SnapshotSpec,
}

/// One captured item.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Entry {
    /// The kind (`Deployment`, `Pod`, `Log`, `Events`, `Metric`, `SecretNames`…).
    pub kind: String,
    /// `namespace/name` (or `name` for cluster-scoped items).
    pub name: String,
    /// The file, relative to the bundle directory: the object's own file, or the `List` page
    /// holding it.
    pub file: String,
    /// The object's position in the page's `items` (absent: the file is the object's own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<usize>,
}

/// One item that could not be captured.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Failure {
    /// What was being captured.
    pub what: String,
    /// Why it failed (the error chain on one line).
    pub error: String,
}

/// What a bundle holds. Both phases merge into the same `manifest.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    /// The bundle's layout version (absent: 1, one file per object); this build writes
    /// [`Format::SnapshotManifest`]'s current version.
    #[serde(default)]
    pub format_version: FormatVersion,
    /// Captured items.
    pub captured: Vec<Entry>,
    /// Items that failed.
    pub failed: Vec<Failure>,
    /// What was redacted (`objects/shop/pod/web.json: spec.containers[0].env DB_PASSWORD`):
    /// paths and names, never values.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub redacted: Vec<String>,
    /// The bundle whose broad capture this one shares (a daemon run during a storm; see
    /// [`SharedCaptures`]): its files were linked here, not read again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shared_from: Option<String>,
}

impl Default for Manifest {
    /// An empty manifest of the current format version.
    fn default() -> Manifest {
        Manifest {
            format_version: Format::SnapshotManifest.current(),
            captured: Vec::new(),
            failed: Vec::new(),
            redacted: Vec::new(),
            shared_from: None,
        }
    }
}

impl Manifest {
    /// Adds another phase's items.
    ///
    /// Linear in both sizes (a 10,000-pod bundle merges in milliseconds), keeping order.
    pub fn merge(&mut self, other: &Manifest) {
        fn merge_into<T: Clone + Eq + std::hash::Hash>(into: &mut Vec<T>, from: &[T]) {
            let mut seen: std::collections::HashSet<T> = into.iter().cloned().collect();
            for item in from {
                if seen.insert(item.clone()) {
                    into.push(item.clone());
                }
            }
        }
        self.format_version = self.format_version.max(other.format_version);
        merge_into(&mut self.captured, &other.captured);
        merge_into(&mut self.failed, &other.failed);
        merge_into(&mut self.redacted, &other.redacted);
        if self.shared_from.is_none() {
            self.shared_from.clone_from(&other.shared_from);
        }
    }
}

/// Why a capture could not be written. Read failures never surface here: they are manifest
/// entries.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// A directory could not be created.
    #[error("cannot create directory {path}")]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A file could not be written.
    #[error("cannot write {path}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The manifest could not be read back.
    #[error("cannot read the snapshot manifest {path}")]
    ReadManifest {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The manifest is not valid JSON.
    #[error("the snapshot manifest {path} is malformed")]
    ParseManifest {
        /// The file.
        path: PathBuf,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
    /// The manifest is in a format version this build does not read.
    #[error(transparent)]
    UnsupportedFormat(#[from] UnsupportedFormat),
    /// A captured object could not be read back from its file or page.
    #[error("cannot read {file}: {reason}")]
    ReadObject {
        /// The file, relative to the bundle directory.
        file: String,
        /// What went wrong.
        reason: String,
    },
}

impl SnapshotError {
    /// A stable category for journals and metrics.
    pub fn category(&self) -> &'static str {
        match self {
            SnapshotError::CreateDir { .. } | SnapshotError::Write { .. } => "snapshot-write",
            SnapshotError::ReadManifest { .. }
            | SnapshotError::ParseManifest { .. }
            | SnapshotError::ReadObject { .. } => "snapshot-manifest",
            SnapshotError::UnsupportedFormat(err) => err.category(),
        }
    }
}

/// Reads a bundle's manifest: format version 1 (one file per object) or 2 (pages); a newer
/// one is refused with [`SnapshotError::UnsupportedFormat`].
pub fn load_manifest(dir: &Path) -> Result<Manifest, SnapshotError> {
    let path = dir.join(MANIFEST_FILE);
    let text = std::fs::read(&path).map_err(|source| SnapshotError::ReadManifest {
        path: path.clone(),
        source,
    })?;
    let manifest: Manifest =
        serde_json::from_slice(&text).map_err(|source| SnapshotError::ParseManifest {
            path: path.clone(),
            source,
        })?;
    Format::SnapshotManifest.check(manifest.format_version, path.display())?;
    Ok(manifest)
}

/// Reads one captured JSON entry back (an object, events, metrics; logs are text): the
/// entry's own file, or its item in a page. Reads the whole file: for many objects of one
/// page, read the page once instead.
pub fn load_object(dir: &Path, entry: &Entry) -> Result<serde_json::Value, SnapshotError> {
    let fail = |reason: String| SnapshotError::ReadObject {
        file: entry.file.clone(),
        reason,
    };
    let text = std::fs::read(dir.join(&entry.file)).map_err(|e| fail(e.to_string()))?;
    let mut value: serde_json::Value =
        serde_json::from_slice(&text).map_err(|e| fail(e.to_string()))?;
    match entry.index {
        None => Ok(value),
        Some(index) => value
            .get_mut("items")
            .and_then(serde_json::Value::as_array_mut)
            .filter(|items| index < items.len())
            .map(|items| items.swap_remove(index))
            .ok_or_else(|| fail(format!("no item {index} in the page"))),
    }
}
