//! The playbook language end to end through the library: every fixture under
//! `tests/data/playbooks/{pass,fail}` (snapshot-tested with insta: the rendered diagnostics of
//! each fail fixture, the offline plan of each pass fixture), the built-in playbooks, the
//! committed JSON Schema, planning rules, and a bounded fuzz-style check that no input panics.
//!
//! Snapshots live in `tests/snapshots/playbooks__*.snap`; accept changes with
//! `INSTA_UPDATE=always cargo test --test playbooks` and review the diff.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code may fail loudly

use ripcord::plan::{self, PlanError};
use ripcord::playbook::{self, Action, ValidPlaybook};
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const PASS_DIR: &str = "tests/data/playbooks/pass";
const FAIL_DIR: &str = "tests/data/playbooks/fail";

/// Fixture files of a directory, sorted, as paths relative to the crate root (so diagnostics
/// and snapshots do not depend on where the checkout lives).
fn fixtures(dir: &str) -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files: Vec<PathBuf> = std::fs::read_dir(root.join(dir))
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
                .filter_map(|p| p.file_name().map(|n| Path::new(dir).join(n)))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    assert!(!files.is_empty(), "no fixtures in {dir}");
    files
}

fn read(path: &Path) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(root.join(path)).unwrap_or_default()
}

fn load(path: &Path) -> Result<ValidPlaybook, playbook::Diagnostics> {
    // Relative name in diagnostics, absolute path for reading.
    playbook::parse_str(&path.display().to_string(), &read(path))
}

fn stem(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The `# params: a=b c=d` line of a pass fixture.
fn fixture_params(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .find_map(|l| l.strip_prefix("# params:"))
        .map(|rest| {
            rest.split_whitespace()
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        })
        .unwrap_or_default()
}

fn params(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn every_pass_fixture_validates_and_plans() {
    for path in fixtures(PASS_DIR) {
        let valid = match load(&path) {
            Ok(valid) => valid,
            Err(d) => panic!("{} should be valid:\n{d}", path.display()),
        };
        let text = read(&path);
        let plan = match plan::plan(&valid, &fixture_params(&text), "r-test") {
            Ok(plan) => plan,
            Err(err) => panic!("{} should plan: {err}", path.display()),
        };
        assert_eq!(plan.steps.len(), valid.playbook().spec.steps.len());
        insta::assert_snapshot!(format!("pass_{}", stem(&path)), plan.render_text());
    }
}

#[test]
fn every_fail_fixture_reports_located_diagnostics() {
    for path in fixtures(FAIL_DIR) {
        let diagnostics = match load(&path) {
            Ok(_) => panic!("{} should be invalid", path.display()),
            Err(d) => d,
        };
        assert!(!diagnostics.is_empty(), "{}", path.display());
        for item in &diagnostics.items {
            assert_eq!(item.file, path.display().to_string());
            if item.kind != "empty" {
                assert!(item.line > 0 && item.column > 0, "{item:?}");
                assert!(!item.snippet.is_empty(), "{item:?}");
            }
        }
        insta::assert_snapshot!(format!("fail_{}", stem(&path)), diagnostics.to_string());
    }
}

#[test]
fn fail_fixtures_cover_every_error_kind() {
    let mut kinds = BTreeSet::new();
    for path in fixtures(FAIL_DIR) {
        if let Err(d) = load(&path) {
            kinds.extend(d.items.iter().map(|i| i.kind));
        }
    }
    for kind in [
        "yaml",
        "empty",
        "unknown-field",
        "unknown-action",
        "wrong-type",
        "missing-field",
        "undefined-param",
        "duplicate-step",
        "bad-duration",
        "bad-value",
        "invalid-args",
        "invalid-param",
        "template",
        "duplicate-key",
    ] {
        assert!(
            kinds.contains(kind),
            "no fail fixture produces `{kind}`: {kinds:?}"
        );
    }
}

#[test]
fn validation_collects_every_problem_not_just_the_first() {
    let path = Path::new(FAIL_DIR).join("many-problems.yaml");
    let Err(d) = load(&path) else {
        panic!("many-problems.yaml should be invalid");
    };
    let kinds: Vec<&str> = d.items.iter().map(|i| i.kind).collect();
    assert_eq!(
        kinds,
        [
            "bad-value",
            "undefined-param",
            "wrong-type",
            "bad-duration",
            "duplicate-step",
            "unknown-action",
            "unknown-field"
        ]
    );
    let lines: Vec<usize> = d.items.iter().map(|i| i.line).collect();
    let mut sorted = lines.clone();
    sorted.sort();
    assert_eq!(lines, sorted, "diagnostics come in source order");
}

#[test]
fn builtin_playbooks_validate_and_plan() {
    assert_eq!(
        playbook::builtin_names(),
        [
            "rollback",
            "failout-zone",
            "failback-zone",
            "rolling-restart"
        ]
    );
    let samples = [
        ("rollback", params(&[("name", "checkout")])),
        ("failout-zone", params(&[("zone", "zone-b")])),
        ("failback-zone", params(&[("zone", "zone-b")])),
        ("rolling-restart", params(&[("name", "checkout")])),
    ];
    for (name, given) in samples {
        let Some((file, text)) = playbook::builtin(name) else {
            panic!("no built-in {name}");
        };
        // The embedded text is the shipped file.
        assert_eq!(read(&Path::new("playbooks").join(file)), text, "{name}");
        let valid = match playbook::load_file(format!("builtin:{name}")) {
            Ok(v) => v,
            Err(d) => panic!("{d}"),
        };
        assert_eq!(valid.name(), name);
        let planned = plan::plan(&valid, &given, "r-1");
        assert!(planned.is_ok(), "{name}: {planned:?}");
    }
    assert!(playbook::builtin("nope").is_none());
}

#[test]
fn rollback_builtin_resolves_to_the_documented_steps() {
    let valid = playbook::load_builtin("rollback").map_err(|d| d.to_string());
    let Ok(valid) = valid else {
        panic!("{valid:?}");
    };
    let planned = plan::plan(
        &valid,
        &params(&[("name", "checkout"), ("toRevision", "4")]),
        "r-9",
    );
    let Ok(planned) = planned else {
        panic!("{planned:?}");
    };
    assert_eq!(planned.lock.as_deref(), Some("deployment/default/checkout"));
    assert!(planned.snapshot.enabled);
    let names: Vec<&str> = planned.steps.iter().map(|s| s.action.name()).collect();
    assert_eq!(names, ["deployment.rollback", "deployment.waitRolledOut"]);
    let Action::DeploymentRollback(args) = &planned.steps[0].action else {
        panic!("first step is not a rollback");
    };
    assert_eq!(args.to_revision, Some(4));
    assert_eq!(args.namespace.as_deref(), Some("default"));
    assert!(!args.known_good);
    assert!(
        planned
            .steps
            .iter()
            .all(|s| s.on_failure == playbook::OnFailure::Abort)
    );

    // Without toRevision the optional argument is left out (the previous revision).
    let planned = plan::plan(&valid, &params(&[("name", "checkout")]), "r-9");
    let Ok(planned) = planned else {
        panic!("{planned:?}");
    };
    let Action::DeploymentRollback(args) = &planned.steps[0].action else {
        panic!("first step is not a rollback");
    };
    assert_eq!(args.to_revision, None);
}

#[test]
fn committed_schema_is_current() {
    let committed = read(Path::new("schema/playbook.schema.json"));
    let generated = playbook::schema::playbook_schema_text();
    assert!(
        committed == generated,
        "schema/playbook.schema.json is stale; regenerate it with \
         `cargo run -- schema > schema/playbook.schema.json` and commit it"
    );
}

#[test]
fn schema_accepts_the_shape_of_every_catalog_action() {
    let schema = playbook::schema::playbook_schema();
    let rules = schema
        .pointer("/$defs/Step/allOf")
        .and_then(|r| r.as_array())
        .cloned()
        .unwrap_or_default();
    let named: BTreeSet<String> = rules
        .iter()
        .filter_map(|r| r.pointer("/if/properties/action/const"))
        .filter_map(|c| c.as_str().map(str::to_string))
        .collect();
    let catalog: BTreeSet<String> = Action::all_names().iter().map(|s| s.to_string()).collect();
    assert_eq!(named, catalog);
}

fn minimal(params_yaml: &str, with_yaml: &str, action: &str) -> String {
    format!(
        "apiVersion: ripcord.dev/v1alpha1\nkind: Playbook\nmetadata:\n  name: t\nspec:\n  \
         params:\n{params_yaml}\n  steps:\n    - name: s\n      action: {action}\n      with:\n{with_yaml}\n"
    )
}

fn parse_ok(text: &str) -> ValidPlaybook {
    match playbook::parse_str("t.yaml", text) {
        Ok(v) => v,
        Err(d) => panic!("{d}\n---\n{text}"),
    }
}

#[test]
fn whole_references_keep_the_parameter_type() {
    let text = minimal(
        "    replicas: {type: integer, default: 2}\n    name: {type: string, required: true}",
        "        name: app-$(params.name)\n        replicas: $(params.replicas)",
        "deployment.scale",
    );
    let valid = parse_ok(&text);
    let planned = plan::plan(&valid, &params(&[("name", "a"), ("replicas", "7")]), "r");
    let Ok(planned) = planned else {
        panic!("{planned:?}");
    };
    let as_json = serde_json::to_value(&planned.steps[0].action).unwrap_or_default();
    assert_eq!(
        as_json,
        json!({"action": "deployment.scale", "with": {"name": "app-a", "replicas": 7}})
    );
    assert_eq!(planned.params["replicas"], json!(7));
}

#[test]
fn parameter_errors_name_the_parameter() {
    let text = minimal(
        "    replicas: {type: integer, default: 2}\n    name: {type: string, required: true}\n    \
         mode: {type: enum, values: [fast, slow], default: slow}\n    flag: {type: boolean, default: false}\n    \
         pause: {type: duration, default: 1s}",
        "        name: $(params.name)\n        replicas: $(params.replicas)",
        "deployment.scale",
    );
    let valid = parse_ok(&text);

    let missing = plan::plan(&valid, &BTreeMap::new(), "r");
    assert!(
        matches!(&missing, Err(PlanError::MissingParam { name, .. }) if name == "name"),
        "{missing:?}"
    );

    let unknown = plan::plan(&valid, &params(&[("name", "a"), ("replicsa", "3")]), "r");
    let message = unknown.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(
        message.contains("unknown parameter `replicsa` (did you mean `replicas`?)"),
        "{message}"
    );

    for (key, value, expected) in [
        ("replicas", "three", "`three` is not an integer"),
        ("flag", "yes", "`yes` is not `true` or `false`"),
        ("mode", "fsat", "did you mean `fast`?"),
        ("pause", "10", "missing unit"),
    ] {
        let err = plan::plan(&valid, &params(&[("name", "a"), (key, value)]), "r").err();
        let message = err.as_ref().map(ToString::to_string).unwrap_or_default();
        assert!(
            matches!(err, Some(PlanError::InvalidParam { ref name, .. }) if name == key),
            "{key}: {message}"
        );
        assert!(message.contains(expected), "{key}: {message}");
    }

    // Every problem at once.
    let several = plan::plan(&valid, &params(&[("replicas", "x"), ("bogus", "1")]), "r");
    let Err(PlanError::Several { errors }) = several else {
        panic!("{several:?}");
    };
    assert_eq!(errors.len(), 3);
}

#[test]
fn arguments_that_do_not_fit_after_substitution_name_step_and_field() {
    let text = minimal(
        "    batch: {type: string, default: \"25%\"}\n    n: {type: string, default: x}",
        "        name: $(params.n)\n        batch: $(params.batch)",
        "deployment.restart",
    );
    let valid = parse_ok(&text);
    let err = plan::plan(&valid, &params(&[("batch", "250%")]), "r").err();
    let Some(PlanError::StepArgs { step, field, .. }) = &err else {
        panic!("{err:?}");
    };
    assert_eq!(step, "s");
    assert_eq!(field.as_deref(), Some("batch"));
    let ok = plan::plan(&valid, &params(&[("batch", "3")]), "r");
    assert!(ok.is_ok(), "{ok:?}");
}

#[test]
fn a_bad_value_fed_by_a_parameter_names_the_nested_field() {
    let text = minimal(
        "    op: {type: string, default: gt}",
        "        query: up\n        op: $(params.op)\n        threshold: 1",
        "gate.prometheus",
    );
    let valid = parse_ok(&text);
    let err = plan::plan(&valid, &params(&[("op", "greater")]), "r").err();
    let Some(PlanError::StepArgs { field, reason, .. }) = &err else {
        panic!("{err:?}");
    };
    assert_eq!(field.as_deref(), Some("op"));
    assert!(
        reason.contains("`greater` is not a valid value"),
        "{reason}"
    );
    let message = err.map(|e| e.to_string()).unwrap_or_default();
    assert!(
        message.starts_with("step `s` (gate.prometheus): argument `op`: "),
        "{message}"
    );
}

#[test]
fn run_id_and_escapes_are_substituted() {
    let text = minimal(
        "    n: {type: string, default: x}",
        "        message: \"run $(run.id) costs $$(params.n) and $(params.n)\"",
        "notify",
    );
    let valid = parse_ok(&text);
    let planned = plan::plan(&valid, &BTreeMap::new(), "r-42");
    let Ok(planned) = planned else {
        panic!("{planned:?}");
    };
    let Action::Notify(message) = &planned.steps[0].action else {
        panic!("not a notify step");
    };
    assert_eq!(message.message, "run r-42 costs $(params.n) and x");
}

#[test]
fn plan_round_trips_through_json() {
    let path = Path::new(PASS_DIR).join("full-featured.yaml");
    let valid = match load(&path) {
        Ok(v) => v,
        Err(d) => panic!("{d}"),
    };
    let planned = plan::plan(&valid, &fixture_params(&read(&path)), "r-json");
    let Ok(planned) = planned else {
        panic!("{planned:?}");
    };
    let text = serde_json::to_string(&planned).unwrap_or_default();
    let back: Result<plan::Plan, _> = serde_json::from_str(&text);
    assert_eq!(back.ok().as_ref(), Some(&planned));
    assert!(planned.has_mutations());
}

#[test]
fn inline_webhook_urls_never_reach_the_serialized_plan() {
    let text = "apiVersion: ripcord.dev/v1alpha1\nkind: Playbook\nmetadata:\n  name: t\nspec:\n  \
                notify:\n    channels:\n      - name: oncall\n        type: webhook\n        \
                url: https://hooks.example/very-secret-token\n  steps:\n    - name: s\n      \
                action: notify\n      with: {message: hi}\n";
    let valid = parse_ok(text);
    let planned = plan::plan(&valid, &BTreeMap::new(), "r");
    let Ok(planned) = planned else {
        panic!("{planned:?}");
    };
    assert_eq!(
        planned.notify[0].url.as_deref(),
        Some("https://hooks.example/very-secret-token")
    );
    let json = serde_json::to_string(&planned).unwrap_or_default();
    assert!(!json.contains("very-secret-token"), "{json}");
    assert!(json.contains("oncall"));
}

/// A small deterministic generator (xorshift), so failures reproduce.
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
}

fn must_not_panic(text: &str) {
    let outcome = std::panic::catch_unwind(|| {
        let _ = playbook::parse_str("fuzz.yaml", text).map_err(|d| d.to_string());
    });
    assert!(outcome.is_ok(), "parser panicked on input:\n{text:?}");
}

#[test]
fn no_input_panics_the_parser() {
    let mut rng = Rng(0x5eed_1234_abcd_ef01);
    // Truncations and byte mutations of every fixture and built-in.
    let mut corpus: Vec<String> = fixtures(PASS_DIR)
        .iter()
        .chain(fixtures(FAIL_DIR).iter())
        .map(|p| read(p))
        .collect();
    corpus.extend(
        playbook::builtin_names()
            .iter()
            .filter_map(|n| playbook::builtin(n))
            .map(|(_, t)| t.to_string()),
    );
    let alphabet: Vec<char> = " \t\n-:{}[],&*!|>'\"#%@`$()?\\0aZ9.".chars().collect();
    for text in &corpus {
        let chars: Vec<char> = text.chars().collect();
        let step = (chars.len() / 40).max(1);
        for cut in (0..chars.len()).step_by(step) {
            must_not_panic(&chars[..cut].iter().collect::<String>());
        }
        for _ in 0..40 {
            let mut mutated = chars.clone();
            for _ in 0..=rng.below(4) {
                if mutated.is_empty() {
                    break;
                }
                let at = rng.below(mutated.len());
                mutated[at] = alphabet[rng.below(alphabet.len())];
            }
            must_not_panic(&mutated.iter().collect::<String>());
        }
    }
    // Random token soup.
    for _ in 0..500 {
        let len = rng.below(200);
        let soup: String = (0..len)
            .map(|_| alphabet[rng.below(alphabet.len())])
            .collect();
        must_not_panic(&soup);
    }
    // Deep nesting in every style.
    must_not_panic(&"[".repeat(50_000));
    must_not_panic(&"{a: ".repeat(20_000));
    must_not_panic(&"- ".repeat(20_000));
    let indented: String = (0..2_000)
        .map(|i| format!("{}k{i}:\n", " ".repeat(i)))
        .collect();
    must_not_panic(&indented);
    // Alias expansion bomb.
    let mut bomb = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 0..9 {
        let prev = if i == 0 {
            "a".to_string()
        } else {
            format!("l{}", i - 1)
        };
        let refs = vec![format!("*{prev}"); 10].join(", ");
        bomb.push_str(&format!("l{i}: &l{i} [{refs}]\n"));
    }
    must_not_panic(&bomb);
}
