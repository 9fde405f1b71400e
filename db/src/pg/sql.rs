//! The PostgreSQL statements of a load, built from the plan; pure and unit-tested.

use crate::dialect::{Dialect, META_NAMESPACE, Postgres, data_columns, quote_ident, stage_columns};
use crate::model::TableModel;
use crate::tsv::{ACTION_COLUMN, SEQ_COLUMN};

/// The staging table of a load (temporary, dropped at commit).
pub(crate) const STAGE: &str = "pg_temp.\"dap_stage\"";

/// `CREATE TEMP TABLE` for staging `model`'s rows: every column nullable, plus the
/// arrival number and the action.
pub(crate) fn create_stage(model: &TableModel) -> String {
    let defs = stage_columns(&Postgres, model, "bigserial", "text");
    format!(
        "CREATE TEMP TABLE \"dap_stage\" ({}) ON COMMIT DROP",
        defs.join(", ")
    )
}

/// `COPY ... FROM STDIN` into `table` (already quoted) for `columns`.
pub(crate) fn copy_in(table: &str, columns: &[String]) -> String {
    let cols: Vec<String> = columns.iter().map(|c| quote_ident(c)).collect();
    format!("COPY {table} ({}) FROM STDIN", cols.join(", "))
}

/// Statements that leave one staged row per key (the last to arrive), with fresh
/// statistics: DAP sends one change per key, except where it delivers at least once.
pub(crate) fn dedupe_stage(model: &TableModel) -> Vec<String> {
    let key = quote_ident(&model.primary_key);
    let seq = quote_ident(SEQ_COLUMN);
    vec![
        format!("ANALYZE {STAGE}"),
        format!(
            "DELETE FROM {STAGE} AS a USING (SELECT {key}, max({seq}) AS last FROM {STAGE} \
             GROUP BY {key} HAVING count(*) > 1) AS d WHERE a.{key} = d.{key} AND a.{seq} < d.last"
        ),
    ]
}

/// Deletes the keys whose staged change is a delete.
pub(crate) fn merge_delete(model: &TableModel, table: &str) -> String {
    let key = quote_ident(&model.primary_key);
    let action = quote_ident(ACTION_COLUMN);
    format!(
        "DELETE FROM {table} AS t USING {STAGE} AS s WHERE s.{action} = 'D' AND t.{key} = s.{key}"
    )
}

/// Whether anything could see a row deleted and inserted again rather than updated:
/// a foreign key that references the table ($1, its quoted name), or a trigger on it.
pub(crate) const HAS_DEPENDENTS: &str = "\
SELECT EXISTS (SELECT 1 FROM pg_constraint WHERE confrelid = to_regclass($1))
    OR EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = to_regclass($1) AND NOT tgisinternal)";

/// Deletes every staged key, returning how many of them were deletes (a faster merge
/// than updating in place, for tables nothing refers to).
pub(crate) fn delete_staged_keys(model: &TableModel, table: &str) -> String {
    let key = quote_ident(&model.primary_key);
    let action = quote_ident(ACTION_COLUMN);
    format!(
        "WITH d AS (DELETE FROM {table} AS t USING {STAGE} AS s WHERE t.{key} = s.{key} \
         RETURNING s.{action}) SELECT count(*) FILTER (WHERE {action} = 'D') FROM d"
    )
}

/// Inserts every staged upsert (after [`delete_staged_keys`]).
pub(crate) fn insert_upserts(table: &str, columns: &[String]) -> String {
    let list = data_columns(columns).join(", ");
    format!(
        "INSERT INTO {table} ({list}) SELECT {list} FROM {STAGE} WHERE {} IS DISTINCT FROM 'D'",
        quote_ident(ACTION_COLUMN)
    )
}

/// Updates the rows whose keys have a staged upsert, for the data's `columns` (the
/// action excluded); `None` when only the key came.
pub(crate) fn merge_update(model: &TableModel, table: &str, columns: &[String]) -> Option<String> {
    let key = quote_ident(&model.primary_key);
    let sets: Vec<String> = columns
        .iter()
        .filter(|c| *c != ACTION_COLUMN && **c != model.primary_key)
        .map(|c| format!("{0} = s.{0}", quote_ident(c)))
        .collect();
    (!sets.is_empty()).then(|| {
        format!(
            "UPDATE {table} AS t SET {} FROM {STAGE} AS s WHERE t.{key} = s.{key} \
             AND s.{action} IS DISTINCT FROM 'D'",
            sets.join(", "),
            action = quote_ident(ACTION_COLUMN)
        )
    })
}

/// Inserts the staged upserts whose keys the table does not have.
pub(crate) fn merge_insert(model: &TableModel, table: &str, columns: &[String]) -> String {
    let key = quote_ident(&model.primary_key);
    let cols = data_columns(columns);
    let list = cols.join(", ");
    let from: Vec<String> = cols.iter().map(|c| format!("s.{c}")).collect();
    format!(
        "INSERT INTO {table} ({list}) SELECT {} FROM {STAGE} AS s \
         WHERE s.{action} IS DISTINCT FROM 'D' \
         AND NOT EXISTS (SELECT 1 FROM {table} AS t WHERE t.{key} = s.{key})",
        from.join(", "),
        action = quote_ident(ACTION_COLUMN)
    )
}

/// The `table_sync` table.
pub(crate) fn table_sync() -> String {
    Postgres.qualified(META_NAMESPACE, "table_sync")
}

/// Inserts a `table_sync` row: $1 namespace, $2 table, $3 timestamp (naive UTC text),
/// $4 schema version, $5 schema description.
pub(crate) fn insert_position() -> String {
    format!(
        "INSERT INTO {} (\"source_namespace\", \"source_table\", \"timestamp\", \"schema_version\", \
         \"target_schema\", \"target_table\", \"schema_description_format\", \"schema_description\") \
         VALUES ($1, $2, $3::text::timestamp, $4, $1, $2, 'json', $5)",
        table_sync()
    )
}

/// Updates a `table_sync` row: $1 id, $2 timestamp, $3 schema version, $4 description.
pub(crate) fn update_position() -> String {
    format!(
        "UPDATE {} SET \"timestamp\" = $2::text::timestamp, \"schema_version\" = $3, \
         \"schema_description_format\" = 'json', \"schema_description\" = $4 WHERE \"id\" = $1",
        table_sync()
    )
}

/// The views (and materialized views) that depend on a table ($1, its quoted name),
/// directly or through other views: schema, name, kind, definition, comment, depth.
pub(crate) const DEPENDENT_VIEWS: &str = "\
WITH RECURSIVE deps(oid, depth) AS (
    SELECT DISTINCT r.ev_class, 1
    FROM pg_depend d JOIN pg_rewrite r ON r.oid = d.objid
    WHERE d.classid = 'pg_rewrite'::regclass AND d.refobjid = to_regclass($1)
      AND r.ev_class <> to_regclass($1)
  UNION
    SELECT DISTINCT r.ev_class, deps.depth + 1
    FROM deps JOIN pg_depend d ON d.refobjid = deps.oid
    JOIN pg_rewrite r ON r.oid = d.objid
    WHERE d.classid = 'pg_rewrite'::regclass AND r.ev_class <> deps.oid AND deps.depth < 50
)
SELECT n.nspname::text, c.relname::text, c.relkind::text, pg_get_viewdef(c.oid),
       obj_description(c.oid, 'pg_class'), max(deps.depth)::int
FROM deps JOIN pg_class c ON c.oid = deps.oid JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('v', 'm')
GROUP BY 1, 2, 3, 4, 5
ORDER BY 6, 1, 2";

/// A view saved before its table changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SavedView {
    pub(crate) schema: String,
    pub(crate) name: String,
    pub(crate) materialized: bool,
    pub(crate) definition: String,
    pub(crate) comment: Option<String>,
}

impl SavedView {
    pub(crate) fn qualified(&self) -> String {
        Postgres.qualified(&self.schema, &self.name)
    }

    pub(crate) fn drop(&self) -> String {
        let kind = if self.materialized {
            "MATERIALIZED VIEW"
        } else {
            "VIEW"
        };
        format!("DROP {kind} IF EXISTS {}", self.qualified())
    }

    /// The statements that recreate the view.
    pub(crate) fn create(&self) -> Vec<String> {
        let kind = if self.materialized {
            "MATERIALIZED VIEW"
        } else {
            "VIEW"
        };
        let definition = self.definition.trim().trim_end_matches(';');
        let mut out = vec![format!(
            "CREATE {kind} {} AS {definition}",
            self.qualified()
        )];
        if let Some(c) = &self.comment {
            out.push(format!(
                "COMMENT ON {kind} {} IS {}",
                self.qualified(),
                Postgres.literal(c)
            ));
        }
        out
    }
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
            "CREATE TEMP TABLE \"dap_stage\" (\"_dap_seq\" bigserial, \"_dap_action\" text, \"id\" bigint, \"name\" character varying(255),"
        ));
        assert!(stage.ends_with(") ON COMMIT DROP"));
        let cols = vec![ACTION_COLUMN.to_owned(), "id".to_owned(), "name".to_owned()];
        assert_eq!(
            copy_in(STAGE, &cols),
            "COPY pg_temp.\"dap_stage\" (\"_dap_action\", \"id\", \"name\") FROM STDIN"
        );
        assert_eq!(
            merge_delete(&m, "\"canvas\".\"accounts\""),
            "DELETE FROM \"canvas\".\"accounts\" AS t USING pg_temp.\"dap_stage\" AS s WHERE s.\"_dap_action\" = 'D' AND t.\"id\" = s.\"id\""
        );
        assert!(dedupe_stage(&m)[1].contains("HAVING count(*) > 1"));
        assert_eq!(
            merge_update(&m, "t", &cols).unwrap(),
            "UPDATE t AS t SET \"name\" = s.\"name\" FROM pg_temp.\"dap_stage\" AS s WHERE t.\"id\" = s.\"id\" \
             AND s.\"_dap_action\" IS DISTINCT FROM 'D'"
        );
        assert!(merge_update(&m, "t", &["id".to_owned()]).is_none());
        assert_eq!(
            delete_staged_keys(&m, "t"),
            "WITH d AS (DELETE FROM t AS t USING pg_temp.\"dap_stage\" AS s WHERE t.\"id\" = s.\"id\" \
             RETURNING s.\"_dap_action\") SELECT count(*) FILTER (WHERE \"_dap_action\" = 'D') FROM d"
        );
        assert_eq!(
            insert_upserts("t", &cols),
            "INSERT INTO t (\"id\", \"name\") SELECT \"id\", \"name\" FROM pg_temp.\"dap_stage\" WHERE \"_dap_action\" IS DISTINCT FROM 'D'"
        );
        assert_eq!(
            merge_insert(&m, "t", &cols),
            "INSERT INTO t (\"id\", \"name\") SELECT s.\"id\", s.\"name\" FROM pg_temp.\"dap_stage\" AS s \
             WHERE s.\"_dap_action\" IS DISTINCT FROM 'D' AND NOT EXISTS (SELECT 1 FROM t AS t WHERE t.\"id\" = s.\"id\")"
        );
    }

    #[test]
    fn views_recreate_with_comments() {
        let v = SavedView {
            schema: "public".to_owned(),
            name: "v".to_owned(),
            materialized: false,
            definition: " SELECT id\n   FROM canvas.accounts;".to_owned(),
            comment: Some("it's".to_owned()),
        };
        assert_eq!(
            v.create(),
            [
                "CREATE VIEW \"public\".\"v\" AS SELECT id\n   FROM canvas.accounts",
                "COMMENT ON VIEW \"public\".\"v\" IS 'it''s'"
            ]
        );
        assert_eq!(v.drop(), "DROP VIEW IF EXISTS \"public\".\"v\"");
    }
}
