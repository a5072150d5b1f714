//! Judging a step: by the generator's CPU first, then by rules in goose's
//! `--threshold` grammar on the step's own window. `--fail-ratio`,
//! `--max-p95` and `--max-p99` are shorthands for `error-rate<=R%`,
//! `p95<=MSms` and `p99<=MSms`; `--threshold` adds any other rule.

use super::step::{Criterion, StepResult};
use crate::stats::StatsEntry;
use crate::thresholds::judge::{observe, passes};
use crate::thresholds::{Metric, Rule};

/// The share of its cores at which a worker is saturated (Locust warns at
/// 90% of one core).
pub const GENERATOR_CPU_LIMIT: f64 = 0.9;

/// The default `--fail-ratio`: more than 1% failed requests fails a step.
pub const DEFAULT_FAIL_RATIO: f64 = 0.01;

/// What a healthy step stays within: every rule passes on its window.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// The rules, shorthands first, in the order they are judged.
    pub rules: Vec<Rule>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits::new(DEFAULT_FAIL_RATIO, None, None, &[]).unwrap_or(Limits { rules: Vec::new() })
    }
}

/// `number` in the rules' text: at most six decimals, no trailing zeros.
fn number(value: f64) -> String {
    let text = format!("{value:.6}");
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

impl Limits {
    /// The shorthands as rules, then `rules`. A rule naming one request is
    /// refused: a step's window is the `Aggregated` row (what `spotload
    /// ramp` reads from a remote master). The default failure ratio gives
    /// way to an `error-rate` rule given with `--threshold`.
    pub fn new(
        fail_ratio: f64,
        max_p95_ms: Option<f64>,
        max_p99_ms: Option<f64>,
        rules: &[Rule],
    ) -> Result<Limits, String> {
        if let Some(named) = rules.iter().find(|r| r.request.is_some()) {
            return Err(format!(
                "threshold {:?}: a ramp judges each step on all requests together; drop the \" for ...\"",
                named.text
            ));
        }
        let error_rule = rules.iter().any(|r| r.metric == Metric::ErrorRate);
        let mut texts = Vec::new();
        if !(error_rule && fail_ratio == DEFAULT_FAIL_RATIO) {
            texts.push(format!("error-rate<={}%", number(fail_ratio * 100.0)));
        }
        if let Some(ms) = max_p95_ms {
            texts.push(format!("p95<={}ms", number(ms)));
        }
        if let Some(ms) = max_p99_ms {
            texts.push(format!("p99<={}ms", number(ms)));
        }
        let mut all = texts
            .iter()
            .map(|t| t.parse::<Rule>())
            .collect::<Result<Vec<_>, _>>()?;
        all.extend(rules.iter().cloned());
        Ok(Limits { rules: all })
    }

    /// The rules back from their texts (as `ramp.json` keeps them).
    pub fn from_texts(texts: &[String]) -> Limits {
        Limits {
            rules: texts.iter().filter_map(|t| t.parse().ok()).collect(),
        }
    }

    /// The rules' texts, e.g. `["error-rate<=1%", "p95<=200ms"]`.
    pub fn texts(&self) -> Vec<String> {
        self.rules.iter().map(|r| r.text.clone()).collect()
    }

    /// The first limit `step` broke, judged on its `window` (the
    /// `Aggregated` row's requests in it); `None` when healthy.
    pub fn judge(&self, step: &StepResult, window: &StatsEntry) -> Option<Criterion> {
        // A saturated generator measures itself: nothing after it says
        // anything about the target.
        if step.worker_cpu >= GENERATOR_CPU_LIMIT {
            return Some(Criterion::GeneratorCpu);
        }
        let held = Some((window.num_requests, step.duration_s));
        self.rules.iter().find_map(|rule| {
            let observed = observe(rule, window, held)?;
            (!passes(rule, &observed)).then(|| Criterion::Rule {
                rule: rule.text.clone(),
                observed: observed.shown,
            })
        })
    }

    /// The highest healthy failure ratio (0..=1), for charts: the first
    /// `error-rate` rule's limit.
    pub fn fail_ratio(&self) -> Option<f64> {
        self.rules
            .iter()
            .find(|r| r.metric == Metric::ErrorRate)
            .map(|r| r.limit / 100.0)
    }

    /// The first response-time limit, ms, for charts.
    pub fn latency_ms(&self) -> Option<f64> {
        self.rules
            .iter()
            .find(|r| matches!(r.metric, Metric::Percentile(_)))
            .map(|r| r.limit / 1_000.0)
    }

    /// `error-rate<=1% or p95<=200ms`, for the ramp's first line.
    pub fn describe(&self) -> String {
        self.texts().join(" or ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A step of 1,000 requests at `ms` each, `failed` of them failed.
    fn window(failed: u64, ms: f64) -> (StepResult, StatsEntry) {
        let mut entry = StatsEntry::new("Aggregated", "", 0.0);
        entry.log(ms, 1_000 - failed, false, 1.0);
        entry.log(ms, failed, true, 1.0);
        let mut step = StepResult::measure(10, 1, &entry, 3.0);
        step.worker_cpu = 0.2;
        (step, entry)
    }

    fn judge(limits: &Limits, failed: u64, ms: f64) -> Option<String> {
        let (step, entry) = window(failed, ms);
        limits.judge(&step, &entry).map(|c| c.explain())
    }

    #[test]
    fn the_shorthands_are_rules() {
        let limits = Limits::new(0.01, Some(200.0), Some(0.5), &[]).expect("limits");
        assert_eq!(
            limits.texts(),
            ["error-rate<=1%", "p95<=200ms", "p99<=0.5ms"]
        );
        assert_eq!(Limits::default().texts(), ["error-rate<=1%"]);
        let strict = Limits::new(0.0, None, None, &[]).expect("limits");
        assert_eq!(strict.texts(), ["error-rate<=0%"]);
        let odd = Limits::new(0.07, None, None, &[]).expect("limits");
        assert_eq!(odd.texts(), ["error-rate<=7%"]);
    }

    #[test]
    fn the_failure_ratio_above_the_limit_fails() {
        let limits = Limits::default();
        assert_eq!(judge(&limits, 0, 5.0), None);
        assert_eq!(judge(&limits, 10, 5.0), None, "at the limit is healthy");
        assert_eq!(
            judge(&limits, 11, 5.0).as_deref(),
            Some("error-rate<=1% failed: observed 1.1%")
        );
    }

    #[test]
    fn latency_rules_and_added_rules_judge_in_order() {
        let limits = Limits::new(
            0.01,
            Some(200.0),
            None,
            &["rps>=1000".parse().expect("rule")],
        )
        .expect("limits");
        assert_eq!(
            judge(&limits, 0, 150.0).as_deref(),
            Some("rps>=1000 failed: observed 333.33/s held")
        );
        let said = judge(&limits, 0, 420.0).expect("fails");
        assert!(said.starts_with("p95<=200ms failed: observed 42"), "{said}");
        // Both broken: the failure ratio, first, is named.
        assert!(judge(&limits, 500, 900.0)
            .expect("fails")
            .starts_with("error-rate"));
    }

    #[test]
    fn an_error_rate_rule_replaces_the_default_and_named_requests_are_refused() {
        let given: Vec<Rule> = vec!["error-rate<5%".parse().expect("rule")];
        let limits = Limits::new(DEFAULT_FAIL_RATIO, None, None, &given).expect("limits");
        assert_eq!(limits.texts(), ["error-rate<5%"]);
        assert_eq!(judge(&limits, 40, 1.0), None);
        let named: Vec<Rule> = vec!["p95<1s for GET /a".parse().expect("rule")];
        let err = Limits::new(0.01, None, None, &named).unwrap_err();
        assert!(err.contains("all requests together"), "{err}");
    }

    #[test]
    fn a_saturated_generator_is_named_first() {
        let (mut step, entry) = window(500, 900.0);
        step.worker_cpu = 0.95;
        assert_eq!(
            Limits::default().judge(&step, &entry),
            Some(Criterion::GeneratorCpu)
        );
    }
}
