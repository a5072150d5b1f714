//! Locust's CSV files: `_stats.csv`, `_stats_history.csv`, `_failures.csv`,
//! with Locust's headers and number formats.

use std::fmt::Write;

use super::{RequestStats, StatsEntry, PERCENTILES_TO_REPORT};

/// "50%", "99.9%", "100%", as Locust labels percentiles.
fn percentile_labels() -> Vec<String> {
    PERCENTILES_TO_REPORT
        .iter()
        .map(|p| {
            let pct = p * 100.0;
            if (pct - pct.round()).abs() < 1e-9 {
                format!("{}%", pct.round() as u64)
            } else {
                format!("{}%", (pct * 1e6).round() / 1e6)
            }
        })
        .collect()
}

fn percentile_cells(entry: &StatsEntry) -> Vec<String> {
    PERCENTILES_TO_REPORT
        .iter()
        .map(|p| {
            if entry.num_requests == 0 {
                "N/A".to_string()
            } else {
                entry.percentile(*p).to_string()
            }
        })
        .collect()
}

/// A CSV cell: quoted when it holds a comma, quote or newline.
fn cell(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_string()
    }
}

fn line(cells: impl IntoIterator<Item = String>) -> String {
    let mut out = cells
        .into_iter()
        .map(|c| cell(&c))
        .collect::<Vec<_>>()
        .join(",");
    out.push_str("\r\n");
    out
}

/// A float the way Python's `str()` prints it ("0.0", "12.5").
fn py_float(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e16 {
        format!("{v:.1}")
    } else {
        format!("{v}")
    }
}

/// Counts and times in the order both Locust CSVs list them.
fn count_cells(entry: &StatsEntry) -> [String; 7] {
    [
        entry.num_requests.to_string(),
        entry.num_failures.to_string(),
        entry.median_response_time().to_string(),
        py_float(entry.avg_response_time()),
        py_float(entry.min_response_time.unwrap_or(0.0)),
        py_float(entry.max_response_time),
        py_float(entry.avg_content_length()),
    ]
}

/// One row of the stats CSV; `run` is the run's total, over whose span
/// Locust gives every row's rates.
fn stats_row(entry: &StatsEntry, run: &StatsEntry) -> String {
    let mut cells = vec![entry.method.clone(), entry.name.clone()];
    cells.extend(count_cells(entry));
    cells.extend([
        py_float(entry.total_rps(run)),
        py_float(entry.total_fail_per_sec(run)),
    ]);
    cells.extend(percentile_cells(entry));
    line(cells)
}

/// A header: `first`, then Locust's percentile labels.
fn header_with_percentiles(first: &[&str]) -> Vec<String> {
    let mut header: Vec<String> = first.iter().map(|h| (*h).to_string()).collect();
    header.extend(percentile_labels());
    header
}

/// `_stats.csv` / `GET /stats/requests/csv`: one row per entry, then
/// `Aggregated`.
pub fn stats_csv(stats: &RequestStats) -> String {
    let mut out = line(header_with_percentiles(&[
        "Type",
        "Name",
        "Request Count",
        "Failure Count",
        "Median Response Time",
        "Average Response Time",
        "Min Response Time",
        "Max Response Time",
        "Average Content Size",
        "Requests/s",
        "Failures/s",
    ]));
    for entry in stats.sorted_entries() {
        out.push_str(&stats_row(entry, &stats.total));
    }
    out.push_str(&stats_row(&stats.total, &stats.total));
    out
}

/// The header line of `_stats_history.csv`.
pub fn stats_history_csv_header() -> String {
    let mut header = header_with_percentiles(&[
        "Timestamp",
        "User Count",
        "Type",
        "Name",
        "Requests/s",
        "Failures/s",
    ]);
    header.extend(
        [
            "Total Request Count",
            "Total Failure Count",
            "Total Median Response Time",
            "Total Average Response Time",
            "Total Min Response Time",
            "Total Max Response Time",
            "Total Average Content Size",
        ]
        .iter()
        .map(std::string::ToString::to_string),
    );
    line(header)
}

/// One `_stats_history.csv` row for the total at `now`.
pub fn stats_history_csv_row(stats: &RequestStats, user_count: u64, now: f64) -> String {
    let total = &stats.total;
    let mut cells = vec![
        (now as i64).to_string(),
        user_count.to_string(),
        String::new(),
        total.name.clone(),
        format!("{:.6}", total.current_rps(total)),
        format!("{:.6}", total.current_fail_per_sec(total)),
    ];
    cells.extend(percentile_cells(total));
    cells.extend(count_cells(total));
    line(cells)
}

fn utc(ts: Option<f64>) -> String {
    let Some(ts) = ts else { return String::new() };
    let secs = ts as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    let mut out = String::new();
    let _ = write!(
        out,
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    );
    out
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian.
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// `_failures.csv` / `GET /stats/failures/csv`.
pub fn failures_csv(stats: &RequestStats) -> String {
    let mut out = line(
        [
            "Method",
            "Name",
            "Error",
            "Occurrences",
            "First Seen",
            "Last Seen",
        ]
        .map(String::from),
    );
    for error in stats.errors.values() {
        out.push_str(&line([
            error.method.clone(),
            error.name.clone(),
            error.error.clone(),
            error.occurrences.to_string(),
            utc(error.first_seen),
            utc(error.last_seen),
        ]));
    }
    out
}

/// `_exceptions.csv` / `GET /exceptions/csv`.
pub fn exceptions_csv(rows: &[super::ExceptionRow]) -> String {
    let mut out = line(["Count", "Message", "Traceback", "Nodes"].map(String::from));
    for row in rows {
        let nodes: Vec<&str> = row.nodes.iter().map(String::as_str).collect();
        out.push_str(&line([
            row.count.to_string(),
            row.msg.clone(),
            row.traceback.clone(),
            nodes.join(", "),
        ]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_match_locust() {
        let stats = RequestStats::new(0.0);
        let csv = stats_csv(&stats);
        assert!(csv.starts_with("Type,Name,Request Count,Failure Count,Median Response Time,Average Response Time,Min Response Time,Max Response Time,Average Content Size,Requests/s,Failures/s,50%,66%,75%,80%,90%,95%,98%,99%,99.9%,99.99%,100%\r\n"), "{csv}");
        assert!(csv.ends_with(",Aggregated,0,0,0,0.0,0.0,0.0,0.0,0.0,0.0,N/A,N/A,N/A,N/A,N/A,N/A,N/A,N/A,N/A,N/A,N/A\r\n"), "{csv}");
    }

    #[test]
    fn utc_timestamps() {
        assert_eq!(utc(Some(0.0)), "1970-01-01T00:00:00Z");
        assert_eq!(utc(Some(1_795_000_000.5)), "2026-11-18T11:06:40Z");
    }
}
