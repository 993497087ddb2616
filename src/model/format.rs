//! Format versions of what ripcord keeps: journal lines, the plan embedded in a journal,
//! incident files, the `Run` resource's status and evidence bundles' manifests.
//!
//! Every such format carries its version (journal lines: `v`; the others: `formatVersion`).
//! Writers write [`Format::current`]; readers accept the current version and the previous one,
//! and refuse any other with [`UnsupportedFormat`], naming the file and line or the resource.
//! A missing version is [`FormatVersion::V1`]: what ripcord wrote before formats carried one.
//!
//! | version | what |
//! |---|---|
//! | 1 | no version field (written before issue 14) |
//! | 2 | the same records, with the version field |
//! | 2 (snapshot manifest) | the broad phase's objects in one `List` file per kind and list page, each manifest entry naming its page and `index` (issue 18) |
//! | 3 | `Run` status only: step phases read as an enum, each inverse as structured JSON (or left out with `inverseOmitted`), the daemon's stops as `stoppedBy`, the seal `v2:` over them |
//!
//! A reader of version N reads N and N−1; a change that older readers cannot read safely bumps
//! the version (docs/architecture.md, "On-disk and in-cluster formats"). Version 1 is version 2
//! without its field, so a reader of 2 (or of 3, for the `Run` status) reads 1 as well.

use serde::{Deserialize, Serialize};

/// A format version as written (absent: [`FormatVersion::V1`]). Compare it only through
/// [`Format::check`].
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
#[serde(transparent)]
pub struct FormatVersion(u32);

// === impl FormatVersion ===

impl FormatVersion {
    /// Written before formats carried a version (the field is absent).
    pub const V1: FormatVersion = FormatVersion(1);
    /// The version field is written.
    pub const V2: FormatVersion = FormatVersion(2);
    /// `Run` status: structured inverses, step phases and stop causes (issue 14).
    pub const V3: FormatVersion = FormatVersion(3);

    /// A version as found in a file or resource.
    pub const fn new(n: u32) -> FormatVersion {
        FormatVersion(n)
    }

    /// The number written.
    pub const fn get(self) -> u32 {
        self.0
    }
}

impl Default for FormatVersion {
    /// An absent version is version 1.
    fn default() -> FormatVersion {
        FormatVersion::V1
    }
}

impl std::fmt::Display for FormatVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The versioned formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// One line of `journal.jsonl` (field `v`).
    JournalLine,
    /// The plan in a journal's `RunStarted` record (field `formatVersion`).
    EmbeddedPlan,
    /// `<state-dir>/incidents/<ID>.json` (field `formatVersion`).
    Incident,
    /// The status of a `Run` resource (field `status.formatVersion`).
    RunStatus,
    /// An evidence bundle's `manifest.json` (field `formatVersion`): version 1 has one file
    /// per object, version 2 one `List` file per kind and list page for the broad phase.
    SnapshotManifest,
}

// === impl Format ===

impl Format {
    /// What the format is, for people.
    pub fn name(self) -> &'static str {
        match self {
            Format::JournalLine => "journal line",
            Format::EmbeddedPlan => "journaled plan",
            Format::Incident => "incident file",
            Format::RunStatus => "Run status",
            Format::SnapshotManifest => "snapshot manifest",
        }
    }

    /// The version this build writes.
    pub fn current(self) -> FormatVersion {
        match self {
            Format::JournalLine
            | Format::EmbeddedPlan
            | Format::Incident
            | Format::SnapshotManifest => FormatVersion::V2,
            Format::RunStatus => FormatVersion::V3,
        }
    }

    /// The oldest version this build reads: the one before [`Format::current`], and version 1
    /// wherever version 2 is read (version 1 is version 2 without its field).
    pub fn oldest_readable(self) -> FormatVersion {
        let previous = self.current().0.saturating_sub(1).max(1);
        if previous <= FormatVersion::V2.0 {
            FormatVersion::V1
        } else {
            FormatVersion(previous)
        }
    }

    /// `found` when this build reads it; otherwise the error naming `location` (a file and
    /// line, or a resource) and the version.
    pub fn check(
        self,
        found: FormatVersion,
        location: impl std::fmt::Display,
    ) -> Result<FormatVersion, UnsupportedFormat> {
        if found >= self.oldest_readable() && found <= self.current() {
            Ok(found)
        } else {
            Err(UnsupportedFormat {
                format: self,
                location: location.to_string(),
                found,
            })
        }
    }

    /// The version of a JSON object's `field` (absent: [`FormatVersion::V1`]), checked like
    /// [`Format::check`]. A value that is not a version number is refused too.
    pub fn check_json(
        self,
        object: &serde_json::Value,
        field: &str,
        location: impl std::fmt::Display,
    ) -> Result<FormatVersion, UnsupportedFormat> {
        let found = match object.get(field) {
            None | Some(serde_json::Value::Null) => FormatVersion::V1,
            Some(v) => match v.as_u64().and_then(|n| u32::try_from(n).ok()) {
                Some(n) => FormatVersion(n),
                // Not a number: no version this build knows.
                None => FormatVersion(0),
            },
        };
        self.check(found, location)
    }
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A file or resource in a format version this build does not read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsupportedFormat {
    /// The format.
    pub format: Format,
    /// The file and line, or the resource.
    pub location: String,
    /// The version found.
    pub found: FormatVersion,
}

impl std::fmt::Display for UnsupportedFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {} format version {} is not readable by this ripcord (it reads versions {} to {})",
            self.location,
            self.format,
            self.found,
            self.format.oldest_readable(),
            self.format.current()
        )?;
        if self.found > self.format.current() {
            f.write_str("; it was written by a newer ripcord: upgrade ripcord to read it")?;
        }
        Ok(())
    }
}

impl std::error::Error for UnsupportedFormat {}

impl UnsupportedFormat {
    /// A stable category for metrics, records and exit handling.
    pub fn category(&self) -> &'static str {
        "format-version"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issue14_run_status_is_v3_and_reads_1_to_3() {
        let format = Format::RunStatus;
        assert_eq!(format.current(), FormatVersion::V3);
        for n in 1..=3 {
            assert!(format.check(FormatVersion::new(n), "x").is_ok(), "{n}");
        }
        let v1 = format.check_json(&serde_json::json!({}), "formatVersion", "x");
        assert_eq!(v1, Ok(FormatVersion::V1));
        let err = format
            .check(FormatVersion::new(4), "Run shop/r-1")
            .unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with("Run shop/r-1: Run status format version 4"),
            "{text}"
        );
        assert!(text.contains("versions 1 to 3"), "{text}");
        assert!(text.contains("newer ripcord"), "{text}");
        assert!(format.check(FormatVersion::new(0), "x").is_err());
    }

    #[test]
    fn issue14_absent_is_v1_and_readers_take_current_and_previous_only() {
        for format in [
            Format::JournalLine,
            Format::EmbeddedPlan,
            Format::Incident,
            Format::SnapshotManifest,
        ] {
            assert_eq!(format.current(), FormatVersion::V2);
            let v1 = format.check_json(&serde_json::json!({}), "v", "x").unwrap();
            assert_eq!(v1, FormatVersion::V1);
            assert!(format.check(FormatVersion::V2, "x").is_ok());
            let err = format
                .check(FormatVersion::new(3), "runs/r-1/journal.jsonl:4")
                .unwrap_err();
            let text = err.to_string();
            assert!(text.starts_with("runs/r-1/journal.jsonl:4: "), "{text}");
            assert!(text.contains("format version 3"), "{text}");
            assert!(text.contains("versions 1 to 2"), "{text}");
            assert!(text.contains("newer ripcord"), "{text}");
            assert!(
                format
                    .check_json(&serde_json::json!({"v": "two"}), "v", "x")
                    .is_err()
            );
            assert!(format.check(FormatVersion::new(0), "x").is_err());
        }
    }

    #[test]
    fn a_version_serializes_as_a_number() {
        assert_eq!(serde_json::to_string(&FormatVersion::V2).unwrap(), "2");
        let v: FormatVersion = serde_json::from_str("7").unwrap();
        assert_eq!(v.get(), 7);
    }
}
