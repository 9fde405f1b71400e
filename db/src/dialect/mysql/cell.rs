//! One cell of DAP's TSV (PostgreSQL `COPY` text) as `LOAD DATA` text for a MySQL
//! column: the values MySQL stores differently are reshaped, the ones it cannot store
//! refused.
//!
//! Both formats separate fields by tabs and escape with backslashes, and both read
//! `\N` as NULL (and as `N` within a value) and `\\`, `\t`, `\n`, `\r`, `\b` alike,
//! so most cells pass untouched.
//! A cell with another escape (`\f`, `\v`, octal or hex, or a letter that MySQL reads
//! otherwise, such as `\Z`) is unescaped and escaped again. Per type:
//! * date-time: `2024-01-02T03:04:05.5Z` (any offset) becomes `2024-01-02 03:04:05.5`
//!   UTC; the server keeps whole seconds, as it does for the official client's rows;
//! * boolean: `1` or `0`;
//! * floating point: NaN and infinity are refused ([`CellError::NonFinite`]), as the
//!   official client refuses them on MySQL;
//! * UUID: its 16 bytes; IP address: its 4 or 16 bytes.

use std::borrow::Cow;

/// How a column's cells are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cell {
    /// Text, numbers, JSON, enumerations: only escapes are checked.
    Text,
    /// `date-time`.
    Timestamp,
    /// `boolean`.
    Boolean,
    /// `float32`/`float64`.
    Float,
    /// `uuid`.
    Uuid,
    /// `ipv4`/`ipv6`.
    Inet,
}

impl Cell {
    /// The cell kind of a column type.
    pub fn of(ty: &crate::model::ColumnType) -> Self {
        use crate::model::ColumnType;
        match ty {
            ColumnType::Timestamp => Self::Timestamp,
            ColumnType::Boolean => Self::Boolean,
            ColumnType::Real | ColumnType::Double => Self::Float,
            ColumnType::Uuid => Self::Uuid,
            ColumnType::Inet => Self::Inet,
            _ => Self::Text,
        }
    }
}

/// A cell MySQL cannot take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CellError {
    /// NaN or infinity in a floating-point column (the value as sent).
    NonFinite(String),
    /// Not a value of the column's type (why).
    Invalid(String),
}

/// Whether escaped cells (or whole lines of them) read the same in both formats.
pub fn escapes_agree(value: &[u8]) -> bool {
    let mut i = 0;
    while let Some(pos) = memchr::memchr(b'\\', &value[i..]) {
        let next = value.get(i + pos + 1).copied();
        if !matches!(next, Some(b'\\' | b't' | b'n' | b'r' | b'b' | b'N')) {
            return false;
        }
        i += pos + 2;
        if i >= value.len() {
            break;
        }
    }
    true
}

/// Appends `bytes` escaped for `LOAD DATA` (tab, newline, carriage return, backslash
/// and NUL).
pub fn escape_into(bytes: &[u8], out: &mut Vec<u8>) {
    for &b in bytes {
        match b {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\t' => out.extend_from_slice(b"\\t"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            0 => out.extend_from_slice(b"\\0"),
            b => out.push(b),
        }
    }
}

/// The unescaped text of a cell (not `\N`).
fn text(value: &[u8]) -> Result<Cow<'_, str>, CellError> {
    if memchr::memchr(b'\\', value).is_none() {
        return std::str::from_utf8(value)
            .map(Cow::Borrowed)
            .map_err(|_| CellError::Invalid("the value is not valid UTF-8".to_owned()));
    }
    crate::tsv::unescape(value)
        .map(Cow::Owned)
        .ok_or_else(|| CellError::Invalid("the value is not valid UTF-8".to_owned()))
}

/// Appends the `LOAD DATA` text of one escaped `COPY` cell of kind `cell`.
pub fn encode(cell: Cell, value: &[u8], out: &mut Vec<u8>) -> Result<(), CellError> {
    if value == b"\\N" {
        out.extend_from_slice(value);
        return Ok(());
    }
    match cell {
        Cell::Text => {
            if escapes_agree(value) {
                out.extend_from_slice(value);
            } else {
                escape_into(text(value)?.as_bytes(), out);
            }
            Ok(())
        }
        Cell::Timestamp => timestamp(value, out),
        Cell::Boolean => {
            out.push(match value {
                b"true" | b"t" | b"1" => b'1',
                b"false" | b"f" | b"0" => b'0',
                _ => return Err(invalid(value, "a boolean")),
            });
            Ok(())
        }
        Cell::Float => float(value, out),
        Cell::Uuid => {
            let t = text(value)?;
            let hex: String = t.chars().filter(|c| *c != '-').collect();
            let bytes = decode_hex(&hex).filter(|b| b.len() == 16 && t.len() == 36);
            escape_into(&bytes.ok_or_else(|| invalid(value, "a UUID"))?, out);
            Ok(())
        }
        Cell::Inet => {
            let ip: std::net::IpAddr = text(value)?
                .trim()
                .parse()
                .map_err(|_| invalid(value, "an IP address"))?;
            match ip {
                std::net::IpAddr::V4(v4) => escape_into(&v4.octets(), out),
                std::net::IpAddr::V6(v6) => escape_into(&v6.octets(), out),
            }
            Ok(())
        }
    }
}

fn invalid(value: &[u8], what: &str) -> CellError {
    CellError::Invalid(format!(
        "{:?} is not {what}",
        String::from_utf8_lossy(value)
    ))
}

fn decode_hex(hex: &str) -> Option<Vec<u8>> {
    if hex.len() % 2 != 0 {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect()
}

/// A floating-point cell: passed through, unless MySQL cannot store it.
fn float(value: &[u8], out: &mut Vec<u8>) -> Result<(), CellError> {
    let t = text(value)?;
    let parsed: f64 = t.trim().parse().map_err(|_| invalid(value, "a number"))?;
    if !parsed.is_finite() {
        return Err(CellError::NonFinite(t.into_owned()));
    }
    out.extend_from_slice(value);
    Ok(())
}

/// A date-time cell as naive UTC.
fn timestamp(value: &[u8], out: &mut Vec<u8>) -> Result<(), CellError> {
    // The common case: `YYYY-MM-DDTHH:MM:SS[.f]Z`.
    if value.len() >= 20
        && value[10] == b'T'
        && value.last() == Some(&b'Z')
        && value[..value.len() - 1]
            .iter()
            .all(|b| b.is_ascii_digit() || matches!(b, b'-' | b':' | b'.' | b'T'))
    {
        out.extend_from_slice(&value[..10]);
        out.push(b' ');
        out.extend_from_slice(&value[11..value.len() - 1]);
        return Ok(());
    }
    let t = text(value)?;
    let naive = crate::store::utc_timestamp(&t).map_err(|_| invalid(value, "a date and time"))?;
    out.extend_from_slice(naive.as_bytes());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(cell: Cell, value: &[u8]) -> Result<String, CellError> {
        let mut out = Vec::new();
        encode(cell, value, &mut out)?;
        Ok(String::from_utf8_lossy(&out).into_owned())
    }

    #[test]
    fn text_passes_unless_escapes_differ() {
        for v in [
            &b"plain"[..],
            b"a\\tb\\nc\\\\d\\r",
            b"\\\\N",
            "Ünï 🎓".as_bytes(),
            b"\\N",
        ] {
            assert_eq!(enc(Cell::Text, v).unwrap().as_bytes(), v);
        }
        // PostgreSQL's \f, \v, octal and hex, and a \Z MySQL would read as ^Z.
        assert_eq!(enc(Cell::Text, b"a\\fb").unwrap(), "a\x0cb");
        assert_eq!(enc(Cell::Text, b"\\101\\x42\\Z").unwrap(), "ABZ");
        assert_eq!(enc(Cell::Text, b"tab\\011x").unwrap(), "tab\\tx");
        assert_eq!(enc(Cell::Text, b"a\\Nb").unwrap(), "a\\Nb");
        assert_eq!(enc(Cell::Text, b"nul\\0").unwrap(), "nul\\0");
        assert!(matches!(
            enc(Cell::Text, b"\\xff"),
            Err(CellError::Invalid(_))
        ));
    }

    #[test]
    fn timestamps_become_naive_utc() {
        assert_eq!(
            enc(Cell::Timestamp, b"2024-01-02T03:04:05Z").unwrap(),
            "2024-01-02 03:04:05"
        );
        assert_eq!(
            enc(Cell::Timestamp, b"2024-01-02T03:04:05.123456Z").unwrap(),
            "2024-01-02 03:04:05.123456"
        );
        assert_eq!(
            enc(Cell::Timestamp, b"2024-01-02T05:04:05+02:00").unwrap(),
            "2024-01-02 03:04:05"
        );
        assert_eq!(
            enc(Cell::Timestamp, b"2024-01-02 03:04:05").unwrap(),
            "2024-01-02 03:04:05"
        );
        assert!(matches!(
            enc(Cell::Timestamp, b"soon"),
            Err(CellError::Invalid(_))
        ));
        assert_eq!(enc(Cell::Timestamp, b"\\N").unwrap(), "\\N");
    }

    #[test]
    fn booleans_and_floats() {
        assert_eq!(enc(Cell::Boolean, b"true").unwrap(), "1");
        assert_eq!(enc(Cell::Boolean, b"f").unwrap(), "0");
        assert!(enc(Cell::Boolean, b"yes").is_err());
        assert_eq!(enc(Cell::Float, b"-0.25").unwrap(), "-0.25");
        assert_eq!(enc(Cell::Float, b"1e300").unwrap(), "1e300");
        for v in ["NaN", "Infinity", "-Infinity", "inf", "nan"] {
            assert_eq!(
                enc(Cell::Float, v.as_bytes()),
                Err(CellError::NonFinite(v.to_owned()))
            );
        }
        assert!(matches!(enc(Cell::Float, b"x"), Err(CellError::Invalid(_))));
    }

    #[test]
    fn uuids_and_addresses_as_bytes() {
        let mut out = Vec::new();
        encode(
            Cell::Uuid,
            b"00090a0d-5c00-4000-8000-0000000000ff",
            &mut out,
        )
        .unwrap();
        let mut want = b"\\0\\t\\n\\r\\\\\\0\x40\\0\x80".to_vec();
        want.extend_from_slice(&b"\\0".repeat(6));
        want.push(0xff);
        assert_eq!(out, want);
        assert!(enc(Cell::Uuid, b"not-a-uuid").is_err());
        let mut out = Vec::new();
        encode(Cell::Inet, b"10.0.0.1", &mut out).unwrap();
        assert_eq!(out, b"\\n\\0\\0\x01");
        assert!(enc(Cell::Inet, b"10.0.0").is_err());
    }
}
