//! The documents and the code must not drift apart: docs/protocol.md (frames, close
//! codes) and docs/compatibility.md (business codes, test names).

use herald_proto::device::{CLIENT_FRAME_TYPES, SERVER_FRAME_TYPES, close};

fn protocol_md() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/protocol.md");
    std::fs::read_to_string(path).expect("docs/protocol.md exists")
}

#[test]
fn every_frame_type_has_a_section_in_protocol_md() {
    let doc = protocol_md();
    for name in CLIENT_FRAME_TYPES.iter().chain(SERVER_FRAME_TYPES.iter()) {
        assert!(
            doc.contains(&format!("### `{name}`")),
            "docs/protocol.md has no `### `{name}`` section"
        );
    }
}

/// The frame names of the `### \`name\`` headings in the protocol document's section
/// whose `## ` heading starts with `heading`.
fn frames_documented_under(doc: &str, heading: &str) -> Vec<String> {
    let start = doc
        .find(&format!("\n## {heading}"))
        .unwrap_or_else(|| panic!("docs/protocol.md has no `## {heading}` section"));
    let section = &doc[start + 1..];
    let end = section[3..].find("\n## ").map_or(section.len(), |i| i + 3);
    section[..end]
        .lines()
        .filter_map(|l| l.strip_prefix("### `")?.strip_suffix('`'))
        .map(str::to_owned)
        .collect()
}

/// The `case "name":` labels of the switch in the browser SDK's `_onFrame`.
fn frames_the_browser_sdk_handles() -> Vec<String> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/web/sdk.js");
    let sdk = std::fs::read_to_string(path).expect("web/sdk.js exists");
    let start = sdk
        .find("_onFrame(ws, text) {")
        .expect("sdk.js has its _onFrame(ws, text) method");
    let body = &sdk[start..];
    // The method ends at the first line closing a block at its own indentation.
    let end = body.find("\n    }\n").expect("_onFrame ends");
    body[..end]
        .split("case \"")
        .skip(1)
        .filter_map(|rest| rest.split_once("\":").map(|(name, _)| name.to_owned()))
        .collect()
}

#[test]
fn the_server_frames_section_lists_exactly_the_server_frame_types() {
    let mut documented = frames_documented_under(&protocol_md(), "5. Server frames");
    let mut code: Vec<String> = SERVER_FRAME_TYPES.iter().map(|s| (*s).to_owned()).collect();
    documented.sort();
    code.sort();
    assert_eq!(documented, code);
}

/// A frame type the server sends that the JavaScript SDK does not handle falls to its
/// `default` (ignored, never acked): the browser device's missing `revoke` was one.
#[test]
fn the_browser_sdk_handles_every_server_frame_in_protocol_md() {
    let handled = frames_the_browser_sdk_handles();
    assert!(
        handled.iter().any(|f| f == "welcome"),
        "the parser found the switch: {handled:?}"
    );
    let missing: Vec<String> = frames_documented_under(&protocol_md(), "5. Server frames")
        .into_iter()
        .filter(|f| !handled.contains(f))
        .collect();
    assert!(
        missing.is_empty(),
        "web/sdk.js has no `case` for the server frames {missing:?} of docs/protocol.md §5"
    );
}

#[test]
fn every_close_code_is_in_the_close_code_table() {
    let doc = protocol_md();
    for code in close::ALL {
        assert!(
            doc.contains(&format!("| {code} |")),
            "docs/protocol.md does not document close code {code}"
        );
    }
}

#[test]
fn the_documented_endpoint_is_the_served_one() {
    assert!(protocol_md().contains(herald_proto::device::WS_PATH));
}

fn compatibility_md() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/compatibility.md");
    std::fs::read_to_string(path).expect("docs/compatibility.md exists")
}

#[test]
fn every_code_is_in_compatibility_md() {
    let doc = compatibility_md();
    for code in herald_proto::Code::ALL {
        assert!(
            doc.contains(&format!("| code | `{code}` ")),
            "docs/compatibility.md has no table row for business code {code} ({code:?})"
        );
    }
}

/// Every `.rs` file under `dir`, recursively (target directories aside).
fn rust_files(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() && path.file_name().is_some_and(|n| n != "target") {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn every_test_named_in_compatibility_md_exists() {
    let doc = compatibility_md();
    let mut files = Vec::new();
    rust_files(
        std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/..")),
        &mut files,
    );
    // Test names are written `module::function` in backticks.
    let names: Vec<&str> = doc
        .split('`')
        .skip(1)
        .step_by(2)
        .filter(|s| {
            s.split_once("::").is_some_and(|(m, f)| {
                !m.is_empty()
                    && !f.is_empty()
                    && m.chars().all(|c| c.is_ascii_lowercase() || c == '_')
                    && f.chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            })
        })
        .collect();
    assert!(names.len() > 50, "found only {} test names", names.len());
    for name in names {
        let (module, function) = name.split_once("::").unwrap();
        let found = files
            .iter()
            .filter(|p| p.file_stem().is_some_and(|s| s == module))
            .any(|p| {
                std::fs::read_to_string(p)
                    .is_ok_and(|text| text.contains(&format!("fn {function}(")))
            });
        assert!(
            found,
            "docs/compatibility.md names `{name}`, which is no test"
        );
    }
}

/// Every file under `dir`, as paths relative to the repository root.
fn files_under(root: &std::path::Path, dir: &std::path::Path, out: &mut Vec<String>) {
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
            files_under(root, &path, out);
        } else if let Ok(rel) = path.strip_prefix(root) {
            out.push(rel.to_string_lossy().into_owned());
        }
    }
}

#[test]
fn every_file_architecture_md_names_exists() {
    let root = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."));
    let doc = std::fs::read_to_string(root.join("docs/ARCHITECTURE.md"))
        .expect("docs/ARCHITECTURE.md exists");
    let mut files = Vec::new();
    files_under(root, root, &mut files);
    // Every `…​.rs` / `…​.sql` in backticks must be the end of a real path.
    let named: Vec<&str> = doc
        .split('`')
        .skip(1)
        .step_by(2)
        .filter(|t| (t.ends_with(".rs") || t.ends_with(".sql")) && !t.contains(' '))
        .collect();
    assert!(named.len() > 30, "the code map names its files");
    let missing: Vec<&&str> = named
        .iter()
        .filter(|t| {
            !files
                .iter()
                .any(|f| f == **t || f.ends_with(&format!("/{t}")))
        })
        .collect();
    assert!(
        missing.is_empty(),
        "docs/ARCHITECTURE.md names files that do not exist: {missing:?}"
    );
}
