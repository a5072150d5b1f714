//! The self-destruct: the boot-time arming script on a real host, and
//! `spotload extend` and `spotload status` (time left, cost) against moto.
//!
//! The host is a real sshd in a network namespace (as in `deploy.rs`), the
//! instance metadata a stub (the harness's `ImdsStub`, serving the
//! instance's tags behind an IMDSv2 token) reached over the test's own
//! bridge. A namespace shares this machine's kernel, so the script never
//! really powers off here: its `poweroff_cmd` appends the expiry to a
//! file, which proves it would have. Needs root, like CI.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use aws_sdk_ec2::types::{
    HttpTokensState, Instance, InstanceMetadataTagsState, LaunchTemplateHttpTokensState,
    LaunchTemplateInstanceMetadataTagsState,
};
use harness::moto_sdk::{live_instances, tag, template_data, user_data};
use harness::netns::{sh, Lan, NetHost};
use harness::spotload_cli::spotload_command;
use harness::{wait_until, ImdsStub, Moto, TempDir};
use spotload::cloud::userdata::TIMER_MARKER;
use spotload::expiry::{unix_now, ArmSettings, Expiry, TAG_EXPIRES_AT};
use spotload::remote::arm::{arm_step, ArmPlan};
use spotload::remote::recipe::run_step;
use spotload::remote::script::Privilege;
use spotload::remote::{load_key, ConnectLimits, Host, KnownHosts, Session};

/// Where the poweroff stand-in writes, as the host sees it.
const POWEROFF_MARK: &str = "/opt/spotload/expiry/poweroff-called";
/// moto's spot price for every type and zone, USD per hour.
const MOTO_PRICE: f64 = 0.00001;

/// A host on its own bridge, with a key it accepts for root.
struct TestHost {
    lan: Lan,
    keys: TempDir,
}

impl TestHost {
    fn start() -> TestHost {
        let keys = TempDir::new("expiry-keys");
        let key = keys.path().join("id_ed25519");
        sh(&format!(
            "ssh-keygen -q -t ed25519 -N '' -f {}",
            key.display()
        ));
        let public = fs::read_to_string(key.with_extension("pub")).expect("public key");
        let mut lan = Lan::new();
        let address = lan.address(10);
        lan.add_host("expiry", address, &public);
        TestHost { lan, keys }
    }

    fn net(&self) -> &NetHost {
        &self.lan.hosts()[0]
    }

    fn host(&self) -> Host {
        Host {
            address: self.net().address().to_string(),
            port: 22,
            user: "root".into(),
            key: self.keys.path().join("id_ed25519"),
        }
    }

    /// The host's state directory, as this machine sees it.
    fn state(&self) -> PathBuf {
        self.net().opt_dir().join("spotload/expiry")
    }

    /// Runs `command` on the host (its mounts and network).
    fn exec(&self, command: &str) -> Output {
        self.net().exec(command)
    }

    /// One boot-time run of the installed script, with no expiry given:
    /// only the tag (or the saved state) can arm it.
    fn check(&self) -> Output {
        self.exec("/opt/spotload/expiry/spotload-expiry check")
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_default()
}

fn show(out: &Output) -> String {
    format!(
        "status {}\n--- stdout\n{}--- stderr\n{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_arming_script_arms_the_tag_s_expiry_at_every_boot() {
    let imds = ImdsStub::start();
    let first = Expiry::from_now(Duration::from_secs(2 * 3600));
    imds.set_tag(TAG_EXPIRES_AT, &first.to_string());
    let mut test = TestHost::start();
    let port = test.lan.forward_loopback(imds.addr().port());
    let settings = ArmSettings {
        imds_endpoint: Some(format!("http://{}:{port}", test.lan.gateway())),
        poweroff_command: Some(format!("echo \"$SPOTLOAD_EXPIRY\" >> {POWEROFF_MARK}")),
        watch_seconds: Some(3600),
    };

    // What deploy does: install over SSH, arm, verify.
    let host = test.host();
    let key = load_key(&host).expect("the test key loads");
    let known = KnownHosts::new(test.keys.path().join("known_hosts"));
    let limits = ConnectLimits {
        attempt: Duration::from_secs(5),
        wait: Duration::from_secs(30),
    };
    let session = Session::connect(&host, key, &known, limits)
        .await
        .expect("SSH to the test host");
    let plan = ArmPlan {
        fleet: "nsfleet".into(),
        instance_id: "i-0123456789abcdef0".into(),
        expected: Some(first),
        settings,
        skip: None,
    };
    let out = run_step(&session, Privilege::Root, &arm_step(&plan, unix_now()))
        .await
        .unwrap_or_else(|failure| panic!("arming failed: {failure:?}"));
    session.close().await;
    let last = out.stdout.trim_end().lines().last().unwrap_or_default();
    assert!(
        last.starts_with(&format!("self-destruct armed: powers off at {first} (in ")),
        "{out:?}"
    );
    assert!(
        last.contains(", from the instance's tag); no systemd: a watch loop"),
        "{out:?}"
    );
    assert_eq!(read(&test.state().join("expires-at")), format!("{first}\n"));

    // The watch loop (no systemd in the namespace) ran its first check;
    // then it goes, as at a reboot, so only the runs below touch the state.
    let log = test.net().opt_dir().join("spotload/log/expiry.log");
    wait_until(
        Duration::from_secs(20),
        "the watch loop's first check",
        || read(&log).contains("armed: powers off").then_some(()),
    );
    let loops = test.net().processes("spotload-expiry watch");
    assert_eq!(loops.len(), 1, "one watch loop: {loops:?}");
    test.exec("kill $(cat /opt/spotload/run/expiry.pid)");
    wait_until(Duration::from_secs(10), "the watch loop to end", || {
        test.net()
            .processes("spotload-expiry watch")
            .is_empty()
            .then_some(())
    });

    // Twice, state cleared in between: the same expiry, from the tag.
    for run in 0..2 {
        fs::remove_file(test.state().join("expires-at")).expect("clear the saved expiry");
        fs::remove_file(test.state().join("source")).expect("clear the saved source");
        let reads = imds.tag_reads();
        let out = test.check();
        assert!(out.status.success(), "run {run}: {}", show(&out));
        assert_eq!(
            text(&out.stdout),
            format!("spotload-expiry: armed: powers off at {first} (from the instance's tag)\n"),
            "run {run}"
        );
        assert_eq!(read(&test.state().join("expires-at")), format!("{first}\n"));
        assert_eq!(read(&test.state().join("source")), "instance's tag\n");
        assert_eq!(imds.tag_reads(), reads + 1, "{:?}", imds.requests());
    }
    let requests = imds.requests();
    assert!(
        requests.contains(&"PUT /latest/api/token -> 200".to_string()),
        "{requests:?}"
    );
    assert!(
        !requests.iter().any(|r| r.ends_with("-> 401")),
        "every read carried the token: {requests:?}"
    );

    // `spotload extend` only moves the tag: the next run follows it.
    let later = Expiry::at(first.unix() + 3600);
    imds.set_tag(TAG_EXPIRES_AT, &later.to_string());
    let out = test.check();
    assert!(
        text(&out.stdout).contains(&format!("powers off at {later}")),
        "{}",
        show(&out)
    );
    assert_eq!(read(&test.state().join("expires-at")), format!("{later}\n"));
    assert!(!test.state().join("powered-off-at").exists());

    check_past_and_future(&test, &imds);
    check_unreadable_tag(&test, &imds, later);
}

/// An expiry in the past runs the power-off, one in the future does not:
/// each run has finished (its exit) before the mark is looked at.
fn check_past_and_future(test: &TestHost, imds: &ImdsStub) {
    let mark = test.net().opt_dir().join("spotload/expiry/poweroff-called");
    let past = Expiry::at(unix_now() - 60);
    imds.set_tag(TAG_EXPIRES_AT, &past.to_string());
    let out = test.check();
    assert!(out.status.success(), "{}", show(&out));
    assert!(
        text(&out.stderr).contains(&format!("expired at {past}")),
        "{}",
        show(&out)
    );
    assert_eq!(read(&mark), format!("{past}\n"), "{}", show(&out));
    assert!(test.state().join("powered-off-at").exists());

    fs::remove_file(&mark).expect("remove the mark");
    let future = Expiry::from_now(Duration::from_secs(600));
    imds.set_tag(TAG_EXPIRES_AT, &future.to_string());
    let out = test.check();
    assert!(out.status.success(), "{}", show(&out));
    assert!(
        text(&out.stdout).contains(&format!("armed: powers off at {future}")),
        "{}",
        show(&out)
    );
    assert!(
        !mark.exists(),
        "powered off before {future}: {}",
        read(&mark)
    );
}

/// Without the tag the saved expiry holds; with neither, nothing is armed
/// and the run says so (exit 2).
fn check_unreadable_tag(test: &TestHost, imds: &ImdsStub, later: Expiry) {
    imds.set_tag(TAG_EXPIRES_AT, &later.to_string());
    assert!(test.check().status.success());
    imds.remove_tag(TAG_EXPIRES_AT);
    let out = test.check();
    assert!(out.status.success(), "{}", show(&out));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains(&format!(
            "armed: powers off at {later} (from the saved expiry;"
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains("shows no tag spotload:expires-at"),
        "{stdout}"
    );
    fs::remove_file(test.state().join("expires-at")).expect("clear the saved expiry");
    let out = test.check();
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(
        text(&out.stderr).contains("NOT ARMED: no expiry known"),
        "{}",
        show(&out)
    );
    imds.set_tag(TAG_EXPIRES_AT, "next tuesday");
    let out = test.check();
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(
        text(&out.stderr).contains("holds \"next tuesday\", not a UTC time"),
        "{}",
        show(&out)
    );
}

/// `spotload ARGS` against moto with a scratch state directory.
fn spotload(moto: &Moto, state: &Path, args: &str) -> Output {
    let bin = Path::new(env!("CARGO_BIN_EXE_spotload"));
    spotload_command(bin, &moto.url(), state, state, args)
        .output()
        .expect("run the spotload binary")
}

fn ok(out: Output, args: &str) -> String {
    assert!(out.status.success(), "spotload {args}: {}", show(&out));
    text(&out.stdout)
}

/// The one `error:` line of a failed run.
fn error_line(out: &Output) -> String {
    assert_eq!(out.status.code(), Some(1), "{}", show(out));
    let stderr = text(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    errors[0].to_string()
}

fn expiry_of(instance: &Instance) -> Expiry {
    let value = tag(instance, TAG_EXPIRES_AT).expect("the expiry tag");
    Expiry::parse(value).unwrap_or_else(|| panic!("{value:?} is no expiry"))
}

#[tokio::test]
async fn launch_tags_the_expiry_extend_moves_it_status_shows_it_and_the_cost() {
    let moto = Moto::start();
    let scratch = TempDir::new("expiry-state");
    let state = scratch.path();
    let ec2 = moto.ec2();
    let before = unix_now();
    let launch = "launch --fleet ext --workers 2 --worker-type t3.micro --master-type t3.micro \
                  --webserver-type t3.micro --allow-cidr 198.51.100.7/32 --ttl 1h \
                  --wait-timeout 60s";
    ok(spotload(&moto, state, launch), launch);
    let after = unix_now();
    let instances = live_instances(&ec2, "ext").await;
    assert_eq!(instances.len(), 4);
    let launched = expiry_of(&instances[0]);
    for instance in &instances {
        let id = instance.instance_id().unwrap_or_default();
        let expiry = expiry_of(instance);
        assert_eq!(expiry, launched, "one expiry for the fleet: {id}");
        assert!(
            (before + 3600..=after + 3600).contains(&expiry.unix()),
            "{id}: {expiry} is not launch + 1h"
        );
        // The request asked for what the timer needs; moto keeps it.
        let options = instance.metadata_options().expect("metadata options");
        assert_eq!(
            options.instance_metadata_tags(),
            Some(&InstanceMetadataTagsState::Enabled),
            "{id}"
        );
        assert_eq!(
            options.http_tokens(),
            Some(&HttpTokensState::Required),
            "{id}"
        );
        let script = user_data(&ec2, id).await;
        assert!(script.contains(TIMER_MARKER), "{id}");
        assert!(
            script.contains(&format!(
                "SPOTLOAD_EXPIRES_AT={launched} /opt/spotload/expiry/spotload-expiry check"
            )),
            "{id}: {script}"
        );
    }

    let table = ok(spotload(&moto, state, "status --fleet ext"), "status");
    check_status_table(&table, launched);
    check_status_json(&moto, state, launched, 3600);

    let extend = "extend --fleet ext --ttl 5h";
    let t0 = unix_now();
    let out = ok(spotload(&moto, state, extend), extend);
    let t1 = unix_now();
    let moved = out
        .split("self-destruct moved to ")
        .nth(1)
        .and_then(|rest| Expiry::parse(rest.get(..20)?))
        .unwrap_or_else(|| panic!("no new expiry in {out}"));
    assert!(
        (t0 + 5 * 3600..=t1 + 5 * 3600).contains(&moved.unix()),
        "{out}"
    );
    assert!(out.contains("on all 4 instances"), "{out}");
    for instance in live_instances(&ec2, "ext").await {
        assert_eq!(expiry_of(&instance), moved);
    }
    check_status_json(&moto, state, moved, 5 * 3600);

    // Bounded like launch's --ttl, and nothing changes then.
    for (args, message) in [
        (
            "extend --fleet ext --ttl 8d",
            "--ttl 8d: must be between 1m and 7d",
        ),
        (
            "extend --fleet ext --ttl 30s",
            "--ttl 30s: must be between 1m and 7d",
        ),
        (
            "extend --fleet ext --ttl soon",
            "--ttl \"soon\": give a duration like",
        ),
        (
            "extend --fleet gone --ttl 1h",
            "fleet gone in us-east-1 has no instances",
        ),
    ] {
        let line = error_line(&spotload(&moto, state, args));
        assert!(line.contains(message), "{args}: {line}");
    }
    for instance in live_instances(&ec2, "ext").await {
        assert_eq!(expiry_of(&instance), moved);
    }
    ok(spotload(&moto, state, "destroy --fleet ext"), "destroy");
    assert!(live_instances(&ec2, "ext").await.is_empty());
}

/// Time left per instance and for the fleet, and cost per role and total.
fn check_status_table(table: &str, expiry: Expiry) {
    let lines: Vec<&str> = table.lines().collect();
    let header = lines.get(1).copied().unwrap_or_default();
    assert!(header.contains("  EXPIRES  COST"), "{table}");
    for line in lines.iter().filter(|l| l.contains(" i-")) {
        assert!(
            line.contains(" in 59m ") || line.contains(" in 1h "),
            "{line}\n{table}"
        );
    }
    assert!(
        table.contains(&format!("self-destruct: {expiry} (in ")),
        "{table}"
    );
    assert!(table.contains(") on all 4 instances"), "{table}");
    assert!(
        table.contains("spotload extend --fleet ext --ttl DURATION"),
        "{table}"
    );
    assert!(
        table.contains("cost, estimated from the spot price history"),
        "{table}"
    );
    for (role, count) in [("webserver", 1), ("master", 1), ("worker", 2), ("total", 4)] {
        let row = lines
            .iter()
            .find(|l| l.starts_with(&format!("{role} ")) && !l.contains(" i-"))
            .unwrap_or_else(|| panic!("no {role} cost row in\n{table}"));
        let cells: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(cells.len(), 5, "{row}");
        assert_eq!(cells[1], count.to_string(), "{row}");
    }
}

/// Per instance: the tag, the seconds left, and the cost so far and at
/// expiry from moto's constant spot price.
fn check_status_json(moto: &Moto, state: &Path, expiry: Expiry, ttl: i64) {
    let asked = unix_now();
    let out = ok(
        spotload(moto, state, "status --fleet ext --json"),
        "status --json",
    );
    let answered = unix_now();
    let rows: Vec<serde_json::Value> = serde_json::from_str(&out).expect("JSON");
    assert_eq!(rows.len(), 4, "{out}");
    for row in rows {
        assert_eq!(row["expires_at"], expiry.to_string(), "{row}");
        let left = row["seconds_left"].as_i64().expect("seconds_left");
        assert!(
            (expiry.unix() - answered..=expiry.unix() - asked).contains(&left),
            "{row}"
        );
        assert!(left <= ttl, "{row}");
        let launched = row["launched_at"].as_i64().expect("launched_at");
        assert_eq!(row["hourly_price_usd"].as_f64(), Some(MOTO_PRICE), "{row}");
        let so_far = row["estimated_cost_usd"].as_f64().expect("cost so far");
        let up = |now: i64| MOTO_PRICE * (now - launched) as f64 / 3600.0;
        assert!(
            so_far >= up(asked) - 1e-12 && so_far <= up(answered) + 1e-12,
            "{row}"
        );
        // So far plus the current price until the expiry: launch to expiry.
        let projected = row["projected_cost_usd"].as_f64().expect("projection");
        let whole = MOTO_PRICE * (expiry.unix() - launched) as f64 / 3600.0;
        assert!(
            (projected - whole).abs() < 1e-12,
            "{projected} vs {whole}: {row}"
        );
    }
}

/// Workers from a type list come from an instant EC2 Fleet through a launch
/// template: the template asks for the same metadata options, and its
/// instances carry the expiry tag too.
#[tokio::test]
async fn fleet_workers_carry_the_expiry_and_the_metadata_options() {
    let moto = Moto::start();
    let scratch = TempDir::new("expiry-fleet-state");
    let ec2 = moto.ec2();
    let launch = "launch --fleet mix --workers 2 --worker-type t3.micro,t3.small \
                  --allow-cidr 198.51.100.7/32 --ttl 3h --wait-timeout 60s";
    ok(spotload(&moto, scratch.path(), launch), launch);
    let instances = live_instances(&ec2, "mix").await;
    assert_eq!(instances.len(), 4);
    let expiry = expiry_of(&instances[0]);
    for instance in &instances {
        assert_eq!(expiry_of(instance), expiry, "{:?}", instance.instance_id());
    }
    let data = template_data(&ec2, "spotload-mix-worker").await;
    let options = data.metadata_options().expect("template metadata options");
    assert_eq!(
        options.instance_metadata_tags(),
        Some(&LaunchTemplateInstanceMetadataTagsState::Enabled)
    );
    assert_eq!(
        options.http_tokens(),
        Some(&LaunchTemplateHttpTokensState::Required)
    );
    ok(
        spotload(&moto, scratch.path(), "destroy --fleet mix"),
        "destroy",
    );
}
