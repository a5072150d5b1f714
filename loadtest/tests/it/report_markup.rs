//! A request name full of markup (`<!--<script>`, `</script>`, `&`, a
//! JavaScript line separator) through a real run against nginx: the
//! report's embedded JSON is one intact script element and parses back to
//! the exact name, and headless Chromium renders the report's statistics
//! table with the name shown as text (no script of it runs).

use std::time::Duration;

use harness::webdriver::Browser;
use harness::{wait_until, Api, Loadtest, Nginx, NginxOptions, TempDir};
use swarm::api::RunState;

/// The name `markup_names` gives its one request.
const NAME: &str = "<!--<script>alert(1)</script>--> & \u{2028} end";

fn markup_names() -> Loadtest {
    Loadtest::new(env!("CARGO_BIN_EXE_markup_names"))
}

/// The text of the report's data script: what stands between
/// `const REPORT = ` and the `;` before the first `</script>` after it.
fn embedded_data(report: &str) -> &str {
    let start = report
        .find("const REPORT = ")
        .expect("the report has its data script")
        + "const REPORT = ".len();
    let end = start
        + report[start..]
            .find("</script>")
            .expect("the data script is closed");
    report[start..end].trim_end().trim_end_matches(';')
}

#[test]
fn a_name_full_of_markup_stays_text_in_the_report() {
    let nginx = Nginx::start(NginxOptions {
        any_path: Some("/any/".into()),
        ..NginxOptions::default()
    });
    let dir = TempDir::new("report-markup");
    let (mut master, port, url) = markup_names().master_with_ui(&dir, &["--host", &nginx.url()]);
    let _worker = markup_names().worker(&dir, port, &["--wait", "0.02:0.05"]);
    let api = Api::new(&url);
    wait_until(Duration::from_secs(30), "the worker to join", || {
        (api.requests().worker_count == 1).then_some(())
    });
    api.swarm(2, 2.0);
    wait_until(
        Duration::from_secs(30),
        "requests under the markup name",
        || {
            let stats = api.requests();
            let row = stats.stats.iter().find(|r| r.name == NAME)?;
            (row.num_requests >= 10).then_some(())
        },
    );
    api.stop();
    wait_until(Duration::from_secs(20), "the run to stop", || {
        (api.requests().state == RunState::Stopped).then_some(())
    });
    assert!(nginx.count_requests() >= 10, "nginx served the run");

    // The data parses back intact, and no markup character is left in it.
    let report = api.get_text("/stats/report");
    let data = embedded_data(&report);
    for markup in ['<', '>', '&', '\u{2028}'] {
        assert!(!data.contains(markup), "{markup:?} in the embedded data");
    }
    let parsed: serde_json::Value = serde_json::from_str(data)
        .unwrap_or_else(|e| panic!("the embedded data is not JSON ({e}): {data:.300}"));
    let names: Vec<&str> = parsed["stats"]
        .as_array()
        .expect("stats rows")
        .iter()
        .filter_map(|row| row["name"].as_str())
        .collect();
    assert!(names.contains(&NAME), "{names:?}");

    // Chromium renders the table with the name as text.
    let session = Browser::open(&format!("{url}/stats/report"));
    let shown = session
        .wait_for(Duration::from_secs(10), "the markup row", |s| {
            for row in s.find_all("#stats-table tbody tr[data-name]")? {
                if s.attribute(&row, "data-name")?.as_deref() == Some(NAME) {
                    return Ok(Some(s.text(&row)?));
                }
            }
            Ok(None)
        })
        .unwrap_or_else(|e| panic!("{e}"));
    println!("the report's row: {shown:?}");
    assert!(
        shown.contains("<!--<script>alert(1)</script>--> &"),
        "the name is shown as text: {shown:?}"
    );
    let rendered = session
        .execute(
            "return [document.getElementById('report-error').hidden, \
             document.querySelectorAll('#stats-table tbody tr[data-name]').length, \
             document.querySelectorAll('script').length];",
            &[],
        )
        .expect("read the page");
    // No "contains no data" error; the markup row and Aggregated; only the
    // template's own scripts (data, report code, shared code).
    assert_eq!(rendered[0], true, "{rendered}");
    assert_eq!(rendered[1], 2, "{rendered}");
    let scripts_in_template = report.matches("<script>").count();
    assert_eq!(rendered[2], scripts_in_template, "{rendered}");
    master.signal("INT");
    harness::exit_code(&mut master, Duration::from_secs(20));
}
