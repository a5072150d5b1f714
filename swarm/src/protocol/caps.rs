//! Caps on the strings a peer's message carries. A decoded string longer
//! than its cap is cut (at a character boundary, ending in `…`), never
//! refused: what it measured still counts. With these caps, and the
//! counts of rows and keys the master keeps (see `stats`), no value a peer
//! sends makes the master keep more than a few kilobytes per row.

use std::borrow::Cow;

/// A ZeroMQ identity (a Locust node id) is at most 255 bytes (ZMTP's
/// short string); node ids in messages are held to the same.
pub const MAX_IDENTITY: usize = 255;

/// A `client_ready` version string: Locust sends `2.47.0`.
pub const MAX_VERSION: usize = 64;

/// A request name: long enough for a URL with its query string (Locust
/// users group those under a `name=` anyway).
pub const MAX_NAME: usize = 1024;

/// A request method (`GET`, or a custom verb).
pub const MAX_METHOD: usize = 32;

/// An error text in the failures table.
pub const MAX_ERROR: usize = 1024;

/// An exception's message.
pub const MAX_MESSAGE: usize = 4096;

/// An exception's traceback (a Python one is a few kilobytes).
pub const MAX_TRACEBACK: usize = 16 * 1024;

/// A user class name.
pub const MAX_CLASS_NAME: usize = 256;

/// User classes one message may list (a load test defines a handful).
pub const MAX_CLASSES: usize = 256;

/// Free text in our `quit` and spot notices.
pub const MAX_DETAIL: usize = 512;

/// `text`, cut to at most `max` bytes at a character boundary and ending
/// in `…` when it was longer.
pub fn capped(text: &str, max: usize) -> Cow<'_, str> {
    if text.len() <= max {
        return Cow::Borrowed(text);
    }
    let ellipsis = '…'.len_utf8();
    let mut end = max.saturating_sub(ellipsis);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    Cow::Owned(format!("{}…", &text[..end]))
}

/// `value` rendered, cut to at most about `max` bytes as [`capped`] cuts;
/// rendering stops there, however big the value.
pub fn rendered_capped(value: &dyn std::fmt::Display, max: usize) -> String {
    /// Keeps up to `max` bytes, then refuses more (which ends rendering).
    struct First {
        text: String,
        max: usize,
    }
    impl std::fmt::Write for First {
        fn write_str(&mut self, s: &str) -> std::fmt::Result {
            for c in s.chars() {
                if self.text.len() + c.len_utf8() > self.max {
                    return Err(std::fmt::Error);
                }
                self.text.push(c);
            }
            Ok(())
        }
    }
    // One byte over the cap tells a cut text from one that fits.
    let mut first = First {
        text: String::new(),
        max: max + 1,
    };
    let _ = std::fmt::write(&mut first, format_args!("{value}"));
    capped(&first.text, max).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_text_is_cut_at_a_character_boundary() {
        assert_eq!(capped("2.47.0", MAX_VERSION), "2.47.0");
        let long = "é".repeat(1000);
        let cut = capped(&long, 64);
        assert!(cut.len() <= 64, "{}", cut.len());
        assert!(cut.ends_with('…'));
        assert!(cut.starts_with("éé"));
        assert_eq!(capped("abcdef", 4), "a…");
        assert_eq!(rendered_capped(&12345, 10), "12345");
        let huge = rmpv::Value::Array(vec![rmpv::Value::from(1); 1_000_000]);
        let cut = rendered_capped(&huge, 40);
        assert!(cut.len() <= 40 && cut.ends_with('…'), "{cut}");
    }
}
