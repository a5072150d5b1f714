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
    parse_abort_delay, parse_arrival_rate, parse_ms, parse_rate, parse_ratio, parse_run_time,
    parse_step_time,
};
use crate::co_mitigation::CoMitigation;
use crate::protocol::{JoinSecret, SecretError};
use crate::ramp::{Limits, RampPlan, RampSpec, DEFAULT_FAIL_RATIO};
use crate::target_tls::{CaCerts, CaFileError, TargetTls};
use crate::test_plan::TestPlan;
use crate::thresholds::{parse_rule, Rule, ThresholdConfig, MAX_RULES};
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
    /// Follow a load shape instead of -u/-t, in goose's grammar: steps
    /// "USERS,TIME;USERS,TIME;...", each going from the previous step's
    /// users to its own over its time (TIME: 90, 90s, 1h2m3s). The run ends
    /// with the plan. Headless, or started by the web UI's Start button.
    /// E.g. "10,1m;10,5m;0,30s".
    #[arg(long, value_name = "PLAN", help_heading = "Headless")]
    pub test_plan: Option<TestPlan>,
    /// In the web UI, let each run choose its user classes (a checkbox per
    /// class), as Locust's --class-picker.
    #[arg(long)]
    pub class_picker: bool,
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
    #[arg(
        long,
        value_name = "START:STEP:MAX",
        group = "stepped",
        help_heading = "Ramp"
    )]
    pub ramp: Option<RampSpec>,
    /// Ramp the arrival rate START:STEP:MAX iterations per second (e.g.
    /// 100:100:1000) over a pool of -u users (the open model), and report
    /// the rate the target fails at.
    #[arg(long, value_name = "START:STEP:MAX", value_parser = parse_rate_spec, group = "stepped", help_heading = "Ramp")]
    pub ramp_rate: Option<RampSpec>,
    /// How long each step measures, e.g. 30s, 2m (rounded up to whole 3 s intervals).
    #[arg(long, value_name = "DURATION", value_parser = parse_step_time, requires = "stepped", help_heading = "Ramp")]
    pub step_time: Option<Duration>,
    /// A step fails when more than this fraction of its requests fail (0 to 1).
    #[arg(long, value_name = "RATIO", default_value_t = DEFAULT_FAIL_RATIO, value_parser = parse_ratio, requires = "stepped", help_heading = "Ramp")]
    pub fail_ratio: f64,
    /// A step also fails when its p95 response time exceeds MS milliseconds
    /// (fractions allowed, e.g. 0.5: judged to the microsecond).
    #[arg(long, value_name = "MS", requires = "stepped", value_parser = parse_ms, help_heading = "Ramp")]
    pub max_p95: Option<f64>,
    /// A step also fails when its p99 response time exceeds MS milliseconds.
    #[arg(long, value_name = "MS", requires = "stepped", value_parser = parse_ms, help_heading = "Ramp")]
    pub max_p99: Option<f64>,
    /// After the first failing step, bisect between it and the last healthy one.
    #[arg(long, requires = "stepped", help_heading = "Ramp")]
    pub refine: bool,
    /// Write ramp.json, ramp.csv and ramp.html into DIR (created if missing).
    #[arg(long, value_name = "DIR", requires = "stepped", help_heading = "Ramp")]
    pub report_dir: Option<PathBuf>,
}

impl Default for RampFlags {
    fn default() -> Self {
        RampFlags {
            ramp: None,
            ramp_rate: None,
            step_time: None,
            fail_ratio: DEFAULT_FAIL_RATIO,
            max_p95: None,
            max_p99: None,
            refine: false,
            report_dir: None,
        }
    }
}

/// Pass/fail rules on the run's numbers, in goose's grammar: a fixed run
/// or a UI run is stopped by the first failing one and exits with
/// [`crate::thresholds::THRESHOLDS_FAILED`]; in a ramp they judge each step.
#[derive(Debug, Clone, Default, PartialEq, Args)]
pub struct ThresholdFlags {
    /// A pass/fail rule (repeatable), as goose's --threshold: pNN, avg, max,
    /// error-rate or rps; <, <=, > or >=; a time in us, ms or s (bare: ms),
    /// a rate in % ; optionally " for GET /name". E.g. "p95<500ms",
    /// "error-rate<1%", "rps>=200", "p99<2s for GET /cart". Judged on every
    /// worker's merged numbers once a second while the users are all
    /// spawned; the first failing rule stops the run (exit code 99). In a
    /// ramp, each step is judged by them.
    #[arg(long = "threshold", value_name = "RULE", value_parser = parse_rule, help_heading = "Verdicts")]
    pub thresholds: Vec<Rule>,
    /// Judge the rules only when the run ends: a failing rule still fails
    /// the run (exit code 99) but does not stop it.
    #[arg(long, requires = "thresholds", help_heading = "Verdicts")]
    pub no_threshold_abort: bool,
    /// Wait this long after the users are all spawned before the first
    /// check (e.g. 30s, to let caches warm up); the verdict at the end is
    /// unchanged.
    #[arg(long, value_name = "TIME", value_parser = parse_abort_delay, requires = "thresholds", conflicts_with = "no_threshold_abort", help_heading = "Verdicts")]
    pub threshold_abort_delay: Option<Duration>,
}

impl ThresholdFlags {
    /// The rules and how they act; refuses more than [`MAX_RULES`].
    pub fn config(&self) -> Result<ThresholdConfig, String> {
        if self.thresholds.len() > MAX_RULES {
            return Err(format!(
                "{} --threshold rules given: at most {MAX_RULES} are judged",
                self.thresholds.len()
            ));
        }
        Ok(ThresholdConfig {
            rules: self.thresholds.clone(),
            abort: !self.no_threshold_abort,
            abort_delay: self.threshold_abort_delay.unwrap_or_default(),
        })
    }

    /// The flags as `loadtest master` takes them.
    pub fn to_args(&self) -> Vec<String> {
        let mut args = ArgList::default();
        for rule in &self.thresholds {
            args.pair("--threshold", Some(rule.to_string()));
        }
        args.flag("--no-threshold-abort", self.no_threshold_abort);
        args.pair(
            "--threshold-abort-delay",
            self.threshold_abort_delay.map(format_timespan),
        );
        args.0
    }
}

/// `--ramp-rate START:STEP:MAX`, in iterations per second.
fn parse_rate_spec(text: &str) -> Result<RampSpec, String> {
    RampSpec::parse(text).map_err(|e| {
        format!(
            "{}; expected START:STEP:MAX in iterations per second, with START >= 1, STEP >= 1 and MAX >= START, e.g. 100:100:1000",
            e.reason.replace(" user", "")
        )
    })
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
        /// `--test-plan`: the shape each run started from the UI follows.
        test_plan: Option<TestPlan>,
    },
    /// A headless run that follows a test plan and ends with it.
    Planned(TestPlan),
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
    /// The validated ramp, its steps judged by the shorthands and `rules`
    /// (`--threshold`); `None` without `--ramp`.
    pub fn plan(
        &self,
        spawn_rate: f64,
        rules: &ThresholdFlags,
        users: Option<u64>,
    ) -> Result<Option<RampPlan>, String> {
        let (spec, flag) = match (self.ramp, self.ramp_rate) {
            (Some(spec), _) => (spec, "--ramp"),
            (None, Some(spec)) => (spec, "--ramp-rate"),
            (None, None) => return Ok(None),
        };
        let step_time = self.step_time.ok_or_else(|| {
            format!("{flag} needs --step-time DURATION (how long each step measures, e.g. 30s)")
        })?;
        if rules.no_threshold_abort || rules.threshold_abort_delay.is_some() {
            return Err("--no-threshold-abort and --threshold-abort-delay are for fixed and UI runs: a ramp judges each step by the rules when it ends".into());
        }
        let limits = Limits::new(
            self.fail_ratio,
            self.max_p95,
            self.max_p99,
            &rules.thresholds,
        )?;
        let mut plan = RampPlan::new(spec, step_time, limits, spawn_rate);
        plan.refine = self.refine;
        if let Some(rates) = self.ramp_rate {
            let most = crate::worker::arrival::MAX_ARRIVAL_RATE;
            if rates.max as f64 > most {
                return Err(format!(
                    "--ramp-rate {rates}: at most {most} iterations per second"
                ));
            }
            let pool = users.filter(|u| *u > 0).ok_or(
                "--ramp-rate needs -u/--users N: the users that run the iterations (enough for the highest rate times the target's latency; a start that finds none free is dropped and counted)",
            )?;
            plan.pool = Some(pool);
        }
        Ok(Some(plan))
    }

    /// The flags as `loadtest master` takes them.
    pub fn to_args(&self) -> Vec<String> {
        let mut args = ArgList::default();
        args.pair("--ramp", self.ramp.map(|r| r.to_string()));
        args.pair("--ramp-rate", self.ramp_rate.map(|r| r.to_string()));
        args.pair("--step-time", self.step_time.map(format_timespan));
        if (self.ramp.is_some() || self.ramp_rate.is_some())
            && self.fail_ratio != DEFAULT_FAIL_RATIO
        {
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
    pub fn plan(
        &self,
        spawn: &SpawnFlags,
        ramp: &RampFlags,
        rules: &ThresholdFlags,
    ) -> Result<RunPlan, String> {
        rules.config()?;
        let rate = spawn.or(1.0);
        if self.class_picker && self.headless {
            return Err("--class-picker is for the web UI: drop --headless, or name the classes after the flags".into());
        }
        if let Some(test_plan) = &self.test_plan {
            return self.planned(test_plan, spawn, ramp);
        }
        if let Some(ramp_plan) = ramp.plan(rate, rules, self.users)? {
            let flag = if ramp_plan.pool.is_some() {
                "--ramp-rate"
            } else {
                "--ramp"
            };
            if !self.headless {
                return Err(format!("{flag} runs headless: add --headless"));
            }
            if ramp_plan.pool.is_none() && self.users.is_some() {
                return Err("--ramp sets the users itself: drop -u/--users".into());
            }
            if self.run_time.is_some() {
                return Err(format!(
                    "{flag} sets the time itself (its steps): drop -t/--run-time"
                ));
            }
            if self.arrival_rate.is_some() {
                return Err(if ramp_plan.pool.is_some() {
                    "--ramp-rate sets the arrival rate of each step itself: drop --arrival-rate"
                        .into()
                } else {
                    "--ramp steps the users of the closed model: drop --arrival-rate (or step the rate: --ramp-rate)".into()
                });
            }
            return Ok(RunPlan::Ramp(ramp_plan));
        }
        if !self.headless {
            if self.users.is_some() {
                return Err("-u/--users is for a headless run: add --headless, or start the users from the web UI".into());
            }
            return Ok(RunPlan::Ui {
                run_time: self.run_time,
                test_plan: None,
            });
        }
        match self.users {
            Some(users) => Ok(RunPlan::Fixed {
                users,
                spawn_rate: rate,
                run_time: self.run_time,
            }),
            None => Err("--headless needs -u/--users N (the number of users to run), --ramp START:STEP:MAX, --ramp-rate START:STEP:MAX with -u, or --test-plan PLAN".into()),
        }
    }

    /// The plan of a run with `--test-plan`, which sets the users, their
    /// pace and the time itself.
    fn planned(
        &self,
        test_plan: &TestPlan,
        spawn: &SpawnFlags,
        ramp: &RampFlags,
    ) -> Result<RunPlan, String> {
        let mut clashes = Vec::new();
        if self.users.is_some() {
            clashes.push("-u/--users");
        }
        if self.run_time.is_some() {
            clashes.push("-t/--run-time");
        }
        if spawn.spawn_rate.is_some() {
            clashes.push("-r/--spawn-rate");
        }
        if ramp.ramp.is_some() {
            clashes.push("--ramp");
        }
        if ramp.ramp_rate.is_some() {
            clashes.push("--ramp-rate");
        }
        // A plan shapes the users of the closed model; an open model's
        // load is its rate, which a plan does not shape.
        if self.arrival_rate.is_some() {
            clashes.push("--arrival-rate");
        }
        if !clashes.is_empty() {
            return Err(format!(
                "--test-plan sets the users, how fast they start and stop, and the run's time itself: drop {}",
                clashes.join(", ")
            ));
        }
        Ok(if self.headless {
            RunPlan::Planned(test_plan.clone())
        } else {
            RunPlan::Ui {
                run_time: None,
                test_plan: Some(test_plan.clone()),
            }
        })
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
        args.pair(
            "--test-plan",
            self.test_plan.as_ref().map(ToString::to_string),
        );
        args.flag("--class-picker", self.class_picker);
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
mod tests;
