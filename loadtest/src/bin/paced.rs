//! A load test paced as Locust's `constant_throughput` paces, for the test
//! that counts its pace in nginx's log: one user class, `Paced`, whose one
//! task GETs the slow path `/slow` (nginx takes about 50 ms to send it) and
//! runs 4 times a second per user, however long the task takes.
//! `--wait MIN:MAX` replaces the pacing with Locust's `between(MIN, MAX)`.

use goose::prelude::*;
use swarm::cli::ScenarioOptions;
use swarm::locust::{constant_throughput, User};

/// Task runs per second per user.
const RATE: f64 = 4.0;

async fn slow(user: &mut GooseUser) -> TransactionResult {
    let goose = user.get("/slow").await?;
    swarm::worker::read_body(user, goose).await;
    Ok(())
}

fn scenarios(options: &ScenarioOptions) -> Result<Vec<Scenario>, swarm::locust::LocustError> {
    let paced = User::new("Paced")
        .wait_time(options.wait_time_or(constant_throughput(RATE)?))
        .task(1, transaction!(slow))
        .build()?;
    Ok(vec![paced])
}

fn main() -> std::process::ExitCode {
    swarm::cli::main(scenarios)
}
