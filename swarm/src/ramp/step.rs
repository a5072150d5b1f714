//! One measured step: what the target did at a given user count, over the
//! step's own window.

use serde::Serialize;

use crate::stats::StatsEntry;

/// Which limit a step broke.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Criterion {
    /// A rule (a `--threshold`, or a shorthand such as `--fail-ratio`'s
    /// `error-rate<=1%`) failed on the step's window.
    Rule {
        /// The rule, as given.
        rule: String,
        /// What it observed, e.g. `12.5%` or `420.3ms`.
        observed: String,
    },
    /// A worker used 90% or more of its cores: the load generator, not the
    /// target, set the numbers (add workers).
    GeneratorCpu,
}

impl Criterion {
    /// The criterion as `ramp.json`, `ramp.csv` and the table name it:
    /// the rule (`error-rate<=1%`), or `generator_cpu`.
    pub fn as_str(&self) -> &str {
        match self {
            Criterion::Rule { rule, .. } => rule,
            Criterion::GeneratorCpu => "generator_cpu",
        }
    }

    /// Why the step failed, in words.
    pub fn explain(&self) -> String {
        match self {
            Criterion::Rule { rule, observed } => format!("{rule} failed: observed {observed}"),
            Criterion::GeneratorCpu => {
                "a worker used 90% or more of its CPU: generator-bound, add workers".to_string()
            }
        }
    }
}

#[cfg(test)]
impl Criterion {
    /// `rule` failed observing `observed`: for tests of what follows a verdict.
    pub(crate) fn failing(rule: &str, observed: &str) -> Criterion {
        Criterion::Rule {
            rule: rule.to_string(),
            observed: observed.to_string(),
        }
    }
}

impl Serialize for Criterion {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// A step's numbers, as `ramp.json` and `ramp.csv` list them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepResult {
    /// Users running during the window.
    pub users: u64,
    /// Workers generating the load during the window.
    pub workers: usize,
    /// Length of the measuring window, seconds.
    pub duration_s: f64,
    /// Requests finished in the window.
    pub requests: u64,
    /// Of those, how many failed.
    pub failures: u64,
    /// Failures over requests, 0..=1.
    pub fail_ratio: f64,
    /// Requests per second over the window.
    pub rps: f64,
    /// Percentiles in ms, to the microsecond when the workers sent
    /// histograms (else Locust's whole-ms buckets).
    pub p50_ms: f64,
    /// 95th percentile, ms.
    pub p95_ms: f64,
    /// 99th percentile, ms.
    pub p99_ms: f64,
    /// 99.9th percentile, ms.
    pub p999_ms: f64,
    /// Requests goose back-filled for stalled users in the window: non-zero
    /// marks the percentiles above (and so the judgement on them) as
    /// corrected for coordinated omission. Absent from `ramp.json` when 0.
    #[serde(skip_serializing_if = "is_zero")]
    pub co_backfilled: u64,
    /// The busiest worker's CPU during the window, as a share of its cores
    /// (1.0: all busy), the highest seen.
    pub worker_cpu: f64,
    /// Which limit the step broke; `None` when it was healthy.
    pub failed: Option<Criterion>,
}

impl StepResult {
    /// The step's numbers from the requests finished in its window
    /// (`window` is the total at the window's end `since` its start).
    pub fn measure(users: u64, workers: usize, window: &StatsEntry, duration_s: f64) -> Self {
        let rps = if duration_s > 0.0 {
            window.num_requests as f64 / duration_s
        } else {
            0.0
        };
        StepResult {
            users,
            workers,
            duration_s: round_to(duration_s, 1e3),
            requests: window.num_requests,
            failures: window.num_failures,
            fail_ratio: round_to(window.fail_ratio(), 1e6),
            rps: round_to(rps, 1e2),
            p50_ms: round_to(window.percentile_ms(0.50), 1e3),
            p95_ms: round_to(window.percentile_ms(0.95), 1e3),
            p99_ms: round_to(window.percentile_ms(0.99), 1e3),
            p999_ms: round_to(window.percentile_ms(0.999), 1e3),
            co_backfilled: if window.co_corrected() {
                window.backfilled
            } else {
                0
            },
            worker_cpu: 0.0,
            failed: None,
        }
    }

    /// Whether the step stayed within every limit.
    pub fn is_healthy(&self) -> bool {
        self.failed.is_none()
    }

    /// `healthy`, the rule that failed, or `generator_cpu`, for tables.
    pub fn verdict(&self) -> &str {
        self.failed.as_ref().map_or("healthy", Criterion::as_str)
    }

    /// Why the step failed, or `healthy`.
    pub fn explain(&self) -> String {
        match &self.failed {
            Some(Criterion::GeneratorCpu) => format!(
                "a worker used {:.0}% of its CPU: generator-bound, add workers",
                self.worker_cpu * 100.0
            ),
            Some(criterion) => criterion.explain(),
            None => "healthy".to_string(),
        }
    }

    /// The verdict as tables show it: with `(CO-corrected, N back-filled)`
    /// when the percentiles it rests on were corrected.
    pub fn verdict_shown(&self) -> String {
        if self.co_backfilled == 0 {
            self.verdict().to_string()
        } else {
            format!(
                "{} (CO-corrected, {} back-filled)",
                self.verdict(),
                self.co_backfilled
            )
        }
    }
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Rounds to `1/scale` so reports do not show float noise.
fn round_to(value: f64, scale: f64) -> f64 {
    if value.is_finite() {
        (value * scale).round() / scale
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_becomes_a_step() {
        let mut before = StatsEntry::new("Aggregated", "", 0.0);
        before.log(500.0, 50, false, 1.0);
        let mut after = before.clone();
        for ms in 1..=100 {
            after.log(f64::from(ms), 1, ms > 97, 2.0);
        }
        let step = StepResult::measure(8, 2, &after.since(&before), 4.0);
        assert_eq!(step.requests, 100);
        assert_eq!(step.failures, 3);
        assert_eq!(step.fail_ratio, 0.03);
        assert_eq!(step.rps, 25.0);
        // 1..=100 ms, one each: to the microsecond (within HDR's 0.1%).
        for (got, want) in [
            (step.p50_ms, 50.0),
            (step.p95_ms, 95.0),
            (step.p99_ms, 99.0),
        ] {
            assert!(
                (got - want).abs() <= want * 0.001 + 0.001,
                "{got} vs {want}"
            );
        }
        assert!(step.is_healthy());
        assert_eq!(step.verdict(), "healthy");
    }

    #[test]
    fn an_empty_window_is_all_zero() {
        let entry = StatsEntry::new("Aggregated", "", 0.0);
        let step = StepResult::measure(1, 1, &entry.since(&entry), 0.0);
        assert_eq!((step.requests, step.rps, step.p95_ms), (0, 0.0, 0.0));
    }
}
