//! What the users measured, request by request: goose's request log,
//! delivered in-process instead of to a file. Every goose user sends each
//! request's record (`GooseLog::Request`: name, method, status, error, time
//! to the microsecond) to its `logger` channel when its configuration names
//! a request log; the [`Tap`] gives each user that channel (both are public
//! fields of `GooseUser`), and folds the records into a [`Tally`], which the
//! worker takes as a Locust stats delta whenever it reports.
//!
//! Compared with reading goose's aggregated metrics through its controller,
//! a report is ready at once (goose's main loop answers commands only twice
//! a second, too late for a Locust master's 0.5 s quit window), holds every
//! request that finished before it, and keeps each time to the microsecond.
//! Goose's metrics channel goes to the tap too, for one kind of message
//! only: a verdict a scenario gave after the fact (see **Verdicts** in
//! [`tally`](super::tally)); the batches goose aggregates on it are
//! dropped unread.
//!
//! Notes of ours come down the same channel, as goose debug records with a
//! tag of ours: [`read_body`] and [`read_response`] send a body's size and
//! the request's time to its last byte, or the causes of a request without
//! a response; the gate sends [`note_parked`] when it parks a user. What
//! the tally makes of them, and of verdicts, is in its own module doc.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use goose::goose::{GooseDebug, GooseResponse};
use goose::logger::GooseLog;
use goose::metrics::{GooseCoordinatedOmissionMitigation, GooseMetric, GooseRequestMetric};
use goose::prelude::GooseUser;

use super::tally::Tally;
use crate::stats::{now_epoch, StatsReport};

/// A user configuration's request and error logs, set only so goose sends
/// the records; nothing is written anywhere.
const IN_PROCESS: &str = "in-process";

/// The tag of the note [`read_body`] sends after goose's own record: its
/// body is the body's size.
pub(super) const BODY_NOTE: &str = "swarm:body";

/// The tag of the note [`read_body`] sends when the body did not arrive:
/// its body is why.
pub(super) const BODY_FAILED_NOTE: &str = "swarm:body-failed";

/// The tag of the note [`read_response`] sends when no response came: its
/// body is the error with the causes goose's text leaves out.
pub(super) const REQUEST_FAILED_NOTE: &str = "swarm:request-failed";

/// The tag of the note [`note_parked`] sends when the gate parks a user.
pub(super) const PARK_NOTE: &str = "swarm:parked";

/// The tag of the note [`note_intended_start`] sends when a user begins a
/// pass on the schedule: its body is the user's index and how late it
/// began, in microseconds (`INDEX:MICROS`).
pub(super) const INTENDED_NOTE: &str = "swarm:intended-start";

/// How often the tap folds what the users sent: one lock per batch, and
/// only one consumer drains the channel at a time (under the tally's lock),
/// so a user's records are folded in the order it sent them.
const FOLD_EVERY: Duration = Duration::from_millis(20);

type LogSender = flume::Sender<Option<GooseLog>>;

/// Reads a response's body in full, as Locust's `HttpUser` does, and tells
/// the worker its size and the request's time to the last byte; returns the
/// body, or `None` when no response came (goose counted the failure) or the
/// body did not arrive (counted as a failure, with the error). To look at
/// the response and then mark the request, use [`read_response`].
///
/// Use it in a transaction instead of reading `goose.response` yourself:
///
/// ```no_run
/// # use goose::prelude::*;
/// async fn index(user: &mut GooseUser) -> TransactionResult {
///     let goose = user.get("/").await?;
///     let _page = swarm::worker::read_body(user, goose).await;
///     Ok(())
/// }
/// ```
pub async fn read_body(user: &GooseUser, goose: GooseResponse) -> Option<Bytes> {
    read_response(user, goose).await.body
}

/// A response read in full by [`read_response`].
#[derive(Debug)]
pub struct ReadResponse {
    /// The request's record, its time running to the body's last byte.
    /// Mark the request with it as goose does, and the worker counts the
    /// verdict: `user.set_success(&mut read.request)` (Locust's
    /// `response.success()`), `user.set_failure("why", &mut read.request,
    /// None, None)` (`response.failure("why")`).
    pub request: GooseRequestMetric,
    /// The response's status; `None` when no response came.
    pub status: Option<u16>,
    /// The response's headers (empty when no response came).
    pub headers: reqwest::header::HeaderMap,
    /// The body; `None` when no response came or the body did not arrive.
    pub body: Option<Bytes>,
}

impl ReadResponse {
    /// The body as text (lossy UTF-8; empty without a body).
    pub fn text(&self) -> std::borrow::Cow<'_, str> {
        String::from_utf8_lossy(self.body.as_deref().unwrap_or_default())
    }

    /// The body parsed as JSON.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(self.body.as_deref().unwrap_or_default())
    }
}

/// Reads a response in full, as [`read_body`] does (the worker counts its
/// size and its time to the last byte), and hands back its status,
/// headers, body and request record, so a transaction can look at the
/// response and then mark the request, as Locust's `catch_response` does:
///
/// ```no_run
/// # use goose::prelude::*;
/// async fn item(user: &mut GooseUser) -> TransactionResult {
///     let goose = user.get("/items/42").await?;
///     let mut read = swarm::worker::read_response(user, goose).await;
///     if read.status == Some(404) {
///         // An item that is gone is no failure here.
///         return user.set_success(&mut read.request);
///     }
///     if !read.text().contains("price") {
///         return user.set_failure("no price on the page", &mut read.request, None, None);
///     }
///     Ok(())
/// }
/// ```
pub async fn read_response(user: &GooseUser, goose: GooseResponse) -> ReadResponse {
    let GooseResponse {
        mut request,
        response,
    } = goose;
    let response = match response {
        Ok(response) => response,
        Err(error) => {
            // The failures table gets the cause (a certificate's, a
            // refused connection's), not only goose's first line of it.
            request.error = super::failure_log::with_causes(&request.error, &error);
            send_note(user, REQUEST_FAILED_NOTE, &request, request.error.clone());
            return ReadResponse {
                request,
                status: None,
                headers: reqwest::header::HeaderMap::new(),
                body: None,
            };
        }
    };
    let status = Some(response.status().as_u16());
    let headers = response.headers().clone();
    let started = Instant::now();
    let read = response.bytes().await;
    let body_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
    let total = request.response_time_micros().saturating_add(body_us);
    request.response_time = total / 1000;
    request.response_time_fraction_us = (total % 1000) as u16;
    // The note: the request as goose recorded it, timed to the body's last
    // byte; its size, or why the body did not arrive.
    let timed = request.clone();
    let (body, tag, note) = match read {
        Ok(body) => {
            let size = body.len().to_string();
            (Some(body), BODY_NOTE, size)
        }
        Err(err) => {
            request.success = false;
            request.error = format!("reading the body: {err}: {}", request.name);
            (None, BODY_FAILED_NOTE, request.error.clone())
        }
    };
    send_note(user, tag, &timed, note);
    ReadResponse {
        request,
        status,
        headers,
        body,
    }
}

/// Sends the tap a note about `request`, from a user attached to it
/// (elsewhere, in a plain goose run, it would go to goose's own logger).
fn send_note(user: &GooseUser, tag: &str, request: &GooseRequestMetric, body: String) {
    if user.config.error_log.as_deref() != Some(IN_PROCESS) {
        return;
    }
    if let Some(logger) = &user.logger {
        let _ = logger.send(Some(GooseLog::Debug(GooseDebug {
            tag: tag.to_string(),
            request: Some(request.clone()),
            header: None,
            body: Some(body),
        })));
    }
}

/// Tells the tap that the gate parked `user`, when goose's coordinated
/// omission mitigation is on for it: the wait is not the target's stall.
pub(crate) fn note_parked(user: &GooseUser) {
    let mitigating = user
        .config
        .co_mitigation
        .as_ref()
        .is_some_and(|m| *m != GooseCoordinatedOmissionMitigation::Disabled);
    if !mitigating || user.config.error_log.as_deref() != Some(IN_PROCESS) {
        return;
    }
    if let Some(logger) = &user.logger {
        let _ = logger.send(Some(GooseLog::Debug(GooseDebug {
            tag: PARK_NOTE.to_string(),
            request: None,
            header: None,
            body: Some(user.weighted_users_index.to_string()),
        })));
    }
}

/// Tells the tap that `user` began a pass on the schedule `late` after
/// the start was due: its next request is measured from the due time
/// (wrk2's intended time). Sent for every pass, so a pass that made no
/// request leaves nothing to the next one.
pub(crate) fn note_intended_start(user: &GooseUser, late: Duration) {
    if user.config.error_log.as_deref() != Some(IN_PROCESS) {
        return;
    }
    let micros = u64::try_from(late.as_micros()).unwrap_or(u64::MAX);
    if let Some(logger) = &user.logger {
        let _ = logger.send(Some(GooseLog::Debug(GooseDebug {
            tag: INTENDED_NOTE.to_string(),
            request: None,
            header: None,
            body: Some(format!("{}:{micros}", user.weighted_users_index)),
        })));
    }
}

/// Hands every user the worker's log channel; owns the tally.
#[derive(Debug, Clone)]
pub struct Tap {
    sender: LogSender,
    receiver: flume::Receiver<Option<GooseLog>>,
    /// Goose's metrics channel, for each user: the verdicts a scenario
    /// gives after the fact come this way (batches are dropped).
    verdicts_sender: flume::Sender<GooseMetric>,
    verdicts: flume::Receiver<GooseMetric>,
    tally: Arc<Mutex<Tally>>,
    /// Goose's own request log (`--request-log`), when the worker writes
    /// one: each record is passed on to it.
    file_log: Arc<OnceLock<LogSender>>,
    /// Coordinated omission mitigation for users attached from now on, as
    /// the master's last spawn chose it; `None`: goose's configuration's.
    co_mitigation: Arc<Mutex<Option<GooseCoordinatedOmissionMitigation>>>,
    /// The open model runs: goose's back-fill copies are dropped, since
    /// each pass's first request is measured from its intended start and a
    /// wait for a start is no stall of the target.
    open: Arc<AtomicBool>,
}

impl Tap {
    /// A tap and the task that folds records into its tally (it ends when
    /// every sender, the users' included, is gone).
    pub fn start() -> Tap {
        let (sender, receiver) = flume::unbounded();
        let (verdicts_sender, verdicts) = flume::unbounded();
        let tap = Tap {
            sender,
            receiver,
            verdicts_sender,
            verdicts,
            tally: Arc::new(Mutex::new(Tally::new(now_epoch()))),
            file_log: Arc::new(OnceLock::new()),
            co_mitigation: Arc::default(),
            open: Arc::default(),
        };
        let folder = Tap {
            sender: flume::unbounded().0,
            verdicts_sender: flume::unbounded().0,
            ..tap.clone()
        };
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(FOLD_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if let Ok(mut tally) = folder.tally.lock() {
                    folder.drain(&mut tally, now_epoch());
                }
                if folder.receiver.is_disconnected()
                    && folder.receiver.is_empty()
                    && folder.verdicts.is_disconnected()
                {
                    break;
                }
            }
        });
        tap
    }

    /// Folds every record sent so far; called with the tally locked.
    fn drain(&self, tally: &mut Tally, now: f64) {
        let file_log = self.file_log.get();
        tally.keep_counted = file_log.is_some();
        while let Ok(record) = self.receiver.try_recv() {
            let Some(record) = record else { continue };
            // goose's request log gets each request as counted (its time
            // runs to the body's last byte), and goose's own re-sends
            // (a failure marked later, a back-fill copy) as they came,
            // except the copies a park caused, which count nowhere.
            let copy =
                matches!(&record, GooseLog::Request(r) if r.coordinated_omission_elapsed > 0);
            if copy && self.open.load(Ordering::Relaxed) {
                continue;
            }
            let pass_on = match &record {
                GooseLog::Request(r) if r.coordinated_omission_elapsed > 0 => {
                    !tally.is_park_copy(r)
                }
                GooseLog::Request(r) => r.update,
                _ => false,
            };
            tally.record(&record, now);
            if let (Some(file_log), true) = (file_log, pass_on) {
                let _ = file_log.send(Some(record));
            }
        }
        // After the records: a verdict follows its request's record.
        while let Ok(metric) = self.verdicts.try_recv() {
            let GooseMetric::Request(request) = metric else {
                continue;
            };
            if !request.update {
                continue;
            }
            tally.correct(&request, now);
            if let Some(file_log) = file_log {
                let _ = file_log.send(Some(GooseLog::Request(*request)));
            }
        }
        self.log_counted(tally);
    }

    /// Passes the requests counted since the last call on to goose's
    /// request log file, when the worker writes one.
    fn log_counted(&self, tally: &mut Tally) {
        if let Some(file_log) = self.file_log.get() {
            for request in tally.counted.drain(..) {
                let _ = file_log.send(Some(GooseLog::Request(request)));
            }
        }
    }

    /// Points `user` at this tap, once per user: its request records come
    /// here (and are passed on to goose's request log file, when the worker
    /// writes one), and goose's own aggregation for it is off. Returns
    /// whether the user was new to the tap.
    pub fn attach(&self, user: &mut GooseUser) -> bool {
        if user
            .logger
            .as_ref()
            .is_some_and(|l| l.same_channel(&self.sender))
        {
            return false;
        }
        if let Some(goose_log) = user.logger.take() {
            if user
                .config
                .request_log
                .as_deref()
                .is_some_and(|p| !p.is_empty())
            {
                let _ = self.file_log.set(goose_log);
            }
        }
        if user.config.request_log.as_deref().is_none_or(str::is_empty) {
            user.config.request_log = Some(IN_PROCESS.to_string());
        }
        // Transaction errors (a transaction that returned an error of its
        // own) come the same way, when an error log is named.
        user.config.error_log = Some(IN_PROCESS.to_string());
        user.logger = Some(self.sender.clone());
        user.metrics_channel = Some(self.verdicts_sender.clone());
        // Goose reads the mode from the user's own configuration, on every
        // pass through its transactions and with every request.
        if let Some(mode) = self.co_mitigation.lock().ok().and_then(|m| m.clone()) {
            user.config.co_mitigation = Some(mode);
        }
        true
    }

    /// Whether the open model runs (its back-fill copies are dropped).
    pub fn set_open(&self, open: bool) {
        self.open.store(open, Ordering::Relaxed);
    }

    /// Chooses coordinated omission mitigation for the users attached from
    /// now on; `None` keeps goose's configuration's.
    pub fn set_co_mitigation(&self, mode: Option<GooseCoordinatedOmissionMitigation>) {
        if let Ok(mut current) = self.co_mitigation.lock() {
            *current = mode;
        }
    }

    /// Requests measured since the last call, as a Locust stats delta. Any
    /// record already sent is in it: the channel is drained first. A request
    /// still waiting for its body's note stays for the next call, unless it
    /// waited through one already or `settle` is set (the users are halted:
    /// no note is coming).
    pub fn take(&self, settle: bool) -> StatsReport {
        let now = now_epoch();
        let Ok(mut tally) = self.tally.lock() else {
            return StatsReport::default();
        };
        self.drain(&mut tally, now);
        tally.settle_pending(settle, now);
        // Requests settled just now were counted too: the log gets them.
        self.log_counted(&mut tally);
        let next = tally.carry_over(now, settle);
        let taken = std::mem::replace(&mut *tally, next);
        if taken.late_verdicts > 0 {
            tracing::debug!(
                "{} verdicts came after their requests were reported; counted as they were",
                taken.late_verdicts
            );
        }
        taken.into_report(now)
    }

    /// Transaction errors since the last call: (message, occurrences).
    pub fn take_exceptions(&self) -> Vec<(String, u64)> {
        let Ok(mut tally) = self.tally.lock() else {
            return Vec::new();
        };
        std::mem::take(&mut tally.exceptions).into_iter().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::super::tally::tests::request;
    use super::*;

    #[tokio::test]
    async fn the_request_log_gets_requests_settled_at_a_report() {
        let tap = Tap::start();
        let (file_log, logged) = flume::unbounded();
        assert!(tap.file_log.set(file_log).is_ok());
        // A scenario that never reads the body: no note comes.
        let _ = tap
            .sender
            .send(Some(GooseLog::Request(request(0, 10, 400))));
        let report = tap.take(true);
        assert_eq!(report.stats_total.num_requests, 1);
        let logged: Vec<_> = logged.try_iter().flatten().collect();
        assert!(
            matches!(logged.as_slice(), [GooseLog::Request(r)] if r.user == 0),
            "the log has the request counted: {logged:?}"
        );
    }
}
