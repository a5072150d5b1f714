//! The end-of-run summary on stdout, laid out like Locust's.

use crate::master::MasterSnapshot;
use crate::stats::{StatsEntry, PERCENTILES_TO_REPORT};
use crate::thresholds::Verdict;

fn name_of(entry: &StatsEntry) -> String {
    let name = format!("{} {}", entry.method, entry.name);
    let name = name.trim();
    if name.chars().count() > 40 {
        format!("{}…", name.chars().take(39).collect::<String>())
    } else {
        name.to_string()
    }
}

/// Prints the request table and the percentile table, and in the open
/// model the dropped iterations.
pub fn print_summary(snapshot: &MasterSnapshot) {
    let stats = &snapshot.stats;
    let mut rows: Vec<&StatsEntry> = stats.sorted_entries();
    rows.push(&stats.total);
    let rule = "-".repeat(118);
    println!(
        "{:<40} {:>10} {:>16} | {:>7} {:>7} {:>7} {:>7} | {:>9} {:>10}",
        "Name", "# reqs", "# fails", "Avg", "Min", "Max", "Med", "req/s", "failures/s"
    );
    println!("{rule}");
    for (i, e) in rows.iter().enumerate() {
        if i + 1 == rows.len() {
            println!("{rule}");
        }
        let fails = format!("{}({:.2}%)", e.num_failures, e.fail_ratio() * 100.0);
        println!(
            "{:<40} {:>10} {:>16} | {:>7} {:>7} {:>7} {:>7} | {:>9.2} {:>10.2}",
            name_of(e),
            e.num_requests,
            fails,
            ms(e.avg_response_time()),
            ms(e.min_response_time.unwrap_or(0.0)),
            ms(e.max_response_time),
            ms(e.percentile_ms(0.5)),
            e.total_rps(&stats.total),
            e.total_fail_per_sec(&stats.total)
        );
    }
    println!();
    let source = match stats.total.percentile_source() {
        "hdr" => "merged microsecond histograms".to_string(),
        "hdr+co" => format!(
            "merged microsecond histograms, CORRECTED for coordinated omission ({} requests back-filled by goose for stalled users; the counts above are the requests sent)",
            stats.total.backfilled
        ),
        _ => "Locust's rounded buckets (a report without a histogram was merged in)".to_string(),
    };
    println!("Response time percentiles (ms), from {source}");
    let labels: Vec<String> = PERCENTILES_TO_REPORT
        .iter()
        .map(|p| format!("{}%", (p * 100.0 * 100.0).round() / 100.0))
        .collect();
    println!(
        "{:<40} {} {:>10}",
        "Name",
        labels.iter().map(|l| format!("{l:>7}")).collect::<String>(),
        "# reqs"
    );
    println!("{rule}");
    for e in rows {
        let cells: String = PERCENTILES_TO_REPORT
            .iter()
            .map(|p| {
                if e.num_requests == 0 {
                    format!("{:>7}", "N/A")
                } else {
                    format!("{:>7}", ms(e.percentile_ms(*p)))
                }
            })
            .collect();
        println!("{:<40} {cells} {:>10}", name_of(e), e.num_requests);
    }
    if let Some(rate) = snapshot.arrival_rate {
        // The open model: what was asked, and the starts no user was free
        // for (k6's dropped_iterations).
        println!();
        println!("arrival rate: {rate} iterations/s");
        println!("dropped iterations: {}", stats.dropped_iterations);
    } else if stats.dropped_iterations > 0 {
        println!();
        println!("dropped iterations: {}", stats.dropped_iterations);
    }
    print_thresholds(&snapshot.thresholds);
}

/// The `--threshold` table: every rule, what it observed, PASS or FAIL.
fn print_thresholds(verdicts: &[Verdict]) {
    if verdicts.is_empty() {
        return;
    }
    let failed = verdicts.iter().filter(|v| !v.passed).count();
    println!();
    println!(
        "Thresholds, judged on every worker's merged numbers: {} of {} passed",
        verdicts.len() - failed,
        verdicts.len()
    );
    let column = |text: fn(&Verdict) -> &str, title: &str| {
        verdicts
            .iter()
            .map(|v| text(v).chars().count())
            .chain([title.len()])
            .max()
            .unwrap_or(0)
            .min(60)
    };
    let rule = column(|v| v.rule.as_str(), "Rule");
    let observed = column(|v| v.observed.as_str(), "Observed");
    println!("{:<rule$}  {:<observed$}  Result", "Rule", "Observed");
    println!("{}", "-".repeat(rule + 2 + observed + 2 + 21));
    for v in verdicts {
        println!(
            "{:<rule$}  {:<observed$}  {}",
            v.rule,
            v.observed,
            v.shown()
        );
    }
}

/// A time in ms, to the microsecond where that is not noise: `0.412`,
/// `12.34`, `456.7`, `1234`.
fn ms(value: f64) -> String {
    match value {
        v if v < 10.0 => format!("{v:.3}"),
        v if v < 100.0 => format!("{v:.2}"),
        v if v < 1000.0 => format!("{v:.1}"),
        v => format!("{v:.0}"),
    }
}
