//! The load test's scenarios, as its `main` hands them to [`super::main`]:
//! a function of the worker's options that builds goose scenarios, and may
//! fail.
//!
//! goose's builders check what they are given (`Scenario::set_weight`,
//! `set_wait_time`, `Transaction::set_weight` return a `Result`), and so do
//! [`crate::locust`]'s. A scenarios function that returns a `Result` uses
//! `?` on them; the first error ends `loadtest master` or `loadtest worker`
//! before any port opens, with the error and what to fix, through the same
//! path as any other startup error. A function that returns a plain `Vec`
//! still works.

use std::error::Error;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use goose::prelude::Scenario;

use crate::locust::{between, WaitTime};

/// Options the scenarios are built with (from the worker's command line).
#[derive(Debug, Clone, Default)]
pub struct ScenarioOptions {
    /// Pause between a user's requests, drawn from this range (`--wait
    /// MIN:MAX`, MIN ≤ MAX).
    pub wait: Option<(Duration, Duration)>,
}

impl ScenarioOptions {
    /// The wait the command line asked for (`--wait MIN:MAX`, as Locust's
    /// `between(MIN, MAX)`), else `default`: a user class's own
    /// `wait_time`, which the command line overrides.
    pub fn wait_time_or(&self, default: WaitTime) -> WaitTime {
        match self.wait {
            Some((min, max)) => between(min, max),
            None => default,
        }
    }
}

/// What a scenarios function may return: the scenarios, or why they could
/// not be built.
pub trait IntoScenarios {
    /// The scenarios, or the error that stopped them.
    fn into_scenarios(self) -> Result<Vec<Scenario>, Box<dyn Error + Send + Sync>>;
}

impl IntoScenarios for Vec<Scenario> {
    fn into_scenarios(self) -> Result<Vec<Scenario>, Box<dyn Error + Send + Sync>> {
        Ok(self)
    }
}

/// `GooseError`, [`crate::locust::LocustError`], `anyhow::Error`, a
/// `Box<dyn Error>` or a `String`: whatever `?` gathered.
impl<E> IntoScenarios for Result<Vec<Scenario>, E>
where
    E: Into<Box<dyn Error + Send + Sync>>,
{
    fn into_scenarios(self) -> Result<Vec<Scenario>, Box<dyn Error + Send + Sync>> {
        self.map_err(Into::into)
    }
}

/// A scenarios function whatever it returns, its errors made `anyhow`'s.
type Build = dyn Fn(&ScenarioOptions) -> anyhow::Result<Vec<Scenario>> + Send + Sync;

/// The load test's scenarios function, called once per process (the
/// master reads the user classes' names and weights from it, each worker
/// builds its users).
#[derive(Clone)]
pub struct ScenarioBuilder {
    build: Arc<Build>,
}

impl std::fmt::Debug for ScenarioBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ScenarioBuilder")
    }
}

impl ScenarioBuilder {
    /// Wraps a scenarios function returning a `Vec<Scenario>` or a `Result`.
    pub fn new<R: IntoScenarios + 'static>(build: fn(&ScenarioOptions) -> R) -> ScenarioBuilder {
        ScenarioBuilder {
            build: Arc::new(move |options| {
                build(options)
                    .into_scenarios()
                    .map_err(anyhow::Error::from_boxed)
            }),
        }
    }

    /// The scenarios for `options`; an error says which step failed and
    /// where to fix it, and so does a load test without any scenario.
    pub fn build(&self, options: &ScenarioOptions) -> anyhow::Result<Vec<Scenario>> {
        let scenarios = (self.build)(options).context(
            "the load test's scenarios could not be built: fix the scenarios function \
             the load test hands to swarm::cli::main (loadtest/src/main.rs)",
        )?;
        if scenarios.is_empty() {
            anyhow::bail!("the load test defines no scenarios: add one in loadtest/src");
        }
        Ok(scenarios)
    }
}

/// The user classes the master dispatches: the scenarios' names and weights.
pub fn user_classes(build: &ScenarioBuilder) -> anyhow::Result<Vec<crate::master::UserClass>> {
    Ok(build
        .build(&ScenarioOptions::default())?
        .iter()
        .map(|s| crate::master::UserClass {
            name: s.name.to_string(),
            weight: s.weight.max(1) as u64,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use goose::prelude::*;

    fn fine(_: &ScenarioOptions) -> Vec<Scenario> {
        vec![scenario!("WebsiteUser")]
    }

    fn weightless(_: &ScenarioOptions) -> Result<Vec<Scenario>, GooseError> {
        Ok(vec![scenario!("WebsiteUser").set_weight(0)?])
    }

    fn none(_: &ScenarioOptions) -> anyhow::Result<Vec<Scenario>> {
        Ok(Vec::new())
    }

    #[test]
    fn a_plain_vec_and_a_result_both_build() {
        let built = ScenarioBuilder::new(fine).build(&ScenarioOptions::default());
        assert_eq!(built.map(|s| s.len()).ok(), Some(1));
    }

    #[test]
    fn goose_s_refusal_says_what_and_where() {
        let err = ScenarioBuilder::new(weightless)
            .build(&ScenarioOptions::default())
            .err()
            .map(|e| format!("{e:#}"))
            .unwrap_or_default();
        assert!(err.contains("scenarios could not be built"), "{err}");
        assert!(err.contains("swarm::cli::main"), "{err}");
        assert!(err.to_lowercase().contains("weight"), "{err}");
    }

    async fn noop(_user: &mut GooseUser) -> TransactionResult {
        Ok(())
    }

    fn weightless_class(_: &ScenarioOptions) -> Result<Vec<Scenario>, crate::locust::LocustError> {
        let admin = crate::locust::User::new("AdminUser")
            .weight(0)
            .task(1, transaction!(noop));
        Ok(vec![admin.build()?])
    }

    /// The message docs/locust.md shows, word for word.
    #[test]
    fn a_class_s_error_names_the_class_and_what_to_do() {
        let err = ScenarioBuilder::new(weightless_class)
            .build(&ScenarioOptions::default())
            .err()
            .map(|e| format!("{e:#}"));
        assert_eq!(
            err.as_deref(),
            Some(
                "the load test's scenarios could not be built: fix the scenarios function \
                 the load test hands to swarm::cli::main (loadtest/src/main.rs): \
                 user class AdminUser: a weight of 0 would never start a user of it: \
                 give it 1 or more"
            )
        );
    }

    #[test]
    fn no_scenario_is_an_error() {
        let err = ScenarioBuilder::new(none).build(&ScenarioOptions::default());
        assert!(err.is_err());
    }

    #[test]
    fn the_command_line_wait_overrides_a_class_s_own() {
        let own = crate::locust::constant(Duration::from_secs(3));
        assert_eq!(ScenarioOptions::default().wait_time_or(own.clone()), own);
        let asked = ScenarioOptions {
            wait: Some((Duration::from_millis(10), Duration::from_millis(20))),
        };
        assert_eq!(
            asked.wait_time_or(own),
            between(Duration::from_millis(10), Duration::from_millis(20))
        );
    }
}
