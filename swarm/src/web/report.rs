//! `GET /stats/report`: a self-contained HTML report of the run — the
//! template carries its own styles and chart code; the data goes in as JSON.

use serde_json::json;

use crate::master::{HistorySample, MasterSnapshot};
use crate::ramp::html::escape;
use crate::thresholds::Verdict;

const TEMPLATE: &str = include_str!("assets/report.html");

/// An epoch time as ISO 8601 UTC.
pub fn iso8601(ts: f64) -> String {
    let secs = ts as i64;
    let (y, m, d) = crate::stats::civil_from_days(secs.div_euclid(86_400));
    let rem = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Fills the template with the snapshot's numbers.
pub fn render_report(snapshot: &MasterSnapshot, history: &[HistorySample]) -> String {
    let api = super::handlers::stats_requests(snapshot);
    let data = json!({
        "title": "spotload test report",
        "host": snapshot.host,
        "started": snapshot.started_at.map(iso8601),
        "ended": snapshot.ended_at.map(iso8601),
        "stats": api.stats,
        "errors": api.errors,
        "exceptions": snapshot.exceptions,
        "history": history,
    });
    let data = super::json_for_script(&data.to_string());
    // The shared script goes in first: the data must not be searched for
    // the script's placeholder; the thresholds table before the data too.
    super::handlers::with_shared_parts(TEMPLATE)
        .replace("/*__COMMON_JS__*/", super::handlers::COMMON_JS)
        .replacen(
            "<!--__THRESHOLDS__-->",
            &thresholds_table(&snapshot.thresholds),
            1,
        )
        .replace("__REPORT_DATA__", &data)
}

/// The `--threshold` rules as a table, written here rather than by the
/// page's script so that it reads the same with scripts off; empty
/// without rules.
fn thresholds_table(verdicts: &[Verdict]) -> String {
    if verdicts.is_empty() {
        return String::new();
    }
    let mut html = String::from(
        "<h2>Thresholds</h2>\n<div class=\"card table-wrap\"><table id=\"thresholds-table\"><thead><tr><th>Rule</th><th>Observed</th><th>Result</th></tr></thead><tbody>\n",
    );
    for v in verdicts {
        let class = if v.passed { "pass" } else { "fail" };
        html.push_str(&format!(
            "<tr><td class=\"name\">{}</td><td>{}</td><td class=\"{class}\">{}</td></tr>\n",
            escape(&v.rule),
            escape(&v.observed),
            v.shown()
        ));
    }
    html.push_str("</tbody></table></div>\n");
    html
}
