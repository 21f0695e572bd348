//! How a backend hands notifications to each server under test: Push Kit requests of K
//! tokens to Herald, the same request shape to the ceiling's `/fanout`, and K QoS 1
//! publishes (one per device topic) to Mosquitto.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use herald_client::sender::{JwtSigner, PushClient, load_key_file};
use herald_proto::Code;
use serde_json::{Value, json};
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::ceiling;
use crate::servers::Herald;
use crate::wire::SENT_AT_KEY;

/// Publishes a publisher may have on its way to the broker; its request queue holds as
/// many, so a publish waits (backpressure) rather than piling up.
const MQTT_PUBLISHER_WINDOW: u16 = 1000;

/// Requests sent by this process: the ceiling's and MQTT's message ids are
/// `{request}-{index}`, unique for the whole run (devices count a repeated id as a
/// duplicate). Herald makes its own ids.
static REQUESTS: AtomicU64 = AtomicU64::new(0);

/// One sending side, with `workers` independent clients (keep-alive connections).
#[derive(Debug)]
pub enum Sender {
    Herald(Vec<PushClient>),
    Ceiling { http: reqwest::Client, url: String },
    Mqtt(Vec<MqttPublisher>),
}

/// One publisher connection. A request counts as accepted once the broker has answered
/// PUBACK for each of its publishes (QoS 1), as Herald answers once a send is committed.
#[derive(Debug)]
pub struct MqttPublisher {
    client: rumqttc::AsyncClient,
    /// Publishes handed to the client so far.
    published: AtomicU64,
    /// PUBACKs received so far (the poller counts them).
    acked: watch::Receiver<u64>,
    poller: JoinHandle<()>,
}

impl Drop for MqttPublisher {
    fn drop(&mut self) {
        self.poller.abort();
    }
}

/// What one request got: the answer's code (Push Kit's, or "ok"), and how many
/// notifications it accepted.
#[derive(Debug)]
pub struct Answer {
    pub code: String,
    pub accepted: u64,
}

impl Sender {
    /// `workers` Push Kit clients, each with its own connection pool, signing with the
    /// node's bootstrap service-account key (the JWT is signed before the clock starts).
    pub fn herald(node: &Herald, workers: usize) -> anyhow::Result<Sender> {
        let key = load_key_file(&node.service_account_file)?;
        let mut clients = Vec::with_capacity(workers);
        for _ in 0..workers.max(1) {
            let client = PushClient::new(&node.url, JwtSigner::new(&key)?)?;
            client.signer().token()?;
            clients.push(client);
        }
        Ok(Sender::Herald(clients))
    }

    pub fn ceiling(url: &str) -> anyhow::Result<Sender> {
        Ok(Sender::Ceiling {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()?,
            url: format!("{url}/fanout"),
        })
    }

    /// `workers` MQTT publishers, each its own connection with a clean session.
    pub async fn mqtt(port: u16, workers: usize) -> anyhow::Result<Sender> {
        let mut publishers = Vec::with_capacity(workers);
        for i in 0..workers.max(1) {
            let mut options =
                rumqttc::MqttOptions::new(format!("herald-bench-publisher-{i}"), "127.0.0.1", port);
            options
                .set_clean_session(true)
                .set_keep_alive(Duration::from_secs(60))
                .set_inflight(MQTT_PUBLISHER_WINDOW)
                .set_request_channel_capacity(usize::from(MQTT_PUBLISHER_WINDOW));
            let (client, mut events) =
                rumqttc::AsyncClient::new(options, usize::from(MQTT_PUBLISHER_WINDOW));
            // Wait for the CONNACK so the first publishes do not race the connection.
            loop {
                match events
                    .poll()
                    .await
                    .context("connecting a publisher to mosquitto")?
                {
                    rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(_)) => break,
                    _ => continue,
                }
            }
            let (acks, acked) = watch::channel(0u64);
            let poller = tokio::spawn(async move {
                loop {
                    match events.poll().await {
                        Ok(rumqttc::Event::Incoming(rumqttc::Packet::PubAck(_))) => {
                            acks.send_modify(|n| *n += 1);
                        }
                        Ok(_) => {}
                        Err(e) => {
                            tracing::warn!(error = %e, "A publisher lost its connection; reconnecting.");
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                    }
                }
            });
            publishers.push(MqttPublisher {
                client,
                published: AtomicU64::new(0),
                acked,
                poller,
            });
        }
        Ok(Sender::Mqtt(publishers))
    }

    /// Sends one request to `tokens`, stamped `sent_us` (`seq` names it in Herald's body).
    pub async fn send(
        &self,
        worker: usize,
        seq: u64,
        tokens: &[String],
        sent_us: u64,
    ) -> Result<Answer, String> {
        match self {
            Sender::Herald(clients) => {
                let client = &clients[worker % clients.len()];
                let body = notification(tokens, seq, sent_us);
                let (_, response) = client.send(0, &body).await.map_err(|e| e.to_string())?;
                let accepted = if response.code == Code::Success.as_str() {
                    tokens.len() as u64
                } else {
                    0
                };
                Ok(Answer {
                    code: response.code,
                    accepted,
                })
            }
            Sender::Ceiling { http, url } => {
                let unique = REQUESTS.fetch_add(1, Ordering::Relaxed);
                let body = json!({"seq": unique, "ids": tokens, SENT_AT_KEY: sent_us});
                let response = http
                    .post(url)
                    .json(&body)
                    .send()
                    .await
                    .map_err(|e| e.to_string())?;
                let status = response.status();
                let answer: Value = response.json().await.map_err(|e| e.to_string())?;
                Ok(Answer {
                    code: if status.is_success() {
                        "ok".to_owned()
                    } else {
                        format!("HTTP {status}")
                    },
                    accepted: answer["accepted"].as_u64().unwrap_or(0),
                })
            }
            Sender::Mqtt(publishers) => {
                let publisher = &publishers[worker % publishers.len()];
                let unique = REQUESTS.fetch_add(1, Ordering::Relaxed);
                let mut accepted = 0;
                for (i, topic) in tokens.iter().enumerate() {
                    let payload = ceiling::frame(&format!("{unique}-{i}"), sent_us);
                    publisher
                        .client
                        .publish(topic, rumqttc::QoS::AtLeastOnce, false, payload)
                        .await
                        .map_err(|e| e.to_string())?;
                    accepted += 1;
                }
                let mine = publisher.published.fetch_add(accepted, Ordering::Relaxed) + accepted;
                let mut acked = publisher.acked.clone();
                tokio::time::timeout(Duration::from_secs(60), acked.wait_for(|n| *n >= mine))
                    .await
                    .map_err(|_| "no PUBACK within 60 s".to_owned())?
                    .map_err(|_| "the publisher stopped".to_owned())?;
                Ok(Answer {
                    code: "published".to_owned(),
                    accepted,
                })
            }
        }
    }
}

/// A chat notification to `tokens`, stamped with when it was (to be) issued.
fn notification(tokens: &[String], seq: u64, sent_us: u64) -> Value {
    json!({
        "payload": {"notification": {
            "category": "IM",
            "title": "Herald bench",
            "body": format!("request {seq}"),
            "clickAction": {"actionType": 0, "data": {SENT_AT_KEY: sent_us}},
        }},
        "target": {"token": tokens},
    })
}

/// Answers and failures of a set of requests, by code and by error message.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Tally {
    pub codes: BTreeMap<String, u64>,
    pub errors: BTreeMap<String, u64>,
}

impl Tally {
    pub fn add(&mut self, result: &Result<Answer, String>) {
        match result {
            Ok(a) => *self.codes.entry(a.code.clone()).or_default() += 1,
            Err(e) => *self.errors.entry(e.clone()).or_default() += 1,
        }
    }

    pub fn merge(&mut self, other: Tally) {
        for (k, v) in other.codes {
            *self.codes.entry(k).or_default() += v;
        }
        for (k, v) in other.errors {
            *self.errors.entry(k).or_default() += v;
        }
    }
}

/// Keeps `Arc<Sender>` cheap to pass to tasks.
pub type Shared = Arc<Sender>;
