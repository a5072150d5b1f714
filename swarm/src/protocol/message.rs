//! The message enums and their msgpack encoding.

use std::collections::BTreeMap;

use rmpv::Value;

use super::caps::{capped, MAX_DETAIL, MAX_MESSAGE, MAX_TRACEBACK, MAX_VERSION};
use crate::co_mitigation::CoMitigation;
use crate::logs::shown;
use crate::stats::{StatsReport, WireError};
use crate::worker::arrival::{valid_arrival_rate, MAX_ARRIVAL_RATE};

/// The longest message type name kept (of one we do not know): ours and
/// Locust's are at most 17 bytes.
const MAX_KIND: usize = 64;

/// A worker's state as it reports it in heartbeats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkerState {
    /// Connected and idle: no users running, waiting for a `spawn`.
    Ready,
    /// Starting or stopping users towards the latest `spawn` order.
    Spawning,
    /// At its target user count.
    Running,
    /// Users stopped after a `stop` (Locust's `stopping` reads as this too).
    Stopped,
}

impl WorkerState {
    /// The state as Locust spells it in a heartbeat's `state` field.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ready => "ready",
            Self::Spawning => "spawning",
            Self::Running => "running",
            Self::Stopped => "stopped",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "ready" => Self::Ready,
            "spawning" => Self::Spawning,
            "running" => Self::Running,
            "stopped" | "stopping" => Self::Stopped,
            _ => return None,
        })
    }
}

/// A worker's heartbeat: its state and resource use.
#[derive(Debug, Clone, PartialEq)]
pub struct Heartbeat {
    /// What the worker is doing now.
    pub state: WorkerState,
    /// Percent of one core (a worker on 2 cores reads up to 200).
    pub cpu_usage: f64,
    /// Resident memory, bytes.
    pub memory_usage: u64,
    /// Cores the worker may use (our extension, `cpu_cores`; a Locust
    /// worker sends none, and its one process uses one core).
    pub cpu_cores: Option<u32>,
}

impl Heartbeat {
    /// The CPU in use as a share of the cores the worker may use: 1.0 is
    /// every core busy.
    pub fn cpu_share(&self) -> f64 {
        let cores = f64::from(self.cpu_cores.unwrap_or(1).max(1));
        let share = self.cpu_usage / 100.0 / cores;
        if share.is_finite() {
            share.max(0.0)
        } else {
            0.0
        }
    }
}

/// The master's order to a worker: absolute per-class user targets.
#[derive(Debug, Clone, PartialEq)]
pub struct SpawnOrder {
    /// When the master issued the order, epoch seconds; a worker ignores an
    /// order no newer than the last one it took.
    pub timestamp: f64,
    /// User class name → users this worker should run (its share, not the swarm's).
    pub user_classes_count: BTreeMap<String, u64>,
    /// The target host users send requests to; empty keeps the worker's own.
    pub host: String,
    /// Seconds users get to finish their current task when stopped; `None`
    /// stops them at once.
    pub stop_timeout: Option<f64>,
    /// Goose's coordinated omission mitigation for the users this order
    /// starts; `None` keeps the worker's own (and stands for a name no
    /// [`CoMitigation`] has, which decoding logs and ignores). It travels in `parsed_options` as `co_mitigation`:
    /// a Locust worker files an option it does not know there and never
    /// reads it, and a Locust master sends it when its locustfile adds a
    /// `--co-mitigation` argument.
    pub co_mitigation: Option<CoMitigation>,
    /// Our extension: this worker's share of the swarm's arrival rate,
    /// iterations per second (the open model); `None`: the closed model.
    /// In `parsed_options` as `arrival_rate`, which a Locust worker files
    /// and never reads (its users stay closed; the master warns). A value
    /// that is no number in `0..=`[`MAX_ARRIVAL_RATE`] is logged and
    /// ignored (the worker runs the closed model).
    pub arrival_rate: Option<f64>,
    /// How the users' HTTPS trusts the target, from the master's
    /// `--ca-cert` and `--accept-invalid-certs`; `None` keeps the worker's
    /// own. In `parsed_options` too (`ca_cert_pem`, `accept_invalid_certs`),
    /// which a Locust worker never reads.
    pub target_tls: Option<SpawnTls>,
}

/// The users' HTTPS trust as a spawn carries it (checked by the worker
/// with `target_tls::TargetTls::from_spawn`). Present as a whole: it
/// replaces the worker's own `--ca-cert` and `--accept-invalid-certs`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SpawnTls {
    /// CA certificates to trust besides the system's (PEM): the content of
    /// the master's `--ca-cert` file, which the worker's host does not have.
    pub ca_cert_pem: Option<String>,
    /// Accept any certificate (goose's `--accept-invalid-certs`).
    pub accept_invalid_certs: bool,
}

impl SpawnTls {
    /// From a spawn's `parsed_options`: `None` when it names neither key.
    fn from_options(options: &crate::stats::Fields<'_>) -> Option<SpawnTls> {
        let ca_cert_pem = options
            .get("ca_cert_pem")
            .and_then(Value::as_str)
            .map(str::to_string);
        let accept = options.get("accept_invalid_certs").and_then(Value::as_bool);
        if ca_cert_pem.is_none() && accept.is_none() {
            return None;
        }
        Some(SpawnTls {
            ca_cert_pem,
            accept_invalid_certs: accept.unwrap_or(false),
        })
    }

    /// Its `parsed_options` entries.
    fn options(&self) -> Vec<(Value, Value)> {
        let mut options = vec![(
            "accept_invalid_certs".into(),
            self.accept_invalid_certs.into(),
        )];
        if let Some(pem) = &self.ca_cert_pem {
            options.push(("ca_cert_pem".into(), pem.as_str().into()));
        }
        options
    }
}

impl SpawnOrder {
    /// All classes together; saturates rather than wrap on hostile counts.
    pub fn user_count(&self) -> u64 {
        self.user_classes_count
            .values()
            .fold(0u64, |sum, n| sum.saturating_add(*n))
    }
}

/// Worker → master.
#[derive(Debug, Clone, PartialEq)]
pub enum ToMaster {
    /// Registration; `version` is Locust's version string or `-1`.
    ClientReady {
        /// Locust's version string, or `-1`.
        version: String,
    },
    /// Sent every heartbeat interval (1 s); a worker silent for three is
    /// marked missing.
    Heartbeat(Heartbeat),
    /// The worker started acting on a `spawn` order.
    Spawning,
    /// The worker reached the users a `spawn` order asked for.
    SpawningComplete {
        /// User class name → users the worker runs now.
        user_classes_count: BTreeMap<String, u64>,
        /// Users the worker runs now, all classes.
        user_count: u64,
    },
    /// Stats deltas since the worker's previous report.
    Stats(Box<StatsReport>),
    /// An error a user's task raised (shown in the exceptions table).
    Exception {
        /// The exception's message.
        msg: String,
        /// Where it was raised; with `msg`, what identifies the row.
        traceback: String,
        /// How many times it happened (our extension, so one message can
        /// carry a report interval's worth; Locust sends one per occurrence
        /// and a Locust master counts one).
        count: u64,
    },
    /// The worker stopped its users after a `stop`.
    ClientStopped,
    /// Leaving; `reason` is our extension (a Locust master ignores `quit`'s
    /// data), so the master can tell a spot reclaim from a shutdown.
    Quit {
        /// Why, when the worker is one of ours; `None` from Locust workers.
        reason: Option<QuitReason>,
    },
    /// Locust's log forwarding for the web UI; we send it empty and ignore it.
    Logs,
    /// A message type we do not know, by its type name; logged and ignored.
    Unknown(String),
}

/// Why a worker quit, as our workers tell it.
#[derive(Debug, Clone, PartialEq)]
pub enum QuitReason {
    /// The cloud reclaims the worker's spot instance; `notice` is the
    /// instance-action notice (action and time).
    SpotInterruption {
        /// The notice as the instance metadata gave it.
        notice: String,
    },
    /// Anything else: a signal, the master's own `quit`, a lost master.
    Shutdown {
        /// What happened, for the master's log and events.
        detail: String,
    },
}

impl QuitReason {
    fn to_value(&self) -> Value {
        let (reason, detail) = match self {
            QuitReason::SpotInterruption { notice } => ("spot_interruption", notice),
            QuitReason::Shutdown { detail } => ("shutdown", detail),
        };
        map(vec![
            ("reason", reason.into()),
            ("detail", detail.as_str().into()),
        ])
    }

    /// Reads our extension; anything else (Locust's nil) is no reason.
    fn from_value(value: &Value) -> Option<Self> {
        let fields = crate::stats::wire_fields(value, "quit data").ok()?;
        let detail = fields
            .get("detail")
            .map(|v| crate::stats::wire_text(v, MAX_DETAIL))
            .unwrap_or_default();
        match fields.get("reason")?.as_str()? {
            "spot_interruption" => Some(QuitReason::SpotInterruption { notice: detail }),
            _ => Some(QuitReason::Shutdown { detail }),
        }
    }
}

/// Master → worker.
#[derive(Debug, Clone, PartialEq)]
pub enum ToWorker {
    /// The master took the worker's `client_ready`.
    Ack {
        /// The worker's index in the swarm, from 0 (Locust's `worker_index`).
        index: u64,
    },
    /// The master's reply to a worker's heartbeat: it is still there.
    Heartbeat {
        /// Our extension: the newest `stats` report (by its `seq`) the
        /// master has merged from this worker, so the worker can let go of
        /// its copy. `None` from a Locust master (nil data).
        stats_seq: Option<u64>,
    },
    /// Run this many users per class.
    Spawn(SpawnOrder),
    /// The whole swarm reached its target.
    SpawningComplete {
        /// Users running across all workers.
        user_count: u64,
    },
    /// Stop all users but stay connected.
    Stop,
    /// Stop all users and exit.
    Quit,
    /// Join again with `client_ready`: the master does not know this worker
    /// (it restarted since the worker joined).
    Reconnect,
    /// Locust's change to a user class's settings from the web UI; we ignore it.
    UpdateUserClass,
    /// A message type we do not know, by its type name; ignored.
    Unknown(String),
}

/// A frame that is not a Locust message.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ProtocolError {
    /// The frame is not valid msgpack; the decoder's error.
    #[error("not msgpack: {0}")]
    NotMsgpack(String),
    /// Msgpack, but not a `[type, data, node_id]` array; a short rendering of it.
    #[error("expected an array of [type, data, node_id], got {0}")]
    BadShape(String),
    /// A known message type whose data does not fit it.
    #[error("`{kind}` message: {detail}")]
    BadData {
        /// The message type.
        kind: String,
        /// What was wrong with its data.
        detail: String,
    },
}

impl ProtocolError {
    /// What kind of fault it is, in a few words (for throttling warnings).
    pub fn kind(&self) -> &'static str {
        match self {
            ProtocolError::NotMsgpack(_) => "not msgpack",
            ProtocolError::BadShape(_) => "bad shape",
            ProtocolError::BadData { .. } => "bad data",
        }
    }
}

/// A decoded frame: its type, data and sender.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    /// The message type, e.g. `heartbeat` or `stats`.
    pub kind: String,
    /// The type's payload, `nil` for most commands.
    pub data: Value,
    /// The sender's node id (a worker's `hostname_<uuid>` in Locust).
    pub node_id: String,
}

impl Envelope {
    /// Splits a frame into its type, data and sender, without judging the data.
    pub fn decode(mut bytes: &[u8]) -> Result<Self, ProtocolError> {
        super::bound::check_values(bytes, super::bound::MAX_VALUES)
            .map_err(|e| ProtocolError::NotMsgpack(e.to_string()))?;
        let value = rmpv::decode::read_value(&mut bytes)
            .map_err(|e| ProtocolError::NotMsgpack(e.to_string()))?;
        let shape = || ProtocolError::BadShape(short(&value));
        let items = value.as_array().ok_or_else(shape)?;
        let [kind, data, node_id] = items.as_slice() else {
            return Err(shape());
        };
        Ok(Envelope {
            kind: capped(kind.as_str().ok_or_else(shape)?, MAX_KIND).into_owned(),
            data: data.clone(),
            node_id: node_id.as_str().ok_or_else(shape)?.to_string(),
        })
    }

    /// A frame of `kind` with `data`, sent as `node_id`.
    pub fn encode(kind: &str, data: Value, node_id: &str) -> Vec<u8> {
        let value = Value::Array(vec![kind.into(), data, node_id.into()]);
        let mut out = Vec::with_capacity(64);
        // Writing into a Vec cannot fail.
        let _ = rmpv::encode::write_value(&mut out, &value);
        out
    }

    fn bad(&self, detail: impl ToString) -> ProtocolError {
        ProtocolError::BadData {
            kind: self.kind.clone(),
            detail: detail.to_string(),
        }
    }
}

/// The first bytes of a value, for error messages about hostile input;
/// rendering stops there, however big the value.
fn short(value: &Value) -> String {
    super::caps::rendered_capped(value, 80)
}

/// A spawn's `arrival_rate` option: a number in `0..=`[`MAX_ARRIVAL_RATE`],
/// else logged and ignored.
fn arrival_rate(value: &Value) -> Option<f64> {
    let rate = value
        .as_f64()
        .or_else(|| value.as_u64().map(|n| n as f64))
        .filter(|r| valid_arrival_rate(*r));
    if rate.is_none() {
        tracing::warn!(
            "ignored the master's arrival_rate {}: expected a number from 0 to {MAX_ARRIVAL_RATE}; running the closed model",
            short(value)
        );
    }
    rate
}

/// A spawn's `co_mitigation` option; a name no [`CoMitigation`] has is
/// logged and ignored (the worker keeps its own), as Locust ignores an
/// option it does not know, rather than refusing the spawn.
fn co_mitigation(text: &str) -> Option<CoMitigation> {
    match text.parse() {
        Ok(mode) => Some(mode),
        Err(_) => {
            tracing::warn!(
                "ignored the master's co_mitigation \"{}\": expected {}",
                shown(text),
                CoMitigation::EXPECTED
            );
            None
        }
    }
}

fn map(pairs: Vec<(&str, Value)>) -> Value {
    Value::Map(pairs.into_iter().map(|(k, v)| (k.into(), v)).collect())
}

fn counts_value(counts: &BTreeMap<String, u64>) -> Value {
    Value::Map(
        counts
            .iter()
            .map(|(k, v)| (k.as_str().into(), (*v).into()))
            .collect(),
    )
}

impl ToMaster {
    /// The message's type name on the wire (`unknown` for one we do not
    /// know), for log lines.
    pub fn kind(&self) -> &'static str {
        match self {
            ToMaster::ClientReady { .. } => "client_ready",
            ToMaster::Heartbeat(_) => "heartbeat",
            ToMaster::Spawning => "spawning",
            ToMaster::SpawningComplete { .. } => "spawning_complete",
            ToMaster::Stats(_) => "stats",
            ToMaster::Exception { .. } => "exception",
            ToMaster::ClientStopped => "client_stopped",
            ToMaster::Quit { .. } => "quit",
            ToMaster::Logs => "logs",
            ToMaster::Unknown(_) => "unknown",
        }
    }

    /// Reads a worker's frame: the message and the sender's node id.
    pub fn from_wire(bytes: &[u8]) -> Result<(Self, String), ProtocolError> {
        let env = Envelope::decode(bytes)?;
        let message = Self::from_envelope(&env)?;
        Ok((message, env.node_id))
    }

    fn from_envelope(env: &Envelope) -> Result<Self, ProtocolError> {
        use crate::stats::wire_fields as f;
        let wire = |e: WireError| env.bad(e.0);
        Ok(match env.kind.as_str() {
            "client_ready" => match &env.data {
                Value::String(s) if s.as_str().is_some_and(|s| !s.is_empty()) => {
                    ToMaster::ClientReady {
                        version: capped(s.as_str().unwrap_or_default(), MAX_VERSION).into_owned(),
                    }
                }
                Value::Integer(i) if i.as_i64() == Some(-1) => ToMaster::ClientReady {
                    version: "-1".into(),
                },
                _ => return Err(env.bad("needs a version string or -1")),
            },
            "heartbeat" => {
                let fields = f(&env.data, "heartbeat data").map_err(wire)?;
                let state = fields.string("state").map_err(wire)?;
                ToMaster::Heartbeat(Heartbeat {
                    state: WorkerState::parse(&state).ok_or_else(|| {
                        env.bad(format!("unknown state {:?}", capped(&state, MAX_KIND)))
                    })?,
                    cpu_usage: fields.f64("current_cpu_usage").map_err(wire)?,
                    memory_usage: fields
                        .get("current_memory_usage")
                        .and_then(crate::stats::wire_u64)
                        .unwrap_or(0),
                    cpu_cores: fields
                        .get("cpu_cores")
                        .and_then(crate::stats::wire_u64)
                        .and_then(|n| u32::try_from(n).ok())
                        .filter(|n| *n > 0),
                })
            }
            "spawning" => ToMaster::Spawning,
            "spawning_complete" => {
                let fields = f(&env.data, "spawning_complete data").map_err(wire)?;
                ToMaster::SpawningComplete {
                    user_classes_count: fields.counts("user_classes_count").map_err(wire)?,
                    user_count: fields.u64("user_count").map_err(wire)?,
                }
            }
            "stats" => ToMaster::Stats(Box::new(StatsReport::from_value(&env.data).map_err(wire)?)),
            "exception" => {
                let fields = f(&env.data, "exception data").map_err(wire)?;
                ToMaster::Exception {
                    msg: fields
                        .get("msg")
                        .map(|v| crate::stats::wire_text(v, MAX_MESSAGE))
                        .unwrap_or_default(),
                    traceback: fields
                        .get("traceback")
                        .map(|v| crate::stats::wire_text(v, MAX_TRACEBACK))
                        .unwrap_or_default(),
                    count: fields
                        .get("count")
                        .and_then(crate::stats::wire_u64)
                        .unwrap_or(1)
                        .max(1),
                }
            }
            "client_stopped" => ToMaster::ClientStopped,
            "quit" => ToMaster::Quit {
                reason: QuitReason::from_value(&env.data),
            },
            "logs" => ToMaster::Logs,
            other => ToMaster::Unknown(other.to_string()),
        })
    }

    /// This message as a frame from worker `node_id`.
    pub fn to_wire(&self, node_id: &str) -> Vec<u8> {
        let (kind, data) = match self {
            ToMaster::ClientReady { version } => ("client_ready", Value::from(version.as_str())),
            ToMaster::Heartbeat(h) => {
                let mut fields = vec![
                    ("state", h.state.as_str().into()),
                    ("current_cpu_usage", h.cpu_usage.into()),
                    ("current_memory_usage", h.memory_usage.into()),
                ];
                if let Some(cores) = h.cpu_cores {
                    fields.push(("cpu_cores", cores.into()));
                }
                ("heartbeat", map(fields))
            }
            ToMaster::Spawning => ("spawning", Value::Nil),
            ToMaster::SpawningComplete {
                user_classes_count,
                user_count,
            } => (
                "spawning_complete",
                map(vec![
                    ("user_classes_count", counts_value(user_classes_count)),
                    ("user_count", (*user_count).into()),
                ]),
            ),
            ToMaster::Stats(report) => ("stats", report.to_value()),
            ToMaster::Exception {
                msg,
                traceback,
                count,
            } => (
                "exception",
                map(vec![
                    ("msg", msg.as_str().into()),
                    ("traceback", traceback.as_str().into()),
                    ("count", (*count).into()),
                ]),
            ),
            ToMaster::ClientStopped => ("client_stopped", Value::Nil),
            ToMaster::Quit { reason } => (
                "quit",
                reason.as_ref().map_or(Value::Nil, QuitReason::to_value),
            ),
            ToMaster::Logs => (
                "logs",
                map(vec![
                    ("worker_id", node_id.into()),
                    ("logs", Value::Array(vec![])),
                ]),
            ),
            ToMaster::Unknown(kind) => (kind.as_str(), Value::Nil),
        };
        Envelope::encode(kind, data, node_id)
    }
}

impl ToWorker {
    /// `Stop` or `Quit` when `bytes` is one of those orders, which go
    /// ahead of anything queued (and after `quit` the master closes the
    /// connection). Decodes the envelope: master-to-worker messages are
    /// few and small.
    pub fn urgency(bytes: &[u8]) -> Option<ToWorker> {
        match Envelope::decode(bytes).ok()?.kind.as_str() {
            "quit" => Some(ToWorker::Quit),
            "stop" => Some(ToWorker::Stop),
            _ => None,
        }
    }

    /// Reads a master's frame.
    pub fn from_wire(bytes: &[u8]) -> Result<Self, ProtocolError> {
        let env = Envelope::decode(bytes)?;
        Self::from_envelope(&env)
    }

    fn from_envelope(env: &Envelope) -> Result<Self, ProtocolError> {
        use crate::stats::wire_fields as f;
        let wire = |e: WireError| env.bad(e.0);
        Ok(match env.kind.as_str() {
            "ack" => {
                let fields = f(&env.data, "ack data").map_err(wire)?;
                ToWorker::Ack {
                    index: fields
                        .get("index")
                        .and_then(crate::stats::wire_u64)
                        .unwrap_or(0),
                }
            }
            "heartbeat" => ToWorker::Heartbeat {
                stats_seq: f(&env.data, "heartbeat data")
                    .ok()
                    .and_then(|fields| fields.get("stats_seq").and_then(crate::stats::wire_u64)),
            },
            "spawn" => {
                let fields = f(&env.data, "spawn data").map_err(wire)?;
                let timestamp = fields.f64("timestamp").map_err(wire)?;
                if !timestamp.is_finite() {
                    return Err(env.bad("timestamp is not a finite number"));
                }
                let options = fields
                    .get("parsed_options")
                    .and_then(|o| f(o, "parsed_options").ok());
                ToWorker::Spawn(SpawnOrder {
                    timestamp,
                    user_classes_count: fields.counts("user_classes_count").map_err(wire)?,
                    host: fields
                        .get("host")
                        .and_then(|h| h.as_str())
                        .unwrap_or_default()
                        .to_string(),
                    stop_timeout: fields.opt_f64("stop_timeout").map_err(wire)?,
                    co_mitigation: options
                        .as_ref()
                        .and_then(|o| o.get("co_mitigation"))
                        .and_then(|m| m.as_str())
                        .filter(|m| !m.is_empty())
                        .and_then(co_mitigation),
                    arrival_rate: options
                        .as_ref()
                        .and_then(|o| o.get("arrival_rate"))
                        .filter(|r| !r.is_nil())
                        .and_then(arrival_rate),
                    target_tls: options.as_ref().and_then(SpawnTls::from_options),
                })
            }
            "spawning_complete" => {
                let user_count = f(&env.data, "spawning_complete data")
                    .ok()
                    .and_then(|fields| fields.get("user_count").and_then(crate::stats::wire_u64))
                    .unwrap_or(0);
                ToWorker::SpawningComplete { user_count }
            }
            "stop" => ToWorker::Stop,
            "quit" => ToWorker::Quit,
            "reconnect" => ToWorker::Reconnect,
            "update_user_class" => ToWorker::UpdateUserClass,
            other => ToWorker::Unknown(other.to_string()),
        })
    }

    /// This message as a frame from the master, whose node id is `node_id`.
    pub fn to_wire(&self, node_id: &str) -> Vec<u8> {
        let (kind, data) = match self {
            ToWorker::Ack { index } => ("ack", map(vec![("index", (*index).into())])),
            ToWorker::Heartbeat { stats_seq } => (
                "heartbeat",
                // Locust sends nil, and its workers read no data here.
                stats_seq.map_or(Value::Nil, |seq| map(vec![("stats_seq", seq.into())])),
            ),
            ToWorker::Spawn(order) => (
                "spawn",
                map(vec![
                    ("timestamp", order.timestamp.into()),
                    (
                        "user_classes_count",
                        counts_value(&order.user_classes_count),
                    ),
                    // Locust sends nil for "no host": the worker keeps its own.
                    (
                        "host",
                        if order.host.is_empty() {
                            Value::Nil
                        } else {
                            order.host.as_str().into()
                        },
                    ),
                    (
                        "stop_timeout",
                        order.stop_timeout.map_or(Value::Nil, Value::from),
                    ),
                    (
                        "parsed_options",
                        Value::Map(
                            order
                                .co_mitigation
                                .iter()
                                .map(|m| ("co_mitigation".into(), m.as_str().into()))
                                .chain(
                                    order
                                        .arrival_rate
                                        .map(|r| ("arrival_rate".into(), r.into())),
                                )
                                .chain(order.target_tls.iter().flat_map(SpawnTls::options))
                                .collect(),
                        ),
                    ),
                ]),
            ),
            ToWorker::SpawningComplete { user_count } => (
                "spawning_complete",
                map(vec![("user_count", (*user_count).into())]),
            ),
            ToWorker::Stop => ("stop", Value::Nil),
            ToWorker::Quit => ("quit", Value::Nil),
            ToWorker::Reconnect => ("reconnect", Value::Nil),
            ToWorker::UpdateUserClass => ("update_user_class", Value::Nil),
            ToWorker::Unknown(kind) => (kind.as_str(), Value::Nil),
        };
        Envelope::encode(kind, data, node_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worker_messages_round_trip() {
        let messages = [
            ToMaster::ClientReady {
                version: "2.47.0".into(),
            },
            ToMaster::Heartbeat(Heartbeat {
                state: WorkerState::Running,
                cpu_usage: 12.5,
                memory_usage: 1 << 20,
                cpu_cores: Some(2),
            }),
            ToMaster::Spawning,
            ToMaster::SpawningComplete {
                user_classes_count: [("WebsiteUser".to_string(), 3)].into_iter().collect(),
                user_count: 3,
            },
            ToMaster::Stats(Box::default()),
            ToMaster::Exception {
                msg: "boom".into(),
                traceback: "tb".into(),
                count: 1,
            },
            ToMaster::ClientStopped,
            ToMaster::Quit { reason: None },
            ToMaster::Quit {
                reason: Some(QuitReason::SpotInterruption {
                    notice: "terminate at 2026-11-30T12:00:00Z".into(),
                }),
            },
        ];
        for message in messages {
            let (back, node) = ToMaster::from_wire(&message.to_wire("host_abc")).expect("decodes");
            assert_eq!(back, message);
            assert_eq!(node, "host_abc");
        }
    }

    #[test]
    fn master_messages_round_trip() {
        let spawn = ToWorker::Spawn(SpawnOrder {
            timestamp: 1.5,
            user_classes_count: [("WebsiteUser".to_string(), 7)].into_iter().collect(),
            host: "http://127.0.0.1:8080".into(),
            stop_timeout: None,
            co_mitigation: Some(CoMitigation::Average),
            arrival_rate: Some(12.5),
            target_tls: Some(SpawnTls {
                ca_cert_pem: Some("-----BEGIN CERTIFICATE-----\n...".into()),
                accept_invalid_certs: false,
            }),
        });
        let trusting_any = ToWorker::Spawn(SpawnOrder {
            timestamp: 2.5,
            user_classes_count: BTreeMap::new(),
            host: String::new(),
            stop_timeout: None,
            co_mitigation: None,
            arrival_rate: None,
            target_tls: Some(SpawnTls {
                ca_cert_pem: None,
                accept_invalid_certs: true,
            }),
        });
        for message in [
            trusting_any,
            ToWorker::Ack { index: 2 },
            ToWorker::Heartbeat { stats_seq: None },
            ToWorker::Heartbeat {
                stats_seq: Some(41),
            },
            spawn,
            ToWorker::Stop,
            ToWorker::Quit,
            ToWorker::Reconnect,
        ] {
            assert_eq!(
                ToWorker::from_wire(&message.to_wire("n")).expect("decodes"),
                message
            );
        }
    }

    #[test]
    fn hostile_frames_are_errors_not_panics() {
        assert!(ToMaster::from_wire(b"\xc1garbage").is_err());
        assert!(ToMaster::from_wire(b"").is_err());
        let wrong_shape = Envelope::encode("stats", Value::Nil, "n");
        assert!(matches!(
            ToMaster::from_wire(&wrong_shape[..3]),
            Err(ProtocolError::NotMsgpack(_))
        ));
        let mut two = Vec::new();
        rmpv::encode::write_value(&mut two, &Value::Array(vec!["a".into(), 1.into()]))
            .expect("vec");
        assert!(matches!(
            ToMaster::from_wire(&two),
            Err(ProtocolError::BadShape(_))
        ));
        let stats = Envelope::encode("stats", map(vec![("stats", Value::Array(vec![]))]), "n");
        assert!(matches!(
            ToMaster::from_wire(&stats),
            Err(ProtocolError::BadData { .. })
        ));
        let ready = Envelope::encode("client_ready", Value::Nil, "n");
        assert!(ToMaster::from_wire(&ready).is_err());
        let unknown = Envelope::encode("frobnicate", Value::Nil, "n");
        assert_eq!(
            ToMaster::from_wire(&unknown).expect("decodes").0,
            ToMaster::Unknown("frobnicate".into())
        );
    }

    #[test]
    fn a_spawn_s_arrival_rate_is_bounded() {
        let spawn = |rate: Value| {
            let frame = Envelope::encode(
                "spawn",
                map(vec![
                    ("timestamp", 1.0.into()),
                    ("user_classes_count", Value::Map(Vec::new())),
                    ("parsed_options", map(vec![("arrival_rate", rate)])),
                ]),
                "n",
            );
            match ToWorker::from_wire(&frame).expect("decodes") {
                ToWorker::Spawn(order) => order.arrival_rate,
                other => panic!("{other:?}"),
            }
        };
        assert_eq!(spawn(150.0.into()), Some(150.0));
        assert_eq!(spawn(300u64.into()), Some(300.0));
        assert_eq!(spawn(0.0.into()), Some(0.0));
        assert_eq!(spawn(Value::Nil), None);
        for hostile in [
            Value::from(-1.0),
            Value::from(f64::NAN),
            Value::from(f64::INFINITY),
            Value::from(MAX_ARRIVAL_RATE * 2.0),
            Value::from("fast"),
        ] {
            assert_eq!(spawn(hostile.clone()), None, "{hostile:?}: closed model");
        }
    }

    #[test]
    fn a_spawn_s_co_mitigation_is_read_once_and_an_unknown_one_ignored() {
        let spawn = |mode: &str| {
            let frame = Envelope::encode(
                "spawn",
                map(vec![
                    ("timestamp", 1.0.into()),
                    ("user_classes_count", Value::Map(Vec::new())),
                    ("parsed_options", map(vec![("co_mitigation", mode.into())])),
                ]),
                "n",
            );
            match ToWorker::from_wire(&frame).expect("decodes") {
                ToWorker::Spawn(order) => order.co_mitigation,
                other => panic!("{other:?}"),
            }
        };
        assert_eq!(spawn("max"), Some(CoMitigation::Maximum));
        assert_eq!(spawn("average"), Some(CoMitigation::Average));
        assert_eq!(spawn("sometimes"), None, "the worker keeps its own");
        assert_eq!(spawn(""), None);
    }

    mod properties {
        use super::*;
        use crate::stats::{RequestStats, StatsEntry, StatsError};
        use proptest::collection::vec;
        use proptest::prelude::*;

        /// Every type name either side sends.
        const KINDS: [&str; 13] = [
            "client_ready",
            "heartbeat",
            "spawning",
            "spawning_complete",
            "stats",
            "exception",
            "client_stopped",
            "quit",
            "logs",
            "ack",
            "spawn",
            "stop",
            "reconnect",
        ];

        /// Field names the decoders look for, so arbitrary maps often reach
        /// past the first lookup.
        const FIELDS: [&str; 34] = [
            "state",
            "current_cpu_usage",
            "current_memory_usage",
            "user_classes_count",
            "user_count",
            "stats",
            "stats_total",
            "errors",
            "name",
            "method",
            "start_time",
            "last_request_timestamp",
            "num_requests",
            "num_none_requests",
            "num_failures",
            "total_response_time",
            "max_response_time",
            "min_response_time",
            "total_content_length",
            "response_times",
            "num_reqs_per_sec",
            "num_fail_per_sec",
            "error",
            "occurrences",
            "first_seen",
            "last_seen",
            "msg",
            "traceback",
            "reason",
            "detail",
            "index",
            "timestamp",
            "host",
            "stop_timeout",
        ];

        const WORDS: [&str; 8] = [
            "running",
            "ready",
            "stopping",
            "spawning",
            "spot_interruption",
            "shutdown",
            "GET",
            "",
        ];

        fn text() -> impl Strategy<Value = String> {
            prop_oneof![
                proptest::sample::select(&FIELDS[..]).prop_map(str::to_string),
                proptest::sample::select(&WORDS[..]).prop_map(str::to_string),
                ".{0,12}",
            ]
        }

        fn int() -> impl Strategy<Value = Value> {
            prop_oneof![
                prop_oneof![
                    Just(i64::MIN),
                    Just(i64::MAX),
                    Just(-1i64),
                    Just(0i64),
                    any::<i64>()
                ]
                .prop_map(Value::from),
                prop_oneof![Just(u64::MAX), Just(u64::MAX - 1), any::<u64>(), 0u64..200]
                    .prop_map(Value::from),
            ]
        }

        fn float() -> impl Strategy<Value = f64> {
            prop_oneof![
                Just(f64::NAN),
                Just(f64::INFINITY),
                Just(f64::NEG_INFINITY),
                Just(-0.0),
                Just(f64::MAX),
                Just(f64::MIN),
                Just(f64::MIN_POSITIVE),
                Just(1e19),
                Just(-1e19),
                any::<f64>(),
                -1e3f64..1e6,
            ]
        }

        fn leaf() -> impl Strategy<Value = Value> {
            prop_oneof![
                Just(Value::Nil),
                any::<bool>().prop_map(Value::Boolean),
                int(),
                float().prop_map(Value::F64),
                any::<f32>().prop_map(Value::F32),
                text().prop_map(Value::from),
                vec(any::<u8>(), 0..16).prop_map(Value::Binary),
            ]
        }

        fn key() -> impl Strategy<Value = Value> {
            prop_oneof![3 => text().prop_map(Value::from), 1 => int()]
        }

        /// Any msgpack value, nested at most four deep.
        fn value() -> impl Strategy<Value = Value> {
            leaf().prop_recursive(4, 64, 8, |inner| {
                prop_oneof![
                    vec(inner.clone(), 0..8).prop_map(Value::Array),
                    vec((key(), inner), 0..8).prop_map(Value::Map),
                ]
            })
        }

        fn frame(kind: &str, data: Value, node_id: Value) -> Vec<u8> {
            let mut out = Vec::new();
            rmpv::encode::write_value(&mut out, &Value::Array(vec![kind.into(), data, node_id]))
                .expect("writing into a Vec");
            out
        }

        fn count() -> impl Strategy<Value = u64> {
            prop_oneof![
                Just(u64::MAX),
                Just(u64::MAX - 1),
                Just(u64::MAX / 2 + 1),
                0u64..1000,
                any::<u64>()
            ]
        }

        fn count_map<K: Ord + std::fmt::Debug>(
            keys: impl Strategy<Value = K>,
        ) -> impl Strategy<Value = BTreeMap<K, u64>> {
            proptest::collection::btree_map(keys, count(), 0..4)
        }

        fn entry() -> impl Strategy<Value = StatsEntry> {
            (
                prop_oneof![Just("/".to_string()), ".{0,6}"],
                prop_oneof![Just("GET".to_string()), ".{0,4}"],
                float(),
                (count(), count(), count(), count()),
                (float(), float(), proptest::option::of(float())),
                (
                    count_map(any::<u64>()),
                    count_map(any::<i64>()),
                    count_map(any::<i64>()),
                ),
                proptest::option::of(float()),
            )
                .prop_map(|(name, method, start, counts, times, maps, last)| {
                    let mut e = StatsEntry::new(&name, &method, start);
                    (
                        e.num_requests,
                        e.num_none_requests,
                        e.num_failures,
                        e.total_content_length,
                    ) = counts;
                    (
                        e.total_response_time,
                        e.max_response_time,
                        e.min_response_time,
                    ) = times;
                    (e.response_times, e.num_reqs_per_sec, e.num_fail_per_sec) = maps;
                    e.last_request_timestamp = last;
                    e
                })
        }

        fn report() -> impl Strategy<Value = StatsReport> {
            let error = (".{0,4}", count(), proptest::option::of(float())).prop_map(
                |(error, occurrences, seen)| StatsError {
                    method: "GET".into(),
                    name: "/".into(),
                    error,
                    occurrences,
                    first_seen: seen,
                    last_seen: seen,
                },
            );
            (
                vec(entry(), 0..4),
                entry(),
                vec(error, 0..3),
                count_map(".{0,4}"),
                count(),
            )
                .prop_map(|(stats, stats_total, errors, classes, user_count)| {
                    StatsReport {
                        stats,
                        stats_total,
                        errors: errors.into_iter().map(|e| (e.wire_key(), e)).collect(),
                        user_classes_count: classes,
                        user_count,
                        seq: None,
                        dropped_iterations: 0,
                    }
                })
        }

        /// Merges a report twice and reads everything the UI reads off it.
        fn merge_and_read(report: &StatsReport) {
            let mut stats = RequestStats::new(0.0);
            stats.merge_report(report, crate::stats::now_epoch());
            stats.merge_report(report, crate::stats::now_epoch());
            let now = crate::stats::now_epoch();
            stats.trim(now);
            for e in stats.sorted_entries().into_iter().chain([&stats.total]) {
                let _ = (
                    e.percentile(0.95),
                    e.median_response_time(),
                    e.avg_response_time(),
                    e.avg_content_length(),
                    e.fail_ratio(),
                    e.total_rps(&stats.total),
                    e.current_rps(&stats.total),
                );
            }
            let _ = crate::stats::stats_csv(&stats);
            let _ = crate::stats::failures_csv(&stats);
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(2000))]

            #[test]
            fn arbitrary_bytes_never_panic(bytes in vec(any::<u8>(), 0..4096)) {
                let _ = ToMaster::from_wire(&bytes);
                let _ = ToWorker::from_wire(&bytes);
            }

            #[test]
            fn arbitrary_values_never_panic(value in value()) {
                let mut bytes = Vec::new();
                rmpv::encode::write_value(&mut bytes, &value).expect("writing into a Vec");
                let _ = ToMaster::from_wire(&bytes);
                let _ = ToWorker::from_wire(&bytes);
            }

            #[test]
            fn arbitrary_message_data_never_panics(
                kind in proptest::sample::select(&KINDS[..]),
                data in value(),
                node_id in prop_oneof![3 => ".{0,8}".prop_map(Value::from), 1 => leaf()],
            ) {
                let bytes = frame(kind, data, node_id);
                if let Ok((ToMaster::Stats(report), _)) = ToMaster::from_wire(&bytes) {
                    merge_and_read(&report);
                }
                let _ = ToWorker::from_wire(&bytes);
                // Cut short, too: a truncated frame is an error, never a panic.
                let _ = ToMaster::from_wire(&bytes[..bytes.len() / 2]);
            }
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(1000))]

            #[test]
            fn hostile_stats_reports_merge_and_saturate(report in report()) {
                let wire = ToMaster::Stats(Box::new(report.clone())).to_wire("w");
                let decoded = match ToMaster::from_wire(&wire) {
                    Ok((ToMaster::Stats(decoded), _)) => decoded,
                    other => {
                        // Only a report our own encoder wrote can fail to
                        // decode if it holds NaN start times etc.: it must
                        // still be an error, never a panic.
                        prop_assert!(other.is_err(), "{other:?}");
                        return Ok(());
                    }
                };
                merge_and_read(&decoded);
                let mut stats = RequestStats::new(0.0);
                stats.merge_report(&decoded, crate::stats::now_epoch());
                stats.merge_report(&decoded, crate::stats::now_epoch());
                let twice = decoded.stats_total.num_requests.saturating_mul(2);
                prop_assert_eq!(stats.total.num_requests, twice);
                prop_assert_eq!(
                    stats.total.num_failures,
                    decoded.stats_total.num_failures.saturating_mul(2)
                );
                for (bucket, n) in &decoded.stats_total.response_times {
                    prop_assert_eq!(stats.total.response_times[bucket], n.saturating_mul(2));
                }
            }
        }
    }
}
