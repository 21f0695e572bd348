//! The conformance story every `Store` backend must pass, run on SQLite always.
//! (A PostgreSQL backend will run the same story when `HERALD_TEST_POSTGRES_URL` is set.)

#![allow(clippy::unwrap_used)] // tests panic on the unexpected by design

use herald_core::{Outcome, ReceiptCode};
use herald_store::sqlite::{Durability, SqliteStore};
use herald_store::*;

const NOW: i64 = 1_800_000_000_000;

fn bootstrap() -> Bootstrap {
    Bootstrap {
        admin_username: "admin".into(),
        admin_password_hash: "hash".into(),
        admin_token_hash: "tokenhash".into(),
        project: Project {
            project_id: "p1".into(),
            name: "P".into(),
            created_at: NOW,
        },
        app: App {
            client_id: "c1".into(),
            project_id: "p1".into(),
            package_name: "com.x".into(),
            name: "X".into(),
            created_at: NOW,
            app_category: "other".into(),
            overrides: Default::default(),
        },
        service_account: ServiceAccount {
            key_id: "k1".into(),
            project_id: "p1".into(),
            sub_account: "s1".into(),
            public_key_pem: "pem".into(),
            token_uri: "http://x/oauth2/v3/token".into(),
            created_at: NOW,
        },
    }
}

fn request(id: &str, at: i64) -> NewRequest {
    NewRequest {
        request_id: id.into(),
        project_id: "p1".into(),
        push_type: 0,
        payload: r#"{"notification":{"title":"t"}}"#.into(),
        bi_tag: Some("bi".into()),
        receipt_id: None,
        test: false,
        ttl_secs: 60,
        created_at: at,
    }
}

fn delivery(id: &str, token: &str, collapse: Option<u8>, expires_at: i64) -> NewDelivery {
    NewDelivery {
        message_id: id.into(),
        token: token.into(),
        device_id: "d1".into(),
        client_id: "c1".into(),
        expires_at,
        collapse_key: collapse,
        notify_id: Some(1),
        category: Some("IM".into()),
        background_mode: None,
    }
}

async fn enqueue_one(
    store: &dyn Store,
    id: &str,
    collapse: Option<u8>,
    expires_at: i64,
) -> EnqueueResult {
    store
        .enqueue(Enqueue {
            request: request(&format!("r-{id}"), NOW),
            deliveries: vec![delivery(id, "tok1", collapse, expires_at)],
            drops: vec![],
            usage: vec![],
            live_views: vec![],
        })
        .await
        .unwrap()
}

fn names(events: &[EventRecord]) -> Vec<&'static str> {
    events.iter().map(|e| e.outcome.name()).collect()
}

async fn story(store: &dyn Store) {
    // Bootstrap happens once.
    assert!(!store.is_bootstrapped().await.unwrap());
    store.bootstrap(bootstrap()).await.unwrap();
    assert!(store.is_bootstrapped().await.unwrap());
    assert_eq!(store.app("c1").await.unwrap().unwrap().project_id, "p1");
    assert_eq!(
        store
            .service_account("k1")
            .await
            .unwrap()
            .unwrap()
            .sub_account,
        "s1"
    );
    assert_eq!(
        store
            .admin_by_token_hash("tokenhash")
            .await
            .unwrap()
            .unwrap()
            .username,
        "admin"
    );
    assert!(store.admin_by_token_hash("nope").await.unwrap().is_none());

    // Devices and tokens: one active token per (device, app), stable.
    store
        .register_device(NewDevice {
            device_id: "d1".into(),
            secret_hash: "sh".into(),
            created_at: NOW,
        })
        .await
        .unwrap();
    assert_eq!(
        store.device_secret_hash("d1").await.unwrap().as_deref(),
        Some("sh")
    );
    let t = store
        .token_for(
            "d1",
            "c1",
            NewToken {
                token: "tok1".into(),
                created_at: NOW,
            },
        )
        .await
        .unwrap();
    assert_eq!(t, "tok1");
    let again = store
        .token_for(
            "d1",
            "c1",
            NewToken {
                token: "tok2".into(),
                created_at: NOW,
            },
        )
        .await
        .unwrap();
    assert_eq!(again, "tok1", "the existing token wins");
    let found = store
        .lookup_tokens(&["tok1".into(), "unknown".into()])
        .await
        .unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].project_id, "p1");

    // Enqueue, pending in order, ack.
    let r = enqueue_one(store, "m1", None, NOW + 60_000).await;
    assert_eq!(r.seqs.len(), 1);
    enqueue_one(store, "m2", None, NOW + 60_000).await;
    let pending = store.pending("d1", NOW).await.unwrap();
    assert_eq!(
        pending
            .iter()
            .map(|p| p.message_id.as_str())
            .collect::<Vec<_>>(),
        ["m1", "m2"]
    );
    assert_eq!(pending[0].bi_tag.as_deref(), Some("bi"));
    store.ack("d1", &["m1".into()], NOW + 1).await.unwrap();
    store
        .ack("other-device", &["m2".into()], NOW + 1)
        .await
        .unwrap();
    let pending = store.pending("d1", NOW).await.unwrap();
    assert_eq!(pending.len(), 1, "only the device's own ack counts");
    assert_eq!(
        names(&store.events_for("m1").await.unwrap()),
        ["queued", "delivered"]
    );

    // A report before the ack implies delivery.
    store
        .record_reports(
            "d1",
            &[Report {
                message_id: "m2".into(),
                outcome: Outcome::Shown,
                at: NOW + 2,
            }],
        )
        .await
        .unwrap();
    assert_eq!(
        names(&store.events_for("m2").await.unwrap()),
        ["queued", "delivered", "shown"]
    );
    store
        .record_reports(
            "d1",
            &[Report {
                message_id: "m2".into(),
                outcome: Outcome::Clicked,
                at: NOW + 3,
            }],
        )
        .await
        .unwrap();
    assert_eq!(
        names(&store.events_for("m2").await.unwrap()).last(),
        Some(&"clicked")
    );

    // collapseKey: the newest queued message of a group replaces the older one.
    enqueue_one(store, "c-a", Some(3), NOW + 60_000).await;
    let r = enqueue_one(store, "c-b", Some(3), NOW + 60_000).await;
    assert_eq!(r.replaced, ["c-a"]);
    let replaced = store.events_for("c-a").await.unwrap();
    assert_eq!(replaced.last().unwrap().outcome, Outcome::Replaced);
    assert_eq!(
        replaced.last().unwrap().outcome.receipt_code(),
        Some(ReceiptCode(15))
    );
    store.ack("d1", &["c-b".into()], NOW).await.unwrap();

    // TTL: expired messages are not pending and get an `expired` event.
    enqueue_one(store, "short", None, NOW + 10).await;
    assert!(store.pending("d1", NOW + 10).await.unwrap().is_empty());
    assert_eq!(store.expire_due(NOW + 10).await.unwrap(), 1);
    assert_eq!(
        names(&store.events_for("short").await.unwrap()),
        ["queued", "expired"]
    );

    // Offline cache cap: the 121st queued message replaces the oldest.
    for i in 0..121 {
        enqueue_one(store, &format!("cap{i}"), None, NOW + 60_000).await;
    }
    let pending = store.pending("d1", NOW).await.unwrap();
    assert_eq!(pending.len(), 120);
    assert_eq!(pending[0].message_id, "cap1");
    assert_eq!(
        store
            .events_for("cap0")
            .await
            .unwrap()
            .last()
            .unwrap()
            .outcome,
        Outcome::Replaced
    );

    // Drops are recorded without a delivery.
    store
        .enqueue(Enqueue {
            request: request("r-drop", NOW),
            deliveries: vec![],
            drops: vec![NewDrop {
                message_id: "dropped".into(),
                token: "ghost".into(),
                client_id: None,
                outcome: Outcome::Dropped(ReceiptCode::TOKEN_INVALID),
            }],
            usage: vec![],
            live_views: vec![],
        })
        .await
        .unwrap();
    let e = store.events_for("dropped").await.unwrap();
    assert_eq!(e[0].outcome, Outcome::Dropped(ReceiptCode(5)));

    // A failed write does not poison the batch it shared a commit with.
    let dup = store.enqueue(Enqueue {
        request: request("r-drop", NOW),
        deliveries: vec![],
        drops: vec![],
        usage: vec![],
        live_views: vec![],
    });
    let ok = store.enqueue(Enqueue {
        request: request("r-after", NOW),
        deliveries: vec![delivery("after", "tok1", None, NOW + 60_000)],
        drops: vec![],
        usage: vec![],
        live_views: vec![],
    });
    let (dup, ok) = tokio::join!(dup, ok);
    assert!(dup.is_err(), "a duplicate request id is rejected");
    assert!(ok.is_ok());
    assert_eq!(names(&store.events_for("after").await.unwrap()), ["queued"]);

    admin_story(store).await;
    receipt_story(store).await;

    let counts = store.delivery_counts().await.unwrap();
    assert!(counts.iter().any(|(s, n)| s == "queued" && *n == 120));
    store.close().await;
    assert!(matches!(
        store.bootstrap(bootstrap()).await,
        Err(StoreError::Closed)
    ));
}

/// Projects, apps, keys, rights and quota counters.
async fn admin_story(store: &dyn Store) {
    use herald_core::quota::{Counter, CounterKey};
    use herald_core::rights::{RightAction, RightState};

    store
        .create_project(Project {
            project_id: "p2".into(),
            name: "Two".into(),
            created_at: NOW,
        })
        .await
        .unwrap();
    assert_eq!(store.list_projects().await.unwrap().len(), 2);
    let mut app = bootstrap().app;
    app.client_id = "c2".into();
    app.project_id = "p2".into();
    store.create_app(app).await.unwrap();
    assert_eq!(store.list_apps(Some("p2")).await.unwrap().len(), 1);
    assert_eq!(store.list_apps(None).await.unwrap().len(), 2);
    let updated = store
        .update_app(
            "c2",
            AppUpdate {
                app_category: Some("news".into()),
                device_daily_total: Some(Some(9)),
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(updated.app_category, "news");
    assert_eq!(updated.overrides.device_daily_total, Some(9));
    let cleared = store
        .update_app(
            "c2",
            AppUpdate {
                device_daily_total: Some(None),
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(cleared.overrides.device_daily_total, None);
    assert_eq!(cleared.app_category, "news", "absent fields stay");
    assert!(
        store
            .update_app("nope", AppUpdate::default())
            .await
            .unwrap()
            .is_none()
    );

    let mut sa = bootstrap().service_account;
    sa.key_id = "k2".into();
    sa.project_id = "p2".into();
    store.create_service_account(sa).await.unwrap();
    assert_eq!(
        store.list_service_accounts("p2").await.unwrap()[0].key_id,
        "k2"
    );

    let change = |action, reason: Option<&str>| RightChange {
        client_id: "c2".into(),
        name: "IM".into(),
        action,
        reason: reason.map(str::to_owned),
        actor: "ops".into(),
        at: NOW,
    };
    let r = store
        .change_right(change(RightAction::Request, Some("chat")))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r.state, RightState::Requested);
    assert!(
        store
            .change_right(change(RightAction::Revoke, None))
            .await
            .unwrap()
            .is_err()
    );
    let r = store
        .change_right(change(RightAction::Grant, None))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (r.state, r.reason.as_deref()),
        (RightState::Granted, Some("chat"))
    );
    assert_eq!(store.rights("c2").await.unwrap().len(), 1);
    let history = store.right_history("c2").await.unwrap();
    assert_eq!(history.len(), 2, "refused transitions leave no history");

    let key = CounterKey::per_device(Counter::Marketing, "c2", "d1", 20261129);
    let other = CounterKey::per_project(Counter::TestMessages, "p2", 20261129);
    store
        .enqueue(Enqueue {
            request: request("r-usage", NOW),
            deliveries: vec![],
            drops: vec![],
            usage: vec![(key.clone(), 2)],
            live_views: vec![],
        })
        .await
        .unwrap();
    store
        .enqueue(Enqueue {
            request: request("r-usage2", NOW),
            deliveries: vec![],
            drops: vec![],
            usage: vec![(key.clone(), 1)],
            live_views: vec![],
        })
        .await
        .unwrap();
    assert_eq!(
        store
            .quota_usage(&[key.clone(), other.clone()])
            .await
            .unwrap(),
        [(key, 3), (other, 0)]
    );
}

fn receipt_config(id: &str, client_id: Option<&str>, at: i64) -> ReceiptConfig {
    ReceiptConfig {
        receipt_id: id.into(),
        project_id: "p1".into(),
        client_id: client_id.map(str::to_owned),
        url: format!("http://127.0.0.1:1/{id}"),
        username: Some("user".into()),
        secret: "c2VjcmV0".into(),
        version: "V2".into(),
        created_at: at,
    }
}

/// Receipts are queued with their events, for the right config, and drained durably.
async fn receipt_story(store: &dyn Store) {
    use herald_core::receipt::ReceiptFate;
    use std::time::Duration;

    let signal = store.receipts_queued();
    let due = |now| async move { store.due_receipts(now, 100).await.unwrap() };
    let total = |d: &[DueReceipts]| d.iter().map(|d| d.receipts.len()).sum::<usize>();

    // No config, no receipt.
    assert!(due(i64::MAX).await.is_empty());

    store
        .create_receipt_config(receipt_config("rc-project", None, NOW))
        .await
        .unwrap();
    store
        .create_receipt_config(receipt_config("rc-project-2", None, NOW + 1))
        .await
        .unwrap();
    store
        .create_receipt_config(receipt_config("rc-app", Some("c1"), NOW + 2))
        .await
        .unwrap();
    assert_eq!(store.list_receipt_configs("p1").await.unwrap().len(), 3);
    assert_eq!(
        store
            .receipt_config("rc-app")
            .await
            .unwrap()
            .unwrap()
            .client_id
            .as_deref(),
        Some("c1")
    );

    store
        .register_device(NewDevice {
            device_id: "d-r".into(),
            secret_hash: "sh".into(),
            created_at: NOW,
        })
        .await
        .unwrap();
    let token = store
        .token_for(
            "d-r",
            "c1",
            NewToken {
                token: "tok-r".into(),
                created_at: NOW,
            },
        )
        .await
        .unwrap();
    let mut delivery = delivery("r-m1", &token, None, NOW + 60_000);
    delivery.device_id = "d-r".into();
    let mut explicit = request("r-explicit", NOW);
    explicit.receipt_id = Some("rc-project-2".into());
    let mut unknown_id = request("r-unknown-id", NOW);
    unknown_id.receipt_id = Some("no-such-config".into());
    store
        .enqueue(Enqueue {
            request: request("r-r1", NOW),
            deliveries: vec![delivery],
            drops: vec![],
            usage: vec![],
            live_views: vec![],
        })
        .await
        .unwrap();
    assert!(due(i64::MAX).await.is_empty(), "queued has no receipt");
    store.ack("d-r", &["r-m1".into()], NOW + 5).await.unwrap();
    // Drops: an unknown token has no app (project-level config); a quota drop has one.
    let drop = |id: &str, token: &str, client_id: Option<&str>, code| NewDrop {
        message_id: id.into(),
        token: token.into(),
        client_id: client_id.map(str::to_owned),
        outcome: Outcome::Dropped(ReceiptCode(code)),
    };
    store
        .enqueue(Enqueue {
            request: request("r-r2", NOW + 6),
            deliveries: vec![],
            drops: vec![
                drop("r-ghost", "ghost", None, 5),
                drop("r-quota", &token, Some("c1"), 256),
            ],
            usage: vec![],
            live_views: vec![],
        })
        .await
        .unwrap();
    store
        .enqueue(Enqueue {
            request: explicit,
            deliveries: vec![],
            drops: vec![drop("r-explicit-ghost", "ghost", None, 5)],
            usage: vec![],
            live_views: vec![],
        })
        .await
        .unwrap();
    store
        .enqueue(Enqueue {
            request: unknown_id,
            deliveries: vec![],
            drops: vec![drop("r-fallback", "ghost", None, 5)],
            usage: vec![],
            live_views: vec![],
        })
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(5), signal.notified())
        .await
        .expect("the dispatcher is told about new receipts");

    let all = due(i64::MAX).await;
    let by_config = |id: &str| -> Vec<(String, u32)> {
        all.iter()
            .filter(|d| d.config.receipt_id == id)
            .flat_map(|d| d.receipts.iter().map(|r| (r.token.clone(), r.result)))
            .collect()
    };
    assert_eq!(
        by_config("rc-app"),
        [(token.clone(), 0), (token.clone(), 256)],
        "the app's config wins for its tokens"
    );
    assert_eq!(
        by_config("rc-project"),
        [("ghost".to_owned(), 5), ("ghost".to_owned(), 5)],
        "tokens of no app, and unknown receiptIds, go to the oldest project config"
    );
    assert_eq!(
        by_config("rc-project-2"),
        [("ghost".to_owned(), 5)],
        "receiptId chooses the config"
    );
    let app_receipts = &all
        .iter()
        .find(|d| d.config.receipt_id == "rc-app")
        .unwrap()
        .receipts;
    let delivered = &app_receipts[0];
    assert_eq!(
        (
            delivered.request_id.as_str(),
            delivered.bi_tag.as_str(),
            delivered.app_package_name.as_str(),
            delivered.push_type,
            delivered.at,
            delivered.attempts,
        ),
        ("r-r1", "bi", "com.x", 0, NOW + 5, 0)
    );
    assert!(
        app_receipts[0].id < app_receipts[1].id,
        "oldest first within a config"
    );
    assert_eq!(total(&due(NOW + 5).await), 3, "not due before their event");
    assert_eq!(
        store.due_receipts(i64::MAX, 1).await.unwrap()[0]
            .receipts
            .len(),
        1,
        "at most `per_config` per config"
    );
    assert_eq!(store.pending_receipts().await.unwrap(), 5);

    // Settling: sent and dropped leave the queue, a retry waits for its time.
    let ids: Vec<i64> = app_receipts.iter().map(|r| r.id).collect();
    let ghosts: Vec<i64> = all
        .iter()
        .filter(|d| d.config.receipt_id == "rc-project")
        .flat_map(|d| d.receipts.iter().map(|r| r.id))
        .collect();
    store
        .settle_receipts(
            &[
                (ids[0], ReceiptFate::Sent),
                (
                    ids[1],
                    ReceiptFate::Retry {
                        next_attempt_at: NOW + 1_000,
                    },
                ),
                (ghosts[0], ReceiptFate::Dropped),
            ],
            NOW + 10,
        )
        .await
        .unwrap();
    // Settling again is a no-op for receipts that are no longer pending.
    store
        .settle_receipts(&[(ids[0], ReceiptFate::Dropped)], NOW + 11)
        .await
        .unwrap();
    let later = due(NOW + 999).await;
    assert!(later.iter().all(|d| d.config.receipt_id != "rc-app"));
    let retried = due(NOW + 1_000).await;
    let retried = &retried
        .iter()
        .find(|d| d.config.receipt_id == "rc-app")
        .unwrap()
        .receipts;
    assert_eq!((retried[0].id, retried[0].attempts), (ids[1], 1));
    assert_eq!(store.retry_pending_receipts_now(NOW + 20).await.unwrap(), 1);
    assert_eq!(total(&due(NOW + 20).await), 3);
    let counts = store.receipt_counts().await.unwrap();
    assert_eq!(
        counts,
        [
            ("dropped".to_owned(), 1),
            ("pending".to_owned(), 3),
            ("sent".to_owned(), 1)
        ]
    );

    // Deleting a config drops its pending receipts.
    assert_eq!(
        store
            .delete_receipt_config("rc-project", NOW + 30)
            .await
            .unwrap(),
        Some(1)
    );
    assert_eq!(
        store
            .delete_receipt_config("rc-project", NOW + 30)
            .await
            .unwrap(),
        None
    );
    assert_eq!(store.pending_receipts().await.unwrap(), 2);
    assert_eq!(store.list_receipt_configs("p1").await.unwrap().len(), 2);
}

#[tokio::test]
async fn sqlite_passes_the_story() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("t.db"), Durability::Normal).unwrap();
    story(&store).await;
}

#[tokio::test]
async fn sqlite_state_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    {
        let store = SqliteStore::open(&path, Durability::Full).unwrap();
        store.bootstrap(bootstrap()).await.unwrap();
        store
            .register_device(NewDevice {
                device_id: "d1".into(),
                secret_hash: "h".into(),
                created_at: NOW,
            })
            .await
            .unwrap();
        store
            .token_for(
                "d1",
                "c1",
                NewToken {
                    token: "tok1".into(),
                    created_at: NOW,
                },
            )
            .await
            .unwrap();
        store
            .create_receipt_config(receipt_config("rc", None, NOW))
            .await
            .unwrap();
        enqueue_one(&store, "m1", None, NOW + 60_000).await;
        store.expire_due(NOW + 60_000).await.unwrap();
        enqueue_one(&store, "m2", None, NOW + 60_000).await;
        store.close().await;
    }
    let store = SqliteStore::open(&path, Durability::Full).unwrap();
    assert_eq!(store.pending("d1", NOW).await.unwrap().len(), 1);
    let due = store.due_receipts(i64::MAX, 100).await.unwrap();
    assert_eq!(
        due[0].receipts.len(),
        1,
        "queued receipts survive a restart"
    );
    assert_eq!(
        due[0].receipts[0].result, 14,
        "TTL expiry is reported as 14"
    );
}
