//! A typical locustfile, ported to spotload line by line: what to write
//! in `loadtest/src/main.rs` for each Locust idiom. (`docs/locust.md` maps
//! every idiom; `loadtest/tests/it/example.rs` runs this file against a small
//! shop and checks what the master shows against the shop's own counts.)
//!
//! The locustfile it ports:
//!
//! ```python
//! import random
//! from locust import HttpUser, task, between, constant_pacing
//!
//! class WebsiteUser(HttpUser):
//!     weight = 3
//!     wait_time = between(1, 3)
//!
//!     def on_start(self):
//!         self.client.post("/login", {"username": "reader", "password": "secret"})
//!
//!     def on_stop(self):
//!         self.client.post("/logout")
//!
//!     @task(3)
//!     def index(self):
//!         with self.client.get("/", catch_response=True) as response:
//!             if "Welcome" not in response.text:
//!                 response.failure("no welcome on the front page")
//!
//!     @task(2)
//!     def item(self):
//!         item_id = random.randint(1, 120)
//!         with self.client.get(f"/items/{item_id}", name="/items/[id]",
//!                              catch_response=True) as response:
//!             if response.status_code == 404:
//!                 response.success()  # sold out and gone: expected
//!
//!     @task(1)
//!     def add_to_cart(self):
//!         self.client.post("/cart", json={"item": random.randint(1, 100), "quantity": 1})
//!
//! class AdminUser(HttpUser):
//!     weight = 1
//!     wait_time = constant_pacing(2)
//!
//!     def on_start(self):
//!         self.client.post("/login", {"username": "admin", "password": "secret"})
//!
//!     def on_stop(self):
//!         self.client.post("/logout")
//!
//!     @task
//!     def report(self):
//!         with self.client.get("/admin/report", catch_response=True) as response:
//!             if not isinstance(response.json().get("orders"), int):
//!                 response.failure("report without orders")
//! ```
//!
//! Run it as `loadtest` runs (`cargo run -p loadtest --example
//! locustfile_port -- master --host http://127.0.0.1:8080`, then `... --
//! worker` once or more); `worker --wait MIN:MAX` replaces both classes'
//! waits, for quick runs.

use std::time::Duration;

use goose::prelude::*;
use rand::Rng;
use swarm::cli::ScenarioOptions;
use swarm::locust::{between, constant_pacing, LocustError, User};
use swarm::worker::{read_body, read_response};

/// `self.client.post("/login", {...})`: a form POST. The session cookie the
/// shop answers with stays in this user's cookie jar (each worker user has
/// its own, as each Locust user has its own client), so every later
/// request of the user carries it.
async fn log_in(user: &mut GooseUser, name: &str) -> TransactionResult {
    let form = [("username", name), ("password", "secret")];
    let goose = user.post_form("/login", &form).await?;
    read_body(user, goose).await;
    Ok(())
}

async fn log_in_reader(user: &mut GooseUser) -> TransactionResult {
    log_in(user, "reader").await
}

async fn log_in_admin(user: &mut GooseUser) -> TransactionResult {
    log_in(user, "admin").await
}

/// `on_stop`: runs when the user stops (the swarm's stop, the worker's
/// quit), and what it sends is counted.
async fn log_out(user: &mut GooseUser) -> TransactionResult {
    let goose = user.post("/logout", "").await?;
    read_body(user, goose).await;
    Ok(())
}

/// `catch_response=True` and `response.failure(...)`: read the response
/// in full ([`read_response`], as Locust reads every body), look at it,
/// and mark the request; the reason is the failure's error in the stats.
async fn index(user: &mut GooseUser) -> TransactionResult {
    let goose = user.get("/").await?;
    let mut read = read_response(user, goose).await;
    if read.status == Some(200) && !read.text().contains("Welcome") {
        return user.set_failure(
            "no welcome on the front page",
            &mut read.request,
            None,
            None,
        );
    }
    Ok(())
}

/// `name="/items/[id]"` is goose's `get_named`: every id counts in one row.
/// `random.randint(1, 120)` is the `rand` crate's `random_range(1..=120)`.
/// An expected 404 marked a success is no failure in the stats.
async fn item(user: &mut GooseUser) -> TransactionResult {
    let item_id = rand::rng().random_range(1..=120);
    let goose = user
        .get_named(&format!("/items/{item_id}"), "/items/[id]")
        .await?;
    let mut read = read_response(user, goose).await;
    if read.status == Some(404) {
        return user.set_success(&mut read.request);
    }
    Ok(())
}

/// `self.client.post("/cart", json={...})` is goose's `post_json`, with a
/// `serde_json` value (or any `Serialize` type).
async fn add_to_cart(user: &mut GooseUser) -> TransactionResult {
    let line = serde_json::json!({"item": rand::rng().random_range(1..=100), "quantity": 1});
    let goose = user.post_json("/cart", &line).await?;
    read_body(user, goose).await;
    Ok(())
}

/// `response.json()`: [`swarm::worker::ReadResponse::json`].
async fn report(user: &mut GooseUser) -> TransactionResult {
    let goose = user.get("/admin/report").await?;
    let mut read = read_response(user, goose).await;
    let report: Option<serde_json::Value> = read.json().ok();
    if !report.is_some_and(|r| r["orders"].is_u64()) {
        return user.set_failure("report without orders", &mut read.request, None, None);
    }
    Ok(())
}

/// The two user classes. Every builder says what is wrong through a
/// `Result`; `?` hands it to `swarm::cli::main`, which prints it and exits
/// before any port opens: no `expect` here.
fn scenarios(options: &ScenarioOptions) -> Result<Vec<Scenario>, LocustError> {
    let secs = Duration::from_secs;
    let website_user = User::new("WebsiteUser")
        .weight(3)
        // `--wait MIN:MAX` on the worker's command line wins over the class's own.
        .wait_time(options.wait_time_or(between(secs(1), secs(3))))
        .on_start(transaction!(log_in_reader))
        .task(3, transaction!(index))
        .task(2, transaction!(item))
        .task(1, transaction!(add_to_cart))
        .on_stop(transaction!(log_out))
        .build()?;
    let admin_user = User::new("AdminUser")
        .weight(1)
        .wait_time(options.wait_time_or(constant_pacing(secs(2))))
        .on_start(transaction!(log_in_admin))
        .task(1, transaction!(report))
        .on_stop(transaction!(log_out))
        .build()?;
    Ok(vec![website_user, admin_user])
}

fn main() -> std::process::ExitCode {
    swarm::cli::main(scenarios)
}
