//! Deploy recipes: per role, the list of [`Step`]s that bring a host to its
//! desired state. Every step is idempotent (running a deploy again stops and
//! replaces what the last one started), and each names the command a person
//! would look at when it fails.
//!
//! - `facts`: what a host is (architecture, hostname, init system, sudo).
//! - `webserver`: nginx with spotload's own config and static page, on :80.
//! - `delivery`: the `loadtest` binary onto a host, by digest: uploaded to the
//!   master once, served by it to the other hosts, fetched by them.
//! - `loadtest`: install the shipped binary; start `loadtest master` or
//!   `loadtest worker` as a systemd unit where systemd runs, otherwise as a
//!   detached process with a pid file.
//!
//! Everything spotload puts on a host lives under [`BASE`] (plus the
//! `spotload-*.service` units), so a host is cleaned by removing that.

mod delivery;
mod facts;
mod loadtest;
mod service;
mod webserver;

use std::sync::Arc;
use std::time::Duration;

pub use delivery::{
    fetch_step, receive_step, serve_start_step, serve_stop_step, stage_step, SHIP_DIR, SHIP_PORT,
};
pub use facts::{elf_arch, Facts};
pub use loadtest::{
    master_api, master_steps, worker_start_steps, worker_stop_steps, MasterConfig, TargetTrust,
    UiTls, JOIN_SECRET_FILE, UI_CERT,
};
pub use webserver::webserver_steps;

use super::script::Privilege;
use super::{Output, RemoteError, Shell};

/// Where spotload keeps its files on a host.
pub const BASE: &str = "/opt/spotload";
/// The master's web UI and API port (Locust's).
pub const WEB_PORT: u16 = 8089;
/// The port workers join the master on (Locust's).
pub const MASTER_PORT: u16 = 5557;

/// One named, idempotent piece of a recipe.
#[derive(Clone)]
pub struct Step {
    /// What the step does, for progress lines: "install nginx".
    pub name: String,
    /// The command that matters in it, for error messages.
    pub command: String,
    /// The shell script, run as root.
    pub script: String,
    /// Standard input for the script (an upload).
    pub input: Option<Arc<Vec<u8>>>,
    /// The most the step may take.
    pub limit: Duration,
}

impl Step {
    fn new(name: impl Into<String>, command: impl Into<String>, script: String) -> Step {
        Step {
            name: name.into(),
            command: command.into(),
            script,
            input: None,
            limit: Duration::from_secs(120),
        }
    }

    fn limit(mut self, limit: Duration) -> Step {
        self.limit = limit;
        self
    }
}

/// Shows a step without its input: an upload is megabytes, and the join
/// secret's input is the secret itself.
impl std::fmt::Debug for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Step")
            .field("name", &self.name)
            .field("command", &self.command)
            .field("script", &self.script)
            .field(
                "input",
                &self.input.as_ref().map(|i| format!("<{} bytes>", i.len())),
            )
            .field("limit", &self.limit)
            .finish()
    }
}

/// A step that did not succeed: everything the error message needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepFailure {
    /// The step's name, e.g. "install nginx".
    pub step: String,
    /// The command that matters in it (empty for host-wide failures).
    pub command: String,
    /// "exit status 1", "did not finish within 120s", an SSH error.
    pub reason: String,
    /// The command's output (the last lines).
    pub output: String,
}

/// Lines of output kept in a failure.
const OUTPUT_TAIL: usize = 25;

/// Runs `step` as root on `shell`; a non-zero exit is a [`StepFailure`].
pub async fn run_step(
    shell: &impl Shell,
    privilege: Privilege,
    step: &Step,
) -> Result<Output, StepFailure> {
    let command = privilege.wrap(&step.script);
    let outcome = tokio::time::timeout(step.limit, shell.run(&command, step.input.clone())).await;
    let failure = |reason: String, output: &str| StepFailure {
        step: step.name.clone(),
        command: step.command.clone(),
        reason,
        output: tail(output, OUTPUT_TAIL),
    };
    match outcome {
        Err(_) => Err(failure(
            format!("did not finish within {:?}", step.limit),
            "",
        )),
        Ok(Err(err)) => Err(failure(err.to_string(), "")),
        Ok(Ok(out)) if out.success() => Ok(out),
        Ok(Ok(out)) => Err(failure(out.status_text(), &out.combined())),
    }
}

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.trim_end().lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// An SSH failure as a step failure (connecting, gathering facts).
pub fn failure_from(step: &str, err: &RemoteError) -> StepFailure {
    StepFailure {
        step: step.into(),
        command: String::new(),
        reason: err.to_string(),
        output: String::new(),
    }
}
