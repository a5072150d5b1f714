//! `spotload launch`, `status` and `destroy` end to end: the real binary
//! against a real moto server, each result checked through the SDK.
//!
//! Every test starts its own moto (see `support/moto.rs`), so tests run in
//! parallel without sharing state. All traffic stays on 127.0.0.1.

#[path = "support/moto.rs"]
mod moto;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use aws_sdk_ec2::types::{Filter, Instance, SecurityGroup};
use moto::{free_port, Moto};

const FLEET_TAG: &str = "spotload:fleet";
const ROLE_TAG: &str = "spotload:role";
const ALLOW: &str = "198.51.100.7/32";
const AL2023_X86: &str = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64";

/// One run of the binary, with its output kept for assertions.
struct Run {
    args: Vec<String>,
    output: Output,
}

impl Run {
    fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.output.stdout).into_owned()
    }

    fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.output.stderr).into_owned()
    }

    fn ok(self) -> Run {
        assert!(
            self.output.status.success(),
            "spotload {:?} failed\nstdout:\n{}\nstderr:\n{}",
            self.args,
            self.stdout(),
            self.stderr()
        );
        self
    }

    /// Asserts a failure reported as exactly one `error:` line, without a
    /// panic or backtrace, and returns that line.
    fn one_error_line(&self) -> String {
        let stderr = self.stderr();
        assert!(
            !self.output.status.success(),
            "spotload {:?} succeeded",
            self.args
        );
        assert_eq!(self.output.status.code(), Some(1), "{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert!(!stderr.to_lowercase().contains("backtrace"), "{stderr}");
        let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
        assert_eq!(errors.len(), 1, "want one error line in:\n{stderr}");
        errors[0].to_string()
    }
}

/// A scratch HOME and state directory, so nothing of the user's leaks in.
struct Scratch {
    dir: tempfile::TempDir,
}

impl Scratch {
    fn new() -> Scratch {
        Scratch {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// Runs `spotload <args>` against `endpoint` with test credentials.
    fn run(&self, endpoint: &str, args: &[&str]) -> Run {
        self.run_env(
            endpoint,
            args,
            &[
                ("AWS_ACCESS_KEY_ID", "testing"),
                ("AWS_SECRET_ACCESS_KEY", "testing"),
            ],
        )
    }

    fn run_env(&self, endpoint: &str, args: &[&str], env: &[(&str, &str)]) -> Run {
        let state = self.state();
        let mut all: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        all.extend(["--endpoint-url".into(), endpoint.into()]);
        all.extend(["--state-dir".into(), state.display().to_string()]);
        let output = Command::new(env!("CARGO_BIN_EXE_spotload"))
            .args(&all)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.dir.path())
            .env("AWS_REGION", "us-east-1")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            // Even a wrong default must never send the test to the internet.
            .env(
                "SPOTLOAD_PUBLIC_IP_URL",
                format!("http://127.0.0.1:{}/", free_port()),
            )
            .envs(env.iter().copied())
            .output()
            .expect("run the spotload binary");
        Run { args: all, output }
    }
}

fn tag<'a>(instance: &'a Instance, key: &str) -> Option<&'a str> {
    instance
        .tags()
        .iter()
        .find(|t| t.key() == Some(key))
        .and_then(|t| t.value())
}

fn filter(name: &str, value: &str) -> Filter {
    Filter::builder().name(name).values(value).build()
}

/// The fleet's instances that are not terminated, by tag.
async fn live_instances(ec2: &aws_sdk_ec2::Client, fleet: &str) -> Vec<Instance> {
    let answer = ec2
        .describe_instances()
        .filters(filter(&format!("tag:{FLEET_TAG}"), fleet))
        .send()
        .await
        .expect("DescribeInstances");
    answer
        .reservations()
        .iter()
        .flat_map(|r| r.instances())
        .filter(|i| i.state().and_then(|s| s.name()).map(|n| n.as_str()) != Some("terminated"))
        .cloned()
        .collect()
}

async fn group_named(ec2: &aws_sdk_ec2::Client, name: &str) -> Option<SecurityGroup> {
    let answer = ec2
        .describe_security_groups()
        .filters(filter("group-name", name))
        .send()
        .await
        .expect("DescribeSecurityGroups");
    answer.security_groups().first().cloned()
}

async fn key_pair_exists(ec2: &aws_sdk_ec2::Client, name: &str) -> bool {
    let answer = ec2
        .describe_key_pairs()
        .filters(filter("key-name", name))
        .send()
        .await
        .expect("DescribeKeyPairs");
    !answer.key_pairs().is_empty()
}

/// The group's ingress as "tcp PORT from SOURCE" lines.
fn ingress(group: &SecurityGroup) -> BTreeSet<String> {
    let mut rules = BTreeSet::new();
    for p in group.ip_permissions() {
        let proto = p.ip_protocol().unwrap_or("?");
        let ports = match (p.from_port(), p.to_port()) {
            (Some(a), Some(b)) if a == b => a.to_string(),
            (a, b) => format!("{a:?}-{b:?}"),
        };
        let sources = p
            .ip_ranges()
            .iter()
            .filter_map(|r| r.cidr_ip())
            .chain(p.ipv6_ranges().iter().filter_map(|r| r.cidr_ipv6()))
            .chain(p.user_id_group_pairs().iter().filter_map(|g| g.group_id()));
        for source in sources {
            rules.insert(format!("{proto} {ports} from {source}"));
        }
    }
    rules
}

fn expected_rules(cidr: &str, group: &str) -> BTreeSet<String> {
    [
        format!("tcp 22 from {cidr}"),
        format!("tcp 80 from {cidr}"),
        format!("tcp 8089 from {cidr}"),
        format!("tcp 5557 from {group}"),
    ]
    .into_iter()
    .collect()
}

async fn user_data(ec2: &aws_sdk_ec2::Client, id: &str) -> String {
    let answer = ec2
        .describe_instance_attribute()
        .instance_id(id)
        .attribute(aws_sdk_ec2::types::InstanceAttributeName::UserData)
        .send()
        .await
        .expect("DescribeInstanceAttribute userData");
    let encoded = answer
        .user_data()
        .and_then(|v| v.value())
        .unwrap_or_default();
    let bytes = aws_smithy_types::base64::decode(encoded).expect("user data is base64");
    String::from_utf8(bytes).expect("user data is text")
}

async fn shutdown_behaviour(ec2: &aws_sdk_ec2::Client, id: &str) -> String {
    let answer = ec2
        .describe_instance_attribute()
        .instance_id(id)
        .attribute(aws_sdk_ec2::types::InstanceAttributeName::InstanceInitiatedShutdownBehavior)
        .send()
        .await
        .expect("DescribeInstanceAttribute shutdown behaviour");
    answer
        .instance_initiated_shutdown_behavior()
        .and_then(|v| v.value())
        .unwrap_or_default()
        .to_string()
}

/// Checks nothing spotload created for `fleet` is left in moto or on disk.
async fn assert_nothing_left(moto: &Moto, fleet: &str, state: &Path) {
    let ec2 = moto.ec2();
    let live: Vec<String> = live_instances(&ec2, fleet)
        .await
        .iter()
        .filter_map(|i| i.instance_id().map(String::from))
        .collect();
    assert!(live.is_empty(), "instances left: {live:?}");
    let name = format!("spotload-{fleet}");
    assert!(
        group_named(&ec2, &name).await.is_none(),
        "group {name} left"
    );
    assert!(!key_pair_exists(&ec2, &name).await, "key pair {name} left");
    let templates = ec2
        .describe_launch_templates()
        .filters(filter(&format!("tag:{FLEET_TAG}"), fleet))
        .send()
        .await
        .expect("DescribeLaunchTemplates");
    assert!(
        templates.launch_templates().is_empty(),
        "launch template left"
    );
    let dir = state.join(fleet);
    assert!(!dir.join("fleet.json").exists(), "fleet file left");
    assert!(
        !dir.join(format!("{name}.pem")).exists(),
        "private key left"
    );
}

#[tokio::test]
async fn launch_status_destroy() {
    let moto = Moto::start();
    let scratch = Scratch::new();
    let ec2 = moto.ec2();
    let url = moto.url();
    let launch = scratch
        .run(
            &url,
            &[
                "launch",
                "--fleet",
                "alpha",
                "--workers",
                "3",
                "--worker-type",
                "c5.large",
                "--master-type",
                "t3.small",
                "--webserver-type",
                "t3.micro",
                "--allow-cidr",
                ALLOW,
                "--ttl",
                "90m",
                "--wait-timeout",
                "60s",
            ],
        )
        .ok();

    let instances = live_instances(&ec2, "alpha").await;
    assert_eq!(instances.len(), 5, "{}", launch.stdout());
    let group = group_named(&ec2, "spotload-alpha")
        .await
        .expect("the fleet's group");
    let group_id = group.group_id().expect("group id").to_string();
    let mut roles = Vec::new();
    for instance in &instances {
        let id = instance.instance_id().expect("id");
        let role = tag(instance, ROLE_TAG).expect("role tag").to_string();
        let wanted_type = match role.as_str() {
            "webserver" => "t3.micro",
            "master" => "t3.small",
            "worker" => "c5.large",
            other => panic!("unexpected role {other}"),
        };
        assert_eq!(
            instance.instance_type().map(|t| t.as_str()),
            Some(wanted_type),
            "{id}"
        );
        assert_eq!(
            instance.instance_lifecycle().map(|l| l.as_str()),
            Some("spot"),
            "{id}"
        );
        let groups: Vec<&str> = instance
            .security_groups()
            .iter()
            .filter_map(|g| g.group_id())
            .collect();
        assert_eq!(groups, vec![group_id.as_str()], "{id}");
        assert_eq!(instance.key_name(), Some("spotload-alpha"), "{id}");
        let script = user_data(&ec2, id).await;
        assert!(
            script.contains("# spotload self-destruct timer"),
            "{id}: {script}"
        );
        assert!(script.contains("shutdown -h +90 "), "{id}: {script}");
        assert_eq!(shutdown_behaviour(&ec2, id).await, "terminate", "{id}");
        assert!(
            launch.stdout().contains(id),
            "{id} missing from launch output"
        );
        roles.push(role);
    }
    roles.sort();
    assert_eq!(roles, ["master", "webserver", "worker", "worker", "worker"]);
    assert_eq!(ingress(&group), expected_rules(ALLOW, &group_id));
    let group_tags: Vec<(&str, &str)> = group
        .tags()
        .iter()
        .filter_map(|t| Some((t.key()?, t.value()?)))
        .collect();
    assert!(group_tags.contains(&(FLEET_TAG, "alpha")), "{group_tags:?}");

    let keys = ec2
        .describe_key_pairs()
        .filters(filter(&format!("tag:{FLEET_TAG}"), "alpha"))
        .send()
        .await
        .expect("DescribeKeyPairs");
    assert_eq!(keys.key_pairs().len(), 1, "the created key pair is tagged");
    let key_file = scratch.state().join("alpha/spotload-alpha.pem");
    let mode = std::fs::metadata(&key_file)
        .expect("private key saved")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let key = std::fs::read_to_string(&key_file).expect("read private key");
    assert!(
        key.starts_with("-----BEGIN OPENSSH PRIVATE KEY-----"),
        "{key:.40}"
    );
    let saved =
        std::fs::read_to_string(scratch.state().join("alpha/fleet.json")).expect("fleet file");
    for instance in &instances {
        assert!(
            saved.contains(instance.instance_id().expect("id")),
            "fleet file lacks an instance"
        );
    }

    let status = scratch.run(&url, &["status", "--fleet", "alpha"]).ok();
    let out = status.stdout();
    assert!(out.contains("alpha in us-east-1: 5 instances"), "{out}");
    for instance in &instances {
        let id = instance.instance_id().expect("id");
        let line = out
            .lines()
            .find(|l| l.contains(id))
            .unwrap_or_else(|| panic!("{id} not in\n{out}"));
        let role = tag(instance, ROLE_TAG).expect("role");
        assert!(line.starts_with(role), "{line}");
        assert!(
            line.contains(" spot ") && line.contains(" running "),
            "{line}"
        );
        let private = instance.private_ip_address().expect("private address");
        assert!(line.contains(private), "{line}");
        assert!(line.contains('$'), "no cost estimate in {line}");
    }

    scratch
        .run(
            &url,
            &["destroy", "--fleet", "alpha", "--wait-timeout", "60s"],
        )
        .ok();
    assert_nothing_left(&moto, "alpha", &scratch.state()).await;
    let again = scratch.run(&url, &["destroy", "--fleet", "alpha"]).ok();
    assert!(
        again.stdout().contains("nothing to destroy"),
        "{}",
        again.stdout()
    );
    let empty = scratch.run(&url, &["status", "--fleet", "alpha"]).ok();
    assert!(
        empty.stdout().contains("no instances"),
        "{}",
        empty.stdout()
    );
}

#[tokio::test]
async fn destroy_works_from_tags_alone() {
    let moto = Moto::start();
    let scratch = Scratch::new();
    let url = moto.url();
    let launch = [
        "launch",
        "--fleet",
        "lost",
        "--workers",
        "2",
        "--allow-cidr",
        ALLOW,
    ];
    scratch.run(&url, &launch).ok();
    assert_eq!(live_instances(&moto.ec2(), "lost").await.len(), 4);
    std::fs::remove_dir_all(scratch.state()).expect("delete the state dir");

    let status = scratch.run(&url, &["status", "--fleet", "lost"]).ok();
    assert!(
        status.stdout().contains("4 instances"),
        "{}",
        status.stdout()
    );
    let destroy = scratch.run(&url, &["destroy", "--fleet", "lost"]).ok();
    assert!(
        destroy.stdout().contains("deleted security group"),
        "{}",
        destroy.stdout()
    );
    assert!(
        destroy.stdout().contains("deleted key pair spotload-lost"),
        "{}",
        destroy.stdout()
    );
    assert_nothing_left(&moto, "lost", &scratch.state()).await;
}

#[tokio::test]
async fn worker_type_list_launches_an_ec2_fleet() {
    let moto = Moto::start();
    let scratch = Scratch::new();
    let ec2 = moto.ec2();
    let url = moto.url();
    let args = [
        "launch",
        "--fleet",
        "mixed",
        "--workers",
        "3",
        "--worker-type",
        "c7g.large,m5.large",
        "--allow-cidr",
        "2001:db8::/64",
        "--max-price",
        "0.05",
    ];
    scratch.run(&url, &args).ok();

    let instances = live_instances(&ec2, "mixed").await;
    let workers: Vec<&Instance> = instances
        .iter()
        .filter(|i| tag(i, ROLE_TAG) == Some("worker"))
        .collect();
    assert_eq!(workers.len(), 3);
    assert_eq!(instances.len(), 5);
    for worker in &workers {
        let id = worker.instance_id().expect("id");
        let kind = worker
            .instance_type()
            .map(|t| t.as_str())
            .unwrap_or_default();
        assert!(["c7g.large", "m5.large"].contains(&kind), "{id}: {kind}");
        assert_eq!(
            worker.instance_lifecycle().map(|l| l.as_str()),
            Some("spot"),
            "{id}"
        );
        assert!(
            user_data(&ec2, id).await.contains("shutdown -h +120 "),
            "{id}"
        );
        // Each type boots the image of its own architecture.
        let image = worker.image_id().expect("image id");
        let images = ec2
            .describe_images()
            .image_ids(image)
            .send()
            .await
            .expect("DescribeImages");
        let arch = images
            .images()
            .first()
            .and_then(|i| i.architecture())
            .map(|a| a.as_str());
        let want = if kind.starts_with("c7g") {
            "arm64"
        } else {
            "x86_64"
        };
        assert_eq!(arch, Some(want), "{id} ({kind}) booted {image}");
    }
    // moto puts fleet instances in the default group with shutdown "stop";
    // what spotload asked EC2 for is in the launch template.
    let group = group_named(&ec2, "spotload-mixed").await.expect("group");
    let group_id = group.group_id().expect("group id");
    assert_eq!(ingress(&group), expected_rules("2001:db8::/64", group_id));
    let versions = ec2
        .describe_launch_template_versions()
        .launch_template_name("spotload-mixed-worker")
        .send()
        .await
        .expect("DescribeLaunchTemplateVersions");
    let data = versions
        .launch_template_versions()
        .first()
        .and_then(|v| v.launch_template_data())
        .expect("template data");
    assert_eq!(data.security_group_ids(), [group_id.to_string()]);
    assert_eq!(
        data.instance_initiated_shutdown_behavior()
            .map(|b| b.as_str()),
        Some("terminate")
    );
    assert_eq!(data.key_name(), Some("spotload-mixed"));

    let destroy = scratch.run(&url, &["destroy", "--fleet", "mixed"]).ok();
    assert!(
        destroy.stdout().contains("deleted launch template"),
        "{}",
        destroy.stdout()
    );
    assert_nothing_left(&moto, "mixed", &scratch.state()).await;
    let requests = ec2
        .describe_spot_instance_requests()
        .filters(filter(&format!("tag:{FLEET_TAG}"), "mixed"))
        .filters(filter("state", "open"))
        .send()
        .await
        .expect("DescribeSpotInstanceRequests");
    assert!(
        requests.spot_instance_requests().is_empty(),
        "open spot requests left"
    );
}

/// A failure after the webserver and master exist (moto refuses an unknown
/// worker type once validation is on) removes them and names the step.
#[tokio::test]
async fn failed_launch_rolls_back() {
    let moto = Moto::start_with(&[("MOTO_EC2_ENABLE_INSTANCE_TYPE_VALIDATION", "true")]);
    let scratch = Scratch::new();
    let url = moto.url();
    // With --ami no type lookup happens first, so the bad type reaches RunInstances.
    let ami = moto
        .ssm()
        .get_parameter()
        .name(AL2023_X86)
        .send()
        .await
        .expect("SSM GetParameter")
        .parameter()
        .and_then(|p| p.value())
        .expect("an AMI id")
        .to_string();
    for worker_type in ["bogus.large", "bogus.large,c5.large"] {
        let run = scratch.run(
            &url,
            &[
                "launch",
                "--fleet",
                "doomed",
                "--worker-type",
                worker_type,
                "--ami",
                &ami,
                "--allow-cidr",
                ALLOW,
            ],
        );
        let error = run.one_error_line();
        assert!(
            error.contains("failed while launching the workers"),
            "{error}"
        );
        assert!(error.contains("bogus.large"), "{error}");
        assert!(
            error.contains("rolled back: terminated instances"),
            "{error}"
        );
        let stderr = run.stderr();
        assert!(
            stderr.contains("launched 1 × master"),
            "the master existed first:\n{stderr}"
        );
        assert_nothing_left(&moto, "doomed", &scratch.state()).await;
    }
    // Without --ami the type lookup refuses first, creating nothing.
    let run = scratch.run(
        &url,
        &[
            "launch",
            "--fleet",
            "doomed",
            "--worker-type",
            "bogus.large",
            "--allow-cidr",
            ALLOW,
        ],
    );
    let error = run.one_error_line();
    assert!(
        error.contains("InvalidInstanceType") && error.contains("nothing was created"),
        "{error}"
    );
}

#[tokio::test]
async fn launch_refuses_an_existing_fleet_and_leaves_it_alone() {
    let moto = Moto::start();
    let scratch = Scratch::new();
    let url = moto.url();
    let launch = [
        "launch",
        "--fleet",
        "twice",
        "--workers",
        "1",
        "--allow-cidr",
        ALLOW,
    ];
    scratch.run(&url, &launch).ok();
    let error = scratch.run(&url, &launch).one_error_line();
    assert!(error.contains("fleet twice already exists"), "{error}");
    assert!(error.contains("spotload destroy --fleet twice"), "{error}");
    assert_eq!(live_instances(&moto.ec2(), "twice").await.len(), 3);
    assert!(group_named(&moto.ec2(), "spotload-twice").await.is_some());
    assert!(scratch.state().join("twice/spotload-twice.pem").exists());
}

/// Without --allow-cidr the caller's address is learned over HTTP; here from
/// a loopback stand-in for the public service.
#[tokio::test]
async fn caller_address_is_learned_or_launch_refuses() {
    let moto = Moto::start();
    let scratch = Scratch::new();
    let url = moto.url();
    let closed = format!("http://127.0.0.1:{}/", free_port());
    let run = scratch.run_env(
        &url,
        &["launch", "--fleet", "mine"],
        &[
            ("AWS_ACCESS_KEY_ID", "testing"),
            ("AWS_SECRET_ACCESS_KEY", "testing"),
            ("SPOTLOAD_PUBLIC_IP_URL", &closed),
        ],
    );
    let error = run.one_error_line();
    assert!(
        error.contains("could not learn this machine's public address"),
        "{error}"
    );
    assert!(error.contains("pass --allow-cidr"), "{error}");
    assert_nothing_left(&moto, "mine", &scratch.state()).await;

    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let address_url = format!("http://{}/", listener.local_addr().expect("addr"));
    let server = std::thread::spawn(move || {
        let (stream, _) = listener.accept().expect("accept");
        let mut reader = BufReader::new(stream);
        let mut line = String::new();
        while reader.read_line(&mut line).map(|n| n > 2).unwrap_or(false) {
            line.clear();
        }
        let body = "203.0.113.45\n";
        let mut stream = reader.into_inner();
        let _ = write!(
            stream,
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
    });
    scratch
        .run(
            &url,
            &[
                "launch",
                "--fleet",
                "mine",
                "--workers",
                "1",
                "--public-ip-url",
                &address_url,
            ],
        )
        .ok();
    server.join().expect("address server");
    let group = group_named(&moto.ec2(), "spotload-mine")
        .await
        .expect("group");
    let group_id = group.group_id().expect("group id");
    assert_eq!(ingress(&group), expected_rules("203.0.113.45/32", group_id));
}

#[tokio::test]
async fn wrong_credentials_give_one_error_line() {
    // With no free actions moto checks keys against its own IAM, which knows none.
    let moto = Moto::start_with(&[("INITIAL_NO_AUTH_ACTION_COUNT", "0")]);
    let scratch = Scratch::new();
    for args in [
        vec!["status", "--fleet", "creds"],
        vec!["destroy", "--fleet", "creds"],
        vec!["launch", "--fleet", "creds", "--allow-cidr", ALLOW],
    ] {
        let error = scratch.run(&moto.url(), &args).one_error_line();
        assert!(error.contains("AWS rejected the credentials"), "{error}");
        assert!(error.contains("AWS_ACCESS_KEY_ID"), "{error}");
    }
    let none = scratch.run_env(&moto.url(), &["status", "--fleet", "creds"], &[]);
    let error = none.one_error_line();
    assert!(
        error.starts_with("error: no AWS credentials found"),
        "{error}"
    );
}

#[tokio::test]
async fn unreachable_endpoint_gives_one_error_line() {
    let scratch = Scratch::new();
    let closed = format!("http://127.0.0.1:{}", free_port());
    for args in [
        vec!["status", "--fleet", "far"],
        vec!["destroy", "--fleet", "far"],
        vec!["launch", "--fleet", "far", "--allow-cidr", ALLOW],
    ] {
        let error = scratch.run(&closed, &args).one_error_line();
        assert!(
            error.contains(&format!("could not reach EC2 at {closed}")),
            "{error}"
        );
        assert!(error.contains("--endpoint-url"), "{error}");
    }
}

#[tokio::test]
async fn bad_flags_are_refused_before_any_call() {
    let moto = Moto::start();
    let scratch = Scratch::new();
    let url = moto.url();
    let cases: [(&[&str], &str); 4] = [
        (
            &["--key-name", "mine", "--key-file", "/nonexistent/mine.pem"],
            "--key-file /nonexistent/mine.pem: no such file",
        ),
        (&["--worker-type", "large"], "--worker-type \"large\""),
        (&["--ttl", "forever"], "--ttl \"forever\""),
        (
            &["--allow-cidr", "10.0.0.0/40"],
            "--allow-cidr \"10.0.0.0/40\"",
        ),
    ];
    for (extra, expected) in cases {
        let mut args = vec!["launch", "--fleet", "flags", "--allow-cidr", ALLOW];
        args.extend_from_slice(extra);
        let error = scratch.run(&url, &args).one_error_line();
        assert!(error.contains(expected), "{error}");
    }
    let error = scratch
        .run(
            &url,
            &[
                "launch",
                "--fleet",
                "flags",
                "--key-name",
                "absent",
                "--allow-cidr",
                ALLOW,
            ],
        )
        .one_error_line();
    assert!(error.contains("key pair absent does not exist"), "{error}");
    assert_nothing_left(&moto, "flags", &scratch.state()).await;
}
