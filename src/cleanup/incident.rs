//! Incident records: the book-keeping a postmortem needs, one JSON file per incident at
//! `<state-dir>/incidents/<ID>.json`.
//!
//! An incident holds its start and end time, severity, impacted services, impact (free text;
//! the figures come from the runs' impact metrics in the report), root causes (free text,
//! editable after the fact), the postmortem's times (impact start, detection, mitigation,
//! resolution), its owner with the hand-offs (asked, then acknowledged by the taker), notes and
//! action items. [`Incident::durations`] derives time to detect and to mitigate from them and
//! from the runs. The runs attached to it are not stored: they are the runs whose
//! `RunStarted` carries the incident id, found when the incident is shown.
//!
//! The file carries its format version (`formatVersion`, see [`crate::journal::format`]); a
//! file without one is version 1, one of a version this build does not read is refused.

use super::CleanupError;
use crate::journal::format::{Format, FormatVersion};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// One incident.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Incident {
    /// The id (`INC-1234`).
    pub id: String,
    /// When it was opened.
    pub opened_at: jiff::Timestamp,
    /// Who opened it.
    pub opened_by: String,
    /// When it was closed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closed_at: Option<jiff::Timestamp>,
    /// Severity (`SEV1`, `high`…), free form.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<String>,
    /// Impacted services.
    #[serde(default)]
    pub services: Vec<String>,
    /// The impact, for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub impact: Option<String>,
    /// Root causes (free text).
    #[serde(default)]
    pub root_causes: Vec<String>,
    /// When the impact began (often before anyone noticed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub impact_started_at: Option<jiff::Timestamp>,
    /// When the problem was detected (default for reports: when the incident was opened).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detected_at: Option<jiff::Timestamp>,
    /// When the impact was mitigated (default for reports: the first successful run's end).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mitigated_at: Option<jiff::Timestamp>,
    /// When the incident was resolved (the cause fixed, not only mitigated).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved_at: Option<jiff::Timestamp>,
    /// Who owns the incident now (the opener until a hand-off is acknowledged).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// Hand-offs of the ownership, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub handoffs: Vec<Handoff>,
    /// Free-text notes, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<Note>,
    /// Follow-up work, numbered from 1.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub action_items: Vec<ActionItem>,
}

/// One hand-off of an incident's ownership: asked by `from`, taken over by `to` when they
/// acknowledge it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Handoff {
    /// The owner handing off.
    pub from: String,
    /// Who takes over.
    pub to: String,
    /// When it was asked.
    pub at: jiff::Timestamp,
    /// When `to` acknowledged (took over); `None`: pending.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acked_at: Option<jiff::Timestamp>,
}

/// A free-text note.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Note {
    /// When.
    pub at: jiff::Timestamp,
    /// Who wrote it.
    pub by: String,
    /// The text.
    pub text: String,
}

/// A follow-up action item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ActionItem {
    /// Its number within the incident (from 1).
    pub number: usize,
    /// What is to be done.
    pub text: String,
    /// Who will do it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// When it was added, and by whom.
    pub added_at: jiff::Timestamp,
    /// Who added it.
    pub added_by: String,
    /// When it was marked done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub done_at: Option<jiff::Timestamp>,
}

/// The postmortem's durations, derived from an incident's times and its runs.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Durations {
    /// Impact start to detection.
    pub time_to_detect: Option<std::time::Duration>,
    /// Impact start (else detection) to mitigation.
    pub time_to_mitigate: Option<std::time::Duration>,
    /// Impact start (else detection) to resolution.
    pub time_to_resolve: Option<std::time::Duration>,
    /// Detection time used (recorded, else the incident's opening).
    pub detected_at: jiff::Timestamp,
    /// Mitigation time used (recorded, else the first successful run's end), if any.
    pub mitigated_at: Option<jiff::Timestamp>,
    /// True when `mitigated_at` came from a run, not from the incident record.
    pub mitigated_by_run: bool,
}

/// Changes to an incident (`open` and `update`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IncidentChanges {
    /// New severity.
    pub severity: Option<String>,
    /// Services to add.
    pub services: Vec<String>,
    /// New impact text.
    pub impact: Option<String>,
    /// Root causes to add.
    pub root_causes: Vec<String>,
    /// Replace the root causes instead of adding to them.
    pub replace_root_causes: bool,
    /// When the impact began.
    pub impact_started_at: Option<jiff::Timestamp>,
    /// When it was detected.
    pub detected_at: Option<jiff::Timestamp>,
    /// When it was mitigated.
    pub mitigated_at: Option<jiff::Timestamp>,
    /// When it was resolved.
    pub resolved_at: Option<jiff::Timestamp>,
}

impl Incident {
    /// A new incident `id`, opened at `opened_at` by `opened_by`, with nothing else known yet.
    pub fn new(id: &str, opened_at: jiff::Timestamp, opened_by: &str) -> Incident {
        Incident {
            id: id.to_string(),
            opened_at,
            opened_by: opened_by.to_string(),
            closed_at: None,
            severity: None,
            services: Vec::new(),
            impact: None,
            root_causes: Vec::new(),
            impact_started_at: None,
            detected_at: None,
            mitigated_at: None,
            resolved_at: None,
            owner: None,
            handoffs: Vec::new(),
            notes: Vec::new(),
            action_items: Vec::new(),
        }
    }

    /// True while not closed.
    pub fn is_open(&self) -> bool {
        self.closed_at.is_none()
    }

    fn apply(&mut self, changes: IncidentChanges) {
        if let Some(severity) = changes.severity {
            self.severity = Some(severity);
        }
        for service in changes.services {
            if !self.services.contains(&service) {
                self.services.push(service);
            }
        }
        if let Some(impact) = changes.impact {
            self.impact = Some(impact);
        }
        if changes.replace_root_causes {
            self.root_causes.clear();
        }
        for cause in changes.root_causes {
            if !self.root_causes.contains(&cause) {
                self.root_causes.push(cause);
            }
        }
        if let Some(at) = changes.impact_started_at {
            self.impact_started_at = Some(at);
        }
        if let Some(at) = changes.detected_at {
            self.detected_at = Some(at);
        }
        if let Some(at) = changes.mitigated_at {
            self.mitigated_at = Some(at);
        }
        if let Some(at) = changes.resolved_at {
            self.resolved_at = Some(at);
        }
    }

    /// The current owner: the last acknowledged hand-off's taker, else the recorded owner,
    /// else the opener.
    pub fn current_owner(&self) -> &str {
        self.owner.as_deref().unwrap_or(&self.opened_by)
    }

    /// The pending (unacknowledged) hand-off, if any.
    pub fn pending_handoff(&self) -> Option<&Handoff> {
        self.handoffs.last().filter(|h| h.acked_at.is_none())
    }

    /// Asks `to` to take over (a pending hand-off replaces an earlier pending one).
    pub fn hand_off(&mut self, to: &str, at: jiff::Timestamp) {
        if self.pending_handoff().is_some() {
            self.handoffs.pop();
        }
        self.handoffs.push(Handoff {
            from: self.current_owner().to_string(),
            to: to.to_string(),
            at,
            acked_at: None,
        });
    }

    /// `who` acknowledges the pending hand-off and becomes the owner. `Err`: there is none,
    /// or it is addressed to someone else (the message says to whom).
    pub fn acknowledge(&mut self, who: &str, at: jiff::Timestamp) -> Result<(), String> {
        let Some(handoff) = self.handoffs.last_mut().filter(|h| h.acked_at.is_none()) else {
            return Err(format!(
                "incident {} has no pending hand-off (owner: {})",
                self.id,
                self.current_owner()
            ));
        };
        if handoff.to != who {
            return Err(format!(
                "the hand-off of incident {} is addressed to {}, not {who}",
                self.id, handoff.to
            ));
        }
        handoff.acked_at = Some(at);
        self.owner = Some(who.to_string());
        Ok(())
    }

    /// Adds a note.
    pub fn add_note(&mut self, by: &str, text: &str, at: jiff::Timestamp) {
        self.notes.push(Note {
            at,
            by: by.to_string(),
            text: text.to_string(),
        });
    }

    /// Adds an action item; returns its number.
    pub fn add_action(
        &mut self,
        by: &str,
        text: &str,
        owner: Option<String>,
        at: jiff::Timestamp,
    ) -> usize {
        let number = self
            .action_items
            .iter()
            .map(|a| a.number)
            .max()
            .unwrap_or(0)
            + 1;
        self.action_items.push(ActionItem {
            number,
            text: text.to_string(),
            owner,
            added_at: at,
            added_by: by.to_string(),
            done_at: None,
        });
        number
    }

    /// Marks action item `number` done. `Err`: no such item.
    pub fn complete_action(&mut self, number: usize, at: jiff::Timestamp) -> Result<(), String> {
        let item = self
            .action_items
            .iter_mut()
            .find(|a| a.number == number)
            .ok_or_else(|| format!("incident {} has no action item {number}", self.id))?;
        if item.done_at.is_none() {
            item.done_at = Some(at);
        }
        Ok(())
    }

    /// Time to detect, mitigate and resolve. Detection defaults to the opening; mitigation to
    /// `first_mitigation` (the end of the incident's first successful run); the durations
    /// count from the impact start when it is recorded, else from detection (time to detect
    /// is then unknown).
    pub fn durations(&self, first_mitigation: Option<jiff::Timestamp>) -> Durations {
        let detected_at = self.detected_at.unwrap_or(self.opened_at);
        let (mitigated_at, mitigated_by_run) = match self.mitigated_at {
            Some(at) => (Some(at), false),
            None => (first_mitigation, first_mitigation.is_some()),
        };
        let start = self.impact_started_at.unwrap_or(detected_at);
        let between = |from: jiff::Timestamp, to: jiff::Timestamp| {
            std::time::Duration::try_from(to.duration_since(from)).ok()
        };
        Durations {
            time_to_detect: self
                .impact_started_at
                .and_then(|start| between(start, detected_at)),
            time_to_mitigate: mitigated_at.and_then(|m| between(start, m)),
            time_to_resolve: self.resolved_at.and_then(|r| between(start, r)),
            detected_at,
            mitigated_at,
            mitigated_by_run,
        }
    }
}

/// Checks an incident id (see [`crate::journal::validate_incident_id`]).
pub fn validate_id(id: &str) -> Result<(), CleanupError> {
    crate::journal::validate_incident_id(id)
        .map_err(|_| CleanupError::InvalidIncidentId { id: id.to_string() })
}

/// The file of an incident.
pub fn path(state_dir: &Path, id: &str) -> PathBuf {
    state_dir.join("incidents").join(format!("{id}.json"))
}

/// Reads an incident.
pub fn load(state_dir: &Path, id: &str) -> Result<Incident, CleanupError> {
    validate_id(id)?;
    let path = path(state_dir, id);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(CleanupError::IncidentNotFound {
                id: id.to_string(),
                path,
            });
        }
        Err(source) => {
            return Err(CleanupError::IncidentIo {
                operation: "read",
                path,
                source,
            });
        }
    };
    let parse_error = |e: serde_json::Error| CleanupError::IncidentIo {
        operation: "parse",
        path: path.clone(),
        source: std::io::Error::other(e),
    };
    let value: serde_json::Value = serde_json::from_slice(&bytes).map_err(parse_error)?;
    Format::Incident.check_json(&value, FORMAT_FIELD, path.display())?;
    serde_json::from_value(value).map_err(parse_error)
}

/// The field of an incident file that carries its format version (absent: version 1).
pub const FORMAT_FIELD: &str = "formatVersion";

/// An incident file as written: its format version, then the incident.
#[derive(Serialize)]
struct IncidentFile<'a> {
    #[serde(rename = "formatVersion")]
    format_version: FormatVersion,
    #[serde(flatten)]
    incident: &'a Incident,
}

/// Writes an incident (atomically: a temporary file renamed over the old one).
pub fn save(state_dir: &Path, incident: &Incident) -> Result<PathBuf, CleanupError> {
    validate_id(&incident.id)?;
    let path = path(state_dir, &incident.id);
    let write = || -> std::io::Result<()> {
        let file = IncidentFile {
            format_version: Format::Incident.current(),
            incident,
        };
        let text = serde_json::to_vec_pretty(&file).map_err(std::io::Error::other)?;
        crate::journal::files::write_private(&path, &text)
    };
    write().map_err(|source| CleanupError::IncidentIo {
        operation: "write",
        path: path.clone(),
        source,
    })?;
    Ok(path)
}

/// Opens a new incident (refused when it exists).
pub fn open(
    state_dir: &Path,
    id: &str,
    who: &str,
    changes: IncidentChanges,
) -> Result<Incident, CleanupError> {
    validate_id(id)?;
    let file = path(state_dir, id);
    if file.exists() {
        return Err(CleanupError::IncidentExists {
            id: id.to_string(),
            path: file,
        });
    }
    let mut incident = Incident::new(id, jiff::Timestamp::now(), who);
    incident.apply(changes);
    save(state_dir, &incident)?;
    Ok(incident)
}

/// Changes an incident's fields.
pub fn update(
    state_dir: &Path,
    id: &str,
    changes: IncidentChanges,
) -> Result<Incident, CleanupError> {
    let mut incident = load(state_dir, id)?;
    incident.apply(changes);
    save(state_dir, &incident)?;
    Ok(incident)
}

/// Closes an incident (now), applying last changes. Closing a closed incident keeps its end.
pub fn close(
    state_dir: &Path,
    id: &str,
    changes: IncidentChanges,
) -> Result<Incident, CleanupError> {
    let mut incident = load(state_dir, id)?;
    incident.apply(changes);
    if incident.closed_at.is_none() {
        incident.closed_at = Some(jiff::Timestamp::now());
    }
    save(state_dir, &incident)?;
    Ok(incident)
}

/// Every incident, newest first. Unreadable files are skipped with a warning.
pub fn list(state_dir: &Path) -> Result<Vec<Incident>, CleanupError> {
    let dir = state_dir.join("incidents");
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(CleanupError::IncidentIo {
                operation: "read",
                path: dir,
                source,
            });
        }
    };
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(id) = name.to_str().and_then(|n| n.strip_suffix(".json")) else {
            continue;
        };
        if id.ends_with(".verify") {
            continue;
        }
        match load(state_dir, id) {
            Ok(incident) => out.push(incident),
            Err(err) => {
                tracing::warn!(incident = %id, error = %err, "skipping an unreadable incident")
            }
        }
    }
    out.sort_by_key(|i| std::cmp::Reverse(i.opened_at));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issue14_incident_files_carry_their_version_and_a_newer_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let incident = open(dir.path(), "INC-1", "ann", IncidentChanges::default()).unwrap();
        let file = path(dir.path(), "INC-1");
        let mut value: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
        assert_eq!(value["formatVersion"], 2);
        assert_eq!(load(dir.path(), "INC-1").unwrap(), incident);
        // Version 1: no field.
        value.as_object_mut().unwrap().remove("formatVersion");
        std::fs::write(&file, value.to_string()).unwrap();
        assert_eq!(load(dir.path(), "INC-1").unwrap(), incident);
        value["formatVersion"] = 3.into();
        std::fs::write(&file, value.to_string()).unwrap();
        let err = load(dir.path(), "INC-1").unwrap_err();
        assert_eq!(err.category(), "format-version");
        let text = err.to_string();
        assert!(
            text.contains("INC-1.json: incident file format version 3"),
            "{text}"
        );
    }

    #[test]
    fn issue16_handoffs_notes_actions_and_durations() {
        let t = |s: i64| jiff::Timestamp::from_second(1_700_000_000 + s).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut i = open(
            dir.path(),
            "INC-9",
            "alice",
            IncidentChanges {
                impact_started_at: Some(t(0)),
                detected_at: Some(t(300)),
                ..IncidentChanges::default()
            },
        )
        .unwrap();
        assert_eq!(i.current_owner(), "alice");
        i.hand_off("bob", t(400));
        assert!(
            i.acknowledge("carol", t(410)).is_err(),
            "not addressed to carol"
        );
        i.acknowledge("bob", t(420)).unwrap();
        assert_eq!(i.current_owner(), "bob");
        assert!(i.acknowledge("bob", t(430)).is_err(), "nothing pending");
        i.add_note("bob", "error rate back to normal", t(500));
        assert_eq!(i.add_action("bob", "alert on 5xx", None, t(510)), 1);
        assert_eq!(i.add_action("bob", "canary", Some("dan".into()), t(520)), 2);
        i.complete_action(1, t(600)).unwrap();
        assert!(i.complete_action(7, t(600)).is_err());
        save(dir.path(), &i).unwrap();
        let back = load(dir.path(), "INC-9").unwrap();
        assert_eq!(back, i);

        // Mitigation from the first successful run when not recorded.
        let d = back.durations(Some(t(900)));
        assert_eq!(d.time_to_detect, Some(std::time::Duration::from_secs(300)));
        assert_eq!(
            d.time_to_mitigate,
            Some(std::time::Duration::from_secs(900))
        );
        assert!(d.mitigated_by_run);
        // Without an impact start, time to detect is unknown and the rest counts from
        // detection (the opening when not recorded).
        let plain = Incident {
            impact_started_at: None,
            detected_at: None,
            mitigated_at: Some(t(60)),
            ..back.clone()
        };
        let opened = plain.opened_at;
        let d = plain.durations(None);
        assert_eq!(d.time_to_detect, None);
        assert_eq!(d.detected_at, opened);
        assert!(!d.mitigated_by_run);
    }

    #[test]
    fn open_update_close_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let opened = open(
            dir.path(),
            "INC-42",
            "alice",
            IncidentChanges {
                severity: Some("SEV2".into()),
                services: vec!["checkout".into()],
                ..IncidentChanges::default()
            },
        )
        .unwrap();
        assert!(opened.is_open());
        assert!(matches!(
            open(dir.path(), "INC-42", "bob", IncidentChanges::default()),
            Err(CleanupError::IncidentExists { .. })
        ));
        let updated = update(
            dir.path(),
            "INC-42",
            IncidentChanges {
                services: vec!["checkout".into(), "cart".into()],
                root_causes: vec!["bad config push".into()],
                ..IncidentChanges::default()
            },
        )
        .unwrap();
        assert_eq!(
            updated.services,
            vec!["checkout".to_string(), "cart".to_string()]
        );
        let closed = close(dir.path(), "INC-42", IncidentChanges::default()).unwrap();
        assert!(!closed.is_open());
        let again = close(dir.path(), "INC-42", IncidentChanges::default()).unwrap();
        assert_eq!(again.closed_at, closed.closed_at);
        assert_eq!(load(dir.path(), "INC-42").unwrap().root_causes.len(), 1);
        assert_eq!(list(dir.path()).unwrap().len(), 1);
    }

    #[test]
    fn ids_cannot_escape_the_directory() {
        assert!(validate_id("INC-1.2_b").is_ok());
        for bad in ["", "../x", ".hidden", "a/b", "a b"] {
            assert!(validate_id(bad).is_err(), "{bad}");
        }
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            load(dir.path(), "nope"),
            Err(CleanupError::IncidentNotFound { .. })
        ));
    }
}
