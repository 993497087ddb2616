//! Counts for progress display, derived from what multi-phase actions already report.
//!
//! Drains (`node.drain`, `zone.failout`) say "…, N evictable left in total" in their diff
//! summary and journal one `evict/…` mutation per eviction: evicted = the step's applied
//! eviction mutations, total = evicted + left. Restarts (`deployment.restart`) say "restart …:
//! P pod(s) in batches of B" first, then "batch K: …, D of T restarted so far, U unready now".
//! The engine turns these into [`EngineEvent::Progress`](super::EngineEvent::Progress).

/// Counts of one step's progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    /// What is counted, for people ("pods evicted", "batch 2 of 4: pods restarted").
    pub what: String,
    /// How many are done.
    pub done: u64,
    /// How many in all.
    pub total: u64,
}

/// Per-step state needed to count (the restart's batch size, the largest drain total seen).
#[derive(Debug, Default)]
pub struct ProgressTracker {
    batch_size: Option<u64>,
    drain_total: u64,
}

/// The id prefix of eviction mutations (see `actions::node_drain`).
const EVICT_PREFIX: &str = "evict/";

/// The number just before `marker` in `text` (`"3 of 12 restarted"`, `" of "` → 3).
fn number_before(text: &str, marker: &str) -> Option<u64> {
    let at = text.find(marker)?;
    let digits: String = text[..at]
        .chars()
        .rev()
        .take_while(char::is_ascii_digit)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    digits.parse().ok()
}

/// The number just after `marker` in `text`.
fn number_after(text: &str, marker: &str) -> Option<u64> {
    let at = text.find(marker)? + marker.len();
    let digits: String = text[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

// === impl ProgressTracker ===

impl ProgressTracker {
    /// Counts after a diff with `summary`, given the ids of the mutations the step applied so
    /// far. `None`: this step reports no counts.
    pub fn observe<'a>(
        &mut self,
        summary: &str,
        applied_ids: impl Iterator<Item = &'a str>,
    ) -> Option<Progress> {
        if let Some(b) = number_after(summary, "in batches of ") {
            self.batch_size = Some(b.max(1));
            let total = number_before(summary, " pod(s) in batches")?;
            return Some(Progress {
                what: "pods restarted".into(),
                done: 0,
                total,
            });
        }
        if let (Some(batch), Some(done)) = (
            number_after(summary, ": batch "),
            number_before(summary, " of "),
        ) {
            let total = number_after(summary, &format!("{done} of "))?;
            let of = self
                .batch_size
                .map(|b| format!(" of {}", total.div_ceil(b)))
                .unwrap_or_default();
            let unready = number_before(summary, " unready now")
                .map(|u| format!(", {u} unready"))
                .unwrap_or_default();
            return Some(Progress {
                what: format!("batch {batch}{of}: pods restarted{unready}"),
                done,
                total,
            });
        }
        if let Some(total) = number_after(summary, ": all ")
            && summary.ends_with("listed pod(s) restarted")
        {
            return Some(Progress {
                what: "pods restarted".into(),
                done: total,
                total,
            });
        }
        let left = number_before(summary, " evictable left in total")?;
        let evicted = applied_ids
            .filter(|id| id.starts_with(EVICT_PREFIX))
            .count() as u64;
        self.drain_total = self.drain_total.max(evicted + left);
        Some(Progress {
            what: "pods evicted".into(),
            done: evicted,
            total: self.drain_total,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restarts_count_batches_and_pods() {
        let mut t = ProgressTracker::default();
        let first = t
            .observe(
                "restart deployment/shop/web: 12 pod(s) in batches of 3",
                [].into_iter(),
            )
            .unwrap();
        assert_eq!((first.done, first.total), (0, 12));
        let p = t
            .observe(
                "deployment/shop/web: batch 2: restart 3 pod(s), 3 of 12 restarted so far, 0 unready now",
                [].into_iter(),
            )
            .unwrap();
        assert_eq!(p.what, "batch 2 of 4: pods restarted, 0 unready");
        assert_eq!((p.done, p.total), (3, 12));
        let end = t
            .observe(
                "deployment/shop/web: all 12 listed pod(s) restarted",
                [].into_iter(),
            )
            .unwrap();
        assert_eq!((end.done, end.total), (12, 12));
    }

    #[test]
    fn drains_count_evictions_against_the_largest_total_seen() {
        let mut t = ProgressTracker::default();
        let p = t
            .observe(
                "fail out zone zone-a: evict 4 pod(s) now, 10 evictable left in total",
                ["cordon/a-1"].into_iter(),
            )
            .unwrap();
        assert_eq!((p.what.as_str(), p.done, p.total), ("pods evicted", 0, 10));
        let p = t
            .observe(
                "fail out zone zone-a: evict 4 pod(s) now, 6 evictable left in total",
                [
                    "cordon/a-1",
                    "evict/a-1/x",
                    "evict/a-1/y",
                    "evict/a-1/z",
                    "evict/a-2/w",
                ]
                .into_iter(),
            )
            .unwrap();
        assert_eq!((p.done, p.total), (4, 10));
    }

    #[test]
    fn other_summaries_report_no_counts() {
        let mut t = ProgressTracker::default();
        assert_eq!(t.observe("roll back to revision 6", [].into_iter()), None);
        assert_eq!(t.observe("", [].into_iter()), None);
    }
}
