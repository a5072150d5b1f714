//! The run's state as a whole, in Locust's words and on the wire.

/// The run as a whole, in Locust's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunState {
    Ready,
    Spawning,
    Running,
    /// Locust also says `cleanup` while its users stop.
    #[serde(alias = "cleanup")]
    Stopping,
    Stopped,
}

impl RunState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ready => "ready",
            Self::Spawning => "spawning",
            Self::Running => "running",
            Self::Stopping => "stopping",
            Self::Stopped => "stopped",
        }
    }

    pub fn is_active(self) -> bool {
        matches!(self, Self::Spawning | Self::Running)
    }
}
