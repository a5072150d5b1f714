//! The shape of a run besides its user count: the test plan the master
//! follows (`--test-plan`) and the user classes it runs (the names after
//! `loadtest master`'s flags, the class picker).

use std::time::Instant;

use tokio::sync::oneshot;

use super::dispatch::UserClass;
use super::handle::MasterError;
use super::runner::Master;
use super::state::RunState;
use crate::test_plan::PlanState;

/// A run following the master's test plan.
#[derive(Debug, Clone, Copy)]
pub(super) struct PlanRun {
    pub(super) started: Instant,
    /// When the run stopped (the plan over, or a stop), freezing the position.
    pub(super) ended: Option<Instant>,
    /// Whether it went through the whole plan.
    pub(super) finished: bool,
}

impl Master {
    /// Sets the run's classes from a swarm request's `user_classes`: with
    /// `--class-picker`, the names given (all of them when none is given to
    /// a new run, the current ones when none is given to an edit, as
    /// Locust); without it, they are ignored, as Locust does.
    pub(super) fn choose_classes(
        &mut self,
        asked: Option<&[String]>,
        new_run: bool,
    ) -> Result<(), MasterError> {
        let asked = asked.filter(|names| !names.is_empty());
        if !self.config.class_picker {
            if asked.is_some() {
                tracing::info!("user_classes in the swarm request ignored: the class picker is off (--class-picker turns it on)");
            }
            return Ok(());
        }
        let Some(asked) = asked else {
            if new_run {
                self.active_classes = self.config.classes.clone();
            }
            return Ok(());
        };
        check_class_names(&self.config.classes, asked)
            .map_err(|why| MasterError::Invalid(format!("Invalid user_classes: {why}")))?;
        self.active_classes = chosen(&self.config.classes, asked);
        Ok(())
    }

    /// Moves the dispatched users along the test plan; stops the run once
    /// the plan is over.
    pub(super) fn follow_plan(&mut self) {
        let (Some(plan), Some(run)) = (&self.config.test_plan, self.plan_run) else {
            return;
        };
        if run.ended.is_some() || !self.state.is_active() {
            return;
        }
        let position = plan.position(run.started.elapsed());
        if position.finished {
            tracing::info!("the test plan is over; stopping");
            if let Some(run) = self.plan_run.as_mut() {
                run.finished = true;
            }
            let (tx, _rx) = oneshot::channel();
            self.stop(tx, false);
            return;
        }
        let holding = plan
            .steps()
            .get(position.step)
            .is_some_and(|step| step.users == position.target);
        if position.target != self.dispatched {
            self.dispatched = position.target;
            self.redispatch();
        }
        self.state = if holding {
            RunState::Running
        } else {
            RunState::Spawning
        };
    }

    /// The test plan and where the run is in it, when there is one.
    pub(super) fn plan_state(&self) -> Option<PlanState> {
        let plan = self.config.test_plan.as_ref()?;
        Some(match self.plan_run {
            None => PlanState::ready(plan),
            Some(run) => {
                let now = run.ended.unwrap_or_else(Instant::now);
                let mut position = plan.position(now.saturating_duration_since(run.started));
                position.finished = run.finished;
                PlanState::at(plan, position)
            }
        })
    }
}

/// `classes` limited to `names` (all of them when `names` is empty), in
/// the load test's order: the weights of those kept share the users.
pub(super) fn chosen(classes: &[UserClass], names: &[String]) -> Vec<UserClass> {
    if names.is_empty() {
        return classes.to_vec();
    }
    classes
        .iter()
        .filter(|c| names.contains(&c.name))
        .cloned()
        .collect()
}

/// Refuses names that are not among `classes`, naming them and the ones
/// there are.
pub fn check_class_names(classes: &[UserClass], names: &[String]) -> Result<(), String> {
    let unknown: Vec<&str> = names
        .iter()
        .filter(|name| !classes.iter().any(|c| &c.name == *name))
        .map(String::as_str)
        .collect();
    if unknown.is_empty() {
        return Ok(());
    }
    let known: Vec<&str> = classes.iter().map(|c| c.name.as_str()).collect();
    Err(format!(
        "{} not in this load test, whose user classes are {}",
        unknown.join(", "),
        known.join(", ")
    ))
}
