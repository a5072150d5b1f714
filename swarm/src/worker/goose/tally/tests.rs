//! The tally's tests: bodies, failures, verdicts, parks and back-fills,
//! record by record.

use goose::goose::GooseDebug;

use super::*;

/// A request record as goose sends it: `user`'s GET `/` at `elapsed`
/// ms into its run, taking `us` microseconds.
pub(crate) fn request(user: usize, elapsed: u64, us: u64) -> GooseRequestMetric {
    let json = serde_json::json!({
        "elapsed": elapsed, "scenario_index": 0, "scenario_name": "WebsiteUser",
        "transaction_index": 0, "transaction_name": {"TransactionOnly": ""},
        "raw": {"method": "Get", "url": "http://target/", "headers": [], "body": "", "custom_method": ""},
        "name": "/", "final_url": "http://target/", "redirected": false,
        "response_time": us / 1000, "status_code": 200, "success": true, "update": false,
        "user": user, "error": "", "coordinated_omission_elapsed": 0, "user_cadence": 0,
        "response_time_fraction_us": us % 1000,
    });
    serde_json::from_value(json).expect("goose's request metric")
}

fn note(mut request: GooseRequestMetric, total_us: u64, size: u64) -> GooseLog {
    request.response_time = total_us / 1000;
    request.response_time_fraction_us = (total_us % 1000) as u16;
    GooseLog::Debug(GooseDebug {
        tag: BODY_NOTE.to_string(),
        request: Some(request),
        header: None,
        body: Some(size.to_string()),
    })
}

fn report_of(mut tally: Tally, settle: bool) -> StatsReport {
    tally.settle_pending(settle, 2.0);
    tally.into_report(2.0)
}

#[test]
fn a_request_without_a_response_counts_once_with_its_causes() {
    let mut tally = Tally::new(1.0);
    let mut failed = request(3, 10, 700);
    failed.success = false;
    failed.status_code = 0;
    failed.error = "error sending request /: client error (Connect)".into();
    let mut noted = failed.clone();
    noted.error = format!("{}: invalid peer certificate: UnknownIssuer", failed.error);
    tally.record(&GooseLog::Request(failed.clone()), 1.5);
    tally.record(
        &GooseLog::Debug(GooseDebug {
            tag: REQUEST_FAILED_NOTE.to_string(),
            request: Some(noted.clone()),
            header: None,
            body: Some(noted.error.clone()),
        }),
        1.5,
    );
    let report = report_of(tally, true);
    assert_eq!(report.stats_total.num_requests, 1);
    assert_eq!(report.stats_total.num_failures, 1);
    let errors: Vec<(&str, u64)> = report
        .errors
        .values()
        .map(|e| (e.error.as_str(), e.occurrences))
        .collect();
    assert_eq!(errors, vec![(noted.error.as_str(), 1)]);
}

#[test]
fn a_body_note_gives_the_size_and_the_time_to_the_last_byte() {
    let mut tally = Tally::new(1.0);
    // The transaction has read a body before: its requests wait.
    tally.noting.insert((0, 0));
    let (a, b) = (request(0, 10, 400), request(1, 11, 500));
    tally.record(&GooseLog::Request(a.clone()), 1.5);
    tally.record(&GooseLog::Request(b.clone()), 1.5);
    tally.record(&note(a, 1_400, 125), 1.5);
    // User 1's next request settles its first without a note.
    tally.record(&GooseLog::Request(request(1, 12, 600)), 1.5);
    let report = report_of(tally, true);
    let total = &report.stats_total;
    assert_eq!(total.num_requests, 3);
    assert_eq!(total.total_content_length, 125);
    assert!((total.total_response_time - (1.4 + 0.5 + 0.6)).abs() < 1e-9);
}

#[test]
fn a_request_waits_through_one_report_for_its_body() {
    let mut tally = Tally::new(1.0);
    tally.noting.insert((0, 0));
    tally.record(&GooseLog::Request(request(0, 10, 400)), 1.5);
    tally.settle_pending(false, 1.6);
    assert_eq!(tally.pending.len(), 1, "kept for its note");
    tally.settle_pending(false, 1.7);
    assert!(tally.pending.is_empty(), "settled on the second report");
}

/// Requests of a transaction that never sent a note are counted as
/// they come, in their own second; once it sends one, the next wait.
#[test]
fn only_a_transaction_that_reads_bodies_waits_for_its_notes() {
    let mut tally = Tally::new(1.0);
    let first = request(0, 10, 400);
    tally.record(&GooseLog::Request(first.clone()), 1.5);
    assert!(tally.pending.is_empty(), "nothing to wait for yet");
    let second = tally
        .entries
        .values()
        .map(|e| e.num_reqs_per_sec.clone())
        .next();
    assert_eq!(
        second.map(|s| s.into_iter().collect::<Vec<_>>()),
        Some(vec![(1, 1)]),
        "counted in the second it arrived"
    );
    // Its note comes after all: the size still counts.
    tally.record(&note(first, 1_400, 125), 1.6);
    tally.record(&GooseLog::Request(request(0, 11, 500)), 2.5);
    assert_eq!(
        tally.pending.len(),
        1,
        "now the transaction's requests wait"
    );
    let report = report_of(tally, true);
    assert_eq!(report.stats_total.num_requests, 2);
    assert_eq!(report.stats_total.total_content_length, 125);
}

/// A body that did not arrive fails its request, even when the request
/// was counted before its note came.
#[test]
fn a_body_that_failed_after_its_request_was_counted_is_a_failure() {
    let mut tally = Tally::new(1.0);
    let first = request(0, 10, 400);
    tally.record(&GooseLog::Request(first.clone()), 1.5);
    let mut failed = note(first, 1_400, 0);
    if let GooseLog::Debug(debug) = &mut failed {
        debug.tag = BODY_FAILED_NOTE.to_string();
        debug.body = Some("reading the body: connection reset: /".into());
    }
    tally.record(&failed, 1.6);
    let report = report_of(tally, true);
    assert_eq!(report.stats_total.num_requests, 1);
    assert_eq!(report.stats_total.num_failures, 1);
    assert_eq!(report.errors.len(), 1, "{:?}", report.errors);
}

fn park_note(user: usize) -> GooseLog {
    GooseLog::Debug(GooseDebug {
        tag: PARK_NOTE.to_string(),
        request: None,
        header: None,
        body: Some(user.to_string()),
    })
}

fn copy(user: usize, elapsed: u64, cadence: u64) -> GooseLog {
    let mut copy = request(user, 10, 1_000);
    copy.coordinated_omission_elapsed = elapsed;
    copy.user_cadence = cadence;
    GooseLog::Request(copy)
}

/// A parked user's next pass looks like a stall to goose: its copies
/// (one per request of the pass) are dropped; a later real stall, or
/// another user's, is back-filled.
#[test]
fn a_park_is_not_back_filled_as_a_stall() {
    let mut tally = Tally::new(1.0);
    tally.record(&park_note(0), 1.1);
    // The pass after the park: two requests, each with its copy.
    for _ in 0..2 {
        tally.record(&copy(0, 1_000, 10), 1.2);
        tally.record(&GooseLog::Request(request(0, 10, 1_000)), 1.2);
    }
    // User 1 was never parked: its stall counts.
    tally.record(&copy(1, 100, 10), 1.3);
    let backfilled = |t: &Tally| t.entries.values().map(|e| e.backfilled).sum::<u64>();
    // 100 ms less a cadence less the measured 1 ms, down by 10 ms.
    assert_eq!(
        backfilled(&tally),
        9,
        "user 1's stall only: 89, 79 ... 9 ms"
    );
    // User 0's next real stall (another length) counts again.
    tally.record(&copy(0, 200, 10), 1.4);
    assert_eq!(backfilled(&tally), 9 + 19);
    // A park whose pass brought no copy drops nothing later.
    tally.record(&park_note(1), 1.5);
    tally.record(&GooseLog::Request(request(1, 12, 1_000)), 1.5);
    tally.record(&copy(1, 100, 10), 1.6);
    assert_eq!(backfilled(&tally), 9 + 19 + 9);
}

#[test]
fn a_stall_is_back_filled_like_goose_does_into_the_histogram_only() {
    let mut tally = Tally::new(1.0);
    let mut stalled = request(0, 10, 1_000_000);
    tally.record(&GooseLog::Request(stalled.clone()), 1.5);
    // The copy that ended a 1,000 ms stall at a 100 ms cadence, its
    // request measured at 50 ms: goose back-fills 850, 750, ... 150 ms,
    // eight requests.
    stalled.coordinated_omission_elapsed = 1_000;
    stalled.user_cadence = 100;
    stalled.response_time = 50;
    tally.record(&GooseLog::Request(stalled), 1.5);
    let report = report_of(tally, true);
    let total = &report.stats_total;
    assert_eq!(
        total.num_requests, 1,
        "back-filled requests were never sent"
    );
    assert_eq!(total.backfilled, 8);
    assert_eq!(total.precise().map(crate::stats::Hdr::count), Some(9));
    assert_eq!(total.percentile_source(), "hdr+co");
    assert!(total.co_corrected());
}

/// `request` as goose's `set_success` or `set_failure(tag)` sends it.
fn verdict(mut request: GooseRequestMetric, success: bool, tag: &str) -> GooseRequestMetric {
    request.success = success;
    request.update = true;
    if !success {
        request.error = tag.to_string();
    }
    request
}

fn failed(user: usize, elapsed: u64) -> GooseRequestMetric {
    let mut request = request(user, elapsed, 700);
    request.success = false;
    request.status_code = 404;
    request.error = "404 Not Found: /".to_string();
    request
}

#[test]
fn an_expected_failure_marked_a_success_is_no_failure() {
    let mut tally = Tally::new(1.0);
    let missing = failed(0, 10);
    tally.record(&GooseLog::Request(missing.clone()), 1.5);
    tally.correct(&verdict(missing, true, ""), 1.5);
    let report = report_of(tally, false);
    assert_eq!(report.stats_total.num_requests, 1);
    assert_eq!(report.stats_total.num_failures, 0);
    assert!(report.errors.is_empty(), "{:?}", report.errors);
}

#[test]
fn a_success_marked_a_failure_counts_with_its_reason() {
    let mut tally = Tally::new(1.0);
    let wrong = request(0, 10, 400);
    tally.record(&GooseLog::Request(wrong.clone()), 1.5);
    tally.correct(&verdict(wrong, false, "no price on the page"), 1.5);
    let report = report_of(tally, false);
    assert_eq!(report.stats_total.num_requests, 1);
    assert_eq!(report.stats_total.num_failures, 1);
    let errors: Vec<&str> = report.errors.values().map(|e| e.error.as_str()).collect();
    assert_eq!(errors, ["no price on the page"]);
}

#[test]
fn a_failure_counted_before_its_verdict_is_taken_back() {
    let mut tally = Tally::new(1.0);
    let missing = failed(0, 10);
    tally.record(&GooseLog::Request(missing.clone()), 1.5);
    // The user's next request came before the verdict was read.
    tally.record(&GooseLog::Request(request(0, 11, 300)), 1.5);
    tally.correct(&verdict(missing, true, ""), 1.5);
    let report = report_of(tally, false);
    assert_eq!(report.stats_total.num_requests, 2);
    assert_eq!(report.stats_total.num_failures, 0);
    assert!(report.stats_total.num_fail_per_sec.is_empty());
    assert!(report.errors.is_empty(), "{:?}", report.errors);
}

#[test]
fn a_failure_waits_through_a_report_for_its_verdict() {
    let mut tally = Tally::new(1.0);
    let missing = failed(0, 10);
    tally.record(&GooseLog::Request(missing.clone()), 1.5);
    tally.settle_pending(false, 2.0);
    assert_eq!(
        tally.entries.values().map(|e| e.num_requests).sum::<u64>(),
        0
    );
    tally.correct(&verdict(missing, true, ""), 2.5);
    let report = report_of(tally, false);
    assert_eq!(report.stats_total.num_requests, 1);
    assert_eq!(report.stats_total.num_failures, 0);
}

#[test]
fn a_read_failure_waits_for_its_body_then_its_verdict() {
    let mut tally = Tally::new(1.0);
    // The first request of a transaction that reads bodies: a 404.
    let missing = failed(0, 10);
    tally.record(&GooseLog::Request(missing.clone()), 1.5);
    tally.record(&note(missing.clone(), 1_200, 512), 1.5);
    tally.correct(&verdict(missing, true, ""), 1.5);
    let report = report_of(tally, false);
    let total = &report.stats_total;
    assert_eq!((total.num_requests, total.num_failures), (1, 0));
    assert_eq!(total.total_content_length, 512);
    assert!(
        (total.total_response_time - 1.2).abs() < 1e-9,
        "{}",
        total.total_response_time
    );
    assert!(report.errors.is_empty());
}

/// Failures and error rows agree, whatever order records, verdicts
/// and reports come in.
#[test]
fn failures_and_error_rows_always_agree() {
    let mut seed = 7u64;
    let mut next = move |n: u64| {
        seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        (seed >> 33) % n
    };
    let mut tally = Tally::new(1.0);
    let (mut failures, mut errors) = (0u64, 0u64);
    let mut elapsed = 0;
    for _ in 0..2_000 {
        let user = next(4) as usize;
        elapsed += next(2);
        let missing = failed(user, elapsed);
        tally.record(&GooseLog::Request(missing.clone()), 1.5);
        if next(3) == 0 {
            let report = tally_take(&mut tally);
            failures += report.stats_total.num_failures;
            errors += report.errors.values().map(|e| e.occurrences).sum::<u64>();
        }
        let mut page = request(user, elapsed, 300);
        page.name = "/page".into();
        if next(2) == 0 {
            tally.correct(&verdict(missing, true, ""), 1.5);
            tally.record(&GooseLog::Request(page.clone()), 1.5);
        } else {
            tally.record(&GooseLog::Request(page.clone()), 1.5);
            tally.correct(&verdict(missing, true, ""), 1.5);
        }
        tally.correct(&verdict(page, false, "no price"), 1.5);
    }
    tally.settle_pending(true, 2.0);
    let report = tally_take(&mut tally);
    failures += report.stats_total.num_failures;
    errors += report.errors.values().map(|e| e.occurrences).sum::<u64>();
    assert_eq!(failures, errors);
}

/// A report, as `Tap::take` takes one: what waits stays.
fn tally_take(tally: &mut Tally) -> StatsReport {
    tally.settle_pending(false, 2.0);
    let mut next = Tally::new(2.0);
    next.pending = std::mem::take(&mut tally.pending);
    next.noting = std::mem::take(&mut tally.noting);
    std::mem::replace(tally, next).into_report(2.0)
}

#[test]
fn a_verdict_read_before_its_record_still_counts() {
    let mut tally = Tally::new(1.0);
    let missing = failed(0, 10);
    tally.correct(&verdict(missing.clone(), true, ""), 1.5);
    tally.record(&GooseLog::Request(missing), 1.5);
    let report = report_of(tally, true);
    assert_eq!(report.stats_total.num_requests, 1);
    assert_eq!(report.stats_total.num_failures, 0);
    assert!(report.errors.is_empty());
}

fn intended(user: usize, late_us: u64) -> GooseLog {
    GooseLog::Debug(GooseDebug {
        tag: INTENDED_NOTE.to_string(),
        request: None,
        header: None,
        body: Some(format!("{user}:{late_us}")),
    })
}

/// In the open model a pass's first request runs from when the pass was
/// due, to its body's last byte; the pass's later requests, and other
/// users', count as they are.
#[test]
fn a_pass_s_first_request_counts_from_its_intended_start() {
    let mut tally = Tally::new(1.0);
    // The transaction reads its bodies: its requests wait for their notes.
    let read = request(3, 1, 1_000);
    tally.record(&GooseLog::Request(read.clone()), 1.5);
    tally.record(&note(read, 1_000, 100), 1.5);
    tally.record(&intended(1, 30_000), 1.5);
    // Another user's request takes nothing of user 1's.
    let other = request(2, 5, 1_000);
    tally.record(&GooseLog::Request(other.clone()), 1.5);
    tally.record(&note(other, 1_000, 100), 1.5);
    // User 1's first request, read to its body's end (4 ms in all).
    let first = request(1, 10, 2_000);
    tally.record(&GooseLog::Request(first.clone()), 1.5);
    tally.record(&note(first, 4_000, 100), 1.5);
    // Its second request in the same pass, and a malformed note.
    tally.record(
        &GooseLog::Debug(GooseDebug {
            tag: INTENDED_NOTE.to_string(),
            request: None,
            header: None,
            body: Some("not a user".into()),
        }),
        1.5,
    );
    tally.record(&GooseLog::Request(request(1, 20, 3_000)), 1.5);
    let report = report_of(tally, true);
    assert_eq!(report.stats_total.num_requests, 4);
    // 30 ms late + 4 ms: the slowest; 3 ms and 1 ms as they were.
    assert_eq!(report.stats_total.max_response_time, 34.0);
    assert_eq!(report.stats_total.min_response_time, Some(1.0));
    assert_eq!(report.stats_total.total_response_time, 39.0);
}
