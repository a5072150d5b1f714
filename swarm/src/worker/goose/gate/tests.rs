//! The gate's tests: seats, parks, pauses, lifelines and the lifecycle
//! of users whose seats come and go.

use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use goose::config::GooseConfiguration;
use goose::prelude::{scenario, transaction, Transaction, TransactionResult};

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
    use goose::logger::GooseLog;
    use goose::metrics::GooseCoordinatedOmissionMitigation;

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
        let mut copy =
            crate::worker::goose::tally::tests::request(user.weighted_users_index, 10, 1_000);
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
    // Fewer seats: the newest seated user loses its seat at once (it
    // stops, once, then parks), and no other user of the class can take
    // it.
    gate.set_targets(Some(&[1, 1]));
    assert_eq!(gate.occupancy()[0].1, 1, "one seat left, taken");
    assert_eq!(gate.0.admit(0, 1), Admission::Retire);
    assert_eq!(gate.0.admit(0, 1), Admission::Park);
    assert_eq!(gate.0.admit(0, 2), Admission::Park);
    assert_eq!(gate.0.admit(0, 0), Admission::Run);
    // A seat again: the user that stopped starts anew; one that never
    // ran just runs.
    gate.set_targets(Some(&[3, 1]));
    assert_eq!(gate.0.admit(0, 1), Admission::Rejoin);
    assert_eq!(gate.0.admit(0, 2), Admission::Run);
    gate.0.closed.store(true, Ordering::SeqCst);
    assert_eq!(gate.0.admit(0, 1), Admission::Closed);
}

static STARTS: AtomicUsize = AtomicUsize::new(0);
static RUNS: AtomicUsize = AtomicUsize::new(0);
static STOPS: AtomicUsize = AtomicUsize::new(0);

async fn log_in(_user: &mut GooseUser) -> TransactionResult {
    STARTS.fetch_add(1, Ordering::SeqCst);
    Ok(())
}

async fn browse(_user: &mut GooseUser) -> TransactionResult {
    RUNS.fetch_add(1, Ordering::SeqCst);
    Ok(())
}

async fn log_out(_user: &mut GooseUser) -> TransactionResult {
    STOPS.fetch_add(1, Ordering::SeqCst);
    Ok(())
}

/// (log-ins, tasks, log-outs) so far.
fn counts() -> (usize, usize, usize) {
    (
        STARTS.load(Ordering::SeqCst),
        RUNS.load(Ordering::SeqCst),
        STOPS.load(Ordering::SeqCst),
    )
}

/// A seat is a Locust user's life: a user whose seat goes logs out once
/// at its next transaction and parks; given a seat back, it logs in anew
/// before its next task; goose's stop logs out a user whose seat went
/// and who had not stopped yet, and not one that had.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_stops_when_its_seat_goes_and_starts_anew_when_it_comes_back() {
    let tap = Tap::start();
    let gate = Gate::default();
    let scenario = gate.guard(
        scenario!("Member")
            .register_transaction(transaction!(log_in).set_on_start())
            .register_transaction(transaction!(browse))
            .register_transaction(transaction!(log_out).set_on_stop()),
        &tap,
    );
    let [start, task, stop] = [0, 1, 2].map(|i| scenario.transactions[i].function.clone());
    let base = reqwest::Url::parse("http://127.0.0.1/").expect("a URL");
    let mut user = GooseUser::single(base, &GooseConfiguration::default()).expect("a user");
    gate.set_targets(Some(&[1]));
    start(&mut user).await.expect("logs in");
    task(&mut user).await.expect("browses");
    assert_eq!(counts(), (1, 1, 0));

    // Its seat goes: it logs out at its next transaction, then parks
    // until the seat comes back.
    gate.set_targets(Some(&[0]));
    let parked = tokio::spawn(async move {
        task(&mut user).await.expect("logs out, parks");
        (user, task)
    });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while counts().2 == 0 {
        assert!(tokio::time::Instant::now() < deadline, "no log-out");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert_eq!(counts(), (1, 1, 1), "logged out, did not browse");
    gate.set_targets(Some(&[1]));
    let (mut user, task) = parked.await.expect("the park ended");
    // Goose's stop now would not log it out again.
    stop(&mut user).await.expect("nothing to do");
    assert_eq!(counts(), (1, 1, 1));

    // Seated again: a new user, it logs in before it browses.
    task(&mut user).await.expect("logs in, browses");
    assert_eq!(counts(), (2, 2, 1));

    // Its seat goes again, and goose's stop comes before its next
    // transaction: goose's on-stop phase logs it out.
    gate.set_targets(Some(&[0]));
    stop(&mut user).await.expect("logs out");
    assert_eq!(counts(), (2, 2, 2));
}

/// The open model: a pass (here goose's A, B, A: A weighs 2) begins only
/// with a start from the schedule; a pass that got none is skipped to its
/// end; without a schedule passes begin at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pass_begins_only_with_a_start() {
    static A: AtomicUsize = AtomicUsize::new(0);
    static B: AtomicUsize = AtomicUsize::new(0);
    async fn a(_user: &mut GooseUser) -> TransactionResult {
        A.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
    async fn b(_user: &mut GooseUser) -> TransactionResult {
        B.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
    let tap = Tap::start();
    let gate = Gate::default();
    let scenario = gate.guard(
        scenario!("S")
            .register_transaction(transaction!(a).set_weight(2).expect("a weight"))
            .register_transaction(transaction!(b)),
        &tap,
    );
    assert_eq!(pass_length(&scenario), 3);
    let (fa, fb) = (
        scenario.transactions[0].function.clone(),
        scenario.transactions[1].function.clone(),
    );
    let base = reqwest::Url::parse("http://127.0.0.1/").expect("a URL");
    let mut user = GooseUser::single(base, &GooseConfiguration::default()).expect("a user");
    let ran = || (A.load(Ordering::SeqCst), B.load(Ordering::SeqCst));

    // A schedule that starts nothing: the pass's first transaction waits.
    gate.set_arrival_rate(Some(0.0));
    let held = {
        let fa = fa.clone();
        tokio::spawn(async move {
            fa(&mut user).await.expect("returns");
            user
        })
    };
    // Held until the schedule ends: then it goes without running.
    while gate.0.arrivals.waiting() == 0 {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    gate.set_arrival_rate(None);
    let mut user = held.await.expect("the held transaction returned");
    assert_eq!(ran(), (0, 0), "no start: A did not run");
    // The rest of that pass is skipped: it never started.
    fb(&mut user).await.expect("skipped");
    fa(&mut user).await.expect("skipped");
    assert_eq!(ran(), (0, 0));
    // The closed model: the next pass begins at once.
    fa(&mut user).await.expect("runs");
    fb(&mut user).await.expect("runs");
    assert_eq!(ran(), (1, 1));
    // A schedule set mid-pass lets the pass end, then holds the next
    // one's first transaction until a start comes (1,000 a second).
    gate.set_arrival_rate(Some(1_000.0));
    fa(&mut user).await.expect("runs");
    assert_eq!(ran(), (2, 1));
    tokio::time::timeout(Duration::from_secs(10), fa(&mut user))
        .await
        .expect("a start came")
        .expect("runs");
    assert_eq!(ran(), (3, 1));
    // Starts nobody waited for meanwhile are counted.
    let counted = async {
        while gate.take_dropped() == 0 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), counted)
        .await
        .expect("dropped starts counted");
}
