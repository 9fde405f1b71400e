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

use super::catalog::{Field, FieldType, cols, table_def};
use FieldType::{
    Array, BigInt, Bool, Enum, Float, FloatSpecial, Int, Int32, Json, Object, Str, Text, Timestamp,
};

table_def! {
    /// The large table.
    pub(crate) QUIZ_SESSIONS = new_quizzes.quiz_sessions, 720_000 rows, schema 1, 2048 changes {
        quiz_id: Int, participant_id: BigInt, attempt: Int32,
        status: Enum(&["created", "started", "submitted", "graded", "expired"]),
        score?: Float, points_possible?: Float, is_late?: Bool,
        started_at?: Timestamp, submitted_at?: Timestamp, grader_comment?: Str(255),
        session_token: Str(36), time_spent_seconds?: Int32,
        created_at: Timestamp, updated_at: Timestamp,
    }
}

const CHOICE_FIELDS: &[Field] = cols! { id: Int32, label: Str(255), correct?: Bool };

const CHOICE: FieldType = Object(CHOICE_FIELDS);

table_def! {
    /// Awkward values and JSON columns.
    pub(crate) ITEMS = new_quizzes.items, 400 rows, schema 1 {
        title: Str(255), body?: Text,
        item_type: Enum(&["choice", "essay", "numeric", "matching", "file_upload"]),
        position?: Int32, points?: Float,
        properties?: Object(cols! {
            shuffle_answers?: Bool, max_attempts?: Int32,
            language?: Enum(&["en", "de", "hu", "ja"]), hint?: Str(255),
        }),
        tags?: Array(&Str(64)), answer_ids?: Array(&BigInt), is_active: Bool,
        external_id?: BigInt, created_at: Timestamp, updated_at?: Timestamp,
    }
}

table_def! {
    /// float64 columns with NaN and infinities.
    pub(crate) ITEM_ANALYSES = new_quizzes.item_analyses, 60 rows, schema 1 {
        item_id: Int, mean_score?: FloatSpecial, std_dev?: FloatSpecial,
        discrimination?: Float, respondents?: Int32, computed_at: Timestamp,
    }
}

table_def! {
    /// A free-form JSON object column and an array of objects.
    pub(crate) QUIZ_SETTINGS = new_quizzes.quiz_settings, 40 rows, schema 1 {
        quiz_id: Int, title: Str(255), settings?: Json, choices?: Array(&CHOICE),
        updated_at: Timestamp,
    }
}
