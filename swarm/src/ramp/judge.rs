//! Judging a step against the limits: its failure ratio, and optionally its
//! p95 response time.

use super::step::{Criterion, StepResult};

/// The share of its cores at which a worker is saturated (Locust warns at
/// 90% of one core).
pub const GENERATOR_CPU_LIMIT: f64 = 0.9;

/// The default `--fail-ratio`: more than 1% failed requests fails a step.
pub const DEFAULT_FAIL_RATIO: f64 = 0.01;

/// What a healthy step stays within.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    /// Highest healthy failure ratio, 0..=1.
    pub fail_ratio: f64,
    /// Highest healthy p95, ms (fractions allowed: judged to the µs).
    pub max_p95_ms: Option<f64>,
    /// Highest healthy p99, ms.
    pub max_p99_ms: Option<f64>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            fail_ratio: DEFAULT_FAIL_RATIO,
            max_p95_ms: None,
            max_p99_ms: None,
        }
    }
}

impl Limits {
    /// The limit `step` broke, failure ratio first; `None` when healthy.
    pub fn judge(&self, step: &StepResult) -> Option<Criterion> {
        // A saturated generator measures itself: nothing after it says
        // anything about the target.
        if step.worker_cpu >= GENERATOR_CPU_LIMIT {
            return Some(Criterion::GeneratorCpu);
        }
        if step.fail_ratio > self.fail_ratio {
            return Some(Criterion::FailRatio);
        }
        if self.max_p95_ms.is_some_and(|limit| step.p95_ms > limit) {
            return Some(Criterion::P95);
        }
        if self.max_p99_ms.is_some_and(|limit| step.p99_ms > limit) {
            return Some(Criterion::P99);
        }
        None
    }

    /// Why `step` failed, in words, e.g. `failure ratio 12.50% > 1.00%`.
    pub fn explain(&self, step: &StepResult) -> String {
        match step.failed {
            Some(Criterion::FailRatio) => format!(
                "failure ratio {:.2}% > {:.2}%",
                step.fail_ratio * 100.0,
                self.fail_ratio * 100.0
            ),
            Some(Criterion::P95) => format!(
                "p95 {} ms > {} ms",
                step.p95_ms,
                self.max_p95_ms.unwrap_or(0.0)
            ),
            Some(Criterion::GeneratorCpu) => format!(
                "a worker used {:.0}% of its CPU: generator-bound, add workers",
                step.worker_cpu * 100.0
            ),
            Some(Criterion::P99) => format!(
                "p99 {} ms > {} ms",
                step.p99_ms,
                self.max_p99_ms.unwrap_or(0.0)
            ),
            None => "healthy".to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(fail_ratio: f64, p95_ms: f64) -> StepResult {
        StepResult {
            users: 10,
            workers: 1,
            duration_s: 3.0,
            requests: 1000,
            failures: (fail_ratio * 1000.0) as u64,
            fail_ratio,
            rps: 333.0,
            p50_ms: p95_ms / 2.0,
            p95_ms,
            p99_ms: p95_ms * 2.0,
            p999_ms: p95_ms * 3.0,
            co_backfilled: 0,
            worker_cpu: 0.2,
            failed: None,
        }
    }

    #[test]
    fn failure_ratio_above_the_limit_fails() {
        let limits = Limits::default();
        assert_eq!(limits.judge(&step(0.0, 5.0)), None);
        assert_eq!(
            limits.judge(&step(0.01, 5.0)),
            None,
            "at the limit is healthy"
        );
        assert_eq!(limits.judge(&step(0.011, 5.0)), Some(Criterion::FailRatio));
        let strict = Limits {
            fail_ratio: 0.0,
            max_p95_ms: None,
            max_p99_ms: None,
        };
        assert_eq!(strict.judge(&step(0.001, 5.0)), Some(Criterion::FailRatio));
    }

    #[test]
    fn p95_counts_only_when_asked() {
        assert_eq!(Limits::default().judge(&step(0.0, 90_000.0)), None);
        let limits = Limits {
            fail_ratio: 0.01,
            max_p95_ms: Some(200.0),
            max_p99_ms: None,
        };
        assert_eq!(limits.judge(&step(0.0, 200.0)), None);
        assert_eq!(limits.judge(&step(0.0, 210.0)), Some(Criterion::P95));
        // Both broken: the failure ratio is named.
        assert_eq!(limits.judge(&step(0.5, 900.0)), Some(Criterion::FailRatio));
    }

    #[test]
    fn reasons_read_well() {
        let limits = Limits {
            fail_ratio: 0.01,
            max_p95_ms: Some(200.0),
            max_p99_ms: None,
        };
        let mut s = step(0.125, 5.0);
        s.failed = limits.judge(&s);
        assert_eq!(limits.explain(&s), "failure ratio 12.50% > 1.00%");
        let mut s = step(0.0, 420.0);
        s.failed = limits.judge(&s);
        assert_eq!(limits.explain(&s), "p95 420 ms > 200 ms");
        assert_eq!(
            serde_json::to_string(&Criterion::P95).ok(),
            Some("\"p95\"".into())
        );
        assert_eq!(
            serde_json::to_string(&Criterion::FailRatio).ok(),
            Some("\"fail_ratio\"".into())
        );
    }
}
