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
//! only: a verdict a scenario gave after the fact (see **Verdicts**); the
//! batches goose aggregates on it are dropped unread.
//!
//! **Verdicts, as goose and Locust give them.** `user.set_success(&mut
//! request)` (Locust's `response.success()` in a `catch_response` block)
//! and `user.set_failure(tag, &mut request, ..)` (`response.failure(..)`)
//! send the corrected request down goose's metrics channel. The tap matches
//! it to the request's record (user, time into the run, method, name) and
//! changes what is counted: a failure made a success is no failure and no
//! error row; a success made a failure is one more failure, with the tag as
//! its error. So that a request marked a success is never counted as a
//! failure first (Locust's protocol carries no negative counts), a failed
//! request waits, like one waiting for its body, until its user's next
//! record, its verdict, or a second report.
//!
//! **Bodies, as Locust counts them.** Goose times a request until its
//! headers arrive and never sees the body. A scenario that reads the body
//! with [`read_body`] sends a note down the same channel right after
//! goose's record: the body's size, and the request's time to the last byte
//! (goose's time to the headers plus the time the body took to arrive from
//! when goose handed the response over; goose's few microseconds of
//! bookkeeping between the two are not counted). So once a transaction has
//! sent a note, each of its requests waits, pending, for its note; the
//! user's next record, or a second report since, settles it with goose's
//! time and no size. A transaction that never reads bodies this way
//! (goose's own `user.get()` alone) has its requests counted as they
//! arrive, in the second they ended, not seconds later; so are the few
//! requests of a reading transaction that arrive before its first note.
//!
//! **Coordinated omission.** With goose's mitigation on, the request that
//! ends a stall comes a second time with `coordinated_omission_elapsed` and
//! `user_cadence` set. That copy is not a request: the tally back-fills from
//! it the requests the user would have made during the stall, exactly as
//! goose's own metrics do, into the histogram only (see
//! [`StatsEntry::log_backfilled`]). A user the gate parked (no seat for
//! it) also looks stalled to goose: the park counts into its cadence. So
//! the gate notes each park down the same channel ([`note_parked`]), and
//! the copies goose sends for the user's next pass, which all carry the
//! park's length, are dropped, not back-filled. This is exact for a class
//! of one transaction (each pass either parks or runs). In a class of
//! several, a user re-seated in the middle of a pass still has the parked
//! part of that pass back-filled once, with the pass after it: the tap
//! sees records, not goose's passes.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use goose::goose::{GooseDebug, GooseMethod, GooseResponse};
use goose::logger::GooseLog;
use goose::metrics::{GooseCoordinatedOmissionMitigation, GooseMetric, GooseRequestMetric};
use goose::prelude::GooseUser;

use super::failure_log::FailureLog;
use crate::stats::{now_epoch, StatsEntry, StatsError, StatsReport, AGGREGATED};

/// A user configuration's request and error logs, set only so goose sends
/// the records; nothing is written anywhere.
const IN_PROCESS: &str = "in-process";

/// The tag of the note [`read_body`] sends after goose's own record: its
/// body is the body's size.
const BODY_NOTE: &str = "swarm:body";

/// The tag of the note [`read_body`] sends when the body did not arrive:
/// its body is why.
const BODY_FAILED_NOTE: &str = "swarm:body-failed";

/// The tag of the note [`read_response`] sends when no response came: its
/// body is the error with the causes goose's text leaves out.
const REQUEST_FAILED_NOTE: &str = "swarm:request-failed";

/// The tag of the note [`note_parked`] sends when the gate parks a user.
const PARK_NOTE: &str = "swarm:parked";

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
        let mut next = Tally::new(now);
        next.exceptions = std::mem::take(&mut tally.exceptions);
        next.pending = std::mem::take(&mut tally.pending);
        next.noting = std::mem::take(&mut tally.noting);
        next.failure_log = std::mem::take(&mut tally.failure_log);
        if settle {
            // The users stopped: what the log left out is said now.
            next.failure_log.flush();
        }
        // A park's copies come in the user's next pass, within a report or
        // two; a length kept longer could only drop a real stall's.
        next.parked = std::mem::take(&mut tally.parked);
        next.parked.retain(|_, copies| copies.is_none());
        // A verdict whose request has not come waits one report more.
        for (key, mut early) in std::mem::take(&mut tally.early) {
            if early.waited {
                tally.late_verdicts = tally.late_verdicts.saturating_add(1);
            } else {
                early.waited = true;
                next.early.insert(key, early);
            }
        }
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

/// Locust's name of a request's method: `GET`, or a custom protocol's own.
fn method_name(request: &GooseRequestMetric) -> String {
    match &request.raw.custom_method {
        custom if !custom.is_empty() => custom.clone(),
        _ => request.raw.method.to_string(),
    }
}

/// The verdicts kept waiting for their requests' records, at most: a few
/// per user between two folds of the tally.
const MAX_EARLY: usize = 4096;

/// What tells a request's record, note and verdict apart from another's:
/// its user, when it was made (ms into the run), its method and its name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct RequestKey(usize, u64, GooseMethod, Arc<str>);

impl RequestKey {
    fn of(request: &GooseRequestMetric) -> RequestKey {
        RequestKey(
            request.user,
            request.elapsed,
            request.raw.method,
            request.name.clone(),
        )
    }
}

/// A verdict that came before its request's record.
#[derive(Debug)]
struct Early {
    verdict: GooseRequestMetric,
    /// A report was taken while it waited: the next one drops it.
    waited: bool,
}

/// A failure counted in this report, to take back on a verdict of success.
#[derive(Debug)]
struct CountedFailure {
    /// The second it counted in.
    second: i64,
    /// Its error row's key.
    error: String,
}

/// A request waiting for its body's note, or (failed) for a verdict.
#[derive(Debug)]
struct Pending {
    request: GooseRequestMetric,
    /// A report was taken while it waited: the next one settles it.
    waited: bool,
}

/// Requests since the last report, per (method, name), with their errors.
#[derive(Debug)]
pub struct Tally {
    since: f64,
    /// Keyed by goose's method and the request name (an `Arc` goose shares):
    /// looking a request up allocates nothing.
    entries: HashMap<(GooseMethod, Arc<str>), StatsEntry>,
    errors: BTreeMap<String, StatsError>,
    /// Transaction errors, as Locust's Exceptions tab lists them: message →
    /// occurrences. Taken apart from the stats (see [`Tap::take_exceptions`]).
    exceptions: BTreeMap<String, u64>,
    /// Each user's last request, until its body's note (or the user's next
    /// record) settles it; keyed by goose's user index.
    pending: HashMap<usize, Pending>,
    /// Transactions (scenario, transaction index) that have sent a body
    /// note: their requests wait for theirs.
    noting: HashSet<(usize, usize)>,
    /// Users the gate parked: goose's back-fill copies for their next pass
    /// measure the park, not a stall. `None` until the first such copy,
    /// then the length it carries (every copy of that pass carries it).
    parked: HashMap<usize, Option<u64>>,
    /// Failures counted since the last report, by request: a verdict of
    /// success after one was counted takes it back.
    failed: HashMap<RequestKey, CountedFailure>,
    /// Verdicts read before their request's record (the two come down two
    /// channels): applied when it comes, or counted late after a report.
    early: HashMap<RequestKey, Early>,
    /// Verdicts that came after their request was reported: counted as
    /// they were (a report cannot take a failure back).
    pub(crate) late_verdicts: u64,
    /// Requests as counted (time to the body's last byte), kept for goose's
    /// request log file while the worker writes one.
    counted: Vec<GooseRequestMetric>,
    /// Whether to keep them.
    keep_counted: bool,
    /// Requests that got no response, logged once per error with a count.
    failure_log: FailureLog,
}

impl Tally {
    fn new(since: f64) -> Tally {
        Tally {
            since,
            entries: HashMap::new(),
            errors: BTreeMap::new(),
            exceptions: BTreeMap::new(),
            pending: HashMap::new(),
            noting: HashSet::new(),
            parked: HashMap::new(),
            failed: HashMap::new(),
            early: HashMap::new(),
            late_verdicts: 0,
            counted: Vec::new(),
            keep_counted: false,
            failure_log: FailureLog::default(),
        }
    }

    /// Folds in one record from goose's request log.
    pub fn record(&mut self, record: &GooseLog, now: f64) {
        match record {
            GooseLog::Request(request) if request.coordinated_omission_elapsed > 0 => {
                if self.is_park_copy(request) {
                    self.parked
                        .insert(request.user, Some(request.coordinated_omission_elapsed));
                } else {
                    self.parked.remove(&request.user);
                    self.backfill(request);
                }
            }
            GooseLog::Request(request) => {
                if self.parked.get(&request.user) == Some(&None) {
                    // Its pass after the park brought no copy: nothing to drop.
                    self.parked.remove(&request.user);
                }
                self.settle_user(request.user, now);
                // Its verdict may have been read first.
                let decided;
                let early = if self.early.is_empty() {
                    None
                } else {
                    self.early.remove(&RequestKey::of(request))
                };
                let request = match early {
                    Some(early) => {
                        let mut request = request.clone();
                        request.success = early.verdict.success;
                        request.error = early.verdict.error;
                        decided = request;
                        &decided
                    }
                    None => request,
                };
                let noting = self
                    .noting
                    .contains(&(request.scenario_index, request.transaction_index));
                if request.update {
                    self.update(request, now);
                } else if request.success && !noting {
                    self.finish(request, 0, now);
                } else {
                    // Waits for its body's note, or (failed) for a verdict.
                    self.pending.insert(
                        request.user,
                        Pending {
                            request: request.clone(),
                            waited: false,
                        },
                    );
                }
            }
            GooseLog::Debug(note) if note.tag == PARK_NOTE => {
                if let Some(user) = note.body.as_deref().and_then(|b| b.parse().ok()) {
                    self.parked.insert(user, None);
                }
            }
            GooseLog::Debug(note) if note.tag == REQUEST_FAILED_NOTE => {
                // Its record waits (a failure waits for a verdict): it is
                // counted with the causes in its error.
                let (Some(failed), Some(error)) = (note.request.as_ref(), note.body.as_ref())
                else {
                    return;
                };
                let key = RequestKey::of(failed);
                if let Some(pending) = self
                    .pending
                    .get_mut(&failed.user)
                    .filter(|p| RequestKey::of(&p.request) == key && !p.request.success)
                {
                    pending.request.error.clone_from(error);
                }
            }
            GooseLog::Debug(note) if note.tag == BODY_NOTE || note.tag == BODY_FAILED_NOTE => {
                let Some(timed) = note.request.as_ref() else {
                    return;
                };
                self.noting
                    .insert((timed.scenario_index, timed.transaction_index));
                let (size, body_error) = if note.tag == BODY_FAILED_NOTE {
                    (0, Some(note.body.clone().unwrap_or_default()))
                } else {
                    let size = note.body.as_deref().and_then(|b| b.parse().ok());
                    (size.unwrap_or(0), None)
                };
                let key = RequestKey::of(timed);
                let waiting = self
                    .pending
                    .get(&timed.user)
                    .is_some_and(|p| RequestKey::of(&p.request) == key);
                let pending = if waiting {
                    self.pending.remove(&timed.user)
                } else {
                    None
                };
                match pending {
                    Some(pending) => {
                        // As recorded, with any verdict given meanwhile, to
                        // the body's last byte.
                        let mut counted = pending.request;
                        counted.response_time = timed.response_time;
                        counted.response_time_fraction_us = timed.response_time_fraction_us;
                        if let Some(error) = body_error {
                            counted.success = false;
                            counted.error = error;
                        }
                        self.finish(&counted, size, now);
                    }
                    None => {
                        // Its request was counted already (the body took
                        // longer than a report, or it came before its
                        // transaction's first note): its size still counts,
                        // and so does a body that did not arrive, as a
                        // failure.
                        let entry = self.entry(timed);
                        entry.total_content_length =
                            entry.total_content_length.saturating_add(size);
                        if let Some(error) = body_error {
                            let mut failed = timed.clone();
                            failed.success = false;
                            failed.error = error;
                            self.update(&failed, now);
                        }
                    }
                }
            }
            GooseLog::TransactionError(failed) => {
                let msg = format!(
                    "{} (transaction {} of {})",
                    failed.error, failed.transaction_name, failed.scenario_name
                );
                let count = self.exceptions.entry(msg).or_default();
                *count = count.saturating_add(1);
            }
            _ => {}
        }
    }

    /// Whether goose's back-fill copy `copy` measures a park of its user
    /// (the first copy after a park note, or one of the same pass, which
    /// carries the same length), not a stall of the target.
    fn is_park_copy(&self, copy: &GooseRequestMetric) -> bool {
        match self.parked.get(&copy.user) {
            Some(None) => true,
            Some(Some(park)) => *park == copy.coordinated_omission_elapsed,
            None => false,
        }
    }

    fn entry(&mut self, request: &GooseRequestMetric) -> &mut StatsEntry {
        let since = self.since;
        self.entries
            .entry((request.raw.method, request.name.clone()))
            .or_insert_with(|| StatsEntry::new(&request.name, &method_name(request), since))
    }

    /// Settles `user`'s pending request, without a body.
    fn settle_user(&mut self, user: usize, now: f64) {
        if let Some(pending) = self.pending.remove(&user) {
            self.finish(&pending.request, 0, now);
        }
    }

    /// Settles the requests that waited through a report already (all of
    /// them when `all`); marks the others as having waited through this one.
    fn settle_pending(&mut self, all: bool, now: f64) {
        let due: Vec<usize> = self
            .pending
            .iter_mut()
            .filter_map(|(user, pending)| {
                let due = all || pending.waited;
                pending.waited = true;
                due.then_some(*user)
            })
            .collect();
        for user in due {
            self.settle_user(user, now);
        }
    }

    /// Counts one request that took `request`'s time and carried `size`
    /// bytes of body.
    fn finish(&mut self, request: &GooseRequestMetric, size: u64, now: f64) {
        if self.keep_counted {
            self.counted.push(request.clone());
        }
        let entry = self.entry(request);
        let ms = request.response_time_micros() as f64 / 1000.0;
        entry.log(ms, 1, !request.success, now);
        entry.total_content_length = entry.total_content_length.saturating_add(size);
        if !request.success {
            if request.status_code == 0 {
                self.failure_log.failed(&request.error);
            }
            let error = self.error(request, now);
            self.failed.insert(
                RequestKey::of(request),
                CountedFailure {
                    second: now as i64,
                    error,
                },
            );
        }
    }

    /// A verdict a scenario gave after the request (goose's `set_success`
    /// or `set_failure`): the request waiting counts as the verdict says;
    /// one counted already has its failure added or taken back.
    pub fn correct(&mut self, verdict: &GooseRequestMetric, now: f64) {
        let same = |r: &GooseRequestMetric| {
            r.elapsed == verdict.elapsed
                && r.raw.method == verdict.raw.method
                && r.name == verdict.name
        };
        if let Some(pending) = self
            .pending
            .get_mut(&verdict.user)
            .filter(|p| same(&p.request))
        {
            pending.request.success = verdict.success;
            pending.request.error.clone_from(&verdict.error);
            // Decided: it waits no longer, unless for its body's note.
            let noting = self.noting.contains(&(
                pending.request.scenario_index,
                pending.request.transaction_index,
            ));
            if !noting {
                self.settle_user(verdict.user, now);
            }
            return;
        }
        if !verdict.success {
            self.update(verdict, now);
            return;
        }
        if let Some(counted) = self.failed.remove(&RequestKey::of(verdict)) {
            self.unfail(verdict, &counted);
        } else if self.early.len() < MAX_EARLY {
            // Its record may not have come yet: it follows on the other channel.
            self.early.insert(
                RequestKey::of(verdict),
                Early {
                    verdict: verdict.clone(),
                    waited: false,
                },
            );
        } else {
            self.late_verdicts = self.late_verdicts.saturating_add(1);
        }
    }

    /// Takes back a failure counted in this report.
    fn unfail(&mut self, request: &GooseRequestMetric, counted: &CountedFailure) {
        let entry = self.entry(request);
        entry.num_failures = entry.num_failures.saturating_sub(1);
        if let Some(n) = entry.num_fail_per_sec.get_mut(&counted.second) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                entry.num_fail_per_sec.remove(&counted.second);
            }
        }
        if let Some(error) = self.errors.get_mut(&counted.error) {
            error.occurrences = error.occurrences.saturating_sub(1);
            if error.occurrences == 0 {
                self.errors.remove(&counted.error);
            }
        }
    }

    /// Goose re-sends a request a transaction marked failed after the fact:
    /// one more failure, not one more request.
    fn update(&mut self, request: &GooseRequestMetric, now: f64) {
        if request.success {
            return;
        }
        let entry = self.entry(request);
        entry.num_failures = entry.num_failures.saturating_add(1);
        let second = entry.num_fail_per_sec.entry(now as i64).or_default();
        *second = second.saturating_add(1);
        let error = self.error(request, now);
        self.failed.insert(
            RequestKey::of(request),
            CountedFailure {
                second: now as i64,
                error,
            },
        );
    }

    /// Counts one occurrence of `request`'s error; returns its row's key.
    fn error(&mut self, request: &GooseRequestMetric, now: f64) -> String {
        let error = StatsError {
            method: method_name(request),
            name: request.name.to_string(),
            error: request.error.clone(),
            occurrences: 1,
            first_seen: Some(now),
            last_seen: Some(now),
        };
        let key = error.wire_key();
        match self.errors.get_mut(&key) {
            Some(known) => known.extend(&error),
            None => {
                self.errors.insert(key.clone(), error);
            }
        }
        key
    }

    /// The requests a stalled user would have made, from the copy of the
    /// request that ended the stall, as goose's own metrics derive them:
    /// one every `user_cadence` ms, from the stall's length less one cadence
    /// down to (not including) the measured time, in whole milliseconds.
    fn backfill(&mut self, copy: &GooseRequestMetric) {
        let cadence = copy.user_cadence;
        if cadence == 0 {
            return;
        }
        let measured = copy.response_time;
        let entry = self.entry(copy);
        let mut time = copy
            .coordinated_omission_elapsed
            .saturating_sub(cadence)
            .saturating_sub(measured);
        while time > measured {
            entry.log_backfilled(time as f64, 1);
            time -= cadence.min(time);
        }
    }

    fn into_report(self, now: f64) -> StatsReport {
        let mut total = StatsEntry::new(AGGREGATED, "", self.since);
        let mut stats: Vec<StatsEntry> = self.entries.into_values().collect();
        stats.sort_by(|a, b| (&a.name, &a.method).cmp(&(&b.name, &b.method)));
        for entry in &stats {
            total.extend(entry);
        }
        total.start_time = self.since;
        if total.last_request_timestamp.is_none() && !stats.is_empty() {
            total.last_request_timestamp = Some(now);
        }
        StatsReport {
            stats,
            stats_total: total,
            errors: self.errors,
            ..StatsReport::default()
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A request record as goose sends it: `user`'s GET `/` at `elapsed`
    /// ms into its run, taking `us` microseconds.
    pub(crate) fn request(user: usize, elapsed: u64, us: u64) -> GooseRequestMetric {
        let json = serde_json::json!({
            "elapsed": elapsed, "scenario_index": 0, "scenario_name": "WebsiteUser",
            "transaction_index": 0, "transaction_name": {"TransactionOnly": ""},
            "raw": {"method": "Get", "url": "http://target/", "headers": [], "body": "", "custom_method": ""},
            "name": "/", "final_url": "http://target/", "redirected": false,
            "response_time": us / 1000, "status_code": 200, "success": true, "update": false,
            "user": user, "error": "", "coordinated_omission_elapsed": 0, "user_cadence": 0,
            "response_time_fraction_us": us % 1000,
        });
        serde_json::from_value(json).expect("goose's request metric")
    }

    fn note(mut request: GooseRequestMetric, total_us: u64, size: u64) -> GooseLog {
        request.response_time = total_us / 1000;
        request.response_time_fraction_us = (total_us % 1000) as u16;
        GooseLog::Debug(GooseDebug {
            tag: BODY_NOTE.to_string(),
            request: Some(request),
            header: None,
            body: Some(size.to_string()),
        })
    }

    fn report_of(mut tally: Tally, settle: bool) -> StatsReport {
        tally.settle_pending(settle, 2.0);
        tally.into_report(2.0)
    }

    #[test]
    fn a_request_without_a_response_counts_once_with_its_causes() {
        let mut tally = Tally::new(1.0);
        let mut failed = request(3, 10, 700);
        failed.success = false;
        failed.status_code = 0;
        failed.error = "error sending request /: client error (Connect)".into();
        let mut noted = failed.clone();
        noted.error = format!("{}: invalid peer certificate: UnknownIssuer", failed.error);
        tally.record(&GooseLog::Request(failed.clone()), 1.5);
        tally.record(
            &GooseLog::Debug(GooseDebug {
                tag: REQUEST_FAILED_NOTE.to_string(),
                request: Some(noted.clone()),
                header: None,
                body: Some(noted.error.clone()),
            }),
            1.5,
        );
        let report = report_of(tally, true);
        assert_eq!(report.stats_total.num_requests, 1);
        assert_eq!(report.stats_total.num_failures, 1);
        let errors: Vec<(&str, u64)> = report
            .errors
            .values()
            .map(|e| (e.error.as_str(), e.occurrences))
            .collect();
        assert_eq!(errors, vec![(noted.error.as_str(), 1)]);
    }

    #[test]
    fn a_body_note_gives_the_size_and_the_time_to_the_last_byte() {
        let mut tally = Tally::new(1.0);
        // The transaction has read a body before: its requests wait.
        tally.noting.insert((0, 0));
        let (a, b) = (request(0, 10, 400), request(1, 11, 500));
        tally.record(&GooseLog::Request(a.clone()), 1.5);
        tally.record(&GooseLog::Request(b.clone()), 1.5);
        tally.record(&note(a, 1_400, 125), 1.5);
        // User 1's next request settles its first without a note.
        tally.record(&GooseLog::Request(request(1, 12, 600)), 1.5);
        let report = report_of(tally, true);
        let total = &report.stats_total;
        assert_eq!(total.num_requests, 3);
        assert_eq!(total.total_content_length, 125);
        assert!((total.total_response_time - (1.4 + 0.5 + 0.6)).abs() < 1e-9);
    }

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

    #[test]
    fn a_request_waits_through_one_report_for_its_body() {
        let mut tally = Tally::new(1.0);
        tally.noting.insert((0, 0));
        tally.record(&GooseLog::Request(request(0, 10, 400)), 1.5);
        tally.settle_pending(false, 1.6);
        assert_eq!(tally.pending.len(), 1, "kept for its note");
        tally.settle_pending(false, 1.7);
        assert!(tally.pending.is_empty(), "settled on the second report");
    }

    /// Requests of a transaction that never sent a note are counted as
    /// they come, in their own second; once it sends one, the next wait.
    #[test]
    fn only_a_transaction_that_reads_bodies_waits_for_its_notes() {
        let mut tally = Tally::new(1.0);
        let first = request(0, 10, 400);
        tally.record(&GooseLog::Request(first.clone()), 1.5);
        assert!(tally.pending.is_empty(), "nothing to wait for yet");
        let second = tally
            .entries
            .values()
            .map(|e| e.num_reqs_per_sec.clone())
            .next();
        assert_eq!(
            second.map(|s| s.into_iter().collect::<Vec<_>>()),
            Some(vec![(1, 1)]),
            "counted in the second it arrived"
        );
        // Its note comes after all: the size still counts.
        tally.record(&note(first, 1_400, 125), 1.6);
        tally.record(&GooseLog::Request(request(0, 11, 500)), 2.5);
        assert_eq!(
            tally.pending.len(),
            1,
            "now the transaction's requests wait"
        );
        let report = report_of(tally, true);
        assert_eq!(report.stats_total.num_requests, 2);
        assert_eq!(report.stats_total.total_content_length, 125);
    }

    /// A body that did not arrive fails its request, even when the request
    /// was counted before its note came.
    #[test]
    fn a_body_that_failed_after_its_request_was_counted_is_a_failure() {
        let mut tally = Tally::new(1.0);
        let first = request(0, 10, 400);
        tally.record(&GooseLog::Request(first.clone()), 1.5);
        let mut failed = note(first, 1_400, 0);
        if let GooseLog::Debug(debug) = &mut failed {
            debug.tag = BODY_FAILED_NOTE.to_string();
            debug.body = Some("reading the body: connection reset: /".into());
        }
        tally.record(&failed, 1.6);
        let report = report_of(tally, true);
        assert_eq!(report.stats_total.num_requests, 1);
        assert_eq!(report.stats_total.num_failures, 1);
        assert_eq!(report.errors.len(), 1, "{:?}", report.errors);
    }

    fn park_note(user: usize) -> GooseLog {
        GooseLog::Debug(GooseDebug {
            tag: PARK_NOTE.to_string(),
            request: None,
            header: None,
            body: Some(user.to_string()),
        })
    }

    fn copy(user: usize, elapsed: u64, cadence: u64) -> GooseLog {
        let mut copy = request(user, 10, 1_000);
        copy.coordinated_omission_elapsed = elapsed;
        copy.user_cadence = cadence;
        GooseLog::Request(copy)
    }

    /// A parked user's next pass looks like a stall to goose: its copies
    /// (one per request of the pass) are dropped; a later real stall, or
    /// another user's, is back-filled.
    #[test]
    fn a_park_is_not_back_filled_as_a_stall() {
        let mut tally = Tally::new(1.0);
        tally.record(&park_note(0), 1.1);
        // The pass after the park: two requests, each with its copy.
        for _ in 0..2 {
            tally.record(&copy(0, 1_000, 10), 1.2);
            tally.record(&GooseLog::Request(request(0, 10, 1_000)), 1.2);
        }
        // User 1 was never parked: its stall counts.
        tally.record(&copy(1, 100, 10), 1.3);
        let backfilled = |t: &Tally| t.entries.values().map(|e| e.backfilled).sum::<u64>();
        // 100 ms less a cadence less the measured 1 ms, down by 10 ms.
        assert_eq!(
            backfilled(&tally),
            9,
            "user 1's stall only: 89, 79 ... 9 ms"
        );
        // User 0's next real stall (another length) counts again.
        tally.record(&copy(0, 200, 10), 1.4);
        assert_eq!(backfilled(&tally), 9 + 19);
        // A park whose pass brought no copy drops nothing later.
        tally.record(&park_note(1), 1.5);
        tally.record(&GooseLog::Request(request(1, 12, 1_000)), 1.5);
        tally.record(&copy(1, 100, 10), 1.6);
        assert_eq!(backfilled(&tally), 9 + 19 + 9);
    }

    #[test]
    fn a_stall_is_back_filled_like_goose_does_into_the_histogram_only() {
        let mut tally = Tally::new(1.0);
        let mut stalled = request(0, 10, 1_000_000);
        tally.record(&GooseLog::Request(stalled.clone()), 1.5);
        // The copy that ended a 1,000 ms stall at a 100 ms cadence, its
        // request measured at 50 ms: goose back-fills 850, 750, ... 150 ms,
        // eight requests.
        stalled.coordinated_omission_elapsed = 1_000;
        stalled.user_cadence = 100;
        stalled.response_time = 50;
        tally.record(&GooseLog::Request(stalled), 1.5);
        let report = report_of(tally, true);
        let total = &report.stats_total;
        assert_eq!(
            total.num_requests, 1,
            "back-filled requests were never sent"
        );
        assert_eq!(total.backfilled, 8);
        assert_eq!(total.precise().map(crate::stats::Hdr::count), Some(9));
        assert_eq!(total.percentile_source(), "hdr+co");
        assert!(total.co_corrected());
    }

    /// `request` as goose's `set_success` or `set_failure(tag)` sends it.
    fn verdict(mut request: GooseRequestMetric, success: bool, tag: &str) -> GooseRequestMetric {
        request.success = success;
        request.update = true;
        if !success {
            request.error = tag.to_string();
        }
        request
    }

    fn failed(user: usize, elapsed: u64) -> GooseRequestMetric {
        let mut request = request(user, elapsed, 700);
        request.success = false;
        request.status_code = 404;
        request.error = "404 Not Found: /".to_string();
        request
    }

    #[test]
    fn an_expected_failure_marked_a_success_is_no_failure() {
        let mut tally = Tally::new(1.0);
        let missing = failed(0, 10);
        tally.record(&GooseLog::Request(missing.clone()), 1.5);
        tally.correct(&verdict(missing, true, ""), 1.5);
        let report = report_of(tally, false);
        assert_eq!(report.stats_total.num_requests, 1);
        assert_eq!(report.stats_total.num_failures, 0);
        assert!(report.errors.is_empty(), "{:?}", report.errors);
    }

    #[test]
    fn a_success_marked_a_failure_counts_with_its_reason() {
        let mut tally = Tally::new(1.0);
        let wrong = request(0, 10, 400);
        tally.record(&GooseLog::Request(wrong.clone()), 1.5);
        tally.correct(&verdict(wrong, false, "no price on the page"), 1.5);
        let report = report_of(tally, false);
        assert_eq!(report.stats_total.num_requests, 1);
        assert_eq!(report.stats_total.num_failures, 1);
        let errors: Vec<&str> = report.errors.values().map(|e| e.error.as_str()).collect();
        assert_eq!(errors, ["no price on the page"]);
    }

    #[test]
    fn a_failure_counted_before_its_verdict_is_taken_back() {
        let mut tally = Tally::new(1.0);
        let missing = failed(0, 10);
        tally.record(&GooseLog::Request(missing.clone()), 1.5);
        // The user's next request came before the verdict was read.
        tally.record(&GooseLog::Request(request(0, 11, 300)), 1.5);
        tally.correct(&verdict(missing, true, ""), 1.5);
        let report = report_of(tally, false);
        assert_eq!(report.stats_total.num_requests, 2);
        assert_eq!(report.stats_total.num_failures, 0);
        assert!(report.stats_total.num_fail_per_sec.is_empty());
        assert!(report.errors.is_empty(), "{:?}", report.errors);
    }

    #[test]
    fn a_failure_waits_through_a_report_for_its_verdict() {
        let mut tally = Tally::new(1.0);
        let missing = failed(0, 10);
        tally.record(&GooseLog::Request(missing.clone()), 1.5);
        tally.settle_pending(false, 2.0);
        assert_eq!(
            tally.entries.values().map(|e| e.num_requests).sum::<u64>(),
            0
        );
        tally.correct(&verdict(missing, true, ""), 2.5);
        let report = report_of(tally, false);
        assert_eq!(report.stats_total.num_requests, 1);
        assert_eq!(report.stats_total.num_failures, 0);
    }

    #[test]
    fn a_read_failure_waits_for_its_body_then_its_verdict() {
        let mut tally = Tally::new(1.0);
        // The first request of a transaction that reads bodies: a 404.
        let missing = failed(0, 10);
        tally.record(&GooseLog::Request(missing.clone()), 1.5);
        tally.record(&note(missing.clone(), 1_200, 512), 1.5);
        tally.correct(&verdict(missing, true, ""), 1.5);
        let report = report_of(tally, false);
        let total = &report.stats_total;
        assert_eq!((total.num_requests, total.num_failures), (1, 0));
        assert_eq!(total.total_content_length, 512);
        assert!(
            (total.total_response_time - 1.2).abs() < 1e-9,
            "{}",
            total.total_response_time
        );
        assert!(report.errors.is_empty());
    }

    /// Failures and error rows agree, whatever order records, verdicts
    /// and reports come in.
    #[test]
    fn failures_and_error_rows_always_agree() {
        let mut seed = 7u64;
        let mut next = move |n: u64| {
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            (seed >> 33) % n
        };
        let mut tally = Tally::new(1.0);
        let (mut failures, mut errors) = (0u64, 0u64);
        let mut elapsed = 0;
        for _ in 0..2_000 {
            let user = next(4) as usize;
            elapsed += next(2);
            let missing = failed(user, elapsed);
            tally.record(&GooseLog::Request(missing.clone()), 1.5);
            if next(3) == 0 {
                let report = tally_take(&mut tally);
                failures += report.stats_total.num_failures;
                errors += report.errors.values().map(|e| e.occurrences).sum::<u64>();
            }
            let mut page = request(user, elapsed, 300);
            page.name = "/page".into();
            if next(2) == 0 {
                tally.correct(&verdict(missing, true, ""), 1.5);
                tally.record(&GooseLog::Request(page.clone()), 1.5);
            } else {
                tally.record(&GooseLog::Request(page.clone()), 1.5);
                tally.correct(&verdict(missing, true, ""), 1.5);
            }
            tally.correct(&verdict(page, false, "no price"), 1.5);
        }
        tally.settle_pending(true, 2.0);
        let report = tally_take(&mut tally);
        failures += report.stats_total.num_failures;
        errors += report.errors.values().map(|e| e.occurrences).sum::<u64>();
        assert_eq!(failures, errors);
    }

    /// A report, as `Tap::take` takes one: what waits stays.
    fn tally_take(tally: &mut Tally) -> StatsReport {
        tally.settle_pending(false, 2.0);
        let mut next = Tally::new(2.0);
        next.pending = std::mem::take(&mut tally.pending);
        next.noting = std::mem::take(&mut tally.noting);
        std::mem::replace(tally, next).into_report(2.0)
    }

    #[test]
    fn a_verdict_read_before_its_record_still_counts() {
        let mut tally = Tally::new(1.0);
        let missing = failed(0, 10);
        tally.correct(&verdict(missing.clone(), true, ""), 1.5);
        tally.record(&GooseLog::Request(missing), 1.5);
        let report = report_of(tally, true);
        assert_eq!(report.stats_total.num_requests, 1);
        assert_eq!(report.stats_total.num_failures, 0);
        assert!(report.errors.is_empty());
    }
}
