//! Micro-benchmark: encoding a `message` frame (`ServerFrame::Message`) to JSON text, which
//! the gateway does once per delivery.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use herald_proto::device::{DeviceMessage, Reminder, ServerFrame};
use serde_json::json;

fn message() -> ServerFrame {
    ServerFrame::Message(DeviceMessage {
        id: "0193a5b2c3d4e5f60718293a4b5c6d7e".to_owned(),
        client_id: "1234567".to_owned(),
        token: "0".repeat(64),
        push_type: 0,
        request_id: "0193a5b2c3d4e5f60718293a4b5c6d7f".to_owned(),
        sent_at: 1_764_000_000_000,
        expires_at: 1_764_086_400_000,
        payload: json!({"notification": {
            "category": "IM",
            "title": "Herald bench",
            "body": "A message of ordinary length for a chat notification.",
            "notifyId": 123456,
            "clickAction": {"actionType": 0, "data": {"benchSentUs": 1_764_000_000_000_000u64}},
        }}),
        test: false,
        bi_tag: None,
        reminder: Some(Reminder::Alert),
        background_mode: None,
    })
}

fn encode(c: &mut Criterion) {
    let frame = message();
    c.bench_function("encode message frame", |b| {
        b.iter(|| serde_json::to_string(black_box(&frame)))
    });
}

criterion_group!(benches, encode);
criterion_main!(benches);
