//! SQL dialects: names, types and statement text, as pure functions.
//!
//! A [`Dialect`] turns the decisions of [`crate::plan`] and [`crate::migrate`] into SQL
//! text for one database family; a driver executes that text. Nothing here touches a
//! connection, so the layout each dialect produces is unit-tested statement by
//! statement. MySQL/MariaDB lays tables out as `<namespace>__<table>` with inline
//! `ENUM(...)` columns, so its column types depend on the table ([`Dialect::type_in`]).

pub mod mysql;
pub mod postgres;
pub mod sqlite;

use crate::model::{Column, ColumnType, EnumType, TableModel};

pub use mysql::MySql;
pub use postgres::Postgres;
pub use sqlite::Sqlite;

/// Name of the meta namespace (`instructure_dap`), as the official client names it.
pub const META_NAMESPACE: &str = "instructure_dap";

/// One dialect's SQL.
pub trait Dialect: Send + Sync + std::fmt::Debug {
    /// The dialect's name as connection strings and the official client name it
    /// (`postgresql`, `mysql`, `sqlite`).
    fn name(&self) -> &'static str;

    /// A quoted identifier.
    fn ident(&self, name: &str) -> String;

    /// A quoted string literal.
    fn literal(&self, value: &str) -> String {
        format!("'{}'", value.replace('\'', "''"))
    }

    /// The qualified, quoted name of a table (or of a type) in a namespace.
    fn qualified(&self, namespace: &str, name: &str) -> String;

    /// A column type, spelled as the catalog reports it, so that a layout read back
    /// from the database compares equal to the one this dialect creates.
    fn column_type(&self, namespace: &str, ty: &ColumnType) -> String;

    /// A column type of `model`'s table: [`Dialect::column_type`], except where the
    /// type depends on the table (MySQL spells an enumeration's values inline).
    fn type_in(&self, model: &TableModel, ty: &ColumnType) -> String {
        self.column_type(&model.namespace, ty)
    }

    /// A comment as the database keeps it (MySQL keeps the first line, at most 1024
    /// characters), so that a comment read back compares equal.
    fn stored_comment(&self, comment: Option<&str>) -> Option<String> {
        comment.map(str::to_owned)
    }

    /// Statements that create the meta tables (`table_sync`, `database_version`) when
    /// they are missing and record the layout version; safe to run every time.
    fn create_meta(&self) -> Vec<String>;

    /// Creates a namespace if it is missing, where the dialect has namespaces (by
    /// default it has none: tables are named `<namespace>__<table>`).
    fn create_namespace(&self, namespace: &str) -> Option<String> {
        let _ = namespace;
        None
    }

    /// `CREATE TYPE` for an enumeration, where the dialect has such types (by default it
    /// has none).
    fn create_enum(&self, namespace: &str, e: &EnumType) -> Option<String> {
        let _ = (namespace, e);
        None
    }

    /// Adds one value at the end of an enumeration type, where the dialect has them (by
    /// default it has none: a new value changes the column's type, and the layout's
    /// diff does that).
    fn add_enum_value(&self, namespace: &str, type_name: &str, value: &str) -> Option<String> {
        let _ = (namespace, type_name, value);
        None
    }

    /// `CREATE TABLE` (with comments) for `model`, named `name` in its namespace, its
    /// primary key constraint named `pk_name`.
    fn create_table(&self, model: &TableModel, name: &str, pk_name: &str) -> Vec<String>;

    /// Adds a column.
    fn add_column(&self, model: &TableModel, column: &Column) -> Vec<String>;

    /// Drops a column.
    fn drop_column(&self, model: &TableModel, name: &str) -> String {
        format!(
            "ALTER TABLE {} DROP COLUMN {}",
            self.qualified(&model.namespace, &model.table),
            self.ident(name)
        )
    }

    /// Changes a column's type, converting its values.
    fn alter_column_type(&self, model: &TableModel, column: &Column) -> String;

    /// Makes a column nullable (`nullable`) or NOT NULL.
    fn set_nullable(&self, model: &TableModel, column: &str, nullable: bool) -> String;

    /// Sets (or clears) a column's comment; `None` where comments do not exist.
    fn comment_column(&self, model: &TableModel, column: &Column) -> Option<String>;

    /// Sets (or clears) the table's comment.
    fn comment_table(&self, model: &TableModel) -> Option<String>;

    /// Drops a table of `namespace` if it exists.
    fn drop_table(&self, namespace: &str, name: &str) -> String {
        format!("DROP TABLE IF EXISTS {}", self.qualified(namespace, name))
    }

    /// Whether a column's type and nullability can be changed in place; when not, such
    /// a change rebuilds the table.
    fn supports_alter_column(&self) -> bool {
        true
    }

    /// Renames a table within its namespace, and its primary key constraint from
    /// `from_pk` to `to_pk`.
    fn rename_table(
        &self,
        namespace: &str,
        from: &str,
        to: &str,
        from_pk: &str,
        to_pk: &str,
    ) -> Vec<String>;
}

/// The column definitions of a staging table for `model`: the arrival number (of
/// type `seq_type`), the action, and every column of the table, all nullable.
pub fn stage_columns(
    dialect: &dyn Dialect,
    model: &TableModel,
    seq_type: &str,
    text_type: &str,
) -> Vec<String> {
    let mut defs = vec![
        format!("{} {seq_type}", quote_ident(crate::tsv::SEQ_COLUMN)),
        format!("{} {text_type}", quote_ident(crate::tsv::ACTION_COLUMN)),
    ];
    defs.extend(
        model
            .columns
            .iter()
            .map(|c| typed_column(dialect, model, c)),
    );
    defs
}

/// `"name" type` of a column.
pub(crate) fn typed_column(dialect: &dyn Dialect, model: &TableModel, c: &Column) -> String {
    format!("{} {}", quote_ident(&c.name), dialect.type_in(model, &c.ty))
}

/// The quoted table columns among a load's data columns (the action left out).
pub fn data_columns(columns: &[String]) -> Vec<String> {
    columns
        .iter()
        .filter(|c| *c != crate::tsv::ACTION_COLUMN)
        .map(|c| quote_ident(c))
        .collect()
}

/// A schema default as a SQL literal (strings through `quote`), for the types where one
/// is meaningful.
pub(crate) fn default_literal(
    ty: &ColumnType,
    value: &crate::json::Json,
    quote: fn(&str) -> String,
) -> Option<String> {
    use crate::json::Json;
    match (ty, value) {
        (ColumnType::Boolean, Json::Bool(b)) => Some(b.to_string()),
        (
            ColumnType::SmallInt
            | ColumnType::Int
            | ColumnType::BigInt
            | ColumnType::Real
            | ColumnType::Double
            | ColumnType::Decimal { .. },
            Json::Number(n),
        ) => Some(n.to_string()),
        (_, Json::String(s)) => Some(quote(s)),
        _ => None,
    }
}

/// The primary key constraint name of a table, as the official client names it.
pub fn pk_name(table: &str) -> String {
    format!("pk_{table}")
}

/// The name a table is built under before it replaces `table` in one transaction.
pub fn shadow_name(table: &str) -> String {
    format!("{table}__dap_new")
}

/// A string literal for SQL with standard-conforming strings (quotes doubled).
pub(crate) fn quote_literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// A double-quoted identifier.
pub(crate) fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(quote_literal("O'Brien"), "'O''Brien'");
        assert_eq!(pk_name("accounts"), "pk_accounts");
    }
}
