//! The README is a front door and the depth is in `docs/`: every relative
//! link in README.md, CONTRIBUTING.md and docs/*.md leads to a file that
//! exists (and, with `#anchor`, to a heading there), and the README stays
//! short.

use std::path::{Path, PathBuf};

/// The README's most lines: a front door, not the manual.
const README_LINES: usize = 250;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Every markdown file the links are checked in.
fn documents() -> Vec<PathBuf> {
    let mut docs = vec![root().join("README.md"), root().join("CONTRIBUTING.md")];
    let mut more: Vec<PathBuf> = std::fs::read_dir(root().join("docs"))
        .expect("docs/")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .collect();
    more.sort();
    docs.extend(more);
    docs
}

/// `(text)` targets of `[...](...)` links, outside code blocks.
fn links(markdown: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut in_code = false;
    for line in markdown.lines() {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
            continue;
        }
        if in_code {
            continue;
        }
        let mut rest = line;
        while let Some(at) = rest.find("](") {
            let after = &rest[at + 2..];
            let Some(end) = after.find(')') else { break };
            found.push(after[..end].to_string());
            rest = &after[end..];
        }
    }
    found
}

/// GitHub's anchor for a heading: lower case, spaces to dashes, most
/// punctuation dropped.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

fn anchors(markdown: &str) -> Vec<String> {
    markdown
        .lines()
        .filter_map(|l| l.strip_prefix('#'))
        .map(|l| slug(l.trim_start_matches('#')))
        .collect()
}

#[test]
fn every_relative_link_leads_somewhere() {
    let mut broken = Vec::new();
    for doc in documents() {
        let text = std::fs::read_to_string(&doc).expect("a document");
        for link in links(&text) {
            if link.starts_with("http://")
                || link.starts_with("https://")
                || link.starts_with("mailto:")
            {
                continue;
            }
            let (path, anchor) = link.split_once('#').unwrap_or((&link, ""));
            let target = if path.is_empty() {
                doc.clone()
            } else {
                doc.parent().unwrap_or(root()).join(path)
            };
            if !target.exists() {
                broken.push(format!(
                    "{}: {link} (no {})",
                    doc.display(),
                    target.display()
                ));
                continue;
            }
            if !anchor.is_empty() {
                let body = std::fs::read_to_string(&target).unwrap_or_default();
                if !anchors(&body).contains(&anchor.to_string()) {
                    broken.push(format!("{}: {link} (no heading #{anchor})", doc.display()));
                }
            }
        }
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

#[test]
fn the_readme_is_a_front_door() {
    let readme = std::fs::read_to_string(root().join("README.md")).expect("README.md");
    let lines = readme.lines().count();
    assert!(
        lines <= README_LINES,
        "README.md has {lines} lines (at most {README_LINES})"
    );
    for command in ["scripts/local", "scripts/test"] {
        assert!(readme.contains(command), "the README gives `{command}`");
    }
}

/// The README's load test is code that builds: it is
/// `loadtest/examples/readme.rs` (below its `//!` line), which
/// `cargo clippy --all-targets` and the test builds compile.
#[test]
fn the_readme_example_is_the_compiled_one() {
    let readme = std::fs::read_to_string(root().join("README.md")).expect("README.md");
    let start = readme
        .find("```rust\n")
        .expect("the README shows a Rust example")
        + 8;
    let shown = &readme[start..start + readme[start..].find("```").expect("closed")];
    let example = std::fs::read_to_string(root().join("loadtest/examples/readme.rs"))
        .expect("loadtest/examples/readme.rs");
    let compiled: String = example
        .lines()
        .skip_while(|line| line.starts_with("//!") || line.is_empty())
        .map(|line| format!("{line}\n"))
        .collect();
    assert_eq!(
        shown, compiled,
        "README.md's example and loadtest/examples/readme.rs differ: change both"
    );
}
