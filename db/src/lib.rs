//! # dap-db: replicate DAP tables into a database
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod conn;
pub mod dialect;
pub mod error;
pub mod json;
pub mod listdb;
pub mod migrate;
pub mod model;
pub mod pace;
pub mod pg;
pub mod plan;
pub mod replicate;
pub mod source;
pub mod sqlite;
pub mod store;
mod tls;
pub mod tsv;
