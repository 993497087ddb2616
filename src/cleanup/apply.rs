//! Applying a cleanup plan through the engine.
//!
//! The [`CleanupPlan`]'s object patches become a synthetic engine [`Plan`] (playbook
//! [`CLEANUP_PLAYBOOK`]) of `object.patch` steps, newest first, each with `onFailure: continue`
//! so one failing object does not stop the others. The engine journals it like any run
//! (`<state-dir>/runs/<cleanup-run-id>/journal.jsonl`, write-ahead records, the `Run` mirror),
//! and `object.patch` is idempotent: a patch that changes nothing is already satisfied. Zones
//! still failed out become `zone.failback` steps (after the patches). The run takes the lock
//! `ripcord-cleanup/<selection>` so that two cleanups of the same runs do not race.
//! A crashed cleanup is finished by running cleanup again — the plan is recomputed from the
//! objects as they are, so what was already reverted is not touched twice.
//!
//! The plan itself (every item with its decision, including drift) is written next to the
//! journal as `cleanup-plan.json` for the report.

use super::revert::CleanupPlan;
use super::{CLEANUP_PLAYBOOK, CleanupError};
use crate::engine::{Engine, EngineEvent, RunOptions, RunOutcome};
use crate::journal;
use crate::plan::{Action, Duration, Guards, OnFailure, Plan, PlannedStep, Retries, SnapshotSpec};
use crate::playbook::catalog;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use tokio::sync::mpsc;

/// The file holding a cleanup run's plan, next to its journal.
pub const PLAN_FILE: &str = "cleanup-plan.json";

/// Upper bound of each revert step.
const STEP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// Upper bound of a zone fail-back step (its ramp pauses included).
const FAILBACK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30 * 60);

/// Builds the engine plan for `plan` under the run id `run_id`.
pub fn engine_plan(plan: &CleanupPlan, run_id: &str, selection: &str) -> Plan {
    let mut params = BTreeMap::new();
    params.insert("cleanupOf".to_string(), json!(plan.runs));
    params.insert("selection".to_string(), json!(selection));
    let steps = plan
        .reverts
        .iter()
        .enumerate()
        .map(|(i, revert)| PlannedStep {
            name: step_name(i, &revert.target.kind, &revert.target.name),
            action: Action::ObjectPatch(catalog::ObjectPatch {
                api_version: revert.target.api_version.clone(),
                kind: revert.target.kind.clone(),
                namespace: revert.target.namespace.clone(),
                name: revert.target.name.clone(),
                patch: revert.patch.clone(),
            }),
            timeout: Duration(STEP_TIMEOUT),
            retries: Retries::default(),
            on_failure: OnFailure::Continue,
            context: None,
        })
        .chain(
            plan.failbacks
                .iter()
                .enumerate()
                .map(|(i, failback)| PlannedStep {
                    name: step_name(plan.reverts.len() + i, "failback", &failback.args.zone),
                    action: Action::ZoneFailback(failback.args.clone()),
                    timeout: Duration(FAILBACK_TIMEOUT),
                    retries: Retries::default(),
                    on_failure: OnFailure::Continue,
                    context: None,
                }),
        )
        .collect();
    Plan {
        run_id: run_id.to_string(),
        playbook: CLEANUP_PLAYBOOK.to_string(),
        params,
        // Two people cleaning up the same runs at once would race; the second is refused
        // with the holder's run id.
        lock: Some(format!("{CLEANUP_PLAYBOOK}/{selection}")),
        notify: Vec::new(),
        snapshot: SnapshotSpec {
            // The objects reverted are captured before the first revert; logs are the
            // original run's business.
            log_tail_lines: 0,
            previous_logs: false,
            ..SnapshotSpec::default()
        },
        guards: Guards::default(),
        steps,
    }
}

/// `revert-1-node-zone-a-1`: unique, readable, label-safe.
fn step_name(index: usize, kind: &str, name: &str) -> String {
    let raw = format!("revert-{}-{}-{}", index + 1, kind.to_lowercase(), name);
    let cleaned: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .take(63)
        .collect();
    cleaned.trim_end_matches('-').to_string()
}

/// Writes `cleanup-plan.json` into the new run's directory and returns the engine plan for
/// it (for callers that run the engine themselves, e.g. with progress display).
pub fn prepare(
    plan: &CleanupPlan,
    state_dir: &Path,
    selection: &str,
) -> Result<Plan, CleanupError> {
    let run_id = journal::new_run_id();
    write_plan(&journal::run_dir(state_dir, &run_id), plan)?;
    Ok(engine_plan(plan, &run_id, selection))
}

/// Runs `plan` through `engine` as a new run (`opts` carries who, the state directory, the
/// incident). Returns `None` when there is nothing to write (no run is created).
pub async fn apply(
    engine: &Engine,
    plan: &CleanupPlan,
    selection: &str,
    opts: RunOptions,
    events: Option<mpsc::Sender<EngineEvent>>,
) -> Result<Option<RunOutcome>, CleanupError> {
    if plan.is_noop() {
        return Ok(None);
    }
    let engine_plan = prepare(plan, &opts.state_dir, selection)?;
    tracing::info!(run = %engine_plan.run_id, objects = plan.reverts.len(), "applying the cleanup plan");
    let outcome = engine
        .run(engine_plan, opts, events)
        .await
        .map_err(|source| CleanupError::Engine {
            source: Box::new(source),
        })?;
    Ok(Some(outcome))
}

/// Writes `cleanup-plan.json` into a run directory (creating it).
pub fn write_plan(dir: &Path, plan: &CleanupPlan) -> Result<PathBuf, CleanupError> {
    let path = dir.join(PLAN_FILE);
    let write = || -> std::io::Result<()> {
        let text = serde_json::to_vec_pretty(plan).map_err(std::io::Error::other)?;
        crate::journal::files::write_private(&path, &text)
    };
    write().map_err(|source| CleanupError::Write {
        path: path.clone(),
        source,
    })?;
    Ok(path)
}

/// Reads the `cleanup-plan.json` of a run directory, if there is one.
pub fn read_plan(dir: &Path) -> Option<Value> {
    let text = std::fs::read(dir.join(PLAN_FILE)).ok()?;
    serde_json::from_slice(&text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actions::ObjectRef;
    use crate::cleanup::revert::ObjectRevert;

    #[test]
    fn plan_has_one_object_patch_step_per_object_in_order() {
        let plan = CleanupPlan {
            runs: vec!["r-20261125-110000-aaaa".into()],
            items: Vec::new(),
            failbacks: vec![],
            reverts: vec![
                ObjectRevert {
                    target: ObjectRef {
                        api_version: "v1".into(),
                        kind: "Node".into(),
                        namespace: None,
                        name: "zone-a.node/1".into(),
                    },
                    patch: json!({"spec": {"unschedulable": null}}),
                    reverts: vec![],
                },
                ObjectRevert {
                    target: ObjectRef {
                        api_version: "apps/v1".into(),
                        kind: "Deployment".into(),
                        namespace: Some("shop".into()),
                        name: "web".into(),
                    },
                    patch: json!({"spec": {"replicas": 3}}),
                    reverts: vec![],
                },
            ],
        };
        let p = engine_plan(&plan, "r-20261125-120000-cccc", "incident INC-1");
        assert_eq!(p.playbook, CLEANUP_PLAYBOOK);
        assert_eq!(p.steps.len(), 2);
        assert_eq!(p.steps[0].name, "revert-1-node-zone-a-node-1");
        assert_eq!(p.steps[1].on_failure, OnFailure::Continue);
        assert!(
            matches!(&p.steps[1].action, Action::ObjectPatch(a) if a.patch == json!({"spec": {"replicas": 3}}))
        );
        assert_eq!(p.params["cleanupOf"], json!(["r-20261125-110000-aaaa"]));
        assert_eq!(p.lock.as_deref(), Some("ripcord-cleanup/incident INC-1"));
    }
}
