//! The `master` and `worker` recipes: stop what a previous deploy started,
//! install the binary `ship` brought (checked by digest) and the UI's
//! certificate and key, start `loadtest master` (pointed at the webserver,
//! serving HTTPS, told the names its UI is opened under) or `loadtest
//! worker` (pointed at the master), and check them.

use std::sync::Arc;

use super::service::Service;
use super::ship::install_script;
use super::{Step, BASE, MASTER_PORT, WEB_PORT};
use crate::remote::script::quote;

const BIN: &str = "/opt/spotload/bin/loadtest";
/// The master's UI certificate on its host (world-readable).
pub const UI_CERT: &str = "/opt/spotload/tls/web-ui-cert.pem";
/// Its private key: root only.
const UI_KEY: &str = "/opt/spotload/tls/web-ui-key.pem";

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

/// What the master is started with.
#[derive(Debug, Clone)]
pub struct MasterConfig {
    /// The target, e.g. `http://10.0.1.5`.
    pub target_url: String,
    /// `USER:PASS` for the web UI, when protected.
    pub web_auth: Option<String>,
    /// SHA-256 of the binary this deploy ships: the one installed.
    pub digest: String,
    /// Serve the UI over HTTPS with this certificate; `None`: plain HTTP.
    pub tls: Option<UiTls>,
    /// DNS names the UI is opened under (`--web-allowed-host`).
    pub allowed_hosts: Vec<String>,
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

fn worker_service(master_address: &str) -> Service {
    Service {
        name: "worker",
        description: "loadtest worker",
        argv: vec![
            BIN.to_string(),
            "worker".into(),
            "--master-host".into(),
            master_address.to_string(),
            "--master-port".into(),
            MASTER_PORT.to_string(),
        ],
        signature: "bin/loadtest worker".into(),
        // A worker quits when its master does; systemd brings it back to
        // join the next one.
        restart: "always",
        secret: false,
        ready: "joined the master as worker",
    }
}

/// Stop the previous master, install the binary (and the UI's
/// certificate), start, check :8089.
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
    let install_tls = config.tls.as_ref().map(tls_steps).unwrap_or_default();
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
    let service = worker_service("");
    vec![Step::new(
        "stop previous worker",
        "systemctl stop spotload-worker / kill $(cat worker.pid)",
        format!("{}{}", service.stop_script(), install_script(digest)),
    )]
}

/// Start the worker (once the master runs) and check it stays up.
pub fn worker_start_steps(master_address: &str, systemd: bool) -> Vec<Step> {
    let service = worker_service(master_address);
    vec![Step::new(
        "start worker",
        service.command_line(systemd),
        service.start_script(systemd),
    )]
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
            tls: None,
            allowed_hosts: Vec::new(),
        };
        let steps = master_steps(&config, false);
        let start = &steps[1];
        assert_eq!(
            start.command,
            "/opt/spotload/bin/loadtest master --host http://10.0.1.5 --web-port 8089 --master-bind-port 5557 --web-auth spotload:***"
        );
        assert!(steps[2]
            .script
            .contains("wait_http http://127.0.0.1:8089/stats/requests 30 spotload:s3cret"));
        let systemd = master_steps(&config, true);
        assert!(systemd[1].script.contains("chmod 600"));
    }

    #[test]
    fn with_tls_the_key_travels_on_stdin_and_the_check_trusts_the_certificate() {
        const KEY: &str = "-----BEGIN PRIVATE KEY-----\nc2VjcmV0\n-----END PRIVATE KEY-----\n";
        let config = MasterConfig {
            target_url: "http://10.0.1.5".into(),
            web_auth: None,
            digest: "ab".repeat(32),
            tls: Some(UiTls {
                cert_pem: Arc::new(b"-----BEGIN CERTIFICATE-----\n".to_vec()),
                key_pem: Arc::new(KEY.as_bytes().to_vec()),
            }),
            allowed_hosts: vec!["ec2-203-0-113-7.compute-1.amazonaws.com".into()],
        };
        let steps = master_steps(&config, false);
        let names: Vec<&str> = steps.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "stop previous master",
                "install web UI certificate",
                "install web UI key",
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
        assert!(steps[3].command.ends_with(
            "--tls-cert /opt/spotload/tls/web-ui-cert.pem --tls-key /opt/spotload/tls/web-ui-key.pem \
             --web-allowed-host ec2-203-0-113-7.compute-1.amazonaws.com"
        ), "{}", steps[3].command);
        assert!(steps[4].script.contains(
            "wait_http https://127.0.0.1:8089/stats/requests 30 '' /opt/spotload/tls/web-ui-cert.pem"
        ));
        assert!(steps[4]
            .command
            .contains("--cacert /opt/spotload/tls/web-ui-cert.pem"));
    }

    #[test]
    fn worker_joins_the_master_address() {
        let steps = worker_start_steps("10.0.1.6", false);
        assert!(steps[0]
            .command
            .ends_with("worker --master-host 10.0.1.6 --master-port 5557"));
    }
}
