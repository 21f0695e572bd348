//! The device gateway: registration, tokens, live delivery, store-and-forward, TTL,
//! collapseKey, redelivery, and bad input on the socket.

use herald_proto::device::{ClientFrame, ServerFrame, close};
use serde_json::json;

use crate::helpers::{
    RawDevice, device_with_token, notification, spawn_app, wait_for_request_outcome, wait_for_state,
};

#[tokio::test]
async fn tokens_are_long_opaque_and_stable_across_reconnects() {
    let app = spawn_app().await;
    let (d, token) = device_with_token(&app).await;
    assert!(token.len() >= 112, "{}", token.len());
    let mut d = d.reconnect(&app).await;
    assert_eq!(d.token(&app.info.client_id).await, token);
    let (_other, other_token) = device_with_token(&app).await;
    assert_ne!(other_token, token);
}

#[tokio::test]
async fn someone_else_cannot_claim_a_device() {
    let app = spawn_app().await;
    let (d, _) = device_with_token(&app).await;
    let mut cred = d.credential.clone().unwrap();
    cred.secret = "guess".into();
    let mut thief = RawDevice::connect(&app).await;
    thief
        .send(&ClientFrame::Hello {
            version: 1,
            device: Some(cred),
        })
        .await;
    assert_eq!(
        thief.next().await.unwrap_err(),
        Some(close::BAD_CREDENTIALS)
    );
}

#[tokio::test]
async fn unknown_app_is_an_error_frame() {
    let app = spawn_app().await;
    let mut d = RawDevice::connect(&app).await;
    d.hello().await;
    d.send(&ClientFrame::GetToken {
        client_id: "nope".into(),
    })
    .await;
    match d.next().await.unwrap() {
        ServerFrame::Error { code, .. } => assert_eq!(code, "unknown_app"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn connected_device_gets_the_message_at_once() {
    let app = spawn_app().await;
    let (mut d, token) = device_with_token(&app).await;
    let (s, _) = app.send(notification(&[&token], "live")).await;
    assert_eq!(s, 200);
    let m = d.message().await;
    assert_eq!(m.push_type, 0);
    assert_eq!(m.token, token);
    let n = &m.payload["notification"];
    assert_eq!(n["title"], "live");
    assert_eq!(n["category"], "IM");
    assert!(n["notifyId"].is_i64(), "server assigns a notifyId");
    assert_eq!(n["clickAction"]["data"]["k"], "v");
    d.ack(&[&m.id]).await;
    wait_for_state(&app, &m.id, "delivered").await;
}

#[tokio::test]
async fn offline_messages_arrive_in_order_on_reconnect() {
    let app = spawn_app().await;
    let (d, token) = device_with_token(&app).await;
    let cred = d.credential.clone();
    drop(d);
    for i in 0..5 {
        let (s, _) = app.send(notification(&[&token], &format!("m{i}"))).await;
        assert_eq!(s, 200);
    }
    let mut d = RawDevice::connect(&app).await;
    d.credential = cred;
    d.hello().await;
    for i in 0..5 {
        let m = d.message().await;
        assert_eq!(m.payload["notification"]["title"], format!("m{i}"));
        d.ack(&[&m.id]).await;
    }
}

#[tokio::test]
async fn unacknowledged_messages_are_redelivered_after_reconnect() {
    let app = spawn_app().await;
    let (mut d, token) = device_with_token(&app).await;
    app.send(notification(&[&token], "once")).await;
    let first = d.message().await;
    // No ack: the message stays queued.
    let mut d = d.reconnect(&app).await;
    let again = d.message().await;
    assert_eq!(
        again.id, first.id,
        "same message id, so the client can de-duplicate"
    );
    d.ack(&[&again.id]).await;
    wait_for_state(&app, &again.id, "delivered").await;
    let mut d = d.reconnect(&app).await;
    assert_eq!(
        d.frames_before_marker(&app).await,
        [],
        "an acknowledged message is not redelivered"
    );
}

#[tokio::test]
async fn ttl_expiry_drops_undelivered_messages() {
    let app = spawn_app().await;
    let (d, token) = device_with_token(&app).await;
    let cred = d.credential.clone();
    drop(d);
    let mut short = notification(&[&token], "short-lived");
    short["pushOptions"] = json!({"ttl": 60});
    let (_, short) = app.send(short).await;
    let short = short["requestId"].as_str().unwrap();
    app.send(notification(&[&token], "long-lived")).await;
    // Not yet: the sweeper runs whenever the clock moves, and 59 s is within the TTL.
    app.clock.advance_secs(59);
    let mut d = RawDevice::connect(&app).await;
    d.credential = cred.clone();
    d.hello().await;
    assert_eq!(
        d.message().await.payload["notification"]["title"],
        "short-lived"
    );
    drop(d);
    // Past the TTL the server's own sweeper (not the test) ends it with receipt 14…
    app.clock.advance_secs(2);
    assert_eq!(
        wait_for_request_outcome(&app, short, "expired").await,
        Some(14)
    );
    // …and the device, whose backlog is sent oldest first, gets only the long-lived one.
    let mut d = RawDevice::connect(&app).await;
    d.credential = cred;
    d.hello().await;
    let m = d.message().await;
    assert_eq!(m.payload["notification"]["title"], "long-lived");
    assert_eq!(d.frames_before_marker(&app).await, []);
}

#[tokio::test]
async fn collapse_key_keeps_only_the_newest_offline_message() {
    let app = spawn_app().await;
    let (d, token) = device_with_token(&app).await;
    let cred = d.credential.clone();
    drop(d);
    for (title, key) in [("a1", 1), ("b1", 2), ("a2", 1), ("a3", 1)] {
        let mut body = notification(&[&token], title);
        body["pushOptions"] = json!({"collapseKey": key});
        app.send(body).await;
    }
    let mut d = RawDevice::connect(&app).await;
    d.credential = cred;
    d.hello().await;
    let titles = [d.message().await, d.message().await].map(|m| {
        m.payload["notification"]["title"]
            .as_str()
            .unwrap()
            .to_owned()
    });
    assert_eq!(titles, ["b1".to_owned(), "a3".to_owned()]);
    assert_eq!(d.frames_before_marker(&app).await, []);
}

#[tokio::test]
async fn notify_id_is_forwarded_so_the_device_replaces() {
    let app = spawn_app().await;
    let (mut d, token) = device_with_token(&app).await;
    for title in ["first", "second"] {
        let mut body = notification(&[&token], title);
        body["payload"]["notification"]["notifyId"] = json!(7);
        app.send(body).await;
    }
    let (a, b) = (d.message().await, d.message().await);
    assert_eq!(a.payload["notification"]["notifyId"], 7);
    assert_eq!(b.payload["notification"]["notifyId"], 7);
    assert_ne!(a.id, b.id);
}

#[tokio::test]
async fn garbage_on_the_socket_gets_a_close_code() {
    let app = spawn_app().await;
    let mut d = RawDevice::connect(&app).await;
    d.send_text("this is not json").await;
    assert_eq!(d.next().await.unwrap_err(), Some(close::INVALID_FRAME));

    let mut d = RawDevice::connect(&app).await;
    d.send(&ClientFrame::GetToken {
        client_id: "x".into(),
    })
    .await;
    assert_eq!(d.next().await.unwrap_err(), Some(close::POLICY_VIOLATION));

    let mut d = RawDevice::connect(&app).await;
    d.send_text(r#"{"type":"hello","version":99}"#).await;
    assert_eq!(
        d.next().await.unwrap_err(),
        Some(close::UNSUPPORTED_VERSION)
    );

    let mut d = RawDevice::connect(&app).await;
    d.hello().await;
    d.send_text(r#"{"type":"teleport"}"#).await;
    match d.next().await.unwrap() {
        ServerFrame::Error { code, .. } => assert_eq!(code, "bad_frame"),
        other => panic!("{other:?}"),
    }
    d.send_text(&format!(
        r#"{{"type":"ack","ids":["{}"]}}"#,
        "x".repeat(70_000)
    ))
    .await;
    assert_eq!(d.next().await.unwrap_err(), Some(close::TOO_BIG));

    let mut d = RawDevice::connect(&app).await;
    d.hello().await;
    use futures_util::SinkExt;
    d.ws.send(tokio_tungstenite::tungstenite::Message::Binary(
        vec![1, 2, 3].into(),
    ))
    .await
    .unwrap();
    assert_eq!(d.next().await.unwrap_err(), Some(close::UNSUPPORTED_DATA));

    // The server is still fine.
    let (mut d, token) = device_with_token(&app).await;
    app.send(notification(&[&token], "still here")).await;
    assert_eq!(
        d.message().await.payload["notification"]["title"],
        "still here"
    );
}

#[tokio::test]
async fn a_second_connection_replaces_the_first() {
    let app = spawn_app().await;
    let (mut first, token) = device_with_token(&app).await;
    let mut second = RawDevice::connect(&app).await;
    second.credential = first.credential.clone();
    second.hello().await;
    assert_eq!(first.next().await.unwrap_err(), Some(close::REPLACED));
    app.send(notification(&[&token], "to the new one")).await;
    assert_eq!(
        second.message().await.payload["notification"]["title"],
        "to the new one"
    );
}

#[tokio::test]
async fn graceful_shutdown_closes_devices_and_a_restart_keeps_the_queue() {
    let app = spawn_app().await;
    let (mut d, token) = device_with_token(&app).await;
    let cred = d.credential.clone();
    let (s, _) = app.send(notification(&[&token], "before")).await;
    assert_eq!(s, 200);
    let unacked = d.message().await;
    let app = app.restart().await;
    assert_eq!(d.next().await.unwrap_err(), Some(close::GOING_AWAY));
    let mut d = RawDevice::connect(&app).await;
    d.credential = cred;
    d.hello().await;
    // The queue is replayed right after `welcome`.
    let again = d.message().await;
    assert_eq!(again.id, unacked.id);
    assert_eq!(d.token(&app.info.client_id).await, token);
}

#[tokio::test]
async fn a_deleted_token_is_dropped_with_5_and_the_next_one_works() {
    let app = spawn_app().await;
    let (mut d, old) = device_with_token(&app).await;
    // Warm the token cache, so that the deletion must evict it.
    let (s, _) = app.send(notification(&[&old], "before")).await;
    assert_eq!(s, 200);
    let m = d.message().await;
    d.ack(&[&m.id]).await;

    d.send(&ClientFrame::DeleteToken {
        client_id: app.info.client_id.clone(),
    })
    .await;
    match d.next().await.unwrap() {
        ServerFrame::TokenDeleted { client_id } => assert_eq!(client_id, app.info.client_id),
        other => panic!("expected token_deleted, got {other:?}"),
    }
    let new = d.token(&app.info.client_id).await;
    assert_ne!(new, old);

    let (s, body) = app.send(notification(&[&old], "to the old token")).await;
    assert_eq!(
        (s, body["code"].as_str()),
        (200, Some("80000000")),
        "{body}"
    );
    let request_id = body["requestId"].as_str().unwrap();
    assert_eq!(
        crate::helpers::events_for_token(&app, request_id, &old).await,
        [("dropped".to_owned(), Some(5))]
    );
    let (s, _) = app.send(notification(&[&new], "to the new token")).await;
    assert_eq!(s, 200);
    let m = d.message().await;
    assert_eq!(m.token, new);
    assert_eq!(m.payload["notification"]["title"], "to the new token");

    // Deleting again (no token now) is answered the same; an unknown app is an error.
    d.send(&ClientFrame::DeleteToken {
        client_id: "nope".into(),
    })
    .await;
    match d.next().await.unwrap() {
        ServerFrame::Error { code, re, .. } => {
            assert_eq!(
                (code.as_str(), re.as_deref()),
                ("unknown_app", Some("delete_token"))
            );
        }
        other => panic!("{other:?}"),
    }
}

/// protocol.md §6: "Within one connection the server does not resend a message it has
/// already sent there". A connection re-reads its queue (a resync) when its channel
/// overflows or another node committed something for it; the queue still lists a message
/// whose ack the connection has taken but the store has not written yet (here: the test
/// holds the database's write lock meanwhile, as a busy writer would), and that message
/// must not go out a second time.
#[tokio::test]
async fn a_resync_never_resends_what_this_connection_already_sent() {
    use herald_proto::device::{ClientFrame, ServerFrame};
    let app = spawn_app().await;
    let (mut d, token) = device_with_token(&app).await;
    let db = rusqlite::Connection::open(app.dir.path().join(herald_server::DATABASE_FILE)).unwrap();
    app.send(notification(&[&token], "acked")).await;
    let m = d.message().await;
    let hello = ClientFrame::Hello {
        version: 1,
        device: d.credential.clone(),
    };

    db.execute_batch("BEGIN IMMEDIATE").unwrap();
    d.ack(&[&m.id]).await;
    // Frames are handled in order: once a second hello is answered, the ack was taken.
    d.send(&hello).await;
    assert!(matches!(d.next().await, Ok(ServerFrame::Error { .. })));
    assert_eq!(app.state.registry.resync_all(), 1);
    // The connection is idle, so it takes up the resync before it reads the next hello:
    // anything the re-read sends at once comes before that hello's answer.
    d.send(&hello).await;
    let mut resent = Vec::new();
    loop {
        match d.next().await.unwrap() {
            ServerFrame::Error { .. } => break,
            ServerFrame::Message(m) => resent.push(m.id),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(resent, Vec::<String>::new(), "sent twice on one connection");
    // Once the ack can be written, the re-read finds nothing left to send.
    db.execute_batch("ROLLBACK").unwrap();
    wait_for_state(&app, &m.id, "delivered").await;
    assert_eq!(d.frames_before_marker(&app).await, []);
}
