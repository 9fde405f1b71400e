//! The commands, one module each. Every command is `run(&Context, &Args)`, returning
//! its [`crate::batch::Outcome`].

pub(crate) mod data;
pub(crate) mod db;
pub(crate) mod demo;
pub(crate) mod incremental;
pub(crate) mod list;
pub(crate) mod schema;
pub(crate) mod snapshot;
pub(crate) mod sync;
