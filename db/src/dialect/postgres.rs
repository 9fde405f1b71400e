//! PostgreSQL, laid out exactly as the official client lays it out: a schema per
//! namespace, enumeration types `<namespace>.<table>__<column>`, primary keys
//! `pk_<table>`, comments from the schema's titles, and the meta tables in schema
//! `instructure_dap`.

use crate::dialect::{Dialect, META_NAMESPACE, quote_ident, quote_literal};
use crate::model::{Column, ColumnType, EnumType, TableModel};

/// The PostgreSQL dialect.
#[derive(Debug, Clone, Copy, Default)]
pub struct Postgres;

/// The comments of `table_sync`'s columns, as the official client writes them.
pub(crate) const TABLE_SYNC_COMMENTS: &[(&str, &str)] = &[
    (
        "source_namespace",
        "The namespace of the source table exposed by DAP API (e.g. `canvas`).",
    ),
    (
        "source_table",
        "The name of the source table exposed by DAP API (e.g. `accounts`).",
    ),
    (
        "timestamp",
        "The timestamp of the source table that can be used by the client library in incremental queries during subsequent `syncdb` command executions.",
    ),
    (
        "schema_version",
        "The latest schema version of the source table at the time point when it was last initialized or synchronized with the DAP API.",
    ),
    (
        "target_schema",
        "The name of the target schema in the local database if applicable (e.g. in case of a PostgreSQL database the tables can be grouped into schemas).",
    ),
    (
        "target_table",
        "The name of the target table in the local database. In might differ from the name of the source table. For example in case of a MySQL database, the tables cannot be grouped in schemas. In this case, the implementor can use a prefix that reflects the namespace of the source table. For example, the qualified name `canvas.accounts` would become `canvas__accounts`.",
    ),
    (
        "schema_description_format",
        "The format of the schema descriptor (e.g. `json`).",
    ),
    (
        "schema_description",
        "The latest schema descriptor of the source table at the time point when it was initialized or last synchronized.",
    ),
];

/// The comment of `instructure_dap.table_sync`.
pub const TABLE_SYNC_COMMENT: &str =
    "Table for storing meta-information about tables managed by the client library.";
/// The comment of `instructure_dap.database_version`.
pub const DATABASE_VERSION_COMMENT: &str =
    "Table for storing meta-information about the database schema version.";
/// The layout version the official client 2.3.1 writes to `database_version`.
pub const LAYOUT_VERSION: i64 = 1;

impl Postgres {
    fn column_def(&self, model: &TableModel, c: &Column) -> String {
        let mut def = super::typed_column(self, model, c);
        if let Some(d) = c
            .default
            .as_ref()
            .and_then(|d| super::default_literal(&c.ty, d, quote_literal))
        {
            def.push_str(" DEFAULT ");
            def.push_str(&d);
        }
        if !c.nullable {
            def.push_str(" NOT NULL");
        }
        def
    }

    fn table_of(&self, model: &TableModel) -> String {
        self.qualified(&model.namespace, &model.table)
    }
}

impl Dialect for Postgres {
    fn name(&self) -> &'static str {
        "postgresql"
    }

    fn ident(&self, name: &str) -> String {
        quote_ident(name)
    }

    fn qualified(&self, namespace: &str, name: &str) -> String {
        format!("{}.{}", quote_ident(namespace), quote_ident(name))
    }

    fn column_type(&self, namespace: &str, ty: &ColumnType) -> String {
        match ty {
            ColumnType::SmallInt => "smallint".to_owned(),
            ColumnType::Int => "integer".to_owned(),
            ColumnType::BigInt => "bigint".to_owned(),
            ColumnType::Real => "real".to_owned(),
            ColumnType::Double => "double precision".to_owned(),
            ColumnType::Decimal { precision, scale } => format!("numeric({precision},{scale})"),
            ColumnType::Boolean => "boolean".to_owned(),
            ColumnType::Varchar(Some(n)) => format!("character varying({n})"),
            ColumnType::Varchar(None) => "text".to_owned(),
            ColumnType::Char(n) => format!("character({n})"),
            ColumnType::Enum(name) => self.qualified(namespace, name),
            ColumnType::Timestamp => "timestamp without time zone".to_owned(),
            ColumnType::Date => "date".to_owned(),
            ColumnType::Time => "time without time zone".to_owned(),
            ColumnType::Interval => "interval".to_owned(),
            ColumnType::Uuid => "uuid".to_owned(),
            ColumnType::Inet => "inet".to_owned(),
            ColumnType::Json => "jsonb".to_owned(),
            ColumnType::Array(item) => format!("{}[]", self.column_type(namespace, item)),
        }
    }

    fn create_meta(&self) -> Vec<String> {
        let ns = quote_ident(META_NAMESPACE);
        let sync = self.qualified(META_NAMESPACE, "table_sync");
        let version = self.qualified(META_NAMESPACE, "database_version");
        let mut out = vec![
            format!("CREATE SCHEMA IF NOT EXISTS {ns}"),
            format!(
                "CREATE TABLE IF NOT EXISTS {version} (\n\"version\" bigint GENERATED BY DEFAULT AS IDENTITY,\n\
                 CONSTRAINT \"pk_database_version\" PRIMARY KEY (\"version\")\n)"
            ),
            format!(
                "COMMENT ON TABLE {version} IS {}",
                quote_literal(DATABASE_VERSION_COMMENT)
            ),
            format!(
                "COMMENT ON COLUMN {version}.\"version\" IS {}",
                quote_literal("The version of the database schema.")
            ),
            format!(
                "CREATE TABLE IF NOT EXISTS {sync} (\n\"id\" bigint GENERATED BY DEFAULT AS IDENTITY,\n\
                 \"source_namespace\" varchar(64) NOT NULL,\n\"source_table\" varchar(64) NOT NULL,\n\
                 \"timestamp\" timestamp NOT NULL,\n\"schema_version\" bigint NOT NULL,\n\
                 \"target_schema\" varchar(64),\n\"target_table\" varchar(64) NOT NULL,\n\
                 \"schema_description_format\" varchar(64) NOT NULL,\n\"schema_description\" text NOT NULL,\n\
                 CONSTRAINT \"pk_table_sync\" PRIMARY KEY (\"id\")\n)"
            ),
            format!(
                "COMMENT ON TABLE {sync} IS {}",
                quote_literal(TABLE_SYNC_COMMENT)
            ),
        ];
        out.extend(TABLE_SYNC_COMMENTS.iter().map(|(col, text)| {
            format!(
                "COMMENT ON COLUMN {sync}.{} IS {}",
                quote_ident(col),
                quote_literal(text)
            )
        }));
        out.push(format!(
            "INSERT INTO {version} (\"version\") SELECT {LAYOUT_VERSION} \
             WHERE NOT EXISTS (SELECT 1 FROM {version})"
        ));
        out
    }

    fn create_namespace(&self, namespace: &str) -> Option<String> {
        Some(format!(
            "CREATE SCHEMA IF NOT EXISTS {}",
            quote_ident(namespace)
        ))
    }

    fn create_enum(&self, namespace: &str, e: &EnumType) -> Option<String> {
        let values: Vec<String> = e.values.iter().map(|v| quote_literal(v)).collect();
        Some(format!(
            "CREATE TYPE {} AS ENUM ({})",
            self.qualified(namespace, &e.name),
            values.join(", ")
        ))
    }

    fn add_enum_value(&self, namespace: &str, type_name: &str, value: &str) -> Option<String> {
        Some(format!(
            "ALTER TYPE {} ADD VALUE IF NOT EXISTS {}",
            self.qualified(namespace, type_name),
            quote_literal(value)
        ))
    }

    fn create_table(&self, model: &TableModel, name: &str, pk_name: &str) -> Vec<String> {
        let table = self.qualified(&model.namespace, name);
        let mut defs: Vec<String> = model
            .columns
            .iter()
            .map(|c| self.column_def(model, c))
            .collect();
        defs.push(format!(
            "CONSTRAINT {} PRIMARY KEY ({})",
            quote_ident(pk_name),
            quote_ident(&model.primary_key)
        ));
        let mut out = vec![
            format!(
                "CREATE SCHEMA IF NOT EXISTS {}",
                quote_ident(&model.namespace)
            ),
            format!("CREATE TABLE {table} (\n{}\n)", defs.join(",\n")),
        ];
        if let Some(comment) = &model.comment {
            out.push(format!(
                "COMMENT ON TABLE {table} IS {}",
                quote_literal(comment)
            ));
        }
        for c in &model.columns {
            if let Some(comment) = &c.comment {
                out.push(format!(
                    "COMMENT ON COLUMN {table}.{} IS {}",
                    quote_ident(&c.name),
                    quote_literal(comment)
                ));
            }
        }
        out
    }

    fn add_column(&self, model: &TableModel, column: &Column) -> Vec<String> {
        let table = self.table_of(model);
        let mut out = vec![format!(
            "ALTER TABLE {table} ADD COLUMN {}",
            self.column_def(model, column)
        )];
        out.extend(self.comment_column(model, column));
        out
    }

    fn alter_column_type(&self, model: &TableModel, column: &Column) -> String {
        let ty = self.column_type(&model.namespace, &column.ty);
        let name = quote_ident(&column.name);
        // Through text, so that any type (an enumeration included) converts.
        format!(
            "ALTER TABLE {} ALTER COLUMN {name} SET DATA TYPE {ty} USING {name}::text::{ty}",
            self.table_of(model)
        )
    }

    fn set_nullable(&self, model: &TableModel, column: &str, nullable: bool) -> String {
        format!(
            "ALTER TABLE {} ALTER COLUMN {} {} NOT NULL",
            self.table_of(model),
            quote_ident(column),
            if nullable { "DROP" } else { "SET" }
        )
    }

    fn comment_column(&self, model: &TableModel, column: &Column) -> Option<String> {
        Some(format!(
            "COMMENT ON COLUMN {}.{} IS {}",
            self.table_of(model),
            quote_ident(&column.name),
            column
                .comment
                .as_deref()
                .map_or_else(|| "NULL".to_owned(), quote_literal)
        ))
    }

    fn comment_table(&self, model: &TableModel) -> Option<String> {
        Some(format!(
            "COMMENT ON TABLE {} IS {}",
            self.table_of(model),
            model
                .comment
                .as_deref()
                .map_or_else(|| "NULL".to_owned(), quote_literal)
        ))
    }

    fn rename_table(
        &self,
        namespace: &str,
        from: &str,
        to: &str,
        from_pk: &str,
        to_pk: &str,
    ) -> Vec<String> {
        let new = self.qualified(namespace, to);
        vec![
            format!(
                "ALTER TABLE {} RENAME TO {}",
                self.qualified(namespace, from),
                quote_ident(to)
            ),
            format!(
                "ALTER TABLE {new} RENAME CONSTRAINT {} TO {}",
                quote_ident(from_pk),
                quote_ident(to_pk)
            ),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::tests::model;

    #[test]
    fn column_types_as_the_catalog_spells_them() {
        let pg = Postgres;
        let m = model();
        let got: Vec<String> = m
            .columns
            .iter()
            .map(|c| pg.column_type("canvas", &c.ty))
            .collect();
        assert_eq!(
            got,
            [
                "bigint",
                "character varying(255)",
                "text",
                "\"canvas\".\"accounts__state\"",
                "smallint",
                "integer",
                "double precision",
                "real",
                "numeric(5,2)",
                "timestamp without time zone",
                "date",
                "uuid",
                "jsonb",
                "jsonb",
                "text[]",
                "\"canvas\".\"accounts__kinds\"[]",
                "jsonb",
                "boolean",
            ]
        );
    }

    #[test]
    fn create_table_statement() {
        let stmts = Postgres.create_table(&model(), "accounts", "pk_accounts");
        assert_eq!(stmts[0], "CREATE SCHEMA IF NOT EXISTS \"canvas\"");
        assert!(stmts[1].starts_with("CREATE TABLE \"canvas\".\"accounts\" (\n\"id\" bigint NOT NULL,\n\"name\" character varying(255) NOT NULL,\n\"body\" text,\n"));
        assert!(stmts[1].contains("\"flag\" boolean DEFAULT false,\n"));
        assert!(stmts[1].ends_with("CONSTRAINT \"pk_accounts\" PRIMARY KEY (\"id\")\n)"));
        assert_eq!(
            stmts[2],
            "COMMENT ON TABLE \"canvas\".\"accounts\" IS 'Accounts.\n\nAll accounts.'"
        );
        assert!(
            stmts.contains(
                &"COMMENT ON COLUMN \"canvas\".\"accounts\".\"name\" IS 'Name.'".to_owned()
            )
        );
    }

    #[test]
    fn enums_and_migrations() {
        let pg = Postgres;
        let m = model();
        assert_eq!(
            pg.create_enum("canvas", &m.enums[0]).unwrap(),
            "CREATE TYPE \"canvas\".\"accounts__state\" AS ENUM ('active', 'deleted')"
        );
        assert_eq!(
            pg.add_enum_value("canvas", "accounts__state", "it's")
                .unwrap(),
            "ALTER TYPE \"canvas\".\"accounts__state\" ADD VALUE IF NOT EXISTS 'it''s'"
        );
        let col = m.column("count").unwrap();
        assert_eq!(
            pg.alter_column_type(&m, col),
            "ALTER TABLE \"canvas\".\"accounts\" ALTER COLUMN \"count\" SET DATA TYPE integer USING \"count\"::text::integer"
        );
        assert_eq!(
            pg.set_nullable(&m, "name", true),
            "ALTER TABLE \"canvas\".\"accounts\" ALTER COLUMN \"name\" DROP NOT NULL"
        );
        assert_eq!(
            pg.rename_table(
                "canvas",
                "accounts__dap_new",
                "accounts",
                "pk_x",
                "pk_accounts"
            )[1],
            "ALTER TABLE \"canvas\".\"accounts\" RENAME CONSTRAINT \"pk_x\" TO \"pk_accounts\""
        );
    }

    #[test]
    fn meta_tables_record_layout_version_once() {
        let stmts = Postgres.create_meta();
        assert!(
            stmts
                .iter()
                .any(|s| s.contains("\"timestamp\" timestamp NOT NULL"))
        );
        assert!(stmts.last().unwrap().contains("WHERE NOT EXISTS"));
    }
}
