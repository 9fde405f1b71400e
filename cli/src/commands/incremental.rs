//! `dap incremental`: the changes of each table in a window.

use dap_proto::{Format, Query};

use crate::args::IncrementalArgs;
use crate::batch::Outcome;
use crate::commands::data;
use crate::context::Context;
use crate::errors::CliError;
use crate::timestamp::parse_instant;

/// The query of `args`; a bad timestamp is refused before any credential or network
/// is needed.
fn query(args: &IncrementalArgs) -> Result<Query, CliError> {
    let since = parse_instant("--since", &args.since).map_err(CliError::Usage)?;
    let query = Query::incremental(Format::from(args.query.format), since);
    let Some(until) = &args.until else {
        return Ok(query);
    };
    let until = parse_instant("--until", until).map_err(CliError::Usage)?;
    query.until(until).map_err(|e| {
        CliError::Usage(format!(
            "--until must be later than --since ({})",
            e.message()
        ))
    })
}

/// `dap incremental`.
pub(crate) async fn run(ctx: &Context<'_>, args: &IncrementalArgs) -> Result<Outcome, CliError> {
    data::run(ctx, &args.query, query(args)?).await
}
