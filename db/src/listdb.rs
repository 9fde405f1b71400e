//! `listdb`: the replication status of a namespace's tables, laid out as the official
//! client lays it out (its non-interactive JSON exactly; its interactive table in plain
//! box drawing).

use std::collections::BTreeMap;

use jiff::Timestamp;
use jiff::tz::TimeZone;

use crate::store::SyncRow;

/// One line of the listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListRow {
    /// Table name.
    pub name: String,
    /// The replicated state, if the table is replicated.
    pub replicated: Option<Replicated>,
    /// Row count, if counted.
    pub records: Option<u64>,
}

/// What a replicated table's row says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replicated {
    /// The position, in the local time zone, as Python's `isoformat()` writes it.
    pub timestamp: String,
    /// How old the position is (`1d 2h`, `5m 3s`).
    pub staleness: String,
    /// Schema version.
    pub schema: u64,
}

/// The listing: replicated tables by name, then (unless `omit_not_replicated`) DAP's
/// other tables by name. `counts` holds the row counts of replicated tables, when
/// counted.
pub fn rows(
    dap_tables: &[String],
    replicated: &[SyncRow],
    counts: &BTreeMap<String, u64>,
    omit_not_replicated: bool,
    now: Timestamp,
    tz: &TimeZone,
) -> Vec<ListRow> {
    let mut by_name: BTreeMap<&str, &SyncRow> = BTreeMap::new();
    for r in replicated {
        by_name.entry(r.table.as_str()).or_insert(r);
    }
    let mut out: Vec<ListRow> = by_name
        .values()
        .map(|r| ListRow {
            name: r.table.clone(),
            replicated: Some(Replicated {
                timestamp: isoformat(r.timestamp, tz),
                staleness: age(now, r.timestamp),
                schema: r.schema_version,
            }),
            records: counts.get(&r.table).copied(),
        })
        .collect();
    if !omit_not_replicated {
        let mut others: Vec<&String> = dap_tables
            .iter()
            .filter(|t| !by_name.contains_key(t.as_str()))
            .collect();
        others.sort();
        others.dedup();
        out.extend(others.into_iter().map(|t| ListRow {
            name: t.clone(),
            replicated: None,
            records: None,
        }));
    }
    out
}

/// `2026-12-01T19:10:12+00:00`, with `.ffffff` when there are microseconds.
pub fn isoformat(ts: Timestamp, tz: &TimeZone) -> String {
    let z = ts.to_zoned_datetime(tz.clone());
    let micros = z.subsec_nanosecond() / 1000;
    let frac = if micros == 0 {
        String::new()
    } else {
        format!(".{micros:06}")
    };
    format!(
        "{}{frac}{}",
        z.strftime("%Y-%m-%dT%H:%M:%S"),
        z.strftime("%:z")
    )
}

/// The official client's age text: the two largest units, dropping a zero second one.
pub fn age(now: Timestamp, then: Timestamp) -> String {
    let secs = now.as_second().saturating_sub(then.as_second());
    let (days, rest) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (hours, rest) = (rest / 3600, rest % 3600);
    let (minutes, seconds) = (rest / 60, rest % 60);
    let pair = |a: i64, ua: &str, b: i64, ub: &str| {
        if b > 0 {
            format!("{a}{ua} {b}{ub}")
        } else {
            format!("{a}{ua}")
        }
    };
    if days > 0 {
        pair(days, "d", hours, "h")
    } else if hours > 0 {
        pair(hours, "h", minutes, "m")
    } else if minutes > 0 {
        pair(minutes, "m", seconds, "s")
    } else {
        format!("{seconds}s")
    }
}

/// The non-interactive output: a JSON array indented by two spaces, keys in the
/// official order (`records` last, and only when counted).
pub fn to_json(rows: &[ListRow], with_records: bool) -> String {
    let items: Vec<String> = rows
        .iter()
        .map(|r| {
            let s = |v: Option<&str>| {
                v.map_or_else(
                    || "null".to_owned(),
                    |t| serde_json::Value::from(t).to_string(),
                )
            };
            let rep = r.replicated.as_ref();
            let mut fields = vec![
                format!("\"name\": {}", s(Some(&r.name))),
                format!("\"timestamp\": {}", s(rep.map(|x| x.timestamp.as_str()))),
                format!("\"staleness\": {}", s(rep.map(|x| x.staleness.as_str()))),
                format!(
                    "\"schema\": {}",
                    rep.map_or_else(|| "null".to_owned(), |x| x.schema.to_string())
                ),
                format!(
                    "\"command\": \"{}\"",
                    if rep.is_some() { "syncdb" } else { "initdb" }
                ),
            ];
            if with_records {
                fields.push(format!(
                    "\"records\": {}",
                    r.records
                        .map_or_else(|| "null".to_owned(), |n| n.to_string())
                ));
            }
            format!("  {{\n    {}\n  }}", fields.join(",\n    "))
        })
        .collect();
    if items.is_empty() {
        "[]".to_owned()
    } else {
        format!("[\n{}\n]", items.join(",\n"))
    }
}

/// The interactive output: a titled table.
pub fn to_table(namespace: &str, rows: &[ListRow], with_records: bool) -> String {
    let mut header = vec!["Name"];
    if with_records {
        header.push("Records");
    }
    header.extend(["Data as of", "Staleness", "Schema", "Use command"]);
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let rep = r.replicated.as_ref();
            let mut line = vec![r.name.clone()];
            if with_records {
                line.push(r.records.map_or_else(|| "-".to_owned(), |n| n.to_string()));
            }
            line.push(rep.map_or_else(|| "Not replicated".to_owned(), |x| x.timestamp.clone()));
            line.push(rep.map_or_else(|| "-".to_owned(), |x| x.staleness.clone()));
            line.push(rep.map_or_else(|| "-".to_owned(), |x| x.schema.to_string()));
            line.push(if rep.is_some() { "syncdb" } else { "initdb" }.to_owned());
            line
        })
        .collect();
    let widths: Vec<usize> = (0..header.len())
        .map(|i| {
            cells
                .iter()
                .map(|l| l[i].chars().count())
                .chain([header[i].chars().count()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let right = |i: usize| (with_records && i == 1) || header[i] == "Schema";
    let line = |l: &[String]| {
        let parts: Vec<String> = l
            .iter()
            .enumerate()
            .map(|(i, c)| {
                if right(i) {
                    format!(" {c:>w$} ", w = widths[i])
                } else {
                    format!(" {c:<w$} ", w = widths[i])
                }
            })
            .collect();
        format!("│{}│", parts.join("│"))
    };
    let rule = |l: &str, m: &str, r: &str, h: &str| {
        let parts: Vec<String> = widths.iter().map(|w| h.repeat(w + 2)).collect();
        format!("{l}{}{r}", parts.join(m))
    };
    let head: Vec<String> = header.iter().map(|s| (*s).to_owned()).collect();
    let mut out = vec![
        format!("Local database replication status of tables in namespace {namespace}"),
        rule("┏", "┳", "┓", "━"),
        line(&head).replace('│', "┃"),
        rule("┡", "╇", "┩", "━"),
    ];
    out.extend(cells.iter().map(|l| line(l)));
    out.push(rule("└", "┴", "┘", "─"));
    out.join("\n") + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn ages_as_the_official_client_writes_them() {
        let now = ts("2026-12-02T00:00:00Z");
        assert_eq!(age(now, ts("2026-12-01T23:58:14Z")), "1m 46s");
        assert_eq!(age(now, ts("2026-12-01T23:58:00Z")), "2m");
        assert_eq!(age(now, ts("2026-11-30T22:00:00Z")), "1d 2h");
        assert_eq!(age(now, ts("2026-11-30T00:00:00Z")), "2d");
        assert_eq!(age(now, ts("2026-12-01T21:00:00Z")), "3h");
        assert_eq!(age(now, now), "0s");
    }

    #[test]
    fn isoformat_like_python() {
        let utc = TimeZone::UTC;
        assert_eq!(
            isoformat(ts("2026-12-01T19:10:12Z"), &utc),
            "2026-12-01T19:10:12+00:00"
        );
        assert_eq!(
            isoformat(ts("2026-12-01T19:10:12.5Z"), &utc),
            "2026-12-01T19:10:12.500000+00:00"
        );
        let plus2 = TimeZone::fixed(jiff::tz::offset(2));
        assert_eq!(
            isoformat(ts("2026-12-01T19:10:12Z"), &plus2),
            "2026-12-01T21:10:12+02:00"
        );
    }

    #[test]
    fn json_matches_the_official_layout() {
        let replicated = vec![SyncRow {
            table: "accounts".to_owned(),
            timestamp: ts("2026-12-01T19:10:12Z"),
            schema_version: 2,
            target_schema: Some("canvas".to_owned()),
            target_table: "accounts".to_owned(),
        }];
        let dap = vec![
            "users".to_owned(),
            "accounts".to_owned(),
            "assignments".to_owned(),
        ];
        let counts = BTreeMap::from([("accounts".to_owned(), 8)]);
        let now = ts("2026-12-01T19:11:58Z");
        let rows = rows(&dap, &replicated, &counts, false, now, &TimeZone::UTC);
        let names: Vec<&str> = rows.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["accounts", "assignments", "users"]);
        let json = to_json(&rows[..2], true);
        assert_eq!(
            json,
            "[\n  {\n    \"name\": \"accounts\",\n    \"timestamp\": \"2026-12-01T19:10:12+00:00\",\n    \"staleness\": \"1m 46s\",\n    \"schema\": 2,\n    \"command\": \"syncdb\",\n    \"records\": 8\n  },\n  {\n    \"name\": \"assignments\",\n    \"timestamp\": null,\n    \"staleness\": null,\n    \"schema\": null,\n    \"command\": \"initdb\",\n    \"records\": null\n  }\n]"
        );
        assert!(!to_json(&rows, false).contains("records"));
        assert_eq!(to_json(&[], true), "[]");
        let table = to_table("canvas", &rows, true);
        assert!(table.contains("│ accounts    │       8 │ 2026-12-01T19:10:12+00:00 │ 1m 46s    │      2 │ syncdb      │"));
        assert!(table.contains("Not replicated"));
        let omitted = super::rows(&dap, &replicated, &counts, true, now, &TimeZone::UTC);
        assert_eq!(omitted.len(), 1);
    }
}
