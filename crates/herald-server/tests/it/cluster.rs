//! Several nodes in one process on one PostgreSQL schema (and one NATS bus): what must
//! hold across nodes. Each test prints SKIPPED and passes without
//! `HERALD_TEST_POSTGRES_URL` (and `HERALD_TEST_NATS_URL` where it needs the bus).

use serde_json::{Value, json};

use crate::helpers::*;

/// The PostgreSQL URL, or `None` after printing that `test` was skipped.
fn postgres(test: &str) -> Option<String> {
    match std::env::var("HERALD_TEST_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            eprintln!("SKIPPED {test}: HERALD_TEST_POSTGRES_URL is not set");
            None
        }
    }
}

/// A schema of this test's own, dropped when it goes out of scope.
struct Schema {
    url: String,
    name: String,
}

impl Schema {
    fn new(url: &str, test: &str) -> Schema {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        Schema {
            url: url.to_owned(),
            name: format!("herald_it_{test}_{}_{nanos}", std::process::id()),
        }
    }

    /// The `store` setting of every node.
    fn store(&self) -> String {
        let sep = if self.url.contains('?') { '&' } else { '?' };
        format!("{}{sep}schema={}", self.url, self.name)
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        crate::readiness::drop_schema(&self.url, &self.name);
    }
}

fn marketing(token: &str, title: &str) -> Value {
    json!({
        "payload": {"notification": {"category": "MARKETING", "title": title, "body": "b",
            "clickAction": {"actionType": 0}}},
        "target": {"token": [token]}
    })
}

/// `(queued, dropped with 256)` among a request's events.
async fn fate(app: &TestApp, request_id: &str) -> (usize, usize) {
    let events = events_of_request(app, request_id).await;
    let queued = events.iter().filter(|(o, _)| o == "queued").count();
    let dropped = events
        .iter()
        .filter(|e| *e == &("dropped".to_owned(), Some(256)))
        .count();
    (queued, dropped)
}

#[tokio::test]
async fn two_nodes_together_give_a_device_two_marketing_messages_a_day() {
    let test = "two_nodes_together_give_a_device_two_marketing_messages_a_day";
    let Some(pg) = postgres(test) else { return };
    let schema = Schema::new(&pg, "quota");
    let a = spawn_app_with(|c| c.store = schema.store()).await;
    let b = spawn_peer(&a).await;
    let (_device, token) = device_with_token(&a).await;

    // B reads the device's MARKETING counter (0) and takes one; A then reads 1 and takes
    // the second. B's copy of the counter still says 1: only the store can refuse the
    // third, whichever node it goes through.
    let mut requests = Vec::new();
    for (node, title) in [(&b, "first"), (&a, "second"), (&b, "third"), (&a, "fourth")] {
        let (status, body) = node.send(marketing(&token, title)).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (200, Some("80000000")),
            "{body}"
        );
        requests.push(body["requestId"].as_str().unwrap().to_owned());
    }
    let mut fates = Vec::new();
    for r in &requests {
        fates.push(fate(&a, r).await);
    }
    assert_eq!(fates, [(1, 0), (1, 0), (0, 1), (0, 1)]);
}

#[tokio::test]
async fn an_apps_send_rate_is_the_clusters_not_each_nodes() {
    let test = "an_apps_send_rate_is_the_clusters_not_each_nodes";
    let Some(pg) = postgres(test) else { return };
    let schema = Schema::new(&pg, "rate");
    let a = spawn_app_with(|c| c.store = schema.store()).await;
    let b = spawn_peer(&a).await;
    let admin = herald_client::admin::AdminClient::new(&a.url, &a.info.admin_token).unwrap();
    let r = admin
        .patch(
            &format!("/api/v1/apps/{}", a.info.client_id),
            &json!({"send_rate_per_sec": 3, "marketing_per_day": 100}),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    let (_device, token) = device_with_token(&a).await;

    // Three requests in one second through two nodes are the app's rate; the fourth,
    // through either node, is flow-controlled (each node alone would have let it pass).
    let mut codes = Vec::new();
    for (i, node) in [&a, &b, &a, &b, &a].into_iter().enumerate() {
        let (status, body) = node.send(marketing(&token, &format!("m{i}"))).await;
        codes.push((status, body["code"].as_str().unwrap().to_owned()));
    }
    let ok = (200, "80000000".to_owned());
    let over = (503, "81000001".to_owned());
    assert_eq!(
        codes,
        [ok.clone(), ok.clone(), ok.clone(), over.clone(), over]
    );

    // The next second has a budget of its own.
    a.clock.advance_secs(1);
    let (status, body) = b.send(marketing(&token, "next second")).await;
    assert_eq!((status, body["code"].as_str()), (200, Some("80000000")));
}
