//! The `new_quizzes` namespace: tables for database replication tests and benchmarks.
//!
//! * `quiz_sessions`: the large table (720,000 keys; a snapshot holds about 600,000
//!   live rows, 130 MiB of TSV; 2,048 change events per change interval, so an hour of
//!   the default one-minute interval holds about 123,000 changes).
//! * `items`: awkward values (free text with tabs, newlines, backslashes, non-ASCII and
//!   4-byte UTF-8 characters; a nested object; arrays of strings and of int64; int32
//!   and int64 extremes).
//! * `item_analyses`: float64 columns holding NaN, `Infinity` and `-Infinity` (MySQL
//!   cannot store them).
//! * `quiz_settings`: a free-form JSON object column
//!   (`{"type": "object", "additionalProperties": true}`) and an array of objects,
//!   neither of which the official client 2.3.1 can load.
//!
//! `quiz_sessions` and `items` suit two-way checks with the official client on
//! PostgreSQL and MySQL; `item_analyses` on PostgreSQL only.

use super::catalog::{Field, FieldType, TableDef, opt, req};
use FieldType::{
    Array, BigInt, Bool, Enum, Float, FloatSpecial, Int, Int32, Json, Object, Str, Text, Timestamp,
};

/// The large table.
pub(crate) const QUIZ_SESSIONS: TableDef = TableDef::new(
    "new_quizzes",
    "quiz_sessions",
    720_000,
    1,
    &[
        req("quiz_id", Int),
        req("participant_id", BigInt),
        req("attempt", Int32),
        req(
            "status",
            Enum(&["created", "started", "submitted", "graded", "expired"]),
        ),
        opt("score", Float),
        opt("points_possible", Float),
        opt("is_late", Bool),
        opt("started_at", Timestamp),
        opt("submitted_at", Timestamp),
        opt("grader_comment", Str(255)),
        req("session_token", Str(36)),
        opt("time_spent_seconds", Int32),
        req("created_at", Timestamp),
        req("updated_at", Timestamp),
    ],
)
.changes(2048);

const CHOICE_FIELDS: &[Field] = &[
    req("id", Int32),
    req("label", Str(255)),
    opt("correct", Bool),
];

const CHOICE: FieldType = Object(CHOICE_FIELDS);

/// Awkward values and JSON columns.
pub(crate) const ITEMS: TableDef = TableDef::new(
    "new_quizzes",
    "items",
    400,
    1,
    &[
        req("title", Str(255)),
        opt("body", Text),
        req(
            "item_type",
            Enum(&["choice", "essay", "numeric", "matching", "file_upload"]),
        ),
        opt("position", Int32),
        opt("points", Float),
        opt(
            "properties",
            Object(&[
                opt("shuffle_answers", Bool),
                opt("max_attempts", Int32),
                opt("language", Enum(&["en", "de", "hu", "ja"])),
                opt("hint", Str(255)),
            ]),
        ),
        opt("tags", Array(&Str(64))),
        opt("answer_ids", Array(&BigInt)),
        req("is_active", Bool),
        opt("external_id", BigInt),
        req("created_at", Timestamp),
        opt("updated_at", Timestamp),
    ],
);

/// float64 columns with NaN and infinities.
pub(crate) const ITEM_ANALYSES: TableDef = TableDef::new(
    "new_quizzes",
    "item_analyses",
    60,
    1,
    &[
        req("item_id", Int),
        opt("mean_score", FloatSpecial),
        opt("std_dev", FloatSpecial),
        opt("discrimination", Float),
        opt("respondents", Int32),
        req("computed_at", Timestamp),
    ],
);

/// A free-form JSON object column and an array of objects.
pub(crate) const QUIZ_SETTINGS: TableDef = TableDef::new(
    "new_quizzes",
    "quiz_settings",
    40,
    1,
    &[
        req("quiz_id", Int),
        req("title", Str(255)),
        opt("settings", Json),
        opt("choices", Array(&CHOICE)),
        req("updated_at", Timestamp),
    ],
);
