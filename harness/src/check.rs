//! Comparing what a run reports with what the target saw: [`assert_close`]
//! for counts that may differ by a fraction, [`csv_row`] and [`num`] for
//! Locust-format CSV files, [`epoch_now`] for nginx's `$msec` times.

use std::collections::HashMap;
use std::path::Path;

/// Within `tolerance` (a fraction) of `expected`, which must be positive.
pub fn assert_close(actual: f64, expected: f64, tolerance: f64, what: &str) {
    let diff = (actual - expected).abs();
    println!("{what}: {actual} vs {expected}");
    assert!(
        expected > 0.0,
        "{what}: nothing to compare (expected {expected})"
    );
    assert!(
        diff <= expected * tolerance,
        "{what}: {actual} vs {expected} differ by {:.3}% (> {:.2}%)",
        diff / expected * 100.0,
        tolerance * 100.0
    );
}

/// One row of a Locust-format `_stats.csv`, by header name.
pub fn csv_row(path: &Path, name: &str) -> HashMap<String, String> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut lines = text.lines();
    let header: Vec<&str> = lines
        .next()
        .unwrap_or_else(|| panic!("{} has no header line", path.display()))
        .split(',')
        .collect();
    for line in lines {
        let cells: Vec<&str> = line.split(',').collect();
        if cells.get(1) == Some(&name) {
            return header
                .iter()
                .zip(cells)
                .map(|(h, c)| (h.to_string(), c.to_string()))
                .collect();
        }
    }
    panic!("no row {name:?} in {}:\n{text}", path.display());
}

/// A number from a [`csv_row`] row.
pub fn num(row: &HashMap<String, String>, column: &str) -> f64 {
    row.get(column)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("column {column} in {row:?}"))
}

/// Seconds since the Unix epoch, as nginx's `$msec`.
pub fn epoch_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}
