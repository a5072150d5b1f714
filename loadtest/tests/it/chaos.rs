//! The fault issue's acceptance: a swarm survives its workers and its
//! master failing, and the numbers stay nginx's.
//!
//! nginx, a `loadtest master` with its UI and `--csv`, three workers A, B
//! and C, 30 users. A background poller reads `/stats/requests` every
//! 100 ms all along: the user count never exceeds 30 and every answer
//! comes within 1 s. Then, in order:
//!
//! 1. SIGKILL A: marked missing, its users move to B and C. What A had not
//!    reported yet (its last 3 s at most) is lost.
//! 2. SIGSTOP B for 8 s: missing, its users move to C; after SIGCONT it is
//!    back and the 30 users are spread again.
//! 3. SIGTERM C: it drains (final stats, `quit`) and exits 0; B runs all 30.
//! 4. SIGTERM the master: it stops the workers, writes its CSV and exits;
//!    its count is nginx's but for A's unreported tail.
//! 5. A new master on the same ports: B rejoins by itself; with a new
//!    worker, a second run's count is nginx's again.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use harness::*;
use harness::{http_post_form, try_http, Nginx, NginxOptions, TempDir};
use swarm::api::{NodeState, RunState, StatsRequests, WorkerEvent};

const USERS: u64 = 30;
/// A pause between requests: load enough to count, light on 2 CPUs.
const WORKER_WAIT: &[&str] = &["--wait", "0.02:0.08"];
/// How long the 30 users run on A, B and C before A is killed.
const LOAD_BEFORE_KILL: Duration = Duration::from_secs(7);
/// How long B stays stopped.
const STOP_FOR: Duration = Duration::from_secs(8);
/// What a SIGKILLed worker may lose: its last report interval and a margin.
const UNREPORTED_TAIL_S: f64 = 3.5;
/// The slowest answer the poller accepts.
const ANSWER_LIMIT: Duration = Duration::from_secs(1);

#[test]
fn the_swarm_survives_killed_stopped_and_terminated_workers_and_a_master_restart() {
    let test_start = Instant::now();
    let nginx = Nginx::start(NginxOptions::default());
    let dir = TempDir::new("chaos");
    let prefix1 = dir.path().join("first");
    let prefix2 = dir.path().join("second");
    let (port, web_port) = (harness::free_port(), harness::free_port());
    let api = format!("http://127.0.0.1:{web_port}");
    let target = nginx.url();
    let ui_master = |prefix: &std::path::Path| {
        let csv = prefix.to_str().expect("utf-8 path");
        loadtest!().master_with_ui_on(&dir, port, web_port, &["--host", &target, "--csv", csv])
    };
    let mut master1 = ui_master(&prefix1);
    let mut a = loadtest!().worker(&dir, port, WORKER_WAIT);
    let mut b = loadtest!().worker(&dir, port, WORKER_WAIT);
    let mut c = loadtest!().worker(&dir, port, WORKER_WAIT);
    let (a_id, b_id, c_id) = (node_id(&mut a), node_id(&mut b), node_id(&mut c));
    println!("workers: A {a_id}, B {b_id}, C {c_id}");
    // Checks whose failure should not hide the figures after them.
    let mut problems: Vec<String> = Vec::new();

    wait_until(Duration::from_secs(30), "three workers to join", || {
        (stats(&api).worker_count == 3).then_some(())
    });
    let poller = Poller::start(&api);
    start_swarm(&api, USERS as u32, USERS as u32);
    wait_for_users_on(&api, &[&a_id, &b_id, &c_id], "30 users on A, B and C");
    // Long enough that A has reported several times: what it made before
    // its last interval must reach the master.
    let all_running = Instant::now();
    wait_until(Duration::from_secs(20), "requests to be counted", || {
        (total_requests(&stats(&api)) > 300).then_some(())
    });
    if let Some(rest) = LOAD_BEFORE_KILL.checked_sub(all_running.elapsed()) {
        thread::sleep(rest);
    }

    // 1. SIGKILL A.
    let a_killed_at = epoch_now();
    let killed = Instant::now();
    a.signal("KILL");
    wait_for_state(&api, &a_id, NodeState::Missing, Duration::from_secs(15));
    println!("A marked missing {:?} after SIGKILL", killed.elapsed());
    wait_for_users_on(
        &api,
        &[&b_id, &c_id],
        "30 users on B and C after A's SIGKILL",
    );
    println!("30 users on B and C {:?} after SIGKILL", killed.elapsed());

    // 2. SIGSTOP B for 8 s.
    let stopped = Instant::now();
    b.signal("STOP");
    wait_for_state(&api, &b_id, NodeState::Missing, Duration::from_secs(15));
    println!("B marked missing {:?} after SIGSTOP", stopped.elapsed());
    wait_for_users_on(&api, &[&c_id], "30 users on C while B is stopped");
    println!("30 users on C {:?} after SIGSTOP", stopped.elapsed());
    if let Some(rest) = STOP_FOR.checked_sub(stopped.elapsed()) {
        thread::sleep(rest);
    }
    b.signal("CONT");
    let resumed = Instant::now();
    wait_for_users_on(&api, &[&b_id, &c_id], "B back and 30 users on B and C");
    println!(
        "B back, 30 users on B and C {:?} after SIGCONT",
        resumed.elapsed()
    );

    // 3. SIGTERM C.
    let terminated = Instant::now();
    c.signal("TERM");
    let c_status = c.wait_exit(Duration::from_secs(10));
    println!("C: {c_status:?} {:?} after SIGTERM", terminated.elapsed());
    let c_status =
        c_status.unwrap_or_else(|| panic!("C still runs 10 s after SIGTERM\n{}", c.logs()));
    assert_eq!(
        c_status.code(),
        Some(0),
        "C drains and exits 0\n{}",
        c.logs()
    );
    wait_for_users_on(&api, &[&b_id], "30 users on B after C's SIGTERM");
    println!("30 users on B {:?} after C's SIGTERM", terminated.elapsed());

    let events = stats(&api).worker_events;
    println!("worker_events: {events:?}");
    for (who, id, event) in [
        ("A", &a_id, "missing"),
        ("B", &b_id, "missing"),
        ("B", &b_id, "back"),
        ("C", &c_id, "quit"),
    ] {
        if !has_event(&events, id, event) {
            problems.push(format!(
                "no `{event}` event for {who} in worker_events: {events:?}"
            ));
        }
    }

    // 4. SIGTERM the master.
    poller.pause();
    let master_termed = Instant::now();
    master1.signal("TERM");
    let code = exit_code(&mut master1, Duration::from_secs(20));
    println!(
        "master 1 exited with {code} {:?} after SIGTERM",
        master_termed.elapsed()
    );
    assert!(
        code == 0 || code == 1,
        "the master ends with 0 or its failure code, not {code}\n{}",
        master1.logs()
    );
    if !master1.stdout().contains("Aggregated") {
        problems.push(format!(
            "master 1 printed no summary on SIGTERM:\n{}",
            master1.stdout()
        ));
    }
    let csv1 = dir.path().join("first_stats.csv");
    assert!(
        csv1.is_file(),
        "master 1 wrote {} on SIGTERM (UI mode with --csv)\n{}",
        csv1.display(),
        master1.logs()
    );
    let counted1 = num(&csv_row(&csv1, "Aggregated"), "Request Count");
    let log1 = nginx.access_log();
    let logged1 = log1.len() as f64;
    let a_lines = log1.iter().filter(|l| l.user_agent.contains(&a_id)).count();
    let a_tail = log1
        .iter()
        .filter(|l| l.user_agent.contains(&a_id) && l.time >= a_killed_at - UNREPORTED_TAIL_S)
        .count() as f64;
    println!(
        "run 1: master {counted1} requests (CSV), nginx {logged1} lines; A made {a_lines}, \
         {a_tail} of them in its last {UNREPORTED_TAIL_S} s; missing {} ({:.3}%)",
        logged1 - counted1,
        (logged1 - counted1) / logged1 * 100.0
    );
    assert!(
        a_lines > 0,
        "nginx logged A's user agent (loadtest/<v> ({a_id}))"
    );
    assert!(
        logged1 - counted1 <= 0.005 * logged1 + a_tail,
        "master 1 lost more than A's unreported tail: {counted1} counted, {logged1} logged, tail {a_tail}"
    );
    assert!(
        counted1 <= logged1 * 1.005,
        "master 1 counted more than nginx served: {counted1} vs {logged1}"
    );
    assert!(
        b.is_running(),
        "B stays up when its master goes\n{}",
        b.logs()
    );

    // 5. A new master on the same ports.
    let master_gone = Instant::now();
    let mut master2 = ui_master(&prefix2);
    let master2_up = Instant::now();
    poller.resume();
    wait_until(
        Duration::from_secs(30),
        "B to rejoin the new master",
        || worker_entry(&stats(&api), &b_id).map(|_| ()),
    );
    println!(
        "B rejoined {:?} after master 2 listened ({:?} after master 1 exited)",
        master2_up.elapsed(),
        master_gone.elapsed()
    );
    if master2_up.elapsed() > Duration::from_secs(10) {
        problems.push(format!(
            "B took {:?} to rejoin (a few seconds expected)",
            master2_up.elapsed()
        ));
    }
    let mut d = loadtest!().worker(&dir, port, WORKER_WAIT);
    let d_id = node_id(&mut d);
    wait_until(
        Duration::from_secs(30),
        "B and a new worker D on master 2",
        || (stats(&api).worker_count == 2).then_some(()),
    );
    let before2 = nginx.access_log().len();
    let run2 = Instant::now();
    start_swarm(&api, USERS as u32, USERS as u32);
    wait_for_users_on(&api, &[&b_id, &d_id], "30 users on B and D under master 2");
    if let Some(rest) = Duration::from_secs(8).checked_sub(run2.elapsed()) {
        thread::sleep(rest);
    }
    let (status, body) = http_post_form(&format!("{api}/stop"), &[]);
    assert_eq!(status, 200, "POST /stop: {body}");
    wait_until(Duration::from_secs(15), "run 2 to stop", || {
        (stats(&api).state == RunState::Stopped).then_some(())
    });
    let counted2 = settled_requests(&api, Duration::from_secs(30)) as f64;
    let logged2 = (nginx.access_log().len() - before2) as f64;
    println!("run 2: master {counted2} requests, nginx {logged2} lines");
    let figures = poller.finish();
    println!(
        "poller: {} answers, max user_count {} (max running sum {}), slowest {:?} ({}), {} failures",
        figures.answers,
        figures.max_user_count,
        figures.max_running_sum,
        figures.slowest,
        figures.slowest_at,
        figures.failures.len()
    );
    assert_close(
        counted2,
        logged2,
        0.005,
        "run 2: master 2 vs nginx lines after master 1",
    );

    master2.signal("TERM");
    let code2 = exit_code(&mut master2, Duration::from_secs(20));
    let csv2 = dir.path().join("second_stats.csv");
    if csv2.is_file() {
        let from_csv = num(&csv_row(&csv2, "Aggregated"), "Request Count");
        println!("master 2 exited with {code2}; its CSV counts {from_csv}");
        if (from_csv - logged2).abs() > 0.005 * logged2 {
            problems.push(format!("master 2's CSV {from_csv} vs nginx {logged2}"));
        }
    } else {
        problems.push(format!("master 2 wrote no {} on SIGTERM", csv2.display()));
    }

    assert!(
        figures.max_user_count <= USERS,
        "user_count went above {USERS}: {:?}",
        figures.over_target
    );
    assert!(
        figures.failures.is_empty(),
        "/stats/requests failed while a master was up: {:?}",
        figures.failures
    );
    assert!(
        figures.slowest <= ANSWER_LIMIT,
        "/stats/requests took {:?} ({})",
        figures.slowest,
        figures.slowest_at
    );
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    println!("chaos test took {:?}", test_start.elapsed());
    drop((a, b, c, d));
}

/// Waits until `state` is the state of worker `id`.
fn wait_for_state(api: &str, id: &str, state: NodeState, limit: Duration) {
    wait_until(limit, format!("worker {id} to be {state:?}"), || {
        let s = stats(api);
        worker_entry(&s, id)
            .is_some_and(|w| w.state == state)
            .then_some(())
    });
}

/// Waits until exactly `ids` run users (every other listed worker runs
/// none), theirs add up to USERS, and so does the total `user_count`.
fn wait_for_users_on(api: &str, ids: &[&str], what: &str) {
    let mut last = None;
    let done = try_wait_until(Duration::from_secs(30), || {
        let s = stats(api);
        let workers = worker_states(&s);
        let listed = |id: &str| workers.iter().find(|(w, _, _)| w == id);
        let ours_run = ids
            .iter()
            .all(|id| listed(id).is_some_and(|(_, state, users)| state == "running" && *users > 0));
        let others_idle = workers
            .iter()
            .filter(|(id, _, _)| !ids.contains(&id.as_str()))
            .all(|(_, state, users)| state == "missing" || *users == 0);
        let sum: u64 = workers
            .iter()
            .filter(|(id, _, _)| ids.contains(&id.as_str()))
            .map(|(_, _, users)| users)
            .sum();
        let reached = ours_run && others_idle && sum == USERS && s.user_count == USERS;
        last = Some((s.user_count, workers));
        reached.then_some(())
    });
    if done.is_none() {
        let (users, workers) = last.unwrap_or_default();
        panic!("timed out waiting for {what}: user_count {users}, workers {workers:?}");
    }
}

fn has_event(events: &[WorkerEvent], id: &str, event: &str) -> bool {
    events
        .iter()
        .any(|e| e.worker == id && serde_json::to_value(e.event).is_ok_and(|kind| kind == event))
}

/// What the background poller saw.
#[derive(Debug, Default)]
struct PollFigures {
    answers: usize,
    max_user_count: u64,
    /// The most users the listed, not-missing workers reported at once.
    max_running_sum: u64,
    slowest: Duration,
    slowest_at: String,
    /// Answers above the target, as `user_count` and the workers.
    over_target: Vec<String>,
    failures: Vec<String>,
}

/// Reads `/stats/requests` every 100 ms in a thread. Paused while no
/// master is meant to answer.
struct Poller {
    stop: Arc<AtomicBool>,
    paused: Arc<AtomicBool>,
    handle: JoinHandle<PollFigures>,
}

impl Poller {
    fn start(api: &str) -> Poller {
        let stop = Arc::new(AtomicBool::new(false));
        let paused = Arc::new(AtomicBool::new(false));
        let url = format!("{api}/stats/requests");
        let handle = {
            let (stop, paused) = (stop.clone(), paused.clone());
            thread::spawn(move || poll(&url, &stop, &paused))
        };
        Poller {
            stop,
            paused,
            handle,
        }
    }

    fn pause(&self) {
        self.paused.store(true, Ordering::SeqCst);
    }

    fn resume(&self) {
        self.paused.store(false, Ordering::SeqCst);
    }

    fn finish(self) -> PollFigures {
        self.stop.store(true, Ordering::SeqCst);
        self.handle.join().expect("the poller thread")
    }
}

fn poll(url: &str, stop: &AtomicBool, paused: &AtomicBool) -> PollFigures {
    let mut figures = PollFigures::default();
    let started = Instant::now();
    // Bounded: the test takes well under 3 minutes.
    while !stop.load(Ordering::SeqCst) && started.elapsed() < Duration::from_secs(180) {
        thread::sleep(Duration::from_millis(100));
        if paused.load(Ordering::SeqCst) {
            continue;
        }
        let asked = Instant::now();
        let answer = try_http("GET", url, None);
        let took = asked.elapsed();
        if paused.load(Ordering::SeqCst) {
            // The master was being stopped meanwhile: not its steady state.
            continue;
        }
        let at = format!("{:.1} s into the run", started.elapsed().as_secs_f64());
        let body = match answer {
            Ok((200, body)) => body,
            Ok((status, body)) => {
                figures.failures.push(format!("{at}: {status} {body}"));
                continue;
            }
            Err(e) => {
                figures.failures.push(format!("{at}: {e}"));
                continue;
            }
        };
        figures.answers += 1;
        if took > figures.slowest {
            figures.slowest = took;
            figures.slowest_at = at.clone();
        }
        let Ok(s) = serde_json::from_str::<StatsRequests>(&body) else {
            figures.failures.push(format!("{at}: not JSON: {body}"));
            continue;
        };
        let users = s.user_count;
        let running_sum: u64 = worker_states(&s)
            .iter()
            .filter(|(_, state, _)| state != "missing")
            .map(|(_, _, users)| users)
            .sum();
        figures.max_user_count = figures.max_user_count.max(users);
        figures.max_running_sum = figures.max_running_sum.max(running_sum);
        if users > USERS && figures.over_target.len() < 10 {
            figures
                .over_target
                .push(format!("{at}: {users} {:?}", worker_states(&s)));
        }
    }
    figures
}

/// A relay between a worker and its master that can lose the master's
/// answers and then cut the connection: the network blip after which a
/// worker cannot know whether its last report arrived.
struct Relay {
    port: u16,
    /// Set: bytes from the master are dropped, not passed to the worker,
    /// until the next connection: a deaf connection stays deaf to its end.
    deaf: Arc<AtomicBool>,
    /// Set: the first `stats` frame from the worker while deaf is dropped,
    /// not passed on, and the connection cut at once.
    swallow: Arc<AtomicBool>,
    /// Set by the relay once a `stats` frame came from the worker while deaf.
    stats_passed: Arc<AtomicBool>,
    /// Set: every connection is closed. The next one clears it and `deaf`.
    cut: Arc<AtomicBool>,
}

impl Relay {
    /// Relays connections on a free port to the master on `master_port`.
    fn start(master_port: u16) -> Relay {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("relay port");
        let port = listener.local_addr().expect("relay address").port();
        let relay = Relay {
            port,
            deaf: Arc::new(AtomicBool::new(false)),
            swallow: Arc::new(AtomicBool::new(false)),
            stats_passed: Arc::new(AtomicBool::new(false)),
            cut: Arc::new(AtomicBool::new(false)),
        };
        let (deaf, swallow, stats_passed, cut) = (
            relay.deaf.clone(),
            relay.swallow.clone(),
            relay.stats_passed.clone(),
            relay.cut.clone(),
        );
        thread::spawn(move || {
            for worker in listener.incoming() {
                let Ok(worker) = worker else { break };
                let Ok(master) = std::net::TcpStream::connect(loopback(master_port)) else {
                    continue;
                };
                deaf.store(false, Ordering::SeqCst);
                cut.store(false, Ordering::SeqCst);
                let flows = [
                    (worker.try_clone(), master.try_clone(), false),
                    (master.try_clone(), worker.try_clone(), true),
                ];
                for (from, to, from_master) in flows {
                    let (Ok(mut from), Ok(mut to)) = (from, to) else {
                        continue;
                    };
                    let (deaf, swallow, stats_passed, cut) = (
                        deaf.clone(),
                        swallow.clone(),
                        stats_passed.clone(),
                        cut.clone(),
                    );
                    thread::spawn(move || {
                        use std::io::{Read, Write};
                        let _ = from.set_read_timeout(Some(Duration::from_millis(50)));
                        let mut buf = vec![0u8; 64 * 1024];
                        while !cut.load(Ordering::SeqCst) {
                            let n = match from.read(&mut buf) {
                                Ok(0) => break,
                                Ok(n) => n,
                                Err(e)
                                    if e.kind() == std::io::ErrorKind::WouldBlock
                                        || e.kind() == std::io::ErrorKind::TimedOut =>
                                {
                                    continue
                                }
                                Err(_) => break,
                            };
                            if cut.load(Ordering::SeqCst) {
                                break;
                            }
                            let deafened = deaf.load(Ordering::SeqCst);
                            if from_master && deafened {
                                continue;
                            }
                            let stats = buf[..n].windows(6).any(|w| w == b"\xa5stats");
                            if !from_master && deafened && stats {
                                stats_passed.store(true, Ordering::SeqCst);
                                if swallow.swap(false, Ordering::SeqCst) {
                                    cut.store(true, Ordering::SeqCst);
                                    break;
                                }
                            }
                            if to.write_all(&buf[..n]).is_err() {
                                break;
                            }
                        }
                        let _ = from.shutdown(std::net::Shutdown::Both);
                        let _ = to.shutdown(std::net::Shutdown::Both);
                    });
                }
            }
        });
        relay
    }
}

/// A worker whose connection breaks after its report reached the master
/// but before the master's answer reached it sends the report again after
/// it rejoins: the master merges it once. Counts stay nginx's, exactly.
#[test]
fn a_report_sent_again_after_a_blip_counts_once() {
    blip(false);
}

/// A worker whose report was lost in the blip (written, never read by the
/// master) sends it again after it rejoins. Counts stay nginx's, exactly.
#[test]
fn a_report_lost_in_a_blip_is_sent_again() {
    blip(true);
}

/// The blip of both tests: `swallow` loses the report in it.
fn blip(swallow: bool) {
    let nginx = Nginx::start(NginxOptions::default());
    let dir = TempDir::new("blip");
    let (mut master, port, api) = loadtest!().master_with_ui(&dir, &["--host", &nginx.url()]);
    let relay = Relay::start(port);
    let mut worker = loadtest!().worker(&dir, relay.port, WORKER_WAIT);
    let id = node_id(&mut worker);
    wait_until(Duration::from_secs(30), "the worker to join", || {
        (stats(&api).worker_count == 1).then_some(())
    });
    start_swarm(&api, 4, 4);
    wait_until(Duration::from_secs(20), "requests to be counted", || {
        (total_requests(&stats(&api)) > 100).then_some(())
    });
    // The blip: the master's answers are lost from here on; once a report
    // went through (and the master merged it), the connection breaks.
    let before_blip = total_requests(&stats(&api));
    relay.swallow.store(swallow, Ordering::SeqCst);
    relay.deaf.store(true, Ordering::SeqCst);
    wait_until(
        Duration::from_secs(10),
        "a report to pass unanswered",
        || relay.stats_passed.load(Ordering::SeqCst).then_some(()),
    );
    if !swallow {
        wait_until(Duration::from_secs(5), "the master to merge it", || {
            (total_requests(&stats(&api)) > before_blip).then_some(())
        });
    }
    // Still deaf while it is cut: no confirmation may slip through before
    // the connection is gone. The next connection hears again.
    relay.cut.store(true, Ordering::SeqCst);
    // The worker rejoins through the relay and sends the report again: the
    // master says it had it, or takes it for the first time.
    wait_until(Duration::from_secs(30), "the worker to rejoin", || {
        let s = stats(&api);
        let joins = s
            .worker_events
            .iter()
            .filter(|e| e.worker == id && e.event == swarm::api::WorkerEventKind::Joined)
            .count();
        // The first join's event went with the stats the run started with.
        (joins >= 1 && total_requests(&s) > before_blip).then_some(())
    });
    let duplicates = wait_until(Duration::from_secs(10), "the report's fate", || {
        let n = stats(&api).refused_frames.duplicate_stats;
        (n > 0 || swallow).then_some(n)
    });
    println!(
        "swallowed: {swallow}; {before_blip} requests before the blip; duplicate reports dropped: {duplicates}"
    );
    // A report that passed while the relay was deaf was merged, and its
    // confirmation lost: sent again, it must be dropped. (With `swallow`,
    // a report merged just before the blip whose confirmation was still on
    // its way is sent again too, so duplicates may be dropped there as
    // well.) Either way the count below equals nginx's: nothing was merged
    // twice, and the swallowed report was sent again.
    if !swallow {
        assert!(
            duplicates > 0,
            "a report the master had is dropped when sent again"
        );
    }
    wait_until(Duration::from_secs(20), "the worker to count again", || {
        (worker_entry(&stats(&api), &id).is_some_and(|w| w.user_count > 0)).then_some(())
    });
    let before_stop = total_requests(&stats(&api));
    wait_until(Duration::from_secs(20), "a later report", || {
        (total_requests(&stats(&api)) > before_stop).then_some(())
    });
    http_post_form(&format!("{api}/stop"), &[]);
    wait_until(Duration::from_secs(20), "the run to stop", || {
        (stats(&api).state == RunState::Stopped).then_some(())
    });
    let counted = settled_requests(&api, Duration::from_secs(10));
    nginx.wait_log_quiet();
    assert_eq!(
        counted,
        nginx.count_requests() as u64,
        "master vs nginx after a blip\n{}",
        worker.logs()
    );
    master.signal("INT");
    exit_code(&mut master, Duration::from_secs(20));
}
