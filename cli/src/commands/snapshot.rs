//! `dap snapshot`: every row of each table as of one instant.

use dap_proto::{Format, Query};

use crate::args::QueryArgs;
use crate::batch::Outcome;
use crate::commands::data;
use crate::context::Context;
use crate::errors::CliError;

/// `dap snapshot`.
pub(crate) async fn run(ctx: &Context<'_>, args: &QueryArgs) -> Result<Outcome, CliError> {
    data::run(ctx, args, Query::snapshot(Format::from(args.format))).await
}
