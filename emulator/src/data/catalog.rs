//! Column types, table definitions and the tables of the `canvas`, `canvas_logs` and
//! `catalog` namespaces.

use super::new_quizzes;

/// Type of a column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FieldType {
    /// 64-bit integer (`"format": "int64"`) with small positive values.
    Int,
    /// 64-bit integer (`"format": "int64"`) over the whole range, negative values and the
    /// extremes included.
    BigInt,
    /// 32-bit integer (`"format": "int32"`), its extremes included.
    Int32,
    /// String with a maximum length (`maxLength`).
    Str(u32),
    /// Free text (may be long, contains every awkward character).
    Text,
    /// One of the listed strings.
    Enum(&'static [&'static str]),
    /// RFC 3339 timestamp string (`"format": "date-time"`), whole seconds.
    Timestamp,
    /// Boolean.
    Bool,
    /// Double precision number (`"format": "float64"`).
    Float,
    /// Double precision number that is NaN, `Infinity` or `-Infinity` in some rows
    /// (JSON Lines writes them as the strings `"NaN"`, `"Infinity"`, `"-Infinity"`).
    FloatSpecial,
    /// Nested object with a fixed set of fields (`additionalProperties: false`;
    /// flattened in expanded CSV/TSV, one JSON column in condensed mode).
    Object(&'static [Field]),
    /// JSON array of items of the given type (one JSON column in every mode).
    Array(&'static Self),
    /// Free-form JSON object (`{"type": "object", "additionalProperties": true}`, no
    /// `properties`).
    Json,
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

/// A required column.
pub(crate) const fn req(name: &'static str, ty: FieldType) -> Field {
    Field {
        name,
        ty,
        required: true,
    }
}

/// A nullable column.
pub(crate) const fn opt(name: &'static str, ty: FieldType) -> Field {
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
    /// Value columns of the first schema version.
    pub values: &'static [Field],
    /// Default number of rows.
    pub rows: u64,
    /// First schema version; each schema bump adds one.
    pub schema_version: u32,
    /// Change events per change interval (see [`crate::data`]).
    pub changes_per_interval: u32,
}

impl TableDef {
    /// A table with one change event per interval.
    pub(crate) const fn new(
        namespace: &'static str,
        name: &'static str,
        rows: u64,
        schema_version: u32,
        values: &'static [Field],
    ) -> Self {
        Self {
            namespace,
            name,
            values,
            rows,
            schema_version,
            changes_per_interval: 1,
        }
    }

    /// The same table with `n` change events per interval.
    pub(crate) const fn changes(self, n: u32) -> Self {
        Self {
            changes_per_interval: n,
            ..self
        }
    }
}

use FieldType::{Bool, Enum, Float, Int, Int32, Object, Str, Text, Timestamp};

const WORKFLOW: &[&str] = &["active", "deleted"];

/// Namespaces served by the emulator.
pub const NAMESPACES: &[&str] = &["canvas", "canvas_logs", "catalog", "new_quizzes"];

const ACCOUNTS: TableDef = TableDef::new(
    "canvas",
    "accounts",
    12,
    2,
    &[
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
);

const COURSES: TableDef = TableDef::new(
    "canvas",
    "courses",
    40,
    3,
    &[
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
);

const USERS: TableDef = TableDef::new(
    "canvas",
    "users",
    100,
    2,
    &[
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
);

const ENROLLMENTS: TableDef = TableDef::new(
    "canvas",
    "enrollments",
    150,
    1,
    &[
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
);

const SUBMISSIONS: TableDef = TableDef::new(
    "canvas",
    "submissions",
    200,
    4,
    &[
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
);

const ASSIGNMENTS: TableDef = TableDef::new(
    "canvas",
    "assignments",
    60,
    2,
    &[
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
);

const QUIZZES: TableDef = TableDef::new(
    "canvas",
    "quizzes",
    30,
    1,
    &[
        req("title", Str(255)),
        opt("description", Text),
        req(
            "quiz_type",
            Enum(&["assignment", "practice_quiz", "graded_survey", "survey"]),
        ),
        opt("points_possible", Float),
        opt("time_limit", Int32),
        req("context_id", Int),
    ],
);

const DISCUSSION_TOPICS: TableDef = TableDef::new(
    "canvas",
    "discussion_topics",
    40,
    1,
    &[
        opt("title", Str(255)),
        opt("message", Text),
        req("context_id", Int),
        req("discussion_type", Enum(&["side_comment", "threaded"])),
        opt("pinned", Bool),
    ],
);

const PSEUDONYMS: TableDef = TableDef::new(
    "canvas",
    "pseudonyms",
    100,
    1,
    &[
        req("user_id", Int),
        req("unique_id", Str(255)),
        opt("sis_user_id", Str(255)),
        opt("last_login_at", Timestamp),
        req("workflow_state", Enum(WORKFLOW)),
    ],
);

const COURSE_SECTIONS: TableDef = TableDef::new(
    "canvas",
    "course_sections",
    50,
    1,
    &[
        req("name", Str(255)),
        req("course_id", Int),
        opt("start_at", Timestamp),
        opt("end_at", Timestamp),
        req("workflow_state", Enum(WORKFLOW)),
    ],
);

const WEB_LOGS: TableDef = TableDef::new(
    "canvas_logs",
    "web_logs",
    200,
    1,
    &[
        req("request_id", Str(36)),
        req("timestamp", Timestamp),
        opt("user_id", Int),
        opt("course_id", Int),
        req("url", Text),
        req("http_method", Enum(&["GET", "POST", "PUT", "DELETE"])),
        opt("http_status", Int32),
        opt("user_agent", Str(255)),
        opt("participated", Bool),
    ],
);

const CATALOGS: TableDef = TableDef::new(
    "catalog",
    "catalogs",
    5,
    1,
    &[
        req("name", Str(255)),
        opt("url", Str(255)),
        req("currency", Enum(&["USD", "EUR", "HUF"])),
    ],
);

const PRODUCTS: TableDef = TableDef::new(
    "catalog",
    "products",
    40,
    1,
    &[
        req("title", Str(255)),
        opt("description", Text),
        opt("price", Float),
        req("catalog_id", Int),
        req("visibility", Enum(&["listed", "unlisted"])),
    ],
);

const CATALOG_ENROLLMENTS: TableDef = TableDef::new(
    "catalog",
    "enrollments",
    80,
    1,
    &[
        req("product_id", Int),
        opt("user_email", Str(255)),
        req("status", Enum(&["pending", "active", "completed"])),
        req("created_at", Timestamp),
    ],
);

/// All tables of all namespaces.
pub const TABLES: &[TableDef] = &[
    ACCOUNTS,
    COURSES,
    USERS,
    ENROLLMENTS,
    SUBMISSIONS,
    ASSIGNMENTS,
    QUIZZES,
    DISCUSSION_TOPICS,
    PSEUDONYMS,
    COURSE_SECTIONS,
    WEB_LOGS,
    CATALOGS,
    PRODUCTS,
    CATALOG_ENROLLMENTS,
    new_quizzes::QUIZ_SESSIONS,
    new_quizzes::ITEMS,
    new_quizzes::ITEM_ANALYSES,
    new_quizzes::QUIZ_SETTINGS,
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
