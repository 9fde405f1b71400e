//! Independent decoders of the emulator's formats, the expected content, and files on disk.

use super::*;

/// The emulator's range for what a job covered.
///
/// # Panics
/// On a range kind this suite does not know.
pub fn emulator_range(range: &DataRange) -> dap_emulator::EmulatedRange {
    match *range {
        DataRange::Snapshot { at } => dap_emulator::EmulatedRange::Snapshot {
            at_ms: at.as_millisecond(),
        },
        DataRange::Incremental { since, until } => dap_emulator::EmulatedRange::Incremental {
            since_ms: since.as_millisecond(),
            until_ms: until.as_millisecond(),
        },
        other => panic!("unknown range {other:?}"),
    }
}

/// The records the emulator says a job over `table` returned.
///
/// # Panics
/// For an unknown table.
pub fn expected_records(
    emu: &Emulator,
    namespace: &str,
    table: &str,
    range: &DataRange,
) -> Vec<dap_emulator::Record> {
    emu.expected_records(namespace, table, emulator_range(range))
        .expect("a known table")
}

/// The JSON values of [`expected_records`], as `jsonl` lines hold them.
pub fn expected_json(
    emu: &Emulator,
    namespace: &str,
    table: &str,
    range: &DataRange,
) -> Vec<serde_json::Value> {
    expected_records(emu, namespace, table, range)
        .iter()
        .map(dap_emulator::Record::to_json)
        .collect()
}

/// Decompresses a whole (multi-member) gzip file.
///
/// # Panics
/// When the file cannot be read or is not valid gzip.
pub fn gunzip_file(path: &Path) -> Vec<u8> {
    let file = std::fs::File::open(path).expect("open the downloaded file");
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(file)
        .read_to_end(&mut out)
        .expect("a valid gzip file");
    out
}

/// One field of a CSV or TSV export.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cell {
    /// A value (possibly empty).
    Text(String),
    /// SQL NULL: `NULL` unquoted in CSV, `\N` in TSV (where it also stands for a
    /// missing value).
    Null,
    /// No value at all: an empty unquoted CSV field (the value columns of a delete).
    Missing,
}

/// Parses RFC 4180 CSV as the emulator writes it: CRLF line ends, `"` quoting with
/// `""` escapes, unquoted `NULL` is [`Cell::Null`], an empty unquoted field is
/// [`Cell::Missing`], a quoted field is always [`Cell::Text`].
///
/// # Panics
/// On input that is not valid CSV (an unterminated quote, text after a closing quote,
/// a bare CR).
pub fn parse_csv(text: &str) -> Vec<Vec<Cell>> {
    let mut rows = Vec::new();
    let mut row = Vec::new();
    let mut chars = text.chars().peekable();
    if text.is_empty() {
        return rows;
    }
    loop {
        // One field.
        let cell = if chars.peek() == Some(&'"') {
            chars.next();
            let mut s = String::new();
            loop {
                match chars.next() {
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        s.push('"');
                    }
                    Some('"') => break,
                    Some(c) => s.push(c),
                    None => panic!("CSV ends inside a quoted field"),
                }
            }
            Cell::Text(s)
        } else {
            let mut s = String::new();
            while let Some(&c) = chars.peek() {
                if matches!(c, ',' | '\r' | '\n') {
                    break;
                }
                assert_ne!(c, '"', "a quote inside an unquoted CSV field");
                s.push(c);
                chars.next();
            }
            match s.as_str() {
                "" => Cell::Missing,
                "NULL" => Cell::Null,
                _ => Cell::Text(s),
            }
        };
        row.push(cell);
        match chars.next() {
            Some(',') => {}
            Some('\r') => {
                assert_eq!(chars.next(), Some('\n'), "CR without LF in CSV");
                rows.push(std::mem::take(&mut row));
                if chars.peek().is_none() {
                    return rows;
                }
            }
            Some('\n') => panic!("CSV record ended with a bare LF (expected CRLF)"),
            Some(c) => panic!("unexpected {c:?} after a CSV field"),
            None => {
                rows.push(row);
                return rows;
            }
        }
    }
}

/// Parses the PostgreSQL `COPY` text format as the emulator writes it: LF line ends,
/// tab separators, `\N` is [`Cell::Null`], `\\ \t \n \r` escapes.
///
/// # Panics
/// On an unknown escape.
pub fn parse_tsv(text: &str) -> Vec<Vec<Cell>> {
    let body = text.strip_suffix('\n').unwrap_or(text);
    if body.is_empty() {
        return Vec::new();
    }
    body.split('\n').map(parse_tsv_line).collect()
}

/// Parses one TSV line (without its LF); see [`parse_tsv`].
///
/// # Panics
/// On an unknown escape.
pub fn parse_tsv_line(line: &str) -> Vec<Cell> {
    line.split('\t')
        .map(|field| {
            if field == "\\N" {
                return Cell::Null;
            }
            let mut s = String::with_capacity(field.len());
            let mut chars = field.chars();
            while let Some(c) = chars.next() {
                if c != '\\' {
                    s.push(c);
                    continue;
                }
                match chars.next() {
                    Some('\\') => s.push('\\'),
                    Some('t') => s.push('\t'),
                    Some('n') => s.push('\n'),
                    Some('r') => s.push('\r'),
                    other => panic!("unknown TSV escape \\{other:?} in {field:?}"),
                }
            }
            Cell::Text(s)
        })
        .collect()
}

/// The rows (header first) a CSV or TSV export of `records` holds, with the header
/// taken from the emulator's table definition (expanded mode).
///
/// # Panics
/// For an unknown table or a format other than csv and tsv.
pub fn expected_rows(
    namespace: &str,
    table: &str,
    incremental: bool,
    format: Format,
    records: &[dap_emulator::Record],
) -> Vec<Vec<Cell>> {
    assert!(matches!(format, Format::Csv | Format::Tsv), "{format}");
    let columns = dap_emulator::data::table(namespace, table)
        .expect("a known table")
        .columns(incremental, false);
    let mut rows = vec![columns.iter().map(|c| Cell::Text(c.clone())).collect()];
    for r in records {
        rows.push(
            columns
                .iter()
                .map(|col| {
                    let value_column = col.starts_with("value.");
                    match r.column(col).flatten() {
                        Some(text) => Cell::Text(text),
                        // TSV writes NULL and missing alike.
                        None if format == Format::Tsv => Cell::Null,
                        None if value_column && r.value.is_none() => Cell::Missing,
                        None if col == "meta.action" => Cell::Missing,
                        None => Cell::Null,
                    }
                })
                .collect(),
        );
    }
    rows
}

/// Parses one object's decompressed content in `format` into rows (header first for
/// csv/tsv) or, for jsonl, one JSON value per line.
///
/// # Panics
/// On content that does not parse.
pub fn parse_content(format: Format, bytes: &[u8]) -> Parsed {
    let text = std::str::from_utf8(bytes).expect("UTF-8 content");
    match format {
        Format::Jsonl => Parsed::Json(
            text.lines()
                .map(|l| serde_json::from_str(l).expect("a JSON line"))
                .collect(),
        ),
        Format::Csv => Parsed::Rows(parse_csv(text)),
        Format::Tsv => Parsed::Rows(parse_tsv(text)),
        other => panic!("no parser for {other}"),
    }
}

/// Parsed content of an object.
#[derive(Debug, Clone, PartialEq)]
pub enum Parsed {
    /// JSON Lines.
    Json(Vec<serde_json::Value>),
    /// CSV/TSV rows, header first.
    Rows(Vec<Vec<Cell>>),
}

// ------------------------------------------------------------------ files

/// Every file under `dir` (relative paths, sorted), to spot leftovers.
///
/// # Panics
/// When the directory cannot be read.
pub fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    if !dir.exists() {
        return out;
    }
    for entry in std::fs::read_dir(dir).expect("read dir") {
        let entry = entry.expect("dir entry");
        let name = entry.file_name().to_string_lossy().into_owned();
        if entry.path().is_dir() {
            out.extend(
                files_under(&entry.path())
                    .into_iter()
                    .map(|n| format!("{name}/{n}")),
            );
        } else {
            out.push(name);
        }
    }
    out.sort();
    out
}

/// Polls `condition` every millisecond until it holds, for at most `limit`.
/// For waiting on the emulator's statistics while another thread drives a client.
///
/// # Panics
/// When the condition does not hold in time.
pub fn wait_until(limit: Duration, what: &str, mut condition: impl FnMut() -> bool) {
    let start = Instant::now();
    while !condition() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(ms(1));
    }
}
