//! Puts the commit the binary was built from, and that commit's date, into `vicinity
//! --version` (`0.1.0 (3f2a9c1e0b7d 2026-12-04)`), or `no git` when built outside a git
//! checkout (a source tarball). The commit's date, not the build's, so two builds of one
//! commit print the same.

use std::process::Command;

fn main() {
    let git = |args: &[&str]| {
        let out = Command::new("git").args(args).output().ok()?;
        let text = String::from_utf8(out.stdout).ok()?;
        let text = text.trim();
        (out.status.success() && !text.is_empty()).then(|| text.to_owned())
    };
    let build = match (
        git(&["rev-parse", "--short=12", "HEAD"]),
        git(&["log", "-1", "--format=%cs"]),
    ) {
        (Some(commit), Some(date)) => format!("{commit} {date}"),
        _ => "no git".to_owned(),
    };
    println!("cargo:rustc-env=VICINITY_BUILD={build}");
    // A new commit moves HEAD, or the branch HEAD names (a loose ref, or packed). Only files
    // that exist are named: Cargo reruns a script on every build for a missing one.
    let mut watched = vec![".git/HEAD".to_owned(), ".git/packed-refs".to_owned()];
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        watched.push(format!(".git/{branch}"));
    }
    for path in watched {
        if std::path::Path::new(&path).is_file() {
            println!("cargo:rerun-if-changed={path}");
        }
    }
}
