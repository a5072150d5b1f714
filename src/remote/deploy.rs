//! Running a [`DeployPlan`]: every host in parallel (connect, inspect,
//! upload, its roles' recipes), workers started only once the master
//! answers, then a check through the master's API that every worker joined.
//!
//! A failing host does not stop the others: each finishes its recipe, and
//! the [`Report`] says for every host whether it is done, where it failed,
//! or what it skipped and why.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::watch;

use super::plan::{DeployPlan, HostPlan};
use super::recipe::{
    self, elf_arch, failure_from, master_steps, run_step, upload_step, webserver_steps,
    worker_start_steps, worker_stop_steps, Facts, MasterConfig, Step, StepFailure,
};
use super::report::{check_joined, HostReport, Outcome, Report};
use super::ssh::load_key;
use super::Session;
use crate::role::Role;

/// Whether the master is up, for workers waiting to start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MasterState {
    Pending,
    Up,
}

/// Prints one progress line per step per host, aligned, to stderr.
#[derive(Debug, Clone)]
pub struct Progress {
    width: usize,
    start: Instant,
}

impl Progress {
    fn new(hosts: &[HostPlan]) -> Progress {
        let width = hosts
            .iter()
            .map(|h| h.host.label().len() + h.role_names().len() + 3)
            .max()
            .unwrap_or(0);
        Progress {
            width,
            start: Instant::now(),
        }
    }

    fn line(&self, plan: &HostPlan, message: impl std::fmt::Display) {
        let who = format!("[{} {}]", plan.host.label(), plan.role_names());
        let secs = self.start.elapsed().as_secs_f64();
        eprintln!("{secs:6.1}s {who:<width$} {message}", width = self.width);
    }
}

/// Deploys the plan; never fails as a whole, the report says what happened.
pub async fn deploy(plan: DeployPlan) -> Report {
    let plan = Arc::new(plan);
    let progress = Progress::new(&plan.hosts);
    let (master_tx, master_rx) = watch::channel(MasterState::Pending);
    let mut master_tx = Some(master_tx);
    let mut tasks = Vec::new();
    for index in 0..plan.hosts.len() {
        let tx = if plan.hosts[index].has(Role::Master) {
            master_tx.take()
        } else {
            None
        };
        let job = HostJob {
            plan: plan.clone(),
            index,
            progress: progress.clone(),
            master_up: tx,
            master_rx: master_rx.clone(),
            steps_run: 0,
        };
        tasks.push(tokio::spawn(job.run()));
    }
    drop(master_tx);
    let mut hosts = Vec::new();
    let mut master_session = None;
    for (index, task) in tasks.into_iter().enumerate() {
        let (report, session) = match task.await {
            Ok(done) => done,
            Err(err) => (
                HostReport {
                    plan: plan.hosts[index].clone(),
                    hostname: None,
                    outcome: Outcome::Failed {
                        changed: true,
                        role: None,
                        failure: failure_from_text(
                            "deploy",
                            &format!("the deploy task crashed: {err}"),
                        ),
                    },
                },
                None,
            ),
        };
        if session.is_some() {
            master_session = session;
        }
        hosts.push(report);
    }
    let joined = match (master_session, plan.first(Role::Master)) {
        (Some(session), Some(master)) => {
            let say = |message: &str| progress.line(master, message);
            let result = check_joined(&session, &plan, &hosts, &say).await;
            session.close().await;
            Some(result)
        }
        _ => None,
    };
    Report { hosts, joined }
}

fn failure_from_text(step: &str, reason: &str) -> StepFailure {
    StepFailure {
        step: step.into(),
        command: String::new(),
        reason: reason.into(),
        output: String::new(),
    }
}

/// One host's share of the deploy.
struct HostJob {
    plan: Arc<DeployPlan>,
    index: usize,
    progress: Progress,
    /// Held by the master's job only: announces the master is up.
    master_up: Option<watch::Sender<MasterState>>,
    master_rx: watch::Receiver<MasterState>,
    /// Steps started on the host: zero means nothing was changed on it.
    steps_run: usize,
}

impl HostJob {
    /// Returns the report, and the session when this host is the master
    /// and came up (the join check runs on it).
    async fn run(mut self) -> (HostReport, Option<Session>) {
        let host_plan = self.plan.hosts[self.index].clone();
        let mut report = HostReport {
            plan: host_plan.clone(),
            hostname: None,
            outcome: Outcome::Done,
        };
        let session = match self.connect(&host_plan).await {
            Ok(session) => session,
            Err(failure) => {
                report.outcome = Outcome::Failed {
                    role: None,
                    failure,
                    changed: false,
                };
                return (report, None);
            }
        };
        let result = self.provision(&session, &host_plan, &mut report).await;
        if let Err((role, failure)) = result {
            self.progress.line(
                &host_plan,
                format!("FAILED: {}: {}", failure.step, failure.reason),
            );
            report.outcome = match failure.step.as_str() {
                SKIPPED => Outcome::Skipped {
                    reason: failure.reason,
                },
                _ => Outcome::Failed {
                    role,
                    failure,
                    changed: self.steps_run > 0,
                },
            };
            session.close().await;
            return (report, None);
        }
        self.progress.line(&host_plan, "ready");
        if host_plan.has(Role::Master) {
            return (report, Some(session));
        }
        session.close().await;
        (report, None)
    }

    async fn connect(&self, host_plan: &HostPlan) -> Result<Session, StepFailure> {
        let host = &host_plan.host;
        let key = load_key(host).map_err(|err| failure_from("connect", &err))?;
        self.progress.line(
            host_plan,
            format!(
                "connecting as {} (waiting up to {:?} for SSH)",
                host.user, self.plan.limits.wait
            ),
        );
        let session = Session::connect(host, key, &self.plan.known_hosts, self.plan.limits)
            .await
            .map_err(|err| failure_from("connect", &err))?;
        if let Some(fingerprint) = session.learned_host_key() {
            self.progress.line(
                host_plan,
                format!(
                    "first contact: host key {fingerprint} recorded in {}",
                    self.plan.known_hosts.path().display()
                ),
            );
        }
        Ok(session)
    }

    /// Everything after the connection; the error carries the role whose
    /// recipe failed (none for host-wide steps).
    async fn provision(
        &mut self,
        session: &Session,
        host_plan: &HostPlan,
        report: &mut HostReport,
    ) -> Result<(), (Option<Role>, StepFailure)> {
        self.progress.line(host_plan, "inspecting host");
        let facts = Facts::gather(session, &host_plan.host.user)
            .await
            .map_err(|f| (None, f))?;
        report.hostname = Some(facts.hostname.clone());
        self.progress.line(
            host_plan,
            format!(
                "{}, {}, hostname {}, {}",
                facts.os,
                facts.arch,
                facts.hostname,
                if facts.systemd {
                    "systemd"
                } else {
                    "no systemd: detached processes"
                }
            ),
        );
        if host_plan.has(Role::Master) || host_plan.has(Role::Worker) {
            self.check_arch(&facts).map_err(|f| (None, f))?;
            let upload = upload_step(self.plan.loadtest.clone());
            self.step(session, &facts, host_plan, &upload)
                .await
                .map_err(|f| (None, f))?;
        }
        for role in host_plan.roles.clone() {
            self.role(session, &facts, host_plan, role)
                .await
                .map_err(|f| (Some(role), f))?;
        }
        Ok(())
    }

    async fn role(
        &mut self,
        session: &Session,
        facts: &Facts,
        host_plan: &HostPlan,
        role: Role,
    ) -> Result<(), StepFailure> {
        match role {
            Role::Webserver => {
                self.steps(session, facts, host_plan, &webserver_steps(facts.systemd))
                    .await
            }
            Role::Master => {
                let config = self.master_config();
                self.steps(
                    session,
                    facts,
                    host_plan,
                    &master_steps(&config, facts.systemd),
                )
                .await?;
                if let Some(tx) = self.master_up.take() {
                    let _ = tx.send(MasterState::Up);
                }
                Ok(())
            }
            Role::Worker => {
                self.steps(session, facts, host_plan, &worker_stop_steps())
                    .await?;
                if *self.master_rx.borrow() != MasterState::Up {
                    self.progress
                        .line(host_plan, "waiting for the master to answer");
                }
                if self
                    .master_rx
                    .wait_for(|s| *s == MasterState::Up)
                    .await
                    .is_err()
                {
                    return Err(failure_from_text(
                        SKIPPED,
                        "worker not started: the master did not come up",
                    ));
                }
                let master = self
                    .plan
                    .first(Role::Master)
                    .map(|m| m.private_address.clone());
                let steps = worker_start_steps(&master.unwrap_or_default(), facts.systemd);
                self.steps(session, facts, host_plan, &steps).await
            }
        }
    }

    fn master_config(&self) -> MasterConfig {
        let target = self
            .plan
            .first(Role::Webserver)
            .map(|w| w.private_address.clone())
            .unwrap_or_default();
        let target = if target.contains(':') {
            format!("http://[{target}]")
        } else {
            format!("http://{target}")
        };
        MasterConfig {
            target_url: target,
            web_auth: self.plan.web_auth.clone(),
        }
    }

    /// The binary must be for the host's CPU: a mismatch would otherwise
    /// surface as "Exec format error" after the upload.
    fn check_arch(&self, facts: &Facts) -> Result<(), StepFailure> {
        match elf_arch(&self.plan.loadtest) {
            Some(arch) if arch == facts.arch => Ok(()),
            built => Err(failure_from_text(
                "check architecture",
                &format!(
                    "the loadtest binary is built for {}, but this host is {}: build it for \
                     the host's target (see the README, \"arm64 instances\") and pass --loadtest-bin",
                    built.unwrap_or("an unknown CPU or is not a Linux executable"),
                    facts.arch
                ),
            )),
        }
    }

    async fn steps(
        &mut self,
        session: &Session,
        facts: &Facts,
        host_plan: &HostPlan,
        steps: &[Step],
    ) -> Result<(), StepFailure> {
        for step in steps {
            self.step(session, facts, host_plan, step).await?;
        }
        Ok(())
    }

    async fn step(
        &mut self,
        session: &Session,
        facts: &Facts,
        host_plan: &HostPlan,
        step: &Step,
    ) -> Result<(), StepFailure> {
        self.progress.line(host_plan, &step.name);
        self.steps_run += 1;
        let out = run_step(session, facts.privilege, step).await?;
        let last = recipe::tail(&out.stdout, 1);
        if !last.is_empty() {
            self.progress.line(host_plan, format!("  {last}"));
        }
        Ok(())
    }
}

/// The pseudo-step of a worker that was never started.
pub(crate) const SKIPPED: &str = "skipped";
