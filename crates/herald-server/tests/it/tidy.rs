//! Tidy checks over the repository's tests, in the spirit of rust-analyzer's `tidy.rs`:
//! rules a reviewer would otherwise have to remember.
//!
//! - **No sleeping in tests.** A test waits for an event (a frame, a callback, a state
//!   the store reports, a later marker), never for time to pass. The few places that must
//!   poll something with no event to await (another process, the store's asynchronous
//!   writes) or that randomise time on purpose are allowed in [`SLEEPS_ALLOWED`], each
//!   with its reason and its exact count, so a new sleep anywhere fails here. Test code
//!   is every file under `crates/*/tests/`, the `#[cfg(test)]` part of every file under
//!   `crates/*/src/`, and `tests/browser/*.mjs` (where `setTimeout(` is the sleep).
//! - **Every test asserts.** Each `#[test]` / `#[tokio::test]` function's body contains a
//!   check (see [`CHECKS`]): an `assert…` macro or function (insta's `assert_json_snapshot!`
//!   and helpers named `assert_…` included), `panic!`, `.expect(`/`.expect_err(`/
//!   `.unwrap_err(` (each states what must hold), or a `snapshot!` macro. A bare
//!   `.unwrap()` does not count: it only says the happy path ran. Helpers that check on the
//!   test's behalf (they wait for an event and panic when it does not come) are listed in
//!   [`CHECKING_HELPERS`].

use std::path::{Path, PathBuf};

/// (file, sleeps allowed, why). The count must match: a stale entry fails too.
const SLEEPS_ALLOWED: &[(&str, usize, &str)] = &[
    (
        "crates/herald-server/tests/it/cluster.rs",
        3,
        "how soon another node refuses a revoked key or drops a deleted token's sends is \
         what these tests measure (polled within a deadline); and a nats-server of the \
         test's own, another process, accepting connections",
    ),
    (
        "crates/herald-server/tests/it/receipts.rs",
        3,
        "a receipt endpoint that trickles its answer a byte every 100 ms (slowness is the \
         point), and in-test receivers' counters polled within a deadline",
    ),
    (
        "crates/herald/tests/it/secrets.rs",
        1,
        "an in-test receipt receiver's count, polled within a deadline",
    ),
    (
        "crates/herald-server/tests/it/helpers.rs",
        1,
        "eventually(): the poll interval for store state that has no change notification \
         (acks and reports are written by a background task)",
    ),
    (
        "crates/herald-server/tests/it/readiness.rs",
        1,
        "/readyz has no change notification, and its verdict is reused for a second",
    ),
    (
        "crates/herald-server/tests/it/hardening.rs",
        1,
        "a closed device socket's per-address slot is given back by another task, with no \
         event a client can await",
    ),
    (
        "crates/herald/tests/it/process.rs",
        3,
        "waiting for a child `herald serve` to answer /healthz (plain and TLS) and to exit on \
         SIGTERM: another process, nothing to await",
    ),
    (
        "crates/herald/tests/it/cluster.rs",
        2,
        "a node's /readyz in another process; how soon every node refuses a revoked key \
         (what the test measures, polled within a second)",
    ),
    (
        "crates/herald/tests/it/tls.rs",
        1,
        "a child `herald serve` answering /healthz over HTTPS",
    ),
    (
        "crates/herald/tests/it/receipts.rs",
        1,
        "the child server's record that receipts were sent, read through its report",
    ),
    (
        "crates/herald/tests/it/exactly_once.rs",
        2,
        "the kill moment is what this test randomises; and its one poll of state spread over \
         tasks and a child process",
    ),
    (
        "crates/herald-bench/tests/it/smoke.rs",
        1,
        "waiting for a child `herald serve` to listen",
    ),
    (
        "tests/browser/device.test.mjs",
        1,
        "polling the frames playwright recorded from the page's WebSocket",
    ),
    (
        "tests/browser/support.mjs",
        1,
        "waiting for a child `herald serve` to answer /healthz",
    ),
];

/// What counts as a check in a test's body.
const CHECKS: &[&str] = &[
    "assert",
    "panic!",
    ".expect(",
    ".expect_err(",
    ".unwrap_err(",
    "snapshot!",
];

/// Helpers that are checks themselves: they wait for something the test expects and
/// panic when it does not come.
const CHECKING_HELPERS: &[&str] = &[
    // Two nodes on one store: each asserts that the other node refuses the revoked key or
    // drops sends to the deleted token within its deadline.
    "revoked_keys_fail_everywhere(",
    "deleted_tokens_stop_everywhere(",
    "the_push_switch_holds_everywhere(",
    // The storage conformance story: every step asserts what the store read back; and
    // its throughput run, which asserts that every delivery it sent was acknowledged.
    "story(",
    "send_path_throughput(",
    "wait_for_state(",
    "wait_for_request_outcome(",
    "eventually(",
    "frames_before_marker(",
];

fn root() -> PathBuf {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
        .canonicalize()
        .expect("the repository root")
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let path = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        if name == "target" || name == "node_modules" || name.starts_with('.') {
            continue;
        }
        if path.is_dir() {
            walk(&path, out);
        } else {
            out.push(path);
        }
    }
}

/// Every test source: (path relative to the root, the test part of its text).
fn test_sources() -> Vec<(String, String)> {
    let root = root();
    let mut files = Vec::new();
    walk(&root.join("crates"), &mut files);
    walk(&root.join("tests"), &mut files);
    let mut out = Vec::new();
    for path in files {
        let rel = path
            .strip_prefix(&root)
            .expect("under the root")
            .to_string_lossy()
            .into_owned();
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        let in_tests_dir = rel.split('/').nth(2) == Some("tests");
        if rel.ends_with(".rs") && rel.starts_with("crates/") && in_tests_dir {
            out.push((rel, text));
        } else if rel.ends_with(".rs") && rel.starts_with("crates/") {
            // The conventional `#[cfg(test)] mod tests` at the end of a source file.
            if let Some(at) = text.find("#[cfg(test)]") {
                out.push((rel, text[at..].to_owned()));
            }
        } else if rel.starts_with("tests/browser/") && rel.ends_with(".mjs") {
            out.push((rel, text));
        }
    }
    out
}

fn sleeps_in(path: &str, text: &str) -> usize {
    let needles: &[&str] = if path.ends_with(".mjs") {
        &["setTimeout("]
    } else {
        &["sleep(", "sleep_until("]
    };
    text.lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .map(|l| needles.iter().filter(|n| l.contains(*n)).count())
        .sum()
}

#[test]
fn tests_do_not_sleep_outside_the_allow_list() {
    let sources = test_sources();
    assert!(
        sources.len() > 40,
        "found only {} test sources",
        sources.len()
    );
    let mut wrong = Vec::new();
    for (path, text) in &sources {
        let n = match path.ends_with(".rs") {
            true => sleeps_in(path, &code_only(text)),
            false => sleeps_in(path, text),
        };
        let allowed = SLEEPS_ALLOWED
            .iter()
            .find(|(p, _, _)| p == path)
            .map_or(0, |(_, n, _)| *n);
        if n != allowed {
            wrong.push(format!("{path}: {n} sleeps, {allowed} allowed"));
        }
    }
    for (path, _, _) in SLEEPS_ALLOWED {
        if !sources.iter().any(|(p, _)| p == path) {
            wrong.push(format!("{path} is allowed sleeps but is not a test source"));
        }
    }
    assert!(
        wrong.is_empty(),
        "wait for an event instead (or add the file to SLEEPS_ALLOWED with the reason):\n{}",
        wrong.join("\n")
    );
}

/// The Rust text with comments, string and character literals blanked out (same
/// length), so that braces and words inside them do not count.
fn code_only(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = b.to_vec();
    let mut i = 0;
    let blank = |out: &mut Vec<u8>, from: usize, to: usize| {
        for c in &mut out[from..to.min(b.len())] {
            if *c != b'\n' {
                *c = b' ';
            }
        }
    };
    while i < b.len() {
        match b[i] {
            b'/' if b.get(i + 1) == Some(&b'/') => {
                let end = text[i..].find('\n').map_or(b.len(), |e| i + e);
                blank(&mut out, i, end);
                i = end;
            }
            b'r' if b.get(i + 1) == Some(&b'#') || b.get(i + 1) == Some(&b'"') => {
                let hashes = b[i + 1..].iter().take_while(|c| **c == b'#').count();
                if b.get(i + 1 + hashes) != Some(&b'"') {
                    i += 1;
                    continue;
                }
                let close = format!("\"{}", "#".repeat(hashes));
                let start = i + 2 + hashes;
                let end = text[start..]
                    .find(&close)
                    .map_or(b.len(), |e| start + e + close.len());
                blank(&mut out, i + 1, end);
                i = end;
            }
            b'"' => {
                let mut j = i + 1;
                while j < b.len() && b[j] != b'"' {
                    j += if b[j] == b'\\' { 2 } else { 1 };
                }
                blank(&mut out, i + 1, j);
                i = j + 1;
            }
            // A character literal ('x', '\n', '{'), not a lifetime ('a).
            b'\'' if b.get(i + 2) == Some(&b'\'') || b.get(i + 1) == Some(&b'\\') => {
                let end = text[i + 1..].find('\'').map_or(b.len(), |e| i + 1 + e);
                let end = if b.get(i + 1) == Some(&b'\\') {
                    text[i + 3..].find('\'').map_or(b.len(), |e| i + 3 + e)
                } else {
                    end
                };
                blank(&mut out, i + 1, end);
                i = end + 1;
            }
            _ => i += 1,
        }
    }
    String::from_utf8(out).expect("blanking keeps UTF-8 (only ASCII replaced)")
}

/// (name, body) of every `#[test]` / `#[tokio::test…]` function in `text`.
fn test_functions(text: &str) -> Vec<(String, String)> {
    let code = code_only(text);
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(at) = ["#[test]", "#[tokio::test"]
        .iter()
        .filter_map(|m| code[from..].find(m).map(|i| from + i))
        .min()
    {
        let Some(fn_at) = code[at..].find("fn ").map(|i| at + i) else {
            break;
        };
        let name: String = code[fn_at + 3..]
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        let Some(open) = code[fn_at..].find('{').map(|i| fn_at + i) else {
            break;
        };
        let mut depth = 0;
        let mut end = open;
        for (i, c) in code[open..].char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = open + i;
                        break;
                    }
                }
                _ => {}
            }
        }
        out.push((name, code[open..=end].to_owned()));
        from = end;
    }
    out
}

fn checks(body: &str) -> bool {
    CHECKS
        .iter()
        .chain(CHECKING_HELPERS)
        .any(|c| body.contains(c))
}

#[test]
fn every_test_checks_something() {
    let mut tests = 0;
    let mut unchecked = Vec::new();
    for (path, text) in test_sources() {
        if !path.ends_with(".rs") {
            continue;
        }
        for (name, body) in test_functions(&text) {
            tests += 1;
            if !checks(&body) {
                unchecked.push(format!("{path}: {name}"));
            }
        }
    }
    assert!(tests > 250, "found only {tests} tests");
    assert!(
        unchecked.is_empty(),
        "tests without an assertion (a test that cannot fail proves nothing):\n{}",
        unchecked.join("\n")
    );
}

/// The rules themselves, on small inputs.
#[test]
fn the_tidy_rules_see_what_they_should() {
    let text = r##"
        #[test]
        fn only_unwraps() { let x: u8 = "1".parse().unwrap(); let s = "assert!(x)"; }
        #[tokio::test(flavor = "multi_thread")]
        async fn asserts() { let c = '{'; assert_eq!(1, 1); }
        // #[test] fn commented_out() {}
        #[test]
        fn raw() { let r = r#"}"#; helper().expect("it holds"); }
    "##;
    let found: Vec<(String, bool)> = test_functions(text)
        .into_iter()
        .map(|(name, body)| (name, checks(&body)))
        .collect();
    assert_eq!(
        found,
        [
            ("only_unwraps".to_owned(), false),
            ("asserts".to_owned(), true),
            ("raw".to_owned(), true),
        ]
    );
    assert_eq!(
        sleeps_in(
            "a.rs",
            "tokio::time::sleep(d).await;\n// sleep(x)\nsleep_until(t);"
        ),
        2
    );
    assert_eq!(
        sleeps_in("a.mjs", "await new Promise((r) => setTimeout(r, 5));"),
        1
    );
}
