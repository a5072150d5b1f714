//! A client for goose's telnet Controller, the control interface through
//! which the worker steers its goose attack: users, rate, start, stop,
//! metrics, shutdown.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const PROMPT: &[u8] = b"goose> ";

/// How long one controller command may take before the worker gives up on
/// goose; goose itself answers within its own 5 s control timeout.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    #[error("goose controller at {addr}: {source}")]
    Io {
        addr: String,
        source: std::io::Error,
    },
    #[error("goose controller did not answer `{command}` within {COMMAND_TIMEOUT:?}")]
    Timeout { command: String },
    #[error("goose refused `{command}`: {reply}")]
    Refused { command: String, reply: String },
}

/// One telnet connection to goose's controller.
pub struct Controller {
    stream: TcpStream,
    addr: String,
}

impl Controller {
    /// Connects, retrying while goose is still starting its listener.
    pub async fn connect(addr: &str, patience: Duration) -> Result<Self, ControllerError> {
        let deadline = tokio::time::Instant::now() + patience;
        loop {
            match TcpStream::connect(addr).await {
                Ok(stream) => {
                    let _ = stream.set_nodelay(true);
                    let mut controller = Controller {
                        stream,
                        addr: addr.to_string(),
                    };
                    controller.read_reply("connect").await?;
                    return Ok(controller);
                }
                Err(source) if tokio::time::Instant::now() >= deadline => {
                    return Err(ControllerError::Io {
                        addr: addr.to_string(),
                        source,
                    })
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }

    /// Sends one command and returns goose's reply text (without prompt).
    pub async fn command(&mut self, command: &str) -> Result<String, ControllerError> {
        let line = format!("{command}\n");
        self.stream
            .write_all(line.as_bytes())
            .await
            .map_err(|source| ControllerError::Io {
                addr: self.addr.clone(),
                source,
            })?;
        let reply = self.read_reply(command).await;
        if command != "metricsjson" {
            tracing::debug!("goose controller: {command:?} -> {reply:?}");
        }
        reply
    }

    /// Sends a command that must be accepted; goose's refusals are text
    /// replies, recognised by the words goose uses for them.
    pub async fn expect_ok(&mut self, command: &str) -> Result<String, ControllerError> {
        let reply = self.command(command).await?;
        let lower = reply.to_ascii_lowercase();
        if [
            "unable",
            "invalid",
            "unrecognized",
            "must be",
            "refused",
            "error",
            "failed",
            "not ",
        ]
        .iter()
        .any(|w| lower.contains(w))
        {
            return Err(ControllerError::Refused {
                command: command.to_string(),
                reply,
            });
        }
        Ok(reply)
    }

    async fn read_reply(&mut self, command: &str) -> Result<String, ControllerError> {
        let read = async {
            let mut buf = Vec::with_capacity(4096);
            let mut chunk = [0u8; 16 * 1024];
            while !buf.ends_with(PROMPT) {
                let n = self.stream.read(&mut chunk).await?;
                if n == 0 {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "goose closed the controller connection",
                    ));
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            buf.truncate(buf.len() - PROMPT.len());
            Ok(String::from_utf8_lossy(&buf).trim().to_string())
        };
        match tokio::time::timeout(COMMAND_TIMEOUT, read).await {
            Ok(Ok(text)) => Ok(text),
            Ok(Err(source)) => Err(ControllerError::Io {
                addr: self.addr.clone(),
                source,
            }),
            Err(_) => Err(ControllerError::Timeout {
                command: command.to_string(),
            }),
        }
    }
}
