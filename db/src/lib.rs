//! # dap-db: replicate DAP tables into a database
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod dialect;
pub mod json;
pub mod model;
pub mod conn;
pub mod tsv;
