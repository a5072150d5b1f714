//! A load test with two user classes weighted 3:1, for the tests that check
//! a worker runs exactly the users per class its master dispatched. Each
//! user requests a path naming its class and its goose user index
//! (`/users/Reader/3`), so a target's access log tells how many users of
//! each class ran, worker by worker (the User-Agent names the worker).

use goose::prelude::*;
use swarm::cli::ScenarioOptions;

/// Requests `/users/CLASS/INDEX`, grouped in the stats as `/users/CLASS`.
async fn visit(user: &mut GooseUser, class: &str) -> TransactionResult {
    let path = format!("/users/{class}/{}", user.weighted_users_index);
    let name = format!("/users/{class}");
    let goose = user.get_named(&path, &name).await?;
    let _ = swarm::worker::read_body(user, goose).await;
    Ok(())
}

async fn reader(user: &mut GooseUser) -> TransactionResult {
    visit(user, "Reader").await
}

async fn browser(user: &mut GooseUser) -> TransactionResult {
    visit(user, "Browser").await
}

/// `Reader` (weight 3) and `Browser` (weight 1).
fn scenarios(options: &ScenarioOptions) -> Result<Vec<Scenario>, GooseError> {
    let classes = [
        ("Reader", 3, transaction!(reader)),
        ("Browser", 1, transaction!(browser)),
    ];
    classes
        .into_iter()
        .map(|(name, weight, transaction)| {
            let mut scenario = Scenario::new(name)
                .set_weight(weight)?
                .register_transaction(transaction);
            if let Some((min, max)) = options.wait {
                scenario = scenario.set_wait_time(min, max)?;
            }
            Ok(scenario)
        })
        .collect()
}

fn main() -> std::process::ExitCode {
    swarm::cli::main(scenarios)
}
