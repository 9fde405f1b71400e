//! Query jobs: what a job covers, its status over time and its object names.

use std::sync::Arc;

use crate::config::EmulatorConfig;
use crate::data::{DataParams, EmulatedRange, Extract, SchemaHistory, Shape, TableDef};
use crate::encode::{Format, Mode};

/// Status of a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum JobStatus {
    Waiting,
    Running,
    Complete,
    Failed,
}

impl JobStatus {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Waiting => "waiting",
            Self::Running => "running",
            Self::Complete => "complete",
            Self::Failed => "failed",
        }
    }

    pub(crate) fn is_terminal(self) -> bool {
        matches!(self, Self::Complete | Self::Failed)
    }
}

/// A query job. It keeps no per-object state: object `i` is named from the job id and
/// generated from the job's range on demand.
#[derive(Debug)]
pub(crate) struct Job {
    pub(crate) id: Arc<str>,
    pub(crate) table: &'static TableDef,
    /// The table's schema history when the job was created (later bumps take effect
    /// after the job's range ends, so they never change its records).
    pub(crate) history: SchemaHistory,
    pub(crate) format: Format,
    pub(crate) mode: Mode,
    pub(crate) range: EmulatedRange,
    pub(crate) created_ms: i64,
    pub(crate) expires_ms: i64,
    /// Error uuid when the job fails.
    pub(crate) failed: Option<String>,
    /// Number of objects (at least 1).
    pub(crate) objects: u32,
}

impl Job {
    pub(crate) fn status(&self, cfg: &EmulatorConfig, now_ms: i64) -> JobStatus {
        let waiting = i64::try_from(cfg.job_waiting.as_millis()).unwrap_or(i64::MAX);
        let running = i64::try_from(cfg.job_running.as_millis()).unwrap_or(i64::MAX);
        let age = now_ms.saturating_sub(self.created_ms);
        if age < waiting {
            JobStatus::Waiting
        } else if age < waiting.saturating_add(running) {
            JobStatus::Running
        } else if self.failed.is_some() {
            JobStatus::Failed
        } else {
            JobStatus::Complete
        }
    }

    /// File name of object `index`: `part-<index, 5 digits>-<job id>-c000.<ext>`.
    pub(crate) fn file_name(&self, index: u32) -> String {
        format!(
            "part-{index:05}-{}-c000.{}",
            self.id,
            self.format.extension()
        )
    }

    /// The index of the object called `file`, if the job has one.
    pub(crate) fn object_index(&self, file: &str) -> Option<u32> {
        let digits = file.strip_prefix("part-")?.split('-').next()?;
        let index: u32 = digits.parse().ok()?;
        (index < self.objects && self.file_name(index) == file).then_some(index)
    }

    /// The schema version the job's records are laid out in.
    pub(crate) fn shape(&self) -> Shape {
        Shape {
            table: self.table,
            epoch: self.history.epoch_at(self.range.end_ms()),
        }
    }

    /// The records the job's objects hold.
    pub(crate) fn extract(&self, params: &DataParams) -> Extract {
        Extract::new(params, self.table, &self.history, self.range)
    }

    /// The key indexes object `index` holds, of a table with `rows` keys.
    pub(crate) fn keys(&self, index: u32, rows: u64) -> std::ops::Range<u64> {
        let n = u128::from(self.objects.max(1));
        let at = |i: u128| u64::try_from(i * u128::from(rows) / n).unwrap_or(rows);
        at(u128::from(index))..at(u128::from(index) + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(objects: u32) -> Job {
        Job {
            id: "0b6f".into(),
            table: &crate::data::TABLES[0],
            history: SchemaHistory::default(),
            format: Format::Tsv,
            mode: Mode::Condensed,
            range: EmulatedRange::Snapshot { at_ms: 0 },
            created_ms: 0,
            expires_ms: 1,
            failed: None,
            objects,
        }
    }

    #[test]
    fn object_names_round_trip() {
        let j = job(20_000);
        assert_eq!(j.file_name(7), "part-00007-0b6f-c000.tsv.gz");
        assert_eq!(j.object_index("part-00007-0b6f-c000.tsv.gz"), Some(7));
        assert_eq!(j.object_index("part-19999-0b6f-c000.tsv.gz"), Some(19_999));
        assert_eq!(j.object_index("part-20000-0b6f-c000.tsv.gz"), None);
        assert_eq!(j.object_index("part-7-0b6f-c000.tsv.gz"), None);
        assert_eq!(j.object_index("part-00007-0b6f-c000.csv.gz"), None);
        assert_eq!(j.object_index("part-00007-other-c000.tsv.gz"), None);
    }

    #[test]
    fn keys_partition_the_table() {
        for (objects, rows) in [(1, 10), (3, 10), (20_000, 100), (7, 640_000)] {
            let j = job(objects);
            let mut next = 0;
            for i in 0..objects {
                let k = j.keys(i, rows);
                assert_eq!(k.start, next);
                next = k.end;
            }
            assert_eq!(next, rows);
        }
    }
}
