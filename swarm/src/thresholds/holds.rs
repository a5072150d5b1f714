//! What `rps` rules count: the time the run held its users (every user
//! asked for was spawned), summed over every hold, and the requests the
//! workers reported meanwhile. Spawning, stopping and the time before the
//! first hold add nothing, as in goose, where `rps` counts only Maintain.
//!
//! Workers report every 3 s, so a hold's requests are those *reported*
//! during it: a hold of a few seconds is judged coarsely, a minute-long one
//! within a few percent.

use super::judge::figures;
use super::rule::Rule;
use crate::stats::{RequestStats, StatsEntry};

/// The holds of one run, per rule (each rule counts its own row).
#[derive(Debug, Clone, Default)]
pub struct Holds {
    /// Seconds of the holds that ended.
    seconds: f64,
    /// Each rule's requests in the holds that ended.
    requests: Vec<u64>,
    /// The hold going: when it began (epoch seconds) and each rule's count then.
    open: Option<(f64, Vec<u64>)>,
}

/// Each rule's request count in `stats` now.
fn counts(rules: &[Rule], stats: &RequestStats) -> Vec<u64> {
    rules
        .iter()
        .map(|rule| figures(rule, stats).map_or(0, |e| e.num_requests))
        .collect()
}

impl Holds {
    /// The run holds its users from `now` on.
    pub fn enter(&mut self, rules: &[Rule], stats: &RequestStats, now: f64) {
        if self.open.is_none() {
            self.open = Some((now, counts(rules, stats)));
        }
    }

    /// The hold going ended at `now`: its seconds and requests join the
    /// earlier holds'.
    pub fn leave(&mut self, rules: &[Rule], stats: &RequestStats, now: f64) {
        let Some((start, at_start)) = self.open.take() else {
            return;
        };
        self.seconds += (now - start).max(0.0);
        let now_counts = counts(rules, stats);
        self.requests.resize(now_counts.len(), 0);
        for (held, (now, before)) in self
            .requests
            .iter_mut()
            .zip(now_counts.iter().zip(at_start))
        {
            *held = held.saturating_add(now.saturating_sub(before));
        }
    }

    /// The stats were reset at `now`: nothing held so far counts, and a hold
    /// going starts again from zero requests.
    pub fn reset(&mut self, rules: &[Rule], now: f64) {
        let open = self.open.is_some();
        *self = Holds::default();
        if open {
            self.open = Some((now, vec![0; rules.len()]));
        }
    }

    /// Rule `index`'s requests while holding, and the seconds held, at
    /// `now` when its row is `entry`.
    pub fn held(&self, index: usize, entry: &StatsEntry, now: f64) -> (u64, f64) {
        let ended = self.requests.get(index).copied().unwrap_or(0);
        match &self.open {
            Some((start, at_start)) => {
                let before = at_start.get(index).copied().unwrap_or(0);
                (
                    ended.saturating_add(entry.num_requests.saturating_sub(before)),
                    self.seconds + (now - start).max(0.0),
                )
            }
            None => (ended, self.seconds),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats_with(requests: u64) -> RequestStats {
        let mut stats = RequestStats::new(0.0);
        stats.total.log(1.0, requests, false, 1.0);
        stats
    }

    #[test]
    fn only_the_holds_count() {
        let rules: Vec<Rule> = vec!["rps>10".parse().expect("rule")];
        let mut holds = Holds::default();
        // 500 requests while spawning, then a 10 s hold with 1,000 more.
        holds.enter(&rules, &stats_with(500), 100.0);
        holds.leave(&rules, &stats_with(1_500), 110.0);
        let later = stats_with(2_000);
        assert_eq!(holds.held(0, &later.total, 120.0), (1_000, 10.0));
        // A second hold of 5 s with 500 more.
        holds.enter(&rules, &later, 120.0);
        let now = stats_with(2_500);
        assert_eq!(holds.held(0, &now.total, 125.0), (1_500, 15.0));
        holds.reset(&rules, 125.0);
        assert_eq!(holds.held(0, &stats_with(100).total, 127.0), (100, 2.0));
    }
}
