//! The tables made for database replication (`new_quizzes`) over TCP.

mod common;

use std::time::Duration;

use common::{Client, check_export, download_all, job_snapshot, ts_ms};
use dap_emulator::data::Action;
use dap_emulator::{EmulatedRange, Emulator, EmulatorConfig};
use serde_json::json;

/// The tables made for database replication, in every format and mode a replicator
/// asks for, snapshot then incremental.
#[test]
fn replication_tables_in_every_format() {
    let emu = common::start_with_rows(300);
    let mut c = Client::login(&emu);
    let queries = [
        ("tsv", json!({"format": "tsv", "mode": "condensed"})),
        ("csv", json!({"format": "csv", "mode": "condensed"})),
        ("jsonl", json!({"format": "jsonl"})),
    ];
    let tables = dap_emulator::data::tables("new_quizzes").unwrap();
    assert_eq!(
        tables,
        ["quiz_sessions", "items", "item_analyses", "quiz_settings"]
    );
    let mut ats = Vec::new();
    for table in &tables {
        for (format, q) in &queries {
            let job = c.complete_job("new_quizzes", table, &q.to_string());
            let at = ts_ms(&job["at"]);
            let expected = emu
                .expected_records("new_quizzes", table, EmulatedRange::Snapshot { at_ms: at })
                .unwrap();
            check_export(format, &download_all(&c, &job), &expected);
            ats.push((*table, *format, q.clone(), job["at"].clone()));
        }
    }
    emu.advance_clock(Duration::from_secs(3600));
    c = Client::login(&emu);
    for (table, format, mut q, at) in ats {
        q["since"] = at.clone();
        let job = c.complete_job("new_quizzes", table, &q.to_string());
        let range = EmulatedRange::Incremental {
            since_ms: ts_ms(&at),
            until_ms: ts_ms(&job["until"]),
        };
        let expected = emu.expected_records("new_quizzes", table, range).unwrap();
        assert!(
            expected.iter().any(|r| r.action == Some(Action::Delete)),
            "{table}"
        );
        check_export(format, &download_all(&c, &job), &expected);
    }
}

/// An object larger than one compressed piece (16,384 keys) is still one gzip member,
/// whole to a reader that stops at the first member's end.
#[test]
fn large_objects_are_one_gzip_member() {
    let emu = Emulator::start(EmulatorConfig {
        rows_per_table: Some(40_000),
        objects_per_job: 1,
        ..EmulatorConfig::default()
    })
    .unwrap();
    let c = Client::login(&emu);
    let q = json!({"format": "tsv", "mode": "condensed"}).to_string();
    let job = c.complete_job("new_quizzes", "quiz_sessions", &q);
    let expected = emu
        .expected_records("new_quizzes", "quiz_sessions", job_snapshot(&job))
        .unwrap();
    assert!(expected.len() > 20_000, "{}", expected.len());
    check_export("tsv", &download_all(&c, &job), &expected);
}
