//! Starting goose: idle, inside this process, with its WebSocket
//! Controller on 127.0.0.1, every scenario's transactions passing through
//! the gate and reporting to the tap, and each user's HTTP client put in
//! place by its first on-start transaction.
//!
//! Goose refuses to let the system pick its controller's port (port 0), so
//! the driver picks one, and proves after connecting that the peer is the
//! goose it just started (see [`GooseDriver::launch`]).

use std::sync::Arc;
use std::time::Duration;

use goose::config::GooseConfiguration;
use goose::metrics::GooseCoordinatedOmissionMitigation;
use goose::prelude::*;

use super::client::UserClients;
use super::controller::Controller;
use super::gate::Gate;
use super::seats::Classes;
use super::tap::Tap;
use super::{DriverError, GooseDriver};
use crate::target_tls::TargetTls;

/// How fast goose may start users: the master paces the ramp by sending new
/// targets every second, so the worker reaches each at once. (No decrease
/// rate is set: with one, goose plans a ramp down right after the ramp up
/// and ends the run by itself.)
const FOLLOW_RATE: u32 = 10_000;

/// How many ports the driver tries for goose's controller before giving up.
const LAUNCH_ATTEMPTS: usize = 5;

/// How long goose may take to start listening on its controller's port.
const CONNECT_PATIENCE: Duration = Duration::from_secs(10);

/// The `option` of the error goose ends with when `no_autostart` is set and
/// no controller could listen: its controller's port was taken.
const NO_CONTROLLER_OPTION: &str = "`configuration.no_autostart`";

/// How goose should run, from the worker's command line.
#[derive(Debug, Clone, Default)]
pub struct DriverOptions {
    /// Default target when the master sends none.
    pub host: Option<String>,
    /// Goose's request log, one line per request (for auditing a run).
    pub request_log: Option<String>,
    /// One HTTP client shared by every user, without cookies (less CPU and
    /// memory per user), instead of a client and cookie jar per user as
    /// Locust's users have.
    pub shared_client: bool,
    /// Goose's coordinated omission mitigation (`--co-mitigation`); `None`:
    /// off. A spawn from our master may choose another for the users it
    /// starts.
    pub co_mitigation: Option<GooseCoordinatedOmissionMitigation>,
    /// How the users' HTTPS trusts the target (`--ca-cert`,
    /// `--accept-invalid-certs`); a spawn from our master may bring another.
    pub target_tls: TargetTls,
}

/// Why one launch attempt failed.
enum LaunchFailure {
    /// The port turned out not to be ours (goose could not bind it, or the
    /// peer there is not our goose): worth another port.
    Port(String),
    /// Goose itself failed: another port would not help.
    Fatal(DriverError),
}

impl GooseDriver {
    /// Starts goose idle with the given scenarios.
    /// `node_id` goes into every request's `User-Agent`
    /// (`loadtest/VERSION (NODE_ID)`), so a target's access log tells which
    /// worker sent what.
    ///
    /// Goose's controller needs a fixed port, so one is chosen (a port the
    /// system hands out for 127.0.0.1:0, released at once) and given to
    /// goose. Another process may take it in between: goose then runs
    /// without a controller (and, idle without one, ends with an error), and
    /// whatever holds the port may answer our connection. That race is
    /// harmless in effect, because the port is never trusted: after
    /// connecting, the peer must answer `config-json` with `success` and a
    /// configuration holding our port and a token made up for this launch
    /// (see [`configuration`]), which no foreign service, nor another
    /// worker's goose that happens to listen on the same port, can echo. A
    /// collision only costs a retry on another port, up to
    /// [`LAUNCH_ATTEMPTS`] times.
    pub async fn launch(
        scenarios: Vec<Scenario>,
        options: &DriverOptions,
        node_id: &str,
    ) -> Result<Self, DriverError> {
        Self::launch_on_ports(scenarios, options, node_id, free_local_port).await
    }

    /// [`launch`](Self::launch), taking each port to try from `next_port`.
    async fn launch_on_ports(
        scenarios: Vec<Scenario>,
        options: &DriverOptions,
        node_id: &str,
        mut next_port: impl FnMut() -> std::io::Result<u16>,
    ) -> Result<Self, DriverError> {
        let mut failures = Vec::new();
        for _ in 0..LAUNCH_ATTEMPTS {
            let port = next_port().map_err(DriverError::Port)?;
            match Self::launch_on(scenarios.clone(), options, node_id, port).await {
                Ok(driver) => return Ok(driver),
                Err(LaunchFailure::Fatal(err)) => return Err(err),
                Err(LaunchFailure::Port(why)) => {
                    tracing::warn!("goose's controller port {port} is not usable, retrying: {why}");
                    failures.push(format!("port {port}: {why}"));
                }
            }
        }
        Err(DriverError::NoController {
            attempts: LAUNCH_ATTEMPTS,
            failures: failures.join("; "),
        })
    }

    /// One attempt: goose with its controller on `port`, proven to be ours.
    /// On failure the attack is aborted.
    async fn launch_on(
        scenarios: Vec<Scenario>,
        options: &DriverOptions,
        node_id: &str,
        port: u16,
    ) -> Result<Self, LaunchFailure> {
        let token = format!("swarm-{:016x}", rand::random::<u64>());
        let agent = format!("loadtest/{} ({node_id})", env!("CARGO_PKG_VERSION"));
        // Each user gets its client from `clients` on its first on-start
        // transaction (TLS set up once for all); goose's own, one client
        // built once, is never used for a request.
        let clients = UserClients::new(&agent, options.shared_client, &options.target_tls)
            .map(Arc::new)
            .map_err(|e| LaunchFailure::Fatal(DriverError::Client(e)))?;
        let placeholder = goose::client::GooseClientBuilder::new()
            .user_agent(agent)
            .without_cookies();
        let mut attack = GooseAttack::initialize_with_config(configuration(port, &token, options))
            .and_then(|attack| attack.set_client_builder_without_cookies(placeholder))
            .map_err(|e| LaunchFailure::Fatal(DriverError::Goose(e.to_string())))?;
        let gate = Gate::default();
        let tap = Tap::start();
        let classes = Classes::of(&scenarios);
        for scenario in scenarios {
            attack = attack.register_scenario(gate.guard(clients.install(scenario), &tap));
        }
        let mut handle = tokio::spawn(async move { attack.execute().await.map(|_| ()) });
        let addr = format!("127.0.0.1:{port}");
        let connected = tokio::select! {
            connected = Controller::connect(&addr, CONNECT_PATIENCE) => connected,
            ended = &mut handle => return Err(ended_at_launch(ended)),
        };
        let checked = match connected {
            Ok(mut controller) => match prove_identity(&mut controller, port, &token).await {
                Ok(()) => Ok(controller),
                Err(why) => Err(why),
            },
            Err(err) => Err(err.to_string()),
        };
        let controller = match checked {
            Ok(controller) => controller,
            Err(why) => {
                // Goose may have ended meanwhile, with an error of its own.
                if handle.is_finished() {
                    return Err(ended_at_launch((&mut handle).await));
                }
                handle.abort();
                return Err(LaunchFailure::Port(why));
            }
        };
        let mut driver = GooseDriver {
            controller,
            gate,
            attack: handle,
            host: options.host.clone(),
            users: 0,
            goose_users: 0,
            classes,
            tap,
            #[cfg(test)]
            break_after_spawn: false,
            clients,
            trust_changed: false,
        };
        let rate = driver
            .controller
            .command(&format!("increaserate {FOLLOW_RATE}"))
            .await;
        if let Err(err) = rate {
            driver.attack.abort();
            return Err(LaunchFailure::Fatal(err.into()));
        }
        Ok(driver)
    }
}

/// How goose ends before its controller answered: a port it could not
/// listen on is worth another port, any other failure is goose's own.
fn ended_at_launch(ended: Result<Result<(), GooseError>, tokio::task::JoinError>) -> LaunchFailure {
    match ended {
        Ok(Err(GooseError::InvalidOption { option, detail, .. }))
            if option == NO_CONTROLLER_OPTION =>
        {
            LaunchFailure::Port(format!("goose could not listen on it: {detail}"))
        }
        Ok(Err(err)) => LaunchFailure::Fatal(DriverError::Goose(err.to_string())),
        Ok(Ok(())) => LaunchFailure::Fatal(DriverError::Goose(
            "goose ended before its controller answered".into(),
        )),
        Err(err) => LaunchFailure::Fatal(DriverError::Goose(err.to_string())),
    }
}

/// Proves the controller's peer is the goose just started: its
/// `config-json` must succeed and hold our port and launch token.
async fn prove_identity(controller: &mut Controller, port: u16, token: &str) -> Result<(), String> {
    let reply = controller
        .command("config-json")
        .await
        .map_err(|e| format!("the peer is not our goose: {e}"))?;
    let config: serde_json::Value = serde_json::from_str(&reply)
        .map_err(|e| format!("the peer's config-json is not JSON ({e}): not our goose"))?;
    let ours = config.is_object()
        && config["websocket_port"].as_u64() == Some(u64::from(port))
        && config["telnet_host"].as_str() == Some(token);
    if ours {
        Ok(())
    } else {
        Err("the peer's configuration is not our goose's".into())
    }
}

/// Goose's configuration: idle until started, its WebSocket Controller on
/// 127.0.0.1:`port`, no telnet Controller. `token` goes into the unused
/// `telnet_host` (telnet is off, so goose never binds it) purely so that
/// `config-json` proves which goose answers.
fn configuration(port: u16, token: &str, options: &DriverOptions) -> GooseConfiguration {
    let mut config = GooseConfiguration::default();
    config.host = options.host.clone();
    config.no_autostart = true;
    config.no_telnet = true;
    config.telnet_host = Some(token.to_string());
    config.websocket = true;
    config.websocket_host = Some("127.0.0.1".into());
    config.websocket_port = Some(port);
    // The worker tallies requests itself (see `tap`); goose's own metrics
    // are not read, so they are never reset or printed.
    config.no_reset_metrics = true;
    config.no_print_metrics = true;
    config.quiet = 1;
    config.no_transaction_metrics = true;
    config.no_scenario_metrics = true;
    config.no_percentiles_over_time = true;
    config.request_log = options.request_log.clone();
    config.co_mitigation = Some(
        options
            .co_mitigation
            .clone()
            .unwrap_or(GooseCoordinatedOmissionMitigation::Disabled),
    );
    if config.request_log.is_some() {
        config.request_format = Some(goose::logger::GooseLogFormat::Json);
    }
    config
}

/// A port for goose's controller: one the system hands out, released at
/// once. Another process may take it before goose binds it; `launch`'s
/// identity check catches that and retries.
fn free_local_port() -> std::io::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use super::super::controller::tests::{listen, serve};
    use super::super::tests::options;
    use super::*;

    async fn idle(_user: &mut GooseUser) -> TransactionResult {
        Ok(())
    }

    fn scenarios() -> Vec<Scenario> {
        vec![scenario!("idle").register_transaction(transaction!(idle))]
    }

    /// A WebSocket service answering like a goose that is not ours: another
    /// worker's goose on the same port (right port, another token).
    /// Returns its port and how many requests it answered.
    async fn foreign_goose() -> (u16, Arc<AtomicUsize>) {
        let (listener, addr) = listen().await;
        let port: u16 = addr.rsplit(':').next().unwrap().parse().unwrap();
        let asked = Arc::new(AtomicUsize::new(0));
        let counter = asked.clone();
        serve(listener, move |request: &str| {
            counter.fetch_add(1, Ordering::SeqCst);
            let config = serde_json::json!({
                "websocket_port": port,
                "telnet_host": "swarm-someone-else",
            });
            let response = match request {
                "config-json" => config.to_string(),
                _ => "ok".to_string(),
            };
            Some(serde_json::json!({"response": response, "success": true}).to_string())
        });
        (port, asked)
    }

    #[test]
    fn configuration_runs_only_the_websocket_controller() {
        let config = configuration(4321, "swarm-token", &options());
        assert!(config.no_telnet);
        assert!(config.websocket);
        assert_eq!(config.websocket_host.as_deref(), Some("127.0.0.1"));
        assert_eq!(config.websocket_port, Some(4321));
        assert_eq!(config.telnet_host.as_deref(), Some("swarm-token"));
        assert!(config.no_autostart);
        assert!(config.no_reset_metrics);
    }

    #[tokio::test]
    async fn identity_check_refuses_a_foreign_goose() {
        let (port, _) = foreign_goose().await;
        let mut controller = Controller::connect(&format!("127.0.0.1:{port}"), CONNECT_PATIENCE)
            .await
            .unwrap();
        assert!(prove_identity(&mut controller, port, "swarm-mine")
            .await
            .is_err());
        // The same peer with the right token would pass.
        assert!(prove_identity(&mut controller, port, "swarm-someone-else")
            .await
            .is_ok());
        // Right token, wrong port: refused too.
        assert!(
            prove_identity(&mut controller, port.wrapping_add(1), "swarm-someone-else")
                .await
                .is_err()
        );
    }

    #[tokio::test]
    async fn launch_steers_goose_over_websocket() {
        let mut driver = GooseDriver::launch(scenarios(), &options(), "test-node")
            .await
            .unwrap();
        assert_eq!(driver.users(), 0);
        assert!(!driver.has_ended());
        driver.take_delta().await.unwrap();
        driver.stop().await.unwrap();
        driver.shutdown().await;
    }

    #[tokio::test]
    async fn a_foreign_service_on_the_port_costs_a_retry() {
        let (taken, asked) = foreign_goose().await;
        let mut ports = vec![taken];
        let driver =
            GooseDriver::launch_on_ports(scenarios(), &options(), "test-node", move || match ports
                .pop()
            {
                Some(port) => Ok(port),
                None => free_local_port(),
            })
            .await
            .unwrap();
        assert!(!driver.has_ended());
        driver.shutdown().await;
        // The foreign service was either asked and refused, or goose ended
        // first (it could not bind): both cost one retry, never a wrong peer.
        let _ = asked.load(Ordering::SeqCst);
    }

    #[tokio::test]
    async fn every_port_taken_fails_clearly() {
        let (taken, _) = foreign_goose().await;
        let result =
            GooseDriver::launch_on_ports(scenarios(), &options(), "test-node", move || Ok(taken))
                .await;
        match result {
            Err(DriverError::NoController { attempts, failures }) => {
                assert_eq!(attempts, LAUNCH_ATTEMPTS);
                assert!(failures.contains(&format!("port {taken}")), "{failures}");
            }
            Err(e) => panic!("expected NoController, got {e}"),
            Ok(_) => panic!("a foreign service passed for our goose"),
        }
    }
}
