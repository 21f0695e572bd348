//! The Rust device SDK's app side against a real server: every client rule of Push Kit
//! (permission, switch, profileId, tokens, receiveMessage, taps, de-duplication).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use herald_client::device::{
    APP_MESSAGE_ID_WINDOW_MS, Ability, AbilityCallback, AbilityDecl, AppHandle, ClickOutcome,
    Device, DeviceConfig, FixedAnswer, PermissionPrompt, ProfileType, PushError, PushKind,
    PushPayload, RunState, SdkEvent, Want, codes,
};
use serde_json::{Value, json};
use tokio::sync::{Notify, mpsc};

use crate::helpers::{TestApp, events_for_token, spawn_app, spawn_app_with, wait_for_state};

/// Bounds a failing wait only; generous for a loaded 2-core CI machine.
const WAIT: Duration = Duration::from_secs(30);

/// An SDK device for the bootstrap app, its events and the app's handle.
pub struct Phone {
    pub device: Device,
    pub events: mpsc::Receiver<SdkEvent>,
    pub app: AppHandle,
    _dir: tempfile::TempDir,
}

pub async fn phone(server: &TestApp) -> Phone {
    phone_with(server, |_| {}).await
}

/// A device configured by `tune` (e.g. one without Live Views).
pub async fn phone_with(server: &TestApp, tune: impl FnOnce(&mut DeviceConfig)) -> Phone {
    let dir = tempfile::tempdir().unwrap();
    let mut config = DeviceConfig {
        servers: vec![server.url.clone()],
        state_dir: dir.path().join("device"),
        client_ids: vec![server.info.client_id.clone()],
        ..DeviceConfig::default()
    };
    tune(&mut config);
    let (device, events) = Device::open_with_clock(config, Arc::new(server.clock.clone())).unwrap();
    let app = device.app(&server.info.client_id);
    Phone {
        device,
        events,
        app,
        _dir: dir,
    }
}

impl Phone {
    /// The first event `pick` accepts, skipping others.
    pub async fn wait_for<T>(&mut self, mut pick: impl FnMut(&SdkEvent) -> Option<T>) -> T {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let event = tokio::time::timeout_at(deadline, self.events.recv())
                .await
                .expect("the expected event in time")
                .expect("device running");
            if let Some(t) = pick(&event) {
                return t;
            }
        }
    }

    pub async fn notification(&mut self) -> (String, i64, Value) {
        self.wait_for(|e| match e {
            SdkEvent::Notification { shown, .. } => Some((
                shown.message_id.clone(),
                shown.notify_id.unwrap(),
                shown.notification.clone(),
            )),
            _ => None,
        })
        .await
    }

    pub async fn suppressed(&mut self) -> (String, Option<u32>) {
        self.wait_for(|e| match e {
            SdkEvent::Suppressed {
                message_id,
                receipt,
                ..
            } => Some((message_id.clone(), *receipt)),
            _ => None,
        })
        .await
    }

    pub async fn enable(&self) {
        self.app
            .request_enable_notification(&FixedAnswer(true))
            .await
            .unwrap();
    }
}

async fn send(server: &TestApp, token: &str, notification: Value) -> String {
    let (status, body) = server
        .send(json!({"payload": {"notification": notification}, "target": {"token": [token]}}))
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (200, Some("80000000")),
        "{body}"
    );
    body["requestId"].as_str().unwrap().to_owned()
}

fn alert(title: &str) -> Value {
    json!({"category": "IM", "title": title, "body": "b", "clickAction": {"actionType": 0}})
}

fn with(mut n: Value, extra: Value) -> Value {
    n.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    n
}

/// A prompt that counts how often the dialog was shown and answers `allow`.
struct Counting {
    allow: bool,
    shown: AtomicUsize,
}

#[async_trait]
impl PermissionPrompt for Counting {
    async fn ask(&self, _client_id: &str) -> bool {
        self.shown.fetch_add(1, Ordering::SeqCst);
        self.allow
    }
}

#[tokio::test]
async fn the_switch_is_off_by_default_and_a_refusal_is_1600004_for_good() {
    let server = spawn_app().await;
    let mut phone = phone(&server).await;
    let token = phone.app.get_token().await.unwrap();
    assert!(!phone.app.is_notification_enabled().await, "off by default");

    // Off: not shown, and the server hears `suppressed` with receipt 6.
    send(&server, &token, alert("while off")).await;
    let (id, receipt) = phone.suppressed().await;
    assert_eq!(receipt, Some(6));
    wait_for_state(&server, &id, "suppressed").await;
    let events = server.state.store.events_for(&id).await.unwrap();
    let last = events.last().unwrap();
    assert_eq!(
        (
            last.outcome.name(),
            last.outcome.receipt_code().map(|c| c.0)
        ),
        ("suppressed", Some(6))
    );

    // The user refuses: 1600004; asking again shows nothing and is 1600004 again.
    let prompt = Counting {
        allow: false,
        shown: AtomicUsize::new(0),
    };
    let refused = phone.app.request_enable_notification(&prompt).await;
    assert_eq!(refused, Err(PushError::NotificationDisabled));
    assert_eq!(refused.unwrap_err().code(), codes::NOTIFICATION_DISABLED);
    let again = phone.app.request_enable_notification(&prompt).await;
    assert_eq!(again.unwrap_err().code(), 1_600_004);
    assert_eq!(
        prompt.shown.load(Ordering::SeqCst),
        1,
        "the dialog never shows again"
    );
    let code = phone
        .wait_for(|e| match e {
            SdkEvent::Permission { code, .. } => Some(*code),
            _ => None,
        })
        .await;
    assert_eq!(code, Some(1_600_004));

    // The app guides the user to the settings; they switch it on; pushes show.
    phone
        .app
        .open_notification_settings(&FixedAnswer(true))
        .await
        .unwrap();
    assert!(phone.app.is_notification_enabled().await);
    send(&server, &token, alert("after settings")).await;
    let (id, _, n) = phone.notification().await;
    assert_eq!(n["title"], "after settings");
    wait_for_state(&server, &id, "shown").await;
    phone.device.shutdown().await;
}

#[tokio::test]
async fn allowing_turns_the_switch_on_and_a_second_request_while_open_is_1600013() {
    /// A dialog that stays open until released.
    struct Slow {
        opened: Notify,
        release: Notify,
    }
    #[async_trait]
    impl PermissionPrompt for Slow {
        async fn ask(&self, _client_id: &str) -> bool {
            self.opened.notify_one();
            self.release.notified().await;
            true
        }
    }
    let server = spawn_app().await;
    let phone = phone(&server).await;
    let prompt = Arc::new(Slow {
        opened: Notify::new(),
        release: Notify::new(),
    });
    let first = {
        let (app, prompt) = (phone.app.clone(), prompt.clone());
        tokio::spawn(async move { app.request_enable_notification(prompt.as_ref()).await })
    };
    prompt.opened.notified().await;
    let second = phone
        .app
        .request_enable_notification(&FixedAnswer(true))
        .await;
    assert_eq!(second.unwrap_err().code(), codes::DIALOG_ALREADY_SHOWN);
    prompt.release.notify_one();
    first.await.unwrap().unwrap();
    assert!(phone.app.is_notification_enabled().await);
    // Already on: no dialog, success.
    phone
        .app
        .request_enable_notification(&FixedAnswer(false))
        .await
        .unwrap();
    phone.device.shutdown().await;
}

#[tokio::test]
async fn a_profile_id_shows_only_for_a_bound_account_and_at_most_ten_bind() {
    let server = spawn_app().await;
    let mut phone = phone(&server).await;
    let token = phone.app.get_token().await.unwrap();
    phone.enable().await;

    let for_user = with(alert("for u1"), json!({"profileId": "111***222"}));
    send(&server, &token, for_user.clone()).await;
    let (id, receipt) = phone.suppressed().await;
    assert_eq!(receipt, Some(144));
    wait_for_state(&server, &id, "suppressed").await;
    let events = server.state.store.events_for(&id).await.unwrap();
    assert_eq!(
        events.last().unwrap().outcome.receipt_code().map(|c| c.0),
        Some(144)
    );

    phone
        .app
        .bind_app_profile_id(ProfileType::Application, "111***222")
        .await
        .unwrap();
    send(&server, &token, for_user.clone()).await;
    assert_eq!(phone.notification().await.2["title"], "for u1");

    for i in 1..10 {
        phone
            .app
            .bind_app_profile_id(ProfileType::HuaweiId, &format!("user-{i}"))
            .await
            .unwrap();
    }
    let eleventh = phone
        .app
        .bind_app_profile_id(ProfileType::Application, "one-too-many")
        .await;
    assert_eq!(eleventh.unwrap_err().code(), codes::TOO_MANY_PROFILES);
    assert_eq!(codes::TOO_MANY_PROFILES, 1_000_900_015);

    // Logging out unbinds; the account's pushes stop showing.
    phone.app.unbind_app_profile_id("111***222").await.unwrap();
    send(&server, &token, for_user).await;
    assert_eq!(phone.suppressed().await.1, Some(144));
    phone.device.shutdown().await;
}

#[tokio::test]
async fn delete_token_gives_a_new_token_drops_bindings_and_the_old_one_is_dropped_with_5() {
    let server = spawn_app().await;
    let mut phone = phone(&server).await;
    let old = phone.app.get_token().await.unwrap();
    assert_eq!(phone.app.get_token().await.unwrap(), old, "stable");
    phone.enable().await;
    phone
        .app
        .bind_app_profile_id(ProfileType::Application, "u1")
        .await
        .unwrap();

    phone.app.delete_token().await.unwrap();
    assert!(
        phone.app.profiles().is_empty(),
        "bindings go with the token"
    );
    let new = phone.app.get_token().await.unwrap();
    assert_ne!(new, old);

    let request_id = send(&server, &old, alert("to the old token")).await;
    assert_eq!(
        events_for_token(&server, &request_id, &old).await,
        [("dropped".to_owned(), Some(5))]
    );
    send(&server, &new, alert("to the new token")).await;
    assert_eq!(phone.notification().await.2["title"], "to the new token");
    phone.device.shutdown().await;
}

/// An ability that records its calls.
#[derive(Default)]
struct Recorder {
    calls: Mutex<Vec<(&'static str, Want)>>,
}

impl Ability for Recorder {
    fn on_create(&self, want: &Want) {
        self.calls.lock().unwrap().push(("onCreate", want.clone()));
    }
    fn on_new_want(&self, want: &Want) {
        self.calls.lock().unwrap().push(("onNewWant", want.clone()));
    }
}

#[tokio::test]
async fn taps_route_to_abilities_cold_then_warm_with_data_in_parameters() {
    let server = spawn_app().await;
    let mut phone = phone(&server).await;
    let token = phone.app.get_token().await.unwrap();
    phone.enable().await;
    let home = Arc::new(Recorder::default());
    let orders = Arc::new(Recorder::default());
    let web = Arc::new(Recorder::default());
    phone.app.set_home_ability("EntryAbility", home.clone());
    phone.app.add_ability(
        AbilityDecl::new("OrderAbility").action("com.example.ORDER"),
        orders.clone(),
    );
    phone.app.add_ability(
        AbilityDecl::new("WebAbility").uri("https://www.example.com:8080/push/test"),
        web.clone(),
    );
    assert_eq!(phone.app.run_state(), RunState::Stopped);

    // actionType 0, app not running: cold start of the home ability.
    send(
        &server,
        &token,
        with(
            alert("home"),
            json!({"notifyId": 1, "clickAction": {"actionType": 0, "data": {"testKey": "v1"}}}),
        ),
    )
    .await;
    let (id, notify_id, _) = phone.notification().await;
    wait_for_state(&server, &id, "shown").await;
    let outcome = phone.app.click(notify_id).await.unwrap();
    let ClickOutcome::Opened {
        ability,
        callback,
        want,
    } = outcome
    else {
        panic!("{outcome:?}")
    };
    assert_eq!(
        (ability.as_str(), callback),
        ("EntryAbility", AbilityCallback::OnCreate)
    );
    assert_eq!(want.parameters["testKey"], "v1");
    assert_eq!(home.calls.lock().unwrap()[0].1.parameters["testKey"], "v1");
    assert_eq!(phone.app.run_state(), RunState::Foreground);
    wait_for_state(&server, &id, "clicked").await;

    // The app is running now: the same ability gets onNewWant.
    send(
        &server,
        &token,
        with(
            alert("home again"),
            json!({"notifyId": 2, "clickAction": {"actionType": 0, "data": {"testKey": "v2"}}}),
        ),
    )
    .await;
    let (_, notify_id, _) = phone.notification().await;
    phone.app.click(notify_id).await.unwrap();
    let calls = home.calls.lock().unwrap().clone();
    assert_eq!(calls[1].0, "onNewWant");
    assert_eq!(calls[1].1.parameters["testKey"], "v2");

    // actionType 1: by action (preferred over uri), by uri, unmatched → home.
    let cases = [
        (
            json!({"actionType": 1, "action": "com.example.ORDER", "uri": "https://www.example.com:8080/push/test", "data": {"orderId": "42"}}),
            "OrderAbility",
        ),
        (
            json!({"actionType": 1, "uri": "https://www.example.com:8080/push/test"}),
            "WebAbility",
        ),
        (
            json!({"actionType": 1, "action": "com.example.NOWHERE"}),
            "EntryAbility",
        ),
    ];
    for (i, (click_action, expected)) in cases.into_iter().enumerate() {
        let notify_id = 10 + i as i64;
        send(
            &server,
            &token,
            with(
                alert("typed"),
                json!({"notifyId": notify_id, "clickAction": click_action}),
            ),
        )
        .await;
        phone.notification().await;
        match phone.app.click(notify_id).await.unwrap() {
            ClickOutcome::Opened { ability, .. } => assert_eq!(ability, expected),
            other => panic!("{other:?}"),
        }
    }
    let order_calls = orders.calls.lock().unwrap().clone();
    assert_eq!(order_calls[0].0, "onCreate", "first start of that ability");
    assert_eq!(order_calls[0].1.parameters["orderId"], "42");
    assert_eq!(
        order_calls[0].1.action.as_deref(),
        Some("com.example.ORDER")
    );
    assert_eq!(web.calls.lock().unwrap().len(), 1);

    // Stopping the app makes the next tap a cold start again.
    phone.app.set_run_state(RunState::Stopped);
    send(
        &server,
        &token,
        with(alert("cold"), json!({"notifyId": 20})),
    )
    .await;
    phone.notification().await;
    match phone.app.click(20).await.unwrap() {
        ClickOutcome::Opened { callback, .. } => assert_eq!(callback, AbilityCallback::OnCreate),
        other => panic!("{other:?}"),
    }
    // A notifyId not on screen is a parameter error.
    assert_eq!(phone.app.click(20).await.unwrap_err().code(), 401);
    phone.device.shutdown().await;
}

#[tokio::test]
async fn foreground_show_false_in_the_foreground_goes_to_receive_message_default() {
    let server = spawn_app().await;
    let mut phone = phone(&server).await;
    let token = phone.app.get_token().await.unwrap();
    phone.enable().await;
    let got: Arc<Mutex<Vec<PushPayload>>> = Arc::default();
    {
        let got = got.clone();
        phone
            .app
            .receive_message(PushKind::Default, move |p| got.lock().unwrap().push(p));
    }
    let quiet = with(alert("quiet"), json!({"foregroundShow": false}));

    // In the background it is shown as usual.
    phone.app.set_run_state(RunState::Background);
    send(&server, &token, quiet.clone()).await;
    assert_eq!(phone.notification().await.2["title"], "quiet");

    // In the foreground it goes to the app instead of the screen.
    phone.app.set_run_state(RunState::Foreground);
    send(&server, &token, quiet).await;
    let kind = phone
        .wait_for(|e| match e {
            SdkEvent::Received { kind, handled, .. } => Some((*kind, *handled)),
            SdkEvent::Notification { .. } => panic!("shown in the foreground"),
            _ => None,
        })
        .await;
    assert_eq!(kind, (PushKind::Default, true));
    let payload = got.lock().unwrap()[0].clone();
    assert_eq!(payload.kind, "ALERT");
    let data: Value = serde_json::from_str(&payload.data).unwrap();
    assert_eq!(data["notification"]["title"], "quiet");
    assert_eq!(data["header"]["token"], token);
    assert_eq!(
        phone.app.notifications().len(),
        1,
        "only the background one"
    );
    wait_for_state(&server, &payload.message_id, "shown").await;
    phone.device.shutdown().await;
}

#[tokio::test]
async fn app_message_id_deduplicates_for_24_hours_and_notify_id_replaces() {
    let server = spawn_app().await;
    let mut phone = phone(&server).await;
    let token = phone.app.get_token().await.unwrap();
    phone.enable().await;

    let first = with(
        alert("first"),
        json!({"appMessageId": "order-42", "notifyId": 5}),
    );
    send(&server, &token, first).await;
    let (first_id, _, _) = phone.notification().await;

    // Same appMessageId within 24 h (through another "channel": another notifyId).
    send(
        &server,
        &token,
        with(
            alert("repeat"),
            json!({"appMessageId": "order-42", "notifyId": 6}),
        ),
    )
    .await;
    let (_, receipt) = phone.suppressed().await;
    assert_eq!(receipt, None, "a repeat is just not shown");

    // After 24 hours the same id shows again.
    server.clock.advance_ms(APP_MESSAGE_ID_WINDOW_MS);
    send(
        &server,
        &token,
        with(
            alert("a day later"),
            json!({"appMessageId": "order-42", "notifyId": 7}),
        ),
    )
    .await;
    assert_eq!(phone.notification().await.2["title"], "a day later");

    // The same notifyId replaces what is on screen.
    send(
        &server,
        &token,
        with(alert("update"), json!({"notifyId": 5})),
    )
    .await;
    let replaced = phone
        .wait_for(|e| match e {
            SdkEvent::Notification { replaced, .. } => Some(replaced.clone()),
            _ => None,
        })
        .await;
    assert_eq!(replaced.as_deref(), Some(first_id.as_str()));
    let on_screen: Vec<_> = phone
        .app
        .notifications()
        .into_iter()
        .map(|n| n.notification["title"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(on_screen, ["a day later", "update"]);
    phone.device.shutdown().await;
}

#[tokio::test]
async fn permission_and_bindings_survive_a_restart_of_the_device() {
    let server = spawn_app().await;
    let dir = tempfile::tempdir().unwrap();
    let config = DeviceConfig {
        servers: vec![server.url.clone()],
        state_dir: dir.path().to_path_buf(),
        client_ids: vec![server.info.client_id.clone()],
        ..DeviceConfig::default()
    };
    let (device, _events) = Device::open(config.clone()).unwrap();
    let app = device.app(&server.info.client_id);
    let token = app.get_token().await.unwrap();
    assert!(
        app.request_enable_notification(&FixedAnswer(false))
            .await
            .is_err()
    );
    app.bind_app_profile_id(ProfileType::Application, "u1")
        .await
        .unwrap();
    device.shutdown().await;

    let (device, _events) = Device::open(config).unwrap();
    let app = device.app(&server.info.client_id);
    assert_eq!(app.get_token().await.unwrap(), token);
    assert_eq!(app.profiles()[0].id, "u1");
    // Refused on the first launch: the dialog does not come back after a restart.
    assert_eq!(
        app.request_enable_notification(&FixedAnswer(true))
            .await
            .unwrap_err()
            .code(),
        1_600_004
    );
    device.shutdown().await;
}

/// POST a send of `push_type` to one token; it must be accepted.
async fn send_typed(server: &TestApp, push_type: &str, payload: Value, token: &str) {
    let (status, body) = server
        .send_raw(
            &server.info.project_id,
            Some(format!("Bearer {}", server.jwt())),
            Some(push_type),
            serde_json::to_vec(&json!({"payload": payload, "target": {"token": [token]}})).unwrap(),
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (200, Some("80000000")),
        "{body}"
    );
}

#[tokio::test]
async fn a_badge_beside_title_and_body_sets_the_badge_on_the_device() {
    let server = spawn_app().await;
    let mut p = phone(&server).await;
    p.enable().await;
    let token = p.app.get_token().await.unwrap();
    send(
        &server,
        &token,
        with(alert("two new"), json!({"badge": {"addNum": 2}})),
    )
    .await;
    let (_, _, shown) = p.notification().await;
    assert_eq!(shown["badge"], json!({"addNum": 2}));
    let count = p
        .wait_for(|e| match e {
            SdkEvent::Badge { count, .. } => Some(*count),
            _ => None,
        })
        .await;
    assert_eq!(count, 2);
    send(
        &server,
        &token,
        with(
            alert("reset"),
            json!({"notifyId": 9, "badge": {"setNum": 7}}),
        ),
    )
    .await;
    let count = p
        .wait_for(|e| match e {
            SdkEvent::Badge { count, .. } => Some(*count),
            _ => None,
        })
        .await;
    assert_eq!((count, p.app.badge()), (7, 7));
}

#[tokio::test]
async fn proxy_data_goes_to_the_push_message_table_while_the_app_is_away() {
    let server = spawn_app().await;
    let mut p = phone(&server).await;
    let token = p.app.get_token().await.unwrap();
    p.app.set_run_state(RunState::Background);
    send_typed(
        &server,
        "6",
        json!({"extraData": "{\"sync\":1}", "proxyData": "ENABLE"}),
        &token,
    )
    .await;
    let row = p
        .wait_for(|e| match e {
            SdkEvent::ProxyData { row, .. } => Some(row.clone()),
            _ => None,
        })
        .await;
    assert_eq!((row.id, row.push_type), (1, 6));
    assert_eq!(row.message, json!({"data": "{\"sync\":1}"}).to_string());
    assert_eq!(p.app.push_messages(), vec![row]);
}

#[tokio::test]
async fn a_device_without_live_views_shows_title_and_content() {
    let server = spawn_app().await;
    server
        .state
        .store
        .change_right(herald_store::RightChange {
            client_id: server.info.client_id.clone(),
            name: "LIVE_VIEW_TAXI".into(),
            action: herald_core::rights::RightAction::Grant,
            reason: None,
            actor: "test".into(),
            at: herald_core::Clock::now_ms(&server.clock),
            ..Default::default()
        })
        .await
        .unwrap()
        .unwrap();
    let mut p = phone_with(&server, |c| {
        c.live_view_display = herald_client::device::LiveViewDisplay::Notifications;
    })
    .await;
    p.enable().await;
    let token = p.app.get_token().await.unwrap();
    send_typed(
        &server,
        "7",
        json!({"activityId": 42, "operation": 0, "event": "TAXI", "status": "CALLING",
            "title": "Your taxi", "content": "Status: {{status}}",
            "activityData": {"notificationData": {"type": 3, "contentTitle": "Taxi"}}}),
        &token,
    )
    .await;
    let shown = p
        .wait_for(|e| match e {
            SdkEvent::Notification { shown, .. } => Some(shown.clone()),
            SdkEvent::LiveView { .. } => panic!("this device has no Live View cards"),
            _ => None,
        })
        .await;
    assert_eq!(shown.push_type, 7);
    assert_eq!(
        (&shown.notification["title"], &shown.notification["body"]),
        (&json!("Your taxi"), &json!("Status: CALLING"))
    );
}

/// A CA (as `herald cert create` makes one) and a server certificate it signed for
/// 127.0.0.1, as PEM files in `dir`: (ca.pem, server.pem, server-key.pem).
fn private_ca(dir: &std::path::Path) -> [std::path::PathBuf; 3] {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca = rcgen::CertificateParams::default();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
    ca.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign];
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    let files = ["ca.pem", "server.pem", "server-key.pem"].map(|f| dir.join(f));
    std::fs::write(&files[0], ca_cert.pem()).unwrap();
    std::fs::write(&files[1], leaf.pem()).unwrap();
    std::fs::write(&files[2], key.serialize_pem()).unwrap();
    files
}

#[tokio::test]
async fn the_sdk_trusts_a_private_ca_for_wss_and_https() {
    use herald_client::admin::AdminClient;
    use herald_client::sender::{JwtSigner, PushClient};
    use herald_client::tls::CaFile;

    let certs = tempfile::tempdir().unwrap();
    let [ca, cert, key] = private_ca(certs.path());
    let server = spawn_app_with(|c| {
        c.tls_cert = cert.display().to_string();
        c.tls_key = key.display().to_string();
    })
    .await;
    assert!(server.url.starts_with("https://"));
    let ca = CaFile::load(&ca).unwrap();

    // Without the CA the device cannot connect; with it, wss:// works.
    let mut stranger = phone(&server).await;
    stranger
        .wait_for(|e| match e {
            SdkEvent::Error { code, .. } if code == "connect_failed" => Some(()),
            SdkEvent::Connected { .. } => panic!("connected without trusting the CA"),
            _ => None,
        })
        .await;
    let ca_for_device = ca.clone();
    let mut p = phone_with(&server, move |c| c.ca = Some(ca_for_device)).await;
    p.enable().await;
    let token = p.app.get_token().await.unwrap();

    // The sender and the admin client over https:// with the same CA.
    let push =
        PushClient::trusting(&server.url, JwtSigner::new(&server.key).unwrap(), Some(&ca)).unwrap();
    let (status, answer) = push
        .send(
            0,
            &json!({"payload": {"notification": alert("over wss")}, "target": {"token": [token]}}),
        )
        .await
        .unwrap();
    assert_eq!((status, answer.code.as_str()), (200, "80000000"));
    let (_, _, shown) = p.notification().await;
    assert_eq!(shown["title"], "over wss");
    let admin = AdminClient::trusting(&server.url, &server.info.admin_token, Some(&ca)).unwrap();
    assert!(admin.get("/api/v1/projects").await.unwrap().is_success());
    let untrusting = PushClient::new(&server.url, JwtSigner::new(&server.key).unwrap()).unwrap();
    assert!(untrusting.send(0, &json!({})).await.is_err());
}

#[tokio::test]
async fn a_background_message_cached_while_the_app_is_away_ends_with_receipt_27() {
    let server = spawn_app().await;
    let mut p = phone(&server).await;
    let token = p.app.get_token().await.unwrap();
    p.app.set_run_state(RunState::Background);
    send_typed(&server, "6", json!({"extraData": "{\"sync\":2}"}), &token).await;
    let id = p
        .wait_for(|e| match e {
            SdkEvent::Cached { message_id, .. } => Some(message_id.clone()),
            _ => None,
        })
        .await;
    wait_for_state(&server, &id, "suppressed").await;
    let events = server.state.store.events_for(&id).await.unwrap();
    assert_eq!(
        events.last().map(|e| e.outcome),
        Some(herald_core::Outcome::Suppressed(herald_core::ReceiptCode(
            27
        )))
    );
}
