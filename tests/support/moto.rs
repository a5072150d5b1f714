//! A real moto server (EC2 and SSM) per test, on a free loopback port.
//!
//! `Moto::start()` runs `moto_server -H 127.0.0.1 -p PORT` from the venv at
//! `$SPOTLOAD_VENV` (default `/var/cache/spotload/venv`, made by
//! `scripts/test`), waits until `/moto-api/` answers, and kills the server on
//! drop. `ec2()` and `ssm()` give SDK clients pointed at it, and the free
//! functions below ask it what the `spotload` binary did.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use std::collections::BTreeSet;

use aws_sdk_ec2::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_ec2::types::{Filter, Instance, SecurityGroup};

/// moto needs a second or two to import; a loaded CI box can take longer.
const START_LIMIT: Duration = Duration::from_secs(60);
const DEFAULT_VENV: &str = "/var/cache/spotload/venv";
/// The tag spotload puts on everything it creates.
pub const FLEET_TAG: &str = "spotload:fleet";

pub struct Moto {
    child: Child,
    port: u16,
    /// moto's own output, shown when it fails to start.
    log: tempfile::NamedTempFile,
}

impl Moto {
    pub fn start() -> Moto {
        Moto::start_with(&[])
    }

    /// Starts moto with extra environment, e.g.
    /// `MOTO_EC2_ENABLE_INSTANCE_TYPE_VALIDATION=true`.
    pub fn start_with(env: &[(&str, &str)]) -> Moto {
        let bin = moto_bin();
        // Another process can take the free port before moto binds it; try again.
        let mut last_log = String::new();
        for _ in 0..3 {
            let port = free_port();
            let log = tempfile::NamedTempFile::new().expect("temp file for the moto log");
            let child = Command::new(&bin)
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .envs(env.iter().copied())
                .stdin(Stdio::null())
                .stdout(log.reopen().expect("moto log"))
                .stderr(log.reopen().expect("moto log"))
                .spawn()
                .unwrap_or_else(|err| panic!("could not start {}: {err}", bin.display()));
            let mut moto = Moto { child, port, log };
            if moto.wait_ready() {
                return moto;
            }
            last_log = std::fs::read_to_string(moto.log.path()).unwrap_or_default();
        }
        panic!("moto_server did not start; its output:\n{last_log}");
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Clears every resource, for tests that share one server.
    pub fn reset(&self) {
        let status = http(self.port, "POST", "/moto-api/reset").expect("POST /moto-api/reset");
        assert_eq!(status, 200, "moto reset answered {status}");
    }

    pub fn ec2(&self) -> aws_sdk_ec2::Client {
        let config = aws_sdk_ec2::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .endpoint_url(self.url())
            .credentials_provider(Credentials::new("testing", "testing", None, None, "moto"))
            .build();
        aws_sdk_ec2::Client::from_conf(config)
    }

    pub fn ssm(&self) -> aws_sdk_ssm::Client {
        let config = aws_sdk_ssm::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .endpoint_url(self.url())
            .credentials_provider(Credentials::new("testing", "testing", None, None, "moto"))
            .build();
        aws_sdk_ssm::Client::from_conf(config)
    }

    /// True once `/moto-api/` answers; false if moto exits or takes too long.
    fn wait_ready(&mut self) -> bool {
        let deadline = Instant::now() + START_LIMIT;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return false;
            }
            if let Ok(200) = http(self.port, "GET", "/moto-api/") {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn moto_bin() -> PathBuf {
    let venv = std::env::var("SPOTLOAD_VENV").unwrap_or_else(|_| DEFAULT_VENV.to_string());
    let bin = PathBuf::from(&venv).join("bin/moto_server");
    assert!(
        bin.exists(),
        "{} is missing: run scripts/test, which creates the venv, or \
         `python3 -m venv {venv} && {venv}/bin/pip install 'moto[server]'`",
        bin.display()
    );
    bin
}

/// A loopback port nothing listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// One HTTP/1.0 request to 127.0.0.1:port; returns the status code.
fn http(port: u16, method: &str, path: &str) -> std::io::Result<u16> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        stream,
        "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\n\r\n"
    )?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer)?;
    let head = String::from_utf8_lossy(&answer);
    head.split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not HTTP: {head:.80}")))
}

// What moto holds, asked through the SDK: the checks tests make.

pub fn tag<'a>(instance: &'a Instance, key: &str) -> Option<&'a str> {
    instance
        .tags()
        .iter()
        .find(|t| t.key() == Some(key))
        .and_then(|t| t.value())
}

pub fn filter(name: &str, value: &str) -> Filter {
    Filter::builder().name(name).values(value).build()
}

/// The fleet's instances that are not terminated, by tag.
pub async fn live_instances(ec2: &aws_sdk_ec2::Client, fleet: &str) -> Vec<Instance> {
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

pub async fn group_named(ec2: &aws_sdk_ec2::Client, name: &str) -> Option<SecurityGroup> {
    let answer = ec2
        .describe_security_groups()
        .filters(filter("group-name", name))
        .send()
        .await
        .expect("DescribeSecurityGroups");
    answer.security_groups().first().cloned()
}

pub async fn key_pair_exists(ec2: &aws_sdk_ec2::Client, name: &str) -> bool {
    let answer = ec2
        .describe_key_pairs()
        .filters(filter("key-name", name))
        .send()
        .await
        .expect("DescribeKeyPairs");
    !answer.key_pairs().is_empty()
}

/// The group's ingress as "tcp PORT from SOURCE" lines.
pub fn ingress(group: &SecurityGroup) -> BTreeSet<String> {
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

pub async fn user_data(ec2: &aws_sdk_ec2::Client, id: &str) -> String {
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

pub async fn shutdown_behaviour(ec2: &aws_sdk_ec2::Client, id: &str) -> String {
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
