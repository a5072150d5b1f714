//! `spotload launch`: start a spot fleet (webserver, master, workers), wait
//! until every instance runs, and print where everything is.

use std::process::ExitCode;
use std::time::Duration;

use clap::Args;

use super::aws::AwsArgs;
use super::status::{instance_table, unix_now};
use crate::cloud::plan::{format_duration, LaunchFlags, DEFAULT_PUBLIC_IP_URL};
use crate::cloud::{Fleet, FleetPlan, Role};

/// Launch a spot fleet: 1 webserver, 1 master and N workers, each role its
/// own size, in one security group, with a self-destruct timer. A failed
/// launch removes whatever it created.
#[derive(Debug, Args)]
pub struct LaunchArgs {
    /// Which fleet, and how to reach AWS.
    #[command(flatten)]
    pub aws: AwsArgs,
    /// Number of worker instances.
    #[arg(long, default_value_t = 2)]
    pub workers: u32,
    /// Worker instance type, or a comma list for an instant EC2 Fleet to
    /// choose among (price-capacity-optimized).
    #[arg(long, default_value = "t3.medium", value_name = "TYPE[,TYPE...]")]
    pub worker_type: String,
    /// Master instance type (swarm web UI on 8089, workers join on 5557).
    #[arg(long, default_value = "t3.small", value_name = "TYPE")]
    pub master_type: String,
    /// Webserver instance type (Nginx, the system under test).
    #[arg(long, default_value = "t3.small", value_name = "TYPE")]
    pub webserver_type: String,
    /// AMI for every instance [default: the latest Amazon Linux 2023 for
    /// each type's architecture, from the public SSM parameter].
    #[arg(long, value_name = "AMI_ID")]
    pub ami: Option<String>,
    /// An existing EC2 key pair [default: create spotload-FLEET and save its
    /// private key, mode 0600, in the state directory].
    #[arg(long, value_name = "NAME")]
    pub key_name: Option<String>,
    /// The private key file of --key-name, recorded for deploy.
    #[arg(long, value_name = "PATH")]
    pub key_file: Option<std::path::PathBuf>,
    /// Who may reach ports 22, 80 and 8089; repeat or comma-separate
    /// [default: this machine's public address, from --public-ip-url].
    #[arg(long, value_name = "CIDR")]
    pub allow_cidr: Vec<String>,
    /// A service answering with this machine's public address as plain text.
    #[arg(long, value_name = "URL", default_value = DEFAULT_PUBLIC_IP_URL, env = "SPOTLOAD_PUBLIC_IP_URL")]
    pub public_ip_url: String,
    /// Highest spot price in USD per instance-hour [default: the on-demand
    /// price].
    #[arg(long, value_name = "USD")]
    pub max_price: Option<String>,
    /// Self-destruct timer: each instance powers off, and so terminates,
    /// this long after boot (e.g. 90m, 2h, 1h30m; at most 7d).
    #[arg(long, default_value = "2h", value_name = "DURATION")]
    pub ttl: String,
    /// How long to wait for every instance to run before rolling back.
    #[arg(long, default_value = "10m", value_name = "DURATION")]
    pub wait_timeout: String,
}

impl LaunchArgs {
    /// Launches the fleet and prints its instances, the master's UI address and
    /// the self-destruct time.
    pub async fn run(self) -> anyhow::Result<ExitCode> {
        let plan = FleetPlan::from_flags(&self.flags())?;
        let state = self.aws.state()?;
        let ec2 = self.aws.connect().await?;
        eprintln!(
            "launching fleet {} in {}: {}",
            plan.fleet,
            ec2.region(),
            describe_plan(&plan)
        );
        let fleet = ec2.launch(&plan, &state).await?;
        print_fleet(&fleet, plan.ttl);
        Ok(ExitCode::SUCCESS)
    }

    /// The raw launch flags, validated later into a `FleetPlan` (deploy
    /// reuses them when it has to launch).
    pub fn flags(&self) -> LaunchFlags {
        LaunchFlags {
            fleet: self.aws.fleet.clone(),
            workers: self.workers,
            worker_type: self.worker_type.clone(),
            master_type: self.master_type.clone(),
            webserver_type: self.webserver_type.clone(),
            ami: self.ami.clone(),
            key_name: self.key_name.clone(),
            key_file: self.key_file.clone(),
            allow_cidr: self.allow_cidr.clone(),
            public_ip_url: self.public_ip_url.clone(),
            max_price: self.max_price.clone(),
            ttl: self.ttl.clone(),
            wait_timeout: self.wait_timeout.clone(),
        }
    }
}

/// "1 webserver (t3.small), 1 master (t3.small), 3 workers (c5.large,c6i.large); ttl 2h"
fn describe_plan(plan: &FleetPlan) -> String {
    let roles: Vec<String> = plan
        .roles
        .iter()
        .map(|r| {
            let plural = if r.count == 1 { "" } else { "s" };
            format!(
                "{} {}{plural} ({})",
                r.count,
                r.role,
                r.instance_types.join(",")
            )
        })
        .collect();
    format!(
        "{}; self-destruct after {}",
        roles.join(", "),
        format_duration(plan.ttl)
    )
}

fn print_fleet(fleet: &Fleet, ttl: Duration) {
    println!(
        "fleet {} is up in {}: security group {}, key pair {}",
        fleet.name, fleet.region, fleet.security_group_id, fleet.key.name
    );
    print!("{}", instance_table(&fleet.instances, None, unix_now()));
    if let Some(key) = &fleet.key.private_key {
        println!("private key: {}", key.display());
    }
    let no_public: Vec<&str> = fleet
        .instances
        .iter()
        .filter(|i| i.public_ip.is_none())
        .map(|i| i.id.as_str())
        .collect();
    if !no_public.is_empty() {
        println!(
            "note: no public address on {}; reach them from inside the VPC",
            no_public.join(" ")
        );
    }
    if let Some(master) = fleet.with_role(Role::Master).next() {
        if let Some(ip) = master.public_ip {
            println!("master web UI (after deploy): https://{ip}:8089");
        }
    }
    println!(
        "self-destruct: every instance powers off and terminates {} after boot",
        format_duration(ttl)
    );
    println!(
        "next: spotload status --fleet {0}; spotload destroy --fleet {0}",
        fleet.name
    );
}
