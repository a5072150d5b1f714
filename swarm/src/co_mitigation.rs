//! [`CoMitigation`]: goose's coordinated omission mitigation as one type,
//! parsed once where it comes in — a flag, the `POST /swarm` form, a spawn
//! from the master — and carried as such to the worker that hands it to
//! goose. Its text is the same everywhere: `average`, `maximum`, `minimum`
//! or `disabled` on the wire, in the form, in JSON and on the command line.

use std::fmt;
use std::str::FromStr;

use goose::metrics::GooseCoordinatedOmissionMitigation;
use serde::{Deserialize, Serialize};

/// Which cadence a user stalled by the target back-fills its missed
/// requests from, or none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "&'static str")]
pub enum CoMitigation {
    /// The user's average cadence.
    Average,
    /// The user's slowest cadence.
    Maximum,
    /// The user's fastest cadence.
    Minimum,
    /// No back-fill.
    Disabled,
}

impl CoMitigation {
    /// The values a [`CoMitigation`] is written as, for messages that list
    /// them.
    pub const EXPECTED: &'static str = "average, maximum, minimum or disabled";

    /// The name it travels and is shown under.
    pub fn as_str(self) -> &'static str {
        match self {
            CoMitigation::Average => "average",
            CoMitigation::Maximum => "maximum",
            CoMitigation::Minimum => "minimum",
            CoMitigation::Disabled => "disabled",
        }
    }
}

/// A text that names no [`CoMitigation`]; shows the text and the values
/// that would do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected {expected} (got {0:?})", expected = CoMitigation::EXPECTED)]
pub struct UnknownCoMitigation(pub String);

impl FromStr for CoMitigation {
    type Err = UnknownCoMitigation;

    /// One of [`CoMitigation::EXPECTED`], or goose's abbreviations and
    /// synonyms of them (`avg`, `max`, `min`, `none`...), any case, spaces
    /// around ignored.
    fn from_str(text: &str) -> Result<Self, UnknownCoMitigation> {
        use GooseCoordinatedOmissionMitigation as Goose;
        match text.trim().parse::<Goose>() {
            Ok(Goose::Average) => Ok(CoMitigation::Average),
            Ok(Goose::Maximum) => Ok(CoMitigation::Maximum),
            Ok(Goose::Minimum) => Ok(CoMitigation::Minimum),
            Ok(Goose::Disabled) => Ok(CoMitigation::Disabled),
            Err(_) => Err(UnknownCoMitigation(text.to_string())),
        }
    }
}

impl TryFrom<String> for CoMitigation {
    type Error = UnknownCoMitigation;

    fn try_from(text: String) -> Result<Self, UnknownCoMitigation> {
        text.parse()
    }
}

impl From<CoMitigation> for &'static str {
    fn from(mode: CoMitigation) -> &'static str {
        mode.as_str()
    }
}

impl fmt::Display for CoMitigation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<CoMitigation> for GooseCoordinatedOmissionMitigation {
    fn from(mode: CoMitigation) -> Self {
        match mode {
            CoMitigation::Average => GooseCoordinatedOmissionMitigation::Average,
            CoMitigation::Maximum => GooseCoordinatedOmissionMitigation::Maximum,
            CoMitigation::Minimum => GooseCoordinatedOmissionMitigation::Minimum,
            CoMitigation::Disabled => GooseCoordinatedOmissionMitigation::Disabled,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_name_reads_back_and_goose_s_synonyms_read() {
        for mode in [
            CoMitigation::Average,
            CoMitigation::Maximum,
            CoMitigation::Minimum,
            CoMitigation::Disabled,
        ] {
            assert_eq!(mode.to_string().parse(), Ok(mode));
        }
        assert_eq!(" max ".parse(), Ok(CoMitigation::Maximum));
        assert_eq!("AVG".parse(), Ok(CoMitigation::Average));
        assert_eq!("none".parse(), Ok(CoMitigation::Disabled));
    }

    #[test]
    fn an_unknown_name_is_shown_with_the_known_ones() {
        let err = "sometimes".parse::<CoMitigation>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "expected average, maximum, minimum or disabled (got \"sometimes\")"
        );
    }

    #[test]
    fn json_carries_the_names() {
        let json = serde_json::to_string(&CoMitigation::Maximum).unwrap();
        assert_eq!(json, "\"maximum\"");
        let back: CoMitigation = serde_json::from_str("\"min\"").unwrap();
        assert_eq!(back, CoMitigation::Minimum);
        assert!(serde_json::from_str::<CoMitigation>("\"often\"").is_err());
    }
}
