//! Output formats: JSON Lines, CSV and TSV, gzip compressed.
//!
//! * `jsonl`: one JSON object per line, `{"key":{..},"value":{..},"meta":{..}}`; null
//!   properties are omitted, deletes have no `value`.
//! * `csv`: RFC 4180 (CRLF line ends) with a header row; columns `meta.ts`,
//!   `meta.action` (incremental only), `key.id`, `value.*` (nested objects flattened
//!   with dots in `expanded` mode, one JSON column in `condensed` mode). NULL is the
//!   unquoted word `NULL`, an empty string is `""`, a missing value (the value columns
//!   of a delete) is an empty field; fields with `"`, `,`, CR, LF, tab, surrounding
//!   spaces, or equal to `NULL` are quoted.
//! * `tsv`: PostgreSQL `COPY` text format with a header row: `\N` is NULL (and
//!   missing), backslash, tab, LF and CR are escaped as `\\`, `\t`, `\n`, `\r`.

use std::io::Write as _;

use crate::data::{Record, Scalar, TableDef};

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

/// Encodes records of one table in one format.
#[derive(Debug, Clone, Copy)]
pub struct Encoder<'a> {
    table: &'a TableDef,
    format: Format,
    mode: Mode,
    incremental: bool,
}

impl<'a> Encoder<'a> {
    /// An encoder for `table` in `format`/`mode`; `incremental` adds `meta.action`.
    pub fn new(table: &'a TableDef, format: Format, mode: Mode, incremental: bool) -> Self {
        Self {
            table,
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
            .table
            .columns(self.incremental, self.mode == Mode::Condensed);
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

    /// Appends one record (one line).
    pub fn record(&self, out: &mut String, r: &Record) {
        if self.format == Format::Jsonl {
            r.write_jsonl(out);
            out.push('\n');
            return;
        }
        let mut cells: Vec<Cell> = Vec::with_capacity(self.table.values.len() + 3);
        cells.push(Cell::Text(crate::data::format_ts(r.ts_ms)));
        if self.incremental {
            cells.push(match r.action {
                Some(a) => Cell::Text(a.letter().to_owned()),
                None => Cell::Missing,
            });
        }
        cells.push(Cell::Text(r.id.to_string()));
        for f in self.table.values {
            let v = r
                .value
                .as_ref()
                .and_then(|vals| vals.iter().find(|(n, _)| *n == f.name).map(|(_, v)| v));
            match (f.ty, self.mode) {
                (crate::data::FieldType::Object(sub), Mode::Expanded) => {
                    for s in sub {
                        cells.push(match v {
                            None => Cell::Missing,
                            Some(Scalar::Object(fields)) => fields
                                .iter()
                                .find(|(n, _)| *n == s.name)
                                .map_or(Cell::Null, |(_, x)| Cell::from_scalar(x)),
                            Some(_) => Cell::Null,
                        });
                    }
                }
                _ => cells.push(v.map_or(Cell::Missing, Cell::from_scalar)),
            }
        }
        for (i, c) in cells.iter().enumerate() {
            match self.format {
                Format::Csv => {
                    if i > 0 {
                        out.push(',');
                    }
                    csv_cell(out, c);
                }
                _ => {
                    if i > 0 {
                        out.push('\t');
                    }
                    tsv_cell(out, c);
                }
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

enum Cell {
    Text(String),
    Null,
    Missing,
}

impl Cell {
    fn from_scalar(s: &Scalar) -> Self {
        s.to_text().map_or(Self::Null, Self::Text)
    }
}

fn csv_cell(out: &mut String, c: &Cell) {
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

fn tsv_cell(out: &mut String, c: &Cell) {
    match c {
        Cell::Missing | Cell::Null => out.push_str("\\N"),
        Cell::Text(s) => {
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

/// Compresses `data` into one gzip member.
pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(
        Vec::with_capacity(data.len() / 4 + 64),
        flate2::Compression::default(),
    );
    // Writing into a Vec cannot fail.
    let _ = enc.write_all(data);
    enc.finish().unwrap_or_default()
}
