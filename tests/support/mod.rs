//! Test harness for spotload's integration tests.
//!
//! It starts the real components the tests talk to — Debian's nginx as the
//! system under test, stock Locust and moto's EC2 API from the project's
//! Python venv — each on a free loopback port, with its config and logs in
//! a temp dir of its own. `Process` does the same for any other program.
//! Every process it starts is stopped when its handle is dropped, so a
//! panicking test leaves no orphans; on a panic the handle also prints the
//! tail of the process's stdout/stderr and keeps its temp dir.
//!
//! Include it from an integration test file with `mod support;`. The API is
//! blocking std code, callable from plain `#[test]`s and from
//! `#[tokio::test]`s alike (wrap the long waits in `spawn_blocking` there).
//!
//! Tools come from Debian packages and from the venv that `scripts/test`
//! installs; a missing tool panics with "run scripts/test to install".
//!
//! The harness is split by what it runs; everything is re-exported here,
//! so callers write `support::Nginx`, `support::free_port` and so on:
//!
//! - `process`: [`TempDir`], [`Process`], [`free_port`], [`wait_for_port`],
//!   [`loopback`], and starting a server on a free port;
//! - `http`: a tiny HTTP/1.0 client, [`http_get`], [`http_post_form`],
//!   [`try_http`], [`try_http_with_headers`];
//! - `imds`: [`ImdsStub`], an EC2 instance metadata (IMDSv2) stub that
//!   serves a spot interruption notice when armed;
//! - `nginx`: [`Nginx`], [`NginxOptions`], [`AccessLine`];
//! - `locust`: the venv ([`venv_dir`], [`venv_bin`]), [`write_locustfile`],
//!   [`Locust`], [`aggregated_row`];
//! - `moto`: [`Moto`], the EC2/SSM API (its SDK clients and EC2 queries
//!   are in `moto_sdk.rs`, outside this module: see there);
//! - [`netns`] and [`webdriver`], used through their module paths.

// Each test file uses a different slice of the harness.
#![allow(dead_code)]

mod http;
mod imds;
mod locust;
mod moto;
mod nginx;
mod process;

pub mod netns;
pub mod webdriver;

// Each test file uses only some of these, hence the allow.
#[allow(unused_imports)]
pub use self::{
    http::{
        http_get, http_post_form, http_post_form_with_headers, try_http, try_http_with_headers,
    },
    imds::ImdsStub,
    locust::{aggregated_row, venv_bin, venv_dir, write_locustfile, Locust},
    moto::Moto,
    nginx::{AccessLine, Nginx, NginxOptions},
    process::{free_port, loopback, wait_for_port, Process, TempDir},
};

// For `webdriver`, which imports them from here.
use http::{parse_response, split_url};
