//! `--report-dir`: `ramp.json` (the [`RampReport`]), `ramp.csv` (a row per
//! step) and `ramp.html` (charts and table, self-contained).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::result::RampReport;

/// The columns of `ramp.csv`, the step fields of `ramp.json` plus the verdict.
pub const CSV_HEADER: &str =
    "users,workers,duration_s,requests,failures,fail_ratio,rps,p50_ms,p95_ms,p99_ms,p999_ms,worker_cpu,co_backfilled,verdict";

/// Where the reports went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportFiles {
    /// `ramp.json`: the whole [`RampReport`].
    pub json: PathBuf,
    /// `ramp.csv`: a row per step.
    pub csv: PathBuf,
    /// `ramp.html`: charts and table in one file.
    pub html: PathBuf,
}

/// Why the ramp's reports could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// A report file could not be written.
    #[error("cannot write {path}: {source} (does --report-dir point at a writable place?)")]
    Write {
        /// The file's path.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The report did not serialize to JSON.
    #[error("cannot serialize the ramp report: {0}")]
    Json(#[from] serde_json::Error),
}

/// A row per step, in the order measured.
pub fn ramp_csv(report: &RampReport) -> String {
    let mut csv = String::from(CSV_HEADER);
    csv.push('\n');
    for s in &report.steps {
        let _ = writeln!(
            csv,
            "{},{},{},{},{},{},{},{},{},{},{},{},{},{}",
            s.users,
            s.workers,
            s.duration_s,
            s.requests,
            s.failures,
            s.fail_ratio,
            s.rps,
            s.p50_ms,
            s.p95_ms,
            s.p99_ms,
            s.p999_ms,
            s.worker_cpu,
            s.co_backfilled,
            s.verdict()
        );
    }
    csv
}

/// Writes the three reports into `dir` (created if missing).
pub fn write_reports(dir: &Path, report: &RampReport) -> Result<ReportFiles, ReportError> {
    let write = |path: &Path, body: &str| {
        std::fs::write(path, body).map_err(|source| ReportError::Write {
            path: path.display().to_string(),
            source,
        })
    };
    std::fs::create_dir_all(dir).map_err(|source| ReportError::Write {
        path: dir.display().to_string(),
        source,
    })?;
    let files = ReportFiles {
        json: dir.join("ramp.json"),
        csv: dir.join("ramp.csv"),
        html: dir.join("ramp.html"),
    };
    let mut json = serde_json::to_string_pretty(report)?;
    json.push('\n');
    write(&files.json, &json)?;
    write(&files.csv, &ramp_csv(report))?;
    write(&files.html, &super::html::render(report))?;
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ramp::result::tests::{report, step};
    use crate::ramp::Criterion;

    #[test]
    fn csv_has_a_row_per_step() {
        let mut corrected = step(4, Some(Criterion::failing("p95<=20ms", "20ms")));
        corrected.co_backfilled = 7;
        let r = report(vec![step(2, None), corrected]);
        let csv = ramp_csv(&r);
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines[0], CSV_HEADER);
        assert_eq!(lines[1], "2,1,3,100,0,0,33.33,10,20,30,40,0.25,0,healthy");
        assert_eq!(
            lines[2],
            "4,1,3,100,50,0.5,33.33,10,20,30,40,0.25,7,p95<=20ms"
        );
    }

    #[test]
    fn corrected_steps_are_marked_in_the_table_and_the_page() {
        let mut corrected = step(4, Some(Criterion::failing("p95<=20ms", "20ms")));
        corrected.co_backfilled = 7;
        let mark = "p95<=20ms (CO-corrected, 7 back-filled)";
        assert!(crate::ramp::table::row(&corrected).ends_with(mark));
        assert!(!crate::ramp::table::row(&step(2, None)).contains("CO-corrected"));
        let r = report(vec![step(2, None), corrected]);
        assert!(crate::ramp::html::render(&r).contains(mark));
    }

    #[test]
    fn the_knee_is_named_and_marked() {
        let r = report(crate::ramp::result::tests::saturating(&[2, 4, 6, 8], 4));
        let said = crate::ramp::table::conclusion(&r);
        assert!(
            said.contains(
                "knee: 4 users: requests/s stopped growing (400.0 at 4 users, 400.0 at 6)"
            ),
            "{said}"
        );
        let page = crate::ramp::html::render(&r);
        assert!(page.contains(">knee 4</text>"), "the charts mark the knee");
        for series in ["p50", "p95", "p99"] {
            assert!(
                page.contains(&format!(">{series}</text>")),
                "legend {series}"
            );
        }
    }

    #[test]
    fn reports_land_in_the_directory() {
        let dir = std::env::temp_dir().join(format!(
            "spotload-ramp-report-{}-{}",
            std::process::id(),
            crate::stats::now_epoch()
        ));
        let r = report(vec![
            step(2, None),
            step(4, Some(Criterion::failing("error-rate<=1%", "50%"))),
        ]);
        let files = write_reports(&dir.join("nested"), &r).expect("written");
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&files.json).unwrap_or_default())
                .expect("ramp.json is JSON");
        assert_eq!(json["threshold_users"], 4);
        assert_eq!(json["criterion"], "error-rate<=1%");
        assert_eq!(json["rules"], serde_json::json!(["error-rate<=1%"]));
        assert!(files.csv.is_file() && files.html.is_file());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
