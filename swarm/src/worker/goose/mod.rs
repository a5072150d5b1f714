//! Everything that talks to goose, behind one [`GooseDriver`]: the
//! worker starts goose with it ([`launch`]), runs the master's users per
//! class ([`seats`]), takes stats deltas from it and stops it ([`stop`]).
//! The rest of the worker knows goose only through it.
//!
//! One request's path through the adapter, in the order it meets the
//! files (set up once by `launch.rs`, which wraps every scenario: the
//! client install first, then the gate around every transaction):
//!
//! ```text
//! gate/        goose runs a user's transaction through the gate's wrapper
//!              (wrap.rs): the user is attached to the tap on its first one,
//!              then runs only with a seat of its class (mod.rs); without
//!              one it parks, and the park is noted to the tap
//!   |
//! client.rs    the user's first on-start transaction gave it its own HTTP
//!              client (one TLS setup for all); goose sends the request
//!              with it and times it to the response's headers
//!   |
//! tap.rs       goose's record of the request comes down the user's log
//!              channel; read_body / read_response add a note (the body's
//!              size and time to its last byte); a verdict (set_success,
//!              set_failure) comes down the user's metrics channel
//!   |
//! tally/       the tap folds what came into the tally every 20 ms, per
//!              (method, name): bodies, verdicts, back-fills of stalls;
//!              requests without a response are logged by failure_log.rs
//!   |
//! report       the Worker takes the tally as a Locust stats delta:
//!              GooseDriver::take_delta (mod.rs), or the last one from
//!              GooseDriver::stop (stop.rs) once the gate has drained
//! ```
//!
//! In the open model (an arrival rate) the gate also holds each user at
//! the first transaction of its pass until the worker's schedule
//! ([`crate::worker::arrival`]) gives it a start, and counts the starts no
//! user was free for; the tally measures the pass's first request from
//! when it was due.
//!
//! Off that path, [`controller`] is goose's WebSocket Controller: the only
//! way `launch.rs`, `seats.rs` and `stop.rs` steer goose (its users, host,
//! start and stop).

mod client;
pub mod controller;
mod failure_log;
mod gate;
mod launch;
mod seats;
mod stop;
mod tally;
mod tap;
#[cfg(test)]
mod tests;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use goose::metrics::GooseCoordinatedOmissionMitigation;
use goose::prelude::{GooseError, GooseUser, TransactionResult};
use tokio::task::JoinHandle;

use crate::stats::StatsReport;
use crate::target_tls::TargetTls;
use client::UserClients;
use controller::{Controller, ControllerError};
use gate::Gate;
use seats::Classes;
use tap::Tap;

pub use crate::protocol::MAX_USERS_PER_WORKER;
pub use client::{user_client_builder, UserClientError};
pub use failure_log::FAILURE_LOG_WINDOW;
pub(crate) use gate::pause;
pub use launch::DriverOptions;
pub use seats::Spawned;
pub use tap::{read_body, read_response, ReadResponse};

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

/// A running (possibly idle) goose attack, steered through its controller,
/// with the gate its users pass and the tap their requests are tallied in.
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

    /// Runs the open model at `rate` iterations per second (this worker's
    /// share of the swarm's), or the closed model (`None`). See the gate.
    pub fn set_arrival_rate(&self, rate: Option<f64>) {
        self.tap.set_open(rate.is_some());
        self.gate.set_arrival_rate(rate);
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

    /// Requests made since the last call, as a Locust stats delta.
    pub async fn take_delta(&mut self) -> Result<StatsReport, DriverError> {
        let mut report = self.tap.take(false);
        report.dropped_iterations = self.gate.take_dropped();
        Ok(report)
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
}

/// What a transaction function of goose's returns.
type TransactionFuture<'r> = Pin<Box<dyn Future<Output = TransactionResult> + Send + 'r>>;

/// A closure as a goose transaction function (the gate's wrappers, the
/// users' client install): pins down its higher-ranked signature for the
/// compiler.
fn transaction_fn<F>(f: F) -> F
where
    F: for<'r> Fn(&'r mut GooseUser) -> TransactionFuture<'r> + Send + Sync + 'static,
{
    f
}

/// The greatest common divisor, by which goose reduces weights (of its
/// scenarios, of a scenario's transactions).
fn gcd(a: usize, b: usize) -> usize {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}
