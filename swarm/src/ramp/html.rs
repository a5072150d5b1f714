//! `ramp.html`: the answer, three inline-SVG charts (RPS, failure ratio,
//! and p50/p95/p99 drawn together, against users, with the threshold and
//! the knee marked) and the step table, in one file with no outside
//! resources.

use std::fmt::Write as _;

use super::judge::Limits;
use super::result::RampReport;
use super::step::StepResult;

const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 230.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 30.0;
const BOTTOM: f64 = 40.0;

const STYLE: &str = "body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:780px;color:#222}
h1{font-size:1.4em}dt{font-weight:600}dd{margin:0 0 .5em 0}
table{border-collapse:collapse;margin-top:1em}td,th{padding:3px 8px;text-align:right;border-bottom:1px solid #ddd}
th{white-space:nowrap}tr.fail td{color:#b00020}svg{display:block;margin:1em 0}.error{color:#b00020;font-weight:600}
svg text{font:11px system-ui,sans-serif;fill:#444}";

/// Escapes text for HTML content and attributes.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// The whole page.
pub fn render(report: &RampReport) -> String {
    let steps = report.steps_by_users();
    let threshold = report.threshold_users;
    let mut page = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>spotload ramp {}</title><style>{STYLE}</style></head><body>\n<h1>Ramp {}</h1>\n",
        escape(&report.ramp),
        escape(&report.ramp)
    );
    page.push_str(&summary(report));
    let series = |name, color, value: fn(&StepResult) -> f64| Series {
        name,
        color,
        points: steps
            .iter()
            .map(|s| (s.users, value(s), !s.is_healthy()))
            .collect(),
    };
    let limits = Limits::from_texts(&report.rules);
    let charts = [
        Chart {
            title: "Requests per second",
            unit: "req/s",
            series: vec![series("", LINE, |s| s.rps)],
            limit: None,
        },
        Chart {
            title: "Failure ratio",
            unit: "%",
            series: vec![series("", LINE, |s| s.fail_ratio * 100.0)],
            limit: limits.fail_ratio().map(|r| r * 100.0),
        },
        Chart {
            title: "Response time",
            unit: "ms",
            series: vec![
                series("p50", "#7cb342", |s| s.p50_ms),
                series("p95", LINE, |s| s.p95_ms),
                series("p99", "#6a1b9a", |s| s.p99_ms),
            ],
            limit: limits.latency_ms(),
        },
    ];
    let marks = Marks {
        threshold,
        knee: report.knee_users,
    };
    if !steps.is_empty() {
        for chart in &charts {
            page.push_str(&chart.svg(&marks));
        }
    }
    page.push_str(&step_table(report));
    page.push_str("</body></html>\n");
    page
}

fn summary(report: &RampReport) -> String {
    let mut html = String::from("<dl>\n");
    let mut item = |term: &str, value: String| {
        let _ = writeln!(html, "<dt>{term}</dt><dd>{value}</dd>");
    };
    if let Some(step) = report.step_at(report.generator_bound_users) {
        item(
            "Generator-bound",
            format!(
                "at {} users ({}): add workers",
                step.users,
                escape(&step.explain())
            ),
        );
    }
    let threshold = match report.threshold_step() {
        Some(step) => format!("{} users ({})", step.users, escape(&step.explain())),
        _ if report.answered() => "none: every step was healthy".to_string(),
        _ => "unknown".to_string(),
    };
    item("Threshold", threshold);
    let healthy = report.last_healthy_step().map_or("none".to_string(), |s| {
        format!(
            "{} users: {:.1} req/s, p50 {} ms, p95 {} ms, p99 {} ms",
            s.users, s.rps, s.p50_ms, s.p95_ms, s.p99_ms
        )
    });
    item("Last healthy", healthy);
    item("Limits", escape(&report.rules.join(", ")));
    item(
        "Steps",
        format!(
            "{} measured, {:.0} s windows{}",
            report.steps.len(),
            report.step_time_s,
            if report.refine { ", refined" } else { "" }
        ),
    );
    if let Some(host) = &report.host {
        item("Target", escape(host));
    }
    if let Some(error) = &report.error {
        item(
            "Could not measure",
            format!("<span class=\"error\">{}</span>", escape(error)),
        );
    }
    for note in &report.notes {
        item("Note", escape(note));
    }
    html.push_str("</dl>\n");
    html
}

fn step_table(report: &RampReport) -> String {
    let mut html = String::from("<table><tr><th>users</th><th>workers</th><th>window s</th><th>requests</th><th>failures</th><th>fail %</th><th>req/s</th><th>p50 ms</th><th>p95 ms</th><th>p99 ms</th><th>worker CPU %</th><th>verdict</th></tr>\n");
    for s in &report.steps {
        let class = if s.is_healthy() {
            ""
        } else {
            " class=\"fail\""
        };
        let _ = writeln!(
            html,
            "<tr{class}><td>{}</td><td>{}</td><td>{:.1}</td><td>{}</td><td>{}</td><td>{:.2}</td><td>{:.1}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.0}</td><td>{}</td></tr>",
            s.users,
            s.workers,
            s.duration_s,
            s.requests,
            s.failures,
            s.fail_ratio * 100.0,
            s.rps,
            s.p50_ms,
            s.p95_ms,
            s.p99_ms,
            s.worker_cpu * 100.0,
            s.verdict_shown()
        );
    }
    html.push_str("</table>\n");
    html
}

/// One line chart against users.
struct Chart {
    title: &'static str,
    unit: &'static str,
    /// One line per series: its name (empty for a chart of one), colour and
    /// (users, value, failed) points, sorted by users.
    series: Vec<Series>,
    /// A horizontal limit line.
    limit: Option<f64>,
}

/// One line of a chart.
struct Series {
    name: &'static str,
    color: &'static str,
    points: Vec<(u64, f64, bool)>,
}

/// The colour of a chart's only (or main) line.
const LINE: &str = "#1565c0";

/// Maps users and values to SVG coordinates.
struct Scale {
    x_min: f64,
    x_max: f64,
    y_max: f64,
    /// Distance between horizontal grid lines.
    y_step: f64,
}

impl Scale {
    fn x(&self, users: u64) -> f64 {
        LEFT + (users as f64 - self.x_min) / (self.x_max - self.x_min) * (WIDTH - LEFT - RIGHT)
    }

    fn y(&self, value: f64) -> f64 {
        HEIGHT - BOTTOM - value / self.y_max * (HEIGHT - TOP - BOTTOM)
    }
}

/// User counts marked across every chart.
struct Marks {
    threshold: Option<u64>,
    knee: Option<u64>,
}

impl Chart {
    /// Every point of every series.
    fn points(&self) -> impl Iterator<Item = &(u64, f64, bool)> {
        self.series.iter().flat_map(|s| &s.points)
    }

    /// Users across, 0 to a round number above the values (and limit) up.
    fn scale(&self) -> Scale {
        let first = self.points().map(|p| p.0).min();
        let last = self.points().map(|p| p.0).max();
        let (x_min, x_max) = match (first, last) {
            (Some(a), Some(b)) if a < b => (a as f64, b as f64),
            (Some(a), _) => (a as f64 - 1.0, a as f64 + 1.0),
            _ => (0.0, 1.0),
        };
        let top = self
            .points()
            .map(|p| p.1)
            .chain(self.limit)
            .fold(0.0_f64, f64::max);
        let y_step = nice_step(top / 4.0);
        Scale {
            x_min,
            x_max,
            y_max: ((top / y_step).ceil() * y_step).max(y_step),
            y_step,
        }
    }

    fn svg(&self, marks: &Marks) -> String {
        let scale = self.scale();
        let mut svg = format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{HEIGHT}\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" role=\"img\" aria-label=\"{} against users\">\n<text x=\"{LEFT}\" y=\"16\" style=\"font-weight:600;font-size:13px\">{} ({})</text>\n",
            self.title, self.title, self.unit
        );
        self.axes(&scale, &mut svg);
        if let Some(limit) = self.limit {
            let _ = writeln!(svg, "<line x1=\"{LEFT}\" x2=\"{:.1}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"#b00020\" stroke-dasharray=\"2 3\"/>", WIDTH - RIGHT, y = scale.y(limit));
        }
        for (users, name, color) in [
            (marks.threshold, "threshold", "#b00020"),
            (marks.knee, "knee", "#ef6c00"),
        ] {
            if let Some(users) = users {
                let _ = writeln!(svg, "<line x1=\"{x:.1}\" x2=\"{x:.1}\" y1=\"{TOP}\" y2=\"{:.1}\" stroke=\"{color}\" stroke-dasharray=\"6 4\"/><text x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\" style=\"fill:{color}\">{name} {users}</text>", HEIGHT - BOTTOM, TOP - 4.0, x = scale.x(users));
            }
        }
        self.data(&scale, &mut svg);
        svg.push_str("</svg>\n");
        svg
    }

    /// Horizontal grid lines with values, user counts below.
    fn axes(&self, scale: &Scale, svg: &mut String) {
        let mut tick = 0.0;
        while tick <= scale.y_max + scale.y_step / 2.0 {
            let _ = writeln!(
                svg,
                "<line x1=\"{LEFT}\" x2=\"{:.1}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"#eee\"/><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
                WIDTH - RIGHT,
                LEFT - 6.0,
                scale.y(tick) + 4.0,
                tick_label(tick, scale.y_step),
                y = scale.y(tick)
            );
            tick += scale.y_step;
        }
        let mut users: Vec<u64> = self.points().map(|p| p.0).collect();
        users.sort_unstable();
        users.dedup();
        for users in x_ticks(&users) {
            let _ = writeln!(
                svg,
                "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{users}</text>",
                scale.x(users),
                HEIGHT - BOTTOM + 16.0
            );
        }
        let _ = writeln!(
            svg,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">users</text>",
            (LEFT + WIDTH - RIGHT) / 2.0,
            HEIGHT - 6.0
        );
    }

    /// A line per series through the steps, a dot per step (red when it
    /// failed), and a legend when there are several.
    fn data(&self, scale: &Scale, svg: &mut String) {
        for (i, series) in self.series.iter().enumerate() {
            let line: Vec<String> = series
                .points
                .iter()
                .map(|(u, v, _)| format!("{:.1},{:.1}", scale.x(*u), scale.y(*v)))
                .collect();
            let _ = writeln!(
                svg,
                "<polyline fill=\"none\" stroke=\"{}\" stroke-width=\"2\" points=\"{}\"/>",
                series.color,
                line.join(" ")
            );
            let name = if series.name.is_empty() {
                String::new()
            } else {
                format!("{} ", series.name)
            };
            for (users, value, failed) in &series.points {
                let color = if *failed { "#b00020" } else { series.color };
                let _ = writeln!(svg, "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"4\" fill=\"{color}\"><title>{users} users: {name}{} {}</title></circle>", scale.x(*users), scale.y(*value), label(*value), self.unit);
            }
            if self.series.len() > 1 {
                let x = WIDTH - RIGHT - 40.0 * (self.series.len() - i) as f64;
                let _ = writeln!(
                    svg,
                    "<text x=\"{x:.1}\" y=\"16\" style=\"fill:{}\">{}</text>",
                    series.color, series.name
                );
            }
        }
    }
}

/// 1, 2 or 5 times a power of ten, at least `raw`.
fn nice_step(raw: f64) -> f64 {
    if !raw.is_finite() || raw <= 0.0 {
        return 1.0;
    }
    let magnitude = 10f64.powf(raw.log10().floor());
    let residual = raw / magnitude;
    let nice = if residual <= 1.0 {
        1.0
    } else if residual <= 2.0 {
        2.0
    } else if residual <= 5.0 {
        5.0
    } else {
        10.0
    };
    nice * magnitude
}

fn label(value: f64) -> String {
    if value >= 100.0 || value.fract() == 0.0 {
        format!("{value:.0}")
    } else if value >= 1.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.2}")
    }
}

/// Grid values with as many decimals as the grid step needs.
fn tick_label(value: f64, step: f64) -> String {
    if step >= 1.0 {
        format!("{value:.0}")
    } else if step >= 0.1 {
        format!("{value:.1}")
    } else {
        format!("{value:.2}")
    }
}

/// Every user count when there are few, else about ten evenly spread.
fn x_ticks(users: &[u64]) -> Vec<u64> {
    if users.len() <= 12 {
        return users.to_vec();
    }
    let every = users.len().div_ceil(10);
    users.iter().step_by(every).copied().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ramp::result::tests::{report, step};
    use crate::ramp::Criterion;

    #[test]
    fn the_page_is_self_contained_with_three_charts() {
        let mut r = report(vec![
            step(2, None),
            step(4, None),
            step(6, Some(Criterion::failing("error-rate<=1%", "50%"))),
        ]);
        r.notes.push("worker <w1> left & came back".into());
        let html = render(&r);
        assert_eq!(html.matches("<svg").count(), 3);
        assert!(html.contains("threshold 6"));
        assert!(html.contains("worker &lt;w1&gt; left &amp; came back"));
        assert!(
            !html.contains("<script") && !html.contains("src="),
            "no outside script"
        );
        assert!(!html.contains("<link"), "no outside stylesheet");
        assert_eq!(html.matches("<tr").count(), 4, "header and three steps");
    }

    #[test]
    fn no_steps_no_charts() {
        let mut r = report(vec![]);
        r.error = Some("no workers".into());
        let html = render(&r);
        assert!(!html.contains("<svg"));
        assert!(html.contains("Could not measure"));
    }

    #[test]
    fn axis_steps_are_round() {
        assert_eq!(nice_step(0.0), 1.0);
        assert_eq!(nice_step(0.3), 0.5);
        assert_eq!(nice_step(7.0), 10.0);
        assert_eq!(nice_step(130.0), 200.0);
        assert_eq!(x_ticks(&(1..=30).collect::<Vec<u64>>()).len(), 10);
    }
}
