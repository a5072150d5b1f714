//! The `master` and `worker` recipes: stop what a previous deploy started,
//! install the binary `ship` brought (checked by digest), start `loadtest
//! master` (pointed at the webserver) or `loadtest worker` (pointed at the
//! master), and check them.

use super::service::Service;
use super::ship::install_script;
use super::{Step, MASTER_PORT, WEB_PORT};
use crate::remote::script::quote;

const BIN: &str = "/opt/spotload/bin/loadtest";

/// What the master is started with.
#[derive(Debug, Clone)]
pub struct MasterConfig {
    /// The target, e.g. `http://10.0.1.5`.
    pub target_url: String,
    /// `USER:PASS` for the web UI, when protected.
    pub web_auth: Option<String>,
    /// SHA-256 of the binary this deploy ships: the one installed.
    pub digest: String,
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

/// Stop the previous master, install the binary, start, check :8089.
pub fn master_steps(config: &MasterConfig, systemd: bool) -> Vec<Step> {
    let service = master_service(config);
    let auth = config.web_auth.as_deref().map(quote).unwrap_or_default();
    let check = format!(
        "wait_http http://127.0.0.1:{WEB_PORT}/stats/requests 30 {auth} || {{ tail -n 30 {log} >&2; exit 1; }}\n\
         echo \"master answers on :{WEB_PORT}\"",
        log = service.log_file(),
    );
    vec![
        Step::new(
            "stop previous master",
            "systemctl stop spotload-master / kill $(cat master.pid)",
            format!(
                "{}{}",
                service.stop_script(),
                install_script(&config.digest)
            ),
        ),
        Step::new(
            "start master",
            service.command_line(systemd),
            service.start_script(systemd),
        ),
        Step::new(
            format!("check master answers on :{WEB_PORT}"),
            format!("curl http://127.0.0.1:{WEB_PORT}/stats/requests"),
            check,
        ),
    ]
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
        };
        let steps = master_steps(&config, false);
        let start = &steps[1];
        assert_eq!(
            start.command,
            "/opt/spotload/bin/loadtest master --host http://10.0.1.5 --web-port 8089 --master-bind-port 5557 --web-auth spotload:***"
        );
        assert!(steps[2].script.contains("30 spotload:s3cret"));
        let systemd = master_steps(&config, true);
        assert!(systemd[1].script.contains("chmod 600"));
    }

    #[test]
    fn worker_joins_the_master_address() {
        let steps = worker_start_steps("10.0.1.6", false);
        assert!(steps[0]
            .command
            .ends_with("worker --master-host 10.0.1.6 --master-port 5557"));
    }
}
