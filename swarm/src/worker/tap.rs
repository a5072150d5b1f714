//! What the users measured, request by request: goose's request log,
//! delivered in-process instead of to a file. Every goose user sends each
//! request's record (`GooseLog::Request`: name, method, status, error, time
//! to the microsecond) to its `logger` channel when its configuration names
//! a request log; the [`Tap`] gives each user that channel (both are public
//! fields of `GooseUser`), and a task of its own folds the records into a
//! [`Tally`], which the worker takes as a Locust stats delta whenever it
//! reports.
//!
//! Compared with reading goose's aggregated metrics through its controller,
//! a report is ready at once (goose's main loop answers commands only twice
//! a second, too late for a Locust master's 0.5 s quit window), holds every
//! request that finished before it, and keeps each time to the microsecond.
//! Goose's own aggregation is switched off for these users (their
//! `metrics_channel` is cleared), so the worker pays for one tally, not two.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, OnceLock};

use goose::goose::GooseMethod;
use goose::logger::GooseLog;
use goose::metrics::GooseRequestMetric;
use goose::prelude::GooseUser;

use crate::stats::{now_epoch, StatsEntry, StatsError, StatsReport, AGGREGATED};

/// A user configuration's request log, set only so goose sends the records;
/// nothing is written anywhere.
const IN_PROCESS: &str = "in-process";

type LogSender = flume::Sender<Option<GooseLog>>;

/// Hands every user the worker's log channel; owns the tally.
#[derive(Debug, Clone)]
pub struct Tap {
    sender: LogSender,
    receiver: flume::Receiver<Option<GooseLog>>,
    tally: Arc<Mutex<Tally>>,
    /// Goose's own request log (`--request-log`), when the worker writes
    /// one: each record is passed on to it.
    file_log: Arc<OnceLock<LogSender>>,
}

impl Tap {
    /// A tap and the task that folds records into its tally (it ends when
    /// every sender, the users' included, is gone).
    pub fn start() -> Tap {
        let (sender, receiver) = flume::unbounded();
        let tap = Tap {
            sender,
            receiver: receiver.clone(),
            tally: Arc::new(Mutex::new(Tally::new(now_epoch()))),
            file_log: Arc::new(OnceLock::new()),
        };
        let (tally, file_log) = (tap.tally.clone(), tap.file_log.clone());
        tokio::spawn(async move {
            while let Ok(record) = receiver.recv_async().await {
                let Some(record) = record else { continue };
                if let Ok(mut tally) = tally.lock() {
                    tally.record(&record, now_epoch());
                }
                if let (Some(file_log), GooseLog::Request(_)) = (file_log.get(), &record) {
                    let _ = file_log.send(Some(record));
                }
            }
        });
        tap
    }

    /// Points `user` at this tap, once per user: its request records come
    /// here (and are passed on to goose's request log file, when the worker
    /// writes one), and goose's own aggregation for it is off.
    pub fn attach(&self, user: &mut GooseUser) {
        if user
            .logger
            .as_ref()
            .is_some_and(|l| l.same_channel(&self.sender))
        {
            return;
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
        user.metrics_channel = None;
    }

    /// Requests measured since the last call, as a Locust stats delta. Any
    /// record already sent is in it: the channel is drained first.
    pub fn take(&self) -> StatsReport {
        let now = now_epoch();
        let Ok(mut tally) = self.tally.lock() else {
            return StatsReport::default();
        };
        while let Ok(record) = self.receiver.try_recv() {
            if let Some(record) = record {
                tally.record(&record, now);
                if let (Some(file_log), GooseLog::Request(_)) = (self.file_log.get(), &record) {
                    let _ = file_log.send(Some(record));
                }
            }
        }
        let exceptions = std::mem::take(&mut tally.exceptions);
        let taken = std::mem::replace(&mut *tally, Tally::new(now));
        tally.exceptions = exceptions;
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
}

impl Tally {
    fn new(since: f64) -> Tally {
        Tally {
            since,
            entries: HashMap::new(),
            errors: BTreeMap::new(),
            exceptions: BTreeMap::new(),
        }
    }

    /// Folds in one record from goose's request log.
    pub fn record(&mut self, record: &GooseLog, now: f64) {
        match record {
            GooseLog::Request(request) => self.request(request, now),
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

    fn request(&mut self, request: &GooseRequestMetric, now: f64) {
        let since = self.since;
        let entry = self
            .entries
            .entry((request.raw.method, request.name.clone()))
            .or_insert_with(|| StatsEntry::new(&request.name, &method_name(request), since));
        if request.update {
            // Goose re-sends a request a transaction marked failed after
            // the fact: one more failure, not one more request.
            if !request.success {
                entry.num_failures = entry.num_failures.saturating_add(1);
                let second = entry.num_fail_per_sec.entry(now as i64).or_default();
                *second = second.saturating_add(1);
            }
        } else {
            let ms = request.response_time_micros() as f64 / 1000.0;
            entry.log(ms, 1, !request.success, now);
        }
        if !request.success {
            let error = StatsError {
                method: method_name(request),
                name: request.name.to_string(),
                error: request.error.clone(),
                occurrences: 1,
                first_seen: Some(now),
                last_seen: Some(now),
            };
            match self.errors.get_mut(&error.wire_key()) {
                Some(known) => known.extend(&error),
                None => {
                    self.errors.insert(error.wire_key(), error);
                }
            }
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
