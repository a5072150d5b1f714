//! The terminal side of a ramp: a table row per step as it finishes, and
//! the answer at the end.

use std::io::Write;

use super::engine::Progress;
use super::result::RampReport;
use super::step::StepResult;

/// The column headings, aligned with [`row`].
pub fn header() -> String {
    format!(
        "{:>7} {:>7} {:>9} {:>9} {:>8} {:>9} {:>8} {:>8} {:>8} {:>6}  {}",
        "users",
        "workers",
        "requests",
        "failures",
        "fail%",
        "req/s",
        "p50ms",
        "p95ms",
        "p99ms",
        "cpu%",
        "verdict"
    )
}

/// One step as a table row.
pub fn row(step: &StepResult) -> String {
    format!(
        "{:>7} {:>7} {:>9} {:>9} {:>7.2}% {:>9.1} {:>8.3} {:>8.3} {:>8.3} {:>5.0}%  {}",
        step.users,
        step.workers,
        step.requests,
        step.failures,
        step.fail_ratio * 100.0,
        step.rps,
        step.p50_ms,
        step.p95_ms,
        step.p99_ms,
        step.worker_cpu * 100.0,
        step.verdict_shown()
    )
}

/// Prints the table as the ramp goes (to stdout, or any writer in tests).
pub struct StepTable<W: Write + Send> {
    out: W,
    header_done: bool,
}

impl StepTable<std::io::Stdout> {
    /// A table printed to standard output.
    pub fn stdout() -> Self {
        StepTable::new(std::io::stdout())
    }
}

impl<W: Write + Send> StepTable<W> {
    /// A table written to `out`, header first.
    pub fn new(out: W) -> Self {
        StepTable {
            out,
            header_done: false,
        }
    }

    /// The writer back, e.g. to read what a test printed.
    pub fn into_inner(self) -> W {
        self.out
    }

    /// Writes a line; a closed terminal must not end the ramp.
    fn line(&mut self, text: &str) {
        let _ = writeln!(self.out, "{text}");
        let _ = self.out.flush();
    }
}

impl<W: Write + Send> Progress for StepTable<W> {
    fn step_started(&mut self, users: u64) {
        if !self.header_done {
            self.header_done = true;
            let heading = header();
            self.line(&heading);
        }
        tracing::info!("ramp step: {users} users");
    }

    fn step_done(&mut self, step: &StepResult) {
        let text = row(step);
        self.line(&text);
    }

    fn note(&mut self, text: &str) {
        self.line(&format!("  note: {text}"));
    }
}

/// The answer in a few lines: the threshold and why, the last healthy
/// step's numbers, or why there is no answer.
pub fn conclusion(report: &RampReport) -> String {
    let mut lines = Vec::new();
    if let Some(step) = report.step_at(report.generator_bound_users) {
        lines.push(format!(
            "generator-bound at {} users ({}): the workers, not the target, set these numbers; add workers and ramp again",
            step.users,
            step.explain()
        ));
    }
    match report.threshold_step() {
        Some(step) => lines.push(format!(
            "threshold: {} users ({})",
            step.users,
            step.explain()
        )),
        None if report.generator_bound_users.is_some() => {}
        None if report.answered() => lines.push(format!(
            "no threshold: every step up to {} users was healthy",
            report.steps.iter().map(|s| s.users).max().unwrap_or(0)
        )),
        None => {}
    }
    if let Some((at, next)) = report.knee() {
        lines.push(format!(
            "knee: {} users: requests/s stopped growing ({:.1} at {} users, {:.1} at {}) while p95 grew ({} → {} ms): the capacity of the target, or of the generator",
            at.users, at.rps, at.users, next.rps, next.users, at.p95_ms, next.p95_ms
        ));
    }
    match report.last_healthy_step() {
        Some(step) => lines.push(format!(
            "last healthy: {} users: {:.1} req/s, p50 {} ms, p95 {} ms, p99 {} ms, {:.2}% failed",
            step.users,
            step.rps,
            step.p50_ms,
            step.p95_ms,
            step.p99_ms,
            step.fail_ratio * 100.0
        )),
        None if report.threshold_users.is_some() => {
            lines.push("last healthy: none (the first step already failed)".to_string());
        }
        None => {}
    }
    if let Some(error) = &report.error {
        lines.push(format!("could not measure: {error}"));
    }
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ramp::result::tests::{report, step};
    use crate::ramp::Criterion;

    #[test]
    fn rows_line_up_with_the_header() {
        let s = step(12, Some(Criterion::failing("error-rate<=1%", "50%")));
        assert_eq!(
            row(&s).len(),
            header().len() - "verdict".len() + "error-rate<=1%".len()
        );
        assert!(row(&s).ends_with("error-rate<=1%"));
    }

    #[test]
    fn the_table_prints_as_steps_finish() {
        let mut table = StepTable::new(Vec::new());
        table.step_started(2);
        table.step_done(&step(2, None));
        table.step_started(4);
        table.note("a worker left");
        let text = String::from_utf8(table.into_inner()).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(lines[0].contains("users") && lines[1].contains("healthy"));
        assert!(lines[2].contains("note: a worker left"));
    }

    #[test]
    fn the_conclusion_names_threshold_and_last_healthy() {
        let r = report(vec![
            step(2, None),
            step(4, Some(Criterion::failing("error-rate<=1%", "50%"))),
        ]);
        let text = conclusion(&r);
        assert!(
            text.contains("threshold: 4 users (error-rate<=1% failed: observed 50%)"),
            "{text}"
        );
        assert!(
            text.contains("last healthy: 2 users: 33.3 req/s, p50 10 ms"),
            "{text}"
        );
        let r = report(vec![step(2, None), step(4, None)]);
        assert!(conclusion(&r).contains("no threshold: every step up to 4 users"));
        let mut r = report(vec![]);
        r.error = Some("the target is unreachable".into());
        assert_eq!(
            conclusion(&r),
            "could not measure: the target is unreachable"
        );
    }
}
