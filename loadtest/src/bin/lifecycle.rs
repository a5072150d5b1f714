//! A load test whose users log in when they start and log out when they
//! stop, with goose's own `set_on_start` and `set_on_stop` (Locust's
//! `on_start` and `on_stop`), for the tests that check when a worker's
//! users run their on-stop transactions and that the master counts what
//! those send. Every user, under nginx's `any_path` prefix `/session/`:
//!
//! - on start, GETs `/session/login/INDEX` (named `/session/login`);
//! - then, over and over, `/session/page/INDEX` (named `/session/page`);
//! - on stop, `/session/logout/INDEX` (named `/session/logout`),
//!
//! INDEX being the user's goose index, so nginx's log tells users apart.

use goose::prelude::*;
use swarm::cli::ScenarioOptions;

/// GETs `/session/STEP/INDEX`, named `/session/STEP`, read in full.
async fn visit(user: &mut GooseUser, step: &str) -> TransactionResult {
    let path = format!("/session/{step}/{}", user.weighted_users_index);
    let goose = user.get_named(&path, &format!("/session/{step}")).await?;
    let _ = swarm::worker::read_body(user, goose).await;
    Ok(())
}

async fn log_in(user: &mut GooseUser) -> TransactionResult {
    visit(user, "login").await
}

async fn page(user: &mut GooseUser) -> TransactionResult {
    visit(user, "page").await
}

async fn log_out(user: &mut GooseUser) -> TransactionResult {
    visit(user, "logout").await
}

fn scenarios(options: &ScenarioOptions) -> Result<Vec<Scenario>, GooseError> {
    let mut member = scenario!("Member")
        .register_transaction(transaction!(log_in).set_on_start())
        .register_transaction(transaction!(page))
        .register_transaction(transaction!(log_out).set_on_stop());
    if let Some((min, max)) = options.wait {
        member = member.set_wait_time(min, max)?;
    }
    Ok(vec![member])
}

fn main() -> std::process::ExitCode {
    swarm::cli::main(scenarios)
}
