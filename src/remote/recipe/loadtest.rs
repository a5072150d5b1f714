//! The `master` and `worker` recipes: stop what a previous deploy started,
//! install the binary `delivery` brought (checked by digest), the UI's
//! certificate and key, and the deploy's join secret, start `loadtest
//! master` (pointed at the webserver, serving HTTPS, told the names its UI
//! is opened under) or `loadtest worker` (pointed at the master), and check
//! them.
//!
//! With `spotload deploy --ca-cert FILE` the target's CA goes to the
//! master's host too ([`TARGET_CA`]), and the master, started with
//! `--ca-cert` there, sends its certificates to every worker with each
//! spawn; `--accept-invalid-certs` is passed on to the master the same way.
//!
//! The key and the join secret travel on a step's standard input into
//! root-only files: they are in no command line, no unit file and no
//! printed command. Both services read the secret with
//! `--join-secret-file` ([`JOIN_SECRET_FILE`]).

use std::sync::Arc;

use swarm::cli::flags::JoinSecretFlags;
use swarm::protocol::JoinSecret;

use super::delivery::install_script;
use super::service::Service;
use super::{Step, BASE, MASTER_PORT, WEB_PORT};
use crate::remote::script::quote;

const BIN: &str = "/opt/spotload/bin/loadtest";
/// The master's UI certificate on its host (world-readable).
pub const UI_CERT: &str = "/opt/spotload/tls/web-ui-cert.pem";
/// Its private key: root only.
const UI_KEY: &str = "/opt/spotload/tls/web-ui-key.pem";

/// The CA the users' HTTPS trusts (`--ca-cert`), on the master's host
/// (world-readable: certificates only).
pub const TARGET_CA: &str = "/opt/spotload/tls/target-ca.pem";

/// How the users' HTTPS trusts the target, as the deploy hands it to the
/// master (who sends it to every worker).
#[derive(Debug, Clone, Default)]
pub struct TargetTrust {
    /// The CA certificates of `--ca-cert` (PEM, checked), installed as
    /// [`TARGET_CA`].
    pub ca_pem: Option<Arc<Vec<u8>>>,
    /// `--accept-invalid-certs`.
    pub accept_invalid_certs: bool,
}

/// The master UI's certificate and key, PEM, as the deploy installs them.
#[derive(Clone)]
pub struct UiTls {
    /// The certificate.
    pub cert_pem: Arc<Vec<u8>>,
    /// Its private key: travels on a step's standard input only.
    pub key_pem: Arc<Vec<u8>>,
}

impl std::fmt::Debug for UiTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UiTls")
    }
}

/// Where master and worker hosts keep the deploy's join secret (mode 0600,
/// owned by root, who runs the services).
pub const JOIN_SECRET_FILE: &str = "/opt/spotload/join-secret";

/// What the master is started with.
#[derive(Debug, Clone)]
pub struct MasterConfig {
    /// The target, e.g. `http://10.0.1.5`.
    pub target_url: String,
    /// `USER:PASS` for the web UI, when protected.
    pub web_auth: Option<String>,
    /// SHA-256 of the binary this deploy ships: the one installed.
    pub digest: String,
    /// The secret workers must present to join (one per deploy).
    pub join_secret: JoinSecret,
    /// Serve the UI over HTTPS with this certificate; `None`: plain HTTP.
    pub tls: Option<UiTls>,
    /// DNS names the UI is opened under (`--web-allowed-host`).
    pub allowed_hosts: Vec<String>,
    /// How the users' HTTPS trusts the target.
    pub target_trust: TargetTrust,
}

/// `--join-secret-file` with the hosts' secret file, for both services.
fn join_secret_args() -> Vec<String> {
    JoinSecretFlags::file(JOIN_SECRET_FILE).to_args()
}

/// Writes `secret` to [`JOIN_SECRET_FILE`] from the step's standard input:
/// created under umask 077, then moved into place, so it is never readable
/// by others, not even for a moment.
fn join_secret_step(secret: &JoinSecret) -> Step {
    let file = JOIN_SECRET_FILE;
    let script = format!(
        "new={file}.new\n\
         rm -f \"$new\"\n\
         mkdir -p \"$(dirname {file})\" && (umask 077 && cat > \"$new\") && chmod 600 \"$new\" \\\n    \
             && mv -f \"$new\" {file} || {{ echo \"cannot write {file}\" >&2; exit 1; }}\n\
         [ -s {file} ] || {{ echo \"{file} is empty\" >&2; exit 1; }}\n\
         echo \"join secret in {file} (mode 0600)\"\n"
    );
    let mut step = Step::new(
        "write the join secret",
        format!("write {file} (mode 0600) from standard input"),
        script,
    );
    let mut line = secret.reveal().as_bytes().to_vec();
    line.push(b'\n');
    step.input = Some(Arc::new(line));
    step
}

/// The master's own API on its host, as the deploy's checks read it: the
/// URL (`https://127.0.0.1:8089PATH` with TLS: the certificate names
/// 127.0.0.1) and the words `fetch` and `wait_http` take after it (the
/// credentials, the certificate to trust).
pub fn master_api(path: &str, web_auth: Option<&str>, tls: bool) -> (String, String) {
    let auth = web_auth.map_or_else(|| "''".to_string(), quote);
    if tls {
        (
            format!("https://127.0.0.1:{WEB_PORT}{path}"),
            format!("{auth} {UI_CERT}"),
        )
    } else {
        (format!("http://127.0.0.1:{WEB_PORT}{path}"), auth)
    }
}

/// Writes standard input to `path` with `mode`, atomically; fails on
/// empty input. The content never appears in the script.
fn install_from_stdin(path: &str, mode: &str) -> String {
    format!(
        "mkdir -p {BASE}/tls && chmod 700 {BASE}/tls\n\
         umask 077\n\
         cat > {path}.partial\n\
         if [ ! -s {path}.partial ]; then echo \"nothing arrived for {path}\" >&2; rm -f {path}.partial; exit 1; fi\n\
         chmod {mode} {path}.partial && mv -f {path}.partial {path}\n\
         echo \"installed {path} (mode {mode})\"\n"
    )
}

/// Install the UI's certificate and key from standard input.
fn tls_steps(tls: &UiTls) -> Vec<Step> {
    let mut cert = Step::new(
        "install web UI certificate",
        format!("cat > {UI_CERT} (from standard input)"),
        install_from_stdin(UI_CERT, "644"),
    );
    cert.input = Some(tls.cert_pem.clone());
    let mut key = Step::new(
        "install web UI key",
        format!("cat > {UI_KEY} (root only, from standard input)"),
        install_from_stdin(UI_KEY, "600"),
    );
    key.input = Some(tls.key_pem.clone());
    vec![cert, key]
}

fn master_service(config: &MasterConfig) -> Service {
    let mut argv = vec![
        BIN.to_string(),
        "master".into(),
        "--host".into(),
        config.target_url.clone(),
        "--web-port".into(),
        WEB_PORT.to_string(),
        "--master-bind-port".into(),
        MASTER_PORT.to_string(),
    ];
    if let Some(auth) = &config.web_auth {
        argv.extend(["--web-auth".into(), auth.clone()]);
    }
    if config.tls.is_some() {
        argv.extend([
            "--tls-cert".into(),
            UI_CERT.into(),
            "--tls-key".into(),
            UI_KEY.into(),
        ]);
    }
    for name in &config.allowed_hosts {
        argv.extend(["--web-allowed-host".into(), name.clone()]);
    }
    if config.target_trust.ca_pem.is_some() {
        argv.extend(["--ca-cert".into(), TARGET_CA.into()]);
    }
    if config.target_trust.accept_invalid_certs {
        argv.push("--accept-invalid-certs".into());
    }
    argv.extend(join_secret_args());
    Service {
        name: "master",
        description: "loadtest master (web UI on :8089, workers on :5557)",
        argv,
        signature: "bin/loadtest master".into(),
        restart: "on-failure",
        secret: config.web_auth.is_some(),
        ready: "master listening for workers",
    }
}

/// `loadtest worker` joining the master at `master_address`, with `extra`
/// arguments (how its users behave).
fn worker_service(master_address: &str, extra: &[String]) -> Service {
    let mut argv = vec![
        BIN.to_string(),
        "worker".into(),
        "--master-host".into(),
        master_address.to_string(),
        "--master-port".into(),
        MASTER_PORT.to_string(),
    ];
    argv.extend(join_secret_args());
    argv.extend(extra.iter().cloned());
    Service {
        name: "worker",
        description: "loadtest worker",
        argv,
        signature: "bin/loadtest worker".into(),
        // A worker quits when its master does; systemd brings it back to
        // join the next one.
        restart: "always",
        secret: false,
        ready: "joined the master as worker",
    }
}

/// Stop the previous master, install the binary (and the UI's
/// certificate), write the join secret, start, check :8089.
pub fn master_steps(config: &MasterConfig, systemd: bool) -> Vec<Step> {
    let service = master_service(config);
    let tls = config.tls.is_some();
    let scheme = if tls { "https" } else { "http" };
    let (url, args) = master_api("/stats/requests", config.web_auth.as_deref(), tls);
    let check = format!(
        "wait_http {url} 30 {args} || {{ tail -n 30 {log} >&2; exit 1; }}\n\
         echo \"master answers on :{WEB_PORT} ({scheme})\"",
        log = service.log_file(),
    );
    let mut install_tls = config.tls.as_ref().map(tls_steps).unwrap_or_default();
    if let Some(ca) = &config.target_trust.ca_pem {
        let mut step = Step::new(
            "install the target's CA",
            format!("cat > {TARGET_CA} (from standard input)"),
            install_from_stdin(TARGET_CA, "644"),
        );
        step.input = Some(ca.clone());
        install_tls.push(step);
    }
    let mut steps = vec![Step::new(
        "stop previous master",
        "systemctl stop spotload-master / kill $(cat master.pid)",
        format!(
            "{}{}",
            service.stop_script(),
            install_script(&config.digest)
        ),
    )];
    steps.extend(install_tls);
    steps.push(join_secret_step(&config.join_secret));
    steps.extend([
        Step::new(
            "start master",
            service.command_line(systemd),
            service.start_script(systemd),
        ),
        Step::new(
            format!("check master answers on :{WEB_PORT}"),
            if tls {
                format!("curl --cacert {UI_CERT} {url}")
            } else {
                format!("curl {url}")
            },
            check,
        ),
    ]);
    steps
}

/// Stop the previous worker and install the binary with `digest`: safe
/// before the master is up.
pub fn worker_stop_steps(digest: &str) -> Vec<Step> {
    let service = worker_service("", &[]);
    vec![Step::new(
        "stop previous worker",
        "systemctl stop spotload-worker / kill $(cat worker.pid)",
        format!("{}{}", service.stop_script(), install_script(digest)),
    )]
}

/// Write the join secret and start the worker (once the master runs),
/// checking it stays up.
pub fn worker_start_steps(
    master_address: &str,
    systemd: bool,
    secret: &JoinSecret,
    extra: &[String],
) -> Vec<Step> {
    let service = worker_service(master_address, extra);
    vec![
        join_secret_step(secret),
        Step::new(
            "start worker",
            service.command_line(systemd),
            service.start_script(systemd),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn master_points_at_the_webserver_and_hides_its_password() {
        let config = MasterConfig {
            target_url: "http://10.0.1.5".into(),
            web_auth: Some("spotload:s3cret".into()),
            digest: "ab".repeat(32),
            join_secret: JoinSecret::new("join-s3cret").unwrap(),
            tls: None,
            allowed_hosts: Vec::new(),
            target_trust: TargetTrust::default(),
        };
        let steps = master_steps(&config, false);
        let start = &steps[2];
        assert_eq!(
            start.command,
            "/opt/spotload/bin/loadtest master --host http://10.0.1.5 --web-port 8089 --master-bind-port 5557 --web-auth spotload:*** --join-secret-file /opt/spotload/join-secret"
        );
        assert!(steps[3].script.contains("30 spotload:s3cret"));
        let systemd = master_steps(&config, true);
        assert!(systemd[2].script.contains("chmod 600"));
    }

    #[test]
    fn the_targets_ca_goes_to_the_master_who_sends_it_to_the_workers() {
        const CA: &[u8] = b"-----BEGIN CERTIFICATE-----\nQ0E=\n-----END CERTIFICATE-----\n";
        let config = MasterConfig {
            target_url: "https://staging.internal".into(),
            web_auth: None,
            digest: "ab".repeat(32),
            join_secret: JoinSecret::new("join-s3cret").unwrap(),
            tls: None,
            allowed_hosts: Vec::new(),
            target_trust: TargetTrust {
                ca_pem: Some(Arc::new(CA.to_vec())),
                accept_invalid_certs: false,
            },
        };
        let steps = master_steps(&config, false);
        let install = steps
            .iter()
            .find(|s| s.name == "install the target's CA")
            .expect("a step installs the CA");
        assert_eq!(install.input.as_deref().map(Vec::as_slice), Some(CA));
        assert!(install
            .script
            .contains("chmod 644 /opt/spotload/tls/target-ca.pem"));
        let start = steps.iter().find(|s| s.name == "start master").unwrap();
        assert!(
            start
                .command
                .contains("--ca-cert /opt/spotload/tls/target-ca.pem"),
            "{}",
            start.command
        );
        // The workers get nothing of it on their command line: it comes
        // with every spawn.
        let worker = worker_start_steps("10.0.1.6", false, &config.join_secret, &[]);
        assert!(!worker[1].command.contains("--ca-cert"));
        let accepting = MasterConfig {
            target_trust: TargetTrust {
                ca_pem: None,
                accept_invalid_certs: true,
            },
            ..config
        };
        let steps = master_steps(&accepting, false);
        assert!(steps.iter().all(|s| s.name != "install the target's CA"));
        let start = steps.iter().find(|s| s.name == "start master").unwrap();
        assert!(
            start.command.contains(" --accept-invalid-certs"),
            "{}",
            start.command
        );
    }

    #[test]
    fn worker_joins_the_master_address_with_the_secret() {
        let secret = JoinSecret::new("join-s3cret").unwrap();
        let extra = ["--wait".to_string(), "0.5:1".to_string()];
        let steps = worker_start_steps("10.0.1.6", false, &secret, &extra);
        assert!(steps[1].command.ends_with(
            "worker --master-host 10.0.1.6 --master-port 5557 --join-secret-file /opt/spotload/join-secret --wait 0.5:1"
        ));
    }

    /// The secret is only ever on a step's standard input: in no script,
    /// command, unit file or Debug output.
    #[test]
    fn the_join_secret_travels_on_standard_input_only() {
        let secret = JoinSecret::new("join-s3cret-value").unwrap();
        let config = MasterConfig {
            target_url: "http://10.0.1.5".into(),
            web_auth: None,
            digest: "ab".repeat(32),
            join_secret: secret.clone(),
            tls: None,
            allowed_hosts: Vec::new(),
            target_trust: TargetTrust::default(),
        };
        for systemd in [false, true] {
            let mut steps = master_steps(&config, systemd);
            steps.extend(worker_start_steps("10.0.1.6", systemd, &secret, &[]));
            let writes: Vec<&Step> = steps
                .iter()
                .filter(|s| s.name == "write the join secret")
                .collect();
            assert_eq!(writes.len(), 2, "{steps:?}");
            for step in &steps {
                let shown = format!("{} {} {} {step:?}", step.name, step.command, step.script);
                assert!(!shown.contains("join-s3cret-value"), "{shown}");
            }
            let input = writes[0].input.as_deref().cloned().unwrap_or_default();
            assert_eq!(input, b"join-s3cret-value\n");
        }
    }

    /// The write step, run by a real shell with the file under a temp dir:
    /// the file holds the secret, mode 0600, and a rerun replaces it.
    #[tokio::test]
    async fn the_join_secret_step_writes_a_private_file() {
        use std::os::unix::fs::PermissionsExt as _;

        use crate::remote::script::Privilege;
        use crate::remote::{Local, Shell};

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("spotload/join-secret");
        for value in ["first-secret", "second-secret"] {
            let step = join_secret_step(&JoinSecret::new(value).unwrap());
            let script = step
                .script
                .replace(JOIN_SECRET_FILE, &file.display().to_string());
            let out = Local
                .run(&Privilege::Root.wrap(&script), step.input.clone())
                .await
                .unwrap();
            assert!(out.success(), "{out:?}");
            assert!(out.stdout.contains("(mode 0600)"), "{out:?}");
            let read = JoinSecret::from_file(&file).unwrap();
            assert_eq!(read.reveal(), value);
            let mode = std::fs::metadata(&file).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn with_tls_the_key_travels_on_stdin_and_the_check_trusts_the_certificate() {
        const KEY: &str = "-----BEGIN PRIVATE KEY-----\nc2VjcmV0\n-----END PRIVATE KEY-----\n";
        let config = MasterConfig {
            target_url: "http://10.0.1.5".into(),
            web_auth: None,
            digest: "ab".repeat(32),
            join_secret: JoinSecret::new("join-s3cret").unwrap(),
            tls: Some(UiTls {
                cert_pem: Arc::new(b"-----BEGIN CERTIFICATE-----\n".to_vec()),
                key_pem: Arc::new(KEY.as_bytes().to_vec()),
            }),
            allowed_hosts: vec!["ec2-203-0-113-7.compute-1.amazonaws.com".into()],
            target_trust: TargetTrust::default(),
        };
        let steps = master_steps(&config, false);
        let names: Vec<&str> = steps.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "stop previous master",
                "install web UI certificate",
                "install web UI key",
                "write the join secret",
                "start master",
                "check master answers on :8089"
            ]
        );
        let key_step = &steps[2];
        assert_eq!(
            key_step.input.as_deref().map(Vec::as_slice),
            Some(KEY.as_bytes())
        );
        assert!(key_step
            .script
            .contains("chmod 600 /opt/spotload/tls/web-ui-key.pem"));
        for step in &steps {
            assert!(
                !step.script.contains("c2VjcmV0"),
                "{}: key in the script",
                step.name
            );
            assert!(
                !step.command.contains("c2VjcmV0"),
                "{}: key in the command",
                step.name
            );
        }
        assert!(steps[4].command.ends_with(
            "--tls-cert /opt/spotload/tls/web-ui-cert.pem --tls-key /opt/spotload/tls/web-ui-key.pem \
             --web-allowed-host ec2-203-0-113-7.compute-1.amazonaws.com \
             --join-secret-file /opt/spotload/join-secret"
        ), "{}", steps[4].command);
        assert!(steps[5].script.contains(
            "wait_http https://127.0.0.1:8089/stats/requests 30 '' /opt/spotload/tls/web-ui-cert.pem"
        ));
        assert!(steps[5]
            .command
            .contains("--cacert /opt/spotload/tls/web-ui-cert.pem"));
    }
}
