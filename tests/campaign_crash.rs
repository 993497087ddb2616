//! Crash campaign (issue 8): for each built-in playbook — rollback, zone fail-out, zone
//! fail-back, rolling restart, and cleanup of a fail-out — run the `ripcord` binary against a
//! simulated cluster, SIGKILL it at seeded random points (a time-based kill after a random
//! delay, sometimes a second one during the resume, plus the engine's crash hook points
//! `after-intent` and `after-apply`), `ripcord run --resume` until it finishes, and check:
//!
//! - the run finishes (`RunFinished: succeeded`) and its journal reads back without a torn tail;
//! - the relevant objects (Deployment spec and revision, node spec/labels/annotations, routes,
//!   pods left in the failed-out zone, restarted pods) equal the uninterrupted run's, with run
//!   ids and timestamps normalized;
//! - no mutation reached the API server more often than in the uninterrupted run (successful
//!   writes per `METHOD path` from the sim's request log, Leases and the Run mirror aside) and
//!   no pod was evicted twice; a restart evicts every original pod exactly once;
//! - the sim's invariant monitor saw no PDB violation; after a cleanup, `ripcord verify` is
//!   clean.
//!
//! The default `cargo test` runs a short campaign. The long one is one command:
//! `scripts/campaign crash --n 200` (or `RIPCORD_CAMPAIGN_N=200 cargo test --release --test
//! campaign_crash -- --nocapture`); `RIPCORD_CAMPAIGN_SEED` changes the seed and
//! `RIPCORD_CAMPAIGN_REPORT=FILE` appends one JSON line per trial.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code may fail loudly

mod campaign_support;

use campaign_support::{Baseline, Playbook, Rng, TrialReport, baseline, crash_trial};
use std::io::Write;
use std::time::Duration;

/// Random kill points per playbook in the default (short) campaign.
const SHORT_N: usize = 2;

/// Appends the trial to `RIPCORD_CAMPAIGN_REPORT` (JSON lines), when set.
fn record(report: &TrialReport, seed: u64) {
    let Some(path) = std::env::var_os("RIPCORD_CAMPAIGN_REPORT") else {
        return;
    };
    let line = serde_json::json!({
        "campaign": "crash",
        "seed": seed,
        "playbook": report.playbook,
        "kill": report.kill,
        "kills": report.kills,
        "duplicates": report.duplicates,
        "stateDiffers": report.state_differs.is_some(),
        "pdbViolations": report.violations,
    });
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        let _ = writeln!(f, "{line}");
    }
}

/// The kill plans of a campaign: the hook points, then `n` seeded random delays (one or two
/// kills per trial) within the uninterrupted run's duration.
fn kill_plans(
    base: &Baseline,
    hooks: &[&'static str],
    n: usize,
    rng: &mut Rng,
) -> Vec<(Option<&'static str>, Vec<Duration>)> {
    let mut plans: Vec<(Option<&'static str>, Vec<Duration>)> =
        hooks.iter().map(|h| (Some(*h), Vec::new())).collect();
    let span = u64::try_from(base.duration.as_millis())
        .unwrap_or(u64::MAX)
        .max(100);
    for _ in 0..n {
        let mut delays = vec![Duration::from_millis(30 + rng.below(span))];
        if rng.below(3) == 0 {
            // Kill the resuming process too.
            delays.push(Duration::from_millis(30 + rng.below(span / 2 + 1)));
        }
        plans.push((None, delays));
    }
    plans
}

async fn campaign(playbook: Playbook, hooks: &[&'static str], default_seed: u64) {
    let seed = campaign_support::seed(default_seed);
    let n = campaign_support::kill_points(SHORT_N);
    let base = baseline(playbook).await;
    let mut rng = Rng(seed);
    let mut reports = Vec::new();
    for (hook, delays) in kill_plans(&base, hooks, n, &mut rng) {
        let report = crash_trial(playbook, &base, hook, &delays).await;
        record(&report, seed);
        eprintln!(
            "crash {} {}: {} kill(s), {} duplicate(s), state {}, {} PDB violation(s)",
            report.playbook,
            report.kill,
            report.kills,
            report.duplicates.len(),
            if report.state_differs.is_some() {
                "DIFFERS"
            } else {
                "equal"
            },
            report.violations
        );
        reports.push(report);
    }
    let kills: usize = reports.iter().map(|r| r.kills).sum();
    eprintln!(
        "crash campaign {}: seed {seed}, {} trials, {kills} processes killed, baseline {:?}",
        playbook.name(),
        reports.len(),
        base.duration
    );
    for r in &reports {
        assert!(
            r.duplicates.is_empty(),
            "{} {}: {:?}",
            r.playbook,
            r.kill,
            r.duplicates
        );
        assert!(
            r.state_differs.is_none(),
            "{} {}: final state differs from the uninterrupted run:\n{}",
            r.playbook,
            r.kill,
            r.state_differs.as_deref().unwrap_or_default()
        );
        assert_eq!(r.violations, 0, "{} {}: PDB violations", r.playbook, r.kill);
    }
    assert!(
        hooks.is_empty() || kills >= hooks.len(),
        "the crash hooks fired ({kills} kills)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_campaign_rollback() {
    campaign(
        Playbook::Rollback,
        &["after-intent", "after-apply"],
        0xC0FF_EE01,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_campaign_zone_failout() {
    campaign(Playbook::Failout, &["after-apply"], 0xC0FF_EE02).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_campaign_zone_failback() {
    campaign(Playbook::Failback, &["after-intent"], 0xC0FF_EE03).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_campaign_rolling_restart() {
    campaign(Playbook::Restart, &["after-apply"], 0xC0FF_EE04).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_campaign_cleanup_of_a_failout() {
    campaign(Playbook::Cleanup, &["after-intent"], 0xC0FF_EE05).await;
}
