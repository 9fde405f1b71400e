//! Operations on the emulator's state, shared by the library API
//! ([`crate::Emulator`]) and the control endpoints.

use super::Heart;
use crate::data::{self, BumpError, EmulatedRange, Record, SchemaHistory, Shape, TableDef};
use crate::faults::{FaultRule, Faults};
use crate::state::Stats;

/// Why a control operation was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ControlError {
    /// No such table.
    #[error("no such table: {namespace}.{table}")]
    UnknownTable {
        /// The namespace asked for.
        namespace: String,
        /// The table asked for.
        table: String,
    },
    /// The schema bump was refused.
    #[error(transparent)]
    Bump(#[from] BumpError),
}

/// A schema bump that was scheduled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SchemaBump {
    /// The new schema version.
    pub version: u32,
    /// When it takes effect, in milliseconds since the epoch (emulator time).
    pub effective_ms: i64,
}

impl Heart {
    fn table(&self, namespace: &str, table: &str) -> Result<&'static TableDef, ControlError> {
        data::table(namespace, table).ok_or_else(|| ControlError::UnknownTable {
            namespace: namespace.to_owned(),
            table: table.to_owned(),
        })
    }

    /// A snapshot of the statistics.
    pub fn stats(&self) -> Stats {
        self.lock().stats.clone()
    }

    /// Resets the statistics to zero.
    pub fn reset_stats(&self) {
        self.lock().stats = Stats::default();
    }

    /// The current faults and switches.
    pub fn faults(&self) -> Faults {
        self.lock().faults.clone()
    }

    /// Replaces the faults and switches.
    pub fn set_faults(&self, faults: Faults) {
        self.lock().faults = faults;
    }

    /// Appends one fault rule.
    pub fn add_fault(&self, rule: FaultRule) {
        self.lock().faults.rules.push(rule);
    }

    /// Moves the emulator clock forward by `ms` milliseconds.
    pub fn advance(&self, ms: i64) {
        self.clock.advance(ms);
    }

    /// Revokes every token issued so far; returns how many were live.
    pub fn revoke_tokens(&self) -> usize {
        self.lock().revoke_all()
    }

    /// The schema history of a table.
    pub fn schema_history(
        &self,
        namespace: &str,
        table: &str,
    ) -> Result<SchemaHistory, ControlError> {
        let def = self.table(namespace, table)?;
        Ok(self.lock().schema((def.namespace, def.name)))
    }

    /// The schema version of a table in effect at `now_ms` (emulator time).
    pub fn schema_version(
        &self,
        namespace: &str,
        table: &str,
        now_ms: i64,
    ) -> Result<u32, ControlError> {
        let def = self.table(namespace, table)?;
        let epoch = self.schema_history(namespace, table)?.epoch_at(now_ms);
        Ok(Shape { table: def, epoch }.version())
    }

    /// Schedules the table's next schema version (a nullable column and an enum value,
    /// see [`crate::data::EVOLUTIONS`]) at `at_ms`, or by default at the next whole
    /// second after `now_ms` (emulator time). It must be later than now and than the
    /// table's previous bump. Queries whose range ends before it, and the jobs
    /// already created, keep the older version.
    pub fn bump_schema(
        &self,
        namespace: &str,
        table: &str,
        at_ms: Option<i64>,
        now: i64,
    ) -> Result<SchemaBump, ControlError> {
        let def = self.table(namespace, table)?;
        let at = at_ms.unwrap_or((now.div_euclid(1000) + 1) * 1000);
        let mut st = self.lock();
        let epoch = st
            .schemas
            .entry((def.namespace, def.name))
            .or_default()
            .bump(at, now)?;
        Ok(SchemaBump {
            version: Shape { table: def, epoch }.version(),
            effective_ms: at,
        })
    }

    /// Marks the table reloaded at `now_ms` (emulator time) rounded down to the
    /// second: from now on, incremental queries whose `since` is earlier are answered
    /// `SnapshotRequired` (a new snapshot, and incrementals from it, work). Identical
    /// queries posted earlier stop reusing their jobs. Returns the reload time.
    pub fn require_snapshot(
        &self,
        namespace: &str,
        table: &str,
        now_ms: i64,
    ) -> Result<i64, ControlError> {
        let def = self.table(namespace, table)?;
        let now = now_ms.div_euclid(1000) * 1000;
        let mut st = self.lock();
        st.reloads.insert((def.namespace, def.name), now);
        let prefix = format!("{}/{}?", def.namespace, def.name);
        st.reuse
            .retain(|fingerprint, _| !fingerprint.starts_with(&prefix));
        Ok(now)
    }

    /// The exact records a query on `namespace.table` over `range` returns (real
    /// content mode), under the table's current schema history; `None` for an unknown
    /// table.
    pub fn expected_records(
        &self,
        namespace: &str,
        table: &str,
        range: EmulatedRange,
    ) -> Option<Vec<Record>> {
        let history = self.schema_history(namespace, table).ok()?;
        data::expected_records_with(&self.params, namespace, table, &history, range)
    }

    /// Bytes of generated objects held in the object cache.
    pub fn cached_object_bytes(&self) -> u64 {
        self.objects.bytes()
    }
}
