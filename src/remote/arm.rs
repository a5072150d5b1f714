//! `spotload deploy`'s self-destruct step: on every host of an EC2 fleet,
//! install the arming script and what re-runs it (the same install user
//! data runs at first boot, [`install_script`]), run it once, and check it
//! armed the expiry the instance's `spotload:expires-at` tag holds; the
//! step's progress line prints that expiry. So an AMI without cloud-init
//! is armed from the first deploy on, and a deploy repairs a broken timer.
//!
//! Deploy plans know nothing of EC2: `provision::fleet_hosts` reads each
//! fleet instance's tag and sets what its host should arm on the
//! [`HostPlan`](super::HostPlan) (`arm`), and the deploy builds the step
//! from it with [`arm_step`]. Hosts from an inventory have none, and
//! nothing is installed on them. The expiry, the script and its installer
//! are the neutral [`crate::expiry`]'s, shared with the launch's user data.

use super::recipe::Step;
use super::script::quote;
use crate::expiry::{
    install_script, ArmSettings, Expiry, EXPIRY_DIR, TAG_EXPIRES_AT, TIMER_UNIT, WATCH_PID_FILE,
};

/// What one host should arm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArmPlan {
    /// The fleet, for the commands error messages suggest.
    pub fleet: String,
    /// The instance the host is.
    pub instance_id: String,
    /// Its tag as EC2 reports it; `None` when it has no valid one.
    pub expected: Option<Expiry>,
    /// How the script behaves there (defaults on EC2).
    pub settings: ArmSettings,
    /// Why nothing is armed there, when nothing should be.
    pub skip: Option<String>,
}

/// Installs and arms the self-destruct, then checks that the host saved
/// the expected expiry and that the timer (or watch loop) runs. Its last
/// line says when the host powers off.
pub fn arm_step(plan: &ArmPlan, now: i64) -> Step {
    let name = "arm self-destruct";
    let command = format!("{EXPIRY_DIR}/spotload-expiry check");
    let refuse = |why: String| Step {
        name: name.into(),
        command: command.clone(),
        script: format!("echo {} >&2\nexit 1\n", quote(&why)),
        input: None,
        limit: std::time::Duration::from_secs(30),
    };
    if let Some(reason) = &plan.skip {
        return Step {
            script: format!("echo {}\n", quote(reason)),
            ..refuse(String::new())
        };
    }
    let fleet = &plan.fleet;
    let Some(expected) = plan.expected else {
        return refuse(format!(
            "instance {} has no valid {TAG_EXPIRES_AT} tag (launched by an older spotload?): \
             `spotload extend --fleet {fleet} --ttl 2h` sets one; then deploy again",
            plan.instance_id
        ));
    };
    if expected.seconds_left(now) <= 0 {
        return refuse(format!(
            "instance {} expired at {expected} ({}) and should be gone: `spotload extend \
             --fleet {fleet} --ttl 2h` keeps it, `spotload destroy --fleet {fleet}` ends it",
            plan.instance_id,
            expected.left_text(now)
        ));
    }
    let script = format!(
        "{install}\
         checked=$?\n\
         saved=$(cat {EXPIRY_DIR}/expires-at 2>/dev/null || true)\n\
         source=$(cat {EXPIRY_DIR}/source 2>/dev/null || true)\n\
         if [ $checked -ne 0 ]; then\n\
         \x20   echo \"the arming script failed (exit $checked)\" >&2; exit 1\n\
         fi\n\
         if [ \"$saved\" != {expected} ]; then\n\
         \x20   echo \"armed ${{saved:-nothing}} ($source), but the tag says {expected}: deploy again\" >&2; exit 1\n\
         fi\n\
         if [ -d /run/systemd/system ]; then\n\
         \x20   if ! systemctl is-active --quiet {TIMER_UNIT}; then\n\
         \x20       systemctl status --no-pager {TIMER_UNIT} >&2; exit 1\n\
         \x20   fi\n\
         \x20   how='{TIMER_UNIT} re-checks at boot and every minute'\n\
         else\n\
         \x20   i=0\n\
         \x20   while ! running {WATCH_PID_FILE} 'spotload-expiry watch' >/dev/null && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done\n\
         \x20   if ! running {WATCH_PID_FILE} 'spotload-expiry watch' >/dev/null; then\n\
         \x20       echo 'the watch loop did not start; /opt/spotload/log/expiry.log:' >&2\n\
         \x20       tail -n 20 /opt/spotload/log/expiry.log >&2; exit 1\n\
         \x20   fi\n\
         \x20   how='no systemd: a watch loop re-checks every minute until a reboot (deploy again after one)'\n\
         fi\n\
         echo \"self-destruct armed: powers off at {expected} ({left}, from the $source); $how\"\n",
        install = install_script(&plan.settings, Some(expected)),
        left = expected.left_text(now),
    );
    Step {
        name: name.into(),
        command,
        script,
        input: None,
        limit: std::time::Duration::from_secs(60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(expected: Option<Expiry>) -> ArmPlan {
        ArmPlan {
            fleet: "demo".into(),
            instance_id: "i-1".into(),
            expected,
            settings: ArmSettings::default(),
            skip: None,
        }
    }

    #[test]
    fn a_host_without_a_tag_or_past_its_expiry_is_refused_with_the_fix() {
        let missing = arm_step(&plan(None), 1000);
        assert!(missing.script.contains("no valid spotload:expires-at tag"));
        assert!(missing
            .script
            .contains("spotload extend --fleet demo --ttl 2h"));
        assert!(!missing.script.contains("spotload-expiry.new"));
        let past = arm_step(&plan(Some(Expiry::at(400))), 1000);
        assert!(
            past.script
                .contains("expired at 1970-01-01T00:06:40Z (passed 10m ago)"),
            "{}",
            past.script
        );
        assert!(!past.script.contains("spotload-expiry.new"));
    }

    #[test]
    fn the_step_installs_seeds_and_verifies_the_expected_expiry() {
        let step = arm_step(&plan(Some(Expiry::at(8200))), 1000);
        assert!(step.script.contains(
            "SPOTLOAD_EXPIRES_AT=1970-01-01T02:16:40Z /opt/spotload/expiry/spotload-expiry check"
        ));
        assert!(step
            .script
            .contains("if [ \"$saved\" != 1970-01-01T02:16:40Z ]; then"));
        assert!(step
            .script
            .contains("powers off at 1970-01-01T02:16:40Z (in 2h, from the $source)"));
        let skipped = ArmPlan {
            skip: Some("not armed: moto".into()),
            ..plan(Some(Expiry::at(8200)))
        };
        assert_eq!(arm_step(&skipped, 1000).script, "echo 'not armed: moto'\n");
    }
}
