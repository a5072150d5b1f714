//! Seats: the master's users per class as goose users. Goose spreads its
//! users over the scenarios by their weights; the gate keeps seats per
//! class, and the driver gives goose enough users for every class to fill
//! its seats (see [`GooseDriver::set_classes`]).

use std::collections::BTreeMap;
use std::time::Duration;

use goose::prelude::Scenario;

use super::{gcd, DriverError, GooseDriver};
use crate::protocol::MAX_USERS_PER_WORKER;
use crate::stats::StatsReport;

/// How long a spawn waits for goose's users to take their classes' seats.
const SEAT_PATIENCE: Duration = Duration::from_secs(5);

/// How many times a spawn adds goose users for a class that has too few.
const SEAT_ROUNDS: usize = 3;

/// What a spawn left running.
#[derive(Debug, Default)]
pub struct Spawned {
    /// The requests of a run that had to stop (for a new host, or no users).
    pub flushed: Option<StatsReport>,
    /// Users running per class: holding their class's seats, or, when the
    /// master named no class of this load test, as goose spread them.
    pub classes: BTreeMap<String, u64>,
}

/// The load test's user classes: goose's scenarios, their names and
/// weights (reduced by their greatest common divisor, as goose does).
#[derive(Debug, Clone)]
pub(super) struct Classes {
    names: Vec<String>,
    weights: Vec<u64>,
}

impl Classes {
    pub(super) fn of(scenarios: &[Scenario]) -> Classes {
        let raw: Vec<usize> = scenarios.iter().map(|s| s.weight.max(1)).collect();
        let common = raw.iter().copied().reduce(gcd).unwrap_or(1).max(1);
        Classes {
            names: scenarios.iter().map(|s| s.name.to_string()).collect(),
            weights: raw.iter().map(|w| (w / common) as u64).collect(),
        }
    }

    /// Goose users per round of its weighted allocation.
    fn round(&self) -> u64 {
        self.weights.iter().sum::<u64>().max(1)
    }

    /// The master's counts as seats per class, in scenario order; `None`
    /// when it named none of our classes (a Locust master with another
    /// locustfile). Names we do not have are returned apart.
    fn seats(&self, asked: &BTreeMap<String, u64>) -> (Option<Vec<u64>>, Vec<String>) {
        let unknown: Vec<String> = asked
            .keys()
            .filter(|name| !self.names.contains(name))
            .cloned()
            .collect();
        if unknown.len() == asked.len() && !asked.is_empty() {
            return (None, unknown);
        }
        let seats = self
            .names
            .iter()
            .map(|name| asked.get(name).copied().unwrap_or(0))
            .collect();
        (Some(seats), unknown)
    }

    /// Goose users that give every class at least its seats, when goose
    /// adds them in whole rounds of its weighted allocation.
    fn users_for(&self, seats: &[u64]) -> u64 {
        let rounds = seats
            .iter()
            .zip(&self.weights)
            .map(|(n, w)| n.div_ceil((*w).max(1)))
            .max()
            .unwrap_or(0);
        rounds.saturating_mul(self.round())
    }
}

impl GooseDriver {
    /// Runs exactly `asked` users per class (the master's
    /// `user_classes_count`) against `host` (empty: keep the current one).
    ///
    /// Goose spreads its users over the scenarios by its weights, so the
    /// gate keeps seats per class (see [`Gate`](super::gate::Gate)) and
    /// goose gets enough users for every class to fill its seats: whole
    /// rounds of its weighted allocation, more if a class still lacks users
    /// once they all started (goose's users are only ever added while
    /// running; the surplus waits, parked). A master that names none of our classes gets its total,
    /// spread by goose's weights.
    ///
    /// A change of `urgent` (a `stop` or `quit` arrived) cuts the wait for
    /// seats short: the users started so far run, and the order that
    /// follows decides.
    pub async fn set_classes(
        &mut self,
        host: &str,
        asked: &BTreeMap<String, u64>,
        urgent: &tokio::sync::watch::Receiver<u64>,
    ) -> Result<Spawned, DriverError> {
        let calm = *urgent.borrow();
        let (seats, unknown) = self.classes.seats(asked);
        if !unknown.is_empty() {
            tracing::warn!(
                "the master asked for user classes this load test does not define: {} (it has {})",
                unknown.join(", "),
                self.classes.names.join(", ")
            );
        }
        let seats = seats.map(|seats| cap_seats(seats, MAX_USERS_PER_WORKER));
        let users = match &seats {
            Some(seats) => seats.iter().sum(),
            None => asked
                .values()
                .fold(0u64, |sum, n| sum.saturating_add(*n))
                .min(MAX_USERS_PER_WORKER),
        };
        let host_changes = !host.is_empty() && self.host.as_deref() != Some(host);
        let restart = host_changes || std::mem::take(&mut self.trust_changed);
        let mut spawned = Spawned::default();
        if self.running() && (users == 0 || restart) {
            spawned.flushed = Some(self.stop().await?);
        }
        if users == 0 {
            return Ok(spawned);
        }
        if host_changes {
            self.controller.command(&format!("host {host}")).await?;
            self.host = Some(host.to_string());
        }
        let Some(seats) = seats else {
            self.gate.set_targets(None);
            self.run_goose_users(users).await?;
            self.users = users;
            spawned.classes = asked.clone();
            return Ok(spawned);
        };
        let targets: Vec<usize> = seats
            .iter()
            .map(|n| usize::try_from(*n).unwrap_or(usize::MAX))
            .collect();
        self.gate.set_targets(Some(&targets));
        let mut goose_users = self
            .goose_users
            .max(self.classes.users_for(&seats))
            .min(MAX_USERS_PER_WORKER);
        for _ in 0..SEAT_ROUNDS {
            self.run_goose_users(goose_users).await?;
            let occupancy = self
                .wait_for_seats(&targets, goose_users, || *urgent.borrow() != calm)
                .await;
            if *urgent.borrow() != calm {
                break;
            }
            // A class with fewer goose users than seats: add rounds for it.
            let short = occupancy
                .iter()
                .zip(&targets)
                .zip(&self.classes.weights)
                .map(|((&(seen, _), &want), &w)| {
                    let missing = want.saturating_sub(seen) as u64;
                    missing.div_ceil(w.max(1))
                })
                .max()
                .unwrap_or(0);
            if short == 0 || goose_users >= MAX_USERS_PER_WORKER {
                break;
            }
            goose_users = goose_users
                .saturating_add(short.saturating_mul(self.classes.round()))
                .min(MAX_USERS_PER_WORKER);
        }
        let occupancy = self.gate.occupancy();
        spawned.classes = self
            .classes
            .names
            .iter()
            .zip(&occupancy)
            .filter(|(name, &(_, running))| running > 0 || asked.contains_key(*name))
            .map(|(name, &(_, running))| (name.clone(), running as u64))
            .collect();
        for (name, want) in self.classes.names.iter().zip(&targets) {
            let running = spawned.classes.get(name).copied().unwrap_or(0);
            if running != *want as u64 {
                tracing::warn!("user class {name}: {running} users running of the {want} asked for (goose gave it too few users)");
            }
        }
        self.users = spawned.classes.values().sum();
        #[cfg(test)]
        if self.break_after_spawn {
            self.break_controller().await;
        }
        Ok(spawned)
    }

    /// Tells goose to run `users` users, starting it if idle.
    async fn run_goose_users(&mut self, users: u64) -> Result<(), DriverError> {
        if users == self.goose_users && self.running() {
            return Ok(());
        }
        if self.users == 0 && self.goose_users == 0 {
            self.gate.reset_users();
        }
        self.controller.command(&format!("users {users}")).await?;
        if self.goose_users == 0 {
            self.gate.open();
            self.controller.command("start").await?;
        }
        self.goose_users = users;
        Ok(())
    }

    /// Waits (bounded) until every class's seats are taken, or all of
    /// goose's `goose_users` started and no seat can be taken any more, or
    /// `yield_now` says an urgent order came; returns per class (users
    /// seen, users seated).
    async fn wait_for_seats(
        &self,
        targets: &[usize],
        goose_users: u64,
        yield_now: impl Fn() -> bool,
    ) -> Vec<(usize, usize)> {
        let deadline = tokio::time::Instant::now() + SEAT_PATIENCE;
        loop {
            let occupancy = self.gate.occupancy();
            let seen: usize = occupancy.iter().map(|(seen, _)| seen).sum();
            let settled = occupancy
                .iter()
                .zip(targets)
                .all(|(&(seen_here, seated), &want)| seated >= want || seated >= seen_here);
            let all_started = seen as u64 >= goose_users;
            let filled = occupancy
                .iter()
                .zip(targets)
                .all(|(&(_, seated), &want)| seated >= want);
            if filled
                || (all_started && settled)
                || yield_now()
                || tokio::time::Instant::now() >= deadline
            {
                return occupancy;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// Seats capped at `limit` users in all, taken from the largest classes.
fn cap_seats(mut seats: Vec<u64>, limit: u64) -> Vec<u64> {
    let mut excess = seats.iter().sum::<u64>().saturating_sub(limit);
    while excess > 0 {
        let Some(largest) = seats.iter_mut().max() else {
            break;
        };
        let cut = excess.min(*largest).max(1);
        *largest = largest.saturating_sub(cut);
        excess = excess.saturating_sub(cut);
    }
    seats
}
