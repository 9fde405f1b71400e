//! The synthetic catalog (namespaces, tables, schemas) and deterministic data.
//!
//! # Data model
//! Every table has `rows` records keyed by `id` = 1..=rows. The *base state* (version 0,
//! `meta.ts` = history origin) is changed by a history of *change events*. With
//! `k = changes_per_interval` (1 for most tables), event `n = 0, 1, 2, ...` happens at
//! `origin + interval + floor(n * interval / k)`, touches the record with
//! `id = n % rows + 1`, and is a delete (`D`) for a deterministic sixth of the events,
//! otherwise an upsert (`U`) that gives the record the values of version `n + 1`. A
//! deleted record comes back at its next upsert.
//!
//! * A snapshot at `at` is the base state with every event whose `ts < at` applied;
//!   deleted records are absent and records carry `meta.ts` only.
//! * An incremental `[since, until)` holds, per key, the latest event with
//!   `since <= ts < until`, with `meta.action`; `D` records have no `value`.
//!
//! # Schema versions
//! A table starts at its [`TableDef::schema_version`]; each *bump* (see
//! [`SchemaHistory`]) takes effect at an instant and adds one version: a nullable
//! column and a value of the first enum column ([`EVOLUTIONS`]). A query's records are
//! laid out in the version in effect at the end of its range (`at` or `until`); a
//! record carries the values of the version in effect at its own `meta.ts`, so older
//! records hold NULL in the added columns and never the added enum value.
//!
//! # Tables
//! [`TABLES`] lists them: `canvas` (10 tables), `canvas_logs.web_logs`, `catalog`
//! (3 tables), and `new_quizzes`, made for database replication:
//! * `quiz_sessions`: 720,000 keys (about 600,000 live rows, 130 MiB of TSV), 2,048
//!   changes per interval (about 123,000 an hour at the default one minute);
//! * `items`: awkward text, a nested object, arrays of strings and of int64, int32 and
//!   int64 extremes;
//! * `item_analyses`: float64 columns with NaN and infinities;
//! * `quiz_settings`: a free-form JSON object and an array of objects (which the official
//!   client cannot load).
//!
//! Everything here is a pure function of [`DataParams`], the table and its
//! [`SchemaHistory`], so tests can compute the exact expected records with
//! [`expected_records`] (no bumps) or [`expected_records_with`].

mod catalog;
mod history;
mod new_quizzes;
mod record;
mod shape;
mod values;

use std::ops::Range;

pub use catalog::{Field, FieldType, NAMESPACES, TABLES, TableDef, table, tables};
pub use history::{BumpError, EVOLUTIONS, Evolution, SchemaHistory};
pub use record::{Action, Record, Scalar, format_ts, format_ts_millis};
pub use shape::{Column, Shape};
pub use values::AWKWARD_STRINGS;

pub(crate) use history::Timeline;
pub(crate) use record::{write_json_str, write_ts};

/// Parameters that determine the synthetic data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataParams {
    /// Start of the change history, milliseconds since the Unix epoch.
    pub origin_ms: i64,
    /// Milliseconds between two change events (at least 1).
    pub change_interval_ms: u64,
    /// Overrides every table's row count.
    pub rows_per_table: Option<u64>,
}

impl Default for DataParams {
    fn default() -> Self {
        crate::EmulatorConfig::default().data_params()
    }
}

/// The time range of a query, in the emulator's terms (milliseconds since the epoch).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmulatedRange {
    /// State of the table at `at_ms` (events with `ts < at`).
    Snapshot {
        /// Snapshot time, milliseconds since the epoch.
        at_ms: i64,
    },
    /// Changes with `since <= ts < until`.
    Incremental {
        /// Inclusive start, milliseconds since the epoch.
        since_ms: i64,
        /// Exclusive end, milliseconds since the epoch.
        until_ms: i64,
    },
}

impl EmulatedRange {
    /// Whether this is an incremental range.
    pub fn is_incremental(&self) -> bool {
        matches!(self, Self::Incremental { .. })
    }

    /// The end of the range: `at` or `until`.
    pub fn end_ms(&self) -> i64 {
        match *self {
            Self::Snapshot { at_ms } => at_ms,
            Self::Incremental { until_ms, .. } => until_ms,
        }
    }
}

pub(crate) fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

pub(crate) fn table_seed(t: &TableDef) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in t.namespace.bytes().chain([b'.']).chain(t.name.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

impl TableDef {
    /// Number of rows under `params`.
    pub fn row_count(&self, params: &DataParams) -> u64 {
        params.rows_per_table.unwrap_or(self.rows).max(1)
    }

    /// Column names of an expanded (or condensed) CSV/TSV export of the table's first
    /// schema version, in order.
    pub fn columns(&'static self, incremental: bool, condensed: bool) -> Vec<String> {
        Shape::first(self).header(incremental, condensed)
    }

    /// The value columns of record `id` at `version` (0 = base state) in the table's
    /// first schema version.
    pub fn values_of(&'static self, id: i64, version: u64) -> Vec<(&'static str, Scalar)> {
        Shape::first(self)
            .columns()
            .iter()
            .map(|c| (c.name, values::value(self, c, id, version, 0)))
            .collect()
    }
}

/// The records of one query, generated key by key.
#[derive(Debug, Clone)]
pub(crate) struct Extract {
    table: &'static TableDef,
    history: SchemaHistory,
    range: EmulatedRange,
    columns: Vec<Column>,
    timeline: Timeline,
    rows: u64,
    /// Event indexes `[first, end)` that the range covers.
    events: Range<u64>,
    origin_ms: i64,
}

impl Extract {
    pub(crate) fn new(
        params: &DataParams,
        table: &'static TableDef,
        history: &SchemaHistory,
        range: EmulatedRange,
    ) -> Self {
        let timeline = Timeline::new(params, table);
        let events = match range {
            EmulatedRange::Snapshot { at_ms } => 0..timeline.events_before(at_ms),
            EmulatedRange::Incremental { since_ms, until_ms } => {
                timeline.events_before(since_ms)..timeline.events_before(until_ms)
            }
        };
        let shape = Shape {
            table,
            epoch: history.epoch_at(range.end_ms()),
        };
        Self {
            table,
            history: history.clone(),
            range,
            columns: shape.columns(),
            timeline,
            rows: table.row_count(params),
            events,
            origin_ms: params.origin_ms,
        }
    }

    /// The schema version the records are laid out in.
    pub(crate) fn shape(&self) -> Shape {
        Shape {
            table: self.table,
            epoch: self.history.epoch_at(self.range.end_ms()),
        }
    }

    /// Number of keys of the table.
    pub(crate) fn rows(&self) -> u64 {
        self.rows
    }

    /// Whether the records carry `meta.action`.
    pub(crate) fn incremental(&self) -> bool {
        self.range.is_incremental()
    }

    fn values(&self, id: i64, version: u64, ts_ms: i64) -> Vec<(&'static str, Scalar)> {
        let epoch = self.history.epoch_at(ts_ms);
        self.columns
            .iter()
            .map(|c| (c.name, values::value(self.table, c, id, version, epoch)))
            .collect()
    }

    /// The record of key index `k` (id `k + 1`), if the range holds one.
    pub(crate) fn record(&self, k: u64) -> Option<Record> {
        let id = i64::try_from(k).unwrap_or(i64::MAX - 1) + 1;
        let latest = history::latest_event(k, self.events.start, self.events.end, self.rows);
        match (self.range, latest) {
            (EmulatedRange::Snapshot { .. }, None) => Some(Record {
                id,
                value: Some(self.values(id, 0, self.origin_ms)),
                ts_ms: self.origin_ms,
                action: None,
            }),
            (_, None) => None,
            (range, Some(n)) => {
                let ts_ms = self.timeline.event_ts(n);
                let delete = history::is_delete(self.table, n);
                if delete && !range.is_incremental() {
                    return None;
                }
                Some(Record {
                    id,
                    value: (!delete).then(|| self.values(id, n + 1, ts_ms)),
                    ts_ms,
                    action: range.is_incremental().then_some(if delete {
                        Action::Delete
                    } else {
                        Action::Upsert
                    }),
                })
            }
        }
    }

    /// The records of the key indexes in `keys`, ordered by key.
    pub(crate) fn records(&self, keys: Range<u64>) -> impl Iterator<Item = Record> + '_ {
        let end = keys.end.min(self.rows);
        (keys.start..end).filter_map(|k| self.record(k))
    }
}

/// The exact records a query on `namespace.table` over `range` returns, ordered by key,
/// when the table's schema was never bumped; `None` for an unknown table.
pub fn expected_records(
    params: &DataParams,
    namespace: &str,
    table_name: &str,
    range: EmulatedRange,
) -> Option<Vec<Record>> {
    expected_records_with(
        params,
        namespace,
        table_name,
        &SchemaHistory::default(),
        range,
    )
}

/// The exact records a query on `namespace.table` over `range` returns, ordered by key,
/// given the table's schema history; `None` for an unknown table.
pub fn expected_records_with(
    params: &DataParams,
    namespace: &str,
    table_name: &str,
    history: &SchemaHistory,
    range: EmulatedRange,
) -> Option<Vec<Record>> {
    let t = table(namespace, table_name)?;
    let extract = Extract::new(params, t, history, range);
    Some(extract.records(0..extract.rows()).collect())
}

#[cfg(test)]
mod tests;
