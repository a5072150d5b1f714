//! A bare reqwest loop: N tasks GET a URL back to back for a fixed time, on
//! the same runtime and HTTP client stack goose uses, with the clients built
//! as the worker builds its users' (same settings: see
//! `swarm::worker::user_client_builder`). `scripts/compare-load` runs it
//! beside `loadtest worker` to separate the HTTP stack's cost from goose's
//! and the worker's.
//!
//! Usage: reqwest_loop URL [TASKS=50] [SECONDS=10] [--client-per-task];
//! prints requests/s and the requests made. With `--client-per-task` each
//! task has its own client and cookie jar (as the worker's users have by
//! default), else all share one client without cookies (as with
//! `loadtest worker --shared-client`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use swarm::worker::user_client_builder;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let per_task = args.iter().any(|a| a == "--client-per-task");
    let mut args = args.into_iter().filter(|a| !a.starts_with("--"));
    let Some(url) = args.next() else {
        eprintln!("usage: reqwest_loop URL [TASKS] [SECONDS] [--client-per-task]");
        std::process::exit(2);
    };
    let tasks: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(50);
    let seconds: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(10);
    let agent = format!("loadtest/{} (reqwest_loop)", env!("CARGO_PKG_VERSION"));
    let build = |cookies: bool| match user_client_builder(&agent, cookies).build() {
        Ok(client) => client,
        Err(err) => {
            eprintln!("cannot build the HTTP client: {err}");
            std::process::exit(1);
        }
    };
    let shared = build(false);
    let done = Arc::new(AtomicU64::new(0));
    let end = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let handles: Vec<_> = (0..tasks)
        .map(|_| {
            let client = if per_task {
                build(true)
            } else {
                shared.clone()
            };
            let (url, done) = (url.clone(), done.clone());
            tokio::spawn(async move {
                while Instant::now() < end {
                    if let Ok(response) = client.get(&url).send().await {
                        let _ = response.bytes().await;
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for handle in handles {
        let _ = handle.await;
    }
    let done = done.load(Ordering::Relaxed);
    println!(
        "{:.1} {done}",
        done as f64 / started.elapsed().as_secs_f64()
    );
}
