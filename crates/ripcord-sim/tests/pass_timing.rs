//! Timing of the controllers' reconcile passes on the failout-100 scenario (100 nodes, 1,000
//! PDB-protected pods and a DaemonSet) after 100 evictions at once: how long the passes that
//! create, schedule and start the replacements take. Prints, asserts nothing about time.
//! Run with `cargo test --release -p ripcord-sim --test pass_timing -- --ignored --nocapture`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code may fail loudly

use std::path::Path;
use std::time::Instant;

use ripcord_sim::controllers::Controllers;
use ripcord_sim::controllers::util;
use ripcord_sim::eviction;
use ripcord_sim::invariants::InvariantMonitor;
use ripcord_sim::scenario::Scenario;
use ripcord_sim::store::{Store, kinds};

fn failout_store() -> (Store, Scenario) {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/data/scenarios/failout-100.yaml");
    let scenario = Scenario::load_file(&path).expect("scenario");
    let clock = ripcord_sim::clock::SimClock::new(scenario.settings().time_factor);
    let store = Store::new(clock);
    scenario.load_into(&store).expect("load");
    (store, scenario)
}

#[tokio::test]
#[ignore = "timing report; run with --ignored --nocapture"]
async fn passes_after_a_hundred_evictions() {
    let (store, scenario) = failout_store();
    let monitor = InvariantMonitor::new();
    let mut c = Controllers::new(store.clone(), scenario.settings().clone(), monitor.clone());
    let t = Instant::now();
    let n = c.settle(100);
    println!("initial settle: {n} passes in {:?}", t.elapsed());
    for _ in 0..3 {
        let t = Instant::now();
        c.pass();
        println!("idle pass: {:?}", t.elapsed());
    }
    // Evict up to 100 pods of zone-a's nodes (10 per Deployment: its PDB's budget).
    let zone_a: Vec<String> = store
        .list(&kinds::nodes(), None)
        .0
        .iter()
        .filter(|n| {
            util::str_at(n, &["metadata", "labels", "topology.kubernetes.io/zone"])
                == Some("zone-a")
        })
        .map(|n| util::name(n).to_string())
        .collect();
    let (pods, _) = store.list(&kinds::pods(), Some("shop"));
    let mut evicted = 0;
    for p in &pods {
        let node = util::str_at(p, &["spec", "nodeName"]).unwrap_or("");
        if !zone_a.iter().any(|z| z == node) {
            continue;
        }
        if eviction::evict(&store, &monitor, "shop", util::name(p)).is_ok() {
            evicted += 1;
        }
        if evicted == 100 {
            break;
        }
    }
    println!("evicted {evicted}");
    // `settle(1)` runs a pass and then applies the events it (and the evictions) caused.
    c.settle(1);
    let mut total = std::time::Duration::ZERO;
    for i in 0..12 {
        let t = Instant::now();
        c.settle(1);
        let took = t.elapsed();
        total += took;
        println!("pass {i}: {took:?}");
    }
    println!("total {total:?}");
    let unscheduled = store
        .list(&kinds::pods(), Some("shop"))
        .0
        .iter()
        .filter(|p| util::str_at(p, &["spec", "nodeName"]).is_none())
        .count();
    println!("unscheduled after: {unscheduled}");
}
