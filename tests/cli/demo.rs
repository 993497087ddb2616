//! `ripcord demo`: the README's main command runs end to end (the binary, its own sim).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code may fail loudly

#[test]
fn demo_rolls_back_the_bad_release_and_shows_journal_and_snapshot() {
    let state = tempfile::tempdir().expect("tempdir");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ripcord"))
        .args(["demo", "--quick"])
        .env("RIPCORD_STATE_DIR", state.path())
        .env("RIPCORD_CONFIG", "/dev/null")
        .env_remove("KUBECONFIG")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("ripcord demo runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(0));
    assert!(
        stdout.contains("image registry.local/checkout:1.5.0"),
        "shows the bad release"
    );
    assert!(stdout.contains("rollback of deployment shop/checkout succeeded"));
    assert!(stdout.contains("image registry.local/checkout:1.4.2, revision 3, ready 4/4"));
    assert!(
        stdout.contains("intend: roll back"),
        "prints the journal timeline"
    );
    assert!(
        stdout.contains("objects/shop/deployment/checkout.json"),
        "prints the manifest"
    );
    // Issue 18: the broad phase's objects are in pages, each entry naming its page and index;
    // the target Deployment and its ReplicaSets (the targets phase's own files) are not
    // repeated in a page.
    assert!(
        stdout.contains("objects/shop/pod/page-0001.json items[0]"),
        "pods in a page"
    );
    assert!(
        !stdout.contains("objects/shop/deployment/page-"),
        "{stdout}"
    );
    assert!(
        !stdout.contains("objects/shop/replicaset/page-"),
        "{stdout}"
    );
    // Issue 15: the snapshot captures every kind it lists (HPAs, EndpointSlices, …).
    let rest = stdout
        .lines()
        .find(|l| l.contains("snapshot (rest):"))
        .expect("the snapshot of the rest is reported");
    assert!(rest.contains(", 0 failed"), "{rest}");
    assert!(
        stdout.contains("outcome succeeded"),
        "the Run mirror in the cluster"
    );
    let runs = ripcord::journal::list_runs(state.path()).expect("runs");
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].outcome, Some(ripcord::journal::Outcome::Succeeded));
}
