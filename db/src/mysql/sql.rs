//! The MySQL statements of a load and of the meta table, built from the plan; pure and
//! unit-tested. Sessions run with `ANSI_QUOTES`, as the official client's do, so the
//! shared helpers' double-quoted names work beside MySQL's backquoted ones.

use crate::dialect::mysql::{quote_ident, table_name};
use crate::dialect::{Dialect, META_NAMESPACE, MySql, data_columns};
use crate::model::TableModel;
use crate::tsv::ACTION_COLUMN;

/// The session settings of every connection: the official client's SQL mode, UTC, and
/// UTF-8 with 4-byte characters.
pub(crate) const SESSION_SETUP: &[&str] = &[
    "SET SESSION sql_mode = 'ANSI_QUOTES,NO_AUTO_VALUE_ON_ZERO,STRICT_ALL_TABLES'",
    "SET SESSION time_zone = '+00:00'",
    "SET NAMES utf8mb4",
];

/// The staging table of a sync (temporary: creating it does not commit).
pub(crate) const STAGE: &str = "dap_stage";

/// `CREATE TEMPORARY TABLE` for the changes of `model`'s table: the action, then every
/// column (nullable), keyed by the primary key so that a later change of a key replaces
/// an earlier one as it loads.
pub(crate) fn create_stage(model: &TableModel) -> String {
    let mut defs = vec![format!(
        "{} char(1) CHARACTER SET ascii",
        quote_ident(ACTION_COLUMN)
    )];
    for c in &model.columns {
        let mut def = format!("{} {}", quote_ident(&c.name), MySql.type_in(model, &c.ty));
        if matches!(c.ty, crate::model::ColumnType::Enum(_)) {
            def.push_str(" CHARACTER SET ascii COLLATE ascii_bin");
        }
        defs.push(def);
    }
    defs.push(format!("PRIMARY KEY ({})", quote_ident(&model.primary_key)));
    format!(
        "CREATE TEMPORARY TABLE {} (\n{}\n) DEFAULT CHARACTER SET utf8mb4",
        quote_ident(STAGE),
        defs.join(",\n")
    )
}

/// Drops the staging table.
pub(crate) fn drop_stage() -> String {
    format!("DROP TEMPORARY TABLE IF EXISTS {}", quote_ident(STAGE))
}

/// Deletes the rows whose staged change is a delete.
pub(crate) fn merge_delete(model: &TableModel) -> String {
    let key = quote_ident(&model.primary_key);
    format!(
        "DELETE t FROM {} AS t JOIN {} AS s ON t.{key} = s.{key} WHERE s.{} = 'D'",
        MySql.qualified(&model.namespace, &model.table),
        quote_ident(STAGE),
        quote_ident(ACTION_COLUMN)
    )
}

/// How many staged changes are upserts.
pub(crate) fn count_upserts() -> String {
    format!(
        "SELECT COUNT(*) FROM {} WHERE {} <> 'D'",
        quote_ident(STAGE),
        quote_ident(ACTION_COLUMN)
    )
}

/// Inserts the staged upserts, updating the rows whose keys exist, for the data's
/// `columns` (the action left out).
pub(crate) fn merge_upsert(model: &TableModel, columns: &[String]) -> String {
    let list = data_columns(columns).join(", ");
    let from: Vec<String> = data_columns(columns)
        .iter()
        .map(|c| format!("s.{c}"))
        .collect();
    let updates: Vec<String> = columns
        .iter()
        .filter(|c| *c != ACTION_COLUMN && **c != model.primary_key)
        .map(|c| format!("{0} = s.{0}", quote_ident(c)))
        .collect();
    let table = MySql.qualified(&model.namespace, &model.table);
    let on_duplicate = if updates.is_empty() {
        let key = format!("{table}.{}", quote_ident(&model.primary_key));
        format!("{key} = {key}")
    } else {
        updates.join(", ")
    };
    format!(
        "INSERT INTO {table} ({list}) SELECT {} FROM {} AS s WHERE s.{} <> 'D' \
         ON DUPLICATE KEY UPDATE {on_duplicate}",
        from.join(", "),
        quote_ident(STAGE),
        quote_ident(ACTION_COLUMN)
    )
}

/// The `table_sync` table.
pub(crate) fn table_sync() -> String {
    MySql.qualified(META_NAMESPACE, "table_sync")
}

/// The `table_sync` row of a table: ? namespace, ? table.
pub(crate) fn select_position() -> String {
    format!(
        "SELECT `id`, CAST(`timestamp` AS CHAR), `schema_version`, `schema_description` \
         FROM {} WHERE `source_namespace` = ? AND `source_table` = ? ORDER BY `id` LIMIT 1",
        table_sync()
    )
}

/// The `table_sync` rows of a namespace: ? namespace.
pub(crate) fn select_positions() -> String {
    format!(
        "SELECT `source_table`, CAST(`timestamp` AS CHAR), `schema_version`, `target_schema`, \
         `target_table` FROM {} WHERE `source_namespace` = ? ORDER BY `source_table`",
        table_sync()
    )
}

/// Inserts a `table_sync` row: ? namespace, ? table, ? timestamp, ? schema version,
/// ? namespace, ? table, ? schema description.
pub(crate) fn insert_position() -> String {
    format!(
        "INSERT INTO {} (`source_namespace`, `source_table`, `timestamp`, `schema_version`, \
         `target_schema`, `target_table`, `schema_description_format`, `schema_description`) \
         VALUES (?, ?, ?, ?, ?, ?, 'json', ?)",
        table_sync()
    )
}

/// Updates a `table_sync` row: ? timestamp, ? schema version, ? description, ? id.
pub(crate) fn update_position() -> String {
    format!(
        "UPDATE {} SET `timestamp` = ?, `schema_version` = ?, \
         `schema_description_format` = 'json', `schema_description` = ? WHERE `id` = ?",
        table_sync()
    )
}

/// Deletes a `table_sync` row: ? id.
pub(crate) fn delete_position() -> String {
    format!("DELETE FROM {} WHERE `id` = ?", table_sync())
}

/// The columns of a table: ? bare table name. Name, type, nullable, comment, key.
pub(crate) const COLUMNS: &str = "\
SELECT COLUMN_NAME, COLUMN_TYPE, IS_NULLABLE = 'YES', COLUMN_COMMENT, COLUMN_KEY = 'PRI'
FROM information_schema.COLUMNS
WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ?
ORDER BY ORDINAL_POSITION";

/// The comment of a table: ? bare table name.
pub(crate) const TABLE_COMMENT: &str = "\
SELECT TABLE_COMMENT FROM information_schema.TABLES
WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ?";

/// The database's default character set.
pub(crate) const DATABASE_CHARSET: &str = "\
SELECT DEFAULT_CHARACTER_SET_NAME FROM information_schema.SCHEMATA
WHERE SCHEMA_NAME = DATABASE()";

/// The name of the lock a table is replicated under (named locks are server-wide, so
/// the database is part of it; at most 64 characters).
pub(crate) fn lock_name(database: &str, namespace: &str, table: &str) -> String {
    let key = format!("{database}\u{0}{}", table_name(namespace, table));
    format!(
        "dap:{:016x}:{}",
        crate::dialect::mysql::fnv1a(&key),
        table_name(namespace, table)
            .chars()
            .take(40)
            .collect::<String>()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::tests::model;

    #[test]
    fn stage_and_merge() {
        let m = model();
        let stage = create_stage(&m);
        assert!(stage.starts_with(
            "CREATE TEMPORARY TABLE `dap_stage` (\n`_dap_action` char(1) CHARACTER SET ascii,\n`id` bigint,\n`name` varchar(255),\n"
        ), "{stage}");
        assert!(
            stage.contains(
                "`state` enum('active','deleted') CHARACTER SET ascii COLLATE ascii_bin,\n"
            )
        );
        assert!(stage.ends_with("PRIMARY KEY (`id`)\n) DEFAULT CHARACTER SET utf8mb4"));
        assert_eq!(
            merge_delete(&m),
            "DELETE t FROM `canvas__accounts` AS t JOIN `dap_stage` AS s ON t.`id` = s.`id` WHERE s.`_dap_action` = 'D'"
        );
        let cols = vec![ACTION_COLUMN.to_owned(), "id".to_owned(), "name".to_owned()];
        assert_eq!(
            merge_upsert(&m, &cols),
            "INSERT INTO `canvas__accounts` (\"id\", \"name\") SELECT s.\"id\", s.\"name\" FROM `dap_stage` AS s \
             WHERE s.`_dap_action` <> 'D' ON DUPLICATE KEY UPDATE `name` = s.`name`"
        );
        assert!(merge_upsert(&m, &["id".to_owned()]).ends_with(
            "ON DUPLICATE KEY UPDATE `canvas__accounts`.`id` = `canvas__accounts`.`id`"
        ));
    }

    #[test]
    fn meta_statements() {
        assert!(
            insert_position()
                .starts_with("INSERT INTO `instructure_dap__table_sync` (`source_namespace`")
        );
        assert!(update_position().ends_with("WHERE `id` = ?"));
        let name = lock_name("db", "canvas", &"t".repeat(100));
        assert!(name.len() <= 64, "{name}");
        assert_ne!(lock_name("a", "canvas", "t"), lock_name("b", "canvas", "t"));
    }
}
