//! What a rule observes in the master's merged stats, and its verdict.
//!
//! Times come from the merged microsecond histograms of every worker
//! ([`StatsEntry::precise`]); when a report without one was merged (a stock
//! Locust worker), from Locust's rounded buckets, and the observed value
//! says so. `rps` counts only what the run did while it held its users
//! ([`Holds`]).

use serde::{Deserialize, Serialize};

use super::holds::Holds;
use super::rule::{Metric, Rule};
use crate::stats::{RequestStats, StatsEntry};

/// What [`Verdict::observed`] says of a rule whose metric had no samples.
pub const NO_SAMPLES: &str = "no samples";

/// One rule judged: as `/stats/requests` (`thresholds`), the summary, the
/// HTML report and the page show it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    /// The rule, as given.
    pub rule: String,
    /// What was observed, as reports show it: `0.812ms`, `0.4%`, `213.5/s
    /// held`, `no samples`; for the rule that stopped the run, the value
    /// then and at the end when they differ.
    pub observed: String,
    /// The observed value as a number (ms for a time, percent for
    /// `error-rate`, requests per second for `rps`); `None` without samples.
    pub value: Option<f64>,
    /// Whether the rule passes. While the run goes, a rule without samples
    /// yet passes; once it ended, it fails.
    pub passed: bool,
    /// Whether this rule failing stopped the run.
    pub aborted: bool,
    /// Where the times came from: `hdr` (merged microsecond histograms) or
    /// `buckets` (Locust's, when a stock Locust worker reported); absent for
    /// counts and rates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

impl Verdict {
    /// `PASS`, `FAIL` or `FAIL, stopped the run`: in words, never only colour.
    pub fn shown(&self) -> &'static str {
        match (self.passed, self.aborted) {
            (true, _) => "PASS",
            (false, false) => "FAIL",
            (false, true) => "FAIL, stopped the run",
        }
    }
}

/// When a rule is judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// While the run goes: a rule without samples yet is not failed.
    MidRun,
    /// Once the run ended: a rule without samples fails.
    Final,
}

/// A value a rule observed.
#[derive(Debug, Clone, PartialEq)]
pub struct Observed {
    /// In the rule's own unit (µs, percent, per second), to compare.
    pub compared: f64,
    /// As [`Verdict::value`] gives it.
    pub value: f64,
    /// As reports show it.
    pub shown: String,
    /// `hdr` or `buckets` for times.
    pub source: Option<&'static str>,
}

/// `ms` with its microseconds, without trailing zeros: `0.489ms`, `12ms`.
pub fn format_ms(ms: f64) -> String {
    let text = format!("{ms:.3}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    format!("{text}ms")
}

/// `number` with at most two decimals, no trailing zeros.
fn short(number: f64) -> String {
    let text = format!("{number:.2}");
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// The row `rule` judges: the `Aggregated` total, or the row named
/// `METHOD name` (or `name` alone when one method has it).
pub fn figures<'s>(rule: &Rule, stats: &'s RequestStats) -> Option<&'s StatsEntry> {
    let Some(wanted) = rule.request.as_deref() else {
        return Some(&stats.total);
    };
    let exact = stats
        .entries
        .values()
        .find(|e| format!("{} {}", e.method, e.name) == wanted);
    if exact.is_some() {
        return exact;
    }
    let mut by_name = stats.entries.values().filter(|e| e.name == wanted);
    let only = by_name.next()?;
    by_name.next().is_none().then_some(only)
}

/// What `rule` observes in `entry`; `held` gives the requests and seconds
/// of the holds, for `rps`. `None` without samples.
pub fn observe(rule: &Rule, entry: &StatsEntry, held: Option<(u64, f64)>) -> Option<Observed> {
    let timed = entry.timed_requests() > 0;
    let source = || {
        Some(if entry.precise().is_some() {
            "hdr"
        } else {
            "buckets"
        })
    };
    let time = |ms: f64| {
        let buckets = entry.precise().is_none();
        Observed {
            compared: ms * 1_000.0,
            value: ms,
            shown: if buckets {
                format!("{} (Locust buckets)", format_ms(ms))
            } else {
                format_ms(ms)
            },
            source: source(),
        }
    };
    match rule.metric {
        Metric::Percentile(p) if timed => Some(time(entry.percentile_ms(p / 100.0))),
        Metric::Average if timed => Some(time(entry.avg_response_time())),
        // The exact slowest time, unless back-filled requests (coordinated
        // omission mitigation) are slower: only the histogram holds those.
        Metric::Maximum if timed => Some(time(match entry.precise() {
            Some(hdr) if entry.co_corrected() => hdr.max_ms().max(entry.max_response_time),
            _ => entry.max_response_time,
        })),
        Metric::ErrorRate if entry.num_requests > 0 => {
            let percent = entry.num_failures as f64 / entry.num_requests as f64 * 100.0;
            Some(Observed {
                compared: percent,
                value: percent,
                shown: format!("{}%", short(percent)),
                source: None,
            })
        }
        Metric::RequestsPerSecond => {
            // Before a whole second held there is no rate to judge.
            let (requests, seconds) = held?;
            (requests > 0 && seconds >= 1.0).then(|| {
                let rate = requests as f64 / seconds;
                Observed {
                    compared: rate,
                    value: rate,
                    shown: format!("{}/s held", short(rate)),
                    source: None,
                }
            })
        }
        _ => None,
    }
}

/// Whether `observed` passes `rule`.
pub fn passes(rule: &Rule, observed: &Observed) -> bool {
    rule.operator.passes(observed.compared, rule.limit)
}

/// The first of `rules` failing now, mid-run, with what it observed.
pub fn first_failure(
    rules: &[Rule],
    stats: &RequestStats,
    holds: &Holds,
    now: f64,
) -> Option<(usize, Observed)> {
    rules.iter().enumerate().find_map(|(index, rule)| {
        let entry = figures(rule, stats)?;
        let held = holds.held(index, entry, now);
        let observed = observe(rule, entry, Some(held))?;
        (!passes(rule, &observed)).then_some((index, observed))
    })
}

/// Every rule judged on `stats` as `check` says; `aborted` is the rule
/// that stopped the run and what it observed then: it fails whatever it
/// observes now.
pub fn judge_all(
    rules: &[Rule],
    stats: &RequestStats,
    holds: &Holds,
    now: f64,
    check: Check,
    aborted: Option<(usize, &str)>,
) -> Vec<Verdict> {
    rules
        .iter()
        .enumerate()
        .map(|(index, rule)| {
            let observed = figures(rule, stats)
                .and_then(|entry| observe(rule, entry, Some(holds.held(index, entry, now))));
            let mut verdict = match &observed {
                Some(o) => Verdict {
                    rule: rule.text.clone(),
                    observed: o.shown.clone(),
                    value: Some(o.value),
                    passed: passes(rule, o),
                    aborted: false,
                    source: o.source.map(str::to_string),
                },
                None => Verdict {
                    rule: rule.text.clone(),
                    observed: match (&rule.request, figures(rule, stats)) {
                        (Some(name), None) => format!("{NO_SAMPLES}: no request named {name:?}"),
                        _ => NO_SAMPLES.to_string(),
                    },
                    value: None,
                    passed: check == Check::MidRun,
                    aborted: false,
                    source: None,
                },
            };
            if let Some((_, at_abort)) = aborted.filter(|(i, _)| *i == index) {
                if verdict.observed != at_abort {
                    verdict.observed =
                        format!("{at_abort} at the stop, {} at the end", verdict.observed);
                }
                verdict.passed = false;
                verdict.aborted = true;
            }
            verdict
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(text: &str) -> Rule {
        text.parse().expect(text)
    }

    /// 100 requests of 1..=100 ms (so p95 is 95 ms), 5 failed, on `GET /a`.
    fn stats() -> RequestStats {
        let mut stats = RequestStats::new(0.0);
        let mut entry = StatsEntry::new("/a", "GET", 0.0);
        for ms in 1..=100 {
            entry.log(f64::from(ms), 1, ms > 95, 1.0);
        }
        stats.total.extend(&entry);
        stats.entries.insert(("GET".into(), "/a".into()), entry);
        stats
    }

    #[test]
    fn times_come_from_the_merged_histograms_to_the_microsecond() {
        let stats = stats();
        let holds = Holds::default();
        let verdicts = judge_all(
            &[
                rule("p95<=95.1ms"),
                rule("p95<95ms"),
                rule("avg<50.5ms"),
                rule("max<=100ms"),
            ],
            &stats,
            &holds,
            10.0,
            Check::Final,
            None,
        );
        let shown: Vec<(bool, &str)> = verdicts
            .iter()
            .map(|v| (v.passed, v.observed.as_str()))
            .collect();
        assert!(shown[0].0, "{verdicts:?}");
        assert!(!shown[1].0, "{verdicts:?}");
        assert_eq!(shown[2], (false, "50.5ms"), "{verdicts:?}");
        assert_eq!(shown[3], (true, "100ms"), "{verdicts:?}");
        // The histogram keeps 3 significant digits: 95 ms reads 95.039 ms.
        assert_eq!(verdicts[0].observed, "95.039ms");
        assert_eq!(verdicts[0].source.as_deref(), Some("hdr"));
    }

    #[test]
    fn error_rate_and_named_requests() {
        let stats = stats();
        let holds = Holds::default();
        let verdicts = judge_all(
            &[
                rule("error-rate<5%"),
                rule("error-rate<=5% for GET /a"),
                rule("error-rate<=5% for /a"),
                rule("p95<1s for GET /nowhere"),
            ],
            &stats,
            &holds,
            10.0,
            Check::Final,
            None,
        );
        assert_eq!(verdicts[0].observed, "5%");
        assert!(!verdicts[0].passed);
        assert!(verdicts[1].passed && verdicts[2].passed, "{verdicts:?}");
        assert!(!verdicts[3].passed, "no samples fails at the end");
        assert!(
            verdicts[3].observed.contains("no request named"),
            "{verdicts:?}"
        );
        let live = judge_all(
            &[rule("p95<1s for GET /b")],
            &stats,
            &holds,
            1.0,
            Check::MidRun,
            None,
        );
        assert!(live[0].passed, "no samples yet is not a failure mid-run");
    }

    #[test]
    fn the_rule_that_stopped_the_run_fails_with_both_values() {
        let stats = stats();
        let verdicts = judge_all(
            &[rule("error-rate<50%")],
            &stats,
            &Holds::default(),
            10.0,
            Check::Final,
            Some((0, "60%")),
        );
        assert!(!verdicts[0].passed && verdicts[0].aborted);
        assert_eq!(verdicts[0].observed, "60% at the stop, 5% at the end");
        assert_eq!(verdicts[0].shown(), "FAIL, stopped the run");
    }

    #[test]
    fn locust_buckets_are_named_when_no_histogram_was_merged() {
        let mut stats = stats();
        stats.total.hdr = None;
        let verdicts = judge_all(
            &[rule("p50<1s")],
            &stats,
            &Holds::default(),
            1.0,
            Check::Final,
            None,
        );
        assert!(
            verdicts[0].observed.ends_with("(Locust buckets)"),
            "{verdicts:?}"
        );
        assert_eq!(verdicts[0].source.as_deref(), Some("buckets"));
    }

    #[test]
    fn first_failure_skips_rules_without_samples() {
        let stats = stats();
        let rules = [rule("p95<1s for GET /b"), rule("p95<1s"), rule("max<99ms")];
        let failed = first_failure(&rules, &stats, &Holds::default(), 1.0);
        assert_eq!(
            failed.map(|(i, o)| (i, o.shown)),
            Some((2, "100ms".to_string()))
        );
    }
}
