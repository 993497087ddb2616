//! End-to-end tests of the `ripcord` binary's playbook commands: `validate`, `schema` and
//! `plan --offline` — exit codes, messages and machine output. No cluster is involved.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code may fail loudly

use std::path::Path;
use std::process::{Command, Output};

fn ripcord(args: &[&str]) -> Output {
    let output = Command::new(env!("CARGO_BIN_EXE_ripcord"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("RIPCORD_NAMESPACE")
        .env_remove("RUST_LOG")
        .output();
    match output {
        Ok(output) => output,
        Err(err) => panic!("cannot run ripcord: {err}"),
    }
}

fn code(output: &Output) -> i32 {
    output.status.code().unwrap_or(-1)
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn validate_accepts_every_shipped_playbook() {
    let mut args = vec!["validate"];
    let files = [
        "playbooks/rollback.yaml",
        "playbooks/failout-zone.yaml",
        "playbooks/failback-zone.yaml",
        "playbooks/rolling-restart.yaml",
        "builtin:rollback",
    ];
    args.extend(files);
    let out = ripcord(&args);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    for file in files {
        assert!(
            stdout(&out).contains(&format!("ok: {file}")),
            "{}",
            stdout(&out)
        );
    }
}

#[test]
fn validate_prints_located_diagnostics_and_exits_2() {
    let out = ripcord(&["validate", "tests/data/playbooks/fail/unknown-field.yaml"]);
    assert_eq!(code(&out), 2);
    let err = stderr(&out);
    assert!(
        err.contains("error[unknown-field]: unknown field `timout`"),
        "{err}"
    );
    assert!(
        err.contains("--> tests/data/playbooks/fail/unknown-field.yaml:13:7"),
        "{err}"
    );
    assert!(err.contains("= help: did you mean `timeout`?"), "{err}");
    assert!(err.contains("1 of 1 playbook file invalid"), "{err}");
}

#[test]
fn validate_reports_every_file_and_fails_if_any_is_invalid() {
    let out = ripcord(&[
        "validate",
        "playbooks/rollback.yaml",
        "tests/data/playbooks/fail/duplicate-step.yaml",
        "tests/data/playbooks/fail/malformed-tabs.yaml",
    ]);
    assert_eq!(code(&out), 2);
    assert!(stdout(&out).contains("ok: playbooks/rollback.yaml"));
    let err = stderr(&out);
    assert!(err.contains("error[duplicate-step]"), "{err}");
    assert!(err.contains("error[yaml]"), "{err}");
    assert!(err.contains("2 of 3 playbook files invalid"), "{err}");
}

#[test]
fn validate_json_output_is_machine_readable() {
    let out = ripcord(&[
        "validate",
        "-o",
        "json",
        "builtin:rollback",
        "tests/data/playbooks/fail/unknown-action.yaml",
    ]);
    assert_eq!(code(&out), 2);
    let doc: serde_json::Value = match serde_json::from_str(&stdout(&out)) {
        Ok(doc) => doc,
        Err(err) => panic!("not JSON ({err}): {}", stdout(&out)),
    };
    assert_eq!(doc["valid"], false);
    assert_eq!(doc["files"][0]["valid"], true);
    assert_eq!(doc["files"][0]["playbook"], "rollback");
    let first = &doc["files"][1]["diagnostics"][0];
    assert_eq!(first["kind"], "unknown-action");
    assert_eq!(first["line"], 8);
    assert_eq!(first["column"], 15);
    assert_eq!(first["hint"], "did you mean `deployment.rollback`?");
}

#[test]
fn validate_reports_unreadable_files() {
    let out = ripcord(&["validate", "tests/data/playbooks/does-not-exist.yaml"]);
    assert_eq!(code(&out), 2);
    assert!(stderr(&out).contains("cannot read"), "{}", stderr(&out));
    let out = ripcord(&["validate", "builtin:rolback"]);
    assert_eq!(code(&out), 2);
    assert!(
        stderr(&out).contains("did you mean `rollback`?"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn validate_without_files_is_a_usage_error() {
    let out = ripcord(&["validate"]);
    assert_eq!(code(&out), 2);
}

#[test]
fn schema_prints_the_committed_schema() {
    let out = ripcord(&["schema"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let committed = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("schema/playbook.schema.json"),
    )
    .unwrap_or_default();
    assert!(
        stdout(&out) == committed,
        "schema/playbook.schema.json is stale: run `cargo run -- schema > schema/playbook.schema.json`"
    );
    let doc: Result<serde_json::Value, _> = serde_json::from_str(&stdout(&out));
    assert!(doc.is_ok_and(|d| d["title"] == "ripcord Playbook"));
}

#[test]
fn plan_offline_prints_resolved_steps() {
    let out = ripcord(&[
        "plan",
        "builtin:rollback",
        "-p",
        "name=checkout",
        "-p",
        "toRevision=3",
        "--offline",
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("Plan for playbook `rollback` (run r-offline)"),
        "{text}"
    );
    assert!(text.contains("Lock: deployment/default/checkout"), "{text}");
    assert!(
        text.contains("1. rollback [deployment.rollback] (mutating"),
        "{text}"
    );
    assert!(text.contains("toRevision: 3"), "{text}");
    assert!(
        text.contains("2. wait-rolled-out [deployment.waitRolledOut] (read-only"),
        "{text}"
    );
}

#[test]
fn plan_json_is_the_plan() {
    let out = ripcord(&[
        "plan",
        "playbooks/rolling-restart.yaml",
        "-p",
        "name=search",
        "-p",
        "batch=2",
        "--offline",
        "--run-id",
        "r-test",
        "-o",
        "json",
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let plan: Result<ripcord::plan::Plan, _> = serde_json::from_str(&stdout(&out));
    let Ok(plan) = plan else {
        panic!("not a plan: {}", stdout(&out));
    };
    assert_eq!(plan.run_id, "r-test");
    assert_eq!(plan.playbook, "rolling-restart");
    let ripcord::playbook::Action::DeploymentRestart(restart) = &plan.steps[0].action else {
        panic!("not a restart: {:?}", plan.steps[0].action);
    };
    assert_eq!(
        restart.batch,
        ripcord::playbook::catalog::BatchSize::Count(2)
    );
    assert_eq!(restart.warmup, ripcord::playbook::Duration::from_secs(30));
}

#[test]
fn plan_namespace_flag_fills_the_namespace_parameter() {
    let out = ripcord(&[
        "plan",
        "builtin:rollback",
        "-p",
        "name=cart",
        "-n",
        "shop",
        "--offline",
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        stdout(&out).contains("Lock: deployment/shop/cart"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn plan_rejects_missing_and_invalid_parameters_with_exit_2() {
    let out = ripcord(&["plan", "builtin:rollback", "--offline"]);
    assert_eq!(code(&out), 2);
    assert!(
        stderr(&out).contains(
            "missing required parameter `name` (The Deployment's name.): pass -p name=VALUE"
        ),
        "{}",
        stderr(&out)
    );

    let out = ripcord(&["plan", "builtin:rollback", "-p", "nmae=x", "--offline"]);
    assert_eq!(code(&out), 2);
    assert!(
        stderr(&out).contains("unknown parameter `nmae` (did you mean `name`?)"),
        "{}",
        stderr(&out)
    );

    let out = ripcord(&[
        "plan",
        "builtin:rollback",
        "-p",
        "name=x",
        "-p",
        "toRevision=latest",
        "--offline",
    ]);
    assert_eq!(code(&out), 2);
    assert!(
        stderr(&out).contains("`latest` is not an integer"),
        "{}",
        stderr(&out)
    );

    let out = ripcord(&["plan", "builtin:rollback", "-p", "name", "--offline"]);
    assert_eq!(code(&out), 2);
    assert!(
        stderr(&out).contains("is not KEY=VALUE"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn plan_of_an_invalid_playbook_prints_its_diagnostics() {
    let out = ripcord(&[
        "plan",
        "tests/data/playbooks/fail/bad-duration.yaml",
        "--offline",
    ]);
    assert_eq!(code(&out), 2);
    let err = stderr(&out);
    assert!(err.contains("error[bad-duration]"), "{err}");
    assert!(err.contains("is not a valid playbook"), "{err}");
}

#[test]
fn plan_without_offline_needs_a_reachable_cluster() {
    let out = ripcord(&[
        "plan",
        "builtin:rollback",
        "-p",
        "name=x",
        "--kubeconfig",
        "/nonexistent/ripcord-test-kubeconfig",
    ]);
    assert_eq!(code(&out), 3, "{}", stderr(&out));
}
