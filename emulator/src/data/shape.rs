//! The columns of one schema version of a table.

use super::catalog::{FieldType, TableDef};
use super::history::{EVOLUTIONS, EXTRA_ENUM_VALUES};

/// A value column of one schema version of a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Column {
    /// Column name.
    pub name: &'static str,
    /// Column type; for the first enum column, see also `extra_enum`.
    pub ty: FieldType,
    /// Whether the column is never null.
    pub required: bool,
    /// Enum values that schema bumps appended after the type's own values.
    pub extra_enum: &'static [&'static str],
    /// The first schema epoch whose records carry the column (0 for the table's own
    /// columns); older records hold NULL.
    pub since_epoch: u32,
    /// Position among every column the table can ever have; seeds the values.
    pub(crate) slot: u64,
    /// Whether the column holds the table's primary awkward string.
    pub(crate) primary: bool,
}

/// One schema version of a table: its first version plus `epoch` bumps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    /// The table.
    pub table: &'static TableDef,
    /// Number of schema bumps applied (at most [`EVOLUTIONS`]`.len()`).
    pub epoch: u32,
}

impl Shape {
    /// The table's first schema version.
    pub fn first(table: &'static TableDef) -> Self {
        Self { table, epoch: 0 }
    }

    /// The schema version number.
    pub fn version(&self) -> u32 {
        self.table.schema_version.saturating_add(self.epoch)
    }

    fn bumps(&self) -> usize {
        usize::try_from(self.epoch)
            .unwrap_or(usize::MAX)
            .min(EVOLUTIONS.len())
    }

    /// The value columns, in order: the table's own, then one per bump.
    pub fn columns(&self) -> Vec<Column> {
        let bumps = self.bumps();
        let own = self.table.values;
        let first_enum = own.iter().position(|f| matches!(f.ty, FieldType::Enum(_)));
        let primary = own
            .iter()
            .position(|f| matches!(f.ty, FieldType::Str(m) if m > 36));
        let mut cols: Vec<Column> = own
            .iter()
            .enumerate()
            .map(|(i, f)| Column {
                name: f.name,
                ty: f.ty,
                required: f.required,
                extra_enum: if Some(i) == first_enum {
                    &EXTRA_ENUM_VALUES[..bumps]
                } else {
                    &[]
                },
                since_epoch: 0,
                slot: i as u64 + 1,
                primary: Some(i) == primary,
            })
            .collect();
        for (j, e) in EVOLUTIONS[..bumps].iter().enumerate() {
            cols.push(Column {
                name: e.column.name,
                ty: e.column.ty,
                required: e.column.required,
                extra_enum: &[],
                since_epoch: j as u32 + 1,
                slot: (own.len() + j) as u64 + 1,
                primary: false,
            });
        }
        cols
    }

    /// Column names of a CSV/TSV export, in order.
    pub fn header(&self, incremental: bool, condensed: bool) -> Vec<String> {
        let mut cols = vec!["meta.ts".to_owned()];
        if incremental {
            cols.push("meta.action".to_owned());
        }
        cols.push("key.id".to_owned());
        for c in self.columns() {
            match c.ty {
                FieldType::Object(sub) if !condensed => {
                    for s in sub {
                        cols.push(format!("value.{}.{}", c.name, s.name));
                    }
                }
                _ => cols.push(format!("value.{}", c.name)),
            }
        }
        cols
    }
}
