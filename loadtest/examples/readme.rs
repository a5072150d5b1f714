//! The load test the README shows (tests/it/docs.rs keeps the two the same).

use goose::prelude::*;
use swarm::worker::read_response;

async fn item(user: &mut GooseUser) -> TransactionResult {
    let goose = user.get_named("/items/42", "/items/[id]").await?;
    let mut read = read_response(user, goose).await;
    if read.status == Some(404) {
        return user.set_success(&mut read.request); // expected: no failure
    }
    if !read.text().contains("price") {
        return user.set_failure("no price on the page", &mut read.request, None, None);
    }
    Ok(())
}

fn scenarios(options: &swarm::cli::ScenarioOptions) -> Result<Vec<Scenario>, GooseError> {
    let mut shopper = scenario!("Shopper").register_transaction(transaction!(item));
    if let Some((min, max)) = options.wait {
        shopper = shopper.set_wait_time(min, max)?; // --wait MIN:MAX
    }
    Ok(vec![shopper])
}

fn main() -> std::process::ExitCode {
    swarm::cli::main(scenarios)
}
