//! The web UI over HTTPS (`--tls-cert`, `--tls-key`), end to end: a real
//! `loadtest master` with a certificate this test makes answers a client
//! that trusts exactly that certificate — by IP and by name, through
//! reqwest and through `MasterClient` — refuses plain HTTP with a message,
//! and is refused by clients that do not trust it. Bad certificate files
//! stop the master before it opens a port, with the file and the fix.

use std::path::{Path, PathBuf};
use std::time::Duration;

use harness::{exit_code, https_request, loadtest, try_http, wait_until, Api, Process, TempDir};
use swarm::api::RunState;

/// A self-signed certificate for `names` and its key, as PEM files in
/// `dir`; returns (cert path, key path, cert PEM).
fn certificate(dir: &Path, stem: &str, names: &[&str]) -> (PathBuf, PathBuf, String) {
    let names = names.iter().map(|n| (*n).to_string()).collect::<Vec<_>>();
    let made = rcgen::generate_simple_self_signed(names).expect("rcgen makes a certificate");
    let cert_pem = made.cert.pem();
    let cert = dir.join(format!("{stem}-cert.pem"));
    let key = dir.join(format!("{stem}-key.pem"));
    std::fs::write(&cert, &cert_pem).expect("write the certificate");
    std::fs::write(&key, made.signing_key.serialize_pem()).expect("write the key");
    (cert, key, cert_pem)
}

fn text(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 temp path")
}

#[test]
fn the_ui_answers_over_https_to_clients_trusting_its_certificate_only() {
    let dir = TempDir::new("web-tls");
    let (cert, key, pem) = certificate(dir.path(), "ui", &["127.0.0.1", "localhost"]);
    let (_other_cert, _other_key, other_pem) =
        certificate(dir.path(), "other", &["127.0.0.1", "localhost"]);
    let flags = ["--tls-cert", text(&cert), "--tls-key", text(&key)];
    let (mut master, _port, http_url) = loadtest!().master_with_ui(&dir, &flags);
    let url = http_url.replacen("http://", "https://", 1);
    wait_until(Duration::from_secs(10), "the UI's address", || {
        master
            .stdout()
            .contains(&format!("web UI: {url}"))
            .then_some(())
    });

    // Trusting the master's certificate: by IP and by name.
    let by_name = url.replacen("127.0.0.1", "localhost", 1);
    for base in [&url, &by_name] {
        let reply = https_request(
            pem.as_bytes(),
            "GET",
            &format!("{base}/stats/requests"),
            &[],
            None,
        )
        .unwrap_or_else(|e| panic!("GET {base}/stats/requests over HTTPS: {e}"));
        assert_eq!(reply.status, 200, "{reply:?}");
        let stats: serde_json::Value = serde_json::from_str(&reply.body).expect("JSON");
        assert_eq!(stats["state"], "ready", "{stats}");
    }
    let reset = https_request(
        pem.as_bytes(),
        "POST",
        &format!("{url}/stats/reset"),
        &[],
        Some(&[]),
    )
    .unwrap_or_else(|e| panic!("POST /stats/reset over HTTPS: {e}"));
    assert_eq!(
        (reset.status, reset.body.as_str()),
        (200, "ok"),
        "{reset:?}"
    );
    // MasterClient, as spotload ramp uses it.
    let api = Api::pinned(&url, pem.as_bytes());
    assert_eq!(api.requests().state, RunState::Ready);

    // Trusting another certificate, or only the system's roots: refused.
    let wrong = https_request(
        other_pem.as_bytes(),
        "GET",
        &format!("{url}/stats/requests"),
        &[],
        None,
    )
    .expect_err("a client trusting another certificate is refused");
    println!("trusting another certificate: {wrong}");
    assert!(wrong.contains("certificate"), "{wrong}");
    let system = try_http("GET", &format!("{url}/stats/requests"), None)
        .expect_err("a client with the system's roots is refused");
    assert!(system.contains("certificate"), "{system}");

    // Plain HTTP on the HTTPS port: a 400 saying what to do, nothing run.
    for (method, path) in [("GET", "/stats/requests"), ("POST", "/swarm")] {
        let body = (method == "POST").then_some((
            "application/x-www-form-urlencoded",
            &b"user_count=1&spawn_rate=1"[..],
        ));
        let (status, answer) = try_http(method, &format!("{http_url}{path}"), body)
            .unwrap_or_else(|e| panic!("plain {method} {path}: {e}"));
        println!("plain HTTP {method} {path}: {status} {answer}");
        assert_eq!(status, 400, "{answer}");
        assert!(answer.contains("use https://"), "{answer}");
    }
    assert_eq!(api.requests().state, RunState::Ready, "nothing started");
    master.signal("INT");
    assert_eq!(exit_code(&mut master, Duration::from_secs(20)), 0);
}

/// `loadtest master` with `extra` flags, expected to refuse to start.
fn refused_start(dir: &TempDir, extra: &[&str]) -> String {
    let web_port = harness::free_port().to_string();
    let master_port = harness::free_port().to_string();
    let mut args = vec![
        "master",
        "--master-bind-host",
        "127.0.0.1",
        "--master-bind-port",
        &master_port,
        "--web-host",
        "127.0.0.1",
        "--web-port",
        &web_port,
    ];
    args.extend_from_slice(extra);
    let name = harness::unique_name("loadtest-master");
    let mut master = Process::spawn(&name, loadtest!().command(&args), dir.path());
    let code = exit_code(&mut master, Duration::from_secs(20));
    let stderr = harness::strip_ansi(&master.stderr());
    assert_ne!(code, 0, "{extra:?} started\n{}", master.logs());
    assert!(
        !stderr.contains("master listening") && !master.stdout().contains("web UI"),
        "{extra:?}: a port opened before the refusal\n{}",
        master.logs()
    );
    stderr
}

#[test]
fn bad_certificate_files_stop_the_master_before_it_listens() {
    let dir = TempDir::new("web-tls-bad");
    let (cert, key, _) = certificate(dir.path(), "ui", &["127.0.0.1"]);
    let (_, other_key, _) = certificate(dir.path(), "other", &["127.0.0.1"]);
    let missing = dir.path().join("missing.pem");
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not a certificate\n").expect("write");
    let cases: [(&[&str], &[&str]); 5] = [
        (
            &["--tls-cert", text(&missing), "--tls-key", text(&key)],
            &["--tls-cert", "missing.pem", "cannot read it"],
        ),
        (
            &["--tls-cert", text(&garbage), "--tls-key", text(&key)],
            &["--tls-cert", "garbage.pem", "BEGIN CERTIFICATE"],
        ),
        (
            &["--tls-cert", text(&cert), "--tls-key", text(&cert)],
            &["--tls-key", "ui-cert.pem", "no private key"],
        ),
        (
            &["--tls-cert", text(&cert), "--tls-key", text(&other_key)],
            &[
                "other-key.pem",
                "is not the certificate's",
                "the key the certificate was made for",
            ],
        ),
        (&["--tls-cert", text(&cert)], &["--tls-key"]),
    ];
    for (flags, words) in cases {
        let stderr = refused_start(&dir, flags);
        println!("{flags:?}:\n{}", stderr.trim());
        for word in words {
            assert!(stderr.contains(word), "{flags:?}: no {word:?} in\n{stderr}");
        }
    }
}
