//! Resume: what an earlier process of the same run already did, replayed from its journal.

use super::EngineError;
use super::gate::SnapshotPhase;
use crate::actions::{Applied, Mutation};
use crate::journal::{self, Entry, Outcome, Record};
use crate::plan::Plan;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The state of a run as its journal records it.
#[derive(Debug, Default)]
pub(crate) struct Prior {
    /// Steps that verified or were already satisfied: skipped on resume.
    pub done_steps: BTreeSet<String>,
    /// Mutations applied, per step, in order.
    pub applied: BTreeMap<String, Vec<Applied>>,
    /// Every applied mutation of the run with its step, in order (for `onFailure: undo`).
    pub applied_log: Vec<(String, Mutation)>,
    /// Mutations intended but never recorded as applied, per step.
    pub pending: BTreeMap<String, Vec<Mutation>>,
    /// The first-mutation gate was passed (a mutation was intended).
    pub gate_passed: bool,
    /// A snapshot of the targets was taken.
    pub snapshot_taken: bool,
    /// The outcome of the last finish, if the run finished.
    pub finished: Option<Outcome>,
}

impl Prior {
    /// Replays journal entries.
    pub fn from_entries(entries: &[Entry]) -> Prior {
        let mut prior = Prior::default();
        let mut intended: BTreeMap<String, Vec<Mutation>> = BTreeMap::new();
        for entry in entries {
            match &entry.record {
                Record::MutationIntended { step, mutation } => {
                    prior.gate_passed = true;
                    let list = intended.entry(step.clone()).or_default();
                    list.retain(|m| m.id != mutation.id);
                    list.push(mutation.clone());
                }
                Record::MutationApplied {
                    step,
                    mutation_id,
                    applied,
                    ..
                } => {
                    let list = intended.entry(step.clone()).or_default();
                    if let Some(pos) = list.iter().position(|m| m.id == *mutation_id) {
                        let m = list.remove(pos);
                        prior.applied_log.push((step.clone(), m));
                    }
                    prior
                        .applied
                        .entry(step.clone())
                        .or_default()
                        .push(applied.clone());
                }
                Record::StepVerified { step } | Record::StepAlreadySatisfied { step, .. } => {
                    prior.done_steps.insert(step.clone());
                }
                Record::SnapshotTaken { phase, .. }
                    if SnapshotPhase::from_journal(phase) == Some(SnapshotPhase::Targets) =>
                {
                    prior.snapshot_taken = true;
                }
                Record::RunResumed { .. } => prior.finished = None,
                Record::RunFinished { outcome, .. } => prior.finished = Some(*outcome),
                _ => {}
            }
        }
        prior.pending = intended
            .into_iter()
            .filter(|(_, v)| !v.is_empty())
            .collect();
        prior
    }
}

/// Loads the plan of a run from its journal's `RunStarted` record (for `--resume`).
pub fn load_plan(state_dir: &Path, run_id: &str) -> Result<Plan, EngineError> {
    let path = journal::journal_path(state_dir, run_id);
    if !path.is_file() {
        return Err(EngineError::NotResumable {
            run_id: run_id.to_string(),
            reason: format!("no journal at {}", path.display()),
        });
    }
    let (entries, _torn) = journal::read(&path)?;
    let plan = entries.iter().find_map(|e| match &e.record {
        Record::RunStarted { plan, .. } => Some(plan.clone()),
        _ => None,
    });
    let Some(plan) = plan else {
        return Err(EngineError::NotResumable {
            run_id: run_id.to_string(),
            reason: "its journal has no RunStarted record".into(),
        });
    };
    // Secret parameters were journaled as placeholders: the caller gives them back.
    let mut plan = plan;
    let missing = crate::plan::restore_secrets(&mut plan, &|name| {
        std::env::var(crate::plan::secret_env_var(name)).ok()
    });
    if !missing.is_empty() {
        tracing::debug!(run = %run_id, missing = ?missing, "secret parameters not given back");
    }
    Plan::from_embedded(plan, path.display()).map_err(|err| EngineError::NotResumable {
        run_id: run_id.to_string(),
        reason: match &err {
            crate::plan::EmbeddedPlanError::Invalid { source, .. } => format!("{err}: {source}"),
            crate::plan::EmbeddedPlanError::Version(_) => err.to_string(),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actions::{Inverse, ObjectRef};

    fn mutation(id: &str) -> Mutation {
        Mutation {
            id: id.into(),
            target: ObjectRef {
                api_version: "apps/v1".into(),
                kind: "Deployment".into(),
                namespace: Some("shop".into()),
                name: "checkout".into(),
            },
            description: "d".into(),
            diff: String::new(),
            pre_image: serde_json::Value::Null,
            resource_version: None,
            request: serde_json::Value::Null,
            inverse: Inverse::None { reason: "x".into() },
        }
    }

    fn entry(seq: u64, record: Record) -> Entry {
        Entry {
            seq,
            at: jiff::Timestamp::UNIX_EPOCH,
            record,
        }
    }

    #[test]
    fn replay_separates_applied_pending_and_done() {
        let m1 = mutation("a");
        let m2 = mutation("b");
        let entries = vec![
            entry(
                1,
                Record::MutationIntended {
                    step: "s1".into(),
                    mutation: m1.clone(),
                },
            ),
            entry(
                2,
                Record::MutationApplied {
                    step: "s1".into(),
                    mutation_id: "a".into(),
                    applied: Applied {
                        id: "a".into(),
                        target: m1.target.clone(),
                        resource_version_after: None,
                    },
                    resource_version_before: None,
                    inverse: m1.inverse.clone(),
                    recovered: false,
                },
            ),
            entry(3, Record::StepVerified { step: "s1".into() }),
            entry(
                4,
                Record::MutationIntended {
                    step: "s2".into(),
                    mutation: m2.clone(),
                },
            ),
            entry(
                5,
                Record::RunFinished {
                    outcome: Outcome::Interrupted,
                    duration_ms: 1,
                    reason: None,
                },
            ),
        ];
        let prior = Prior::from_entries(&entries);
        assert!(prior.done_steps.contains("s1"));
        assert_eq!(prior.applied["s1"].len(), 1);
        assert_eq!(prior.pending["s2"], vec![m2]);
        assert!(!prior.pending.contains_key("s1"));
        assert_eq!(prior.applied_log.len(), 1);
        assert_eq!(prior.finished, Some(Outcome::Interrupted));
        assert!(prior.gate_passed);
    }
}
