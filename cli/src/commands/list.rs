//! `dap list`: the tables of a namespace, one per line.

use serde_json::json;

use crate::args::ListArgs;
use crate::batch::Outcome;
use crate::context::Context;
use crate::errors::CliError;
use crate::print_stdout;

/// `dap list`.
pub(crate) async fn run(ctx: &Context<'_>, args: &ListArgs) -> Result<Outcome, CliError> {
    let tables = ctx
        .client()?
        .list_tables(&args.namespace)
        .await
        .map_err(|e| {
            CliError::api(
                format!("listing the tables of namespace '{}'", args.namespace),
                e,
            )
        })?;
    if !ctx.json_output() {
        let mut out = String::new();
        for t in &tables {
            out.push_str(t);
            out.push('\n');
        }
        print_stdout(&out);
    }
    Ok(Outcome {
        json: json!({ "command": "list", "ok": true, "namespace": args.namespace, "tables": tables }),
        ok: true,
        reports: None,
    })
}
