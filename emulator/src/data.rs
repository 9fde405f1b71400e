//! The synthetic catalog (namespaces, tables, schemas) and deterministic data.
//!
//! # Data model
//! Every table has `rows` records keyed by `id` = 1..=rows. The *base state* (version 0,
//! `meta.ts` = history origin) is changed by a history of *change events*: event
//! `n = 0, 1, 2, ...` happens at `origin + (n + 1) * change_interval`, touches the record
//! with `id = n % rows + 1`, and is a delete (`D`) for a deterministic sixth of the events,
//! otherwise an upsert (`U`) that gives the record the values of version `n + 1`. A
//! deleted record comes back at its next upsert.
//!
//! * A snapshot at `at` is the base state with every event whose `ts < at` applied;
//!   deleted records are absent and records carry `meta.ts` only.
//! * An incremental `[since, until)` holds, per key, the latest event with
//!   `since <= ts < until`, with `meta.action`; `D` records have no `value`.
//!
//! Everything here is a pure function of [`DataParams`], so tests can compute the exact
//! expected records with [`expected_records`].

use std::fmt::Write as _;

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

/// Type of a column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FieldType {
    /// 64-bit integer.
    Int,
    /// String with a maximum length.
    Str(u32),
    /// Free text (may be long, contains every awkward character).
    Text,
    /// One of the listed strings.
    Enum(&'static [&'static str]),
    /// RFC 3339 timestamp string.
    Timestamp,
    /// Boolean.
    Bool,
    /// Double precision number.
    Float,
    /// Nested object with a fixed set of fields (flattened in expanded CSV/TSV).
    Object(&'static [Field]),
}

/// A column of a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field {
    /// Column name.
    pub name: &'static str,
    /// Column type.
    pub ty: FieldType,
    /// Whether the column is never null.
    pub required: bool,
}

const fn req(name: &'static str, ty: FieldType) -> Field {
    Field {
        name,
        ty,
        required: true,
    }
}

const fn opt(name: &'static str, ty: FieldType) -> Field {
    Field {
        name,
        ty,
        required: false,
    }
}

/// A table of the synthetic catalog. Its key is always `id` (int64).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableDef {
    /// Namespace name.
    pub namespace: &'static str,
    /// Table name.
    pub name: &'static str,
    /// Value columns.
    pub values: &'static [Field],
    /// Default number of rows.
    pub rows: u64,
    /// Schema version reported by the schema endpoint and jobs.
    pub schema_version: u32,
}

use FieldType::{Bool, Enum, Float, Int, Object, Str, Text, Timestamp};

const WORKFLOW: &[&str] = &["active", "deleted"];

/// Namespaces served by the emulator.
pub const NAMESPACES: &[&str] = &["canvas", "canvas_logs", "catalog"];

/// All tables of all namespaces.
pub const TABLES: &[TableDef] = &[
    TableDef {
        namespace: "canvas",
        name: "accounts",
        rows: 12,
        schema_version: 2,
        values: &[
            req("name", Str(255)),
            req("uuid", Str(36)),
            opt("parent_account_id", Int),
            opt("root_account_id", Int),
            req("workflow_state", Enum(&["active", "deleted", "suspended"])),
            opt("sis_source_id", Str(255)),
            req(
                "default_time_zone",
                Enum(&["America/Denver", "Europe/Budapest", "Etc/UTC"]),
            ),
            req("created_at", Timestamp),
            req("updated_at", Timestamp),
        ],
    },
    TableDef {
        namespace: "canvas",
        name: "courses",
        rows: 40,
        schema_version: 3,
        values: &[
            req("name", Str(255)),
            opt("course_code", Str(255)),
            req("account_id", Int),
            req(
                "workflow_state",
                Enum(&["created", "claimed", "available", "completed", "deleted"]),
            ),
            opt("is_public", Bool),
            opt("start_at", Timestamp),
            opt(
                "settings",
                Object(&[
                    opt("allow_student_forum_attachments", Bool),
                    opt("hide_final_grades", Bool),
                    opt("syllabus_visibility", Enum(&["public", "course"])),
                ]),
            ),
            req("created_at", Timestamp),
        ],
    },
    TableDef {
        namespace: "canvas",
        name: "users",
        rows: 100,
        schema_version: 2,
        values: &[
            req("name", Str(255)),
            opt("sortable_name", Str(255)),
            opt("short_name", Str(255)),
            opt("locale", Enum(&["en", "hu", "de", "ja"])),
            req(
                "workflow_state",
                Enum(&["registered", "pre_registered", "deleted"]),
            ),
            req("created_at", Timestamp),
        ],
    },
    TableDef {
        namespace: "canvas",
        name: "enrollments",
        rows: 150,
        schema_version: 1,
        values: &[
            req("user_id", Int),
            req("course_id", Int),
            req(
                "type",
                Enum(&[
                    "StudentEnrollment",
                    "TeacherEnrollment",
                    "TaEnrollment",
                    "ObserverEnrollment",
                ]),
            ),
            req(
                "workflow_state",
                Enum(&["active", "invited", "completed", "deleted"]),
            ),
            opt("sis_batch_id", Str(255)),
            req("created_at", Timestamp),
        ],
    },
    TableDef {
        namespace: "canvas",
        name: "submissions",
        rows: 200,
        schema_version: 4,
        values: &[
            req("assignment_id", Int),
            req("user_id", Int),
            opt("body", Text),
            opt("grade", Str(255)),
            opt("score", Float),
            opt("submitted_at", Timestamp),
            req(
                "workflow_state",
                Enum(&["submitted", "graded", "unsubmitted", "pending_review"]),
            ),
            opt("late", Bool),
        ],
    },
    TableDef {
        namespace: "canvas",
        name: "assignments",
        rows: 60,
        schema_version: 2,
        values: &[
            req("title", Str(255)),
            opt("description", Text),
            opt("points_possible", Float),
            opt("due_at", Timestamp),
            req("context_id", Int),
            opt("submission_types", Str(255)),
            req(
                "workflow_state",
                Enum(&["published", "unpublished", "deleted"]),
            ),
        ],
    },
    TableDef {
        namespace: "canvas",
        name: "quizzes",
        rows: 30,
        schema_version: 1,
        values: &[
            req("title", Str(255)),
            opt("description", Text),
            req(
                "quiz_type",
                Enum(&["assignment", "practice_quiz", "graded_survey", "survey"]),
            ),
            opt("points_possible", Float),
            opt("time_limit", Int),
            req("context_id", Int),
        ],
    },
    TableDef {
        namespace: "canvas",
        name: "discussion_topics",
        rows: 40,
        schema_version: 1,
        values: &[
            opt("title", Str(255)),
            opt("message", Text),
            req("context_id", Int),
            req("discussion_type", Enum(&["side_comment", "threaded"])),
            opt("pinned", Bool),
        ],
    },
    TableDef {
        namespace: "canvas",
        name: "pseudonyms",
        rows: 100,
        schema_version: 1,
        values: &[
            req("user_id", Int),
            req("unique_id", Str(255)),
            opt("sis_user_id", Str(255)),
            opt("last_login_at", Timestamp),
            req("workflow_state", Enum(WORKFLOW)),
        ],
    },
    TableDef {
        namespace: "canvas",
        name: "course_sections",
        rows: 50,
        schema_version: 1,
        values: &[
            req("name", Str(255)),
            req("course_id", Int),
            opt("start_at", Timestamp),
            opt("end_at", Timestamp),
            req("workflow_state", Enum(WORKFLOW)),
        ],
    },
    TableDef {
        namespace: "canvas_logs",
        name: "web_logs",
        rows: 200,
        schema_version: 1,
        values: &[
            req("request_id", Str(36)),
            req("timestamp", Timestamp),
            opt("user_id", Int),
            opt("course_id", Int),
            req("url", Text),
            req("http_method", Enum(&["GET", "POST", "PUT", "DELETE"])),
            opt("http_status", Int),
            opt("user_agent", Str(255)),
            opt("participated", Bool),
        ],
    },
    TableDef {
        namespace: "catalog",
        name: "catalogs",
        rows: 5,
        schema_version: 1,
        values: &[
            req("name", Str(255)),
            opt("url", Str(255)),
            req("currency", Enum(&["USD", "EUR", "HUF"])),
        ],
    },
    TableDef {
        namespace: "catalog",
        name: "products",
        rows: 40,
        schema_version: 1,
        values: &[
            req("title", Str(255)),
            opt("description", Text),
            opt("price", Float),
            req("catalog_id", Int),
            req("visibility", Enum(&["listed", "unlisted"])),
        ],
    },
    TableDef {
        namespace: "catalog",
        name: "enrollments",
        rows: 80,
        schema_version: 1,
        values: &[
            req("product_id", Int),
            opt("user_email", Str(255)),
            req("status", Enum(&["pending", "active", "completed"])),
            req("created_at", Timestamp),
        ],
    },
];

/// Looks a table up by namespace and name.
pub fn table(namespace: &str, name: &str) -> Option<&'static TableDef> {
    TABLES
        .iter()
        .find(|t| t.namespace == namespace && t.name == name)
}

/// Names of the tables of a namespace, or `None` for an unknown namespace.
pub fn tables(namespace: &str) -> Option<Vec<&'static str>> {
    NAMESPACES.contains(&namespace).then(|| {
        TABLES
            .iter()
            .filter(|t| t.namespace == namespace)
            .map(|t| t.name)
            .collect()
    })
}

/// Strings that exercise every escaping rule: empty, quotes, commas, tabs, newlines,
/// carriage returns, backslashes, the words CSV/TSV use for NULL, non-ASCII text, and
/// DAP's marker for oversized values.
pub const AWKWARD_STRINGS: &[&str] = &[
    "",
    "O'Brien said \"hi\"",
    "comma, separated, values",
    "tab\tseparated",
    "two\nlines",
    "windows\r\nline",
    "back\\slash \\N",
    "\\N",
    "NULL",
    "Ünïcødé — 日本語 ✓ 🎓",
    " padded ",
    "__cd2_oversized_truncated__",
    "plain",
];

/// A column value.
#[derive(Debug, Clone, PartialEq)]
pub enum Scalar {
    /// SQL NULL (omitted in JSON).
    Null,
    /// Integer.
    Int(i64),
    /// Number.
    Float(f64),
    /// Boolean.
    Bool(bool),
    /// String (also timestamps and enums).
    Str(String),
    /// Nested object (fixed fields, in schema order).
    Object(Vec<(&'static str, Self)>),
}

impl Scalar {
    /// The value as JSON; `None` for NULL (JSON output omits null properties) and for
    /// an object whose fields are all NULL.
    pub fn to_json(&self) -> Option<serde_json::Value> {
        use serde_json::Value;
        match self {
            Self::Null => None,
            Self::Int(i) => Some(Value::from(*i)),
            Self::Float(f) => serde_json::Number::from_f64(*f).map(Value::Number),
            Self::Bool(b) => Some(Value::Bool(*b)),
            Self::Str(s) => Some(Value::String(s.clone())),
            Self::Object(fields) => {
                let map: serde_json::Map<String, Value> = fields
                    .iter()
                    .filter_map(|(k, v)| v.to_json().map(|j| ((*k).to_owned(), j)))
                    .collect();
                (!map.is_empty()).then_some(Value::Object(map))
            }
        }
    }

    /// The value as text for a CSV/TSV cell; `None` for NULL. Objects become JSON.
    pub fn to_text(&self) -> Option<String> {
        match self {
            Self::Null => None,
            Self::Int(i) => Some(i.to_string()),
            Self::Bool(b) => Some(b.to_string()),
            Self::Str(s) => Some(s.clone()),
            Self::Float(_) | Self::Object(_) => self.to_json().map(|j| j.to_string()),
        }
    }

    fn write_json(&self, out: &mut String) {
        match self {
            Self::Str(s) => write_json_str(out, s),
            Self::Int(i) => {
                let _ = write!(out, "{i}");
            }
            Self::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Self::Null => out.push_str("null"),
            Self::Float(_) | Self::Object(_) => match self.to_json() {
                Some(j) => out.push_str(&j.to_string()),
                None => out.push_str("null"),
            },
        }
    }
}

/// Writes `s` as a JSON string literal.
pub(crate) fn write_json_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Upsert or delete, as in `meta.action`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// `U`: insert or update.
    Upsert,
    /// `D`: delete.
    Delete,
}

impl Action {
    /// The letter used on the wire.
    pub fn letter(self) -> &'static str {
        match self {
            Self::Upsert => "U",
            Self::Delete => "D",
        }
    }
}

/// One record of a query result.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// The primary key (`key.id`).
    pub id: i64,
    /// Value columns in schema order; `None` for a delete.
    pub value: Option<Vec<(&'static str, Scalar)>>,
    /// `meta.ts` in milliseconds since the Unix epoch.
    pub ts_ms: i64,
    /// `meta.action`; present in incremental results only.
    pub action: Option<Action>,
}

impl Record {
    /// The record as the JSON object a `jsonl` line holds (null properties omitted).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::from_str(&self.to_jsonl_line()).unwrap_or(serde_json::Value::Null)
    }

    /// The record as one `jsonl` line (without the newline).
    pub fn to_jsonl_line(&self) -> String {
        let mut out = String::with_capacity(256);
        self.write_jsonl(&mut out);
        out
    }

    pub(crate) fn write_jsonl(&self, out: &mut String) {
        let _ = write!(out, "{{\"key\":{{\"id\":{}}}", self.id);
        if let Some(value) = &self.value {
            out.push_str(",\"value\":{");
            let mut first = true;
            for (name, v) in value {
                if v.to_json().is_none() {
                    continue;
                }
                if !first {
                    out.push(',');
                }
                first = false;
                write_json_str(out, name);
                out.push(':');
                v.write_json(out);
            }
            out.push('}');
        }
        out.push_str(",\"meta\":{\"ts\":");
        write_json_str(out, &format_ts(self.ts_ms));
        if let Some(a) = self.action {
            let _ = write!(out, ",\"action\":\"{}\"", a.letter());
        }
        out.push_str("}}");
    }

    /// Value of column `path` (`key.id`, `meta.ts`, `value.name`, `value.settings.x`):
    /// `Some(None)` for NULL or missing, `None` if there is no such column.
    pub fn column(&self, path: &str) -> Option<Option<String>> {
        match path {
            "key.id" => return Some(Some(self.id.to_string())),
            "meta.ts" => return Some(Some(format_ts(self.ts_ms))),
            "meta.action" => return Some(self.action.map(|a| a.letter().to_owned())),
            _ => {}
        }
        let rest = path.strip_prefix("value.")?;
        let (head, sub) = match rest.split_once('.') {
            Some((h, s)) => (h, Some(s)),
            None => (rest, None),
        };
        let Some(value) = &self.value else {
            return Some(None);
        };
        let (_, v) = value.iter().find(|(n, _)| *n == head)?;
        match (sub, v) {
            (None, v) => Some(v.to_text()),
            (Some(sub), Scalar::Object(fields)) => fields
                .iter()
                .find(|(n, _)| *n == sub)
                .map(|(_, v)| v.to_text()),
            (Some(_), Scalar::Null) => Some(None),
            (Some(_), _) => None,
        }
    }
}

/// Formats milliseconds since the epoch as RFC 3339 UTC, with milliseconds only
/// when they are not zero (`2024-01-01T00:00:00Z`, `2024-01-01T00:00:00.250Z`).
pub fn format_ts(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let frac = ms.rem_euclid(1000);
    let base = match jiff::Timestamp::from_second(secs) {
        Ok(t) => t.strftime("%Y-%m-%dT%H:%M:%S").to_string(),
        Err(_) => "1970-01-01T00:00:00".to_owned(),
    };
    if frac == 0 {
        format!("{base}Z")
    } else {
        format!("{base}.{frac:03}Z")
    }
}

/// Formats milliseconds since the epoch as RFC 3339 UTC with exactly three fraction
/// digits, as `expires_at` is written.
pub fn format_ts_millis(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let frac = ms.rem_euclid(1000);
    let base = match jiff::Timestamp::from_second(secs) {
        Ok(t) => t.strftime("%Y-%m-%dT%H:%M:%S").to_string(),
        Err(_) => "1970-01-01T00:00:00".to_owned(),
    };
    format!("{base}.{frac:03}Z")
}

/// The time range of a query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueryRange {
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

impl QueryRange {
    /// Whether this is an incremental range.
    pub fn is_incremental(&self) -> bool {
        matches!(self, Self::Incremental { .. })
    }
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

fn table_seed(t: &TableDef) -> u64 {
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

    /// Column names of an expanded CSV/TSV export, in order.
    pub fn columns(&self, incremental: bool, condensed: bool) -> Vec<String> {
        let mut cols = vec!["meta.ts".to_owned()];
        if incremental {
            cols.push("meta.action".to_owned());
        }
        cols.push("key.id".to_owned());
        for f in self.values {
            match f.ty {
                Object(sub) if !condensed => {
                    for s in sub {
                        cols.push(format!("value.{}.{}", f.name, s.name));
                    }
                }
                _ => cols.push(format!("value.{}", f.name)),
            }
        }
        cols
    }

    fn gen_scalar(&self, f: &Field, h: u64, id: i64, version: u64, primary: bool) -> Scalar {
        if !f.required && h % 7 == 3 {
            return Scalar::Null;
        }
        let pick = (h >> 8) as usize;
        match f.ty {
            Int => Scalar::Int(((h >> 16) % 5000) as i64 + 1),
            Float => Scalar::Float(((h >> 16) % 100_000) as f64 / 100.0),
            Bool => Scalar::Bool(h & 0x10 != 0),
            Enum(opts) => Scalar::Str(opts[pick % opts.len()].to_owned()),
            Timestamp => Scalar::Str(format_ts(
                1_577_836_800_000 + ((h >> 12) % (5 * 365 * 86_400)) as i64 * 1000,
            )),
            Str(max) if max <= 36 => Scalar::Str(format!(
                "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
                (h >> 32) as u32,
                (h >> 16) as u16,
                h & 0xfff,
                (h >> 20) & 0xfff,
                splitmix(h) & 0xffff_ffff_ffff
            )),
            Str(_) if primary => {
                let p = AWKWARD_STRINGS[(id as u64 + version) as usize % AWKWARD_STRINGS.len()];
                if h & 0x100 == 0 {
                    Scalar::Str(p.to_owned())
                } else {
                    Scalar::Str(format!("{p} {} #{id}", self.name))
                }
            }
            Str(_) => {
                if h % 5 == 0 {
                    Scalar::Str(AWKWARD_STRINGS[pick % AWKWARD_STRINGS.len()].to_owned())
                } else {
                    Scalar::Str(format!("{} {id}.{version}", f.name))
                }
            }
            Text => {
                let a = AWKWARD_STRINGS[pick % AWKWARD_STRINGS.len()];
                let b = AWKWARD_STRINGS[(pick / 7 + 3) % AWKWARD_STRINGS.len()];
                Scalar::Str(format!("<p>{a}</p>\n{b}; revision {version} of {id}"))
            }
            Object(sub) => {
                let fields: Vec<_> = sub
                    .iter()
                    .enumerate()
                    .map(|(i, s)| {
                        let hh = splitmix(h ^ (i as u64 + 1).wrapping_mul(0xA24B_AED4_963E_E407));
                        (s.name, self.gen_scalar(s, hh, id, version, false))
                    })
                    .collect();
                if fields.iter().all(|(_, v)| *v == Scalar::Null) {
                    Scalar::Null
                } else {
                    Scalar::Object(fields)
                }
            }
        }
    }

    /// The value columns of record `id` at `version` (0 = base state).
    pub fn values_of(&self, id: i64, version: u64) -> Vec<(&'static str, Scalar)> {
        let seed = table_seed(self);
        let mut primary_done = false;
        self.values
            .iter()
            .enumerate()
            .map(|(i, f)| {
                let h = splitmix(
                    seed ^ (id as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
                        ^ version.wrapping_mul(0xC2B2_AE3D_27D4_EB4F)
                        ^ (i as u64 + 1).wrapping_mul(0x1656_67B1_9E37_79F9),
                );
                let primary = !primary_done && matches!(f.ty, Str(m) if m > 36);
                primary_done |= primary;
                (f.name, self.gen_scalar(f, h, id, version, primary))
            })
            .collect()
    }

    fn event_action(&self, n: u64) -> Action {
        if splitmix(table_seed(self) ^ n.wrapping_mul(0xD6E8_FEB8_6659_FD93)) % 6 == 0 {
            Action::Delete
        } else {
            Action::Upsert
        }
    }
}

fn event_ts(p: &DataParams, n: u64) -> i64 {
    p.origin_ms.saturating_add(
        ((n as i128 + 1) * p.change_interval_ms as i128).min(i64::MAX as i128) as i64,
    )
}

/// Number of change events with `ts < t`.
fn events_before(p: &DataParams, t: i64) -> u64 {
    let d = i128::from(t) - i128::from(p.origin_ms);
    if d <= 0 {
        return 0;
    }
    let i = i128::from(p.change_interval_ms);
    let ceil = (d + i - 1) / i;
    u64::try_from(ceil - 1).unwrap_or(0)
}

/// Latest event index in `[a, b)` that touches key index `k` (of `rows`).
fn latest_event(k: u64, a: u64, b: u64, rows: u64) -> Option<u64> {
    if b == 0 || b <= a {
        return None;
    }
    let last = b - 1;
    let r = (last % rows + rows - k) % rows;
    let m = last.checked_sub(r)?;
    (m >= a).then_some(m)
}

/// The exact records a query on `namespace.table` over `range` returns, ordered by key;
/// `None` for an unknown table.
pub fn expected_records(
    params: &DataParams,
    namespace: &str,
    table_name: &str,
    range: QueryRange,
) -> Option<Vec<Record>> {
    let t = table(namespace, table_name)?;
    Some(records_of(params, t, range))
}

pub(crate) fn records_of(params: &DataParams, t: &TableDef, range: QueryRange) -> Vec<Record> {
    let rows = t.row_count(params);
    let mut out = Vec::new();
    match range {
        QueryRange::Snapshot { at_ms } => {
            let c = events_before(params, at_ms);
            for k in 0..rows {
                let id = k as i64 + 1;
                match latest_event(k, 0, c, rows) {
                    None => out.push(Record {
                        id,
                        value: Some(t.values_of(id, 0)),
                        ts_ms: params.origin_ms,
                        action: None,
                    }),
                    Some(n) => {
                        if t.event_action(n) == Action::Upsert {
                            out.push(Record {
                                id,
                                value: Some(t.values_of(id, n + 1)),
                                ts_ms: event_ts(params, n),
                                action: None,
                            });
                        }
                    }
                }
            }
        }
        QueryRange::Incremental { since_ms, until_ms } => {
            let a = events_before(params, since_ms);
            let b = events_before(params, until_ms);
            for k in 0..rows {
                let id = k as i64 + 1;
                if let Some(n) = latest_event(k, a, b, rows) {
                    let action = t.event_action(n);
                    out.push(Record {
                        id,
                        value: (action == Action::Upsert).then(|| t.values_of(id, n + 1)),
                        ts_ms: event_ts(params, n),
                        action: Some(action),
                    });
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> DataParams {
        DataParams {
            origin_ms: 0,
            change_interval_ms: 1000,
            rows_per_table: Some(7),
        }
    }

    #[test]
    fn events_before_counts() {
        let p = params();
        assert_eq!(events_before(&p, 0), 0);
        assert_eq!(events_before(&p, 1000), 0);
        assert_eq!(events_before(&p, 1001), 1);
        assert_eq!(events_before(&p, 2000), 1);
        assert_eq!(events_before(&p, 2001), 2);
    }

    #[test]
    fn latest_event_finds_last_touch() {
        assert_eq!(latest_event(3, 0, 10, 7), Some(3));
        assert_eq!(latest_event(2, 0, 10, 7), Some(9));
        assert_eq!(latest_event(5, 6, 10, 7), None);
        assert_eq!(latest_event(5, 0, 3, 7), None);
    }

    /// Applying an incremental to a snapshot gives the later snapshot.
    #[test]
    fn snapshot_plus_incremental_is_later_snapshot() {
        let p = params();
        for table in TABLES {
            for (t1, t2) in [(0, 5_500), (3_000, 20_000), (10_000, 10_001)] {
                let mut state: std::collections::BTreeMap<i64, Record> =
                    records_of(&p, table, QueryRange::Snapshot { at_ms: t1 })
                        .into_iter()
                        .map(|r| (r.id, r))
                        .collect();
                for r in records_of(
                    &p,
                    table,
                    QueryRange::Incremental {
                        since_ms: t1,
                        until_ms: t2,
                    },
                ) {
                    if r.action == Some(Action::Delete) {
                        state.remove(&r.id);
                    } else {
                        state.insert(r.id, Record { action: None, ..r });
                    }
                }
                let later: Vec<Record> = records_of(&p, table, QueryRange::Snapshot { at_ms: t2 });
                assert_eq!(state.into_values().collect::<Vec<_>>(), later);
            }
        }
    }

    #[test]
    fn jsonl_line_is_valid_json() {
        let p = params();
        for table in TABLES {
            for r in records_of(&p, table, QueryRange::Snapshot { at_ms: 50_000 }) {
                let v: serde_json::Value = serde_json::from_str(&r.to_jsonl_line()).unwrap();
                assert_eq!(v["key"]["id"], r.id);
            }
        }
    }
}
