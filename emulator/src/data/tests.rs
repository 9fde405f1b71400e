use std::collections::BTreeMap;

use super::*;

fn params() -> DataParams {
    DataParams {
        origin_ms: 0,
        change_interval_ms: 1000,
        rows_per_table: Some(7),
    }
}

fn snapshot(p: &DataParams, t: &'static TableDef, h: &SchemaHistory, at_ms: i64) -> Vec<Record> {
    let e = Extract::new(p, t, h, EmulatedRange::Snapshot { at_ms });
    e.records(0..e.rows()).collect()
}

fn incremental(
    p: &DataParams,
    t: &'static TableDef,
    h: &SchemaHistory,
    since_ms: i64,
    until_ms: i64,
) -> Vec<Record> {
    let e = Extract::new(p, t, h, EmulatedRange::Incremental { since_ms, until_ms });
    e.records(0..e.rows()).collect()
}

/// Records as JSON lines (comparable even with NaN values).
fn lines(records: impl IntoIterator<Item = Record>) -> Vec<String> {
    records.into_iter().map(|r| r.to_jsonl_line()).collect()
}

/// Applies an incremental to a snapshot state.
fn apply(state: &mut BTreeMap<i64, Record>, changes: Vec<Record>) {
    for r in changes {
        if r.action == Some(Action::Delete) {
            state.remove(&r.id);
        } else {
            state.insert(r.id, Record { action: None, ..r });
        }
    }
}

/// Applying an incremental to a snapshot gives the later snapshot.
#[test]
fn snapshot_plus_incremental_is_later_snapshot() {
    let p = params();
    let h = SchemaHistory::default();
    for table in TABLES {
        for (t1, t2) in [(0, 5_500), (3_000, 20_000), (10_000, 10_001)] {
            let mut state: BTreeMap<i64, Record> = snapshot(&p, table, &h, t1)
                .into_iter()
                .map(|r| (r.id, r))
                .collect();
            apply(&mut state, incremental(&p, table, &h, t1, t2));
            let later = snapshot(&p, table, &h, t2);
            assert_eq!(lines(state.into_values()), lines(later));
        }
    }
}

/// The same holds across a schema bump, once the earlier records are given the later
/// version's columns (NULL in the added ones).
#[test]
fn schema_bumps_add_columns_and_leave_older_records_alone() {
    let p = DataParams {
        rows_per_table: Some(50),
        ..params()
    };
    let mut h = SchemaHistory::default();
    h.bump(30_500, 0).unwrap();
    for table in TABLES {
        let before = snapshot(&p, table, &h, 30_000);
        let after = snapshot(&p, table, &h, 60_000);
        let first = table.values.len();
        for r in &after {
            let values = r.value.as_ref().unwrap();
            assert_eq!(values.len(), first + 1, "{}", table.name);
            assert_eq!(values[first].0, EVOLUTIONS[0].column.name);
            if r.ts_ms < 30_500 {
                assert_eq!(values[first].1, Scalar::Null, "{} {}", table.name, r.id);
            }
            if r.ts_ms < 30_000 {
                let old = before.iter().find(|b| b.id == r.id).unwrap();
                let old = Record {
                    value: Some(old.value.clone().unwrap()),
                    ..old.clone()
                };
                let now = Record {
                    value: Some(values[..first].to_vec()),
                    ..r.clone()
                };
                assert_eq!(now.to_jsonl_line(), old.to_jsonl_line());
            }
        }
        let mut state: BTreeMap<i64, Record> = before.into_iter().map(|r| (r.id, r)).collect();
        for r in state.values_mut() {
            r.value
                .as_mut()
                .unwrap()
                .push((EVOLUTIONS[0].column.name, Scalar::Null));
        }
        apply(&mut state, incremental(&p, table, &h, 30_000, 60_000));
        assert_eq!(lines(state.into_values()), lines(after), "{}", table.name);
    }
}

#[test]
fn bumped_enum_values_appear_only_in_newer_records() {
    let p = DataParams {
        rows_per_table: Some(400),
        ..params()
    };
    let mut h = SchemaHistory::default();
    h.bump(100_500, 0).unwrap();
    let t = table("new_quizzes", "items").unwrap();
    let records = snapshot(&p, t, &h, 1_000_000);
    let added = EVOLUTIONS[0].enum_value;
    let with_value: Vec<&Record> = records
        .iter()
        .filter(|r| r.value.as_ref().unwrap()[2].1 == Scalar::Str(added.to_owned()))
        .collect();
    assert!(!with_value.is_empty());
    assert!(with_value.iter().all(|r| r.ts_ms >= 100_500));
    let shape = Extract::new(&p, t, &h, EmulatedRange::Snapshot { at_ms: 1_000_000 }).shape();
    assert_eq!(shape.version(), t.schema_version + 1);
    assert_eq!(shape.columns()[2].extra_enum, &[added]);
}

#[test]
fn evolutions_never_collide_with_a_table() {
    for t in TABLES {
        for e in EVOLUTIONS {
            assert!(
                t.values.iter().all(|f| f.name != e.column.name),
                "{}",
                t.name
            );
            for f in t.values {
                if let FieldType::Enum(opts) = f.ty {
                    assert!(!opts.contains(&e.enum_value), "{}.{}", t.name, f.name);
                }
            }
        }
    }
}

#[test]
fn jsonl_line_is_valid_json() {
    let p = params();
    let h = SchemaHistory::default();
    for table in TABLES {
        for r in snapshot(&p, table, &h, 50_000) {
            let v: serde_json::Value = serde_json::from_str(&r.to_jsonl_line()).unwrap();
            assert_eq!(v["key"]["id"], r.id);
        }
    }
}

/// The large table holds more than 500,000 live rows, and an hour of the default
/// interval changes more than 100,000 of them.
#[test]
fn the_large_table_is_large() {
    let p = DataParams::default();
    let t = table("new_quizzes", "quiz_sessions").unwrap();
    let rows = t.row_count(&p);
    let line = Timeline::new(&p, t);
    let now = p.origin_ms + 700 * 86_400_000;
    let c = line.events_before(now);
    let live = (0..rows)
        .filter(|&k| match history::latest_event(k, 0, c, rows) {
            None => true,
            Some(n) => !history::is_delete(t, n),
        })
        .count();
    assert!(live > 500_000, "{live}");
    let changes = line.events_before(now + 3_600_000) - c;
    assert!(changes > 100_000, "{changes}");
}

#[test]
fn special_floats_and_extremes_occur() {
    let p = DataParams {
        rows_per_table: Some(60),
        ..params()
    };
    let h = SchemaHistory::default();
    let records = snapshot(&p, table("new_quizzes", "item_analyses").unwrap(), &h, 0);
    let floats: Vec<f64> = records
        .iter()
        .flat_map(|r| r.value.as_ref().unwrap().iter())
        .filter_map(|(_, v)| match v {
            Scalar::Float(f) => Some(*f),
            _ => None,
        })
        .collect();
    assert!(floats.iter().any(|f| f.is_nan()));
    assert!(floats.contains(&f64::INFINITY));
    assert!(floats.contains(&f64::NEG_INFINITY));
    let items = snapshot(&p, table("new_quizzes", "items").unwrap(), &h, 0);
    let text: String = items.iter().map(Record::to_jsonl_line).collect();
    for needle in [
        "\\t",
        "\\n",
        "\\\\",
        "🎓",
        "9223372036854775807",
        "-2147483648",
    ] {
        assert!(text.contains(needle), "{needle}");
    }
}
