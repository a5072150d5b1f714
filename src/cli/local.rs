//! `spotload local`: the whole fleet on this machine.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use swarm::ramp::RampSpec;

use crate::local::{self, LocalPlan};

/// How long a local ramp waits for its workers to join before it gives up
/// (exit code 1), unless `-- --expect-workers-max-wait` says otherwise.
const RAMP_WORKER_WAIT_SECS: u64 = 60;

/// Exit codes, shown at the end of `spotload local --help`.
const LOCAL_AFTER_HELP: &str = "\
Exit codes: spotload exits with the master's code. For a ramp
(--headless --ramp START:STEP:MAX --step-time DURATION):
  0  the ramp ran to an answer: a threshold, or MAX reached with every step healthy
  1  it could not measure: no workers joined in time, the target was unreachable
     at the first step, every worker left, Ctrl-C
  2  bad arguments, e.g. a ramp spec not of the form START:STEP:MAX
See `loadtest master --help` for how steps are measured and judged.";

/// Run a target web server, a master with the web UI and N workers here.
///
/// Anything after `--` goes to `loadtest master`, e.g.
/// `spotload local -- --headless -u 50 -r 10 -t 1m`. A headless ramp:
/// `spotload local --headless --ramp 10:10:100 --step-time 30s -r 10
/// --report-dir out`; spotload then exits with the master's code (0 an
/// answer, 1 could not measure, 2 bad arguments).
#[derive(Debug, Args)]
#[command(after_help = LOCAL_AFTER_HELP)]
pub struct LocalArgs {
    /// Worker processes to start.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub workers: u16,
    /// Load an existing server instead of starting one (e.g. http://127.0.0.1:8080).
    #[arg(long)]
    pub target: Option<String>,
    /// Port of the web UI.
    #[arg(long, default_value_t = 8089)]
    pub web_port: u16,
    /// Port the master listens on for workers.
    #[arg(long, default_value_t = 5557)]
    pub master_port: u16,
    /// The loadtest binary (default: next to spotload, then PATH).
    #[arg(long)]
    pub loadtest_bin: Option<PathBuf>,
    #[command(flatten)]
    pub headless: HeadlessArgs,
    /// Arguments for `loadtest master`, after `--`.
    #[arg(last = true)]
    pub master_args: Vec<String>,
}

/// A headless run or ramp, forwarded to `loadtest master` (see its --help).
#[derive(Debug, Args)]
pub struct HeadlessArgs {
    /// Run without the web UI: a fixed load (-u, -t) or a ramp (--ramp).
    #[arg(long, help_heading = "Headless")]
    pub headless: bool,
    /// Users of a fixed headless run.
    #[arg(
        short = 'u',
        long,
        requires = "headless",
        conflicts_with = "ramp",
        help_heading = "Headless"
    )]
    pub users: Option<u64>,
    /// Users started (or stopped) per second.
    #[arg(short = 'r', long, value_name = "RATE", help_heading = "Headless")]
    pub spawn_rate: Option<f64>,
    /// Stop a fixed headless run after this long, e.g. 30s, 5m.
    #[arg(short = 't', long, value_name = "DURATION", value_parser = check_timespan, requires = "users", help_heading = "Headless")]
    pub run_time: Option<String>,
    /// Ramp the users START:STEP:MAX and report the failure threshold.
    #[arg(long, value_name = "START:STEP:MAX", requires_all = ["headless", "step_time"], help_heading = "Headless")]
    pub ramp: Option<RampSpec>,
    /// How long each ramp step measures, e.g. 30s.
    #[arg(long, value_name = "DURATION", value_parser = check_timespan, requires = "ramp", help_heading = "Headless")]
    pub step_time: Option<String>,
    /// A step fails above this failure ratio (default 0.01).
    #[arg(
        long,
        value_name = "RATIO",
        requires = "ramp",
        help_heading = "Headless"
    )]
    pub fail_ratio: Option<String>,
    /// A step also fails when its p95 exceeds MS milliseconds.
    #[arg(long, value_name = "MS", requires = "ramp", help_heading = "Headless")]
    pub max_p95: Option<u64>,
    /// Bisect between the last healthy and the first failing step.
    #[arg(long, requires = "ramp", help_heading = "Headless")]
    pub refine: bool,
    /// Write ramp.json, ramp.csv and ramp.html into DIR.
    #[arg(long, value_name = "DIR", requires = "ramp", help_heading = "Headless")]
    pub report_dir: Option<PathBuf>,
}

fn check_timespan(text: &str) -> Result<String, String> {
    swarm::timespan::parse_timespan(text)
        .map(|_| text.to_string())
        .map_err(|e| e.to_string())
}

impl HeadlessArgs {
    /// The flags as `loadtest master` takes them, before anything after `--`.
    pub fn master_args(&self, after_dashes: &[String]) -> Vec<String> {
        let mut args = Vec::new();
        let mut flag = |name: &str, value: Option<String>| {
            if let Some(value) = value {
                args.push(name.to_string());
                args.push(value);
            }
        };
        flag("--users", self.users.map(|u| u.to_string()));
        flag("--spawn-rate", self.spawn_rate.map(|r| r.to_string()));
        flag("--run-time", self.run_time.clone());
        flag("--ramp", self.ramp.map(|r| r.to_string()));
        flag("--step-time", self.step_time.clone());
        flag("--fail-ratio", self.fail_ratio.clone());
        flag("--max-p95", self.max_p95.map(|m| m.to_string()));
        let waits = after_dashes
            .iter()
            .any(|a| a.starts_with("--expect-workers-max-wait"));
        if self.ramp.is_some() && !waits {
            flag(
                "--expect-workers-max-wait",
                Some(RAMP_WORKER_WAIT_SECS.to_string()),
            );
        }
        flag(
            "--report-dir",
            self.report_dir.as_ref().map(|d| d.display().to_string()),
        );
        if self.headless {
            args.insert(0, "--headless".to_string());
        }
        if self.refine {
            args.push("--refine".to_string());
        }
        args.extend(after_dashes.iter().cloned());
        args
    }
}

impl LocalArgs {
    pub fn run(self) -> anyhow::Result<ExitCode> {
        if let Some(target) = &self.target {
            swarm::web::check_host(target).map_err(anyhow::Error::msg)?;
        }
        let loadtest = match self.loadtest_bin {
            Some(path) => path,
            None => local::find_loadtest()?,
        };
        local::check_executable(&loadtest)?;
        let plan = LocalPlan {
            workers: usize::from(self.workers),
            target: self.target,
            web_port: self.web_port,
            master_port: self.master_port,
            loadtest,
            master_args: self.headless.master_args(&self.master_args),
        };
        let runtime = tokio::runtime::Runtime::new()?;
        let code = runtime.block_on(local::run(plan))?;
        Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        local: LocalArgs,
    }

    fn master_args(args: &[&str]) -> Result<Vec<String>, clap::Error> {
        let cli = Cli::try_parse_from(std::iter::once("local").chain(args.iter().copied()))?;
        Ok(cli.local.headless.master_args(&cli.local.master_args))
    }

    #[test]
    fn ramp_flags_are_forwarded() {
        let args = master_args(&[
            "--headless",
            "--ramp",
            "2:2:10",
            "--step-time",
            "3s",
            "-r",
            "5",
            "--refine",
            "--max-p95",
            "300",
            "--report-dir",
            "out",
            "--",
            "-v",
        ])
        .expect("parses");
        let line = args.join(" ");
        assert_eq!(
            line,
            "--headless --spawn-rate 5 --ramp 2:2:10 --step-time 3s --max-p95 300 --expect-workers-max-wait 60 --report-dir out --refine -v"
        );
    }

    #[test]
    fn bad_ramps_are_refused_here_with_exit_code_2() {
        for bad in ["10:0:100", "100:10:10", "abc"] {
            let err =
                master_args(&["--headless", "--ramp", bad, "--step-time", "3s"]).expect_err(bad);
            assert_eq!(err.exit_code(), 2);
            assert!(err.to_string().contains("START:STEP:MAX"), "{err}");
        }
        let err =
            master_args(&["--ramp", "1:1:2", "--step-time", "3s"]).expect_err("no --headless");
        assert_eq!(err.exit_code(), 2);
    }

    #[test]
    fn without_flags_nothing_is_added() {
        assert_eq!(
            master_args(&["--", "--headless", "-u", "3"]).ok(),
            Some(vec!["--headless".into(), "-u".into(), "3".into()])
        );
    }
}
