//! The compatibility suite (docs/compatibility.md): a real `herald serve` over HTTPS with
//! a certificate from `herald cert create`, a backend that trusts only that CA, one
//! request per push-type with every field the reference lists, revoke and image
//! verification, each answer compared byte for byte with the reference's example bodies
//! (`requestId` aside, which must be digits); then `herald send`/`revoke`/`admin`/`device`
//! with `--ca-file`; Python's `requests` with `REQUESTS_CA_BUNDLE`, Node's `fetch` with
//! `NODE_EXTRA_CA_CERTS` and a Java `HttpsURLConnection` client with a `keytool` trust
//! store, when they are installed.

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};

use crate::process::{DeviceProc, Server, admin, cli, herald, https_client, read_json, sign_jwt};

/// The reference's example answers (§3, §1.3, §1.4), with `{requestId}` where the
/// example has its own id.
const SUCCESS: &str = r#"{"code":"80000000","msg":"Success","requestId":"{requestId}"}"#;
const NO_PUSH_TYPE: &str = r#"{"code":"80100003","msg":"Illegal payload, The header does not contain valid push-type","requestId":"{requestId}"}"#;

/// A backend speaking to the server as any Push Kit client does: raw bytes in and out.
struct Backend {
    url: String,
    jwt: String,
    http: reqwest::Client,
    rt: tokio::runtime::Runtime,
}

/// An answer as it came over the wire.
struct Answer {
    status: u16,
    content_type: String,
    text: String,
}

impl Answer {
    /// The body must be `expected` byte for byte once `{requestId}` is this answer's id.
    fn assert_body(&self, expected: &str) {
        let body: Value = serde_json::from_str(&self.text).unwrap_or_else(|_| {
            panic!("not JSON: {}", self.text);
        });
        let id = body["requestId"].as_str().unwrap_or_default();
        assert!(
            !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()),
            "requestId is digits: {}",
            self.text
        );
        assert_eq!(self.text, expected.replace("{requestId}", id));
        assert!(
            self.content_type.starts_with("application/json"),
            "{}",
            self.content_type
        );
    }
}

impl Backend {
    fn post(&self, path: &str, push_type: Option<&str>, body: &Value) -> Answer {
        self.rt.block_on(async {
            let mut req = self
                .http
                .post(format!("{}{path}", self.url))
                .header("Authorization", format!("Bearer {}", self.jwt))
                // As Huawei's Java demo sends it.
                .header("Content-Type", "application/json; charset=UTF-8")
                .body(serde_json::to_vec(body).unwrap());
            if let Some(p) = push_type {
                req = req.header("push-type", p);
            }
            let resp = req.send().await.unwrap();
            let status = resp.status().as_u16();
            let content_type = resp
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            Answer {
                status,
                content_type,
                text: resp.text().await.unwrap(),
            }
        })
    }
}

fn grant(boot: &Path, ca: &Path, client_id: &str, right: &str) {
    let (ok, body) = admin(
        boot,
        &[
            "--ca-file",
            ca.to_str().unwrap(),
            "rights",
            "grant",
            "--client-id",
            client_id,
            "--category",
            right,
        ],
    );
    assert!(ok, "{body}");
}

/// `herald cert create --out DIR` for the loopback names; returns DIR.
fn certificates(dir: &Path) -> std::path::PathBuf {
    let out = dir.join("certs");
    let run = herald()
        .args(["cert", "create", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let printed = String::from_utf8_lossy(&run.stdout);
    for how in [
        "update-ca-certificates",
        "keytool -importcert",
        "SSL_CERT_FILE",
        "REQUESTS_CA_BUNDLE",
        "NODE_EXTRA_CA_CERTS",
    ] {
        assert!(
            printed.contains(how),
            "the instructions name {how}: {printed}"
        );
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(out.join("server-key.pem"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "the key is private");
    }
    out
}

/// Every request body of the suite: one per push-type with every field the reference
/// lists for it (§2.2–§2.9), to `token`.
fn every_push_type(token: &str) -> Vec<(&'static str, &'static str, Value)> {
    let target = json!({ "token": [token] });
    vec![
        (
            "notification, every Notification and pushOptions field",
            "0",
            json!({
                "payload": {"notification": {
                    "category": "IM",
                    "title": "普通通知标题",
                    "body": "普通通知内容",
                    "image": "https://img.example.test/icon.png",
                    "style": 1,
                    "bigTitle": "big title",
                    "bigBody": "big body",
                    "notifyId": 12345,
                    "appMessageId": "order-42",
                    "profileId": "111***222",
                    "clickAction": {"actionType": 1, "action": "com.test.action",
                        "uri": "https://www.example.test:8080/push/test", "data": {"testKey": "testValue"}},
                    "badge": {"addNum": 1, "setNum": 3},
                    "sound": "ring.mp3",
                    "soundDuration": 10,
                    "foregroundShow": false
                }},
                "target": target,
                "pushOptions": {"testMessage": true, "ttl": 86400, "biTag": "compat",
                    "receiptId": "RCP-none", "collapseKey": 3}
            }),
        ),
        (
            "notification, inbox style",
            "0",
            json!({
                "payload": {"notification": {"category": "IM", "title": "t", "body": "b",
                    "style": 3, "inboxContent": ["one", "two", "three"],
                    "clickAction": {"actionType": 0}}},
                "target": target
            }),
        ),
        (
            "badge refresh",
            "0",
            json!({"payload": {"notification": {"badge": {"setNum": 99}}}, "target": target}),
        ),
        (
            "widget",
            "1",
            json!({
                "payload": {"formId": 0, "version": 922337203, "moduleName": "entry",
                    "formName": "widget", "abilityName": "EntryFormAbility",
                    "formData": {"class": "123"},
                    "images": [{"keyName": "hello", "url": "https://img.example.test/w.png", "require": 1}]},
                "pushOptions": {"biTag": "this is bi", "ttl": 666},
                "target": target
            }),
        ),
        (
            "text-to-speech",
            "2",
            json!({
                "payload": {"extraData": "Extension extra data", "notification": {
                    "category": "PLAY_VOICE", "title": "收款到账", "body": "支付宝到账100元",
                    "notifyId": 7, "clickAction": {"actionType": 0}}},
                "target": target
            }),
        ),
        (
            "background",
            "6",
            json!({
                "payload": {"extraData": "携带的数据", "proxyData": "ENABLE"},
                "pushOptions": {"backgroundMode": 1},
                "target": target
            }),
        ),
        (
            "Live View",
            "7",
            json!({
                "payload": {
                    "activityId": 1, "operation": 0, "event": "FLIGHT", "status": "DEPART",
                    "title": "Flight CA123", "content": "{{status}} at 10:05",
                    "mute": false, "version": 1,
                    "activityData": {
                        "notificationData": {"type": 3, "contentTitle": "CA123",
                            "contentText": [{"text": "Boarding"}], "keywords": {"flightNo": "CA123"},
                            "clickAction": {"actionType": 0}, "keepTime": 3600},
                        "capsuleData": {"type": 1, "status": 1, "icon": "plane.png",
                            "bgColor": "#FF0A59F7", "remind": "DEFAULT", "title": "CA123",
                            "content": "Boarding"},
                        "externalData": {"gate": "A1"}
                    }
                },
                "target": target
            }),
        ),
        (
            "VoIP call",
            "10",
            json!({
                "pushOptions": {"ttl": 30},
                "payload": {"extraData": "{\"scene\": \"voice\"}"},
                "target": target
            }),
        ),
    ]
}

#[test]
fn every_answer_is_the_reference_example_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let certs = certificates(dir.path());
    let ca = certs.join("ca.pem");
    let server = Server::start_tls(
        &dir.path().join("data"),
        &certs.join("server.pem"),
        &certs.join("server-key.pem"),
        &ca,
    );
    let boot_path = dir.path().join("data/bootstrap.json");
    let boot = server.bootstrap();
    assert_eq!(
        boot["push_api_url"],
        json!(server.url),
        "the bootstrap names https://"
    );
    let client_id = boot["client_id"].as_str().unwrap().to_owned();
    let project = boot["project_id"].as_str().unwrap().to_owned();
    for right in [
        "IM",
        "PLAY_VOICE",
        "VOIP_CALL",
        "LIVE_VIEW_FLIGHT",
        "IM_BACKGROUND",
    ] {
        grant(&boot_path, &ca, &client_id, right);
    }
    let key_path = boot["service_account_file"].as_str().unwrap().to_owned();
    let key = read_json(Path::new(&key_path));
    // wss:// with the CA.
    let device = DeviceProc::start(
        &server.url,
        &client_id,
        &dir.path().join("device"),
        &["--ca-file", ca.to_str().unwrap()],
    );
    let token = device.expect("token", Duration::from_secs(20))["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let backend = Backend {
        url: server.url.clone(),
        jwt: sign_jwt(&key),
        http: https_client(&ca),
        rt: tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap(),
    };
    let send = format!("/v3/{project}/messages:send");

    // A client that does not trust the CA gets no answer at all.
    let untrusting = backend.rt.block_on(
        reqwest::Client::new()
            .get(format!("{}/healthz", server.url))
            .send(),
    );
    assert!(
        untrusting.is_err(),
        "the server speaks TLS with the generated certificate"
    );

    for (what, push_type, body) in every_push_type(&token) {
        let answer = backend.post(&send, Some(push_type), &body);
        assert_eq!(answer.status, 200, "{what}: {}", answer.text);
        answer.assert_body(SUCCESS);
    }

    // §3's partial and all-failed examples: `msg` is a JSON document in a string, with
    // the keys in the example's order.
    let partial = backend.post(
        &send,
        Some("0"),
        &json!({"payload": {"notification": {"category": "IM", "title": "t", "body": "b",
            "clickAction": {"actionType": 0}}}, "target": {"token": [token, "MAAALgE4G98"]}}),
    );
    assert_eq!(partial.status, 200);
    partial.assert_body(r#"{"code":"80100000","msg":"{\"illegalTokens\":{\"tokenFormatError\":[\"MAAALgE4G98\"]},\"success\":1,\"failure\":1}","requestId":"{requestId}"}"#);
    let all_failed = backend.post(
        &send,
        Some("0"),
        &json!({"payload": {"notification": {"category": "IM", "title": "t", "body": "b",
            "clickAction": {"actionType": 0}}}, "target": {"token": ["MAAA-jg", "MAAA-re"]}}),
    );
    all_failed.assert_body(r#"{"code":"80300007","msg":"{\"failure\":2,\"illegalTokens\":{\"tokenFormatError\":[\"MAAA-jg\",\"MAAA-re\"]}}","requestId":"{requestId}"}"#);
    let no_type = backend.post(&send, None, &every_push_type(&token)[0].2);
    assert_eq!(no_type.status, 400);
    no_type.assert_body(NO_PUSH_TYPE);

    // §1.3: revoke by notifyId and tokens (the notification above used notifyId 12345),
    // and the reference's failure example.
    let revoke = format!("/v1/{client_id}/messages:revoke");
    let body = json!({"notifyId": 12345, "token": [token]});
    backend.post(&revoke, Some("0"), &body).assert_body(SUCCESS);
    backend
        .post(
            &revoke,
            Some("2"),
            &json!({"notifyId": 7, "token": [token]}),
        )
        .assert_body(SUCCESS);
    backend.post(&revoke, None, &body).assert_body(NO_PUSH_TYPE);

    // §1.4: image verification by app (v1) and by project (v2), in the example's keys.
    for path in [
        format!("/v1/{client_id}/images:verify"),
        format!("/v2/{project}/images:verify"),
    ] {
        let answer = backend.post(
            &path,
            Some("0"),
            &json!({"imageUrl": "https://img.example.test/icon.png"}),
        );
        assert_eq!(answer.status, 200, "{}", answer.text);
        let parsed: Value = serde_json::from_str(&answer.text).unwrap();
        let download_url = parsed["downloadUrl"].as_str().unwrap();
        let expire_time = parsed["expireTime"].as_str().unwrap();
        assert!(download_url.starts_with("https://img.example.test/icon.png?verifyKey="));
        assert!(expire_time.parse::<u64>().is_ok());
        answer.assert_body(&format!(
            r#"{{"code":"83010000","msg":"Verify success","requestId":"{{requestId}}","downloadUrl":"{download_url}","expireTime":"{expire_time}"}}"#
        ));
    }

    // The command-line tools, trusting the CA with --ca-file.
    let cache = dir.path().join("cache");
    let ca_arg = ca.to_str().unwrap();
    let (ok, answer) = cli(
        &[
            "send",
            "--key-file",
            &key_path,
            "--server",
            &server.url,
            "--ca-file",
            ca_arg,
            "--token",
            &token,
            "--title",
            "over https",
            "--body",
            "b",
            "--category",
            "IM",
            "--notify-id",
            "4242",
        ],
        &cache,
    );
    assert!(ok && answer["code"] == "80000000", "{answer}");
    let (ok, answer) = cli(
        &[
            "revoke",
            "--key-file",
            &key_path,
            "--server",
            &server.url,
            "--ca-file",
            ca_arg,
            "--client-id",
            &client_id,
            "--notify-id",
            "4242",
            "--token",
            &token,
        ],
        &cache,
    );
    assert!(ok && answer["code"] == "80000000", "{answer}");

    python_requests(&server.url, &ca, &project, &client_id, &backend.jwt, &token);
    node_fetch(&server.url, &ca, &project, &backend.jwt, &token);
    java_https_url_connection(
        &server.url,
        &ca,
        Path::new(&key_path),
        &client_id,
        &token,
        dir.path(),
    );
    drop(device);
}

/// Python's `requests`, trusting the CA through `REQUESTS_CA_BUNDLE` and nothing else,
/// sends a notification and revokes it, and the standard library's `urllib` with
/// `SSL_CERT_FILE` sends one (skipped when `requests` is not installed).
fn python_requests(url: &str, ca: &Path, project: &str, client_id: &str, jwt: &str, token: &str) {
    let has_requests = std::process::Command::new("python3")
        .args(["-c", "import requests"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_requests {
        eprintln!("python3 with requests is not installed; skipping the Python client");
        return;
    }
    let script = r#"
import json, sys, requests
url, project, client, jwt, token = sys.argv[1:6]
h = {"Authorization": "Bearer " + jwt, "Content-Type": "application/json; charset=UTF-8", "push-type": "0"}
note = {"payload": {"notification": {"category": "IM", "title": "from python", "body": "b",
        "notifyId": 5151, "clickAction": {"actionType": 0}}}, "target": {"token": [token]}}
a = requests.post(url + "/v3/" + project + "/messages:send", json=note, headers=h)
b = requests.post(url + "/v1/" + client + "/messages:revoke", json={"notifyId": 5151, "token": [token]}, headers=h)
print(json.dumps([a.status_code, a.json()["code"], b.status_code, b.json()["code"]]))
"#;
    let out = std::process::Command::new("python3")
        .args(["-c", script, url, project, client_id, jwt, token])
        .env("REQUESTS_CA_BUNDLE", ca)
        .env_remove("SSL_CERT_FILE")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answers: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(answers, json!([200, "80000000", 200, "80000000"]));

    // The standard library's urllib with SSL_CERT_FILE.
    let script = r#"
import json, sys, urllib.request
url, project, jwt, token = sys.argv[1:5]
note = {"payload": {"notification": {"category": "IM", "title": "from urllib", "body": "b",
        "clickAction": {"actionType": 0}}}, "target": {"token": [token]}}
req = urllib.request.Request(url + "/v3/" + project + "/messages:send", data=json.dumps(note).encode(),
    headers={"Authorization": "Bearer " + jwt, "Content-Type": "application/json", "push-type": "0"})
with urllib.request.urlopen(req) as r:
    print(json.dumps([r.status, json.load(r)["code"]]))
"#;
    let out = std::process::Command::new("python3")
        .args(["-c", script, url, project, jwt, token])
        .env("SSL_CERT_FILE", ca)
        .env_remove("REQUESTS_CA_BUNDLE")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answer: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(answer, json!([200, "80000000"]));
}

/// Node's `fetch`, trusting the CA through `NODE_EXTRA_CA_CERTS`, sends a notification
/// (skipped when Node is not installed).
fn node_fetch(url: &str, ca: &Path, project: &str, jwt: &str, token: &str) {
    let has_node = std::process::Command::new("node")
        .args(["-e", "if (typeof fetch !== 'function') process.exit(1)"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_node {
        eprintln!("Node.js 18+ is not installed; skipping the Node client");
        return;
    }
    let script = r#"
const [url, project, jwt, token] = process.argv.slice(1);
const body = {payload: {notification: {category: "IM", title: "from node", body: "b",
  clickAction: {actionType: 0}}}, target: {token: [token]}};
fetch(`${url}/v3/${project}/messages:send`, {method: "POST", body: JSON.stringify(body),
  headers: {"Authorization": `Bearer ${jwt}`, "Content-Type": "application/json", "push-type": "0"}})
  .then(async r => console.log(JSON.stringify([r.status, (await r.json()).code])))
  .catch(e => { console.error(e); process.exit(1); });
"#;
    let out = std::process::Command::new("node")
        .args(["-e", script, url, project, jwt, token])
        .env("NODE_EXTRA_CA_CERTS", ca)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answer: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(answer, json!([200, "80000000"]));
}

/// A Java backend built as Huawei's demo is (`HttpsURLConnection`, a PS256 JWT signed by
/// the JDK), trusting the CA through a trust store made with the `keytool -importcert`
/// line `herald cert create` prints (skipped when no JDK is installed).
fn java_https_url_connection(
    url: &str,
    ca: &Path,
    key_file: &Path,
    client_id: &str,
    token: &str,
    dir: &Path,
) {
    let has_jdk = [("java", "-version"), ("keytool", "-help")]
        .iter()
        .all(|(tool, arg)| {
            std::process::Command::new(tool)
                .arg(arg)
                .output()
                .is_ok_and(|o| o.status.success())
        });
    if !has_jdk {
        eprintln!("no JDK (java, keytool) installed; skipping the Java client");
        return;
    }
    let store = dir.join("herald-truststore.p12");
    let imported = std::process::Command::new("keytool")
        .args([
            "-importcert",
            "-noprompt",
            "-alias",
            "herald-dev-ca",
            "-file",
        ])
        .arg(ca)
        .arg("-keystore")
        .arg(&store)
        .args(["-storepass", "changeit"])
        .output()
        .unwrap();
    assert!(
        imported.status.success(),
        "{}",
        String::from_utf8_lossy(&imported.stderr)
    );
    let source = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/it/java/PushKitClient.java"
    );
    let out = std::process::Command::new("java")
        .arg(format!("-Djavax.net.ssl.trustStore={}", store.display()))
        .arg("-Djavax.net.ssl.trustStorePassword=changeit")
        .arg(source)
        .arg(url)
        .arg(key_file)
        .args([client_id, token])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "200 80000000\n200 80000000\n",
        "send and revoke from Java"
    );
}

#[test]
fn cert_create_keeps_an_existing_set_unless_forced() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("certs");
    let run = |extra: &[&str]| {
        herald()
            .args(["cert", "create", "--out"])
            .arg(&out)
            .args(extra)
            .output()
            .unwrap()
    };
    let first = run(&[]);
    assert!(first.status.success());
    assert!(
        String::from_utf8_lossy(&first.stdout).contains("for: localhost, 127.0.0.1, ::1."),
        "the default names"
    );
    let ca = std::fs::read(out.join("ca.pem")).unwrap();
    let again = run(&["--host", "push.example.test", "10.0.0.7"]);
    assert!(!again.status.success(), "an existing set is kept");
    assert!(String::from_utf8_lossy(&again.stderr).contains("--force"));
    assert_eq!(std::fs::read(out.join("ca.pem")).unwrap(), ca);
    let forced = run(&["--force", "--host", "push.example.test", "10.0.0.7"]);
    assert!(forced.status.success());
    assert!(String::from_utf8_lossy(&forced.stdout).contains("for: push.example.test, 10.0.0.7."));
    assert_ne!(std::fs::read(out.join("ca.pem")).unwrap(), ca, "a new CA");
    let bad = run(&["--force", "--host", "not a name"]);
    assert!(!bad.status.success());
}
