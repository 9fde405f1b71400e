//! # dap-db: replicate DAP tables into a database
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod conn;
pub mod dialect;
pub mod json;
pub mod migrate;
pub mod model;
pub mod plan;
pub mod tsv;
pub mod error;
pub mod pg;
pub mod source;
pub mod store;
mod tls;
pub mod pace;
pub mod replicate;
