//! [`CloudError`]: what callers of the cloud module match on, and the mapping
//! from the SDK's layered errors to one line that says what to do next.

use std::error::Error as StdError;
use std::path::PathBuf;

use aws_sdk_ec2::error::{ProvideErrorMetadata, SdkError};

use super::plan::type_flag;
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
        /// The role the call was made for (its instances, its template);
        /// `None` for calls about the whole fleet or the account.
        role: Option<Role>,
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
        /// The role the call was made for (its instances, its template);
        /// `None` for calls about the whole fleet or the account.
        role: Option<Role>,
        /// The innermost cause (refused, DNS, timeout...).
        detail: String,
    },
    /// Any other error code EC2 answered with.
    #[error("{action} failed: {code}: {message}")]
    Api {
        /// The API call and the input that matters.
        action: String,
        /// The role the call was made for (its instances, its template);
        /// `None` for calls about the whole fleet or the account.
        role: Option<Role>,
        /// AWS's error code, e.g. `InsufficientInstanceCapacity`; see [`CloudError::code`].
        code: String,
        /// AWS's message, on one line.
        message: String,
    },
    /// EC2 refused a call for a reason with a known remedy (a quota, the
    /// spot service-linked role, capacity, a price cap, a missing
    /// permission): what happened, and the command or setting that fixes it.
    #[error("{action} failed: {code}: {what}; {fix}")]
    Fixable {
        /// The API call and the input that matters.
        action: String,
        /// The role the call was made for (its instances, its template);
        /// `None` for calls about the whole fleet or the account.
        role: Option<Role>,
        /// AWS's error code, e.g. `MaxSpotInstanceCountExceeded`.
        code: String,
        /// What happened, on one line (AWS's message, or ours where AWS's
        /// is an encoded blob).
        what: String,
        /// The command or flag that fixes it.
        fix: String,
    },
    /// A role's instance types mix architectures: one AMI and one
    /// `loadtest` binary cannot serve both, so nothing is launched.
    #[error(
        "{flag} {types} mixes architectures ({detail}): a role's types must share \
         one architecture; list only x86_64 types or only arm64 (Graviton) types"
    )]
    MixedArchitectures {
        /// `--worker-type`, `--master-type` or `--webserver-type`.
        flag: &'static str,
        /// The role's types as given, comma-separated.
        types: String,
        /// Each architecture with its types, e.g. `x86_64: c5.large; arm64: c7g.large`.
        detail: String,
    },
    /// A listed instance type is offered in none of the default VPC's zones.
    #[error(
        "{flag}: {instance_type} is not offered in any zone of {region}'s default VPC \
         ({zones}); drop it from {flag} or pick a type the region offers \
         (`aws ec2 describe-instance-type-offerings --location-type availability-zone \
         --filters Name=instance-type,Values={instance_type} --region {region}`)"
    )]
    TypeNotOffered {
        /// `--worker-type`, `--master-type` or `--webserver-type`.
        flag: &'static str,
        /// The type no zone offers.
        instance_type: String,
        /// The region searched.
        region: String,
        /// The zones of the default subnets, space-separated.
        zones: String,
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
    #[error("EC2 Fleet launched {launched} of {wanted} {role}s ({reasons}); {fix}")]
    Shortfall {
        /// The role short of instances: the one launched with several types.
        role: Role,
        /// How many instances the fleet did launch.
        launched: usize,
        /// How many were asked for.
        wanted: usize,
        /// EC2 Fleet's `CODE: message` per error, joined with `; `.
        reasons: String,
        /// The remedy for the first error code that has one, else the
        /// general one (more types, fewer workers, a higher price cap).
        fix: String,
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
        "destroy of fleet {fleet} is incomplete: {problems}; still there: {left}; run \
         `spotload destroy --fleet {fleet}` again"
    )]
    Incomplete {
        /// The fleet being destroyed.
        fleet: String,
        /// Each removal that failed, joined with `; `.
        problems: String,
        /// What is still there, by id (instances with their state, the
        /// security group, ...).
        left: String,
    },
}

impl CloudError {
    /// The AWS error code, when the service answered with one.
    pub fn code(&self) -> Option<&str> {
        match self {
            CloudError::Api { code, .. }
            | CloudError::Fixable { code, .. }
            | CloudError::CredentialsRejected { code, .. } => Some(code),
            _ => None,
        }
    }

    /// The role whose call or instances failed, when the error is about one.
    pub fn role(&self) -> Option<Role> {
        match self {
            CloudError::CredentialsRejected { role, .. }
            | CloudError::Unreachable { role, .. }
            | CloudError::Api { role, .. }
            | CloudError::Fixable { role, .. } => *role,
            CloudError::InstanceLost { role, .. } | CloudError::Shortfall { role, .. } => {
                Some(*role)
            }
            _ => None,
        }
    }
}

/// An SDK operation's error: AWS's code and message, as an error.
pub(crate) trait SdkFault: ProvideErrorMetadata + StdError + Send + Sync + 'static {}
impl<E: ProvideErrorMetadata + StdError + Send + Sync + 'static> SdkFault for E {}

/// The raw response an [`SdkError`] keeps (only shown, never read).
pub(crate) trait SdkRaw: std::fmt::Debug + Send + Sync + 'static {}
impl<R: std::fmt::Debug + Send + Sync + 'static> SdkRaw for R {}

/// Maps an SDK error for `action` (an API name plus the input that matters),
/// made for `role` when it was one role's call, to a [`CloudError`];
/// `endpoint` is named when the endpoint can't be reached.
pub(crate) fn from_sdk<E: SdkFault, R: SdkRaw>(
    endpoint: &str,
    action: String,
    role: Option<Role>,
    err: SdkError<E, R>,
) -> CloudError {
    match &err {
        SdkError::ServiceError(service) => {
            let inner = service.err();
            let code = inner.code().unwrap_or("UnknownError").to_string();
            let message = one_line(inner.message().unwrap_or("no message"));
            if CREDENTIAL_CODES.contains(&code.as_str()) {
                CloudError::CredentialsRejected {
                    action,
                    role,
                    code,
                    message,
                }
            } else if let Some(Remedy { what, fix }) = remedy(&code, &message, &action, role) {
                CloudError::Fixable {
                    action,
                    role,
                    code,
                    what,
                    fix,
                }
            } else {
                CloudError::Api {
                    action,
                    role,
                    code,
                    message,
                }
            }
        }
        SdkError::DispatchFailure(failure) if failure.is_io() || failure.is_timeout() => {
            CloudError::Unreachable {
                endpoint: endpoint.to_string(),
                action,
                role,
                detail: root_cause(&err),
            }
        }
        SdkError::TimeoutError(_) => CloudError::Unreachable {
            endpoint: endpoint.to_string(),
            action,
            role,
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

/// What happened and what fixes it, for an error code with a known remedy.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Remedy {
    /// One line: what happened.
    pub what: String,
    /// The command or setting that fixes it.
    pub fix: String,
}

/// The Service Quotas code of "All Standard (A, C, D, H, I, M, R, T, Z) Spot
/// Instance Requests", the vCPU quota most spot launches count against.
pub(crate) const SPOT_QUOTA_CODE: &str = "L-34B43A08";

/// The remedy for EC2 error `code` (with its `message`) on `action`, made
/// for `role` when it was one role's call, when spotload knows one; `None`
/// leaves the error as AWS worded it. The advice names `role`'s type flag;
/// a call for no role gets `--worker-type`'s, the flag most launches turn.
pub(crate) fn remedy(
    code: &str,
    message: &str,
    action: &str,
    role: Option<Role>,
) -> Option<Remedy> {
    let flag = type_flag(role.unwrap_or(Role::Worker));
    // AWS's sentences end in a full stop; the fix follows after a `;`.
    let aws = |fix: String| {
        Some(Remedy {
            what: message.trim_end_matches('.').to_string(),
            fix,
        })
    };
    let quota = format!(
        "raise the account's spot vCPU quota \"All Standard (A, C, D, H, I, M, R, T, Z) Spot \
         Instance Requests\" on the Service Quotas console page for EC2, or with `aws \
         service-quotas request-service-quota-increase --service-code ec2 --quota-code \
         {SPOT_QUOTA_CODE} --desired-value VCPUS` (new accounts start low; other families \
         have their own quota), or launch fewer or smaller instances (--workers, {flag})"
    );
    match code {
        "AuthFailure.ServiceLinkedRoleCreationNotPermitted" => Some(Remedy {
            what: "the spot service-linked role AWSServiceRoleForEC2Spot does not exist and \
                   these credentials may not create it"
                .into(),
            fix: "create it once for the account with `aws iam create-service-linked-role \
                  --aws-service-name spot.amazonaws.com` (or allow iam:CreateServiceLinkedRole \
                  for spot.amazonaws.com, see docs/iam-policy.json), then launch again"
                .into(),
        }),
        "MaxSpotInstanceCountExceeded" | "VcpuLimitExceeded" | "InstanceLimitExceeded" => {
            aws(quota)
        }
        "InsufficientInstanceCapacity" | "InsufficientCapacity" | "UnfulfillableCapacity" => {
            let choose = if action.starts_with("CreateFleet") {
                "add more similar types to the --worker-type list (e.g. c5.large,c6i.large,\
                 m5.large,m6i.large): the fleet takes whichever has capacity in any zone"
                    .to_string()
            } else if flag == "--worker-type" {
                "give --worker-type a list of similar types (e.g. c5.large,c6i.large,m5.large): \
                 spotload spreads them over every zone that offers them"
                    .to_string()
            } else {
                format!("pick another {flag} (another size or family)")
            };
            aws(format!(
                "EC2 has no spare spot capacity for this type now: {choose}, or retry in a few \
                 minutes or in another --region"
            ))
        }
        "SpotMaxPriceTooLow" => aws("raise --max-price above the current spot price (`aws ec2 \
             describe-spot-price-history --instance-types TYPE --product-descriptions \
             Linux/UNIX`), or leave --max-price out to cap at the on-demand price"
            .into()),
        "InvalidParameterCombination" | "Unsupported"
            if message.contains("Availability Zone") || message.contains("not supported") =>
        {
            aws(format!(
                "the instance type is not offered in the zone EC2 chose: pick another {flag}; \
                 a --worker-type list is placed only in zones that offer each type"
            ))
        }
        "UnauthorizedOperation" | "AccessDenied" | "AccessDeniedException" => {
            let api = action.split_whitespace().next().unwrap_or(action);
            let decode = match encoded_authorization_message(message) {
                Some(encoded) => format!(
                    "; to see which policy statement refused it, run `aws sts \
                     decode-authorization-message --encoded-message {encoded} --query \
                     DecodedMessage --output text`"
                ),
                None => String::new(),
            };
            Some(Remedy {
                what: format!("these credentials are not allowed to call {api}"),
                fix: format!(
                    "attach the IAM policy in docs/iam-policy.json to this \
                     user or role{decode}"
                ),
            })
        }
        _ => None,
    }
}

/// The blob after "Encoded authorization failure message:" in an
/// `UnauthorizedOperation` message.
fn encoded_authorization_message(message: &str) -> Option<&str> {
    let (_, rest) = message.split_once("Encoded authorization failure message:")?;
    rest.split_whitespace()
        .next()
        .filter(|blob| !blob.is_empty())
}

/// The fix for an EC2 Fleet that launched too few: the remedy of the first
/// error code that has one, else the general advice.
pub(crate) fn shortfall_fix(codes: &[(&str, &str)]) -> String {
    codes
        .iter()
        .find_map(|(code, message)| {
            remedy(code, message, "CreateFleet (worker)", Some(Role::Worker))
        })
        .map(|r| r.fix)
        .unwrap_or_else(|| {
            "try more --worker-type choices, fewer --workers or a higher --max-price".into()
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_known_code_names_its_fix() {
        let action = "RunInstances (2 × c5.large worker, ami-1)";
        let cases = [
            (
                "AuthFailure.ServiceLinkedRoleCreationNotPermitted",
                "aws iam create-service-linked-role --aws-service-name spot.amazonaws.com",
            ),
            ("MaxSpotInstanceCountExceeded", SPOT_QUOTA_CODE),
            ("VcpuLimitExceeded", "Service Quotas"),
            ("InsufficientInstanceCapacity", "--worker-type"),
            ("SpotMaxPriceTooLow", "--max-price"),
            ("UnauthorizedOperation", "docs/iam-policy.json"),
        ];
        for (code, fix) in cases {
            let remedy =
                remedy(code, "m", action, Some(Role::Worker)).unwrap_or_else(|| panic!("{code}"));
            assert!(remedy.fix.contains(fix), "{code}: {}", remedy.fix);
        }
        let zone = "Your requested instance type (c5.large) is not supported in your requested \
                    Availability Zone (us-east-1e).";
        let fix = remedy(
            "InvalidParameterCombination",
            zone,
            action,
            Some(Role::Worker),
        )
        .unwrap()
        .fix;
        assert!(fix.contains("--worker-type"), "{fix}");
        assert!(remedy(
            "InvalidParameterCombination",
            "other",
            action,
            Some(Role::Worker)
        )
        .is_none());
        let master = remedy(
            "InsufficientInstanceCapacity",
            "m",
            "RunInstances (1 × t3.small master)",
            Some(Role::Master),
        );
        assert!(master.unwrap().fix.contains("--master-type"));
    }

    #[test]
    fn the_advice_names_the_role_the_call_was_for_not_a_word_in_it() {
        // A fleet's name is free text: a worker template of fleet
        // `webserver-test` names the webserver but is not one.
        let action = "CreateLaunchTemplate (spotload-webserver-test-worker)";
        let worker = remedy(
            "InsufficientInstanceCapacity",
            "m",
            action,
            Some(Role::Worker),
        );
        assert!(worker.unwrap().fix.contains("--worker-type"));
        let webserver = remedy(
            "InsufficientInstanceCapacity",
            "m",
            "RunInstances (x)",
            Some(Role::Webserver),
        );
        assert!(webserver.unwrap().fix.contains("--webserver-type"));
    }

    #[test]
    fn the_encoded_message_goes_into_the_decode_command() {
        let message = "You are not authorized to perform this operation. Encoded authorization \
                       failure message: AbC-123_x";
        let remedy = remedy("UnauthorizedOperation", message, "RunInstances (x)", None).unwrap();
        assert_eq!(
            remedy.what,
            "these credentials are not allowed to call RunInstances"
        );
        assert!(
            remedy
                .fix
                .contains("aws sts decode-authorization-message --encoded-message AbC-123_x "),
            "{}",
            remedy.fix
        );
    }

    #[test]
    fn a_shortfall_takes_the_first_known_fix() {
        let fix = shortfall_fix(&[("Weird", "x"), ("SpotMaxPriceTooLow", "y")]);
        assert!(fix.contains("--max-price"), "{fix}");
        assert!(shortfall_fix(&[]).contains("more --worker-type"));
    }
}
