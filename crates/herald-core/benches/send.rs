//! Micro-benchmark: parsing and validating a Push Kit send body (`parse_send`), the first
//! thing every `messages:send` request pays, for one token and for 1000.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use herald_core::send::{PushType, parse_send};
use serde_json::json;

fn body(tokens: usize) -> Vec<u8> {
    let tokens: Vec<String> = (0..tokens).map(|i| format!("{i:0>64}")).collect();
    serde_json::to_vec(&json!({
        "payload": {"notification": {
            "category": "IM",
            "title": "Herald bench",
            "body": "A message of ordinary length for a chat notification.",
            "clickAction": {"actionType": 0, "data": {"benchSentUs": 1_764_000_000_000_000u64}},
        }},
        "pushOptions": {"ttl": 86400},
        "target": {"token": tokens},
    }))
    .unwrap_or_default()
}

fn parse(c: &mut Criterion) {
    let mut group = c.benchmark_group("parse_send");
    for tokens in [1usize, 1000] {
        let body = body(tokens);
        group.throughput(Throughput::Bytes(body.len() as u64));
        group.bench_function(format!("{tokens} tokens"), |b| {
            b.iter(|| parse_send(PushType::Alert, black_box(&body)))
        });
    }
    group.finish();
}

criterion_group!(benches, parse);
criterion_main!(benches);
