//! Build script: records `git describe` (as HERALD_GIT_DESCRIBE) for the results files,
//! when built from a git checkout (otherwise the crate version stands alone).

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    // HEAD moves on checkout, the index on every commit and `git add`: close enough for a
    // label on benchmark results, without re-running on every edit.
    if let Some(git_dir) = git(&["rev-parse", "--absolute-git-dir"]) {
        println!("cargo:rerun-if-changed={git_dir}/HEAD");
        println!("cargo:rerun-if-changed={git_dir}/index");
    }
    let describe = git(&["describe", "--tags", "--always", "--dirty"]).unwrap_or_default();
    println!("cargo:rustc-env=HERALD_GIT_DESCRIBE={describe}");
}

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    Some(String::from_utf8(out.stdout).ok()?.trim().to_owned())
}
