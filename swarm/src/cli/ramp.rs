//! `loadtest master --headless --ramp START:STEP:MAX`: step the users up
//! until the target fails, print the table and the threshold, write the
//! reports, exit with the documented code. The flow from first step to
//! answer ([`drive`], [`conclude`]) is shared with `spotload ramp`.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;

use super::lifecycle::{end_run, Expect};
use crate::master::MasterHandle;
use crate::ramp::{
    run_ramp, table, write_reports, MasterDriver, RampDriver, RampPlan, RampReport, StepTable,
};
use crate::shutdown::Shutdown;
use crate::stats::now_epoch;

/// Exit codes and worker loss, shown at the end of `loadtest master --help`.
pub const RAMP_AFTER_HELP: &str = "\
Ramp (--headless --ramp START:STEP:MAX --step-time DURATION):
  Each step sets the users, waits until they run, waits 3.5 s for the previous
  step's stats to drain, then measures its own window (--step-time, rounded up
  to whole 3 s worker report intervals; a window no report reached waits up
  to 9 s more for a late one). A step fails at the first rule it breaks:
  --fail-ratio R is error-rate<=R%, --max-p95/--max-p99 MS are p95/p99<=MSms,
  and each --threshold adds a rule; the ramp stops there.
  A worker lost mid-ramp: its users move to the remaining workers, a step
  whose window saw the worker count change is measured again (up to 3 times),
  and the report notes it. With no worker left the ramp ends with exit code 1.

Exit codes (ramp):
  0  the ramp ran to an answer: a threshold, or MAX reached with every step healthy
  1  it could not measure: no workers joined in time (--expect-workers-max-wait),
     the target was unreachable at the first step, every worker left, Ctrl-C
  2  bad arguments, e.g. a ramp spec not of the form START:STEP:MAX
  3  generator-bound: a worker used 90% or more of its CPU cores before the target
     failed, so the numbers are the workers' limit, not the target's; add workers";

/// The exit code of a generator-bound ramp.
pub const GENERATOR_BOUND: u8 = 3;

/// Makes `--report-dir` before anything runs; `Err` is the exit code 2 of
/// bad arguments, its message printed.
pub fn prepare_report_dir(dir: Option<&Path>) -> Result<(), ExitCode> {
    if let Some(dir) = dir {
        if let Err(err) = std::fs::create_dir_all(dir) {
            eprintln!(
                "error: --report-dir {}: cannot create it: {err}",
                dir.display()
            );
            return Err(ExitCode::from(2));
        }
    }
    Ok(())
}

/// A ramp from start to end through `driver` — shared by `loadtest master
/// --ramp` (the master in this process) and `spotload ramp` (a master over
/// HTTP): waits for the workers, runs the steps with the live table, and
/// ends early on `shutdown` keeping every step measured so far. Returns the
/// report and whether the ramp was cut short; [`conclude`] then prints the
/// answer and writes the reports.
pub async fn drive(
    driver: &dyn RampDriver,
    plan: &RampPlan,
    host: Option<String>,
    expect: &Expect,
    shutdown: &Shutdown,
) -> (RampReport, bool) {
    let mut report = RampReport::new(plan, host, now_epoch());
    println!("{}", describe(plan));
    let interrupted = {
        let work = with_workers(driver, plan, expect, &mut report);
        tokio::select! {
            () = work => false,
            () = shutdown.requested() => true,
        }
    };
    if interrupted {
        let why = shutdown.reason().map_or("a signal", |r| r.describe());
        report.error = Some(format!(
            "interrupted by {why} before the ramp had an answer"
        ));
        report.conclude();
        report.finished_at = Some(now_epoch());
    }
    (report, interrupted)
}

/// Waits for the workers, then ramps; a wait that runs out is the answer.
async fn with_workers(
    driver: &dyn RampDriver,
    plan: &RampPlan,
    expect: &Expect,
    report: &mut RampReport,
) {
    let wanted = expect.wanted();
    tracing::info!("waiting for {wanted} worker(s)");
    if let Err(seen) = driver.wait_for_workers(wanted, expect.limit).await {
        report.error = Some(match driver.read().await {
            Err(err) => format!("cannot read the master's stats: {err}"),
            Ok(_) => expect.shortfall(seen),
        });
        report.finished_at = Some(now_epoch());
        return;
    }
    run_ramp(driver, plan, report, &mut StepTable::stdout()).await;
}

/// What a ramp on the master in this process takes from its flags.
pub(super) struct Local<'a> {
    /// The target (`-H`), or the scenarios' own.
    pub host: Option<String>,
    /// `--report-dir`: where ramp.json, .csv and .html go.
    pub report_dir: Option<&'a Path>,
    /// The workers to wait for before the first step.
    pub expect: Expect,
}

/// Runs the ramp on the master in this process.
pub(super) async fn run(
    local: &Local<'_>,
    plan: &RampPlan,
    handle: &MasterHandle,
    shutdown: &Shutdown,
) -> anyhow::Result<ExitCode> {
    if let Err(code) = prepare_report_dir(local.report_dir) {
        return Ok(code);
    }
    let driver = MasterDriver::new(handle.clone(), local.host.clone());
    let (report, interrupted) =
        drive(&driver, plan, local.host.clone(), &local.expect, shutdown).await;
    if interrupted {
        end_run(handle, shutdown).await;
    } else if let Err(err) = handle.quit().await {
        tracing::warn!("could not quit the workers: {err}");
    }
    conclude(local.report_dir, &report)
}

/// One line saying what the ramp will do.
fn describe(plan: &RampPlan) -> String {
    format!(
        "ramp {}: {} steps of {:.0} s, a step is healthy while {} holds{}",
        plan.spec,
        plan.spec.user_counts().len(),
        plan.window.as_secs_f64(),
        plan.limits.texts().join(" and "),
        if plan.refine {
            "; refined by bisection"
        } else {
            ""
        }
    )
}

/// Prints the answer, writes the reports, picks the exit code (shared by
/// `loadtest master --ramp` and `spotload ramp`).
pub fn conclude(
    report_dir: Option<&std::path::Path>,
    report: &RampReport,
) -> anyhow::Result<ExitCode> {
    println!();
    println!("{}", table::conclusion(report));
    if let Some(dir) = report_dir {
        let files = write_reports(dir, report)
            .with_context(|| format!("writing the ramp reports to {}", dir.display()))?;
        println!(
            "reports: {}, {}, {}",
            files.json.display(),
            files.csv.display(),
            files.html.display()
        );
    }
    if let Some(error) = &report.error {
        eprintln!("error: the ramp could not measure: {error}");
        return Ok(ExitCode::FAILURE);
    }
    if let Some(users) = report.generator_bound_users {
        eprintln!("generator-bound at {users} users: add workers (exit code 3)");
        return Ok(ExitCode::from(GENERATOR_BOUND));
    }
    Ok(ExitCode::SUCCESS)
}
