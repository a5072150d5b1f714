//! A load test whose users log in once, on start, then load the front
//! page: a name (`login`) seen only at the start of a run, for the tests
//! that check its rates are Locust's (the run's span for every row).

use goose::prelude::*;
use swarm::cli::ScenarioOptions;

async fn login(user: &mut GooseUser) -> TransactionResult {
    let goose = user.get_named("/", "login").await?;
    let _ = swarm::worker::read_body(user, goose).await;
    Ok(())
}

async fn index(user: &mut GooseUser) -> TransactionResult {
    let goose = user.get("/").await?;
    let _ = swarm::worker::read_body(user, goose).await;
    Ok(())
}

fn scenarios(options: &ScenarioOptions) -> Vec<Scenario> {
    let mut user = scenario!("WebsiteUser")
        .register_transaction(transaction!(login).set_on_start())
        .register_transaction(transaction!(index));
    if let Some((min, max)) = options.wait {
        user = user
            .set_wait_time(min, max)
            .expect("MIN <= MAX is checked when parsing --wait");
    }
    vec![user]
}

fn main() -> std::process::ExitCode {
    swarm::cli::main(scenarios)
}
