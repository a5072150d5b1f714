//! The [`Host`] abstraction: where a machine is and how to log in, and
//! [`Shell`], what deploy recipes need from a machine (run a shell command,
//! with optional input, and get its status and output).
//!
//! [`super::Session`] implements `Shell` over SSH; [`Local`] implements it
//! with local processes, so recipes can be exercised without a network.

use std::fmt;
use std::future::Future;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;

use tokio::io::AsyncWriteExt;

use super::RemoteError;

/// A machine reachable over SSH.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    /// IP address or name to connect to.
    pub address: String,
    /// SSH port, usually 22.
    pub port: u16,
    /// Log-in user (`ec2-user` on Amazon Linux, `ubuntu` on Ubuntu).
    pub user: String,
    /// Private key file (RSA PEM or OpenSSH format, ed25519 or RSA).
    pub key: PathBuf,
}

impl Host {
    /// `address` or `address:port`, as errors and progress lines name it.
    pub fn label(&self) -> String {
        match (self.port, self.address.contains(':')) {
            (22, _) => self.address.clone(),
            (port, true) => format!("[{}]:{port}", self.address),
            (port, false) => format!("{}:{port}", self.address),
        }
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.label())
    }
}

/// A finished command.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Output {
    /// The exit status; `None` when the command ended without one (killed
    /// by a signal, or the connection dropped).
    pub status: Option<u32>,
    /// Standard output, decoded lossily as UTF-8.
    pub stdout: String,
    /// Standard error, decoded lossily as UTF-8.
    pub stderr: String,
}

impl Output {
    /// True when the command exited with status 0.
    pub fn success(&self) -> bool {
        self.status == Some(0)
    }

    /// stdout and stderr together, trimmed, for an error message.
    pub fn combined(&self) -> String {
        let mut text = self.stdout.trim_end().to_string();
        let err = self.stderr.trim_end();
        if !err.is_empty() {
            if !text.is_empty() {
                text.push('\n');
            }
            text.push_str(err);
        }
        text
    }

    /// "exit status 3", "no exit status".
    pub fn status_text(&self) -> String {
        match self.status {
            Some(code) => format!("exit status {code}"),
            None => "no exit status (killed, or the connection dropped)".into(),
        }
    }
}

/// Runs POSIX shell commands on one machine.
pub trait Shell: Send + Sync {
    /// Runs `command` with `sh -c` semantics; `input`, when given, is its
    /// standard input (then closed). Returns once the command's output has
    /// ended, whatever its exit status.
    fn run(
        &self,
        command: &str,
        input: Option<Arc<Vec<u8>>>,
    ) -> impl Future<Output = Result<Output, RemoteError>> + Send;
}

/// This machine, through `sh -c`.
#[derive(Debug, Clone, Default)]
pub struct Local;

impl Shell for Local {
    async fn run(&self, command: &str, input: Option<Arc<Vec<u8>>>) -> Result<Output, RemoteError> {
        let failed = |detail: String| RemoteError::Ssh {
            host: "localhost".into(),
            action: "local command",
            detail,
        };
        let mut child = tokio::process::Command::new("sh")
            .arg("-c")
            .arg(command)
            .stdin(if input.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|err| failed(format!("cannot start sh: {err}")))?;
        if let (Some(bytes), Some(mut stdin)) = (input, child.stdin.take()) {
            // A command that does not read its input closes the pipe early:
            // that is its business, its status tells.
            let _ = stdin.write_all(&bytes).await;
        }
        let out = child
            .wait_with_output()
            .await
            .map_err(|err| failed(err.to_string()))?;
        Ok(Output {
            status: out.status.code().and_then(|c| u32::try_from(c).ok()),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_show_a_port_only_when_not_22() {
        let host = |address: &str, port| Host {
            address: address.into(),
            port,
            user: "u".into(),
            key: "k".into(),
        };
        assert_eq!(host("10.0.0.1", 22).label(), "10.0.0.1");
        assert_eq!(host("10.0.0.1", 2222).label(), "10.0.0.1:2222");
        assert_eq!(host("fd00::1", 2222).label(), "[fd00::1]:2222");
    }

    #[tokio::test]
    async fn local_shell_reports_status_output_and_reads_input() {
        let out = Local
            .run("cat; echo err >&2; exit 3", Some(Arc::new(b"hi".to_vec())))
            .await
            .unwrap();
        assert_eq!(out.status, Some(3));
        assert_eq!(out.stdout, "hi");
        assert_eq!(out.combined(), "hi\nerr");
        assert!(!out.success());
    }
}
