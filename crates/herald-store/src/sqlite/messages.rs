//! Messages and deliveries: a message is one row, each of its tokens one compact row
//! keyed by `(message, token)` numbers whose state only moves forward. Every transition
//! is counted for the report and, with a receipt code, queued as a receipt in the same
//! transaction.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use herald_core::{Category, DeliveryState, Outcome, ReceiptCode};
use rusqlite::{OptionalExtension, params};

use super::receipts::NewReceipt;
use super::report::CountedAs;
use super::{OFFLINE_CACHE_CAP, SqliteStore, Tx, state_count};
use crate::charges::{self, Settled};
use crate::codes::{category_code, category_from, kind_code, kind_from, lifecycle};
use crate::{
    DeliveryId, DeviceReport, Enqueue, EnqueueResult, EventRecord, MessageKind, MessageStore,
    NewMessage, Result, Revoke, RevokeResult, StoredDelivery,
};

/// A new delivery row.
struct DeliveryRow {
    id: DeliveryId,
    device: i64,
    state: DeliveryState,
    code: Option<ReceiptCode>,
    category: Option<Category>,
    background_mode: Option<u8>,
    at: i64,
}

/// What the writer needs to know about a message to count and report its transitions.
#[derive(Debug)]
pub(crate) struct MessageInfo {
    pub push_type: u8,
    pub kind: MessageKind,
    pub project_id: Arc<str>,
    pub receipt_id: Option<Arc<str>>,
    pub receipt_hold_ms: Option<i64>,
}

fn state_from(code: i64) -> rusqlite::Result<DeliveryState> {
    DeliveryState::from_code(code).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            0,
            rusqlite::types::Type::Integer,
            format!("unknown delivery state {code}").into(),
        )
    })
}

impl Tx<'_> {
    /// The message's facts, from the writer's cache or the database.
    fn message_info(&mut self, msg: i64) -> rusqlite::Result<Option<Arc<MessageInfo>>> {
        if let Some(info) = self.cache.messages.get(&msg) {
            return Ok(Some(info.clone()));
        }
        let info = self
            .conn
            .prepare_cached(
                "SELECT push_type, kind, project_id, receipt_id, receipt_hold_ms FROM message WHERE id = ?1",
            )?
            .query_row([msg], |r| {
                Ok(MessageInfo {
                    push_type: r.get(0)?,
                    kind: kind_from(r.get(1)?),
                    project_id: Arc::from(r.get::<_, String>(2)?),
                    receipt_id: r.get::<_, Option<String>>(3)?.map(Arc::from),
                    receipt_hold_ms: r.get(4)?,
                })
            })
            .optional()?
            .map(Arc::new);
        if let Some(info) = &info {
            self.cache.messages.insert(msg, info.clone());
        }
        Ok(info)
    }

    /// The app a token belongs to.
    fn token_app(&mut self, tok: i64) -> rusqlite::Result<Arc<str>> {
        if let Some(app) = self.cache.token_apps.get(&tok) {
            return Ok(app.clone());
        }
        let app: Arc<str> = self
            .conn
            .prepare_cached("SELECT client_id FROM token WHERE id = ?1")?
            .query_row([tok], |r| r.get::<_, String>(0))
            .optional()?
            .map(Arc::from)
            .unwrap_or_else(|| Arc::from(""));
        self.cache.token_apps.insert(tok, app.clone());
        Ok(app)
    }

    /// Count a delivery's transition and queue its receipt, if it has a code. Revoke
    /// commands have no lifecycle: nothing is counted or reported for them.
    fn record(
        &mut self,
        info: &MessageInfo,
        id: DeliveryId,
        client_id: &Arc<str>,
        category: Option<Category>,
        outcome: Outcome,
        at: i64,
    ) -> rusqlite::Result<()> {
        if info.kind == MessageKind::Revoke {
            return Ok(());
        }
        let who = CountedAs {
            project_id: info.project_id.clone(),
            client_id: client_id.clone(),
            push_type: info.push_type,
            category,
        };
        self.count(&who, outcome, at);
        let client = Some(client_id).map(|c| &**c).filter(|c| !c.is_empty());
        let receipt = |code: ReceiptCode, due: i64| NewReceipt {
            receipt_id: info.receipt_id.as_deref(),
            project_id: &info.project_id,
            client_id: client,
            msg: id.message,
            tok: Some(id.token),
            token: None,
            code: code.0,
            at,
            due,
        };
        match (outcome, info.receipt_hold_ms) {
            // One final receipt: the ack's 0 waits for the device's report.
            (Outcome::Delivered, Some(hold)) => {
                self.queue_receipt(receipt(ReceiptCode::DELIVERED, at + hold))?
            }
            (Outcome::Shown, Some(_)) => self.release_receipt(id, None, at)?,
            (Outcome::Suppressed(code), Some(_)) => self.release_receipt(id, Some(code), at)?,
            (outcome, _) => {
                if let Some(code) = outcome.receipt_code() {
                    self.queue_receipt(receipt(code, at))?;
                }
            }
        }
        Ok(())
    }

    /// End a queued delivery with a server-side outcome (replaced, expired, revoked).
    /// Returns whether it was still queued.
    fn end_queued(&mut self, id: DeliveryId, outcome: Outcome, at: i64) -> rusqlite::Result<bool> {
        let category: Option<Option<i64>> = self
            .conn
            .prepare_cached(
                "UPDATE delivery SET state = ?3, updated_at = ?4 WHERE msg = ?1 AND tok = ?2 AND state = 0
                 RETURNING category",
            )?
            .query_row(
                params![id.message, id.token, DeliveryState::of(outcome).code(), at],
                |r| r.get(0),
            )
            .optional()?;
        let Some(category) = category else {
            return Ok(false);
        };
        if let Some(info) = self.message_info(id.message)? {
            let client = self.token_app(id.token)?;
            self.record(&info, id, &client, category_from(category), outcome, at)?;
        }
        Ok(true)
    }

    fn insert_message(&mut self, m: &NewMessage, open: bool) -> rusqlite::Result<i64> {
        self.conn
            .prepare_cached(
                "INSERT INTO message (request_id, project_id, push_type, kind, payload, bi_tag, receipt_id, test,
                                      created_at, expires_at, collapse_key, notify_id, form_id, open, receipt_hold_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
            )?
            .execute(params![
                m.request_id,
                m.project_id,
                m.push_type,
                kind_code(m.kind),
                m.payload,
                m.bi_tag,
                m.receipt_id,
                m.test,
                m.created_at,
                m.expires_at,
                m.collapse_key,
                m.notify_id,
                m.form_id,
                open,
                m.receipt_hold_ms
            ])?;
        let id = self.conn.last_insert_rowid();
        self.cache.messages.insert(
            id,
            Arc::new(MessageInfo {
                push_type: m.push_type,
                kind: m.kind,
                project_id: Arc::from(m.project_id.as_str()),
                receipt_id: m.receipt_id.as_deref().map(Arc::from),
                receipt_hold_ms: m.receipt_hold_ms,
            }),
        );
        Ok(id)
    }

    fn insert_delivery(&mut self, row: DeliveryRow) -> rusqlite::Result<()> {
        let DeliveryRow {
            id,
            device,
            state,
            code,
            category,
            background_mode,
            at,
        } = row;
        self.conn
            .prepare_cached(
                "INSERT INTO delivery (msg, tok, device, state, code, category, bg, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?
            .execute(params![
                id.message,
                id.token,
                device,
                state.code(),
                code.map(|c| c.0),
                category_code(category),
                background_mode,
                at
            ])?;
        Ok(())
    }

    /// Queued deliveries of the token that an earlier message with the same collapse key
    /// left: they are replaced by the new one.
    fn collapse(
        &mut self,
        device: i64,
        tok: i64,
        key: u8,
        newer: i64,
        at: i64,
    ) -> rusqlite::Result<Vec<DeliveryId>> {
        let older: Vec<i64> = self
            .conn
            .prepare_cached(
                "SELECT d.msg FROM delivery d JOIN message m ON m.id = d.msg
                 WHERE d.device = ?1 AND d.tok = ?2 AND d.state = 0 AND d.msg < ?3
                   AND m.kind = 0 AND m.collapse_key = ?4",
            )?
            .query_map(params![device, tok, newer, key], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        self.end_all(older, tok, Outcome::Replaced, at)
    }

    /// The token's queued messages beyond the offline cache cap, oldest first, replaced.
    fn cap(&mut self, device: i64, tok: i64, at: i64) -> rusqlite::Result<Vec<DeliveryId>> {
        let mut over: Vec<i64> = self
            .conn
            .prepare_cached(
                "SELECT d.msg FROM delivery d JOIN message m ON m.id = d.msg
                 WHERE d.device = ?1 AND d.tok = ?2 AND d.state = 0 AND m.kind = 0
                 ORDER BY d.msg DESC LIMIT -1 OFFSET ?3",
            )?
            .query_map(params![device, tok, OFFLINE_CACHE_CAP], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        // Newest first past the cap; replaced (and their receipts queued) oldest first.
        over.reverse();
        self.end_all(over, tok, Outcome::Replaced, at)
    }

    fn end_all(
        &mut self,
        msgs: Vec<i64>,
        tok: i64,
        outcome: Outcome,
        at: i64,
    ) -> rusqlite::Result<Vec<DeliveryId>> {
        let mut ended = Vec::new();
        for message in msgs {
            let id = DeliveryId {
                message,
                token: tok,
            };
            if self.end_queued(id, outcome, at)? {
                ended.push(id);
            }
        }
        Ok(ended)
    }
}

/// Take the request's counters (one conditional increment each: only while the count
/// stays within the limit), settle them per delivery and give back what is not kept.
/// The writer is the only one, so nothing can come between the increments and the give-back.
fn take_charges(t: &mut Tx<'_>, batch: &Enqueue) -> Result<Settled> {
    let keys = charges::key_charges(batch);
    let mut used_after = HashMap::with_capacity(keys.len());
    for k in keys.iter().filter(|k| k.can_fit()) {
        let used: Option<i64> = t
            .conn
            .prepare_cached(
                "INSERT INTO quota_usage (key, day, used) VALUES (?1, ?2, ?3)
                 ON CONFLICT (key) DO UPDATE SET used = used + excluded.used
                 WHERE used + excluded.used <= ?4
                 RETURNING used",
            )?
            .query_row(params![k.name, k.key.day, k.n, k.limit], |r| r.get(0))
            .optional()?;
        if let Some(used) = used {
            used_after.insert(k.name.clone(), u32::try_from(used).unwrap_or(u32::MAX));
        }
    }
    let settled = charges::settle(batch, &keys, &used_after);
    for (name, n) in &settled.give_back {
        t.conn
            .prepare_cached("UPDATE quota_usage SET used = used - ?2 WHERE key = ?1")?
            .execute(params![name, n])?;
    }
    Ok(settled)
}

fn enqueue_in(t: &mut Tx<'_>, batch: Enqueue) -> Result<EnqueueResult> {
    let m = &batch.message;
    let at = m.created_at;
    let settled = take_charges(t, &batch)?;
    let queued = settled.refused.iter().filter(|r| r.is_none()).count();
    let msg = t.insert_message(m, queued > 0)?;
    let info = t
        .message_info(msg)?
        .ok_or_else(|| crate::StoreError::Engine("a message vanished".into()))?;
    let mut result = EnqueueResult {
        message: msg,
        replaced: Vec::new(),
        refused: Vec::new(),
        counters: settled.counters,
    };
    for (d, refused) in batch.deliveries.iter().zip(&settled.refused) {
        let id = DeliveryId {
            message: msg,
            token: d.token,
        };
        if let Some(code) = *refused {
            // A counter another request filled meanwhile: dropped as the policy would
            // have dropped it.
            t.insert_delivery(DeliveryRow {
                id,
                device: d.device,
                state: DeliveryState::Dropped,
                code: Some(code),
                category: None,
                background_mode: None,
                at,
            })?;
            let client: Arc<str> = Arc::from(d.client_id.as_str());
            t.record(&info, id, &client, None, Outcome::Dropped(code), at)?;
            result.refused.push((d.token, code));
            continue;
        }
        if let Some(key) = m.collapse_key {
            result
                .replaced
                .extend(t.collapse(d.device, d.token, key, msg, at)?);
        }
        t.insert_delivery(DeliveryRow {
            id,
            device: d.device,
            state: DeliveryState::Queued,
            code: None,
            category: d.category,
            background_mode: d.background_mode,
            at,
        })?;
        let client: Arc<str> = Arc::from(d.client_id.as_str());
        t.cache.token_apps.insert(d.token, client.clone());
        t.record(&info, id, &client, d.category, Outcome::Queued, at)?;
        if d.offline {
            result.replaced.extend(t.cap(d.device, d.token, at)?);
        }
    }
    for drop in &batch.drops {
        let outcome = Outcome::Dropped(drop.code);
        let client: Arc<str> = Arc::from(drop.client_id.as_deref().unwrap_or(""));
        match drop.known {
            Some((tok, device)) => {
                let id = DeliveryId {
                    message: msg,
                    token: tok,
                };
                t.insert_delivery(DeliveryRow {
                    id,
                    device,
                    state: DeliveryState::Dropped,
                    code: Some(drop.code),
                    category: None,
                    background_mode: None,
                    at,
                })?;
                t.record(&info, id, &client, None, outcome, at)?;
            }
            None => {
                t.conn
                    .prepare_cached(
                        "INSERT OR IGNORE INTO unknown_drop (msg, token, code) VALUES (?1, ?2, ?3)",
                    )?
                    .execute(params![msg, drop.token, drop.code.0])?;
                let who = CountedAs {
                    project_id: info.project_id.clone(),
                    client_id: client.clone(),
                    push_type: info.push_type,
                    category: None,
                };
                t.count(&who, outcome, at);
                t.queue_receipt(NewReceipt {
                    receipt_id: info.receipt_id.as_deref(),
                    project_id: &info.project_id,
                    client_id: drop.client_id.as_deref(),
                    msg,
                    tok: None,
                    token: Some(&drop.token),
                    code: drop.code.0,
                    at,
                    due: at,
                })?;
            }
        }
    }
    for (key, state) in &batch.live_views {
        t.conn
            .prepare_cached(
                "INSERT INTO live_views (client_id, device_id, activity_id, event, status, version, rest_created, ended, created_at, updated_at, blocked_until)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
                 ON CONFLICT (client_id, device_id, activity_id) DO UPDATE SET
                   event = excluded.event, status = excluded.status, version = excluded.version,
                   rest_created = excluded.rest_created, ended = excluded.ended, created_at = excluded.created_at,
                   updated_at = excluded.updated_at, blocked_until = excluded.blocked_until",
            )?
            .execute(params![
                key.client_id,
                key.device_id,
                key.activity_id,
                state.event,
                state.status,
                state.version,
                state.rest_created,
                state.ended,
                state.created_at,
                state.updated_at,
                state.blocked_until
            ])?;
    }
    Ok(result)
}

/// Apply one device report; returns whether it moved the delivery.
fn report_in(t: &mut Tx<'_>, r: &DeviceReport) -> Result<bool> {
    let row: Option<(i64, i64, Option<i64>)> = t
        .conn
        .prepare_cached("SELECT device, state, category FROM delivery WHERE msg = ?1 AND tok = ?2")?
        .query_row(params![r.id.message, r.id.token], |x| {
            Ok((x.get(0)?, x.get(1)?, x.get(2)?))
        })
        .optional()?;
    let Some((device, state, category)) = row else {
        return Ok(false);
    };
    if device != r.device {
        return Ok(false);
    }
    let Some(info) = t.message_info(r.id.message)? else {
        return Ok(false);
    };
    let state = state_from(state)?;
    // A revoke command is acknowledged like a message but has no lifecycle beyond that.
    let path = match info.kind {
        MessageKind::Revoke if r.outcome == Outcome::Delivered && state.is_queued() => {
            vec![Outcome::Delivered]
        }
        MessageKind::Revoke => Vec::new(),
        MessageKind::Message => state.advance(r.outcome),
    };
    let Some(last) = path.last().copied() else {
        return Ok(false);
    };
    let delivered_now = path.contains(&Outcome::Delivered);
    let shown_now = path
        .iter()
        .any(|o| matches!(o, Outcome::Shown | Outcome::Suppressed(_)));
    t.conn
        .prepare_cached(
            "UPDATE delivery SET state = ?3, code = ?4, updated_at = ?5,
                 delivered_at = CASE WHEN ?6 THEN ?5 ELSE delivered_at END,
                 shown_at = CASE WHEN ?7 THEN ?5 ELSE shown_at END
             WHERE msg = ?1 AND tok = ?2",
        )?
        .execute(params![
            r.id.message,
            r.id.token,
            DeliveryState::of(last).code(),
            last.receipt_code()
                .filter(|_| matches!(last, Outcome::Suppressed(_)))
                .map(|c| c.0),
            r.at,
            delivered_now,
            shown_now
        ])?;
    let client = t.token_app(r.id.token)?;
    for outcome in path {
        t.record(&info, r.id, &client, category_from(category), outcome, r.at)?;
    }
    Ok(true)
}

fn revoke_in(t: &mut Tx<'_>, rv: Revoke) -> Result<RevokeResult> {
    let command = rv.command();
    let payload = command.payload.clone();
    // The command message is stored with the first token that needs it.
    let mut cmd_msg: Option<i64> = None;
    // Notifications with this notifyId, newest first; a device shows only the newest of
    // a notifyId anyway, so older ones beyond this many no longer matter.
    let candidates: Vec<i64> = t
        .conn
        .prepare_cached(
            "SELECT id FROM message WHERE project_id = ?1 AND notify_id = ?2 AND push_type = ?3 AND kind = 0
             ORDER BY id DESC LIMIT 1000",
        )?
        .query_map(params![rv.project_id, rv.notify_id, rv.push_type], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let mut result = RevokeResult::default();
    for rec in &rv.tokens {
        let mut touched = false;
        for &message in &candidates {
            let id = DeliveryId {
                message,
                token: rec.token_num,
            };
            let state: Option<i64> = t
                .conn
                .prepare_cached("SELECT state FROM delivery WHERE msg = ?1 AND tok = ?2")?
                .query_row(params![message, rec.token_num], |r| r.get(0))
                .optional()?;
            let Some(state) = state.map(state_from).transpose()? else {
                continue;
            };
            match state {
                DeliveryState::Queued if t.end_queued(id, Outcome::Revoked, rv.now)? => {
                    result.revoked.push(id);
                    touched = true;
                }
                DeliveryState::Delivered | DeliveryState::Shown => {
                    let category: Option<i64> = t
                        .conn
                        .prepare_cached(
                            "UPDATE delivery SET state = ?3, updated_at = ?4 WHERE msg = ?1 AND tok = ?2
                             RETURNING category",
                        )?
                        .query_row(
                            params![message, rec.token_num, DeliveryState::Revoked.code(), rv.now],
                            |r| r.get(0),
                        )?;
                    if let Some(info) = t.message_info(message)? {
                        let client = t.token_app(rec.token_num)?;
                        t.record(
                            &info,
                            id,
                            &client,
                            category_from(category),
                            Outcome::Revoked,
                            rv.now,
                        )?;
                    }
                    result.withdrawn.push(id);
                    touched = true;
                }
                _ => {}
            }
        }
        if !touched {
            continue;
        }
        // A queued message may already be on the wire to a connected device, so the
        // device is told in every case; it removes the notification if it shows it.
        let message = match cmd_msg {
            Some(m) => m,
            None => *cmd_msg.insert(t.insert_message(&command, true)?),
        };
        let id = DeliveryId {
            message,
            token: rec.token_num,
        };
        t.insert_delivery(DeliveryRow {
            id,
            device: rec.device,
            state: DeliveryState::Queued,
            code: None,
            category: None,
            background_mode: None,
            at: rv.now,
        })?;
        result.commands.push(StoredDelivery {
            id,
            request_id: rv.request_id.clone(),
            token: rec.token.clone(),
            device: rec.device,
            client_id: rec.client_id.clone(),
            push_type: rv.push_type,
            kind: MessageKind::Revoke,
            payload: payload.clone(),
            bi_tag: None,
            test: false,
            created_at: rv.now,
            expires_at: command.expires_at,
            category: None,
            notify_id: Some(rv.notify_id),
            background_mode: None,
        });
    }
    Ok(result)
}

/// End the queued deliveries of messages whose TTL passed, a message at a time.
fn expire_in(t: &mut Tx<'_>, now_ms: i64, limit: usize) -> Result<u64> {
    let due: Vec<i64> = t
        .conn
        .prepare_cached(
            "SELECT id FROM message WHERE open = 1 AND expires_at <= ?1 ORDER BY expires_at LIMIT 64",
        )?
        .query_map([now_ms], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let mut expired = 0u64;
    for msg in due {
        let ended: Vec<(i64, Option<i64>)> = t
            .conn
            .prepare_cached(
                "UPDATE delivery SET state = ?2, updated_at = ?3 WHERE msg = ?1 AND state = 0
                 RETURNING tok, category",
            )?
            .query_map(params![msg, DeliveryState::Expired.code(), now_ms], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })?
            .collect::<rusqlite::Result<_>>()?;
        t.conn
            .prepare_cached("UPDATE message SET open = 0 WHERE id = ?1")?
            .execute([msg])?;
        let Some(info) = t.message_info(msg)? else {
            continue;
        };
        if info.kind == MessageKind::Message {
            expired += ended.len() as u64;
        }
        for (tok, category) in ended {
            let client = t.token_app(tok)?;
            let id = DeliveryId {
                message: msg,
                token: tok,
            };
            t.record(
                &info,
                id,
                &client,
                category_from(category),
                Outcome::Expired,
                now_ms,
            )?;
        }
        if expired as usize >= limit {
            break;
        }
    }
    Ok(expired)
}

const PENDING_SQL: &str = "SELECT d.msg, d.tok, d.category, d.bg, m.request_id, t.token, t.client_id, m.push_type, m.kind,
        m.payload, m.bi_tag, m.test, m.created_at, m.expires_at, m.notify_id, d.device
 FROM delivery d JOIN message m ON m.id = d.msg JOIN token t ON t.id = d.tok
 WHERE d.device = ?1 AND d.state = 0 AND m.expires_at > ?2
 ORDER BY d.msg";

fn stored_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<StoredDelivery> {
    Ok(StoredDelivery {
        id: DeliveryId {
            message: r.get(0)?,
            token: r.get(1)?,
        },
        category: category_from(r.get(2)?),
        background_mode: r.get(3)?,
        request_id: r.get(4)?,
        token: r.get(5)?,
        client_id: r.get(6)?,
        push_type: r.get(7)?,
        kind: kind_from(r.get(8)?),
        payload: r.get(9)?,
        bi_tag: r.get(10)?,
        test: r.get(11)?,
        created_at: r.get(12)?,
        expires_at: r.get(13)?,
        notify_id: r.get(14)?,
        device: r.get(15)?,
    })
}

const HISTORY_SQL: &str =
    "SELECT d.msg, d.tok, m.created_at, d.state, d.code, d.delivered_at, d.shown_at, d.updated_at
 FROM delivery d JOIN message m ON m.id = d.msg";

fn history_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Vec<EventRecord>> {
    Ok(lifecycle(
        DeliveryId {
            message: r.get(0)?,
            token: r.get(1)?,
        },
        r.get(2)?,
        state_from(r.get(3)?)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
        r.get(7)?,
    ))
}

#[async_trait]
impl MessageStore for SqliteStore {
    async fn enqueue(&self, batch: Enqueue) -> Result<EnqueueResult> {
        self.write(move |t| enqueue_in(t, batch)).await
    }

    async fn pending(&self, device: i64, now_ms: i64) -> Result<Vec<StoredDelivery>> {
        self.read(move |c| {
            let rows = c
                .prepare_cached(PENDING_SQL)?
                .query_map(params![device, now_ms], stored_from_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
        .await
    }

    async fn record_device_reports(&self, reports: Vec<DeviceReport>) -> Result<u64> {
        if reports.is_empty() {
            return Ok(0);
        }
        self.write(move |t| {
            let mut moved = 0;
            for r in &reports {
                if report_in(t, r)? {
                    moved += 1;
                }
            }
            Ok(moved)
        })
        .await
    }

    async fn expire_due(&self, now_ms: i64, limit: usize) -> Result<u64> {
        self.write(move |t| expire_in(t, now_ms, limit)).await
    }

    async fn revoke(&self, revoke: Revoke) -> Result<RevokeResult> {
        self.write(move |t| revoke_in(t, revoke)).await
    }

    async fn events_for(&self, message_id: &str) -> Result<Vec<EventRecord>> {
        let Ok(id) = message_id.parse::<DeliveryId>() else {
            return Ok(Vec::new());
        };
        self.read(move |c| {
            Ok(
                c.prepare_cached(&format!("{HISTORY_SQL} WHERE d.msg = ?1 AND d.tok = ?2"))?
                    .query_row(params![id.message, id.token], history_from_row)
                    .optional()?
                    .unwrap_or_default(),
            )
        })
        .await
    }

    async fn events_of_request(
        &self,
        request_id: &str,
        token: Option<&str>,
    ) -> Result<Vec<EventRecord>> {
        let (request_id, token) = (request_id.to_owned(), token.map(str::to_owned));
        self.read(move |c| {
            let mut out = Vec::new();
            let rows = c
                .prepare_cached(&format!(
                    "{HISTORY_SQL} JOIN token t ON t.id = d.tok
                     WHERE m.request_id = ?1 AND (?2 IS NULL OR t.token = ?2) ORDER BY d.msg, d.tok"
                ))?
                .query_map(params![request_id, token], history_from_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            out.extend(rows.into_iter().flatten());
            let drops = c
                .prepare_cached(
                    "SELECT u.code, m.created_at FROM unknown_drop u JOIN message m ON m.id = u.msg
                     WHERE m.request_id = ?1 AND (?2 IS NULL OR u.token = ?2)",
                )?
                .query_map(params![request_id, token], |r| {
                    Ok(EventRecord {
                        message_id: String::new(),
                        outcome: Outcome::Dropped(ReceiptCode(r.get(0)?)),
                        at: r.get(1)?,
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            out.extend(drops);
            Ok(out)
        })
        .await
    }

    async fn delivery_counts(&self) -> Result<Vec<(String, u64)>> {
        let rows = self
            .read_all(
                "SELECT state, COUNT(*) FROM delivery GROUP BY state ORDER BY state".to_owned(),
                vec![],
                state_count,
            )
            .await?;
        Ok(rows
            .into_iter()
            .filter_map(|(s, n)| DeliveryState::from_code(s).map(|s| (s.name().to_owned(), n)))
            .collect())
    }
}
