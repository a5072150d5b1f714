//! The errors table: one row per (method, name, error) with occurrences.

/// What identifies an error row: method, name and error text.
pub type ErrorKey = (String, String, String);

/// One error row, as Locust's `StatsError`.
#[derive(Debug, Clone, PartialEq)]
pub struct StatsError {
    /// The HTTP method of the failed requests.
    pub method: String,
    /// The request name the failures were logged under.
    pub name: String,
    /// The error's text, as the worker reported it (Locust's `repr` of the exception).
    pub error: String,
    /// How many times this error was seen.
    pub occurrences: u64,
    /// Epoch seconds; Locust 2.4x sends these, older peers do not.
    pub first_seen: Option<f64>,
    /// Epoch seconds of the latest occurrence, when the peer sends it.
    pub last_seen: Option<f64>,
}

impl StatsError {
    /// The (method, name, error) this row is merged and looked up under.
    pub fn key(&self) -> ErrorKey {
        (self.method.clone(), self.name.clone(), self.error.clone())
    }

    /// The opaque key this error travels under in a `stats` message.
    pub fn wire_key(&self) -> String {
        format!("{}.{}.{}", self.method, self.name, self.error)
    }

    /// Merges another report of the same error: adds its occurrences and widens
    /// the first/last-seen span.
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
    /// How many times workers reported this exception.
    pub count: u64,
    /// The exception's message.
    pub msg: String,
    /// The traceback the worker sent; with `msg`, what tells rows apart.
    pub traceback: String,
    /// Ids of the workers that reported it (at most 100 are kept).
    pub nodes: std::collections::BTreeSet<String>,
}
