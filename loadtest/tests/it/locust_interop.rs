//! Interoperability with stock Locust 2.x, both ways: `loadtest worker`s
//! under a Locust master, and Locust workers under `loadtest master`. In
//! both, the master's request count is nginx's access-log count; our
//! master judges `--threshold` rules on the Locust workers' buckets.

use std::time::Duration;

use harness::*;
use swarm::api::RunState;

/// Swarms through a Locust-compatible web API, lets it run, stops it.
fn swarm_for_a_while(api: &Api, host: &str) {
    api.swarm_at_once(4, host);
    wait_until(Duration::from_secs(30), "requests to be counted", || {
        (api.total_requests() > 2_000).then_some(())
    });
    std::thread::sleep(Duration::from_secs(3));
    api.stop();
}

/// The Aggregated request count once it stops changing (workers report
/// every 3 s, Locust's without a final report on stop).
fn settled_count(api: &Api) -> f64 {
    settled_requests(api.url(), Duration::from_secs(30)) as f64
}

#[test]
fn loadtest_workers_join_a_locust_master() {
    let nginx = Nginx::start(NginxOptions::default());
    let dir = TempDir::new("interop-locust-master");
    let locustfile = write_locustfile(dir.path(), &nginx.url());
    let (bind_port, web_port) = (free_port(), free_port());
    let locust = Locust::master(&locustfile, bind_port, web_port, &[]);
    let _w1 = loadtest!().worker(&dir, bind_port, &[]);
    let _w2 = loadtest!().worker(&dir, bind_port, &[]);
    locust
        .wait_for_workers(2, Duration::from_secs(30))
        .expect("both loadtest workers joined Locust");
    let api = locust.api();
    swarm_for_a_while(&api, &nginx.url());
    let counted = settled_count(&api);
    let stats = api.requests();
    assert_eq!(stats.workers.len(), 2, "{:?}", stats.workers);
    assert_eq!(
        stats.stats.first().map(|row| row.name.as_str()),
        Some("/"),
        "rows come from goose's request names: {:?}",
        stats.stats
    );
    assert_close(
        counted,
        nginx.count_requests() as f64,
        0.01,
        "requests: Locust master vs nginx log",
    );
}

#[test]
fn locust_workers_join_a_loadtest_master() {
    let nginx = Nginx::start(NginxOptions::default());
    let dir = TempDir::new("interop-loadtest-master");
    let locustfile = write_locustfile(dir.path(), &nginx.url());
    let (_master, port, api) = loadtest!().master_with_ui(&dir, &["--threshold", "p99<10s"]);
    let _w1 = Locust::worker(&locustfile, port, &[]);
    let _w2 = Locust::worker(&locustfile, port, &[]);
    let api = Api::new(&api);
    wait_until(
        Duration::from_secs(30),
        "two Locust workers to join",
        || (api.requests().worker_count == 2).then_some(()),
    );
    swarm_for_a_while(&api, &nginx.url());
    let counted = settled_count(&api);
    let stats = api.requests();
    assert_eq!(stats.state, RunState::Stopped, "{stats:?}");
    assert_close(
        counted,
        nginx.count_requests() as f64,
        0.01,
        "requests: loadtest master vs nginx log",
    );
    // Locust's workers send rounded buckets, not histograms: the rule is
    // judged on those, and says so.
    let verdict = &stats.thresholds[0];
    assert!(verdict.passed, "{verdict:?}");
    assert_eq!(verdict.source.as_deref(), Some("buckets"), "{verdict:?}");
    assert!(
        verdict.observed.ends_with("(Locust buckets)"),
        "{verdict:?}"
    );
}
