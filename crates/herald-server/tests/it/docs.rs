//! The protocol document and the code must not drift apart.

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
