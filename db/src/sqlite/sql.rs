//! The SQLite statements of a load; pure and unit-tested.

use crate::dialect::{Dialect, META_NAMESPACE, Sqlite, data_columns, quote_ident, stage_columns};
use crate::model::TableModel;
use crate::tsv::{ACTION_COLUMN, SEQ_COLUMN};

/// The staging table of a load.
pub(crate) const STAGE: &str = "temp.\"dap_stage\"";

fn table_sync() -> String {
    Sqlite.qualified(META_NAMESPACE, "table_sync")
}

pub(crate) fn select_positions() -> String {
    format!(
        "SELECT \"source_table\", \"timestamp\", \"schema_version\", \"target_schema\", \"target_table\" \
         FROM {} WHERE \"source_namespace\" = ?1 ORDER BY \"source_table\"",
        table_sync()
    )
}

pub(crate) fn select_position() -> String {
    format!(
        "SELECT \"id\", \"timestamp\", \"schema_version\", \"schema_description\" FROM {} \
         WHERE \"source_namespace\" = ?1 AND \"source_table\" = ?2 ORDER BY \"id\" LIMIT 1",
        table_sync()
    )
}

pub(crate) fn delete_position() -> String {
    format!("DELETE FROM {} WHERE \"id\" = ?1", table_sync())
}

/// ?1 namespace, ?2 table, ?3 timestamp, ?4 schema version, ?5 description.
pub(crate) fn insert_position() -> String {
    format!(
        "INSERT INTO {} (\"source_namespace\", \"source_table\", \"timestamp\", \"schema_version\", \
         \"target_schema\", \"target_table\", \"schema_description_format\", \"schema_description\") \
         VALUES (?1, ?2, ?3, ?4, ?1, ?2, 'json', ?5)",
        table_sync()
    )
}

/// ?1 id, ?2 timestamp, ?3 schema version, ?4 description.
pub(crate) fn update_position() -> String {
    format!(
        "UPDATE {} SET \"timestamp\" = ?2, \"schema_version\" = ?3, \
         \"schema_description_format\" = 'json', \"schema_description\" = ?4 WHERE \"id\" = ?1",
        table_sync()
    )
}

pub(crate) fn create_stage(model: &TableModel) -> String {
    let defs = stage_columns(&Sqlite, model, "INTEGER PRIMARY KEY", "TEXT");
    format!(
        "DROP TABLE IF EXISTS {STAGE}; CREATE TEMP TABLE \"dap_stage\" ({})",
        defs.join(", ")
    )
}

pub(crate) fn insert(table: &str, columns: &[String]) -> String {
    let cols: Vec<String> = columns.iter().map(|c| quote_ident(c)).collect();
    let params: Vec<String> = (1..=columns.len()).map(|i| format!("?{i}")).collect();
    format!(
        "INSERT INTO {table} ({}) VALUES ({})",
        cols.join(", "),
        params.join(", ")
    )
}

/// The last staged row of each key, with all its columns.
fn last_rows(model: &TableModel) -> String {
    format!(
        "SELECT * FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY {} ORDER BY {} DESC) AS \"_dap_rn\" \
         FROM {STAGE}) WHERE \"_dap_rn\" = 1",
        quote_ident(&model.primary_key),
        quote_ident(SEQ_COLUMN)
    )
}

pub(crate) fn merge_delete(model: &TableModel, table: &str) -> String {
    let key = quote_ident(&model.primary_key);
    format!(
        "DELETE FROM {table} WHERE {key} IN (SELECT {key} FROM ({}) WHERE {} = 'D')",
        last_rows(model),
        quote_ident(ACTION_COLUMN)
    )
}

pub(crate) fn merge_upsert(model: &TableModel, table: &str, columns: &[String]) -> String {
    let list = data_columns(columns).join(", ");
    let updates: Vec<String> = columns
        .iter()
        .filter(|c| *c != ACTION_COLUMN && **c != model.primary_key)
        .map(|c| format!("{0} = excluded.{0}", quote_ident(c)))
        .collect();
    let conflict = if updates.is_empty() {
        "DO NOTHING".to_owned()
    } else {
        format!("DO UPDATE SET {}", updates.join(", "))
    };
    format!(
        "INSERT INTO {table} ({list}) SELECT {list} FROM ({}) WHERE {} IS NOT 'D' \
         ON CONFLICT ({}) {conflict}",
        last_rows(model),
        quote_ident(ACTION_COLUMN),
        quote_ident(&model.primary_key)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::tests::model;

    #[test]
    fn statements() {
        let m = model();
        assert_eq!(
            insert(
                "\"canvas__accounts\"",
                &["id".to_owned(), "name".to_owned()]
            ),
            "INSERT INTO \"canvas__accounts\" (\"id\", \"name\") VALUES (?1, ?2)"
        );
        assert!(create_stage(&m).contains("CREATE TEMP TABLE \"dap_stage\" (\"_dap_seq\" INTEGER PRIMARY KEY, \"_dap_action\" TEXT, \"id\" BIGINT,"));
        let cols = vec![ACTION_COLUMN.to_owned(), "id".to_owned(), "name".to_owned()];
        let up = merge_upsert(&m, "t", &cols);
        assert!(up.starts_with("INSERT INTO t (\"id\", \"name\") SELECT \"id\", \"name\" FROM (SELECT * FROM (SELECT *, ROW_NUMBER()"));
        assert!(up.ends_with("ON CONFLICT (\"id\") DO UPDATE SET \"name\" = excluded.\"name\""));
        assert!(merge_delete(&m, "t").ends_with("WHERE \"_dap_action\" = 'D')"));
        assert!(insert_position().contains("VALUES (?1, ?2, ?3, ?4, ?1, ?2, 'json', ?5)"));
    }
}
