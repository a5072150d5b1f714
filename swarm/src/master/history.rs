//! The run's history for charts and the report: a bounded list of samples
//! of the total, plus a short window for "current" percentiles.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use crate::stats::{StatsEntry, CURRENT_WINDOW_SECS};

/// At most this many samples are kept; past it every other one is dropped,
/// so a long run keeps its whole shape at a coarser grain.
const MAX_SAMPLES: usize = 4_000;

/// One point of the run's history (the page's and report's charts).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistorySample {
    /// When it was taken, epoch seconds.
    pub time: f64,
    /// Users running then.
    pub user_count: u64,
    /// Requests per second over the recent window.
    pub current_rps: f64,
    /// Failures per second over the recent window.
    pub current_fail_per_sec: f64,
    /// Median response time of the recent window, ms.
    #[serde(rename = "response_time_percentile_0.5")]
    pub p50: u64,
    /// 95th percentile response time of the recent window, ms.
    #[serde(rename = "response_time_percentile_0.95")]
    pub p95: u64,
    /// Our extension: the open model's dropped starts per second since the
    /// sample before (0 in a closed run).
    #[serde(default)]
    pub dropped_per_sec: f64,
}

#[derive(Debug, Default)]
pub struct History {
    samples: Vec<HistorySample>,
    /// Copies of the total taken at each sample, for the last ~10 s.
    recent: VecDeque<(f64, StatsEntry)>,
    /// When the last sample was taken and the dropped starts counted then.
    last_dropped: Option<(f64, u64)>,
}

impl History {
    /// Takes a sample of `total` at `now` with `users` running, and
    /// `dropped` starts dropped so far.
    pub fn sample(
        &mut self,
        total: &StatsEntry,
        users: u64,
        dropped: u64,
        now: f64,
    ) -> &HistorySample {
        let dropped_per_sec = match self.last_dropped {
            Some((then, before)) if now > then => {
                dropped.saturating_sub(before) as f64 / (now - then)
            }
            _ => 0.0,
        };
        self.last_dropped = Some((now, dropped));
        self.recent.push_back((now, total.clone()));
        while self
            .recent
            .front()
            .is_some_and(|(t, _)| now - t > CURRENT_WINDOW_SECS as f64)
        {
            self.recent.pop_front();
        }
        let (p50, p95) = self.current_percentiles(total);
        self.samples.push(HistorySample {
            time: now,
            user_count: users,
            current_rps: total.current_rps(total),
            current_fail_per_sec: total.current_fail_per_sec(total),
            p50,
            p95,
            dropped_per_sec,
        });
        if self.samples.len() > MAX_SAMPLES {
            let mut keep = false;
            self.samples.retain(|_| {
                keep = !keep;
                keep
            });
        }
        self.samples.last().expect("just pushed")
    }

    /// p50 and p95 of the requests in the recent window.
    pub fn current_percentiles(&self, total: &StatsEntry) -> (u64, u64) {
        match self.recent.front() {
            Some((_, oldest)) => {
                let window = total.since(oldest);
                if window.num_requests == 0 {
                    (0, 0)
                } else {
                    (window.percentile(0.5), window.percentile(0.95))
                }
            }
            None => (total.percentile(0.5), total.percentile(0.95)),
        }
    }

    pub fn samples(&self) -> &[HistorySample] {
        &self.samples
    }

    pub fn clear(&mut self) {
        self.samples.clear();
        self.recent.clear();
        self.last_dropped = None;
    }
}
