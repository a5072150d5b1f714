//! HTTPS targets as users meet them: nginx with TLS and a certificate from
//! a test CA, loaded by a real `loadtest master` and workers.
//!
//! - trusted through the master's `--ca-cert` (sent with every spawn to
//!   workers that have no flag), every request is counted exactly: the
//!   master's total is nginx's access log;
//! - without it every request fails, the certificate error is in the
//!   failures table, and the worker says so once with a count; a refused
//!   connection the same;
//! - `--accept-invalid-certs` (the worker's own) and a self-signed
//!   certificate given as `--ca-cert` (the worker's own) are accepted;
//! - nginx offering `h2` by ALPN is still spoken to in HTTP/1.1;
//! - a connection carries many requests, and a reconnect resumes its TLS
//!   session (nginx's `$connection`, `$ssl_session_reused`).
//!
//! Every run is bounded: users wait a few milliseconds between requests,
//! and a run stops once nginx (or the master) has counted what it needs.

use std::collections::BTreeSet;
use std::time::Duration;

use harness::tls::{negotiated_alpn, self_signed_leaf};
use harness::*;
use swarm::api::{RunState, StatsRequests};

/// Users per run: each has its own client, connection and TLS session.
const USERS: u32 = 4;
/// A pause between a user's requests: a few hundred requests a second
/// per user, light on a shared 2-core machine.
const WORKER_WAIT: [&str; 2] = ["--wait", "0.002:0.005"];
/// How long a run may take to reach what it waits for.
const LOAD_LIMIT: Duration = Duration::from_secs(60);
/// How long the count may take to settle after a stop.
const SETTLE_LIMIT: Duration = Duration::from_secs(30);

/// nginx serving HTTPS with `leaf`.
fn tls_nginx(leaf: Leaf, http2: bool, keepalive_requests: Option<u32>) -> Nginx {
    Nginx::start(NginxOptions {
        tls: Some(NginxTls { leaf, http2 }),
        keepalive_requests,
        ..NginxOptions::default()
    })
}

/// A master with its UI, loading `target`, and one worker per entry of
/// `workers` (its own flags), all joined. Returns the master, the API's
/// URL and the workers.
fn fleet(
    dir: &TempDir,
    target: &str,
    master_flags: &[&str],
    workers: &[&[&str]],
) -> (Process, String, Vec<Process>) {
    let mut args = vec!["--host", target];
    args.extend_from_slice(master_flags);
    let (master, port, api) = loadtest!().master_with_ui(dir, &args);
    let workers: Vec<Process> = workers
        .iter()
        .map(|flags| {
            let mut args = WORKER_WAIT.to_vec();
            args.extend_from_slice(flags);
            loadtest!().worker(dir, port, &args)
        })
        .collect();
    wait_until(Duration::from_secs(30), "the workers to join", || {
        (stats(&api).worker_count == workers.len()).then_some(())
    });
    (master, api, workers)
}

/// Starts `USERS` users (against `host`, or the master's), runs them until
/// `enough` says so, stops them and returns the settled stats.
fn run_until(
    api: &str,
    host: Option<&str>,
    what: &str,
    enough: impl Fn(&StatsRequests) -> bool,
) -> StatsRequests {
    let client = Api::new(api);
    match host {
        Some(host) => client.swarm_at_once(USERS.into(), host),
        None => client.swarm(USERS.into(), USERS.into()),
    };
    wait_until(LOAD_LIMIT, what, || {
        enough(&client.requests()).then_some(())
    });
    client.stop();
    wait_until(Duration::from_secs(15), "the run to stop", || {
        (client.requests().state == RunState::Stopped).then_some(())
    });
    settled_requests(api, SETTLE_LIMIT);
    client.requests()
}

/// The `Aggregated` (requests, failures).
fn totals(stats: &StatsRequests) -> (u64, u64) {
    aggregated(stats).map_or((0, 0), |row| (row.num_requests, row.num_failures))
}

/// Lines of `log` that mention `needle`.
fn lines_with(log: &str, needle: &str) -> Vec<String> {
    strip_ansi(log)
        .lines()
        .filter(|l| l.contains(needle))
        .map(str::to_string)
        .collect()
}

/// The harness's TLS nginx answers over HTTPS with its CA's leaf, and the
/// `http2` variant offers h2 by ALPN (the one without it does not).
#[test]
fn the_tls_nginx_offers_h2_only_in_its_http2_variant() {
    let ca = TestCa::new("spotload test CA");
    for http2 in [false, true] {
        let nginx = tls_nginx(ca.issue_leaf(), http2, None);
        assert!(nginx.url().starts_with("https://"));
        let chosen = negotiated_alpn(nginx.addr(), ca.cert_pem(), &["h2", "http/1.1"]);
        let expected = if http2 { "h2" } else { "http/1.1" };
        assert_eq!(chosen.as_deref(), Some(expected), "{}", nginx.error_log());
    }
}

/// The master's `--ca-cert` reaches workers that have no flag (with every
/// spawn): every request succeeds and the master counts exactly what nginx
/// logged, over one connection (one handshake) per user.
#[test]
fn a_master_given_the_ca_has_every_request_counted_exactly() {
    let dir = TempDir::new("https-ca");
    let ca = TestCa::new("internal CA");
    let ca_file = ca.write_cert(dir.path());
    let nginx = tls_nginx(ca.issue_leaf(), false, None);
    let ca_arg = ca_file.to_str().expect("utf-8 temp path");
    let (mut master, api, mut workers) =
        fleet(&dir, &nginx.url(), &["--ca-cert", ca_arg], &[&[], &[]]);
    let stats = run_until(&api, None, "2,000 requests in nginx's log", |_| {
        nginx.access_log_now().len() >= 2_000
    });
    let (requests, failures) = totals(&stats);
    let logged = nginx.count_requests() as u64;
    println!("master: {requests} requests, {failures} failures; nginx: {logged}");
    assert_eq!(failures, 0, "{:?}\n{}", stats.errors, workers[0].logs());
    assert_eq!(requests, logged, "the master's total is nginx's log");
    let tls = nginx.tls_log();
    assert_eq!(tls.len() as u64, logged, "one TLS line per request");
    assert!(tls.iter().all(|l| l.http_version == "HTTP/1.1"), "{tls:?}");
    let connections: BTreeSet<u64> = tls.iter().map(|l| l.connection).collect();
    assert!(
        connections.len() <= USERS as usize,
        "{} connections (handshakes) for {requests} requests of {USERS} users",
        connections.len()
    );
    for worker in &mut workers {
        let log = strip_ansi(&worker.stderr());
        assert!(
            log.contains(
                "users' HTTPS now trusts the system's root certificates and 1 CA certificate"
            ),
            "the master's CA reached the worker:\n{log}"
        );
        assert!(!log.contains("WARN") && !log.contains("ERROR"), "{log}");
    }
    master.signal("INT");
    exit_code(&mut master, Duration::from_secs(30));
}

/// Without the CA every request fails with the certificate's error in
/// the failures table, and the worker logs it once with a count (not once
/// per request); nginx serves nothing. Then a refused connection, the same.
#[test]
fn an_untrusted_certificate_fails_every_request_and_is_logged_once() {
    let dir = TempDir::new("https-untrusted");
    let ca = TestCa::new("a CA nobody trusts");
    let nginx = tls_nginx(ca.issue_leaf(), false, None);
    let (mut master, api, workers) = fleet(&dir, &nginx.url(), &[], &[&[]]);
    let stats = run_until(&api, None, "500 failures", |s| totals(s).1 >= 500);
    let (requests, failures) = totals(&stats);
    println!(
        "untrusted: {requests} requests, {failures} failures; errors {:?}",
        stats.errors
    );
    assert_eq!(failures, requests, "every request failed");
    assert_eq!(
        nginx.count_requests(),
        0,
        "no request got past the handshake"
    );
    assert_eq!(stats.errors.len(), 1, "{:?}", stats.errors);
    let row = &stats.errors[0];
    assert!(
        row.error.contains("invalid peer certificate") && row.error.contains("UnknownIssuer"),
        "the certificate's error is in the failures table: {row:?}"
    );
    assert_eq!(row.occurrences, failures);

    let log = strip_ansi(&workers[0].stderr());
    let about = lines_with(&log, "UnknownIssuer");
    assert!(
        !about.is_empty() && about.len() <= 3,
        "a few lines about the certificate, not one per request:\n{log}"
    );
    assert!(
        about[0].contains("--ca-cert"),
        "the first says what to do: {}",
        about[0]
    );
    // The first line, and the count of the rest when the users stopped.
    let counted: u64 = about
        .iter()
        .filter_map(|l| {
            let rest = &l[l.find("WARN")?..];
            let n = rest
                .split_whitespace()
                .find_map(|w| w.parse::<u64>().ok())?;
            rest.contains("more requests got no response").then_some(n)
        })
        .sum();
    assert_eq!(
        counted + 1,
        failures,
        "the log's count is the failures table's:\n{log}"
    );
    assert!(!log.contains("rustls_platform_verifier"), "{log}");

    // Nothing listens there: every request refused, said once.
    let closed = format!("http://127.0.0.1:{}", free_port());
    let stats = run_until(&api, Some(&closed), "500 refused requests", |s| {
        totals(s).1 >= 500
    });
    let (requests, failures) = totals(&stats);
    assert_eq!(failures, requests, "every request failed");
    assert!(
        stats
            .errors
            .iter()
            .any(|e| e.error.contains("Connection refused") && e.occurrences == failures),
        "{:?}",
        stats.errors
    );
    let log = strip_ansi(&workers[0].stderr());
    let refused = lines_with(&log, "Connection refused");
    assert!(
        !refused.is_empty() && refused.len() <= 3,
        "a few lines about the refused connection:\n{log}"
    );
    master.signal("INT");
    exit_code(&mut master, Duration::from_secs(30));
}

/// A worker's own flags, for a master that sends none: one worker accepts
/// any certificate (`--accept-invalid-certs`), the other trusts the
/// target's self-signed `CA:TRUE` certificate given as `--ca-cert` (which
/// no chain of trust accepts). Both load nginx, and nothing fails.
#[test]
fn a_workers_own_flags_accept_a_self_signed_certificate() {
    let dir = TempDir::new("https-self-signed");
    let leaf = self_signed_leaf();
    let cert_file = dir.path().join("self-signed.pem");
    std::fs::write(&cert_file, &leaf.cert_pem).expect("write the certificate");
    let nginx = tls_nginx(leaf, false, None);
    let cert_arg = cert_file.to_str().expect("utf-8 temp path");
    let (mut master, api, mut workers) = fleet(
        &dir,
        &nginx.url(),
        &[],
        &[&["--accept-invalid-certs"], &["--ca-cert", cert_arg]],
    );
    let ids: Vec<String> = workers.iter_mut().map(node_id).collect();
    let stats = run_until(&api, None, "1,000 requests in nginx's log", |_| {
        nginx.access_log_now().len() >= 1_000
    });
    let (requests, failures) = totals(&stats);
    assert_eq!(failures, 0, "{:?}", stats.errors);
    let log = nginx.access_log();
    assert_eq!(
        requests,
        log.len() as u64,
        "the master's total is nginx's log"
    );
    for id in &ids {
        let served = log
            .iter()
            .filter(|l| l.user_agent.contains(id.as_str()))
            .count();
        assert!(served > 0, "worker {id} got through the handshake");
    }
    master.signal("INT");
    exit_code(&mut master, Duration::from_secs(30));
}

/// nginx offering `h2` by ALPN: the users offer only `http/1.1`, so they
/// get it, and every request succeeds. The master's
/// `--accept-invalid-certs` reaches a worker without the flag.
#[test]
fn a_target_offering_http2_is_spoken_to_in_http_1_1() {
    let dir = TempDir::new("https-h2");
    let ca = TestCa::new("h2 CA");
    let nginx = tls_nginx(ca.issue_leaf(), true, None);
    assert_eq!(
        negotiated_alpn(nginx.addr(), ca.cert_pem(), &["h2", "http/1.1"]).as_deref(),
        Some("h2"),
        "nginx offers h2"
    );
    let (mut master, api, _workers) =
        fleet(&dir, &nginx.url(), &["--accept-invalid-certs"], &[&[]]);
    let stats = run_until(&api, None, "1,000 requests in nginx's log", |_| {
        nginx.access_log_now().len() >= 1_000
    });
    let (requests, failures) = totals(&stats);
    assert_eq!(failures, 0, "{:?}", stats.errors);
    assert_eq!(requests, nginx.count_requests() as u64);
    let tls = nginx.tls_log();
    assert!(!tls.is_empty());
    assert!(
        tls.iter().all(|l| l.http_version == "HTTP/1.1"),
        "{:?}",
        tls.iter().find(|l| l.http_version != "HTTP/1.1")
    );
    master.signal("INT");
    exit_code(&mut master, Duration::from_secs(30));
}

/// HTTPS costs a handshake per connection, not per request, and a user
/// that reconnects resumes its TLS session: nginx closes each connection
/// after `KEEPALIVE` requests, so users reconnect all through the run;
/// only each user's first connection makes a full handshake.
#[test]
fn connections_carry_many_requests_and_reconnects_resume_the_session() {
    const KEEPALIVE: u64 = 50;
    let dir = TempDir::new("https-resume");
    let ca = TestCa::new("resumption CA");
    let ca_file = ca.write_cert(dir.path());
    let nginx = tls_nginx(ca.issue_leaf(), false, Some(KEEPALIVE as u32));
    let ca_arg = ca_file.to_str().expect("utf-8 temp path");
    let (mut master, api, _workers) = fleet(&dir, &nginx.url(), &["--ca-cert", ca_arg], &[&[]]);
    let wanted = KEEPALIVE as usize * USERS as usize * 6;
    let stats = run_until(&api, None, "six reconnects per user", |_| {
        nginx.access_log_now().len() >= wanted
    });
    let (requests, failures) = totals(&stats);
    assert_eq!(failures, 0, "{:?}", stats.errors);
    let tls = nginx.tls_log();
    assert_eq!(requests, tls.len() as u64, "the master's total is nginx's");
    let connections: BTreeSet<u64> = tls.iter().map(|l| l.connection).collect();
    let firsts: Vec<&TlsLine> = tls
        .iter()
        .filter(|l| l.request_on_connection == 1)
        .collect();
    let full = firsts.iter().filter(|l| !l.session_reused).count();
    let resumed = firsts.len() - full;
    println!(
        "{requests} requests over {} connections: {full} full handshakes, {resumed} resumed",
        connections.len()
    );
    assert_eq!(
        firsts.len(),
        connections.len(),
        "each connection's first request is logged"
    );
    assert!(
        connections.len() as u64 <= requests / KEEPALIVE + u64::from(USERS),
        "a handshake per connection, not per request: {} connections for {requests} requests",
        connections.len()
    );
    assert!(
        connections.len() as u64 >= requests / KEEPALIVE,
        "nginx closed each connection after {KEEPALIVE} requests"
    );
    assert!(
        full <= USERS as usize,
        "only each user's first connection makes a full handshake: {full} of {}",
        connections.len()
    );
    assert!(resumed > 0);
    master.signal("INT");
    exit_code(&mut master, Duration::from_secs(30));
}

/// A CA file that is missing, or holds no certificate, stops the master
/// and the worker before anything starts, naming the flag and the file.
#[test]
fn a_bad_ca_file_stops_master_and_worker_before_anything_starts() {
    let dir = TempDir::new("https-bad-ca");
    let missing = dir.path().join("missing-ca.pem");
    let empty = dir.path().join("empty-ca.pem");
    std::fs::write(&empty, "no certificate here\n").expect("write");
    let port = free_port().to_string();
    for (role, file, why) in [
        ("master", &missing, "cannot read it"),
        ("worker", &empty, "holds no certificate"),
    ] {
        let file = file.to_str().expect("utf-8 temp path");
        let mut args = vec![role];
        if role == "master" {
            args.extend([
                "--master-bind-host",
                "127.0.0.1",
                "--master-bind-port",
                &port,
            ]);
        } else {
            args.extend(["--master-port", &port, "--no-spot-watch"]);
        }
        args.extend(["--ca-cert", file]);
        let out = loadtest!().command(&args).output().expect("loadtest runs");
        let stderr = strip_ansi(&String::from_utf8_lossy(&out.stderr));
        assert_eq!(out.status.code(), Some(1), "{role}: {stderr}");
        assert!(
            stderr.contains(&format!("--ca-cert {file}: ")) && stderr.contains(why),
            "{role}: {stderr}"
        );
        for started in ["listening", "connecting to"] {
            assert!(!stderr.contains(started), "{role} started: {stderr}");
        }
    }
}
