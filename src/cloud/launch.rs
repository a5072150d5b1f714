//! `launch`: a [`FleetPlan`] becomes a running [`Fleet`], or nothing at all.
//!
//! The steps run in order (check the name is free, learn the caller's
//! address, choose AMIs and check each role's types share one architecture,
//! find the default VPC's subnets, key pair, security group, webserver,
//! master, workers, wait, save) and record what they create. When a step
//! fails, or Ctrl-C arrives, everything this launch created is removed
//! before the error names the step that failed; when something could not be
//! removed, the error lists it by id.

use std::fmt;
use std::time::Duration;

use super::access::learn_caller_cidr;
use super::destroy::Known;
use super::plan::{Access, KeyPlan, RolePlan};
use super::spot::Shared;
use super::{progress, CloudError, Ec2, Fleet, FleetKey, FleetPlan, Role, StateDir};

/// How long rollback waits for instances to terminate before giving up on
/// deleting the security group they hold.
const ROLLBACK_WAIT: Duration = Duration::from_secs(10 * 60);

/// The launch step under way, named in the error when it fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Step {
    #[default]
    Check,
    Address,
    Images,
    Network,
    KeyPair,
    Group,
    Launch(Role),
    Wait,
    Save,
}

impl Step {
    /// Steps before the key pair create nothing.
    fn creates(self) -> bool {
        !matches!(
            self,
            Step::Check | Step::Address | Step::Images | Step::Network
        )
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::Check => f.write_str("checking the fleet name and key pair"),
            Step::Address => f.write_str("learning this machine's public address"),
            Step::Images => f.write_str("checking instance types and choosing AMIs"),
            Step::Network => f.write_str("finding the default VPC and its subnets"),
            Step::KeyPair => f.write_str("creating the key pair"),
            Step::Group => f.write_str("creating the security group"),
            Step::Launch(Role::Worker) => f.write_str("launching the workers"),
            Step::Launch(role) => write!(f, "launching the {role}"),
            Step::Wait => f.write_str("waiting for the instances to run"),
            Step::Save => f.write_str("saving the fleet file"),
        }
    }
}

/// What this launch has created so far: what rollback removes.
#[derive(Debug, Default)]
struct Created {
    step: Step,
    key_pair: Option<String>,
    group: Option<String>,
    launch_template: Option<String>,
    /// Instant EC2 Fleets: deleted with the instances.
    fleets: Vec<String>,
    instances: Vec<(Role, String)>,
}

impl Ec2 {
    /// Launches the planned fleet, waits until every instance runs, and
    /// saves the fleet file. On failure nothing this launch created is left.
    pub async fn launch(&self, plan: &FleetPlan, state: &StateDir) -> Result<Fleet, CloudError> {
        let mut created = Created::default();
        let outcome = tokio::select! {
            result = self.launch_steps(plan, state, &mut created) => result,
            () = interrupted() => Err(CloudError::Interrupted),
        };
        let cause = match outcome {
            Ok(fleet) => return Ok(fleet),
            Err(cause) => cause,
        };
        let rollback = self.roll_back(plan, state, &created).await;
        Err(CloudError::LaunchFailed {
            fleet: plan.fleet.to_string(),
            step: created.step.to_string(),
            cause: Box::new(cause),
            rollback,
        })
    }

    async fn launch_steps(
        &self,
        plan: &FleetPlan,
        state: &StateDir,
        created: &mut Created,
    ) -> Result<Fleet, CloudError> {
        created.step = Step::Check;
        self.check_free(plan).await?;
        created.step = Step::Address;
        let cidrs = match &plan.access {
            Access::Cidrs(cidrs) => cidrs.clone(),
            Access::CallerAddress { url } => {
                let cidr = learn_caller_cidr(url).await?;
                progress(format!("allowing {cidr} (this machine, from {url})"));
                vec![cidr]
            }
        };
        created.step = Step::Images;
        let images = self.resolve_images(plan).await?;
        created.step = Step::Network;
        let vpc = self.default_vpc().await?;
        let subnets = self.default_subnets(&vpc).await?;
        created.step = Step::KeyPair;
        let key = self.prepare_key(plan, state, created).await?;
        created.step = Step::Group;
        let group = self.create_security_group(&plan.fleet, &vpc).await?;
        created.group = Some(group.clone());
        self.authorize_fleet_access(&group, &cidrs).await?;
        let allowed: Vec<String> = cidrs.iter().map(ToString::to_string).collect();
        progress(format!(
            "created security group {group}: 22, 80, 8089 from {}; 5557 and 5558 within the group",
            allowed.join(" ")
        ));
        let shared = Shared {
            plan,
            images: &images,
            group: &group,
            key_name: &key.name,
            subnets: &subnets,
            expires_at: crate::expiry::Expiry::from_now(plan.ttl),
        };
        for role in &plan.roles {
            created.step = Step::Launch(role.role);
            self.launch_role(&shared, role, created).await?;
        }
        created.step = Step::Wait;
        let instances = self
            .wait_running(&created.instances, plan.wait_timeout)
            .await?;
        created.step = Step::Save;
        let fleet = Fleet {
            name: plan.fleet.clone(),
            region: self.region.clone(),
            security_group_id: group,
            key,
            instances,
            launch_template_id: created.launch_template.clone(),
        };
        state.save(&fleet)?;
        Ok(fleet)
    }

    /// Refuses to launch over anything already tagged for the fleet: rollback
    /// and destroy remove by tag, so they must only find this launch's work.
    async fn check_free(&self, plan: &FleetPlan) -> Result<(), CloudError> {
        let instances = self.describe(&plan.fleet).await?;
        let resources = self.resources(&plan.fleet).await?;
        if !instances.is_empty() || !resources.is_empty() {
            let mut what = Vec::new();
            if !instances.is_empty() {
                what.push(format!("{} instances", instances.len()));
            }
            if !resources.is_empty() {
                what.push(resources.summary());
            }
            return Err(CloudError::FleetExists {
                fleet: plan.fleet.to_string(),
                region: self.region.clone(),
                what: what.join(", "),
            });
        }
        if let KeyPlan::Existing { name, .. } = &plan.key {
            self.check_key_pair(name).await?;
        }
        Ok(())
    }

    async fn prepare_key(
        &self,
        plan: &FleetPlan,
        state: &StateDir,
        created: &mut Created,
    ) -> Result<FleetKey, CloudError> {
        if let KeyPlan::Existing { name, private_key } = &plan.key {
            return Ok(FleetKey {
                name: name.clone(),
                private_key: private_key.clone(),
                created: false,
            });
        }
        let (name, material) = self.create_key_pair(&plan.fleet).await?;
        created.key_pair = Some(name.clone());
        let path = state.save_private_key(&plan.fleet, &material)?;
        progress(format!(
            "created key pair {name}, private key {}",
            path.display()
        ));
        Ok(FleetKey {
            name,
            private_key: Some(path),
            created: true,
        })
    }

    async fn launch_role(
        &self,
        shared: &Shared<'_>,
        role: &RolePlan,
        created: &mut Created,
    ) -> Result<(), CloudError> {
        let (ids, shortfall) = if role.instance_types.len() == 1 {
            (self.run_spot(shared, role).await?, None)
        } else {
            // Checked before the template exists, so a type no zone offers
            // leaves nothing of this role behind.
            let placements = self
                .placements(role.type_flag(), &role.instance_types, shared.subnets)
                .await?;
            let template = self.create_worker_template(shared, role.role).await?;
            created.launch_template = Some(template.clone());
            let launched = self
                .fleet_spot(shared, role, &template, &placements)
                .await?;
            created.fleets.extend(launched.fleet_id);
            (launched.ids, launched.shortfall)
        };
        created
            .instances
            .extend(ids.iter().map(|id| (role.role, id.clone())));
        if let Some(shortfall) = shortfall {
            return Err(shortfall);
        }
        progress(format!(
            "launched {} × {} ({}): {}",
            role.count,
            role.role,
            role.instance_types.join(","),
            ids.join(" ")
        ));
        Ok(())
    }

    /// Removes what `created` records, plus any instance tagged for the fleet
    /// (check_free saw none before this launch, so those are ours too: a
    /// request whose answer was lost still tagged what it started).
    async fn roll_back(&self, plan: &FleetPlan, state: &StateDir, created: &Created) -> String {
        if !created.step.creates() {
            return "nothing was created".into();
        }
        progress(format!(
            "{} failed; removing what this launch created",
            created.step
        ));
        let known = Known {
            instances: created.instances.iter().map(|(_, id)| id.clone()).collect(),
            security_groups: created.group.iter().cloned().collect(),
            key_pairs: created.key_pair.iter().cloned().collect(),
            launch_templates: created.launch_template.iter().cloned().collect(),
            fleets: created.fleets.clone(),
        };
        let again = format!("run `spotload destroy --fleet {}`", plan.fleet);
        let report = match self.tear_down(&plan.fleet, known, ROLLBACK_WAIT).await {
            Ok(report) => report,
            Err(err) => return format!("rollback failed ({err}); {again}"),
        };
        if report.problems.is_empty() {
            // Also drops a stale fleet file: check_free found that fleet gone.
            match state.forget(&plan.fleet) {
                Ok(_) => format!("rolled back: {}", report.summary()),
                Err(err) => format!("rolled back: {}; but {err}", report.summary()),
            }
        } else {
            format!(
                "rollback incomplete ({}); still there: {}; {again}",
                report.problems.join("; "),
                report.left
            )
        }
    }
}

/// Resolves on SIGINT or SIGTERM (a launch interrupted either way rolls
/// back); never, when the signals can't be watched.
async fn interrupted() {
    let shutdown = swarm::shutdown::Shutdown::new();
    if shutdown.watch_signals().is_err() {
        std::future::pending::<()>().await;
    }
    shutdown.requested().await;
}
