//! The operations role from the command line: `herald admin` against a running server,
//! checked on a `herald device`.

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};

use crate::process::{DeviceProc, Server, admin, cli, post_send, read_json, sign_jwt};

fn im(token: &str, title: &str) -> Value {
    json!({"payload":{"notification":{"category":"IM","title":title,"body":"b",
        "clickAction":{"actionType":0}}},"target":{"token":[token]}})
}

#[test]
fn operations_grant_a_right_and_the_device_shows_the_difference() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"));
    let boot_path = dir.path().join("data/bootstrap.json");
    let boot = server.bootstrap();
    let client_id = boot["client_id"].as_str().unwrap().to_owned();
    let project = boot["project_id"].as_str().unwrap().to_owned();
    let key = read_json(Path::new(boot["service_account_file"].as_str().unwrap()));
    let jwt = sign_jwt(&key);

    let device = DeviceProc::start(&server.url, &client_id, &dir.path().join("device"), &[]);
    let token = device.expect("token", Duration::from_secs(20))["token"]
        .as_str()
        .unwrap()
        .to_owned();

    // Without the IM right: shown as MARKETING, silently.
    let (s, _) = post_send(&server.url, &project, &jwt, &im(&token, "downgraded"));
    assert_eq!(s, 200);
    let n = device.expect("notification", Duration::from_secs(10));
    assert_eq!(
        (n["category"].as_str(), n["reminder"].as_str()),
        (Some("MARKETING"), Some("silent"))
    );

    // Operations apply, the product side grants.
    let (ok, r) = admin(
        &boot_path,
        &[
            "rights",
            "request",
            "--client-id",
            &client_id,
            "--category",
            "IM",
            "--reason",
            "one-to-one chat",
        ],
    );
    assert!(ok, "{r}");
    assert_eq!(r["state"], "requested");
    let (ok, r) = admin(
        &boot_path,
        &[
            "rights",
            "grant",
            "--client-id",
            &client_id,
            "--category",
            "IM",
        ],
    );
    assert!(ok, "{r}");
    let (_, r) = admin(&boot_path, &["rights", "list", "--client-id", &client_id]);
    assert_eq!(r["granted"], json!(["IM"]));
    assert_eq!(r["history"].as_array().unwrap().len(), 2);

    post_send(&server.url, &project, &jwt, &im(&token, "alerting"));
    let n = device.expect("notification", Duration::from_secs(10));
    assert_eq!(
        (n["category"].as_str(), n["reminder"].as_str()),
        (Some("IM"), Some("alert"))
    );

    // A refused transition exits non-zero and still prints JSON.
    let (ok, r) = admin(
        &boot_path,
        &[
            "rights",
            "grant",
            "--client-id",
            &client_id,
            "--category",
            "IM",
        ],
    );
    assert!(!ok);
    assert!(r["error"].is_string());

    // Quotas: news apps get 5; limits can be changed and shown.
    let (ok, r) = admin(
        &boot_path,
        &[
            "app",
            "update",
            "--client-id",
            &client_id,
            "--app-category",
            "news",
            "--device-daily-total",
            "100",
        ],
    );
    assert!(ok, "{r}");
    assert_eq!(r["limits"]["marketing_per_day"], 5);
    assert_eq!(r["limits"]["device_daily_total"], 100);
    let (ok, r) = admin(&boot_path, &["quota", "show", "--client-id", &client_id]);
    assert!(ok, "{r}");
    assert_eq!(r["limits"]["marketing_per_day"], 5);

    // A new project, app and key; the key file works with `herald send`.
    let (ok, p) = admin(&boot_path, &["project", "create", "--name", "Second"]);
    assert!(ok, "{p}");
    let p2 = p["project_id"].as_str().unwrap().to_owned();
    let (ok, a) = admin(
        &boot_path,
        &[
            "app",
            "create",
            "--project-id",
            &p2,
            "--name",
            "Shop",
            "--package-name",
            "com.example.shop",
        ],
    );
    assert!(ok, "{a}");
    let key_path = dir.path().join("second-key.json");
    let (ok, k) = admin(
        &boot_path,
        &[
            "key",
            "create",
            "--project-id",
            &p2,
            "--out",
            key_path.to_str().unwrap(),
        ],
    );
    assert!(ok, "{k}");
    assert_eq!(k["path"], key_path.to_str().unwrap());
    let new_device = DeviceProc::start(
        &server.url,
        a["client_id"].as_str().unwrap(),
        &dir.path().join("device2"),
        &[],
    );
    let t2 = new_device.expect("token", Duration::from_secs(20))["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let (ok, printed) = cli(
        &[
            "send",
            "--key-file",
            key_path.to_str().unwrap(),
            "--server",
            &server.url,
            "--token",
            &t2,
            "--title",
            "from the new key",
            "--body",
            "b",
        ],
        &dir.path().join("cache"),
    );
    assert!(ok, "{printed}");
    let n = new_device.expect("notification", Duration::from_secs(10));
    assert_eq!(n["title"], "from the new key");
}

#[test]
fn the_third_marketing_message_never_reaches_the_device() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"));
    let boot = server.bootstrap();
    let key = read_json(Path::new(boot["service_account_file"].as_str().unwrap()));
    let jwt = sign_jwt(&key);
    let project = boot["project_id"].as_str().unwrap();
    let device = DeviceProc::start(
        &server.url,
        boot["client_id"].as_str().unwrap(),
        &dir.path().join("device"),
        &[],
    );
    let token = device.expect("token", Duration::from_secs(20))["token"]
        .as_str()
        .unwrap()
        .to_owned();
    for i in 0..3 {
        let body = json!({"payload":{"notification":{"category":"MARKETING","title":format!("promo {i}"),
            "body":"b","clickAction":{"actionType":0}}},"target":{"token":[token]}});
        let (s, r) = post_send(&server.url, project, &jwt, &body);
        assert_eq!((s, r["code"].as_str()), (200, Some("80000000")));
    }
    // A later notification the quota does not touch (a test message) closes the count.
    let marker = json!({"payload":{"notification":{"category":"MARKETING","title":"marker",
        "body":"b","clickAction":{"actionType":0}}},"target":{"token":[token]},
        "pushOptions":{"testMessage":true}});
    let (s, r) = post_send(&server.url, project, &jwt, &marker);
    assert_eq!((s, r["code"].as_str()), (200, Some("80000000")));
    let shown: Vec<String> = device
        .until(Duration::from_secs(60), |v| {
            v["event"] == "notification" && v["title"] == "marker"
        })
        .into_iter()
        .filter(|v| v["event"] == "notification")
        .map(|n| n["title"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(shown, ["promo 0", "promo 1"]);
}
