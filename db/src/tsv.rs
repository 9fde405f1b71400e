//! DAP's condensed TSV, checked and reshaped on its way into the database.
//!
//! Each object starts with a header line (`meta.ts`, `meta.action` in changes,
//! `key.*`, `value.*`), then one record per line in PostgreSQL `COPY` text format
//! (`\N` is NULL; backslash, tab, newline and carriage return are escaped). The table
//! holds the key and value columns only, so [`Rewriter`] drops `meta.ts` from every line
//! and passes the rest through untouched, except array columns, whose JSON arrays become
//! PostgreSQL array literals. It checks that every line has as many fields as the header
//! on the way. For MySQL's `LOAD DATA` ([`Encoding::LoadData`]) each cell is checked and
//! reshaped by [`crate::dialect::mysql::cell`] instead. [`cells`] splits a line into
//! unescaped values for databases without either.

use std::borrow::Cow;

use crate::dialect::mysql::cell::{self, Cell, CellError};
use crate::model::{ColumnType, TableModel};

/// The staging column that holds `meta.action` of a change.
pub const ACTION_COLUMN: &str = "_dap_action";
/// The staging column that numbers changes in arrival order.
pub const SEQ_COLUMN: &str = "_dap_seq";

/// The text format lines are rewritten into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Encoding {
    /// PostgreSQL `COPY` text (arrays as array literals).
    #[default]
    Copy,
    /// MySQL `LOAD DATA` text (see [`crate::dialect::mysql::cell`]).
    LoadData,
}

/// What an object holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadKind {
    /// A snapshot: current rows.
    Snapshot,
    /// Changes: rows with `meta.action` (`U` upsert, `D` delete).
    Changes,
}

/// A line of DAP's TSV that cannot be loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TsvError {
    /// The header names a column the table does not have.
    #[error(
        "the data has a column `{label}` that schema version {version} of the table does not have"
    )]
    UnknownColumn {
        /// The header label.
        label: String,
        /// The schema version the table follows.
        version: u64,
    },
    /// A required header column is missing.
    #[error("the data has no `{0}` column")]
    MissingColumn(String),
    /// A header column appears twice.
    #[error("the data names the column `{0}` twice")]
    DuplicateColumn(String),
    /// A line does not have as many fields as the header.
    #[error("line {line} has {found} fields where the header has {expected}")]
    FieldCount {
        /// Line number in the object (the header is line 1).
        line: u64,
        /// Fields found.
        found: usize,
        /// Fields in the header.
        expected: usize,
    },
    /// A value is not what its column's type needs.
    #[error("line {line}, column `{column}`: {reason}")]
    BadValue {
        /// Line number in the object.
        line: u64,
        /// Column name.
        column: String,
        /// What is wrong.
        reason: String,
    },
    /// The object has no header line.
    #[error("the object is empty (no header line)")]
    NoHeader,
    /// The data is not UTF-8.
    #[error("line {0} is not valid UTF-8")]
    NotUtf8(u64),
    /// A floating-point value the database cannot store (NaN, infinity).
    #[error(transparent)]
    NonFinite(Box<NonFinite>),
}

/// A floating-point value the database cannot store (NaN, infinity), named by table,
/// record and column.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "table `{table}`, record {key_column}={key}, column `{column}`: the value {value} \
     cannot be stored in a {dialect} floating-point column (it holds no NaN or \
     infinity, and the official client refuses such a record too); nothing was \
     changed. Ask Instructure support to correct the source data, quoting the table, \
     record and column"
)]
pub struct NonFinite {
    /// `namespace.table`.
    pub table: String,
    /// The primary key column.
    pub key_column: String,
    /// The record's key.
    pub key: String,
    /// The column.
    pub column: String,
    /// The value, as DAP sent it.
    pub value: String,
    /// The database (`mysql`).
    pub dialect: &'static str,
}

/// What happens to one field of each line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Drop,
    Keep,
    /// A JSON array that becomes a PostgreSQL array literal.
    Array,
    /// A cell for MySQL's `LOAD DATA`.
    LoadData(Cell),
}

/// How an object's fields map to table columns, read from its header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    fields: Vec<Field>,
    /// Target columns of the kept fields, in line order (`_dap_action` for
    /// `meta.action`).
    pub columns: Vec<String>,
    /// Index of the primary key among the kept fields.
    pub key_index: usize,
    /// Column types of the kept fields (`None` for `_dap_action`).
    pub types: Vec<Option<ColumnType>>,
}

impl Layout {
    /// Reads a header line, for `COPY`.
    pub fn from_header(
        header: &[u8],
        model: &TableModel,
        kind: LoadKind,
    ) -> Result<Self, TsvError> {
        Self::from_header_for(header, model, kind, Encoding::Copy)
    }

    /// Reads a header line, for lines rewritten into `encoding`.
    pub fn from_header_for(
        header: &[u8],
        model: &TableModel,
        kind: LoadKind,
        encoding: Encoding,
    ) -> Result<Self, TsvError> {
        let header = std::str::from_utf8(header).map_err(|_| TsvError::NotUtf8(1))?;
        let header = header.strip_suffix('\r').unwrap_or(header);
        let mut fields = Vec::new();
        let mut columns: Vec<String> = Vec::new();
        let mut types = Vec::new();
        for label in header.split('\t') {
            let field = match label {
                "meta.action" if kind == LoadKind::Changes => {
                    columns.push(ACTION_COLUMN.to_owned());
                    types.push(None);
                    Field::Keep
                }
                l if l.starts_with("meta.") => Field::Drop,
                l => {
                    let column =
                        model
                            .column_for_label(l)
                            .ok_or_else(|| TsvError::UnknownColumn {
                                label: l.to_owned(),
                                version: model.schema_version,
                            })?;
                    if columns.contains(&column.name) {
                        return Err(TsvError::DuplicateColumn(l.to_owned()));
                    }
                    columns.push(column.name.clone());
                    types.push(Some(column.ty.clone()));
                    match (encoding, &column.ty) {
                        (Encoding::LoadData, ty) => Field::LoadData(Cell::of(ty)),
                        (Encoding::Copy, ColumnType::Array(_)) => Field::Array,
                        (Encoding::Copy, _) => Field::Keep,
                    }
                }
            };
            fields.push(field);
        }
        if kind == LoadKind::Changes && !columns.iter().any(|c| c == ACTION_COLUMN) {
            return Err(TsvError::MissingColumn("meta.action".to_owned()));
        }
        let key_index = columns
            .iter()
            .position(|c| *c == model.primary_key)
            .ok_or_else(|| TsvError::MissingColumn(format!("key.{}", model.primary_key)))?;
        Ok(Self {
            fields,
            columns,
            key_index,
            types,
        })
    }

    /// For each field of a line, the index of its column in [`Layout::columns`], or
    /// `None` for a field that is not stored (`meta.ts`).
    pub fn field_columns(&self) -> Vec<Option<usize>> {
        let mut next = 0;
        self.fields
            .iter()
            .map(|f| {
                if *f == Field::Drop {
                    None
                } else {
                    next += 1;
                    Some(next - 1)
                }
            })
            .collect()
    }

    /// How many fields a line has.
    pub fn field_count(&self) -> usize {
        self.fields.len()
    }

    /// Whether lines pass through with only their first field cut off (for `LOAD DATA`,
    /// when their escapes read the same).
    fn drops_first_only(&self) -> bool {
        self.fields.first() == Some(&Field::Drop)
            && self
                .fields
                .iter()
                .skip(1)
                .all(|f| matches!(f, Field::Keep | Field::LoadData(Cell::Text)))
    }

    /// Index of the primary key among a line's fields.
    fn key_field(&self) -> usize {
        let mut kept = 0;
        for (i, f) in self.fields.iter().enumerate() {
            if *f != Field::Drop {
                if kept == self.key_index {
                    return i;
                }
                kept += 1;
            }
        }
        0
    }
}

/// Splits an object's bytes into its header and its lines, rewriting each line for
/// `COPY` into the layout's columns.
#[derive(Debug)]
pub struct Rewriter<'m> {
    model: &'m TableModel,
    kind: LoadKind,
    encoding: Encoding,
    layout: Option<Layout>,
    partial: Vec<u8>,
    line: u64,
}

impl<'m> Rewriter<'m> {
    /// A rewriter for one object of `model`'s table, for `COPY`.
    pub fn new(model: &'m TableModel, kind: LoadKind) -> Self {
        Self::with_encoding(model, kind, Encoding::Copy)
    }

    /// A rewriter for one object of `model`'s table, into `encoding`.
    pub fn with_encoding(model: &'m TableModel, kind: LoadKind, encoding: Encoding) -> Self {
        Self {
            model,
            kind,
            encoding,
            layout: None,
            partial: Vec::new(),
            line: 0,
        }
    }

    /// The layout, once the header has been read.
    pub fn layout(&self) -> Option<&Layout> {
        self.layout.as_ref()
    }

    /// Lines seen so far, the header included.
    pub fn lines(&self) -> u64 {
        self.line
    }

    /// Takes the next bytes of the object, appending rewritten lines to `out`.
    pub fn push(&mut self, mut chunk: &[u8], out: &mut Vec<u8>) -> Result<(), TsvError> {
        if !self.partial.is_empty() {
            let Some(nl) = memchr::memchr(b'\n', chunk) else {
                self.partial.extend_from_slice(chunk);
                return Ok(());
            };
            let mut line = std::mem::take(&mut self.partial);
            line.extend_from_slice(&chunk[..nl]);
            self.line(&line, out)?;
            line.clear();
            self.partial = line;
            chunk = &chunk[nl + 1..];
        }
        while let Some(nl) = memchr::memchr(b'\n', chunk) {
            self.line(&chunk[..nl], out)?;
            chunk = &chunk[nl + 1..];
        }
        self.partial.extend_from_slice(chunk);
        Ok(())
    }

    /// Ends the object: a last line without a newline is taken too.
    pub fn finish(&mut self, out: &mut Vec<u8>) -> Result<(), TsvError> {
        if !self.partial.is_empty() {
            let line = std::mem::take(&mut self.partial);
            self.line(&line, out)?;
        }
        if self.layout.is_none() {
            return Err(TsvError::NoHeader);
        }
        Ok(())
    }

    fn line(&mut self, line: &[u8], out: &mut Vec<u8>) -> Result<(), TsvError> {
        self.line += 1;
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(layout) = &self.layout else {
            self.layout = Some(Layout::from_header_for(
                line,
                self.model,
                self.kind,
                self.encoding,
            )?);
            return Ok(());
        };
        if line.is_empty() {
            return Ok(());
        }
        let found = memchr::memchr_iter(b'\t', line).count() + 1;
        if found != layout.fields.len() {
            return Err(TsvError::FieldCount {
                line: self.line,
                found,
                expected: layout.fields.len(),
            });
        }
        if layout.drops_first_only() {
            if let Some(tab) = memchr::memchr(b'\t', line) {
                let rest = &line[tab + 1..];
                if self.encoding == Encoding::Copy || cell::escapes_agree(rest) {
                    out.extend_from_slice(rest);
                    out.push(b'\n');
                    return Ok(());
                }
            }
        }
        let mut first = true;
        for (i, value) in line.split(|b| *b == b'\t').enumerate() {
            let field = layout.fields.get(i).copied().unwrap_or(Field::Drop);
            if field == Field::Drop {
                continue;
            }
            if !first {
                out.push(b'\t');
            }
            first = false;
            match field {
                Field::Array => {
                    let column = layout_column(layout, i);
                    array_cell(value, out).map_err(|reason| TsvError::BadValue {
                        line: self.line,
                        column,
                        reason,
                    })?;
                }
                Field::LoadData(kind) => {
                    if let Err(e) = cell::encode(kind, value, out) {
                        return Err(self.cell_error(layout, line, i, e));
                    }
                }
                _ => out.extend_from_slice(value),
            }
        }
        out.push(b'\n');
        Ok(())
    }
}

impl Rewriter<'_> {
    /// The error for field `field` of `line`.
    fn cell_error(&self, layout: &Layout, line: &[u8], field: usize, e: CellError) -> TsvError {
        let column = layout_column(layout, field);
        match e {
            CellError::NonFinite(value) => {
                let key = line
                    .split(|b| *b == b'\t')
                    .nth(layout.key_field())
                    .and_then(unescape)
                    .unwrap_or_default();
                TsvError::NonFinite(Box::new(NonFinite {
                    table: format!("{}.{}", self.model.namespace, self.model.table),
                    key_column: self.model.primary_key.clone(),
                    key,
                    column,
                    value,
                    dialect: "mysql",
                }))
            }
            CellError::Invalid(reason) => TsvError::BadValue {
                line: self.line,
                column,
                reason,
            },
        }
    }
}

/// The column name of input field `field`.
fn layout_column(layout: &Layout, field: usize) -> String {
    let kept = layout.fields[..field]
        .iter()
        .filter(|f| **f != Field::Drop)
        .count();
    layout.columns.get(kept).cloned().unwrap_or_default()
}

/// Rewrites one escaped TSV cell holding a JSON array as an escaped PostgreSQL array
/// literal (`["a","b c",null]` -> `{"a","b c",NULL}`).
fn array_cell(value: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
    if value == b"\\N" {
        out.extend_from_slice(value);
        return Ok(());
    }
    let text = unescape(value).ok_or("the value is not valid UTF-8")?;
    let items: Vec<serde_json::Value> =
        serde_json::from_str(&text).map_err(|e| format!("not a JSON array ({e})"))?;
    let mut literal = String::from("{");
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            literal.push(',');
        }
        let s = match item {
            serde_json::Value::Null => {
                literal.push_str("NULL");
                continue;
            }
            serde_json::Value::String(s) => Cow::Borrowed(s.as_str()),
            other => Cow::Owned(other.to_string()),
        };
        literal.push('"');
        for c in s.chars() {
            if c == '"' || c == '\\' {
                literal.push('\\');
            }
            literal.push(c);
        }
        literal.push('"');
    }
    literal.push('}');
    escape_into(&literal, out);
    Ok(())
}

/// Appends `s` escaped for `COPY` text format.
pub fn escape_into(s: &str, out: &mut Vec<u8>) {
    for b in s.bytes() {
        match b {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\t' => out.extend_from_slice(b"\\t"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b => out.push(b),
        }
    }
}

/// Unescapes one `COPY` text cell (not `\N`); `None` if it is not UTF-8.
pub fn unescape(cell: &[u8]) -> Option<String> {
    if !cell.contains(&b'\\') {
        return std::str::from_utf8(cell).ok().map(str::to_owned);
    }
    let mut out = Vec::with_capacity(cell.len());
    let mut i = 0;
    while i < cell.len() {
        let b = cell[i];
        if b != b'\\' || i + 1 >= cell.len() {
            out.push(b);
            i += 1;
            continue;
        }
        let c = cell[i + 1];
        i += 2;
        match c {
            b'b' => out.push(8),
            b'f' => out.push(12),
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b't' => out.push(b'\t'),
            b'v' => out.push(11),
            b'0'..=b'7' => {
                let mut v = u32::from(c - b'0');
                let mut n = 1;
                while n < 3 && i < cell.len() && (b'0'..=b'7').contains(&cell[i]) {
                    v = v * 8 + u32::from(cell[i] - b'0');
                    i += 1;
                    n += 1;
                }
                out.push((v & 0xff) as u8);
            }
            b'x' if i < cell.len() && cell[i].is_ascii_hexdigit() => {
                let mut v = 0u32;
                let mut n = 0;
                while n < 2 && i < cell.len() && cell[i].is_ascii_hexdigit() {
                    v = v * 16 + char::from(cell[i]).to_digit(16).unwrap_or(0);
                    i += 1;
                    n += 1;
                }
                out.push((v & 0xff) as u8);
            }
            other => out.push(other),
        }
    }
    String::from_utf8(out).ok()
}

/// Splits a line into its cells: `None` for `\N`, otherwise the unescaped text.
pub fn cells(line: &[u8]) -> Result<Vec<Option<String>>, usize> {
    line.split(|b| *b == b'\t')
        .enumerate()
        .map(|(i, cell)| {
            if cell == b"\\N" {
                Ok(None)
            } else {
                unescape(cell).map(Some).ok_or(i)
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::tests::model;

    fn rewrite(kind: LoadKind, chunks: &[&[u8]]) -> Result<(Vec<u8>, Layout), TsvError> {
        let m = model();
        let mut r = Rewriter::new(&m, kind);
        let mut out = Vec::new();
        for c in chunks {
            r.push(c, &mut out)?;
        }
        r.finish(&mut out)?;
        Ok((out, r.layout().cloned().unwrap()))
    }

    #[test]
    fn drops_meta_ts_in_any_chunking() {
        let data: &[u8] =
            b"meta.ts\tkey.id\tvalue.name\n2024-01-01T00:00:00Z\t1\tback\\\\slash\n2024-01-01T00:00:00Z\t2\t\\N\n";
        let want: &[u8] = b"1\tback\\\\slash\n2\t\\N\n";
        for cut in 0..data.len() {
            let (out, layout) = rewrite(LoadKind::Snapshot, &[&data[..cut], &data[cut..]]).unwrap();
            assert_eq!(out, want, "cut at {cut}");
            assert_eq!(layout.columns, ["id", "name"]);
        }
        // A last line without a newline, byte by byte.
        let bytes: Vec<&[u8]> = data[..data.len() - 1].chunks(1).collect();
        assert_eq!(rewrite(LoadKind::Snapshot, &bytes).unwrap().0, want);
    }

    #[test]
    fn changes_keep_the_action() {
        let data = b"meta.ts\tmeta.action\tkey.id\tvalue.name\nT\tD\t1\t\\N\nT\tU\t2\tx\n";
        let (out, layout) = rewrite(LoadKind::Changes, &[data]).unwrap();
        assert_eq!(out, b"D\t1\t\\N\nU\t2\tx\n");
        assert_eq!(layout.columns, [ACTION_COLUMN, "id", "name"]);
        assert_eq!(layout.key_index, 1);
        assert_eq!(
            rewrite(LoadKind::Changes, &[b"meta.ts\tkey.id\n"]).unwrap_err(),
            TsvError::MissingColumn("meta.action".to_owned())
        );
    }

    #[test]
    fn header_checks() {
        assert!(matches!(
            rewrite(LoadKind::Snapshot, &[b"meta.ts\tkey.id\tvalue.nope\n"]),
            Err(TsvError::UnknownColumn { label, version: 3 }) if label == "value.nope"
        ));
        assert_eq!(
            rewrite(LoadKind::Snapshot, &[b"meta.ts\tvalue.name\n"]).unwrap_err(),
            TsvError::MissingColumn("key.id".to_owned())
        );
        assert!(matches!(
            rewrite(LoadKind::Snapshot, &[b"key.id\tkey.id\n"]),
            Err(TsvError::DuplicateColumn(_))
        ));
        assert_eq!(
            rewrite(LoadKind::Snapshot, &[b""]).unwrap_err(),
            TsvError::NoHeader
        );
    }

    #[test]
    fn field_count_is_checked() {
        let err = rewrite(
            LoadKind::Snapshot,
            &[b"meta.ts\tkey.id\tvalue.name\nT\t1\n"],
        )
        .unwrap_err();
        assert_eq!(
            err,
            TsvError::FieldCount {
                line: 2,
                found: 2,
                expected: 3
            }
        );
    }

    #[test]
    fn arrays_become_postgres_literals() {
        let data = b"meta.ts\tkey.id\tvalue.tags\nT\t1\t[\"a\",\"b \\\\\\\"q\\\\\\\"\",null,\"t\\\\tab\"]\nT\t2\t\\N\nT\t3\t[]\n";
        let (out, _) = rewrite(LoadKind::Snapshot, &[data]).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "1\t{\"a\",\"b \\\\\"q\\\\\"\",NULL,\"t\\tab\"}\n2\t\\N\n3\t{}\n"
        );
        let bad = b"meta.ts\tkey.id\tvalue.tags\nT\t1\t{oops\n";
        assert!(matches!(
            rewrite(LoadKind::Snapshot, &[bad]),
            Err(TsvError::BadValue { line: 2, column, .. }) if column == "tags"
        ));
    }

    fn rewrite_for_mysql(data: &[u8]) -> Result<String, TsvError> {
        let m = model();
        let mut r = Rewriter::with_encoding(&m, LoadKind::Changes, Encoding::LoadData);
        let mut out = Vec::new();
        r.push(data, &mut out)?;
        r.finish(&mut out)?;
        Ok(String::from_utf8(out).unwrap())
    }

    #[test]
    fn load_data_lines() {
        let data =
            b"meta.ts\tmeta.action\tkey.id\tvalue.name\tvalue.created_at\tvalue.flag\tvalue.tags\n\
            T\tU\t1\ta\\tb\t2024-01-02T03:04:05Z\ttrue\t[\"x\"]\n\
            T\tD\t2\t\\N\t\\N\t\\N\t\\N\n";
        assert_eq!(
            rewrite_for_mysql(data).unwrap(),
            "U\t1\ta\\tb\t2024-01-02 03:04:05\t1\t[\"x\"]\nD\t2\t\\N\t\\N\t\\N\t\\N\n"
        );
        // Text only: the line passes whole, unless an escape reads otherwise in MySQL.
        let data =
            b"meta.ts\tmeta.action\tkey.id\tvalue.name\nT\tU\t1\tx\\\\y\nT\tU\t2\tform\\ffeed\n";
        assert_eq!(
            rewrite_for_mysql(data).unwrap(),
            "U\t1\tx\\\\y\nU\t2\tform\x0cfeed\n"
        );
    }

    #[test]
    fn non_finite_values_name_table_key_and_column() {
        let data = b"meta.ts\tmeta.action\tkey.id\tvalue.score\nT\tU\t7\t1.5\nT\tU\t8\tNaN\n";
        let e = rewrite_for_mysql(data).unwrap_err();
        assert!(
            matches!(&e, TsvError::NonFinite(n)
                if n.key == "8" && n.column == "score" && n.value == "NaN"),
            "{e:?}"
        );
        let text = e.to_string();
        assert!(
            text.contains("table `canvas.accounts`, record id=8, column `score`"),
            "{text}"
        );
        // PostgreSQL stores NaN: COPY passes it.
        let (out, _) = rewrite(LoadKind::Changes, &[data]).unwrap();
        assert!(out.ends_with(b"U\t8\tNaN\n"));
        let bad = b"meta.ts\tmeta.action\tkey.id\tvalue.flag\nT\tU\t1\tmaybe\n";
        assert!(
            matches!(rewrite_for_mysql(bad), Err(TsvError::BadValue { line: 2, column, .. }) if column == "flag")
        );
    }

    #[test]
    fn unescaping() {
        assert_eq!(unescape(b"a\\tb\\nc\\\\d\\N").unwrap(), "a\tb\nc\\dN");
        assert_eq!(unescape(b"\\101\\x42").unwrap(), "AB");
        assert_eq!(unescape("Ünï 🎓".as_bytes()).unwrap(), "Ünï 🎓");
        assert_eq!(
            cells(b"1\t\\N\tx\\ty").unwrap(),
            [Some("1".to_owned()), None, Some("x\ty".to_owned())]
        );
        assert_eq!(cells(b"ok\t\xff"), Err(1));
    }
}
