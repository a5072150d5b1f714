//! A bare reqwest loop: N tasks GET a URL back to back for a fixed time, on
//! the same runtime and HTTP client stack goose uses. `scripts/compare-load`
//! runs it beside `loadtest worker` to separate the HTTP stack's cost from
//! goose's and the worker's.
//!
//! Usage: reqwest_loop URL [TASKS=50] [SECONDS=10]; prints requests/s.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let Some(url) = args.next() else {
        eprintln!("usage: reqwest_loop URL [TASKS] [SECONDS]");
        std::process::exit(2);
    };
    let tasks: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(50);
    let seconds: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(10);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap_or_default();
    let done = Arc::new(AtomicU64::new(0));
    let end = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let handles: Vec<_> = (0..tasks)
        .map(|_| {
            let (client, url, done) = (client.clone(), url.clone(), done.clone());
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
    println!(
        "{:.1}",
        done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
    );
}
