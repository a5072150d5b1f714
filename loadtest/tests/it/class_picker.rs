//! Choosing the user classes of a run, as Locust does, with the
//! `two_classes` load test (Reader and Browser, weighted 3:1) against
//! nginx, whose access log tells which classes sent requests (each user
//! asks for `/users/CLASS/INDEX`): names after `loadtest master`'s flags
//! run only those classes; `--class-picker` in the page (headless
//! Chromium) starts a run with the classes ticked; without it, a form's
//! `user_classes` are ignored, as Locust ignores them; unknown names are
//! refused with exit 2, listing the load test's.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use harness::webdriver::Browser;
use harness::*;

const WAIT: &[&str] = &["--wait", "0.2:0.2"];

fn two_classes() -> Loadtest {
    Loadtest::new(env!("CARGO_BIN_EXE_two_classes"))
}

fn target() -> Nginx {
    Nginx::start(NginxOptions {
        any_path: Some("/users/".into()),
        ..NginxOptions::default()
    })
}

/// The distinct users per class nginx saw.
fn users_by_class(nginx: &Nginx) -> BTreeMap<String, BTreeSet<String>> {
    let mut seen: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in nginx.access_log_now() {
        let mut parts = line.path.trim_start_matches("/users/").split('/');
        if let (Some(class), Some(user)) = (parts.next(), parts.next()) {
            seen.entry(class.to_string())
                .or_default()
                .insert(user.to_string());
        }
    }
    seen
}

#[test]
fn class_names_after_the_flags_run_only_those_classes() {
    let nginx = target();
    let dir = TempDir::new("classes-positional");
    let url = nginx.url();
    let args = [
        "--headless",
        "-u",
        "4",
        "-r",
        "4",
        "-t",
        "6s",
        "--host",
        &url,
        "Browser",
    ];
    let (mut master, port) = two_classes().master(&dir, &args);
    let _worker = two_classes().worker(&dir, port, WAIT);
    // The positive signal: all four users ran, and each was a Browser.
    let seen = wait_until(Duration::from_secs(40), "four users' requests", || {
        let seen = users_by_class(&nginx);
        let users: usize = seen.values().map(BTreeSet::len).sum();
        (users >= 4).then_some(seen)
    });
    let code = exit_code(&mut master, Duration::from_secs(40));
    assert_eq!(code, 0, "{}", master.logs());
    let after = users_by_class(&nginx);
    println!("users per class in nginx's log: {after:?} (when four had run: {seen:?})");
    assert_eq!(
        after.keys().collect::<Vec<_>>(),
        vec!["Browser"],
        "only Browser users sent requests"
    );
    assert_eq!(after["Browser"].len(), 4, "all four users were Browsers");
}

#[test]
fn unknown_class_names_are_refused_listing_the_known_ones() {
    let dir = TempDir::new("classes-unknown");
    let port = free_port().to_string();
    let command = [
        "master",
        "--master-bind-host",
        "127.0.0.1",
        "--master-bind-port",
        &port,
        "--headless",
        "-u",
        "1",
        "Browser",
        "Writer",
    ];
    let mut master = Process::spawn(
        &unique_name("loadtest-master"),
        two_classes().command(&command),
        dir.path(),
    );
    let code = exit_code(&mut master, Duration::from_secs(20));
    assert_eq!(code, 2, "{}", master.logs());
    assert!(
        master
            .stderr()
            .contains("Writer not in this load test, whose user classes are Reader, Browser"),
        "{}",
        master.stderr()
    );
    assert!(
        !master.stderr().contains("listening"),
        "{}",
        master.stderr()
    );
}

#[test]
fn the_class_picker_in_the_page_starts_a_run_with_one_class() {
    let nginx = target();
    let dir = TempDir::new("class-picker-ui");
    let url = nginx.url();
    let (master, port, web) =
        two_classes().master_with_ui(&dir, &["--host", &url, "--class-picker"]);
    let _worker = two_classes().worker(&dir, port, WAIT);
    let api = Api::new(&web);
    wait_until(Duration::from_secs(30), "the worker to join", || {
        (api.requests().worker_count == 1).then_some(())
    });
    let offered = api.requests().class_picker.expect("the picker's classes");
    let names: Vec<&str> = offered.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, vec!["Reader", "Browser"]);

    let session = Browser::open(&web);
    let reader = "#class-picker-boxes input[value=Reader]";
    let browser = "#class-picker-boxes input[value=Browser]";
    session
        .wait_for(Duration::from_secs(10), "a checkbox per class", |s| {
            let boxes = s.find_all("#class-picker-boxes input[name=user_classes]")?;
            let shown = s.is_displayed(&s.find(reader)?)?;
            Ok((boxes.len() == 2 && shown).then_some(()))
        })
        .unwrap_or_else(|e| panic!("{e}"));
    let ticked = |css: &str| {
        session
            .execute(
                "return document.querySelector(arguments[0]).checked;",
                &[serde_json::json!(css)],
            )
            .unwrap_or_else(|e| panic!("read {css}: {e}"))
    };
    assert_eq!(ticked(reader), true, "every class is ticked at first");
    let element = session.find(reader).expect("Reader's box");
    session.click(&element).expect("untick Reader");
    assert_eq!(ticked(reader), false);
    assert_eq!(ticked(browser), true);
    session.fill("#user_count", "2").expect("users");
    session.fill("#spawn_rate", "2").expect("rate");
    let start = session.find("#start-button").expect("Start");
    session.click(&start).expect("click Start");

    // The positive signal: the worker runs both users, and both asked
    // nginx; only then can the log say no Reader asked.
    let counts = wait_until(Duration::from_secs(30), "2 users running", || {
        let stats = api.requests();
        let worker = stats.workers.first()?.clone();
        (worker.user_count == 2).then_some((worker.user_classes_count, stats.user_classes))
    });
    assert_eq!(
        counts.1,
        vec!["Browser".to_string()],
        "/stats/requests names the class chosen"
    );
    assert_eq!(counts.0.get("Browser"), Some(&2), "{counts:?}");
    let seen = wait_until(Duration::from_secs(20), "both users' requests", || {
        let seen = users_by_class(&nginx);
        (seen.get("Browser").map_or(0, BTreeSet::len) == 2).then_some(seen)
    });
    api.stop();
    println!("picked Browser: the worker ran {counts:?}; nginx saw {seen:?}");
    assert!(
        !seen.contains_key("Reader"),
        "no Reader user sent a request: {seen:?}\n{}",
        master.logs()
    );
    assert_eq!(
        session.script_errors(),
        serde_json::json!([]),
        "script errors in the page"
    );
}

#[test]
fn without_the_picker_a_forms_user_classes_are_ignored_as_locust_does() {
    let nginx = target();
    let dir = TempDir::new("classes-no-picker");
    let url = nginx.url();
    let (_master, port, web) = two_classes().master_with_ui(&dir, &["--host", &url]);
    let _worker = two_classes().worker(&dir, port, WAIT);
    let api = Api::new(&web);
    wait_until(Duration::from_secs(30), "the worker to join", || {
        (api.requests().worker_count == 1).then_some(())
    });
    assert_eq!(api.requests().class_picker, None, "no picker offered");
    let form = [
        ("user_count", "4"),
        ("spawn_rate", "4"),
        ("user_classes", "Browser"),
    ];
    let reply = http_request("POST", &format!("{web}/swarm"), &[], Some(&form[..]))
        .unwrap_or_else(|e| panic!("POST /swarm: {e}"));
    assert!(reply.body.contains("\"success\":true"), "{reply:?}");
    // Both classes run, 3:1 by weight, as without the field.
    let counts = wait_until(Duration::from_secs(30), "4 users running", || {
        let stats = api.requests();
        let worker = stats.workers.first()?.clone();
        (worker.user_count == 4).then_some(worker.user_classes_count)
    });
    api.stop();
    println!("user_classes=Browser without --class-picker: the worker ran {counts:?}");
    assert_eq!(counts.get("Reader"), Some(&3), "{counts:?}");
    assert_eq!(counts.get("Browser"), Some(&1), "{counts:?}");
}
