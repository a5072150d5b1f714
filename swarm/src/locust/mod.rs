//! Locust's idioms on goose, for a locustfile ported to spotload: a user
//! class as one scenario ([`User`]), tasks picked at random by weight before
//! every task ([`pick_by_weight`], Locust's `@task(n)`), and Locust's
//! `wait_time` functions ([`between`], [`constant`], [`constant_pacing`],
//! [`constant_throughput`]).
//!
//! Everything here builds plain goose scenarios and transactions: goose
//! runs them, its `set_on_start`/`set_on_stop`, request names and verdicts
//! work as always, and the worker drives them like any other. What
//! `docs/locust.md` maps Locust idiom by idiom, this module implements
//! where goose has no equivalent of its own.
//!
//! Builders check what they are given once, and say what is wrong and
//! what to do in a [`LocustError`]; a load test's scenarios function
//! returns a `Result` and uses `?` on them (and on goose's own
//! `set_weight`, `set_wait_time`), and `swarm::cli::main` reports the error
//! before any port opens.

mod pick;
mod user;
mod wait;

pub use pick::pick_by_weight;
pub use user::User;
pub use wait::{between, constant, constant_pacing, constant_throughput, WaitTime};

/// What a Locust idiom was given that it cannot run, and what to do.
#[derive(Debug, thiserror::Error)]
pub enum LocustError {
    /// No task to pick from.
    #[error("no task to pick: give at least one (weight, transaction) pair")]
    NoTasks,
    /// A task that would never be picked.
    #[error(
        "task {position} has a weight of 0 and would never run: give it 1 or more, or leave it out"
    )]
    ZeroWeight {
        /// The task's place in the list, from 1.
        position: usize,
    },
    /// A task flagged to run when the user starts or stops.
    #[error("task {position} is an on-start or on-stop transaction: give it to User::on_start or User::on_stop (or register it on the scenario), not as a task")]
    StartOrStop {
        /// The task's place in the list, from 1.
        position: usize,
    },
    /// A task whose requests take its name, which a pick cannot pass on.
    #[error("task {position} names its requests {name:?} (set_name_for_transaction_and_requests), which a picked task cannot pass on: name each request instead, with get_named or GooseRequest::builder().name(..)")]
    NamesItsRequests {
        /// The task's place in the list, from 1.
        position: usize,
        /// The name its requests would have taken.
        name: String,
    },
    /// A task with a goose weight of its own beside the pair's.
    #[error("task {position} has a goose weight of {weight} (set_weight): give the weight in the (weight, transaction) pair instead")]
    GooseWeight {
        /// The task's place in the list, from 1.
        position: usize,
        /// Its goose weight.
        weight: usize,
    },
    /// `constant_throughput` of no rate.
    #[error("constant_throughput({rate}): the rate must be a positive, finite number of task runs per second")]
    Throughput {
        /// The rate given.
        rate: f64,
    },
    /// A user class of weight 0.
    #[error("a weight of 0 would never start a user of it: give it 1 or more")]
    ClassWeight,
    /// A user class's error, with the class named.
    #[error("user class {class}")]
    InClass {
        /// The class's name.
        class: String,
        /// What is wrong with it.
        #[source]
        source: Box<LocustError>,
    },
}
