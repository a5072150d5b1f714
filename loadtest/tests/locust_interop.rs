//! Interoperability with stock Locust 2.x, both ways: `loadtest worker`s
//! under a Locust master, and Locust workers under `loadtest master`. In
//! both, the master's request count is nginx's access-log count.

mod common;

use std::time::Duration;

use common::support::{
    aggregated_row, free_port, http_post_form, write_locustfile, Locust, Nginx, NginxOptions,
    TempDir,
};
use common::*;

/// Swarms through a Locust-compatible web API, lets it run, stops it.
fn swarm_for_a_while(api: &str, host: &str) {
    let (status, body) = http_post_form(
        &format!("{api}/swarm"),
        &[("user_count", "4"), ("spawn_rate", "4"), ("host", host)],
    );
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("\"success\": true") || body.contains("\"success\":true"),
        "{body}"
    );
    wait_until(Duration::from_secs(30), "requests to be counted", || {
        let n = aggregated_row(&get_json(&format!("{api}/stats/requests")))["num_requests"]
            .as_u64()
            .unwrap_or(0);
        (n > 2_000).then_some(())
    });
    std::thread::sleep(Duration::from_secs(3));
    let (status, body) = http_post_form(&format!("{api}/stop"), &[]);
    assert_eq!(status, 200, "{body}");
}

/// The Aggregated request count once it stops changing (workers report
/// every 3 s, Locust's without a final report on stop).
fn settled_count(api: &str) -> f64 {
    let mut last = -1.0;
    let mut stable = 0;
    wait_until(Duration::from_secs(30), "stats to settle", || {
        let n = aggregated_row(&get_json(&format!("{api}/stats/requests")))["num_requests"]
            .as_f64()
            .unwrap_or(0.0);
        stable = if n == last { stable + 1 } else { 0 };
        last = n;
        (stable >= 20).then_some(n)
    })
}

#[test]
fn loadtest_workers_join_a_locust_master() {
    let nginx = Nginx::start(NginxOptions::default());
    let dir = TempDir::new("interop-locust-master");
    let locustfile = write_locustfile(dir.path(), &nginx.url());
    let (bind_port, web_port) = (free_port(), free_port());
    let locust = Locust::master(&locustfile, bind_port, web_port, &[]);
    let _w1 = worker(&dir, bind_port, &[]);
    let _w2 = worker(&dir, bind_port, &[]);
    locust
        .wait_for_workers(2, Duration::from_secs(30))
        .expect("both loadtest workers joined Locust");
    let api = locust.web_url();
    swarm_for_a_while(&api, &nginx.url());
    let counted = settled_count(&api);
    let stats = get_json(&format!("{api}/stats/requests"));
    assert!(
        stats["workers"].as_array().is_some_and(|w| w.len() == 2),
        "{}",
        stats["workers"]
    );
    assert_eq!(
        stats["stats"][0]["name"], "/",
        "rows come from goose's request names: {}",
        stats["stats"]
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
    let (_master, port, api) = master_with_ui(&dir, &[]);
    let _w1 = Locust::worker(&locustfile, port, &[]);
    let _w2 = Locust::worker(&locustfile, port, &[]);
    wait_until(
        Duration::from_secs(30),
        "two Locust workers to join",
        || (get_json(&format!("{api}/stats/requests"))["worker_count"] == 2).then_some(()),
    );
    swarm_for_a_while(&api, &nginx.url());
    let counted = settled_count(&api);
    let stats = get_json(&format!("{api}/stats/requests"));
    assert_eq!(stats["state"], "stopped", "{stats}");
    assert_close(
        counted,
        nginx.count_requests() as f64,
        0.01,
        "requests: loadtest master vs nginx log",
    );
}
