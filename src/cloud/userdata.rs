//! The boot script every instance gets: a self-destruct timer.
//!
//! Instances launch with shutdown behaviour `terminate`, so powering off ends
//! them for good. The script schedules that power-off `--ttl` after boot, so a
//! fleet nobody remembers to destroy stops billing by itself.

use std::time::Duration;

use super::plan::format_duration;
use super::FleetName;

/// Marker line tests and operators can grep for in an instance's user data.
pub const TIMER_MARKER: &str = "# spotload self-destruct timer";

/// The shell script run once at first boot (cloud-init runs user data that
/// starts with `#!`).
pub fn self_destruct_script(fleet: &FleetName, ttl: Duration) -> String {
    // shutdown(8) counts in whole minutes; round up so the fleet never ends early.
    let minutes = ttl.as_secs().div_ceil(60).max(1);
    let ttl = format_duration(ttl);
    format!(
        "#!/bin/sh\n\
         {TIMER_MARKER}: fleet {fleet}, ttl {ttl}.\n\
         # Shutdown behaviour is terminate: this power-off ends the instance.\n\
         shutdown -h +{minutes} 'spotload: fleet {fleet} reached its ttl of {ttl}'\n"
    )
}

/// The script base64-encoded, as RunInstances and launch templates take it.
pub fn encoded(fleet: &FleetName, ttl: Duration) -> String {
    aws_smithy_types::base64::encode(self_destruct_script(fleet, ttl))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn script_powers_off_after_the_ttl_in_minutes() {
        let fleet = FleetName::parse("demo").unwrap();
        let script = self_destruct_script(&fleet, Duration::from_secs(7200));
        assert!(script.starts_with("#!/bin/sh\n"));
        assert!(script.contains(TIMER_MARKER));
        assert!(script.contains("shutdown -h +120 "), "{script}");
        let short = self_destruct_script(&fleet, Duration::from_secs(61));
        assert!(short.contains("shutdown -h +2 "), "{short}");
    }

    #[test]
    fn encoding_round_trips() {
        let fleet = FleetName::parse("demo").unwrap();
        let encoded = encoded(&fleet, Duration::from_secs(600));
        let decoded = aws_smithy_types::base64::decode(&encoded).unwrap();
        assert_eq!(
            String::from_utf8(decoded).unwrap(),
            self_destruct_script(&fleet, Duration::from_secs(600))
        );
    }
}
