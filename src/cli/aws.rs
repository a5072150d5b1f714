//! Options every cloud command shares (`--fleet`, `--region`, `--profile`,
//! `--endpoint-url`, `--state-dir`), flattened into each command's `Args`,
//! and the small bits of glue from them to a connected [`Ec2`].

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::Args;

use crate::cloud::{Connection, Ec2, FleetName, StateDir};

#[derive(Debug, Clone, Args)]
pub struct AwsArgs {
    /// Fleet name: every resource is tagged spotload:fleet=NAME.
    #[arg(long, default_value = "spotload", env = "SPOTLOAD_FLEET")]
    pub fleet: String,
    /// AWS region [default: from AWS_REGION or the profile].
    #[arg(long)]
    pub region: Option<String>,
    /// Named profile from ~/.aws/config and ~/.aws/credentials.
    #[arg(long)]
    pub profile: Option<String>,
    /// An EC2-compatible endpoint (e.g. a moto server) for EC2 and SSM
    /// calls [default: from AWS_ENDPOINT_URL, else AWS itself].
    #[arg(long, value_name = "URL")]
    pub endpoint_url: Option<String>,
    /// Where fleet files and created private keys are kept, one directory
    /// per fleet [default: ~/.local/state/spotload].
    #[arg(long, value_name = "DIR", env = "SPOTLOAD_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
}

impl AwsArgs {
    /// The validated fleet name.
    pub fn fleet_name(&self) -> anyhow::Result<FleetName> {
        Ok(FleetName::parse(&self.fleet)?)
    }

    pub fn state(&self) -> anyhow::Result<StateDir> {
        match &self.state_dir {
            Some(dir) => Ok(StateDir::new(dir)),
            None => StateDir::default_root().map(StateDir::new).context(
                "no state directory: HOME is not set; pass --state-dir or set SPOTLOAD_STATE_DIR",
            ),
        }
    }

    /// Loads the AWS configuration; fails early on a malformed endpoint URL.
    pub async fn connect(&self) -> anyhow::Result<Ec2> {
        if let Some(url) = &self.endpoint_url {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                bail!("--endpoint-url {url:?}: give a URL like http://127.0.0.1:5000");
            }
        }
        let connection = Connection {
            region: self.region.clone(),
            profile: self.profile.clone(),
            endpoint_url: self.endpoint_url.clone(),
        };
        Ok(Ec2::connect(&connection).await?)
    }
}
