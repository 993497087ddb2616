//! The status page at `/`: the one place to look during an incident.
//!
//! Server-rendered HTML laid out for a phone first: leadership, pending approvals (with who
//! must ACK and the command to do it), who holds which lock, active runs with their step
//! timeline, incidents, one record per drill, recent runs, and every other run in the cluster
//! (CLI runs and other replicas' runs, from their `Run` resources). Each run links to its own
//! page with the whole timeline (`/runs/{id}`). The page refreshes live: a few lines of script
//! listen to `/events` (server-sent events, see [`crate::daemon::session`]) and reload when
//! something changed; without scripts it reloads every 30 s.
//!
//! What the page shows comes from [`StatusFeed`], a cache shared by every viewer: the local
//! runs (which read journals from the state directory) at most every [`RUNS_TTL`], the `Run`
//! resources from a background task every [`CLUSTER_REFRESH`]. Every value from runs, alerts
//! or playbooks is HTML-escaped.

use crate::cleanup::report::{GraphMark, MetricSeries, svg_graph};
use crate::daemon::DaemonState;
use crate::daemon::runs::RunView;
use crate::html::escape;
use crate::k8s::runs::Run;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The local runs are re-read (journals included) at most this often, whoever is looking.
pub const RUNS_TTL: Duration = Duration::from_secs(2);
/// How often the `Run` resources of the cluster are listed.
pub const CLUSTER_REFRESH: Duration = Duration::from_secs(10);

/// A run known from its `Run` resource only (a CLI run, another replica's run).
#[derive(Debug, Clone, PartialEq, Hash)]
pub struct ClusterRun {
    /// The run id (the resource's name).
    pub run_id: String,
    /// The resource's namespace.
    pub namespace: String,
    /// The playbook.
    pub playbook: String,
    /// `cli`, `api`, …
    pub trigger: String,
    /// Who started it.
    pub who: String,
    /// The incident.
    pub incident: Option<String>,
    /// `Running`, `Finished`.
    pub phase: crate::k8s::runs::RunPhase,
    /// The outcome, once finished.
    pub outcome: Option<String>,
    /// Why.
    pub message: Option<String>,
    /// RFC 3339 start.
    pub started_at: Option<String>,
    /// Its steps: `(name, phase)`.
    pub steps: Vec<(String, crate::k8s::runs::StepPhase)>,
    /// Why a daemon stopped it itself, when one did (the leader takes it over).
    pub daemon_stop: Option<crate::k8s::runs::DaemonStop>,
}

impl ClusterRun {
    /// From a `Run` resource.
    pub fn from_resource(run: &Run) -> ClusterRun {
        let status = run.status.clone().unwrap_or_default();
        let daemon_stop = status.daemon_stop();
        ClusterRun {
            daemon_stop,
            run_id: run.metadata.name.clone().unwrap_or_default(),
            namespace: run.metadata.namespace.clone().unwrap_or_default(),
            playbook: run.spec.playbook.clone(),
            trigger: run.spec.trigger.clone(),
            who: run.spec.who.clone(),
            incident: run.spec.incident.clone(),
            phase: status.phase,
            outcome: status.outcome,
            message: status.message,
            started_at: status.started_at,
            steps: status
                .steps
                .into_iter()
                .map(|s| (s.name, s.phase))
                .collect(),
        }
    }
}

#[derive(Default)]
struct FeedInner {
    runs: Mutex<Option<(Instant, Arc<Vec<RunView>>)>>,
    cluster: Mutex<Arc<Vec<ClusterRun>>>,
}

/// What the status page shows, cached and shared by every viewer. Cheap to clone.
#[derive(Clone, Default)]
pub struct StatusFeed(Arc<FeedInner>);

impl std::fmt::Debug for StatusFeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StatusFeed").finish_non_exhaustive()
    }
}

// === impl StatusFeed ===

impl StatusFeed {
    /// The local runs (newest first), re-read at most every [`RUNS_TTL`].
    pub fn runs(&self, state: &DaemonState) -> Arc<Vec<RunView>> {
        let mut cached = self.0.runs.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((at, runs)) = cached.as_ref()
            && at.elapsed() < RUNS_TTL
        {
            return runs.clone();
        }
        let runs = Arc::new(state.runs.list());
        *cached = Some((Instant::now(), runs.clone()));
        runs
    }

    /// The `Run` resources of the cluster, as last listed.
    pub fn cluster_runs(&self) -> Arc<Vec<ClusterRun>> {
        self.0
            .cluster
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Replaces the cluster's runs.
    pub fn set_cluster_runs(&self, runs: Vec<ClusterRun>) {
        *self.0.cluster.lock().unwrap_or_else(|p| p.into_inner()) = Arc::new(runs);
    }
}

/// Lists the `Run` resources of every namespace every [`CLUSTER_REFRESH`] (each list bounded
/// by `call_timeout`) into the feed. Failures keep the last list and are logged at debug.
pub fn spawn_cluster_refresh(
    feed: StatusFeed,
    client: kube::Client,
    call_timeout: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            match crate::k8s::runs::list_runs(&client, None, call_timeout).await {
                Ok(runs) => {
                    feed.set_cluster_runs(runs.iter().map(ClusterRun::from_resource).collect())
                }
                Err(err) => {
                    tracing::debug!(error = %err, "cannot list Run resources for the status page")
                }
            }
            tokio::time::sleep(CLUSTER_REFRESH).await;
        }
    })
}

/// A hash of everything the page shows that changes: the live feed sends `changed` when it
/// moves.
pub fn fingerprint(state: &DaemonState) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for run in state.feed.runs(state).iter() {
        run.run_id.hash(&mut h);
        run.state.as_str().hash(&mut h);
        run.outcome.map(|o| o.as_str()).hash(&mut h);
        run.timeline.len().hash(&mut h);
        run.pending_approvals.len().hash(&mut h);
        for step in &run.steps {
            step.state.hash(&mut h);
        }
    }
    state.feed.cluster_runs().hash(&mut h);
    for d in state.drills.recent().iter().take(1) {
        d.drill.hash(&mut h);
        d.finished_at.as_nanosecond().hash(&mut h);
    }
    state.drills.recent().len().hash(&mut h);
    state.is_leader().hash(&mut h);
    h.finish()
}

/// How many recent (finished) runs the page shows.
const RECENT: usize = 20;
/// How many runs get an impact graph (the newest ones with impact queries).
const GRAPHS: usize = 5;
/// Bound of each impact range query: the page must render even when Prometheus is slow.
const GRAPH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// One impact graph: the query's name and its samples `(unix seconds, value)`, with the run's
/// start and end (unix seconds) marked.
#[derive(Debug, Clone, PartialEq)]
pub struct ImpactGraph {
    /// The query's name.
    pub name: String,
    /// The samples.
    pub points: Vec<(f64, f64)>,
    /// When the run started (a marker).
    pub run_start: f64,
    /// When it ended (a marker), if it did.
    pub run_end: Option<f64>,
}

/// Range-queries the first impact query of the newest runs (10 minutes before each run to
/// its end, or now). Failures and timeouts just leave the graph out.
pub async fn impact_graphs(state: &DaemonState) -> BTreeMap<String, ImpactGraph> {
    let mut out = BTreeMap::new();
    let Some(prometheus) = &state.prometheus else {
        return out;
    };
    let now = state.runs.clock().now();
    let candidates: Vec<(RunView, crate::plan::NamedQuery)> = state
        .feed
        .runs(state)
        .iter()
        .cloned()
        .filter_map(|run| {
            let query = state.runs.impact_queries(&run.run_id).into_iter().next()?;
            Some((run, query))
        })
        .take(GRAPHS)
        .collect();
    let queries = candidates.into_iter().map(|(run, query)| async move {
        let started = run.started_at.unwrap_or(run.created_at);
        let start = started.as_second() as f64 - 600.0;
        let run_end = run.finished_at.map(|t| t.as_second() as f64);
        let end = run_end.unwrap_or(now.as_second() as f64).max(start + 60.0);
        let step = std::time::Duration::from_secs_f64(((end - start) / 60.0).max(1.0));
        let result = tokio::time::timeout(
            GRAPH_TIMEOUT,
            prometheus.query_range(&query.query, start, end, step),
        )
        .await;
        match result {
            Ok(Ok(points)) if !points.is_empty() => Some((
                run.run_id.clone(),
                ImpactGraph {
                    name: query.name.clone(),
                    points,
                    run_start: started.as_second() as f64,
                    run_end,
                },
            )),
            Ok(Ok(_)) => None,
            Ok(Err(err)) => {
                tracing::debug!(run = %run.run_id, error = %err, "impact graph query failed");
                None
            }
            Err(_) => {
                tracing::debug!(run = %run.run_id, "impact graph query timed out");
                None
            }
        }
    });
    for (id, graph) in futures::future::join_all(queries)
        .await
        .into_iter()
        .flatten()
    {
        out.insert(id, graph);
    }
    out
}

/// The run's impact graph: the one SVG chart ([`svg_graph`]) with the run's start (and end)
/// as marks, then the last value and the range as text.
pub fn impact_svg(graph: &ImpactGraph) -> String {
    let series = MetricSeries {
        name: graph.name.clone(),
        query: String::new(),
        points: graph.points.clone(),
    };
    let marks: Vec<GraphMark> = std::iter::once((graph.run_start, "run started"))
        .chain(graph.run_end.map(|end| (end, "run ended")))
        .map(|(at, label)| GraphMark {
            at,
            label: label.to_string(),
        })
        .collect();
    let mut svg = svg_graph(std::slice::from_ref(&series), None, &marks);
    if svg.is_empty() {
        return svg;
    }
    let finite = series.points.iter().map(|p| p.1).filter(|v| v.is_finite());
    let (lo, hi, last) = finite.fold((f64::INFINITY, f64::NEG_INFINITY, 0.0), |(lo, hi, _), v| {
        (lo.min(v), hi.max(v), v)
    });
    let _ = write!(
        svg,
        "<div class=\"muted\">impact: {} · now {} · range {}–{} · dashed: run start/end</div>",
        escape(&graph.name),
        short(last),
        short(lo),
        short(hi)
    );
    svg
}

fn short(v: f64) -> String {
    if v.abs() >= 1000.0 || v == v.trunc() {
        format!("{v:.0}")
    } else {
        format!("{v:.3}")
    }
}

/// The page's stylesheet (shared with the login page).
pub const STYLE: &str = "body{font-family:system-ui,-apple-system,sans-serif;margin:0;background:#f4f5f7;color:#1b1f24}\
header{background:#1b1f24;color:#fff;padding:12px 16px}header h1{margin:0;font-size:1.2rem}\
header p{margin:4px 0 0;font-size:.85rem;color:#c9d1d9}main{padding:8px 12px;max-width:60rem;margin:auto}\
section{background:#fff;border-radius:8px;padding:10px 14px;margin:10px 0;box-shadow:0 1px 2px #0002}\
h2{font-size:1rem;margin:4px 0 8px}.run{border-top:1px solid #e1e4e8;padding:8px 0}.run:first-of-type{border-top:0}\
.badge{display:inline-block;border-radius:10px;padding:1px 8px;font-size:.75rem;font-weight:600;color:#fff;background:#6a737d}\
.succeeded,.verified,.already-satisfied,.done-earlier{background:#1a7f37}.failed,.error,.undone{background:#cf222e}\
.running,.verifying,.queued{background:#0969da}.awaiting-ack{background:#bf8700}.stopped,.interrupted,.refused,.cancelled,.unfinished{background:#9a6700}\
.skipped-overlap,.skipped-window,.skipped-budget{background:#6a737d}\
ol{margin:6px 0;padding-left:20px}li{margin:2px 0;font-size:.9rem}.muted{color:#57606a;font-size:.8rem}\
.approval{border-left:4px solid #bf8700;padding-left:8px}.approved{color:#1a7f37;font-size:.8rem}code{font-size:.8rem;word-break:break-all}\
table{border-collapse:collapse;width:100%;font-size:.85rem}td,th{text-align:left;padding:4px 6px;border-top:1px solid #e1e4e8}\
a{color:#0969da}header a,header button{color:#c9d1d9;background:none;border:0;font:inherit;text-decoration:underline;cursor:pointer;padding:0}\
.error{color:#cf222e;font-weight:600}.skipped-hypothesis{background:#6a737d}";

/// Refreshes the page when the live feed says something changed; reloads every 30 s without.
const LIVE: &str = "<script>(function(){if(!window.EventSource){return;}\
var es=new EventSource('/events');es.addEventListener('changed',function(){location.reload();});})();</script>\
<noscript><meta http-equiv=\"refresh\" content=\"30\"></noscript>";

fn run_link(run_id: &str) -> String {
    format!("<a href=\"/runs/{0}\">{0}</a>", escape(run_id))
}

fn badge(text: &str) -> String {
    format!("<span class=\"badge {0}\">{0}</span>", escape(text))
}

fn run_status(run: &RunView) -> String {
    run.outcome
        .map(|o| o.as_str().to_string())
        .unwrap_or_else(|| run.state.as_str().to_string())
}

/// Renders the page.
pub fn render(state: &DaemonState, graphs: &BTreeMap<String, ImpactGraph>) -> String {
    let runs = state.feed.runs(state);
    let approvals: Vec<_> = runs
        .iter()
        .filter(|r| r.state.is_active())
        .flat_map(|r| r.pending_approvals.iter().cloned())
        .collect();
    let cluster = state.feed.cluster_runs();
    let now = state.runs.clock().now();
    let mut html = String::new();
    let _ = write!(
        html,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>ripcord status</title><style>{STYLE}</style>{LIVE}</head><body>\
<header><form method=\"post\" action=\"/logout\" style=\"float:right\"><button>log out</button></form>\
<h1>ripcord</h1><p>{} · {} · updated {}</p></header><main>",
        if state.is_leader() {
            "leader"
        } else {
            "standby (not the leader)"
        },
        escape(&format!(
            "{} active, {} pending approval{}",
            runs.iter().filter(|r| r.state.is_active()).count(),
            approvals.len(),
            if approvals.len() == 1 { "" } else { "s" }
        )),
        escape(&now.strftime("%Y-%m-%d %H:%M:%S UTC").to_string()),
    );

    // Pending approvals first: they block mitigation.
    html.push_str("<section><h2>Pending approvals</h2>");
    if approvals.is_empty() {
        html.push_str("<p class=\"muted\">None.</p>");
    }
    for a in &approvals {
        let _ = write!(
            html,
            "<div class=\"approval\"><p><b>{}</b> · step <b>{}</b><br>{}</p>\
<p class=\"muted\">Must ACK: {}<br><code>curl -X POST -H 'Authorization: Bearer …' -d '{{\"by\":\"NAME\"}}' /v1/runs/{}/approvals/{}</code></p></div>",
            run_link(&a.run_id),
            escape(&a.step),
            escape(&a.message),
            if a.approvers.is_empty() {
                "anyone".to_string()
            } else {
                escape(&a.approvers.join(", "))
            },
            escape(&a.run_id),
            escape(&a.step),
        );
    }
    html.push_str("</section>");

    // Who holds which lock: the active runs' lock targets.
    html.push_str("<section><h2>Locks</h2>");
    let locks: Vec<&RunView> = runs
        .iter()
        .filter(|r| r.state.is_active() && r.lock.is_some())
        .collect();
    if locks.is_empty() {
        html.push_str("<p class=\"muted\">No run of this daemon holds a lock.</p>");
    } else {
        html.push_str("<table><tr><th>Target</th><th>Held by</th></tr>");
        for r in locks {
            let _ = write!(
                html,
                "<tr><td><code>{}</code></td><td>{} {} <span class=\"muted\">{} · by {}</span></td></tr>",
                escape(r.lock.as_deref().unwrap_or("")),
                run_link(&r.run_id),
                badge(&run_status(r)),
                escape(&r.playbook),
                escape(&r.who)
            );
        }
        html.push_str("</table>");
    }
    html.push_str("</section>");

    html.push_str("<section><h2>Active runs</h2>");
    let active: Vec<&RunView> = runs.iter().filter(|r| r.state.is_active()).collect();
    let cluster_active: Vec<&ClusterRun> = cluster
        .iter()
        .filter(|c| {
            c.phase == crate::k8s::runs::RunPhase::Running
                && !runs.iter().any(|r| r.run_id == c.run_id)
        })
        .collect();
    if active.is_empty() && cluster_active.is_empty() {
        html.push_str("<p class=\"muted\">Nothing running.</p>");
    }
    for run in active {
        render_run(&mut html, run, true, graphs.get(&run.run_id));
    }
    for run in cluster_active {
        render_cluster_run(&mut html, run);
    }
    html.push_str("</section>");

    // Incidents: runs naming one (drills name none unless their hypothesis failed).
    let mut incidents: BTreeMap<&str, Vec<(String, String, String)>> = BTreeMap::new();
    for run in runs.iter() {
        if let Some(incident) = run.incident.as_deref() {
            incidents.entry(incident).or_default().push((
                run.playbook.clone(),
                run.run_id.clone(),
                run_status(run),
            ));
        }
    }
    for run in cluster.iter() {
        if let Some(incident) = run.incident.as_deref()
            && !runs.iter().any(|r| r.run_id == run.run_id)
        {
            incidents.entry(incident).or_default().push((
                run.playbook.clone(),
                run.run_id.clone(),
                cluster_status(run),
            ));
        }
    }
    html.push_str("<section><h2>Incidents</h2>");
    if incidents.is_empty() {
        html.push_str("<p class=\"muted\">No run names an incident.</p>");
    } else {
        html.push_str("<table><tr><th>Incident</th><th>Runs</th></tr>");
        for (incident, runs) in &incidents {
            let list: Vec<String> = runs
                .iter()
                .map(|(playbook, id, status)| {
                    format!("{} {} {}", escape(playbook), run_link(id), badge(status))
                })
                .collect();
            let _ = write!(
                html,
                "<tr><td>{}</td><td>{}</td></tr>",
                escape(incident),
                list.join("<br>")
            );
        }
        html.push_str("</table>");
    }
    html.push_str("</section>");

    // One record per drill: its latest occurrence.
    html.push_str("<section><h2>Drills</h2>");
    let drills = state.drills.per_drill();
    if drills.is_empty() {
        html.push_str("<p class=\"muted\">No drill has fired yet.</p>");
    } else {
        html.push_str("<table><tr><th>Drill</th><th>Last</th><th>Outcome</th></tr>");
        for (d, count) in &drills {
            let runs: Vec<String> = [&d.failout, &d.failback]
                .into_iter()
                .flatten()
                .filter_map(|r| r.run_id.as_deref().map(run_link))
                .collect();
            let _ = write!(
                html,
                "<tr><td>{}<br><span class=\"muted\">{} occurrence{} kept</span></td><td>{}{}</td><td>{}{}<br><span class=\"muted\">{}</span></td></tr>",
                escape(&d.drill),
                count,
                if *count == 1 { "" } else { "s" },
                escape(&d.scheduled_for.to_string()),
                if runs.is_empty() {
                    String::new()
                } else {
                    format!("<br><span class=\"muted\">runs {}</span>", runs.join(", "))
                },
                badge(&d.outcome),
                d.incident
                    .as_deref()
                    .map(|i| format!(" incident <b>{}</b>", escape(i)))
                    .unwrap_or_default(),
                escape(&d.reason)
            );
        }
        html.push_str("</table>");
    }
    html.push_str("</section>");

    html.push_str("<section><h2>Recent runs</h2>");
    let recent: Vec<&RunView> = runs
        .iter()
        .filter(|r| !r.state.is_active())
        .take(RECENT)
        .collect();
    if recent.is_empty() {
        html.push_str("<p class=\"muted\">No finished runs.</p>");
    }
    for run in recent {
        render_run(&mut html, run, false, graphs.get(&run.run_id));
    }
    html.push_str("</section>");

    // Everything else the cluster knows: CLI runs, other replicas' runs.
    html.push_str("<section><h2>Other runs in the cluster</h2>");
    let others: Vec<&ClusterRun> = cluster
        .iter()
        .filter(|c| {
            c.phase != crate::k8s::runs::RunPhase::Running
                && !runs.iter().any(|r| r.run_id == c.run_id)
        })
        .take(RECENT)
        .collect();
    if others.is_empty() {
        html.push_str("<p class=\"muted\">None (or the Run resources cannot be listed).</p>");
    }
    for run in others {
        render_cluster_run(&mut html, run);
    }
    html.push_str("</section></main></body></html>");
    html
}

fn cluster_status(run: &ClusterRun) -> String {
    run.outcome
        .clone()
        .unwrap_or_else(|| run.phase.as_str().to_ascii_lowercase())
}

fn render_cluster_run(html: &mut String, run: &ClusterRun) {
    let current = match run.phase {
        crate::k8s::runs::RunPhase::Running => run
            .steps
            .iter()
            .find(|(_, phase)| *phase == crate::k8s::runs::StepPhase::Running)
            .map(|(name, _)| format!(" · step {}", escape(name)))
            .unwrap_or_default(),
        _ => String::new(),
    };
    let _ = write!(
        html,
        "<div class=\"run\"><b>{}</b> {} <span class=\"muted\">{} · {} · by {} · {}{}{current}</span>",
        escape(&run.playbook),
        badge(&cluster_status(run)),
        run_link(&run.run_id),
        escape(&run.trigger),
        escape(&run.who),
        escape(&run.namespace),
        run.started_at
            .as_deref()
            .map(|s| format!(" · started {}", escape(s)))
            .unwrap_or_default()
    );
    if let Some(message) = &run.message {
        let _ = write!(html, "<br><span class=\"muted\">{}</span>", escape(message));
    }
    if let Some(stop) = run.daemon_stop {
        let _ = write!(
            html,
            "<br><span class=\"muted\">stopped by a ripcord daemon ({}): the leader takes it over</span>",
            stop.describe()
        );
    }
    html.push_str("</div>");
}

/// The page of one run: its steps and whole timeline (a local run), or its `Run` resource's
/// summary. `None`: unknown.
pub fn render_run_page(state: &DaemonState, run_id: &str) -> Option<String> {
    let mut body = String::new();
    if let Some(run) = state.runs.get(run_id) {
        render_run(&mut body, &run, false, None);
        body.push_str("<h2>Timeline</h2><ol>");
        for entry in &run.timeline {
            let _ = write!(
                body,
                "<li><span class=\"muted\">{}</span> {}</li>",
                escape(&entry.at.strftime("%H:%M:%S").to_string()),
                escape(&entry.text)
            );
        }
        if run.timeline.is_empty() {
            body.push_str(
                "<li class=\"muted\">Not recorded by this process: see the journal.</li>",
            );
        }
        body.push_str("</ol>");
        if let Some(journal) = &run.journal {
            let _ = write!(
                body,
                "<p class=\"muted\">Journal: <code>{}</code></p>",
                escape(&journal.display().to_string())
            );
        }
    } else if let Some(run) = state
        .feed
        .cluster_runs()
        .iter()
        .find(|c| c.run_id == run_id)
    {
        render_cluster_run(&mut body, run);
        body.push_str("<h2>Steps</h2><ol>");
        for (name, phase) in &run.steps {
            let _ = write!(
                body,
                "<li>{} {}</li>",
                escape(name),
                badge(&phase.as_str().to_ascii_lowercase())
            );
        }
        body.push_str("</ol>");
    } else {
        return None;
    }
    Some(format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>ripcord · {0}</title><style>{STYLE}</style>{LIVE}</head><body>\
<header><h1><a href=\"/\">ripcord</a> · run {0}</h1></header><main><section>{body}</section></main></body></html>",
        escape(run_id)
    ))
}

fn render_run(html: &mut String, run: &RunView, timeline: bool, graph: Option<&ImpactGraph>) {
    let _ = write!(
        html,
        "<div class=\"run\"><b>{}</b> {} <span class=\"muted\">{} · {} · by {}{}</span>",
        escape(&run.playbook),
        badge(&run_status(run)),
        run_link(&run.run_id),
        escape(&run.trigger),
        escape(&run.who),
        run.lock
            .as_deref()
            .map(|l| format!(" · target {}", escape(l)))
            .unwrap_or_default(),
    );
    if let Some(reason) = &run.reason {
        let _ = write!(html, "<br><span class=\"muted\">{}</span>", escape(reason));
    }
    if let Some(graph) = graph {
        html.push_str(&impact_svg(graph));
    }
    if !run.steps.is_empty() {
        html.push_str("<ol>");
        for step in &run.steps {
            let _ = write!(
                html,
                "<li>{} <span class=\"muted\">{}</span> {}{}{}</li>",
                escape(&step.name),
                escape(&step.action),
                badge(step.state.as_str()),
                if step.detail.is_empty() {
                    String::new()
                } else {
                    format!("<br><span class=\"muted\">{}</span>", escape(&step.detail))
                },
                step.approval
                    .as_ref()
                    .map(|a| format!(
                        "<br><span class=\"approved\">approved by <b>{}</b> at {} (via {})</span>",
                        escape(&a.by),
                        escape(&a.at),
                        escape(a.source.as_str())
                    ))
                    .unwrap_or_default()
            );
        }
        html.push_str("</ol>");
    }
    if timeline && run.state.is_active() {
        html.push_str("<details open><summary class=\"muted\">Timeline</summary><ol>");
        for entry in run.timeline.iter().rev().take(30) {
            let _ = write!(
                html,
                "<li><span class=\"muted\">{}</span> {}</li>",
                escape(&entry.at.strftime("%H:%M:%S").to_string()),
                escape(&entry.text)
            );
        }
        html.push_str("</ol></details>");
    }
    html.push_str("</div>");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issue14_cluster_runs_read_step_phases_and_daemon_stops_from_the_status() {
        use crate::k8s::runs::{DaemonStop, RunSpec, RunStatus, StepPhase, StepStatus, StoppedBy};
        let spec = RunSpec {
            playbook: "rollback".into(),
            params: Default::default(),
            trigger: "api".into(),
            who: "api/oncall".into(),
            incident: None,
        };
        let step = |name: &str, phase: StepPhase| StepStatus {
            name: name.into(),
            phase,
            ..StepStatus::default()
        };
        // Running: the step under way is named.
        let mut running = Run::new("r-20261203-060000-aaaa", spec.clone());
        running.status = Some(RunStatus {
            phase: crate::k8s::runs::RunPhase::Running,
            steps: vec![
                step("rollback", StepPhase::Verified),
                step("wait-rolled-out", StepPhase::Running),
            ],
            ..RunStatus::default()
        });
        let mut html = String::new();
        render_cluster_run(&mut html, &ClusterRun::from_resource(&running));
        assert!(html.contains(" · step wait-rolled-out"), "{html}");
        assert!(!html.contains("stopped by a ripcord daemon"), "{html}");
        // Stopped by a daemon (version 3: the field), taken over by the leader.
        let mut stopped = Run::new("r-20261203-060000-bbbb", spec.clone());
        stopped.status = Some(RunStatus {
            format_version: crate::journal::Format::RunStatus.current(),
            phase: crate::k8s::runs::RunPhase::Finished,
            outcome: Some("interrupted".into()),
            message: Some("interrupted by ripcord daemon (lost leadership)".into()),
            stopped_by: Some(StoppedBy::Daemon(DaemonStop::LostLeadership)),
            steps: vec![step("wait-rolled-out", StepPhase::Stopped)],
            ..RunStatus::default()
        });
        let cluster = ClusterRun::from_resource(&stopped);
        assert_eq!(cluster.daemon_stop, Some(DaemonStop::LostLeadership));
        let mut html = String::new();
        render_cluster_run(&mut html, &cluster);
        assert!(
            html.contains("stopped by a ripcord daemon (lost leadership)"),
            "{html}"
        );
        assert!(!html.contains(" · step "), "{html}");
        // The same message without the field, in version 3: a person's stop.
        let mut person = stopped.clone();
        if let Some(status) = person.status.as_mut() {
            status.stopped_by = None;
        }
        assert_eq!(ClusterRun::from_resource(&person).daemon_stop, None);
    }

    #[test]
    fn impact_svg_scales_the_series_and_marks_the_run() {
        let graph = ImpactGraph {
            name: "error <ratio>".into(),
            points: vec![
                (1000.0, 0.5),
                (1060.0, 0.5),
                (1120.0, 0.001),
                (1180.0, f64::NAN),
            ],
            run_start: 1060.0,
            run_end: Some(1120.0),
        };
        let svg = impact_svg(&graph);
        // The one chart (issue 14): one panel, the NaN sample left out, both marks drawn.
        assert!(svg.starts_with("<svg xmlns="), "{svg}");
        assert_eq!(svg.matches("<polyline").count(), 1, "{svg}");
        assert!(!svg.contains("NaN"), "{svg}");
        assert_eq!(svg.matches("stroke-dasharray").count(), 2, "{svg}");
        assert!(
            svg.contains("run started") && svg.contains("run ended"),
            "{svg}"
        );
        assert!(
            svg.contains("error &lt;ratio&gt;") && !svg.contains("<ratio>"),
            "{svg}"
        );
        assert!(svg.contains("now 0.001"), "{svg}");
        let empty = ImpactGraph {
            points: vec![(1.0, f64::NAN)],
            ..graph
        };
        assert_eq!(impact_svg(&empty), "");
    }

    #[test]
    fn a_steps_approval_is_shown_escaped() {
        use crate::daemon::runs::{RunState, StepApproval, StepResultKind, StepState, StepView};
        use crate::journal::approval::ApprovalSource;
        let step = |approval: Option<StepApproval>| StepView {
            name: "ack".into(),
            action: "gate.approval".into(),
            state: StepState::Ended(StepResultKind::Verified),
            detail: String::new(),
            started_at: None,
            finished_at: None,
            approval,
        };
        let mut run = RunView {
            run_id: "r-1".into(),
            playbook: "hand-off".into(),
            trigger: "api".into(),
            who: "ops".into(),
            incident: None,
            lock: None,
            state: RunState::Finished,
            outcome: None,
            reason: None,
            created_at: jiff::Timestamp::UNIX_EPOCH,
            started_at: None,
            finished_at: None,
            mutations_applied: 0,
            steps: vec![step(None)],
            timeline: Vec::new(),
            pending_approvals: Vec::new(),
            journal: None,
        };
        let mut html = String::new();
        render_run(&mut html, &run, false, None);
        assert!(!html.contains("approved by"), "{html}");
        run.steps = vec![step(Some(StepApproval {
            by: "ann <oncall>".into(),
            at: "2026-11-25T14:00:00Z".into(),
            source: ApprovalSource::RunResource,
        }))];
        let mut html = String::new();
        render_run(&mut html, &run, false, None);
        assert!(
            html.contains(
                "approved by <b>ann &lt;oncall&gt;</b> at 2026-11-25T14:00:00Z (via run-resource)"
            ),
            "{html}"
        );
    }
}
