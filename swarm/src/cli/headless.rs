//! A headless run: wait for workers, swarm, wait out the run time, quit the
//! workers, print the summary, write the CSVs, pick the exit code.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;

use super::lifecycle::{end_run, Expect};
use super::summary::print_summary;
use crate::master::{MasterHandle, MasterSnapshot, SwarmRequest};
use crate::shutdown::Shutdown;
use crate::stats::{self, now_epoch};
use crate::test_plan::TestPlan;
use crate::thresholds::THRESHOLDS_FAILED;

/// The load of a headless run: users for a time, or a test plan.
pub(super) enum Load<'a> {
    /// `-u`, `-r`, `-t`.
    Users {
        /// Users to run across all workers (`-u`).
        users: u64,
        /// Users started (or stopped) per second (`-r`).
        spawn_rate: f64,
        /// How long the run lasts (`-t`); `None`: until stopped.
        run_time: Option<Duration>,
    },
    /// `--test-plan`: the master follows it (its config has it) and stops
    /// the run when it is over.
    Plan(&'a TestPlan),
}

/// A fixed headless run, as the flags planned it.
pub(super) struct Fixed<'a> {
    /// What load it runs.
    pub load: Load<'a>,
    /// The target (`-H`), or the scenarios' own.
    pub host: Option<String>,
    /// `--csv PREFIX`: where the CSVs go.
    pub csv: Option<&'a str>,
    /// The exit code when the run saw failures (`--exit-code-on-error`).
    pub exit_code_on_error: u8,
    /// The workers to wait for before the users start.
    pub expect: Expect,
}

pub(super) async fn run(
    fixed: &Fixed<'_>,
    handle: &MasterHandle,
    shutdown: &Shutdown,
) -> anyhow::Result<ExitCode> {
    tokio::select! {
        waited = wait_for_workers(&fixed.expect, handle) => waited?,
        () = shutdown.requested() => anyhow::bail!("{} before the workers joined; nothing was measured", shutdown.reason().map_or("stopped", |r| r.describe())),
    }
    // With a plan, the master takes the users and their pace from it.
    let (users, spawn_rate, run_time) = match fixed.load {
        Load::Users {
            users,
            spawn_rate,
            run_time,
        } => (users, spawn_rate, run_time),
        Load::Plan(plan) => (plan.peak_users(), 1.0, None),
    };
    let request = SwarmRequest {
        user_count: users,
        spawn_rate,
        host: fixed.host.clone(),
        run_time: None,
        co_mitigation: None,
        user_classes: None,
        // The master's --arrival-rate, if any.
        arrival_rate: None,
    };
    let message = handle.swarm(request).await?;
    tracing::info!("{message}");
    let mut history = match fixed.csv {
        Some(prefix) => Some(HistoryFile::create(prefix)?),
        None => None,
    };
    let deadline = run_time.and_then(|t| tokio::time::Instant::now().checked_add(t));
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    let mut last_status = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = shutdown.requested() => break,
        }
        let snapshot = handle.snapshot().await?;
        if let Some(file) = history.as_mut() {
            file.append(&snapshot.stats, snapshot.user_count)?;
        }
        if last_status.elapsed() >= Duration::from_secs(10) {
            last_status = tokio::time::Instant::now();
            let total = &snapshot.stats.total;
            eprintln!(
                "{} users, {} workers, {} requests, {} failures, {:.1} req/s",
                snapshot.user_count,
                snapshot.active_workers(),
                total.num_requests,
                total.num_failures,
                total.current_rps(total)
            );
        }
        if let Some(abort) = &snapshot.threshold_abort {
            tracing::error!("{abort}: the run stopped");
            break;
        }
        if snapshot.active_workers() == 0 {
            tracing::error!("every worker has gone; ending the run");
            break;
        }
        if snapshot.test_plan.as_ref().is_some_and(|p| p.finished) {
            tracing::info!("the test plan is over");
            break;
        }
        if deadline.is_some_and(|d| tokio::time::Instant::now() >= d) {
            tracing::info!("run time is up");
            break;
        }
    }
    if shutdown.is_requested() {
        end_run(handle, shutdown).await;
    } else {
        handle.quit().await?;
    }
    let snapshot = handle.snapshot().await?;
    if let Some(file) = history.as_mut() {
        file.append(&snapshot.stats, 0)?;
    }
    print_summary(&snapshot);
    if let Some(prefix) = fixed.csv {
        write_csvs(prefix, &snapshot)?;
    }
    Ok(exit_code(&snapshot, fixed.exit_code_on_error))
}

/// A fixed run's exit code: [`THRESHOLDS_FAILED`] when a rule failed (it
/// wins), else `--exit-code-on-error` when a request failed, else 0.
fn exit_code(snapshot: &MasterSnapshot, exit_code_on_error: u8) -> ExitCode {
    if snapshot.thresholds_failed() {
        eprintln!("{}", thresholds_failed_line(snapshot));
        ExitCode::from(THRESHOLDS_FAILED)
    } else if snapshot.stats.total.num_failures > 0 {
        ExitCode::from(exit_code_on_error)
    } else {
        ExitCode::SUCCESS
    }
}

/// `error: 1 of 2 thresholds failed: "p95<5ms" (observed 7.3ms) (exit code 99)`.
pub(super) fn thresholds_failed_line(snapshot: &MasterSnapshot) -> String {
    let failed: Vec<String> = snapshot
        .thresholds
        .iter()
        .filter(|v| !v.passed)
        .map(|v| format!("{:?} (observed {})", v.rule, v.observed))
        .collect();
    format!(
        "error: {} of {} thresholds failed: {} (exit code {THRESHOLDS_FAILED})",
        failed.len(),
        snapshot.thresholds.len(),
        failed.join(", ")
    )
}

async fn wait_for_workers(expect: &Expect, handle: &MasterHandle) -> anyhow::Result<()> {
    let wanted = expect.wanted();
    tracing::info!("waiting for {wanted} worker(s)");
    handle
        .wait_for_workers(wanted, expect.limit)
        .await
        .map_err(|seen| anyhow::anyhow!(expect.shortfall(seen)))
}

fn write_file(path: &str, body: &str) -> anyhow::Result<()> {
    std::fs::write(path, body).with_context(|| format!("cannot write {path}"))
}

pub(super) fn write_csvs(
    prefix: &str,
    snapshot: &crate::master::MasterSnapshot,
) -> anyhow::Result<()> {
    write_file(
        &format!("{prefix}_stats.csv"),
        &stats::stats_csv(&snapshot.stats),
    )?;
    write_file(
        &format!("{prefix}_failures.csv"),
        &stats::failures_csv(&snapshot.stats),
    )?;
    write_file(
        &format!("{prefix}_exceptions.csv"),
        &stats::exceptions_csv(&snapshot.exceptions),
    )
}

/// Appends a row to `PREFIX_stats_history.csv` every 2 s while a run
/// started from the web UI goes (between runs nothing changes), until
/// `shutdown`: the UI's `--csv` history, as Locust writes it.
pub(super) fn keep_history(
    prefix: &str,
    handle: MasterHandle,
    shutdown: Shutdown,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let mut file = HistoryFile::create(prefix)?;
    Ok(tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(2));
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = shutdown.requested() => return,
            }
            let Ok(snapshot) = handle.snapshot().await else {
                return;
            };
            if !snapshot.state.is_active() {
                continue;
            }
            if let Err(err) = file.append(&snapshot.stats, snapshot.user_count) {
                tracing::warn!("{err:#}; the history CSV stops here");
                return;
            }
        }
    }))
}

/// `PREFIX_stats_history.csv`, appended as the run goes so a killed run
/// keeps what it measured.
struct HistoryFile {
    file: std::fs::File,
    path: String,
}

impl HistoryFile {
    fn create(prefix: &str) -> anyhow::Result<Self> {
        let path = format!("{prefix}_stats_history.csv");
        let mut file = std::fs::File::create(&path)
            .with_context(|| format!("cannot create {path} (does the --csv directory exist?)"))?;
        file.write_all(stats::stats_history_csv_header().as_bytes())
            .with_context(|| format!("cannot write {path}"))?;
        Ok(HistoryFile { file, path })
    }

    fn append(&mut self, stats: &stats::RequestStats, users: u64) -> anyhow::Result<()> {
        let row = stats::stats_history_csv_row(stats, users, now_epoch());
        self.file
            .write_all(row.as_bytes())
            .with_context(|| format!("cannot write {}", self.path))
    }
}
