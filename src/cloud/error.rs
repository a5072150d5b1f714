//! [`CloudError`]: what callers of the cloud module match on, and the mapping
//! from the SDK's layered errors to one line that says what to do next.

use std::error::Error as StdError;
use std::path::PathBuf;

use aws_sdk_ec2::error::{ProvideErrorMetadata, SdkError};

use super::Role;

/// Error codes with which AWS says "these credentials are not valid here".
const CREDENTIAL_CODES: &[&str] = &[
    "AuthFailure",
    "InvalidClientTokenId",
    "SignatureDoesNotMatch",
    "ExpiredToken",
    "UnrecognizedClientException",
    "InvalidAccessKeyId",
];

/// Everything that can go wrong talking to EC2 or keeping fleet state.
///
/// Messages are single lines (the CLI prints them as `error: ...`); none of
/// the variants carries a `source`, so a chain printed with `{:#}` does not
/// repeat itself.
#[derive(Debug, thiserror::Error)]
pub enum CloudError {
    #[error("no AWS region is set: pass --region or set AWS_REGION")]
    NoRegion,
    #[error(
        "no AWS credentials found ({detail}): set AWS_ACCESS_KEY_ID and \
         AWS_SECRET_ACCESS_KEY, or pass --profile"
    )]
    NoCredentials { detail: String },
    #[error(
        "AWS rejected the credentials for {action} ({code}: {message}): check \
         AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or --profile"
    )]
    CredentialsRejected {
        action: String,
        code: String,
        message: String,
    },
    #[error(
        "could not reach EC2 at {endpoint} for {action} ({detail}): check \
         --endpoint-url, --region and the network"
    )]
    Unreachable {
        endpoint: String,
        action: String,
        detail: String,
    },
    #[error("{action} failed: {code}: {message}")]
    Api {
        action: String,
        code: String,
        message: String,
    },
    #[error("{action} failed: {detail}")]
    Unexpected { action: String, detail: String },
    #[error(
        "fleet {fleet} already exists in {region} ({what}); run `spotload destroy \
         --fleet {fleet}` first or pick another --fleet"
    )]
    FleetExists {
        fleet: String,
        region: String,
        what: String,
    },
    #[error(
        "key pair {name} does not exist in {region}: import it there first, or \
         omit --key-name and spotload creates one for the fleet"
    )]
    KeyPairMissing { name: String, region: String },
    #[error(
        "no default VPC in {region}: spotload launches into the default VPC; \
         create one with `aws ec2 create-default-vpc --region {region}`"
    )]
    NoDefaultVpc { region: String },
    #[error(
        "could not learn this machine's public address from {url} ({detail}); pass \
         --allow-cidr with the addresses that may reach ports 22, 80 and 8089, \
         e.g. --allow-cidr 203.0.113.7/32"
    )]
    PublicAddressUnknown { url: String, detail: String },
    #[error("{role} instance {id} was lost while booting: it is {state}{reason}")]
    InstanceLost {
        role: Role,
        id: String,
        state: String,
        reason: String,
    },
    #[error(
        "EC2 Fleet launched {launched} of {wanted} {role}s ({reasons}); try more \
         --worker-type choices, fewer --workers or a higher --max-price"
    )]
    Shortfall {
        role: Role,
        launched: usize,
        wanted: usize,
        reasons: String,
    },
    #[error("timed out after {limit} waiting for {what}; still waiting for {pending}")]
    Timeout {
        what: String,
        limit: String,
        pending: String,
    },
    #[error("could not {what} {path}: {error}")]
    State {
        what: &'static str,
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("interrupted by Ctrl-C")]
    Interrupted,
    #[error("launch of fleet {fleet} failed while {step}: {cause}; {rollback}")]
    LaunchFailed {
        fleet: String,
        step: String,
        cause: Box<CloudError>,
        rollback: String,
    },
    #[error(
        "destroy of fleet {fleet} is incomplete: {problems}; run `spotload destroy \
         --fleet {fleet}` again"
    )]
    Incomplete { fleet: String, problems: String },
}

impl CloudError {
    /// The AWS error code, when the service answered with one.
    pub fn code(&self) -> Option<&str> {
        match self {
            CloudError::Api { code, .. } | CloudError::CredentialsRejected { code, .. } => {
                Some(code)
            }
            _ => None,
        }
    }
}

/// Maps an SDK error for `action` (an API name plus the input that matters)
/// to a [`CloudError`]; `endpoint` is named when the endpoint can't be reached.
pub(crate) fn from_sdk<E, R>(endpoint: &str, action: String, err: SdkError<E, R>) -> CloudError
where
    E: ProvideErrorMetadata + StdError + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    match &err {
        SdkError::ServiceError(service) => {
            let inner = service.err();
            let code = inner.code().unwrap_or("UnknownError").to_string();
            let message = one_line(inner.message().unwrap_or("no message"));
            if CREDENTIAL_CODES.contains(&code.as_str()) {
                CloudError::CredentialsRejected {
                    action,
                    code,
                    message,
                }
            } else {
                CloudError::Api {
                    action,
                    code,
                    message,
                }
            }
        }
        SdkError::DispatchFailure(failure) if failure.is_io() || failure.is_timeout() => {
            CloudError::Unreachable {
                endpoint: endpoint.to_string(),
                action,
                detail: root_cause(&err),
            }
        }
        SdkError::TimeoutError(_) => CloudError::Unreachable {
            endpoint: endpoint.to_string(),
            action,
            detail: "no answer in time".into(),
        },
        _ => CloudError::Unexpected {
            detail: root_cause(&err),
            action,
        },
    }
}

/// The innermost error's message: the SDK's outer layers ("dispatch failure",
/// "io error") add words but no information.
pub(crate) fn root_cause(err: &(dyn StdError + 'static)) -> String {
    let mut current = err;
    while let Some(next) = current.source() {
        current = next;
    }
    one_line(&current.to_string())
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}
