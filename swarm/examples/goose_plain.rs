//! Plain goose: one goose attack with its own metrics (no worker, no
//! master), N users GETting a URL and reading each body, for a fixed time.
//! `scripts/compare-load` runs it beside `loadtest worker` to show what
//! the worker costs per request on top of goose itself.
//!
//! Usage: goose_plain URL [USERS=50] [SECONDS=10]; prints requests/s and
//! the requests made (counted by goose's own metrics, from when every user
//! runs).

use goose::config::GooseConfiguration;
use goose::prelude::*;

async fn index(user: &mut GooseUser) -> TransactionResult {
    let goose = user.get("/").await?;
    if let Ok(response) = goose.response {
        let _ = response.bytes().await;
    }
    Ok(())
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let Some(url) = args.next() else {
        eprintln!("usage: goose_plain URL [USERS] [SECONDS]");
        std::process::exit(2);
    };
    let users: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(50);
    let seconds: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(10);
    let mut config = GooseConfiguration::default();
    config.host = Some(url);
    config.users = Some(users);
    // Every user starts at once, as the other generators' tasks do.
    config.increase_rate = Some((users * 10).to_string());
    config.run_time = Some(seconds.to_string());
    config.quiet = 1;
    config.no_print_metrics = true;
    // Count the few requests made while the users start too: the CPU
    // time measured around this process includes them.
    config.no_reset_metrics = true;
    let attack = GooseAttack::initialize_with_config(config).map(|attack| {
        attack.register_scenario(scenario!("WebsiteUser").register_transaction(transaction!(index)))
    });
    let metrics = match attack {
        Ok(attack) => attack.execute().await,
        Err(err) => Err(err),
    };
    match metrics {
        Ok(metrics) => {
            let count: usize = metrics
                .requests
                .values()
                .map(|r| r.success_count + r.fail_count)
                .sum();
            let secs = metrics.duration.max(1) as f64;
            println!("{} {count}", count as f64 / secs);
        }
        Err(err) => {
            eprintln!("goose failed: {err}");
            std::process::exit(1);
        }
    }
}
