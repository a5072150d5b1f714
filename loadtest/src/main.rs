//! The load test shipped to master and worker hosts — spotload's
//! equivalent of a locustfile. Edit `scenarios` to describe your users;
//! each goose scenario is one Locust user class, named by the scenario.

use goose::prelude::*;
use swarm::cli::ScenarioOptions;

/// The site's front page, read in full so the connection is reused.
async fn index(user: &mut GooseUser) -> TransactionResult {
    let goose = user.get("/").await?;
    if let Ok(response) = goose.response {
        // Reading the body keeps the connection alive for the next request;
        // a body that fails to arrive is already counted by goose.
        let _ = response.bytes().await;
    }
    Ok(())
}

/// The user classes of this load test.
fn scenarios(options: &ScenarioOptions) -> Vec<Scenario> {
    let mut website_user = scenario!("WebsiteUser").register_transaction(transaction!(index));
    if let Some((min, max)) = options.wait {
        website_user = website_user
            .set_wait_time(min, max)
            .expect("MIN <= MAX is checked when parsing --wait");
    }
    vec![website_user]
}

fn main() -> std::process::ExitCode {
    swarm::cli::main(scenarios)
}
