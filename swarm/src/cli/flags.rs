//! The flag groups that `loadtest master`, `spotload local` and
//! `spotload ramp` share, declared once here and flattened where needed:
//! [`RunFlags`] (headless, users, run time), [`SpawnFlags`] (the spawn
//! rate), [`RampFlags`] (a headless ramp), [`JoinSecretFlags`] (the
//! join secret of master and workers), [`UserFlags`] (how each worker's
//! users behave, which `spotload local` and `spotload deploy` hand to every
//! worker) and [`TargetTlsFlags`] (how the users' HTTPS trusts the target,
//! which the master sends to every worker). Each is parsed once into a plan ([`RunPlan`], [`RampPlan`])
//! before anything runs; `spotload local`, which starts `loadtest master`
//! and the workers as child processes, forwards them with their `to_args`,
//! the one place that writes their names back (a round-trip test keeps the
//! two in step).

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use clap::Args;

use super::parse::{
    parse_arrival_rate, parse_ms, parse_rate, parse_ratio, parse_run_time, parse_step_time,
};
use crate::co_mitigation::CoMitigation;
use crate::protocol::{JoinSecret, SecretError};
use crate::ramp::{Limits, RampPlan, RampSpec, DEFAULT_FAIL_RATIO};
use crate::target_tls::{CaCerts, CaFileError, TargetTls};
use crate::timespan::format_timespan;

/// How each worker's users behave: `loadtest worker`'s own flags, which
/// `spotload local` and `spotload deploy` take too and pass to every
/// worker they start. (Goose's coordinated omission mitigation is the
/// master's `--co-mitigation`: it reaches every worker with each spawn.)
#[derive(Debug, Clone, Default, PartialEq, Args)]
pub struct UserFlags {
    /// Pause between a user's requests, MIN:MAX seconds (e.g. 0.5:2), for
    /// the user classes that take it from the command line (see
    /// `ScenarioOptions`); none by default. Per-class waits stay in the
    /// load test's code, as Locust's `wait_time` is per class.
    #[arg(long, value_name = "MIN:MAX", value_parser = parse_wait, help_heading = "Workers' users")]
    pub wait: Option<(Duration, Duration)>,
    /// Share one HTTP client (one connection pool, no cookies) among all
    /// of a worker's users: less CPU and memory per user, for targets that
    /// need no session. By default each user has its own client and cookie
    /// jar, as Locust's users do.
    #[arg(long, help_heading = "Workers' users")]
    pub shared_client: bool,
}

impl UserFlags {
    /// The flags as `loadtest worker` takes them.
    pub fn to_args(&self) -> Vec<String> {
        let mut args = ArgList::default();
        args.pair(
            "--wait",
            self.wait
                .map(|(min, max)| format!("{}:{}", min.as_secs_f64(), max.as_secs_f64())),
        );
        args.flag("--shared-client", self.shared_client);
        args.0
    }
}

/// `MIN:MAX` in seconds, MIN ≤ MAX, each below a day.
pub fn parse_wait(text: &str) -> Result<(Duration, Duration), String> {
    let bad = || format!("expected MIN:MAX in seconds with MIN <= MAX, e.g. 0.5:2 (got {text:?})");
    let (min, max) = text.split_once(':').ok_or_else(bad)?;
    let secs = |s: &str| {
        s.trim()
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite() && *v >= 0.0 && *v < 86_400.0)
            .map(Duration::from_secs_f64)
    };
    match (secs(min), secs(max)) {
        (Some(min), Some(max)) if min <= max => Ok((min, max)),
        _ => Err(bad()),
    }
}

/// Flags only `loadtest worker` takes, which a `loadtest master` given
/// them names the place of; `spotload local` says the same of its `--`.
pub const WORKER_ONLY_FLAGS: [&str; 7] = [
    "--wait",
    "--shared-client",
    "--request-log",
    "--master-host",
    "--master-port",
    "--master-timeout",
    "--no-spot-watch",
];

/// Where an option a command refused belongs, when it is a worker's.
pub fn worker_flag_hint(arg: &str) -> Option<String> {
    let name = arg.split('=').next().unwrap_or(arg);
    WORKER_ONLY_FLAGS.contains(&name).then(|| {
        format!(
            "{name} is an option of the workers (`loadtest worker {name} ...`), not of the master; \
             with spotload local or spotload deploy give it to spotload itself, before any `--`"
        )
    })
}

/// How the master runs: with the web UI, or headless.
#[derive(Debug, Clone, Default, PartialEq, Args)]
pub struct RunFlags {
    /// Run without the web UI, straight away: a fixed load (-u, -t) or a
    /// ramp (--ramp).
    #[arg(long, help_heading = "Headless")]
    pub headless: bool,
    /// Peak number of users of a fixed headless run.
    #[arg(short = 'u', long, help_heading = "Headless")]
    pub users: Option<u64>,
    /// Stop after this long, e.g. 30s, 5m, 1h30m; with the web UI, the
    /// runs started there.
    #[arg(short = 't', long, value_name = "DURATION", value_parser = parse_run_time, help_heading = "Headless")]
    pub run_time: Option<Duration>,
    /// Start R iterations per second across the swarm, whatever the
    /// target's latency (the open model, as k6's arrival-rate executors and
    /// wrk2): -u users are the pool that runs them, and a start that finds
    /// no user free is dropped and counted. For a headless run, and the
    /// runs started from the web UI without a rate of their own. Sent to
    /// spotload workers as their share (Locust workers ignore it). See
    /// docs/load-models.md.
    #[arg(long, value_name = "R", value_parser = parse_arrival_rate, help_heading = "Load model")]
    pub arrival_rate: Option<f64>,
}

/// How fast users start or stop, and how they measure.
#[derive(Debug, Clone, Default, PartialEq, Args)]
pub struct SpawnFlags {
    /// Users started (or stopped) per second [default: 1; spotload ramp: 10].
    #[arg(short = 'r', long, value_name = "RATE", value_parser = parse_rate)]
    pub spawn_rate: Option<f64>,
    /// Have the workers back-fill the requests a user stalled by the target
    /// would have made (goose's coordinated omission mitigation), from the
    /// user's average, maximum or minimum cadence; percentiles are then
    /// marked corrected. Sent to spotload workers with every spawn (Locust
    /// workers ignore it); overrides a worker's own --co-mitigation.
    #[arg(long, value_name = "CADENCE", value_parser = CoMitigation::from_str)]
    pub co_mitigation: Option<CoMitigation>,
}

impl SpawnFlags {
    /// The rate given, or the command's default.
    pub fn or(&self, default: f64) -> f64 {
        self.spawn_rate.unwrap_or(default)
    }
}

/// A headless ramp that finds the failure threshold.
#[derive(Debug, Clone, PartialEq, Args)]
pub struct RampFlags {
    /// Ramp the users START:STEP:MAX (e.g. 10:10:100) and report the failure threshold.
    #[arg(long, value_name = "START:STEP:MAX", help_heading = "Ramp")]
    pub ramp: Option<RampSpec>,
    /// How long each step measures, e.g. 30s, 2m (rounded up to whole 3 s intervals).
    #[arg(long, value_name = "DURATION", value_parser = parse_step_time, requires = "ramp", help_heading = "Ramp")]
    pub step_time: Option<Duration>,
    /// A step fails when more than this fraction of its requests fail (0 to 1).
    #[arg(long, value_name = "RATIO", default_value_t = DEFAULT_FAIL_RATIO, value_parser = parse_ratio, requires = "ramp", help_heading = "Ramp")]
    pub fail_ratio: f64,
    /// A step also fails when its p95 response time exceeds MS milliseconds
    /// (fractions allowed, e.g. 0.5: judged to the microsecond).
    #[arg(long, value_name = "MS", requires = "ramp", value_parser = parse_ms, help_heading = "Ramp")]
    pub max_p95: Option<f64>,
    /// A step also fails when its p99 response time exceeds MS milliseconds.
    #[arg(long, value_name = "MS", requires = "ramp", value_parser = parse_ms, help_heading = "Ramp")]
    pub max_p99: Option<f64>,
    /// After the first failing step, bisect between it and the last healthy one.
    #[arg(long, requires = "ramp", help_heading = "Ramp")]
    pub refine: bool,
    /// Write ramp.json, ramp.csv and ramp.html into DIR (created if missing).
    #[arg(long, value_name = "DIR", requires = "ramp", help_heading = "Ramp")]
    pub report_dir: Option<PathBuf>,
}

impl Default for RampFlags {
    fn default() -> Self {
        RampFlags {
            ramp: None,
            step_time: None,
            fail_ratio: DEFAULT_FAIL_RATIO,
            max_p95: None,
            max_p99: None,
            refine: false,
            report_dir: None,
        }
    }
}

/// The join secret workers present to their master (ZMTP PLAIN): from a
/// file named here, or from the environment. Never a value on the command
/// line, where `ps` shows it to every user of the machine.
#[derive(Debug, Clone, Default, PartialEq, Eq, Args)]
pub struct JoinSecretFlags {
    /// Read the join secret from FILE (its one line; keep it mode 0600): a
    /// master admits only workers that present it, a worker presents it
    /// (ZMTP PLAIN: authenticated, not encrypted). Or set
    /// SPOTLOAD_JOIN_SECRET to the secret itself. With neither, any peer
    /// that reaches the master port joins, as with Locust.
    #[arg(long, value_name = "FILE")]
    pub join_secret_file: Option<PathBuf>,
}

impl JoinSecretFlags {
    /// The flags naming `path`.
    pub fn file(path: impl Into<PathBuf>) -> JoinSecretFlags {
        JoinSecretFlags {
            join_secret_file: Some(path.into()),
        }
    }

    /// The secret to use: from the file when given, else from
    /// SPOTLOAD_JOIN_SECRET, else none.
    pub fn load(&self) -> Result<Option<JoinSecret>, SecretError> {
        JoinSecret::resolve(self.join_secret_file.as_deref())
    }

    /// The flags as `loadtest master` and `loadtest worker` take them.
    pub fn to_args(&self) -> Vec<String> {
        let mut args = ArgList::default();
        args.pair(
            "--join-secret-file",
            self.join_secret_file
                .as_ref()
                .map(|p| p.display().to_string()),
        );
        args.0
    }
}

/// How the users' HTTPS requests trust the target: a group of its own,
/// because it belongs to the master and reaches the workers through it.
/// `loadtest master` reads the CA file and sends its certificates (not its
/// path, which means nothing on a worker's host) with every spawn, as it
/// sends `--co-mitigation`; `spotload local` hands the flags to its master,
/// and `spotload deploy` installs the CA file on the master's host and
/// starts the master with them. `loadtest worker` takes them too, for a
/// master that sends none (a Locust master): a spawn that carries them
/// replaces the worker's own. Not in [`SpawnFlags`]: `spotload ramp`
/// drives a running master over its web API and cannot change them; not in
/// [`UserFlags`]: a file on the operator's machine would have to be on
/// every worker host.
#[derive(Debug, Clone, Default, PartialEq, Eq, Args)]
pub struct TargetTlsFlags {
    /// Trust the CA certificates in FILE (PEM) for HTTPS targets, besides
    /// the system's roots: an internal CA, or a self-signed server
    /// certificate itself. Read when the command starts (a missing file, or
    /// one without a certificate, stops it); a master sends the
    /// certificates to every worker with each spawn.
    #[arg(long, value_name = "FILE", help_heading = "Target HTTPS")]
    pub ca_cert: Option<PathBuf>,
    /// Accept any certificate an HTTPS target presents (goose's flag): no
    /// check of its issuer, names or dates. For staging servers only. A
    /// master sends it to every worker with each spawn, as --ca-cert.
    #[arg(long, conflicts_with = "ca_cert", help_heading = "Target HTTPS")]
    pub accept_invalid_certs: bool,
}

impl TargetTlsFlags {
    /// The trust the flags ask for, the CA file read and checked; `None`
    /// without either flag.
    pub fn load(&self) -> Result<Option<TargetTls>, CaFileError> {
        let ca = match &self.ca_cert {
            Some(path) => Some(CaCerts::from_file(path)?),
            None => None,
        };
        if ca.is_none() && !self.accept_invalid_certs {
            return Ok(None);
        }
        Ok(Some(TargetTls {
            ca,
            accept_invalid_certs: self.accept_invalid_certs,
        }))
    }

    /// The flags as `loadtest master` and `loadtest worker` take them.
    pub fn to_args(&self) -> Vec<String> {
        let mut args = ArgList::default();
        args.pair(
            "--ca-cert",
            self.ca_cert.as_ref().map(|p| p.display().to_string()),
        );
        args.flag("--accept-invalid-certs", self.accept_invalid_certs);
        args.0
    }
}

/// What a `loadtest master` will do, checked before it binds a port.
#[derive(Debug, Clone, PartialEq)]
pub enum RunPlan {
    /// Serve the web UI; runs started there stop after `run_time`, if set.
    Ui {
        /// `-t`: how long each run started from the UI lasts; `None`: until stopped.
        run_time: Option<Duration>,
    },
    /// A fixed headless run.
    Fixed {
        /// Users to run across all workers (`-u`).
        users: u64,
        /// Users started per second until all run (`-r`).
        spawn_rate: f64,
        /// How long the run lasts (`-t`); `None`: until Ctrl-C.
        run_time: Option<Duration>,
    },
    /// A headless ramp.
    Ramp(RampPlan),
}

impl RampFlags {
    /// The validated ramp; `None` without `--ramp`.
    pub fn plan(&self, spawn_rate: f64) -> Result<Option<RampPlan>, String> {
        let Some(spec) = self.ramp else {
            return Ok(None);
        };
        let step_time = self
            .step_time
            .ok_or("--ramp needs --step-time DURATION (how long each step measures, e.g. 30s)")?;
        let limits = Limits {
            fail_ratio: self.fail_ratio,
            max_p95_ms: self.max_p95,
            max_p99_ms: self.max_p99,
        };
        let mut plan = RampPlan::new(spec, step_time, limits, spawn_rate);
        plan.refine = self.refine;
        Ok(Some(plan))
    }

    /// The flags as `loadtest master` takes them.
    pub fn to_args(&self) -> Vec<String> {
        let mut args = ArgList::default();
        args.pair("--ramp", self.ramp.map(|r| r.to_string()));
        args.pair("--step-time", self.step_time.map(format_timespan));
        if self.ramp.is_some() && self.fail_ratio != DEFAULT_FAIL_RATIO {
            args.pair("--fail-ratio", Some(self.fail_ratio.to_string()));
        }
        args.pair("--max-p95", self.max_p95.map(|m| m.to_string()));
        args.pair("--max-p99", self.max_p99.map(|m| m.to_string()));
        args.pair(
            "--report-dir",
            self.report_dir.as_ref().map(|d| d.display().to_string()),
        );
        args.flag("--refine", self.refine);
        args.0
    }
}

impl RunFlags {
    /// What the master will do, from these flags and the ramp's; the error
    /// says which flags do not go together.
    pub fn plan(&self, spawn: &SpawnFlags, ramp: &RampFlags) -> Result<RunPlan, String> {
        let rate = spawn.or(1.0);
        if let Some(ramp_plan) = ramp.plan(rate)? {
            if !self.headless {
                return Err("--ramp runs headless: add --headless".into());
            }
            if self.users.is_some() || self.run_time.is_some() {
                return Err(
                    "--ramp sets the users and the time itself: drop -u/--users and -t/--run-time"
                        .into(),
                );
            }
            if self.arrival_rate.is_some() {
                return Err(
                    "--ramp steps the users of the closed model: drop --arrival-rate".into(),
                );
            }
            return Ok(RunPlan::Ramp(ramp_plan));
        }
        if !self.headless {
            if self.users.is_some() {
                return Err("-u/--users is for a headless run: add --headless, or start the users from the web UI".into());
            }
            return Ok(RunPlan::Ui {
                run_time: self.run_time,
            });
        }
        match self.users {
            Some(users) => Ok(RunPlan::Fixed {
                users,
                spawn_rate: rate,
                run_time: self.run_time,
            }),
            None => Err("--headless needs -u/--users N (the number of users to run) or --ramp START:STEP:MAX".into()),
        }
    }

    /// The flags as `loadtest master` takes them (with the spawn rate).
    pub fn to_args(&self, spawn: &SpawnFlags) -> Vec<String> {
        let mut args = ArgList::default();
        args.flag("--headless", self.headless);
        args.pair("--users", self.users.map(|u| u.to_string()));
        args.pair("--spawn-rate", spawn.spawn_rate.map(|r| r.to_string()));
        args.pair(
            "--co-mitigation",
            spawn.co_mitigation.map(|m| m.to_string()),
        );
        args.pair("--run-time", self.run_time.map(format_timespan));
        args.pair("--arrival-rate", self.arrival_rate.map(|r| r.to_string()));
        args.0
    }
}

/// Arguments being written back.
#[derive(Default)]
struct ArgList(Vec<String>);

impl ArgList {
    fn pair(&mut self, name: &str, value: Option<String>) {
        if let Some(value) = value {
            self.0.push(name.to_string());
            self.0.push(value);
        }
    }

    fn flag(&mut self, name: &str, on: bool) {
        if on {
            self.0.push(name.to_string());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser, Debug)]
    struct Cli {
        #[command(flatten)]
        run: RunFlags,
        #[command(flatten)]
        spawn: SpawnFlags,
        #[command(flatten)]
        ramp: RampFlags,
        #[command(flatten)]
        secret: JoinSecretFlags,
        #[command(flatten)]
        tls: TargetTlsFlags,
    }

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("x").chain(args.iter().copied()))
    }

    #[test]
    fn forwarded_flags_parse_back_to_the_same_values() {
        for line in [
            "--headless --ramp 2:2:10 --step-time 3s -r 5 --refine --max-p95 0.25 --max-p99 300 --report-dir out --fail-ratio 0.05",
            "--headless -u 50 -r 10 -t 1m30s --co-mitigation max",
            "--headless -u 40 -r 40 -t 10s --arrival-rate 300",
            "-t 1m --arrival-rate 0.5",
            "-t 20s --join-secret-file /run/secret",
            "--ca-cert /etc/ssl/internal-ca.pem",
            "--accept-invalid-certs",
            "",
        ] {
            let args: Vec<&str> = line.split_whitespace().collect();
            let first = parse(&args).expect(line);
            let mut forwarded = first.run.to_args(&first.spawn);
            forwarded.extend(first.ramp.to_args());
            forwarded.extend(first.secret.to_args());
            forwarded.extend(first.tls.to_args());
            let again: Vec<&str> = forwarded.iter().map(String::as_str).collect();
            let second = parse(&again).expect("forwarded flags parse");
            assert_eq!(second.run, first.run, "{line} -> {forwarded:?}");
            assert_eq!(second.spawn, first.spawn, "{line} -> {forwarded:?}");
            assert_eq!(second.ramp, first.ramp, "{line} -> {forwarded:?}");
            assert_eq!(second.secret, first.secret, "{line} -> {forwarded:?}");
            assert_eq!(second.tls, first.tls, "{line} -> {forwarded:?}");
        }
    }

    #[test]
    fn plans_say_which_flags_do_not_go_together() {
        let plan = |line: &str| {
            let args: Vec<&str> = line.split_whitespace().collect();
            let cli = parse(&args).expect(line);
            cli.run.plan(&cli.spawn, &cli.ramp)
        };
        assert!(matches!(plan(""), Ok(RunPlan::Ui { run_time: None })));
        assert!(matches!(
            plan("--headless -u 3 -r 2"),
            Ok(RunPlan::Fixed { users: 3, .. })
        ));
        assert!(matches!(
            plan("--headless --ramp 1:1:3 --step-time 3s"),
            Ok(RunPlan::Ramp(_))
        ));
        assert!(plan("--headless").unwrap_err().contains("-u/--users"));
        assert!(plan("--ramp 1:1:3 --step-time 3s")
            .unwrap_err()
            .contains("--headless"));
        assert!(plan("--headless --ramp 1:1:3")
            .unwrap_err()
            .contains("--step-time"));
        assert!(plan("--headless --ramp 1:1:3 --step-time 3s -u 4")
            .unwrap_err()
            .contains("-u/--users"));
        assert!(plan("-u 4").unwrap_err().contains("--headless"));
        assert!(
            plan("--headless --ramp 1:1:3 --step-time 3s --arrival-rate 10")
                .unwrap_err()
                .contains("--arrival-rate")
        );
        let bad = parse(&["--arrival-rate", "0"]).unwrap_err();
        assert!(bad.to_string().contains("arrival rate"), "{bad}");
        assert!(parse(&["--arrival-rate", "2e6"]).is_err());
        let bad = parse(&["--ramp", "10:0:5"]).unwrap_err();
        assert_eq!(bad.exit_code(), 2);
        let bad = parse(&["--co-mitigation", "sometimes"]).unwrap_err();
        assert!(bad.to_string().contains("average, maximum"), "{bad}");
        let both = parse(&["--ca-cert", "ca.pem", "--accept-invalid-certs"]).unwrap_err();
        assert_eq!(both.exit_code(), 2, "one trust or the other: {both}");
    }

    #[derive(Parser, Debug)]
    struct WorkerCli {
        #[command(flatten)]
        users: UserFlags,
    }

    #[test]
    fn the_users_flags_round_trip_and_a_master_says_where_they_go() {
        for line in ["--wait 0.5:2 --shared-client", "--wait 0:0", ""] {
            let args: Vec<&str> = line.split_whitespace().collect();
            let first = WorkerCli::try_parse_from(std::iter::once("w").chain(args.iter().copied()))
                .expect(line);
            let forwarded = first.users.to_args();
            let again = WorkerCli::try_parse_from(
                std::iter::once("w").chain(forwarded.iter().map(String::as_str)),
            )
            .expect("forwarded flags parse");
            assert_eq!(again.users, first.users, "{line} -> {forwarded:?}");
        }
        assert!(parse_wait("2:1").is_err());
        assert!(worker_flag_hint("--wait=1:2")
            .is_some_and(|h| h.contains("--wait is an option of the workers")));
        assert!(worker_flag_hint("--csv").is_none());
    }
}
