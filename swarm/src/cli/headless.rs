//! A headless run: wait for workers, swarm, wait out the run time, quit the
//! workers, print the summary, write the CSVs, pick the exit code.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;

use super::lifecycle::{end_run, Expect};
use super::summary::print_summary;
use crate::master::{MasterHandle, SwarmRequest};
use crate::shutdown::Shutdown;
use crate::stats::{self, now_epoch};

/// A fixed headless run, as the flags planned it.
pub(super) struct Fixed<'a> {
    /// Users to run across all workers (`-u`).
    pub users: u64,
    /// Users started (or stopped) per second (`-r`).
    pub spawn_rate: f64,
    /// How long the run lasts (`-t`); `None`: until stopped.
    pub run_time: Option<Duration>,
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
    let request = SwarmRequest {
        user_count: fixed.users,
        spawn_rate: fixed.spawn_rate,
        host: fixed.host.clone(),
        run_time: None,
        co_mitigation: None,
        // The master's --arrival-rate, if any.
        arrival_rate: None,
    };
    let message = handle.swarm(request).await?;
    tracing::info!("{message}");
    let mut history = match fixed.csv {
        Some(prefix) => Some(HistoryFile::create(prefix)?),
        None => None,
    };
    let deadline = fixed
        .run_time
        .and_then(|t| tokio::time::Instant::now().checked_add(t));
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
        if snapshot.active_workers() == 0 {
            tracing::error!("every worker has gone; ending the run");
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
    Ok(if snapshot.stats.total.num_failures > 0 {
        ExitCode::from(fixed.exit_code_on_error)
    } else {
        ExitCode::SUCCESS
    })
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
