//! A load test whose one request carries markup in its name, for the tests
//! that check the report and the page show such a name as text: every user
//! requests `/any/markup`, named [`NAME`] in the stats.

use goose::prelude::*;
use swarm::cli::ScenarioOptions;

/// An HTML comment opener, a script element, an ampersand and a JavaScript
/// line separator: each breaks a page that embeds it unescaped.
const NAME: &str = "<!--<script>alert(1)</script>--> & \u{2028} end";

async fn visit(user: &mut GooseUser) -> TransactionResult {
    let goose = user.get_named("/any/markup", NAME).await?;
    let _ = swarm::worker::read_body(user, goose).await;
    Ok(())
}

fn scenarios(options: &ScenarioOptions) -> Result<Vec<Scenario>, GooseError> {
    let mut user = scenario!("MarkupUser").register_transaction(transaction!(visit));
    if let Some((min, max)) = options.wait {
        user = user.set_wait_time(min, max)?;
    }
    Ok(vec![user])
}

fn main() -> std::process::ExitCode {
    swarm::cli::main(scenarios)
}
