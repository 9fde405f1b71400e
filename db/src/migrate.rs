//! Schema changes: the layout a table has in the database against the one a schema
//! version asks for, and the least that turns one into the other.
//!
//! * New enumeration types and values come first, each committed on its own (a value
//!   added to a PostgreSQL enumeration cannot be used by the transaction that adds it);
//!   a value is appended, as the official client appends it. Values that disappear
//!   stay, so old rows keep theirs.
//! * In place: a new nullable column, a column that became nullable, a column that
//!   became NOT NULL, a dropped column, a changed type (converted through text where
//!   the dialect can), changed comments.
//! * A new NOT NULL column, or a changed primary key, cannot be filled from the rows at
//!   hand: the table is re-initialised from a snapshot instead.
//! * Where the dialect cannot change a column in place (SQLite), the table is rebuilt:
//!   a new copy with the new layout gets the old rows and replaces the old table, in one
//!   transaction.
//!
//! Views on the table stop a type change, a dropped column or a swapped table in
//! PostgreSQL; [`Migration::disturbs_views`] says when the driver must recreate them.

use crate::dialect::Dialect;
use crate::model::{Column, EnumType, TableModel};

/// A column as the database reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExistingColumn {
    /// Name.
    pub name: String,
    /// Type as the catalog spells it (compared with [`Dialect::column_type`], quotes
    /// ignored).
    pub type_name: String,
    /// Whether NULL is allowed.
    pub nullable: bool,
    /// Comment.
    pub comment: Option<String>,
}

/// A table as the database reports it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ExistingTable {
    /// Columns in table order.
    pub columns: Vec<ExistingColumn>,
    /// Table comment.
    pub comment: Option<String>,
    /// The primary key column(s).
    pub primary_key: Vec<String>,
}

/// One change to a table.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Change {
    /// Add a column.
    AddColumn(Column),
    /// Drop a column.
    DropColumn(String),
    /// Change a column's type.
    AlterType(Column),
    /// Allow or forbid NULL.
    SetNullable {
        /// Column name.
        column: String,
        /// Allow NULL.
        nullable: bool,
    },
    /// Set a column's comment.
    CommentColumn(Column),
    /// Set the table's comment.
    CommentTable,
}

/// What a schema change takes.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Migration {
    /// Changes in the order they apply.
    pub changes: Vec<Change>,
    /// The dialect cannot make some change in place: rebuild the table.
    pub rebuild: bool,
    /// The rows at hand cannot fill the new layout: re-initialise from a snapshot.
    pub reinit: Option<String>,
}

impl Migration {
    /// Whether nothing changes.
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty() && !self.rebuild && self.reinit.is_none()
    }

    /// Whether the changes stop on views that depend on the table (PostgreSQL).
    pub fn disturbs_views(&self) -> bool {
        self.rebuild
            || self.reinit.is_some()
            || self
                .changes
                .iter()
                .any(|c| matches!(c, Change::AlterType(_) | Change::DropColumn(_)))
    }

    /// The statements of an in-place migration of `model`'s table.
    pub fn statements(&self, dialect: &dyn Dialect, model: &TableModel) -> Vec<String> {
        let mut out = Vec::new();
        for change in &self.changes {
            match change {
                Change::AddColumn(c) => out.extend(dialect.add_column(model, c)),
                Change::DropColumn(name) => out.push(dialect.drop_column(model, name)),
                Change::AlterType(c) => out.push(dialect.alter_column_type(model, c)),
                Change::SetNullable { column, nullable } => {
                    out.push(dialect.set_nullable(model, column, *nullable));
                }
                Change::CommentColumn(c) => out.extend(dialect.comment_column(model, c)),
                Change::CommentTable => out.extend(dialect.comment_table(model)),
            }
        }
        out.retain(|s| !s.is_empty());
        out
    }
}

fn same_type(a: &str, b: &str) -> bool {
    a.replace('"', "") == b.replace('"', "")
}

/// The changes that turn `existing` into `desired`'s layout.
pub fn diff(existing: &ExistingTable, desired: &TableModel, dialect: &dyn Dialect) -> Migration {
    let mut m = Migration::default();
    if existing.primary_key != [desired.primary_key.clone()] {
        m.reinit = Some(format!(
            "the primary key changed from ({}) to ({})",
            existing.primary_key.join(", "),
            desired.primary_key
        ));
        return m;
    }
    let mut drops = Vec::new();
    for old in &existing.columns {
        if desired.column(&old.name).is_none() {
            drops.push(Change::DropColumn(old.name.clone()));
        }
    }
    let mut alters = Vec::new();
    let mut adds = Vec::new();
    for col in &desired.columns {
        let Some(old) = existing.columns.iter().find(|c| c.name == col.name) else {
            if !col.nullable {
                m.reinit = Some(format!(
                    "the new column `{}` is NOT NULL, and the rows at hand have no value for it",
                    col.name
                ));
                return m;
            }
            adds.push(Change::AddColumn(col.clone()));
            continue;
        };
        let wanted = dialect.type_in(desired, &col.ty);
        if !same_type(&old.type_name, &wanted) {
            alters.push(Change::AlterType(col.clone()));
        }
        if old.nullable != col.nullable {
            alters.push(Change::SetNullable {
                column: col.name.clone(),
                nullable: col.nullable,
            });
        }
        if old.comment != dialect.stored_comment(col.comment.as_deref())
            && dialect.comment_column(desired, col).is_some()
        {
            alters.push(Change::CommentColumn(col.clone()));
        }
    }
    if !dialect.supports_alter_column()
        && alters
            .iter()
            .any(|c| matches!(c, Change::AlterType(_) | Change::SetNullable { .. }))
    {
        m.rebuild = true;
        return m;
    }
    if existing.comment != dialect.stored_comment(desired.comment.as_deref())
        && dialect.comment_table(desired).is_some()
    {
        m.changes.push(Change::CommentTable);
    }
    m.changes.extend(drops);
    m.changes.extend(alters);
    m.changes.extend(adds);
    m
}

/// What the enumeration types of a table need before its data can land: types to
/// create, and values to append to existing types (`(type, value)`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EnumChanges {
    /// Types that do not exist yet.
    pub create: Vec<EnumType>,
    /// Values missing from existing types, in schema order.
    pub add: Vec<(String, String)>,
}

impl EnumChanges {
    /// Whether nothing changes.
    pub fn is_empty(&self) -> bool {
        self.create.is_empty() && self.add.is_empty()
    }

    /// The statements, in order; each runs (and commits) on its own.
    pub fn statements(&self, dialect: &dyn Dialect, namespace: &str) -> Vec<String> {
        let mut out: Vec<String> = self
            .create
            .iter()
            .filter_map(|e| dialect.create_enum(namespace, e))
            .collect();

        out.extend(
            self.add
                .iter()
                .filter_map(|(t, v)| dialect.add_enum_value(namespace, t, v)),
        );
        out
    }
}

/// The enumeration changes `desired` needs, given the types that exist
/// (`(name, values in order)`).
pub fn enum_changes(existing: &[(String, Vec<String>)], desired: &TableModel) -> EnumChanges {
    let mut out = EnumChanges::default();
    for e in &desired.enums {
        match existing.iter().find(|(name, _)| *name == e.name) {
            None => out.create.push(e.clone()),
            Some((_, values)) => out.add.extend(
                e.values
                    .iter()
                    .filter(|v| !values.contains(v))
                    .map(|v| (e.name.clone(), v.clone())),
            ),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dialect::{Postgres, Sqlite};
    use crate::model::ColumnType;
    use crate::model::tests::model;

    fn existing_of(m: &TableModel, dialect: &dyn Dialect) -> ExistingTable {
        ExistingTable {
            columns: m
                .columns
                .iter()
                .map(|c| ExistingColumn {
                    name: c.name.clone(),
                    // The catalog spells names without quotes where it can.
                    type_name: dialect.type_in(m, &c.ty).replace('"', ""),
                    nullable: c.nullable,
                    comment: dialect.stored_comment(c.comment.as_deref()),
                })
                .collect(),
            comment: dialect.stored_comment(m.comment.as_deref()),
            primary_key: vec![m.primary_key.clone()],
        }
    }

    /// A value column without a default.
    fn value_column(name: &str, ty: ColumnType, nullable: bool, comment: Option<&str>) -> Column {
        Column {
            name: name.to_owned(),
            ty,
            nullable,
            comment: comment.map(str::to_owned),
            default: None,
            part: crate::model::Part::Value,
        }
    }

    #[test]
    fn same_layout_needs_nothing() {
        let m = model();
        assert!(diff(&existing_of(&m, &Postgres), &m, &Postgres).is_empty());
        assert!(diff(&existing_of(&m, &Sqlite), &m, &Sqlite).is_empty());
    }

    #[test]
    fn in_place_changes() {
        let old = model();
        let mut new = old.clone();
        new.columns
            .push(value_column("added", ColumnType::Int, true, None));
        new.columns.retain(|c| c.name != "body");
        if let Some(c) = new.columns.iter_mut().find(|c| c.name == "name") {
            c.nullable = true;
            c.ty = ColumnType::Varchar(Some(500));
        }
        let m = diff(&existing_of(&old, &Postgres), &new, &Postgres);
        assert!(m.reinit.is_none() && !m.rebuild);
        assert!(m.disturbs_views());
        let stmts = m.statements(&Postgres, &new);
        assert_eq!(
            stmts,
            [
                "ALTER TABLE \"canvas\".\"accounts\" DROP COLUMN \"body\"",
                "ALTER TABLE \"canvas\".\"accounts\" ALTER COLUMN \"name\" SET DATA TYPE character varying(500) USING \"name\"::text::character varying(500)",
                "ALTER TABLE \"canvas\".\"accounts\" ALTER COLUMN \"name\" DROP NOT NULL",
                "ALTER TABLE \"canvas\".\"accounts\" ADD COLUMN \"added\" integer",
                "COMMENT ON COLUMN \"canvas\".\"accounts\".\"added\" IS NULL",
            ]
        );
        // SQLite rebuilds what it cannot alter.
        let m = diff(&existing_of(&old, &Sqlite), &new, &Sqlite);
        assert!(m.rebuild);
    }

    #[test]
    fn adding_a_nullable_column_leaves_views_alone() {
        let old = model();
        let mut new = old.clone();
        new.columns.push(value_column(
            "added",
            ColumnType::Boolean,
            true,
            Some("New."),
        ));
        let m = diff(&existing_of(&old, &Postgres), &new, &Postgres);
        assert!(!m.disturbs_views());
        assert_eq!(m.changes.len(), 1);
    }

    #[test]
    fn new_not_null_column_or_key_reinitialises() {
        let old = model();
        let mut new = old.clone();
        new.columns
            .push(value_column("must", ColumnType::Int, false, None));
        assert!(
            diff(&existing_of(&old, &Postgres), &new, &Postgres)
                .reinit
                .is_some()
        );
        let mut new = old.clone();
        new.primary_key = "name".to_owned();
        let m = diff(&existing_of(&old, &Postgres), &new, &Postgres);
        assert!(m.reinit.unwrap().contains("primary key"));
    }

    #[test]
    fn enum_values_are_appended() {
        let m = model();
        let existing = vec![("accounts__state".to_owned(), vec!["deleted".to_owned()])];
        let c = enum_changes(&existing, &m);
        assert_eq!(c.add, [("accounts__state".to_owned(), "active".to_owned())]);
        assert_eq!(c.create.len(), 2);
        let stmts = c.statements(&Postgres, "canvas");
        assert_eq!(stmts.len(), 3);
        assert!(stmts[2].contains("ADD VALUE IF NOT EXISTS 'active'"));
        assert!(c.statements(&Sqlite, "canvas").is_empty());
    }
}
