//! `spotload launch`, `status` and `destroy` end to end: the real binary
//! against a real moto server, each result checked through the SDK.
//!
//! Every test starts its own moto (see the harness's `moto` module), so tests run in
//! parallel without sharing state. All traffic stays on 127.0.0.1.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use aws_sdk_ec2::types::Instance;
use harness::moto_sdk::{
    filter, group_named, ingress, key_pair_exists, leftovers, live_instance_ids, live_instances,
    shutdown_behaviour, tag, template_data, user_data, FLEET_TAG,
};
use harness::spotload_cli::Run;
use harness::{free_port, Moto};

const ROLE_TAG: &str = "spotload:role";
const ALLOW: &str = "198.51.100.7/32";
const AL2023_X86: &str = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64";

fn expected_rules(cidr: &str, group: &str) -> BTreeSet<String> {
    [
        format!("tcp 22 from {cidr}"),
        format!("tcp 80 from {cidr}"),
        format!("tcp 8089 from {cidr}"),
        // Workers load Nginx at its private address: 80 inside the group too.
        format!("tcp 80 from {group}"),
        format!("tcp 5557 from {group}"),
        // Deploys: hosts fetch the loadtest binary from the master.
        format!("tcp 5558 from {group}"),
    ]
    .into_iter()
    .collect()
}

/// Checks nothing spotload created for `fleet` is left in moto or on disk.
async fn assert_nothing_left(moto: &Moto, fleet: &str, state: &Path) {
    let ec2 = moto.ec2();
    let live = live_instance_ids(&ec2, fleet).await;
    assert!(live.is_empty(), "instances left: {live:?}");
    let name = format!("spotload-{fleet}");
    assert!(
        group_named(&ec2, &name).await.is_none(),
        "group {name} left"
    );
    assert!(!key_pair_exists(&ec2, &name).await, "key pair {name} left");
    // Launch templates and everything else tagged for the fleet.
    let left = leftovers(&ec2, fleet).await;
    assert!(left.is_empty(), "left in moto: {left:?}");
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
    let (ec2, url) = (moto.ec2(), moto.url());
    let scratch = harness::spotload_cli!(&url);
    let launch = scratch
        .run(&format!(
            "launch --fleet alpha --workers 3 --worker-type c5.large --master-type t3.small \
                 --webserver-type t3.micro --allow-cidr {ALLOW} --ttl 90m --wait-timeout 60s"
        ))
        .ok();
    let instances = live_instances(&ec2, "alpha").await;
    assert_eq!(instances.len(), 5, "{}", launch.stdout());
    let group = group_named(&ec2, "spotload-alpha").await.expect("group");
    let group_id = group.group_id().expect("group id");
    assert_eq!(ingress(&group), expected_rules(ALLOW, group_id));
    assert!(has_tag(group.tags(), FLEET_TAG, "alpha"), "group untagged");
    check_instances(&ec2, &instances, group_id, &launch.stdout()).await;
    check_key_and_fleet_file(&ec2, &scratch.state(), &instances).await;
    let status = scratch.run("status --fleet alpha").ok();
    check_status(&status.stdout(), &instances);

    scratch.run("destroy --fleet alpha --wait-timeout 60s").ok();
    assert_nothing_left(&moto, "alpha", &scratch.state()).await;
    let again = scratch.run("destroy --fleet alpha").ok().stdout();
    assert!(again.contains("nothing to destroy"), "{again}");
    let empty = scratch.run("status --fleet alpha").ok().stdout();
    assert!(empty.contains("no instances"), "{empty}");
}

fn has_tag(tags: &[aws_sdk_ec2::types::Tag], key: &str, value: &str) -> bool {
    tags.iter()
        .any(|t| t.key() == Some(key) && t.value() == Some(value))
}

/// Role, type, spot lifecycle, group, key, timer and shutdown behaviour of
/// each instance of the `alpha` fleet.
async fn check_instances(
    ec2: &aws_sdk_ec2::Client,
    instances: &[Instance],
    group_id: &str,
    launch_output: &str,
) {
    let mut roles = Vec::new();
    for instance in instances {
        let id = instance.instance_id().expect("id");
        let role = tag(instance, ROLE_TAG).expect("role tag").to_string();
        let wanted_type = match role.as_str() {
            "webserver" => "t3.micro",
            "master" => "t3.small",
            "worker" => "c5.large",
            other => panic!("unexpected role {other}"),
        };
        let kind = instance
            .instance_type()
            .map(aws_sdk_ec2::types::InstanceType::as_str);
        assert_eq!(kind, Some(wanted_type), "{id}");
        let lifecycle = instance
            .instance_lifecycle()
            .map(aws_sdk_ec2::types::InstanceLifecycleType::as_str);
        assert_eq!(lifecycle, Some("spot"), "{id}");
        let groups: Vec<&str> = instance
            .security_groups()
            .iter()
            .filter_map(|g| g.group_id())
            .collect();
        assert_eq!(groups, [group_id], "{id}");
        assert_eq!(instance.key_name(), Some("spotload-alpha"), "{id}");
        let script = user_data(ec2, id).await;
        assert!(
            script.contains("# spotload self-destruct timer"),
            "{id}: {script}"
        );
        assert!(script.contains("(ttl 1h30m)"), "{id}: {script}");
        assert_eq!(shutdown_behaviour(ec2, id).await, "terminate", "{id}");
        assert!(launch_output.contains(id), "{id} not in launch output");
        roles.push(role);
    }
    roles.sort();
    assert_eq!(roles, ["master", "webserver", "worker", "worker", "worker"]);
}

/// The created key pair is tagged, its private key saved 0600, and the
/// fleet file names every instance.
async fn check_key_and_fleet_file(ec2: &aws_sdk_ec2::Client, state: &Path, instances: &[Instance]) {
    let keys = ec2
        .describe_key_pairs()
        .filters(filter(&format!("tag:{FLEET_TAG}"), "alpha"))
        .send()
        .await
        .expect("DescribeKeyPairs");
    assert_eq!(keys.key_pairs().len(), 1, "the created key pair is tagged");
    let key_file = state.join("alpha/spotload-alpha.pem");
    let meta = std::fs::metadata(&key_file).expect("private key saved");
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let key = std::fs::read_to_string(&key_file).expect("read private key");
    assert!(key.starts_with("-----BEGIN OPENSSH PRIVATE KEY-----"));
    let saved = std::fs::read_to_string(state.join("alpha/fleet.json")).expect("fleet file");
    for instance in instances {
        let id = instance.instance_id().expect("id");
        assert!(saved.contains(id), "fleet file lacks {id}");
    }
}

/// One status line per instance: role first, spot, running, its private
/// address and a cost estimate.
fn check_status(out: &str, instances: &[Instance]) {
    assert!(out.contains("alpha in us-east-1: 5 instances"), "{out}");
    for instance in instances {
        let id = instance.instance_id().expect("id");
        let line = out
            .lines()
            .find(|l| l.contains(id))
            .unwrap_or_else(|| panic!("{id} not in\n{out}"));
        assert!(
            line.starts_with(tag(instance, ROLE_TAG).expect("role")),
            "{line}"
        );
        assert!(
            line.contains(" spot ") && line.contains(" running "),
            "{line}"
        );
        let private = instance.private_ip_address().expect("private address");
        assert!(line.contains(private), "{line}");
        assert!(line.contains('$'), "no cost estimate in {line}");
    }
}

#[tokio::test]
async fn destroy_works_from_tags_alone() {
    let moto = Moto::start();
    let url = moto.url();
    let scratch = harness::spotload_cli!(&url);
    let launch = format!("launch --fleet lost --workers 2 --allow-cidr {ALLOW}");
    scratch.run(&launch).ok();
    assert_eq!(live_instances(&moto.ec2(), "lost").await.len(), 4);
    std::fs::remove_dir_all(scratch.state()).expect("delete the state dir");

    let status = scratch.run("status --fleet lost").ok().stdout();
    assert!(
        status.contains("4 instances, security group sg-"),
        "{status}"
    );
    assert!(status.contains("key pair spotload-lost"), "{status}");
    let destroy = scratch.run("destroy --fleet lost").ok().stdout();
    assert!(destroy.contains("deleted security group"), "{destroy}");
    assert!(
        destroy.contains("deleted key pair spotload-lost"),
        "{destroy}"
    );
    assert_nothing_left(&moto, "lost", &scratch.state()).await;
}

#[tokio::test]
async fn worker_type_list_launches_an_ec2_fleet() {
    let moto = Moto::start();
    let (ec2, url) = (moto.ec2(), moto.url());
    let scratch = harness::spotload_cli!(&url);
    let launch = "launch --fleet mixed --workers 3 --worker-type c7g.large,m7g.large \
                  --allow-cidr 2001:db8::/64 --max-price 0.05";
    scratch.run(launch).ok();

    let instances = live_instances(&ec2, "mixed").await;
    assert_eq!(instances.len(), 5);
    let workers: Vec<&Instance> = instances
        .iter()
        .filter(|i| tag(i, ROLE_TAG) == Some("worker"))
        .collect();
    assert_eq!(workers.len(), 3);
    for worker in workers {
        check_fleet_worker(&ec2, worker).await;
    }
    // moto puts fleet instances in the default group with shutdown "stop";
    // what spotload asked EC2 for is in the launch template.
    let group = group_named(&ec2, "spotload-mixed").await.expect("group");
    let group_id = group.group_id().expect("group id");
    assert_eq!(ingress(&group), expected_rules("2001:db8::/64", group_id));
    let data = template_data(&ec2, "spotload-mixed-worker").await;
    assert_eq!(data.security_group_ids(), [group_id.to_string()]);
    let shutdown = data.instance_initiated_shutdown_behavior();
    assert_eq!(
        shutdown.map(aws_sdk_ec2::types::ShutdownBehavior::as_str),
        Some("terminate")
    );
    assert_eq!(data.key_name(), Some("spotload-mixed"));

    let destroy = scratch.run("destroy --fleet mixed").ok().stdout();
    assert!(destroy.contains("deleted launch template"), "{destroy}");
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

/// A worker from the fleet: a listed type, spot, the timer, and the image
/// of its type's own architecture.
async fn check_fleet_worker(ec2: &aws_sdk_ec2::Client, worker: &Instance) {
    let id = worker.instance_id().expect("id");
    let kind = worker
        .instance_type()
        .map(aws_sdk_ec2::types::InstanceType::as_str)
        .unwrap_or_default();
    assert!(["c7g.large", "m7g.large"].contains(&kind), "{id}: {kind}");
    let lifecycle = worker
        .instance_lifecycle()
        .map(aws_sdk_ec2::types::InstanceLifecycleType::as_str);
    assert_eq!(lifecycle, Some("spot"), "{id}");
    assert!(user_data(ec2, id).await.contains("(ttl 2h)"), "{id}");
    let image = worker.image_id().expect("image id");
    let images = ec2
        .describe_images()
        .image_ids(image)
        .send()
        .await
        .expect("DescribeImages");
    let arch = images.images().first().and_then(|i| i.architecture());
    let want = if kind.starts_with("c7g") || kind.starts_with("m7g") {
        "arm64"
    } else {
        "x86_64"
    };
    assert_eq!(
        arch.map(aws_sdk_ec2::types::ArchitectureValues::as_str),
        Some(want),
        "{id} ({kind}) booted {image}"
    );
}

/// A failure after the webserver and master exist (moto refuses an unknown
/// worker type once validation is on) removes them and names the step.
#[tokio::test]
async fn failed_launch_rolls_back() {
    let moto = Moto::start_with(&[("MOTO_EC2_ENABLE_INSTANCE_TYPE_VALIDATION", "true")]);
    let url = moto.url();
    let scratch = harness::spotload_cli!(&url);
    // With --ami no type lookup happens first, so the bad type reaches RunInstances.
    let parameter = moto.ssm().get_parameter().name(AL2023_X86).send().await;
    let parameter = parameter.expect("SSM GetParameter");
    let ami = parameter
        .parameter()
        .and_then(|p| p.value())
        .expect("AMI id");
    for types in ["bogus.large", "bogus.large,c5.large"] {
        let launch =
            format!("launch --fleet doomed --worker-type {types} --ami {ami} --allow-cidr {ALLOW}");
        let run = scratch.run(&launch);
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
            "no master first:\n{stderr}"
        );
        assert_nothing_left(&moto, "doomed", &scratch.state()).await;
    }
    // Without --ami the type lookup refuses first, creating nothing.
    let launch = format!("launch --fleet doomed --worker-type bogus.large --allow-cidr {ALLOW}");
    let error = scratch.run(&launch).one_error_line();
    assert!(error.contains("InvalidInstanceType"), "{error}");
    assert!(error.contains("nothing was created"), "{error}");
}

#[tokio::test]
async fn launch_refuses_an_existing_fleet_and_leaves_it_alone() {
    let moto = Moto::start();
    let url = moto.url();
    let scratch = harness::spotload_cli!(&url);
    let launch = format!("launch --fleet twice --workers 1 --allow-cidr {ALLOW}");
    scratch.run(&launch).ok();
    let error = scratch.run(&launch).one_error_line();
    assert!(error.contains("fleet twice already exists"), "{error}");
    assert!(error.contains("spotload destroy --fleet twice"), "{error}");
    assert_eq!(live_instances(&moto.ec2(), "twice").await.len(), 3);
    assert!(group_named(&moto.ec2(), "spotload-twice").await.is_some());
    assert!(scratch.state().join("twice/spotload-twice.pem").exists());
}

/// Without --allow-cidr the caller's address is learned over HTTP: refused
/// when that fails, used when a (loopback) address service answers.
#[tokio::test]
async fn caller_address_is_learned_or_launch_refuses() {
    let moto = Moto::start();
    let url = moto.url();
    let scratch = harness::spotload_cli!(&url);
    // Scratch points SPOTLOAD_PUBLIC_IP_URL at a closed loopback port.
    let error = scratch.run("launch --fleet mine").one_error_line();
    assert!(
        error.contains("could not learn this machine's public address"),
        "{error}"
    );
    assert!(error.contains("pass --allow-cidr"), "{error}");
    assert_nothing_left(&moto, "mine", &scratch.state()).await;

    let (address_url, server) = serve_once("203.0.113.45\n");
    let launch = format!("launch --fleet mine --workers 1 --public-ip-url {address_url}");
    scratch.run(&launch).ok();
    server.join().expect("address server");
    let group = group_named(&moto.ec2(), "spotload-mine")
        .await
        .expect("group");
    let group_id = group.group_id().expect("group id");
    assert_eq!(ingress(&group), expected_rules("203.0.113.45/32", group_id));
}

/// A one-request HTTP server on loopback answering `body`.
fn serve_once(body: &'static str) -> (String, std::thread::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}/", listener.local_addr().expect("addr"));
    let server = std::thread::spawn(move || {
        let (stream, _) = listener.accept().expect("accept");
        let mut reader = BufReader::new(stream);
        let mut line = String::new();
        // Read the request head up to its blank line.
        while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
            line.clear();
        }
        let mut stream = reader.into_inner();
        let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n", body.len());
        let _ = write!(stream, "{head}Connection: close\r\n\r\n{body}");
    });
    (url, server)
}

/// Ctrl-C during a launch ends it with one error line, not a hang; here
/// while the address service keeps the launch waiting.
#[tokio::test]
async fn ctrl_c_stops_a_launch() {
    let moto = Moto::start();
    let scratch = harness::spotload_cli!(&moto.url());
    let silent = TcpListener::bind("127.0.0.1:0").expect("bind");
    let address_url = format!("http://{}/", silent.local_addr().expect("addr"));
    let launch = format!("launch --fleet halt --public-ip-url {address_url}");
    let mut child = scratch
        .command(&launch)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn spotload");
    // The launch connects, then waits on the address service that never answers.
    let _held = accept_within(&silent, Duration::from_secs(30)).unwrap_or_else(|| {
        let _ = child.kill();
        panic!("the launch never asked for its address");
    });
    let interrupt = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill -INT");
    assert!(interrupt.success());
    let output = child.wait_with_output().expect("wait for spotload");
    let run = Run {
        args: launch,
        output,
    };
    let error = run.one_error_line();
    assert!(error.contains("interrupted by Ctrl-C"), "{error}");
    assert!(error.contains("nothing was created"), "{error}");
    assert_nothing_left(&moto, "halt", &scratch.state()).await;
}

/// The next connection to `listener`, or `None` after `limit`.
fn accept_within(listener: &TcpListener, limit: Duration) -> Option<std::net::TcpStream> {
    listener
        .set_nonblocking(true)
        .expect("non-blocking listener");
    harness::try_wait_until(limit, || listener.accept().ok().map(|(stream, _)| stream))
}

#[tokio::test]
async fn wrong_credentials_give_one_error_line() {
    // With no free actions moto checks keys against its own IAM, which knows none.
    let moto = Moto::start_with(&[("INITIAL_NO_AUTH_ACTION_COUNT", "0")]);
    let scratch = harness::spotload_cli!(&moto.url());
    let launch = format!("launch --fleet creds --allow-cidr {ALLOW}");
    for args in ["status --fleet creds", "destroy --fleet creds", &launch] {
        let error = scratch.run(args).one_error_line();
        assert!(error.contains("AWS rejected the credentials"), "{error}");
        assert!(error.contains("AWS_ACCESS_KEY_ID"), "{error}");
    }
    let args = "status --fleet creds";
    let output = scratch
        .command(args)
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .output()
        .expect("run the spotload binary");
    let none = Run {
        args: args.into(),
        output,
    };
    let error = none.one_error_line();
    assert!(
        error.starts_with("error: no AWS credentials found"),
        "{error}"
    );
}

#[tokio::test]
async fn unreachable_endpoint_gives_one_error_line() {
    let closed = format!("http://127.0.0.1:{}", free_port());
    let scratch = harness::spotload_cli!(&closed);
    let launch = format!("launch --fleet far --allow-cidr {ALLOW}");
    for args in ["status --fleet far", "destroy --fleet far", &launch] {
        let error = scratch.run(args).one_error_line();
        let expected = format!("could not reach EC2 at {closed}");
        assert!(error.contains(&expected), "{error}");
        assert!(error.contains("--endpoint-url"), "{error}");
    }
}

#[tokio::test]
async fn bad_flags_are_refused_before_any_call() {
    let moto = Moto::start();
    let url = moto.url();
    let scratch = harness::spotload_cli!(&url);
    let cases = [
        (
            "--key-name mine --key-file /nonexistent/mine.pem",
            "--key-file /nonexistent/mine.pem: no such file",
        ),
        ("--worker-type large", "--worker-type \"large\""),
        ("--ttl forever", "--ttl \"forever\""),
        ("--allow-cidr 10.0.0.0/40", "--allow-cidr \"10.0.0.0/40\""),
        ("--key-name absent", "key pair absent does not exist"),
    ];
    for (extra, expected) in cases {
        let launch = format!("launch --fleet flags --allow-cidr {ALLOW} {extra}");
        let error = scratch.run(&launch).one_error_line();
        assert!(error.contains(expected), "{error}");
    }
    assert_nothing_left(&moto, "flags", &scratch.state()).await;
}
