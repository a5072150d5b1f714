//! EC2 spot fleets: plan, launch, wait, describe, destroy.
//!
//! Everything here talks to EC2 (and SSM for the default AMI) through one thin
//! wrapper, [`Ec2`]. The operations a command needs are its methods:
//! [`Ec2::launch`] turns a validated [`FleetPlan`] into a running [`Fleet`],
//! [`Ec2::describe`] lists a fleet's instances from tags alone, and
//! [`Ec2::destroy`] removes everything tagged for a fleet. Failures are
//! [`CloudError`]s whose messages say what failed, with which input, and what
//! to do next.
//!
//! - `plan`: command-line values validated into a [`FleetPlan`] before any I/O.
//! - `fleet`: the domain types ([`FleetName`], [`Role`], [`Instance`], [`Fleet`]).
//! - `access`: who may reach the fleet (security group, key pair, caller address).
//! - `image`: the AMI for each instance type's architecture.
//! - `launch`, `spot`, `wait`, `describe`, `destroy`, `cost`: the operations.
//! - `state`: the fleet file and private key in the state directory.
//! - `userdata`: the boot script that ends a forgotten fleet.
//! - `error`: [`CloudError`] and the mapping from SDK errors.

mod access;
pub mod cost;
mod describe;
mod destroy;
mod error;
mod fleet;
mod image;
mod launch;
pub mod plan;
mod spot;
pub mod state;
pub mod userdata;
mod wait;

use std::time::Duration;

use aws_config::{timeout::TimeoutConfig, BehaviorVersion, Region};
use aws_credential_types::provider::ProvideCredentials;
use aws_sdk_ec2::error::SdkError;

use error::{SdkFault, SdkRaw};

pub use crate::role::Role;
pub use destroy::DestroyReport;
pub use error::CloudError;
pub use fleet::{Fleet, FleetKey, FleetName, Instance, TAG_FLEET, TAG_ROLE};
pub use plan::FleetPlan;
pub use state::StateDir;

/// Where and as whom to talk to EC2. Unset fields fall back to the SDK's
/// usual sources (`AWS_*` environment variables, `~/.aws/config`).
#[derive(Debug, Clone, Default)]
pub struct Connection {
    /// Region, e.g. `us-east-1`.
    pub region: Option<String>,
    /// Named profile from the shared AWS config files.
    pub profile: Option<String>,
    /// An EC2-compatible endpoint (moto, LocalStack) used for EC2 and SSM.
    pub endpoint_url: Option<String>,
}

/// The SDK clients for one region, plus what error messages need to name.
#[derive(Debug, Clone)]
pub struct Ec2 {
    ec2: aws_sdk_ec2::Client,
    ssm: aws_sdk_ssm::Client,
    region: String,
    /// Named in "could not reach ..." errors so the user knows what to check.
    endpoint: String,
}

/// A stuck TCP connect fails after this long instead of hanging a command.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// One API call attempt; the SDK retries transient failures within its budget.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(60);

impl Ec2 {
    /// Loads the AWS configuration and checks that credentials can be found,
    /// so a missing key fails here with one clear line, before any API call.
    pub async fn connect(conn: &Connection) -> Result<Ec2, CloudError> {
        let mut loader = aws_config::defaults(BehaviorVersion::latest()).timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(CONNECT_TIMEOUT)
                .operation_attempt_timeout(ATTEMPT_TIMEOUT)
                .build(),
        );
        if let Some(profile) = &conn.profile {
            loader = loader.profile_name(profile);
        }
        if let Some(region) = &conn.region {
            loader = loader.region(Region::new(region.clone()));
        }
        if let Some(url) = &conn.endpoint_url {
            loader = loader.endpoint_url(url);
        }
        let config = loader.load().await;
        let region = config
            .region()
            .map(std::string::ToString::to_string)
            .ok_or(CloudError::NoRegion)?;
        let provider = config
            .credentials_provider()
            .ok_or_else(|| CloudError::NoCredentials {
                detail: "no credentials provider is configured".into(),
            })?;
        if let Err(err) = provider.provide_credentials().await {
            let detail = error::root_cause(&err);
            // The chain's own message lists every provider it tried: too long
            // for one line, and the fix is the same whichever it was.
            let detail = if detail.starts_with("no credentials found in chain") {
                "none in the environment, the shared config files, or instance metadata".into()
            } else {
                detail
            };
            return Err(CloudError::NoCredentials { detail });
        }
        let endpoint = match &conn.endpoint_url {
            Some(url) => url.clone(),
            None => format!("the AWS endpoint for {region}"),
        };
        Ok(Ec2 {
            ec2: aws_sdk_ec2::Client::new(&config),
            ssm: aws_sdk_ssm::Client::new(&config),
            region,
            endpoint,
        })
    }

    /// The region every call goes to.
    pub fn region(&self) -> &str {
        &self.region
    }

    /// Maps an SDK error for `action` (API name and the input that matters)
    /// of a call for the whole fleet or the account.
    pub(crate) fn sdk_error<E: SdkFault, R: SdkRaw>(
        &self,
        action: impl Into<String>,
        err: SdkError<E, R>,
    ) -> CloudError {
        error::from_sdk(&self.endpoint, action.into(), None, err)
    }

    /// Maps an SDK error for `action`, a call made for `role` (its
    /// instances, its launch template): the error carries the role, and its
    /// advice names that role's type flag.
    pub(crate) fn role_sdk_error<E: SdkFault, R: SdkRaw>(
        &self,
        role: Role,
        action: impl Into<String>,
        err: SdkError<E, R>,
    ) -> CloudError {
        error::from_sdk(&self.endpoint, action.into(), Some(role), err)
    }

    /// The raw EC2 client, for callers that need an operation not wrapped here.
    pub fn client(&self) -> &aws_sdk_ec2::Client {
        &self.ec2
    }
}

/// Progress for the person at the terminal: stderr, so stdout stays the result.
pub(crate) fn progress(message: impl std::fmt::Display) {
    eprintln!("{message}");
}
