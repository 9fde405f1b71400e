//! # dap-db: replicate DAP tables into a database
//!
//! Keeps local copies of DAP (Canvas Data 2) tables in PostgreSQL, MySQL/MariaDB, or in a
//! SQLite file with no server, laid out exactly as the official Python client lays them
//! out on PostgreSQL and MySQL, so that either client can take over from the other on the
//! same database.
//!
//! **In scope:** `initdb` (a snapshot streamed into a new table), `syncdb` (the changes
//! since the stored position, applied in one transaction), `dropdb`, `listdb`; atomic
//! re-initialisation on `SnapshotRequired`/`OutOfRange`; schema changes in place (or a
//! rebuild) that keep the views on a table; one lock per table; tables in parallel with
//! query starts paced to DAP's limit.
//!
//! **Out of scope:** talking HTTP (a [`source::Source`] does; [`source::HyperSource`]
//! wraps `dap_hyper::Client`), and SQL Server. [`dialect::Dialect`] and
//! [`store::Store`] are the seams a database fills.
//!
//! ## Layers
//! Decisions are pure and unit-tested; the drivers only execute them.
//! * [`model`]: a table's JSON Schema read into typed columns, enumerations, comments.
//! * [`dialect`]: names, types and statements per database ([`dialect::Postgres`],
//!   [`dialect::MySql`], [`dialect::Sqlite`]), and MySQL's value checks
//!   ([`dialect::mysql::cell`]).
//! * [`plan`]: which query comes next, what a refusal leads to, whether a returned job
//!   may be applied (never a snapshot older than the table), how its data lands.
//! * [`migrate`]: the least change from the layout a table has to the one a schema
//!   version asks for.
//! * [`tsv`]: DAP's TSV checked and reshaped for `COPY` on the way in.
//! * [`store`]: what a database must do; [`pg`] (tokio-postgres, rustls), [`mysql`]
//!   (mysql_async, rustls) and [`sqlite`] (rusqlite) do it.
//! * [`replicate`]: the pump that asks the plan and does what it says.
//!
//! ```no_run
//! # async fn run(client: dap_hyper::Client) -> Result<(), dap_db::error::Error> {
//! use dap_db::conn::ConnectionString;
//! use dap_db::pg::PgStore;
//! use dap_db::plan::Command;
//! use dap_db::replicate::{self, Options};
//! use dap_db::source::HyperSource;
//! use dap_db::store::Store;
//!
//! let conn = ConnectionString::parse("postgresql://dap:secret@localhost/canvas")?;
//! let store = PgStore::new(&conn).expect("a PostgreSQL connection string");
//! store.prepare("canvas").await?;
//! let tables = vec!["accounts".to_owned(), "users".to_owned()];
//! let source = HyperSource::new(client);
//! for outcome in replicate::run(&store, &source, Command::Sync, "canvas", &tables, Options::default()).await {
//!     println!("{outcome:?}");
//! }
//! # Ok(()) }
//! ```
//!
//! ## Atomicity
//! Every change a reader can see happens in one transaction: a new table with its
//! `table_sync` row; a window of changes (staged with `COPY`, then deletes and upserts)
//! with the new position; a re-initialised table (built beside the old one, swapped in,
//! its views recreated). A failed or killed run leaves table and position as they were.
//! MySQL commits DDL implicitly: there a new table is built under a hidden name and
//! published with its `table_sync` row by one `RENAME TABLE` (see [`mysql`]).
//!
//! ## Secrets
//! A connection string's password never appears in `Debug`, `Display` or an error.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod conn;
pub mod dialect;
pub mod error;
pub mod json;
pub mod listdb;
pub mod migrate;
pub mod model;
pub mod mysql;
pub mod pace;
pub mod pg;
pub mod plan;
pub mod replicate;
pub mod source;
pub mod sqlite;
pub mod store;
mod tls;
pub mod tsv;
