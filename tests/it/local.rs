//! `spotload local` as a user runs it: the whole fleet on this machine, the
//! UI answering with its workers, load reaching the target, the run's
//! join secret private and gone with it, and Ctrl-C leaving no process
//! behind.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::Duration;

use harness::{free_port, wait_until, Api, Process, TempDir};

const SPOTLOAD: &str = env!("CARGO_BIN_EXE_spotload");

/// Every live process as (pid, parent pid).
fn process_table() -> Vec<(u32, u32)> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            // "pid (comm) state ppid ...": comm may hold spaces, so split after ')'.
            let ppid = stat
                .rsplit_once(')')?
                .1
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()?;
            Some((pid, ppid))
        })
        .collect()
}

/// `root` and all its descendants.
fn descendants(root: u32) -> Vec<u32> {
    let table = process_table();
    let mut found = vec![root];
    let mut i = 0;
    while i < found.len() {
        let parent = found[i];
        found.extend(
            table
                .iter()
                .filter(|(_, ppid)| *ppid == parent)
                .map(|(pid, _)| *pid),
        );
        i += 1;
    }
    found
}

fn alive(pid: u32) -> bool {
    // A zombie has exited; only its entry is left for the parent to reap.
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        !s.rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
    })
}

#[test]
fn local_fleet_runs_and_ctrl_c_leaves_no_orphans() {
    let loadtest = std::path::Path::new(SPOTLOAD).with_file_name("loadtest");
    assert!(
        loadtest.is_file(),
        "build the workspace first (scripts/test does): {} missing",
        loadtest.display()
    );
    let dir = TempDir::new("local-fleet");
    let (web_port, master_port) = (free_port(), free_port());
    let mut cmd = Command::new(SPOTLOAD);
    cmd.args([
        "local",
        "--workers",
        "2",
        "--web-port",
        &web_port.to_string(),
        "--master-port",
        &master_port.to_string(),
    ]);
    // Its own process group, as a shell gives a foreground job: Ctrl-C in
    // a terminal signals the whole group.
    cmd.process_group(0);
    let mut local = Process::spawn("spotload-local", cmd, dir.path());
    let web = format!("http://127.0.0.1:{web_port}");
    local
        .wait_for_port(harness::loopback(web_port), Duration::from_secs(30))
        .expect("the UI answers");
    let api = Api::new(&web);
    wait_until(Duration::from_secs(30), "two workers", || {
        (api.requests().worker_count == 2).then_some(())
    });
    let printed = local.stdout();
    assert!(
        printed.contains(&format!("web UI:  http://127.0.0.1:{web_port}")),
        "addresses printed:\n{printed}"
    );
    assert!(printed.contains("target:  http://127.0.0.1:"), "{printed}");

    api.swarm(4, 4.0);
    wait_until(Duration::from_secs(20), "requests", || {
        (api.total_requests() > 500).then_some(())
    });
    // The run's join secret: a private file every loadtest process is
    // given by path, and the master admits only workers presenting it.
    let secret_dir = std::env::temp_dir().join(format!("spotload-run-{}-0", local.pid()));
    let secret_file = secret_dir.join("join-secret");
    let mode = |path: &std::path::Path| {
        std::fs::metadata(path)
            .map(|m| m.permissions().mode() & 0o777)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    };
    assert_eq!(mode(&secret_dir), 0o700);
    assert_eq!(mode(&secret_file), 0o600);
    let secret = std::fs::read_to_string(&secret_file).unwrap_or_default();
    let given = format!("--join-secret-file {}", secret_file.display());
    let loadtests: Vec<String> = descendants(local.pid())
        .iter()
        .filter_map(|pid| std::fs::read(format!("/proc/{pid}/cmdline")).ok())
        .map(|raw| String::from_utf8_lossy(&raw).replace('\0', " "))
        .filter(|line| line.contains("loadtest"))
        .collect();
    assert_eq!(
        loadtests.len(),
        3,
        "a master and two workers: {loadtests:?}"
    );
    for line in &loadtests {
        assert!(line.contains(&given), "{line}");
        assert!(!line.contains(secret.trim()), "the secret is in no argv");
    }
    assert!(
        local
            .stderr()
            .contains("workers must present the join secret (ZMTP PLAIN)"),
        "{}",
        local.stderr()
    );

    // The master, two workers and nginx (with its own workers), all below spotload.
    let family = descendants(local.pid());
    assert!(family.len() >= 5, "spotload's processes: {family:?}");
    // Ctrl-C as a terminal sends it: to spotload's whole process group.
    let sent = Command::new("kill")
        .args(["-INT", "--", &format!("-{}", local.pid())])
        .status()
        .expect("kill runs");
    assert!(sent.success(), "SIGINT sent to the group");
    let status = local
        .wait_exit(Duration::from_secs(30))
        .expect("spotload local exits after Ctrl-C");
    assert!(
        status.success() || status.code() == Some(130),
        "exit status {status:?}\n{}",
        local.logs()
    );
    wait_until(
        Duration::from_secs(10),
        "every process spotload started to be gone",
        || (!family.iter().any(|pid| alive(*pid))).then_some(()),
    );
    assert!(!secret_dir.exists(), "the run's secret is removed with it");
    assert!(
        local.stdout().contains("Aggregated"),
        "the master's summary is printed on Ctrl-C:\n{}",
        local.stdout()
    );
    // One Ctrl-C is one signal for each process: the master prints its
    // summary, and the workers it told to quit go on their own.
    assert!(
        !local.stderr().contains("a second signal"),
        "no process was signalled twice:\n{}",
        local.stderr()
    );
}

/// A headless run ends by itself: the master's summary, exit 0, and the
/// workers it told to quit leave on their own (no second signal, no
/// warning or error on the way out).
#[test]
fn a_headless_local_run_ends_quietly() {
    let loadtest = std::path::Path::new(SPOTLOAD).with_file_name("loadtest");
    let dir = TempDir::new("local-headless");
    let mut cmd = Command::new(SPOTLOAD);
    cmd.args(["local", "--workers", "2", "--master-port"])
        .arg(free_port().to_string())
        .arg("--loadtest-bin")
        .arg(&loadtest)
        .args(["--headless", "-u", "4", "-r", "4", "-t", "2s"]);
    let mut local = Process::spawn("spotload-local", cmd, dir.path());
    let status = local
        .wait_exit(Duration::from_secs(60))
        .expect("a headless local run ends by itself");
    assert!(status.success(), "exit status {status:?}\n{}", local.logs());
    assert!(
        local.stdout().contains("Aggregated"),
        "the master's summary is printed:\n{}",
        local.stdout()
    );
    let stderr = local.stderr();
    for noise in ["a second signal", "WARN", "ERROR"] {
        assert!(
            !stderr.contains(noise),
            "a normal end logs no {noise:?}:\n{stderr}"
        );
    }
}

/// `spotload local --wait` reaches every worker: two users waiting 0.1 to
/// 0.2 s between requests make about 13 requests a second against nginx
/// (without a wait, thousands), and the master's count is nginx's.
#[test]
fn the_workers_options_reach_every_worker() {
    let loadtest = std::path::Path::new(SPOTLOAD).with_file_name("loadtest");
    let nginx = harness::Nginx::start(harness::NginxOptions::default());
    let dir = TempDir::new("local-wait");
    let run = |wait: Option<&str>| {
        nginx.clear_access_log();
        let mut cmd = Command::new(SPOTLOAD);
        cmd.args(["local", "--workers", "2", "--master-port"])
            .arg(free_port().to_string())
            .args(["--web-port", &free_port().to_string()])
            .arg("--loadtest-bin")
            .arg(&loadtest)
            .args(["--target", &nginx.url()])
            .args(["--headless", "-u", "2", "-r", "2", "-t", "4s"]);
        if let Some(wait) = wait {
            cmd.args(["--wait", wait]);
        }
        let mut local = Process::spawn("spotload-local", cmd, dir.path());
        let status = local
            .wait_exit(Duration::from_secs(60))
            .expect("a headless local run ends by itself");
        assert!(status.success(), "exit status {status:?}\n{}", local.logs());
        nginx.wait_log_quiet();
        nginx.count_requests()
    };
    let paced = run(Some("0.1:0.2"));
    let unpaced = run(None);
    println!("4 s of 2 users: {paced} requests with --wait 0.1:0.2, {unpaced} without");
    // About 2 users × 4 s / 0.15 s ≈ 53, give or take the spawn and the
    // time each request takes.
    assert!((20..=110).contains(&paced), "{paced} requests with --wait");
    assert!(unpaced > 10 * paced, "{unpaced} without --wait");
}

/// An option of the workers given after `--` (for the master) is refused
/// before anything starts, saying where it goes.
#[test]
fn a_workers_option_after_the_double_dash_is_refused_with_its_place() {
    let output = Command::new(SPOTLOAD)
        .args(["local", "--", "--wait", "0.5:1"])
        .output()
        .expect("spotload runs");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--wait is an option of the workers")
            && stderr.contains("give it to spotload itself"),
        "{stderr}"
    );
}

/// An HTTPS target from an internal CA: `spotload local --ca-cert` hands
/// the CA to its master, which sends it to both workers with every spawn;
/// every request succeeds and the master's count is nginx's, exactly.
#[test]
fn an_https_target_is_trusted_through_spotload_local_and_counted_exactly() {
    let loadtest = std::path::Path::new(SPOTLOAD).with_file_name("loadtest");
    let dir = TempDir::new("local-https");
    let ca = harness::TestCa::new("internal CA");
    let ca_file = ca.write_cert(dir.path());
    let nginx = harness::Nginx::start(harness::NginxOptions {
        tls: Some(harness::NginxTls {
            leaf: ca.issue_leaf(),
            http2: false,
        }),
        ..harness::NginxOptions::default()
    });
    let (web_port, master_port) = (free_port(), free_port());
    let mut cmd = Command::new(SPOTLOAD);
    cmd.args(["local", "--workers", "2", "--web-port"])
        .arg(web_port.to_string())
        .arg("--master-port")
        .arg(master_port.to_string())
        .arg("--loadtest-bin")
        .arg(&loadtest)
        .args([
            "--target",
            &nginx.url(),
            "--wait",
            "0.002:0.005",
            "--ca-cert",
        ])
        .arg(&ca_file);
    let mut local = Process::spawn("spotload-local", cmd, dir.path());
    let web = format!("http://127.0.0.1:{web_port}");
    local
        .wait_for_port(harness::loopback(web_port), Duration::from_secs(30))
        .expect("the UI answers");
    let api = Api::new(&web);
    wait_until(Duration::from_secs(30), "two workers", || {
        (api.requests().worker_count == 2).then_some(())
    });
    api.swarm(4, 4.0);
    wait_until(
        Duration::from_secs(60),
        "1,000 requests in nginx's log",
        || (nginx.access_log_now().len() >= 1_000).then_some(()),
    );
    api.stop();
    let counted = harness::settled_requests(&web, Duration::from_secs(30));
    let failures = harness::aggregated(&api.requests()).map_or(0, |r| r.num_failures);
    let logged = nginx.count_requests() as u64;
    println!("spotload local over HTTPS: master {counted}, nginx {logged}, {failures} failures");
    assert_eq!(failures, 0, "{:?}\n{}", api.requests().errors, local.logs());
    assert_eq!(counted, logged, "the master's total is nginx's log");
    local.signal("INT");
    local
        .wait_exit(Duration::from_secs(30))
        .expect("spotload local exits after Ctrl-C");
}

/// A CA file that is missing stops `spotload local` before anything
/// starts (exit 2), naming the flag and the file.
#[test]
fn a_missing_ca_file_stops_spotload_local_before_anything_starts() {
    let output = Command::new(SPOTLOAD)
        .args(["local", "--ca-cert", "/nonexistent/internal-ca.pem"])
        .output()
        .expect("spotload runs");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--ca-cert /nonexistent/internal-ca.pem: cannot read it"),
        "{stderr}"
    );
    assert!(
        String::from_utf8_lossy(&output.stdout).is_empty(),
        "nothing started, no address printed"
    );
}
