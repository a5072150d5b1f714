//! The `loadtest` integration tests, one binary (one link) with a module
//! per area. Each starts real components itself: nginx, `loadtest` master
//! and workers, Locust, headless Chromium. The tests that strain the
//! machine's limits are in `tests/strain`, a binary of their own.

mod arrival;
mod bad_frames;
mod bad_input;
mod chaos;
mod class_picker;
mod classes;
mod end_to_end;
mod example;
mod https;
mod join_secret;
mod locust_headless;
mod locust_interop;
mod on_stop;
mod pacing;
mod percentiles;
mod ramp;
mod rates;
mod report_markup;
mod spot;
mod test_plan;
mod thresholds;
mod verdicts;
mod web_tls;
mod web_ui;
