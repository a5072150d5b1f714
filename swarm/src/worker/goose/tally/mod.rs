//! The counts of one report: the records the [`Tap`](super::tap::Tap)
//! drains, folded per (method, name) with their errors into a Locust stats
//! delta, and what waits for the next report (a request for its body's
//! note or its verdict, a verdict for its request).
//!
//! **Verdicts, as goose and Locust give them.** `user.set_success(&mut
//! request)` (Locust's `response.success()` in a `catch_response` block)
//! and `user.set_failure(tag, &mut request, ..)` (`response.failure(..)`)
//! send the corrected request down goose's metrics channel. The tally
//! matches it to the request's record (user, time into the run, method,
//! name) and changes what is counted: a failure made a success is no
//! failure and no error row; a success made a failure is one more failure,
//! with the tag as its error. So that a request marked a success is never counted as a
//! failure first (Locust's protocol carries no negative counts), a failed
//! request waits, like one waiting for its body, until its user's next
//! record, its verdict, or a second report.
//!
//! **Bodies, as Locust counts them.** Goose times a request until its
//! headers arrive and never sees the body. A scenario that reads the body
//! with [`read_body`](super::read_body) sends a note down the same channel
//! right after goose's record: the body's size, and the request's time to
//! the last byte
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
//! the gate notes each park down the same channel
//! ([`note_parked`](super::tap::note_parked)), and the copies goose sends
//! for the user's next pass, which all carry the park's length, are
//! dropped, not back-filled. This is exact for a class
//! of one transaction (each pass either parks or runs). In a class of
//! several, a user re-seated in the middle of a pass still has the parked
//! part of that pass back-filled once, with the pass after it: the tally
//! sees records, not goose's passes.
//!
//! **Intended starts.** In the open model the gate notes, for every pass a
//! user begins on the schedule, how late it began
//! ([`note_intended_start`](super::tap::note_intended_start)); the user's
//! next request counts that much longer (to its body's last byte, when a
//! note follows), so its time runs from when the pass was due, as wrk2
//! measures. Later requests of the pass count as they are.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use goose::goose::GooseMethod;
use goose::logger::GooseLog;
use goose::metrics::GooseRequestMetric;

use super::failure_log::FailureLog;
use super::tap::{BODY_FAILED_NOTE, BODY_NOTE, INTENDED_NOTE, PARK_NOTE, REQUEST_FAILED_NOTE};
use crate::stats::{StatsEntry, StatsError, StatsReport, AGGREGATED};

#[cfg(test)]
pub(crate) mod tests;

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
    /// How late its pass began, µs, added to its time when it counts.
    late_us: u64,
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
    /// occurrences. Taken apart from the stats (see
    /// [`Tap::take_exceptions`](super::tap::Tap::take_exceptions)).
    pub(super) exceptions: BTreeMap<String, u64>,
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
    pub(super) counted: Vec<GooseRequestMetric>,
    /// Whether to keep them.
    pub(super) keep_counted: bool,
    /// Requests that got no response, logged once per error with a count.
    failure_log: FailureLog,
    /// Per user, how late (µs) its current pass began on the schedule,
    /// until its next request takes it. At most one per user.
    late_starts: HashMap<usize, u64>,
}

impl Tally {
    pub(super) fn new(since: f64) -> Tally {
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
            late_starts: HashMap::new(),
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
                let late_us = if request.update || self.late_starts.is_empty() {
                    0
                } else {
                    self.late_starts.remove(&request.user).unwrap_or(0)
                };
                if request.update {
                    self.update(request, now);
                } else if request.success && !noting {
                    self.finish(&later(request, late_us), 0, now);
                } else {
                    // Waits for its body's note, or (failed) for a verdict.
                    self.pending.insert(
                        request.user,
                        Pending {
                            request: request.clone(),
                            late_us,
                            waited: false,
                        },
                    );
                }
            }
            GooseLog::Debug(note) if note.tag == INTENDED_NOTE => {
                let parsed = note.body.as_deref().and_then(|b| {
                    let (user, micros) = b.split_once(':')?;
                    Some((user.parse().ok()?, micros.parse().ok()?))
                });
                if let Some((user, micros)) = parsed {
                    self.late_starts.insert(user, micros);
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
                        self.finish(&later(&counted, pending.late_us), size, now);
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
    pub(super) fn is_park_copy(&self, copy: &GooseRequestMetric) -> bool {
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
            self.finish(&later(&pending.request, pending.late_us), 0, now);
        }
    }

    /// Settles the requests that waited through a report already (all of
    /// them when `all`); marks the others as having waited through this one.
    pub(super) fn settle_pending(&mut self, all: bool, now: f64) {
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
            self.hold_failure(request, now);
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
        self.hold_failure(request, now);
    }

    /// Keeps a counted failure, its error noted, until its verdict may
    /// undo it (see [`CountedFailure`]).
    fn hold_failure(&mut self, request: &GooseRequestMetric, now: f64) {
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

    /// The tally of the next report, from `now`, with what waits carried
    /// over from this one: requests for their notes or verdicts, verdicts
    /// for their requests (once), parks, exceptions not yet taken and the
    /// failure log (`settle`: the users stopped, it says what it left out).
    pub(super) fn carry_over(&mut self, now: f64, settle: bool) -> Tally {
        let mut next = Tally::new(now);
        next.exceptions = std::mem::take(&mut self.exceptions);
        next.pending = std::mem::take(&mut self.pending);
        next.noting = std::mem::take(&mut self.noting);
        next.failure_log = std::mem::take(&mut self.failure_log);
        next.late_starts = std::mem::take(&mut self.late_starts);
        if settle {
            // The users stopped: what the log left out is said now.
            next.failure_log.flush();
        }
        // A park's copies come in the user's next pass, within a report or
        // two; a length kept longer could only drop a real stall's.
        next.parked = std::mem::take(&mut self.parked);
        next.parked.retain(|_, copies| copies.is_none());
        // A verdict whose request has not come waits one report more.
        for (key, mut early) in std::mem::take(&mut self.early) {
            if early.waited {
                self.late_verdicts = self.late_verdicts.saturating_add(1);
            } else {
                early.waited = true;
                next.early.insert(key, early);
            }
        }
        next
    }

    pub(super) fn into_report(self, now: f64) -> StatsReport {
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

/// `request` as counted from its pass's intended start: `late_us` longer
/// (a copy only when it changes anything).
fn later(request: &GooseRequestMetric, late_us: u64) -> std::borrow::Cow<'_, GooseRequestMetric> {
    if late_us == 0 {
        return std::borrow::Cow::Borrowed(request);
    }
    let mut late = request.clone();
    let micros = request.response_time_micros().saturating_add(late_us);
    late.response_time = micros / 1000;
    // Below 1000: fits.
    late.response_time_fraction_us = (micros % 1000) as u16;
    std::borrow::Cow::Owned(late)
}

/// Locust's name of a request's method: `GET`, or a custom protocol's own.
fn method_name(request: &GooseRequestMetric) -> String {
    match &request.raw.custom_method {
        custom if !custom.is_empty() => custom.clone(),
        _ => request.raw.method.to_string(),
    }
}
