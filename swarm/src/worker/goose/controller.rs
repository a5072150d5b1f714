//! A client for goose's WebSocket Controller, the control interface through
//! which the worker steers its goose attack: users, rate, start, stop,
//! configuration, metrics, shutdown.
//!
//! Each command travels as goose's `ControllerWebSocketRequest`
//! (`{"request": "<command>"}`) and is answered with one
//! `ControllerWebSocketResponse` (`{"response": String, "success": bool}`).
//! Whether goose accepted a command is its `success` flag, never the wording
//! of its reply: `success: false` is [`ControllerError::Refused`]. The JSON
//! commands (`config-json`, `metrics-json`) carry their JSON text in
//! `response`.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// How long one controller command may take before the worker gives up on
/// goose; goose itself answers within its own 15 s control timeout (and
/// then with `success: false`), so this only fires on a goose that hangs.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(16);

/// How long the WebSocket handshake may take once the TCP connection is up.
/// Goose accepts as soon as its listener is bound, so only a foreign,
/// silent service on the port makes this wait.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a command to goose's controller did not get a successful answer.
#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    /// The TCP connection to the controller failed.
    #[error("goose controller at {addr}: {source}")]
    Io {
        /// The controller's `host:port`.
        addr: String,
        /// The socket error.
        source: std::io::Error,
    },
    /// The WebSocket handshake or a frame failed.
    #[error("goose controller at {addr}: WebSocket: {source}")]
    WebSocket {
        /// The controller's `host:port`.
        addr: String,
        /// The WebSocket library's error.
        source: Box<tokio_tungstenite::tungstenite::Error>,
    },
    /// Goose did not answer in time (it hangs).
    #[error("goose controller did not answer `{command}` within {timeout:?}")]
    Timeout {
        /// The command sent, e.g. `users 10`.
        command: String,
        /// How long the worker waited.
        timeout: Duration,
    },
    /// Goose closed the WebSocket before answering (it is shutting down).
    #[error("goose controller closed the connection before answering `{command}`")]
    Closed {
        /// The command sent.
        command: String,
    },
    /// The answer was not a `ControllerWebSocketResponse`.
    #[error(
        "goose controller answered `{command}` with something not a controller response: {reply}"
    )]
    Malformed {
        /// The command sent.
        command: String,
        /// What came back, as text.
        reply: String,
    },
    /// Goose answered `success: false`.
    #[error("goose refused `{command}`: {reply}")]
    Refused {
        /// The command sent.
        command: String,
        /// Goose's `response` text, saying why.
        reply: String,
    },
}

/// Goose's `ControllerWebSocketRequest`.
#[derive(Debug, Serialize)]
struct Request<'a> {
    request: &'a str,
}

/// Goose's `ControllerWebSocketResponse`.
#[derive(Debug, Deserialize, PartialEq)]
pub(crate) struct Response {
    pub(crate) response: String,
    pub(crate) success: bool,
}

impl Response {
    /// Reads one reply to `command`: goose's text, or `Refused` when goose
    /// says it did not succeed.
    pub(crate) fn parse(command: &str, text: &str) -> Result<String, ControllerError> {
        let reply: Response =
            serde_json::from_str(text).map_err(|_| ControllerError::Malformed {
                command: command.to_string(),
                reply: text.chars().take(200).collect(),
            })?;
        if reply.success {
            Ok(reply.response)
        } else {
            Err(ControllerError::Refused {
                command: command.to_string(),
                reply: reply.response,
            })
        }
    }
}

/// One WebSocket connection to goose's controller.
pub struct Controller {
    socket: WebSocketStream<TcpStream>,
    addr: String,
    timeout: Duration,
}

impl Controller {
    /// Connects to the WebSocket Controller at `addr` (`host:port`),
    /// retrying the TCP connection while goose is still starting its
    /// listener, within `patience`. A failed handshake is not retried: goose
    /// accepts as soon as it listens, so that is not goose.
    pub async fn connect(addr: &str, patience: Duration) -> Result<Self, ControllerError> {
        let deadline = tokio::time::Instant::now() + patience;
        let stream = loop {
            match TcpStream::connect(addr).await {
                Ok(stream) => break stream,
                Err(source) if tokio::time::Instant::now() >= deadline => {
                    return Err(ControllerError::Io {
                        addr: addr.to_string(),
                        source,
                    })
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(25)).await,
            }
        };
        let _ = stream.set_nodelay(true);
        let url = format!("ws://{addr}/");
        let handshake = tokio_tungstenite::client_async(url, stream);
        let socket = match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await {
            Ok(Ok((socket, _response))) => socket,
            Ok(Err(source)) => {
                return Err(ControllerError::WebSocket {
                    addr: addr.to_string(),
                    source: Box::new(source),
                })
            }
            Err(_) => {
                return Err(ControllerError::Timeout {
                    command: "WebSocket handshake".into(),
                    timeout: HANDSHAKE_TIMEOUT,
                })
            }
        };
        Ok(Controller {
            socket,
            addr: addr.to_string(),
            timeout: COMMAND_TIMEOUT,
        })
    }

    /// Closes the connection to goose's controller, so every later command
    /// fails (tests of what the worker does when goose cannot be steered).
    #[cfg(test)]
    pub(crate) async fn close(&mut self) {
        // Goose may never answer the close: do not wait for it.
        let close = self.socket.close(None);
        let _ = tokio::time::timeout(Duration::from_millis(200), close).await;
    }

    /// Sends one command and returns goose's reply text (its `response`)
    /// when goose answers `success: true`; `Refused` otherwise.
    pub async fn command(&mut self, command: &str) -> Result<String, ControllerError> {
        let timeout = self.timeout;
        let reply = match tokio::time::timeout(timeout, self.exchange(command)).await {
            Ok(text) => text.and_then(|text| Response::parse(command, &text)),
            Err(_) => Err(ControllerError::Timeout {
                command: command.to_string(),
                timeout,
            }),
        };
        if !command.starts_with("metrics") && !command.starts_with("config") {
            tracing::debug!("goose controller: {command:?} -> {reply:?}");
        }
        reply
    }

    /// Writes the request and reads the next text message.
    async fn exchange(&mut self, command: &str) -> Result<String, ControllerError> {
        let request = serde_json::to_string(&Request { request: command })
            .expect("a string request always serializes");
        self.socket
            .send(Message::Text(request.into()))
            .await
            .map_err(|e| self.ws_error(e))?;
        loop {
            match self.socket.next().await {
                Some(Ok(Message::Text(text))) => return Ok(text.to_string()),
                Some(Ok(Message::Binary(bytes))) => {
                    return Ok(String::from_utf8_lossy(&bytes).into_owned())
                }
                // Pings are answered by tungstenite itself.
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => continue,
                Some(Ok(Message::Close(_))) | None => {
                    return Err(ControllerError::Closed {
                        command: command.to_string(),
                    })
                }
                Some(Err(e)) => return Err(self.ws_error(e)),
            }
        }
    }

    fn ws_error(&self, source: tokio_tungstenite::tungstenite::Error) -> ControllerError {
        ControllerError::WebSocket {
            addr: self.addr.clone(),
            source: Box::new(source),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use tokio::net::TcpListener;

    /// A listener on 127.0.0.1:0 and its address.
    pub(crate) async fn listen() -> (TcpListener, String) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        (listener, addr)
    }

    /// Serves `listener` as a WebSocket server answering each request with
    /// `answer(request)` as goose does (`None`: stay silent), until the test
    /// ends.
    pub(crate) fn serve(
        listener: TcpListener,
        answer: impl Fn(&str) -> Option<String> + Send + Sync + Clone + 'static,
    ) {
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let answer = answer.clone();
                tokio::spawn(async move {
                    let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
                        return;
                    };
                    while let Some(Ok(message)) = ws.next().await {
                        let Message::Text(text) = message else {
                            continue;
                        };
                        let request: serde_json::Value = serde_json::from_str(&text).unwrap();
                        let request = request["request"].as_str().unwrap().to_string();
                        if let Some(reply) = answer(&request) {
                            if ws.send(Message::Text(reply.into())).await.is_err() {
                                return;
                            }
                        }
                    }
                });
            }
        });
    }

    fn reply(success: bool, response: &str) -> String {
        serde_json::json!({"response": response, "success": success}).to_string()
    }

    /// Answers like goose: `users 0` refused, JSON commands as JSON text,
    /// `hang` never answered.
    fn goose_like(request: &str) -> Option<String> {
        match request {
            "users 0" => Some(reply(
                false,
                "users must be an integer between 1 and 100000",
            )),
            "metrics-json" => Some(reply(true, r#"{"requests":[]}"#)),
            "hang" => None,
            "garbage" => Some("not json".into()),
            other => Some(reply(true, &format!("{other} done"))),
        }
    }

    #[test]
    fn response_success_is_the_reply_text() {
        let text = r#"{"response":"load test shut down","success":true}"#;
        assert_eq!(
            Response::parse("shutdown", text).unwrap(),
            "load test shut down"
        );
    }

    #[test]
    fn response_failure_is_refused_whatever_its_words() {
        // No word matching: a refusal worded like a success is still one.
        let text = r#"{"response":"ok, all good","success":false}"#;
        match Response::parse("start", text) {
            Err(ControllerError::Refused { command, reply }) => {
                assert_eq!(command, "start");
                assert_eq!(reply, "ok, all good");
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
        // And a success worded like a refusal is a success.
        let text = r#"{"response":"unable: invalid, not running","success":true}"#;
        assert!(Response::parse("stop", text).is_ok());
    }

    #[test]
    fn response_not_json_is_malformed() {
        assert!(matches!(
            Response::parse("stop", "goose> "),
            Err(ControllerError::Malformed { .. })
        ));
        assert!(matches!(
            Response::parse("stop", r#"{"response":"x"}"#),
            Err(ControllerError::Malformed { .. })
        ));
    }

    #[tokio::test]
    async fn client_speaks_goose_websocket_protocol() {
        let (listener, addr) = listen().await;
        serve(listener, goose_like);
        let mut controller = Controller::connect(&addr, Duration::from_secs(2))
            .await
            .unwrap();
        assert_eq!(controller.command("users 5").await.unwrap(), "users 5 done");
        assert!(matches!(
            controller.command("users 0").await,
            Err(ControllerError::Refused { .. })
        ));
        let metrics = controller.command("metrics-json").await.unwrap();
        let metrics: serde_json::Value = serde_json::from_str(&metrics).unwrap();
        assert!(metrics["requests"].is_array());
        assert!(matches!(
            controller.command("garbage").await,
            Err(ControllerError::Malformed { .. })
        ));
        // The connection still works after a refusal and a bad reply.
        assert_eq!(controller.command("start").await.unwrap(), "start done");
        controller.timeout = Duration::from_millis(100);
        assert!(matches!(
            controller.command("hang").await,
            Err(ControllerError::Timeout { .. })
        ));
    }

    #[tokio::test]
    async fn connect_waits_for_a_late_listener() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        drop(listener);
        let late = addr.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(150)).await;
            if let Ok(listener) = TcpListener::bind(&late).await {
                serve(listener, goose_like);
            }
        });
        match Controller::connect(&addr, Duration::from_secs(3)).await {
            Ok(mut controller) => {
                assert_eq!(controller.command("stop").await.unwrap(), "stop done");
            }
            // Someone else took the port in between: nothing to test.
            Err(ControllerError::WebSocket { .. }) => {}
            Err(e) => panic!("{e}"),
        }
    }

    #[tokio::test]
    async fn connect_gives_up_after_its_patience() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        drop(listener);
        let started = std::time::Instant::now();
        let result = Controller::connect(&addr, Duration::from_millis(100)).await;
        assert!(result.is_err());
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    #[tokio::test]
    async fn a_service_that_is_not_websocket_fails_the_handshake() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            while let Ok((mut stream, _)) = listener.accept().await {
                let _ = stream.write_all(b"SSH-2.0-OpenSSH\r\n").await;
            }
        });
        assert!(matches!(
            Controller::connect(&addr, Duration::from_secs(2)).await,
            Err(ControllerError::WebSocket { .. })
        ));
    }
}
