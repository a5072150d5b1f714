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
    /// Neither `--region` nor the AWS config names a region.
    #[error("no AWS region is set: pass --region or set AWS_REGION")]
    NoRegion,
    /// The credential chain found nothing usable.
    #[error(
        "no AWS credentials found ({detail}): set AWS_ACCESS_KEY_ID and \
         AWS_SECRET_ACCESS_KEY, or pass --profile"
    )]
    NoCredentials {
        /// Why the chain came up empty, shortened to one line.
        detail: String,
    },
    /// AWS answered, but refused the credentials (one of the auth error codes).
    #[error(
        "AWS rejected the credentials for {action} ({code}: {message}): check \
         AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or --profile"
    )]
    CredentialsRejected {
        /// The API call and the input that matters, e.g. `DescribeInstances for fleet x`.
        action: String,
        /// AWS's error code, e.g. `AuthFailure` or `ExpiredToken`.
        code: String,
        /// AWS's message, on one line.
        message: String,
    },
    /// No answer from the endpoint: connection failed or timed out.
    #[error(
        "could not reach EC2 at {endpoint} for {action} ({detail}): check \
         --endpoint-url, --region and the network"
    )]
    Unreachable {
        /// `--endpoint-url`, or "the AWS endpoint for REGION".
        endpoint: String,
        /// The API call and the input that matters.
        action: String,
        /// The innermost cause (refused, DNS, timeout...).
        detail: String,
    },
    /// Any other error code EC2 answered with.
    #[error("{action} failed: {code}: {message}")]
    Api {
        /// The API call and the input that matters.
        action: String,
        /// AWS's error code, e.g. `InsufficientInstanceCapacity`; see [`CloudError::code`].
        code: String,
        /// AWS's message, on one line.
        message: String,
    },
    /// A call failed without an AWS error code, or answered without what
    /// spotload needs (an image's architecture, a parameter's value...).
    #[error("{action} failed: {detail}")]
    Unexpected {
        /// The API call and the input that matters.
        action: String,
        /// What went wrong, with the fix when there is one.
        detail: String,
    },
    /// Something is already tagged for the fleet, so launching it would mix
    /// two launches under one tag.
    #[error(
        "fleet {fleet} already exists in {region} ({what}); run `spotload destroy \
         --fleet {fleet}` first or pick another --fleet"
    )]
    FleetExists {
        /// The fleet's name (its `spotload:fleet` tag).
        fleet: String,
        /// Where the tagged resources were found.
        region: String,
        /// What was found, e.g. `3 instances, 1 security group`.
        what: String,
    },
    /// `--key-name` names a key pair the region does not have.
    #[error(
        "key pair {name} does not exist in {region}: import it there first, or \
         omit --key-name and spotload creates one for the fleet"
    )]
    KeyPairMissing {
        /// The EC2 key pair name.
        name: String,
        /// The region that was searched.
        region: String,
    },
    /// The region has no default VPC to launch into.
    #[error(
        "no default VPC in {region}: spotload launches into the default VPC; \
         create one with `aws ec2 create-default-vpc --region {region}`"
    )]
    NoDefaultVpc {
        /// The region without one.
        region: String,
    },
    /// `--allow-cidr` was left to default, and this machine's public address
    /// could not be learned.
    #[error(
        "could not learn this machine's public address from {url} ({detail}); pass \
         --allow-cidr with the addresses that may reach ports 22, 80 and 8089, \
         e.g. --allow-cidr 203.0.113.7/32"
    )]
    PublicAddressUnknown {
        /// The echo service asked (`--public-ip-url`).
        url: String,
        /// Why asking failed: no answer, an HTTP error, or not an address.
        detail: String,
    },
    /// An instance stopped or terminated before it ran, e.g. a spot
    /// interruption or capacity withdrawn during boot.
    #[error("{role} instance {id} was lost while booting: it is {state}{reason}")]
    InstanceLost {
        /// The role the instance was launched for.
        role: Role,
        /// The EC2 instance id (`i-...`).
        id: String,
        /// The instance state it reached, e.g. `terminated`.
        state: String,
        /// EC2's state reason as ` (REASON)`, or empty when it gave none.
        reason: String,
    },
    /// An instant EC2 Fleet launched fewer instances than asked for.
    #[error(
        "EC2 Fleet launched {launched} of {wanted} {role}s ({reasons}); try more \
         --worker-type choices, fewer --workers or a higher --max-price"
    )]
    Shortfall {
        /// The role short of instances: the one launched with several types.
        role: Role,
        /// How many instances the fleet did launch.
        launched: usize,
        /// How many were asked for.
        wanted: usize,
        /// EC2 Fleet's `CODE: message` per error, joined with `; `.
        reasons: String,
    },
    /// A wait for instances to run (with addresses) or to terminate ran past
    /// its limit.
    #[error("timed out after {limit} waiting for {what}; still waiting for {pending}")]
    Timeout {
        /// What was awaited, e.g. "3 instances to run".
        what: String,
        /// The limit, in the duration grammar, e.g. `10m`.
        limit: String,
        /// The instances still not ready, each with what it lacks.
        pending: String,
    },
    /// Reading or writing the local state directory failed.
    #[error("could not {what} {path}: {error}")]
    State {
        /// The failed operation as a verb phrase, e.g. "write the fleet file".
        what: &'static str,
        /// The file or directory it was done to.
        path: PathBuf,
        /// The I/O error (not a `source`, so a chain does not repeat it).
        error: std::io::Error,
    },
    /// Ctrl-C arrived during a launch; what it created is rolled back.
    #[error("interrupted by Ctrl-C")]
    Interrupted,
    /// A launch failed and was rolled back (or tried to be).
    #[error("launch of fleet {fleet} failed while {step}: {cause}; {rollback}")]
    LaunchFailed {
        /// The fleet being launched.
        fleet: String,
        /// The step that failed, e.g. "creating the security group".
        step: String,
        /// Why that step failed.
        cause: Box<CloudError>,
        /// What the rollback did: "nothing was created", "rolled back: ...", or
        /// what is left and the `spotload destroy` to run.
        rollback: String,
    },
    /// `destroy` could not remove everything; running it again is safe.
    #[error(
        "destroy of fleet {fleet} is incomplete: {problems}; run `spotload destroy \
         --fleet {fleet}` again"
    )]
    Incomplete {
        /// The fleet being destroyed.
        fleet: String,
        /// Each removal that failed, joined with `; `.
        problems: String,
    },
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
