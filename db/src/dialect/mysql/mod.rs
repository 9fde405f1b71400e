//! MySQL and MariaDB, laid out exactly as the official client lays them out (read from
//! `SHOW CREATE TABLE` after its `initdb` into MariaDB 10.11):
//!
//! * No schemas: a table is `<namespace>__<table>`, the meta tables are
//!   `instructure_dap__table_sync` and `instructure_dap__database_version`.
//! * Enumerations are inline: `enum('a','b') CHARACTER SET ascii COLLATE ascii_bin`.
//! * `bigint`, `int`, `smallint`; booleans `tinyint` (0/1); floating point `double`;
//!   `datetime` without fractional seconds (UTC); bounded strings `varchar(N)`, other
//!   strings `mediumtext`; JSON objects and arrays `json`; UUIDs `binary(16)`.
//! * Comments keep the first line of the schema's title or description.
//! * The primary key is unnamed (MySQL ignores a primary key constraint's name).
//!
//! The table's character set is the database's; the driver asks for `utf8mb4` where the
//! database has another default ([`MySql::create_table_in`]). Values are checked and
//! reshaped for `LOAD DATA` by [`cell`].

pub mod cell;

use crate::dialect::{Dialect, META_NAMESPACE};
use crate::model::{Column, ColumnType, TableModel};

/// The MySQL/MariaDB dialect.
#[derive(Debug, Clone, Copy, Default)]
pub struct MySql;

/// The longest identifier MySQL accepts.
pub const MAX_IDENT: usize = 64;
/// The longest column comment MySQL accepts.
const MAX_COLUMN_COMMENT: usize = 1024;
/// The longest table comment MySQL accepts.
const MAX_TABLE_COMMENT: usize = 2048;

/// A backquoted identifier.
pub fn quote_ident(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

/// A string literal, for a session with backslash escapes (the default `sql_mode`).
pub fn quote_literal(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "''"))
}

/// The bare name of a table in a namespace (`canvas__accounts`).
pub fn table_name(namespace: &str, table: &str) -> String {
    format!("{namespace}__{table}")
}

/// The bare name of a work table beside `namespace.table` (a new copy being built, an
/// old copy being dropped): `<namespace>__<table>__<suffix>`, or a hashed name where
/// that would be longer than MySQL allows.
pub fn work_table(namespace: &str, table: &str, suffix: &str) -> String {
    let name = format!("{namespace}__{table}__{suffix}");
    if name.len() <= MAX_IDENT {
        return name;
    }
    format!("dap_{suffix}_{:016x}", fnv1a(&name))
}

/// FNV-1a, for short stable names.
pub(crate) fn fnv1a(text: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The first line of a comment, at most `max` characters; `None` when empty.
fn first_line(text: &str, max: usize) -> Option<String> {
    let line = text.lines().next().unwrap_or("");
    let line: String = line.chars().take(max).collect();
    (!line.is_empty()).then_some(line)
}

fn sync_comment(column: &str) -> String {
    super::postgres::TABLE_SYNC_COMMENTS
        .iter()
        .find(|(c, _)| *c == column)
        .map(|(_, text)| format!(" COMMENT {}", quote_literal(text)))
        .unwrap_or_default()
}

impl MySql {
    /// The definition of a column: type, NOT NULL, default, comment.
    pub fn column_def(&self, model: &TableModel, c: &Column) -> String {
        self.column_def_as(model, c, c.nullable)
    }

    fn column_def_as(&self, model: &TableModel, c: &Column, nullable: bool) -> String {
        let mut def = format!("{} {}", quote_ident(&c.name), self.type_in(model, &c.ty));
        if matches!(c.ty, ColumnType::Enum(_)) {
            def.push_str(" CHARACTER SET ascii COLLATE ascii_bin");
        }
        if !nullable {
            def.push_str(" NOT NULL");
        }
        if let Some(d) = c
            .default
            .as_ref()
            .and_then(|d| super::default_literal(&c.ty, d, quote_literal))
        {
            def.push_str(" DEFAULT ");
            def.push_str(&d);
        }
        if let Some(comment) = self.stored_comment(c.comment.as_deref()) {
            def.push_str(" COMMENT ");
            def.push_str(&quote_literal(&comment));
        }
        def
    }

    /// `CREATE TABLE` for `model` under the bare name `name`; with `utf8mb4`, the table
    /// asks for that character set (for a database whose default is another one).
    pub fn create_table_in(&self, model: &TableModel, name: &str, utf8mb4: bool) -> String {
        let mut defs: Vec<String> = model
            .columns
            .iter()
            .map(|c| self.column_def(model, c))
            .collect();
        defs.push(format!("PRIMARY KEY ({})", quote_ident(&model.primary_key)));
        let mut out = format!(
            "CREATE TABLE {} (\n{}\n)",
            quote_ident(name),
            defs.join(",\n")
        );
        if utf8mb4 {
            out.push_str(" DEFAULT CHARACTER SET utf8mb4");
        }
        if let Some(comment) = first_line(model.comment.as_deref().unwrap_or(""), MAX_TABLE_COMMENT)
        {
            out.push_str(" COMMENT = ");
            out.push_str(&quote_literal(&comment));
        }
        out
    }

    fn table_of(&self, model: &TableModel) -> String {
        self.qualified(&model.namespace, &model.table)
    }

    fn modify(&self, model: &TableModel, column: &Column, nullable: bool) -> String {
        format!(
            "ALTER TABLE {} MODIFY COLUMN {}",
            self.table_of(model),
            self.column_def_as(model, column, nullable)
        )
    }
}

/// `enum('a','b')` of a table's enumeration type.
fn enum_type(model: &TableModel, name: &str) -> String {
    let values: Vec<String> = model
        .enums
        .iter()
        .find(|e| e.name == name)
        .map(|e| e.values.iter().map(|v| quote_literal(v)).collect())
        .unwrap_or_default();
    format!("enum({})", values.join(","))
}

/// A column type as `information_schema.COLUMNS.COLUMN_TYPE` reports it, spelled as
/// [`MySql::type_in`] writes it: integer display widths dropped (MariaDB and MySQL 5.7
/// show `bigint(20)`), and MariaDB's `longtext` (its `json`) as `json`.
pub fn catalog_type(column_type: &str) -> String {
    let (head, rest) = match column_type.find('(') {
        Some(i) => (&column_type[..i], &column_type[i..]),
        None => (column_type, ""),
    };
    let head = head.trim().to_ascii_lowercase();
    match head.as_str() {
        "tinyint" | "smallint" | "mediumint" | "int" | "bigint" => {
            let after = rest.find(')').map_or("", |i| &rest[i + 1..]);
            format!("{head}{}", after.to_ascii_lowercase())
        }
        "longtext" => "json".to_owned(),
        _ => format!("{head}{rest}"),
    }
}

impl Dialect for MySql {
    fn name(&self) -> &'static str {
        "mysql"
    }

    fn ident(&self, name: &str) -> String {
        quote_ident(name)
    }

    fn literal(&self, value: &str) -> String {
        quote_literal(value)
    }

    fn qualified(&self, namespace: &str, name: &str) -> String {
        quote_ident(&table_name(namespace, name))
    }

    fn column_type(&self, _namespace: &str, ty: &ColumnType) -> String {
        match ty {
            ColumnType::SmallInt => "smallint".to_owned(),
            ColumnType::Int => "int".to_owned(),
            ColumnType::BigInt => "bigint".to_owned(),
            ColumnType::Real | ColumnType::Double => "double".to_owned(),
            ColumnType::Decimal { precision, scale } => format!("decimal({precision},{scale})"),
            ColumnType::Boolean => "tinyint".to_owned(),
            ColumnType::Varchar(Some(n)) if *n < 65_536 => format!("varchar({n})"),
            ColumnType::Varchar(_) => "mediumtext".to_owned(),
            ColumnType::Char(n) => format!("char({n})"),
            // Only [`Dialect::type_in`] knows the values.
            ColumnType::Enum(_) => "enum".to_owned(),
            ColumnType::Timestamp => "datetime".to_owned(),
            ColumnType::Date => "date".to_owned(),
            ColumnType::Time => "time".to_owned(),
            ColumnType::Interval => "varchar(64)".to_owned(),
            ColumnType::Uuid => "binary(16)".to_owned(),
            ColumnType::Inet => "varbinary(16)".to_owned(),
            ColumnType::Json | ColumnType::Array(_) => "json".to_owned(),
        }
    }

    fn type_in(&self, model: &TableModel, ty: &ColumnType) -> String {
        match ty {
            ColumnType::Enum(name) => enum_type(model, name),
            other => self.column_type(&model.namespace, other),
        }
    }

    fn stored_comment(&self, comment: Option<&str>) -> Option<String> {
        first_line(comment?, MAX_COLUMN_COMMENT)
    }

    fn create_meta(&self) -> Vec<String> {
        let sync = self.qualified(META_NAMESPACE, "table_sync");
        let version = self.qualified(META_NAMESPACE, "database_version");
        let col = |name: &str, def: &str| format!("`{name}` {def}{}", sync_comment(name));
        let sync_columns = [
            "`id` bigint NOT NULL AUTO_INCREMENT".to_owned(),
            col("source_namespace", "varchar(64) NOT NULL"),
            col("source_table", "varchar(64) NOT NULL"),
            col("timestamp", "datetime NOT NULL"),
            col("schema_version", "bigint NOT NULL"),
            col("target_schema", "varchar(64)"),
            col("target_table", "varchar(64) NOT NULL"),
            col("schema_description_format", "varchar(64) NOT NULL"),
            col("schema_description", "mediumtext NOT NULL"),
            "PRIMARY KEY (`id`)".to_owned(),
        ];
        vec![
            format!(
                "CREATE TABLE IF NOT EXISTS {version} (\n`version` bigint NOT NULL AUTO_INCREMENT \
                 COMMENT 'The version of the database schema.',\nPRIMARY KEY (`version`)\n) COMMENT = {}",
                quote_literal(super::postgres::DATABASE_VERSION_COMMENT)
            ),
            format!(
                "CREATE TABLE IF NOT EXISTS {sync} (\n{}\n) COMMENT = {}",
                sync_columns.join(",\n"),
                quote_literal(super::postgres::TABLE_SYNC_COMMENT)
            ),
            format!(
                "INSERT INTO {version} (`version`) SELECT {} FROM DUAL \
                 WHERE NOT EXISTS (SELECT 1 FROM {version})",
                super::postgres::LAYOUT_VERSION
            ),
        ]
    }

    fn create_table(&self, model: &TableModel, name: &str, _pk_name: &str) -> Vec<String> {
        vec![self.create_table_in(model, &table_name(&model.namespace, name), false)]
    }

    fn add_column(&self, model: &TableModel, column: &Column) -> Vec<String> {
        vec![format!(
            "ALTER TABLE {} ADD COLUMN {}",
            self.table_of(model),
            self.column_def(model, column)
        )]
    }

    fn alter_column_type(&self, model: &TableModel, column: &Column) -> String {
        self.modify(model, column, column.nullable)
    }

    fn set_nullable(&self, model: &TableModel, column: &str, nullable: bool) -> String {
        match model.column(column) {
            Some(c) => self.modify(model, c, nullable),
            None => String::new(),
        }
    }

    fn comment_column(&self, model: &TableModel, column: &Column) -> Option<String> {
        Some(self.modify(model, column, column.nullable))
    }

    fn comment_table(&self, model: &TableModel) -> Option<String> {
        let comment = first_line(model.comment.as_deref().unwrap_or(""), MAX_TABLE_COMMENT);
        Some(format!(
            "ALTER TABLE {} COMMENT = {}",
            self.table_of(model),
            quote_literal(comment.as_deref().unwrap_or(""))
        ))
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
            "RENAME TABLE {} TO {}",
            self.qualified(namespace, from),
            self.qualified(namespace, to)
        )]
    }
}

/// `LOAD DATA LOCAL INFILE` of one object into the bare table `table`, for `columns`
/// (already in `LOAD DATA`'s text format: tab-separated, backslash escapes, `\N` for
/// NULL, UTF-8). `replace`: a later row replaces an earlier one with the same key.
pub fn load_data(table: &str, columns: &[String], replace: bool, object: usize) -> String {
    let cols: Vec<String> = columns.iter().map(|c| quote_ident(c)).collect();
    format!(
        "LOAD DATA LOCAL INFILE 'dap-object-{object}' {}INTO TABLE {} CHARACTER SET utf8mb4 \
         FIELDS TERMINATED BY '\\t' ENCLOSED BY '' ESCAPED BY '\\\\' \
         LINES TERMINATED BY '\\n' STARTING BY '' ({})",
        if replace { "REPLACE " } else { "" },
        quote_ident(table),
        cols.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::tests::model;

    #[test]
    fn column_types_as_the_official_client_writes_them() {
        let m = model();
        let got: Vec<String> = m.columns.iter().map(|c| MySql.type_in(&m, &c.ty)).collect();
        assert_eq!(
            got,
            [
                "bigint",
                "varchar(255)",
                "mediumtext",
                "enum('active','deleted')",
                "smallint",
                "int",
                "double",
                "double",
                "decimal(5,2)",
                "datetime",
                "date",
                "binary(16)",
                "json",
                "json",
                "json",
                "json",
                "json",
                "tinyint",
            ]
        );
    }

    #[test]
    fn create_table_matches_the_official_layout() {
        let m = model();
        let stmt = MySql.create_table(&m, "accounts", "pk_accounts").remove(0);
        assert!(stmt.starts_with(
            "CREATE TABLE `canvas__accounts` (\n`id` bigint NOT NULL COMMENT 'Key.',\n\
             `name` varchar(255) NOT NULL COMMENT 'Name.',\n`body` mediumtext COMMENT 'Body text.',\n\
             `state` enum('active','deleted') CHARACTER SET ascii COLLATE ascii_bin NOT NULL,\n"
        ), "{stmt}");
        assert!(stmt.contains("`flag` tinyint DEFAULT false,\n"), "{stmt}");
        // The first line of the title and description.
        assert!(
            stmt.ends_with("PRIMARY KEY (`id`)\n) COMMENT = 'Accounts.'"),
            "{stmt}"
        );
        assert!(
            MySql
                .create_table_in(&m, "x", true)
                .contains(") DEFAULT CHARACTER SET utf8mb4 COMMENT")
        );
    }

    #[test]
    fn comments_keep_their_first_line() {
        assert_eq!(
            MySql.stored_comment(Some("One.\n\nTwo.")).as_deref(),
            Some("One.")
        );
        assert_eq!(MySql.stored_comment(Some("")), None);
        assert_eq!(MySql.stored_comment(None), None);
        let long = "x".repeat(2000);
        assert_eq!(MySql.stored_comment(Some(&long)).unwrap().len(), 1024);
        assert_eq!(quote_literal("it's a \\ back"), "'it''s a \\\\ back'");
    }

    #[test]
    fn catalog_types_compare_equal() {
        assert_eq!(catalog_type("bigint(20)"), "bigint");
        assert_eq!(catalog_type("tinyint(4)"), "tinyint");
        assert_eq!(catalog_type("int(11)"), "int");
        assert_eq!(catalog_type("longtext"), "json");
        assert_eq!(catalog_type("varchar(255)"), "varchar(255)");
        assert_eq!(catalog_type("enum('A','b')"), "enum('A','b')");
        assert_eq!(catalog_type("double"), "double");
    }

    #[test]
    fn migrations_modify_whole_columns() {
        let m = model();
        let name = m.column("name").unwrap();
        assert_eq!(
            MySql.set_nullable(&m, "name", true),
            "ALTER TABLE `canvas__accounts` MODIFY COLUMN `name` varchar(255) COMMENT 'Name.'"
        );
        assert_eq!(
            MySql.alter_column_type(&m, name),
            "ALTER TABLE `canvas__accounts` MODIFY COLUMN `name` varchar(255) NOT NULL COMMENT 'Name.'"
        );
        assert_eq!(
            MySql.comment_table(&m).unwrap(),
            "ALTER TABLE `canvas__accounts` COMMENT = 'Accounts.'"
        );
        assert_eq!(
            MySql.rename_table("canvas", "a", "b", "", ""),
            ["RENAME TABLE `canvas__a` TO `canvas__b`"]
        );
        assert!(MySql.add_enum_value("canvas", "t", "v").is_none());
    }

    #[test]
    fn meta_tables() {
        let stmts = MySql.create_meta();
        assert!(
            stmts[0].starts_with("CREATE TABLE IF NOT EXISTS `instructure_dap__database_version`")
        );
        assert!(stmts[1].contains("`timestamp` datetime NOT NULL COMMENT 'The timestamp"));
        assert!(stmts[1].contains("`schema_description` mediumtext NOT NULL COMMENT"));
        assert!(stmts[2].contains("WHERE NOT EXISTS"));
    }

    #[test]
    fn work_tables_fit_mysql_names() {
        assert_eq!(
            work_table("canvas", "users", "dap_new"),
            "canvas__users__dap_new"
        );
        let long = work_table("canvas", &"t".repeat(60), "dap_new");
        assert!(
            long.len() <= MAX_IDENT && long.starts_with("dap_dap_new_"),
            "{long}"
        );
    }

    #[test]
    fn load_data_statement() {
        assert_eq!(
            load_data("canvas__t", &["id".to_owned(), "a`b".to_owned()], true, 2),
            "LOAD DATA LOCAL INFILE 'dap-object-2' REPLACE INTO TABLE `canvas__t` CHARACTER SET utf8mb4 \
             FIELDS TERMINATED BY '\\t' ENCLOSED BY '' ESCAPED BY '\\\\' LINES TERMINATED BY '\\n' \
             STARTING BY '' (`id`, `a``b`)"
        );
    }
}
