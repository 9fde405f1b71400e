//! A DAP table's JSON Schema read into columns: the one place that decides the logical
//! type, nullability, comment and order of every column, and the enumeration types a
//! table needs.
//!
//! The rules follow the official client (its `strong_typing` and `pysqlsync` code), so
//! that both clients lay a table out the same way:
//! * The schema's `key` and `value` objects are flattened into columns, key first; `meta`
//!   is not stored. The first key property is the primary key.
//! * A property is nullable unless its object lists it in `required`. A property with a
//!   `default` moves after those without one (and the column gets that default).
//! * A column's comment is its `title`, or else its `description`. The table's is the
//!   schema's `title`, followed by a blank line and the `description` when both exist.
//! * Strings: a `const` is a fixed-width string; then `format` (`date-time`, `date`,
//!   `time`, `duration`, `uuid`, `ipv4` and `ipv6`), then `enum` (an enumeration type
//!   named `<table>__<column>`), then `maxLength` (a bounded string), else unbounded text.
//! * Integers by `format` (`int16`, `int32`, `int64`), else by the range of `enum` or
//!   `minimum`..`maximum`, else 64 bits. Numbers: `float32`, `float64`, a decimal when
//!   `exclusiveMinimum`/`exclusiveMaximum` and `multipleOf` give its digits, else
//!   64-bit floating point.
//! * An object becomes one JSON column; the enumerations inside an object with
//!   `properties` still get their types (`<table>__<column>__<field>`), as in the
//!   official layout. An object without `properties` (`additionalProperties: true`) is
//!   a JSON column too.
//! * An array of simple values becomes an array of that type; an array of objects or of
//!   arrays becomes a JSON column.

use std::fmt;

use crate::json::Json;

/// Where a column comes from in DAP's records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// A `key` field (`key.<name>` in TSV).
    Key,
    /// A `value` field (`value.<name>` in TSV).
    Value,
}

/// The logical type of a column; each dialect maps it to its own SQL type.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ColumnType {
    /// 16-bit integer.
    SmallInt,
    /// 32-bit integer.
    Int,
    /// 64-bit integer.
    BigInt,
    /// 32-bit floating point.
    Real,
    /// 64-bit floating point.
    Double,
    /// Fixed-point decimal.
    Decimal {
        /// Total digits.
        precision: u32,
        /// Digits after the point.
        scale: u32,
    },
    /// Boolean.
    Boolean,
    /// A string, bounded to `Some(n)` characters or unbounded.
    Varchar(Option<u32>),
    /// A fixed-width string (a schema `const`).
    Char(u32),
    /// A string enumeration: the name of its type (`<table>__<column>`).
    Enum(String),
    /// Date and time, UTC, without a zone.
    Timestamp,
    /// A date.
    Date,
    /// A time of day.
    Time,
    /// A duration.
    Interval,
    /// A UUID.
    Uuid,
    /// An IPv4 or IPv6 address.
    Inet,
    /// A JSON document (objects, and arrays that are not of simple values).
    Json,
    /// An array of a simple type.
    Array(Box<Self>),
}

/// A column of a replicated table.
#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    /// Column name (the property name).
    pub name: String,
    /// Logical type.
    pub ty: ColumnType,
    /// Whether NULL is allowed.
    pub nullable: bool,
    /// Comment (title or description).
    pub comment: Option<String>,
    /// A default value from the schema.
    pub default: Option<Json>,
    /// Key or value.
    pub part: Part,
}

impl Column {
    /// The TSV header label of the column (`key.id`, `value.name`).
    pub fn label(&self) -> String {
        match self.part {
            Part::Key => format!("key.{}", self.name),
            Part::Value => format!("value.{}", self.name),
        }
    }
}

/// An enumeration type a table needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnumType {
    /// Type name without the namespace (`accounts__workflow_state`).
    pub name: String,
    /// Values in schema order.
    pub values: Vec<String>,
}

/// A table as DAP describes it, ready for DDL.
#[derive(Debug, Clone, PartialEq)]
pub struct TableModel {
    /// DAP namespace (`canvas`).
    pub namespace: String,
    /// DAP table name (`accounts`).
    pub table: String,
    /// Table comment.
    pub comment: Option<String>,
    /// Columns in table order.
    pub columns: Vec<Column>,
    /// The primary key column.
    pub primary_key: String,
    /// Enumeration types, in the order the schema defines them.
    pub enums: Vec<EnumType>,
    /// DAP's schema version.
    pub schema_version: u64,
    /// The schema without `meta`, compact: `table_sync.schema_description`.
    pub schema_description: String,
}

impl TableModel {
    /// The column named `name`.
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }

    /// The primary key column.
    pub fn key_column(&self) -> Option<&Column> {
        self.column(&self.primary_key)
    }

    /// The column a TSV header label names.
    pub fn column_for_label(&self, label: &str) -> Option<&Column> {
        let (part, name) = if let Some(n) = label.strip_prefix("key.") {
            (Part::Key, n)
        } else if let Some(n) = label.strip_prefix("value.") {
            (Part::Value, n)
        } else {
            return None;
        };
        self.columns
            .iter()
            .find(|c| c.part == part && c.name == name)
    }
}

/// A schema this crate cannot turn into a table.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the schema of table {table} cannot be replicated: {reason}")]
pub struct SchemaError {
    /// `namespace.table`.
    pub table: String,
    /// What is wrong, naming the property.
    pub reason: String,
}

impl TableModel {
    /// Reads the JSON Schema text of `namespace.table` (as the schema endpoint returns
    /// it) at `version`.
    pub fn from_schema(
        namespace: &str,
        table: &str,
        schema_text: &str,
        version: u64,
    ) -> Result<Self, SchemaError> {
        let fail = |reason: String| SchemaError {
            table: format!("{namespace}.{table}"),
            reason,
        };
        let mut schema =
            Json::parse(schema_text).map_err(|e| fail(format!("it is not valid JSON ({e})")))?;
        if let Some(props) = schema.get_mut("properties") {
            props.remove("meta");
        }
        let schema_description = schema.to_compact();
        let props = schema
            .get("properties")
            .filter(|p| matches!(p, Json::Object(_)))
            .ok_or_else(|| fail("it has no `properties` object".to_owned()))?;
        let key = props
            .get("key")
            .ok_or_else(|| fail("it has no `key` property".to_owned()))?;
        let primary_key = key
            .get("properties")
            .and_then(|p| p.members().first())
            .map(|(k, _)| k.clone())
            .ok_or_else(|| fail("its `key` object has no properties".to_owned()))?;
        let mut builder = Builder {
            table,
            enums: Vec::new(),
        };
        let mut columns = Vec::new();
        for (name, node) in props.members() {
            let part = if name == "key" {
                Part::Key
            } else {
                Part::Value
            };
            let is_object = node.get("type").and_then(Json::as_str) == Some("object");
            match node.get("properties") {
                Some(inner) if is_object => {
                    let required = required_of(node);
                    for (field, field_node) in inner.members() {
                        let mut column = builder
                            .column(field, field_node, required.contains(&field.as_str()), part)
                            .map_err(&fail)?;
                        if part == Part::Key && *field == primary_key {
                            column.nullable = false;
                        }
                        columns.push(column);
                    }
                }
                _ => {
                    let required = required_of(&schema);
                    columns.push(
                        builder
                            .column(name, node, required.contains(&name.as_str()), Part::Value)
                            .map_err(&fail)?,
                    );
                }
            }
        }
        // Fields with a default move behind the others, keeping their order.
        columns.sort_by_key(|c| c.default.is_some());
        Ok(Self {
            namespace: namespace.to_owned(),
            table: table.to_owned(),
            comment: description(&schema),
            columns,
            primary_key,
            enums: builder.enums,
            schema_version: version,
            schema_description,
        })
    }
}

fn required_of(node: &Json) -> Vec<&str> {
    node.get("required")
        .map(|r| r.elements().iter().filter_map(Json::as_str).collect())
        .unwrap_or_default()
}

/// `title`, plus `description` after a blank line when both are present.
fn description(node: &Json) -> Option<String> {
    let title = node.get("title").and_then(Json::as_str);
    let desc = node.get("description").and_then(Json::as_str);
    match (title, desc) {
        (Some(t), Some(d)) => Some(format!("{t}\n\n{d}")),
        (Some(t), None) => Some(t.to_owned()),
        _ => None,
    }
}

struct Builder<'a> {
    table: &'a str,
    enums: Vec<EnumType>,
}

impl Builder<'_> {
    fn column(
        &mut self,
        name: &str,
        node: &Json,
        required: bool,
        part: Part,
    ) -> Result<Column, String> {
        let context = format!("{}__{name}", self.table);
        let ty = self.type_of(&context, node)?;
        Ok(Column {
            name: name.to_owned(),
            ty,
            nullable: !required,
            comment: node
                .get("title")
                .or_else(|| node.get("description"))
                .and_then(Json::as_str)
                .map(str::to_owned),
            default: node.get("default").filter(|d| **d != Json::Null).cloned(),
            part,
        })
    }

    fn type_of(&mut self, context: &str, node: &Json) -> Result<ColumnType, String> {
        let kind = node.get("type").and_then(Json::as_str);
        let format = node.get("format").and_then(Json::as_str);
        match kind {
            Some("boolean") => Ok(ColumnType::Boolean),
            Some("integer") => Ok(integer_type(node, format)),
            Some("number") => Ok(number_type(node, format)),
            Some("string") => Ok(self.string_type(context, node, format)),
            Some("array") => {
                let items = node.get("items").unwrap_or(&Json::Null);
                let item = self.type_of(context, items)?;
                Ok(match item {
                    ColumnType::Json | ColumnType::Array(_) => ColumnType::Json,
                    simple => ColumnType::Array(Box::new(simple)),
                })
            }
            Some("object") => {
                if let Some(props) = node.get("properties") {
                    for (field, field_node) in props.members() {
                        // Only the enumeration types inside matter; the object is JSON.
                        self.type_of(&format!("{context}__{field}"), field_node)?;
                    }
                }
                Ok(ColumnType::Json)
            }
            Some(other) => Err(format!(
                "property `{}` has the unsupported type `{other}`",
                property_of(context)
            )),
            None => Err(format!(
                "property `{}` has no `type` (unions and references are not supported)",
                property_of(context)
            )),
        }
    }

    fn string_type(&mut self, context: &str, node: &Json, format: Option<&str>) -> ColumnType {
        if let Some(c) = node.get("const").and_then(Json::as_str) {
            return ColumnType::Char(u32::try_from(c.chars().count()).unwrap_or(u32::MAX));
        }
        match format {
            Some("date-time") => return ColumnType::Timestamp,
            Some("date") => return ColumnType::Date,
            Some("time") => return ColumnType::Time,
            Some("duration") => return ColumnType::Interval,
            Some("uuid") => return ColumnType::Uuid,
            Some("ipv4" | "ipv6") => return ColumnType::Inet,
            _ => {}
        }
        if let Some(values) = node.get("enum") {
            let values: Vec<String> = values
                .elements()
                .iter()
                .filter_map(Json::as_str)
                .map(str::to_owned)
                .collect();
            if !self.enums.iter().any(|e| e.name == context) {
                self.enums.push(EnumType {
                    name: context.to_owned(),
                    values,
                });
            }
            return ColumnType::Enum(context.to_owned());
        }
        match node.get("maxLength").and_then(Json::as_i64) {
            Some(n) => ColumnType::Varchar(Some(u32::try_from(n.max(1)).unwrap_or(u32::MAX))),
            None => ColumnType::Varchar(None),
        }
    }
}

/// The property path a type context names (`accounts__settings__x` -> `settings.x`).
fn property_of(context: &str) -> String {
    context.split("__").skip(1).collect::<Vec<_>>().join(".")
}

fn integer_type(node: &Json, format: Option<&str>) -> ColumnType {
    match format {
        Some("int16") => return ColumnType::SmallInt,
        Some("int32") => return ColumnType::Int,
        Some("int64") => return ColumnType::BigInt,
        _ => {}
    }
    let range = match node.get("enum") {
        Some(values) => {
            let ints: Vec<i64> = values.elements().iter().filter_map(Json::as_i64).collect();
            ints.iter()
                .min()
                .zip(ints.iter().max())
                .map(|(a, b)| (*a, *b))
        }
        None => node
            .get("minimum")
            .and_then(Json::as_i64)
            .zip(node.get("maximum").and_then(Json::as_i64)),
    };
    match range {
        Some((lo, hi)) if lo >= -(1 << 15) && hi < (1 << 15) => ColumnType::SmallInt,
        Some((lo, hi)) if lo >= -(1 << 31) && hi < (1 << 31) => ColumnType::Int,
        _ => ColumnType::BigInt,
    }
}

fn number_type(node: &Json, format: Option<&str>) -> ColumnType {
    match format {
        Some("float32") => return ColumnType::Real,
        Some("float64") => return ColumnType::Double,
        _ => {}
    }
    let lo = node.get("exclusiveMinimum").and_then(Json::as_f64);
    let hi = node.get("exclusiveMaximum").and_then(Json::as_f64);
    let integer_digits = match (lo, hi) {
        (Some(lo), Some(hi)) if lo == -hi && hi > 0.0 => Some(hi.log10().round()),
        _ => None,
    };
    let decimal_digits = node
        .get("multipleOf")
        .and_then(Json::as_f64)
        .filter(|m| *m > 0.0)
        .map(|m| -(m.log10().round()));
    match (integer_digits, decimal_digits) {
        (Some(i), Some(d)) if i >= 0.0 && d >= 0.0 && i + d <= 1000.0 => ColumnType::Decimal {
            // Both are small whole numbers here.
            precision: (i + d) as u32,
            scale: d as u32,
        },
        _ => ColumnType::Double,
    }
}

impl fmt::Display for ColumnType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::SmallInt => f.write_str("int16"),
            Self::Int => f.write_str("int32"),
            Self::BigInt => f.write_str("int64"),
            Self::Real => f.write_str("float32"),
            Self::Double => f.write_str("float64"),
            Self::Decimal { precision, scale } => write!(f, "decimal({precision}, {scale})"),
            Self::Boolean => f.write_str("boolean"),
            Self::Varchar(Some(n)) => write!(f, "string(max {n})"),
            Self::Varchar(None) => f.write_str("string"),
            Self::Char(n) => write!(f, "char({n})"),
            Self::Enum(name) => write!(f, "enum {name}"),
            Self::Timestamp => f.write_str("date-time"),
            Self::Date => f.write_str("date"),
            Self::Time => f.write_str("time"),
            Self::Interval => f.write_str("duration"),
            Self::Uuid => f.write_str("uuid"),
            Self::Inet => f.write_str("ip address"),
            Self::Json => f.write_str("json"),
            Self::Array(item) => write!(f, "array of {item}"),
        }
    }
}

/// A value's text in one canonical spelling per type, so that copies held by different
/// databases (or DAP's own TSV) compare equal: timestamps as RFC 3339 UTC, numbers as
/// the shortest round-trip text, booleans as `true`/`false`, JSON re-serialised.
/// Text that does not parse is returned as it is.
pub fn canonical(ty: &ColumnType, text: &str) -> String {
    match ty {
        ColumnType::Timestamp => {
            let t = text.trim();
            t.parse::<jiff::Timestamp>()
                .ok()
                .or_else(|| {
                    t.replace(' ', "T")
                        .parse::<jiff::civil::DateTime>()
                        .ok()
                        .and_then(|d| d.to_zoned_datetime(jiff::tz::TimeZone::UTC).ok())
                        .map(|z| z.timestamp())
                })
                .map_or_else(|| text.to_owned(), |ts| ts.to_string())
        }
        ColumnType::Real | ColumnType::Double => text
            .trim()
            .parse::<f64>()
            .map_or_else(|_| text.to_owned(), |f| f.to_string()),
        ColumnType::Boolean => match text.trim() {
            "t" | "true" | "1" => "true".to_owned(),
            "f" | "false" | "0" => "false".to_owned(),
            _ => text.to_owned(),
        },
        ColumnType::Json | ColumnType::Array(_) => serde_json::from_str::<serde_json::Value>(text)
            .map_or_else(|_| text.to_owned(), |v| v.to_string()),
        _ => text.to_owned(),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A schema shaped like DAP's, covering every type rule.
    pub(crate) const SCHEMA: &str = r#"{
      "$schema": "https://json-schema.org/draft/2020-12/schema",
      "type": "object",
      "title": "Accounts.",
      "description": "All accounts.",
      "properties": {
        "key": {"type": "object", "properties": {"id": {"type": "integer", "format": "int64", "title": "Key."}},
                "additionalProperties": false, "required": ["id"]},
        "value": {"type": "object", "additionalProperties": false,
          "required": ["name", "state", "created_at"],
          "properties": {
            "name": {"type": "string", "maxLength": 255, "title": "Name."},
            "body": {"type": "string", "description": "Body text."},
            "state": {"type": "string", "enum": ["active", "deleted"]},
            "small": {"type": "integer", "enum": [1, 2, 3]},
            "count": {"type": "integer", "format": "int32"},
            "score": {"type": "number", "format": "float64"},
            "ratio": {"type": "number", "format": "float32"},
            "price": {"type": "number", "exclusiveMinimum": -1000, "exclusiveMaximum": 1000, "multipleOf": 0.01},
            "flag": {"type": "boolean", "default": false},
            "created_at": {"type": "string", "format": "date-time"},
            "day": {"type": "string", "format": "date"},
            "uid": {"type": "string", "format": "uuid"},
            "settings": {"type": "object", "additionalProperties": false,
              "properties": {"mode": {"type": "string", "enum": ["a", "b"]}}},
            "extra": {"type": "object", "additionalProperties": true},
            "tags": {"type": "array", "items": {"type": "string"}},
            "kinds": {"type": "array", "items": {"type": "string", "enum": ["x", "y"]}},
            "items": {"type": "array", "items": {"type": "object", "properties": {}}}
          }},
        "meta": {"type": "object", "properties": {"ts": {"type": "string", "format": "date-time"}}}
      },
      "additionalProperties": false,
      "required": ["key", "meta"]
    }"#;

    pub(crate) fn model() -> TableModel {
        TableModel::from_schema("canvas", "accounts", SCHEMA, 3).unwrap()
    }

    #[test]
    fn columns_in_order_with_types() {
        let m = model();
        let got: Vec<(String, ColumnType, bool)> = m
            .columns
            .iter()
            .map(|c| (c.name.clone(), c.ty.clone(), c.nullable))
            .collect();
        let e = |n: &str| ColumnType::Enum(n.to_owned());
        let want = vec![
            ("id", ColumnType::BigInt, false),
            ("name", ColumnType::Varchar(Some(255)), false),
            ("body", ColumnType::Varchar(None), true),
            ("state", e("accounts__state"), false),
            ("small", ColumnType::SmallInt, true),
            ("count", ColumnType::Int, true),
            ("score", ColumnType::Double, true),
            ("ratio", ColumnType::Real, true),
            (
                "price",
                ColumnType::Decimal {
                    precision: 5,
                    scale: 2,
                },
                true,
            ),
            ("created_at", ColumnType::Timestamp, false),
            ("day", ColumnType::Date, true),
            ("uid", ColumnType::Uuid, true),
            ("settings", ColumnType::Json, true),
            ("extra", ColumnType::Json, true),
            (
                "tags",
                ColumnType::Array(Box::new(ColumnType::Varchar(None))),
                true,
            ),
            (
                "kinds",
                ColumnType::Array(Box::new(e("accounts__kinds"))),
                true,
            ),
            ("items", ColumnType::Json, true),
            // A default moves the column last.
            ("flag", ColumnType::Boolean, true),
        ];
        let want: Vec<(String, ColumnType, bool)> = want
            .into_iter()
            .map(|(n, t, b)| (n.to_owned(), t, b))
            .collect();
        assert_eq!(got, want);
        assert_eq!(m.primary_key, "id");
    }

    #[test]
    fn enums_include_nested_objects() {
        let names: Vec<String> = model().enums.iter().map(|e| e.name.clone()).collect();
        assert_eq!(
            names,
            [
                "accounts__state",
                "accounts__settings__mode",
                "accounts__kinds"
            ]
        );
    }

    #[test]
    fn comments_and_description() {
        let m = model();
        assert_eq!(m.comment.as_deref(), Some("Accounts.\n\nAll accounts."));
        assert_eq!(m.column("name").unwrap().comment.as_deref(), Some("Name."));
        assert_eq!(
            m.column("body").unwrap().comment.as_deref(),
            Some("Body text.")
        );
        assert_eq!(m.column("state").unwrap().comment, None);
    }

    #[test]
    fn schema_description_drops_meta_and_keeps_order() {
        let m = model();
        assert!(!m.schema_description.contains("\"meta\":"));
        assert!(m.schema_description.starts_with(
            r#"{"$schema":"https://json-schema.org/draft/2020-12/schema","type":"object","title":"Accounts.""#
        ));
    }

    #[test]
    fn labels_map_to_columns() {
        let m = model();
        assert_eq!(m.column_for_label("key.id").unwrap().name, "id");
        assert_eq!(m.column_for_label("value.name").unwrap().name, "name");
        assert!(m.column_for_label("value.id").is_none());
        assert!(m.column_for_label("meta.ts").is_none());
    }

    #[test]
    fn refuses_what_it_cannot_map() {
        let bad = r#"{"type":"object","properties":{"key":{"type":"object","properties":{"id":{"type":"integer"}}},
            "value":{"type":"object","properties":{"u":{"oneOf":[{"type":"string"},{"type":"integer"}]}}}}}"#;
        let e = TableModel::from_schema("canvas", "t", bad, 1).unwrap_err();
        assert!(e.to_string().contains("`u`"), "{e}");
        let e = TableModel::from_schema("canvas", "t", "{", 1).unwrap_err();
        assert!(e.to_string().contains("not valid JSON"));
        let e = TableModel::from_schema("canvas", "t", r#"{"properties":{}}"#, 1).unwrap_err();
        assert!(e.to_string().contains("`key`"));
    }

    #[test]
    fn integer_ranges() {
        let t = |s: &str| integer_type(&Json::parse(s).unwrap(), None);
        assert_eq!(t(r#"{"minimum":0,"maximum":40000}"#), ColumnType::Int);
        assert_eq!(t(r#"{"minimum":0,"maximum":100}"#), ColumnType::SmallInt);
        assert_eq!(
            t(r#"{"minimum":0,"maximum":3000000000}"#),
            ColumnType::BigInt
        );
        assert_eq!(t(r#"{}"#), ColumnType::BigInt);
    }
}
