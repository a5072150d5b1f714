//! spotload's test harness: it starts the real components the integration
//! tests talk to and stops them when the test is done.
//!
//! What it starts, each on a free loopback port (or in a network namespace
//! of its own) with its config and logs in a temp dir:
//!
//! - [`Nginx`]: Debian's nginx, the system under test, over HTTP or
//!   HTTPS ([`NginxTls`], with a certificate from a [`TestCa`]);
//! - [`Locust`]: stock Locust master or worker from the project's venv;
//! - [`Moto`]: moto's EC2/SSM API from the venv (its SDK clients, with the
//!   `aws` feature, in [`moto_sdk`]);
//! - [`netns::Lan`]: sshd test hosts in network namespaces;
//! - [`ImdsStub`]: an EC2 instance metadata (IMDSv2) stub;
//! - [`webdriver::ChromeDriver`]: headless Chromium over WebDriver;
//! - [`Loadtest`]: the `loadtest` binary as master and workers (the test
//!   passes the binary's path);
//! - [`Process`]: any other program;
//! - [`spotload_cli::SpotloadCli`]: the `spotload` binary in a scratch
//!   HOME and state directory, against moto or the fault proxy;
//! - [`zmtp::RawPeer`]: a hand-written ZeroMQ peer, for tests that attack
//!   a master's port the way no real worker would.
//!
//! Every process is stopped when its handle drops, so a panicking test
//! leaves no orphans; on a panic the handle also prints the tail of the
//! process's logs and keeps its temp dir (`$TMPDIR/spotload-*`).
//!
//! Tests read HTTP through reqwest ([`http_get`], [`http_post_form`], ...)
//! and a master's API in `swarm::api` types through [`Api`]; a
//! [`Watcher`] samples a master (answer times, workers, memory and
//! descriptors from [`procfs`]) all through an attack. They wait
//! with [`wait_until`], the one polling loop, and never assert that
//! something did not happen after a fixed sleep.
//!
//! The API is blocking std code, callable from plain `#[test]`s; from a
//! `#[tokio::test]`, wrap the calls in `spawn_blocking`. Tools come from
//! Debian packages and from the venv that `scripts/test` installs; a
//! missing tool panics with "run scripts/test to install".

mod api;
mod check;
mod http;
mod imds;
mod loadtest;
mod locust;
mod moto;
mod nginx;
mod process;
pub mod procfs;
mod serve;
pub mod tls;
mod wait;
mod watch;
pub mod zmtp;

#[cfg(feature = "aws")]
pub mod faultproxy;
#[cfg(feature = "aws")]
pub mod moto_sdk;
pub mod netns;
pub mod spotload_cli;
pub mod webdriver;

pub use self::{
    api::{
        aggregated, settled_requests, start_swarm, stats, total_requests, worker_entry,
        worker_states, Api,
    },
    check::{assert_close, csv_row, epoch_now, num},
    http::{
        http_get, http_post_form, http_post_form_with_headers, http_request, https_request,
        try_http, try_http_with_headers, Reply,
    },
    imds::ImdsStub,
    loadtest::{exit_code, node_id, spawn_worker, strip_ansi, unique_name, Loadtest},
    locust::{venv_bin, venv_dir, write_locustfile, Locust},
    moto::Moto,
    nginx::{AccessLine, Nginx, NginxOptions, NginxTls, TlsLine, ANY_PATH_BODY},
    process::{free_port, loopback, wait_for_port, Process, TempDir},
    tls::{Leaf, TestCa},
    wait::{try_wait_until, wait_until, POLL_INTERVAL},
    watch::{Watched, Watcher, SAMPLE_EVERY},
};

/// The `loadtest` binary of the calling test's package build:
/// `Loadtest::new(env!("CARGO_BIN_EXE_loadtest"))`, expanded in the test,
/// where Cargo sets that variable (loadtest's own integration tests).
#[macro_export]
macro_rules! loadtest {
    () => {
        $crate::Loadtest::new(env!("CARGO_BIN_EXE_loadtest"))
    };
}
