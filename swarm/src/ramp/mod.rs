//! Headless step ramps that find a target's failure threshold.
//!
//! A ramp raises the users step by step (`START:STEP:MAX`). Each step sets
//! the user count, waits until the users run, waits one report interval so
//! the previous step's numbers have drained, then measures its own window
//! (the master's `Aggregated` total at the window's end
//! [`since`](crate::stats::StatsEntry::since) its start) and judges it on
//! failure ratio and, if asked, p95. The ramp stops at the first failing
//! step; `--refine` then bisects between the last healthy and the first
//! failing count.
//!
//! - [`spec`]: `START:STEP:MAX` parsing.
//! - [`plan`]: the validated run ([`RampPlan`]), window and settle times.
//! - [`judge`]: limits and the [`Criterion`] a step broke.
//! - [`bisect`]: the `--refine` bracket.
//! - [`step`]: one measured [`StepResult`].
//! - [`engine`]: the step loop, [`run_ramp`].
//! - [`driver`]: the [`RampDriver`] trait and the in-process [`MasterDriver`].
//! - [`remote`]: [`HttpDriver`] over a master's web API (a
//!   [`crate::client::MasterClient`] reading `GET /stats/total`).
//! - [`result`]: the [`RampReport`] (`ramp.json`).
//! - [`report`] and [`html`]: `ramp.json`, `ramp.csv`, `ramp.html`.
//! - [`table`]: the live step table and the final answer on the terminal.
//!
//! Workers that leave mid-ramp: the master moves their users to the
//! remaining workers; a step whose window saw the worker count change is
//! measured again (up to three times) and the report notes it. With no
//! workers left the ramp stops without an answer.

pub mod bisect;
pub mod driver;
pub mod engine;
pub mod html;
pub mod judge;
pub mod plan;
pub mod remote;
pub mod report;
pub mod result;
pub mod spec;
pub mod step;
pub mod table;

#[cfg(test)]
mod tests;

pub use bisect::Bisection;
pub use driver::{MasterDriver, RampDriver, RampDriverError, Reading};
pub use engine::{is_http_error, run_ramp, Progress, Quiet, Unmeasurable};
pub use judge::{Limits, DEFAULT_FAIL_RATIO};
pub use plan::{window_for, RampPlan, LATE_REPORTS, SETTLE, WORKER_REPORT_INTERVAL};
pub use remote::HttpDriver;
pub use report::{write_reports, ReportFiles};
pub use result::RampReport;
pub use spec::{RampSpec, RampSpecError, RAMP_FORM};
pub use step::{Criterion, StepResult};
pub use table::StepTable;
