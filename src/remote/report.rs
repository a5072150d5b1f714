//! What a deploy did, host by host, and the final check that every worker
//! joined the master (through the master's own API, the `workers` list of
//! `GET /stats/requests`, fetched on the master host itself so no firewall
//! between here and the fleet matters).

use std::fmt::Write as _;
use std::time::{Duration, Instant};
use swarm::api::{NodeState, StatsRequests};

use super::plan::{DeployPlan, HostPlan};
use super::recipe::{master_api, tail, StepFailure};
use super::script::Privilege;
use super::Shell;
use crate::role::Role;

/// How one host's deploy ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Every step for every role succeeded.
    Done,
    /// A step failed; `role` is `None` for host-wide steps (connect, upload).
    Failed {
        /// The role whose recipe failed.
        role: Option<Role>,
        /// The failed step, its command, reason and output.
        failure: StepFailure,
        /// Whether any step ran on the host before the failure.
        changed: bool,
    },
    /// Not attempted because something it depends on failed.
    Skipped {
        /// Why, e.g. "worker not started: the master did not come up".
        reason: String,
    },
}

/// One host's part of the [`Report`].
#[derive(Debug, Clone)]
pub struct HostReport {
    /// The host and the roles it was to run.
    pub plan: HostPlan,
    /// `uname -n`, once known.
    pub hostname: Option<String>,
    /// How its deploy ended.
    pub outcome: Outcome,
}

/// The whole deploy.
#[derive(Debug, Clone)]
pub struct Report {
    /// One per host, in plan order.
    pub hosts: Vec<HostReport>,
    /// The join check: `None` when the master never came up, else the
    /// workers seen or why not all were.
    pub joined: Option<Result<usize, String>>,
}

impl Report {
    /// True when every host is done and every worker joined the master.
    pub fn succeeded(&self) -> bool {
        self.hosts.iter().all(|h| h.outcome == Outcome::Done) && matches!(self.joined, Some(Ok(_)))
    }

    /// The failures in full, then every host's state, for stderr.
    pub fn render_failures(&self) -> String {
        let mut out = String::new();
        for host in &self.hosts {
            let who = format!("{} {}", host.plan.role_names(), host.plan.host.label());
            match &host.outcome {
                Outcome::Done => {}
                Outcome::Skipped { reason } => {
                    let _ = writeln!(out, "{who}: {reason}");
                }
                Outcome::Failed { role, failure, .. } => {
                    let role = role.map(|r| format!(" ({r} recipe)")).unwrap_or_default();
                    let _ = writeln!(
                        out,
                        "{who}: step \"{}\"{role} failed: {}",
                        failure.step, failure.reason
                    );
                    if !failure.command.is_empty() {
                        let _ = writeln!(out, "    command: {}", failure.command);
                    }
                    for line in failure.output.lines() {
                        let _ = writeln!(out, "    | {line}");
                    }
                }
            }
        }
        if let Some(Err(why)) = &self.joined {
            let _ = writeln!(out, "worker check: {why}");
        }
        let _ = writeln!(out, "state of every host:");
        let roles_width = self.hosts.iter().map(|h| h.plan.role_names().len()).max();
        let label_width = self.hosts.iter().map(|h| h.plan.host.label().len()).max();
        for host in &self.hosts {
            let state = match &host.outcome {
                Outcome::Done => "done: recipes complete, services running".to_string(),
                Outcome::Failed {
                    failure,
                    changed: false,
                    ..
                } => format!("FAILED at \"{}\"; nothing was changed on it", failure.step),
                Outcome::Failed { failure, .. } => format!(
                    "FAILED at \"{}\"; the steps before it took effect, the later ones did not run",
                    failure.step
                ),
                Outcome::Skipped { .. } => {
                    "previous processes stopped, new ones not started".into()
                }
            };
            let _ = writeln!(
                out,
                "  {:<rw$}  {:<lw$}  {state}",
                host.plan.role_names(),
                host.plan.host.label(),
                rw = roles_width.unwrap_or(0),
                lw = label_width.unwrap_or(0),
            );
        }
        out
    }

    /// "2 of 3 hosts failed" and the like, for the error line.
    pub fn headline(&self) -> String {
        let bad = self
            .hosts
            .iter()
            .filter(|h| h.outcome != Outcome::Done)
            .count();
        if bad > 0 {
            format!(
                "deploy failed on {bad} of {} hosts (details above)",
                self.hosts.len()
            )
        } else {
            match &self.joined {
                Some(Err(why)) => format!("deploy incomplete: {why}"),
                _ => "deploy incomplete: the master never came up".into(),
            }
        }
    }
}

/// Polls the master's API until every worker host that came up appears in
/// its `workers` list (by hostname), or the join timeout passes.
pub async fn check_joined(
    master: &impl Shell,
    plan: &DeployPlan,
    hosts: &[HostReport],
    say: &dyn Fn(&str),
) -> Result<usize, String> {
    let expected: Vec<String> = hosts
        .iter()
        .filter(|h| h.plan.has(Role::Worker) && h.outcome == Outcome::Done)
        .filter_map(|h| h.hostname.clone())
        .collect();
    say(&format!(
        "checking that {} worker(s) joined",
        expected.len()
    ));
    let (url, args) = master_api(
        "/stats/requests",
        plan.web_auth.as_deref(),
        plan.web_tls.is_some(),
    );
    let script = format!("fetch {url} {args}");
    let command = Privilege::Root.wrap(&script);
    let deadline = Instant::now() + plan.join_timeout;
    loop {
        let last = match master.run(&command, None).await {
            Ok(out) if out.success() => match missing_workers(&out.stdout, &expected) {
                Ok((seen, missing)) if missing.is_empty() => {
                    say(&format!("{seen} worker(s) joined the master"));
                    return Ok(seen);
                }
                Ok((seen, missing)) => format!(
                    "{seen} worker(s) in the master's list; not (yet) there: {}",
                    missing.join(", ")
                ),
                Err(err) => err,
            },
            Ok(out) => format!(
                "the master's API did not answer: {}",
                tail(&out.combined(), 3)
            ),
            Err(err) => err.to_string(),
        };
        if Instant::now() >= deadline {
            return Err(format!(
                "not every worker joined within {:?}: {last}; see /opt/spotload/log/worker.log on the workers",
                plan.join_timeout
            ));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// From a `/stats/requests` body: how many live workers the master lists,
/// and which expected hostnames are not among them. A worker's id is
/// `<hostname>_<hex>` with `_` in the hostname turned into `-`.
fn missing_workers(body: &str, expected: &[String]) -> Result<(usize, Vec<String>), String> {
    let stats: StatsRequests = serde_json::from_str(body)
        .map_err(|err| format!("the master's /stats/requests is not the API's answer ({err})"))?;
    let mut live: Vec<String> = stats
        .workers
        .iter()
        .filter(|w| w.state != NodeState::Missing)
        .map(|w| {
            let id = w.id.as_str();
            id.rsplit_once('_').map_or(id, |(host, _)| host).to_string()
        })
        .collect();
    let seen = live.len();
    let mut missing = Vec::new();
    for name in expected {
        let name = name.replace('_', "-");
        match live.iter().position(|h| *h == name) {
            Some(found) => {
                live.swap_remove(found);
            }
            None => missing.push(name),
        }
    }
    Ok((seen, missing))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `/stats/requests` answer listing these (id, state) workers.
    fn answer(workers: &[(&str, NodeState)]) -> String {
        let stats = StatsRequests {
            stats: Vec::new(),
            errors: Vec::new(),
            current_rps: 0.0,
            current_fail_per_sec: 0.0,
            total_rps: 0.0,
            total_fail_per_sec: 0.0,
            fail_ratio: 0.0,
            current_response_time_percentiles: swarm::api::CurrentPercentiles { p50: 0, p95: 0 },
            workers: workers
                .iter()
                .map(|(id, state)| swarm::api::WorkerRow {
                    id: id.to_string(),
                    state: *state,
                    user_count: 0,
                    user_classes_count: Default::default(),
                    cpu_usage: 0.0,
                    memory_usage: 0,
                    cpu_share: None,
                })
                .collect(),
            worker_count: workers.len(),
            state: swarm::api::RunState::Ready,
            user_count: 0,
            host: None,
            worker_events: Vec::new(),
            refused_frames: Default::default(),
            test_plan: None,
            user_classes: Vec::new(),
            class_picker: None,
            thresholds: Vec::new(),
            arrival_rate: None,
            dropped_iterations: 0,
        };
        serde_json::to_string(&stats).expect("serializes")
    }

    #[test]
    fn workers_are_matched_by_hostname_once_each() {
        let body = answer(&[
            ("ip-10-0-0-7_0123abcd", NodeState::Ready),
            ("node-b_99ff", NodeState::Running),
            ("node-c_77", NodeState::Missing),
        ]);
        let body = body.as_str();
        let expected = vec!["ip-10-0-0-7".to_string(), "node_b".into()];
        assert_eq!(missing_workers(body, &expected).unwrap(), (2, vec![]));
        let expected = vec![
            "node-c".to_string(),
            "ip-10-0-0-7".into(),
            "ip-10-0-0-7".into(),
        ];
        let (seen, missing) = missing_workers(body, &expected).unwrap();
        assert_eq!(seen, 2);
        assert_eq!(missing, vec!["node-c", "ip-10-0-0-7"]);
        assert!(missing_workers("<html>", &expected).is_err());
    }
}
