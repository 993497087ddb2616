//! The run journal: an append-only, fsync'd JSON-lines write-ahead log per run, run
//! directories and summaries.
//!
//! Layout: `<state-dir>/runs/<run-id>/journal.jsonl`, one [`Entry`] per line. Every
//! [`Journal::append`] writes the whole line with one `write` call before returning, so a
//! record survives the process being killed at any later point. Records that announce or settle
//! an effect ([`Record::must_be_durable`]: a mutation's intent, an undo, an approval, a failure,
//! a guard, the run's end) are also `fsync`ed before `append` returns, so an intent is on disk
//! before the engine makes the API call it announces. The other records (the run started, a
//! step planned, a mutation applied, a snapshot taken, people notified…) are made durable by
//! the next durable record's `fsync`, which covers everything written before it (group commit:
//! a run used to pay 4 ms of `fsync` for each of them on a slow disk, five or six before its
//! first mutation). So when any mutation is sent, every record before its intent is on disk; a
//! machine crash can lose only informational records written after the last durable one,
//! which a resume redoes (the diff re-reads the cluster). Dropping the journal syncs what is
//! pending.
//!
//! Reading back ([`read`]) tolerates a crash in the middle of an append: a torn last line is
//! reported as a [`TornTail`] and ignored; a line that does not parse anywhere else is an
//! error naming the line. [`Journal::open`] (used by `--resume`) cuts a torn tail off before
//! appending again.
//!
//! Every line carries its format version `v` ([`format`]); a line without one is version 1.
//! A line in a version this build does not read is [`JournalError::UnsupportedVersion`],
//! never skipped and never taken for a torn tail.
//!
//! The in-cluster mirror of a run lives in [`crate::k8s::runs`].

pub mod approval;
pub mod files;
/// Format versions of what ripcord keeps; defined in [`crate::model`].
pub use crate::model::format;
pub mod record;

pub use format::{Format, FormatVersion, UnsupportedFormat};

pub use record::{
    DeliveryRecord, Entry, Outcome, REDACTED, Record, redact_params, redact_url_credentials,
    redact_urls_in,
};

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The journal file's name inside a run directory.
pub const JOURNAL_FILE: &str = "journal.jsonl";

/// Why a journal operation failed.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// The run directory could not be created.
    #[error("cannot create run directory {dir}")]
    CreateDir {
        /// The directory.
        dir: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A run with this id already has a journal.
    #[error("run {run_id} already exists at {path}")]
    AlreadyExists {
        /// The run id.
        run_id: String,
        /// The existing journal.
        path: PathBuf,
    },
    /// No journal exists for this run.
    #[error("no journal for run {run_id} at {path}")]
    NotFound {
        /// The run id.
        run_id: String,
        /// Where it was looked for.
        path: PathBuf,
    },
    /// The journal file could not be opened, read or written.
    #[error("cannot {operation} journal {path}")]
    Io {
        /// `open`, `read`, `append`, `sync`, `truncate`.
        operation: &'static str,
        /// The journal file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A record could not be serialized.
    #[error("cannot serialize a {kind} record")]
    Serialize {
        /// The record kind.
        kind: &'static str,
        /// The serializer's error.
        #[source]
        source: serde_json::Error,
    },
    /// A line in the middle of the journal does not parse: the file is damaged.
    #[error("{path}:{line}: corrupted journal record")]
    Corrupted {
        /// The journal file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// The parser's error.
        #[source]
        source: serde_json::Error,
    },
    /// A line is in a format version this build does not read (written by a newer ripcord).
    #[error("{path}:{line}: unsupported journal record")]
    UnsupportedVersion {
        /// The journal file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// The version found and the versions read.
        #[source]
        source: UnsupportedFormat,
    },
    /// The run id is not a valid run id (it is used as a directory name).
    #[error("invalid run id {run_id:?}: expected r-YYYYMMDD-HHMMSS-xxxxxxxxxxxx")]
    InvalidRunId {
        /// The offending id.
        run_id: String,
    },
    /// The incident id cannot be used (it is used as a file name and a label value).
    #[error("invalid incident id {id:?}: use letters, digits, `.`, `_` and `-` (at most 64)")]
    InvalidIncidentId {
        /// The offending id.
        id: String,
    },
}

impl JournalError {
    /// A stable category for metrics and records.
    pub fn category(&self) -> &'static str {
        match self {
            JournalError::CreateDir { .. } | JournalError::Io { .. } => "journal-io",
            JournalError::AlreadyExists { .. } => "journal-exists",
            JournalError::NotFound { .. } => "journal-not-found",
            JournalError::Serialize { .. } => "journal-serialize",
            JournalError::Corrupted { .. } => "journal-corrupted",
            JournalError::UnsupportedVersion { .. } => "journal-version",
            JournalError::InvalidRunId { .. } => "invalid-run-id",
            JournalError::InvalidIncidentId { .. } => "invalid-incident-id",
        }
    }
}

/// A partial last line found when reading a journal (the process died mid-append).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TornTail {
    /// 1-based line number of the torn line.
    pub line: usize,
    /// Byte offset where the torn line starts (the length of the valid part).
    pub offset: u64,
    /// How many bytes were ignored.
    pub bytes: usize,
}

impl std::fmt::Display for TornTail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "torn last line {} ({} bytes) ignored: the process stopped while writing it",
            self.line, self.bytes
        )
    }
}

/// An open, append-only run journal.
#[derive(Debug)]
pub struct Journal {
    run_id: String,
    dir: PathBuf,
    path: PathBuf,
    file: File,
    next_seq: u64,
    /// Records written since the last `fsync` (informational ones wait for the next durable
    /// record or the drop).
    unsynced: bool,
}

impl Drop for Journal {
    fn drop(&mut self) {
        if self.unsynced
            && let Err(err) = self.file.sync_data()
        {
            tracing::warn!(path = %self.path.display(), error = %err,
                           "cannot sync the journal's last records");
        }
    }
}

// === impl Journal ===

impl Journal {
    /// Creates the run directory `<state_dir>/runs/<run_id>/` and a new, empty journal in it.
    /// Fails when the run already has a journal.
    pub fn create(state_dir: &Path, run_id: &str) -> Result<Journal, JournalError> {
        validate_run_id(run_id)?;
        let dir = run_dir(state_dir, run_id);
        files::create_private_dir_all(&dir).map_err(|source| JournalError::CreateDir {
            dir: dir.clone(),
            source,
        })?;
        let path = dir.join(JOURNAL_FILE);
        let file = files::open_private(&path, OpenOptions::new().append(true).create_new(true))
            .map_err(|source| {
                if source.kind() == std::io::ErrorKind::AlreadyExists {
                    JournalError::AlreadyExists {
                        run_id: run_id.to_string(),
                        path: path.clone(),
                    }
                } else {
                    JournalError::Io {
                        operation: "open",
                        path: path.clone(),
                        source,
                    }
                }
            })?;
        // Make the new directory entry durable too.
        if let Ok(d) = File::open(&dir) {
            let _ = d.sync_all();
        }
        Ok(Journal {
            run_id: run_id.to_string(),
            dir,
            path,
            file,
            next_seq: 1,
            unsynced: false,
        })
    }

    /// Opens an existing journal for appending (resume). Returns the journal, its records and
    /// the torn tail that was cut off, if any.
    pub fn open(
        state_dir: &Path,
        run_id: &str,
    ) -> Result<(Journal, Vec<Entry>, Option<TornTail>), JournalError> {
        validate_run_id(run_id)?;
        let dir = run_dir(state_dir, run_id);
        let path = dir.join(JOURNAL_FILE);
        if !path.exists() {
            return Err(JournalError::NotFound {
                run_id: run_id.to_string(),
                path,
            });
        }
        let (entries, torn) = read(&path)?;
        if let Some(torn) = &torn {
            tracing::warn!(run = %run_id, line = torn.line, bytes = torn.bytes, "cutting off a torn journal tail");
            let f =
                files::open_private(&path, OpenOptions::new().write(true)).map_err(|source| {
                    JournalError::Io {
                        operation: "open",
                        path: path.clone(),
                        source,
                    }
                })?;
            f.set_len(torn.offset)
                .and_then(|()| f.sync_all())
                .map_err(|source| JournalError::Io {
                    operation: "truncate",
                    path: path.clone(),
                    source,
                })?;
        }
        let mut file =
            files::open_private(&path, OpenOptions::new().append(true)).map_err(|source| {
                JournalError::Io {
                    operation: "open",
                    path: path.clone(),
                    source,
                }
            })?;
        // A complete last record written without its newline: terminate it.
        let text = std::fs::read(&path).map_err(|source| JournalError::Io {
            operation: "read",
            path: path.clone(),
            source,
        })?;
        if !text.is_empty() && text.last() != Some(&b'\n') {
            file.write_all(b"\n")
                .and_then(|()| file.sync_data())
                .map_err(|source| JournalError::Io {
                    operation: "append",
                    path: path.clone(),
                    source,
                })?;
        }
        let next_seq = entries.last().map(|e| e.seq + 1).unwrap_or(1);
        Ok((
            Journal {
                run_id: run_id.to_string(),
                dir,
                path,
                file,
                next_seq,
                unsynced: false,
            },
            entries,
            torn,
        ))
    }

    /// Appends one record; `fsync`s it (and everything before it) before returning when it
    /// [must be durable](Record::must_be_durable).
    pub fn append(&mut self, record: Record) -> Result<Entry, JournalError> {
        let mut written = self.append_all(vec![record])?;
        written.pop().ok_or_else(|| JournalError::Io {
            operation: "append",
            path: self.path.clone(),
            source: std::io::Error::other("no entry written"),
        })
    }

    /// Appends several records with one write and at most one `fsync` (the write-ahead intents
    /// of mutations the engine sends together): synced when any of them [must be
    /// durable](Record::must_be_durable). On an error the file may hold a prefix of them; a
    /// torn last line is tolerated by [`read`].
    pub fn append_all(&mut self, records: Vec<Record>) -> Result<Vec<Entry>, JournalError> {
        let durable = records.iter().any(Record::must_be_durable);
        let mut lines = Vec::new();
        let mut entries = Vec::with_capacity(records.len());
        for record in records {
            let entry = Entry {
                seq: self.next_seq + entries.len() as u64,
                at: jiff::Timestamp::now(),
                record,
            };
            let line = LineOut {
                v: Format::JournalLine.current(),
                entry: &entry,
            };
            serde_json::to_writer(&mut lines, &line).map_err(|source| JournalError::Serialize {
                kind: entry.record.kind(),
                source,
            })?;
            lines.push(b'\n');
            entries.push(entry);
        }
        if entries.is_empty() {
            return Ok(entries);
        }
        self.file
            .write_all(&lines)
            .map_err(|source| JournalError::Io {
                operation: "append",
                path: self.path.clone(),
                source,
            })?;
        self.next_seq += entries.len() as u64;
        self.unsynced = true;
        if durable {
            self.sync()?;
        }
        Ok(entries)
    }

    /// `fsync`s every record written so far (a no-op when nothing is pending).
    pub fn sync(&mut self) -> Result<(), JournalError> {
        if !self.unsynced {
            return Ok(());
        }
        self.file.sync_data().map_err(|source| JournalError::Io {
            operation: "sync",
            path: self.path.clone(),
            source,
        })?;
        self.unsynced = false;
        Ok(())
    }

    /// Whether records were written since the last `fsync`.
    pub fn has_unsynced(&self) -> bool {
        self.unsynced
    }

    /// The run id.
    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    /// The run directory (`<state-dir>/runs/<run-id>`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The journal file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// One journal line as written: the format version, then the entry.
#[derive(serde::Serialize)]
struct LineOut<'a> {
    v: FormatVersion,
    #[serde(flatten)]
    entry: &'a Entry,
}

/// One journal line as read: `v` absent is version 1.
#[derive(serde::Deserialize)]
struct LineIn {
    #[serde(default)]
    v: FormatVersion,
    #[serde(flatten)]
    entry: Entry,
}

/// Only the version of a line that does not parse as a known record.
#[derive(serde::Deserialize)]
struct LineVersion {
    #[serde(default)]
    v: Option<serde_json::Value>,
}

/// `path:line`, formatted only when an error names it.
struct LineLocation<'a> {
    path: &'a Path,
    line: usize,
}

impl std::fmt::Display for LineLocation<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.path.display(), self.line)
    }
}

/// The directory of a run: `<state_dir>/runs/<run_id>`.
pub fn run_dir(state_dir: &Path, run_id: &str) -> PathBuf {
    state_dir.join("runs").join(run_id)
}

/// The journal file of a run.
pub fn journal_path(state_dir: &Path, run_id: &str) -> PathBuf {
    run_dir(state_dir, run_id).join(JOURNAL_FILE)
}

/// Reads a journal. A torn last line (no trailing newline, or unparsable as the final line) is
/// returned as [`TornTail`] and ignored; an unparsable line elsewhere is
/// [`JournalError::Corrupted`].
pub fn read(path: &Path) -> Result<(Vec<Entry>, Option<TornTail>), JournalError> {
    let bytes = std::fs::read(path).map_err(|source| JournalError::Io {
        operation: "read",
        path: path.to_path_buf(),
        source,
    })?;
    parse(path, &bytes)
}

/// Reads a journal as far as it is intact: the records before the first damaged line, and the
/// error naming that line (`None`: the whole journal read, a torn tail aside). Cleanup uses the
/// intact prefix only to say which run a damaged journal belongs to and what it could not
/// judge; it never reverts from a damaged journal.
pub fn read_prefix(path: &Path) -> (Vec<Entry>, Option<JournalError>) {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(source) => {
            return (
                Vec::new(),
                Some(JournalError::Io {
                    operation: "read",
                    path: path.to_path_buf(),
                    source,
                }),
            );
        }
    };
    let (entries, result) = parse_prefix(path, &bytes);
    (entries, result.err())
}

/// Parses journal bytes (see [`read`]).
fn parse(path: &Path, bytes: &[u8]) -> Result<(Vec<Entry>, Option<TornTail>), JournalError> {
    let (entries, result) = parse_prefix(path, bytes);
    result.map(|torn| (entries, torn))
}

/// Parses journal bytes up to the first damaged line: the records before it, and the torn tail
/// or the error.
fn parse_prefix(path: &Path, bytes: &[u8]) -> (Vec<Entry>, Result<Option<TornTail>, JournalError>) {
    let mut entries = Vec::new();
    let mut offset = 0usize;
    let mut line_no = 0usize;
    while offset < bytes.len() {
        line_no += 1;
        let rest = &bytes[offset..];
        let (line, terminated) = match rest.iter().position(|b| *b == b'\n') {
            Some(end) => (&rest[..end], true),
            None => (rest, false),
        };
        let next = offset + line.len() + usize::from(terminated);
        let is_last = next >= bytes.len();
        if line.iter().all(u8::is_ascii_whitespace) {
            offset = next;
            continue;
        }
        let unsupported = |source| JournalError::UnsupportedVersion {
            path: path.to_path_buf(),
            line: line_no,
            source,
        };
        let location = LineLocation {
            path,
            line: line_no,
        };
        match serde_json::from_slice::<LineIn>(line) {
            Ok(LineIn { v, entry }) => match Format::JournalLine.check(v, &location) {
                Ok(_) => entries.push(entry),
                Err(source) => return (entries, Err(unsupported(source))),
            },
            Err(source) => {
                // A complete line of another version (a record kind this build does not know)
                // is refused as such, never taken for damage or a torn tail.
                if let Ok(LineVersion { v: Some(v) }) = serde_json::from_slice::<LineVersion>(line)
                    && let Err(err) = Format::JournalLine.check_json(
                        &serde_json::json!({ "v": v }),
                        "v",
                        &location,
                    )
                {
                    return (entries, Err(unsupported(err)));
                }
                if is_last {
                    let torn = TornTail {
                        line: line_no,
                        offset: offset as u64,
                        bytes: bytes.len() - offset,
                    };
                    return (entries, Ok(Some(torn)));
                }
                let err = JournalError::Corrupted {
                    path: path.to_path_buf(),
                    line: line_no,
                    source,
                };
                return (entries, Err(err));
            }
        }
        offset = next;
    }
    (entries, Ok(None))
}

/// What `ripcord runs list` shows for one run.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RunSummary {
    /// The run id.
    pub run_id: String,
    /// The playbook's name.
    pub playbook: String,
    /// Who started it.
    pub who: String,
    /// The incident id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub incident: Option<String>,
    /// When it started.
    pub started_at: Option<jiff::Timestamp>,
    /// When it last finished.
    pub finished_at: Option<jiff::Timestamp>,
    /// How it last finished (`None`: still running, or the process died).
    pub outcome: Option<Outcome>,
    /// Mutations applied.
    pub mutations: usize,
    /// The journal file.
    pub journal: PathBuf,
    /// A problem reading the journal (torn tail, corruption), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

/// Summarizes the records of one journal.
pub fn summarize(run_id: &str, journal: &Path, entries: &[Entry]) -> RunSummary {
    let mut summary = RunSummary {
        run_id: run_id.to_string(),
        playbook: String::new(),
        who: String::new(),
        incident: None,
        started_at: None,
        finished_at: None,
        outcome: None,
        mutations: 0,
        journal: journal.to_path_buf(),
        problem: None,
    };
    for entry in entries {
        match &entry.record {
            Record::RunStarted {
                playbook,
                who,
                incident,
                ..
            } => {
                summary.playbook = playbook.clone();
                summary.who = who.clone();
                summary.incident = incident.clone();
                summary.started_at = Some(entry.at);
            }
            Record::RunResumed { .. } => {
                summary.outcome = None;
                summary.finished_at = None;
            }
            Record::MutationApplied { .. } => summary.mutations += 1,
            Record::RunFinished { outcome, .. } => {
                summary.outcome = Some(*outcome);
                summary.finished_at = Some(entry.at);
            }
            _ => {}
        }
    }
    summary
}

/// Lists every run under `<state_dir>/runs`, newest first. Unreadable journals are listed with
/// their problem instead of failing the listing.
pub fn list_runs(state_dir: &Path) -> Result<Vec<RunSummary>, JournalError> {
    let runs = state_dir.join("runs");
    let dir = match std::fs::read_dir(&runs) {
        Ok(dir) => dir,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(JournalError::Io {
                operation: "read",
                path: runs,
                source,
            });
        }
    };
    let mut out = Vec::new();
    for item in dir.flatten() {
        let Some(run_id) = item.file_name().to_str().map(str::to_string) else {
            continue;
        };
        let path = item.path().join(JOURNAL_FILE);
        if !path.is_file() {
            continue;
        }
        match read(&path) {
            Ok((entries, torn)) => {
                let mut summary = summarize(&run_id, &path, &entries);
                summary.problem = torn.map(|t| t.to_string());
                out.push(summary);
            }
            Err(err @ JournalError::Corrupted { .. }) => {
                let (entries, _) = read_prefix(&path);
                let mut summary = summarize(&run_id, &path, &entries);
                summary.problem = Some(format!("{err}"));
                out.push(summary);
            }
            Err(err) => {
                let mut summary = summarize(&run_id, &path, &[]);
                summary.problem = Some(format!("{err}"));
                out.push(summary);
            }
        }
    }
    out.sort_by(|a, b| b.run_id.cmp(&a.run_id));
    Ok(out)
}

/// A new run id: `r-YYYYMMDD-HHMMSS-xxxxxxxxxxxx` (UTC, then 48 random bits in hexadecimal).
///
/// The suffix mixes the clock, the process id and a per-process counter through a randomly
/// keyed SipHash, so ids drawn in the same second — in one process or many — differ unless 48
/// random bits collide (about one in 10^8 for a thousand ids in one second). A collision is
/// still never silent: [`Journal::create`] refuses a run id that has a journal, and the daemon
/// refuses a run id it already knows.
pub fn new_run_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let now = jiff::Timestamp::now();
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(now.as_nanosecond() as u128);
    hasher.write_u32(std::process::id());
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    let suffix = hasher.finish() & 0xffff_ffff_ffff;
    format!("r-{}-{suffix:012x}", now.strftime("%Y%m%d-%H%M%S"))
}

/// Checks that a run id is safe to use as a directory and resource name.
pub fn validate_run_id(run_id: &str) -> Result<(), JournalError> {
    let ok = !run_id.is_empty()
        && run_id.len() <= 63
        && run_id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && run_id.starts_with(|c: char| c.is_ascii_alphanumeric())
        && run_id.ends_with(|c: char| c.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err(JournalError::InvalidRunId {
            run_id: run_id.to_string(),
        })
    }
}

/// Checks that an incident id is safe as a file name (`<state-dir>/incidents/<ID>.json`):
/// letters, digits, `.`, `_`, `-`; at most 64; not starting with `.`. Every entry point (CLI
/// flags, the daemon API) validates incident ids with this function.
pub fn validate_incident_id(id: &str) -> Result<(), JournalError> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && !id.starts_with('.')
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(JournalError::InvalidIncidentId { id: id.to_string() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Applied, Inverse, Mutation, ObjectRef};

    fn target() -> ObjectRef {
        ObjectRef {
            api_version: "apps/v1".into(),
            kind: "Deployment".into(),
            namespace: Some("shop".into()),
            name: "checkout".into(),
        }
    }

    fn sample_records() -> Vec<Record> {
        let mutation = Mutation {
            id: "rollback/checkout".into(),
            target: target(),
            description: "roll back to revision 1".into(),
            diff: "- image: v2\n+ image: v1".into(),
            pre_image: serde_json::json!({"spec": {"template": {}}}),
            resource_version: Some("41".into()),
            request: serde_json::json!({"patch": {}}),
            inverse: Inverse::NotReverted {
                reason: "rolling forward would restore the bad release".into(),
                roll_forward: None,
            },
        };
        vec![
            Record::RunStarted {
                run_id: "r-20261125-113000-abcd".into(),
                playbook: "rollback".into(),
                trigger: "cli".into(),
                who: "alice".into(),
                incident: Some("INC-1".into()),
                params: redact_params(
                    &[
                        ("name".to_string(), serde_json::json!("checkout")),
                        ("apiToken".to_string(), serde_json::json!("s3cret")),
                    ]
                    .into_iter()
                    .collect(),
                ),
                plan: serde_json::json!({"steps": []}),
            },
            Record::MutationIntended {
                step: "rollback".into(),
                mutation: mutation.clone(),
            },
            Record::MutationApplied {
                step: "rollback".into(),
                mutation_id: mutation.id.clone(),
                applied: Applied {
                    id: mutation.id.clone(),
                    target: target(),
                    resource_version_after: Some("42".into()),
                },
                resource_version_before: Some("41".into()),
                inverse: mutation.inverse.clone(),
                recovered: false,
            },
            Record::StepVerified {
                step: "rollback".into(),
            },
            Record::RunFinished {
                outcome: Outcome::Succeeded,
                duration_ms: 1234,
                reason: None,
            },
        ]
    }

    #[test]
    fn records_round_trip_with_type_tag_and_fsync_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut journal = Journal::create(dir.path(), "r-20261125-113000-abcd").unwrap();
        for record in sample_records() {
            journal.append(record).unwrap();
        }
        let text = std::fs::read_to_string(journal.path()).unwrap();
        assert!(
            text.lines()
                .next()
                .unwrap()
                .contains(r#""type":"RunStarted""#)
        );
        assert!(!text.contains("s3cret"), "secret param leaked: {text}");
        let (entries, torn) = read(journal.path()).unwrap();
        assert!(torn.is_none());
        let records: Vec<Record> = entries.iter().map(|e| e.record.clone()).collect();
        assert_eq!(records, sample_records());
        let seqs: Vec<u64> = entries.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, vec![1, 2, 3, 4, 5]);
    }

    #[test]
    fn issue18_informational_records_wait_for_the_next_intent_to_be_synced() {
        let dir = tempfile::tempdir().unwrap();
        let run = "r-20261125-113000-abcd";
        let mut journal = Journal::create(dir.path(), run).unwrap();
        let [started, intended, applied, verified, finished] =
            <[Record; 5]>::try_from(sample_records()).unwrap();
        // Written at once (readable, and surviving a killed process), synced later.
        journal.append(started).unwrap();
        assert!(journal.has_unsynced(), "RunStarted is informational");
        assert_eq!(read(journal.path()).unwrap().0.len(), 1);
        // The intent's fsync covers the records before it.
        journal.append(intended).unwrap();
        assert!(
            !journal.has_unsynced(),
            "an intent is synced before the mutation"
        );
        journal.append_all(vec![applied, verified]).unwrap();
        assert!(journal.has_unsynced());
        journal.sync().unwrap();
        assert!(!journal.has_unsynced());
        journal.append(finished).unwrap();
        assert!(!journal.has_unsynced(), "the run's end is synced");
        // Exactly the records that announce or settle an effect are durable at once.
        let durable: Vec<&str> = sample_records()
            .iter()
            .filter(|r| r.must_be_durable())
            .map(Record::kind)
            .collect();
        assert_eq!(durable, ["MutationIntended", "RunFinished"]);
    }

    #[test]
    fn a_batch_appends_in_order_with_consecutive_sequence_numbers() {
        let dir = tempfile::tempdir().unwrap();
        let run = "r-20261125-113000-abcd";
        let mut journal = Journal::create(dir.path(), run).unwrap();
        let mut records = sample_records().into_iter();
        journal.append(records.next().unwrap()).unwrap();
        let batch: Vec<Record> = records.by_ref().take(3).collect();
        journal.append_all(batch.clone()).unwrap();
        journal.append_all(Vec::new()).unwrap();
        journal.append(records.next().unwrap()).unwrap();
        let (entries, torn) = read(journal.path()).unwrap();
        assert!(torn.is_none());
        let seqs: Vec<u64> = entries.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, [1, 2, 3, 4, 5]);
        let middle: Vec<Record> = entries[1..4].iter().map(|e| e.record.clone()).collect();
        assert_eq!(middle, batch);
        // A reopened journal continues after the batch.
        drop(journal);
        let (journal, _, _) = Journal::open(dir.path(), run).unwrap();
        assert_eq!(journal.next_seq, 6);
    }

    #[test]
    fn issue13_journals_are_private_and_never_written_through_a_symlink() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let run = "r-20261125-113000-abcd";
        let journal = Journal::create(dir.path(), run).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(journal.path()), 0o600);
        assert_eq!(mode(journal.dir()), 0o700);
        drop(journal);

        // A journal path that is a symlink (planted in the state dir) is never appended to.
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "precious\n").unwrap();
        let other = "r-20261125-113000-beef";
        std::fs::create_dir_all(run_dir(dir.path(), other)).unwrap();
        std::os::unix::fs::symlink(&victim, journal_path(dir.path(), other)).unwrap();
        assert!(Journal::create(dir.path(), other).is_err());
        assert!(Journal::open(dir.path(), other).is_err());
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");
    }

    #[test]
    fn issue12_run_ids_do_not_collide_in_a_burst() {
        // 2,000 ids in a burst produced 15 duplicates with a 16-bit suffix.
        let ids: Vec<String> = (0..20_000).map(|_| new_run_id()).collect();
        let unique: std::collections::BTreeSet<&String> = ids.iter().collect();
        assert_eq!(unique.len(), ids.len());
        // Many threads at once (the daemon's API handlers).
        let handles: Vec<_> = (0..8)
            .map(|_| std::thread::spawn(|| (0..2_000).map(|_| new_run_id()).collect::<Vec<_>>()))
            .collect();
        let mut all = std::collections::BTreeSet::new();
        for h in handles {
            for id in h.join().unwrap() {
                assert!(all.insert(id.clone()), "duplicate {id}");
            }
        }
    }

    #[test]
    fn create_refuses_an_existing_run() {
        let dir = tempfile::tempdir().unwrap();
        Journal::create(dir.path(), "r-20261125-113000-abcd").unwrap();
        let err = Journal::create(dir.path(), "r-20261125-113000-abcd").unwrap_err();
        assert_eq!(err.category(), "journal-exists");
    }

    #[test]
    fn torn_last_line_is_reported_ignored_and_cut_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let run = "r-20261125-113000-abcd";
        let mut journal = Journal::create(dir.path(), run).unwrap();
        for record in sample_records().into_iter().take(3) {
            journal.append(record).unwrap();
        }
        let path = journal.path().to_path_buf();
        drop(journal);
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(br#"{"seq":4,"at":"2026-11-25T11:30:00Z","type":"StepVer"#)
            .unwrap();
        drop(f);

        let (entries, torn) = read(&path).unwrap();
        assert_eq!(entries.len(), 3);
        let torn = torn.expect("torn tail detected");
        assert_eq!(torn.line, 4);

        let (mut journal, entries, torn) = Journal::open(dir.path(), run).unwrap();
        assert_eq!(entries.len(), 3);
        assert!(torn.is_some());
        let entry = journal
            .append(Record::StepVerified {
                step: "rollback".into(),
            })
            .unwrap();
        assert_eq!(entry.seq, 4);
        let (entries, torn) = read(&path).unwrap();
        assert_eq!(entries.len(), 4);
        assert!(torn.is_none());
    }

    #[test]
    fn corrupted_middle_line_is_an_error_naming_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let run = "r-20261125-113000-abcd";
        let mut journal = Journal::create(dir.path(), run).unwrap();
        for record in sample_records() {
            journal.append(record).unwrap();
        }
        let path = journal.path().to_path_buf();
        let text = std::fs::read_to_string(&path).unwrap();
        let mut lines: Vec<&str> = text.lines().collect();
        lines[1] = "{not json";
        std::fs::write(&path, lines.join("\n") + "\n").unwrap();
        match read(&path) {
            Err(JournalError::Corrupted { line, .. }) => assert_eq!(line, 2),
            other => panic!("expected Corrupted at line 2, got {other:?}"),
        }
        let (prefix, err) = read_prefix(&path);
        assert_eq!(prefix.len(), 1, "the intact records before the damage");
        assert!(matches!(err, Some(JournalError::Corrupted { line: 2, .. })));
        let err = read(&path).unwrap_err();
        assert!(format!("{err}").contains(":2:"), "{err}");
    }

    #[test]
    fn issue14_lines_carry_their_version_and_a_newer_one_is_refused_not_torn() {
        let dir = tempfile::tempdir().unwrap();
        let run = "r-20261125-113000-abcd";
        let mut journal = Journal::create(dir.path(), run).unwrap();
        for record in sample_records() {
            journal.append(record).unwrap();
        }
        let path = journal.path().to_path_buf();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.lines().all(|l| l.starts_with(r#"{"v":2,"seq":"#)),
            "{text}"
        );

        // Lines without `v` (written before formats carried one) read as version 1.
        let unversioned = text.replace(r#"{"v":2,"#, "{");
        std::fs::write(&path, &unversioned).unwrap();
        let (entries, torn) = read(&path).unwrap();
        assert_eq!(entries.len(), 5);
        assert!(torn.is_none());

        // A newer version: in the middle, or as the complete last line, and also a record
        // kind this build does not know.
        let lines: Vec<&str> = text.lines().collect();
        let newer_last = format!(
            "{}\n{}\n",
            lines[..4].join("\n"),
            lines[4].replace(r#"{"v":2,"#, r#"{"v":3,"#)
        );
        let unknown_kind = format!(
            "{}\n{}\n{}\n",
            lines[..2].join("\n"),
            r#"{"v":3,"seq":3,"at":"2026-11-25T11:30:00Z","type":"Teleported","to":"mars"}"#,
            lines[3..].join("\n")
        );
        for (bytes, line) in [(newer_last, 5), (unknown_kind, 3)] {
            std::fs::write(&path, bytes).unwrap();
            let err = read(&path).unwrap_err();
            assert_eq!(err.category(), "journal-version");
            let chain = format!("{err}: {}", std::error::Error::source(&err).unwrap());
            assert!(chain.contains(&format!("journal.jsonl:{line}:")), "{chain}");
            assert!(chain.contains("format version 3"), "{chain}");
            assert!(chain.contains("newer ripcord"), "{chain}");
            assert!(
                Journal::open(dir.path(), run).is_err(),
                "never resumed or cut"
            );
        }
    }

    #[test]
    fn list_runs_summarizes_newest_first() {
        let dir = tempfile::tempdir().unwrap();
        for run in ["r-20261125-100000-aaaa", "r-20261125-110000-bbbb"] {
            let mut journal = Journal::create(dir.path(), run).unwrap();
            for record in sample_records() {
                journal.append(record).unwrap();
            }
        }
        let runs = list_runs(dir.path()).unwrap();
        assert_eq!(runs.len(), 2);
        assert_eq!(runs[0].run_id, "r-20261125-110000-bbbb");
        assert_eq!(runs[0].outcome, Some(Outcome::Succeeded));
        assert_eq!(runs[0].mutations, 1);
        assert_eq!(runs[0].incident.as_deref(), Some("INC-1"));
    }

    #[test]
    fn run_ids_have_the_documented_shape() {
        let id = new_run_id();
        assert!(validate_run_id(&id).is_ok(), "{id}");
        assert_eq!(id.len(), "r-20261125-113000-0123456789ab".len(), "{id}");
        assert!(validate_run_id("../etc").is_err());
        assert!(validate_run_id("R-UPPER").is_err());
    }

    #[test]
    fn issue13_incident_ids_cannot_name_paths() {
        assert!(validate_incident_id("INC-1234").is_ok());
        assert!(validate_incident_id("2026.11_a-b").is_ok());
        for bad in ["", "../../../PWNED", "a/b", ".hidden", "..", "a b", "a\0b"] {
            assert!(validate_incident_id(bad).is_err(), "{bad:?}");
        }
        assert!(validate_incident_id(&"x".repeat(65)).is_err());
    }
}
