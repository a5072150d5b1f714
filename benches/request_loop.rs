//! The request loop: one goose user's `get("/")` (read to the end) against
//! a local server, beside a bare reqwest client doing the same, in one run.
//! The ratio is goose's per-request overhead on the client side; the
//! worker's metrics pipeline is measured end to end by `scripts/compare-load`.

// criterion_group! defines the undocumented bench functions.
#![allow(missing_docs)]

use std::net::SocketAddr;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use goose::config::GooseConfiguration;
use goose::goose::GooseUser;

/// A static page server on a free loopback port, on its own runtime thread.
fn serve() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    let addr = listener.local_addr().expect("local addr");
    listener.set_nonblocking(true).expect("nonblocking");
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("server runtime");
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
            let app = axum::Router::new().fallback(|| async { "<html><body>bench</body></html>" });
            let _ = axum::serve(listener, app).await;
        });
    });
    addr
}

fn request_loop(c: &mut Criterion) {
    let addr = serve();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("client runtime");
    let base = format!("http://{addr}");
    let mut group = c.benchmark_group("request_loop");
    group.throughput(Throughput::Elements(1));

    let client = reqwest::Client::new();
    let url = format!("{base}/");
    group.bench_function("reqwest_get", |b| {
        b.to_async(&runtime).iter(|| async {
            let response = client.get(&url).send().await.expect("reqwest get");
            response.bytes().await.expect("body")
        });
    });

    let config = GooseConfiguration::default();
    group.bench_function("goose_user_get", |b| {
        b.to_async(&runtime).iter_custom(|iters| {
            let mut user =
                GooseUser::single(base.parse().expect("base url"), &config).expect("goose user");
            async move {
                let start = std::time::Instant::now();
                for _ in 0..iters {
                    let goose = user.get("/").await.expect("goose get");
                    goose
                        .response
                        .expect("response")
                        .bytes()
                        .await
                        .expect("body");
                }
                start.elapsed()
            }
        });
    });
    group.finish();
}

criterion_group!(benches, request_loop);
criterion_main!(benches);
