//! POSIX `sh` vocabulary shared by [`crate::cloud`] (user data) and
//! [`crate::remote`] (deploy step scripts), so neither borrows it from the
//! other: quoting one word.

/// Quotes `text` as one shell word.
pub fn quote(text: &str) -> String {
    if !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./:=@,+%".contains(&b))
    {
        return text.to_string();
    }
    format!("'{}'", text.replace('\'', r"'\''"))
}
