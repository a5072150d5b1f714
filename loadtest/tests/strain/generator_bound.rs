//! A load generator that runs out of CPU before the target does: the ramp
//! must say so (generator-bound, exit 3) rather than report a threshold
//! that is the generator's. The worker gets one core to itself, so this
//! test takes its turn with the other straining tests: a neighbour on that
//! core would take the CPU the worker is meant to exhaust.

use std::process::Command;
use std::time::Duration;

use harness::*;

/// One worker pinned to one core (taskset) against a fast target runs out of
/// CPU long before nginx does: the ramp ends generator-bound (exit 3), not
/// with a target threshold.
#[test]
fn a_worker_pinned_to_one_core_ends_the_ramp_generator_bound() {
    let _turn = crate::take_turn();
    let mut nginx = Nginx::start(NginxOptions::default());
    let dir = TempDir::new("ramp-generator-bound");
    let report_dir = dir.path().join("report");
    let (mut master, port) = loadtest!().master(
        &dir,
        &[
            "--headless",
            "--ramp",
            "4:20:84",
            "--step-time",
            "3s",
            "-r",
            "100",
            "--host",
            &nginx.url(),
            "--expect-workers-max-wait",
            "30",
            "--report-dir",
            report_dir.to_str().expect("utf-8 temp path"),
        ],
    );
    // The worker gets core 0 to itself: nginx and the master run on core 1.
    pin_to_core_1(nginx.process().pid());
    pin_to_core_1(master.pid());
    let worker = loadtest!().worker_command(port, &[]);
    let mut pinned = Command::new("taskset");
    pinned
        .args(["-c", "0"])
        .arg(worker.get_program())
        .args(worker.get_args());
    for (key, value) in worker.get_envs() {
        match value {
            Some(value) => pinned.env(key, value),
            None => pinned.env_remove(key),
        };
    }
    let _worker = spawn_worker(&dir, pinned);
    let code = exit_code(&mut master, Duration::from_secs(120));
    let text = std::fs::read_to_string(report_dir.join("ramp.json")).unwrap_or_default();
    let report: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    assert_eq!(code, 3, "generator-bound exits 3\n{}", master.logs());
    assert!(report["threshold_users"].is_null(), "{report:#}");
    assert_eq!(report["criterion"], "generator_cpu", "{report:#}");
    let bound = report["generator_bound_users"].as_u64().unwrap_or(0);
    assert!(bound >= 4, "{report:#}");
    let last = report["steps"]
        .as_array()
        .and_then(|steps| steps.last())
        .cloned()
        .unwrap_or_default();
    assert!(last["worker_cpu"].as_f64() >= Some(0.9), "{last}");
    assert!(
        master
            .stdout()
            .contains(&format!("generator-bound at {bound} users")),
        "{}",
        master.stdout()
    );
}

/// Moves a process, its threads and its children to CPU core 1.
fn pin_to_core_1(pid: u32) {
    let children = Command::new("pgrep")
        .args(["-P", &pid.to_string()])
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).into_owned())
        .unwrap_or_default();
    let pids =
        std::iter::once(pid.to_string()).chain(children.split_whitespace().map(String::from));
    for pid in pids {
        let status = Command::new("taskset")
            .args(["-a", "-p", "-c", "1", &pid])
            .output()
            .map(|out| out.status.success());
        assert_eq!(status.ok(), Some(true), "taskset -a -p -c 1 {pid}");
    }
}
