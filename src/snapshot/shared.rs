//! Broad captures shared between the runs of one daemon (an alert storm).
//!
//! Under a storm the daemon starts many runs on the same namespace within seconds, and each
//! would read the whole namespace again for its evidence: a thousand objects and a log tail
//! per pod each time, parsed and written on the cores that also handle the next alert.
//! [`SharedCaptures`] lets a run reuse the broad capture ([`capture_rest`]) of another run of
//! the same namespaces and snapshot settings that started less than its window ago: it waits
//! for that capture to finish, hard-links its files into its own bundle and merges its
//! manifest, which names the bundle it came from (`sharedFrom`).
//!
//! What is never shared: the targets phase (each run's pre-mutation images of its own
//! targets are its own, read by itself, and a file it wrote is never replaced by a shared
//! one), and a capture that failed or was abandoned (the run then captures on its own). The
//! shared files are the other run's, captured at most the window earlier than this run would
//! have: evidence of the namespace around the storm, not of this run's exact start. The CLI
//! (one run per process) never shares.

use super::{Manifest, SnapshotError, SnapshotRequest, TargetReads, capture_rest};
use crate::journal::files;
use crate::metrics::prometheus::Prometheus;
use kube::Client;
use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// How long after a broad capture started another run of the same namespaces reuses it (the
/// daemon's default).
pub const SHARE_WINDOW: Duration = Duration::from_secs(5);

/// Broad captures of one daemon, shareable for a short window. Cheap to share (`Arc`).
#[derive(Debug)]
pub struct SharedCaptures {
    window: Duration,
    recent: Mutex<HashMap<String, Recent>>,
}

#[derive(Debug)]
struct Recent {
    started: Instant,
    /// The bundle the capture writes.
    dir: PathBuf,
    /// `Some(true)` once it finished well, `Some(false)` when it failed; closed when it was
    /// abandoned.
    done: watch::Receiver<Option<bool>>,
}

/// What a run does with a broad capture.
enum Role {
    /// Capture, then tell the runs waiting on it.
    Lead(watch::Sender<Option<bool>>),
    /// Wait for another run's capture into `dir`, then share it.
    Follow(PathBuf, watch::Receiver<Option<bool>>),
}

// === impl SharedCaptures ===

impl SharedCaptures {
    /// Captures started less than `window` ago are shared.
    pub fn new(window: Duration) -> SharedCaptures {
        SharedCaptures {
            window,
            recent: Mutex::new(HashMap::new()),
        }
    }

    /// [`capture_rest`] into `dir`, or the files of a capture of the same namespaces and
    /// settings another run started less than the window ago.
    pub async fn capture_rest(
        &self,
        client: &Client,
        request: &SnapshotRequest,
        dir: &Path,
        prometheus: Option<Prometheus>,
        reads: TargetReads,
    ) -> Result<Manifest, SnapshotError> {
        match self.role(request, dir) {
            Role::Lead(done) => {
                let result = capture_rest(client, request, dir, prometheus, reads).await;
                // Nobody waiting is fine.
                let _ = done.send(Some(result.is_ok()));
                result
            }
            Role::Follow(from, mut done) => {
                let finished_well = done
                    .wait_for(Option::is_some)
                    .await
                    .map(|d| *d == Some(true))
                    .unwrap_or(false);
                if finished_well {
                    match share(&from, dir).await {
                        Ok(manifest) => {
                            tracing::info!(bundle = %dir.display(), from = %from.display(),
                                           objects = manifest.captured.len(),
                                           "broad capture shared with a run of the same namespaces");
                            return Ok(manifest);
                        }
                        Err(err) => {
                            tracing::warn!(bundle = %dir.display(), from = %from.display(),
                                           error = %crate::errors::error_chain(&err),
                                           "cannot share a broad capture; capturing again");
                        }
                    }
                }
                capture_rest(client, request, dir, prometheus, reads).await
            }
        }
    }

    /// Leads a new capture, or follows a live one of the same key.
    fn role(&self, request: &SnapshotRequest, dir: &Path) -> Role {
        let key = key(request);
        let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        let window = self.window;
        // Kept: captures within the window that are running or finished well (a failed or
        // abandoned one is forgotten; the next run leads a new one).
        recent.retain(|_, r| {
            r.started.elapsed() < window
                && match *r.done.borrow() {
                    Some(ok) => ok,
                    None => r.done.has_changed().is_ok(),
                }
        });
        if let Some(r) = recent.get(&key)
            && r.dir != dir
        {
            return Role::Follow(r.dir.clone(), r.done.clone());
        }
        let (tx, rx) = watch::channel(None);
        recent.insert(
            key,
            Recent {
                started: Instant::now(),
                dir: dir.to_path_buf(),
                done: rx,
            },
        );
        Role::Lead(tx)
    }
}

/// Runs share a capture when they capture the same namespaces with the same settings.
fn key(request: &SnapshotRequest) -> String {
    let mut namespaces = request.namespaces.clone();
    namespaces.sort();
    namespaces.dedup();
    serde_json::to_string(&(namespaces, &request.spec)).unwrap_or_default()
}

/// A manifest file name as a relative path inside a bundle (nothing absolute, no `..`).
fn inside(file: &str) -> Option<PathBuf> {
    let path = Path::new(file);
    path.components()
        .all(|c| matches!(c, Component::Normal(_)))
        .then(|| path.to_path_buf())
}

/// Hard-links every file of the bundle `from` that `dir` does not hold yet into `dir`, and
/// merges `from`'s manifest (what was linked, what failed, what was redacted) into `dir`'s,
/// naming `from` as `sharedFrom`. Returns the shared part.
async fn share(from: &Path, dir: &Path) -> Result<Manifest, SnapshotError> {
    let source = super::load_manifest(from)?;
    let (from_owned, dir_owned) = (from.to_path_buf(), dir.to_path_buf());
    let shared = tokio::task::spawn_blocking(move || link_all(&from_owned, &dir_owned, source))
        .await
        .map_err(|join| SnapshotError::Write {
            path: dir.to_path_buf(),
            source: std::io::Error::other(join.to_string()),
        })??;
    super::capture::merge_manifest(dir, &shared).await?;
    Ok(shared)
}

fn link_all(from: &Path, dir: &Path, source: Manifest) -> Result<Manifest, SnapshotError> {
    let mut shared = Manifest {
        failed: source.failed,
        redacted: source.redacted,
        shared_from: Some(from.display().to_string()),
        ..Manifest::default()
    };
    let mut linked: HashMap<String, bool> = HashMap::new();
    for entry in source.captured {
        let ok = match linked.get(&entry.file) {
            Some(ok) => *ok,
            None => {
                let ok = match inside(&entry.file) {
                    Some(relative) => link_one(&from.join(&relative), &dir.join(&relative))?,
                    None => false,
                };
                linked.insert(entry.file.clone(), ok);
                ok
            }
        };
        if ok {
            shared.captured.push(entry);
        }
    }
    Ok(shared)
}

/// Links `src` at `dst`. `Ok(false)`: `dst` exists (this run's own file, kept) or `src` is
/// gone. Directories are created private; nothing is followed through a symlink at `dst`
/// (`link` never replaces an existing name).
fn link_one(src: &Path, dst: &Path) -> Result<bool, SnapshotError> {
    if let Some(parent) = dst.parent() {
        files::create_private_dir_all(parent).map_err(|source| SnapshotError::CreateDir {
            path: parent.to_path_buf(),
            source,
        })?;
    }
    match std::fs::hard_link(src, dst) {
        Ok(()) => Ok(true),
        Err(err)
            if matches!(
                err.kind(),
                std::io::ErrorKind::AlreadyExists | std::io::ErrorKind::NotFound
            ) =>
        {
            Ok(false)
        }
        Err(source) => Err(SnapshotError::Write {
            path: dst.to_path_buf(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_relative_names_inside_the_bundle_are_linked() {
        assert!(inside("objects/shop/Pod/page-0001.json").is_some());
        assert!(inside("../other/manifest.json").is_none());
        assert!(inside("/etc/passwd").is_none());
        assert!(inside("objects/../../x").is_none());
    }

    #[test]
    fn the_same_namespaces_in_any_order_share_a_key() {
        let request = |ns: &[&str]| SnapshotRequest {
            targets: Vec::new(),
            namespaces: ns.iter().map(|s| s.to_string()).collect(),
            spec: Default::default(),
        };
        assert_eq!(key(&request(&["a", "b"])), key(&request(&["b", "a", "a"])));
        assert_ne!(key(&request(&["a"])), key(&request(&["a", "b"])));
        let mut fewer_lines = request(&["a"]);
        fewer_lines.spec.log_tail_lines = 5;
        assert_ne!(key(&request(&["a"])), key(&fewer_lines));
    }

    #[test]
    fn linking_keeps_the_runs_own_files_and_names_the_source() {
        let root = tempfile::tempdir().unwrap();
        let (from, dir) = (root.path().join("a"), root.path().join("b"));
        for (bundle, text) in [(&from, "theirs"), (&dir, "mine")] {
            files::create_private_dir_all(&bundle.join("objects/shop/Deployment")).unwrap();
            std::fs::write(bundle.join("objects/shop/Deployment/web.json"), text).unwrap();
        }
        files::create_private_dir_all(&from.join("objects/shop/Pod")).unwrap();
        std::fs::write(from.join("objects/shop/Pod/page-0001.json"), "pods").unwrap();
        let entry = |kind: &str, name: &str, file: &str| super::super::Entry {
            kind: kind.into(),
            name: name.into(),
            file: file.into(),
            index: None,
        };
        let source = Manifest {
            captured: vec![
                entry("Deployment", "shop/web", "objects/shop/Deployment/web.json"),
                entry("Pod", "shop/a", "objects/shop/Pod/page-0001.json"),
                entry("Pod", "shop/x", "../escape.json"),
            ],
            ..Manifest::default()
        };
        let shared = link_all(&from, &dir, source).unwrap();
        let files: Vec<&str> = shared.captured.iter().map(|e| e.file.as_str()).collect();
        assert_eq!(files, ["objects/shop/Pod/page-0001.json"]);
        assert_eq!(
            shared.shared_from.as_deref(),
            Some(&*from.display().to_string())
        );
        let read = |p: &str| std::fs::read_to_string(dir.join(p)).unwrap();
        assert_eq!(read("objects/shop/Deployment/web.json"), "mine");
        assert_eq!(read("objects/shop/Pod/page-0001.json"), "pods");
        assert!(!root.path().join("escape.json").exists());
    }
}
