//! Issue 5 (CLI side) against the simulated cluster through the binary: `ripcord failout`,
//! `ripcord failback`, `ripcord restart`, `ripcord approve` and `gate.approval` (ACK via the
//! approval file, via the `Run` resource, a wrong person rejected, a timeout failing the step),
//! and the refusal exit codes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code may fail loudly

use crate::mitigations_support;

use mitigations_support::{all_ready, start_file, wait_until, zone_nodes};
use ripcord::journal;
use ripcord::sim::SimCluster;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

/// The sim, a temp dir with its kubeconfig and the state dir.
struct Env {
    sim: SimCluster,
    dir: tempfile::TempDir,
}

impl Env {
    async fn start(scenario: &str) -> Env {
        let sim = start_file(scenario).await;
        ripcord::k8s::runs::install_crd(&sim.client(), Duration::from_secs(5))
            .await
            .expect("CRD installed in the sim");
        let dir = tempfile::tempdir().expect("tempdir");
        sim.write_kubeconfig(&dir.path().join("kubeconfig"))
            .expect("kubeconfig written");
        Env { sim, dir }
    }

    fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    fn command(&self, args: &[&str], state_dir: &Path) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_ripcord"));
        cmd.args(args)
            .env("KUBECONFIG", self.dir.path().join("kubeconfig"))
            .env("RIPCORD_STATE_DIR", state_dir)
            .env("RIPCORD_CONFIG", "/dev/null")
            .env("RIPCORD_WHO", "test")
            .env_remove("RIPCORD_NAMESPACE")
            .env_remove("RIPCORD_CONTEXT")
            .env_remove(ripcord::engine::CRASH_HOOK_ENV)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        cmd
    }

    async fn ripcord(&self, args: &[&str]) -> Output {
        self.ripcord_in(args, &self.state_dir()).await
    }

    async fn ripcord_in(&self, args: &[&str], state_dir: &Path) -> Output {
        let child = self.command(args, state_dir).spawn().expect("ripcord runs");
        finish(args, child).await
    }
}

async fn finish(args: &[&str], child: tokio::process::Child) -> Output {
    let out = tokio::time::timeout(Duration::from_secs(180), child.wait_with_output())
        .await
        .expect("ripcord finished within 180 s")
        .expect("ripcord output");
    eprintln!(
        "ripcord {args:?} -> {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The stderr of a running `ripcord` (its progress lines), read as it comes.
struct Stderr {
    lines: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    reader: tokio::task::JoinHandle<()>,
}

impl Stderr {
    /// Takes `child`'s piped stderr; [`finish`] then sees none of it.
    fn follow(child: &mut tokio::process::Child) -> Stderr {
        use tokio::io::AsyncBufReadExt;
        let stderr = child.stderr.take().expect("stderr piped");
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = lines.clone();
        let reader = tokio::spawn(async move {
            let mut reader = tokio::io::BufReader::new(stderr).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                sink.lock().expect("lines").push(line);
            }
        });
        Stderr { lines, reader }
    }

    /// Everything, once the process closed its stderr (it exited).
    async fn all(self) -> String {
        let Stderr { lines, reader } = self;
        tokio::time::timeout(Duration::from_secs(60), reader)
            .await
            .expect("stderr closed")
            .expect("reader");
        lines.lock().expect("lines").join("\n")
    }

    fn text(&self) -> String {
        self.lines.lock().expect("lines").join("\n")
    }

    /// Waits (up to 60 s) for a line containing `needle`; returns it.
    async fn wait_for_line(&self, needle: &str) -> String {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let found = self
                .lines
                .lock()
                .expect("lines")
                .iter()
                .find(|l| l.contains(needle))
                .cloned();
            if let Some(line) = found {
                return line;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no line with {needle:?} on stderr:\n{}",
                self.text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The weight of one backendRef of the HTTPRoute shop/web.
fn route_weight(sim: &SimCluster, backend: &str) -> Option<u64> {
    let route = sim.store().get(
        &ripcord::sim::store::kinds::http_routes(),
        Some("shop"),
        "web",
    )?;
    route["spec"]["rules"][0]["backendRefs"]
        .as_array()?
        .iter()
        .find(|b| b["name"] == backend)
        .and_then(|b| b["weight"].as_u64())
}

fn cordoned(node: &Value) -> bool {
    node["spec"]["unschedulable"] == json!(true)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue5_failout_then_failback_by_one_command_leaves_the_cluster_clean() {
    let env = Env::start("three-zones.yaml").await;
    wait_until("web and api ready", || {
        all_ready(&env.sim, "shop", "web", 6) && all_ready(&env.sim, "shop", "api", 3)
    })
    .await;

    assert_eq!(route_weight(&env.sim, "web-zone-a"), Some(100));
    let out = env
        .ripcord(&[
            "failout",
            "zone/zone-a",
            "-n",
            "shop",
            "--route",
            "shop/web",
            "--backend",
            "web-zone-a",
            "--yes",
        ])
        .await;
    assert_eq!(out.status.code(), Some(0), "fail-out succeeded");
    assert_eq!(
        route_weight(&env.sim, "web-zone-a"),
        Some(0),
        "zone-a's traffic shifted away"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout.lines().last().unwrap_or_default();
    assert!(
        last.contains("fail-out of zone zone-a succeeded") && last.contains("journal"),
        "one final line: {last}"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Drain progress with counts on stderr, in pods (not eviction requests): `done` never goes
    // back and ends at the total.
    let counts: Vec<(u64, u64)> = stderr
        .lines()
        .filter_map(|l| l.split_once("pods evicted ")?.1.split_once('/'))
        .filter_map(|(d, t)| Some((d.trim().parse().ok()?, t.trim().parse().ok()?)))
        .collect();
    assert!(counts.len() >= 2, "drain progress on stderr: {stderr}");
    assert!(
        counts.windows(2).all(|w| w[0].0 <= w[1].0),
        "monotone: {counts:?}"
    );
    let (done, total) = counts[counts.len() - 1];
    assert!(total > 0 && done == total, "ends complete: {counts:?}");
    let nodes = zone_nodes(&env.sim, "zone-a");
    assert!(!nodes.is_empty());
    assert!(nodes.iter().all(cordoned), "zone-a cordoned: {nodes:?}");
    assert!(
        zone_nodes(&env.sim, "zone-b").iter().all(|n| !cordoned(n)),
        "zone-b untouched"
    );

    let out = env
        .ripcord(&[
            "failback",
            "zone/zone-a",
            "-n",
            "shop",
            "--ramp-pause",
            "1s",
            "--ramp",
            "50,100",
            "--route",
            "shop/web",
            "--backend",
            "web-zone-a",
            "--yes",
        ])
        .await;
    assert_eq!(out.status.code(), Some(0), "fail-back succeeded");
    assert_eq!(
        route_weight(&env.sim, "web-zone-a"),
        Some(100),
        "zone-a's traffic ramped back"
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("fail-back of zone zone-a succeeded"),
        "final line"
    );
    assert!(
        zone_nodes(&env.sim, "zone-a").iter().all(|n| !cordoned(n)),
        "zone-a uncordoned"
    );
    wait_until("web and api ready again", || {
        all_ready(&env.sim, "shop", "web", 6) && all_ready(&env.sim, "shop", "api", 3)
    })
    .await;
    let out = env
        .ripcord(&["verify", "--cluster", "-n", "shop", "--wait", "30s"])
        .await;
    assert_eq!(out.status.code(), Some(0), "verify --cluster clean");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue5_failout_refusals_exit_with_documented_codes_before_any_write() {
    let env = Env::start("three-zones.yaml").await;
    wait_until("web ready", || all_ready(&env.sim, "shop", "web", 6)).await;

    // No --yes and no terminal: refused (4) after showing the plan.
    let out = env.ripcord(&["failout", "zone/zone-a", "-n", "shop"]).await;
    assert_eq!(out.status.code(), Some(4), "no TTY, no --yes");
    let all = text(&out);
    assert!(all.contains("--yes"), "says how to proceed: {all}");
    assert!(all.contains("cordon"), "plan shown first: {all}");

    // Over the blast-radius budget: a third of the nodes, budget 10%.
    let out = env
        .ripcord(&[
            "failout",
            "zone/zone-a",
            "-n",
            "shop",
            "--max-percent",
            "10",
            "--yes",
        ])
        .await;
    assert_eq!(out.status.code(), Some(4), "blast radius refused");
    let all = text(&out);
    assert!(
        all.contains("override-blast-radius") || all.contains("overrideBlastRadius"),
        "says how to override: {all}"
    );

    // Over the node budget.
    let out = env
        .ripcord(&[
            "failout",
            "zone/zone-a",
            "-n",
            "shop",
            "--max-nodes",
            "1",
            "--yes",
        ])
        .await;
    assert_eq!(out.status.code(), Some(4), "max nodes refused");

    // Malformed input: usage (2).
    let out = env.ripcord(&["failout", "zone-a", "--yes"]).await;
    assert_eq!(out.status.code(), Some(2));
    let out = env
        .ripcord(&["restart", "deployment/web", "--batch", "0", "--yes"])
        .await;
    assert_eq!(out.status.code(), Some(2));
    let out = env
        .ripcord(&["failback", "zone/zone-a", "--ramp-pause", "soon", "--yes"])
        .await;
    assert_eq!(out.status.code(), Some(2));
    let out = env
        .ripcord(&["failback", "zone/zone-a", "--ramp", "50,25", "--yes"])
        .await;
    assert_eq!(out.status.code(), Some(2));
    let out = env
        .ripcord(&[
            "restart",
            "deployment/web",
            "--warmup-port",
            "8080",
            "--warmup-path",
            "warm",
            "--yes",
        ])
        .await;
    assert_eq!(out.status.code(), Some(2));

    assert!(
        zone_nodes(&env.sim, "zone-a").iter().all(|n| !cordoned(n)),
        "nothing was cordoned"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue5_restart_by_one_command_completes_in_counted_batches() {
    let env = Env::start("restart-12.yaml").await;
    wait_until("frontend ready", || {
        all_ready(&env.sim, "shop", "frontend", 12)
    })
    .await;
    let before: Vec<String> = mitigations_support::app_pods(&env.sim, "shop", "frontend")
        .iter()
        .filter_map(|p| p.pointer("/metadata/name").and_then(Value::as_str))
        .map(str::to_string)
        .collect();

    let out = env
        .ripcord(&[
            "restart",
            "deployment/frontend",
            "-n",
            "shop",
            "--batch",
            "3",
            "--warmup",
            "1s",
            "--yes",
        ])
        .await;
    assert_eq!(out.status.code(), Some(0), "restart succeeded");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout
            .lines()
            .last()
            .is_some_and(|l| l.contains("rolling restart of deployment shop/frontend succeeded")),
        "final line: {stdout}"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("batch 1 of 4") && stderr.contains("batch 4 of 4"),
        "batch counts on stderr: {stderr}"
    );
    wait_until("frontend ready after restart", || {
        all_ready(&env.sim, "shop", "frontend", 12)
    })
    .await;
    let after = mitigations_support::app_pods(&env.sim, "shop", "frontend");
    assert!(
        after.iter().all(|p| {
            p.pointer("/metadata/name")
                .and_then(Value::as_str)
                .is_some_and(|n| !before.iter().any(|b| b == n))
        }),
        "every pod was replaced"
    );
}

/// A playbook with one approval gate.
fn approval_playbook(dir: &Path, timeout: &str) -> PathBuf {
    let path = dir.join(format!("approval-{timeout}.yaml"));
    std::fs::write(
        &path,
        format!(
            "apiVersion: ripcord.dev/v1alpha1\nkind: Playbook\nmetadata:\n  name: hand-off\n\
             spec:\n  steps:\n    - name: ack\n      action: gate.approval\n      with:\n        \
             approvers: [ann, cho]\n        message: take over?\n      timeout: {timeout}\n"
        ),
    )
    .expect("playbook written");
    path
}

/// The `Approved` records of a run's journal, as `(step, by, source, comment)`.
fn approved_records(
    state_dir: &Path,
    run_id: &str,
) -> Vec<(String, String, String, Option<String>)> {
    let (entries, _torn) =
        journal::read(&journal::journal_path(state_dir, run_id)).expect("journal readable");
    entries
        .into_iter()
        .filter_map(|e| match e.record {
            journal::Record::Approved {
                step,
                by,
                source,
                comment,
                ..
            } => Some((step, by, source.to_string(), comment)),
            _ => None,
        })
        .collect()
}

/// How many records of `kind` a run's journal holds.
fn count_records(state_dir: &Path, run_id: &str, kind: &str) -> usize {
    let (entries, _torn) =
        journal::read(&journal::journal_path(state_dir, run_id)).expect("journal readable");
    entries.iter().filter(|e| e.record.kind() == kind).count()
}

/// Waits until the state dir holds one run; returns its id.
async fn run_id_of(state_dir: &Path) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(runs) = journal::list_runs(state_dir)
            && let Some(run) = runs.first()
        {
            return run.run_id.clone();
        }
        assert!(tokio::time::Instant::now() < deadline, "no run started");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue5_gate_approval_via_file_rejects_strangers() {
    let env = Env::start("three-zones.yaml").await;
    let playbook = approval_playbook(env.dir.path(), "2m");
    let playbook = playbook.to_string_lossy().to_string();
    let args = ["run", playbook.as_str(), "-n", "shop", "--yes"];
    let child = env
        .command(&args, &env.state_dir())
        .spawn()
        .expect("run starts");
    let run_id = run_id_of(&env.state_dir()).await;

    let out = env
        .ripcord(&["approve", &run_id, "ack", "--as", "mallory"])
        .await;
    assert_eq!(out.status.code(), Some(4), "a stranger is refused");
    assert!(
        text(&out).contains("approvers are ann, cho"),
        "says who may: {}",
        text(&out)
    );
    let out = env
        .ripcord(&["approve", &run_id, "nope", "--as", "ann"])
        .await;
    assert_eq!(out.status.code(), Some(2), "no such step");

    let out = env
        .ripcord(&[
            "approve",
            &run_id,
            "ack",
            "--as",
            "ann",
            "--comment",
            "mine",
        ])
        .await;
    assert_eq!(out.status.code(), Some(0));
    let ack = journal::approval::read(&env.state_dir(), &run_id, "ack")
        .expect("readable")
        .expect("written");
    assert_eq!(
        (ack.by.as_str(), ack.comment.as_deref()),
        ("ann", Some("mine"))
    );

    let out = finish(&args, child).await;
    assert_eq!(out.status.code(), Some(0), "the gate passed");

    // The ACK is a journal record of its own, once, with who and where; the refused
    // stranger left none.
    assert_eq!(
        approved_records(&env.state_dir(), &run_id),
        [(
            "ack".to_string(),
            "ann".to_string(),
            "file".to_string(),
            Some("mine".to_string())
        )]
    );
    let out = env.ripcord(&["runs", "show", &run_id]).await;
    assert_eq!(out.status.code(), Some(0));
    let shown = text(&out);
    assert!(
        shown.contains(&format!(
            "[ack] approved by ann at {} (via file): mine",
            ack.at
        )),
        "runs show lists the ACK: {shown}"
    );
    let out = env.ripcord(&["report", &run_id]).await;
    assert_eq!(out.status.code(), Some(0));
    let report = text(&out);
    assert!(report.contains("## Approvals"), "{report}");
    assert!(
        report.contains(&format!("| ann | {} | file | mine |", ack.at)),
        "the report lists who approved and when: {report}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue5_gate_approval_via_the_run_resource_from_another_machine() {
    let env = Env::start("three-zones.yaml").await;
    let playbook = approval_playbook(env.dir.path(), "2m");
    let playbook = playbook.to_string_lossy().to_string();
    let args = ["run", playbook.as_str(), "-n", "shop", "--yes"];
    let mut child = env
        .command(&args, &env.state_dir())
        .spawn()
        .expect("run starts");
    let stderr = Stderr::follow(&mut child);
    let run_id = run_id_of(&env.state_dir()).await;
    // The engine mirrors the run as a `Run` before the gate waits: that is what a teammate
    // on another machine sees (`kubectl get runs.ripcord.dev`).
    let api: kube::Api<ripcord::k8s::runs::Run> = kube::Api::namespaced(env.sim.client(), "shop");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while api.get_opt(&run_id).await.ok().flatten().is_none() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the Run resource was never created"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Another machine: an empty state dir, so only the Run resource carries the ACK.
    let elsewhere = env.dir.path().join("elsewhere");
    // There the approvers are unknown, so a stranger's ACK reaches the Run; the gate rejects it.
    let out = env
        .ripcord_in(
            &["approve", &run_id, "ack", "--as", "mallory", "-n", "shop"],
            &elsewhere,
        )
        .await;
    assert_eq!(out.status.code(), Some(0), "annotated");
    // The gate reports the rejection (an engine event the CLI prints) and keeps waiting.
    let rejected = stderr.wait_for_line("ACK by mallory rejected").await;
    assert!(
        rejected.contains("ack: ") && rejected.contains("not an approver"),
        "{rejected}"
    );
    assert!(
        child.try_wait().expect("child status").is_none(),
        "a stranger's ACK does not pass the gate"
    );
    assert_eq!(
        journal::approval::read(&env.state_dir(), &run_id, "ack").expect("readable"),
        None,
        "a rejected ACK is not kept"
    );
    assert!(
        approved_records(&env.state_dir(), &run_id).is_empty(),
        "a rejected ACK is not journaled"
    );
    let out = env
        .ripcord_in(
            &["approve", &run_id, "ack", "--as", "cho", "-n", "shop"],
            &elsewhere,
        )
        .await;
    assert_eq!(out.status.code(), Some(0), "ACK recorded on the Run");
    assert!(text(&out).contains("Run shop/"));

    let out = finish(&args, child).await;
    assert_eq!(out.status.code(), Some(0), "the gate passed");
    let progress = stderr.all().await;
    eprintln!("--- stderr of the run\n{progress}");
    assert!(
        progress.contains("ack: approved by cho (via run-resource)"),
        "{progress}"
    );
    let ack = journal::approval::read(&env.state_dir(), &run_id, "ack")
        .expect("readable")
        .expect("copied into the run directory");
    assert_eq!(ack.by, "cho");
    assert_eq!(
        approved_records(&env.state_dir(), &run_id),
        [(
            "ack".to_string(),
            "cho".to_string(),
            "run-resource".to_string(),
            None
        )],
        "only the approver's ACK is journaled, once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue5_gate_approval_ack_before_a_crash_is_journaled_once() {
    let env = Env::start("three-zones.yaml").await;
    let playbook = approval_playbook(env.dir.path(), "2m");
    let playbook = playbook.to_string_lossy().to_string();
    let args = ["run", playbook.as_str(), "-n", "shop", "--yes"];
    let mut cmd = env.command(&args, &env.state_dir());
    // The process dies right after journaling the ACK, before the step's StepVerified.
    cmd.env(ripcord::engine::CRASH_HOOK_ENV, "after-approved");
    let child = cmd.spawn().expect("run starts");
    let run_id = run_id_of(&env.state_dir()).await;
    let out = env
        .ripcord(&["approve", &run_id, "ack", "--as", "ann"])
        .await;
    assert_eq!(out.status.code(), Some(0));
    let out = finish(&args, child).await;
    assert_eq!(out.status.code(), Some(137), "crashed at the hook");
    assert_eq!(approved_records(&env.state_dir(), &run_id).len(), 1);
    assert_eq!(count_records(&env.state_dir(), &run_id, "StepVerified"), 0);

    // The resumed gate accepts the same ACK again; the journal keeps one record of it.
    let out = env
        .ripcord(&["run", "--resume", &run_id, "-n", "shop"])
        .await;
    assert_eq!(out.status.code(), Some(0), "the resume passes the gate");
    assert_eq!(
        approved_records(&env.state_dir(), &run_id),
        [(
            "ack".to_string(),
            "ann".to_string(),
            "file".to_string(),
            None
        )]
    );
    assert_eq!(count_records(&env.state_dir(), &run_id, "StepVerified"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue5_gate_approval_times_out_and_fails_the_step() {
    let env = Env::start("three-zones.yaml").await;
    let playbook = approval_playbook(env.dir.path(), "2s");
    let out = env
        .ripcord(&["run", &playbook.to_string_lossy(), "-n", "shop", "--yes"])
        .await;
    assert_eq!(out.status.code(), Some(1), "the step failed");
    let all = text(&out);
    assert!(
        all.contains("timeout") || all.contains("timed out"),
        "{all}"
    );
    assert!(all.contains("ripcord approve"), "says how to ACK: {all}");
    let run_id = run_id_of(&env.state_dir()).await;
    assert!(approved_records(&env.state_dir(), &run_id).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue5_a_step_with_a_kubeconfig_context_acts_on_that_cluster() {
    let env = Env::start("three-zones.yaml").await;
    let colo = start_file("restart-12.yaml").await;
    let kubeconfig = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: main\n  cluster:\n    server: {}\n\
         - name: colo\n  cluster:\n    server: {}\ncontexts:\n- name: main\n  context:\n    \
         cluster: main\n    user: u\n    namespace: shop\n- name: colo-b\n  context:\n    \
         cluster: colo\n    user: u\n    namespace: shop\ncurrent-context: main\nusers:\n\
         - name: u\n  user: {{}}\n",
        env.sim.url(),
        colo.url()
    );
    std::fs::write(env.dir.path().join("kubeconfig"), kubeconfig).expect("kubeconfig written");
    let playbook = env.dir.path().join("colo.yaml");
    std::fs::write(
        &playbook,
        "apiVersion: ripcord.dev/v1alpha1\nkind: Playbook\nmetadata:\n  name: colo\nspec:\n  \
         steps:\n    - name: cordon-colo\n      action: node.cordon\n      context: colo-b\n      \
         with:\n        names: [zone-c-node-1]\n",
    )
    .expect("playbook written");

    let out = env
        .ripcord(&["run", &playbook.to_string_lossy(), "-n", "shop", "--yes"])
        .await;
    assert_eq!(out.status.code(), Some(0), "the run succeeded");
    let node = |sim: &SimCluster| {
        sim.store()
            .get(&ripcord::sim::store::kinds::nodes(), None, "zone-c-node-1")
            .expect("node exists")
    };
    assert!(cordoned(&node(&colo)), "cordoned in the colo's cluster");
    assert!(!cordoned(&node(&env.sim)), "the main cluster is untouched");

    // An unknown context fails the step before any write, naming the context.
    std::fs::write(
        &playbook,
        "apiVersion: ripcord.dev/v1alpha1\nkind: Playbook\nmetadata:\n  name: colo\nspec:\n  \
         steps:\n    - name: cordon-colo\n      action: node.cordon\n      context: nowhere\n      \
         with:\n        names: [zone-c-node-2]\n",
    )
    .expect("playbook written");
    let out = env
        .ripcord(&["run", &playbook.to_string_lossy(), "-n", "shop", "--yes"])
        .await;
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("nowhere"), "{}", text(&out));
}

/// Issue 16: `ripcord` with a configuration file (instead of `/dev/null`) and an environment
/// without `RIPCORD_WHO`/`USER`/`LOGNAME`.
fn command_with(env: &Env, args: &[&str], config: &Path) -> tokio::process::Command {
    let mut cmd = env.command(args, &env.state_dir());
    cmd.env("RIPCORD_CONFIG", config);
    cmd
}

async fn ripcord_with(env: &Env, args: &[&str], config: &Path) -> Output {
    let child = command_with(env, args, config)
        .spawn()
        .expect("ripcord runs");
    finish(args, child).await
}

fn occurrences(haystack: &str, needle: &str) -> usize {
    haystack.matches(needle).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue16_failout_says_what_it_does_and_exits_as_documented() {
    let env = Env::start("three-zones.yaml").await;
    wait_until("web ready", || all_ready(&env.sim, "shop", "web", 6)).await;

    // An unknown zone is invalid input: exit 2, nothing journaled as a failed run.
    let out = env
        .ripcord(&["failout", "zone/nope", "-n", "shop", "--yes"])
        .await;
    assert_eq!(out.status.code(), Some(2), "unknown zone: {}", text(&out));
    assert!(text(&out).contains("zones seen: zone-a, zone-b, zone-c"));

    // The dry run lists every phase in the order it runs, with counts: the cordons, the
    // traffic shift (route, backend, from -> to) and the drain's waves.
    let out = env
        .ripcord(&[
            "failout",
            "zone/zone-a",
            "-n",
            "shop",
            "--route",
            "shop/web",
            "--backend",
            "web-zone-a",
            "--dry-run",
        ])
        .await;
    assert_eq!(out.status.code(), Some(0));
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let at = |needle: &str| {
        stdout
            .find(needle)
            .unwrap_or_else(|| panic!("{needle:?} in the dry run: {stdout}"))
    };
    let cordon = at("1. cordon 2 of 2 node(s): zone-a-node-1, zone-a-node-2");
    let shift = at("2. shift traffic: httproute shop/web backend web-zone-a weight 100 -> 0");
    let drain = at("3. drain: evict 3 pod(s) in 1 wave(s)");
    let wave = at("wave 1: 3 pod(s) from zone-a-node-1 (2), zone-a-node-2 (1)");
    assert!(cordon < shift && shift < drain && drain < wave, "{stdout}");

    // A refusal is said once, with the hint that applies, without log noise or colour codes;
    // `--incident` for an incident never opened opens it.
    let out = env
        .ripcord(&[
            "failout",
            "zone/zone-a",
            "-n",
            "shop",
            "--max-percent",
            "10",
            "--incident",
            "INC-16",
            "--yes",
        ])
        .await;
    assert_eq!(out.status.code(), Some(4));
    let all = text(&out);
    assert_eq!(
        occurrences(&all, "over the blast-radius budget"),
        1,
        "{all}"
    );
    assert_eq!(occurrences(&all, "hint: "), 1, "{all}");
    assert_eq!(occurrences(&all, "refused: refused"), 0, "{all}");
    assert!(!all.contains(" WARN ") && !all.contains('\u{1b}'), "{all}");
    assert!(all.contains("opened incident INC-16"), "{all}");
    assert!(
        env.state_dir().join("incidents/INC-16.json").is_file(),
        "the incident was opened"
    );
    assert!(
        zone_nodes(&env.sim, "zone-a").iter().all(|n| !cordoned(n)),
        "nothing was cordoned"
    );

    // `approve` of a run that exists nowhere: a sentence and exit 2, not a debug struct.
    let out = env
        .ripcord(&[
            "approve",
            "r-20261202-230242-aaaa",
            "gate",
            "--as",
            "alice",
            "-n",
            "shop",
        ])
        .await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let all = text(&out);
    assert!(
        all.contains("there is no run r-20261202-230242-aaaa"),
        "{all}"
    );
    assert!(
        !all.contains("Status {") && !all.contains("ApiError"),
        "{all}"
    );

    // The operator defaults to the kubeconfig user, never `unknown`.
    let mut cmd = env.command(&["incident", "open", "INC-17"], &env.state_dir());
    cmd.env_remove("RIPCORD_WHO")
        .env_remove("USER")
        .env_remove("LOGNAME");
    let out = finish(&["incident", "open"], cmd.spawn().expect("runs")).await;
    assert_eq!(out.status.code(), Some(0));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("by ripcord-sim"),
        "the kubeconfig user"
    );

    // A reader that goes away (`| head`) ends the command quietly, without a panic.
    let mut child = env
        .command(&["schema"], &env.state_dir())
        .spawn()
        .expect("runs");
    drop(child.stdout.take());
    let out = finish(&["schema"], child).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(!text(&out).contains("panicked"), "{}", text(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue16_notifications_report_each_channel_and_can_be_required() {
    let env = Env::start("three-zones.yaml").await;
    wait_until("web ready", || all_ready(&env.sim, "shop", "web", 6)).await;
    // A channel nobody listens on (port 1 refuses connections).
    let failing = env.dir.path().join("failing.yaml");
    std::fs::write(
        &failing,
        "notify:\n  channels:\n    - name: ops\n      type: webhook\n      url: http://127.0.0.1:1/hook\n",
    )
    .expect("config written");
    let required = env.dir.path().join("required.yaml");
    std::fs::write(
        &required,
        "notify:\n  required: true\n  channels:\n    - name: ops\n      type: webhook\n      url: http://127.0.0.1:1/hook\n",
    )
    .expect("config written");

    // notify.required: nobody could be told, so nothing is changed (exit 4).
    let out = ripcord_with(
        &env,
        &["failout", "zone/zone-b", "-n", "shop", "--yes"],
        &required,
    )
    .await;
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    assert!(text(&out).contains("nobody was notified"), "{}", text(&out));
    assert!(
        zone_nodes(&env.sim, "zone-b").iter().all(|n| !cordoned(n)),
        "nothing was cordoned"
    );

    // Without `required`, the run goes on, but says plainly that nobody was told (and not
    // "notified 1 channel(s)"); the journal has each delivery's outcome.
    let out = ripcord_with(
        &env,
        &["failout", "zone/zone-a", "-n", "shop", "--yes"],
        &failing,
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let all = text(&out);
    assert!(all.contains("notifications: ops failed ("), "{all}");
    assert!(all.contains("warning: nobody was notified"), "{all}");
    assert!(!all.contains("notified 1 channel(s)"), "{all}");
    let runs = journal::list_runs(&env.state_dir()).expect("runs listed");
    let run = runs
        .iter()
        .find(|r| r.outcome == Some(journal::Outcome::Succeeded))
        .expect("the fail-out's run");
    let (entries, _) =
        journal::read(&journal::journal_path(&env.state_dir(), &run.run_id)).expect("journal");
    let deliveries: Vec<&journal::DeliveryRecord> = entries
        .iter()
        .filter_map(|e| match &e.record {
            journal::Record::Notified { deliveries, .. } => Some(deliveries),
            _ => None,
        })
        .flatten()
        .collect();
    assert!(deliveries.len() >= 2, "start and end notifications");
    assert!(deliveries.iter().all(|d| !d.ok && d.error.is_some()));

    // A `notify` step with `required: true` fails when nobody got the message.
    let playbook = env.dir.path().join("tell.yaml");
    std::fs::write(
        &playbook,
        "apiVersion: ripcord.dev/v1alpha1\nkind: Playbook\nmetadata:\n  name: tell\nspec:\n  steps:\n    - name: tell\n      action: notify\n      with:\n        message: hello\n        required: true\n",
    )
    .expect("playbook written");
    let out = env
        .ripcord(&["run", playbook.to_str().expect("utf-8"), "--yes"])
        .await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("no notification channel is configured"),
        "{}",
        text(&out)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue16_restart_warms_up_through_the_api_server_and_runs_are_listed() {
    let env = Env::start("restart-12.yaml").await;
    wait_until("frontend ready", || {
        all_ready(&env.sim, "shop", "frontend", 12)
    })
    .await;

    // The sim's pod IPs are not reachable from here (as from a laptop): the warm-up goes
    // through the API server's pod proxy, and each call's result is recorded.
    let out = env
        .ripcord(&[
            "restart",
            "deployment/frontend",
            "-n",
            "shop",
            "--batch",
            "6",
            "--warmup",
            "0s",
            "--warmup-port",
            "8080",
            "--warmup-path",
            "/warm",
            "--warmup-via",
            "proxy",
            "--incident",
            "INC-20",
            "--yes",
        ])
        .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let proxied: Vec<_> = env
        .sim
        .request_log()
        .into_iter()
        .filter(|r| r.path.contains(":8080/proxy/warm"))
        .collect();
    assert_eq!(proxied.len(), 12, "one warm-up per new pod: {proxied:?}");
    assert!(proxied.iter().all(|r| r.status == 200), "{proxied:?}");
    // Without -v the progress is a summary: no per-write lines, no inverses.
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("applied: ") && !stderr.contains("inverse: "),
        "{stderr}"
    );

    // `runs list` has target, incident, trigger, duration and outcome; filters; JSON.
    let out = env.ripcord(&["runs", "list"]).await;
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let header = stdout.lines().next().unwrap_or_default();
    for column in ["TARGET", "INCIDENT", "TRIGGER", "DURATION", "OUTCOME"] {
        assert!(header.contains(column), "{header}");
    }
    assert!(stdout.contains("deployment/shop/frontend") && stdout.contains("INC-20"));
    let out = env
        .ripcord(&["runs", "list", "--failed", "--since", "1h", "-o", "json"])
        .await;
    let failed: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(failed, json!([]), "no failed runs");
    let out = env
        .ripcord(&["runs", "list", "--incident", "INC-20", "-o", "json"])
        .await;
    let listed: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let run_id = listed[0]["runId"].as_str().expect("one run").to_string();
    assert_eq!(listed[0]["trigger"], "cli");
    assert_eq!(listed[0]["outcome"], "succeeded");

    // `last` and a unique prefix name the run; `runs show` says where the evidence is,
    // including each warm-up's result.
    for name in ["last", &run_id[..run_id.len() - 2]] {
        let out = env.ripcord(&["runs", "show", name]).await;
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.contains("snapshot: "), "{stdout}");
        assert!(stdout.contains("warm-ups: "), "{stdout}");
        assert_eq!(stdout.matches(" via proxy: 200 (").count(), 12, "{stdout}");
        assert!(
            stdout.contains(&format!("ripcord report {run_id}")),
            "{stdout}"
        );
    }
    let warmups =
        std::fs::read_to_string(journal::run_dir(&env.state_dir(), &run_id).join("warmup.jsonl"))
            .expect("warm-up results recorded");
    let results: Vec<Value> = warmups
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    assert_eq!(results.len(), 12);
    assert!(
        results
            .iter()
            .all(|r| r["ok"] == true && r["via"] == "proxy" && r["status"] == 200),
        "{results:?}"
    );
    let out = env.ripcord(&["runs", "show", "r-1999"]).await;
    assert_eq!(out.status.code(), Some(2), "unknown run: {}", text(&out));
}

/// kubectl binaries to try the plugin with: the one on PATH and kubectl 1.34 from `.tools`.
fn kubectls() -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join("kubectl"))
        .filter(|p| p.is_file())
        .take(1)
        .collect();
    let v34 = Path::new(env!("CARGO_MANIFEST_DIR")).join(".tools/kubectl-v34/kubectl");
    if v34.is_file() {
        found.push(v34);
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue16_kubectl_plugin_completions_and_man_page() {
    let dir = tempfile::tempdir().expect("tempdir");
    let plugin = dir.path().join("kubectl-ripcord");
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_ripcord"), &plugin).expect("symlink");
    let path = std::env::join_paths(
        std::iter::once(dir.path().to_path_buf()).chain(
            std::env::var_os("PATH")
                .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
                .unwrap_or_default(),
        ),
    )
    .expect("PATH");
    let kubectls = kubectls();
    assert!(!kubectls.is_empty(), "no kubectl found");
    for kubectl in kubectls {
        let run = |args: &[&str]| {
            std::process::Command::new(&kubectl)
                .args(args)
                .env("PATH", &path)
                .env("KUBECONFIG", dir.path().join("none"))
                .output()
                .expect("kubectl runs")
        };
        let listed = run(&["plugin", "list"]);
        let listed = String::from_utf8_lossy(&listed.stdout);
        assert!(
            listed.contains("kubectl-ripcord"),
            "{kubectl:?} plugin list: {listed}"
        );
        let version = run(&["ripcord", "--version"]);
        assert!(version.status.success(), "{kubectl:?}: {version:?}");
        assert!(
            String::from_utf8_lossy(&version.stdout).contains(env!("CARGO_PKG_VERSION")),
            "{version:?}"
        );
        let help = run(&["ripcord", "rollback", "--help"]);
        let help = String::from_utf8_lossy(&help.stdout);
        assert!(
            help.contains("Usage: kubectl ripcord rollback"),
            "{kubectl:?}: usage names the plugin: {help}"
        );
    }

    // Completions and the man page come from the clap definitions.
    for (shell, marker) in [
        ("bash", "_ripcord()"),
        ("zsh", "#compdef ripcord"),
        ("fish", "complete -c ripcord"),
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_ripcord"))
            .args(["completion", shell])
            .output()
            .expect("runs");
        assert!(out.status.success());
        let script = String::from_utf8_lossy(&out.stdout);
        assert!(script.contains(marker), "{shell}: {script}");
        assert!(script.contains("failout"), "{shell} knows the subcommands");
    }
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ripcord"))
        .arg("man")
        .output()
        .expect("runs");
    let page = String::from_utf8_lossy(&out.stdout);
    assert!(
        page.starts_with(".ie") || page.contains(".TH ripcord"),
        "{page}"
    );
    assert!(page.contains("failout"), "{page}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue16_incident_times_handoffs_notes_and_actions_reach_the_report() {
    let env = Env::start("three-zones.yaml").await;
    wait_until("web ready", || all_ready(&env.sim, "shop", "web", 6)).await;
    let ok = |out: &Output| assert_eq!(out.status.code(), Some(0), "{}", text(out));

    ok(&env
        .ripcord(&[
            "incident",
            "open",
            "INC-30",
            "--severity",
            "SEV2",
            "--impact-start",
            "30m",
            "--detected",
            "20m",
        ])
        .await);
    ok(&env
        .ripcord(&[
            "failout",
            "zone/zone-a",
            "-n",
            "shop",
            "--incident",
            "INC-30",
            "--yes",
        ])
        .await);
    ok(&env
        .ripcord(&["incident", "note", "INC-30", "error rate back to normal"])
        .await);
    ok(&env
        .ripcord(&[
            "incident",
            "action",
            "add",
            "INC-30",
            "alert on zone health",
            "--owner",
            "dan",
        ])
        .await);
    ok(&env
        .ripcord(&["incident", "handoff", "INC-30", "--to", "bob"])
        .await);
    let out = env
        .ripcord(&["incident", "ack", "INC-30", "--as", "carol"])
        .await;
    assert_eq!(out.status.code(), Some(4), "not addressed to carol");
    ok(&env
        .ripcord(&["incident", "ack", "INC-30", "--as", "bob"])
        .await);

    let out = env.ripcord(&["incident", "show", "INC-30"]).await;
    ok(&out);
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(shown.contains("owner:       bob"), "{shown}");
    assert!(shown.contains("time to detect: 600s"), "{shown}");

    let out = env.ripcord(&["report", "--incident", "INC-30"]).await;
    ok(&out);
    let report = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "time to detect",
        "10m",
        "time to mitigate",
        "end of the first successful run",
        "from impact start",
        "error rate back to normal",
        "alert on zone health",
        "acknowledged (took over)",
        "bob",
    ] {
        assert!(
            report.contains(needle),
            "{needle:?} in the report: {report}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue16_verify_shows_changed_fields_in_full_and_stops_waiting_when_nothing_can_settle() {
    let env = Env::start("three-zones.yaml").await;
    wait_until("web ready", || all_ready(&env.sim, "shop", "web", 6)).await;
    let out = env
        .ripcord(&[
            "failout",
            "zone/zone-a",
            "-n",
            "shop",
            "--route",
            "shop/web",
            "--backend",
            "web-zone-a",
            "--yes",
        ])
        .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    // The zone stays cordoned and its weight 0 until someone fails it back: waiting cannot
    // help, so `--wait 10m` returns long before its bound.
    let started = std::time::Instant::now();
    let out = env
        .ripcord(&["verify", "--run", "last", "-n", "shop", "--wait", "10m"])
        .await;
    assert_eq!(out.status.code(), Some(1), "dirty: {}", text(&out));
    assert!(
        started.elapsed() < Duration::from_secs(120),
        "stopped early, not after 10m"
    );
    let all = text(&out);
    assert!(all.contains("cannot clear by itself"), "{all}");
    // The route's rules in full: "before" and "now" differ where they differ.
    let rules = all
        .lines()
        .find(|l| l.contains("not-restored") && l.contains("rules"))
        .unwrap_or_else(|| panic!("a not-restored rules finding: {all}"));
    assert!(
        rules.contains(r#""name":"web-zone-a","port":80,"weight":0"#)
            && rules.contains(r#""name":"web-zone-a","port":80,"weight":100"#),
        "{rules}"
    );
    assert!(!rules.contains('…'), "{rules}");
}
