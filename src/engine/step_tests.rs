//! Unit tests of the step loop (issue 14): a scripted fake [`Action`] driven through
//! [`Engine::run`] under `tokio::time::pause()` — retries, verify failures, `onFailure`, stop
//! requests at each safe point (a waiting diff, a write under way, a waiting verify, a
//! backoff), and resume; and the same loop in dry-run mode (would-apply, already satisfied,
//! retried and failed diffs, stop requests, nothing written). The plans take no lock, capture no snapshot and notify nobody, so the
//! engine never needs the cluster; its client points at a closed port (the best-effort `Run`
//! mirror fails quietly). The first non-empty diff of a run is followed by a second one after
//! the first-mutation gate (the world may have moved while the lock was taken), so scripts
//! answer it twice.

use super::{Engine, RunOptions, StepResult, StopHandle, StopReason};
use crate::actions::{
    Action, ActionContext, ActionError, Applied, Diff, Inverse, Mutation, ObjectRef,
};
use crate::journal::{self, Outcome, Record};
use crate::plan::{Plan, PlannedStep};
use crate::playbook::OnFailure;
use futures::future::BoxFuture;
use serde_json::json;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What a scripted call does: wait (virtual time), then answer.
#[derive(Clone)]
enum Answer {
    /// A diff with these mutation ids (none: satisfied).
    Diff(Vec<&'static str>),
    /// Success (apply, verify).
    Ok,
    /// A retryable error.
    Retryable,
    /// A non-retryable error.
    Fatal,
}

type Script = VecDeque<(Duration, Answer)>;

/// The scripts of one step's action and the calls it saw (`diff`, `apply:<id>`, `verify`).
#[derive(Default)]
struct Scripted {
    diffs: Mutex<Script>,
    applies: Mutex<Script>,
    verifies: Mutex<Script>,
    calls: Mutex<Vec<String>>,
    /// The action does its work in `verify` (like `gate.approval`).
    works_in_verify: std::sync::atomic::AtomicBool,
}

impl Scripted {
    fn next(script: &Mutex<Script>, default: Answer) -> (Duration, Answer) {
        script
            .lock()
            .ok()
            .and_then(|mut s| s.pop_front())
            .unwrap_or((Duration::ZERO, default))
    }

    fn called(&self, what: String) {
        if let Ok(mut calls) = self.calls.lock() {
            calls.push(what);
        }
    }

    fn calls(&self) -> Vec<String> {
        self.calls.lock().map(|c| c.clone()).unwrap_or_default()
    }
}

fn error(answer: &Answer) -> ActionError {
    match answer {
        Answer::Retryable => ActionError::Http {
            url: "http://fake".into(),
            reason: "503".into(),
        },
        _ => ActionError::VerifyFailed {
            reason: "scripted failure".into(),
        },
    }
}

fn target() -> ObjectRef {
    ObjectRef {
        api_version: "v1".into(),
        kind: "ConfigMap".into(),
        namespace: Some("shop".into()),
        name: "fake".into(),
    }
}

fn mutation(id: &str) -> Mutation {
    Mutation {
        id: id.to_string(),
        target: target(),
        description: format!("fake {id}"),
        diff: format!("+ {id}\n"),
        pre_image: json!({}),
        resource_version: None,
        request: json!({}),
        inverse: Inverse::None {
            reason: "fake".into(),
        },
    }
}

/// A fake action reading the script of its step.
struct Fake(Arc<Scripted>);

impl Action for Fake {
    fn kind(&self) -> &'static str {
        "fake"
    }

    fn targets(&self, _default_namespace: &str) -> Vec<ObjectRef> {
        Vec::new()
    }

    fn verify_when_satisfied(&self) -> bool {
        self.0
            .works_in_verify
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    fn diff<'a>(&'a self, _ctx: &'a ActionContext) -> BoxFuture<'a, Result<Diff, ActionError>> {
        Box::pin(async move {
            self.0.called("diff".into());
            let (wait, answer) = Scripted::next(&self.0.diffs, Answer::Diff(Vec::new()));
            tokio::time::sleep(wait).await;
            match answer {
                Answer::Diff(ids) => Ok(Diff {
                    summary: format!("{} to do", ids.len()),
                    mutations: ids.into_iter().map(mutation).collect(),
                    progress: None,
                }),
                other => Err(error(&other)),
            }
        })
    }

    fn apply<'a>(
        &'a self,
        _ctx: &'a ActionContext,
        mutation: &'a Mutation,
    ) -> BoxFuture<'a, Result<Applied, ActionError>> {
        Box::pin(async move {
            self.0.called(format!("apply:{}", mutation.id));
            let (wait, answer) = Scripted::next(&self.0.applies, Answer::Ok);
            tokio::time::sleep(wait).await;
            match answer {
                Answer::Ok => Ok(Applied {
                    id: mutation.id.clone(),
                    target: mutation.target.clone(),
                    resource_version_after: None,
                }),
                other => Err(error(&other)),
            }
        })
    }

    fn verify<'a>(
        &'a self,
        _ctx: &'a ActionContext,
        _applied: &'a [Applied],
    ) -> BoxFuture<'a, Result<(), ActionError>> {
        Box::pin(async move {
            self.0.called("verify".into());
            let (wait, answer) = Scripted::next(&self.0.verifies, Answer::Ok);
            tokio::time::sleep(wait).await;
            match answer {
                Answer::Ok => Ok(()),
                other => Err(error(&other)),
            }
        })
    }
}

/// Scripts per step name.
#[derive(Default, Clone)]
struct Scripts(Arc<Mutex<HashMap<String, Arc<Scripted>>>>);

impl Scripts {
    fn step(&self, name: &str) -> Arc<Scripted> {
        let mut all = self.0.lock().unwrap_or_else(|p| p.into_inner());
        all.entry(name.to_string()).or_default().clone()
    }

    fn script(&self, name: &str, diffs: Script, applies: Script, verifies: Script) {
        let step = self.step(name);
        *step.diffs.lock().unwrap_or_else(|p| p.into_inner()) = diffs;
        *step.applies.lock().unwrap_or_else(|p| p.into_inner()) = applies;
        *step.verifies.lock().unwrap_or_else(|p| p.into_inner()) = verifies;
    }
}

fn now(answer: Answer) -> (Duration, Answer) {
    (Duration::ZERO, answer)
}

fn after(secs: u64, answer: Answer) -> (Duration, Answer) {
    (Duration::from_secs(secs), answer)
}

const HOUR: u64 = 3600;

fn step(name: &str, on_failure: OnFailure) -> PlannedStep {
    PlannedStep {
        name: name.to_string(),
        action: crate::playbook::catalog::Action::Wait(
            serde_json::from_value(json!({"duration": "1s"})).unwrap_or_else(|e| panic!("{e}")),
        ),
        timeout: crate::playbook::Duration(Duration::from_secs(2 * HOUR)),
        retries: serde_json::from_value(json!({"attempts": 3, "backoff": "1s"}))
            .unwrap_or_else(|e| panic!("{e}")),
        on_failure,
        context: None,
    }
}

fn plan(steps: Vec<PlannedStep>) -> Plan {
    Plan {
        run_id: journal::new_run_id(),
        playbook: "scripted".into(),
        params: BTreeMap::new(),
        lock: None,
        notify: Vec::new(),
        snapshot: crate::plan::SnapshotSpec {
            enabled: false,
            ..crate::plan::SnapshotSpec::default()
        },
        guards: crate::plan::Guards::default(),
        steps,
    }
}

struct Harness {
    engine: Engine,
    scripts: Scripts,
    dir: tempfile::TempDir,
}

impl Harness {
    fn new() -> Harness {
        let config = kube::Config::new(
            "http://127.0.0.1:9"
                .parse()
                .unwrap_or_else(|e| panic!("{e}")),
        );
        let client = kube::Client::try_from(config).unwrap_or_else(|e| panic!("{e}"));
        let scripts = Scripts::default();
        let factory_scripts = scripts.clone();
        let engine = Engine::new(client, reqwest::Client::new()).with_action_factory(Arc::new(
            move |step: &PlannedStep| -> Box<dyn Action> {
                Box::new(Fake(factory_scripts.step(&step.name)))
            },
        ));
        Harness {
            engine,
            scripts,
            dir: tempfile::tempdir().unwrap_or_else(|e| panic!("{e}")),
        }
    }

    fn options(&self, stop: Option<StopHandle>, resume: Option<String>) -> RunOptions {
        let mut opts = RunOptions::new("test", self.dir.path());
        opts.namespace = Some("shop".into());
        opts.stop = stop;
        opts.resume = resume;
        opts
    }

    async fn run(&self, plan: &Plan, stop: Option<StopHandle>) -> super::RunOutcome {
        self.engine
            .run(plan.clone(), self.options(stop, None), None)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    async fn dry_run(&self, plan: &Plan, stop: Option<StopHandle>) -> super::RunOutcome {
        let mut opts = self.options(stop, None);
        opts.dry_run = true;
        self.engine
            .run(plan.clone(), opts, None)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Everything in the state directory (a dry run leaves it empty).
    fn state_dir_entries(&self) -> Vec<std::path::PathBuf> {
        std::fs::read_dir(self.dir.path())
            .map(|entries| entries.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default()
    }

    fn records(&self, run_id: &str) -> Vec<Record> {
        journal::read(&journal::journal_path(self.dir.path(), run_id))
            .map(|(entries, _)| entries.into_iter().map(|e| e.record).collect())
            .unwrap_or_default()
    }
}

fn kinds(records: &[Record]) -> Vec<&'static str> {
    records.iter().map(Record::kind).collect()
}

/// Stops `stop` after `secs` of (virtual) time.
fn stop_after(stop: &StopHandle, secs: u64, reason: StopReason) {
    let stop = stop.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(secs)).await;
        stop.stop(reason);
    });
}

fn ctrl_c() -> StopReason {
    StopReason::Interrupted {
        by: "Ctrl-C".into(),
    }
}

#[tokio::test(start_paused = true)]
async fn issue14_retryable_errors_are_retried_in_diff_apply_and_verify() {
    let h = Harness::new();
    h.scripts.script(
        "s",
        [
            now(Answer::Retryable),
            now(Answer::Diff(vec!["m1"])),
            now(Answer::Diff(vec!["m1"])),
        ]
        .into(),
        [now(Answer::Retryable), now(Answer::Ok)].into(),
        [now(Answer::Retryable), now(Answer::Ok)].into(),
    );
    let plan = plan(vec![step("s", OnFailure::Abort)]);
    let outcome = h.run(&plan, None).await;
    assert_eq!(outcome.outcome, Outcome::Succeeded, "{outcome:?}");
    assert_eq!(
        outcome.steps[0].result,
        StepResult::Verified,
        "{:?} {outcome:?}",
        h.scripts.step("s").calls()
    );
    assert_eq!(outcome.mutations_applied, 1);
    assert_eq!(
        h.scripts.step("s").calls(),
        [
            "diff", "diff", "diff", "apply:m1", "apply:m1", "verify", "verify", "diff"
        ]
    );
    let records = h.records(&plan.run_id);
    let kinds = kinds(&records);
    let intended = kinds.iter().position(|k| *k == "MutationIntended");
    let applied = kinds.iter().position(|k| *k == "MutationApplied");
    assert!(intended < applied, "write-ahead: {kinds:?}");
}

#[tokio::test(start_paused = true)]
async fn issue14_a_failed_verify_with_abort_fails_the_run_and_skips_the_rest() {
    let h = Harness::new();
    h.scripts.script(
        "first",
        [now(Answer::Diff(vec!["m1"])), now(Answer::Diff(vec!["m1"]))].into(),
        VecDeque::new(),
        [now(Answer::Fatal)].into(),
    );
    let plan = plan(vec![
        step("first", OnFailure::Abort),
        step("second", OnFailure::Abort),
    ]);
    let outcome = h.run(&plan, None).await;
    assert_eq!(outcome.outcome, Outcome::Failed);
    assert!(
        matches!(&outcome.steps[0].result, StepResult::Failed { category, .. } if category == "verify-failed"),
        "{:?}",
        outcome.steps[0].result
    );
    assert_eq!(outcome.steps[1].result, StepResult::NotRun);
    assert!(h.scripts.step("second").calls().is_empty());
}

#[tokio::test(start_paused = true)]
async fn issue14_on_failure_continue_runs_the_next_step_and_fails_the_run() {
    let h = Harness::new();
    h.scripts.script(
        "first",
        [now(Answer::Fatal)].into(),
        VecDeque::new(),
        VecDeque::new(),
    );
    let plan = plan(vec![
        step("first", OnFailure::Continue),
        step("second", OnFailure::Abort),
    ]);
    let outcome = h.run(&plan, None).await;
    assert_eq!(outcome.outcome, Outcome::Failed);
    assert!(
        outcome
            .reason
            .as_deref()
            .is_some_and(|r| r.contains("onFailure: continue")),
        "{:?}",
        outcome.reason
    );
    assert_eq!(outcome.steps[1].result, StepResult::AlreadySatisfied);
}

#[tokio::test(start_paused = true)]
async fn issue14_on_failure_undo_ends_the_run_undone() {
    let h = Harness::new();
    h.scripts.script(
        "first",
        [now(Answer::Diff(vec!["m1"])), now(Answer::Diff(vec!["m1"]))].into(),
        VecDeque::new(),
        VecDeque::new(),
    );
    h.scripts.script(
        "second",
        [now(Answer::Fatal)].into(),
        VecDeque::new(),
        VecDeque::new(),
    );
    let plan = plan(vec![
        step("first", OnFailure::Abort),
        step("second", OnFailure::Undo),
    ]);
    let outcome = h.run(&plan, None).await;
    assert_eq!(outcome.outcome, Outcome::Undone);
    // The fake mutation has no merge-patch inverse: nothing reverted automatically.
    assert!(
        outcome
            .reason
            .as_deref()
            .is_some_and(|r| r.contains("undo: 0 reverted")),
        "{:?}",
        outcome.reason
    );
}

/// A stop request at a safe point ends the run within a second of virtual time, whatever the
/// step was waiting for.
async fn stopped_while(
    diffs: Script,
    applies: Script,
    verifies: Script,
    reason: StopReason,
) -> (Harness, Plan, super::RunOutcome) {
    let h = Harness::new();
    h.scripts.script("s", diffs, applies, verifies);
    let plan = plan(vec![
        step("s", OnFailure::Abort),
        step("t", OnFailure::Abort),
    ]);
    let stop = StopHandle::new();
    stop_after(&stop, 10, reason);
    let started = tokio::time::Instant::now();
    let outcome = h.run(&plan, Some(stop)).await;
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(11),
        "stopped {took:?} after the start (the stop came at 10 s)"
    );
    assert_eq!(outcome.steps[1].result, StepResult::NotRun);
    assert!(h.scripts.step("t").calls().is_empty());
    (h, plan, outcome)
}

#[tokio::test(start_paused = true)]
async fn issue14_a_stop_cancels_a_waiting_diff() {
    let (h, plan, outcome) = stopped_while(
        [after(HOUR, Answer::Diff(vec!["m1"]))].into(),
        VecDeque::new(),
        VecDeque::new(),
        ctrl_c(),
    )
    .await;
    assert_eq!(outcome.outcome, Outcome::Interrupted);
    assert_eq!(h.scripts.step("s").calls(), ["diff"]);
    assert!(!kinds(&h.records(&plan.run_id)).contains(&"MutationIntended"));
}

#[tokio::test(start_paused = true)]
async fn issue14_a_stop_drops_a_write_under_way_and_keeps_its_intent() {
    let (h, plan, outcome) = stopped_while(
        [now(Answer::Diff(vec!["m1"])), now(Answer::Diff(vec!["m1"]))].into(),
        [after(HOUR, Answer::Ok)].into(),
        VecDeque::new(),
        ctrl_c(),
    )
    .await;
    assert_eq!(outcome.outcome, Outcome::Interrupted);
    let kinds = kinds(&h.records(&plan.run_id));
    assert!(kinds.contains(&"MutationIntended"), "{kinds:?}");
    assert!(!kinds.contains(&"MutationApplied"), "{kinds:?}");

    // Resume: the re-diff settles the intent (the fake says nothing is left to do).
    let resumed = h
        .engine
        .run(
            plan.clone(),
            h.options(None, Some(plan.run_id.clone())),
            None,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(resumed.outcome, Outcome::Succeeded, "{resumed:?}");
    assert_eq!(resumed.mutations_applied, 0, "never written twice");
}

#[tokio::test(start_paused = true)]
async fn issue14_a_stop_cancels_a_waiting_verify_and_the_resume_verifies_first() {
    let (h, plan, outcome) = stopped_while(
        [
            now(Answer::Diff(vec!["m1"])),
            now(Answer::Diff(vec!["m1"])),
            now(Answer::Diff(vec!["m2"])),
            now(Answer::Diff(vec!["m2"])),
        ]
        .into(),
        VecDeque::new(),
        [after(HOUR, Answer::Ok)].into(),
        ctrl_c(),
    )
    .await;
    assert_eq!(outcome.outcome, Outcome::Interrupted);
    assert!(kinds(&h.records(&plan.run_id)).contains(&"MutationApplied"));
    let before = h.scripts.step("s").calls().len();

    // Resume: the interrupted verify is finished before the next round's diff (this process
    // passes its own first-mutation gate before m2, hence the second diff).
    let resumed = h
        .engine
        .run(
            plan.clone(),
            h.options(None, Some(plan.run_id.clone())),
            None,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(resumed.outcome, Outcome::Succeeded, "{resumed:?}");
    let calls = h.scripts.step("s").calls();
    assert_eq!(
        calls[before..],
        ["verify", "diff", "diff", "apply:m2", "verify", "diff"]
    );
}

#[tokio::test(start_paused = true)]
async fn issue14_a_stop_cuts_a_retry_backoff_short() {
    let h = Harness::new();
    let mut slow = step("s", OnFailure::Abort);
    slow.retries =
        serde_json::from_value(json!({"attempts": 5, "backoff": "1h", "maxBackoff": "1h"}))
            .unwrap_or_else(|e| panic!("{e}"));
    h.scripts.script(
        "s",
        [now(Answer::Retryable), now(Answer::Diff(vec!["m1"]))].into(),
        VecDeque::new(),
        VecDeque::new(),
    );
    let plan = plan(vec![slow]);
    let stop = StopHandle::new();
    stop_after(&stop, 10, ctrl_c());
    let started = tokio::time::Instant::now();
    let outcome = h.run(&plan, Some(stop)).await;
    assert!(started.elapsed() < Duration::from_secs(11));
    assert_eq!(outcome.outcome, Outcome::Interrupted);
    assert_eq!(h.scripts.step("s").calls(), ["diff"]);
}

#[tokio::test(start_paused = true)]
async fn issue14_a_tripped_stop_condition_stops_the_run_resumably() {
    let (_h, _plan, outcome) = stopped_while(
        [now(Answer::Diff(vec!["m1"])), now(Answer::Diff(vec!["m1"]))].into(),
        VecDeque::new(),
        [after(HOUR, Answer::Ok)].into(),
        StopReason::Guard {
            guard: "error-ratio".into(),
            reason: "0.07 > 0.05".into(),
        },
    )
    .await;
    assert_eq!(outcome.outcome, Outcome::Stopped);
    assert!(outcome.outcome.is_resumable());
    assert!(
        outcome
            .reason
            .as_deref()
            .is_some_and(|r| r.contains("error-ratio")),
        "{:?}",
        outcome.reason
    );
}

#[tokio::test(start_paused = true)]
async fn issue14_a_verify_that_is_only_reading_finishes_after_a_stop() {
    // The stop comes while the change is being read back (100 ms): the step ends verified and
    // the run stops before the next step.
    let h = Harness::new();
    h.scripts.script(
        "s",
        [
            after(10, Answer::Diff(vec!["m1"])),
            now(Answer::Diff(vec!["m1"])),
        ]
        .into(),
        VecDeque::new(),
        [(Duration::from_millis(100), Answer::Ok)].into(),
    );
    let plan = plan(vec![
        step("s", OnFailure::Abort),
        step("t", OnFailure::Abort),
    ]);
    let stop = StopHandle::new();
    let stopper = stop.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(10_050)).await;
        stopper.stop(ctrl_c());
    });
    let outcome = h.run(&plan, Some(stop)).await;
    assert_eq!(outcome.outcome, Outcome::Interrupted);
    assert_eq!(outcome.steps[0].result, StepResult::Verified, "{outcome:?}");
    assert_eq!(outcome.steps[1].result, StepResult::NotRun);
}

#[tokio::test(start_paused = true)]
async fn issue14_a_dry_run_reports_what_it_would_apply_and_writes_nothing() {
    let h = Harness::new();
    h.scripts.script(
        "s",
        [now(Answer::Diff(vec!["m1", "m2"]))].into(),
        VecDeque::new(),
        VecDeque::new(),
    );
    let plan = plan(vec![
        step("s", OnFailure::Abort),
        step("t", OnFailure::Abort),
    ]);
    let outcome = h.dry_run(&plan, None).await;
    assert_eq!(outcome.outcome, Outcome::Succeeded, "{outcome:?}");
    assert!(outcome.dry_run);
    assert_eq!(outcome.journal, None);
    assert_eq!(outcome.mutations_applied, 0);
    assert_eq!(outcome.steps[0].result, StepResult::WouldApply);
    assert_eq!(outcome.steps[0].summary, "2 to do");
    let ids: Vec<&str> = outcome.steps[0]
        .mutations
        .iter()
        .map(|m| m.id.as_str())
        .collect();
    assert_eq!(ids, ["m1", "m2"]);
    assert_eq!(outcome.steps[1].result, StepResult::AlreadySatisfied);
    assert_eq!(outcome.steps[1].summary, "0 to do");
    // One diff per step: no apply, no verify, no second diff after a gate.
    assert_eq!(h.scripts.step("s").calls(), ["diff"]);
    assert_eq!(h.scripts.step("t").calls(), ["diff"]);
    // No journal, no run directory: nothing at all in the state directory.
    assert!(!journal::journal_path(h.dir.path(), &plan.run_id).exists());
    assert_eq!(h.state_dir_entries(), Vec::<std::path::PathBuf>::new());
}

#[tokio::test(start_paused = true)]
async fn issue14_a_dry_run_retries_diffs_like_a_live_run_and_reports_every_step() {
    let h = Harness::new();
    // Retried once, then a diff.
    h.scripts.script(
        "s",
        [now(Answer::Retryable), now(Answer::Diff(vec!["m1"]))].into(),
        VecDeque::new(),
        VecDeque::new(),
    );
    // Retryable every time: the step's 3 attempts, then failed.
    h.scripts.script(
        "t",
        [
            now(Answer::Retryable),
            now(Answer::Retryable),
            now(Answer::Retryable),
            now(Answer::Diff(vec!["never"])),
        ]
        .into(),
        VecDeque::new(),
        VecDeque::new(),
    );
    // Not retryable: one call.
    h.scripts.script(
        "u",
        [now(Answer::Fatal), now(Answer::Diff(vec!["never"]))].into(),
        VecDeque::new(),
        VecDeque::new(),
    );
    let plan = plan(vec![
        step("s", OnFailure::Abort),
        step("t", OnFailure::Abort),
        step("u", OnFailure::Abort),
        step("v", OnFailure::Abort),
    ]);
    let outcome = h.dry_run(&plan, None).await;
    assert_eq!(h.scripts.step("s").calls(), ["diff", "diff"]);
    assert_eq!(outcome.steps[0].result, StepResult::WouldApply);
    assert_eq!(h.scripts.step("t").calls(), ["diff", "diff", "diff"]);
    assert!(
        matches!(&outcome.steps[1].result, StepResult::Failed { category, .. } if category == "http"),
        "{:?}",
        outcome.steps[1].result
    );
    assert_eq!(h.scripts.step("u").calls(), ["diff"]);
    assert!(
        matches!(&outcome.steps[2].result, StepResult::Failed { category, .. } if category == "verify-failed"),
        "{:?}",
        outcome.steps[2].result
    );
    // A dry run reports every step (whatever `onFailure` says); the first failure decides.
    assert_eq!(outcome.steps[3].result, StepResult::AlreadySatisfied);
    assert_eq!(outcome.outcome, Outcome::Failed);
    assert!(
        outcome
            .reason
            .as_deref()
            .is_some_and(|r| r.starts_with("step t failed")),
        "{:?}",
        outcome.reason
    );
    assert_eq!(h.state_dir_entries(), Vec::<std::path::PathBuf>::new());
}

#[tokio::test(start_paused = true)]
async fn issue14_a_stop_cuts_a_dry_runs_diff_backoff_short() {
    let h = Harness::new();
    let mut slow = step("s", OnFailure::Abort);
    slow.retries =
        serde_json::from_value(json!({"attempts": 5, "backoff": "1h", "maxBackoff": "1h"}))
            .unwrap_or_else(|e| panic!("{e}"));
    h.scripts.script(
        "s",
        [now(Answer::Retryable), now(Answer::Diff(vec!["m1"]))].into(),
        VecDeque::new(),
        VecDeque::new(),
    );
    let plan = plan(vec![slow, step("t", OnFailure::Abort)]);
    let stop = StopHandle::new();
    stop_after(&stop, 10, ctrl_c());
    let started = tokio::time::Instant::now();
    let outcome = h.dry_run(&plan, Some(stop)).await;
    let took = started.elapsed();
    assert!(took < Duration::from_secs(11), "stopped after {took:?}");
    assert_eq!(outcome.outcome, Outcome::Interrupted, "{outcome:?}");
    assert!(outcome.dry_run);
    // Nothing of a dry run to resume.
    assert!(
        outcome
            .reason
            .as_deref()
            .is_some_and(|r| r.contains("Ctrl-C") && !r.contains("--resume")),
        "{:?}",
        outcome.reason
    );
    assert_eq!(h.scripts.step("s").calls(), ["diff"]);
    assert_eq!(outcome.steps[1].result, StepResult::NotRun);
    assert!(h.scripts.step("t").calls().is_empty());
    assert_eq!(h.state_dir_entries(), Vec::<std::path::PathBuf>::new());
}

#[tokio::test(start_paused = true)]
async fn issue14_a_stop_cancels_a_waiting_dry_run_diff() {
    let h = Harness::new();
    h.scripts.script(
        "s",
        [after(HOUR, Answer::Diff(vec!["m1"]))].into(),
        VecDeque::new(),
        VecDeque::new(),
    );
    let plan = plan(vec![step("s", OnFailure::Abort)]);
    let stop = StopHandle::new();
    stop_after(&stop, 10, ctrl_c());
    let started = tokio::time::Instant::now();
    let outcome = h.dry_run(&plan, Some(stop)).await;
    assert!(started.elapsed() < Duration::from_secs(11));
    assert_eq!(outcome.outcome, Outcome::Interrupted, "{outcome:?}");
    assert_eq!(outcome.steps[0].result, StepResult::NotRun);
}

#[tokio::test(start_paused = true)]
async fn issue14_a_dry_run_of_a_step_that_works_in_verify_would_apply_and_never_verifies() {
    let h = Harness::new();
    // Like gate.approval: no writes, the work (waiting for an ACK) is its verify.
    h.scripts
        .step("gate")
        .works_in_verify
        .store(true, std::sync::atomic::Ordering::Relaxed);
    h.scripts.script(
        "gate",
        VecDeque::new(),
        VecDeque::new(),
        [after(HOUR, Answer::Ok)].into(),
    );
    let plan = plan(vec![step("gate", OnFailure::Abort)]);
    let outcome = h.dry_run(&plan, None).await;
    assert_eq!(outcome.outcome, Outcome::Succeeded, "{outcome:?}");
    assert_eq!(outcome.steps[0].result, StepResult::WouldApply);
    assert_eq!(h.scripts.step("gate").calls(), ["diff"]);

    // The live run of the same step verifies (waits) even though its diff is empty.
    let live = h.run(&plan, None).await;
    assert_eq!(live.steps[0].result, StepResult::Verified, "{live:?}");
    assert_eq!(h.scripts.step("gate").calls(), ["diff", "diff", "verify"]);
}
