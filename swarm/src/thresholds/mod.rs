//! Thresholds: pass/fail rules on a run's numbers, in goose 0.19's grammar
//! (`--threshold "p95<500ms"`), judged by the master on the merged
//! microsecond histograms of every worker.
//!
//! - [`rule`]: one rule, parsed and refused as goose parses and refuses it.
//! - [`judge`]: what a rule observes in the master's stats, its [`Verdict`].
//! - [`holds`]: the time the run held its users, which `rps` rules count.
//! - [`watch`]: the master's side: checks once a second while the users
//!   are all spawned, and stops the run at the first failing rule.
//!
//! The window is the run's summary and CSV's: from the run's start (or the
//! last stats reset), as Locust counts, not from when the users were all
//! spawned, as goose (which resets its metrics then) does: a verdict that
//! disagreed with the numbers printed beside it would be no verdict.

pub mod holds;
pub mod judge;
pub mod rule;
pub mod watch;

pub use judge::{format_ms, Check, Verdict, NO_SAMPLES};
pub use rule::{parse_rule, Metric, Operator, Rule, MAX_RULE_BYTES};
pub use watch::{Abort, ThresholdConfig, ThresholdWatch, CHECK_EVERY, MAX_ABORT_DELAY, MAX_RULES};

/// The exit code of a run whose thresholds failed (k6's, so CI scripts
/// written for k6 read it the same). It wins over `--exit-code-on-error`:
/// a run that broke a rule and also saw failed requests exits with this.
pub const THRESHOLDS_FAILED: u8 = 99;
