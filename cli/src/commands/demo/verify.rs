//! The demo's last step: every downloaded record checked against what the emulator says
//! the query returns.

use dap_emulator::Emulator;
use dap_hyper::DownloadedFile;
use dap_proto::DataRange;
use dap_proto::gzip::GzipDecoder;
use serde_json::Value;

use super::{Fetched, NAMESPACE};
use crate::errors::CliError;

/// Decodes every file of `f` (checking each gzip member's CRC-32 and length) and
/// compares the records with what the emulator says the query returns; returns the
/// record count.
pub(super) fn verify(emu: &Emulator, table: &str, f: &Fetched) -> Result<usize, CliError> {
    let range = match f.result.range {
        DataRange::Snapshot { at } => dap_emulator::EmulatedRange::Snapshot {
            at_ms: at.as_millisecond(),
        },
        DataRange::Incremental { since, until } => dap_emulator::EmulatedRange::Incremental {
            since_ms: since.as_millisecond(),
            until_ms: until.as_millisecond(),
        },
        _ => return Err(CliError::Other("unknown query range".to_owned())),
    };
    let mut expected: Vec<Value> = emu
        .expected_records(NAMESPACE, table, range)
        .ok_or_else(|| CliError::Other(format!("the emulator does not know '{table}'")))?
        .iter()
        .map(dap_emulator::Record::to_json)
        .collect();
    let mut got = Vec::new();
    for file in &f.got.files {
        got.extend(read_jsonl_gz(file)?);
    }
    let key = |v: &Value| v["key"]["id"].as_i64().unwrap_or(i64::MIN);
    expected.sort_by_key(key);
    got.sort_by_key(key);
    if got != expected {
        return Err(CliError::Other(format!(
            "verification failed for job {}: the files hold {} records, the emulator expected {}",
            f.result.job,
            got.len(),
            expected.len()
        )));
    }
    Ok(got.len())
}

fn read_jsonl_gz(file: &DownloadedFile) -> Result<Vec<Value>, CliError> {
    let bytes = std::fs::read(&file.path)
        .map_err(|e| CliError::io("cannot read the downloaded file", &file.path, e))?;
    let mut plain = Vec::new();
    let mut decoder = GzipDecoder::new();
    let bad = |e: dap_proto::gzip::GzipError| {
        CliError::Other(format!(
            "{} is not a valid gzip file: {e}",
            file.path.display()
        ))
    };
    decoder.decode(&bytes, &mut plain).map_err(bad)?;
    decoder.finish().map_err(bad)?;
    plain
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| {
            serde_json::from_slice(l).map_err(|e| {
                CliError::Other(format!(
                    "{} holds a malformed record: {e}",
                    file.path.display()
                ))
            })
        })
        .collect()
}
