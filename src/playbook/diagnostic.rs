//! Located diagnostics, rendered like rustc/clippy:
//!
//! ```text
//! error[unknown-field]: unknown field `timout` (in spec.steps[0])
//!   --> playbooks/rollback.yaml:14:7
//!    |
//! 14 |       timout: 5m
//!    |       ^^^^^^
//!    = help: did you mean `timeout`?
//! ```

use serde::Serialize;
use std::fmt;

/// One problem in a playbook, with its position and a hint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Diagnostic {
    /// A stable, low-cardinality kind (`unknown-field`, `bad-duration`…).
    pub kind: &'static str,
    /// The file (or source name) as given.
    pub file: String,
    /// 1-based line (0 when the problem concerns the whole file).
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
    /// How many characters the caret underlines (at least 1).
    pub len: usize,
    /// The source line.
    pub snippet: String,
    /// The YAML path (`spec.steps[0].with.name`), empty for the document.
    pub path: String,
    /// What is wrong.
    pub message: String,
    /// What to do about it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

/// Every problem found in one file. The error type of parsing and validation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
pub struct Diagnostics {
    /// The file (or source name).
    pub file: String,
    /// The problems, in source order.
    pub items: Vec<Diagnostic>,
}

impl Diagnostics {
    /// A stable category.
    pub fn category(&self) -> &'static str {
        "invalid-playbook"
    }

    /// The number of problems.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// True when there is none (never the case for a returned error).
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, item) in self.items.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{item}")?;
        }
        let n = self.items.len();
        write!(
            f,
            "\nerror: {} is not a valid playbook ({n} problem{})",
            self.file,
            if n == 1 { "" } else { "s" }
        )
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "error[{}]: {}", self.kind, self.message)?;
        if !self.path.is_empty() {
            write!(f, " (in {})", self.path)?;
        }
        writeln!(f)?;
        if self.line == 0 {
            writeln!(f, "  --> {}", self.file)?;
        } else {
            let number = self.line.to_string();
            let pad = " ".repeat(number.len());
            writeln!(f, "{pad}--> {}:{}:{}", self.file, self.line, self.column)?;
            writeln!(f, "{pad} |")?;
            writeln!(f, "{number} | {}", self.snippet)?;
            let indent: String = self
                .snippet
                .chars()
                .take(self.column.saturating_sub(1))
                .map(|c| if c == '\t' { '\t' } else { ' ' })
                .collect();
            writeln!(f, "{pad} | {indent}{}", "^".repeat(self.len.max(1)))?;
        }
        if let Some(hint) = &self.hint {
            let pad = " ".repeat(self.line.to_string().len().max(1));
            writeln!(f, "{pad} = help: {hint}")?;
        }
        Ok(())
    }
}

/// Collects diagnostics for one source text.
#[derive(Debug)]
pub struct Collector<'a> {
    file: &'a str,
    lines: Vec<&'a str>,
    items: Vec<Diagnostic>,
}

impl<'a> Collector<'a> {
    /// A collector for `text` named `file`.
    pub fn new(file: &'a str, text: &'a str) -> Self {
        Collector {
            file,
            lines: text.lines().collect(),
            items: Vec::new(),
        }
    }

    /// Records a problem at `line:column`.
    #[allow(clippy::too_many_arguments)]
    pub fn push(
        &mut self,
        kind: &'static str,
        line: usize,
        column: usize,
        len: usize,
        path: &str,
        message: impl Into<String>,
        hint: Option<String>,
    ) {
        let snippet = line
            .checked_sub(1)
            .and_then(|i| self.lines.get(i))
            .map(|l| l.trim_end().to_string())
            .unwrap_or_default();
        let available = snippet
            .chars()
            .count()
            .saturating_sub(column.saturating_sub(1));
        let len = len.clamp(1, available.max(1));
        self.items.push(Diagnostic {
            kind,
            file: self.file.to_string(),
            line,
            column: column.max(usize::from(line > 0)),
            len,
            snippet,
            path: path.to_string(),
            message: message.into(),
            hint,
        });
    }

    /// True when nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The collected problems, sorted by position, or `Ok(())` when there are none.
    pub fn finish(mut self) -> Result<(), Diagnostics> {
        if self.items.is_empty() {
            return Ok(());
        }
        self.items.sort_by_key(|item| (item.line, item.column));
        self.items.dedup();
        Err(Diagnostics {
            file: self.file.to_string(),
            items: self.items,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_like_rustc() {
        let text = "steps:\n  - name: a\n    timout: 5m\n";
        let mut c = Collector::new("x.yaml", text);
        c.push(
            "unknown-field",
            3,
            5,
            6,
            "spec.steps[0]",
            "unknown field `timout`",
            Some("did you mean `timeout`?".into()),
        );
        let Err(d) = c.finish() else {
            panic!("no diagnostics");
        };
        let shown = d.to_string();
        assert!(shown.contains("error[unknown-field]: unknown field `timout` (in spec.steps[0])"));
        assert!(shown.contains(" --> x.yaml:3:5"));
        assert!(
            shown.contains("3 |     timout: 5m\n  |     ^^^^^^\n"),
            "{shown}"
        );
        assert!(shown.contains("= help: did you mean `timeout`?"));
    }
}
