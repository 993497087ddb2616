//! API fault campaign (issue 8): with the simulated API server injecting 429s (with
//! `Retry-After`), 500s, 409 conflicts on writes, latency spikes, dropped watches and 410
//! Expired watch restarts, every built-in playbook (rollback, zone fail-out, fail-back,
//! rolling restart) either completes or fails cleanly: exit 0 or 1 (never a panic, never a
//! hang), a journal that reads back without a torn tail and ends with an outcome, and when it
//! failed, an outcome that `--resume` accepts — and the resume (faults cleared) finishes it.
//! Afterwards `ripcord cleanup` (itself under faults, resumed if it fails) and
//! `ripcord verify` report the cluster clean.
//!
//! Short by default; `RIPCORD_CAMPAIGN_N=K` runs K fault profiles per playbook (seeded,
//! `RIPCORD_CAMPAIGN_SEED`), e.g. `scripts/campaign faults --n 20`.

mod campaign_support;

use campaign_support::{Playbook, Rng, Trial, final_outcome, settle};
use ripcord::journal::{self, Outcome};
use ripcord::sim::faults::FaultConfig;
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Fault profiles per playbook in the default (short) campaign.
const SHORT_N: usize = 1;

/// A seeded fault profile: error rates between 2% and 12%, watches dropped often.
fn profile(rng: &mut Rng) -> FaultConfig {
    let rate = |rng: &mut Rng| 0.02 + rng.below(100) as f64 / 1000.0;
    FaultConfig {
        latency_ms: rng.below(4),
        rate_429: rate(rng),
        retry_after_seconds: 1,
        rate_500: rate(rng),
        rate_409: rate(rng),
        drop_watch_after_events: 3 + rng.below(10) as usize,
        watch_drop_rate: 0.05,
    }
}

/// Toggles latency spikes (0 ↔ 80–200 ms) every 150 ms until `stop`.
fn spawn_latency_spikes(
    trial: &Trial,
    base_ms: u64,
    seed: u64,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<()> {
    let sim = trial.sim.clone();
    tokio::spawn(async move {
        let mut rng = Rng(seed | 1);
        let mut spiking = false;
        while !stop.load(Ordering::Relaxed) {
            spiking = !spiking;
            let ms = if spiking {
                80 + rng.below(120)
            } else {
                base_ms
            };
            sim.faults().set_latency(Duration::from_millis(ms));
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
    })
}

fn record(line: serde_json::Value) {
    let Some(path) = std::env::var_os("RIPCORD_CAMPAIGN_REPORT") else {
        return;
    };
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        let _ = writeln!(f, "{line}");
    }
}

/// Runs one playbook (or its resume) under the trial's faults; returns the run and whether
/// it needed a resume without faults.
async fn run_under_faults(trial: &mut Trial, config: &FaultConfig, seed: u64) -> (String, bool) {
    trial.sim.faults().configure(config.clone());
    trial.sim.faults().expire_next_watches(2);
    let stop = Arc::new(AtomicBool::new(false));
    let spikes = spawn_latency_spikes(trial, config.latency_ms, seed, stop.clone());
    let (run, kills) = run_once(trial).await;
    stop.store(true, Ordering::Relaxed);
    let _ = spikes.await;
    trial.sim.faults().clear();
    assert_eq!(kills, 0);
    let finished = trial.finished(&run);
    match finished {
        Some(Outcome::Succeeded) => (run, false),
        Some(outcome) => {
            assert!(
                outcome.is_resumable(),
                "a failed run must be resumable, got {outcome}\n{}",
                trial.transcript
            );
            let args: Vec<String> = ["run", "--resume", &run]
                .iter()
                .map(|s| s.to_string())
                .collect();
            let resumed = trial.ripcord(&args, &[], None).await;
            assert_eq!(
                resumed.code,
                Some(0),
                "the resume without faults finishes\n{}",
                trial.transcript
            );
            (run, true)
        }
        None => panic!("the run has no outcome\n{}", trial.transcript),
    }
}

/// One process of the trial's playbook: exit 0 or 1 (a clean failure), a readable journal.
async fn run_once(trial: &mut Trial) -> (String, usize) {
    let args = trial.playbook_command();
    let exit = trial.ripcord(&args, &[], None).await;
    assert!(
        matches!(exit.code, Some(0) | Some(1)),
        "exit 0 or a clean failure, got {:?}\n{}",
        exit.code,
        trial.transcript
    );
    let run = trial
        .current_run()
        .unwrap_or_else(|| panic!("the run began a journal\n{}", trial.transcript));
    let (entries, torn) = journal::read(&journal::journal_path(&trial.state_dir(), &run))
        .unwrap_or_else(|e| panic!("journal unreadable: {e}\n{}", trial.transcript));
    assert!(torn.is_none(), "torn tail after a clean exit");
    assert!(
        final_outcome(&entries).is_some(),
        "the run journaled its outcome"
    );
    if exit.code == Some(1) {
        assert!(
            !exit.output.contains("panicked"),
            "no panic: {}",
            exit.output
        );
    }
    (run, 0)
}

async fn campaign(playbook: Playbook, default_seed: u64) {
    let seed = campaign_support::seed(default_seed);
    let n = campaign_support::kill_points(SHORT_N).max(1);
    let mut rng = Rng(seed);
    for round in 0..n {
        let config = profile(&mut rng);
        let mut trial = Trial::start(playbook).await;
        let (run, resumed) = run_under_faults(&mut trial, &config, seed ^ round as u64).await;
        settle(&trial).await;
        let faulted = trial
            .sim
            .request_log()
            .iter()
            .filter(|r| r.seq > trial.log_start && matches!(r.status, 409 | 429 | 500))
            .count();

        // Cleanup under faults, resumed without them if it fails; then verify.
        trial.sim.faults().configure(config.clone());
        let cleanup: Vec<String> = ["cleanup", "--run", &run, "--yes", "--ramp-pause", "100ms"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let cleaned = trial.ripcord(&cleanup, &[], None).await;
        trial.sim.faults().clear();
        assert!(
            matches!(cleaned.code, Some(0) | Some(1)),
            "cleanup exits 0 or fails cleanly\n{}",
            trial.transcript
        );
        let mut cleanup_resumed = false;
        if cleaned.code == Some(1) {
            cleanup_resumed = true;
            let cleanup_run = journal::list_runs(&trial.state_dir())
                .ok()
                .and_then(|runs| {
                    runs.into_iter()
                        .map(|r| r.run_id)
                        .filter(|r| *r != run)
                        .max()
                });
            let again: Vec<String> = match &cleanup_run {
                Some(c) => ["run", "--resume", c]
                    .iter()
                    .map(|s| s.to_string())
                    .collect(),
                None => cleanup.clone(),
            };
            let retried = trial.ripcord(&again, &[], None).await;
            assert_eq!(
                retried.code,
                Some(0),
                "cleanup finishes\n{}",
                trial.transcript
            );
        }
        let verified = trial.verify_clean(&run).await;
        assert_eq!(
            verified.code,
            Some(0),
            "verify is clean after cleanup\n{}",
            trial.transcript
        );
        let violations = trial.sim.invariants().violations().len();
        assert_eq!(violations, 0, "PDB violations\n{}", trial.transcript);
        eprintln!(
            "faults {} round {round}: {config:?} -> {faulted} injected errors answered, \
             resumed {resumed}, cleanup resumed {cleanup_resumed}, verify clean",
            playbook.name()
        );
        record(serde_json::json!({
            "campaign": "faults",
            "seed": seed,
            "playbook": playbook.name(),
            "faults": config,
            "injectedErrors": faulted,
            "resumed": resumed,
            "cleanupResumed": cleanup_resumed,
            "verifyClean": true,
        }));
        assert!(faulted > 0, "faults were injected\n{}", trial.transcript);
        trial.finish().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_campaign_rollback() {
    campaign(Playbook::Rollback, 0xFA01_7001).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_campaign_zone_failout() {
    campaign(Playbook::Failout, 0xFA01_7002).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_campaign_zone_failback() {
    campaign(Playbook::Failback, 0xFA01_7003).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_campaign_rolling_restart() {
    campaign(Playbook::Restart, 0xFA01_7004).await;
}
