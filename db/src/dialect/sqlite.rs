//! SQLite, the embedded default: one file, no server.
//!
//! SQLite has no schemas, enumeration types or comments. Tables are named
//! `<namespace>__<table>` (as the official client names them on MySQL), the meta tables
//! `instructure_dap__table_sync` and `instructure_dap__database_version` with the same
//! columns as on PostgreSQL. Values are stored as SQLite's own types: integers and
//! booleans (0/1) as INTEGER, floating point as REAL, everything else as TEXT:
//! timestamps as `YYYY-MM-DD HH:MM:SS[.ffffff]` (UTC), JSON and arrays as JSON text.
//! Enumerations are TEXT, so a new value needs no change. SQLite cannot change a
//! column's type or nullability in place: those changes rebuild the table.

use crate::dialect::{Dialect, META_NAMESPACE, quote_ident, quote_literal};
use crate::model::{Column, ColumnType, TableModel};

/// The SQLite dialect.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sqlite;

impl Sqlite {
    fn column_def(&self, model: &TableModel, c: &Column, with_pk: Option<&str>) -> String {
        let mut def = super::typed_column(self, model, c);
        if !c.nullable {
            def.push_str(" NOT NULL");
        }
        if with_pk == Some(c.name.as_str()) {
            def.push_str(" PRIMARY KEY");
        }
        def
    }
}

impl Dialect for Sqlite {
    fn name(&self) -> &'static str {
        "sqlite"
    }

    fn ident(&self, name: &str) -> String {
        quote_ident(name)
    }

    fn qualified(&self, namespace: &str, name: &str) -> String {
        quote_ident(&format!("{namespace}__{name}"))
    }

    fn column_type(&self, _namespace: &str, ty: &ColumnType) -> String {
        match ty {
            ColumnType::SmallInt => "SMALLINT".to_owned(),
            ColumnType::Int => "INTEGER".to_owned(),
            ColumnType::BigInt => "BIGINT".to_owned(),
            ColumnType::Real | ColumnType::Double => "REAL".to_owned(),
            ColumnType::Decimal { precision, scale } => format!("DECIMAL({precision},{scale})"),
            ColumnType::Boolean => "BOOLEAN".to_owned(),
            ColumnType::Varchar(Some(n)) => format!("VARCHAR({n})"),
            ColumnType::Char(n) => format!("CHAR({n})"),
            ColumnType::Timestamp => "TIMESTAMP".to_owned(),
            ColumnType::Date => "DATE".to_owned(),
            ColumnType::Time => "TIME".to_owned(),
            ColumnType::Varchar(None)
            | ColumnType::Enum(_)
            | ColumnType::Interval
            | ColumnType::Uuid
            | ColumnType::Inet
            | ColumnType::Json
            | ColumnType::Array(_) => "TEXT".to_owned(),
        }
    }

    fn create_meta(&self) -> Vec<String> {
        let sync = self.qualified(META_NAMESPACE, "table_sync");
        let version = self.qualified(META_NAMESPACE, "database_version");
        vec![
            format!("CREATE TABLE IF NOT EXISTS {version} (\"version\" INTEGER PRIMARY KEY)"),
            format!(
                "CREATE TABLE IF NOT EXISTS {sync} (\n\"id\" INTEGER PRIMARY KEY AUTOINCREMENT,\n\
                 \"source_namespace\" VARCHAR(64) NOT NULL,\n\"source_table\" VARCHAR(64) NOT NULL,\n\
                 \"timestamp\" TIMESTAMP NOT NULL,\n\"schema_version\" BIGINT NOT NULL,\n\
                 \"target_schema\" VARCHAR(64),\n\"target_table\" VARCHAR(64) NOT NULL,\n\
                 \"schema_description_format\" VARCHAR(64) NOT NULL,\n\"schema_description\" TEXT NOT NULL\n)"
            ),
            format!(
                "INSERT INTO {version} (\"version\") SELECT {} WHERE NOT EXISTS (SELECT 1 FROM {version})",
                super::postgres::LAYOUT_VERSION
            ),
        ]
    }

    fn create_table(&self, model: &TableModel, name: &str, _pk_name: &str) -> Vec<String> {
        let defs: Vec<String> = model
            .columns
            .iter()
            .map(|c| self.column_def(model, c, Some(&model.primary_key)))
            .collect();
        vec![format!(
            "CREATE TABLE {} (\n{}\n)",
            self.qualified(&model.namespace, name),
            defs.join(",\n")
        )]
    }

    fn add_column(&self, model: &TableModel, column: &Column) -> Vec<String> {
        // SQLite refuses to add a NOT NULL column without a default; the planner
        // rebuilds the table instead, so the column is added nullable here.
        let mut column = column.clone();
        column.nullable = true;
        vec![format!(
            "ALTER TABLE {} ADD COLUMN {}",
            self.qualified(&model.namespace, &model.table),
            self.column_def(model, &column, None)
        )]
    }

    fn alter_column_type(&self, _model: &TableModel, _column: &Column) -> String {
        // Never planned for SQLite (see `supports_alter_column`): the table is rebuilt.
        String::new()
    }

    fn set_nullable(&self, _model: &TableModel, _column: &str, _nullable: bool) -> String {
        String::new()
    }

    fn comment_column(&self, _model: &TableModel, _column: &Column) -> Option<String> {
        None
    }

    fn comment_table(&self, _model: &TableModel) -> Option<String> {
        None
    }

    fn rename_table(
        &self,
        namespace: &str,
        from: &str,
        to: &str,
        _from_pk: &str,
        _to_pk: &str,
    ) -> Vec<String> {
        vec![format!(
            "ALTER TABLE {} RENAME TO {}",
            self.qualified(namespace, from),
            self.qualified(namespace, to)
        )]
    }

    fn literal(&self, value: &str) -> String {
        quote_literal(value)
    }

    fn supports_alter_column(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::tests::model;

    #[test]
    fn tables_are_prefixed_by_namespace() {
        let stmts = Sqlite.create_table(&model(), "accounts", "pk_accounts");
        assert!(stmts[0].starts_with(
            "CREATE TABLE \"canvas__accounts\" (\n\"id\" BIGINT NOT NULL PRIMARY KEY,\n\"name\" VARCHAR(255) NOT NULL,\n"
        ));
        assert!(stmts[0].contains("\"settings\" TEXT,"));
        assert_eq!(
            Sqlite.qualified(META_NAMESPACE, "table_sync"),
            "\"instructure_dap__table_sync\""
        );
    }

    #[test]
    fn added_columns_are_nullable() {
        let m = model();
        let stmts = Sqlite.add_column(&m, m.column("name").unwrap());
        assert_eq!(
            stmts,
            ["ALTER TABLE \"canvas__accounts\" ADD COLUMN \"name\" VARCHAR(255)"]
        );
    }
}
