//! Accounts and roles through the real admin API: the whole permission matrix (every
//! role and the instance admin × every action, allowed and refused, and a non-member),
//! the console's cookie and CSRF token, session expiry on the server's clock, logout, a
//! revoked key, the push switch and the audit log.

use herald_client::admin::{AdminClient, AdminResponse};
use serde_json::{Value, json};

use crate::helpers::{TestApp, device_with_token, notification, spawn_bare_app};

/// Who calls: the instance admin (not a member of the project), a member in one of the
/// five roles, or a user who is not a member.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Who {
    Admin,
    Role(&'static str),
    Outsider,
}

const ROLES: [&str; 5] = [
    "owner",
    "operations",
    "product",
    "backend_developer",
    "app_developer",
];

/// The table, written out here (not read from the server's code): for each
/// action, whether [instance admin, owner, operations, product, backend_developer,
/// app_developer] may.
const MATRIX: [(&str, [bool; 6]); 8] = [
    ("read", [true, true, true, true, true, true]),
    ("request_right", [true, true, true, false, false, false]),
    ("confirm_right", [true, true, false, true, false, false]),
    ("decide_right", [true, false, false, false, false, false]),
    ("configure_app", [true, true, true, false, false, false]),
    (
        "manage_credentials",
        [true, true, false, false, true, false],
    ),
    ("send_test", [true, true, false, false, true, true]),
    ("manage_members", [true, true, false, false, false, false]),
];

fn expected(action: &str, who: Who) -> bool {
    let row = MATRIX.iter().find(|(a, _)| *a == action).unwrap().1;
    match who {
        Who::Admin => row[0],
        Who::Role(r) => row[1 + ROLES.iter().position(|x| *x == r).unwrap()],
        Who::Outsider => false,
    }
}

/// A project ("Shop") with one app, a member in every role, an outsider, and the
/// instance admin who created the project and then left it to its owner.
struct Team {
    app: TestApp,
    project_id: String,
    client_id: String,
    admin: AdminClient,
    people: Vec<(Who, AdminClient)>,
    /// Right names not used yet (each probe that needs a fresh right takes one).
    fresh_rights: std::sync::Mutex<Vec<String>>,
}

fn password(name: &str) -> String {
    format!("secret-{name}-123")
}

async fn sign_in(app: &TestApp, username: &str) -> String {
    let r: Value = app
        .http
        .post(format!("{}/api/v1/sessions", app.url))
        .json(&json!({"username": username, "password": password(username)}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    r["token"]
        .as_str()
        .unwrap_or_else(|| panic!("sign-in of {username}: {r}"))
        .to_owned()
}

fn ok(r: &AdminResponse, what: &str) {
    assert!(r.is_success(), "{what}: {} {}", r.status, r.body);
}

async fn create_user(admin: &AdminClient, name: &str) {
    let r = admin
        .post(
            "/api/v1/users",
            &json!({"username": name, "password": password(name)}),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 201, "{}", r.body);
}

async fn team() -> Team {
    let app = spawn_bare_app().await;
    let admin = AdminClient::new(&app.url, &app.info.admin_token).unwrap();
    let r = admin
        .post("/api/v1/projects", &json!({"name": "Shop"}))
        .await
        .unwrap();
    assert_eq!((r.status, r.body["role"].as_str()), (201, Some("owner")));
    let project_id = r.body["project_id"].as_str().unwrap().to_owned();
    let r = admin
        .post(
            "/api/v1/apps",
            &json!({"project_id": project_id, "name": "Shop", "package_name": "com.example.shop"}),
        )
        .await
        .unwrap();
    let client_id = r.body["client_id"].as_str().unwrap().to_owned();
    let mut people = Vec::new();
    for role in ROLES {
        let name = format!("{role}-user");
        create_user(&admin, &name).await;
        let r = admin
            .post(
                &format!("/api/v1/projects/{project_id}/members"),
                &json!({"username": name, "role": role}),
            )
            .await
            .unwrap();
        assert_eq!(r.status, 201, "{}", r.body);
        people.push((Who::Role(role), name));
    }
    create_user(&admin, "outsider").await;
    people.push((Who::Outsider, "outsider".to_owned()));
    // The instance admin leaves the project to its owner: its column is the instance
    // admin's own power, not an owner's.
    let r = admin
        .delete(&format!("/api/v1/projects/{project_id}/members/admin"))
        .await
        .unwrap();
    assert_eq!(r.status, 204, "{}", r.body);
    let mut clients = vec![(
        Who::Admin,
        AdminClient::new(&app.url, &app.info.admin_token).unwrap(),
    )];
    for (who, name) in people {
        let token = sign_in(&app, &name).await;
        clients.push((who, AdminClient::new(&app.url, &token).unwrap()));
    }
    let rights = admin
        .get(&format!("/api/v1/apps/{client_id}/rights"))
        .await
        .unwrap();
    let fresh = rights.body["available"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    Team {
        app,
        project_id,
        client_id,
        admin,
        people: clients,
        fresh_rights: std::sync::Mutex::new(fresh),
    }
}

impl Team {
    fn fresh_right(&self) -> String {
        self.fresh_rights
            .lock()
            .unwrap()
            .pop()
            .expect("enough right names")
    }

    fn rights(&self) -> String {
        format!("/api/v1/apps/{}/rights", self.client_id)
    }

    /// A right in the `requested` state, requested by the instance admin.
    async fn requested_right(&self) -> String {
        let name = self.fresh_right();
        let r = self
            .admin
            .post(
                &format!("{}/{name}/request", self.rights()),
                &json!({"scenario": "order updates", "sample_message": "Your order shipped"}),
            )
            .await
            .unwrap();
        ok(&r, "setup request");
        name
    }

    /// Do `action` as `client` with one real request; the answer.
    async fn probe(&self, client: &AdminClient, action: &str) -> Option<AdminResponse> {
        let p = &self.project_id;
        let c = &self.client_id;
        Some(match action {
            "read" => client.get(&self.rights()).await.unwrap(),
            "request_right" => {
                let name = self.fresh_right();
                client
                    .post(
                        &format!("{}/{name}/request", self.rights()),
                        &json!({"scenario": "chat", "sample_message": "Hi!"}),
                    )
                    .await
                    .unwrap()
            }
            "confirm_right" => {
                let name = self.requested_right().await;
                client
                    .post(&format!("{}/{name}/confirm", self.rights()), &json!({}))
                    .await
                    .unwrap()
            }
            "decide_right" => {
                let name = self.requested_right().await;
                client
                    .post(
                        &format!("{}/{name}/grant", self.rights()),
                        &json!({"reason": "fits"}),
                    )
                    .await
                    .unwrap()
            }
            "configure_app" => client
                .patch(
                    &format!("/api/v1/apps/{c}"),
                    &json!({"marketing_per_day": 3}),
                )
                .await
                .unwrap(),
            "manage_credentials" => client
                .post(&format!("/api/v1/projects/{p}/keys"), &json!({}))
                .await
                .unwrap(),
            "manage_members" => client
                .get(&format!("/api/v1/projects/{p}/audit"))
                .await
                .unwrap(),
            "send_test" => client
                .get(&format!("/api/v1/apps/{c}/test-devices"))
                .await
                .unwrap(),
            other => panic!("no probe for {other}"),
        })
    }
}

#[tokio::test]
async fn every_role_may_do_exactly_its_part() {
    let t = team().await;
    let mut checked = 0;
    for (action, _) in MATRIX {
        for (who, client) in &t.people {
            let Some(r) = t.probe(client, action).await else {
                continue;
            };
            checked += 1;
            match who {
                Who::Outsider => {
                    assert_eq!(r.status, 404, "{action} by a non-member: {}", r.body);
                    assert!(r.body["error"].as_str().unwrap().starts_with("no such "));
                }
                _ if expected(action, *who) => {
                    assert!(
                        r.is_success(),
                        "{action} by {who:?} is allowed: {} {}",
                        r.status,
                        r.body
                    )
                }
                Who::Role(role) => {
                    assert_eq!(r.status, 403, "{action} by {role} is refused: {}", r.body);
                    let why = r.body["error"].as_str().unwrap();
                    assert!(
                        why.starts_with(&format!("your role in this project is {role}; only ")),
                        "{why}"
                    );
                    let allowed: Vec<&str> = ROLES
                        .into_iter()
                        .filter(|r| expected(action, Who::Role(r)))
                        .collect();
                    for r in &allowed {
                        assert!(why.contains(r), "{why} names {r}");
                    }
                    assert!(why.contains("the instance admin"), "{why}");
                }
                Who::Admin => unreachable!("the instance admin may do everything"),
            }
        }
    }
    assert_eq!(checked, 8 * 7, "eight actions probed by seven callers");

    // The project-scoped routes of each action, for a non-member: 404 (as if the project
    // did not exist), the same for a member's route with an unknown project.
    let outsider = &t
        .people
        .iter()
        .find(|(w, _)| *w == Who::Outsider)
        .unwrap()
        .1;
    let p = &t.project_id;
    for path in [
        format!("/api/v1/projects/{p}/keys"),
        format!("/api/v1/projects/{p}/receipts"),
        format!("/api/v1/projects/{p}/members"),
        format!("/api/v1/projects/{p}/audit"),
        format!("/api/v1/apps?project_id={p}"),
        format!("/api/v1/report?project_id={p}"),
        format!("/api/v1/apps/{}/quotas", t.client_id),
        format!("/api/v1/projects/{p}/checklist"),
        format!("/api/v1/apps/{}/test-devices", t.client_id),
    ] {
        let r = outsider.get(&path).await.unwrap();
        assert_eq!(r.status, 404, "{path}: {}", r.body);
    }
    let r = outsider
        .patch(
            &format!("/api/v1/projects/{p}"),
            &json!({"push_enabled": false}),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 404);
    let r = outsider.get("/api/v1/projects").await.unwrap();
    assert_eq!(r.body, json!([]), "a non-member sees no project");
    let r = outsider.get("/api/v1/apps").await.unwrap();
    assert_eq!(r.body, json!([]));
}

#[tokio::test]
async fn me_lists_each_projects_role_and_actions() {
    let t = team().await;
    for (who, client) in &t.people {
        let r = client.get("/api/v1/me").await.unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.body["instance_admin"], json!(*who == Who::Admin));
        let projects = r.body["projects"].as_array().unwrap();
        let shop = projects
            .iter()
            .find(|p| p["project_id"] == t.project_id.as_str());
        let Some(shop) = shop else {
            assert_eq!(*who, Who::Outsider, "{who:?} sees the project");
            assert!(projects.is_empty());
            continue;
        };
        let actions: Vec<&str> = MATRIX
            .iter()
            .map(|(a, _)| *a)
            .filter(|a| expected(a, *who))
            .collect();
        assert_eq!(shop["actions"], json!(actions), "{who:?}");
        let role = match who {
            Who::Admin => "instance_admin",
            Who::Role(r) => r,
            Who::Outsider => unreachable!(),
        };
        assert_eq!(shop["role"], role);
        assert_eq!(shop["name"], "Shop");
        assert_eq!(shop["push_enabled"], true);
    }
}

#[tokio::test]
async fn only_the_instance_admin_creates_users_and_projects() {
    let t = team().await;
    for (who, client) in &t.people {
        let r = client
            .post(
                "/api/v1/users",
                &json!({"username": format!("new-{}", t.people.len()), "password": "long enough"}),
            )
            .await
            .unwrap();
        let r2 = client.get("/api/v1/users").await.unwrap();
        let r3 = client
            .post("/api/v1/projects", &json!({"name": "Mine"}))
            .await
            .unwrap();
        if *who == Who::Admin {
            assert_eq!((r.status, r2.status, r3.status), (201, 200, 201));
        } else {
            for r in [&r, &r2, &r3] {
                assert_eq!(r.status, 403, "{who:?}: {}", r.body);
                assert!(
                    r.body["error"]
                        .as_str()
                        .unwrap()
                        .starts_with("only the instance admin may")
                );
            }
        }
    }
    let r = t
        .admin
        .post(
            "/api/v1/users",
            &json!({"username": "owner-user", "password": "long enough"}),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 409, "a user name is taken once");
    let r = t
        .admin
        .post(
            "/api/v1/users",
            &json!({"username": "x y", "password": "long enough"}),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 400);
    let r = t
        .admin
        .post(
            "/api/v1/users",
            &json!({"username": "shorty", "password": "short"}),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 400);
}

#[tokio::test]
async fn members_keep_an_owner_and_roles_change_in_place() {
    let t = team().await;
    let owner = &t.people[1].1;
    let p = &t.project_id;
    let r = owner
        .post(
            &format!("/api/v1/projects/{p}/members"),
            &json!({"username": "owner-user", "role": "product"}),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 409, "the last owner stays owner: {}", r.body);
    let r = owner
        .delete(&format!("/api/v1/projects/{p}/members/owner-user"))
        .await
        .unwrap();
    assert_eq!(r.status, 409);
    let r = owner
        .post(
            &format!("/api/v1/projects/{p}/members"),
            &json!({"username": "outsider", "role": "product"}),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 201);
    let r = owner
        .post(
            &format!("/api/v1/projects/{p}/members"),
            &json!({"username": "outsider", "role": "app_developer"}),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 201);
    let r = owner
        .post(
            &format!("/api/v1/projects/{p}/members"),
            &json!({"username": "nobody", "role": "product"}),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 404);
    let r = owner
        .post(
            &format!("/api/v1/projects/{p}/members"),
            &json!({"username": "outsider", "role": "boss"}),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 422, "an unknown role: {}", r.body);
    let r = owner
        .get(&format!("/api/v1/projects/{p}/members"))
        .await
        .unwrap();
    let members: Vec<(&str, &str)> = r
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["username"].as_str().unwrap(), m["role"].as_str().unwrap()))
        .collect();
    assert_eq!(
        members,
        [
            ("app_developer-user", "app_developer"),
            ("backend_developer-user", "backend_developer"),
            ("operations-user", "operations"),
            ("outsider", "app_developer"),
            ("owner-user", "owner"),
            ("product-user", "product"),
        ]
    );
    // The former outsider now sees the project, as an app developer.
    let outsider = &t
        .people
        .iter()
        .find(|(w, _)| *w == Who::Outsider)
        .unwrap()
        .1;
    let me = outsider.get("/api/v1/me").await.unwrap();
    assert_eq!(me.body["projects"][0]["role"], "app_developer");
    let r = owner
        .delete(&format!("/api/v1/projects/{p}/members/outsider"))
        .await
        .unwrap();
    assert_eq!(r.status, 204);
    let r = outsider
        .get(&format!("/api/v1/projects/{p}/keys"))
        .await
        .unwrap();
    assert_eq!(r.status, 404, "a removed member is a stranger at once");
}

#[tokio::test]
async fn a_right_goes_from_operations_to_product_to_the_instance_admin() {
    let t = team().await;
    let [_, (_, owner), (_, ops), (_, product), ..] = &t.people[..] else {
        unreachable!()
    };
    let rights = t.rights();
    let r = ops
        .post(
            &format!("{rights}/IM/request"),
            &json!({"scenario": "chat between buyers and sellers", "sample_message": "Ann: is it still for sale?"}),
        )
        .await
        .unwrap();
    assert_eq!(r.body["state"], "requested");
    let r = product
        .post(
            &format!("{rights}/IM/confirm"),
            &json!({"reason": "IM it is"}),
        )
        .await
        .unwrap();
    assert_eq!(
        (r.body["state"].as_str(), r.body["confirmed_by"].as_str()),
        (Some("requested"), Some("product-user"))
    );
    let r = owner
        .post(&format!("{rights}/IM/grant"), &json!({}))
        .await
        .unwrap();
    assert_eq!(r.status, 403, "an owner cannot grant: {}", r.body);
    let r = t
        .admin
        .post(&format!("{rights}/IM/grant"), &json!({"reason": "fits IM"}))
        .await
        .unwrap();
    assert_eq!(r.body["state"], "granted");
    let r = product.get(&rights).await.unwrap();
    let steps: Vec<(&str, &str)> = r.body["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| (h["action"].as_str().unwrap(), h["actor"].as_str().unwrap()))
        .collect();
    assert_eq!(
        steps,
        [
            ("request", "operations-user"),
            ("confirm", "product-user"),
            ("grant", "admin"),
        ]
    );
    assert_eq!(
        r.body["history"][0]["sample_message"],
        "Ann: is it still for sale?"
    );
    assert_eq!(
        r.body["rights"][0]["scenario"],
        "chat between buyers and sellers"
    );
    assert_eq!(r.body["rights"][0]["confirmed_by"], "product-user");
    let log = owner
        .get(&format!("/api/v1/projects/{}/audit", t.project_id))
        .await
        .unwrap();
    let recent: Vec<(&str, &str)> = log.body.as_array().unwrap()[..3]
        .iter()
        .map(|e| (e["actor"].as_str().unwrap(), e["action"].as_str().unwrap()))
        .collect();
    assert_eq!(
        recent,
        [
            ("admin", "right.grant"),
            ("product-user", "right.confirm"),
            ("operations-user", "right.request"),
        ],
        "newest first"
    );
}

/// Sign in for the console; checks the cookies' attributes; `(Cookie header, CSRF token)`.
async fn cookie_sign_in(app: &TestApp, username: &str) -> (String, String) {
    let resp = app
        .http
        .post(format!("{}/api/v1/sessions", app.url))
        .json(&json!({"username": username, "password": password(username), "cookie": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let cookies: Vec<String> = resp
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    let session = cookies
        .iter()
        .find(|c| c.starts_with("herald_session="))
        .expect("session cookie")
        .clone();
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(session.contains(attr), "{session} has {attr}");
    }
    assert!(!session.contains("Secure"), "no TLS here: {session}");
    let csrf_cookie = cookies
        .iter()
        .find(|c| c.starts_with("herald_csrf="))
        .expect("CSRF cookie");
    assert!(!csrf_cookie.contains("HttpOnly"), "the page reads it");
    let value = session
        .split(';')
        .next()
        .unwrap()
        .trim_start_matches("herald_session=")
        .to_owned();
    let cookie = format!("herald_session={value}");
    let body: Value = resp.json().await.unwrap();
    assert!(body.get("token").is_none(), "no token for the page: {body}");
    let csrf = body["csrf_token"].as_str().unwrap().to_owned();
    assert!(csrf_cookie.starts_with(&format!("herald_csrf={csrf};")));
    (cookie, csrf)
}

async fn with_cookie(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    cookie: &str,
    csrf: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = app
        .http
        .request(method, format!("{}{path}", app.url))
        .header("Cookie", cookie);
    if let Some(c) = csrf {
        req = req.header("X-CSRF-Token", c);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

#[tokio::test]
async fn the_console_cookie_needs_its_csrf_token_for_changes() {
    let t = team().await;
    let app = &t.app;
    let (cookie, csrf) = cookie_sign_in(app, "operations-user").await;
    let (s, me) = with_cookie(app, reqwest::Method::GET, "/api/v1/me", &cookie, None, None).await;
    assert_eq!((s, me["username"].as_str()), (200, Some("operations-user")));
    let path = format!("/api/v1/apps/{}", t.client_id);
    let change = json!({"marketing_per_day": 4});
    let (s, b) = with_cookie(
        app,
        reqwest::Method::PATCH,
        &path,
        &cookie,
        None,
        Some(change.clone()),
    )
    .await;
    assert_eq!(s, 403, "no CSRF token: {b}");
    assert!(b["error"].as_str().unwrap().contains("X-CSRF-Token"));
    let (s, _) = with_cookie(
        app,
        reqwest::Method::PATCH,
        &path,
        &cookie,
        Some("guess"),
        Some(change.clone()),
    )
    .await;
    assert_eq!(s, 403, "a wrong CSRF token");
    let (other_cookie, other_csrf) = cookie_sign_in(app, "owner-user").await;
    let (s, _) = with_cookie(
        app,
        reqwest::Method::PATCH,
        &path,
        &cookie,
        Some(&other_csrf),
        Some(change.clone()),
    )
    .await;
    assert_eq!(s, 403, "another session's CSRF token");
    let (s, b) = with_cookie(
        app,
        reqwest::Method::PATCH,
        &path,
        &cookie,
        Some(&csrf),
        Some(change),
    )
    .await;
    assert_eq!(
        (s, b["overrides"]["marketing_per_day"].as_u64()),
        (200, Some(4))
    );
    // A bearer token is not a cookie: no CSRF token needed (a page cannot set the header
    // on a cross-site request).
    let bearer = &t.people[2].1;
    let r = bearer
        .patch(&path, &json!({"marketing_per_day": 5}))
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    // A bearer token in the cookie is refused: the cookie holds console sessions only.
    let token = sign_in(app, "owner-user").await;
    let (s, _) = with_cookie(
        app,
        reqwest::Method::GET,
        "/api/v1/me",
        &format!("herald_session={token}"),
        None,
        None,
    )
    .await;
    assert_eq!(s, 401);
    // Logout with the cookie: its CSRF token is needed too, then the cookie is dead.
    let (s, _) = with_cookie(
        app,
        reqwest::Method::DELETE,
        "/api/v1/sessions/current",
        &other_cookie,
        None,
        None,
    )
    .await;
    assert_eq!(s, 403);
    let (s, _) = with_cookie(
        app,
        reqwest::Method::DELETE,
        "/api/v1/sessions/current",
        &other_cookie,
        Some(&other_csrf),
        None,
    )
    .await;
    assert_eq!(s, 204);
    let (s, b) = with_cookie(
        app,
        reqwest::Method::GET,
        "/api/v1/me",
        &other_cookie,
        None,
        None,
    )
    .await;
    assert_eq!(s, 401, "{b}");
    assert!(b["error"].as_str().unwrap().contains("signed out"));
    let (s, _) = with_cookie(app, reqwest::Method::GET, "/api/v1/me", &cookie, None, None).await;
    assert_eq!(s, 200, "the other session lives on");
}

#[tokio::test]
async fn sessions_expire_on_the_servers_clock() {
    let t = team().await;
    let app = &t.app;
    let auth = app.state.config.auth.clone();
    let (cookie, _) = cookie_sign_in(app, "product-user").await;
    let bearer = AdminClient::new(&app.url, sign_in(app, "product-user").await).unwrap();
    let get_me = |c: String| async move {
        with_cookie(app, reqwest::Method::GET, "/api/v1/me", &c, None, None).await
    };
    // Used within the idle time, a console session lives on past it.
    for _ in 0..3 {
        app.clock.advance_secs(auth.session_idle_secs as i64 - 60);
        assert_eq!(get_me(cookie.clone()).await.0, 200);
    }
    // Idle for longer, it ends; a bearer token has no idle expiry.
    app.clock.advance_secs(auth.session_idle_secs as i64 + 1);
    let (s, b) = get_me(cookie.clone()).await;
    assert_eq!(s, 401);
    assert!(b["error"].as_str().unwrap().contains("idle"), "{b}");
    assert_eq!(bearer.get("/api/v1/me").await.unwrap().status, 200);
    // A bearer token ends at its expiry.
    app.clock.advance_secs(auth.token_ttl_secs as i64);
    let r = bearer.get("/api/v1/me").await.unwrap();
    assert_eq!(r.status, 401, "{}", r.body);
    assert!(r.body["error"].as_str().unwrap().contains("expired"));
    // The bootstrap token never expires.
    assert_eq!(t.admin.get("/api/v1/me").await.unwrap().status, 200);
    let r = t.admin.delete("/api/v1/sessions/current").await.unwrap();
    assert_eq!(r.status, 409, "the bootstrap token cannot be signed out");
}

#[tokio::test]
async fn logout_revokes_the_token_at_once_and_a_password_change_ends_other_sessions() {
    let t = team().await;
    let app = &t.app;
    let first = AdminClient::new(&app.url, sign_in(app, "operations-user").await).unwrap();
    let second = AdminClient::new(&app.url, sign_in(app, "operations-user").await).unwrap();
    let r = first.delete("/api/v1/sessions/current").await.unwrap();
    assert_eq!(r.status, 204);
    let r = first.get("/api/v1/me").await.unwrap();
    assert_eq!(r.status, 401);
    assert_eq!(second.get("/api/v1/me").await.unwrap().status, 200);

    let third = AdminClient::new(&app.url, sign_in(app, "operations-user").await).unwrap();
    let r = second
        .post(
            "/api/v1/users/me/password",
            &json!({"current_password": "wrong", "new_password": "a new password"}),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 403);
    let r = second
        .post(
            "/api/v1/users/me/password",
            &json!({"current_password": password("operations-user"), "new_password": "a new password"}),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 204, "{}", r.body);
    assert_eq!(
        second.get("/api/v1/me").await.unwrap().status,
        200,
        "this one stays"
    );
    assert_eq!(
        third.get("/api/v1/me").await.unwrap().status,
        401,
        "the others end"
    );
    let old = app
        .http
        .post(format!("{}/api/v1/sessions", app.url))
        .json(&json!({"username": "operations-user", "password": password("operations-user")}))
        .send()
        .await
        .unwrap();
    assert_eq!(old.status(), 401);
    let new = app
        .http
        .post(format!("{}/api/v1/sessions", app.url))
        .json(&json!({"username": "operations-user", "password": "a new password"}))
        .send()
        .await
        .unwrap();
    assert_eq!(new.status(), 201);
}

#[tokio::test]
async fn a_revoked_key_is_refused_on_the_next_request() {
    let t = team().await;
    let app = &t.app;
    let backend = &t.people[4].1;
    let appdev = &t.people[5].1;
    let p = &t.project_id;
    let r = backend
        .post(&format!("/api/v1/projects/{p}/keys"), &json!({}))
        .await
        .unwrap();
    assert_eq!(r.status, 201);
    let key: herald_proto::keyfile::KeyFile = serde_json::from_value(r.body).unwrap();
    let jwt = app.jwt_for(&key);
    let send = |jwt: String| async move {
        app.send_raw(
            p,
            Some(format!("Bearer {jwt}")),
            Some("0"),
            serde_json::to_vec(&notification(&["nobody"], "hi")).unwrap(),
        )
        .await
    };
    let (_, b) = send(jwt.clone()).await;
    assert_eq!(
        b["code"], "80300007",
        "authenticated (the token is unknown): {b}"
    );
    let revoke = format!("/api/v1/projects/{p}/keys/{}", key.key_id);
    let r = appdev.delete(&revoke).await.unwrap();
    assert_eq!(r.status, 403, "an app developer cannot revoke keys");
    let r = backend.delete(&revoke).await.unwrap();
    assert_eq!(r.status, 204);
    let (s, b) = send(jwt).await;
    assert_eq!((s, b["code"].as_str()), (401, Some("80200001")), "{b}");
    let keys = appdev
        .get(&format!("/api/v1/projects/{p}/keys"))
        .await
        .unwrap();
    assert_eq!(keys.body[0]["revoked"], true);
}

#[tokio::test]
async fn push_service_off_answers_80300002_for_send_and_revoke() {
    let app = spawn_bare_app().await;
    let admin = AdminClient::new(&app.url, &app.info.admin_token).unwrap();
    let (_device, token) = device_with_token(&app).await;
    let p = &app.info.project_id;
    let (s, b) = app.send(notification(&[&token], "before")).await;
    assert_eq!((s, b["code"].as_str()), (200, Some("80000000")));
    let r = admin
        .patch(
            &format!("/api/v1/projects/{p}"),
            &json!({"push_enabled": false}),
        )
        .await
        .unwrap();
    assert_eq!(
        (r.status, r.body["push_enabled"].as_bool()),
        (200, Some(false))
    );
    let (s, b) = app.send(notification(&[&token], "while off")).await;
    assert_eq!(
        (s, b["code"].as_str(), b["msg"].as_str()),
        (
            400,
            Some("80300002"),
            Some("No permission to send message to these tmIDs.")
        )
    );
    let revoke = app
        .http
        .post(format!(
            "{}/v1/{}/messages:revoke",
            app.url, app.info.client_id
        ))
        .header("Authorization", format!("Bearer {}", app.jwt()))
        .header("push-type", "0")
        .json(&json!({"notifyId": 1, "token": [token]}))
        .send()
        .await
        .unwrap();
    assert_eq!(revoke.status(), 400);
    let b: Value = revoke.json().await.unwrap();
    assert_eq!(b["code"], "80300002");
    let r = admin.get("/api/v1/projects").await.unwrap();
    assert_eq!(r.body[0]["push_enabled"], false);
    let r = admin
        .patch(
            &format!("/api/v1/projects/{p}"),
            &json!({"push_enabled": true}),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    let (s, b) = app.send(notification(&[&token], "after")).await;
    assert_eq!((s, b["code"].as_str()), (200, Some("80000000")));
    let r = admin
        .patch(
            &format!("/api/v1/projects/{p}"),
            &json!({"push_enabled": "no"}),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 422);
}

#[tokio::test]
async fn the_audit_log_tells_who_did_what_when_and_from_where() {
    let t = team().await;
    let owner = &t.people[1].1;
    let ops = &t.people[2].1;
    let p = &t.project_id;
    let before = herald_core::Clock::now_ms(&t.app.clock);
    let r = ops
        .patch(
            &format!("/api/v1/projects/{p}"),
            &json!({"push_enabled": false}),
        )
        .await
        .unwrap();
    ok(&r, "switch off");
    let r = owner
        .post(
            &format!("/api/v1/projects/{p}/members"),
            &json!({"username": "outsider", "role": "product"}),
        )
        .await
        .unwrap();
    ok(&r, "add member");
    let r = owner
        .get(&format!("/api/v1/projects/{p}/audit?limit=2"))
        .await
        .unwrap();
    let log = r.body.as_array().unwrap();
    assert_eq!(log.len(), 2);
    assert_eq!(
        (
            log[0]["actor"].as_str(),
            log[0]["action"].as_str(),
            log[0]["detail"].as_str(),
            log[0]["address"].as_str()
        ),
        (
            Some("owner-user"),
            Some("member.add"),
            Some("outsider is product"),
            Some("127.0.0.1")
        )
    );
    assert_eq!(
        (
            log[1]["actor"].as_str(),
            log[1]["action"].as_str(),
            log[1]["detail"].as_str()
        ),
        (
            Some("operations-user"),
            Some("project.push_enabled"),
            Some("push service off")
        )
    );
    assert!(log[1]["at"].as_i64().unwrap() >= before);
    // Everything before: the project's creation, its app, members, the admin leaving.
    let r = t
        .admin
        .get(&format!("/api/v1/projects/{p}/audit"))
        .await
        .unwrap();
    let actions: Vec<&str> = r
        .body
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions[..3],
        ["project.create", "app.create", "member.add"],
        "{actions:?}"
    );
    assert!(actions.contains(&"member.remove"));
    // The instance's log: users created and sign-ins too, for the instance admin only.
    let r = t.admin.get("/api/v1/audit?limit=1000").await.unwrap();
    let all = r.body.as_array().unwrap();
    assert!(
        all.iter().any(|e| e["action"] == "user.create"
            && e["detail"] == "created user outsider"
            && e["project_id"].is_null()
            && e["actor"] == "admin"),
        "{}",
        r.body
    );
    assert!(
        all.iter()
            .any(|e| e["action"] == "session.create" && e["actor"] == "owner-user")
    );
    assert!(all.iter().any(|e| e["project_id"] == p.as_str()));
    let r = owner.get("/api/v1/audit").await.unwrap();
    assert_eq!(r.status, 403);
}
