//! The gate's tests: seats, parks, pauses, lifelines and the lifecycle
//! of users whose seats come and go.

use super::*;

fn gate_of(classes: usize) -> Gate {
    let gate = Gate::default();
    if let Ok(mut seats) = gate.0.classes.lock() {
        seats.extend((0..classes).map(|_| Seats::default()));
    }
    gate
}

async fn noop(_user: &mut GooseUser) -> TransactionResult {
    Ok(())
}

/// The gate tells the tap when it parks a user, so goose's copies for
/// the user's next pass (the park counts into its cadence) are not
/// back-filled as a stall of the target; a user never parked is.
#[tokio::test]
async fn a_parked_user_s_next_pass_is_not_back_filled() {
    use goose::config::GooseConfiguration;
    use goose::logger::GooseLog;
    use goose::metrics::GooseCoordinatedOmissionMitigation;
    use goose::prelude::{scenario, transaction, Transaction};

    let tap = Tap::start();
    let gate = Gate::default();
    let scenario = gate.guard(
        scenario!("S").register_transaction(transaction!(noop)),
        &tap,
    );
    let function = scenario.transactions[0].function.clone();
    let mut config = GooseConfiguration::default();
    config.co_mitigation = Some(GooseCoordinatedOmissionMitigation::Average);
    let base = reqwest::Url::parse("http://127.0.0.1/").expect("a URL");
    let mut parked = GooseUser::single(base.clone(), &config).expect("a user");
    let mut seated = GooseUser::single(base, &config).expect("a user");
    seated.weighted_users_index = 1;
    gate.set_targets(Some(&[1]));
    function(&mut seated).await.expect("runs");
    function(&mut parked).await.expect("parks, then returns");
    for user in [&parked, &seated] {
        let mut copy = crate::worker::tap::tests::request(user.weighted_users_index, 10, 1_000);
        copy.coordinated_omission_elapsed = 100;
        copy.user_cadence = 10;
        let logger = user.logger.as_ref().expect("attached to the tap");
        logger.send(Some(GooseLog::Request(copy))).expect("sent");
    }
    let report = tap.take(true);
    assert_eq!(
        report.stats_total.backfilled, 9,
        "only the seated user's stall is back-filled (89, 79 ... 9 ms)"
    );
}

/// A user's lifeline is held from its first transaction until goose
/// drops the user: then the gate knows it has ended.
#[tokio::test]
async fn the_gate_knows_when_its_users_have_ended() {
    use goose::config::GooseConfiguration;
    use goose::prelude::{scenario, transaction, Transaction};

    let tap = Tap::start();
    let gate = Gate::default();
    let scenario = gate.guard(
        scenario!("S").register_transaction(transaction!(noop)),
        &tap,
    );
    let function = scenario.transactions[0].function.clone();
    let base = reqwest::Url::parse("http://127.0.0.1/").expect("a URL");
    let mut user = GooseUser::single(base, &GooseConfiguration::default()).expect("a user");
    assert_eq!(gate.users_alive(), 0, "not seen yet");
    function(&mut user).await.expect("runs");
    function(&mut user).await.expect("runs again");
    assert_eq!(gate.users_alive(), 1);
    assert!(!gate.wait_users_ended(Duration::from_millis(20)).await);
    drop(user);
    assert!(gate.wait_users_ended(Duration::from_secs(5)).await);
}

async fn long_pause(_user: &mut GooseUser) -> TransactionResult {
    pause(Duration::from_secs(60)).await;
    Ok(())
}

/// A pause inside a transaction (pacing's) ends as soon as the user
/// loses its seat, or the gate closes: a drain does not wait it out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pause_ends_when_the_seat_goes_or_the_gate_closes() {
    use goose::config::GooseConfiguration;
    use goose::prelude::{scenario, transaction, Transaction};

    let tap = Tap::start();
    let gate = Gate::default();
    let scenario = gate.guard(
        scenario!("S").register_transaction(transaction!(long_pause)),
        &tap,
    );
    let function = scenario.transactions[0].function.clone();
    let base = reqwest::Url::parse("http://127.0.0.1/").expect("a URL");
    let started = tokio::time::Instant::now();
    for end in ["seat", "gate"] {
        gate.open();
        gate.set_targets(Some(&[1]));
        let mut user =
            GooseUser::single(base.clone(), &GooseConfiguration::default()).expect("a user");
        let function = function.clone();
        let paused = tokio::spawn(async move { function(&mut user).await.is_ok() });
        // The user is in its pause once it is counted in flight.
        while gate.in_flight() == 0 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        if end == "seat" {
            gate.set_targets(Some(&[0]));
        } else {
            assert!(gate.close_and_drain(Duration::from_secs(10)).await);
        }
        assert!(paused.await.expect("the transaction ended"), "{end}");
    }
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the pauses ended early: {:?}",
        started.elapsed()
    );
}

#[test]
fn users_take_their_class_s_seats_and_give_them_up() {
    let gate = gate_of(2);
    // No seats: everyone runs.
    assert_eq!(gate.0.admit(0, 7), Admission::Run);
    gate.set_targets(Some(&[2, 1]));
    let admitted: Vec<Admission> = (0..4).map(|u| gate.0.admit(0, u)).collect();
    assert_eq!(
        admitted,
        [
            Admission::Run,
            Admission::Run,
            Admission::Park,
            Admission::Park
        ]
    );
    assert_eq!(gate.0.admit(1, 10), Admission::Run);
    assert_eq!(gate.0.admit(1, 11), Admission::Park);
    // Fewer seats: the newest seated user loses its seat at once, and
    // no other user of the class can take it.
    gate.set_targets(Some(&[1, 1]));
    assert_eq!(gate.occupancy()[0].1, 1, "one seat left, taken");
    assert_eq!(gate.0.admit(0, 1), Admission::Park);
    assert_eq!(gate.0.admit(0, 2), Admission::Park);
    assert_eq!(gate.0.admit(0, 0), Admission::Run);
    gate.0.closed.store(true, Ordering::SeqCst);
    assert_eq!(gate.0.admit(0, 1), Admission::Closed);
}
