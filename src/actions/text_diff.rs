//! Readable diffs for `--dry-run`, `plan` and journals: JSON values rendered as YAML and
//! compared line by line (longest common subsequence), printed like `diff -u` with a little
//! context.

use serde_json::Value;

/// Lines of context kept around each change.
const CONTEXT: usize = 2;
/// Inputs longer than this (in lines) are not diffed line by line (quadratic cost); the diff
/// then shows both sides in full.
const MAX_LINES: usize = 2000;

/// Renders a JSON value as YAML (falls back to pretty JSON).
pub fn render(value: &Value) -> String {
    serde_saphyr::to_string(value)
        .or_else(|_| serde_json::to_string_pretty(value))
        .unwrap_or_default()
}

/// A unified-style diff of two JSON values rendered as YAML; empty when they are equal.
pub fn diff_values(before: &Value, after: &Value) -> String {
    diff_text(&render(before), &render(after))
}

/// A unified-style diff of two texts (`-` removed, `+` added, two spaces: context; `...`
/// separates hunks). Empty when the texts are equal.
pub fn diff_text(before: &str, after: &str) -> String {
    if before == after {
        return String::new();
    }
    let a: Vec<&str> = before.lines().collect();
    let b: Vec<&str> = after.lines().collect();
    if a.len() > MAX_LINES || b.len() > MAX_LINES {
        let mut out = String::new();
        for line in &a {
            out.push_str(&format!("-{line}\n"));
        }
        for line in &b {
            out.push_str(&format!("+{line}\n"));
        }
        return out;
    }
    // lcs[i][j]: length of the LCS of a[i..] and b[j..].
    let mut lcs = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let mut ops: Vec<(char, &str)> = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            ops.push((' ', a[i]));
            i += 1;
            j += 1;
        } else if i < a.len() && (j == b.len() || lcs[i + 1][j] >= lcs[i][j + 1]) {
            // Removals first, like `diff -u`.
            ops.push(('-', a[i]));
            i += 1;
        } else {
            ops.push(('+', b[j]));
            j += 1;
        }
    }
    let changed: Vec<usize> = ops
        .iter()
        .enumerate()
        .filter(|(_, (op, _))| *op != ' ')
        .map(|(k, _)| k)
        .collect();
    let keep = |k: usize| {
        changed
            .iter()
            .any(|&c| k + CONTEXT >= c && k <= c + CONTEXT)
    };
    let mut out = String::new();
    let mut skipped = false;
    for (k, (op, line)) in ops.iter().enumerate() {
        if keep(k) {
            if skipped && !out.is_empty() {
                out.push_str("...\n");
            }
            skipped = false;
            let mark = if *op == ' ' { ' ' } else { *op };
            out.push(mark);
            out.push(' ');
            out.push_str(line);
            out.push('\n');
        } else {
            skipped = true;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn equal_values_have_an_empty_diff() {
        let v = json!({"a": 1, "b": [1, 2]});
        assert_eq!(diff_values(&v, &v), "");
    }

    #[test]
    fn changed_lines_are_marked_with_context() {
        let before = json!({"spec": {"containers": [{"name": "web", "image": "web:7"}]}, "z": 1});
        let after = json!({"spec": {"containers": [{"name": "web", "image": "web:6"}]}, "z": 1});
        let d = diff_values(&before, &after);
        assert!(d.contains("- ") && d.contains("web:7"), "{d}");
        assert!(d.contains("+ ") && d.contains("web:6"), "{d}");
        assert_eq!(d.lines().filter(|l| l.starts_with('+')).count(), 1, "{d}");
        let minus = d.find("- ").unwrap_or(usize::MAX);
        let plus = d.find("+ ").unwrap_or(0);
        assert!(minus < plus, "removals come first: {d}");
    }

    #[test]
    fn distant_changes_are_separate_hunks() {
        let before: String = (0..20).map(|i| format!("line {i}\n")).collect();
        let after = before
            .replace("line 1\n", "line one\n")
            .replace("line 18\n", "line eighteen\n");
        let d = diff_text(&before, &after);
        assert!(d.contains("...\n"), "{d}");
        assert!(!d.contains("line 10"), "{d}");
    }
}
