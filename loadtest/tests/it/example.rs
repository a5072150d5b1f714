//! The ported locustfile (`loadtest/examples/locustfile_port.rs`) runs as
//! master and worker against a small shop made here (an axum app on a
//! loopback port that counts its own requests per name and keeps sessions
//! by cookie), and the master shows what the shop saw: every request name;
//! one log-in per user, each user's requests carrying its own session, one
//! log-out per user at the stop; the expected 404s no failures; the front
//! pages without a welcome failures with their reason; every count the
//! shop's own.
//!
//! Cargo builds examples for `cargo test` as a whole but not for one test
//! binary, and sets no `CARGO_BIN_EXE_*` for them: the test builds the
//! example itself (`cargo build --example`, offline, a no-op when it is up
//! to date) and takes its path from cargo's own report.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use harness::*;
use swarm::api::StatsRequests;

/// 6 `WebsiteUser`s and 2 `AdminUser`s (weights 3:1).
const USERS: u64 = 8;

/// Items above this id are sold out: 404.
const IN_STOCK: u64 = 100;

/// One front page in this many comes without its welcome.
const WELCOME_MISSING_EVERY: u64 = 10;

/// The example's binary, built once per test run.
fn example_binary() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let output = Command::new(env!("CARGO"))
                .args([
                    "build",
                    "--offline",
                    "-p",
                    "loadtest",
                    "--example",
                    "locustfile_port",
                    "--message-format=json",
                ])
                .current_dir(env!("CARGO_MANIFEST_DIR"))
                .output()
                .unwrap_or_else(|e| panic!("cannot run cargo to build the example: {e}"));
            assert!(
                output.status.success(),
                "building the example failed:\n{}",
                String::from_utf8_lossy(&output.stderr)
            );
            String::from_utf8_lossy(&output.stdout)
                .lines()
                .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
                .find(|m| {
                    m["reason"] == "compiler-artifact" && m["target"]["name"] == "locustfile_port"
                })
                .and_then(|m| m["executable"].as_str().map(PathBuf::from))
                .unwrap_or_else(|| panic!("cargo reported no executable for the example"))
        })
        .clone()
}

/// What the shop saw.
#[derive(Debug, Default)]
struct Seen {
    /// Requests per (method, name as the load test names them).
    requests: BTreeMap<(String, String), u64>,
    /// Live sessions: id → user name.
    sessions: HashMap<String, String>,
    /// Log-ins per user name.
    logins: BTreeMap<String, u64>,
    /// Sessions that ended with a log-out.
    logouts: u64,
    /// Sessions some request other than the log-in carried.
    sessions_used: BTreeSet<String>,
    /// Requests that needed a session and carried none (or a stale one).
    no_session: u64,
    /// Front pages served without the welcome.
    without_welcome: u64,
    /// Items asked for that are sold out (404).
    sold_out: u64,
    /// Cart posts whose body was not the JSON line expected.
    bad_json: u64,
    /// Report requests refused (not an admin).
    refused_reports: u64,
}

#[derive(Debug, Default)]
struct Shop {
    seen: Mutex<Seen>,
    next_session: AtomicU64,
    front_pages: AtomicU64,
    orders: AtomicU64,
}

type ShopState = State<Arc<Shop>>;

impl Shop {
    fn count(&self, method: &str, name: &str) {
        if let Ok(mut seen) = self.seen.lock() {
            *seen
                .requests
                .entry((method.to_string(), name.to_string()))
                .or_default() += 1;
        }
    }

    /// The user name of the request's session; counts one without.
    fn session(&self, headers: &HeaderMap) -> Option<(String, String)> {
        let id = headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .find_map(|c| c.trim().strip_prefix("session="))
            .map(str::to_string);
        let mut seen = self.seen.lock().ok()?;
        let found = id.and_then(|id| seen.sessions.get(&id).cloned().map(|name| (id, name)));
        match &found {
            Some((id, _)) => {
                seen.sessions_used.insert(id.clone());
            }
            None => seen.no_session += 1,
        }
        found
    }
}

#[derive(serde::Deserialize)]
struct Login {
    username: String,
    password: String,
}

async fn login(State(shop): ShopState, Form(login): Form<Login>) -> Response {
    shop.count("POST", "/login");
    if login.password != "secret" {
        return StatusCode::FORBIDDEN.into_response();
    }
    let id = format!("s{}", shop.next_session.fetch_add(1, Ordering::SeqCst));
    if let Ok(mut seen) = shop.seen.lock() {
        seen.sessions.insert(id.clone(), login.username.clone());
        *seen.logins.entry(login.username.clone()).or_default() += 1;
    }
    (
        [(header::SET_COOKIE, format!("session={id}; Path=/"))],
        format!("welcome, {}", login.username),
    )
        .into_response()
}

async fn logout(State(shop): ShopState, headers: HeaderMap) -> StatusCode {
    shop.count("POST", "/logout");
    let Some((id, _)) = shop.session(&headers) else {
        return StatusCode::UNAUTHORIZED;
    };
    if let Ok(mut seen) = shop.seen.lock() {
        seen.sessions.remove(&id);
        seen.logouts += 1;
    }
    StatusCode::OK
}

async fn front(State(shop): ShopState, headers: HeaderMap) -> Response {
    shop.count("GET", "/");
    if shop.session(&headers).is_none() {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let n = shop.front_pages.fetch_add(1, Ordering::SeqCst);
    if n % WELCOME_MISSING_EVERY == WELCOME_MISSING_EVERY - 1 {
        if let Ok(mut seen) = shop.seen.lock() {
            seen.without_welcome += 1;
        }
        return "<h1>Back soon</h1>".into_response();
    }
    "<h1>Welcome to the shop</h1>".into_response()
}

async fn item(State(shop): ShopState, headers: HeaderMap, Path(id): Path<u64>) -> Response {
    shop.count("GET", "/items/[id]");
    if shop.session(&headers).is_none() {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    if id > IN_STOCK {
        if let Ok(mut seen) = shop.seen.lock() {
            seen.sold_out += 1;
        }
        return (StatusCode::NOT_FOUND, "sold out").into_response();
    }
    format!("item {id}: price 10").into_response()
}

#[derive(serde::Deserialize)]
struct CartLine {
    item: u64,
    quantity: u64,
}

async fn cart(State(shop): ShopState, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    shop.count("POST", "/cart");
    if shop.session(&headers).is_none() {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let line = serde_json::from_slice::<CartLine>(&body)
        .ok()
        .filter(|l| (1..=IN_STOCK).contains(&l.item) && l.quantity == 1);
    if line.is_none() {
        if let Ok(mut seen) = shop.seen.lock() {
            seen.bad_json += 1;
        }
        return StatusCode::BAD_REQUEST.into_response();
    }
    let orders = shop.orders.fetch_add(1, Ordering::SeqCst) + 1;
    Json(serde_json::json!({ "items": orders })).into_response()
}

async fn report(State(shop): ShopState, headers: HeaderMap) -> Response {
    shop.count("GET", "/admin/report");
    match shop.session(&headers) {
        Some((_, name)) if name == "admin" => {
            Json(serde_json::json!({ "orders": shop.orders.load(Ordering::SeqCst) }))
                .into_response()
        }
        _ => {
            if let Ok(mut seen) = shop.seen.lock() {
                seen.refused_reports += 1;
            }
            StatusCode::FORBIDDEN.into_response()
        }
    }
}

/// The shop on a loopback port, served from a runtime of its own (the
/// harness's calls block); its URL and what it sees.
fn open_shop() -> (String, Arc<Shop>, tokio::runtime::Runtime) {
    let shop = Arc::new(Shop::default());
    let app = Router::new()
        .route("/login", post(login))
        .route("/logout", post(logout))
        .route("/", get(front))
        .route("/items/{id}", get(item))
        .route("/cart", post(cart))
        .route("/admin/report", get(report))
        .with_state(shop.clone());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("cannot start the shop's runtime: {e}"));
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap_or_else(|e| panic!("cannot bind the shop to a loopback port: {e}"));
    let url = format!(
        "http://{}",
        listener
            .local_addr()
            .unwrap_or_else(|e| panic!("the shop's address: {e}"))
    );
    runtime.spawn(async move { axum::serve(listener, app).await });
    (url, shop, runtime)
}

/// The master's row for (method, name): (requests, failures).
fn row(stats: &StatsRequests, method: &str, name: &str) -> Option<(u64, u64)> {
    stats
        .stats
        .iter()
        .find(|r| r.method == method && r.name == name)
        .map(|r| (r.num_requests, r.num_failures))
}

#[test]
fn the_ported_locustfile_reports_what_the_shop_saw() {
    let (url, shop, _runtime) = open_shop();
    let example = Loadtest::new(example_binary());
    let dir = TempDir::new("example");
    let (mut master, port, api) = example.master_with_ui(&dir, &["--host", &url]);
    // Quick waits for a test: --wait replaces both classes' own.
    let _worker = example.worker(&dir, port, &["--wait", "0.01:0.03"]);
    let api = Api::new(&api);
    wait_until(Duration::from_secs(30), "the worker to join", || {
        (api.requests().worker_count == 1).then_some(())
    });
    api.swarm_at_once(USERS, &url);
    // Until every kind of request, verdict and failure has happened a few
    // times (bounded by the wait's limit).
    wait_until(
        Duration::from_secs(60),
        "every request of the example",
        || {
            let seen = shop.seen.lock().ok()?;
            let count = |m: &str, n: &str| {
                seen.requests
                    .get(&(m.to_string(), n.to_string()))
                    .copied()
                    .unwrap_or(0)
            };
            (count("GET", "/") >= 60
                && count("GET", "/items/[id]") >= 40
                && count("POST", "/cart") >= 20
                && count("GET", "/admin/report") >= 20
                && seen.sold_out >= 3
                && seen.without_welcome >= 3)
                .then_some(())
        },
    );
    api.stop();
    settled_requests(api.url(), Duration::from_secs(30));
    let stats = api.requests();
    let seen = shop
        .seen
        .lock()
        .map(|s| format!("{s:#?}"))
        .unwrap_or_default();
    println!("the shop saw: {seen}");
    for r in &stats.stats {
        println!(
            "master: {} {}: {} requests, {} failures",
            r.method, r.name, r.num_requests, r.num_failures
        );
    }
    println!("master errors: {:?}", stats.errors);
    let seen = shop
        .seen
        .lock()
        .unwrap_or_else(|e| panic!("the shop's lock: {e}"));

    // Every name, with the shop's own count.
    for ((method, name), served) in &seen.requests {
        let (requests, _) = row(&stats, method, name)
            .unwrap_or_else(|| panic!("no row for {method} {name} in the master's stats"));
        assert_eq!(requests, *served, "{method} {name}: master vs shop");
    }
    let names: BTreeSet<(&str, &str)> = seen
        .requests
        .keys()
        .map(|(m, n)| (m.as_str(), n.as_str()))
        .collect();
    let expected: BTreeSet<(&str, &str)> = [
        ("POST", "/login"),
        ("POST", "/logout"),
        ("GET", "/"),
        ("GET", "/items/[id]"),
        ("POST", "/cart"),
        ("GET", "/admin/report"),
    ]
    .into_iter()
    .collect();
    assert_eq!(names, expected, "the names the shop saw");

    // One log-in per user, each user's requests on its own session, and a
    // log-out for each at the stop.
    let logins: BTreeMap<&str, u64> = seen.logins.iter().map(|(n, c)| (n.as_str(), *c)).collect();
    assert_eq!(
        logins,
        [("admin", 2), ("reader", 6)].into_iter().collect(),
        "log-ins per user name: one per user (6 WebsiteUser, 2 AdminUser)"
    );
    assert_eq!(
        seen.sessions_used.len() as u64,
        USERS,
        "one session per user"
    );
    assert_eq!(
        seen.no_session, 0,
        "every request carried its user's session"
    );
    assert_eq!(seen.logouts, USERS, "one log-out per user");
    assert!(seen.sessions.is_empty(), "no session left open");
    assert_eq!(seen.refused_reports, 0, "only admins asked for the report");
    assert_eq!(seen.bad_json, 0, "every cart line was the JSON expected");

    // Expected 404s are no failures; pages without the welcome are, with
    // their reason; nothing else failed.
    assert!(seen.sold_out > 0);
    assert_eq!(row(&stats, "GET", "/items/[id]").map(|r| r.1), Some(0));
    assert_eq!(
        row(&stats, "GET", "/").map(|r| r.1),
        Some(seen.without_welcome),
        "front pages without a welcome are failures"
    );
    let reasons: u64 = stats
        .errors
        .iter()
        .filter(|e| e.error == "no welcome on the front page")
        .map(|e| e.occurrences)
        .sum();
    assert_eq!(reasons, seen.without_welcome, "{:?}", stats.errors);
    let failures: u64 = stats
        .stats
        .iter()
        .filter(|r| r.name != "Aggregated")
        .map(|r| r.num_failures)
        .sum();
    assert_eq!(
        failures, seen.without_welcome,
        "no other failure: {:?}",
        stats.errors
    );

    master.signal("INT");
    exit_code(&mut master, Duration::from_secs(20));
}
