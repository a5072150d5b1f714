//! `spotload deploy` and `spotload ramp` end to end, over real SSH.
//!
//! Every test host is a real OpenSSH sshd in a network namespace of its own
//! (see `support/netns.rs`): own address on a test bridge (10.231.K.x), own
//! hostname, host key and `/opt`. Inside a namespace there is no systemd,
//! so the detached-process path of the recipes runs; Debian's nginx is
//! installed on this machine, so the webserver recipe finds it installed
//! and runs it from its per-host config under /opt/spotload.
//!
//! Traffic stays on loopback and the test's own bridge: the moto test runs
//! spotload inside an "operator" namespace whose only route is that bridge.
//! Needs root (namespaces, sshd), like CI.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use harness::netns::{sh, Lan};
use harness::{http_get, https_request, try_http, Moto, Process, TempDir};
use spotload::web_cert::WebCert;

const SPOTLOAD: &str = env!("CARGO_BIN_EXE_spotload");

/// The `loadtest` binary the deploys ship: next to `spotload` when the
/// workspace was built, else built now (`cargo build -p loadtest`, which
/// honours CARGO_TARGET_DIR like the test build did).
fn loadtest_bin() -> &'static Path {
    harness::loadtest_beside_spotload!()
}

/// Client keys: an RSA PKCS#1 PEM key (what EC2 hands out) and an ed25519
/// OpenSSH key; every test host accepts both for root.
struct Keys {
    dir: TempDir,
}

impl Keys {
    fn new() -> Keys {
        let dir = TempDir::new("keys");
        let d = dir.path().display();
        sh(&format!(
            "ssh-keygen -q -t rsa -b 2048 -m PEM -N '' -f {d}/id_rsa"
        ));
        sh(&format!("ssh-keygen -q -t ed25519 -N '' -f {d}/id_ed25519"));
        let rsa = fs::read_to_string(dir.path().join("id_rsa")).unwrap_or_default();
        assert!(
            rsa.starts_with("-----BEGIN RSA PRIVATE KEY-----"),
            "not PKCS#1: {rsa:.40}"
        );
        Keys { dir }
    }

    fn rsa(&self) -> PathBuf {
        self.dir.path().join("id_rsa")
    }

    fn ed25519(&self) -> PathBuf {
        self.dir.path().join("id_ed25519")
    }

    fn authorized(&self) -> String {
        let pubs = ["id_rsa.pub", "id_ed25519.pub"]
            .map(|f| fs::read_to_string(self.dir.path().join(f)).unwrap_or_default());
        pubs.concat()
    }
}

/// One finished run of the binary.
struct Run {
    args: Vec<String>,
    success: bool,
    stdout: String,
    stderr: String,
    elapsed: Duration,
}

impl Run {
    fn ok(self) -> Run {
        assert!(
            self.success,
            "spotload {:?} failed\n--- stdout\n{}\n--- stderr\n{}",
            self.args, self.stdout, self.stderr
        );
        self
    }

    fn failed(self) -> Run {
        assert!(
            !self.success,
            "spotload {:?} succeeded\n--- stdout\n{}\n--- stderr\n{}",
            self.args, self.stdout, self.stderr
        );
        assert!(!self.stderr.contains("panicked"), "{}", self.stderr);
        self
    }
}

/// Runs spotload (in network namespace `ns` if given) to completion.
fn spotload(ns: Option<&str>, args: &[String], limit: Duration, env: &[(&str, &str)]) -> Run {
    let logs = TempDir::new("spotload-run");
    let mut cmd = match ns {
        Some(ns) => {
            let mut cmd = Command::new("ip");
            cmd.args(["netns", "exec", ns, SPOTLOAD]);
            cmd
        }
        None => Command::new(SPOTLOAD),
    };
    cmd.args(args).env("AWS_EC2_METADATA_DISABLED", "true");
    cmd.envs(env.iter().copied());
    let start = Instant::now();
    let mut process = Process::spawn("spotload", cmd, logs.path());
    let status = process.wait_exit(limit);
    let run = Run {
        args: args.to_vec(),
        success: status.is_some_and(|s| s.success()),
        stdout: process.stdout(),
        stderr: process.stderr(),
        elapsed: start.elapsed(),
    };
    assert!(
        status.is_some(),
        "spotload {args:?} still running after {limit:?}\n{}",
        process.logs()
    );
    run
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(std::string::ToString::to_string).collect()
}

/// The worker ids the master at `master` lists, read over HTTPS trusting
/// `cert` (PEM) alone.
fn workers_of(master: &str, cert: &[u8]) -> Vec<String> {
    let url = format!("{master}/stats/requests");
    let reply = https_request(cert, "GET", &url, &[], None)
        .unwrap_or_else(|e| panic!("GET {url} with the deploy's certificate: {e}"));
    assert_eq!(reply.status, 200, "{reply:?}");
    let json: serde_json::Value = serde_json::from_str(&reply.body).unwrap_or_default();
    let workers = json["workers"].as_array().cloned().unwrap_or_default();
    workers
        .iter()
        .filter_map(|w| w["id"].as_str().map(str::to_string))
        .collect()
}

/// The join secret the deploy left on `hosts`: the same on each, in
/// `/opt/spotload/join-secret`, owned by root and readable by root only.
fn join_secret_on(hosts: &[harness::netns::NetHost]) -> String {
    use std::os::unix::fs::MetadataExt;
    let mut seen = Vec::new();
    for host in hosts {
        let path = host.opt_dir().join("spotload/join-secret");
        let meta = fs::metadata(&path)
            .unwrap_or_else(|e| panic!("{} on {}: {e}", path.display(), host.hostname()));
        assert_eq!(meta.mode() & 0o777, 0o600, "{}", host.hostname());
        assert_eq!(meta.uid(), 0, "{}", host.hostname());
        let text = fs::read_to_string(&path).unwrap_or_default();
        let secret = text.trim_end().to_string();
        assert!(
            secret.len() == 32 && secret.bytes().all(|b| b.is_ascii_hexdigit()),
            "32 hex digits, one line: {text:?}"
        );
        seen.push(secret);
    }
    seen.dedup();
    assert_eq!(seen.len(), 1, "one secret for the whole fleet");
    seen.remove(0)
}

/// A process's command line, its arguments separated by spaces.
fn cmdline(pid: u32) -> String {
    fs::read(format!("/proc/{pid}/cmdline"))
        .map(|raw| String::from_utf8_lossy(&raw).replace('\0', " "))
        .unwrap_or_default()
}

/// The master's UI answers over HTTPS to a client trusting `cert` (the one
/// the deploy kept), refuses a client trusting another certificate and
/// plain HTTP; the deploy printed the certificate's fingerprint, and its
/// key is root-only on the master (host `master` of `lan`) and in no
/// output or command line.
fn ui_is_https_only(deploy: &Run, master: &str, cert: &[u8], lan: &Lan, master_host: usize) {
    // With the login the deploy printed, if it made one.
    let login = deploy.stdout.lines().find_map(|l| {
        let rest = l.strip_prefix("web UI login: user ")?;
        let (user, pass) = rest.split_once(", password ")?;
        Some(format!("{user}:{pass}@"))
    });
    let with_login = master.replacen(
        "https://",
        &format!("https://{}", login.unwrap_or_default()),
        1,
    );
    let stats = format!("{with_login}/stats/requests");
    let reply = https_request(cert, "GET", &stats, &[], None)
        .unwrap_or_else(|e| panic!("GET {stats} trusting the kept certificate: {e}"));
    assert_eq!(reply.status, 200, "{reply:?}");
    let host_ip = master
        .trim_start_matches("https://")
        .rsplit_once(':')
        .map_or("", |(ip, _)| ip);
    let other = WebCert::generate(&[host_ip.to_string()]).expect("another certificate");
    let refused = https_request(other.cert_pem.as_bytes(), "GET", &stats, &[], None);
    assert!(
        refused.is_err(),
        "a client trusting another certificate: {refused:?}"
    );
    let plain = stats.replacen("https://", "http://", 1);
    let (status, body) = try_http("GET", &plain, None).expect("plain HTTP is answered");
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("use https://"), "{body}");

    let fingerprint = deploy
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("web UI certificate: self-signed, SHA-256 "))
        .unwrap_or_else(|| panic!("no fingerprint printed\n{}", deploy.stdout));
    assert_eq!(fingerprint.len(), 95, "{fingerprint}");
    for output in [&deploy.stdout, &deploy.stderr] {
        assert!(
            !output.contains("PRIVATE KEY"),
            "the key was printed:\n{output}"
        );
    }
    let host = &lan.hosts()[master_host];
    let key = host.opt_dir().join("spotload/tls/web-ui-key.pem");
    let mode = fs::metadata(&key)
        .unwrap_or_else(|e| panic!("{}: {e}", key.display()))
        .permissions();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
        0o600,
        "the key is root-only"
    );
    let pids = host.processes("--tls-key /opt/spotload/tls/web-ui-key.pem");
    assert_eq!(pids.len(), 1, "the master serves the installed key");
}

#[test]
fn inventory_deploy_twice_then_ramp_through_the_master() {
    let keys = Keys::new();
    let mut lan = Lan::new();
    let names = ["sl-web", "sl-master", "sl-worker1", "sl-worker2"];
    for (i, name) in names.iter().enumerate() {
        let address = lan.address(11 + i as u8);
        lan.add_host(name, address, &keys.authorized());
    }
    let work = TempDir::new("deploy-inventory");
    let inventory = work.path().join("hosts.txt");
    let a = |n: u8| lan.address(n).to_string();
    fs::write(
        &inventory,
        format!(
            "# test fleet: ADDRESS USER KEY ROLE\n{} root {} webserver\n{} root {} master\n{} root {} worker\n{} root {} worker\n",
            a(11), keys.rsa().display(),
            a(12), keys.ed25519().display(),
            a(13), keys.ed25519().display(),
            a(14), keys.rsa().display(),
        ),
    )
    .unwrap();
    let state = work.path().join("state");
    let args = strings(&[
        "deploy",
        "--inventory",
        &inventory.display().to_string(),
        "--loadtest-bin",
        &loadtest_bin().display().to_string(),
        "--state-dir",
        &state.display().to_string(),
        "--fleet",
        "inv",
        "--connect-timeout",
        "5s",
        "--join-timeout",
        "60s",
        // The test reads the UI without a password (deploy generates one
        // unless told otherwise).
        "--no-web-auth",
    ]);
    let first = spotload(None, &args, Duration::from_secs(300), &[]).ok();
    // Shown with --nocapture: what a person sees.
    println!(
        "--- first deploy, stderr\n{}--- stdout\n{}",
        first.stderr, first.stdout
    );
    let master = format!("https://{}:8089", a(12));
    assert!(
        first.stdout.contains(&format!("master web UI: {master}")),
        "{}",
        first.stdout
    );
    let cert_file = state.join("inv/web-ui-cert.pem");
    let cert = fs::read(&cert_file).expect("the deploy kept the UI certificate");
    ui_is_https_only(&first, &master, &cert, &lan, 1);
    assert!(
        first.stderr.contains("nginx already installed"),
        "{}",
        first.stderr
    );
    assert!(first.stderr.contains("no systemd"), "{}", first.stderr);
    let known = fs::read_to_string(state.join("inv/known_hosts")).unwrap();
    assert_eq!(known.lines().count(), 4, "{known}");

    let mut workers = workers_of(&master, &cert);
    workers.sort();
    assert_eq!(workers.len(), 2, "{workers:?}");
    assert!(
        workers[0].starts_with("sl-worker1_") && workers[1].starts_with("sl-worker2_"),
        "{workers:?}"
    );
    let (status, page) = http_get(&format!("http://{}/", a(11)));
    assert_eq!(status, 200);
    assert!(page.contains("spotload target"), "{page}");

    let hosts = lan.hosts();
    let count = |i: usize, word: &str| hosts[i].processes(word).len();
    let master_pid = hosts[1].processes("bin/loadtest master");
    assert_eq!(master_pid.len(), 1);
    // The workers above joined with the deploy's join secret: a root-only
    // file on the master and worker hosts, named on their command lines,
    // the secret itself in no command line and no output.
    let secret = join_secret_on(&hosts[1..]);
    assert!(
        !hosts[0].opt_dir().join("spotload/join-secret").exists(),
        "the webserver has no use for it"
    );
    for (i, word) in [(1, "bin/loadtest master"), (2, "bin/loadtest worker")] {
        let line = cmdline(hosts[i].processes(word)[0]);
        assert!(
            line.contains("--join-secret-file /opt/spotload/join-secret"),
            "{line}"
        );
        assert!(!line.contains(&secret), "{line}");
    }
    assert!(!first.stderr.contains(&secret) && !first.stdout.contains(&secret));
    let worker_pid = hosts[2].processes("bin/loadtest worker");

    // Again: binaries replaced, everything restarted, nothing doubled;
    // this time the users trust an internal CA (for an HTTPS target).
    let ca = harness::TestCa::new("internal CA");
    let ca_file = ca.write_cert(work.path());
    let mut with_ca = args.clone();
    with_ca.extend(strings(&["--ca-cert", &ca_file.display().to_string()]));
    let second = spotload(None, &with_ca, Duration::from_secs(300), &[]).ok();
    assert!(second.stderr.contains("stopped pid"), "{}", second.stderr);
    assert_eq!(count(0, "nginx: master process"), 1);
    assert_eq!(count(1, "bin/loadtest master"), 1);
    assert_eq!(count(1, "bin/loadtest worker"), 0);
    for worker in [2, 3] {
        assert_eq!(count(worker, "bin/loadtest worker"), 1, "host {worker}");
        assert_eq!(count(worker, "bin/loadtest master"), 0, "host {worker}");
    }
    assert_ne!(hosts[1].processes("bin/loadtest master"), master_pid);
    assert_ne!(hosts[2].processes("bin/loadtest worker"), worker_pid);
    // A new certificate each deploy: the kept one is the master's.
    let second_cert = fs::read(&cert_file).expect("the UI certificate");
    assert_ne!(second_cert, cert, "a new certificate");
    ui_is_https_only(&second, &master, &second_cert, &lan, 1);
    assert_eq!(workers_of(&master, &second_cert).len(), 2);
    assert_ne!(join_secret_on(&hosts[1..]), secret, "one secret per deploy");

    // A headless ramp through the master's API; nginx's log shows the load.
    let access_log = hosts[0].opt_dir().join("spotload/nginx/access.log");
    let before = fs::read_to_string(&access_log)
        .unwrap_or_default()
        .lines()
        .count();
    let reports = work.path().join("ramp");
    let ramp = spotload(
        None,
        &strings(&[
            "ramp",
            "--master",
            &master,
            // Where the deploy kept the certificate the ramp trusts.
            "--state-dir",
            &state.display().to_string(),
            "--fleet",
            "inv",
            "--ramp",
            "2:2:4",
            "--step-time",
            "3s",
            "--expect-workers",
            "2",
            "--report-dir",
            &reports.display().to_string(),
        ]),
        Duration::from_secs(180),
        &[],
    )
    .ok();
    println!("--- ramp, stdout\n{}", ramp.stdout);
    assert!(
        ramp.stdout.contains(&format!(
            "trusting only the master's certificate in {}",
            cert_file.display()
        )),
        "{}",
        ramp.stdout
    );
    let json: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(reports.join("ramp.json")).unwrap()).unwrap();
    let steps = json["steps"].as_array().cloned().unwrap_or_default();
    assert!(!steps.is_empty(), "{json}\n{}", ramp.stdout);
    let measured: u64 = steps.iter().filter_map(|s| s["requests"].as_u64()).sum();
    let served = fs::read_to_string(&access_log)
        .unwrap_or_default()
        .lines()
        .count()
        - before;
    assert!(measured > 0, "{json}");
    assert!(
        served as u64 >= measured,
        "nginx logged {served} requests, the ramp measured {measured}"
    );
    assert!(json["threshold_users"].is_null(), "{json}");

    // The CA went to the master's host only; the master sent it to both
    // workers with the ramp's spawns.
    let installed = hosts[1].opt_dir().join("spotload/tls/target-ca.pem");
    let squeeze = |pem: &str| pem.split_whitespace().collect::<String>();
    assert_eq!(
        squeeze(&fs::read_to_string(&installed).unwrap_or_default()),
        squeeze(ca.cert_pem()),
        "{}",
        installed.display()
    );
    let master_line = cmdline(hosts[1].processes("bin/loadtest master")[0]);
    assert!(
        master_line.contains("--ca-cert /opt/spotload/tls/target-ca.pem"),
        "{master_line}"
    );
    for worker in [2, 3] {
        assert!(!hosts[worker]
            .opt_dir()
            .join("spotload/tls/target-ca.pem")
            .exists());
        let line = cmdline(hosts[worker].processes("bin/loadtest worker")[0]);
        assert!(!line.contains("--ca-cert"), "{line}");
        let log = fs::read_to_string(hosts[worker].opt_dir().join("spotload/log/worker.log"))
            .unwrap_or_default();
        assert!(
            log.contains(
                "users' HTTPS now trusts the system's root certificates and 1 CA certificate"
            ),
            "worker {worker} got the CA with a spawn:\n{log}"
        );
    }
}

#[test]
fn changed_host_keys_are_refused_and_unreachable_hosts_named() {
    let keys = Keys::new();
    let mut lan = Lan::new();
    let solo = lan.address(11);
    lan.add_host("sl-solo", solo, &keys.authorized());
    let nobody = lan.address(99);
    let work = TempDir::new("deploy-refusals");
    let fake = work.path().join("loadtest");
    fs::write(&fake, "#!/bin/sh\necho not a real loadtest\n").unwrap();
    let key = keys.ed25519().display().to_string();
    let inventory = work.path().join("hosts.txt");
    fs::write(
        &inventory,
        format!(
            "{solo} root {key} webserver\n{solo} root {key} master\n{nobody} root {key} worker\n"
        ),
    )
    .unwrap();
    let known = work.path().join("known_hosts");
    let args = |inventory: &Path| {
        strings(&[
            "deploy",
            "--inventory",
            &inventory.display().to_string(),
            "--loadtest-bin",
            &fake.display().to_string(),
            "--known-hosts",
            &known.display().to_string(),
            "--connect-timeout",
            "2s",
            "--ssh-wait",
            "4s",
        ])
    };
    let run = spotload(None, &args(&inventory), Duration::from_secs(60), &[]).failed();
    println!("--- unreachable host, stderr\n{}", run.stderr);
    assert!(
        run.elapsed < Duration::from_secs(20),
        "took {:?}",
        run.elapsed
    );
    assert!(
        run.stderr.contains(&format!(
            "worker {nobody}: step \"connect\" failed: {nobody}: no SSH connection within"
        )),
        "{}",
        run.stderr
    );
    // The reachable host was reached (key learned) and refused the binary.
    assert!(run.stderr.contains("check architecture"), "{}", run.stderr);
    assert!(fs::read_to_string(&known)
        .unwrap()
        .starts_with(&format!("{solo} ssh-ed25519 ")));

    lan.host_mut(0).change_host_key();
    fs::write(
        &inventory,
        format!(
            "{solo} root {key} webserver\n{solo} root {key} master\n{solo} root {key} worker\n"
        ),
    )
    .unwrap();
    let run = spotload(None, &args(&inventory), Duration::from_secs(60), &[]).failed();
    println!("--- changed host key, stderr\n{}", run.stderr);
    let expected = format!("{solo}: host key changed");
    assert!(run.stderr.contains(&expected), "{}", run.stderr);
    assert!(
        run.stderr.contains(&format!("{} line 1", known.display())),
        "{}",
        run.stderr
    );
    assert!(
        run.elapsed < Duration::from_secs(20),
        "took {:?}",
        run.elapsed
    );
    assert_eq!(fs::read_to_string(&known).unwrap().lines().count(), 1);
}

#[test]
fn deploy_launches_a_moto_fleet_and_deploys_over_private_addresses() {
    let moto = Moto::start();
    let keys_dir = TempDir::new("moto-deploy");
    let mut lan = Lan::new();
    let operator = lan.operator();
    let endpoint = format!(
        "http://{}:{}",
        lan.gateway(),
        lan.forward_loopback(moto.port())
    );
    let state = keys_dir.path().join("state");
    let args = strings(&[
        "deploy",
        "--endpoint-url",
        &endpoint,
        "--region",
        "us-east-1",
        "--state-dir",
        &state.display().to_string(),
        "--fleet",
        "motofleet",
        "--workers",
        "2",
        "--allow-cidr",
        "10.0.0.0/8",
        "--connect-via",
        "private",
        "--ssh-user",
        "root",
        "--loadtest-bin",
        &loadtest_bin().display().to_string(),
        "--connect-timeout",
        "3s",
        "--ssh-wait",
        "3m",
        "--web-auth",
    ]);
    let env = [
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_REGION", "us-east-1"),
    ];
    let deploy = std::thread::spawn({
        let operator = operator.clone();
        move || spotload(Some(&operator), &args, Duration::from_secs(420), &env)
    });

    // The fleet file appears once moto's instances run: put a test host at
    // each private address moto handed out, accepting the fleet's key.
    let fleet_file = state.join("motofleet/fleet.json");
    // Until the file is whole JSON: it may be caught half written.
    let fleet = harness::try_wait_until(Duration::from_secs(180), || {
        let whole = fs::read_to_string(&fleet_file)
            .ok()
            .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok());
        match whole {
            Some(fleet) => Some(Some(fleet)),
            None => deploy.is_finished().then_some(None),
        }
    })
    .flatten()
    .expect("no fleet file: the launch failed");
    let key = fleet["key"]["private_key"]
        .as_str()
        .expect("fleet key path")
        .to_string();
    let public = sh(&format!("ssh-keygen -y -f {key}"));
    let mut master_ip = String::new();
    for (i, instance) in fleet["instances"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        let role = instance["role"].as_str().unwrap_or("?");
        let ip = instance["private_ip"]
            .as_str()
            .expect("private ip")
            .to_string();
        if role == "master" {
            master_ip = ip.clone();
        }
        lan.add_host(&format!("sl-{role}{i}"), ip.parse().unwrap(), &public);
    }
    assert_eq!(lan.hosts().len(), 4, "{fleet}");

    let run = deploy.join().expect("deploy thread").ok();
    assert!(run.stderr.contains("launching it"), "{}", run.stderr);
    assert!(
        run.stdout
            .contains(&format!("master web UI: https://{master_ip}:8089")),
        "{}",
        run.stdout
    );
    let master_index = lan
        .hosts()
        .iter()
        .position(|h| h.address().to_string() == master_ip)
        .expect("the master host");
    let cert = fs::read(state.join("motofleet/web-ui-cert.pem")).expect("the kept certificate");
    ui_is_https_only(
        &run,
        &format!("https://{master_ip}:8089"),
        &cert,
        &lan,
        master_index,
    );
    // The UI answers to the instance's public DNS name, when EC2 gave one.
    let master_dns = fleet["instances"]
        .as_array()
        .and_then(|all| all.iter().find(|i| i["role"] == "master"))
        .and_then(|m| m["public_dns"].as_str().map(str::to_string));
    if let Some(name) = &master_dns {
        let allowed = lan.hosts()[master_index].processes(&format!("--web-allowed-host {name}"));
        assert_eq!(
            allowed.len(),
            1,
            "the master is told its public name {name}"
        );
    }
    println!("master public DNS name: {master_dns:?}");
    assert!(
        run.stdout
            .contains("web UI login: user spotload, password "),
        "{}",
        run.stdout
    );
    let master = lan
        .hosts()
        .iter()
        .find(|h| h.address().to_string() == master_ip)
        .unwrap();
    assert_eq!(master.processes("bin/loadtest master").len(), 1);
    let unit_args = master.processes("--web-auth spotload:").len();
    assert_eq!(unit_args, 1, "the master runs with the printed credentials");
    drop(moto);
}
