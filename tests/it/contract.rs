//! The contract is in the repository (docs/contract.md): every "§N" or "§N.M" cited in the
//! code, the tests, the docs and the deployment files names a section it has (or, for
//! §1.N, one of the privacy terms its section 1 numbers), and no comment cites an issue of a
//! tracker the repository does not hold.

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
};

/// Where citations are looked for, from the repository's root.
const CITING: &[&str] = &[
    "src",
    "crates",
    "tests",
    "benches",
    "docs",
    "proto",
    "deploy",
    "clients",
    "examples",
    "scripts",
    "README.md",
];

/// The section numbers docs/contract.md has: its `## N.` and `### N.M` headings, and 1.1 to
/// 1.K for the K privacy terms numbered in section 1.
fn sections(contract: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut in_section_one = false;
    for line in contract.lines() {
        if let Some(heading) = line
            .strip_prefix("## ")
            .or_else(|| line.strip_prefix("### "))
        {
            let number = heading.split_whitespace().next().unwrap_or("");
            let number = number.trim_end_matches('.');
            in_section_one = number == "1";
            found.insert(number.to_owned());
        } else if in_section_one
            && let Some((n, _)) = line.split_once(". ")
            && !n.is_empty()
            && n.chars().all(|c| c.is_ascii_digit())
        {
            found.insert(format!("1.{n}"));
        }
    }
    found
}

/// Every "§N[.M]" in `text` that is not another document's (an RFC's).
fn citations(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (at, _) in text.match_indices('§') {
        let before = &text[text[..at]
            .char_indices()
            .rev()
            .nth(11)
            .map_or(0, |(i, _)| i)..at];
        if before.contains("RFC") {
            continue;
        }
        let after = text[at + '§'.len_utf8()..].trim_start();
        let number: String = after
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == '.')
            .collect();
        let number = number.trim_end_matches('.');
        if !number.is_empty() {
            out.push(number.to_owned());
        }
    }
    out
}

fn files(path: &Path, out: &mut Vec<PathBuf>) {
    if path.is_dir() {
        for entry in std::fs::read_dir(path)
            .expect("a readable directory")
            .flatten()
        {
            files(&entry.path(), out);
        }
    } else {
        out.push(path.to_owned());
    }
}

#[test]
fn every_section_cited_is_in_the_contract() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let contract = std::fs::read_to_string(root.join("docs/contract.md")).expect("the contract");
    let sections = sections(&contract);
    assert!(
        sections.contains("4.8") && sections.contains("1.5"),
        "{sections:?}"
    );
    let mut all = Vec::new();
    for place in CITING {
        files(&root.join(place), &mut all);
    }
    let mut unresolved = Vec::new();
    let mut cited = 0;
    for path in all {
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue; // not text
        };
        for number in citations(&text) {
            cited += 1;
            if !sections.contains(&number) {
                unresolved.push(format!("{}: §{number}", path.display()));
            }
        }
    }
    assert!(
        cited > 100,
        "only {cited} citations found: is the walk broken?"
    );
    assert!(unresolved.is_empty(), "{unresolved:#?}");
}

#[test]
fn citations_are_read_as_written() {
    let text = "contract §4.3 and §1.5, then (contract §7). RFC 7515 §4.1.11 is not ours";
    assert_eq!(citations(text), ["4.3", "1.5", "7"]);
    let contract = "## 1. What it is\n1. one\n2. two\n## 4. Rules\n### 4.1 Consent\n3. no\n";
    let found: Vec<String> = sections(contract).into_iter().collect();
    assert_eq!(found, ["1", "1.1", "1.2", "4", "4.1"]);
}

/// The lines of `text` that cite an issue by number (the word, a space, digits); an
/// external project's issues named with their project (`grpc/grpc` then the word) are not
/// this repository's.
fn issue_citations(text: &str) -> Vec<usize> {
    let lower = text.to_lowercase();
    let mut lines = Vec::new();
    for word in ["issue ", "issues "] {
        for (at, _) in lower.match_indices(word) {
            let next = lower[at + word.len()..].chars().next();
            // `owner/repo` just before the word: another project's tracker.
            let before: Vec<char> = lower[..at].chars().rev().take(16).collect();
            let external = before.windows(3).any(|w| {
                w[1] == '/' && w[0].is_ascii_alphanumeric() && w[2].is_ascii_alphanumeric()
            });
            if next.is_some_and(|c| c.is_ascii_digit()) && !external {
                lines.push(lower[..at].lines().count());
            }
        }
    }
    lines
}

#[test]
fn no_comment_cites_an_issue_number() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut all = Vec::new();
    for place in [
        "src", "crates", "tests", "benches", "proto", "scripts", "clients", "examples",
    ] {
        files(&root.join(place), &mut all);
    }
    let mut citing = Vec::new();
    for path in all {
        if let Ok(text) = std::fs::read_to_string(&path) {
            for line in issue_citations(&text) {
                citing.push(format!("{}:{line}", path.display()));
            }
        }
    }
    assert!(citing.is_empty(), "{citing:#?}");
    let cited = format!("a\n// Issue {} point 4: x", 20);
    assert_eq!(issue_citations(&cited), [2]);
    assert!(issue_citations(&format!("(grpc/grpc issues {})", 34547)).is_empty());
}
