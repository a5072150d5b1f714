//! Issue 3's acceptance: the master's web UI and Locust's HTTP API, driven
//! for real — a `loadtest master` with two `loadtest worker`s against
//! nginx, a headless Chromium over WebDriver, and a stock Locust 2.47
//! master whose answers ours must match key for key.
//!
//! The tests take turns (one lock): each starts a swarm, some a browser,
//! and on a small CI machine two at once would blur the time limits.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value;

use harness::webdriver::{Browser, Session};
use harness::{
    epoch_now, http_request, loadtest, try_wait_until, wait_until, Locust, Nginx, NginxOptions,
    Process, Reply, TempDir,
};

/// One swarm at a time in this file.
static TURN: Mutex<()> = Mutex::new(());

fn take_turn() -> std::sync::MutexGuard<'static, ()> {
    // A failed test poisons the lock; the next one may still run.
    TURN.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// `--web-auth` of the auth test, and its `Authorization` header
/// (base64 of "user:pass").
const WEB_AUTH: &str = "user:pass";
const BASIC_USER_PASS: &str = "Basic dXNlcjpwYXNz";

/// Keys our `/stats/requests` has beyond Locust's, on purpose: `host` is
/// the current target, which the page shows in its header; `worker_events`
/// the fleet's joins, losses and spot reclaims (the Workers tab);
/// `refused_frames` what peers sent that the master dropped unread;
/// `thresholds` the `--threshold` rules and their verdicts; `test_plan`
/// the `--test-plan` and where the run is in it; `user_classes` the
/// classes the run dispatches; `class_picker` the classes `--class-picker`
/// offers; `arrival_rate` and `dropped_iterations` the open model's rate
/// and the starts no user was free for. A client of Locust's API reads the
/// keys it knows and never sees them.
const OUR_EXTRA_TOP_LEVEL_KEYS: [&str; 9] = [
    "host",
    "worker_events",
    "refused_frames",
    "thresholds",
    "test_plan",
    "user_classes",
    "class_picker",
    "arrival_rate",
    "dropped_iterations",
];

/// Keys our rows have beyond Locust's: in `stats`, `precise` (the times to
/// the microsecond from the merged histograms); in `workers`, `cpu_share`
/// (the CPU as a share of the worker's cores) and `user_classes_count` (the
/// users per class the worker reported running).
const OUR_EXTRA_ROW_KEYS: [(&str, &str); 3] = [
    ("stats", "precise"),
    ("workers", "cpu_share"),
    ("workers", "user_classes_count"),
];

/// Workers pause between requests: enough load to see, little enough that
/// a 2-CPU machine also runs the master, nginx and a browser.
const WORKER_WAIT: &[&str] = &["--wait", "0.02:0.08"];

// ---------------------------------------------------------------------------
// A master with its UI, workers and a target
// ---------------------------------------------------------------------------

/// nginx, a `loadtest master` serving its UI on 127.0.0.1, and its workers.
/// Fields drop in order: workers, master, nginx, then the dir.
struct Swarm {
    _workers: Vec<Process>,
    master: Process,
    nginx: Nginx,
    web_port: u16,
    auth: Option<&'static str>,
    _dir: TempDir,
}

impl Swarm {
    /// Starts everything and waits until `workers` workers have joined.
    fn start(name: &str, workers: usize, extra: &[&str], nginx: NginxOptions) -> Swarm {
        let nginx = Nginx::start(nginx);
        let dir = TempDir::new(name);
        let target = nginx.url();
        let mut args = vec!["--host", target.as_str()];
        args.extend_from_slice(extra);
        let (master, master_port, web_port) = ui_master(&dir, &args);
        let auth = extra.contains(&"--web-auth").then_some(BASIC_USER_PASS);
        let swarm = Swarm {
            _workers: (0..workers)
                .map(|_| loadtest!().worker(&dir, master_port, WORKER_WAIT))
                .collect(),
            master,
            nginx,
            web_port,
            auth,
            _dir: dir,
        };
        swarm.wait_for_workers(workers);
        swarm
    }

    /// `http://127.0.0.1:PORT`.
    fn web_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.web_port)
    }

    fn get(&self, path: &str) -> Answer {
        request("GET", &format!("{}{path}", self.web_url()), self.auth, &[])
    }

    fn post(&self, path: &str, form: &[(&str, &str)]) -> Answer {
        request(
            "POST",
            &format!("{}{path}", self.web_url()),
            self.auth,
            form,
        )
    }

    fn stats(&self) -> Value {
        self.get("/stats/requests").json()
    }

    fn wait_for_workers(&self, n: usize) {
        harness::wait_until(Duration::from_secs(30), "workers to join", || {
            let stats = self.stats();
            (stats["worker_count"].as_u64() == Some(n as u64)).then_some(())
        });
    }

    /// Waits for `state`; panics with the master's logs after `limit`.
    fn wait_for_state(&self, state: &str, limit: Duration) -> Value {
        let mut last = Value::Null;
        let found = try_wait_until(limit, || {
            last = self.stats();
            (last["state"] == state).then(|| last.clone())
        });
        found.unwrap_or_else(|| {
            panic!(
                "state {} instead of {state} after {limit:?}\n{}",
                last["state"],
                self.master.logs()
            )
        })
    }
}

/// `loadtest master` with its UI on a free loopback port; tried again on
/// other ports if a parallel test took one first. Returns the process, the
/// master port and the web port.
fn ui_master(dir: &TempDir, extra: &[&str]) -> (Process, u16, u16) {
    const TRIES: usize = 3;
    for _ in 0..TRIES {
        let (master_port, web_port) = (harness::free_port(), harness::free_port());
        let (mp, wp) = (master_port.to_string(), web_port.to_string());
        let mut args = vec![
            "master",
            "--master-bind-host",
            "127.0.0.1",
            "--master-bind-port",
            &mp,
            "--web-host",
            "127.0.0.1",
            "--web-port",
            &wp,
        ];
        args.extend_from_slice(extra);
        let mut process = Process::spawn("loadtest-master", loadtest!().command(&args), dir.path());
        let opened = process
            .wait_for_port(harness::loopback(master_port), Duration::from_secs(20))
            .and_then(|()| {
                process.wait_for_port(harness::loopback(web_port), Duration::from_secs(20))
            });
        match opened {
            Ok(()) => return (process, master_port, web_port),
            Err(e) if e.contains("in use") || e.contains("another") => {
                eprintln!("[web_ui] a port was taken, trying others: {e}");
            }
            Err(e) => panic!("loadtest master did not start: {e}"),
        }
    }
    panic!("loadtest master found no free ports in {TRIES} tries");
}

// ---------------------------------------------------------------------------
// HTTP with optional basic auth
// ---------------------------------------------------------------------------

/// An HTTP answer: status, headers and body.
type Answer = Reply;

trait AnswerExt {
    fn json(&self) -> Value;
    fn first_line(&self) -> &str;
}

impl AnswerExt for Reply {
    fn json(&self) -> Value {
        assert_eq!(self.status, 200, "expected 200, got {self:?}");
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    /// The first line of the body, with its line ending.
    fn first_line(&self) -> &str {
        self.body.split_inclusive('\n').next().unwrap_or_default()
    }
}

/// One request, with an `Authorization` header when given and `form`
/// urlencoded for a POST.
fn request(method: &str, url: &str, auth: Option<&str>, form: &[(&str, &str)]) -> Answer {
    let headers: Vec<(&str, &str)> = auth.map(|a| ("Authorization", a)).into_iter().collect();
    let form = (method == "POST").then_some(form);
    http_request(method, url, &headers, form).unwrap_or_else(|e| panic!("{method} {url}: {e}"))
}

/// The `Aggregated` row of a raw `/stats/requests` answer (raw here: this
/// file compares Locust's exact keys), `Null` when there is none.
fn aggregated_row(stats: &Value) -> Value {
    stats["stats"]
        .as_array()
        .and_then(|rows| rows.iter().find(|r| r["name"] == "Aggregated"))
        .cloned()
        .unwrap_or(Value::Null)
}

// ---------------------------------------------------------------------------
// Key sets
// ---------------------------------------------------------------------------

fn keys(value: &Value) -> BTreeSet<String> {
    value
        .as_object()
        .unwrap_or_else(|| panic!("expected a JSON object, got {value}"))
        .keys()
        .cloned()
        .collect()
}

/// The key set shared by every element of `value[field]` (all must agree).
fn row_keys(value: &Value, field: &str) -> BTreeSet<String> {
    let rows = value[field]
        .as_array()
        .unwrap_or_else(|| panic!("`{field}` is not a list in {value}"));
    assert!(!rows.is_empty(), "`{field}` is empty in {value}");
    let first = keys(&rows[0]);
    for row in rows {
        assert_eq!(keys(row), first, "`{field}` rows differ in their keys");
    }
    first
}

fn assert_same_keys(ours: &BTreeSet<String>, locust: &BTreeSet<String>, what: &str) {
    let missing: Vec<_> = locust.difference(ours).collect();
    let extra: Vec<_> = ours.difference(locust).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{what}: keys differ from Locust's\n  missing: {missing:?}\n  extra: {extra:?}"
    );
}

/// JSON's kind of a value, to compare what each key holds.
fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Every key both objects have holds the same kind of value (a `null` on
/// either side matches anything: Locust sends `null` for "none yet").
fn assert_same_kinds(ours: &Value, locust: &Value, what: &str) {
    let (Some(ours), Some(locust)) = (ours.as_object(), locust.as_object()) else {
        panic!("{what}: expected two JSON objects");
    };
    let differ: Vec<String> = ours
        .iter()
        .filter_map(|(key, our)| {
            let their = locust.get(key)?;
            let same = our.is_null() || their.is_null() || kind(our) == kind(their);
            (!same).then(|| format!("{key}: ours {our}, Locust's {their}"))
        })
        .collect();
    assert!(
        differ.is_empty(),
        "{what}: values of another kind than Locust's: {differ:?}"
    );
}

/// A number as the page shows it ("1,234.5") → 1234.5.
fn page_number(text: &str) -> Option<f64> {
    text.trim().replace(',', "").parse().ok()
}

// ---------------------------------------------------------------------------
// The browser flow
// ---------------------------------------------------------------------------

/// Where screenshots go: `$SPOTLOAD_ARTIFACTS`, else `<target>/artifacts`.
fn artifacts_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("SPOTLOAD_ARTIFACTS") {
        return PathBuf::from(dir);
    }
    // CARGO_BIN_EXE_loadtest is <target>/<profile>/loadtest.
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_loadtest"));
    bin.parent()
        .and_then(|profile| profile.parent())
        .map(|target| target.join("artifacts"))
        .unwrap_or_else(|| PathBuf::from("artifacts"))
}

fn click(session: &Session, css: &str) {
    let element = session
        .find(css)
        .unwrap_or_else(|e| panic!("find {css}: {e}"));
    session
        .click(&element)
        .unwrap_or_else(|e| panic!("click {css}: {e}"));
}

fn fill(session: &Session, css: &str, text: &str) {
    session
        .fill(css, text)
        .unwrap_or_else(|e| panic!("type {text:?} into {css}: {e}"));
}

/// Waits until `css` is displayed.
fn wait_displayed(session: &Session, css: &str, limit: Duration) {
    session
        .wait_for(limit, &format!("{css} to show"), |s| {
            Ok(s.is_displayed(&s.find(css)?)?.then_some(()))
        })
        .unwrap_or_else(|e| panic!("{e}"));
}

/// Waits until the text of `css` is `expected`; on a timeout, panics with
/// what the page and the API said.
fn wait_text(session: &Session, swarm: &Swarm, css: &str, expected: &str, limit: Duration) {
    let mut last = String::new();
    let found = session.wait_for(limit, &format!("{css} to read {expected:?}"), |s| {
        last = s.text_of(css)?;
        Ok((last.trim() == expected).then_some(()))
    });
    if let Err(e) = found {
        panic!(
            "{e} (last text {last:?})\nthe API: {}\n{}",
            swarm.stats(),
            swarm.master.logs()
        );
    }
}

/// The acceptance flow on the page at `page_url`: start 20 users, see
/// statistics and RPS within 10 s, see both workers, change to 30 users,
/// stop. Checks the API agrees at each step; saves `screenshot` (a file
/// name) in the artifacts dir and returns its path.
fn browser_flow(swarm: &Swarm, page_url: &str, screenshot: &str) -> PathBuf {
    let session = Browser::open(page_url);
    // The start form shows once the first poll has answered.
    wait_displayed(&session, "#user_count", Duration::from_secs(10));
    fill(&session, "#user_count", "20");
    fill(&session, "#spawn_rate", "20");
    click(&session, "#start-button");
    let clicked = Instant::now();

    let (rows, rps) = session
        .wait_for(
            Duration::from_secs(10),
            "statistics rows and a non-zero RPS",
            |s| {
                // The Aggregated row is there from the start; a request
                // name's row and a non-zero RPS come with the load.
                let rps = page_number(&s.text_of("#status-rps")?).unwrap_or(0.0);
                let rows = s.find_all("#stats-table tbody tr[data-name]")?;
                let mut names = Vec::new();
                for row in &rows {
                    names.extend(s.attribute(row, "data-name")?);
                }
                let named = names.iter().any(|n| n != "Aggregated");
                Ok((named && rps > 0.0).then_some((names, rps)))
            },
        )
        .unwrap_or_else(|e| panic!("{e}\n{}", swarm.master.logs()));
    println!(
        "after {:.1} s: statistics rows {rows:?}, {rps} RPS",
        clicked.elapsed().as_secs_f64()
    );

    click(&session, "#tab-workers");
    let ids = session
        .wait_for(Duration::from_secs(10), "both workers listed", |s| {
            let rows = s.find_all("#workers-table tbody tr[data-id]")?;
            let mut ids = BTreeSet::new();
            for row in &rows {
                if let Some(id) = s.attribute(row, "data-id")? {
                    ids.insert(id);
                }
            }
            Ok((ids.len() == 2).then_some(ids))
        })
        .unwrap_or_else(|e| panic!("{e}"));
    let api_ids: BTreeSet<String> = swarm.stats()["workers"]
        .as_array()
        .expect("workers list")
        .iter()
        .filter_map(|w| w["id"].as_str().map(str::to_string))
        .collect();
    assert_eq!(ids, api_ids, "the page lists the workers the API knows");
    // The charts draw (one tab at a time: the canvas has a size once shown).
    click(&session, "#tab-charts");
    session
        .wait_for(Duration::from_secs(5), "the RPS chart drawn", |s| {
            let drawn = s.execute(
                "var c = document.getElementById('chart-rps'); return c.width > 0 && \
                 c.getContext('2d').getImageData(0, 0, c.width, c.height).data.some(function (v) { return v; });",
                &[],
            )?;
            Ok((drawn == true).then_some(()))
        })
        .unwrap_or_else(|e| panic!("{e}"));
    click(&session, "#tab-stats");

    wait_text(
        &session,
        swarm,
        "#status-users",
        "20",
        Duration::from_secs(10),
    );
    click(&session, "#edit-button");
    wait_displayed(&session, "#edit_user_count", Duration::from_secs(5));
    fill(&session, "#edit_user_count", "30");
    click(&session, "#edit-submit");
    wait_text(
        &session,
        swarm,
        "#status-users",
        "30",
        Duration::from_secs(15),
    );
    assert_eq!(swarm.stats()["user_count"], 30, "the API agrees: 30 users");
    // The open model, from the edit form: 40 iterations a second.
    click(&session, "#edit-button");
    wait_displayed(&session, "#edit_arrival_rate", Duration::from_secs(5));
    fill(&session, "#edit_arrival_rate", "40");
    click(&session, "#edit-submit");
    wait_until(Duration::from_secs(15), "the arrival rate edited", || {
        (swarm.stats()["arrival_rate"] == 40.0).then_some(())
    });
    // The charts draw dropped iterations/s beside the request rate.
    click(&session, "#tab-charts");
    click(&session, "#tab-stats");
    let shot = artifacts_dir().join(screenshot);
    session
        .save_screenshot(&shot)
        .unwrap_or_else(|e| panic!("screenshot: {e}"));
    println!("screenshot: {}", shot.display());

    click(&session, "#stop-button");
    wait_text(
        &session,
        swarm,
        "#status-state",
        "stopped",
        Duration::from_secs(20),
    );
    let stopped = swarm.wait_for_state("stopped", Duration::from_secs(5));
    assert_eq!(stopped["user_count"], 0, "no users left after the stop");
    wait_displayed(&session, "#start-button", Duration::from_secs(5));
    let errors = session.script_errors();
    assert_eq!(errors, serde_json::json!([]), "script errors in the page");
    shot
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

/// (a) A headless Chromium runs a test from the page.
#[test]
fn chromium_starts_edits_and_stops_a_run() {
    let _turn = take_turn();
    let swarm = Swarm::start("web-ui-browser", 2, &[], NginxOptions::default());
    let shot = browser_flow(
        &swarm,
        &format!("{}/", swarm.web_url()),
        "web_ui_running.png",
    );
    let png = std::fs::read(&shot).expect("screenshot written");
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 10_000,
        "{} is a real PNG ({} bytes)",
        shot.display(),
        png.len()
    );
    assert!(swarm.nginx.count_requests() > 0, "nginx saw the load");
    // Everything the page and the report need comes from the binary.
    for path in ["/", "/stats/report"] {
        let answer = swarm.get(path);
        assert_eq!(answer.status, 200, "{path}: {answer:?}");
        for remote in [
            "src=\"http",
            "href=\"http",
            "url(http",
            "@import",
            "src=\"//",
        ] {
            assert!(
                !answer.body.contains(remote),
                "{path} loads something from elsewhere ({remote})"
            );
        }
    }
}

/// (b) The same flow scripted over HTTP, side by side with a real Locust
/// master: JSON keys and CSV header lines are Locust's.
#[test]
fn http_api_answers_with_locusts_keys_and_headers() {
    let _turn = take_turn();
    let failing = NginxOptions {
        fail_percent: Some(20),
        ..NginxOptions::default()
    };
    let ours = Swarm::start("web-ui-http", 2, &[], failing.clone());
    let ours_flow = scripted_flow(
        &ours.web_url(),
        &ours.nginx.url(),
        |path| ours.get(path),
        |path, form| ours.post(path, form),
    );

    let locust_nginx = Nginx::start(failing);
    let locust_dir = TempDir::new("web-ui-locust");
    let locustfile = harness::write_locustfile(locust_dir.path(), &locust_nginx.url());
    let (bind_port, web_port) = (harness::free_port(), harness::free_port());
    let locust = Locust::master(&locustfile, bind_port, web_port, &[]);
    let _locust_worker = Locust::worker(&locustfile, bind_port, &[]);
    locust
        .wait_for_workers(1, Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{e}"));
    let locust_flow = scripted_flow(
        &locust.web_url(),
        &locust_nginx.url(),
        |path| request("GET", &format!("{}{path}", locust.web_url()), None, &[]),
        |path, form| request("POST", &format!("{}{path}", locust.web_url()), None, form),
    );

    let mut our_top = keys(&ours_flow.stats);
    for extra in OUR_EXTRA_TOP_LEVEL_KEYS {
        assert!(our_top.remove(extra), "{extra} is still ours");
    }
    assert_same_keys(&our_top, &keys(&locust_flow.stats), "/stats/requests");
    for field in ["stats", "workers", "errors"] {
        let mut ours = row_keys(&ours_flow.stats, field);
        for (rows, extra) in OUR_EXTRA_ROW_KEYS {
            if rows == field {
                assert!(ours.remove(extra), "{extra} is still in our {rows} rows");
            }
        }
        assert_same_keys(
            &ours,
            &row_keys(&locust_flow.stats, field),
            &format!("/stats/requests `{field}` rows"),
        );
    }
    assert_same_kinds(&ours_flow.stats, &locust_flow.stats, "/stats/requests");
    for field in ["stats", "workers", "errors"] {
        assert_same_kinds(
            &ours_flow.stats[field][0],
            &locust_flow.stats[field][0],
            &format!("/stats/requests `{field}` rows"),
        );
    }
    assert_same_keys(
        &keys(&ours_flow.stats["current_response_time_percentiles"]),
        &keys(&locust_flow.stats["current_response_time_percentiles"]),
        "/stats/requests `current_response_time_percentiles`",
    );
    assert_same_keys(&keys(&ours_flow.swarm), &keys(&locust_flow.swarm), "/swarm");
    assert_same_keys(&keys(&ours_flow.stop), &keys(&locust_flow.stop), "/stop");
    assert_same_keys(
        &keys(&ours_flow.exceptions),
        &keys(&locust_flow.exceptions),
        "/exceptions",
    );
    for (i, path) in CSV_PATHS.iter().enumerate() {
        assert_eq!(
            ours_flow.csv_headers[i], locust_flow.csv_headers[i],
            "{path}: header line differs from Locust's"
        );
    }
    for (who, flow) in [("ours", &ours_flow), ("Locust's", &locust_flow)] {
        println!(
            "{who}: total {}\n  error {}\n  worker {}",
            aggregated_row(&flow.stats),
            flow.stats["errors"][0],
            flow.stats["workers"][0]
        );
    }
    println!("top-level keys: {our_top:?} (+ ours: {OUR_EXTRA_TOP_LEVEL_KEYS:?})");
    println!("CSV headers: {:?}", ours_flow.csv_headers);
}

const CSV_PATHS: [&str; 3] = [
    "/stats/requests/csv",
    "/stats/failures/csv",
    "/exceptions/csv",
];

/// What one master answered along the scripted flow.
struct ScriptedFlow {
    swarm: Value,
    stats: Value,
    exceptions: Value,
    csv_headers: Vec<String>,
    stop: Value,
}

/// POST /swarm, wait for requests and failures in GET /stats/requests,
/// read the CSVs, POST /stop — as a Locust user scripts it.
fn scripted_flow(
    base: &str,
    target: &str,
    get: impl Fn(&str) -> Answer,
    post: impl Fn(&str, &[(&str, &str)]) -> Answer,
) -> ScriptedFlow {
    let swarm = post(
        "/swarm",
        &[("user_count", "4"), ("spawn_rate", "4"), ("host", target)],
    )
    .json();
    assert_eq!(swarm["success"], true, "{base} /swarm: {swarm}");
    let stats = harness::wait_until(
        Duration::from_secs(30),
        "requests and failures in /stats/requests",
        || {
            let stats = get("/stats/requests").json();
            let total = aggregated_row(&stats);
            let seen = stats["state"] == "running"
                && total["num_requests"].as_u64() > Some(0)
                && total["num_failures"].as_u64() > Some(0)
                && stats["errors"].as_array().is_some_and(|e| !e.is_empty());
            seen.then_some(stats)
        },
    );
    let exceptions = get("/exceptions").json();
    let csv_headers = CSV_PATHS
        .iter()
        .map(|path| {
            let answer = get(path);
            assert_eq!(answer.status, 200, "{base}{path}: {answer:?}");
            answer.first_line().to_string()
        })
        .collect();
    let stop = post("/stop", &[]).json();
    assert_eq!(stop["success"], true, "{base} /stop: {stop}");
    harness::wait_until(Duration::from_secs(30), "state stopped", || {
        (get("/stats/requests").json()["state"] == "stopped").then_some(())
    });
    ScriptedFlow {
        swarm,
        stats,
        exceptions,
        csv_headers,
        stop,
    }
}

/// (c) Bad form input is refused, naming the field, and nothing starts.
#[test]
fn invalid_swarm_form_is_refused_and_nothing_starts() {
    let _turn = take_turn();
    let swarm = Swarm::start("web-ui-form", 2, &[], NginxOptions::default());
    let target = swarm.nginx.url();
    let target = target.as_str();
    let cases: [(&str, [(&str, &str); 4]); 4] = [
        (
            "user_count",
            [
                ("user_count", "abc"),
                ("spawn_rate", "1"),
                ("host", target),
                ("run_time", ""),
            ],
        ),
        (
            "spawn_rate",
            [
                ("user_count", "5"),
                ("spawn_rate", "0"),
                ("host", target),
                ("run_time", ""),
            ],
        ),
        (
            "host",
            [
                ("user_count", "5"),
                ("spawn_rate", "1"),
                ("host", "not a url"),
                ("run_time", ""),
            ],
        ),
        (
            "run_time",
            [
                ("user_count", "5"),
                ("spawn_rate", "1"),
                ("host", target),
                ("run_time", "-5s"),
            ],
        ),
    ];
    for (field, form) in &cases {
        let answer = swarm.post("/swarm", form).json();
        println!("{field}: {answer}");
        assert_eq!(answer["success"], false, "{field}: {answer}");
        let message = answer["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(field),
            "the message names {field}: {message:?}"
        );
    }
    // A wrongly started run had its chance once the master's once-a-second
    // sampler has run past two worker heartbeats (1 s apart) after the
    // last refusal: a later sample, not a sleep.
    let refused_at = epoch_now();
    let history = wait_until(Duration::from_secs(10), "two later history samples", || {
        let history = swarm.get("/stats/history").json();
        let samples = history.as_array().cloned().unwrap_or_default();
        let later = samples
            .iter()
            .filter(|s| s["time"].as_f64().is_some_and(|t| t > refused_at + 2.0))
            .count();
        (later >= 1).then_some(samples)
    });
    for sample in &history {
        assert_eq!(sample["user_count"], 0, "no users dispatched: {sample}");
    }
    let stats = swarm.stats();
    assert_eq!(stats["state"], "ready", "nothing started: {stats}");
    assert_eq!(stats["user_count"], 0, "no users: {stats}");
    assert_eq!(stats["host"], target, "the host is unchanged");
    for worker in stats["workers"].as_array().expect("workers list") {
        assert_eq!(worker["user_count"], 0, "worker without users: {worker}");
        assert_eq!(worker["state"], "ready", "worker still ready: {worker}");
    }
    assert_eq!(swarm.nginx.count_requests(), 0, "nginx saw no request");
}

/// (d) `--web-auth`: 401 without credentials, page and API; the browser
/// flow works with them in the URL.
#[test]
fn web_auth_guards_the_page_and_the_api() {
    let _turn = take_turn();
    let swarm = Swarm::start(
        "web-ui-auth",
        2,
        &["--web-auth", WEB_AUTH],
        NginxOptions::default(),
    );
    let url = swarm.web_url();
    let wrong = "Basic dXNlcjp3cm9uZw=="; // user:wrong
    for (method, path) in [
        ("GET", "/"),
        ("GET", "/stats/requests"),
        ("GET", "/stats/requests/csv"),
        ("GET", "/stats/report"),
        ("POST", "/swarm"),
        ("POST", "/stop"),
    ] {
        let form: &[(&str, &str)] = if path == "/swarm" {
            &[("user_count", "5"), ("spawn_rate", "5")]
        } else {
            &[]
        };
        for auth in [None, Some(wrong)] {
            let answer = request(method, &format!("{url}{path}"), auth, form);
            assert_eq!(
                answer.status, 401,
                "{method} {path} with {auth:?}: {answer:?}"
            );
            assert!(
                answer
                    .header("www-authenticate")
                    .is_some_and(|h| h.starts_with("Basic")),
                "{method} {path}: a browser is asked for a password: {answer:?}"
            );
        }
    }
    let stats = swarm.stats();
    assert_eq!(
        stats["state"], "ready",
        "unauthenticated /swarm started nothing"
    );
    assert_eq!(stats["worker_count"], 2, "the API works with credentials");
    let page = swarm.get("/");
    assert_eq!(page.status, 200, "the page with credentials");
    assert!(page.body.contains("id=\"start-button\""), "it is the page");

    let page_url = url.replacen("http://", &format!("http://{WEB_AUTH}@"), 1) + "/";
    browser_flow(&swarm, &page_url, "web_ui_auth_running.png");
}

/// (e) A UI bound beyond loopback without --web-auth warns at start; on
/// loopback, or with a password, it does not.
#[test]
fn warns_when_the_ui_is_open_beyond_loopback() {
    let _turn = take_turn();
    let dir = TempDir::new("web-ui-warn");
    let cases: [(&str, &[&str], bool); 3] = [
        ("0.0.0.0", &[], true),
        ("0.0.0.0", &["--web-auth", WEB_AUTH], false),
        ("127.0.0.1", &[], false),
    ];
    for (web_host, extra, warns) in cases {
        let web_port = harness::free_port().to_string();
        let mut args = vec!["--web-host", web_host, "--web-port", &web_port];
        args.extend_from_slice(extra);
        let (mut master, _) = loadtest!().master(&dir, &args);
        // "web UI: http://..." goes to stdout once the UI listens; the
        // warning (stderr) is logged before that.
        harness::wait_until(Duration::from_secs(20), "the web UI address", || {
            master.stdout().contains("web UI: http://").then_some(())
        });
        let stderr = master.stderr();
        let warned = stderr.contains("WARN") && stderr.contains("--web-auth");
        assert_eq!(
            warned,
            warns,
            "--web-host {web_host} {extra:?}: warning expected: {warns}\n{}",
            master.logs()
        );
        if warns {
            println!(
                "warning: {}",
                stderr
                    .lines()
                    .find(|l| l.contains("--web-auth"))
                    .unwrap_or_default()
            );
        }
        master.stop();
    }
}
