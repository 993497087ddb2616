//! Incident records: the book-keeping a postmortem needs, one JSON file per incident at
//! `<state-dir>/incidents/<ID>.json`.
//!
//! An incident holds its start and end time, severity, impacted services, impact (free text;
//! the figures come from the runs' impact metrics in the report) and root causes (free text,
//! editable after the fact). The runs attached to it are not stored: they are the runs whose
//! `RunStarted` carries the incident id, found when the incident is shown.

use super::CleanupError;
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
}

impl Incident {
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
    serde_json::from_slice(&bytes).map_err(|e| CleanupError::IncidentIo {
        operation: "parse",
        path,
        source: std::io::Error::other(e),
    })
}

/// Writes an incident (atomically: a temporary file renamed over the old one).
pub fn save(state_dir: &Path, incident: &Incident) -> Result<PathBuf, CleanupError> {
    validate_id(&incident.id)?;
    let path = path(state_dir, &incident.id);
    let write = || -> std::io::Result<()> {
        let text = serde_json::to_vec_pretty(incident).map_err(std::io::Error::other)?;
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
    let mut incident = Incident {
        id: id.to_string(),
        opened_at: jiff::Timestamp::now(),
        opened_by: who.to_string(),
        closed_at: None,
        severity: None,
        services: Vec::new(),
        impact: None,
        root_causes: Vec::new(),
    };
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
