//! Values, records and their JSON and text forms.

use std::fmt::Write as _;

/// A column value.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Scalar {
    /// SQL NULL (omitted in JSON).
    Null,
    /// Integer.
    Int(i64),
    /// Number; NaN and the infinities are written as `NaN`, `Infinity`, `-Infinity`
    /// (JSON strings in JSON Lines).
    Float(f64),
    /// Boolean.
    Bool(bool),
    /// String (also timestamps and enums).
    Str(String),
    /// Nested object (fixed fields, in schema order).
    Object(Vec<(&'static str, Self)>),
    /// JSON array.
    Array(Vec<Self>),
    /// Free-form JSON object.
    Json(serde_json::Value),
}

/// The text of a non-finite float, or `None` for a finite one.
fn non_finite_text(f: f64) -> Option<&'static str> {
    if f.is_nan() {
        Some("NaN")
    } else if f.is_infinite() {
        Some(if f > 0.0 { "Infinity" } else { "-Infinity" })
    } else {
        None
    }
}

impl Scalar {
    /// The value as JSON; `None` for NULL (JSON output omits null properties) and for
    /// an object whose fields are all NULL.
    pub fn to_json(&self) -> Option<serde_json::Value> {
        use serde_json::Value;
        match self {
            Self::Null => None,
            Self::Int(i) => Some(Value::from(*i)),
            Self::Float(f) => Some(match non_finite_text(*f) {
                Some(t) => Value::String(t.to_owned()),
                None => serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number),
            }),
            Self::Bool(b) => Some(Value::Bool(*b)),
            Self::Str(s) => Some(Value::String(s.clone())),
            Self::Object(fields) => {
                let map: serde_json::Map<String, Value> = fields
                    .iter()
                    .filter_map(|(k, v)| v.to_json().map(|j| ((*k).to_owned(), j)))
                    .collect();
                (!map.is_empty()).then_some(Value::Object(map))
            }
            Self::Array(items) => Some(Value::Array(
                items
                    .iter()
                    .map(|i| i.to_json().unwrap_or(Value::Null))
                    .collect(),
            )),
            Self::Json(v) => Some(v.clone()),
        }
    }

    /// The value as text for a CSV/TSV cell; `None` for NULL. Objects and arrays
    /// become compact JSON.
    pub fn to_text(&self) -> Option<String> {
        match self {
            Self::Null => None,
            Self::Int(i) => Some(i.to_string()),
            Self::Bool(b) => Some(b.to_string()),
            Self::Str(s) => Some(s.clone()),
            Self::Float(f) => match non_finite_text(*f) {
                Some(t) => Some(t.to_owned()),
                None => self.to_json().map(|j| j.to_string()),
            },
            Self::Object(_) | Self::Array(_) | Self::Json(_) => {
                self.to_json().map(|j| j.to_string())
            }
        }
    }

    /// Appends the CSV/TSV text of the value (nothing for NULL) without allocating for
    /// the common scalar kinds.
    pub(crate) fn write_text(&self, out: &mut String) {
        match self {
            Self::Null => {}
            Self::Int(i) => {
                let _ = write!(out, "{i}");
            }
            Self::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Self::Str(s) => out.push_str(s),
            _ => {
                if let Some(t) = self.to_text() {
                    out.push_str(&t);
                }
            }
        }
    }

    fn write_json(&self, out: &mut String) {
        match self {
            Self::Str(s) => write_json_str(out, s),
            Self::Int(i) => {
                let _ = write!(out, "{i}");
            }
            Self::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Self::Null => out.push_str("null"),
            _ => match self.to_json() {
                Some(j) => out.push_str(&j.to_string()),
                None => out.push_str("null"),
            },
        }
    }
}

/// Writes `s` as a JSON string literal.
pub(crate) fn write_json_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Upsert or delete, as in `meta.action`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// `U`: insert or update.
    Upsert,
    /// `D`: delete.
    Delete,
}

impl Action {
    /// The letter used on the wire.
    pub fn letter(self) -> &'static str {
        match self {
            Self::Upsert => "U",
            Self::Delete => "D",
        }
    }
}

/// One record of a query result.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// The primary key (`key.id`).
    pub id: i64,
    /// Value columns in schema order; `None` for a delete.
    pub value: Option<Vec<(&'static str, Scalar)>>,
    /// `meta.ts` in milliseconds since the Unix epoch.
    pub ts_ms: i64,
    /// `meta.action`; present in incremental results only.
    pub action: Option<Action>,
}

impl Record {
    /// The record as the JSON object a `jsonl` line holds (null properties omitted).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::from_str(&self.to_jsonl_line()).unwrap_or(serde_json::Value::Null)
    }

    /// The record as one `jsonl` line (without the newline).
    pub fn to_jsonl_line(&self) -> String {
        let mut out = String::with_capacity(256);
        self.write_jsonl(&mut out);
        out
    }

    pub(crate) fn write_jsonl(&self, out: &mut String) {
        let _ = write!(out, "{{\"key\":{{\"id\":{}}}", self.id);
        if let Some(value) = &self.value {
            out.push_str(",\"value\":{");
            let mut first = true;
            for (name, v) in value {
                if v.to_json().is_none() {
                    continue;
                }
                if !first {
                    out.push(',');
                }
                first = false;
                write_json_str(out, name);
                out.push(':');
                v.write_json(out);
            }
            out.push('}');
        }
        out.push_str(",\"meta\":{\"ts\":");
        write_json_str(out, &format_ts(self.ts_ms));
        if let Some(a) = self.action {
            let _ = write!(out, ",\"action\":\"{}\"", a.letter());
        }
        out.push_str("}}");
    }

    /// Value of column `path` (`key.id`, `meta.ts`, `value.name`, `value.settings.x`):
    /// `Some(None)` for NULL or missing, `None` if there is no such column.
    pub fn column(&self, path: &str) -> Option<Option<String>> {
        match path {
            "key.id" => return Some(Some(self.id.to_string())),
            "meta.ts" => return Some(Some(format_ts(self.ts_ms))),
            "meta.action" => return Some(self.action.map(|a| a.letter().to_owned())),
            _ => {}
        }
        let rest = path.strip_prefix("value.")?;
        let (head, sub) = match rest.split_once('.') {
            Some((h, s)) => (h, Some(s)),
            None => (rest, None),
        };
        let Some(value) = &self.value else {
            return Some(None);
        };
        let (_, v) = value.iter().find(|(n, _)| *n == head)?;
        match (sub, v) {
            (None, v) => Some(v.to_text()),
            (Some(sub), Scalar::Object(fields)) => fields
                .iter()
                .find(|(n, _)| *n == sub)
                .map(|(_, v)| v.to_text()),
            (Some(_), Scalar::Null) => Some(None),
            (Some(_), _) => None,
        }
    }
}

/// The proleptic Gregorian date and time of `secs` since the epoch (UTC):
/// `(year, month, day, hour, minute, second)`.
fn civil(secs: i64) -> (i64, u32, u32, u32, u32, u32) {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400) as u32;
    // Days to civil date, after H. Hinnant's `civil_from_days`.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day, rem / 3600, rem / 60 % 60, rem % 60)
}

/// Appends `ms` since the epoch as RFC 3339 UTC, `YYYY-MM-DDTHH:MM:SS` plus `.mmm`
/// when `millis` is true, plus `Z`; years are clamped to 0000-9999.
pub(crate) fn write_ts(out: &mut String, ms: i64, millis: bool) {
    let (year, month, day, h, m, s) = civil(ms.div_euclid(1000));
    let mut buf = *b"0000-00-00T00:00:00.000Z";
    let mut put = |at: usize, width: usize, mut v: u32| {
        for i in (at..at + width).rev() {
            buf[i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    put(0, 4, year.clamp(0, 9999) as u32);
    put(5, 2, month);
    put(8, 2, day);
    put(11, 2, h);
    put(14, 2, m);
    put(17, 2, s);
    put(20, 3, ms.rem_euclid(1000) as u32);
    let text = if millis {
        &buf[..]
    } else {
        buf[19] = b'Z';
        &buf[..20]
    };
    out.push_str(std::str::from_utf8(text).unwrap_or("1970-01-01T00:00:00Z"));
}

/// Formats milliseconds since the epoch as RFC 3339 UTC, with milliseconds only
/// when they are not zero (`2024-01-01T00:00:00Z`, `2024-01-01T00:00:00.250Z`).
pub fn format_ts(ms: i64) -> String {
    let mut out = String::with_capacity(24);
    write_ts(&mut out, ms, ms.rem_euclid(1000) != 0);
    out
}

/// Formats milliseconds since the epoch as RFC 3339 UTC with exactly three fraction
/// digits, as `expires_at` is written.
pub fn format_ts_millis(ms: i64) -> String {
    let mut out = String::with_capacity(24);
    write_ts(&mut out, ms, true);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_finite_floats_have_words() {
        for (f, word) in [
            (f64::NAN, "NaN"),
            (f64::INFINITY, "Infinity"),
            (f64::NEG_INFINITY, "-Infinity"),
        ] {
            assert_eq!(Scalar::Float(f).to_text().as_deref(), Some(word));
            assert_eq!(Scalar::Float(f).to_json(), Some(serde_json::json!(word)));
        }
        assert_eq!(Scalar::Float(12.5).to_text().as_deref(), Some("12.5"));
    }

    #[test]
    fn arrays_and_objects_are_compact_json() {
        let v = Scalar::Array(vec![
            Scalar::Str("a\tb".into()),
            Scalar::Object(vec![("x", Scalar::Int(1)), ("y", Scalar::Null)]),
        ]);
        assert_eq!(v.to_text().as_deref(), Some(r#"["a\tb",{"x":1}]"#));
        let mut out = String::new();
        Scalar::Int(-7).write_text(&mut out);
        Scalar::Null.write_text(&mut out);
        v.write_text(&mut out);
        assert_eq!(out, r#"-7["a\tb",{"x":1}]"#);
    }

    #[test]
    fn timestamps() {
        assert_eq!(format_ts(1_704_067_200_000), "2024-01-01T00:00:00Z");
        assert_eq!(format_ts(1_704_067_200_250), "2024-01-01T00:00:00.250Z");
        assert_eq!(
            format_ts_millis(1_704_067_200_000),
            "2024-01-01T00:00:00.000Z"
        );
    }
}
