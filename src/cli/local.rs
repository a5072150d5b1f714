//! `spotload local`: the whole fleet on this machine.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use swarm::cli::flags::{
    worker_flag_hint, RampFlags, RunFlags, SpawnFlags, TargetTlsFlags, ThresholdFlags, UserFlags,
};

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
  3  generator-bound: a worker used 90% or more of its CPU cores; add workers
See `loadtest master --help` for how steps are measured and judged.";

/// Run a target web server, a master with the web UI and N workers here.
///
/// The workers' options (`--wait`, `--shared-client`) go to every worker;
/// `--ca-cert` and `--accept-invalid-certs` (an HTTPS --target) go to the
/// master, which sends them to every worker; anything after `--` goes to
/// `loadtest master`, e.g.
/// `spotload local -- --csv out/run`. A headless ramp:
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
    #[arg(long, value_parser = check_target)]
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
    /// Web UI or headless, and the run's users and time limit.
    #[command(flatten)]
    pub run: RunFlags,
    /// How fast users start or stop.
    #[command(flatten)]
    pub spawn: SpawnFlags,
    /// A headless step ramp, passed on to the master.
    #[command(flatten)]
    pub ramp: RampFlags,
    /// Pass/fail rules on the run's numbers, passed on to the master.
    #[command(flatten)]
    pub verdicts: ThresholdFlags,
    /// How the users trust an HTTPS target, passed on to the master (which
    /// sends it to every worker); the CA file is checked first.
    #[command(flatten)]
    pub target_tls: TargetTlsFlags,
    /// How each worker's users behave, passed on to every worker.
    #[command(flatten)]
    pub users: UserFlags,
    /// Arguments for `loadtest master`, after `--`.
    #[arg(last = true)]
    pub master_args: Vec<String>,
}

fn check_target(text: &str) -> Result<String, String> {
    swarm::web::check_host(text)
}

impl LocalArgs {
    /// The `loadtest master` arguments: the shared flags, checked here with
    /// the master's own rules (bad ones exit 2 before anything starts),
    /// then anything after `--`.
    pub fn master_args(&self) -> Result<Vec<String>, String> {
        if let Some(hint) = self.master_args.iter().find_map(|a| worker_flag_hint(a)) {
            return Err(format!("after `--`, for the master: {hint}"));
        }
        if !self.master_args.iter().any(|a| a == "--headless") {
            self.run.plan(&self.spawn, &self.ramp, &self.verdicts)?;
        }
        self.target_tls.load().map_err(|e| e.to_string())?;
        self.verdicts.config()?;
        let mut args = self.run.to_args(&self.spawn);
        args.extend(self.ramp.to_args());
        args.extend(self.verdicts.to_args());
        args.extend(self.target_tls.to_args());
        let waits = self
            .master_args
            .iter()
            .any(|a| a.starts_with("--expect-workers-max-wait"));
        if self.ramp.ramp.is_some() && !waits {
            args.push("--expect-workers-max-wait".into());
            args.push(RAMP_WORKER_WAIT_SECS.to_string());
        }
        args.extend(self.master_args.iter().cloned());
        Ok(args)
    }

    /// Runs the local fleet until Ctrl-C or until the master ends; exits with the
    /// master's code, or 2 for bad arguments before anything starts.
    pub async fn run(self) -> anyhow::Result<ExitCode> {
        let master_args = match self.master_args() {
            Ok(args) => args,
            Err(message) => {
                eprintln!("error: {message}");
                return Ok(ExitCode::from(2));
            }
        };
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
            master_args,
            worker_args: self.users.to_args(),
        };
        let code = local::run(plan).await?;
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
        cli.local
            .master_args()
            .map_err(|m| clap::Error::raw(clap::error::ErrorKind::ArgumentConflict, m))
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
        for part in [
            "--headless",
            "--spawn-rate 5",
            "--ramp 2:2:10",
            "--step-time 3s",
            "--max-p95 300",
            "--expect-workers-max-wait 60",
            "--report-dir out",
            "--refine",
        ] {
            assert!(line.contains(part), "{part} in {line}");
        }
        assert!(line.ends_with(" -v"), "after -- comes last: {line}");
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
    fn the_https_trust_goes_to_the_master_once_its_file_is_checked() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing-ca.pem");
        let missing = missing.to_str().unwrap();
        let err = master_args(&["--ca-cert", missing]).expect_err("no such file");
        assert_eq!(err.exit_code(), 2);
        assert!(
            err.to_string().contains("--ca-cert") && err.to_string().contains("missing-ca.pem"),
            "{err}"
        );
        let args = master_args(&["--accept-invalid-certs"]).expect("parses");
        assert_eq!(args, vec!["--accept-invalid-certs".to_string()]);
    }

    #[test]
    fn without_flags_nothing_is_added() {
        assert_eq!(
            master_args(&["--", "--headless", "-u", "3"]).ok(),
            Some(vec!["--headless".into(), "-u".into(), "3".into()])
        );
    }
}
