//! A spot interruption notice drains a worker: nginx, a `loadtest master`
//! with its UI, and two workers, one of them watching a stub IMDSv2
//! (`harness::ImdsStub`). Once the stub serves the notice, that worker
//! stops its users, sends its final stats and `quit`, and exits 0; the
//! master records a `reclaimed` event, moves the users to the other worker,
//! and nothing the reclaimed worker measured is lost (the master's total is
//! nginx's access log).

use std::time::{Duration, Instant};

use harness::*;
use harness::{http_post_form, ImdsStub, Nginx, NginxOptions, TempDir};
use swarm::api::{NodeState, RunState};

/// Users in the swarm.
const USERS: u64 = 20;
/// A pause between requests: load enough to count, light on 2 CPUs.
const WORKER_WAIT: &[&str] = &["--wait", "0.02:0.08"];
/// The notice the stub serves.
const NOTICE_TIME: &str = "2026-11-30T12:00:00Z";

#[test]
fn a_spot_notice_drains_the_worker_and_nothing_it_measured_is_lost() {
    let started_epoch = epoch_now();
    let nginx = Nginx::start(NginxOptions::default());
    let imds = ImdsStub::start();
    let dir = TempDir::new("spot");
    let (mut master, port, api) = loadtest!().master_with_ui(&dir, &["--host", &nginx.url()]);

    let mut steady = loadtest!().worker(&dir, port, WORKER_WAIT);
    let mut spot_cmd = loadtest!().worker_command(port, WORKER_WAIT);
    spot_cmd
        .env_remove("AWS_EC2_METADATA_DISABLED")
        .env("AWS_EC2_METADATA_SERVICE_ENDPOINT", imds.url());
    let mut spot = spawn_worker(&dir, spot_cmd);
    let steady_id = node_id(&mut steady);
    let spot_id = node_id(&mut spot);
    println!(
        "steady worker {steady_id}, spot worker {spot_id}, IMDS stub {}",
        imds.url()
    );

    wait_until(Duration::from_secs(30), "both workers to join", || {
        let s = stats(&api);
        (worker_entry(&s, &steady_id).is_some() && worker_entry(&s, &spot_id).is_some())
            .then_some(())
    });
    start_swarm(&api, USERS as u32, USERS as u32);
    wait_until(
        Duration::from_secs(30),
        "20 users running on both workers, requests flowing",
        || {
            let s = stats(&api);
            let both_run = [&steady_id, &spot_id].iter().all(|id| {
                worker_entry(&s, id)
                    .is_some_and(|w| w.state == NodeState::Running && w.user_count > 0)
            });
            (both_run && s.user_count == USERS && total_requests(&s) > 100).then_some(())
        },
    );
    // The watch runs: it has polled (with its token) before the notice.
    wait_until(
        Duration::from_secs(15),
        "the spot worker to poll instance-action",
        || (imds.polls() > imds.unauthorized_polls()).then_some(()),
    );

    let polls_before = imds.polls();
    imds.arm("terminate", NOTICE_TIME);
    let armed = Instant::now();
    let status = spot.wait_exit(Duration::from_secs(10));
    let drain = armed.elapsed();
    println!(
        "spot worker: {polls_before} polls before the notice, {} in all ({} without a token, {} tokens); exit {status:?} {drain:?} after arming",
        imds.polls(),
        imds.unauthorized_polls(),
        imds.tokens_issued()
    );
    let status = status.unwrap_or_else(|| {
        panic!(
            "the spot worker still runs 10 s after the notice ({} polls since arming)\nIMDS requests: {:?}\n{}",
            imds.polls() - polls_before,
            imds.requests(),
            spot.logs()
        )
    });
    assert_eq!(
        status.code(),
        Some(0),
        "a reclaimed worker exits 0\n{}",
        spot.logs()
    );
    assert!(
        imds.polls() > polls_before,
        "the worker exited without polling the notice"
    );
    let spot_log = strip_ansi(&spot.stderr());
    assert!(
        spot_log.contains("spot interruption"),
        "the worker says why it leaves:\n{spot_log}"
    );

    // The master records the departure as `reclaimed`.
    let event = wait_until(
        Duration::from_secs(10),
        "a `reclaimed` worker event for the spot worker",
        || {
            let s = stats(&api);
            s.worker_events.into_iter().find(|e| {
                e.worker == spot_id && serde_json::to_value(e.event).is_ok_and(|k| k == "reclaimed")
            })
        },
    );
    println!("reclaimed event: {event:?}");
    let at = event.time;
    assert!(
        (started_epoch..=epoch_now() + 1.0).contains(&at),
        "the event's time is an epoch float of this run: {event:?}"
    );
    // `detail` is a string by its type (the old check: `is_string`).

    // Its users move to the remaining worker.
    let moved = Instant::now();
    wait_until(
        Duration::from_secs(20),
        "20 users on the remaining worker",
        || {
            let s = stats(&api);
            let steady_has_all = worker_entry(&s, &steady_id)
                .is_some_and(|w| w.state == NodeState::Running && w.user_count == USERS);
            let spot_runs_none = worker_entry(&s, &spot_id).is_none_or(|w| w.user_count == 0);
            (steady_has_all && spot_runs_none && s.user_count == USERS).then_some(())
        },
    );
    println!(
        "users back to {USERS} on the steady worker {:?} after the exit",
        moved.elapsed()
    );

    // Some load on the steady worker alone, then stop and compare.
    let so_far = total_requests(&stats(&api));
    wait_until(Duration::from_secs(20), "more requests counted", || {
        (total_requests(&stats(&api)) > so_far + 100).then_some(())
    });
    let (status, body) = http_post_form(&format!("{api}/stop"), &[]);
    assert_eq!(status, 200, "POST /stop: {body}");
    wait_until(Duration::from_secs(15), "the run to stop", || {
        (stats(&api).state == RunState::Stopped).then_some(())
    });
    let counted = settled_requests(&api, Duration::from_secs(30));
    let log = nginx.access_log();
    let by_spot = log
        .iter()
        .filter(|l| l.user_agent.contains(&spot_id))
        .count();
    let by_steady = log
        .iter()
        .filter(|l| l.user_agent.contains(&steady_id))
        .count();
    println!(
        "master counted {counted}; nginx logged {} ({by_spot} from the spot worker, {by_steady} from the steady one)",
        log.len()
    );
    assert_close(
        counted as f64,
        log.len() as f64,
        0.005,
        "requests: master vs nginx log (the reclaimed worker's final stats included)",
    );

    // Every request names its worker: `loadtest/<version> (<node id>)`.
    let malformed: Vec<&str> = log
        .iter()
        .map(|l| l.user_agent.as_str())
        .filter(|ua| !is_worker_agent(ua, &[&steady_id, &spot_id]))
        .take(5)
        .collect();
    assert!(
        malformed.is_empty(),
        "user agents not of the form loadtest/<version> (<node id>): {malformed:?}"
    );
    assert!(
        by_spot > 0 && by_steady > 0,
        "both workers' node ids appear in nginx's log"
    );

    master.signal("INT");
    exit_code(&mut master, Duration::from_secs(20));
}

/// `loadtest/<version> (<one of ids>)`.
fn is_worker_agent(agent: &str, ids: &[&str]) -> bool {
    let Some(rest) = agent.strip_prefix("loadtest/") else {
        return false;
    };
    let Some((version, node)) = rest.split_once(" (") else {
        return false;
    };
    !version.is_empty()
        && !version.contains(' ')
        && node
            .strip_suffix(')')
            .is_some_and(|node| ids.contains(&node))
}
