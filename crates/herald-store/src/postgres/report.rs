//! The push report's counters and the receipts a transaction queues: every transition
//! adds one to its (hour, app, push type, category, outcome, code) counter and, with a
//! receipt code, one row to the outbox. A call collects them in memory and writes each
//! kind with one statement just before it commits; counters are summed per key first and
//! upserted in key order, so concurrent transactions lock them in the same order.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use deadpool_postgres::GenericClient;
use herald_core::{Category, Outcome, ReceiptCode};

use super::{PgResult, PgStore, execute, query};
use crate::{
    ConfigEntry, ConfigIndex, DeliveryId, MessageKind, ReportFilter, ReportRow, ReportStore,
    Result, SeriesRow,
};

/// What a transition needs to know about its message.
#[derive(Debug, Clone)]
pub(crate) struct MessageInfo {
    pub push_type: u8,
    pub kind: MessageKind,
    pub project_id: Arc<str>,
    pub receipt_id: Option<Arc<str>>,
    /// One final receipt per delivery: the ack's receipt waits this long for the report.
    pub receipt_hold_ms: Option<i64>,
}

/// One counter of the report.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct CounterRow {
    hour: i64,
    project_id: Arc<str>,
    client_id: Arc<str>,
    push_type: u8,
    category: &'static str,
    outcome: &'static str,
    code: i32,
}

/// A receipt to queue once the configuration is chosen.
#[derive(Debug)]
struct ReceiptDraft {
    receipt_id: Option<Arc<str>>,
    project_id: Arc<str>,
    client_id: Option<Arc<str>>,
    msg: i64,
    tok: Option<i64>,
    token: Option<String>,
    code: u32,
    at: i64,
    /// When it may be posted (later than `at` while it waits for the device's report).
    due: i64,
}

/// A device's report on a delivery whose receipt waited for it.
#[derive(Debug)]
struct Release {
    id: DeliveryId,
    code: Option<ReceiptCode>,
    at: i64,
}

/// The counters and receipts one transaction adds.
#[derive(Debug, Default)]
pub(crate) struct Changes {
    counters: BTreeMap<CounterRow, i64>,
    receipts: Vec<ReceiptDraft>,
    releases: Vec<Release>,
}

impl Changes {
    /// Count one transition.
    pub(crate) fn count(
        &mut self,
        info: &MessageInfo,
        client_id: &Arc<str>,
        category: Option<Category>,
        outcome: Outcome,
        at: i64,
    ) {
        let row = CounterRow {
            hour: at.div_euclid(3_600_000),
            project_id: info.project_id.clone(),
            client_id: client_id.clone(),
            push_type: info.push_type,
            category: category.map(Category::as_str).unwrap_or(""),
            outcome: outcome.name(),
            code: outcome
                .receipt_code()
                .map_or(-1, |c| i32::try_from(c.0).unwrap_or(i32::MAX)),
        };
        *self.counters.entry(row).or_insert(0) += 1;
    }

    /// Count a delivery's transition and queue its receipt, if it has a code. Revoke
    /// commands have no lifecycle: nothing is counted or reported for them.
    pub(crate) fn record(
        &mut self,
        info: &MessageInfo,
        id: DeliveryId,
        client_id: &Arc<str>,
        category: Option<Category>,
        outcome: Outcome,
        at: i64,
    ) {
        if info.kind == MessageKind::Revoke {
            return;
        }
        self.count(info, client_id, category, outcome, at);
        let client = Some(client_id.clone()).filter(|c| !c.is_empty());
        let draft = |code: ReceiptCode, due: i64| ReceiptDraft {
            receipt_id: info.receipt_id.clone(),
            project_id: info.project_id.clone(),
            client_id: client.clone(),
            msg: id.message,
            tok: Some(id.token),
            token: None,
            code: code.0,
            at,
            due,
        };
        match (outcome, info.receipt_hold_ms) {
            // One final receipt: the ack's 0 waits for the device's report.
            (Outcome::Delivered, Some(hold)) => self
                .receipts
                .push(draft(ReceiptCode::DELIVERED, at.saturating_add(hold))),
            (Outcome::Shown, Some(_)) => self.release(id, None, at),
            (Outcome::Suppressed(code), Some(_)) => self.release(id, Some(code), at),
            (outcome, _) => {
                if let Some(code) = outcome.receipt_code() {
                    self.receipts.push(draft(code, at));
                }
            }
        }
    }

    /// The device reported on a delivery whose receipt waits for it: the receipt is due
    /// now, with the report's code if it has one (suppressed). One queued earlier in this
    /// call is changed here; stored ones not yet attempted are changed by [`Changes::flush`]
    /// (one already attempted is final and stays as it was).
    fn release(&mut self, id: DeliveryId, code: Option<ReceiptCode>, at: i64) {
        for d in self
            .receipts
            .iter_mut()
            .filter(|d| d.msg == id.message && d.tok == Some(id.token))
        {
            if let Some(c) = code {
                d.code = c.0;
                d.at = at;
            }
            d.due = at;
        }
        self.releases.push(Release { id, code, at });
    }

    /// Count a drop of a token the server does not know and queue its receipt.
    pub(crate) fn unknown_drop(
        &mut self,
        info: &MessageInfo,
        msg: i64,
        token: &str,
        client_id: Option<&str>,
        outcome: Outcome,
        at: i64,
    ) {
        let client: Arc<str> = Arc::from(client_id.unwrap_or(""));
        self.count(info, &client, None, outcome, at);
        if let Some(code) = outcome.receipt_code() {
            self.receipts.push(ReceiptDraft {
                receipt_id: info.receipt_id.clone(),
                project_id: info.project_id.clone(),
                client_id: client_id.map(Arc::from),
                msg,
                tok: None,
                token: Some(token.to_owned()),
                code: code.0,
                at,
                due: at,
            });
        }
    }

    /// Write the counters and the receipts (for the configuration each one goes to).
    /// Returns how many receipts were queued.
    pub(crate) async fn flush<C: GenericClient>(self, c: &C) -> PgResult<u64> {
        // Releases first: they are for receipts stored before this call (the ones queued
        // in it were changed in memory).
        let released = release_receipts(c, &self.releases).await?;
        let queued = if self.receipts.is_empty() {
            0
        } else {
            insert_receipts(c, &self.receipts).await?
        };
        if !self.counters.is_empty() {
            add_counters(c, &self.counters).await?;
        }
        Ok(queued + released)
    }
}

/// Make the stored, not yet attempted receipts of these deliveries due now, with the
/// report's code when it has one.
async fn release_receipts<C: GenericClient>(c: &C, releases: &[Release]) -> PgResult<u64> {
    if releases.is_empty() {
        return Ok(0);
    }
    let msgs: Vec<i64> = releases.iter().map(|r| r.id.message).collect();
    let toks: Vec<i64> = releases.iter().map(|r| r.id.token).collect();
    let codes: Vec<Option<i32>> = releases
        .iter()
        .map(|r| r.code.map(|c| i32::try_from(c.0).unwrap_or(i32::MAX)))
        .collect();
    let ats: Vec<i64> = releases.iter().map(|r| r.at).collect();
    execute(
        c,
        "UPDATE receipt r SET result = COALESCE(u.code, r.result),
                at = CASE WHEN u.code IS NULL THEN r.at ELSE u.at END,
                next_attempt_at = u.at, updated_at = u.at
         FROM unnest($1::int8[], $2::int8[], $3::int4[], $4::int8[]) AS u(msg, tok, code, at)
         WHERE r.msg = u.msg AND r.tok = u.tok AND r.state = 0 AND r.attempts = 0",
        &[&msgs, &toks, &codes, &ats],
    )
    .await
}

/// The receipt configurations as they are now, for the choice, held until the commit:
/// a configuration being deleted is waited for and then left out, and one cannot be
/// deleted before the receipts queued for it are committed (its deletion then drops
/// them). So no receipt is ever left waiting for a configuration that is gone.
async fn load_configs<C: GenericClient>(c: &C) -> PgResult<ConfigIndex> {
    let rows = query(
        c,
        "SELECT receipt_id, project_id, client_id FROM receipt_configs ORDER BY created_at, seq
         FOR KEY SHARE",
        &[],
    )
    .await?;
    Ok(ConfigIndex::new(
        rows.iter()
            .map(|r| ConfigEntry {
                receipt_id: Arc::from(r.get::<_, String>(0)),
                project_id: Arc::from(r.get::<_, String>(1)),
                client_id: r.get::<_, Option<String>>(2).map(Arc::from),
            })
            .collect(),
    ))
}

async fn insert_receipts<C: GenericClient>(c: &C, drafts: &[ReceiptDraft]) -> PgResult<u64> {
    let configs = load_configs(c).await?;
    let (mut config, mut msg, mut tok, mut token, mut client, mut result, mut at, mut due) = (
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
    );
    for d in drafts {
        let Some(chosen) = configs.choose(
            d.receipt_id.as_deref(),
            &d.project_id,
            d.client_id.as_deref(),
        ) else {
            continue;
        };
        config.push(chosen.to_string());
        msg.push(d.msg);
        tok.push(d.tok);
        token.push(d.token.as_deref());
        client.push(d.client_id.as_deref());
        result.push(i32::try_from(d.code).unwrap_or(i32::MAX));
        at.push(d.at);
        due.push(d.due);
    }
    if config.is_empty() {
        return Ok(0);
    }
    let n = execute(
        c,
        "INSERT INTO receipt (config, msg, tok, token, client_id, result, at, state, attempts,
                              next_attempt_at, created_at, updated_at)
         SELECT u.config, u.msg, u.tok, u.token, u.client_id, u.result, u.at, 0, 0, u.due, u.at, u.at
         FROM unnest($1::text[], $2::int8[], $3::int8[], $4::text[], $5::text[], $6::int4[], $7::int8[], $8::int8[])
              WITH ORDINALITY AS u(config, msg, tok, token, client_id, result, at, due, ord)
         ORDER BY u.ord",
        &[&config, &msg, &tok, &token, &client, &result, &at, &due],
    )
    .await?;
    Ok(n)
}

async fn add_counters<C: GenericClient>(
    c: &C,
    counters: &BTreeMap<CounterRow, i64>,
) -> PgResult<()> {
    let mut cols = (
        Vec::with_capacity(counters.len()),
        Vec::with_capacity(counters.len()),
        Vec::with_capacity(counters.len()),
        Vec::with_capacity(counters.len()),
        Vec::with_capacity(counters.len()),
        Vec::with_capacity(counters.len()),
        Vec::with_capacity(counters.len()),
        Vec::with_capacity(counters.len()),
    );
    for (k, n) in counters {
        cols.0.push(k.hour);
        cols.1.push(&*k.project_id);
        cols.2.push(&*k.client_id);
        cols.3.push(i16::from(k.push_type));
        cols.4.push(k.category);
        cols.5.push(k.outcome);
        cols.6.push(k.code);
        cols.7.push(*n);
    }
    execute(
        c,
        "INSERT INTO report_counter (hour, project_id, client_id, push_type, category, outcome, code, n)
         SELECT * FROM unnest($1::int8[], $2::text[], $3::text[], $4::int2[], $5::text[], $6::text[], $7::int4[], $8::int8[])
         ON CONFLICT (hour, project_id, client_id, push_type, category, outcome, code)
         DO UPDATE SET n = report_counter.n + excluded.n",
        &[&cols.0, &cols.1, &cols.2, &cols.3, &cols.4, &cols.5, &cols.6, &cols.7],
    )
    .await?;
    Ok(())
}

#[async_trait]
impl ReportStore for PgStore {
    async fn report(&self, filter: ReportFilter) -> Result<Vec<ReportRow>> {
        let rows = self
            .read(
                "SELECT outcome, code, SUM(n)::int8 FROM report_counter
                 WHERE hour >= $1
                   AND ($2::text IS NULL OR project_id = $2)
                   AND ($3::text IS NULL OR client_id = $3)
                 GROUP BY outcome, code ORDER BY outcome COLLATE \"C\", code",
                &[
                    &filter.since_ms.div_euclid(3_600_000),
                    &filter.project_id,
                    &filter.client_id,
                ],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| {
                let code: i32 = r.get(1);
                ReportRow {
                    outcome: r.get(0),
                    code: u32::try_from(code).ok(),
                    count: r.get::<_, i64>(2).max(0) as u64,
                }
            })
            .collect())
    }

    async fn report_series(&self, filter: ReportFilter) -> Result<Vec<SeriesRow>> {
        let rows = self
            .read(
                "SELECT hour, push_type, category, outcome, SUM(n)::int8 FROM report_counter
                 WHERE hour >= $1
                   AND ($2::text IS NULL OR project_id = $2)
                   AND ($3::text IS NULL OR client_id = $3)
                 GROUP BY hour, push_type, category, outcome
                 ORDER BY hour, push_type, category COLLATE \"C\", outcome COLLATE \"C\"",
                &[
                    &filter.since_ms.div_euclid(3_600_000),
                    &filter.project_id,
                    &filter.client_id,
                ],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| SeriesRow {
                hour: r.get(0),
                push_type: u8::try_from(r.get::<_, i16>(1)).unwrap_or(0),
                category: r.get(2),
                outcome: r.get(3),
                count: r.get::<_, i64>(4).max(0) as u64,
            })
            .collect())
    }
}
