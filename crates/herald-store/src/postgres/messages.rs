//! Messages and deliveries: a message is one row, each of its tokens one compact row
//! keyed by `(message, token)` numbers whose state only moves forward. A call reads what
//! it needs with one statement, decides every transition in memory with
//! [`DeliveryState::advance`], and writes each kind of row with one statement over
//! arrays; counters and receipts go in the same transaction ([`Changes`]).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use async_trait::async_trait;
use deadpool_postgres::GenericClient;
use herald_core::{Category, DeliveryState, Outcome, ReceiptCode};
use tokio_postgres::Row;

use super::report::{Changes, MessageInfo};
use super::{PgResult, PgStore, execute, in_tx, query, query_opt, state_counts};
use crate::charges::{self, Settled};
use crate::codes::{category_code, category_from, kind_code, kind_from, lifecycle};
use crate::sqlite::OFFLINE_CACHE_CAP;
use crate::{
    DeliveryId, DeviceReport, Enqueue, EnqueueResult, EventRecord, MessageKind, MessageStore,
    NewMessage, Result, Revoke, RevokeResult, StoreError, StoredDelivery,
};

fn state_of(code: i16) -> PgResult<DeliveryState> {
    DeliveryState::from_code(i64::from(code))
        .ok_or_else(|| StoreError::Corrupt(format!("unknown delivery state {code}")).into())
}

fn state_code(s: DeliveryState) -> i16 {
    s.code() as i16
}

fn category_of(code: Option<i16>) -> Option<Category> {
    category_from(code.map(i64::from))
}

fn category_small(c: Option<Category>) -> Option<i16> {
    category_code(c).map(|i| i as i16)
}

fn small_u8(v: i16) -> u8 {
    u8::try_from(v).unwrap_or(u8::MAX)
}

/// Message facts from columns `push_type, kind, project_id, receipt_id,
/// receipt_hold_ms` at `at`.
fn info_from(r: &Row, at: usize) -> MessageInfo {
    MessageInfo {
        push_type: small_u8(r.get(at)),
        kind: kind_from(i64::from(r.get::<_, i16>(at + 1))),
        project_id: Arc::from(r.get::<_, String>(at + 2)),
        receipt_id: r.get::<_, Option<String>>(at + 3).map(Arc::from),
        receipt_hold_ms: r.get(at + 4),
    }
}

fn info_of(m: &NewMessage) -> MessageInfo {
    MessageInfo {
        push_type: m.push_type,
        kind: m.kind,
        project_id: Arc::from(m.project_id.as_str()),
        receipt_id: m.receipt_id.as_deref().map(Arc::from),
        receipt_hold_ms: m.receipt_hold_ms,
    }
}

async fn insert_message<C: GenericClient>(c: &C, m: &NewMessage, open: bool) -> PgResult<i64> {
    let row = query_opt(
        c,
        "INSERT INTO message (request_id, project_id, push_type, kind, payload, bi_tag, receipt_id, test,
                              created_at, expires_at, collapse_key, notify_id, form_id, open, receipt_hold_ms)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
         RETURNING id",
        &[
            &m.request_id,
            &m.project_id,
            &i16::from(m.push_type),
            &(kind_code(m.kind) as i16),
            &m.payload,
            &m.bi_tag,
            &m.receipt_id,
            &m.test,
            &m.created_at,
            &m.expires_at,
            &m.collapse_key.map(i16::from),
            &m.notify_id.map(i64::from),
            &m.form_id,
            &open,
            &m.receipt_hold_ms,
        ],
    )
    .await?;
    row.map(|r| r.get(0))
        .ok_or_else(|| StoreError::Engine("no message id returned".into()).into())
}

/// New delivery rows of one message, as columns.
#[derive(Default)]
struct DeliveryRows {
    tok: Vec<i64>,
    device: Vec<i64>,
    state: Vec<i16>,
    code: Vec<Option<i32>>,
    category: Vec<Option<i16>>,
    bg: Vec<Option<i16>>,
}

impl DeliveryRows {
    fn push(
        &mut self,
        tok: i64,
        device: i64,
        state: DeliveryState,
        code: Option<ReceiptCode>,
        category: Option<Category>,
        bg: Option<u8>,
    ) {
        self.tok.push(tok);
        self.device.push(device);
        self.state.push(state_code(state));
        self.code
            .push(code.map(|c| i32::try_from(c.0).unwrap_or(i32::MAX)));
        self.category.push(category_small(category));
        self.bg.push(bg.map(i16::from));
    }

    async fn insert<C: GenericClient>(&self, c: &C, msg: i64, at: i64) -> PgResult<u64> {
        if self.tok.is_empty() {
            return Ok(0);
        }
        let stmt = c.prepare_cached(INSERT_DELIVERIES_SQL).await?;
        self.insert_prepared(c, &stmt, msg, at).await
    }

    /// [`DeliveryRows::insert`] with the statement already prepared: the request is sent
    /// on the first poll (what keeps pipelined statements in order).
    async fn insert_prepared<C: GenericClient>(
        &self,
        c: &C,
        stmt: &tokio_postgres::Statement,
        msg: i64,
        at: i64,
    ) -> PgResult<u64> {
        if self.tok.is_empty() {
            return Ok(0);
        }
        Ok(c.execute(
            stmt,
            &[
                &msg,
                &at,
                &self.tok,
                &self.device,
                &self.state,
                &self.code,
                &self.category,
                &self.bg,
            ],
        )
        .await?)
    }
}

const INSERT_DELIVERIES_SQL: &str =
    "INSERT INTO delivery (msg, tok, device, state, code, category, bg, updated_at)
 SELECT $1, u.tok, u.device, u.state, u.code, u.category, u.bg, $2
 FROM unnest($3::int8[], $4::int8[], $5::int2[], $6::int4[], $7::int2[], $8::int2[])
      AS u(tok, device, state, code, category, bg)";

const UNKNOWN_DROPS_SQL: &str = "INSERT INTO unknown_drop (msg, token, code)
 SELECT $1, u.token, u.code FROM unnest($2::text[], $3::int4[]) AS u(token, code)
 ON CONFLICT DO NOTHING";

/// A queued delivery a newer message replaced, with its message's facts.
struct Ended {
    id: DeliveryId,
    category: Option<Category>,
    info: MessageInfo,
}

fn ended_from(r: &Row) -> Ended {
    Ended {
        id: DeliveryId {
            message: r.get(0),
            token: r.get(1),
        },
        category: category_of(r.get(2)),
        info: info_from(r, 3),
    }
}

const REPLACED: i16 = DeliveryState::Replaced as i16;

/// Queued deliveries of these (device, token) pairs that an older message with the same
/// collapse key left: replaced by the new message.
const COLLAPSE_SQL: &str = "UPDATE delivery d SET state = $1, updated_at = $2
 FROM message m, unnest($3::int8[], $4::int8[]) AS u(device, tok)
 WHERE d.device = u.device AND d.tok = u.tok AND d.state = 0 AND d.msg < $5
   AND m.id = d.msg AND m.kind = 0 AND m.collapse_key = $6
 RETURNING d.msg, d.tok, d.category, m.push_type, m.kind, m.project_id, m.receipt_id, m.receipt_hold_ms";

/// Queued messages of these (device, token) pairs beyond the offline cache cap, newest
/// kept: replaced.
const CAP_SQL: &str = "WITH over AS (
   SELECT o.msg, o.tok FROM unnest($3::int8[], $4::int8[]) AS u(device, tok)
   CROSS JOIN LATERAL (
     SELECT d.msg, d.tok FROM delivery d JOIN message m ON m.id = d.msg
     WHERE d.device = u.device AND d.tok = u.tok AND d.state = 0 AND m.kind = 0
     ORDER BY d.msg DESC OFFSET $5) o
 )
 UPDATE delivery d SET state = $1, updated_at = $2
 FROM over, message m
 WHERE d.msg = over.msg AND d.tok = over.tok AND d.state = 0 AND m.id = d.msg
 RETURNING d.msg, d.tok, d.category, m.push_type, m.kind, m.project_id, m.receipt_id, m.receipt_hold_ms";

async fn enqueue_in<C: GenericClient>(c: &C, batch: &Enqueue) -> PgResult<(EnqueueResult, u64)> {
    let m = &batch.message;
    let at = m.created_at;
    let msg = insert_message(c, m, !batch.deliveries.is_empty()).await?;
    let info = info_of(m);
    let mut changes = Changes::default();

    let mut rows = DeliveryRows::default();
    for d in &batch.deliveries {
        rows.push(
            d.token,
            d.device,
            DeliveryState::Queued,
            None,
            d.category,
            d.background_mode,
        );
    }
    for drop in &batch.drops {
        if let Some((tok, device)) = drop.known {
            rows.push(
                tok,
                device,
                DeliveryState::Dropped,
                Some(drop.code),
                None,
                None,
            );
        }
    }
    let (unknown_tokens, unknown_codes): (Vec<&str>, Vec<i32>) = batch
        .drops
        .iter()
        .filter(|d| d.known.is_none())
        .map(|d| {
            (
                d.token.as_str(),
                i32::try_from(d.code.0).unwrap_or(i32::MAX),
            )
        })
        .unzip();
    let devices: Vec<i64> = batch.deliveries.iter().map(|d| d.device).collect();
    let tokens: Vec<i64> = batch.deliveries.iter().map(|d| d.token).collect();
    let (offline_devices, offline_tokens): (Vec<i64>, Vec<i64>) = batch
        .deliveries
        .iter()
        .filter(|d| d.offline)
        .map(|d| (d.device, d.token))
        .unzip();

    // Sent in this order on one connection (pipelined), run in this order: collapse the
    // older messages, add the new rows, then cap what is queued including them. Every
    // statement is prepared first, so that each future sends its request on its first
    // poll, in the order `try_join!` polls them.
    let collapse_stmt = c.prepare_cached(COLLAPSE_SQL).await?;
    let insert_stmt = c.prepare_cached(INSERT_DELIVERIES_SQL).await?;
    let cap_stmt = c.prepare_cached(CAP_SQL).await?;
    let unknown_stmt = c.prepare_cached(UNKNOWN_DROPS_SQL).await?;
    let collapse = async {
        let rows: PgResult<Vec<Row>> = match m.collapse_key {
            Some(key) if !tokens.is_empty() => Ok(c
                .query(
                    &collapse_stmt,
                    &[&REPLACED, &at, &devices, &tokens, &msg, &i16::from(key)],
                )
                .await?),
            _ => Ok(Vec::new()),
        };
        rows
    };
    let insert = rows.insert_prepared(c, &insert_stmt, msg, at);
    let cap = async {
        let rows: PgResult<Vec<Row>> = if offline_tokens.is_empty() {
            Ok(Vec::new())
        } else {
            Ok(c.query(
                &cap_stmt,
                &[
                    &REPLACED,
                    &at,
                    &offline_devices,
                    &offline_tokens,
                    &OFFLINE_CACHE_CAP,
                ],
            )
            .await?)
        };
        rows
    };
    let unknown = async {
        let n: PgResult<u64> = if unknown_tokens.is_empty() {
            Ok(0)
        } else {
            Ok(
                c.execute(&unknown_stmt, &[&msg, &unknown_tokens, &unknown_codes])
                    .await?,
            )
        };
        n
    };
    let (collapsed, _, capped, _) = tokio::try_join!(collapse, insert, cap, unknown)?;
    upsert_live_views(c, batch).await?;
    // Counters last, as before the cluster: a counter row is locked from its increment
    // to the commit only, so concurrent sends to the same devices do not queue behind
    // each other's inserts.
    let settled = take_charges(c, batch).await?;
    let refused: HashMap<i64, ReceiptCode> = batch
        .deliveries
        .iter()
        .zip(&settled.refused)
        .filter_map(|(d, r)| r.map(|code| (d.token, code)))
        .collect();
    let (collapsed, capped) = if refused.is_empty() {
        (collapsed, capped)
    } else {
        unqueue_refused(c, msg, batch, &refused, collapsed, capped).await?
    };

    // Per token in the request's order: what the collapse replaced (oldest first), then
    // what the cap replaced (oldest first too), as the SQLite engine reports them.
    let mut by_token: HashMap<i64, (Vec<Ended>, Vec<Ended>)> = HashMap::new();
    for r in &collapsed {
        let e = ended_from(r);
        by_token.entry(e.id.token).or_default().0.push(e);
    }
    for r in &capped {
        let e = ended_from(r);
        by_token.entry(e.id.token).or_default().1.push(e);
    }
    let mut result = EnqueueResult {
        message: msg,
        replaced: Vec::new(),
        refused: Vec::new(),
        counters: settled.counters,
    };
    for d in &batch.deliveries {
        let client: Arc<str> = Arc::from(d.client_id.as_str());
        if let Some(&code) = refused.get(&d.token) {
            let id = DeliveryId {
                message: msg,
                token: d.token,
            };
            changes.record(&info, id, &client, None, Outcome::Dropped(code), at);
            result.refused.push((d.token, code));
            continue;
        }
        let (mut older, mut over) = by_token.remove(&d.token).unwrap_or_default();
        older.sort_by_key(|e| e.id.message);
        over.sort_by_key(|e| e.id.message);
        for e in older {
            changes.record(&e.info, e.id, &client, e.category, Outcome::Replaced, at);
            result.replaced.push(e.id);
        }
        let id = DeliveryId {
            message: msg,
            token: d.token,
        };
        changes.record(&info, id, &client, d.category, Outcome::Queued, at);
        for e in over {
            changes.record(&e.info, e.id, &client, e.category, Outcome::Replaced, at);
            result.replaced.push(e.id);
        }
    }
    for drop in &batch.drops {
        let outcome = Outcome::Dropped(drop.code);
        match drop.known {
            Some((tok, _)) => {
                let client: Arc<str> = Arc::from(drop.client_id.as_deref().unwrap_or(""));
                let id = DeliveryId {
                    message: msg,
                    token: tok,
                };
                changes.record(&info, id, &client, None, outcome, at);
            }
            None => changes.unknown_drop(
                &info,
                msg,
                &drop.token,
                drop.client_id.as_deref(),
                outcome,
                at,
            ),
        }
    }
    let receipts = changes.flush(c).await?;
    Ok((result, receipts))
}

/// Store the request's Live View states (the last one per activity wins), in key order.
async fn upsert_live_views<C: GenericClient>(c: &C, batch: &Enqueue) -> PgResult<()> {
    if batch.live_views.is_empty() {
        return Ok(());
    }
    let latest: BTreeMap<_, _> = batch.live_views.iter().map(|(k, s)| (k, s)).collect();
    let mut cols = (
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
    );
    for (k, s) in latest {
        cols.0.push(k.client_id.as_str());
        cols.1.push(k.device_id.as_str());
        cols.2.push(k.activity_id);
        cols.3.push(s.event.as_str());
        cols.4.push(s.status.as_deref());
        cols.5.push(s.version.map(i64::from));
        cols.6.push(s.rest_created);
        cols.7.push(s.ended);
        cols.8.push(s.created_at);
        cols.9.push(s.updated_at);
        cols.10.push(s.blocked_until);
    }
    execute(
        c,
        "INSERT INTO live_views (client_id, device_id, activity_id, event, status, version, rest_created, ended, created_at, updated_at, blocked_until)
         SELECT * FROM unnest($1::text[], $2::text[], $3::int4[], $4::text[], $5::text[], $6::int8[], $7::bool[], $8::bool[], $9::int8[], $10::int8[], $11::int8[])
         ON CONFLICT (client_id, device_id, activity_id) DO UPDATE SET
           event = excluded.event, status = excluded.status, version = excluded.version,
           rest_created = excluded.rest_created, ended = excluded.ended, created_at = excluded.created_at,
           updated_at = excluded.updated_at, blocked_until = excluded.blocked_until",
        &[
            &cols.0, &cols.1, &cols.2, &cols.3, &cols.4, &cols.5, &cols.6, &cols.7, &cols.8,
            &cols.9, &cols.10,
        ],
    )
    .await?;
    Ok(())
}

/// Take the request's counters: one statement raises each (in key order, so that two
/// requests cannot deadlock) only while it stays within its limit, and returns the ones
/// it raised; a request that overlaps waits for the row until the other commits and
/// then sees its count. What a refused delivery's other counters took is given back
/// (rows this transaction already holds).
async fn take_charges<C: GenericClient>(c: &C, batch: &Enqueue) -> PgResult<Settled> {
    let keys = charges::key_charges(batch);
    let tried: Vec<&charges::KeyCharge> = keys.iter().filter(|k| k.can_fit()).collect();
    let mut used_after = HashMap::with_capacity(keys.len());
    if !tried.is_empty() {
        let names: Vec<&str> = tried.iter().map(|k| k.name.as_str()).collect();
        let days: Vec<i32> = tried.iter().map(|k| k.key.day).collect();
        let n: Vec<i64> = tried.iter().map(|k| i64::from(k.n)).collect();
        let limits: Vec<i64> = tried.iter().map(|k| i64::from(k.limit)).collect();
        let rows = query(
            c,
            "WITH req AS (SELECT * FROM unnest($1::text[], $2::int4[], $3::int8[], $4::int8[]) AS r(key, day, n, lim))
             INSERT INTO quota_usage AS q (key, day, used)
             SELECT key, day, n FROM req ORDER BY key
             ON CONFLICT (key) DO UPDATE SET used = q.used + excluded.used
             WHERE q.used + excluded.used <= (SELECT lim FROM req WHERE req.key = excluded.key)
             RETURNING key, used",
            &[&names, &days, &n, &limits],
        )
        .await?;
        for r in rows {
            let used: i64 = r.get(1);
            used_after.insert(
                r.get::<_, String>(0),
                u32::try_from(used).unwrap_or(u32::MAX),
            );
        }
    }
    let settled = charges::settle(batch, &keys, &used_after);
    if !settled.give_back.is_empty() {
        let (names, n): (Vec<&str>, Vec<i64>) = settled
            .give_back
            .iter()
            .map(|(name, n)| (name.as_str(), i64::from(*n)))
            .unzip();
        execute(
            c,
            "UPDATE quota_usage q SET used = q.used - u.n
             FROM unnest($1::text[], $2::int8[]) AS u(key, n) WHERE q.key = u.key",
            &[&names, &n],
        )
        .await?;
    }
    Ok(settled)
}

/// Turn the refused deliveries, inserted as queued with the rest, into drops with their
/// codes, and put back in the queue what their insertion replaced (a collapse key, the
/// offline cap): a delivery that is not sent replaces nothing. Returns the replaced rows
/// that stay replaced. Rows this transaction already holds; only when a counter filled
/// between a node's decision and its commit.
async fn unqueue_refused<C: GenericClient>(
    c: &C,
    msg: i64,
    batch: &Enqueue,
    refused: &HashMap<i64, ReceiptCode>,
    collapsed: Vec<Row>,
    capped: Vec<Row>,
) -> PgResult<(Vec<Row>, Vec<Row>)> {
    let (toks, codes): (Vec<i64>, Vec<i32>) = refused
        .iter()
        .map(|(tok, code)| (*tok, i32::try_from(code.0).unwrap_or(i32::MAX)))
        .unzip();
    execute(
        c,
        "UPDATE delivery d SET state = $2, code = u.code, category = NULL, bg = NULL
         FROM unnest($3::int8[], $4::int4[]) AS u(tok, code)
         WHERE d.msg = $1 AND d.tok = u.tok",
        &[&msg, &state_code(DeliveryState::Dropped), &toks, &codes],
    )
    .await?;
    let of_refused = |r: &Row| refused.contains_key(&r.get::<_, i64>(1));
    let (mut undone, collapsed): (Vec<Row>, Vec<Row>) = collapsed.into_iter().partition(of_refused);
    let (undone_cap, capped): (Vec<Row>, Vec<Row>) = capped.into_iter().partition(of_refused);
    undone.extend(undone_cap);
    if !undone.is_empty() {
        let (msgs, toks): (Vec<i64>, Vec<i64>) = undone
            .iter()
            .map(|r| (r.get::<_, i64>(0), r.get::<_, i64>(1)))
            .unzip();
        execute(
            c,
            "UPDATE delivery d SET state = 0
             FROM unnest($1::int8[], $2::int8[]) AS u(msg, tok)
             WHERE d.msg = u.msg AND d.tok = u.tok",
            &[&msgs, &toks],
        )
        .await?;
    }
    if batch.deliveries.len() == refused.len() {
        execute(c, "UPDATE message SET open = false WHERE id = $1", &[&msg]).await?;
    }
    Ok((collapsed, capped))
}

/// One delivery as a batch of reports sees and changes it.
struct Current {
    device: i64,
    state: DeliveryState,
    code: Option<i32>,
    category: Option<Category>,
    delivered_at: Option<i64>,
    shown_at: Option<i64>,
    updated_at: Option<i64>,
    info: MessageInfo,
    client: Arc<str>,
    moved: bool,
}

/// Apply device reports; returns how many moved a delivery and how many receipts were
/// queued.
async fn reports_in<C: GenericClient>(c: &C, reports: &[DeviceReport]) -> PgResult<(u64, u64)> {
    let mut pairs: Vec<(i64, i64)> = reports.iter().map(|r| (r.id.message, r.id.token)).collect();
    pairs.sort_unstable();
    pairs.dedup();
    let (msgs, toks): (Vec<i64>, Vec<i64>) = pairs.into_iter().unzip();
    // Locked in key order, so two nodes applying overlapping batches cannot deadlock.
    let rows = query(
        c,
        "SELECT d.msg, d.tok, d.device, d.state, d.code, d.category, d.delivered_at, d.shown_at,
                m.push_type, m.kind, m.project_id, m.receipt_id, m.receipt_hold_ms, COALESCE(t.client_id, '')
         FROM unnest($1::int8[], $2::int8[]) AS u(msg, tok)
         JOIN delivery d ON d.msg = u.msg AND d.tok = u.tok
         JOIN message m ON m.id = d.msg
         LEFT JOIN token t ON t.id = d.tok
         ORDER BY d.msg, d.tok
         FOR UPDATE OF d",
        &[&msgs, &toks],
    )
    .await?;
    let mut current: BTreeMap<DeliveryId, Current> = BTreeMap::new();
    for r in &rows {
        let id = DeliveryId {
            message: r.get(0),
            token: r.get(1),
        };
        current.insert(
            id,
            Current {
                device: r.get(2),
                state: state_of(r.get(3))?,
                code: r.get(4),
                category: category_of(r.get(5)),
                delivered_at: r.get(6),
                shown_at: r.get(7),
                updated_at: None,
                info: info_from(r, 8),
                client: Arc::from(r.get::<_, String>(13)),
                moved: false,
            },
        );
    }
    let mut changes = Changes::default();
    let mut moved = 0u64;
    for r in reports {
        let Some(cur) = current.get_mut(&r.id) else {
            continue;
        };
        if cur.device != r.device {
            continue;
        }
        // A revoke command is acknowledged like a message but has no lifecycle beyond that.
        let path = match cur.info.kind {
            MessageKind::Revoke if r.outcome == Outcome::Delivered && cur.state.is_queued() => {
                vec![Outcome::Delivered]
            }
            MessageKind::Revoke => Vec::new(),
            MessageKind::Message => cur.state.advance(r.outcome),
        };
        let Some(last) = path.last().copied() else {
            continue;
        };
        cur.state = DeliveryState::of(last);
        cur.code = last
            .receipt_code()
            .filter(|_| matches!(last, Outcome::Suppressed(_)))
            .map(|c| i32::try_from(c.0).unwrap_or(i32::MAX));
        cur.updated_at = Some(r.at);
        if path.contains(&Outcome::Delivered) {
            cur.delivered_at = Some(r.at);
        }
        if path
            .iter()
            .any(|o| matches!(o, Outcome::Shown | Outcome::Suppressed(_)))
        {
            cur.shown_at = Some(r.at);
        }
        cur.moved = true;
        for outcome in path {
            changes.record(&cur.info, r.id, &cur.client, cur.category, outcome, r.at);
        }
        moved += 1;
    }
    let mut cols = (
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
    );
    for (id, cur) in current.iter().filter(|(_, c)| c.moved) {
        cols.0.push(id.message);
        cols.1.push(id.token);
        cols.2.push(state_code(cur.state));
        cols.3.push(cur.code);
        cols.4.push(cur.updated_at.unwrap_or_default());
        cols.5.push(cur.delivered_at);
        cols.6.push(cur.shown_at);
    }
    if !cols.0.is_empty() {
        execute(
            c,
            "UPDATE delivery d SET state = u.state, code = u.code, updated_at = u.at,
                 delivered_at = u.delivered_at, shown_at = u.shown_at
             FROM unnest($1::int8[], $2::int8[], $3::int2[], $4::int4[], $5::int8[], $6::int8[], $7::int8[])
                  AS u(msg, tok, state, code, at, delivered_at, shown_at)
             WHERE d.msg = u.msg AND d.tok = u.tok",
            &[&cols.0, &cols.1, &cols.2, &cols.3, &cols.4, &cols.5, &cols.6],
        )
        .await?;
    }
    let receipts = changes.flush(c).await?;
    Ok((moved, receipts))
}

async fn revoke_in<C: GenericClient>(c: &C, rv: &Revoke) -> PgResult<(RevokeResult, u64)> {
    let command = rv.command();
    let payload = command.payload.clone();
    // The command message is stored with the first token that needs it.
    let mut cmd_msg: Option<i64> = None;
    let toks: Vec<i64> = rv.tokens.iter().map(|t| t.token_num).collect();
    // Notifications with this notifyId, newest first; a device shows only the newest of
    // a notifyId anyway, so older ones beyond this many no longer matter.
    let rows = query(
        c,
        "WITH candidate AS (
           SELECT id FROM message WHERE project_id = $1 AND notify_id = $2 AND push_type = $3 AND kind = 0
           ORDER BY id DESC LIMIT 1000
         )
         SELECT d.msg, d.tok, d.state, d.category, m.push_type, m.kind, m.project_id, m.receipt_id, m.receipt_hold_ms,
                COALESCE(t.client_id, '')
         FROM candidate JOIN delivery d ON d.msg = candidate.id
         JOIN message m ON m.id = d.msg
         LEFT JOIN token t ON t.id = d.tok
         WHERE d.tok = ANY($4)
         ORDER BY d.msg, d.tok
         FOR UPDATE OF d",
        &[
            &rv.project_id,
            &i64::from(rv.notify_id),
            &i16::from(rv.push_type),
            &toks,
        ],
    )
    .await?;
    /// A delivery of one of the notifications with this notifyId, to a revoked token.
    struct Candidate {
        msg: i64,
        state: DeliveryState,
        category: Option<Category>,
        info: MessageInfo,
        client: Arc<str>,
    }
    let mut by_token: HashMap<i64, Vec<Candidate>> = HashMap::new();
    for r in &rows {
        by_token.entry(r.get(1)).or_default().push(Candidate {
            msg: r.get(0),
            state: state_of(r.get(2))?,
            category: category_of(r.get(3)),
            info: info_from(r, 4),
            client: Arc::from(r.get::<_, String>(9)),
        });
    }
    for list in by_token.values_mut() {
        list.sort_by_key(|x| std::cmp::Reverse(x.msg));
    }
    let mut result = RevokeResult::default();
    let mut changes = Changes::default();
    let (mut ended_msg, mut ended_tok) = (Vec::new(), Vec::new());
    let mut commands = DeliveryRows::default();
    for rec in &rv.tokens {
        let mut touched = false;
        for row in by_token.get_mut(&rec.token_num).into_iter().flatten() {
            let id = DeliveryId {
                message: row.msg,
                token: rec.token_num,
            };
            let list = match row.state {
                DeliveryState::Queued => &mut result.revoked,
                DeliveryState::Delivered | DeliveryState::Shown => &mut result.withdrawn,
                _ => continue,
            };
            row.state = DeliveryState::Revoked;
            list.push(id);
            ended_msg.push(row.msg);
            ended_tok.push(rec.token_num);
            changes.record(
                &row.info,
                id,
                &row.client,
                row.category,
                Outcome::Revoked,
                rv.now,
            );
            touched = true;
        }
        if !touched {
            continue;
        }
        // A queued message may already be on the wire to a connected device, so the
        // device is told in every case; it removes the notification if it shows it.
        let message = match cmd_msg {
            Some(m) => m,
            None => *cmd_msg.insert(insert_message(c, &command, true).await?),
        };
        let id = DeliveryId {
            message,
            token: rec.token_num,
        };
        commands.push(
            rec.token_num,
            rec.device,
            DeliveryState::Queued,
            None,
            None,
            None,
        );
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
    if !ended_msg.is_empty() {
        execute(
            c,
            "UPDATE delivery d SET state = $1, updated_at = $2
             FROM unnest($3::int8[], $4::int8[]) AS u(msg, tok)
             WHERE d.msg = u.msg AND d.tok = u.tok",
            &[
                &state_code(DeliveryState::Revoked),
                &rv.now,
                &ended_msg,
                &ended_tok,
            ],
        )
        .await?;
    }
    if let Some(message) = cmd_msg {
        commands.insert(c, message, rv.now).await?;
    }
    let receipts = changes.flush(c).await?;
    Ok((result, receipts))
}

/// End the queued deliveries of messages whose TTL passed, whole messages at a time, in
/// expiry order, stopping after the message that reaches `limit` expired deliveries.
async fn expire_in<C: GenericClient>(c: &C, now_ms: i64, limit: usize) -> PgResult<(u64, u64)> {
    // Another node expiring at the same moment skips the messages this one took.
    let due = query(
        c,
        "SELECT m.id, m.push_type, m.kind, m.project_id, m.receipt_id, m.receipt_hold_ms,
                (SELECT count(*) FROM delivery d WHERE d.msg = m.id AND d.state = 0)
         FROM message m WHERE m.open AND m.expires_at <= $1
         ORDER BY m.expires_at LIMIT 64
         FOR UPDATE OF m SKIP LOCKED",
        &[&now_ms],
    )
    .await?;
    let mut taken: Vec<i64> = Vec::new();
    let mut infos: HashMap<i64, MessageInfo> = HashMap::new();
    let mut expected = 0u64;
    for r in &due {
        let id: i64 = r.get(0);
        let info = info_from(r, 1);
        if info.kind == MessageKind::Message {
            expected += r.get::<_, i64>(6).max(0) as u64;
        }
        taken.push(id);
        infos.insert(id, info);
        if expected as usize >= limit {
            break;
        }
    }
    if taken.is_empty() {
        return Ok((0, 0));
    }
    let ended = query(
        c,
        "UPDATE delivery d SET state = $1, updated_at = $2
         WHERE d.msg = ANY($3) AND d.state = 0
         RETURNING d.msg, d.tok, d.category, COALESCE((SELECT client_id FROM token t WHERE t.id = d.tok), '')",
        &[&state_code(DeliveryState::Expired), &now_ms, &taken],
    )
    .await?;
    execute(
        c,
        "UPDATE message SET open = false WHERE id = ANY($1)",
        &[&taken],
    )
    .await?;
    let mut changes = Changes::default();
    let mut expired = 0u64;
    for r in &ended {
        let msg: i64 = r.get(0);
        let Some(info) = infos.get(&msg) else {
            continue;
        };
        if info.kind == MessageKind::Message {
            expired += 1;
        }
        let id = DeliveryId {
            message: msg,
            token: r.get(1),
        };
        let client: Arc<str> = Arc::from(r.get::<_, String>(3));
        changes.record(
            info,
            id,
            &client,
            category_of(r.get(2)),
            Outcome::Expired,
            now_ms,
        );
    }
    let receipts = changes.flush(c).await?;
    Ok((expired, receipts))
}

const PENDING_SQL: &str = "SELECT d.msg, d.tok, d.category, d.bg, m.request_id, t.token, t.client_id, m.push_type, m.kind,
        m.payload, m.bi_tag, m.test, m.created_at, m.expires_at, m.notify_id, d.device
 FROM delivery d JOIN message m ON m.id = d.msg JOIN token t ON t.id = d.tok
 WHERE d.device = $1 AND d.state = 0 AND m.expires_at > $2
 ORDER BY d.msg, d.tok";

fn stored_from_row(r: &Row) -> StoredDelivery {
    StoredDelivery {
        id: DeliveryId {
            message: r.get(0),
            token: r.get(1),
        },
        category: category_of(r.get(2)),
        background_mode: r.get::<_, Option<i16>>(3).map(small_u8),
        request_id: r.get(4),
        token: r.get(5),
        client_id: r.get(6),
        push_type: small_u8(r.get(7)),
        kind: kind_from(i64::from(r.get::<_, i16>(8))),
        payload: r.get(9),
        bi_tag: r.get(10),
        test: r.get(11),
        created_at: r.get(12),
        expires_at: r.get(13),
        notify_id: r
            .get::<_, Option<i64>>(14)
            .and_then(|n| u32::try_from(n).ok()),
        device: r.get(15),
    }
}

const HISTORY_SQL: &str =
    "SELECT d.msg, d.tok, m.created_at, d.state, d.code, d.delivered_at, d.shown_at, d.updated_at
 FROM delivery d JOIN message m ON m.id = d.msg";

fn history_from_row(r: &Row) -> PgResult<Vec<EventRecord>> {
    Ok(lifecycle(
        DeliveryId {
            message: r.get(0),
            token: r.get(1),
        },
        r.get(2),
        state_of(r.get(3))?,
        r.get::<_, Option<i32>>(4)
            .and_then(|c| u32::try_from(c).ok()),
        r.get(5),
        r.get(6),
        r.get(7),
    ))
}

#[async_trait]
impl MessageStore for PgStore {
    async fn enqueue(&self, batch: Enqueue) -> Result<EnqueueResult> {
        let (result, receipts) = in_tx!(self, |tx| enqueue_in(tx, &batch).await)?;
        self.receipts_committed(receipts);
        Ok(result)
    }

    async fn pending(&self, device: i64, now_ms: i64) -> Result<Vec<StoredDelivery>> {
        let rows = self.read(PENDING_SQL, &[&device, &now_ms]).await?;
        Ok(rows.iter().map(stored_from_row).collect())
    }

    async fn record_device_reports(&self, reports: Vec<DeviceReport>) -> Result<u64> {
        if reports.is_empty() {
            return Ok(0);
        }
        let (moved, receipts) = in_tx!(self, |tx| reports_in(tx, &reports).await)?;
        self.receipts_committed(receipts);
        Ok(moved)
    }

    async fn expire_due(&self, now_ms: i64, limit: usize) -> Result<u64> {
        let (expired, receipts) = in_tx!(self, |tx| expire_in(tx, now_ms, limit).await)?;
        self.receipts_committed(receipts);
        Ok(expired)
    }

    async fn revoke(&self, revoke: Revoke) -> Result<RevokeResult> {
        let (result, receipts) = in_tx!(self, |tx| revoke_in(tx, &revoke).await)?;
        self.receipts_committed(receipts);
        Ok(result)
    }

    async fn events_for(&self, message_id: &str) -> Result<Vec<EventRecord>> {
        let Ok(id) = message_id.parse::<DeliveryId>() else {
            return Ok(Vec::new());
        };
        let sql = format!("{HISTORY_SQL} WHERE d.msg = $1 AND d.tok = $2");
        match self.read_opt(&sql, &[&id.message, &id.token]).await? {
            Some(r) => Ok(history_from_row(&r)?),
            None => Ok(Vec::new()),
        }
    }

    async fn events_of_request(
        &self,
        request_id: &str,
        token: Option<&str>,
    ) -> Result<Vec<EventRecord>> {
        let sql = format!(
            "{HISTORY_SQL} JOIN token t ON t.id = d.tok
             WHERE m.request_id = $1 AND ($2::text IS NULL OR t.token = $2) ORDER BY d.msg, d.tok"
        );
        let rows = self.read(&sql, &[&request_id, &token]).await?;
        let mut out = Vec::new();
        for r in &rows {
            out.extend(history_from_row(r)?);
        }
        let drops = self
            .read(
                "SELECT u.code, m.created_at FROM unknown_drop u JOIN message m ON m.id = u.msg
                 WHERE m.request_id = $1 AND ($2::text IS NULL OR u.token = $2)
                 ORDER BY u.msg, u.token COLLATE \"C\"",
                &[&request_id, &token],
            )
            .await?;
        out.extend(drops.iter().map(|r| EventRecord {
            message_id: String::new(),
            outcome: Outcome::Dropped(ReceiptCode(
                u32::try_from(r.get::<_, i32>(0)).unwrap_or_default(),
            )),
            at: r.get(1),
        }));
        Ok(out)
    }

    async fn delivery_counts(&self) -> Result<Vec<(String, u64)>> {
        let rows = self
            .read(
                "SELECT state, COUNT(*) FROM delivery GROUP BY state ORDER BY state",
                &[],
            )
            .await?;
        Ok(state_counts(&rows)
            .into_iter()
            .filter_map(|(s, n)| DeliveryState::from_code(s).map(|s| (s.name().to_owned(), n)))
            .collect())
    }
}
