//! The join secret end to end (ZMTP PLAIN): `loadtest master` and
//! `loadtest worker` with and without it, against each other, against
//! pyzmq (libzmq 4.3) peers speaking PLAIN, and against stock Locust
//! (which speaks NULL only) both ways.
//!
//! Every "did not join" is judged after a positive signal that the peer
//! had its chance: the master's log line naming why it was refused, and a
//! worker with the right secret joining meanwhile.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use harness::*;
use swarm::protocol::{JoinSecret, JOIN_SECRET_ENV};

const PATIENCE: Duration = Duration::from_secs(30);

/// Writes `secret` to `name` in `dir`, mode 0600.
fn secret_file(dir: &TempDir, name: &str, secret: &JoinSecret) -> PathBuf {
    let path = dir.path().join(name);
    secret
        .write_private(&path)
        .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    path
}

fn text(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 temp path")
}

/// A worker command without any secret, whatever the test's environment.
fn worker_without_secret(port: u16) -> Command {
    let mut cmd = loadtest!().worker_command(port, &[]);
    cmd.env_remove(JOIN_SECRET_ENV);
    cmd
}

/// Waits until `process`'s stderr contains `line`.
fn wait_for_log(process: &Process, line: &str) {
    let found = try_wait_until(PATIENCE, || {
        strip_ansi(&process.stderr()).contains(line).then_some(())
    });
    assert!(
        found.is_some(),
        "{} never logged {line:?}\n{}",
        process.name(),
        process.logs()
    );
}

/// The ids of the workers the master's API lists, once there are `n`.
fn wait_for_workers(api: &Api, n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    let joined = try_wait_until(PATIENCE, || {
        ids = api.requests().workers.into_iter().map(|w| w.id).collect();
        (ids.len() >= n).then_some(())
    });
    assert!(joined.is_some(), "{n} worker(s) expected, joined: {ids:?}");
    ids
}

/// A Python script run with the venv's interpreter (pyzmq, msgpack),
/// with `JOIN_PASSWORD` in its environment.
fn python(dir: &TempDir, name: &str, source: &str, args: &[&str], password: &str) -> Process {
    let script = dir.path().join(format!("{name}.py"));
    std::fs::write(&script, source).expect("write the script");
    let mut cmd = Command::new(venv_bin("python"));
    cmd.arg(&script)
        .args(args)
        .env("JOIN_PASSWORD", password)
        .env("PYTHONUNBUFFERED", "1");
    Process::spawn(name, cmd, dir.path())
}

/// (a) Master and worker with the same secret (one from the file, one
/// from the environment): the worker joins, and the master's totals are
/// nginx's.
#[test]
fn a_worker_with_the_secret_joins_and_its_requests_are_counted() {
    let nginx = Nginx::start(NginxOptions::default());
    let dir = TempDir::new("join-secret-counts");
    let secret = JoinSecret::generate();
    let file = secret_file(&dir, "join-secret", &secret);
    let prefix = dir.path().join("run");
    let url = nginx.url();
    let args = [
        "--headless",
        "-u",
        "4",
        "-r",
        "4",
        "-t",
        "4s",
        "--expect-workers",
        "1",
        "--expect-workers-max-wait",
        "30",
        "--host",
        &url,
        "--csv",
        text(&prefix),
        "--join-secret-file",
        text(&file),
    ];
    let (mut master, port) = loadtest!().master(&dir, &args);
    let mut cmd = worker_without_secret(port);
    cmd.env(JOIN_SECRET_ENV, secret.reveal());
    let mut worker = spawn_worker(&dir, cmd);
    let code = exit_code(&mut master, Duration::from_secs(60));
    assert_eq!(code, 0, "{}", master.logs());
    let log = strip_ansi(&master.stderr());
    assert!(
        log.contains("workers must present the join secret (ZMTP PLAIN)"),
        "{log}"
    );
    assert!(log.contains(&format!("worker {} joined", node_id(&mut worker))));
    assert!(!log.contains(secret.reveal()), "the secret is never logged");
    let total = csv_row(&dir.path().join("run_stats.csv"), "Aggregated");
    let requests = num(&total, "Request Count");
    assert!(requests > 100.0, "too little load: {requests}");
    assert_close(
        requests,
        nginx.count_requests() as f64,
        0.005,
        "requests: master vs nginx log",
    );
}

/// (b) A worker with a wrong secret and one with none never join; the
/// master names why for each, both keep retrying, and the worker with the
/// right secret joins meanwhile.
#[test]
fn workers_with_a_wrong_secret_or_none_are_refused_and_say_why() {
    let dir = TempDir::new("join-secret-refused");
    let right = secret_file(&dir, "right", &JoinSecret::generate());
    let wrong = secret_file(&dir, "wrong", &JoinSecret::generate());
    let (master, port, web) =
        loadtest!().master_with_ui(&dir, &["--join-secret-file", text(&right)]);
    // At debug it logs every retry (at info, once): the sign it retried.
    let mut wrong_command = loadtest!().worker_command(port, &["--join-secret-file", text(&wrong)]);
    wrong_command.env("RUST_LOG", "info,swarm::protocol=debug,goose=error");
    let mut wrong_worker = spawn_worker(&dir, wrong_command);
    let mut open_worker = spawn_worker(&dir, worker_without_secret(port));
    wait_for_log(&master, "the peer presented a wrong join secret");
    wait_for_log(&master, "the peer has no join secret (it speaks ZMTP NULL)");
    let mut right_worker = loadtest!().worker(&dir, port, &["--join-secret-file", text(&right)]);
    let api = Api::new(&web);
    let ids = wait_for_workers(&api, 1);
    assert_eq!(ids, vec![node_id(&mut right_worker)], "only the right one");
    wait_for_log(
        &wrong_worker,
        "the master refused this worker's join secret",
    );
    wait_for_log(&open_worker, "this master requires the join secret");
    // Refused, they keep trying: a restarted master may have their secret.
    assert!(wrong_worker.is_running() && open_worker.is_running());
    let retries = |log: &str| log.matches("still no master at").count();
    let refused = retries(&strip_ansi(&wrong_worker.stderr()));
    let again = try_wait_until(PATIENCE, || {
        (retries(&strip_ansi(&wrong_worker.stderr())) > refused).then_some(())
    });
    assert!(
        again.is_some(),
        "the wrong worker retried\n{}",
        wrong_worker.logs()
    );
    // The master said why once per reason, not at every retry.
    let master_told = strip_ansi(&master.stderr())
        .matches("wrong join secret")
        .count();
    assert_eq!(master_told, 1, "{}", master.stderr());
    assert_eq!(api.requests().workers.len(), 1, "still only the right one");
    // It said why once, not at every retry.
    let told = strip_ansi(&wrong_worker.stderr())
        .lines()
        .filter(|line| {
            !line.contains("DEBUG") && line.contains("the master refused this worker's join secret")
        })
        .count();
    assert_eq!(told, 1, "{}", wrong_worker.stderr());
}

/// Joins a master as a pyzmq DEALER with PLAIN credentials (any username):
/// sends `client_ready`, prints the type of the answer.
const PYZMQ_DEALER: &str = r#"
import os, sys
import msgpack, zmq

port, node_id = sys.argv[1], sys.argv[2]
ctx = zmq.Context()
dealer = ctx.socket(zmq.DEALER)
dealer.setsockopt(zmq.IDENTITY, node_id.encode())
dealer.setsockopt(zmq.LINGER, 0)
dealer.plain_username = b"any-user"
dealer.plain_password = os.environ["JOIN_PASSWORD"].encode()
dealer.connect(f"tcp://127.0.0.1:{port}")
dealer.send(msgpack.packb(["client_ready", "2.47.0", node_id]))
if not dealer.poll(20000):
    print("no answer from the master", flush=True)
    sys.exit(1)
kind, data, _ = msgpack.unpackb(dealer.recv(), raw=False)
print(f"got {kind} {data}", flush=True)
sys.exit(0 if kind == "ack" else 1)
"#;

/// (c) libzmq's PLAIN client (pyzmq DEALER) joins our master: `client_ready`
/// in, `ack` out.
#[test]
fn a_pyzmq_plain_dealer_joins_our_master() {
    let dir = TempDir::new("join-secret-pyzmq-dealer");
    let secret = JoinSecret::generate();
    let file = secret_file(&dir, "join-secret", &secret);
    let (master, port, _web) =
        loadtest!().master_with_ui(&dir, &["--join-secret-file", text(&file)]);
    let node = "pyzmq-host_0123456789abcdef0123456789abcdef";
    let mut dealer = python(
        &dir,
        "pyzmq-dealer",
        PYZMQ_DEALER,
        &[&port.to_string(), node],
        secret.reveal(),
    );
    let status = dealer.wait_exit(PATIENCE);
    assert!(
        status.is_some_and(|s| s.success()),
        "{status:?}\n{}\n{}",
        dealer.logs(),
        master.logs()
    );
    assert!(
        dealer.stdout().contains("got ack {'index': "),
        "{}",
        dealer.stdout()
    );
    wait_for_log(&master, &format!("worker {node} joined"));
}

/// A ROUTER that is a PLAIN server, its passwords checked by pyzmq's ZAP
/// handler: prints its port, then the first message it receives.
const PYZMQ_ROUTER: &str = r#"
import os, sys
import msgpack, zmq
from zmq.auth.thread import ThreadAuthenticator

ctx = zmq.Context()
auth = ThreadAuthenticator(ctx)
auth.start()
auth.configure_plain(domain="*", passwords={"spotload": os.environ["JOIN_PASSWORD"]})
router = ctx.socket(zmq.ROUTER)
router.plain_server = True
router.setsockopt(zmq.LINGER, 0)
port = router.bind_to_random_port("tcp://127.0.0.1")
print(f"listening on {port}", flush=True)
if not router.poll(60000):
    print("nobody joined", flush=True)
    sys.exit(1)
identity, payload = router.recv_multipart()
kind, data, node_id = msgpack.unpackb(payload, raw=False)
print(f"got {kind} from {node_id} as {identity.decode()}", flush=True)
router.close()
auth.stop()
ctx.term()
"#;

/// (d) Our worker with a secret joins a pyzmq ROUTER that is a PLAIN
/// server and says `client_ready` there; one with a wrong secret is
/// refused by libzmq's ZAP handler and logs libzmq's reason.
#[test]
fn our_worker_joins_a_pyzmq_plain_router() {
    let dir = TempDir::new("join-secret-pyzmq-router");
    let secret = JoinSecret::generate();
    let right = secret_file(&dir, "right", &secret);
    let wrong = secret_file(&dir, "wrong", &JoinSecret::generate());
    let mut router = python(&dir, "pyzmq-router", PYZMQ_ROUTER, &[], secret.reveal());
    let port = wait_until(PATIENCE, "the pyzmq ROUTER's port", || {
        router
            .stdout()
            .lines()
            .find_map(|l| l.strip_prefix("listening on ")?.trim().parse::<u16>().ok())
    });
    let wrong_worker = loadtest!().worker(&dir, port, &["--join-secret-file", text(&wrong)]);
    // libzmq's ZAP refusal ("400") reached our worker as a refusal.
    wait_for_log(
        &wrong_worker,
        "the master refused this worker's join secret (\"400\")",
    );
    let mut worker = loadtest!().worker(&dir, port, &["--join-secret-file", text(&right)]);
    let id = node_id(&mut worker);
    let status = router.wait_exit(PATIENCE);
    assert!(
        status.is_some_and(|s| s.success()),
        "{status:?}\n{}\n{}",
        router.logs(),
        worker.logs()
    );
    assert!(
        router
            .stdout()
            .contains(&format!("got client_ready from {id} as {id}")),
        "the first message is the right worker's client_ready:\n{}",
        router.stdout()
    );
}

/// (e) A stock Locust worker cannot present a secret: it does not join a
/// master with one, which names why; a loadtest worker with the secret
/// joins meanwhile. (Without a secret Locust workers join: see
/// `locust_interop.rs`.)
#[test]
fn a_stock_locust_worker_does_not_join_a_master_with_a_secret() {
    let dir = TempDir::new("join-secret-locust");
    let file = secret_file(&dir, "join-secret", &JoinSecret::generate());
    let (master, port, web) =
        loadtest!().master_with_ui(&dir, &["--join-secret-file", text(&file)]);
    let locustfile = write_locustfile(dir.path(), "http://127.0.0.1:9");
    let _locust = Locust::worker(&locustfile, port, &[]);
    wait_for_log(
        &master,
        "the peer has no join secret (it speaks ZMTP NULL) but this master requires one",
    );
    let mut ours = loadtest!().worker(&dir, port, &["--join-secret-file", text(&file)]);
    let ids = wait_for_workers(&Api::new(&web), 1);
    assert_eq!(ids, vec![node_id(&mut ours)], "only our worker joined");
}

/// The other way round: a worker given a secret does not join a stock
/// Locust master (which speaks NULL only) and says why; a worker without
/// one joins it meanwhile.
#[test]
fn a_worker_with_a_secret_does_not_join_a_stock_locust_master() {
    let dir = TempDir::new("join-secret-locust-master");
    let file = secret_file(&dir, "join-secret", &JoinSecret::generate());
    let locustfile = write_locustfile(dir.path(), "http://127.0.0.1:9");
    let (bind_port, web_port) = (free_port(), free_port());
    let locust = Locust::master(&locustfile, bind_port, web_port, &[]);
    let secured = loadtest!().worker(&dir, bind_port, &["--join-secret-file", text(&file)]);
    wait_for_log(
        &secured,
        "the master has no join secret but this worker was given one",
    );
    let mut open = spawn_worker(&dir, worker_without_secret(bind_port));
    let ids = wait_for_workers(&locust.api(), 1);
    assert_eq!(
        ids,
        vec![node_id(&mut open)],
        "only the worker without a secret"
    );
}

/// A NULL pyzmq DEALER that joins, then says nothing of its own for
/// longer than the master's silence limit (libzmq still answers the
/// master's ZMTP 3.1 PINGs with PONGs by itself), then sends a heartbeat
/// and prints the kind of the answer: `heartbeat` on the connection it
/// joined on, `reconnect` had the master closed it.
const PYZMQ_SILENT_DEALER: &str = r#"
import sys, time
import msgpack, zmq

port, node_id, silent_for = sys.argv[1], sys.argv[2], float(sys.argv[3])
ctx = zmq.Context()
dealer = ctx.socket(zmq.DEALER)
dealer.setsockopt(zmq.IDENTITY, node_id.encode())
dealer.setsockopt(zmq.LINGER, 0)
dealer.connect(f"tcp://127.0.0.1:{port}")
dealer.send(msgpack.packb(["client_ready", "2.47.0", node_id]))
if not dealer.poll(20000):
    print("no ack", flush=True)
    sys.exit(1)
print("joined", flush=True)
# Drain whatever comes (spawn orders, nothing here) while silent.
deadline = time.monotonic() + silent_for
while time.monotonic() < deadline:
    if dealer.poll(100):
        dealer.recv()
beat = {"state": "ready", "current_cpu_usage": 0.0, "current_memory_usage": 0}
dealer.send(msgpack.packb(["heartbeat", beat, node_id]))
while dealer.poll(10000):
    kind, _, _ = msgpack.unpackb(dealer.recv(), raw=False)
    if kind in ("heartbeat", "reconnect"):
        print(f"answer {kind}", flush=True)
        sys.exit(0)
print("no answer", flush=True)
sys.exit(1)
"#;

/// The master PINGs a joined ZMTP 3.1 peer (RFC 37) and keeps it while it
/// answers: a stock libzmq peer silent at the application level for 20 s,
/// past the 15 s after which a connection that answers nothing is closed,
/// is still joined on the same connection. (A peer that does not answer
/// PINGs is closed: `a_joined_3_1_peer_is_pinged_and_a_silent_one_closed`
/// in the transport's tests.) No join secret: NULL.
#[test]
fn a_silent_pyzmq_peer_answers_our_pings_and_stays() {
    let dir = TempDir::new("ping-pyzmq");
    let (master, port, _web) = loadtest!().master_with_ui(&dir, &[]);
    let node = "pinged-host_0123456789abcdef0123456789abcdef";
    let mut dealer = python(
        &dir,
        "pyzmq-silent-dealer",
        PYZMQ_SILENT_DEALER,
        &[&port.to_string(), node, "20"],
        "",
    );
    let status = dealer.wait_exit(Duration::from_secs(60));
    assert!(
        status.is_some_and(|s| s.success()),
        "{status:?}\n{}\n{}",
        dealer.logs(),
        master.logs()
    );
    assert!(
        dealer.stdout().contains("answer heartbeat"),
        "the connection it joined on was kept\n{}\n{}",
        dealer.stdout(),
        master.logs()
    );
    assert!(
        !strip_ansi(&master.stderr()).contains("nothing heard"),
        "{}",
        master.logs()
    );
}
