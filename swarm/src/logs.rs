//! Log lines that input from the wire cannot break or flood.
//!
//! - [`shown`] renders a peer's text (an identity, a version, a request
//!   name) for a log line: control characters escaped, so a newline in a
//!   node id cannot forge a second line, and long values cut short.
//! - [`Throttle`] lets a few warnings of each (kind, peer) through per
//!   window and counts the rest, so a peer repeating a fault costs a few
//!   lines, not thousands.

use std::collections::HashMap;
use std::fmt;
use std::time::{Duration, Instant};

/// The longest piece of a peer's text a log line shows, in characters.
pub const SHOWN_CHARS: usize = 120;

/// A peer's text as a log line may show it (see [`shown`]).
pub struct Shown<'a>(&'a str);

/// `text` for a log line: control and line-separator characters as
/// `\u{..}` escapes, at most [`SHOWN_CHARS`] characters, then `…`.
pub fn shown(text: &str) -> Shown<'_> {
    Shown(text)
}

/// Bytes from the wire (a ZeroMQ identity) for a log line, as [`shown`].
pub fn shown_bytes(bytes: &[u8]) -> String {
    shown(&String::from_utf8_lossy(bytes)).to_string()
}

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use fmt::Write;
        for (i, c) in self.0.chars().enumerate() {
            if i == SHOWN_CHARS {
                return f.write_char('…');
            }
            if c.is_control() || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}') {
                write!(f, "\\u{{{:x}}}", u32::from(c))?;
            } else {
                f.write_char(c)?;
            }
        }
        Ok(())
    }
}

/// How a throttled warning may go out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Log it.
    Log,
    /// Log it, and say that `n` more of this kind from this peer were left
    /// out since the last one.
    LogAfter(u64),
    /// Leave it out (counted).
    Quiet,
}

impl Verdict {
    /// Whether the line goes out.
    pub fn allows(self) -> bool {
        self != Verdict::Quiet
    }

    /// The note to append to a line that goes out: empty, or how many
    /// like it were left out.
    pub fn note(self) -> String {
        match self {
            Verdict::LogAfter(n) => format!(" ({n} more like it were not logged)"),
            _ => String::new(),
        }
    }
}

/// The most (kind, peer) pairs a throttle tracks; past it the oldest
/// windows are forgotten (a peer forgotten gets its few lines again).
pub const THROTTLE_KEYS: usize = 4096;

/// Per (kind, peer): at most `per_window` lines per `window`, then a count.
#[derive(Debug)]
pub struct Throttle {
    per_window: u32,
    window: Duration,
    seen: HashMap<(&'static str, String), Tally>,
}

#[derive(Debug)]
struct Tally {
    since: Instant,
    logged: u32,
    left_out: u64,
}

impl Throttle {
    /// A throttle letting `per_window` lines of each (kind, peer) through
    /// per `window`.
    pub fn new(per_window: u32, window: Duration) -> Self {
        Throttle {
            per_window,
            window,
            seen: HashMap::new(),
        }
    }

    /// Whether a warning of `kind` about `peer` goes out now.
    pub fn check(&mut self, kind: &'static str, peer: &str) -> Verdict {
        let now = Instant::now();
        if self.seen.len() >= THROTTLE_KEYS && !self.seen.contains_key(&(kind, peer.to_string())) {
            let window = self.window;
            self.seen
                .retain(|_, tally| now.duration_since(tally.since) < window);
            if self.seen.len() >= THROTTLE_KEYS {
                self.seen.clear();
            }
        }
        let tally = self.seen.entry((kind, peer.to_string())).or_insert(Tally {
            since: now,
            logged: 0,
            left_out: 0,
        });
        let mut earlier = 0;
        if now.duration_since(tally.since) >= self.window {
            earlier = tally.left_out;
            *tally = Tally {
                since: now,
                logged: 0,
                left_out: 0,
            };
        }
        if tally.logged < self.per_window {
            tally.logged += 1;
            if earlier > 0 {
                Verdict::LogAfter(earlier)
            } else {
                Verdict::Log
            }
        } else {
            tally.left_out += 1;
            Verdict::Quiet
        }
    }
}

impl Throttle {
    /// The lines of `kind` left out since each peer's last line, taken (so
    /// the caller can say how many, at the end of something): (peer, count).
    pub fn take_left_out(&mut self, kind: &'static str) -> Vec<(String, u64)> {
        let mut taken: Vec<(String, u64)> = self
            .seen
            .iter_mut()
            .filter(|((k, _), tally)| *k == kind && tally.left_out > 0)
            .map(|((_, peer), tally)| (peer.clone(), std::mem::take(&mut tally.left_out)))
            .collect();
        taken.sort();
        taken
    }
}

impl Default for Throttle {
    /// Five lines per (kind, peer) per ten seconds.
    fn default() -> Self {
        Throttle::new(5, Duration::from_secs(10))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped_and_long_text_cut() {
        assert_eq!(
            shown("w1\n2026 INFO forged").to_string(),
            "w1\\u{a}2026 INFO forged"
        );
        assert_eq!(
            shown("a\u{1b}[31mb\u{2028}").to_string(),
            "a\\u{1b}[31mb\\u{2028}"
        );
        let long = "x".repeat(1000);
        let cut = shown(&long).to_string();
        assert_eq!(cut.chars().count(), SHOWN_CHARS + 1);
        assert!(cut.ends_with('…'));
        assert_eq!(shown_bytes(b"id\r\n"), "id\\u{d}\\u{a}");
    }

    #[test]
    fn a_throttle_lets_a_few_through_then_counts() {
        let mut throttle = Throttle::new(2, Duration::from_millis(50));
        assert_eq!(throttle.check("bad", "p"), Verdict::Log);
        assert_eq!(throttle.check("bad", "p"), Verdict::Log);
        assert_eq!(throttle.check("bad", "p"), Verdict::Quiet);
        assert_eq!(throttle.check("bad", "p"), Verdict::Quiet);
        // Another peer, another kind: their own allowance.
        assert_eq!(throttle.check("bad", "q"), Verdict::Log);
        assert_eq!(throttle.check("other", "p"), Verdict::Log);
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(throttle.check("bad", "p"), Verdict::LogAfter(2));
        assert_eq!(throttle.check("bad", "p").note(), "");
    }

    #[test]
    fn what_a_throttle_left_out_can_be_taken_once() {
        let mut throttle = Throttle::new(1, Duration::from_secs(60));
        for _ in 0..4 {
            throttle.check("refused", "p");
        }
        throttle.check("refused", "q");
        throttle.check("other", "p");
        throttle.check("other", "p");
        assert_eq!(
            throttle.take_left_out("refused"),
            vec![("p".to_string(), 3)]
        );
        assert!(throttle.take_left_out("refused").is_empty(), "taken");
        assert_eq!(
            throttle.check("refused", "p"),
            Verdict::Quiet,
            "same window"
        );
        assert_eq!(throttle.take_left_out("other"), vec![("p".to_string(), 1)]);
    }

    #[test]
    fn a_throttle_tracks_a_bounded_number_of_peers() {
        let mut throttle = Throttle::new(1, Duration::from_secs(60));
        for i in 0..(THROTTLE_KEYS * 3) {
            throttle.check("bad", &i.to_string());
        }
        assert!(throttle.seen.len() <= THROTTLE_KEYS);
    }
}
