//! How `spotload deploy` ships `loadtest`, over real SSH onto namespace
//! hosts (see `harness::netns`): from the operator once, whatever the fleet
//! size, to the master, which serves it to the other hosts; every host ends
//! with the same SHA-256; a re-deploy of the same binary sends nothing; a
//! host whose fetched file arrives damaged is named and the others deploy.
//!
//! spotload runs in the Lan's "operator" namespace, so its link's
//! `tx_bytes` counts what left the operator's machine. Needs root.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use harness::netns::{sh, Lan};
use harness::{https_request, Process, TempDir};

const SPOTLOAD: &str = env!("CARGO_BIN_EXE_spotload");

/// The `loadtest` binary the deploys ship (a debug build, with line tables:
/// stripping it is part of what is tested).
fn loadtest_bin() -> &'static Path {
    harness::loadtest_beside_spotload!()
}

/// A fleet of namespace hosts: webserver, master and `workers` workers,
/// with an inventory file and a state dir for spotload.
struct Fleet {
    lan: Lan,
    work: TempDir,
    inventory: PathBuf,
}

impl Fleet {
    fn new(workers: u8) -> Fleet {
        let work = TempDir::new("deploy-ship");
        let (mut lan, inventory) = Lan::fleet(work.path(), workers, |i, role| match role {
            "webserver" => "sl-web".into(),
            "master" => "sl-master".into(),
            _ => format!("sl-worker{}", i - 1),
        });
        lan.operator();
        Fleet {
            lan,
            work,
            inventory,
        }
    }

    fn state(&self) -> PathBuf {
        self.work.path().join("state")
    }

    /// The stripped binary the last deploy shipped, kept for the operator.
    fn shipped(&self) -> PathBuf {
        self.state().join("ship/release/loadtest")
    }

    /// One deploy from the operator namespace: (succeeded, stderr, bytes
    /// the operator sent).
    fn deploy(&mut self) -> (bool, String, u64) {
        let before = self.lan.operator_tx_bytes();
        let logs = TempDir::new("deploy-ship-run");
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.lan.operator(), SPOTLOAD, "deploy"])
            .arg("--inventory")
            .arg(&self.inventory)
            .arg("--loadtest-bin")
            .arg(loadtest_bin())
            .arg("--state-dir")
            .arg(self.state())
            .args(["--fleet", "ship", "--connect-timeout", "5s"])
            .args(["--join-timeout", "60s", "--no-web-auth"])
            .env("AWS_EC2_METADATA_DISABLED", "true");
        let mut process = Process::spawn("spotload", cmd, logs.path());
        let status = process.wait_exit(Duration::from_secs(300));
        assert!(
            status.is_some(),
            "deploy still running after 300 s\n{}",
            process.logs()
        );
        let stderr = process.stderr();
        println!("--- deploy, stderr\n{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
        let sent = self.lan.operator_tx_bytes() - before;
        (status.is_some_and(|s| s.success()), stderr, sent)
    }

    /// SHA-256 of the `loadtest` installed on host `index`.
    fn installed_digest(&self, index: usize) -> String {
        let bin = self.lan.hosts()[index]
            .opt_dir()
            .join("spotload/bin/loadtest");
        let out = sh(&format!("sha256sum < {}", bin.display()));
        out.split_whitespace()
            .next()
            .unwrap_or_default()
            .to_string()
    }

    /// The worker ids the master lists, over HTTPS trusting the
    /// certificate the last deploy kept.
    fn master_workers(&self) -> Vec<String> {
        let master = self.lan.hosts()[1].address();
        let cert = fs::read(self.state().join("ship/web-ui-cert.pem")).expect("the UI certificate");
        let url = format!("https://{master}:8089/stats/requests");
        let reply = https_request(&cert, "GET", &url, &[], None)
            .unwrap_or_else(|e| panic!("GET {url}: {e}"));
        assert_eq!(reply.status, 200, "{reply:?}");
        let json: serde_json::Value = serde_json::from_str(&reply.body).unwrap_or_default();
        json["workers"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .filter_map(|w| w["id"].as_str().map(str::to_string))
            .collect()
    }
}

fn count(text: &str, word: &str) -> usize {
    text.lines().filter(|line| line.contains(word)).count()
}

#[test]
fn the_binary_leaves_the_operator_once_and_every_host_gets_its_digest() {
    let mut fleet = Fleet::new(3);
    let (ok, stderr, sent) = fleet.deploy();
    assert!(ok, "{stderr}");

    // What the hosts run is stripped; its line tables stay on this machine.
    let sections = |file: &Path| sh(&format!("readelf -S -W {}", file.display()));
    assert!(sections(loadtest_bin()).contains(".debug_line"));
    assert!(!sections(&fleet.shipped()).contains(".debug_line"));
    assert!(!sections(&fleet.shipped()).contains(".debug_info"));
    assert!(!sections(&fleet.shipped()).contains(".symtab"));
    assert!(sections(&fleet.shipped().with_extension("debug")).contains(".debug_line"));
    let digest = sh(&format!("sha256sum < {}", fleet.shipped().display()));
    let digest = digest.split_whitespace().next().unwrap_or_default();
    let compressed = sh(&format!(
        "zstd -q -9 -c {} | wc -c",
        fleet.shipped().display()
    ));
    let compressed: u64 = compressed.trim().parse().unwrap();

    // One upload (to the master), three fetches from it.
    assert_eq!(count(&stderr, "upload loadtest ("), 1, "{stderr}");
    assert_eq!(
        count(&stderr, "  fetch loadtest from the master ("),
        3,
        "{stderr}"
    );
    // Once through the operator's link: the compressed binary and SSH's
    // own traffic, far from a second copy.
    assert!(sent >= compressed, "sent {sent}, compressed {compressed}");
    assert!(
        sent < compressed + compressed / 2,
        "sent {sent} bytes: more than one compressed binary ({compressed})"
    );
    for host in 1..5 {
        assert_eq!(fleet.installed_digest(host), digest, "host {host}");
    }
    assert_eq!(fleet.master_workers().len(), 3);
    let server = fleet.lan.hosts()[1].processes("serve-file");
    assert!(
        server.is_empty(),
        "the file server outlived the deploy: {server:?}"
    );

    // The same binary again: nothing crosses the link but SSH's chatter.
    let (ok, stderr, sent) = fleet.deploy();
    assert!(ok, "{stderr}");
    assert_eq!(count(&stderr, "is installed already: nothing to send"), 4);
    assert_eq!(count(&stderr, "upload loadtest ("), 0, "{stderr}");
    assert_eq!(
        count(&stderr, "fetch loadtest from the master ("),
        0,
        "{stderr}"
    );
    assert!(sent < compressed / 10, "a re-deploy sent {sent} bytes");
    for host in 1..5 {
        assert_eq!(fleet.installed_digest(host), digest, "host {host}");
    }
    assert_eq!(fleet.master_workers().len(), 3);

    // A worker without the binary (a replaced instance): the master, which
    // has it, serves it; the operator still sends nothing.
    let lost = fleet.lan.hosts()[4].opt_dir().join("spotload/bin/loadtest");
    fs::remove_file(lost).unwrap();
    let (ok, stderr, sent) = fleet.deploy();
    assert!(ok, "{stderr}");
    assert_eq!(count(&stderr, "is installed already: nothing to send"), 3);
    assert_eq!(count(&stderr, "stage loadtest for the other hosts"), 1);
    assert_eq!(count(&stderr, "  fetch loadtest from the master ("), 1);
    assert_eq!(count(&stderr, "upload loadtest ("), 0, "{stderr}");
    assert!(sent < compressed / 10, "the operator sent {sent} bytes");
    assert_eq!(fleet.installed_digest(4), digest);
    assert_eq!(fleet.master_workers().len(), 3);
}

/// A `curl` that fetches, then overwrites a few bytes of what it fetched.
const DAMAGING_CURL: &str = r#"#!/bin/sh
/usr/bin/curl "$@" || exit $?
out=""; prev=""
for arg in "$@"; do [ "$prev" = "-o" ] && out="$arg"; prev="$arg"; done
[ -n "$out" ] && printf 'damaged in transit' | dd of="$out" bs=1 seek=4096 conv=notrunc 2>/dev/null
exit 0"#;

#[test]
fn a_host_whose_fetch_arrives_damaged_is_named_and_the_others_deploy() {
    let mut fleet = Fleet::new(2);
    let damaged = fleet.lan.hosts()[3].address();
    fleet.lan.hosts()[3].shadow_command("curl", DAMAGING_CURL);
    let (ok, stderr, _) = fleet.deploy();
    assert!(!ok, "{stderr}");
    assert!(
        stderr.contains(&format!(
            "worker {damaged}: step \"fetch loadtest from the master ("
        )),
        "{stderr}"
    );
    assert!(stderr.contains("damaged on the way"), "{stderr}");
    assert!(stderr.contains("deploy again"), "{stderr}");
    assert!(stderr.contains("deploy failed on 1 of 4 hosts"), "{stderr}");
    // The other worker has the binary and joined; the damaged one runs nothing.
    let digest = fleet.installed_digest(1);
    assert_eq!(fleet.installed_digest(2), digest);
    let workers = fleet.master_workers();
    assert_eq!(workers.len(), 1, "{workers:?}");
    assert!(workers[0].starts_with("sl-worker1_"), "{workers:?}");
    assert!(fleet.lan.hosts()[3].processes("bin/loadtest").is_empty());
    let bin = fleet.lan.hosts()[3].opt_dir().join("spotload/bin");
    assert!(!bin.join("loadtest.new").exists() && !bin.join("loadtest").exists());
}
