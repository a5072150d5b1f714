//! A run's shape on the master without sockets: a test plan followed and
//! ended, and the classes a run chooses.

use super::{config, Fleet, LIMIT};
use crate::master::{MasterConfig, MasterError, RunState, SwarmRequest, UserClass};
use crate::protocol::ToWorker;

fn request(user_count: u64, classes: Option<&[&str]>) -> SwarmRequest {
    SwarmRequest {
        user_count,
        spawn_rate: 1000.0,
        host: None,
        run_time: None,
        co_mitigation: None,
        user_classes: classes.map(|names| names.iter().map(ToString::to_string).collect()),
        arrival_rate: None,
    }
}

fn two_classes() -> MasterConfig {
    let mut config = config();
    config.classes = vec![
        UserClass {
            name: "Reader".into(),
            weight: 3,
        },
        UserClass {
            name: "Browser".into(),
            weight: 1,
        },
    ];
    config
}

/// The (Reader, Browser) counts of the next spawn to `w1`.
async fn next_spawn(fleet: &mut Fleet) -> (u64, u64) {
    let (_, message) = fleet
        .expect(|to, m| to == "w1" && matches!(m, ToWorker::Spawn(_)))
        .await;
    let ToWorker::Spawn(order) = message else {
        unreachable!("expect returned a spawn");
    };
    let count = |name: &str| order.user_classes_count.get(name).copied();
    assert_eq!(
        order.user_classes_count.len(),
        2,
        "every class is named, the unchosen with 0: {:?}",
        order.user_classes_count
    );
    (
        count("Reader").unwrap_or(99),
        count("Browser").unwrap_or(99),
    )
}

#[tokio::test]
async fn a_test_plan_moves_the_users_and_ends_the_run() {
    let mut config = config();
    config.test_plan = Some("2,1s;2,1s;0,0".parse().expect("plan"));
    let mut fleet = Fleet::start(config);
    fleet.join("w1").await;
    let before = fleet.feeder.snapshot().await;
    let plan = before.test_plan.expect("the plan shows before the run");
    assert_eq!((plan.step, plan.seconds), (None, 2));
    // The form's users are the plan's business: 50 is ignored.
    let message = fleet
        .handle()
        .swarm(request(50, None))
        .await
        .expect("starts");
    assert!(message.contains("test plan 2,1;2,1;0,0"), "{message}");
    let edit = fleet.handle().swarm(request(5, None)).await;
    assert!(
        matches!(&edit, Err(MasterError::Invalid(m)) if m.contains("cannot be edited")),
        "{edit:?}"
    );
    let mut seen = Vec::new();
    while seen.last() != Some(&2) {
        let (_, message) = fleet.expect(|_, m| matches!(m, ToWorker::Spawn(_))).await;
        if let ToWorker::Spawn(order) = message {
            seen.push(order.user_count());
        }
    }
    assert_eq!(seen, vec![1, 2], "one user at a time up to the step's 2");
    let during = fleet.wait_for("the plan's hold", |s| {
        s.test_plan.as_ref().and_then(|p| p.step) == Some(1)
    });
    let during = during.await;
    assert_eq!(during.target_user_count, 2);
    fleet.expect(|_, m| matches!(m, ToWorker::Stop)).await;
    assert!(
        fleet
            .handle()
            .wait_for_state(|s| s == RunState::Stopped, LIMIT)
            .await
    );
    let after = fleet.feeder.snapshot().await;
    let plan = after.test_plan.expect("the plan still shows");
    assert!(plan.finished, "{plan:?}");
    assert!(
        plan.elapsed >= 2.0 && plan.elapsed < 2.0 + LIMIT.as_secs_f64(),
        "{plan:?}"
    );
}

#[tokio::test]
async fn the_class_picker_chooses_and_refuses_unknown_names() {
    let mut config = two_classes();
    config.class_picker = true;
    let mut fleet = Fleet::start(config);
    fleet.join("w1").await;
    let unknown = fleet.handle().swarm(request(4, Some(&["Writer"]))).await;
    assert!(
        matches!(&unknown, Err(MasterError::Invalid(m)) if m.contains("Writer not in this load test, whose user classes are Reader, Browser")),
        "{unknown:?}"
    );
    fleet
        .handle()
        .swarm(request(4, Some(&["Browser"])))
        .await
        .expect("starts");
    assert_eq!(next_spawn(&mut fleet).await, (0, 4));
    let snapshot = fleet.feeder.snapshot().await;
    assert_eq!(snapshot.user_classes, vec!["Browser".to_string()]);
    assert_eq!(snapshot.class_picker.map(|c| c.len()), Some(2));
    // An edit without classes keeps the run's, as Locust does.
    fleet.handle().swarm(request(8, None)).await.expect("edits");
    assert_eq!(next_spawn(&mut fleet).await, (0, 8));
}

#[tokio::test]
async fn without_the_picker_a_forms_classes_are_ignored() {
    let mut fleet = Fleet::start(two_classes());
    fleet.join("w1").await;
    fleet
        .handle()
        .swarm(request(4, Some(&["Browser", "Writer"])))
        .await
        .expect("ignored, as Locust ignores them");
    assert_eq!(next_spawn(&mut fleet).await, (3, 1));
    assert_eq!(fleet.feeder.snapshot().await.class_picker, None);
}

#[tokio::test]
async fn classes_chosen_at_start_share_the_users_by_their_weights() {
    let mut config = two_classes();
    config.classes.push(UserClass {
        name: "Writer".into(),
        weight: 1,
    });
    config.chosen_classes = vec!["Writer".into(), "Browser".into()];
    let mut fleet = Fleet::start(config);
    fleet.join("w1").await;
    fleet
        .handle()
        .swarm(request(4, None))
        .await
        .expect("starts");
    let (_, message) = fleet.expect(|_, m| matches!(m, ToWorker::Spawn(_))).await;
    let ToWorker::Spawn(order) = message else {
        unreachable!("expect returned a spawn");
    };
    let counts: Vec<(&str, u64)> = order
        .user_classes_count
        .iter()
        .map(|(k, v)| (k.as_str(), *v))
        .collect();
    assert_eq!(counts, vec![("Browser", 2), ("Reader", 0), ("Writer", 2)]);
}
