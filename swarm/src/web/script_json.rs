//! JSON inside an HTML `<script>` element. The HTML parser reads a
//! script's text before any JavaScript does: `</script>` ends the element
//! wherever it stands, and `<!--` followed by `<script>` puts the parser in
//! a state where the real `</script>` no longer ends it. A request name is
//! whatever the load test or its target chose, so JSON carrying one must
//! not contain `<` at all. `>` and `&` are escaped as well (no markup
//! character survives), and U+2028/U+2029, which end a line in older
//! JavaScript.
//!
//! Every character escaped here can only occur inside a JSON string (the
//! structure of JSON is ASCII punctuation, digits and `true`/`false`/
//! `null`), where `\uXXXX` means the same character: the escaped text parses
//! back to the same value, as JSON and as a JavaScript literal.

/// `json` (serialised JSON text) made safe to place inside a `<script>`
/// element: `<`, `>`, `&`, U+2028 and U+2029 as `\u` escapes.
pub fn json_for_script(json: &str) -> String {
    let mut out = String::with_capacity(json.len() + json.len() / 16);
    for c in json.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    const HOSTILE: &str = "<!--<script>alert(1)</script>--> & \u{2028}\u{2029} </SCRIPT >";

    #[test]
    fn no_markup_character_survives_and_the_value_parses_back() {
        let value = json!({ "name": HOSTILE, "nested": [HOSTILE, {"k<": ">"}] });
        let escaped = json_for_script(&value.to_string());
        for bad in ['<', '>', '&', '\u{2028}', '\u{2029}'] {
            assert!(!escaped.contains(bad), "{bad:?} left in {escaped}");
        }
        let back: Value = serde_json::from_str(&escaped).expect("still JSON");
        assert_eq!(back, value);
    }

    #[test]
    fn other_text_is_unchanged() {
        let plain = json!({"name": "/users/é 中 \"q\" \\ /", "n": 1.5, "ok": true, "none": null});
        let text = plain.to_string();
        assert_eq!(json_for_script(&text), text);
    }
}
