//! The driver against real targets on loopback: every request the users
//! send is counted, failures, bodies, sessions and coordinated omission
//! included.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use goose::metrics::GooseCoordinatedOmissionMitigation;
use goose::prelude::*;

use super::*;

pub(super) fn options() -> DriverOptions {
    DriverOptions {
        // Never requested: the tests start no users.
        host: Some("http://127.0.0.1:9".into()),
        request_log: None,
        shared_client: false,
        co_mitigation: None,
        target_tls: TargetTls::default(),
    }
}

/// Waits until `count` reaches `at_least`, failing with `missing`
/// after `limit_s` seconds.
async fn wait_for_count(count: &AtomicUsize, at_least: usize, limit_s: u64, missing: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(limit_s);
    while count.load(Ordering::SeqCst) < at_least {
        assert!(tokio::time::Instant::now() < deadline, "{missing}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn users(n: u64) -> BTreeMap<String, u64> {
    [("WebsiteUser".to_string(), n)].into_iter().collect()
}

async fn front_page(user: &mut GooseUser) -> TransactionResult {
    let _ = user.get("/").await?;
    Ok(())
}

async fn broken_page(user: &mut GooseUser) -> TransactionResult {
    let _ = user.get("/broken").await?;
    Ok(())
}

async fn failing_transaction(_user: &mut GooseUser) -> TransactionResult {
    Err(Box::new(goose::goose::TransactionError::Custom(
        "no basket to check out".into(),
    )))
}

/// A local target that counts what it serves: `/` answers 200,
/// `/broken` 503.
async fn counting_target() -> (String, Arc<AtomicUsize>, Arc<AtomicUsize>) {
    use axum::routing::get;
    let (ok, broken) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (ok2, broken2) = (ok.clone(), broken.clone());
    let app = axum::Router::new()
        .route(
            "/",
            get(move || {
                ok2.fetch_add(1, Ordering::SeqCst);
                async { "hello" }
            }),
        )
        .route(
            "/broken",
            get(move || {
                broken2.fetch_add(1, Ordering::SeqCst);
                async { (axum::http::StatusCode::SERVICE_UNAVAILABLE, "no") }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, ok, broken)
}

/// The tap and the gate together: a stop's report holds exactly what the
/// target served, failures and their error text included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_reports_every_request_the_target_served() {
    let (url, ok, broken) = counting_target().await;
    let scenarios = vec![scenario!("WebsiteUser")
        .register_transaction(transaction!(front_page))
        .register_transaction(transaction!(broken_page))
        .register_transaction(transaction!(failing_transaction))];
    let mut driver = GooseDriver::launch(scenarios, &options(), "test-node")
        .await
        .unwrap();
    driver
        .set_classes(&url, &users(4), &tokio::sync::watch::channel(0).1)
        .await
        .unwrap();
    wait_for_count(&ok, 300, 20, "no load reached the target").await;
    let mut report = driver.take_delta().await.unwrap();
    report.absorb(driver.stop().await.unwrap());
    let (ok, broken) = (ok.load(Ordering::SeqCst), broken.load(Ordering::SeqCst));
    assert_eq!(report.stats_total.num_requests as usize, ok + broken);
    assert_eq!(report.stats_total.num_failures as usize, broken);
    let failing = report.errors.values().next().expect("an error row");
    assert!(failing.error.starts_with("503"), "{}", failing.error);
    assert_eq!(failing.occurrences as usize, broken);
    assert!(report.stats_total.total_response_time > 0.0);
    // The transaction that failed on its own is an exception, counted.
    let exceptions = driver.take_exceptions();
    let (msg, count) = exceptions.first().expect("a transaction error");
    assert!(msg.contains("no basket to check out"), "{msg}");
    assert!(*count > 0);
    driver.shutdown().await;
}

/// `/` read in full: its 5-byte body counts.
async fn read_front_page(user: &mut GooseUser) -> TransactionResult {
    let goose = user.get_named("/", "read").await?;
    let _ = crate::worker::read_body(user, goose).await;
    Ok(())
}

/// `/` without reading the body.
async fn unread_front_page(user: &mut GooseUser) -> TransactionResult {
    let _ = user.get_named("/", "unread").await?;
    Ok(())
}

/// Tasks picked by weight (`swarm::locust`) are one goose transaction:
/// their requests all carry the picker's transaction index, which the
/// tap keys its body notes by. A task that reads its bodies and one
/// that does not are both counted, each request once, under its own
/// name, and only the read bodies' sizes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn picked_tasks_are_counted_whether_they_read_bodies_or_not() {
    let (url, ok, _) = counting_target().await;
    let tasks = crate::locust::pick_by_weight([
        (1, transaction!(read_front_page)),
        (1, transaction!(unread_front_page)),
    ])
    .unwrap();
    let scenarios = vec![scenario!("WebsiteUser").register_transaction(tasks)];
    let mut driver = GooseDriver::launch(scenarios, &options(), "test-node")
        .await
        .unwrap();
    driver
        .set_classes(&url, &users(4), &tokio::sync::watch::channel(0).1)
        .await
        .unwrap();
    wait_for_count(&ok, 400, 20, "no load reached the target").await;
    let mut report = driver.take_delta().await.unwrap();
    report.absorb(driver.stop().await.unwrap());
    driver.shutdown().await;
    let row = |name: &str| {
        report
            .stats
            .iter()
            .find(|e| e.name == name)
            .map(|e| (e.num_requests, e.total_content_length))
            .unwrap_or_default()
    };
    let ((read, read_bytes), (unread, unread_bytes)) = (row("read"), row("unread"));
    assert_eq!(read + unread, ok.load(Ordering::SeqCst) as u64);
    assert!(read > 100 && unread > 100, "{read} read, {unread} unread");
    assert_eq!(read_bytes, 5 * read, "\"hello\" per read request");
    assert_eq!(unread_bytes, 0);
}

async fn log_in(user: &mut GooseUser) -> TransactionResult {
    let _ = user.get("/login").await?;
    Ok(())
}

async fn account(user: &mut GooseUser) -> TransactionResult {
    let _ = user.get("/account").await?;
    Ok(())
}

/// Each user keeps its own cookies: users log in once (on start), then
/// every page that needs the session gets it — one session per user.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_user_keeps_its_own_session() {
    use axum::http::{header, HeaderMap, StatusCode};
    use std::collections::BTreeSet;
    use std::sync::Mutex;
    let issued = Arc::new(AtomicUsize::new(0));
    let seen: Arc<Mutex<BTreeSet<String>>> = Arc::default();
    let (served, refused) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (seen2, served2, refused2) = (seen.clone(), served.clone(), refused.clone());
    let app = axum::Router::new()
        .route(
            "/login",
            axum::routing::get(move || {
                let id = issued.fetch_add(1, Ordering::SeqCst);
                async move {
                    (
                        [(header::SET_COOKIE, format!("session=s{id}; Path=/"))],
                        "in",
                    )
                }
            }),
        )
        .route(
            "/account",
            axum::routing::get(move |headers: HeaderMap| {
                let session = headers
                    .get(header::COOKIE)
                    .and_then(|c| c.to_str().ok())
                    .and_then(|c| c.split("session=").nth(1))
                    .map(|s| s.split(';').next().unwrap_or(s).to_string());
                let status = match session {
                    Some(session) => {
                        seen2.lock().map(|mut s| s.insert(session)).ok();
                        served2.fetch_add(1, Ordering::SeqCst);
                        StatusCode::OK
                    }
                    None => {
                        refused2.fetch_add(1, Ordering::SeqCst);
                        StatusCode::UNAUTHORIZED
                    }
                };
                async move { status }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let scenarios = vec![scenario!("Member")
        .register_transaction(transaction!(log_in).set_on_start())
        .register_transaction(transaction!(account))];
    let mut driver = GooseDriver::launch(scenarios, &options(), "test-node")
        .await
        .unwrap();
    let members = [("Member".to_string(), 4)].into_iter().collect();
    driver
        .set_classes(&url, &members, &tokio::sync::watch::channel(0).1)
        .await
        .unwrap();
    wait_for_count(&served, 200, 20, "no session reached /account").await;
    driver.stop().await.unwrap();
    driver.shutdown().await;
    assert_eq!(
        refused.load(Ordering::SeqCst),
        0,
        "every request carried its session"
    );
    let sessions = seen.lock().map(|s| s.len()).unwrap_or(0);
    assert_eq!(sessions, 4, "one session per user");
}

/// A target that stalls: every 25th request waits 150 ms, the rest
/// answer at once. Returns its URL and how many requests it served.
async fn stalling_target() -> (String, Arc<AtomicUsize>) {
    let served = Arc::new(AtomicUsize::new(0));
    let counter = served.clone();
    let app = axum::Router::new().route(
        "/",
        axum::routing::get(move || {
            let n = counter.fetch_add(1, Ordering::SeqCst);
            async move {
                if n % 25 == 24 {
                    tokio::time::sleep(Duration::from_millis(150)).await;
                }
                "hello"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, served)
}

/// With goose's mitigation on, a stalled target's figures are corrected
/// and marked: back-filled requests in the histogram only, the requests
/// themselves counted once; the same load without it has none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_target_with_mitigation_gives_corrected_figures() {
    for co in [Some(GooseCoordinatedOmissionMitigation::Average), None] {
        let (url, served) = stalling_target().await;
        let scenarios =
            vec![scenario!("WebsiteUser").register_transaction(transaction!(front_page))];
        let options = DriverOptions {
            co_mitigation: co.clone(),
            ..options()
        };
        let mut driver = GooseDriver::launch(scenarios, &options, "test-node")
            .await
            .unwrap();
        driver
            .set_classes(&url, &users(2), &tokio::sync::watch::channel(0).1)
            .await
            .unwrap();
        wait_for_count(&served, 400, 30, "the target barely served").await;
        let mut report = driver.take_delta().await.unwrap();
        report.absorb(driver.stop().await.unwrap());
        driver.shutdown().await;
        let total = &report.stats_total;
        assert_eq!(total.num_requests as usize, served.load(Ordering::SeqCst));
        let p99 = total.percentile_ms(0.99);
        eprintln!(
            "co {co:?}: {} requests, {} back-filled, p50 {:.3} ms, p95 {:.3} ms, p99 {p99:.3} ms, source {}",
            total.num_requests,
            total.backfilled,
            total.percentile_ms(0.5),
            total.percentile_ms(0.95),
            total.percentile_source()
        );
        if co.is_some() {
            assert!(total.backfilled > 0, "no request was back-filled");
            assert!(total.co_corrected());
            assert_eq!(total.percentile_source(), "hdr+co");
            // On the wire too, for the master.
            let entry = crate::stats::StatsEntry::from_value(&total.to_value()).unwrap();
            assert_eq!(entry.backfilled, total.backfilled);
            assert_eq!(entry.percentile_source(), "hdr+co");
        } else {
            assert_eq!(total.backfilled, 0);
            assert_eq!(total.percentile_source(), "hdr");
        }
    }
}
