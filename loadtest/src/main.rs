//! The load test shipped to master and worker hosts — spotload's
//! equivalent of a locustfile. Edit `scenarios` to describe your users;
//! each goose scenario is one Locust user class, named by the scenario.
//! Porting a locustfile: `docs/locust.md`, and `examples/locustfile_port.rs`
//! (`swarm::locust` gives Locust's user classes, `@task` picks and waits).

use goose::prelude::*;
use swarm::cli::ScenarioOptions;

// mimalloc: less CPU per request than the system allocator (scripts/compare-load).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The site's front page, read in full as Locust's users read it: its time
/// runs to the body's last byte and its size counts (and the connection is
/// free for the next request).
async fn index(user: &mut GooseUser) -> TransactionResult {
    let goose = user.get("/").await?;
    let _page = swarm::worker::read_body(user, goose).await;
    Ok(())
}

/// The user classes of this load test. A builder that goose (or
/// `swarm::locust`) refuses is reported by `swarm::cli::main`, with what to
/// fix, before any port opens: `?` instead of `expect`.
fn scenarios(options: &ScenarioOptions) -> Result<Vec<Scenario>, GooseError> {
    let mut website_user = scenario!("WebsiteUser").register_transaction(transaction!(index));
    if let Some((min, max)) = options.wait {
        website_user = website_user.set_wait_time(min, max)?;
    }
    Ok(vec![website_user])
}

fn main() -> std::process::ExitCode {
    swarm::cli::main(scenarios)
}
