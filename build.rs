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
    // A commit, a checkout or a reset appends to HEAD's reflog, whether refs are loose or
    // packed, in a worktree too; HEAD itself moves on a checkout. Only files that exist are
    // named: Cargo reruns a script on every build for a missing one.
    for name in ["HEAD", "logs/HEAD"] {
        if let Some(path) = git(&["rev-parse", "--git-path", name])
            && std::path::Path::new(&path).is_file()
        {
            println!("cargo:rerun-if-changed={path}");
        }
    }
}
