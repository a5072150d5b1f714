//! [`User`]: a Locust user class as one goose scenario — a name and a
//! weight, a `wait_time`, `on_start`, weighted `@task`s picked at random,
//! `on_stop` — checked once, when it is built.

use std::sync::Arc;
use tokio::time::Instant;

use goose::prelude::{Scenario, Transaction};

use super::pick::{transaction_fn, Tasks};
use super::wait::{Pacer, WaitTime};
use super::LocustError;

/// The name of the on-start transaction that starts a user's pacing clock.
const PACING_CLOCK: &str = "swarm: pacing clock";

/// A Locust user class, built into a goose [`Scenario`] named after it:
///
/// | Locust | here |
/// | --- | --- |
/// | `class WebsiteUser(HttpUser)` | `User::new("WebsiteUser")` |
/// | `weight = 3` | `.weight(3)` |
/// | `host = "http://..."` | `.host("http://...")` |
/// | `wait_time = between(1, 5)` | `.wait_time(between(secs(1), secs(5)))` |
/// | `def on_start(self)` | `.on_start(transaction!(log_in))` |
/// | `@task(3) def index(self)` | `.task(3, transaction!(index))` |
/// | `def on_stop(self)` | `.on_stop(transaction!(log_out))` |
///
/// ```
/// use std::time::Duration;
/// use goose::prelude::*;
/// use swarm::locust::{between, User};
///
/// async fn log_in(user: &mut GooseUser) -> TransactionResult {
///     let goose = user.post_form("/login", &[("username", "ada")]).await?;
///     swarm::worker::read_body(user, goose).await;
///     Ok(())
/// }
///
/// async fn index(user: &mut GooseUser) -> TransactionResult {
///     let goose = user.get("/").await?;
///     swarm::worker::read_body(user, goose).await;
///     Ok(())
/// }
///
/// # fn main() -> Result<(), swarm::locust::LocustError> {
/// let website_user = User::new("WebsiteUser")
///     .weight(3)
///     .wait_time(between(Duration::from_secs(1), Duration::from_secs(5)))
///     .on_start(transaction!(log_in))
///     .task(1, transaction!(index))
///     .build()?;
/// # Ok(())
/// # }
/// ```
///
/// What goose runs: the on-start transactions once per user, in the order
/// given (goose's `set_on_start`; the worker holds them until the user has
/// a seat, so a user that never runs logs nothing in); then, over and over,
/// one task picked at random by weight ([`super::pick_by_weight`]) and the
/// wait; and when the user stops (the swarm's stop, the worker's quit, the
/// master asking for fewer users), its on-stop transactions, in the order
/// given (goose's `set_on_stop`); a user started again after that runs its
/// on-start transactions anew.
///
/// `between` and `constant` are goose's own wait after each task;
/// `constant_pacing` is waited by the picker, on a clock per user that
/// starts when the user does (first among its on-start transactions), as
/// Locust starts it when the user is made.
#[derive(Clone)]
pub struct User {
    name: String,
    weight: usize,
    wait: WaitTime,
    host: Option<String>,
    on_start: Vec<Transaction>,
    tasks: Vec<(u32, Transaction)>,
    on_stop: Vec<Transaction>,
}

impl std::fmt::Debug for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("User")
            .field("name", &self.name)
            .field("weight", &self.weight)
            .field("wait", &self.wait)
            .field("host", &self.host)
            .field("on_start", &self.on_start.len())
            .field("tasks", &self.tasks.len())
            .field("on_stop", &self.on_stop.len())
            .finish()
    }
}

impl User {
    /// A user class of this name (the name the master and its stats show),
    /// weight 1, no wait (Locust's `constant(0)`), no task yet.
    pub fn new(name: &str) -> User {
        User {
            name: name.to_string(),
            weight: 1,
            wait: WaitTime::default(),
            host: None,
            on_start: Vec::new(),
            tasks: Vec::new(),
            on_stop: Vec::new(),
        }
    }

    /// How many users of this class start for each user of a class of
    /// weight 1 (Locust's `weight`); at least 1, checked by [`User::build`].
    pub fn weight(mut self, weight: usize) -> User {
        self.weight = weight;
        self
    }

    /// The wait after each task (Locust's `wait_time`).
    pub fn wait_time(mut self, wait: WaitTime) -> User {
        self.wait = wait;
        self
    }

    /// The target when neither the master nor the worker names one
    /// (Locust's class `host`).
    pub fn host(mut self, host: &str) -> User {
        self.host = Some(host.to_string());
        self
    }

    /// A transaction each user runs once when it starts, before any task
    /// (Locust's `on_start`); several run in the order given.
    pub fn on_start(mut self, transaction: Transaction) -> User {
        self.on_start.push(transaction);
        self
    }

    /// A task and its weight (Locust's `@task(weight)`): before every task
    /// a user picks one at random, each by its weight.
    pub fn task(mut self, weight: u32, transaction: Transaction) -> User {
        self.tasks.push((weight, transaction));
        self
    }

    /// A transaction each user runs once when it stops (Locust's
    /// `on_stop`); several run in the order given.
    pub fn on_stop(mut self, transaction: Transaction) -> User {
        self.on_stop.push(transaction);
        self
    }

    /// The goose scenario, or the first thing wrong with this class, named.
    pub fn build(self) -> Result<Scenario, LocustError> {
        let in_class = |source: LocustError| LocustError::InClass {
            class: self.name.clone(),
            source: Box::new(source),
        };
        if self.weight == 0 {
            return Err(in_class(LocustError::ClassWeight));
        }
        let tasks = Tasks::new(self.tasks).map_err(in_class)?;
        let mut scenario = Scenario::new(&self.name)
            .set_weight(self.weight)
            .map_err(|_| in_class(LocustError::ClassWeight))?;
        if let Some(host) = &self.host {
            scenario = scenario.set_host(host);
        }
        // Ordered (between() orders its bounds), so goose's own check on
        // set_wait_time has nothing to refuse.
        scenario.transaction_wait = self.wait.goose_wait();
        let pacer = self
            .wait
            .pacing()
            .map(|period| Arc::new(Pacer::new(period)));
        if let Some(pacer) = &pacer {
            scenario = scenario.register_transaction(pacing_clock(pacer.clone()));
        }
        for transaction in self.on_start {
            scenario = scenario.register_transaction(transaction.set_on_start());
        }
        scenario = scenario.register_transaction(tasks.into_transaction(pacer));
        for transaction in self.on_stop {
            scenario = scenario.register_transaction(transaction.set_on_stop());
        }
        Ok(scenario)
    }
}

/// The on-start transaction that starts a user's pacing clock.
fn pacing_clock(pacer: Arc<Pacer>) -> Transaction {
    let start = transaction_fn(move |user| {
        pacer.start(user.weighted_users_index, Instant::now());
        Box::pin(async { Ok(()) })
    });
    Transaction::new(Arc::new(start))
        .set_name(PACING_CLOCK)
        .set_on_start()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use goose::prelude::*;

    use super::*;
    use crate::locust::{between, constant_pacing};

    async fn noop(_user: &mut GooseUser) -> TransactionResult {
        Ok(())
    }

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_class_is_one_scenario_with_its_tasks_picked_by_one_transaction() {
        let scenario = User::new("WebsiteUser")
            .weight(3)
            .wait_time(between(20 * MS, 10 * MS))
            .on_start(transaction!(noop))
            .task(3, transaction!(noop))
            .task(1, transaction!(noop))
            .on_stop(transaction!(noop))
            .build();
        let Ok(scenario) = scenario else {
            panic!("{:?}", scenario.err());
        };
        assert_eq!(&*scenario.name, "WebsiteUser");
        assert_eq!(scenario.weight, 3);
        assert_eq!(scenario.transaction_wait, Some((10 * MS, 20 * MS)));
        let flags: Vec<(bool, bool)> = scenario
            .transactions
            .iter()
            .map(|t| (t.on_start, t.on_stop))
            .collect();
        assert_eq!(flags, [(true, false), (false, false), (false, true)]);
    }

    #[test]
    fn pacing_is_not_goose_s_wait_and_starts_a_clock_first() {
        let scenario = User::new("Paced")
            .wait_time(constant_pacing(100 * MS))
            .on_start(transaction!(noop))
            .task(1, transaction!(noop))
            .build();
        let Ok(scenario) = scenario else {
            panic!("{:?}", scenario.err());
        };
        assert_eq!(scenario.transaction_wait, None);
        let first = scenario.transactions.first().map(|t| t.name.clone());
        assert_eq!(
            first
                .as_ref()
                .map(goose::goose::TransactionName::name_for_transaction),
            Some(PACING_CLOCK)
        );
        assert_eq!(scenario.transactions.len(), 3);
    }

    #[test]
    fn errors_name_the_class() {
        let weightless = User::new("AdminUser")
            .weight(0)
            .task(1, transaction!(noop))
            .build()
            .err()
            .map(|e| {
                format!(
                    "{}: {}",
                    e,
                    std::error::Error::source(&e)
                        .map(ToString::to_string)
                        .unwrap_or_default()
                )
            });
        let weightless = weightless.unwrap_or_default();
        assert!(
            weightless.starts_with("user class AdminUser"),
            "{weightless}"
        );
        assert!(weightless.contains("weight"), "{weightless}");
        let taskless = User::new("Idle").build().err().map(|e| e.to_string());
        assert_eq!(taskless.as_deref(), Some("user class Idle"));
    }
}
