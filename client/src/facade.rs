//! The typed calls both clients offer, written once: [`crate::facade!`] expands them
//! into a transport's `impl Client`, blocking or async.

use dap_proto::{
    Command, Format, Job, JobId, ObjectId, Outcome, Query, QueryResult, TableSchema, UrlSet,
};

use crate::Error;

/// Expands `from_env` and the typed calls (`list_tables`, `table_schema`, `query`, `snapshot`,
/// `incremental`, `get_job`, `object_urls`) inside an `impl` block whose type has
/// `fn run(&self, Command) -> Result<Outcome, Error>`: `facade!([] [])` for a blocking
/// `run`, `facade!([async] [.await])` for an async one.
#[macro_export]
macro_rules! facade {
    ([$($asyncness:tt)?] [$($await:tt)*]) => {
        /// A client configured from `DAP_API_URL` (optional), `DAP_CLIENT_ID` and
        /// `DAP_CLIENT_SECRET`, like the official tools; a missing variable is an
        /// [`Error::Config`] naming it.
        pub fn from_env() -> Result<Self, $crate::Error> {
            Self::new($crate::facade::config_from_env()?)
        }

        /// The tables of a namespace (`canvas`, `canvas_logs`, `catalog`, ...).
        pub $($asyncness)? fn list_tables(&self, namespace: &str) -> Result<Vec<String>, $crate::Error> {
            $crate::facade::tables(self.run($crate::facade::list_tables(namespace)) $($await)*)
        }

        /// A table's JSON Schema and version.
        pub $($asyncness)? fn table_schema(&self, namespace: &str, table: &str) -> Result<$crate::reexport::TableSchema, $crate::Error> {
            $crate::facade::schema(self.run($crate::facade::table_schema(namespace, table)) $($await)*)
        }

        /// Runs a query to completion: starts the job, polls it until it ends, fetches
        /// the URLs of its objects. With [`Query::urls_on_demand`] it leaves the URLs
        /// out (the result lists the objects in `pending`) for `download`, `records`
        /// and `json_records` to fetch as they reach each object: the way to download
        /// a job of many objects.
        pub $($asyncness)? fn query(&self, namespace: &str, table: &str, query: $crate::reexport::Query) -> Result<$crate::reexport::QueryResult, $crate::Error> {
            $crate::facade::result(self.run($crate::facade::query(namespace, table, query)) $($await)*)
        }

        /// A snapshot of a table, run to completion.
        pub $($asyncness)? fn snapshot(&self, namespace: &str, table: &str, format: $crate::reexport::Format) -> Result<$crate::reexport::QueryResult, $crate::Error> {
            $crate::facade::result(self.run($crate::facade::snapshot(namespace, table, format)) $($await)*)
        }

        /// The changes of a table in `[since, until)` (`until` defaulting to the latest
        /// data), run to completion. Chain it from `previous.range.next_since()`, never
        /// from the local clock.
        pub $($asyncness)? fn incremental(
            &self,
            namespace: &str,
            table: &str,
            format: $crate::reexport::Format,
            since: $crate::reexport::Timestamp,
            until: Option<$crate::reexport::Timestamp>,
        ) -> Result<$crate::reexport::QueryResult, $crate::Error> {
            let command = $crate::facade::incremental(namespace, table, format, since, until)?;
            $crate::facade::result(self.run(command) $($await)*)
        }

        /// A job's status, fetched once.
        pub $($asyncness)? fn get_job(&self, job: &$crate::reexport::JobId) -> Result<$crate::reexport::Job, $crate::Error> {
            $crate::facade::job(self.run($crate::facade::get_job(job)) $($await)*)
        }

        /// Fresh pre-signed URLs for objects (fetched in batches), in request order.
        pub $($asyncness)? fn object_urls(&self, objects: &[$crate::reexport::ObjectId]) -> Result<$crate::reexport::UrlSet, $crate::Error> {
            $crate::facade::urls(self.run($crate::facade::object_urls(objects)) $($await)*)
        }
    };
}

/// The configuration from `DAP_API_URL` (optional), `DAP_CLIENT_ID` and
/// `DAP_CLIENT_SECRET`.
pub fn config_from_env() -> Result<dap_proto::Config, Error> {
    Ok(dap_proto::Config::builder_from_vars(|k| std::env::var(k).ok())?.build()?)
}

/// The command of `list_tables`.
pub fn list_tables(namespace: &str) -> Command {
    Command::ListTables {
        namespace: namespace.to_owned(),
    }
}

/// The command of `table_schema`.
pub fn table_schema(namespace: &str, table: &str) -> Command {
    Command::Schema {
        namespace: namespace.to_owned(),
        table: table.to_owned(),
    }
}

/// The command of `query`.
pub fn query(namespace: &str, table: &str, query: Query) -> Command {
    Command::Query {
        namespace: namespace.to_owned(),
        table: table.to_owned(),
        query,
    }
}

/// The command of `snapshot`.
pub fn snapshot(namespace: &str, table: &str, format: Format) -> Command {
    query(namespace, table, Query::snapshot(format))
}

/// The command of `incremental`; refuses an `until` not after `since`.
pub fn incremental(
    namespace: &str,
    table: &str,
    format: Format,
    since: jiff::Timestamp,
    until: Option<jiff::Timestamp>,
) -> Result<Command, Error> {
    let mut q = Query::incremental(format, since);
    if let Some(until) = until {
        q = q.until(until)?;
    }
    Ok(query(namespace, table, q))
}

/// The command of `get_job`.
pub fn get_job(job: &JobId) -> Command {
    Command::GetJob { job: job.clone() }
}

/// The command of `object_urls`.
pub fn object_urls(objects: &[ObjectId]) -> Command {
    Command::ObjectUrls {
        objects: objects.to_vec(),
    }
}

fn mismatch(outcome: &Outcome) -> Error {
    Error::internal(format!(
        "the session answered with an unexpected outcome ({:?})",
        std::mem::discriminant(outcome)
    ))
}

macro_rules! typed {
    ($(#[$doc:meta])* $name:ident, $variant:ident, $ty:ty) => {
        $(#[$doc])*
        pub fn $name<E>(outcome: Result<Outcome, E>) -> Result<$ty, Error>
        where
            Error: From<E>,
        {
            match outcome? {
                Outcome::$variant(value) => Ok(value),
                other => Err(mismatch(&other)),
            }
        }
    };
}

typed!(
    /// The tables of a `list_tables` outcome.
    tables, Tables, Vec<String>
);
typed!(
    /// The schema of a `table_schema` outcome.
    schema, Schema, TableSchema
);
typed!(
    /// The result of a query outcome.
    result, Query, QueryResult
);
typed!(
    /// The job of a `get_job` outcome.
    job, Job, Job
);
typed!(
    /// The URLs of an `object_urls` outcome.
    urls, Urls, UrlSet
);
