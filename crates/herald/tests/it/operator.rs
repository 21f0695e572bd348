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

/// Sign in through the API; the bearer token.
fn sign_in(url: &str, username: &str, password: &str) -> String {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let r: Value = reqwest::Client::new()
            .post(format!("{url}/api/v1/sessions"))
            .json(&json!({"username": username, "password": password}))
            .send()
            .await
            .expect("request")
            .json()
            .await
            .expect("JSON");
        r["token"]
            .as_str()
            .unwrap_or_else(|| panic!("sign-in: {r}"))
            .to_owned()
    })
}

#[test]
fn users_members_and_rights_steps_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"));
    let boot_path = dir.path().join("data/bootstrap.json");
    let boot = server.bootstrap();
    let client_id = boot["client_id"].as_str().unwrap().to_owned();

    // The instance admin creates two users (one with a generated password) and makes
    // them members.
    let (ok, r) = admin(
        &boot_path,
        &[
            "user",
            "create",
            "--username",
            "olga",
            "--password",
            "olga-password",
        ],
    );
    assert!(ok, "{r}");
    assert!(
        r.get("password").is_none(),
        "a given password is not echoed"
    );
    let (ok, r) = admin(&boot_path, &["user", "create", "--username", "pete"]);
    assert!(ok, "{r}");
    let pete_password = r["password"]
        .as_str()
        .expect("generated password")
        .to_owned();
    let (ok, r) = admin(&boot_path, &["user", "list"]);
    assert!(ok, "{r}");
    let names: Vec<&str> = r
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["username"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["admin", "olga", "pete"]);
    for (user, role) in [("olga", "operations"), ("pete", "product")] {
        let (ok, r) = admin(
            &boot_path,
            &["member", "add", "--username", user, "--role", role],
        );
        assert!(ok, "{r}");
    }
    let (ok, r) = admin(&boot_path, &["member", "list"]);
    assert!(ok, "{r}");
    assert_eq!(
        r.as_array()
            .unwrap()
            .iter()
            .map(|m| (m["username"].as_str().unwrap(), m["role"].as_str().unwrap()))
            .collect::<Vec<_>>(),
        [
            ("admin", "owner"),
            ("olga", "operations"),
            ("pete", "product")
        ]
    );

    // Operations requests with a scenario and a sample message; product confirms; a
    // member who may not is refused with the roles that may.
    let (ok, r) = admin(
        &boot_path,
        &["login", "--username", "olga", "--password", "olga-password"],
    );
    assert!(ok, "{r}");
    let olga = r["token"].as_str().unwrap().to_owned();
    let pete = sign_in(&server.url, "pete", &pete_password);
    let right = |token: &str, step: &str, extra: &[&str]| {
        let mut args = vec![
            "--token",
            token,
            "rights",
            step,
            "--client-id",
            &client_id,
            "--category",
            "IM",
        ];
        args.extend_from_slice(extra);
        admin(&boot_path, &args)
    };
    let (ok, r) = right(
        &pete,
        "request",
        &["--scenario", "chat", "--sample-message", "Ann: hi"],
    );
    assert!(!ok, "product may not request");
    assert!(
        r["error"]
            .as_str()
            .unwrap()
            .contains("only owner, operations or the instance admin may request"),
        "{r}"
    );
    let (ok, r) = right(
        &olga,
        "request",
        &[
            "--scenario",
            "one-to-one chat",
            "--sample-message",
            "Ann: see you at 7?",
        ],
    );
    assert!(ok, "{r}");
    assert_eq!(r["sample_message"], "Ann: see you at 7?");
    let (ok, r) = right(&pete, "confirm", &[]);
    assert!(ok, "{r}");
    assert_eq!(r["confirmed_by"], "pete");
    let (ok, r) = right(&olga, "grant", &[]);
    assert!(!ok, "only the instance admin grants: {r}");
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

    // Olga changes her password; her session stays, the old password is refused.
    let (ok, r) = admin(
        &boot_path,
        &[
            "--token",
            &olga,
            "password",
            "change",
            "--current-password",
            "olga-password",
            "--new-password",
            "olga-new-password",
        ],
    );
    assert!(ok, "{r}");
    let (ok, r) = admin(&boot_path, &["--token", &olga, "me"]);
    assert!(ok, "{r}");
    assert_eq!(r["projects"][0]["role"], "operations");
    sign_in(&server.url, "olga", "olga-new-password");

    // The owner removes pete; the audit log tells who did what.
    let (ok, r) = admin(&boot_path, &["member", "remove", "--username", "pete"]);
    assert!(ok, "{r}");
    let (ok, r) = admin(&boot_path, &["--token", &pete, "me"]);
    assert!(ok, "{r}");
    assert_eq!(r["projects"], json!([]));
    let (ok, r) = admin(&boot_path, &["audit", "--limit", "5"]);
    assert!(ok, "{r}");
    let steps: Vec<(&str, &str)> = r
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["actor"].as_str().unwrap(), e["action"].as_str().unwrap()))
        .collect();
    assert_eq!(
        steps,
        [
            ("admin", "member.remove"),
            ("admin", "right.grant"),
            ("pete", "right.confirm"),
            ("olga", "right.request"),
            ("admin", "member.add"),
        ]
    );
    let (ok, r) = admin(
        &boot_path,
        &["project", "update", "--push-enabled", "false"],
    );
    assert!(ok, "{r}");
    assert_eq!(r["push_enabled"], false);

    // Olga signs out: her token stops working.
    let (ok, r) = admin(&boot_path, &["--token", &olga, "logout"]);
    assert!(ok, "{r}");
    let (ok, r) = admin(&boot_path, &["--token", &olga, "me"]);
    assert!(!ok, "{r}");
}
