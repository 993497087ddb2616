//! The run and incident report: the raw material of a postmortem.
//!
//! A timeline of notifications, steps, mutations and verifications (with durations), the
//! impact metrics before/during/after as a small inline SVG line graph (from the snapshots'
//! recorded Prometheus queries; "no impact metrics recorded" otherwise), what cleanup did, and
//! the verify result. Rendered as Markdown or as one self-contained HTML page (inline CSS, no
//! JavaScript, every text escaped).

use super::incident::Incident;
use super::source::{ClusterRunDetails, RunOrigin, RunView};
use super::verify::VerifyReport;
use crate::html::escape as escape_html;
use crate::journal::Record;
use serde_json::Value;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Markdown (with the graph as inline SVG).
    Markdown,
    /// One self-contained HTML page.
    Html,
}

/// One impact metric over time.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricSeries {
    /// The metric's name.
    pub name: String,
    /// The PromQL query.
    pub query: String,
    /// `(unix seconds, value)`, sorted by time.
    pub points: Vec<(f64, f64)>,
}

/// What a cleanup run decided, from its `cleanup-plan.json`.
#[derive(Debug, Clone, PartialEq)]
pub struct CleanupRecord {
    /// The cleanup run.
    pub run_id: String,
    /// The plan as written (see [`super::revert::CleanupPlan`]).
    pub plan: Value,
}

/// Everything a report shows.
#[derive(Debug, Clone)]
pub struct ReportInput {
    /// The heading.
    pub title: String,
    /// The incident, for an incident report.
    pub incident: Option<Incident>,
    /// The runs (mitigations and cleanups), oldest first.
    pub runs: Vec<RunView>,
    /// Cleanup plans.
    pub cleanups: Vec<CleanupRecord>,
    /// The last verify result.
    pub verify: Option<VerifyReport>,
    /// Impact metrics.
    pub metrics: Vec<MetricSeries>,
    /// When the report was made.
    pub generated_at: jiff::Timestamp,
    /// What the cluster's `Run` resources say about the runs whose journal is not on this
    /// machine (one entry per run in `runs` with a [`RunOrigin::Cluster`] origin).
    pub cluster: Vec<ClusterRunDetails>,
    /// Caveats about the sources, shown under the title (e.g. the cluster could not be read).
    pub notes: Vec<String>,
}

/// One line of the timeline.
#[derive(Debug, Clone, PartialEq)]
pub struct TimelineEvent {
    /// When.
    pub at: jiff::Timestamp,
    /// The run.
    pub run_id: String,
    /// `run`, `notification`, `snapshot`, `step`, `mutation`, `approval`, `verification`,
    /// `guard`, `undo`.
    pub category: &'static str,
    /// What happened.
    pub text: String,
    /// How long it took (a step's end: since its plan; a run's end: the run's duration).
    pub duration: Option<std::time::Duration>,
}

/// The timeline of `runs`, in time order.
pub fn timeline(runs: &[RunView]) -> Vec<TimelineEvent> {
    let mut out = Vec::new();
    for run in runs {
        let mut step_started: Vec<(String, jiff::Timestamp)> = Vec::new();
        for entry in &run.entries {
            let record = &entry.record;
            let category = match record {
                Record::RunStarted { .. }
                | Record::RunResumed { .. }
                | Record::RunFinished { .. } => "run",
                Record::Notified { .. } => "notification",
                Record::SnapshotTaken { .. } | Record::SnapshotFailed { .. } => "snapshot",
                Record::StepPlanned { .. } | Record::StepAlreadySatisfied { .. } => "step",
                Record::MutationIntended { .. } | Record::MutationApplied { .. } => "mutation",
                Record::StepVerified { .. } | Record::StepFailed { .. } => "verification",
                Record::GuardTripped { .. } | Record::GuardUnavailable { .. } => "guard",
                Record::UndoApplied { .. } => "undo",
                Record::Approved { .. } => "approval",
                Record::MirrorFailed { .. } => "run",
            };
            let duration = match record {
                Record::StepPlanned { step, .. } => {
                    if !step_started.iter().any(|(s, _)| s == step) {
                        step_started.push((step.clone(), entry.at));
                    }
                    None
                }
                Record::StepVerified { step }
                | Record::StepFailed { step, .. }
                | Record::StepAlreadySatisfied { step, .. } => step_started
                    .iter()
                    .find(|(s, _)| s == step)
                    .and_then(|(_, t)| std::time::Duration::try_from(entry.at - *t).ok()),
                Record::RunFinished { duration_ms, .. } => {
                    Some(std::time::Duration::from_millis(*duration_ms))
                }
                _ => None,
            };
            out.push(TimelineEvent {
                at: entry.at,
                run_id: run.run_id.clone(),
                category,
                text: record.describe(),
                duration,
            });
        }
        if run.entries.is_empty() {
            // A run known only from its `Run` resource: what the resource says.
            if let Some(at) = run.started_at {
                out.push(TimelineEvent {
                    at,
                    run_id: run.run_id.clone(),
                    category: "run",
                    text: format!(
                        "run started: playbook {} by {} (from the cluster's Run resource; {} mutations)",
                        run.playbook,
                        run.who,
                        run.touched.len()
                    ),
                    duration: None,
                });
            }
            if let (Some(at), Some(outcome)) = (run.finished_at, run.outcome) {
                out.push(TimelineEvent {
                    at,
                    run_id: run.run_id.clone(),
                    category: "run",
                    text: format!("run finished: {outcome}"),
                    duration: run
                        .started_at
                        .and_then(|s| std::time::Duration::try_from(at - s).ok()),
                });
            }
        }
    }
    out.sort_by_key(|e| e.at);
    out
}

/// Reads the impact metrics recorded in the runs' snapshots (`<dir>/metrics/*.json`), merging
/// the series of the same name.
pub fn collect_metrics(runs: &[RunView]) -> Vec<MetricSeries> {
    let mut dirs: Vec<PathBuf> = Vec::new();
    for run in runs {
        let run_dir = match &run.origin {
            super::source::RunOrigin::Journal { path } => path.parent().map(Path::to_path_buf),
            super::source::RunOrigin::Cluster { .. } => None,
        };
        for entry in &run.entries {
            if let Record::SnapshotTaken { dir, .. } = &entry.record {
                let dir = PathBuf::from(dir);
                let dir = match (&run_dir, dir.is_relative()) {
                    (Some(base), true) => base.join(dir),
                    _ => dir,
                };
                if !dirs.contains(&dir) {
                    dirs.push(dir);
                }
            }
        }
    }
    let mut series: Vec<MetricSeries> = Vec::new();
    for dir in dirs {
        let Ok(files) = std::fs::read_dir(dir.join("metrics")) else {
            continue;
        };
        for file in files.flatten() {
            let Ok(bytes) = std::fs::read(file.path()) else {
                continue;
            };
            let Ok(value) = serde_json::from_slice::<Value>(&bytes) else {
                continue;
            };
            let Some(name) = value.get("name").and_then(Value::as_str) else {
                continue;
            };
            let query = value
                .get("query")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            let mut points: Vec<(f64, f64)> = value
                .pointer("/range/values")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|p| Some((p.get(0)?.as_f64()?, p.get(1)?.as_f64()?)))
                .collect();
            if let (Some(at), Some(v)) = (
                value.get("at").and_then(Value::as_f64),
                value.get("value").and_then(Value::as_f64),
            ) {
                points.push((at, v));
            }
            match series.iter_mut().find(|s| s.name == name) {
                Some(existing) => existing.points.extend(points),
                None => series.push(MetricSeries {
                    name: name.to_string(),
                    query,
                    points,
                }),
            }
        }
    }
    for s in &mut series {
        s.points.retain(|(t, v)| t.is_finite() && v.is_finite());
        s.points.sort_by(|a, b| a.0.total_cmp(&b.0));
        s.points.dedup_by(|a, b| a.0 == b.0);
    }
    series.retain(|s| !s.points.is_empty());
    series.sort_by(|a, b| a.name.cmp(&b.name));
    series
}

/// Escapes text for a Markdown table cell.
fn escape_md(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('|', "\\|")
        .replace('\n', " ")
        .replace('`', "\\`")
}

const COLORS: &[&str] = &[
    "#d62728", "#1f77b4", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b",
];

/// A moment marked on the impact graph: a mitigation run starting or finishing.
#[derive(Debug, Clone, PartialEq)]
pub struct GraphMark {
    /// Unix seconds.
    pub at: f64,
    /// The label (`r-… started`).
    pub label: String,
}

/// The unit of a metric, guessed from its name and query (Prometheus naming conventions):
/// `_seconds`/latency/duration → `s`, `percent` → `%`, `ratio` → `ratio`, `_bytes` → `B`, a
/// `rate(`/`irate(` query → `/s`; else none (a count).
pub fn metric_unit(name: &str, query: &str) -> &'static str {
    let text = format!("{name} {query}").to_ascii_lowercase();
    // Durations first: "duration" contains "ratio".
    if text.contains("_seconds") || text.contains("latency") || text.contains("duration") {
        "s"
    } else if text.contains("percent") {
        "%"
    } else if text.contains("ratio") {
        "ratio"
    } else if text.contains("_bytes") {
        "B"
    } else if text.contains("rate(") {
        "/s"
    } else {
        ""
    }
}

/// The one SVG chart (HTML reports and the daemon's status page): one panel per metric, each
/// with its own value axis labelled with the metric's unit, on a shared time axis; the
/// mitigation window shaded and every mark (a run's start and finish) drawn as a labelled
/// vertical line in every panel. Samples that are not finite (Prometheus answers `NaN`) are
/// left out; nothing to draw is `""`. Inline, no scripts; it shrinks to a narrow container.
pub fn svg_graph(
    series: &[MetricSeries],
    window: Option<(f64, f64)>,
    marks: &[GraphMark],
) -> String {
    let finite: Vec<MetricSeries> = series
        .iter()
        .map(|s| MetricSeries {
            name: s.name.clone(),
            query: s.query.clone(),
            points: s
                .points
                .iter()
                .copied()
                .filter(|(t, v)| t.is_finite() && v.is_finite())
                .collect(),
        })
        .filter(|s| !s.points.is_empty())
        .collect();
    let series = finite.as_slice();
    let marks: Vec<&GraphMark> = marks.iter().filter(|m| m.at.is_finite()).collect();
    let w = 720.0_f64;
    let panel_h = 140.0_f64;
    let (left, right, top, gap, bottom) = (72.0_f64, 16.0_f64, 18.0_f64, 30.0_f64, 28.0_f64);
    let mut t_min = f64::INFINITY;
    let mut t_max = f64::NEG_INFINITY;
    for s in series {
        for (t, _) in &s.points {
            t_min = t_min.min(*t);
            t_max = t_max.max(*t);
        }
    }
    if let Some((a, b)) = window {
        t_min = t_min.min(a);
        t_max = t_max.max(b);
    }
    for m in &marks {
        t_min = t_min.min(m.at);
        t_max = t_max.max(m.at);
    }
    if !t_min.is_finite() || !t_max.is_finite() || series.is_empty() {
        return String::new();
    }
    if t_max <= t_min {
        t_max = t_min + 1.0;
    }
    let h = top + series.len() as f64 * (panel_h + gap) + bottom;
    let x = |t: f64| left + (t - t_min) / (t_max - t_min) * (w - left - right);
    let mut out = String::new();
    let _ = write!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" class="graph" width="{w}" height="{h}" viewBox="0 0 {w} {h}" style="max-width:100%;height:auto" role="img" aria-label="impact metrics, one panel per metric">"#
    );
    let _ = write!(
        out,
        r##"<rect x="0" y="0" width="{w}" height="{h}" fill="#ffffff"/>"##
    );
    for (i, s) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let unit = metric_unit(&s.name, &s.query);
        let p_top = top + i as f64 * (panel_h + gap) + 14.0;
        let p_bottom = p_top + panel_h - 14.0;
        let mut v_min = 0.0_f64;
        let mut v_max = 0.0_f64;
        for (_, v) in &s.points {
            v_min = v_min.min(*v);
            v_max = v_max.max(*v);
        }
        if v_max <= v_min {
            v_max = v_min + 1.0;
        }
        let v_top = v_max * 1.1;
        let y = |v: f64| p_top + (1.0 - (v - v_min) / (v_top - v_min)) * (p_bottom - p_top);
        // Title with the unit.
        let title = if unit.is_empty() {
            s.name.clone()
        } else {
            format!("{} ({unit})", s.name)
        };
        let _ = write!(
            out,
            r#"<text x="{left}" y="{:.1}" font-size="12" font-weight="bold" fill="{color}">{}</text>"#,
            p_top - 4.0,
            escape_html(&title)
        );
        if let Some((a, b)) = window {
            let _ = write!(
                out,
                r##"<rect x="{:.1}" y="{p_top:.1}" width="{:.1}" height="{:.1}" fill="#fff3cd"/>"##,
                x(a),
                (x(b) - x(a)).max(1.0),
                p_bottom - p_top
            );
        }
        // Axes.
        let _ = write!(
            out,
            r##"<line x1="{left}" y1="{p_bottom:.1}" x2="{:.1}" y2="{p_bottom:.1}" stroke="#444"/><line x1="{left}" y1="{p_top:.1}" x2="{left}" y2="{p_bottom:.1}" stroke="#444"/>"##,
            w - right
        );
        for value in [v_min, v_max] {
            let _ = write!(
                out,
                r##"<text x="{:.1}" y="{:.1}" font-size="10" text-anchor="end" fill="#444">{} {}</text>"##,
                left - 4.0,
                y(value) + 3.0,
                escape_html(&format_value(value)),
                escape_html(unit)
            );
        }
        for m in &marks {
            let _ = write!(
                out,
                r##"<line x1="{0:.1}" y1="{p_top:.1}" x2="{0:.1}" y2="{p_bottom:.1}" stroke="#8a6d3b" stroke-dasharray="3,2"/>"##,
                x(m.at)
            );
        }
        let points: Vec<String> = s
            .points
            .iter()
            .map(|(t, v)| format!("{:.1},{:.1}", x(*t), y(*v)))
            .collect();
        let _ = write!(
            out,
            r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"/>"#,
            points.join(" ")
        );
    }
    // The shared time axis, and the marks' labels under it (staggered so they do not overlap).
    let axis_y = h - bottom;
    for (t, anchor) in [(t_min, "start"), (t_max, "end")] {
        let _ = write!(
            out,
            r##"<text x="{:.1}" y="{:.1}" font-size="10" text-anchor="{anchor}" fill="#444">{}</text>"##,
            x(t),
            axis_y + 12.0,
            escape_html(&format_unix(t))
        );
    }
    for (i, m) in marks.iter().enumerate() {
        let anchor = if x(m.at) > w - 160.0 { "end" } else { "start" };
        let _ = write!(
            out,
            r##"<text x="{:.1}" y="{:.1}" font-size="9" text-anchor="{anchor}" fill="#8a6d3b">{}</text>"##,
            x(m.at),
            top + 8.0 + (i % 2) as f64 * 9.0,
            escape_html(&m.label)
        );
    }
    out.push_str("</svg>");
    out
}

/// The marks of the impact graph: when each run started and finished.
pub fn run_marks(runs: &[RunView]) -> Vec<GraphMark> {
    let secs = |t: jiff::Timestamp| t.as_millisecond() as f64 / 1000.0;
    let mut marks = Vec::new();
    for run in runs {
        let kind = if run.params.contains_key("cleanupOf") {
            "cleanup"
        } else {
            "mitigation"
        };
        if let Some(at) = run.started_at {
            marks.push(GraphMark {
                at: secs(at),
                label: format!("{kind} {} started", run.playbook),
            });
        }
        if let Some(at) = run.finished_at {
            marks.push(GraphMark {
                at: secs(at),
                label: format!("{kind} {} finished", run.playbook),
            });
        }
    }
    marks.sort_by(|a, b| a.at.total_cmp(&b.at));
    marks
}

fn format_value(v: f64) -> String {
    if v.abs() >= 100.0 || v == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.3}")
    }
}

fn format_unix(t: f64) -> String {
    jiff::Timestamp::from_second(t as i64)
        .map(|ts| ts.strftime("%H:%M:%S").to_string())
        .unwrap_or_default()
}

fn format_duration(d: std::time::Duration) -> String {
    let s = d.as_secs_f64();
    if s < 60.0 {
        format!("{s:.1}s")
    } else {
        format!("{}m{:02}s", (s / 60.0) as u64, (s as u64) % 60)
    }
}

fn format_time(t: &jiff::Timestamp) -> String {
    t.strftime("%Y-%m-%d %H:%M:%S UTC").to_string()
}

fn mitigation_window(runs: &[RunView]) -> Option<(f64, f64)> {
    let start = runs.iter().filter_map(|r| r.started_at).min()?;
    let end = runs
        .iter()
        .filter_map(|r| r.finished_at)
        .max()
        .unwrap_or(start);
    Some((
        start.as_millisecond() as f64 / 1000.0,
        end.max(start).as_millisecond() as f64 / 1000.0,
    ))
}

/// A table: header and rows of already-escaped cells.
struct Table {
    header: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

impl Table {
    fn html(&self) -> String {
        let mut out = String::from("<table>");
        if self.header.iter().any(|h| !h.is_empty()) {
            out.push_str("<thead><tr>");
            for h in &self.header {
                let _ = write!(out, "<th>{h}</th>");
            }
            out.push_str("</tr></thead>");
        }
        out.push_str("<tbody>");
        for row in &self.rows {
            out.push_str("<tr>");
            for cell in row {
                let _ = write!(out, "<td>{cell}</td>");
            }
            out.push_str("</tr>");
        }
        out.push_str("</tbody></table>\n");
        out
    }

    fn markdown(&self) -> String {
        let mut out = format!("| {} |\n", self.header.join(" | "));
        let _ = writeln!(out, "|{}", "---|".repeat(self.header.len()));
        for row in &self.rows {
            let _ = writeln!(out, "| {} |", row.join(" | "));
        }
        out.push('\n');
        out
    }
}

/// A document being built in either format.
struct Doc {
    format: Format,
    body: String,
}

impl Doc {
    fn esc(&self, s: &str) -> String {
        match self.format {
            Format::Html => escape_html(s),
            Format::Markdown => escape_md(s),
        }
    }

    fn heading(&mut self, level: usize, text: &str) {
        let text = self.esc(text);
        match self.format {
            Format::Html => {
                let _ = writeln!(self.body, "<h{level}>{text}</h{level}>");
            }
            Format::Markdown => {
                let _ = writeln!(self.body, "{} {text}\n", "#".repeat(level));
            }
        }
    }

    fn para(&mut self, text: &str) {
        let text = self.esc(text);
        match self.format {
            Format::Html => {
                let _ = writeln!(self.body, "<p>{text}</p>");
            }
            Format::Markdown => {
                let _ = writeln!(self.body, "{text}\n");
            }
        }
    }

    fn raw(&mut self, html: &str) {
        self.body.push_str(html);
        self.body.push('\n');
        if self.format == Format::Markdown {
            self.body.push('\n');
        }
    }

    fn table(&mut self, table: Table) {
        let text = match self.format {
            Format::Html => table.html(),
            Format::Markdown => table.markdown(),
        };
        self.body.push_str(&text);
    }

    fn fields(&mut self, rows: Vec<(&'static str, String)>) {
        let rows = rows
            .into_iter()
            .map(|(k, v)| vec![k.to_string(), self.esc(&v)])
            .collect();
        self.table(Table {
            header: vec!["", ""],
            rows,
        });
    }
}

/// Where a run's part of the report comes from, for the runs table.
fn source_label(run: &RunView) -> String {
    match &run.origin {
        RunOrigin::Journal { .. } => "local journal".to_string(),
        RunOrigin::Cluster { namespace } => format!("cluster: Run {namespace}/{}", run.run_id),
    }
}

/// The runs known only from the cluster's `Run` resources: where their journal lives, their
/// steps and their mutations.
fn render_cluster_runs(doc: &mut Doc, input: &ReportInput) {
    let remote: Vec<&RunView> = input
        .runs
        .iter()
        .filter(|r| matches!(r.origin, RunOrigin::Cluster { .. }))
        .collect();
    if remote.is_empty() {
        return;
    }
    doc.heading(2, "Runs read from the cluster");
    doc.para(
        "These runs' journals are not on this machine: their part of this report comes from the \
         cluster's Run resources (runs.ripcord.dev), which keep the steps, the mutations with \
         their targets and inverses, the outcome and the start and end times. Notifications, \
         snapshots, approvals, impact metrics and per-step times are only in the journal.",
    );
    for run in remote {
        let details = input.cluster.iter().find(|d| d.run_id == run.run_id);
        let namespace = match &run.origin {
            RunOrigin::Cluster { namespace } => namespace.as_str(),
            RunOrigin::Journal { .. } => "",
        };
        doc.heading(3, &format!("Run {}", run.run_id));
        let journal = details
            .and_then(|d| d.journal.clone())
            .map(|j| format!("the run's journal is not on this machine; the Run resource records it at {j}"))
            .unwrap_or_else(|| {
                "the run's journal is not on this machine (the Run resource does not record where it is)"
                    .to_string()
            });
        doc.para(&format!(
            "Source: the cluster's Run resource {namespace}/{}; {journal}. Started by {} (trigger {}).",
            run.run_id, run.who, run.trigger
        ));
        let mut fields = vec![
            ("playbook", run.playbook.clone()),
            (
                "phase",
                details
                    .map(|d| d.phase.clone())
                    .filter(|p| !p.is_empty())
                    .unwrap_or_else(|| "—".into()),
            ),
            (
                "outcome",
                run.outcome
                    .map(|o| o.to_string())
                    .unwrap_or_else(|| "unfinished".into()),
            ),
            (
                "started",
                run.started_at
                    .as_ref()
                    .map(format_time)
                    .unwrap_or_else(|| "—".into()),
            ),
            (
                "finished",
                run.finished_at
                    .as_ref()
                    .map(format_time)
                    .unwrap_or_else(|| "—".into()),
            ),
        ];
        if let Some(message) = details.and_then(|d| d.message.clone()) {
            fields.push(("message", message));
        }
        doc.fields(fields);
        if let Some(details) = details {
            let rows = details
                .steps
                .iter()
                .map(|step| {
                    let mutations = if step.omitted_mutations > 0 {
                        format!(
                            "{} (+{} not kept in the resource)",
                            step.mutations.len(),
                            step.omitted_mutations
                        )
                    } else {
                        step.mutations.len().to_string()
                    };
                    vec![
                        doc.esc(&step.name),
                        doc.esc(step.phase.as_str()),
                        doc.esc(&mutations),
                        doc.esc(step.error.as_deref().unwrap_or_default()),
                    ]
                })
                .collect();
            doc.table(Table {
                header: vec!["step", "phase", "mutations", "error"],
                rows,
            });
            if details.omitted_steps > 0 {
                doc.para(&format!(
                    "{} more step(s) were not kept in the Run resource (size bound).",
                    details.omitted_steps
                ));
            }
        }
        if run.touched.is_empty() {
            doc.para("No mutations recorded in the Run resource.");
            continue;
        }
        let rows = run
            .touched
            .iter()
            .map(|t| {
                let revert = match (&t.inverse, &t.problem) {
                    (_, Some(problem)) => problem.clone(),
                    (Some(crate::actions::Inverse::MergePatch { .. }), None) => {
                        "merge patch back to the pre-image".to_string()
                    }
                    (Some(crate::actions::Inverse::NotReverted { reason, .. }), None) => {
                        format!("not reverted: {reason}")
                    }
                    (Some(crate::actions::Inverse::None { reason }), None) => {
                        format!("nothing to revert: {reason}")
                    }
                    (None, None) => "unknown".to_string(),
                };
                vec![
                    doc.esc(&t.step),
                    doc.esc(&t.target.to_string()),
                    doc.esc(&t.description),
                    doc.esc(&revert),
                ]
            })
            .collect();
        doc.table(Table {
            header: vec!["step", "object", "mutation", "cleanup"],
            rows,
        });
    }
}

/// The end of the incident's first successful mitigation run (cleanup runs excluded).
pub fn first_mitigation(runs: &[RunView]) -> Option<jiff::Timestamp> {
    runs.iter()
        .filter(|r| r.outcome == Some(crate::journal::Outcome::Succeeded))
        .filter(|r| !r.params.contains_key("cleanupOf"))
        .filter_map(|r| r.finished_at)
        .min()
}

/// Times, time to detect/mitigate/resolve, owner and hand-offs, notes and action items.
fn render_postmortem_times(doc: &mut Doc, incident: &Incident, runs: &[RunView]) {
    let d = incident.durations(first_mitigation(runs));
    let time = |t: Option<jiff::Timestamp>| {
        t.as_ref()
            .map(format_time)
            .unwrap_or_else(|| "not recorded".into())
    };
    let took = |d: Option<std::time::Duration>, missing: &str| {
        d.map(format_duration)
            .unwrap_or_else(|| missing.to_string())
    };
    let from = if incident.impact_started_at.is_some() {
        "from impact start"
    } else {
        "from detection (impact start not recorded)"
    };
    doc.heading(3, "Times");
    doc.fields(vec![
        ("impact started", time(incident.impact_started_at)),
        (
            "detected",
            format!(
                "{}{}",
                format_time(&d.detected_at),
                if incident.detected_at.is_none() {
                    " (incident opened)"
                } else {
                    ""
                }
            ),
        ),
        (
            "mitigated",
            format!(
                "{}{}",
                time(d.mitigated_at),
                if d.mitigated_by_run {
                    " (end of the first successful run)"
                } else {
                    ""
                }
            ),
        ),
        ("resolved", time(incident.resolved_at)),
        (
            "time to detect",
            took(
                d.time_to_detect,
                "unknown (record the impact start: `ripcord incident update ID --impact-start TIME`)",
            ),
        ),
        (
            "time to mitigate",
            format!("{} {from}", took(d.time_to_mitigate, "not mitigated yet")),
        ),
        (
            "time to resolve",
            format!("{} {from}", took(d.time_to_resolve, "not resolved yet")),
        ),
    ]);
    doc.heading(3, "Ownership");
    let mut owner = vec![("owner", incident.current_owner().to_string())];
    if let Some(h) = incident.pending_handoff() {
        owner.push((
            "pending hand-off",
            format!("to {} since {}", h.to, format_time(&h.at)),
        ));
    }
    doc.fields(owner);
    if !incident.handoffs.is_empty() {
        let rows = incident
            .handoffs
            .iter()
            .map(|h| {
                vec![
                    doc.esc(&h.from),
                    doc.esc(&h.to),
                    doc.esc(&format_time(&h.at)),
                    doc.esc(
                        &h.acked_at
                            .as_ref()
                            .map(format_time)
                            .unwrap_or_else(|| "not acknowledged".into()),
                    ),
                ]
            })
            .collect();
        doc.table(Table {
            header: vec!["from", "to", "asked", "acknowledged (took over)"],
            rows,
        });
    }
    if !incident.notes.is_empty() {
        doc.heading(3, "Notes");
        let rows = incident
            .notes
            .iter()
            .map(|n| {
                vec![
                    doc.esc(&format_time(&n.at)),
                    doc.esc(&n.by),
                    doc.esc(&n.text),
                ]
            })
            .collect();
        doc.table(Table {
            header: vec!["at", "by", "note"],
            rows,
        });
    }
    doc.heading(3, "Action items");
    if incident.action_items.is_empty() {
        doc.para("None recorded yet (`ripcord incident action add ID TEXT`).");
    } else {
        let rows = incident
            .action_items
            .iter()
            .map(|a| {
                vec![
                    a.number.to_string(),
                    doc.esc(&a.text),
                    doc.esc(a.owner.as_deref().unwrap_or("—")),
                    doc.esc(
                        &a.done_at
                            .as_ref()
                            .map(|t| format!("done {}", format_time(t)))
                            .unwrap_or_else(|| "open".into()),
                    ),
                ]
            })
            .collect();
        doc.table(Table {
            header: vec!["#", "action", "owner", "status"],
            rows,
        });
    }
}

/// Renders the report.
pub fn render(input: &ReportInput, format: Format) -> String {
    let mut doc = Doc {
        format,
        body: String::new(),
    };
    doc.heading(1, &input.title);
    doc.para(&format!(
        "Generated by ripcord at {}.",
        format_time(&input.generated_at)
    ));

    if let Some(incident) = &input.incident {
        doc.heading(2, "Incident");
        let duration = incident
            .closed_at
            .and_then(|c| std::time::Duration::try_from(c - incident.opened_at).ok())
            .map(format_duration)
            .unwrap_or_else(|| "still open".to_string());
        doc.fields(vec![
            ("id", incident.id.clone()),
            (
                "severity",
                incident.severity.clone().unwrap_or_else(|| "—".into()),
            ),
            ("services", incident.services.join(", ")),
            (
                "opened",
                format!(
                    "{} by {}",
                    format_time(&incident.opened_at),
                    incident.opened_by
                ),
            ),
            (
                "closed",
                incident
                    .closed_at
                    .as_ref()
                    .map(format_time)
                    .unwrap_or_else(|| "—".into()),
            ),
            ("duration", duration),
            (
                "impact",
                incident.impact.clone().unwrap_or_else(|| "—".into()),
            ),
            (
                "root causes",
                if incident.root_causes.is_empty() {
                    "not recorded yet".to_string()
                } else {
                    incident.root_causes.join("; ")
                },
            ),
        ]);
        render_postmortem_times(&mut doc, incident, &input.runs);
    }

    for note in &input.notes {
        doc.para(&format!("Note: {note}"));
    }

    doc.heading(2, "Runs");
    let rows = input
        .runs
        .iter()
        .map(|r| {
            let duration = match (r.started_at, r.finished_at) {
                (Some(s), Some(f)) => std::time::Duration::try_from(f - s)
                    .map(format_duration)
                    .unwrap_or_default(),
                _ => String::new(),
            };
            vec![
                doc.esc(&r.run_id),
                doc.esc(&r.playbook),
                doc.esc(&r.who),
                doc.esc(&r.trigger),
                doc.esc(&r.started_at.as_ref().map(format_time).unwrap_or_default()),
                doc.esc(&duration),
                doc.esc(
                    &r.outcome
                        .map(|o| o.to_string())
                        .unwrap_or_else(|| "unfinished".into()),
                ),
                r.touched.len().to_string(),
                doc.esc(&source_label(r)),
            ]
        })
        .collect();
    doc.table(Table {
        header: vec![
            "run",
            "playbook",
            "who",
            "trigger",
            "started",
            "duration",
            "outcome",
            "mutations",
            "source",
        ],
        rows,
    });
    render_cluster_runs(&mut doc, input);

    // Who took over what, and when (the ACKs of `gate.approval` steps).
    let approvals: Vec<[String; 6]> = input
        .runs
        .iter()
        .flat_map(|r| {
            r.entries.iter().filter_map(|e| match &e.record {
                Record::Approved {
                    step,
                    by,
                    acked_at,
                    source,
                    comment,
                } => Some([
                    r.run_id.clone(),
                    step.clone(),
                    by.clone(),
                    acked_at.clone(),
                    source.to_string(),
                    comment.clone().unwrap_or_default(),
                ]),
                _ => None,
            })
        })
        .collect();
    if !approvals.is_empty() {
        doc.heading(2, "Approvals");
        let rows = approvals
            .iter()
            .map(|row| row.iter().map(|cell| doc.esc(cell)).collect())
            .collect();
        doc.table(Table {
            header: vec!["run", "step", "approved by", "at", "via", "comment"],
            rows,
        });
    }

    doc.heading(2, "Impact");
    if input.metrics.is_empty() {
        doc.para(
            "No impact metrics recorded (configure snapshot.prometheus queries in the playbook).",
        );
    } else {
        doc.raw(&svg_graph(
            &input.metrics,
            mitigation_window(&input.runs),
            &run_marks(&input.runs),
        ));
        let rows = input
            .metrics
            .iter()
            .map(|s| {
                let first = s.points.first().map(|p| p.1).unwrap_or(f64::NAN);
                let last = s.points.last().map(|p| p.1).unwrap_or(f64::NAN);
                let peak = s
                    .points
                    .iter()
                    .map(|p| p.1)
                    .fold(f64::NEG_INFINITY, f64::max);
                vec![
                    doc.esc(&s.name),
                    doc.esc(metric_unit(&s.name, &s.query)),
                    doc.esc(&s.query),
                    format_value(first),
                    format_value(peak),
                    format_value(last),
                ]
            })
            .collect();
        doc.table(Table {
            header: vec!["metric", "unit", "query", "first", "peak", "last"],
            rows,
        });
    }

    doc.heading(2, "Timeline");
    let events = timeline(&input.runs);
    let start = events.first().map(|e| e.at);
    let rows = events
        .iter()
        .map(|e| {
            let offset = start
                .and_then(|s| std::time::Duration::try_from(e.at - s).ok())
                .map(|d| format!("+{}", format_duration(d)))
                .unwrap_or_default();
            vec![
                doc.esc(&e.at.strftime("%H:%M:%S%.3f").to_string()),
                doc.esc(&offset),
                doc.esc(&e.run_id),
                e.category.to_string(),
                doc.esc(&e.text),
                doc.esc(&e.duration.map(format_duration).unwrap_or_default()),
            ]
        })
        .collect();
    doc.table(Table {
        header: vec!["time", "offset", "run", "kind", "event", "took"],
        rows,
    });

    doc.heading(2, "Cleanup");
    let remote_cleanups: Vec<&RunView> = input
        .runs
        .iter()
        .filter(|r| r.is_cleanup() && matches!(r.origin, RunOrigin::Cluster { .. }))
        .collect();
    if input.cleanups.is_empty() && remote_cleanups.is_empty() {
        doc.para("No cleanup has run yet (`ripcord cleanup --incident ID` or `--run RUN`).");
    }
    for run in remote_cleanups {
        doc.heading(3, &format!("Cleanup run {}", run.run_id));
        doc.para(&format!(
            "Ran on another machine by {}: {} revert(s), outcome {}. Its decisions (drift, \
             skipped items) are in its journal; the writes it made are listed under \
             \"Runs read from the cluster\".",
            run.who,
            run.touched.len(),
            run.outcome
                .map(|o| o.to_string())
                .unwrap_or_else(|| "unfinished".into())
        ));
    }
    for cleanup in &input.cleanups {
        doc.heading(3, &format!("Cleanup run {}", cleanup.run_id));
        let items = cleanup
            .plan
            .get("items")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let mut drift_rows = Vec::new();
        let rows = items
            .iter()
            .map(|item| {
                let s = |k: &str| {
                    item.get(k)
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string()
                };
                let target = item
                    .get("target")
                    .cloned()
                    .and_then(|t| serde_json::from_value::<crate::actions::ObjectRef>(t).ok())
                    .map(|t| t.to_string())
                    .unwrap_or_default();
                for d in item
                    .get("drift")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    let v =
                        |k: &str| super::fields::display_value(d.get(k).unwrap_or(&Value::Null));
                    drift_rows.push(vec![
                        doc.esc(&target),
                        doc.esc(d.get("path").and_then(Value::as_str).unwrap_or_default()),
                        doc.esc(&v("before")),
                        doc.esc(&v("ripcord")),
                        doc.esc(&v("now")),
                    ]);
                }
                let how = match (s("status").as_str(), s("via")) {
                    (_, via) if !via.is_empty() => via,
                    ("revert" | "forced-revert" | "roll-forward", _) => "object patch".to_string(),
                    _ => String::new(),
                };
                vec![
                    doc.esc(&s("status")),
                    doc.esc(&target),
                    doc.esc(&s("description")),
                    doc.esc(&how),
                    doc.esc(&s("runId")),
                ]
            })
            .collect();
        doc.table(Table {
            header: vec!["decision", "object", "mutation", "how", "run"],
            rows,
        });
        if !drift_rows.is_empty() {
            doc.para("Drift (changed by someone after ripcord touched it):");
            doc.table(Table {
                header: vec![
                    "object",
                    "field",
                    "before ripcord",
                    "as ripcord left it",
                    "now",
                ],
                rows: drift_rows,
            });
        }
    }

    doc.heading(2, "Verification");
    match &input.verify {
        None => doc.para("Not verified yet (`ripcord verify --incident ID` or `--run RUN`)."),
        Some(v) => {
            let verdict = if v.clean { "CLEAN" } else { "DIRTY" };
            match format {
                Format::Html => doc.raw(&format!(
                    "<p class=\"verdict {}\">{verdict}</p>",
                    if v.clean { "clean" } else { "dirty" }
                )),
                Format::Markdown => doc.para(&format!("**{verdict}**")),
            }
            doc.para(&format!(
                "Verified {} at {}: {} findings, {} notes.",
                v.scope,
                format_time(&v.at),
                v.findings.len(),
                v.notes.len()
            ));
            if !v.findings.is_empty() {
                let rows = v
                    .findings
                    .iter()
                    .map(|f| {
                        vec![
                            doc.esc(&f.check),
                            doc.esc(&f.kind),
                            doc.esc(&f.object),
                            doc.esc(&f.detail),
                        ]
                    })
                    .collect();
                doc.table(Table {
                    header: vec!["check", "kind", "object", "detail"],
                    rows,
                });
            }
        }
    }

    match format {
        Format::Markdown => doc.body,
        Format::Html => format!(
            "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>{}</title>\n<style>{CSS}</style>\n</head>\n<body>\n{}</body>\n</html>\n",
            escape_html(&input.title),
            doc.body
        ),
    }
}

const CSS: &str = "body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:2em auto;\
max-width:70em;color:#222;padding:0 1em}h1{font-size:1.6em}h2{border-bottom:1px solid #ddd;\
padding-bottom:.2em;margin-top:1.6em}table{border-collapse:collapse;margin:.5em 0;width:100%;\
font-size:.9em}th,td{border:1px solid #ddd;padding:.3em .5em;text-align:left;vertical-align:top}\
th{background:#f5f5f5}.verdict{font-weight:bold;font-size:1.3em;display:inline-block;\
padding:.2em .8em;border-radius:.3em}.clean{background:#d4edda;color:#155724}\
.dirty{background:#f8d7da;color:#721c24}svg.graph{border:1px solid #ddd;max-width:100%}";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cleanup::source::from_entries;
    use crate::journal::{Entry, Outcome};
    use serde_json::json;

    fn at(s: i64) -> jiff::Timestamp {
        jiff::Timestamp::from_second(1_795_000_000 + s).unwrap()
    }

    fn sample_run() -> RunView {
        let entries = vec![
            Entry {
                seq: 1,
                at: at(0),
                record: Record::RunStarted {
                    run_id: "r-20261125-110000-aaaa".into(),
                    playbook: "zone <failout>".into(),
                    trigger: "cli".into(),
                    who: "alice & bob".into(),
                    incident: Some("INC-1".into()),
                    params: Default::default(),
                    plan: json!({}),
                },
            },
            Entry {
                seq: 2,
                at: at(1),
                record: Record::StepPlanned {
                    step: "failout".into(),
                    action: "zone.failout".into(),
                    summary: "cordon 2 nodes".into(),
                    diff: String::new(),
                },
            },
            Entry {
                seq: 3,
                at: at(4),
                record: Record::StepVerified {
                    step: "failout".into(),
                },
            },
            Entry {
                seq: 4,
                at: at(5),
                record: Record::RunFinished {
                    outcome: Outcome::Succeeded,
                    duration_ms: 5000,
                    reason: None,
                },
            },
        ];
        from_entries(
            "r-20261125-110000-aaaa",
            Path::new("/nowhere/journal.jsonl"),
            entries,
        )
    }

    #[test]
    fn timeline_has_step_durations() {
        let events = timeline(&[sample_run()]);
        assert_eq!(events.len(), 4);
        assert_eq!(events[2].category, "verification");
        assert_eq!(events[2].duration, Some(std::time::Duration::from_secs(3)));
        assert_eq!(events[3].duration, Some(std::time::Duration::from_secs(5)));
    }

    #[test]
    fn approvals_are_listed_and_on_the_timeline() {
        let mut run = sample_run();
        run.entries.insert(
            2,
            Entry {
                seq: 3,
                at: at(3),
                record: Record::Approved {
                    step: "failout".into(),
                    by: "ann <oncall>".into(),
                    acked_at: "2026-11-25T11:00:03Z".into(),
                    source: crate::journal::approval::ApprovalSource::RunResource,
                    comment: Some("taking over".into()),
                },
            },
        );
        let events = timeline(std::slice::from_ref(&run));
        let approved = events
            .iter()
            .find(|e| e.category == "approval")
            .expect("an approval event");
        assert!(
            approved
                .text
                .contains("approved by ann <oncall> at 2026-11-25T11:00:03Z"),
            "{}",
            approved.text
        );
        let input = ReportInput {
            title: "Run".into(),
            incident: None,
            runs: vec![run],
            cleanups: vec![],
            verify: None,
            metrics: vec![],
            generated_at: at(200),
            cluster: vec![],
            notes: vec![],
        };
        let md = render(&input, Format::Markdown);
        assert!(md.contains("## Approvals"), "{md}");
        assert!(md.contains("ann &lt;oncall&gt;"), "{md}");
        assert!(md.contains("run-resource"), "{md}");
        let html = render(&input, Format::Html);
        assert!(html.contains("Approvals") && html.contains("taking over"));
        assert!(!html.contains("<oncall>"));
        // Without an ACK there is no such section.
        let plain = ReportInput {
            runs: vec![sample_run()],
            ..input
        };
        assert!(!render(&plain, Format::Markdown).contains("Approvals"));
    }

    #[test]
    fn html_escapes_everything_and_embeds_the_graph() {
        let input = ReportInput {
            title: "Incident <INC-1>".into(),
            incident: None,
            runs: vec![sample_run()],
            cleanups: vec![],
            verify: None,
            metrics: vec![MetricSeries {
                name: "error <ratio>".into(),
                query: "sum(rate(x[1m])) > 0 & 1".into(),
                points: vec![
                    (1_795_000_000.0 - 60.0, 0.5),
                    (1_795_000_003.0, 0.1),
                    (1_795_000_100.0, 0.0),
                ],
            }],
            generated_at: at(200),
            cluster: vec![],
            notes: vec![],
        };
        let html = render(&input, Format::Html);
        assert!(html.starts_with("<!DOCTYPE html>"));
        assert!(html.contains("Incident &lt;INC-1&gt;"));
        assert!(html.contains("alice &amp; bob"));
        assert!(html.contains("zone &lt;failout&gt;"));
        assert!(!html.contains("<failout>"));
        assert!(html.contains("<svg"));
        assert!(html.contains("<polyline"));
        assert!(html.contains("error &lt;ratio&gt;"));
        assert!(!html.contains("<script"));
        let md = render(&input, Format::Markdown);
        assert!(md.starts_with("# Incident &lt;INC-1&gt;"));
        assert!(md.contains("| run | playbook |"));
    }

    fn cluster_run() -> (RunView, ClusterRunDetails) {
        let inverse = serde_json::to_string(&crate::actions::Inverse::MergePatch {
            patch: json!({"spec": {"replicas": 3}}),
            expected: json!({"spec": {"replicas": 6}}),
        })
        .unwrap();
        let object = json!({
            "metadata": {"name": "r-20261125-110000-dddd", "namespace": "shop"},
            "spec": {"playbook": "scale <up>", "trigger": "api", "who": "dan", "incident": "INC-1"},
            "status": {"phase": "Finished", "outcome": "succeeded",
                       "startedAt": "2026-11-25T11:00:00Z", "finishedAt": "2026-11-25T11:00:30Z",
                       "journal": "laptop-9:/state/runs/r-20261125-110000-dddd/journal.jsonl",
                       "steps": [{"name": "scale", "phase": "Verified", "omittedMutations": 4,
                                  "mutations": [{"id": "scale/shop/web",
                                                 "target": "deployment/shop/web",
                                                 "inverse": inverse}]}]}
        });
        let run: crate::k8s::runs::Run = serde_json::from_value(json!({
            "apiVersion": "ripcord.dev/v1alpha1", "kind": "Run",
            "metadata": object["metadata"], "spec": object["spec"], "status": object["status"]
        }))
        .unwrap();
        crate::cleanup::source::from_typed_run(&run).unwrap()
    }

    #[test]
    fn runs_from_the_cluster_say_so_and_list_their_mutations() {
        let (view, details) = cluster_run();
        let input = ReportInput {
            title: "Incident INC-1".into(),
            incident: None,
            runs: vec![sample_run(), view],
            cleanups: vec![],
            verify: None,
            metrics: vec![],
            generated_at: at(200),
            cluster: vec![details],
            notes: vec![],
        };
        let md = render(&input, Format::Markdown);
        assert!(md.contains("## Runs read from the cluster"), "{md}");
        assert!(md.contains("| local journal |"), "{md}");
        assert!(
            md.contains("| cluster: Run shop/r-20261125-110000-dddd |"),
            "{md}"
        );
        assert!(
            md.contains("records it at laptop-9:/state/runs/r-20261125-110000-dddd/journal.jsonl"),
            "{md}"
        );
        assert!(
            md.contains("| scale | Verified | 1 (+4 not kept in the resource) |"),
            "{md}"
        );
        assert!(
            md.contains("| scale | deployment/shop/web | scale/shop/web: set spec.replicas=6 | merge patch back to the pre-image |"),
            "{md}"
        );
        assert!(md.contains("| outcome | succeeded |"), "{md}");
        let html = render(&input, Format::Html);
        assert!(html.contains("scale &lt;up&gt;"), "{html}");
        assert!(!html.contains("scale <up>"));
        // Only local runs: no such section.
        let local = ReportInput {
            runs: vec![sample_run()],
            cluster: vec![],
            ..input
        };
        assert!(!render(&local, Format::Markdown).contains("Runs read from the cluster"));
    }

    #[test]
    fn notes_are_shown_under_the_title() {
        let input = ReportInput {
            title: "Incident INC-1".into(),
            incident: None,
            runs: vec![sample_run()],
            cleanups: vec![],
            verify: None,
            metrics: vec![],
            generated_at: at(0),
            cluster: vec![],
            notes: vec!["the cluster's Run resources could not be read".into()],
        };
        let md = render(&input, Format::Markdown);
        assert!(
            md.contains("Note: the cluster's Run resources could not be read"),
            "{md}"
        );
    }

    #[test]
    fn issue16_impact_graph_has_a_panel_per_metric_with_units_and_run_marks() {
        let series = vec![
            MetricSeries {
                name: "error_ratio".into(),
                query: "sum(rate(errors[5m])) / sum(rate(requests[5m]))".into(),
                points: vec![(100.0, 0.5), (200.0, 0.01)],
            },
            MetricSeries {
                name: "latency_p99".into(),
                query: "histogram_quantile(0.99, rate(http_request_duration_seconds_bucket[5m]))"
                    .into(),
                points: vec![(100.0, 2.0), (200.0, 0.2)],
            },
        ];
        let marks = vec![
            GraphMark {
                at: 120.0,
                label: "mitigation rollback started".into(),
            },
            GraphMark {
                at: 150.0,
                label: "mitigation rollback finished".into(),
            },
        ];
        let svg = svg_graph(&series, Some((120.0, 150.0)), &marks);
        assert_eq!(svg.matches("<polyline").count(), 2, "one line per panel");
        assert!(svg.contains("error_ratio (ratio)") && svg.contains("latency_p99 (s)"));
        assert!(svg.contains("mitigation rollback started"));
        assert!(svg.contains("mitigation rollback finished"));
        // Each panel's axis is its own: both maxima are labelled.
        assert!(
            svg.contains("0.500 ratio") && svg.contains("2.000 s"),
            "{svg}"
        );
        assert_eq!(metric_unit("requests", "sum(rate(x[1m]))"), "/s");
        assert_eq!(metric_unit("pods", "count(kube_pod_info)"), "");
    }

    #[test]
    fn no_metrics_says_so() {
        let input = ReportInput {
            title: "r".into(),
            incident: None,
            runs: vec![],
            cleanups: vec![],
            verify: None,
            metrics: vec![],
            generated_at: at(0),
            cluster: vec![],
            notes: vec![],
        };
        assert!(render(&input, Format::Markdown).contains("No impact metrics recorded"));
    }

    #[test]
    fn issue14_the_chart_leaves_out_samples_that_are_not_finite() {
        // Kept from the status page's chart: Prometheus answers NaN.
        let series = vec![MetricSeries {
            name: "errors".into(),
            query: "sum(errors)".into(),
            points: vec![
                (100.0, 1.0),
                (110.0, f64::NAN),
                (120.0, 2.0),
                (f64::INFINITY, 3.0),
            ],
        }];
        let svg = svg_graph(&series, None, &[]);
        assert!(!svg.contains("NaN") && !svg.contains("inf"), "{svg}");
        assert_eq!(svg.matches("<polyline").count(), 1);
        let only_nan = vec![MetricSeries {
            points: vec![(100.0, f64::NAN)],
            ..series[0].clone()
        }];
        assert_eq!(svg_graph(&only_nan, None, &[]), "");
    }
}
