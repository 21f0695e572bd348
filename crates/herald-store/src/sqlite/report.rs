//! The push report's counters: every transition adds one to its (hour, app, push type,
//! category, outcome, code) row, in the transaction that made it. The writer sums a
//! whole commit's transitions first, so a 1000-token send touches a handful of rows.

use std::collections::HashMap;

use async_trait::async_trait;
use herald_core::{Category, Outcome};
use rusqlite::{Connection, params};

use super::{SqliteStore, Tx};
use crate::{ReportFilter, ReportRow, ReportStore, Result, SeriesRow};

/// One counter of the report.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct CounterRow {
    pub hour: i64,
    pub project_id: std::sync::Arc<str>,
    pub client_id: std::sync::Arc<str>,
    pub push_type: u8,
    pub category: &'static str,
    pub outcome: &'static str,
    pub code: i64,
}

/// Where a transition is counted.
#[derive(Debug, Clone)]
pub(crate) struct CountedAs {
    pub project_id: std::sync::Arc<str>,
    pub client_id: std::sync::Arc<str>,
    pub push_type: u8,
    pub category: Option<Category>,
}

impl Tx<'_> {
    /// Count one transition.
    pub(crate) fn count(&mut self, who: &CountedAs, outcome: Outcome, at: i64) {
        let row = CounterRow {
            hour: at.div_euclid(3_600_000),
            project_id: who.project_id.clone(),
            client_id: who.client_id.clone(),
            push_type: who.push_type,
            category: who.category.map(Category::as_str).unwrap_or(""),
            outcome: outcome.name(),
            code: outcome.receipt_code().map_or(-1, |c| i64::from(c.0)),
        };
        *self.counters.entry(row).or_insert(0) += 1;
    }
}

/// Add a commit's counted transitions to the stored counters.
pub(crate) fn add_counters(
    conn: &Connection,
    counters: &HashMap<CounterRow, i64>,
) -> rusqlite::Result<()> {
    if counters.is_empty() {
        return Ok(());
    }
    let mut stmt = conn.prepare_cached(
        "INSERT INTO report_counter (hour, project_id, client_id, push_type, category, outcome, code, n)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
         ON CONFLICT (hour, project_id, client_id, push_type, category, outcome, code)
         DO UPDATE SET n = n + excluded.n",
    )?;
    for (k, n) in counters {
        stmt.execute(params![
            k.hour,
            &*k.project_id,
            &*k.client_id,
            k.push_type,
            k.category,
            k.outcome,
            k.code,
            n
        ])?;
    }
    Ok(())
}

#[async_trait]
impl ReportStore for SqliteStore {
    async fn report(&self, filter: ReportFilter) -> Result<Vec<ReportRow>> {
        self.read(move |c| {
            let rows = c
                .prepare_cached(
                    "SELECT outcome, code, SUM(n) FROM report_counter
                     WHERE hour >= ?1
                       AND (?2 IS NULL OR project_id = ?2)
                       AND (?3 IS NULL OR client_id = ?3)
                     GROUP BY outcome, code ORDER BY outcome, code",
                )?
                .query_map(
                    params![
                        filter.since_ms.div_euclid(3_600_000),
                        filter.project_id,
                        filter.client_id
                    ],
                    |r| {
                        let code: i64 = r.get(1)?;
                        Ok(ReportRow {
                            outcome: r.get(0)?,
                            code: u32::try_from(code).ok(),
                            count: r.get::<_, i64>(2)?.max(0) as u64,
                        })
                    },
                )?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
        .await
    }

    async fn report_series(&self, filter: ReportFilter) -> Result<Vec<SeriesRow>> {
        self.read(move |c| {
            let rows = c
                .prepare_cached(
                    "SELECT hour, push_type, category, outcome, SUM(n) FROM report_counter
                     WHERE hour >= ?1
                       AND (?2 IS NULL OR project_id = ?2)
                       AND (?3 IS NULL OR client_id = ?3)
                     GROUP BY hour, push_type, category, outcome
                     ORDER BY hour, push_type, category, outcome",
                )?
                .query_map(
                    params![
                        filter.since_ms.div_euclid(3_600_000),
                        filter.project_id,
                        filter.client_id
                    ],
                    |r| {
                        Ok(SeriesRow {
                            hour: r.get(0)?,
                            push_type: r.get(1)?,
                            category: r.get(2)?,
                            outcome: r.get(3)?,
                            count: r.get::<_, i64>(4)?.max(0) as u64,
                        })
                    },
                )?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
        .await
    }
}
