//! Running a [`DeployPlan`]: every host in parallel (connect, inspect,
//! get the binary, its roles' recipes), workers started only once the
//! master answers, then a check through the master's API that every worker
//! joined.
//!
//! The binary crosses the operator's link once: the master's job uploads
//! it and serves it (announced on a [`Source`] watch channel); every other
//! host's job fetches it from there when its own digest differs.
//!
//! A failing host does not stop the others: each finishes its recipe, and
//! the [`Report`] says for every host whether it is done, where it failed,
//! or what it skipped and why.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::watch;

use super::plan::{DeployPlan, HostPlan};
use super::recipe::{
    self, elf_arch, failure_from, fetch_step, master_steps, receive_step, run_step,
    serve_start_step, serve_stop_step, stage_step, webserver_steps, worker_start_steps,
    worker_stop_steps, Facts, MasterConfig, Step, StepFailure, SHIP_PORT,
};
use super::report::{check_joined, HostReport, Outcome, Report};
use super::script::Privilege;
use super::shipment::{megabytes, Source};
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
    let (source_tx, source_rx) = watch::channel(Source::Pending);
    let mut source_tx = Some(source_tx);
    let mut tasks = Vec::new();
    for index in 0..plan.hosts.len() {
        let is_master = plan.hosts[index].has(Role::Master);
        let job = HostJob {
            plan: plan.clone(),
            index,
            progress: progress.clone(),
            master_up: if is_master { master_tx.take() } else { None },
            master_rx: master_rx.clone(),
            source_tx: if is_master { source_tx.take() } else { None },
            source_rx: source_rx.clone(),
            steps_run: 0,
        };
        tasks.push(tokio::spawn(job.run()));
    }
    drop((master_tx, source_tx));
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
        (Some((session, privilege)), Some(master)) => {
            let say = |message: &str| progress.line(master, message);
            if matches!(*source_rx.borrow(), Source::Ready { .. }) {
                // Every host has fetched (or failed to): the server goes.
                let stopped = run_step(&session, privilege, &serve_stop_step()).await;
                if let Err(failure) = stopped {
                    say(&format!(
                        "could not stop serving loadtest ({}); it ends by itself within 10 minutes",
                        failure.reason
                    ));
                }
            }
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
    /// Held by the master's job only: announces where the binary is served
    /// (dropped without a word when the master failed before).
    source_tx: Option<watch::Sender<Source>>,
    source_rx: watch::Receiver<Source>,
    /// Steps started on the host: zero means nothing was changed on it.
    steps_run: usize,
}

impl HostJob {
    /// Returns the report, and the session (with how it becomes root) when
    /// this host is the master and came up (the join check runs on it).
    async fn run(mut self) -> (HostReport, Option<(Session, Privilege)>) {
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
        let privilege = match result {
            Ok(privilege) => privilege,
            Err((role, failure)) => {
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
        };
        self.progress.line(&host_plan, "ready");
        if host_plan.has(Role::Master) {
            return (report, Some((session, privilege)));
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

    /// Everything after the connection; returns how the host's steps
    /// become root. The error carries the role whose recipe failed (none
    /// for host-wide steps).
    async fn provision(
        &mut self,
        session: &Session,
        host_plan: &HostPlan,
        report: &mut HostReport,
    ) -> Result<Privilege, (Option<Role>, StepFailure)> {
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
        if let Some(plan) = &host_plan.arm {
            let arm = super::arm::arm_step(plan, crate::expiry::unix_now());
            let armed = self.step(session, &facts, host_plan, &arm).await;
            armed.map_err(|f| (None, f))?;
        }
        if host_plan.has(Role::Master) || host_plan.has(Role::Worker) {
            self.check_arch(&facts).map_err(|f| (None, f))?;
            self.ship(session, &facts, host_plan)
                .await
                .map_err(|f| (None, f))?;
        }
        for role in host_plan.roles.clone() {
            self.role(session, &facts, host_plan, role)
                .await
                .map_err(|f| (Some(role), f))?;
        }
        Ok(facts.privilege)
    }

    /// Gets the binary onto the host: from the operator for the master
    /// (then served to the others), from the master for every other host;
    /// nothing when the host already has this digest.
    async fn ship(
        &mut self,
        session: &Session,
        facts: &Facts,
        host_plan: &HostPlan,
    ) -> Result<(), StepFailure> {
        let shipment = self.plan.loadtest.clone();
        let current = facts.loadtest_sha256.as_deref() == Some(shipment.digest.as_str());
        if current {
            self.progress.line(
                host_plan,
                format!(
                    "loadtest sha256 {} is installed already: nothing to send",
                    shipment.short_digest()
                ),
            );
        }
        if host_plan.has(Role::Master) {
            // Dropped on any failure below: the waiting hosts hear of it.
            let announce = self.source_tx.take();
            if !current {
                let upload = receive_step(&shipment, facts.zstd);
                self.step(session, facts, host_plan, &upload).await?;
            }
            let others = self
                .plan
                .hosts
                .iter()
                .any(|h| h.has(Role::Worker) && !h.has(Role::Master));
            if others {
                let source = self.serve(session, facts, host_plan, current).await;
                if let Some(tx) = announce {
                    let _ = tx.send(source);
                }
            }
            return Ok(());
        }
        if current {
            return Ok(());
        }
        self.fetch(session, facts, host_plan).await
    }

    /// Starts the master's file server; what the other hosts are told.
    async fn serve(
        &mut self,
        session: &Session,
        facts: &Facts,
        host_plan: &HostPlan,
        staged: bool,
    ) -> Source {
        let digest = self.plan.loadtest.digest.clone();
        let mut steps = Vec::new();
        if staged {
            steps.push(stage_step(&digest, facts.zstd));
        }
        steps.push(serve_start_step(&digest));
        if let Err(failure) = self.steps(session, facts, host_plan, &steps).await {
            self.progress.line(
                host_plan,
                format!("FAILED: {}: {}", failure.step, failure.reason),
            );
            let output = recipe::tail(&failure.output, 3).replace('\n', " / ");
            return Source::Failed(format!(
                "the master could not serve it (step \"{}\": {}: {output})",
                failure.step, failure.reason
            ));
        }
        let address = &host_plan.private_address;
        let base = if address.contains(':') {
            format!("http://[{address}]:{SHIP_PORT}")
        } else {
            format!("http://{address}:{SHIP_PORT}")
        };
        Source::Ready {
            base,
            compressed: facts.zstd,
        }
    }

    /// A host other than the master: waits until the master serves the
    /// binary, then fetches and checks it.
    async fn fetch(
        &mut self,
        session: &Session,
        facts: &Facts,
        host_plan: &HostPlan,
    ) -> Result<(), StepFailure> {
        const STEP: &str = "fetch loadtest from the master";
        let shipment = self.plan.loadtest.clone();
        if *self.source_rx.borrow() == Source::Pending {
            self.progress.line(
                host_plan,
                format!(
                    "waiting for the master to serve loadtest ({} zstd)",
                    megabytes(shipment.compressed.len())
                ),
            );
        }
        let source = self
            .source_rx
            .wait_for(|s| *s != Source::Pending)
            .await
            .map(|s| s.clone());
        match source {
            Ok(Source::Ready { base, compressed }) => {
                let step = fetch_step(&base, &shipment, compressed && facts.zstd);
                self.step(session, facts, host_plan, &step).await
            }
            Ok(Source::Failed(why)) => Err(failure_from_text(
                STEP,
                &format!("loadtest not fetched: {why}; fix that, then deploy again"),
            )),
            _ => Err(failure_from_text(
                STEP,
                "loadtest not fetched: the master did not get the binary (its failure is above); fix it, then deploy again",
            )),
        }
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
                let stop = worker_stop_steps(&self.plan.loadtest.digest);
                self.steps(session, facts, host_plan, &stop).await?;
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
                let steps = worker_start_steps(
                    &master.unwrap_or_default(),
                    facts.systemd,
                    &self.plan.join_secret,
                    &self.plan.worker_args,
                );
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
            digest: self.plan.loadtest.digest.clone(),
            join_secret: self.plan.join_secret.clone(),
            tls: self.plan.web_tls.clone(),
            allowed_hosts: self.plan.hosts[self.index].ui_host_names(),
            target_trust: self.plan.target_trust.clone(),
        }
    }

    /// The binary must be for the host's CPU: a mismatch would otherwise
    /// surface as "Exec format error" after the upload.
    fn check_arch(&self, facts: &Facts) -> Result<(), StepFailure> {
        match elf_arch(&self.plan.loadtest.binary) {
            Some(arch) if arch == facts.arch => Ok(()),
            built => Err(failure_from_text(
                "check architecture",
                &format!(
                    "the loadtest binary is built for {}, but this host is {}: build it for \
                     the host's target (see docs/aws.md, \"arm64 instances\") and pass --loadtest-bin",
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
