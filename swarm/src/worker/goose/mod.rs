//! The worker's goose attack: started idle inside this process, steered
//! only through goose's WebSocket Controller (users, rates, start, stop) and
//! read through its `metrics-json` command.
//!
//! Goose refuses to let the system pick its controller's port (port 0), so
//! the driver picks one, and proves after connecting that the peer is the
//! goose it just started (see [`GooseDriver::launch`]).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use goose::config::GooseConfiguration;
use goose::metrics::GooseCoordinatedOmissionMitigation;
use goose::prelude::*;
use tokio::task::JoinHandle;

use crate::stats::StatsReport;
use crate::target_tls::TargetTls;
use client::UserClients;
use controller::{Controller, ControllerError};
use gate::Gate;
use tap::Tap;

mod client;
pub mod controller;
mod failure_log;
mod gate;
mod tap;

pub use client::{user_client_builder, UserClientError};
pub use failure_log::FAILURE_LOG_WINDOW;
pub(crate) use gate::pause;
pub use tap::{read_body, read_response, ReadResponse};

/// How fast goose may start users: the master paces the ramp by sending new
/// targets every second, so the worker reaches each at once. (No decrease
/// rate is set: with one, goose plans a ramp down right after the ramp up
/// and ends the run by itself.)
const FOLLOW_RATE: u32 = 10_000;

/// How long a halt waits for the requests in flight to finish.
const DRAIN_LIMIT: Duration = Duration::from_millis(300);

/// How long a stop waits for goose to end its users: a user notices the
/// stop within half a second (goose wakes a waiting user that often), then
/// runs its on-stop transactions. Within a master's default 10 s patience
/// for the stop's answer.
const USERS_END_LIMIT: Duration = Duration::from_secs(5);

pub use crate::protocol::MAX_USERS_PER_WORKER;

/// How long a spawn waits for goose's users to take their classes' seats.
const SEAT_PATIENCE: Duration = Duration::from_secs(5);

/// How many times a spawn adds goose users for a class that has too few.
const SEAT_ROUNDS: usize = 3;

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

/// What a spawn left running.
#[derive(Debug, Default)]
pub struct Spawned {
    /// The requests of a run that had to stop (for a new host, or no users).
    pub flushed: Option<StatsReport>,
    /// Users running per class: holding their class's seats, or, when the
    /// master named no class of this load test, as goose spread them.
    pub classes: BTreeMap<String, u64>,
}

/// The load test's user classes: goose's scenarios, their names and
/// weights (reduced by their greatest common divisor, as goose does).
#[derive(Debug, Clone)]
struct Classes {
    names: Vec<String>,
    weights: Vec<u64>,
}

impl Classes {
    fn of(scenarios: &[Scenario]) -> Classes {
        let raw: Vec<u64> = scenarios.iter().map(|s| s.weight.max(1) as u64).collect();
        let gcd = raw.iter().copied().reduce(gcd).unwrap_or(1).max(1);
        Classes {
            names: scenarios.iter().map(|s| s.name.to_string()).collect(),
            weights: raw.iter().map(|w| w / gcd).collect(),
        }
    }

    /// Goose users per round of its weighted allocation.
    fn round(&self) -> u64 {
        self.weights.iter().sum::<u64>().max(1)
    }

    /// The master's counts as seats per class, in scenario order; `None`
    /// when it named none of our classes (a Locust master with another
    /// locustfile). Names we do not have are returned apart.
    fn seats(&self, asked: &BTreeMap<String, u64>) -> (Option<Vec<u64>>, Vec<String>) {
        let unknown: Vec<String> = asked
            .keys()
            .filter(|name| !self.names.contains(name))
            .cloned()
            .collect();
        if unknown.len() == asked.len() && !asked.is_empty() {
            return (None, unknown);
        }
        let seats = self
            .names
            .iter()
            .map(|name| asked.get(name).copied().unwrap_or(0))
            .collect();
        (Some(seats), unknown)
    }

    /// Goose users that give every class at least its seats, when goose
    /// adds them in whole rounds of its weighted allocation.
    fn users_for(&self, seats: &[u64]) -> u64 {
        let rounds = seats
            .iter()
            .zip(&self.weights)
            .map(|(n, w)| n.div_ceil((*w).max(1)))
            .max()
            .unwrap_or(0);
        rounds.saturating_mul(self.round())
    }
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// Why the worker could not start or steer its goose attack.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    /// A controller command failed.
    #[error(transparent)]
    Controller(#[from] ControllerError),
    /// The users' HTTP clients could not be set up.
    #[error(transparent)]
    Client(#[from] UserClientError),
    /// Goose's attack failed to build or start; its error text.
    #[error("goose could not start: {0}")]
    Goose(String),
    /// No local port could be bound for the controller.
    #[error("no free local port for goose's controller: {0}")]
    Port(std::io::Error),
    /// Every port tried was taken by someone else's service.
    #[error("could not reach goose's own controller after {attempts} ports: {failures}")]
    NoController {
        /// How many ports were tried.
        attempts: usize,
        /// What went wrong on each, joined.
        failures: String,
    },
}

/// Why one launch attempt failed.
enum LaunchFailure {
    /// The port turned out not to be ours (goose could not bind it, or the
    /// peer there is not our goose): worth another port.
    Port(String),
    /// Goose itself failed: another port would not help.
    Fatal(DriverError),
}

/// A running (possibly idle) goose attack and the last metrics read from it.
pub struct GooseDriver {
    controller: Controller,
    /// Every user's transactions pass through it: closed, users stop at once.
    gate: Gate,
    attack: JoinHandle<Result<(), GooseError>>,
    /// Host goose is configured with.
    host: Option<String>,
    /// Users running now (holding seats); 0 while idle.
    users: u64,
    /// Users goose was told to run: at least `users`, more when some wait
    /// for a seat of their class.
    goose_users: u64,
    /// The load test's user classes, as goose weighs them.
    classes: Classes,
    /// Every request the users make, tallied for the next report.
    tap: Tap,
    /// Tests of the worker's error paths: the controller breaks once a
    /// spawn has its users running.
    #[cfg(test)]
    pub(crate) break_after_spawn: bool,
    /// Where each user gets its HTTP client (one TLS setup for all).
    clients: Arc<UserClients>,
    /// The users' TLS trust changed while they ran: the next spawn starts
    /// them anew, so that every user has a client of the new setup.
    trust_changed: bool,
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

    /// Users goose was last told to run.
    pub fn users(&self) -> u64 {
        self.users
    }

    /// Whether goose runs users, seated or still waiting for a seat (a
    /// spawn whose seats did not fill in time still has to be stopped).
    pub fn running(&self) -> bool {
        self.goose_users > 0
    }

    /// Whether goose ended on its own (it handles Ctrl-C itself).
    pub fn has_ended(&self) -> bool {
        self.attack.is_finished()
    }

    /// Chooses goose's coordinated omission mitigation for the users
    /// started from now on; `None` keeps the worker's own (`--co-mitigation`).
    pub fn set_co_mitigation(&self, mode: Option<GooseCoordinatedOmissionMitigation>) {
        self.tap.set_co_mitigation(mode);
    }

    /// Has the users trust `trust` for HTTPS: TLS is set up anew, once,
    /// when it differs from theirs, and users running then are started
    /// anew by the next spawn. Returns whether it differed.
    pub fn set_target_tls(&mut self, trust: &TargetTls) -> Result<bool, DriverError> {
        let changed = self.clients.set_trust(trust)?;
        if changed && self.running() {
            self.trust_changed = true;
        }
        Ok(changed)
    }

    /// Runs exactly `asked` users per class (the master's
    /// `user_classes_count`) against `host` (empty: keep the current one).
    ///
    /// Goose spreads its users over the scenarios by its weights, so the
    /// gate keeps seats per class (see [`Gate`]) and goose gets enough users
    /// for every class to fill its seats: whole rounds of its weighted
    /// allocation, more if a class still lacks users once they all started
    /// (goose's users are only ever added while running; the surplus waits,
    /// parked). A master that names none of our classes gets its total,
    /// spread by goose's weights.
    ///
    /// A change of `urgent` (a `stop` or `quit` arrived) cuts the wait for
    /// seats short: the users started so far run, and the order that
    /// follows decides.
    pub async fn set_classes(
        &mut self,
        host: &str,
        asked: &BTreeMap<String, u64>,
        urgent: &tokio::sync::watch::Receiver<u64>,
    ) -> Result<Spawned, DriverError> {
        let calm = *urgent.borrow();
        let (seats, unknown) = self.classes.seats(asked);
        if !unknown.is_empty() {
            tracing::warn!(
                "the master asked for user classes this load test does not define: {} (it has {})",
                unknown.join(", "),
                self.classes.names.join(", ")
            );
        }
        let seats = seats.map(|seats| cap_seats(seats, MAX_USERS_PER_WORKER));
        let users = match &seats {
            Some(seats) => seats.iter().sum(),
            None => asked
                .values()
                .fold(0u64, |sum, n| sum.saturating_add(*n))
                .min(MAX_USERS_PER_WORKER),
        };
        let host_changes = !host.is_empty() && self.host.as_deref() != Some(host);
        let restart = host_changes || std::mem::take(&mut self.trust_changed);
        let mut spawned = Spawned::default();
        if self.running() && (users == 0 || restart) {
            spawned.flushed = Some(self.stop().await?);
        }
        if users == 0 {
            return Ok(spawned);
        }
        if host_changes {
            self.controller.command(&format!("host {host}")).await?;
            self.host = Some(host.to_string());
        }
        let Some(seats) = seats else {
            self.gate.set_targets(None);
            self.run_goose_users(users).await?;
            self.users = users;
            spawned.classes = asked.clone();
            return Ok(spawned);
        };
        let targets: Vec<usize> = seats
            .iter()
            .map(|n| usize::try_from(*n).unwrap_or(usize::MAX))
            .collect();
        self.gate.set_targets(Some(&targets));
        let mut goose_users = self
            .goose_users
            .max(self.classes.users_for(&seats))
            .min(MAX_USERS_PER_WORKER);
        for _ in 0..SEAT_ROUNDS {
            self.run_goose_users(goose_users).await?;
            let occupancy = self
                .wait_for_seats(&targets, goose_users, || *urgent.borrow() != calm)
                .await;
            if *urgent.borrow() != calm {
                break;
            }
            // A class with fewer goose users than seats: add rounds for it.
            let short = occupancy
                .iter()
                .zip(&targets)
                .zip(&self.classes.weights)
                .map(|((&(seen, _), &want), &w)| {
                    let missing = want.saturating_sub(seen) as u64;
                    missing.div_ceil(w.max(1))
                })
                .max()
                .unwrap_or(0);
            if short == 0 || goose_users >= MAX_USERS_PER_WORKER {
                break;
            }
            goose_users = goose_users
                .saturating_add(short.saturating_mul(self.classes.round()))
                .min(MAX_USERS_PER_WORKER);
        }
        let occupancy = self.gate.occupancy();
        spawned.classes = self
            .classes
            .names
            .iter()
            .zip(&occupancy)
            .filter(|(name, &(_, running))| running > 0 || asked.contains_key(*name))
            .map(|(name, &(_, running))| (name.clone(), running as u64))
            .collect();
        for (name, want) in self.classes.names.iter().zip(&targets) {
            let running = spawned.classes.get(name).copied().unwrap_or(0);
            if running != *want as u64 {
                tracing::warn!("user class {name}: {running} users running of the {want} asked for (goose gave it too few users)");
            }
        }
        self.users = spawned.classes.values().sum();
        #[cfg(test)]
        if self.break_after_spawn {
            self.break_controller().await;
        }
        Ok(spawned)
    }

    /// Tells goose to run `users` users, starting it if idle.
    async fn run_goose_users(&mut self, users: u64) -> Result<(), DriverError> {
        if users == self.goose_users && self.running() {
            return Ok(());
        }
        if self.users == 0 && self.goose_users == 0 {
            self.gate.reset_users();
        }
        self.controller.command(&format!("users {users}")).await?;
        if self.goose_users == 0 {
            self.gate.open();
            self.controller.command("start").await?;
        }
        self.goose_users = users;
        Ok(())
    }

    /// Waits (bounded) until every class's seats are taken, or all of
    /// goose's `goose_users` started and no seat can be taken any more, or
    /// `yield_now` says an urgent order came; returns per class (users
    /// seen, users seated).
    async fn wait_for_seats(
        &self,
        targets: &[usize],
        goose_users: u64,
        yield_now: impl Fn() -> bool,
    ) -> Vec<(usize, usize)> {
        let deadline = tokio::time::Instant::now() + SEAT_PATIENCE;
        loop {
            let occupancy = self.gate.occupancy();
            let seen: usize = occupancy.iter().map(|(seen, _)| seen).sum();
            let settled = occupancy
                .iter()
                .zip(targets)
                .all(|(&(seen_here, seated), &want)| seated >= want || seated >= seen_here);
            let all_started = seen as u64 >= goose_users;
            let filled = occupancy
                .iter()
                .zip(targets)
                .all(|(&(_, seated), &want)| seated >= want);
            if filled
                || (all_started && settled)
                || yield_now()
                || tokio::time::Instant::now() >= deadline
            {
                return occupancy;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Stops the users' requests at once (goose's own stop follows in
    /// [`stop`](Self::stop)) and waits, bounded, for those in flight to
    /// finish; then every request made is in goose's metrics.
    pub async fn halt(&self) {
        if !self.gate.close_and_drain(DRAIN_LIMIT).await {
            tracing::warn!(
                "{} requests were still running {DRAIN_LIMIT:?} after the users were halted",
                self.gate.in_flight()
            );
        }
    }

    /// Stops every user, and waits (bounded) until goose has ended them,
    /// their on-stop transactions run; goose goes idle. Returns the last
    /// requests made, the on-stop ones included.
    pub async fn stop(&mut self) -> Result<StatsReport, DriverError> {
        if self.goose_users == 0 {
            return Ok(self.tap.take(true));
        }
        self.halt().await;
        // No transaction makes a request any more; goose's own stop ends
        // the users, each after its on-stop transactions (a log-out), as
        // Locust's users do when stopped. Their requests belong here.
        match self.controller.command("stop").await {
            Ok(_) => {}
            // Goose ended the run by itself.
            Err(ControllerError::Refused { reply, .. }) => {
                tracing::warn!("goose had already stopped: {reply}");
            }
            Err(err) => return Err(err.into()),
        }
        if !self.gate.wait_users_ended(USERS_END_LIMIT).await {
            tracing::warn!(
                "{} users had not ended {USERS_END_LIMIT:?} after the stop (an on_stop transaction still running?): what they send comes in a later report",
                self.gate.users_alive()
            );
        }
        let last = self.tap.take(true);
        self.users = 0;
        self.goose_users = 0;
        Ok(last)
    }

    /// Requests made since the last call, as a Locust stats delta.
    pub async fn take_delta(&mut self) -> Result<StatsReport, DriverError> {
        Ok(self.tap.take(false))
    }

    /// Transaction errors since the last call: (message, occurrences).
    pub fn take_exceptions(&self) -> Vec<(String, u64)> {
        self.tap.take_exceptions()
    }

    /// Makes every later controller command fail, as a goose that cannot be
    /// steered would (tests of the worker's error paths).
    #[cfg(test)]
    pub(crate) async fn break_controller(&mut self) {
        self.controller.close().await;
    }

    /// Stops goose for good.
    pub async fn shutdown(mut self) {
        let _ = self.controller.command("shutdown").await;
        let _ = tokio::time::timeout(Duration::from_secs(10), &mut self.attack).await;
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

/// Seats capped at `limit` users in all, taken from the largest classes.
fn cap_seats(mut seats: Vec<u64>, limit: u64) -> Vec<u64> {
    let mut excess = seats.iter().sum::<u64>().saturating_sub(limit);
    while excess > 0 {
        let Some(largest) = seats.iter_mut().max() else {
            break;
        };
        let cut = excess.min(*largest).max(1);
        *largest = largest.saturating_sub(cut);
        excess = excess.saturating_sub(cut);
    }
    seats
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

    use super::controller::tests::{listen, serve};
    use super::*;

    async fn idle(_user: &mut GooseUser) -> TransactionResult {
        Ok(())
    }

    fn scenarios() -> Vec<Scenario> {
        vec![scenario!("idle").register_transaction(transaction!(idle))]
    }

    fn options() -> DriverOptions {
        DriverOptions {
            // Never requested: the tests start no users.
            host: Some("http://127.0.0.1:9".into()),
            request_log: None,
            shared_client: false,
            co_mitigation: None,
            target_tls: TargetTls::default(),
        }
    }

    /// Waits until `count` reaches `at_least`, failing with `missing`
    /// after `limit_s` seconds.
    async fn wait_for_count(count: &AtomicUsize, at_least: usize, limit_s: u64, missing: &str) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(limit_s);
        while count.load(Ordering::SeqCst) < at_least {
            assert!(tokio::time::Instant::now() < deadline, "{missing}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn users(n: u64) -> BTreeMap<String, u64> {
        [("WebsiteUser".to_string(), n)].into_iter().collect()
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

    async fn front_page(user: &mut GooseUser) -> TransactionResult {
        let _ = user.get("/").await?;
        Ok(())
    }

    async fn broken_page(user: &mut GooseUser) -> TransactionResult {
        let _ = user.get("/broken").await?;
        Ok(())
    }

    async fn failing_transaction(_user: &mut GooseUser) -> TransactionResult {
        Err(Box::new(goose::goose::TransactionError::Custom(
            "no basket to check out".into(),
        )))
    }

    /// A local target that counts what it serves: `/` answers 200,
    /// `/broken` 503.
    async fn counting_target() -> (String, Arc<AtomicUsize>, Arc<AtomicUsize>) {
        use axum::routing::get;
        let (ok, broken) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let (ok2, broken2) = (ok.clone(), broken.clone());
        let app = axum::Router::new()
            .route(
                "/",
                get(move || {
                    ok2.fetch_add(1, Ordering::SeqCst);
                    async { "hello" }
                }),
            )
            .route(
                "/broken",
                get(move || {
                    broken2.fetch_add(1, Ordering::SeqCst);
                    async { (axum::http::StatusCode::SERVICE_UNAVAILABLE, "no") }
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (url, ok, broken)
    }

    /// The tap and the gate together: a stop's report holds exactly what the
    /// target served, failures and their error text included.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stop_reports_every_request_the_target_served() {
        let (url, ok, broken) = counting_target().await;
        let scenarios = vec![scenario!("WebsiteUser")
            .register_transaction(transaction!(front_page))
            .register_transaction(transaction!(broken_page))
            .register_transaction(transaction!(failing_transaction))];
        let mut driver = GooseDriver::launch(scenarios, &options(), "test-node")
            .await
            .unwrap();
        driver
            .set_classes(&url, &users(4), &tokio::sync::watch::channel(0).1)
            .await
            .unwrap();
        wait_for_count(&ok, 300, 20, "no load reached the target").await;
        let mut report = driver.take_delta().await.unwrap();
        report.absorb(driver.stop().await.unwrap());
        let (ok, broken) = (ok.load(Ordering::SeqCst), broken.load(Ordering::SeqCst));
        assert_eq!(report.stats_total.num_requests as usize, ok + broken);
        assert_eq!(report.stats_total.num_failures as usize, broken);
        let failing = report.errors.values().next().expect("an error row");
        assert!(failing.error.starts_with("503"), "{}", failing.error);
        assert_eq!(failing.occurrences as usize, broken);
        assert!(report.stats_total.total_response_time > 0.0);
        // The transaction that failed on its own is an exception, counted.
        let exceptions = driver.take_exceptions();
        let (msg, count) = exceptions.first().expect("a transaction error");
        assert!(msg.contains("no basket to check out"), "{msg}");
        assert!(*count > 0);
        driver.shutdown().await;
    }

    /// `/` read in full: its 5-byte body counts.
    async fn read_front_page(user: &mut GooseUser) -> TransactionResult {
        let goose = user.get_named("/", "read").await?;
        let _ = crate::worker::read_body(user, goose).await;
        Ok(())
    }

    /// `/` without reading the body.
    async fn unread_front_page(user: &mut GooseUser) -> TransactionResult {
        let _ = user.get_named("/", "unread").await?;
        Ok(())
    }

    /// Tasks picked by weight (`swarm::locust`) are one goose transaction:
    /// their requests all carry the picker's transaction index, which the
    /// tap keys its body notes by. A task that reads its bodies and one
    /// that does not are both counted, each request once, under its own
    /// name, and only the read bodies' sizes.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn picked_tasks_are_counted_whether_they_read_bodies_or_not() {
        let (url, ok, _) = counting_target().await;
        let tasks = crate::locust::pick_by_weight([
            (1, transaction!(read_front_page)),
            (1, transaction!(unread_front_page)),
        ])
        .unwrap();
        let scenarios = vec![scenario!("WebsiteUser").register_transaction(tasks)];
        let mut driver = GooseDriver::launch(scenarios, &options(), "test-node")
            .await
            .unwrap();
        driver
            .set_classes(&url, &users(4), &tokio::sync::watch::channel(0).1)
            .await
            .unwrap();
        wait_for_count(&ok, 400, 20, "no load reached the target").await;
        let mut report = driver.take_delta().await.unwrap();
        report.absorb(driver.stop().await.unwrap());
        driver.shutdown().await;
        let row = |name: &str| {
            report
                .stats
                .iter()
                .find(|e| e.name == name)
                .map(|e| (e.num_requests, e.total_content_length))
                .unwrap_or_default()
        };
        let ((read, read_bytes), (unread, unread_bytes)) = (row("read"), row("unread"));
        assert_eq!(read + unread, ok.load(Ordering::SeqCst) as u64);
        assert!(read > 100 && unread > 100, "{read} read, {unread} unread");
        assert_eq!(read_bytes, 5 * read, "\"hello\" per read request");
        assert_eq!(unread_bytes, 0);
    }

    async fn log_in(user: &mut GooseUser) -> TransactionResult {
        let _ = user.get("/login").await?;
        Ok(())
    }

    async fn account(user: &mut GooseUser) -> TransactionResult {
        let _ = user.get("/account").await?;
        Ok(())
    }

    /// Each user keeps its own cookies: users log in once (on start), then
    /// every page that needs the session gets it — one session per user.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn each_user_keeps_its_own_session() {
        use axum::http::{header, HeaderMap, StatusCode};
        use std::collections::BTreeSet;
        use std::sync::Mutex;
        let issued = Arc::new(AtomicUsize::new(0));
        let seen: Arc<Mutex<BTreeSet<String>>> = Arc::default();
        let (served, refused) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let (seen2, served2, refused2) = (seen.clone(), served.clone(), refused.clone());
        let app = axum::Router::new()
            .route(
                "/login",
                axum::routing::get(move || {
                    let id = issued.fetch_add(1, Ordering::SeqCst);
                    async move {
                        (
                            [(header::SET_COOKIE, format!("session=s{id}; Path=/"))],
                            "in",
                        )
                    }
                }),
            )
            .route(
                "/account",
                axum::routing::get(move |headers: HeaderMap| {
                    let session = headers
                        .get(header::COOKIE)
                        .and_then(|c| c.to_str().ok())
                        .and_then(|c| c.split("session=").nth(1))
                        .map(|s| s.split(';').next().unwrap_or(s).to_string());
                    let status = match session {
                        Some(session) => {
                            seen2.lock().map(|mut s| s.insert(session)).ok();
                            served2.fetch_add(1, Ordering::SeqCst);
                            StatusCode::OK
                        }
                        None => {
                            refused2.fetch_add(1, Ordering::SeqCst);
                            StatusCode::UNAUTHORIZED
                        }
                    };
                    async move { status }
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        let scenarios = vec![scenario!("Member")
            .register_transaction(transaction!(log_in).set_on_start())
            .register_transaction(transaction!(account))];
        let mut driver = GooseDriver::launch(scenarios, &options(), "test-node")
            .await
            .unwrap();
        let members = [("Member".to_string(), 4)].into_iter().collect();
        driver
            .set_classes(&url, &members, &tokio::sync::watch::channel(0).1)
            .await
            .unwrap();
        wait_for_count(&served, 200, 20, "no session reached /account").await;
        driver.stop().await.unwrap();
        driver.shutdown().await;
        assert_eq!(
            refused.load(Ordering::SeqCst),
            0,
            "every request carried its session"
        );
        let sessions = seen.lock().map(|s| s.len()).unwrap_or(0);
        assert_eq!(sessions, 4, "one session per user");
    }

    /// A target that stalls: every 25th request waits 150 ms, the rest
    /// answer at once. Returns its URL and how many requests it served.
    async fn stalling_target() -> (String, Arc<AtomicUsize>) {
        let served = Arc::new(AtomicUsize::new(0));
        let counter = served.clone();
        let app = axum::Router::new().route(
            "/",
            axum::routing::get(move || {
                let n = counter.fetch_add(1, Ordering::SeqCst);
                async move {
                    if n % 25 == 24 {
                        tokio::time::sleep(Duration::from_millis(150)).await;
                    }
                    "hello"
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (url, served)
    }

    /// With goose's mitigation on, a stalled target's figures are corrected
    /// and marked: back-filled requests in the histogram only, the requests
    /// themselves counted once; the same load without it has none.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stalled_target_with_mitigation_gives_corrected_figures() {
        for co in [Some(GooseCoordinatedOmissionMitigation::Average), None] {
            let (url, served) = stalling_target().await;
            let scenarios =
                vec![scenario!("WebsiteUser").register_transaction(transaction!(front_page))];
            let options = DriverOptions {
                co_mitigation: co.clone(),
                ..options()
            };
            let mut driver = GooseDriver::launch(scenarios, &options, "test-node")
                .await
                .unwrap();
            driver
                .set_classes(&url, &users(2), &tokio::sync::watch::channel(0).1)
                .await
                .unwrap();
            wait_for_count(&served, 400, 30, "the target barely served").await;
            let mut report = driver.take_delta().await.unwrap();
            report.absorb(driver.stop().await.unwrap());
            driver.shutdown().await;
            let total = &report.stats_total;
            assert_eq!(total.num_requests as usize, served.load(Ordering::SeqCst));
            let p99 = total.percentile_ms(0.99);
            eprintln!(
                "co {co:?}: {} requests, {} back-filled, p50 {:.3} ms, p95 {:.3} ms, p99 {p99:.3} ms, source {}",
                total.num_requests,
                total.backfilled,
                total.percentile_ms(0.5),
                total.percentile_ms(0.95),
                total.percentile_source()
            );
            if co.is_some() {
                assert!(total.backfilled > 0, "no request was back-filled");
                assert!(total.co_corrected());
                assert_eq!(total.percentile_source(), "hdr+co");
                // On the wire too, for the master.
                let entry = crate::stats::StatsEntry::from_value(&total.to_value()).unwrap();
                assert_eq!(entry.backfilled, total.backfilled);
                assert_eq!(entry.percentile_source(), "hdr+co");
            } else {
                assert_eq!(total.backfilled, 0);
                assert_eq!(total.percentile_source(), "hdr");
            }
        }
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
