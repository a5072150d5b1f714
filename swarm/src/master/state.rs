//! The run's state as a whole, in Locust's words and on the wire.

/// The run as a whole, in Locust's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunState {
    /// No run yet: waiting for a swarm request.
    Ready,
    /// Workers are moving towards the target user count.
    Spawning,
    /// Every worker reached its share of the users.
    Running,
    /// Locust also says `cleanup` while its users stop.
    #[serde(alias = "cleanup")]
    Stopping,
    /// The run stopped; the stats stay until the next run or reset.
    Stopped,
}

impl RunState {
    /// The state as Locust spells it in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ready => "ready",
            Self::Spawning => "spawning",
            Self::Running => "running",
            Self::Stopping => "stopping",
            Self::Stopped => "stopped",
        }
    }

    /// Whether users are (meant to be) running: spawning or running.
    pub fn is_active(self) -> bool {
        matches!(self, Self::Spawning | Self::Running)
    }
}
