//! The errors table: one row per (method, name, error) with occurrences.

/// What identifies an error row: method, name and error text.
pub type ErrorKey = (String, String, String);

/// One error row, as Locust's `StatsError`.
#[derive(Debug, Clone, PartialEq)]
pub struct StatsError {
    pub method: String,
    pub name: String,
    pub error: String,
    pub occurrences: u64,
    /// Epoch seconds; Locust 2.4x sends these, older peers do not.
    pub first_seen: Option<f64>,
    pub last_seen: Option<f64>,
}

impl StatsError {
    pub fn key(&self) -> ErrorKey {
        (self.method.clone(), self.name.clone(), self.error.clone())
    }

    /// The opaque key this error travels under in a `stats` message.
    pub fn wire_key(&self) -> String {
        format!("{}.{}.{}", self.method, self.name, self.error)
    }

    pub fn extend(&mut self, other: &StatsError) {
        self.occurrences = self.occurrences.saturating_add(other.occurrences);
        self.first_seen = min_opt(self.first_seen, other.first_seen, f64::min);
        self.last_seen = min_opt(self.last_seen, other.last_seen, f64::max);
    }
}

fn min_opt(a: Option<f64>, b: Option<f64>, pick: fn(f64, f64) -> f64) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(pick(a, b)),
        (a, b) => a.or(b),
    }
}

/// One exception row, as Locust's `/exceptions` lists it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ExceptionRow {
    pub count: u64,
    pub msg: String,
    pub traceback: String,
    pub nodes: std::collections::BTreeSet<String>,
}
