//! The ramp's shape, `START:STEP:MAX`, checked once before anything runs.

use std::fmt;
use std::str::FromStr;

/// The form every ramp error message shows.
pub const RAMP_FORM: &str =
    "START:STEP:MAX in users, with START >= 1, STEP >= 1 and MAX >= START, e.g. 10:10:100";

/// Why a ramp spec was refused; the message names the expected form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}; expected {RAMP_FORM}")]
pub struct RampSpecError {
    /// The spec as given.
    pub text: String,
    /// What is wrong with it.
    pub reason: String,
}

/// Users from `start` up to `max` in steps of `step`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RampSpec {
    /// Users of the first step, at least 1.
    pub start: u64,
    /// Users added at each next step, at least 1.
    pub step: u64,
    /// The most users to try, at least `start`; always the last step, even
    /// when `step` does not land on it.
    pub max: u64,
}

impl RampSpec {
    /// Parses `START:STEP:MAX`.
    pub fn parse(text: &str) -> Result<RampSpec, RampSpecError> {
        let fail = |reason: &str| RampSpecError {
            text: text.to_string(),
            reason: reason.to_string(),
        };
        let parts: Vec<&str> = text.trim().split(':').collect();
        let [start, step, max] = parts.as_slice() else {
            return Err(fail("it needs three numbers separated by ':'"));
        };
        let number = |name: &str, value: &str| {
            value
                .trim()
                .parse::<u64>()
                .map_err(|_| fail(&format!("{name} {value:?} is not a whole number")))
        };
        let spec = RampSpec {
            start: number("START", start)?,
            step: number("STEP", step)?,
            max: number("MAX", max)?,
        };
        if spec.start == 0 {
            return Err(fail("START must be at least 1 user"));
        }
        if spec.step == 0 {
            return Err(fail("STEP must be at least 1 user"));
        }
        if spec.max < spec.start {
            return Err(fail(&format!(
                "MAX ({}) is below START ({})",
                spec.max, spec.start
            )));
        }
        Ok(spec)
    }

    /// The user count of every step, in order: START, START+STEP, ... and
    /// MAX last even when it is off the grid, so a healthy ramp ends at MAX.
    pub fn user_counts(&self) -> Vec<u64> {
        let mut counts = Vec::new();
        let mut users = self.start;
        while users < self.max {
            counts.push(users);
            users = users.saturating_add(self.step);
        }
        counts.push(self.max);
        counts
    }
}

impl FromStr for RampSpec {
    type Err = RampSpecError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        RampSpec::parse(text)
    }
}

impl fmt::Display for RampSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.start, self.step, self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn good_specs_parse() {
        assert_eq!(
            RampSpec::parse("10:10:100"),
            Ok(RampSpec {
                start: 10,
                step: 10,
                max: 100
            })
        );
        assert_eq!(RampSpec::parse(" 5:5:5 ").map(|s| s.max), Ok(5));
        assert_eq!(
            "2:2:10".parse::<RampSpec>().map(|s| s.to_string()),
            Ok("2:2:10".to_string())
        );
    }

    #[test]
    fn bad_specs_are_refused_with_the_expected_form() {
        for (bad, why) in [
            ("10:0:100", "STEP must be at least 1"),
            ("100:10:10", "MAX (10) is below START (100)"),
            ("abc", "three numbers"),
            ("0:1:10", "START must be at least 1"),
            ("1:2", "three numbers"),
            ("1:2:3:4", "three numbers"),
            ("1:x:3", "STEP \"x\" is not a whole number"),
            ("-1:1:3", "START \"-1\" is not a whole number"),
            ("", "three numbers"),
        ] {
            let err = RampSpec::parse(bad).expect_err(bad).to_string();
            assert!(err.contains(why), "{bad}: {err}");
            assert!(err.contains("START:STEP:MAX"), "{bad}: {err}");
        }
    }

    #[test]
    fn steps_end_at_max() {
        let counts = |text: &str| RampSpec::parse(text).map(|s| s.user_counts());
        assert_eq!(counts("2:2:10"), Ok(vec![2, 4, 6, 8, 10]));
        assert_eq!(counts("10:20:45"), Ok(vec![10, 30, 45]));
        assert_eq!(counts("7:3:7"), Ok(vec![7]));
        assert_eq!(
            counts(&format!("1:{}:{}", u64::MAX, u64::MAX)),
            Ok(vec![1, u64::MAX])
        );
    }
}
