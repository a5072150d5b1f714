//! Locust's task picking: [`pick_by_weight`] makes of weighted
//! transactions one goose transaction that picks one of them, at random by
//! weight, each time goose calls it (and, for a paced [`super::User`],
//! waits out the rest of the period after it).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use tokio::time::Instant;

use goose::goose::{TransactionFunction, TransactionName};
use goose::prelude::{GooseUser, Transaction, TransactionResult};
use rand::Rng;

use super::wait::Pacer;
use super::LocustError;

/// The name goose gives the picker in its transaction figures.
const PICKER_NAME: &str = "tasks (picked by weight)";

/// Validated tasks: their functions and running weight totals.
pub(crate) struct Tasks {
    functions: Vec<TransactionFunction>,
    /// `ends[i]`: the sum of the weights of tasks 0..=i; a draw below it
    /// (and not below `ends[i - 1]`) picks task i.
    ends: Vec<u64>,
}

impl Tasks {
    /// Checks each task (1-based positions in errors) and sums the weights.
    pub(crate) fn new(
        tasks: impl IntoIterator<Item = (u32, Transaction)>,
    ) -> Result<Tasks, LocustError> {
        let mut functions = Vec::new();
        let mut ends = Vec::new();
        let mut total: u64 = 0;
        for (index, (weight, task)) in tasks.into_iter().enumerate() {
            let position = index + 1;
            if weight == 0 {
                return Err(LocustError::ZeroWeight { position });
            }
            if task.on_start || task.on_stop {
                return Err(LocustError::StartOrStop { position });
            }
            if let TransactionName::InheritNameByRequests(name) = &task.name {
                if !name.is_empty() {
                    return Err(LocustError::NamesItsRequests {
                        position,
                        name: name.to_string(),
                    });
                }
            }
            if task.weight != 1 {
                return Err(LocustError::GooseWeight {
                    position,
                    weight: task.weight,
                });
            }
            // u32 weights, at most usize::MAX of them: no u64 overflow.
            total = total.saturating_add(u64::from(weight));
            functions.push(task.function);
            ends.push(total);
        }
        if functions.is_empty() {
            return Err(LocustError::NoTasks);
        }
        Ok(Tasks { functions, ends })
    }

    /// The task a draw in `0..total` picks.
    fn picked(&self, draw: u64) -> usize {
        self.ends.partition_point(|&end| end <= draw)
    }

    fn total(&self) -> u64 {
        self.ends.last().copied().unwrap_or(0)
    }

    /// One goose transaction that, each call, picks a task at random by
    /// weight, runs it, and then (with a `pacer`) waits out the rest of
    /// the user's period.
    pub(crate) fn into_transaction(self, pacer: Option<Arc<Pacer>>) -> Transaction {
        let tasks = Arc::new(self);
        let function = transaction_fn(move |user| {
            // The thread's generator is not kept across an await.
            let draw = rand::rng().random_range(0..tasks.total().max(1));
            let task = tasks.functions[tasks.picked(draw).min(tasks.functions.len() - 1)].clone();
            let pacer = pacer.clone();
            Box::pin(async move {
                let result = task(user).await;
                if let Some(pacer) = pacer {
                    let wait = pacer.wait_after_task(user.weighted_users_index, Instant::now());
                    crate::worker::pause(wait).await;
                }
                result
            })
        });
        Transaction::new(Arc::new(function)).set_name(PICKER_NAME)
    }
}

/// Locust's `@task(n)` picking: one goose transaction that runs one of
/// `tasks`, picked at random by weight, each time goose calls it — a new
/// pick every time, as Locust picks before every task. A `(3, index)` next
/// to a `(1, about)` runs `index` three times as often, in no set order.
///
/// ```
/// use goose::prelude::*;
///
/// async fn index(user: &mut GooseUser) -> TransactionResult {
///     let goose = user.get("/").await?;
///     swarm::worker::read_body(user, goose).await;
///     Ok(())
/// }
///
/// async fn about(user: &mut GooseUser) -> TransactionResult {
///     let goose = user.get("/about/").await?;
///     swarm::worker::read_body(user, goose).await;
///     Ok(())
/// }
///
/// # fn main() -> Result<(), swarm::locust::LocustError> {
/// let tasks = swarm::locust::pick_by_weight([(3, transaction!(index)), (1, transaction!(about))])?;
/// let website_user = scenario!("WebsiteUser").register_transaction(tasks);
/// # Ok(())
/// # }
/// ```
///
/// **Goose's sequence stays the default.** A scenario's transactions run
/// as goose schedules them unless they are handed to this function. Goose
/// fixes a sequence when the attack starts (its default round-robin
/// scheduler interleaves the transactions by weight; its `Random`
/// scheduler shuffles the sequence once, and every user repeats it). Over
/// a run both give each transaction its share; what a sequence keeps is
/// order: a log-in-then-browse-then-buy flow stays a flow, and the same
/// transaction never runs twice in a row unless weighted so. That is what
/// goose users write scenarios for, and what goose's reports describe, so
/// a goose scenario keeps it. A locustfile's `@task(n)`s have no order at
/// all and each pick is independent of the last (two `about`s in a row
/// happen, a quarter of the time here); a port that wants Locust's mix
/// moment by moment, not only over a run, picks.
///
/// A scenario registered this way has the picker as its one regular
/// transaction, so goose's wait (`set_wait_time`) falls after every task,
/// as Locust's `wait_time` does. [`super::User`] builds such a scenario
/// whole, with Locust's waits, pacing included.
///
/// **What a picked task keeps.** Its function runs on the user as goose
/// calls it: its requests keep their names (the path, or the name given
/// with `get_named` or `GooseRequest::builder().name(..)`), their verdicts
/// (`set_success`, `set_failure`), the user's cookies and session data.
/// Goose sees one transaction: its per-transaction figures (no part of
/// Locust's stats; the worker does not report them) lump the tasks
/// together, and every request carries the picker's transaction index. A
/// worker waits for a request's body note per transaction index, so when
/// one task reads its bodies (`swarm::worker::read_body`, `read_response`)
/// a task that does not is counted at its user's next request rather than
/// at once, and without a size: read the body in every task, as Locust's
/// users do.
///
/// What a pick cannot keep is refused, with what to do instead: a name
/// the task's requests would inherit (`set_name_for_transaction_and_requests`:
/// goose gives it to the transaction it calls, here the picker), the
/// on-start and on-stop flags, and a goose weight of its own (give the
/// weight in the pair). So are no task and a weight of 0 (see
/// [`LocustError`]).
pub fn pick_by_weight(
    tasks: impl IntoIterator<Item = (u32, Transaction)>,
) -> Result<Transaction, LocustError> {
    Ok(Tasks::new(tasks)?.into_transaction(None))
}

type TransactionFuture<'r> = Pin<Box<dyn Future<Output = TransactionResult> + Send + 'r>>;

/// Pins down the closure's higher-ranked signature for the compiler.
pub(crate) fn transaction_fn<F>(f: F) -> F
where
    F: for<'r> Fn(&'r mut GooseUser) -> TransactionFuture<'r> + Send + Sync + 'static,
{
    f
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;
    use std::time::Duration;

    use super::*;
    use goose::config::GooseConfiguration;
    use goose::prelude::*;

    async fn noop(_user: &mut GooseUser) -> TransactionResult {
        Ok(())
    }

    fn user() -> GooseUser {
        let base = reqwest::Url::parse("http://127.0.0.1/").expect("a URL");
        GooseUser::single(base, &GooseConfiguration::default()).expect("a user")
    }

    /// Which task ran, call after call.
    static RAN: Mutex<Vec<u8>> = Mutex::new(Vec::new());

    async fn index(_user: &mut GooseUser) -> TransactionResult {
        RAN.lock().map(|mut ran| ran.push(0)).ok();
        Ok(())
    }

    async fn about(_user: &mut GooseUser) -> TransactionResult {
        RAN.lock().map(|mut ran| ran.push(1)).ok();
        Ok(())
    }

    /// Each call picks anew, by weight: 3:1 over many calls, and the
    /// lighter task sometimes twice in a row (no fixed sequence).
    #[tokio::test]
    async fn each_call_picks_anew_by_weight() {
        const CALLS: usize = 4_000;
        let picker = pick_by_weight([(3, transaction!(index)), (1, transaction!(about))])
            .map_err(|e| e.to_string());
        let picker = picker.unwrap_or_else(|e| panic!("{e}"));
        let mut user = user();
        for _ in 0..CALLS {
            (picker.function)(&mut user).await.expect("a task ran");
        }
        let ran = RAN.lock().map(|r| r.clone()).unwrap_or_default();
        assert_eq!(ran.len(), CALLS);
        let share = ran.iter().filter(|&&t| t == 0).count() as f64 / CALLS as f64;
        // 0.75 expected; its standard deviation over 4,000 calls is 0.007.
        assert!(
            (0.72..0.78).contains(&share),
            "index ran {share} of the calls"
        );
        let twice = ran.windows(2).filter(|w| w == &[1, 1]).count();
        assert!(
            twice > 100,
            "about ran twice in a row {twice} times (250 expected)"
        );
    }

    static SLOW_RUNS: AtomicUsize = AtomicUsize::new(0);

    /// A task that takes 60 ms.
    async fn slow(_user: &mut GooseUser) -> TransactionResult {
        SLOW_RUNS.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(60)).await;
        Ok(())
    }

    /// Paced at 100 ms, a 60 ms task runs once a period: five calls take
    /// five periods (a wait of 100 ms after each would take 800 ms).
    #[tokio::test]
    async fn a_paced_picker_starts_a_task_once_a_period() {
        let pacer = Arc::new(Pacer::new(Duration::from_millis(100)));
        let picker = Tasks::new([(1, transaction!(slow))])
            .map(|tasks| tasks.into_transaction(Some(pacer.clone())))
            .map_err(|e| e.to_string());
        let picker = picker.unwrap_or_else(|e| panic!("{e}"));
        let mut user = user();
        let started = Instant::now();
        pacer.start(user.weighted_users_index, started);
        for _ in 0..5 {
            (picker.function)(&mut user).await.expect("the task ran");
        }
        let took = started.elapsed();
        assert_eq!(SLOW_RUNS.load(Ordering::SeqCst), 5);
        assert!(
            took >= Duration::from_millis(500) && took < Duration::from_millis(700),
            "five paced calls took {took:?}"
        );
    }

    fn err(tasks: Vec<(u32, Transaction)>) -> String {
        Tasks::new(tasks)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    }

    #[test]
    fn draws_pick_each_task_by_its_weight() {
        let tasks = Tasks::new([
            (3, transaction!(noop)),
            (1, transaction!(noop)),
            (2, transaction!(noop)),
        ])
        .ok()
        .map(|t| (t.total(), (0..6).map(|d| t.picked(d)).collect::<Vec<_>>()));
        assert_eq!(tasks, Some((6, vec![0, 0, 0, 1, 2, 2])));
    }

    #[test]
    fn what_a_pick_would_lose_is_refused_with_what_to_do() {
        assert!(err(vec![]).contains("no task"));
        assert!(err(vec![(0, transaction!(noop))]).contains("task 1 has a weight of 0"));
        let start = transaction!(noop).set_on_start();
        assert!(err(vec![(1, transaction!(noop)), (1, start)]).contains("task 2"));
        let named = transaction!(noop).set_name_for_transaction_and_requests("Checkout");
        let named = err(vec![(1, named)]);
        assert!(
            named.contains("\"Checkout\"") && named.contains("get_named"),
            "{named}"
        );
        let weighted = transaction!(noop).set_weight(2).ok();
        let weighted = weighted.map(|t| err(vec![(1, t)])).unwrap_or_default();
        assert!(weighted.contains("pair"), "{weighted}");
        // A name for goose's transaction figures alone is kept out of the way.
        assert!(Tasks::new([(1, transaction!(noop).set_name("index"))]).is_ok());
    }
}
