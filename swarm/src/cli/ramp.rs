//! `loadtest master --headless --ramp START:STEP:MAX`: step the users up
//! until the target fails, print the table and the threshold, write the
//! reports, exit with the documented code.

use super::parse::{parse_ratio, parse_step_time};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Args;

use super::MasterArgs;
use crate::master::MasterHandle;
use crate::ramp::{
    run_ramp, table, write_reports, Limits, MasterDriver, RampDriver, RampPlan, RampReport,
    RampSpec, StepTable, DEFAULT_FAIL_RATIO,
};
use crate::shutdown::Shutdown;
use crate::stats::now_epoch;

/// Exit codes and worker loss, shown at the end of `loadtest master --help`.
pub const RAMP_AFTER_HELP: &str = "\
Ramp (--headless --ramp START:STEP:MAX --step-time DURATION):
  Each step sets the users, waits until they run, waits 3.5 s for the previous
  step's stats to drain, then measures its own window (--step-time, rounded up
  to whole 3 s worker report intervals; a window no report reached waits up
  to 9 s more for a late one). A step fails when its failure ratio exceeds
  --fail-ratio or its p95 exceeds --max-p95; the ramp stops there.
  A worker lost mid-ramp: its users move to the remaining workers, a step
  whose window saw the worker count change is measured again (up to 3 times),
  and the report notes it. With no worker left the ramp ends with exit code 1.

Exit codes (ramp):
  0  the ramp ran to an answer: a threshold, or MAX reached with every step healthy
  1  it could not measure: no workers joined in time (--expect-workers-max-wait),
     the target was unreachable at the first step, every worker left, Ctrl-C
  2  bad arguments, e.g. a ramp spec not of the form START:STEP:MAX";

/// Flags of a headless ramp.
#[derive(Debug, Clone, Args)]
pub struct RampArgs {
    /// Ramp the users START:STEP:MAX (e.g. 10:10:100) and report the failure threshold.
    #[arg(
        long,
        value_name = "START:STEP:MAX",
        requires_all = ["headless", "step_time"],
        conflicts_with_all = ["users", "run_time", "csv"],
        help_heading = "Ramp"
    )]
    pub ramp: Option<RampSpec>,
    /// How long each step measures, e.g. 30s, 2m (rounded up to whole 3 s intervals).
    #[arg(long, value_name = "DURATION", value_parser = parse_step_time, requires = "ramp", help_heading = "Ramp")]
    pub step_time: Option<Duration>,
    /// A step fails when more than this fraction of its requests fail (0 to 1).
    #[arg(long, value_name = "RATIO", default_value_t = DEFAULT_FAIL_RATIO, value_parser = parse_ratio, requires = "ramp", help_heading = "Ramp")]
    pub fail_ratio: f64,
    /// A step also fails when its p95 response time exceeds MS milliseconds.
    #[arg(long, value_name = "MS", requires = "ramp", value_parser = clap::value_parser!(u64).range(1..), help_heading = "Ramp")]
    pub max_p95: Option<u64>,
    /// After the first failing step, bisect between it and the last healthy one.
    #[arg(long, requires = "ramp", help_heading = "Ramp")]
    pub refine: bool,
    /// Write ramp.json, ramp.csv and ramp.html into DIR (created if missing).
    #[arg(long, value_name = "DIR", requires = "ramp", help_heading = "Ramp")]
    pub report_dir: Option<PathBuf>,
}

impl RampArgs {
    /// The validated run; `None` without `--ramp`.
    pub fn plan(&self, spawn_rate: f64) -> Option<RampPlan> {
        let spec = self.ramp?;
        let limits = Limits {
            fail_ratio: self.fail_ratio,
            max_p95_ms: self.max_p95,
        };
        let step_time = self.step_time.unwrap_or(Duration::from_secs(30));
        let mut plan = RampPlan::new(spec, step_time, limits, spawn_rate);
        plan.refine = self.refine;
        Some(plan)
    }
}

/// Runs the ramp on the master in this process.
pub(super) async fn run(
    args: &MasterArgs,
    handle: &MasterHandle,
    shutdown: &Shutdown,
) -> anyhow::Result<ExitCode> {
    let Some(plan) = args.ramp.plan(args.spawn_rate) else {
        anyhow::bail!("--ramp START:STEP:MAX is missing");
    };
    if let Some(dir) = &args.ramp.report_dir {
        if let Err(err) = std::fs::create_dir_all(dir) {
            eprintln!(
                "error: --report-dir {}: cannot create it: {err}",
                dir.display()
            );
            return Ok(ExitCode::from(2));
        }
    }
    let mut report = RampReport::new(&plan, args.host.clone(), now_epoch());
    let driver = MasterDriver::new(handle.clone(), args.host.clone());
    println!("{}", describe(&plan));
    let interrupted = {
        let work = ramp_with_workers(args, &driver, &plan, &mut report);
        tokio::select! {
            _ = work => false,
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
        super::master::end_run(handle, shutdown).await;
    } else if let Err(err) = handle.quit().await {
        tracing::warn!("could not quit the workers: {err}");
    }
    conclude(args.ramp.report_dir.as_deref(), &plan, &report)
}

/// Waits for the workers, then ramps; a wait that runs out is the answer.
async fn ramp_with_workers(
    args: &MasterArgs,
    driver: &MasterDriver,
    plan: &RampPlan,
    report: &mut RampReport,
) {
    let wanted = args.expect_workers.max(1);
    let limit = match args.expect_workers_max_wait {
        0 => Duration::from_secs(u64::MAX / 4),
        secs => Duration::from_secs(secs),
    };
    tracing::info!("waiting for {wanted} worker(s)");
    if let Err(seen) = driver.wait_for_workers(wanted, limit).await {
        report.error = Some(format!(
            "only {seen} of {wanted} workers connected within {}s: start workers with `loadtest worker --master-host <this host> --master-port {}`, or lower --expect-workers",
            args.expect_workers_max_wait, args.master_bind_port
        ));
        report.finished_at = Some(now_epoch());
        return;
    }
    run_ramp(driver, plan, report, &mut StepTable::stdout()).await;
}

/// One line saying what the ramp will do.
fn describe(plan: &RampPlan) -> String {
    let mut limits = format!("failure ratio > {:.2}%", plan.limits.fail_ratio * 100.0);
    if let Some(p95) = plan.limits.max_p95_ms {
        limits.push_str(&format!(" or p95 > {p95} ms"));
    }
    format!(
        "ramp {}: {} steps of {:.0} s, a step fails on {limits}{}",
        plan.spec,
        plan.spec.user_counts().len(),
        plan.window.as_secs_f64(),
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
    plan: &RampPlan,
    report: &RampReport,
) -> anyhow::Result<ExitCode> {
    println!();
    println!("{}", table::conclusion(report, &plan.limits));
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
    Ok(ExitCode::SUCCESS)
}
