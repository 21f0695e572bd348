//! Micro-benchmark: the per-token decision of a send (`policy::admit`, then
//! `QuotaContext::take_quotas` against an in-memory ledger), paid once per token of every
//! request.

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use herald_core::Category;
use herald_core::policy::{Admission, AppPolicy, Ledger, QuotaContext, Recipient, admit};
use herald_core::quota::{AppLimits, CounterKey};
use herald_core::rights::{GrantedRights, Right};
use herald_core::send::{PushType, parse_send};
use serde_json::json;

#[derive(Default)]
struct Counts(HashMap<CounterKey, u32>);

impl Ledger for Counts {
    fn try_take(&mut self, key: &CounterKey, limit: u32) -> bool {
        let n = self.0.entry(key.clone()).or_insert(0);
        if *n >= limit {
            return false;
        }
        *n += 1;
        true
    }
    fn give_back(&mut self, key: &CounterKey) {
        if let Some(n) = self.0.get_mut(key) {
            *n = n.saturating_sub(1);
        }
    }
}

fn decide(c: &mut Criterion) {
    let token = format!("{:0>64}", 7);
    let body = json!({
        "payload": {"notification": {"category": "IM", "title": "t", "body": "b",
            "clickAction": {"actionType": 0}}},
        "target": {"token": [token]},
    });
    let Ok(parsed) = parse_send(PushType::Alert, body.to_string().as_bytes()) else {
        return;
    };
    let app = AppPolicy {
        rights: Arc::new(GrantedRights::new([Right::Category(Category::Im)])),
        limits: AppLimits {
            marketing_per_day: 2,
            device_daily_total: u32::MAX,
            send_rate_per_sec: 6000,
        },
    };
    let devices: Vec<String> = (0..1000).map(|i| format!("{i:032x}")).collect();
    let ctx = QuotaContext {
        parsed: &parsed,
        day: 20261130,
        now: 1_764_460_800_000,
        widget_daily_limit: 5,
    };
    let mut group = c.benchmark_group("policy");
    group.throughput(Throughput::Elements(devices.len() as u64));
    group.bench_function("admit + take_quotas, 1000 tokens", |b| {
        let mut ledger = Counts::default();
        b.iter(|| {
            for device_id in &devices {
                let who = Recipient {
                    project_id: "p",
                    client_id: "c",
                    device_id,
                };
                if let Admission::Admit(a) = admit("p", &parsed, &token, Some(who), Some(&app)) {
                    black_box(ctx.take_quotas(&who, &a, &app.limits, &mut ledger)).ok();
                }
            }
        })
    });
    group.finish();
}

criterion_group!(benches, decide);
criterion_main!(benches);
