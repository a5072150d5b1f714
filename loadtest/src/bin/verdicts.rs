//! A load test that gives verdicts after the fact, as goose documents and
//! as a Locust test with `catch_response` does, for the tests that check
//! the master counts them: every user, in turn,
//!
//! - GETs `/missing` (the target answers 404, expected here) and marks it a
//!   success, once with goose's own idiom (`set_success` on the response's
//!   request) and once after reading the body ([`read_response`]);
//! - GETs `/` (the target's page has no price) and marks it a failure,
//!   "no price on the page", once reading the text as goose documents and
//!   once with [`read_response`].
//!
//! Each way has its own request name, so the stats show each apart.

use goose::prelude::*;
use swarm::cli::ScenarioOptions;
use swarm::worker::read_response;

/// Why a page is wrong.
const NO_PRICE: &str = "no price on the page";

/// goose's idiom: an expected 404 is a success.
async fn expected_404(user: &mut GooseUser) -> TransactionResult {
    let mut goose = user.get_named("/missing", "404, goose's idiom").await?;
    if let Ok(response) = &goose.response {
        if response.status() == 404 {
            return user.set_success(&mut goose.request);
        }
    }
    Ok(())
}

/// goose's idiom: a page without a price is a failure.
async fn wrong_content(user: &mut GooseUser) -> TransactionResult {
    let mut goose = user.get_named("/", "content, goose's idiom").await?;
    if let Ok(response) = goose.response {
        let text = response.text().await.unwrap_or_default();
        if !text.contains("price") {
            return user.set_failure(NO_PRICE, &mut goose.request, None, None);
        }
    }
    Ok(())
}

/// Read in full, then marked: an expected 404 is a success.
async fn expected_404_read(user: &mut GooseUser) -> TransactionResult {
    let goose = user.get_named("/missing", "404, read").await?;
    let mut read = read_response(user, goose).await;
    if read.status == Some(404) {
        return user.set_success(&mut read.request);
    }
    Ok(())
}

/// Read in full, then marked: a page without a price is a failure.
async fn wrong_content_read(user: &mut GooseUser) -> TransactionResult {
    let goose = user.get_named("/", "content, read").await?;
    let mut read = read_response(user, goose).await;
    if !read.text().contains("price") {
        return user.set_failure(NO_PRICE, &mut read.request, None, None);
    }
    Ok(())
}

fn scenarios(options: &ScenarioOptions) -> Result<Vec<Scenario>, GooseError> {
    let mut user = scenario!("WebsiteUser")
        .register_transaction(transaction!(expected_404))
        .register_transaction(transaction!(wrong_content))
        .register_transaction(transaction!(expected_404_read))
        .register_transaction(transaction!(wrong_content_read));
    if let Some((min, max)) = options.wait {
        user = user.set_wait_time(min, max)?;
    }
    Ok(vec![user])
}

fn main() -> std::process::ExitCode {
    swarm::cli::main(scenarios)
}
