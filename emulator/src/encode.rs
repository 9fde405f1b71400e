//! Output formats: JSON Lines, CSV and TSV, gzip compressed.
//!
//! * `jsonl`: one JSON object per line, `{"key":{..},"value":{..},"meta":{..}}`; null
//!   properties are omitted, deletes have no `value`.
//! * `csv`: RFC 4180 (CRLF line ends) with a header row; columns `meta.ts`,
//!   `meta.action` (incremental only), `key.id`, `value.*` (nested objects flattened
//!   with dots in `expanded` mode, one JSON column in `condensed` mode; arrays and
//!   free-form objects are one JSON column in both). NULL is the unquoted word `NULL`,
//!   an empty string is `""`, a missing value (the value columns of a delete) is an
//!   empty field; fields with `"`, `,`, CR, LF, tab, surrounding spaces, or equal to
//!   `NULL` are quoted.
//! * `tsv`: PostgreSQL `COPY` text format with a header row: `\N` is NULL (and
//!   missing), backslash, tab, LF and CR are escaped as `\\`, `\t`, `\n`, `\r`.
//!
//! Non-finite floats are `NaN`, `Infinity` and `-Infinity` in CSV and TSV, and the
//! JSON strings `"NaN"`, `"Infinity"`, `"-Infinity"` in JSON Lines.

use std::io::Write as _;

use crate::data::{Column, FieldType, Record, Scalar, Shape, TableDef, write_ts};

/// Output format of a query.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// JSON Lines.
    Jsonl,
    /// Comma-separated values.
    Csv,
    /// Tab-separated values.
    Tsv,
}

impl Format {
    /// Parses the wire name (`jsonl`, `csv`, `tsv`); parquet is not supported.
    pub fn from_name(s: &str) -> Option<Self> {
        match s {
            "jsonl" => Some(Self::Jsonl),
            "csv" => Some(Self::Csv),
            "tsv" => Some(Self::Tsv),
            _ => None,
        }
    }

    /// The file name suffix of objects in this format.
    pub fn extension(self) -> &'static str {
        match self {
            Self::Jsonl => "json.gz",
            Self::Csv => "csv.gz",
            Self::Tsv => "tsv.gz",
        }
    }
}

/// Output generation mode for CSV/TSV.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Mode {
    /// Nested fields are laid out in several columns.
    #[default]
    Expanded,
    /// Nested fields are one JSON column.
    Condensed,
}

/// Encodes records of one schema version of a table in one format.
#[derive(Debug, Clone)]
pub struct Encoder {
    shape: Shape,
    columns: Vec<Column>,
    format: Format,
    mode: Mode,
    incremental: bool,
}

/// One CSV/TSV field.
#[derive(Clone, Copy)]
enum Cell<'a> {
    Text(&'a str),
    Null,
    Missing,
}

impl Encoder {
    /// An encoder for the first schema version of `table` in `format`/`mode`;
    /// `incremental` adds `meta.action`.
    pub fn new(table: &'static TableDef, format: Format, mode: Mode, incremental: bool) -> Self {
        Self::for_shape(Shape::first(table), format, mode, incremental)
    }

    /// An encoder for one schema version of a table.
    pub fn for_shape(shape: Shape, format: Format, mode: Mode, incremental: bool) -> Self {
        Self {
            shape,
            columns: shape.columns(),
            format,
            mode,
            incremental,
        }
    }

    /// Appends the header row (nothing for jsonl).
    pub fn header(&self, out: &mut String) {
        let sep = match self.format {
            Format::Jsonl => return,
            Format::Csv => ',',
            Format::Tsv => '\t',
        };
        let cols = self
            .shape
            .header(self.incremental, self.mode == Mode::Condensed);
        for (i, c) in cols.iter().enumerate() {
            if i > 0 {
                out.push(sep);
            }
            out.push_str(c);
        }
        out.push_str(self.eol());
    }

    fn eol(&self) -> &'static str {
        match self.format {
            Format::Csv => "\r\n",
            _ => "\n",
        }
    }

    fn cell(&self, out: &mut String, first: bool, c: Cell<'_>) {
        match self.format {
            Format::Csv => {
                if !first {
                    out.push(',');
                }
                csv_cell(out, c);
            }
            _ => {
                if !first {
                    out.push('\t');
                }
                tsv_cell(out, c);
            }
        }
    }

    fn scalar_cell(&self, out: &mut String, scratch: &mut String, v: Option<&Scalar>) {
        match v {
            None => self.cell(out, false, Cell::Missing),
            Some(Scalar::Null) => self.cell(out, false, Cell::Null),
            Some(s) => {
                scratch.clear();
                s.write_text(scratch);
                self.cell(out, false, Cell::Text(scratch));
            }
        }
    }

    /// The value of column `j` of a record (by position, or by name if the record
    /// was laid out differently).
    fn value_of<'r>(&self, r: &'r Record, j: usize) -> Option<&'r Scalar> {
        let values = r.value.as_ref()?;
        let name = self.columns[j].name;
        match values.get(j) {
            Some((n, v)) if *n == name => Some(v),
            _ => Some(
                values
                    .iter()
                    .find(|(n, _)| *n == name)
                    .map_or(&Scalar::Null, |(_, v)| v),
            ),
        }
    }

    /// Appends one record (one line).
    pub fn record(&self, out: &mut String, r: &Record) {
        if self.format == Format::Jsonl {
            r.write_jsonl(out);
            out.push('\n');
            return;
        }
        let mut scratch = String::new();
        write_ts(&mut scratch, r.ts_ms, r.ts_ms.rem_euclid(1000) != 0);
        self.cell(out, true, Cell::Text(&scratch));
        if self.incremental {
            let action = r.action.map_or(Cell::Missing, |a| Cell::Text(a.letter()));
            self.cell(out, false, action);
        }
        scratch.clear();
        let _ = std::fmt::Write::write_fmt(&mut scratch, format_args!("{}", r.id));
        self.cell(out, false, Cell::Text(&scratch));
        for (j, col) in self.columns.iter().enumerate() {
            let v = self.value_of(r, j);
            match (col.ty, self.mode) {
                (FieldType::Object(sub), Mode::Expanded) => {
                    for s in sub {
                        let inner = match v {
                            None => None,
                            Some(Scalar::Object(fields)) => Some(
                                fields
                                    .iter()
                                    .find(|(n, _)| *n == s.name)
                                    .map_or(&Scalar::Null, |(_, x)| x),
                            ),
                            Some(_) => Some(&Scalar::Null),
                        };
                        self.scalar_cell(out, &mut scratch, inner);
                    }
                }
                _ => self.scalar_cell(out, &mut scratch, v),
            }
        }
        out.push_str(self.eol());
    }

    /// The whole uncompressed export of `records`, header included.
    pub fn encode(&self, records: &[Record]) -> String {
        let mut out = String::with_capacity(records.len() * 200 + 256);
        self.header(&mut out);
        for r in records {
            self.record(&mut out, r);
        }
        out
    }
}

fn csv_cell(out: &mut String, c: Cell<'_>) {
    match c {
        Cell::Missing => {}
        Cell::Null => out.push_str("NULL"),
        Cell::Text(s) => {
            let quote = s.is_empty()
                || s.eq_ignore_ascii_case("null")
                || s.starts_with(' ')
                || s.ends_with(' ')
                || s.contains(['"', ',', '\n', '\r', '\t']);
            if quote {
                out.push('"');
                for ch in s.chars() {
                    if ch == '"' {
                        out.push('"');
                    }
                    out.push(ch);
                }
                out.push('"');
            } else {
                out.push_str(s);
            }
        }
    }
}

fn tsv_cell(out: &mut String, c: Cell<'_>) {
    match c {
        Cell::Missing | Cell::Null => out.push_str("\\N"),
        Cell::Text(s) => {
            if !s.contains(['\\', '\t', '\n', '\r']) {
                out.push_str(s);
                return;
            }
            for ch in s.chars() {
                match ch {
                    '\\' => out.push_str("\\\\"),
                    '\t' => out.push_str("\\t"),
                    '\n' => out.push_str("\\n"),
                    '\r' => out.push_str("\\r"),
                    c => out.push(c),
                }
            }
        }
    }
}

/// Compresses `data` into one gzip member (default level).
pub fn gzip(data: &[u8]) -> Vec<u8> {
    let level = flate2::Compression::default();
    let mut enc = flate2::write::GzEncoder::new(Vec::with_capacity(data.len() / 4 + 64), level);
    // Writing into a Vec cannot fail.
    let _ = enc.write_all(data);
    enc.finish().unwrap_or_default()
}
