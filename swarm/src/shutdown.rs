//! One way for a process to end: a [`Shutdown`] made once in `main`,
//! triggered by SIGINT or SIGTERM (or by code: a spot notice, a master task
//! that died), and passed down to every long-lived task, which ends its work
//! cleanly when it fires — a worker sends its last stats and `quit`, a
//! headless master writes its reports, the web server drains.
//!
//! Library code never waits for a signal itself; it waits for
//! [`Shutdown::requested`].

use std::sync::{Arc, OnceLock};

use tokio_util::sync::CancellationToken;

/// Why the process is ending.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// SIGINT: the user pressed Ctrl-C.
    Interrupt,
    /// SIGTERM: a service manager (systemd stop or restart, a redeploy, the
    /// shutdown after a spot reclaim) asked the process to end.
    Terminate,
    /// The cloud will reclaim this spot instance.
    SpotInterruption,
    /// Something inside the process failed and ends it.
    Failure,
}

impl Reason {
    /// The reason in a few words, for logs (`Ctrl-C`, `SIGTERM`...).
    pub fn describe(self) -> &'static str {
        match self {
            Reason::Interrupt => "Ctrl-C",
            Reason::Terminate => "SIGTERM",
            Reason::SpotInterruption => "a spot interruption notice",
            Reason::Failure => "an internal failure",
        }
    }

    /// The conventional exit code for a process ended by this.
    pub fn exit_code(self) -> u8 {
        match self {
            Reason::Interrupt => 130,
            Reason::Terminate => 143,
            Reason::SpotInterruption => 0,
            Reason::Failure => 1,
        }
    }
}

/// The process's one cancellation: clone it freely, trigger it once.
#[derive(Debug, Clone, Default)]
pub struct Shutdown {
    token: CancellationToken,
    /// The first reason given; later ones are ignored.
    reason: Arc<OnceLock<Reason>>,
}

impl Shutdown {
    /// A shutdown no one has asked for yet; clone it to share it.
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts the task that turns SIGINT and SIGTERM into [`Shutdown::trigger`].
    /// A second signal after the first ends the process at once, for a user
    /// who does not want to wait for the clean end. Needs a tokio runtime.
    pub fn watch_signals(&self) -> std::io::Result<()> {
        use tokio::signal::unix::{signal, SignalKind};
        let mut interrupt = signal(SignalKind::interrupt())?;
        let mut terminate = signal(SignalKind::terminate())?;
        let shutdown = self.clone();
        tokio::spawn(async move {
            loop {
                let reason = tokio::select! {
                    Some(()) = interrupt.recv() => Reason::Interrupt,
                    Some(()) = terminate.recv() => Reason::Terminate,
                    else => return,
                };
                if shutdown.is_requested() {
                    eprintln!("{}: a second signal; exiting now", reason.describe());
                    std::process::exit(i32::from(reason.exit_code()));
                }
                tracing::info!("{}: finishing cleanly", reason.describe());
                shutdown.trigger(reason);
            }
        });
        Ok(())
    }

    /// Asks everything to end; the first reason sticks.
    pub fn trigger(&self, reason: Reason) {
        let _ = self.reason.set(reason);
        self.token.cancel();
    }

    /// Resolves once the process should end.
    pub async fn requested(&self) {
        self.token.cancelled().await;
    }

    /// Whether the end was asked for, without waiting.
    pub fn is_requested(&self) -> bool {
        self.token.is_cancelled()
    }

    /// Why, once triggered.
    pub fn reason(&self) -> Option<Reason> {
        self.reason.get().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_first_reason_sticks_and_every_clone_hears_it() {
        let shutdown = Shutdown::new();
        let clone = shutdown.clone();
        assert!(!clone.is_requested());
        shutdown.trigger(Reason::Terminate);
        shutdown.trigger(Reason::Interrupt);
        clone.requested().await;
        assert_eq!(clone.reason(), Some(Reason::Terminate));
    }
}
