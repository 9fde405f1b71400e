//! Deterministic column values: a pure function of the table, the key, the record
//! version, the column and the schema epoch the record was written in.

use super::catalog::{FieldType, TableDef};
use super::record::Scalar;
use super::shape::Column;
use super::{format_ts, splitmix, table_seed};

/// Strings that exercise every escaping rule: empty, quotes, commas, tabs, newlines,
/// carriage returns, backslashes, the words CSV/TSV use for NULL, non-ASCII text
/// (4-byte UTF-8 included), and DAP's marker for oversized values.
pub const AWKWARD_STRINGS: &[&str] = &[
    "",
    "O'Brien said \"hi\"",
    "comma, separated, values",
    "tab\tseparated",
    "two\nlines",
    "windows\r\nline",
    "back\\slash \\N",
    "\\N",
    "NULL",
    "Ünïcødé — 日本語 ✓ 🎓",
    " padded ",
    "__cd2_oversized_truncated__",
    "plain",
];

/// What a value is generated for.
struct Gen {
    table: &'static str,
    column: &'static str,
    id: i64,
    version: u64,
}

/// The value of `column` of record `id` at `version`, written in schema `epoch`.
pub(crate) fn value(
    table: &TableDef,
    column: &Column,
    id: i64,
    version: u64,
    epoch: u32,
) -> Scalar {
    if column.since_epoch > epoch {
        return Scalar::Null;
    }
    let h = splitmix(
        table_seed(table)
            ^ (id as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
            ^ version.wrapping_mul(0xC2B2_AE3D_27D4_EB4F)
            ^ column.slot.wrapping_mul(0x1656_67B1_9E37_79F9),
    );
    let known = usize::try_from(epoch).unwrap_or(usize::MAX);
    let extra = &column.extra_enum[..known.min(column.extra_enum.len())];
    let g = Gen {
        table: table.name,
        column: column.name,
        id,
        version,
    };
    if !column.required && h % 7 == 3 {
        return Scalar::Null;
    }
    if column.primary {
        return primary_string(&g, h);
    }
    g.scalar(column.ty, h, extra)
}

/// The table's first long string column: every awkward string in turn.
fn primary_string(g: &Gen, h: u64) -> Scalar {
    let n = (g.id as u64).wrapping_add(g.version) as usize % AWKWARD_STRINGS.len();
    let p = AWKWARD_STRINGS[n];
    if h & 0x100 == 0 {
        Scalar::Str(p.to_owned())
    } else {
        Scalar::Str(format!("{p} {} #{}", g.table, g.id))
    }
}

fn sub_hash(h: u64, i: usize) -> u64 {
    splitmix(h ^ (i as u64 + 1).wrapping_mul(0xA24B_AED4_963E_E407))
}

impl Gen {
    fn scalar(&self, ty: FieldType, h: u64, extra: &[&str]) -> Scalar {
        use FieldType as T;
        let pick = (h >> 8) as usize;
        match ty {
            T::Int => Scalar::Int(((h >> 16) % 5000) as i64 + 1),
            T::BigInt => Scalar::Int(big_int(h)),
            T::Int32 => Scalar::Int(match h % 23 {
                0 => i64::from(i32::MAX),
                1 => i64::from(i32::MIN),
                _ => ((h >> 16) % 10_000) as i64,
            }),
            T::Float => Scalar::Float(((h >> 16) % 100_000) as f64 / 100.0),
            T::FloatSpecial => Scalar::Float(match (h >> 4) % 8 {
                0 => f64::NAN,
                1 => f64::INFINITY,
                2 => f64::NEG_INFINITY,
                _ => ((h >> 16) % 100_000) as f64 / 100.0,
            }),
            T::Bool => Scalar::Bool(h & 0x10 != 0),
            T::Enum(opts) => {
                let n = pick % (opts.len() + extra.len());
                Scalar::Str(
                    opts.get(n)
                        .unwrap_or_else(|| &extra[n - opts.len()])
                        .to_string(),
                )
            }
            T::Timestamp => Scalar::Str(format_ts(
                1_577_836_800_000 + ((h >> 12) % (5 * 365 * 86_400)) as i64 * 1000,
            )),
            T::Str(max) if max <= 36 => Scalar::Str(uuid_like(h)),
            T::Str(_) => {
                if h % 5 == 0 {
                    Scalar::Str(AWKWARD_STRINGS[pick % AWKWARD_STRINGS.len()].to_owned())
                } else {
                    Scalar::Str(format!("{} {}.{}", self.column, self.id, self.version))
                }
            }
            T::Text => {
                let a = AWKWARD_STRINGS[pick % AWKWARD_STRINGS.len()];
                let b = AWKWARD_STRINGS[(pick / 7 + 3) % AWKWARD_STRINGS.len()];
                Scalar::Str(format!(
                    "<p>{a}</p>\n{b}; revision {} of {}",
                    self.version, self.id
                ))
            }
            T::Object(sub) => {
                let fields: Vec<_> = sub
                    .iter()
                    .enumerate()
                    .map(|(i, s)| {
                        let hh = sub_hash(h, i);
                        let v = if !s.required && hh % 7 == 3 {
                            Scalar::Null
                        } else {
                            self.scalar(s.ty, hh, &[])
                        };
                        (s.name, v)
                    })
                    .collect();
                if fields.iter().all(|(_, v)| *v == Scalar::Null) {
                    Scalar::Null
                } else {
                    Scalar::Object(fields)
                }
            }
            T::Array(item) => Scalar::Array(
                (0..(h >> 24) % 4)
                    .map(|i| self.scalar(*item, sub_hash(h, i as usize), &[]))
                    .collect(),
            ),
            T::Json => Scalar::Json(free_json(h)),
        }
    }
}

fn big_int(h: u64) -> i64 {
    match h % 13 {
        0 => i64::MAX,
        1 => i64::MIN,
        2 => -(((h >> 20) % 1_000_000_000) as i64),
        _ => 10_000_000_000_000 + ((h >> 16) % 1_000_000_000_000) as i64,
    }
}

fn uuid_like(h: u64) -> String {
    format!(
        "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
        (h >> 32) as u32,
        (h >> 16) as u16,
        h & 0xfff,
        (h >> 20) & 0xfff,
        splitmix(h) & 0xffff_ffff_ffff
    )
}

/// A free-form JSON object: a varying set of keys with values of every JSON kind.
fn free_json(h: u64) -> serde_json::Value {
    use serde_json::{Value, json};
    let mut map = serde_json::Map::new();
    for (i, key) in [
        "color",
        "max_attempts",
        "tags",
        "nested",
        "note",
        "ratio",
        "enabled",
    ]
    .into_iter()
    .enumerate()
    {
        let hh = sub_hash(h, i);
        if hh % 3 == 0 {
            continue;
        }
        let pick = (hh >> 8) as usize;
        let v = match key {
            "color" => json!(AWKWARD_STRINGS[pick % AWKWARD_STRINGS.len()]),
            "max_attempts" => json!((hh >> 16) % 10),
            "tags" => json!(["a", AWKWARD_STRINGS[pick % AWKWARD_STRINGS.len()]]),
            "nested" => json!({"level": (hh >> 16) % 4, "ok": hh & 1 == 0, "list": [1, 2.5, null]}),
            "note" => Value::Null,
            "ratio" => json!(((hh >> 16) % 1000) as f64 / 8.0),
            _ => json!(hh & 2 == 0),
        };
        map.insert(key.to_owned(), v);
    }
    Value::Object(map)
}
