//! What `snapshot` and `incremental` share: one query per table, checked against what
//! the job covers, downloaded under the table's lock.

use dap_proto::chain::{Chain, Reason, Step};
use dap_proto::{DataRange, Query, QueryRange};
use serde_json::json;

use crate::args::QueryArgs;
use crate::batch::{Batch, Outcome, resolve_tables};
use crate::context::Context;
use crate::errors::CliError;
use crate::fetch;
use crate::lock::DirLock;
use crate::report::{QueryKind, TableReport, display_path};

/// The download options of a data command.
pub(crate) fn download_options(args: &QueryArgs) -> dap_hyper::DownloadOptions {
    dap_hyper::DownloadOptions::default()
        .decompress(args.decompress)
        .concurrency(usize::from(args.concurrency))
}

/// Checks that a job covers what `query` asked for: the same kind of data, and for an
/// incremental the window asked for.
pub(crate) fn check_range(query: Query, range: &DataRange) -> Result<(), CliError> {
    let reason = match query.range() {
        QueryRange::Incremental { since, .. } => Reason::Continue { since },
        _ => Reason::First,
    };
    Chain::new(query.format(), None).accept(&Step { query, reason }, range)?;
    Ok(())
}

/// Runs `query` on every table of `args` and downloads the results.
pub(crate) async fn run(
    ctx: &Context<'_>,
    args: &QueryArgs,
    query: Query,
) -> Result<Outcome, CliError> {
    let client = ctx.client()?;
    let (namespace, dir) = (args.tables.namespace.as_str(), &args.output_directory);
    let tables = resolve_tables(&client, namespace, &args.tables.table).await?;
    let options = download_options(args);
    let op = QueryKind::of_query(&query).as_str();
    let mut batch = Batch::new(op, &tables, ctx.hints);
    batch
        .run_each(async |table: &str| {
            let _lock = DirLock::table(dir, namespace, table, ctx.lock_timeout()).await?;
            let mut result = fetch::query(&client, namespace, table, query).await?;
            check_range(query, &result.range)?;
            let got = fetch::download(
                &client,
                (namespace, table),
                &mut result,
                dir,
                &options,
                ctx.job_dirs,
            )
            .await?;
            Ok(TableReport::ok(table).with_result(&result, &got.dir, got.files))
        })
        .await;
    Ok(batch.outcome(json!({
        "command": op,
        "namespace": namespace,
        "format": query.format().as_str(),
        "output_directory": display_path(dir),
    })))
}
