//! Child processes of `spotload local`, stopped together. Each child asks
//! the kernel for SIGTERM when spotload dies, so none outlives it.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use tokio::process::{Child, Command};

/// Index of a spawned child.
pub type ChildId = usize;

/// A command whose process gets SIGTERM when spotload dies, so it cannot
/// outlive it (nginx then stops its own workers too). It runs in a process
/// group of its own: a terminal's Ctrl-C reaches spotload alone, which
/// passes it on once (a second SIGINT would make the master skip its
/// summary and exit at once).
pub fn tied_to_parent(program: &Path) -> Command {
    let mut command = Command::new(program);
    command.kill_on_drop(true);
    command.process_group(0);
    // SAFETY: prctl is async-signal-safe and touches only this child.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    command
}

/// Sends `signal` to a child that has not been reaped yet.
pub fn signal_child(child: &Child, signal: i32) {
    if let Some(pid) = child.id() {
        // SAFETY: kill(2) on a pid we spawned and have not reaped.
        unsafe {
            libc::kill(pid as i32, signal);
        }
    }
}

/// SIGTERM, then SIGKILL if it is still there after `grace`.
pub async fn terminate(name: &str, child: &mut Child, grace: Duration) {
    signal_child(child, libc::SIGTERM);
    wait_or_kill(name, child, grace).await;
}

/// Waits up to `grace` for a child already asked to stop; SIGKILL after.
async fn wait_or_kill(name: &str, child: &mut Child, grace: Duration) {
    if tokio::time::timeout(grace, child.wait()).await.is_err() {
        tracing::warn!("the {name} did not stop within {grace:?}; killing it");
        let _ = child.kill().await;
    }
}

/// The processes `spotload local` started (master, workers), by [`ChildId`]
/// and name, so they can be awaited, signalled and stopped together.
#[derive(Default)]
pub struct Children {
    running: BTreeMap<ChildId, (String, Child)>,
    next: ChildId,
}

impl Children {
    /// Starts `program args`, sharing this terminal's stderr.
    pub fn spawn(
        &mut self,
        name: &str,
        program: &Path,
        args: &[String],
        stdout: std::process::Stdio,
    ) -> anyhow::Result<ChildId> {
        let mut command = tied_to_parent(program);
        // The run passes its own secret file; one in spotload's environment
        // is not for these children.
        command
            .args(args)
            .stdout(stdout)
            .env_remove(swarm::protocol::JOIN_SECRET_ENV);
        let child = command
            .spawn()
            .with_context(|| format!("cannot start the {name} ({})", program.display()))?;
        let id = self.next;
        self.next += 1;
        self.running.insert(id, (name.to_string(), child));
        Ok(id)
    }

    /// Waits for one child to exit; its exit code (128+signal if killed).
    pub async fn wait_for(&mut self, id: ChildId) -> anyhow::Result<i32> {
        use std::os::unix::process::ExitStatusExt;
        let (name, child) = self.running.get_mut(&id).context("no such child")?;
        let status = child
            .wait()
            .await
            .with_context(|| format!("waiting for the {name}"))?;
        Ok(status
            .code()
            .unwrap_or_else(|| 128 + status.signal().unwrap_or(0)))
    }

    /// [`Children::wait_for`] for at most `limit`; `None` when the child is still
    /// running then (or waiting failed).
    pub async fn wait_for_timeout(&mut self, id: ChildId, limit: Duration) -> Option<i32> {
        tokio::time::timeout(limit, self.wait_for(id))
            .await
            .ok()
            .and_then(Result::ok)
    }

    /// Sends `signal` (e.g. `libc::SIGINT`) to one child, if it still runs.
    pub fn signal(&self, id: ChildId, signal: i32) {
        if let Some((_, child)) = self.running.get(&id) {
            signal_child(child, signal);
        }
    }

    /// Gives every child still running up to `own` to exit by itself (a
    /// master that ended its run has told its workers to quit), then one
    /// SIGTERM to each one left, then SIGKILL after `grace`.
    pub async fn stop_all(&mut self, own: Duration, grace: Duration) {
        let _ = tokio::time::timeout(own, async {
            for (_, child) in self.running.values_mut() {
                let _ = child.wait().await;
            }
        })
        .await;
        for (_, child) in self.running.values_mut() {
            if matches!(child.try_wait(), Ok(None)) {
                signal_child(child, libc::SIGTERM);
            }
        }
        for (name, child) in self.running.values_mut() {
            wait_or_kill(name, child, grace).await;
        }
        self.running.clear();
    }
}
