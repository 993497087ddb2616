//! Hostile input (issue 8): seeded, std-only property tests of every reader that takes input
//! from outside — the playbook planner (the parser itself is fuzzed in `tests/playbooks.rs`;
//! this file adds parameters, files and the committed regressions), the journal reader (torn,
//! garbled, huge lines, invalid UTF-8), the scenario loader, and the daemon's Alertmanager
//! webhook and `POST /v1/runs` bodies through its router (`Router::oneshot`), and (issue 13)
//! forged or mutated `Run` resources and journal records as input to cleanup: whatever they
//! claim, cleanup plans **zero writes** against objects that carry no proof of ripcord's own
//! write, and never a judgement of a Secret.
//!
//! Properties: no panic; no hang (every input is handled on a worker thread with a generous
//! bound); a clear error (non-empty, naming where when there is a where). The committed
//! corpora and regressions live in `tests/fuzz/<target>/`; every file there is replayed.
//!
//! The seed is fixed so failures reproduce; `RIPCORD_FUZZ_ITERS` scales the random rounds
//! (default 1, e.g. `RIPCORD_FUZZ_ITERS=50` for a long run).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code may fail loudly

use crate::daemon_support as support;

use axum::http::StatusCode;
use ripcord::daemon::clock::Clock;
use ripcord::daemon::config::{AlertRule, AlertmanagerConfig};
use ripcord::journal::{self, Journal, Record};
use ripcord::playbook;
use ripcord::sim::scenario::Scenario;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;
use support::{FakeExecutor, TOKEN, alert_payload, call_text, harness};

/// The bound on any single input (a hang detector, not a speed assertion).
const HANG_BOUND: Duration = Duration::from_secs(60);

/// A small deterministic generator (xorshift64), so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// Random rounds multiplier.
fn iterations() -> usize {
    std::env::var("RIPCORD_FUZZ_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1usize)
        .max(1)
}

/// Runs `f` on its own thread; fails the test if it panics or does not finish within
/// [`HANG_BOUND`]. Returns its result.
fn bounded<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    let handle = std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(HANG_BOUND) {
        Ok(value) => {
            let _ = handle.join();
            value
        }
        Err(mpsc::RecvTimeoutError::Disconnected) => panic!("{what}: panicked"),
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("{what}: no answer within {HANG_BOUND:?}"),
    }
}

/// The committed corpus files of one target (`tests/fuzz/<target>/`), sorted.
fn corpus(target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no corpus in {}", dir.display());
    files
}

/// Hostile scalar values used in parameters, labels and YAML/JSON fields.
fn hostile_strings() -> Vec<String> {
    vec![
        String::new(),
        " ".into(),
        "\0".into(),
        "-1".into(),
        "0".into(),
        "99999999999999999999999999".into(),
        "1e309".into(),
        "NaN".into(),
        "-9223372036854775809".into(),
        "true".into(),
        "yes".into(),
        "~".into(),
        "null".into(),
        "$(params.name)".into(),
        "$(run.id)$(run.id)".into(),
        "$(".into(),
        "$$(params.x)".into(),
        "../../../etc/passwd".into(),
        "deployment/../../x".into(),
        "a".repeat(70_000),
        "é⚠️\u{202e}\u{feff}".into(),
        "line\nbreak: [x]".into(),
        "{a: 1}".into(),
        "*alias".into(),
        "%YAML 1.2".into(),
        "25%".into(),
        "250%".into(),
        "-5%".into(),
        "1h30m".into(),
        "999999999h".into(),
        "1ms".into(),
    ]
}

// === playbooks: parameters, files, regressions ===

#[test]
fn planning_builtins_with_hostile_parameters_never_panics() {
    let mut rng = Rng(0x0BAD_CAFE_1234_5678);
    let values = hostile_strings();
    for name in playbook::builtin_names() {
        let valid = playbook::load_builtin(name).expect("built-in playbooks are valid");
        let declared: Vec<String> = valid.playbook().spec.params.keys().cloned().collect();
        for _ in 0..60 * iterations() {
            let mut params = BTreeMap::new();
            for key in &declared {
                if rng.below(4) != 0 {
                    params.insert(key.clone(), rng.pick(&values).clone());
                }
            }
            if rng.below(5) == 0 {
                params.insert("undeclared".into(), "x".into());
            }
            let valid = valid.clone();
            let shown = format!("{name} {params:?}");
            let outcome = bounded(&shown, move || {
                playbook_plan(&valid, &params).map_err(|e| e.to_string())
            });
            if let Err(message) = outcome {
                assert!(!message.trim().is_empty(), "empty error for {shown}");
            }
        }
    }
}

fn playbook_plan(
    valid: &playbook::ValidPlaybook,
    params: &BTreeMap<String, String>,
) -> Result<ripcord::plan::Plan, ripcord::plan::PlanError> {
    ripcord::plan::plan(valid, params, "r-20261125-120000-fuzz")
}

#[test]
fn playbook_regressions_parse_or_fail_with_located_diagnostics() {
    for path in corpus("playbooks") {
        let shown = path.display().to_string();
        let p = path.clone();
        let outcome = bounded(&shown, move || {
            playbook::load_file(&p)
                .map(|_| ())
                .map_err(|d| d.to_string())
        });
        if let Err(message) = outcome {
            assert!(!message.trim().is_empty(), "empty diagnostics for {shown}");
            assert!(
                message.contains(&shown) || message.contains(".yaml"),
                "diagnostics name the file for {shown}: {message}"
            );
        }
    }
}

#[test]
fn playbook_files_with_invalid_utf8_or_nul_fail_cleanly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "latin1.yaml",
            b"apiVersion: ripcord.dev/v1alpha1\nkind: Playbook\nmetadata: {name: caf\xe9}\n"
                .to_vec(),
        ),
        ("garbage.yaml", vec![0xff, 0xfe, 0x00, 0x80, 0xc3, 0x28]),
        (
            "nul.yaml",
            b"apiVersion: ripcord.dev/v1alpha1\0\nkind: Playbook\n".to_vec(),
        ),
        (
            "bom.yaml",
            b"\xef\xbb\xbfapiVersion: ripcord.dev/v1alpha1\n".to_vec(),
        ),
        ("utf16.yaml", b"\xff\xfea\x00p\x00i\x00".to_vec()),
    ];
    for (name, bytes) in cases {
        let path = dir.path().join(name);
        std::fs::write(&path, &bytes).expect("written");
        let result = playbook::load_file(&path);
        let message = match result {
            Ok(_) => panic!("{name}: accepted"),
            Err(d) => d.to_string(),
        };
        assert!(!message.trim().is_empty(), "{name}: empty diagnostics");
    }
}

// === journal reader ===

const RUN_ID: &str = "r-20261125-120000-fuzz";

/// Writes a small, valid journal through the real writer; returns its bytes.
fn valid_journal(dir: &Path) -> Vec<u8> {
    let mut journal = Journal::create(dir, RUN_ID).expect("journal created");
    let records = vec![
        Record::RunResumed {
            who: "fuzz \u{1f600} \"quoted\"".into(),
        },
        Record::StepPlanned {
            step: "rollback".into(),
            action: "deployment.rollback".into(),
            summary: "roll back shop/checkout".into(),
            diff: "- image: a\n+ image: b\n".into(),
        },
        Record::StepAlreadySatisfied {
            step: "s2".into(),
            summary: "x".repeat(300),
        },
        Record::StepVerified {
            step: "rollback".into(),
        },
        Record::MirrorFailed {
            error: "line1\nline2\ttab\u{0}".into(),
        },
        Record::StepFailed {
            step: "wait".into(),
            error: "timed out".into(),
            category: "timeout".into(),
        },
    ];
    for r in records {
        journal.append(r).expect("appended");
    }
    std::fs::read(journal.path()).expect("read back")
}

/// Reads `bytes` as a journal (through a file, as the engine does).
fn read_bytes(dir: &Path, name: &str, bytes: &[u8]) -> JournalRead {
    let path = dir.join(name);
    std::fs::write(&path, bytes).expect("written");
    let shown = format!("journal {name} ({} bytes)", bytes.len());
    bounded(&shown, move || match journal::read(&path) {
        Ok((entries, torn)) => JournalRead::Ok {
            kinds: entries
                .iter()
                .map(|e| e.record.kind().to_string())
                .collect(),
            torn: torn.map(|t| (t.line, t.offset, t.bytes)),
        },
        Err(err) => JournalRead::Err {
            category: err.category(),
            message: err.to_string(),
        },
    })
}

#[derive(Debug)]
enum JournalRead {
    Ok {
        kinds: Vec<String>,
        torn: Option<(usize, u64, usize)>,
    },
    Err {
        category: &'static str,
        message: String,
    },
}

fn line_starts(bytes: &[u8]) -> Vec<usize> {
    let mut starts = vec![0];
    for (i, b) in bytes.iter().enumerate() {
        if *b == b'\n' && i + 1 < bytes.len() {
            starts.push(i + 1);
        }
    }
    starts
}

#[test]
fn a_journal_cut_at_any_byte_reads_as_its_complete_prefix() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bytes = valid_journal(dir.path());
    let complete = line_starts(&bytes);
    let total_lines = complete.len();
    for cut in 0..=bytes.len() {
        let prefix = &bytes[..cut];
        // Lines fully written (with their newline) before the cut.
        let full = prefix.iter().filter(|b| **b == b'\n').count();
        match read_bytes(dir.path(), "cut.jsonl", prefix) {
            JournalRead::Ok { kinds, torn } => {
                let partial_parses = torn.is_none() && kinds.len() == full + 1;
                assert!(
                    kinds.len() == full || partial_parses,
                    "cut at {cut}: {} records, {full} complete lines",
                    kinds.len()
                );
                let at_boundary = cut == 0 || prefix.last() == Some(&b'\n');
                if at_boundary {
                    assert!(torn.is_none(), "cut at a line boundary {cut}: {torn:?}");
                } else if !partial_parses {
                    let (line, offset, ignored) = torn.expect("a torn tail is reported");
                    assert_eq!(line, full + 1, "cut at {cut}");
                    assert_eq!(offset as usize + ignored, cut, "cut at {cut}");
                }
            }
            JournalRead::Err { message, .. } => panic!("cut at {cut}: {message}"),
        }
    }
    assert!(total_lines >= 6);
}

#[test]
fn a_torn_journal_is_cut_on_resume_and_appends_cleanly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bytes = valid_journal(dir.path());
    let path = journal::journal_path(dir.path(), RUN_ID);
    let mut rng = Rng(0x7077_7A11);
    for _ in 0..25 * iterations() {
        let cut = 1 + rng.below(bytes.len() - 1);
        std::fs::write(&path, &bytes[..cut]).expect("written");
        let (mut journal, entries, _torn) =
            Journal::open(dir.path(), RUN_ID).expect("a torn journal opens for resume");
        let before = entries.len();
        journal
            .append(Record::StepVerified {
                step: "after-resume".into(),
            })
            .expect("appended");
        let (again, torn) = journal::read(&path).expect("readable after resume");
        assert!(torn.is_none(), "cut {cut}: still torn after resume");
        assert_eq!(again.len(), before + 1, "cut {cut}");
        let last = again.last().map(|e| e.record.kind());
        assert_eq!(last, Some("StepVerified"));
        let seqs: Vec<u64> = again.iter().map(|e| e.seq).collect();
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "cut {cut}: sequence numbers increase: {seqs:?}"
        );
    }
}

#[test]
fn garbled_journals_never_panic_and_name_the_bad_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bytes = valid_journal(dir.path());
    let starts = line_starts(&bytes);
    let mut rng = Rng(0x6A4B_1ED0);
    let noise: &[u8] = b"{}[]\",:\\\0\xff\xfe\xc3\x80\n\r\t 0-9eE.ntfu";
    for round in 0..300 * iterations() {
        let mut garbled = bytes.clone();
        for _ in 0..=rng.below(6) {
            let at = rng.below(garbled.len());
            match rng.below(3) {
                0 => garbled[at] = *rng.pick(noise),
                1 => {
                    garbled.insert(at, *rng.pick(noise));
                }
                _ => {
                    garbled.remove(at);
                }
            }
            if garbled.is_empty() {
                break;
            }
        }
        match read_bytes(dir.path(), "garbled.jsonl", &garbled) {
            JournalRead::Ok { .. } => {}
            JournalRead::Err { category, message } => {
                // A garbled digit of a line's `"v"` makes a well-formed line of another
                // format version: refused as such ("journal-version"), also naming the line.
                assert!(
                    category == "journal-corrupted" || category == "journal-version",
                    "round {round}: {category}: {message}"
                );
                let names_line = message.contains("garbled.jsonl:")
                    && message
                        .rsplit_once(".jsonl:")
                        .and_then(|(_, rest)| rest.split(':').next())
                        .and_then(|n| n.parse::<usize>().ok())
                        .is_some();
                assert!(
                    names_line,
                    "round {round}: the error names the line: {message}"
                );
            }
        }
    }
    assert!(starts.len() > 2);
}

#[test]
fn hostile_journal_shapes_are_read_or_rejected_cleanly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let valid = valid_journal(dir.path());
    let first_line_end = valid.iter().position(|b| *b == b'\n').expect("a line") + 1;
    let first = &valid[..first_line_end];
    let huge_line = vec![b'a'; 16 * 1024 * 1024];
    let huge_json = {
        let mut v =
            b"{\"seq\":2,\"at\":\"2026-11-25T12:00:00Z\",\"type\":\"StepVerified\",\"step\":\""
                .to_vec();
        v.extend(std::iter::repeat_n(b'x', 8 * 1024 * 1024));
        v.extend_from_slice(b"\"}\n");
        v
    };
    let deep = format!("{}\n", "[".repeat(100_000)).into_bytes();
    let cases: Vec<(&str, Vec<u8>, bool)> = vec![
        // (name, bytes, must_read_ok)
        ("empty", Vec::new(), true),
        ("only-newlines", b"\n\n\r\n  \n".to_vec(), true),
        ("crlf", valid.iter().flat_map(|b| if *b == b'\n' { vec![b'\r', b'\n'] } else { vec![*b] }).collect(), true),
        ("huge-garbage-last", [first, &huge_line].concat(), true),
        ("huge-garbage-middle", [first, &huge_line, b"\n", first].concat(), false),
        ("huge-valid-record", [first, &huge_json].concat(), true),
        ("invalid-utf8-middle", [first, b"\xff\xfe\xfd\n", first].concat(), false),
        ("invalid-utf8-in-string", [first, b"{\"seq\":2,\"at\":\"2026-11-25T12:00:00Z\",\"type\":\"StepVerified\",\"step\":\"\xc3\x28\"}\n", first].concat(), false),
        ("nul-bytes", [first, &[0u8; 4096], b"\n", first].concat(), false),
        ("deep-nesting-middle", [first, &deep, first].concat(), false),
        ("deep-nesting-last", [first, &deep].concat(), true),
        ("unknown-kind", [first, b"{\"seq\":2,\"at\":\"2026-11-25T12:00:00Z\",\"type\":\"Nope\"}\n", first].concat(), false),
        ("wrong-types", [first, b"{\"seq\":\"2\",\"at\":5,\"type\":[]}\n", first].concat(), false),
        ("json-but-not-object", [first, b"42\n", first].concat(), false),
    ];
    for (name, bytes, must_read_ok) in cases {
        let read = read_bytes(dir.path(), &format!("{name}.jsonl"), &bytes);
        match (&read, must_read_ok) {
            (JournalRead::Ok { .. }, true) => {}
            (JournalRead::Err { category, message }, false) => {
                assert_eq!(*category, "journal-corrupted", "{name}: {message}");
                assert!(message.contains(":2:"), "{name}: names line 2: {message}");
                assert!(
                    message.len() < 4096,
                    "{name}: the error does not echo the input"
                );
            }
            (other, _) => panic!("{name}: unexpected {other:?}"),
        }
    }
}

#[test]
fn journal_regressions_are_read_or_rejected_cleanly() {
    let dir = tempfile::tempdir().expect("tempdir");
    for path in corpus("journal") {
        let bytes = std::fs::read(&path).expect("corpus readable");
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("x")
            .to_string();
        let read = read_bytes(dir.path(), &name, &bytes);
        // The file name says what is expected: `ok-*` reads, `corrupt-*` is rejected.
        match read {
            JournalRead::Ok { .. } => assert!(name.starts_with("ok-"), "{name}: accepted"),
            JournalRead::Err { message, .. } => {
                assert!(name.starts_with("corrupt-"), "{name}: {message}")
            }
        }
    }
}

// === scenario loader ===

#[test]
fn mutated_scenarios_never_panic_the_loader() {
    let mut sources: Vec<String> = ["demo.yaml", "three-zones.yaml", "restart-12.yaml"]
        .iter()
        .map(|n| {
            std::fs::read_to_string(
                Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("tests/data/scenarios")
                    .join(n),
            )
            .expect("scenario readable")
        })
        .collect();
    sources.extend(
        corpus("scenarios")
            .iter()
            .map(|p| String::from_utf8_lossy(&std::fs::read(p).expect("readable")).into_owned()),
    );
    let alphabet: Vec<char> = " \t\n-:{}[],&*!|>'\"#%@`$0123456789.eE-aZ"
        .chars()
        .collect();
    let mut rng = Rng(0x5CE2_A210);
    let check = |text: String| {
        let shown: String = text.chars().take(120).collect();
        let outcome = bounded(&format!("scenario {shown:?}"), move || {
            Scenario::from_yaml("fuzz-scenario.yaml", &text)
                .map(|_| ())
                .map_err(|e| e.to_string())
        });
        if let Err(message) = outcome {
            assert!(
                message.contains("fuzz-scenario.yaml"),
                "names the source: {message}"
            );
        }
    };
    for text in &sources {
        let chars: Vec<char> = text.chars().collect();
        let step = (chars.len() / 30).max(1);
        for cut in (0..chars.len()).step_by(step) {
            check(chars[..cut].iter().collect());
        }
        for _ in 0..40 * iterations() {
            let mut mutated = chars.clone();
            for _ in 0..=rng.below(4) {
                if mutated.is_empty() {
                    break;
                }
                let at = rng.below(mutated.len());
                mutated[at] = *rng.pick(&alphabet);
            }
            check(mutated.into_iter().collect());
        }
    }
    check("[".repeat(50_000));
    check("zones: &z [x, x, x, x]\nnamespaces: *z\ndeployments: *z\n".to_string());
}

// === daemon: Alertmanager webhook and API bodies ===

fn alert_rules() -> AlertmanagerConfig {
    AlertmanagerConfig {
        rules: vec![AlertRule {
            name: "high-error-rate".into(),
            matchers: BTreeMap::from([("alertname".to_string(), "HighErrorRate".to_string())]),
            playbook: "rollback".into(),
            params: BTreeMap::from([
                ("namespace".to_string(), "$(labels.namespace)".to_string()),
                ("name".to_string(), "$(labels.deployment)".to_string()),
            ]),
            cooldown: None,
        }],
        ..AlertmanagerConfig::default()
    }
}

/// Replaces, removes or re-types one random node of a JSON document.
fn mutate_json(value: &mut Value, rng: &mut Rng, hostile: &[String]) {
    match value {
        Value::Object(map) if !map.is_empty() && rng.below(3) != 0 => {
            let keys: Vec<String> = map.keys().cloned().collect();
            let key = rng.pick(&keys).clone();
            match rng.below(6) {
                0 => {
                    map.remove(&key);
                }
                1 => {
                    map.insert(rng.pick(hostile).clone(), json!(rng.pick(hostile)));
                }
                _ => {
                    if let Some(child) = map.get_mut(&key) {
                        mutate_json(child, rng, hostile);
                    }
                }
            }
        }
        Value::Array(items) if !items.is_empty() && rng.below(3) != 0 => {
            let at = rng.below(items.len());
            match rng.below(4) {
                0 => {
                    items.remove(at);
                }
                1 => {
                    let copy = items[at].clone();
                    for _ in 0..rng.below(50) {
                        items.push(copy.clone());
                    }
                }
                _ => mutate_json(&mut items[at], rng, hostile),
            }
        }
        other => {
            *other = match rng.below(9) {
                0 => Value::Null,
                1 => json!(true),
                2 => json!(-1),
                3 => json!(1e300),
                4 => json!(u64::MAX),
                5 => json!([rng.pick(hostile)]),
                6 => json!({"k": rng.pick(hostile)}),
                _ => json!(rng.pick(hostile)),
            }
        }
    }
}

/// Sends a body to a route and checks the answer: never a 5xx, and an error answer is JSON
/// with a non-empty `error`.
async fn post_checked(state: &ripcord::daemon::DaemonState, path: &str, body: Vec<u8>) {
    let shown: String = String::from_utf8_lossy(&body).chars().take(200).collect();
    let body = String::from_utf8_lossy(&body).into_owned();
    let call = call_text(state, "POST", path, Some(TOKEN), Some(body));
    let (status, text) = tokio::time::timeout(HANG_BOUND, call)
        .await
        .unwrap_or_else(|_| panic!("{path}: no answer for {shown:?}"));
    assert!(
        !status.is_server_error(),
        "{path}: {status} for {shown:?}: {text}"
    );
    if status.is_client_error() && status != StatusCode::PAYLOAD_TOO_LARGE {
        let parsed: Value = serde_json::from_str(&text)
            .unwrap_or_else(|_| panic!("{path}: {status} answer is not JSON: {text}"));
        let message = parsed["error"].as_str().unwrap_or_default();
        assert!(
            !message.trim().is_empty(),
            "{path}: {status} without a message: {text}"
        );
        assert!(text.len() < 64 * 1024, "{path}: the error stays small");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_webhook_and_api_bodies_get_clear_client_errors() {
    let h = harness(FakeExecutor::default(), alert_rules(), Clock::System);
    let hostile = hostile_strings()
        .into_iter()
        .map(|s| s.chars().take(2_000).collect())
        .collect::<Vec<String>>();
    let mut rng = Rng(0xA1E2_7B0D);
    let alert: Value = serde_json::from_str(&alert_payload(
        "firing",
        &[
            ("alertname", "HighErrorRate"),
            ("namespace", "shop"),
            ("deployment", "checkout"),
        ],
    ))
    .expect("payload is JSON");
    let runs_bodies = [
        json!({"playbook": "rollback", "params": {"name": "checkout", "namespace": "shop"}}),
        json!({"body": playbook::builtin("rollback").map(|(_, t)| t).unwrap_or_default(),
               "params": {"name": "checkout"}}),
        json!({"playbook": "failout-zone", "params": {"zone": "zone-a"}, "incident": "INC-1"}),
    ];
    for _ in 0..150 * iterations() {
        let mut payload = alert.clone();
        for _ in 0..=rng.below(3) {
            mutate_json(&mut payload, &mut rng, &hostile);
        }
        post_checked(
            &h.state,
            "/v1/alertmanager",
            payload.to_string().into_bytes(),
        )
        .await;

        let mut body = rng.pick(&runs_bodies).clone();
        for _ in 0..=rng.below(3) {
            mutate_json(&mut body, &mut rng, &hostile);
        }
        post_checked(&h.state, "/v1/runs", body.to_string().into_bytes()).await;
    }
    // Raw bytes: truncations, non-JSON, invalid UTF-8, deep nesting, over the limit.
    let text = alert.to_string().into_bytes();
    for cut in (0..text.len()).step_by((text.len() / 25).max(1)) {
        post_checked(&h.state, "/v1/alertmanager", text[..cut].to_vec()).await;
        post_checked(&h.state, "/v1/runs", text[..cut].to_vec()).await;
    }
    let raw: Vec<Vec<u8>> = vec![
        Vec::new(),
        b"null".to_vec(),
        b"[]".to_vec(),
        b"\"x\"".to_vec(),
        b"{\"alerts\": null}".to_vec(),
        b"{\"alerts\": [{}]}".to_vec(),
        b"{\"alerts\": [{\"status\": \"firing\", \"labels\": {\"alertname\": [1]}}]}".to_vec(),
        b"\xff\xfe\xfd".to_vec(),
        "[".repeat(60_000).into_bytes(),
        format!("{{\"alerts\": [], \"x\": \"{}\"}}", "a".repeat(200 * 1024)).into_bytes(),
        b"{\"playbook\": \"rollback\", \"body\": \"x\"}".to_vec(),
        b"{\"playbook\": \"../../etc/passwd\"}".to_vec(),
        b"{\"body\": \"[[[[[[[[[[\"}".to_vec(),
        b"{\"playbook\": \"rollback\", \"params\": {\"name\": {\"nested\": 1}}}".to_vec(),
    ];
    for body in raw {
        post_checked(&h.state, "/v1/alertmanager", body.clone()).await;
        post_checked(&h.state, "/v1/runs", body).await;
    }
    for path in corpus("api") {
        let bytes = std::fs::read(&path).expect("readable");
        let route = if path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("alertmanager-"))
        {
            "/v1/alertmanager"
        } else {
            "/v1/runs"
        };
        post_checked(&h.state, route, bytes).await;
    }
}

// === cleanup: forged Run resources and journal records (issue 13) ===

/// A live object that looks exactly as a forged record says ripcord left it — but without
/// ripcord's marker for the forged run (someone else's marker, or none).
fn live_as_claimed(touched: &ripcord::cleanup::source::Touched, other_marker: bool) -> Value {
    let mut live = match &touched.inverse {
        Some(ripcord::actions::Inverse::MergePatch { expected, .. }) if expected.is_object() => {
            expected.clone()
        }
        _ => json!({}),
    };
    if other_marker {
        live["metadata"] = json!({"annotations": {
            "ripcord.dev/last-mutation": "r-20261125-000000-real/step"}});
    } else if let Some(meta) = live.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("annotations");
    }
    live
}

/// Plans cleanup of `views` against live objects as the records claim; returns the writes.
fn planned_writes(views: &[ripcord::cleanup::source::RunView], round: usize) -> usize {
    use ripcord::cleanup::revert::{self, Observed, PlanOptions};
    let mut observed = std::collections::HashMap::new();
    for t in views.iter().flat_map(|v| v.touched.iter()) {
        observed.insert(
            t.target.clone(),
            Observed::Present(live_as_claimed(t, round.is_multiple_of(2))),
        );
    }
    let mut writes = 0;
    for (force, roll_forward) in [(false, false), (true, true)] {
        let plan = revert::compute(
            views,
            &observed,
            PlanOptions {
                force,
                roll_forward,
                ramp_pause: None,
            },
        );
        writes += plan.reverts.len() + plan.failbacks.len();
    }
    writes
}

fn forged_run(inverse: &ripcord::actions::Inverse, target: &str) -> Value {
    json!({
        "apiVersion": "ripcord.dev/v1alpha1", "kind": "Run",
        "metadata": {"name": "r-20261125-110000-e011", "namespace": "evil"},
        "spec": {"playbook": "evil", "trigger": "cli", "who": "mallory", "incident": "INC-EVIL",
                 "params": {}},
        "status": {"phase": "Finished", "outcome": "succeeded",
                   "startedAt": "2026-11-25T11:00:00Z",
                   "steps": [{"name": "s", "phase": "Verified", "mutations": [
                       {"id": "m", "target": target,
                        "inverse": serde_json::to_string(inverse).expect("inverse")}]}]}
    })
}

fn forged_inverses() -> Vec<ripcord::actions::Inverse> {
    use ripcord::actions::Inverse;
    vec![
        Inverse::MergePatch {
            patch: json!({"spec": {"replicas": 0}}),
            expected: json!({"spec": {"replicas": 2}}),
        },
        Inverse::MergePatch {
            patch: json!({"spec": {"template": {"spec": {"hostNetwork": true}}}}),
            expected: json!({"spec": {"template": {"spec": {"hostNetwork": null}}}}),
        },
        Inverse::MergePatch {
            patch: json!({"data": {"password": "b3duZWQ="}}),
            expected: json!({"data": {"password": "c2VjcmV0"}}),
        },
        Inverse::NotReverted {
            reason: "x".into(),
            roll_forward: Some(json!({"spec": {"template": {"spec": {"image": "evil:1"}}}})),
        },
    ]
}

#[test]
fn issue13_forged_run_resources_never_make_cleanup_write() {
    let mut rng = Rng(0x5EC0_0001_DEAD_BEEF);
    let hostile = hostile_strings();
    let targets = [
        "deployment/kube-system/coredns",
        "node/zone-a-1",
        "httproute/shop/web",
        "configmap/shop/app",
        "poddisruptionbudget/shop/web",
    ];
    let mut judged = 0;
    for round in 0..300 * iterations() {
        let inverse = rng.pick(&forged_inverses()).clone();
        let target = *rng.pick(&targets[..]);
        let mut run = forged_run(&inverse, target);
        for _ in 0..rng.below(4) {
            mutate_json(&mut run, &mut rng, &hostile);
        }
        let view = bounded("Run resource", move || {
            ripcord::cleanup::source::from_run_resource(&run)
        });
        let Some(view) = view else { continue };
        judged += view.touched.len();
        let writes = planned_writes(std::slice::from_ref(&view), round);
        assert_eq!(
            writes, 0,
            "round {round}: a forged Run made cleanup write: {view:?}"
        );
    }
    assert!(
        judged > 100,
        "the campaign judged {judged} forged mutations"
    );
}

#[test]
fn issue13_forged_and_garbled_journals_never_make_cleanup_write() {
    use ripcord::actions::{Applied, Mutation, ObjectRef};
    let mut rng = Rng(0x5EC0_0002_FEED_F00D);
    let hostile = hostile_strings();
    let dir = tempfile::tempdir().expect("tempdir");
    let kinds = [
        ("apps/v1", "Deployment", Some("kube-system"), "coredns"),
        ("v1", "Secret", Some("shop"), "db"),
        ("v1", "Node", None, "zone-a-1"),
        ("v1", "secret", Some("shop"), "db"),
    ];
    let mut judged = 0;
    for round in 0..100 * iterations() {
        let (api_version, kind, namespace, name) = *rng.pick(&kinds[..]);
        let target = ObjectRef {
            api_version: api_version.into(),
            kind: kind.into(),
            namespace: namespace.map(str::to_string),
            name: name.into(),
        };
        let inverse = rng.pick(&forged_inverses()).clone();
        let run_id = format!("r-20261125-120000-{:04x}", round % 0xffff);
        let records = [
            Record::RunStarted {
                run_id: run_id.clone(),
                playbook: "evil".into(),
                trigger: "cli".into(),
                who: "mallory".into(),
                incident: Some("INC-EVIL".into()),
                params: Default::default(),
                plan: json!({}),
            },
            Record::MutationIntended {
                step: "s".into(),
                mutation: Mutation {
                    id: "m".into(),
                    target: target.clone(),
                    description: "forged".into(),
                    diff: String::new(),
                    pre_image: json!({}),
                    resource_version: None,
                    request: json!({}),
                    inverse: inverse.clone(),
                },
            },
            Record::MutationApplied {
                step: "s".into(),
                mutation_id: "m".into(),
                applied: Applied {
                    id: "m".into(),
                    target,
                    resource_version_after: Some("1".into()),
                },
                resource_version_before: None,
                inverse,
                recovered: false,
            },
        ];
        let mut lines: Vec<Value> = records
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let mut v = serde_json::to_value(r).expect("record");
                v["seq"] = json!(i + 1);
                v["at"] = json!("2026-11-25T12:00:00Z");
                v
            })
            .collect();
        for _ in 0..rng.below(3) {
            let at = rng.below(lines.len());
            mutate_json(&mut lines[at], &mut rng, &hostile);
        }
        let mut bytes: Vec<u8> = Vec::new();
        for line in &lines {
            bytes.extend(serde_json::to_vec(line).expect("json"));
            bytes.push(b'\n');
        }
        if rng.below(4) == 0 {
            // A garbled line in the middle.
            let cut = rng.below(bytes.len());
            bytes.insert(cut, b'{');
        }
        let state = dir.path().join(format!("state-{round}"));
        let run_dir = journal::run_dir(&state, &run_id);
        std::fs::create_dir_all(&run_dir).expect("dir");
        std::fs::write(run_dir.join(journal::JOURNAL_FILE), &bytes).expect("journal");
        let views = bounded("forged journal", move || {
            ripcord::cleanup::source::local_runs(&state).expect("listed")
        });
        judged += views.iter().map(|v| v.touched.len()).sum::<usize>();
        let writes = planned_writes(&views, round);
        assert_eq!(
            writes, 0,
            "round {round}: a forged journal made cleanup write: {views:?}"
        );
    }
    assert!(judged > 50, "the campaign judged {judged} forged mutations");
}
