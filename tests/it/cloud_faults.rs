//! Faults a real AWS account produces and moto cannot: the `spotload`
//! binary against moto behind the harness's fault proxy, which answers
//! chosen EC2 calls with AWS's own error bodies.
//!
//! After each fault the test checks, through the SDK straight at moto, that
//! nothing tagged with the fleet is left (instances not terminated, security
//! groups, key pairs, launch templates, EC2 Fleets), and that the one error
//! line names the fix. The last test checks the IAM policy (docs/iam-policy.json) against
//! every call the proxy saw and every SDK call in the code.
//!
//! One moto and one proxy per test; all traffic stays on 127.0.0.1.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use harness::faultproxy::{Fault, FaultProxy};
use harness::moto_sdk::{
    filter, ingress, leftovers, live_fleets, live_instance_ids, live_instances, tag,
};
use harness::Moto;

const ALLOW: &str = "198.51.100.7/32";
/// What RunInstances carries for the worker role (its role tag's value).
const WORKER_LAUNCH: &str = "Value=worker";
const MASTER_LAUNCH: &str = "Value=master";

fn launch_args(fleet: &str, extra: &str) -> String {
    format!("launch --fleet {fleet} --workers 2 --allow-cidr {ALLOW} --wait-timeout 60s {extra}")
}

async fn assert_nothing_left(moto: &Moto, fleet: &str, state: &Path, context: &str) {
    let left = leftovers(&moto.ec2(), fleet).await;
    assert!(left.is_empty(), "{context}: left in moto: {left:?}");
    assert!(
        !state.join(fleet).join("fleet.json").exists(),
        "{context}: fleet file left"
    );
}

/// A fault on one launch call, the words its error line must hold, and
/// what the launch carries beyond the defaults.
struct LaunchFault {
    fault: Fault,
    extra: &'static str,
    expect: &'static [&'static str],
}

const ENCODED: &str = "Zk9vYmFyLUVuY29kZWQtTWVzc2FnZS0xMjM0NTY3ODkw_-AbC";

fn launch_faults() -> Vec<LaunchFault> {
    let unauthorized = format!(
        "You are not authorized to perform this operation. User: \
         arn:aws:iam::123456789012:user/loadtester is not authorized to perform: \
         ec2:CreateSecurityGroup on resource: arn:aws:ec2:us-east-1:123456789012:vpc/vpc-1 \
         because no identity-based policy allows the ec2:CreateSecurityGroup action. \
         Encoded authorization failure message: {ENCODED}"
    );
    vec![
        LaunchFault {
            // Every spot launch fails: the account has no spot role yet.
            fault: Fault::error(
                "RunInstances",
                400,
                "AuthFailure.ServiceLinkedRoleCreationNotPermitted",
                "The provided credentials do not have permission to create the service-linked \
                 role for EC2 Spot Instances.",
            ),
            extra: "",
            expect: &[
                "AuthFailure.ServiceLinkedRoleCreationNotPermitted",
                "aws iam create-service-linked-role --aws-service-name spot.amazonaws.com",
                "failed while launching the webserver",
                "rolled back",
            ],
        },
        LaunchFault {
            fault: Fault::error(
                "RunInstances",
                400,
                "MaxSpotInstanceCountExceeded",
                "Max spot instance count exceeded",
            )
            .when_body_contains(WORKER_LAUNCH),
            extra: "",
            expect: &[
                "failed while launching the workers",
                "MaxSpotInstanceCountExceeded",
                "aws service-quotas request-service-quota-increase --service-code ec2 \
                 --quota-code L-34B43A08",
                "rolled back: terminated instances",
            ],
        },
        LaunchFault {
            fault: Fault::error(
                "RunInstances",
                400,
                "VcpuLimitExceeded",
                "You have requested more vCPU capacity than your current vCPU limit of 5 allows \
                 for the instance bucket that the specified instance type belongs to. Please \
                 visit http://aws.amazon.com/contact-us/ec2-request to request an adjustment to \
                 this limit.",
            )
            .when_body_contains(WORKER_LAUNCH),
            extra: "",
            expect: &[
                "VcpuLimitExceeded",
                "Service Quotas",
                "--quota-code L-34B43A08",
                "rolled back: terminated instances",
            ],
        },
        LaunchFault {
            // A server error: the SDK retries it, then spotload rolls back.
            fault: Fault::error(
                "RunInstances",
                500,
                "InsufficientInstanceCapacity",
                "We currently do not have sufficient c5.large capacity in the Availability Zone \
                 you requested (us-east-1a). Our system will be working on provisioning \
                 additional capacity.",
            )
            .when_body_contains(WORKER_LAUNCH),
            extra: "--worker-type c5.large",
            expect: &[
                "InsufficientInstanceCapacity",
                "give --worker-type a list of similar types",
                "rolled back: terminated instances",
            ],
        },
        LaunchFault {
            fault: Fault::error(
                "RunInstances",
                400,
                "SpotMaxPriceTooLow",
                "Your Spot request price of 0.001 is lower than the minimum required Spot \
                 request fulfillment price of 0.0035.",
            )
            .when_body_contains(WORKER_LAUNCH),
            extra: "--max-price 0.001",
            expect: &[
                "SpotMaxPriceTooLow",
                "raise --max-price",
                "rolled back: terminated instances",
            ],
        },
        LaunchFault {
            fault: Fault::error(
                "RunInstances",
                400,
                "InvalidParameterCombination",
                "Your requested instance type (t3.small) is not supported in your requested \
                 Availability Zone (us-east-1e). Please retry your request by not specifying an \
                 Availability Zone or choosing us-east-1a, us-east-1b, us-east-1c, us-east-1d, \
                 us-east-1f.",
            )
            .when_body_contains(MASTER_LAUNCH),
            extra: "",
            expect: &[
                "failed while launching the master",
                "pick another --master-type",
                "rolled back: terminated instances",
            ],
        },
        LaunchFault {
            fault: Fault::error(
                "CreateSecurityGroup",
                403,
                "UnauthorizedOperation",
                &unauthorized,
            ),
            extra: "",
            expect: &[
                "these credentials are not allowed to call CreateSecurityGroup",
                "docs/iam-policy.json",
                "aws sts decode-authorization-message --encoded-message",
                ENCODED,
                "rolled back: deleted key pair",
            ],
        },
        LaunchFault {
            // The worker list goes through one instant EC2 Fleet.
            fault: Fault::error(
                "CreateFleet",
                500,
                "InsufficientInstanceCapacity",
                "There is no Spot capacity available that matches your request.",
            ),
            extra: "--worker-type c5.large,m5.large",
            expect: &[
                "CreateFleet",
                "InsufficientInstanceCapacity",
                "add more similar types to the --worker-type list",
                "deleted launch template",
            ],
        },
    ]
}

/// Service-linked role, quotas, capacity, price, zone and permission faults:
/// each rolls the launch back and its one error line names the fix.
#[tokio::test]
async fn launch_faults_roll_back_and_name_the_fix() {
    let moto = Moto::start();
    let proxy = FaultProxy::start(&moto);
    let scratch = harness::spotload_cli!(&proxy.url());
    for (n, case) in launch_faults().into_iter().enumerate() {
        let fleet = format!("fault{n}");
        proxy.clear_faults();
        proxy.inject(case.fault);
        let run = scratch.run(&launch_args(&fleet, case.extra));
        let error = run.one_error_line();
        // Shown with --nocapture: the failure matrix in the words users see.
        eprintln!("[{fleet}] {error}");
        for words in case.expect {
            assert!(
                error.contains(words),
                "{fleet}: {words:?} not in\n{error}\nstderr:\n{}",
                run.stderr()
            );
        }
        assert_nothing_left(&moto, &fleet, &scratch.state(), &error).await;
    }
    let faulted: BTreeSet<String> = proxy
        .calls()
        .into_iter()
        .filter_map(|c| c.faulted)
        .collect();
    assert_eq!(faulted.len(), 7, "every fault was answered: {faulted:?}");
}

/// `InvalidGroup.NotFound` right after CreateSecurityGroup and
/// `InvalidInstanceID.NotFound` right after RunInstances are waited out;
/// neither a launch nor a destroy nor a rollback leaves anything.
#[tokio::test]
async fn not_found_after_create_is_retried() {
    let moto = Moto::start();
    let proxy = FaultProxy::start(&moto);
    let scratch = harness::spotload_cli!(&proxy.url());

    proxy.inject(
        Fault::error(
            "AuthorizeSecurityGroupIngress",
            400,
            "InvalidGroup.NotFound",
            "The security group 'sg-0' does not exist",
        )
        .times(2),
    );
    let launch = scratch.run(&launch_args("settle", "")).ok();
    assert!(
        launch
            .stderr()
            .contains("is not visible to AuthorizeSecurityGroupIngress yet"),
        "{}",
        launch.stderr()
    );
    let group = harness::moto_sdk::group_named(&moto.ec2(), "spotload-settle")
        .await
        .expect("group");
    // 22, 80 and 8089 from the caller; 80, 5557 and 5558 within the group.
    assert_eq!(ingress(&group).len(), 6, "every rule is in: {group:?}");
    assert_eq!(live_instances(&moto.ec2(), "settle").await.len(), 4);

    // The first two TerminateInstances calls miss the new instances.
    proxy.inject(
        Fault::error(
            "TerminateInstances",
            400,
            "InvalidInstanceID.NotFound",
            "The instance ID 'i-0' does not exist",
        )
        .times(2),
    );
    let destroy = scratch
        .run("destroy --fleet settle --wait-timeout 60s")
        .ok();
    eprintln!("{}\n{}", launch.stderr(), destroy.stderr());
    assert!(
        destroy.stderr().contains("one at a time"),
        "{}",
        destroy.stderr()
    );
    assert_nothing_left(&moto, "settle", &scratch.state(), &destroy.stderr()).await;

    // A rollback meets both: the group and the instances show late.
    proxy.clear_faults();
    proxy.inject(no_worker_capacity());
    proxy.inject(
        Fault::error(
            "TerminateInstances",
            400,
            "InvalidInstanceID.NotFound",
            "The instance IDs 'i-0, i-1' do not exist",
        )
        .times(1),
    );
    proxy.inject(
        Fault::error(
            "DeleteSecurityGroup",
            400,
            "InvalidGroup.NotFound",
            "The security group 'sg-0' does not exist",
        )
        .times(1),
    );
    let run = scratch.run(&launch_args("late", ""));
    let error = run.one_error_line();
    eprintln!("{}\n{error}", run.stderr());
    assert!(
        error.contains("rolled back: terminated instances"),
        "{error}"
    );
    assert!(error.contains("deleted security group"), "{error}");
    assert_nothing_left(&moto, "late", &scratch.state(), &run.stderr()).await;
}

/// A terminate batch EC2 refuses is retried one id at a time; an instance
/// that stays refused is named, with the group it holds, and destroy exits 1.
#[tokio::test]
async fn a_refused_terminate_batch_goes_one_at_a_time() {
    let moto = Moto::start();
    let proxy = FaultProxy::start(&moto);
    let scratch = harness::spotload_cli!(&proxy.url());
    let refused = |needle: &str| {
        Fault::error(
            "TerminateInstances",
            400,
            "OperationNotPermitted",
            "The instance may not be terminated. Modify its 'disableApiTermination' instance \
             attribute and try again.",
        )
        .when_body_contains(needle)
    };

    // Every batch of two or more is refused; single ids go through.
    scratch.run(&launch_args("batch", "")).ok();
    proxy.inject(refused("InstanceId.2="));
    scratch.run("destroy --fleet batch --wait-timeout 60s").ok();
    assert_nothing_left(&moto, "batch", &scratch.state(), "batch").await;
    let singles = proxy
        .calls()
        .iter()
        .filter(|c| c.action == "ec2:TerminateInstances" && c.faulted.is_none())
        .count();
    assert_eq!(singles, 4, "one call per instance after the refused batch");

    // One instance stays protected: the rest go, it and its group are named.
    proxy.clear_faults();
    scratch.run(&launch_args("stuck", "")).ok();
    let instances = live_instances(&moto.ec2(), "stuck").await;
    let stuck = instances
        .iter()
        .find(|i| tag(i, "spotload:role") == Some("worker"))
        .and_then(|i| i.instance_id())
        .expect("a worker")
        .to_string();
    proxy.inject(refused(&format!("={stuck}")));
    let run = scratch.run("destroy --fleet stuck --wait-timeout 60s");
    let error = run.one_error_line();
    eprintln!("{}\n{error}", run.stderr());
    assert!(
        error.contains("destroy of fleet stuck is incomplete"),
        "{error}"
    );
    assert!(error.contains("OperationNotPermitted"), "{error}");
    assert!(
        error.contains(&format!("still there: instances {stuck} (running)")),
        "{error}"
    );
    assert!(error.contains("security group sg-"), "{error}");
    assert!(error.contains("spotload destroy --fleet stuck"), "{error}");
    let live = live_instance_ids(&moto.ec2(), "stuck").await;
    assert_eq!(
        live,
        std::slice::from_ref(&stuck),
        "only the refused instance runs"
    );

    proxy.clear_faults();
    scratch.run("destroy --fleet stuck --wait-timeout 60s").ok();
    assert_nothing_left(&moto, "stuck", &scratch.state(), "stuck, again").await;

    // A rollback that cannot terminate says exactly what it left.
    proxy.inject(no_worker_capacity());
    proxy.inject(refused("InstanceId.1="));
    let run = scratch.run(&launch_args("held", ""));
    let error = run.one_error_line();
    eprintln!("{}\n{error}", run.stderr());
    let live = live_instance_ids(&moto.ec2(), "held").await;
    assert_eq!(live.len(), 2, "webserver and master still run: {error}");
    assert!(error.contains("rollback incomplete"), "{error}");
    for id in &live {
        assert!(
            error.contains(&format!("{id} (running)")),
            "{id} not in {error}"
        );
    }
    assert!(error.contains("security group sg-"), "{error}");
    assert!(
        error.contains("run `spotload destroy --fleet held`"),
        "{error}"
    );
    proxy.clear_faults();
    scratch.run("destroy --fleet held --wait-timeout 60s").ok();
    assert_nothing_left(&moto, "held", &scratch.state(), "held").await;
}

/// A role's types must share one architecture, and each must be offered in
/// some zone: both refused with the fix, leaving nothing.
#[tokio::test]
async fn worker_types_are_checked_before_they_bill() {
    let moto = Moto::start();
    let proxy = FaultProxy::start(&moto);
    let scratch = harness::spotload_cli!(&proxy.url());

    let run = scratch.run(&launch_args("arch", "--worker-type c5.large,c7g.large"));
    let error = run.one_error_line();
    eprintln!("{}\n{error}", run.stderr());
    assert!(
        error.contains(
            "--worker-type c5.large,c7g.large mixes architectures (arm64: c7g.large; x86_64: \
             c5.large)"
        ),
        "{error}"
    );
    assert!(error.contains("nothing was created"), "{error}");
    let created: Vec<String> = proxy
        .actions()
        .into_iter()
        .filter(|a| !a.starts_with("ec2:Describe") && !a.starts_with("ssm:"))
        .collect();
    assert!(created.is_empty(), "calls before the refusal: {created:?}");
    assert_nothing_left(&moto, "arch", &scratch.state(), &error).await;

    // hpc7a is not offered in us-east-1: refused before the worker fleet.
    let run = scratch.run(&launch_args(
        "nowhere",
        "--worker-type c5.large,hpc7a.12xlarge",
    ));
    let error = run.one_error_line();
    eprintln!("{}\n{error}", run.stderr());
    assert!(
        error.contains("hpc7a.12xlarge is not offered in any zone of us-east-1"),
        "{error}"
    );
    assert!(
        error
            .contains("aws ec2 describe-instance-type-offerings --location-type availability-zone"),
        "{error}"
    );
    assert!(error.contains("rolled back"), "{error}");
    assert_nothing_left(&moto, "nowhere", &scratch.state(), &error).await;
}

/// The `(index → field → value)` table of the CreateFleet overrides.
fn overrides(body: &str) -> BTreeMap<u32, BTreeMap<String, String>> {
    let mut table: BTreeMap<u32, BTreeMap<String, String>> = BTreeMap::new();
    for pair in body.split('&') {
        let Some((key, value)) = pair.split_once('=') else {
            continue;
        };
        let Some(rest) = key.strip_prefix("LaunchTemplateConfigs.1.Overrides.") else {
            continue;
        };
        let Some((index, field)) = rest.split_once('.') else {
            continue;
        };
        if let Ok(index) = index.parse() {
            table
                .entry(index)
                .or_default()
                .insert(field.to_string(), value.to_string());
        }
    }
    table
}

/// A full launch, status and destroy with a worker list: the fleet gets one
/// override per (type, default subnet) whose zone offers the type, its EC2
/// Fleet is deleted, and every call the proxy saw, and every SDK call in
/// the code, is allowed by docs/iam-policy.json.
#[tokio::test]
async fn fleets_span_zones_and_the_iam_policy_covers_every_call() {
    let moto = Moto::start();
    let proxy = FaultProxy::start(&moto);
    let scratch = harness::spotload_cli!(&proxy.url());
    scratch
        .run(&launch_args("policy", "--worker-type c5.large,c4.large"))
        .ok();

    let subnets = moto
        .ec2()
        .describe_subnets()
        .filters(filter("default-for-az", "true"))
        .send()
        .await
        .expect("DescribeSubnets");
    let zone_of: BTreeMap<String, String> = subnets
        .subnets()
        .iter()
        .map(|s| {
            (
                s.subnet_id().unwrap_or_default().to_string(),
                s.availability_zone().unwrap_or_default().to_string(),
            )
        })
        .collect();
    assert_eq!(zone_of.len(), 6, "moto's us-east-1 has six default subnets");
    let fleet_call = proxy
        .calls()
        .into_iter()
        .find(|c| c.action == "ec2:CreateFleet")
        .expect("a CreateFleet call");
    let placed: BTreeSet<(String, String)> = overrides(&fleet_call.body)
        .values()
        .map(|o| {
            let subnet = o.get("SubnetId").cloned().unwrap_or_default();
            let zone = zone_of.get(&subnet).cloned().unwrap_or(subnet);
            (o.get("InstanceType").cloned().unwrap_or_default(), zone)
        })
        .collect();
    // c5.large is offered in every us-east-1 zone but us-east-1e; c4.large in all six.
    assert_eq!(placed.len(), 11, "{placed:?}");
    assert!(!placed.contains(&("c5.large".into(), "us-east-1e".into())));
    assert!(placed.contains(&("c4.large".into(), "us-east-1e".into())));
    assert_eq!(live_fleets(&moto.ec2(), "policy").await.len(), 1);

    scratch.run("status --fleet policy").ok();
    let destroy = scratch
        .run("destroy --fleet policy --wait-timeout 60s")
        .ok();
    assert!(
        destroy.stdout().contains("deleted EC2 fleets fleet-"),
        "{}",
        destroy.stdout()
    );
    assert_nothing_left(&moto, "policy", &scratch.state(), "policy").await;

    let policy = Policy::load();
    let seen = proxy.actions();
    for action in [
        "ec2:CreateFleet",
        "ec2:DeleteFleets",
        "ec2:RunInstances",
        "ssm:GetParameter",
    ] {
        assert!(
            seen.iter().any(|a| a == action),
            "{action} not seen: {seen:?}"
        );
    }
    let denied: Vec<&String> = seen.iter().filter(|a| !policy.allows(a)).collect();
    assert!(
        denied.is_empty(),
        "called but not in the policy: {denied:?}"
    );
    let in_code = sdk_calls_in(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/cloud"));
    assert!(in_code.len() >= 20, "too few calls found: {in_code:?}");
    let denied: Vec<&String> = in_code.iter().filter(|a| !policy.allows(a)).collect();
    assert!(
        denied.is_empty(),
        "in the code but not in the policy: {denied:?}"
    );
    assert!(policy.limits_service_linked_role_to_spot());
    policy.check_linked();
}

/// The IAM policy from `docs/iam-policy.json`.
struct Policy {
    allowed: Vec<String>,
    document: serde_json::Value,
}

impl Policy {
    fn path() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/iam-policy.json")
    }

    fn load() -> Policy {
        let text = std::fs::read_to_string(Policy::path()).expect("docs/iam-policy.json");
        let document: serde_json::Value = serde_json::from_str(&text).expect("the policy is JSON");
        let mut allowed = Vec::new();
        for statement in document["Statement"].as_array().expect("Statement list") {
            assert_eq!(statement["Effect"], "Allow", "{statement}");
            match &statement["Action"] {
                serde_json::Value::String(one) => allowed.push(one.clone()),
                serde_json::Value::Array(many) => allowed.extend(
                    many.iter()
                        .map(|a| a.as_str().expect("action name").to_string()),
                ),
                other => panic!("Action {other}"),
            }
        }
        Policy { allowed, document }
    }

    /// Exact names, or a trailing `*` wildcard as IAM matches it.
    fn allows(&self, action: &str) -> bool {
        self.allowed
            .iter()
            .any(|allowed| match allowed.strip_suffix('*') {
                Some(prefix) => action.starts_with(prefix),
                None => allowed == action,
            })
    }

    /// `iam:CreateServiceLinkedRole` only for `spot.amazonaws.com`.
    fn limits_service_linked_role_to_spot(&self) -> bool {
        self.document["Statement"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|s| s["Action"] == "iam:CreateServiceLinkedRole")
            .all(|s| s["Condition"]["StringEquals"]["iam:AWSServiceName"] == "spot.amazonaws.com")
    }

    /// The docs point users at the file, which holds no other copy: the
    /// README and docs/aws.md link it.
    fn check_linked(&self) {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        for (doc, link) in [
            ("README.md", "](docs/iam-policy.json)"),
            ("docs/aws.md", "](iam-policy.json)"),
        ] {
            let text = std::fs::read_to_string(root.join(doc)).expect(doc);
            assert!(text.contains(link), "{doc} links the IAM policy ({link})");
            assert!(
                !text.contains("\"Statement\""),
                "{doc} copies the policy instead of linking it"
            );
        }
    }
}

/// `ec2:DescribeInstances`... for every `self.ec2.describe_instances(` (and
/// `self.ssm.`) in the `.rs` files under `dir`, whitespace ignored.
fn sdk_calls_in(dir: PathBuf) -> BTreeSet<String> {
    let mut calls = BTreeSet::new();
    for entry in std::fs::read_dir(&dir).expect("src/cloud") {
        let path = entry.expect("dir entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("rs") {
            continue;
        }
        let code: String = std::fs::read_to_string(&path)
            .expect("source file")
            .split_whitespace()
            .collect();
        for (service, marker) in [("ec2", "self.ec2."), ("ssm", "self.ssm.")] {
            for (at, _) in code.match_indices(marker) {
                let rest = &code[at + marker.len()..];
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
                    .collect();
                if rest[name.len()..].starts_with('(') && !name.is_empty() {
                    calls.insert(format!("{service}:{}", pascal(&name)));
                }
            }
        }
    }
    calls
}

/// `describe_instance_types` → `DescribeInstanceTypes`.
fn pascal(snake: &str) -> String {
    snake
        .split('_')
        .map(|word| {
            let mut chars = word.chars();
            chars
                .next()
                .map(|first| first.to_ascii_uppercase().to_string() + chars.as_str())
                .unwrap_or_default()
        })
        .collect()
}

/// The workers' RunInstances answered as EC2 does when a zone has no
/// capacity left: the launch fails after the webserver and master ran.
fn no_worker_capacity() -> Fault {
    Fault::error(
        "RunInstances",
        500,
        "InsufficientInstanceCapacity",
        "none left",
    )
    .when_body_contains(WORKER_LAUNCH)
}
