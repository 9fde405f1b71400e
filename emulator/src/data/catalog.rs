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

/// The value columns of a table, in order: `name: Type` is required, `name?: Type`
/// nullable (expands to [`req`] and [`opt`] calls, so it works in `const` items).
macro_rules! cols {
    (@ [$($done:expr,)*]) => { &[$($done),*] };
    (@ [$($done:expr,)*] $col:ident ?: $ty:expr $(, $($rest:tt)*)?) => {
        cols!(@ [$($done,)* $crate::data::catalog::opt(stringify!($col), $ty),] $($($rest)*)?)
    };
    (@ [$($done:expr,)*] $col:ident : $ty:expr $(, $($rest:tt)*)?) => {
        cols!(@ [$($done,)* $crate::data::catalog::req(stringify!($col), $ty),] $($($rest)*)?)
    };
    ($($cols:tt)*) => { cols!(@ [] $($cols)*) };
}
pub(crate) use cols;

/// A [`TableDef`] constant: `NAME = namespace.table, ROWS rows, schema VERSION
/// [, N changes] { columns }`, the columns as [`cols!`] takes them.
macro_rules! table_def {
    (
        $(#[$doc:meta])* $vis:vis $name:ident = $ns:ident.$table:ident,
        $rows:literal rows, schema $version:literal $(, $changes:literal changes)?
        { $($cols:tt)* }
    ) => {
        $(#[$doc])*
        $vis const $name: $crate::data::catalog::TableDef = $crate::data::catalog::TableDef::new(
            stringify!($ns),
            stringify!($table),
            $rows,
            $version,
            $crate::data::catalog::cols!($($cols)*),
        )
        $(.changes($changes))?;
    };
}
pub(crate) use table_def;

use FieldType::{Bool, Enum, Float, Int, Int32, Object, Str, Text, Timestamp};

const WORKFLOW: &[&str] = &["active", "deleted"];

/// Namespaces served by the emulator.
pub const NAMESPACES: &[&str] = &["canvas", "canvas_logs", "catalog", "new_quizzes"];

table_def! {
    ACCOUNTS = canvas.accounts, 12 rows, schema 2 {
        name: Str(255), uuid: Str(36), parent_account_id?: Int, root_account_id?: Int,
        workflow_state: Enum(&["active", "deleted", "suspended"]),
        sis_source_id?: Str(255),
        default_time_zone: Enum(&["America/Denver", "Europe/Budapest", "Etc/UTC"]),
        created_at: Timestamp, updated_at: Timestamp,
    }
}

table_def! {
    COURSES = canvas.courses, 40 rows, schema 3 {
        name: Str(255), course_code?: Str(255), account_id: Int,
        workflow_state: Enum(&["created", "claimed", "available", "completed", "deleted"]),
        is_public?: Bool, start_at?: Timestamp,
        settings?: Object(cols! {
            allow_student_forum_attachments?: Bool, hide_final_grades?: Bool,
            syllabus_visibility?: Enum(&["public", "course"]),
        }),
        created_at: Timestamp,
    }
}

table_def! {
    USERS = canvas.users, 100 rows, schema 2 {
        name: Str(255), sortable_name?: Str(255), short_name?: Str(255),
        locale?: Enum(&["en", "hu", "de", "ja"]),
        workflow_state: Enum(&["registered", "pre_registered", "deleted"]),
        created_at: Timestamp,
    }
}

table_def! {
    ENROLLMENTS = canvas.enrollments, 150 rows, schema 1 {
        user_id: Int, course_id: Int,
        type: Enum(&[
            "StudentEnrollment", "TeacherEnrollment", "TaEnrollment", "ObserverEnrollment",
        ]),
        workflow_state: Enum(&["active", "invited", "completed", "deleted"]),
        sis_batch_id?: Str(255), created_at: Timestamp,
    }
}

table_def! {
    SUBMISSIONS = canvas.submissions, 200 rows, schema 4 {
        assignment_id: Int, user_id: Int, body?: Text, grade?: Str(255), score?: Float,
        submitted_at?: Timestamp,
        workflow_state: Enum(&["submitted", "graded", "unsubmitted", "pending_review"]),
        late?: Bool,
    }
}

table_def! {
    ASSIGNMENTS = canvas.assignments, 60 rows, schema 2 {
        title: Str(255), description?: Text, points_possible?: Float, due_at?: Timestamp,
        context_id: Int, submission_types?: Str(255),
        workflow_state: Enum(&["published", "unpublished", "deleted"]),
    }
}

table_def! {
    QUIZZES = canvas.quizzes, 30 rows, schema 1 {
        title: Str(255), description?: Text,
        quiz_type: Enum(&["assignment", "practice_quiz", "graded_survey", "survey"]),
        points_possible?: Float, time_limit?: Int32, context_id: Int,
    }
}

table_def! {
    DISCUSSION_TOPICS = canvas.discussion_topics, 40 rows, schema 1 {
        title?: Str(255), message?: Text, context_id: Int,
        discussion_type: Enum(&["side_comment", "threaded"]), pinned?: Bool,
    }
}

table_def! {
    PSEUDONYMS = canvas.pseudonyms, 100 rows, schema 1 {
        user_id: Int, unique_id: Str(255), sis_user_id?: Str(255),
        last_login_at?: Timestamp, workflow_state: Enum(WORKFLOW),
    }
}

table_def! {
    COURSE_SECTIONS = canvas.course_sections, 50 rows, schema 1 {
        name: Str(255), course_id: Int, start_at?: Timestamp, end_at?: Timestamp,
        workflow_state: Enum(WORKFLOW),
    }
}

table_def! {
    WEB_LOGS = canvas_logs.web_logs, 200 rows, schema 1 {
        request_id: Str(36), timestamp: Timestamp, user_id?: Int, course_id?: Int, url: Text,
        http_method: Enum(&["GET", "POST", "PUT", "DELETE"]), http_status?: Int32,
        user_agent?: Str(255), participated?: Bool,
    }
}

table_def! {
    CATALOGS = catalog.catalogs, 5 rows, schema 1 {
        name: Str(255), url?: Str(255), currency: Enum(&["USD", "EUR", "HUF"]),
    }
}

table_def! {
    PRODUCTS = catalog.products, 40 rows, schema 1 {
        title: Str(255), description?: Text, price?: Float, catalog_id: Int,
        visibility: Enum(&["listed", "unlisted"]),
    }
}

table_def! {
    CATALOG_ENROLLMENTS = catalog.enrollments, 80 rows, schema 1 {
        product_id: Int, user_email?: Str(255),
        status: Enum(&["pending", "active", "completed"]), created_at: Timestamp,
    }
}

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
