//! Workers run exactly the users per class their master dispatched, under
//! `loadtest master` and under a stock Locust master: two user classes
//! weighted 3:1 (the `two_classes` load test), on two workers, ramped one
//! user a second — a ramp goose alone would fill with its first class only,
//! as it starts each added user from the top of its weighted list. Checked
//! from what each worker reports (its `spawning_complete` and stats, as the
//! master shows them) and from nginx's log: each user requests
//! `/users/CLASS/INDEX`, and the User-Agent names the worker.
//!
//! Also: the response sizes the master shows are nginx's `$body_bytes_sent`.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use harness::*;
use swarm::api::SwarmForm;
use swarm::master::{split_by_weight, UserClass};

const USERS: u64 = 6;

fn two_classes() -> Loadtest {
    Loadtest::new(env!("CARGO_BIN_EXE_two_classes"))
}

fn classes() -> Vec<UserClass> {
    vec![
        UserClass {
            name: "Reader".into(),
            weight: 3,
        },
        UserClass {
            name: "Browser".into(),
            weight: 1,
        },
    ]
}

/// Per worker (its node id, from the User-Agent) and class: the distinct
/// users nginx saw.
fn users_in_log(nginx: &Nginx) -> BTreeMap<(String, String), BTreeSet<String>> {
    let mut seen: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    for line in nginx.access_log_now() {
        let mut parts = line.path.trim_start_matches("/users/").split('/');
        let (Some(class), Some(user)) = (parts.next(), parts.next()) else {
            continue;
        };
        let node = line
            .user_agent
            .rsplit_once('(')
            .map_or("", |(_, id)| id.trim_end_matches(')'))
            .to_string();
        seen.entry((node, class.to_string()))
            .or_default()
            .insert(user.to_string());
    }
    seen
}

/// Users per class over all workers, from nginx's log.
fn class_totals(seen: &BTreeMap<(String, String), BTreeSet<String>>) -> BTreeMap<String, u64> {
    let mut totals = BTreeMap::new();
    for ((_, class), users) in seen {
        *totals.entry(class.clone()).or_insert(0) += users.len() as u64;
    }
    totals
}

fn target() -> Nginx {
    Nginx::start(NginxOptions {
        any_path: Some("/users/".into()),
        ..NginxOptions::default()
    })
}

fn swarm_form(users: u64, host: &str) -> SwarmForm {
    SwarmForm {
        user_count: users,
        spawn_rate: 1.0,
        host: Some(host.to_string()),
        run_time: None,
        co_mitigation: None,
        arrival_rate: None,
    }
}

#[test]
fn our_master_gets_exactly_the_users_per_class_it_dispatched() {
    let nginx = target();
    let dir = TempDir::new("classes-ours");
    let (_master, port, web) = two_classes().master_with_ui(&dir, &[]);
    let wait = ["--wait", "0.1:0.1"];
    let mut w1 = two_classes().worker(&dir, port, &wait);
    let mut w2 = two_classes().worker(&dir, port, &wait);
    let api = Api::new(&web);
    wait_until(Duration::from_secs(30), "both workers to join", || {
        (api.requests().workers.len() == 2).then_some(())
    });
    let answer = api.swarm_form(&swarm_form(USERS, &nginx.url()));
    assert!(answer.success, "{answer:?}");
    // Each worker's share, 3 users, split 3:1 by weight.
    let share = split_by_weight(USERS / 2, &classes());
    let reported = wait_until(Duration::from_secs(40), "every user spawned", || {
        let workers = api.requests().workers;
        let all: u64 = workers
            .iter()
            .flat_map(|w| w.user_classes_count.values())
            .sum();
        (all == USERS).then_some(workers)
    });
    for worker in &reported {
        assert_eq!(
            worker.user_classes_count, share,
            "worker {} reported what it was dispatched",
            worker.id
        );
    }
    // nginx sees exactly those users, worker by worker.
    let seen = wait_until(Duration::from_secs(20), "every user's requests", || {
        let seen = users_in_log(&nginx);
        (class_totals(&seen).values().sum::<u64>() == USERS).then_some(seen)
    });
    api.stop();
    for worker in &reported {
        for (class, want) in &worker.user_classes_count {
            let users = seen
                .get(&(worker.id.clone(), class.clone()))
                .map_or(0, |u| u.len() as u64);
            assert_eq!(
                users, *want,
                "{class} users of {} in nginx's log",
                worker.id
            );
        }
    }
    println!("our master: each worker reported {share:?}; nginx saw {seen:?}");
    for worker in [&mut w1, &mut w2] {
        assert!(
            !worker.logs().contains("users running of the"),
            "a class lacked users:\n{}",
            worker.logs()
        );
    }
}

/// A Locust locustfile with the same two classes (its own tasks never run:
/// our workers run the goose scenarios of the same names).
fn locustfile(dir: &TempDir, host: &str) -> std::path::PathBuf {
    let path = dir.path().join("locustfile.py");
    let mut source = String::from("from locust import FastHttpUser, constant, task\n");
    for (class, weight) in [("Reader", 3), ("Browser", 1)] {
        source.push_str(&format!(
            r#"

class {class}(FastHttpUser):
    host = "{host}"
    weight = {weight}
    wait_time = constant(0.1)

    @task
    def visit(self):
        self.client.get("/users/{class}/locust")
"#
        ));
    }
    std::fs::write(&path, source).expect("locustfile written");
    path
}

/// `{"Browser": 2, "Reader": 4} (6 total users)` after Locust's "All users
/// spawned: ".
fn spawned_in_log(logs: &str) -> Option<BTreeMap<String, u64>> {
    let line = logs
        .lines()
        .rev()
        .find(|l| l.contains("All users spawned: "))?;
    let json = line.split("All users spawned: ").nth(1)?;
    let json = json.split(" (").next()?;
    serde_json::from_str(json).ok()
}

#[test]
fn a_locust_master_gets_exactly_the_users_per_class_it_dispatched() {
    let nginx = target();
    let dir = TempDir::new("classes-locust");
    let locustfile = locustfile(&dir, &nginx.url());
    let (bind_port, web_port) = (free_port(), free_port());
    let mut locust = Locust::master(&locustfile, bind_port, web_port, &[]);
    let wait = ["--wait", "0.1:0.1"];
    let _w1 = two_classes().worker(&dir, bind_port, &wait);
    let _w2 = two_classes().worker(&dir, bind_port, &wait);
    locust
        .wait_for_workers(2, Duration::from_secs(30))
        .expect("both workers joined Locust");
    let api = locust.api();
    let answer = api.swarm_form(&swarm_form(USERS, &nginx.url()));
    assert!(answer.success, "{answer:?}");
    // Locust's master logs the users per class its workers reported, once
    // they add up to what it dispatched.
    let reported = wait_until(
        Duration::from_secs(40),
        "Locust's all users spawned",
        || spawned_in_log(&locust.logs()),
    );
    let seen = wait_until(Duration::from_secs(20), "every user's requests", || {
        let seen = users_in_log(&nginx);
        (class_totals(&seen).values().sum::<u64>() == USERS).then_some(seen)
    });
    api.stop();
    let in_log = class_totals(&seen);
    println!("Locust master: workers reported {reported:?}; nginx saw {seen:?}");
    assert_eq!(in_log, reported, "what ran is what the workers reported");
    assert_eq!(reported.values().sum::<u64>(), USERS);
    // Locust's dispatch of 6 users 3:1 (goose alone, ramped one user at a
    // time, would have started Readers only).
    let browsers = reported.get("Browser").copied().unwrap_or(0);
    assert!(
        (1..=2).contains(&browsers),
        "Browser users: {reported:?}\n{}",
        locust.process().logs()
    );
}

#[test]
fn avg_size_is_nginx_s_body_bytes_sent() {
    let nginx = Nginx::start(NginxOptions::default());
    let dir = TempDir::new("sizes");
    let prefix = dir.path().join("run");
    let prefix = prefix.to_str().expect("utf-8 temp path");
    let url = nginx.url();
    let args = [
        "--headless",
        "-u",
        "4",
        "-r",
        "4",
        "-t",
        "5s",
        "--expect-workers",
        "2",
        "--host",
        &url,
        "--csv",
        prefix,
    ];
    let (mut master, port) = loadtest!().master(&dir, &args);
    let _w1 = loadtest!().worker(&dir, port, &["--wait", "0.002:0.002"]);
    let _w2 = loadtest!().worker(&dir, port, &["--wait", "0.002:0.002"]);
    let code = exit_code(&mut master, Duration::from_secs(60));
    assert_eq!(code, 0, "{}", master.logs());
    let total = csv_row(&dir.path().join("run_stats.csv"), "Aggregated");
    let size = num(&total, "Average Content Size");
    let requests = num(&total, "Request Count");
    let log = nginx.access_log();
    let bytes: u64 = log.iter().map(|l| l.body_bytes).sum();
    let nginx_avg = bytes as f64 / log.len() as f64;
    println!(
        "Avg size: master {size} bytes over {requests} requests; nginx $body_bytes_sent {nginx_avg} over {} lines",
        log.len()
    );
    assert!(requests > 100.0, "too little load: {requests}");
    assert!(nginx_avg > 0.0, "nginx logged no body bytes");
    assert_close(size, nginx_avg, 0.001, "Avg size vs nginx $body_bytes_sent");
}
