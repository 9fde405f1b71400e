//! `dap schema`, and the schema file every command that saves a schema writes.

use std::path::{Path, PathBuf};

use dap_proto::TableSchema;
use serde_json::json;
use tracing::info;

use crate::args::SchemaArgs;
use crate::batch::{Batch, Outcome, resolve_tables};
use crate::context::Context;
use crate::errors::CliError;
use crate::jsonfile;
use crate::lock::check_file_name;
use crate::report::{TableReport, display_path};

/// The schema file's name: `<table>_schema_version_<N>.json`.
pub(crate) fn schema_file_name(table: &str, version: u64) -> String {
    format!("{table}_schema_version_{version}.json")
}

/// Writes `schema` into `dir` as the official CLI does (pretty `{"schema", "version"}`);
/// returns the path.
pub(crate) fn write_schema(
    dir: &Path,
    table: &str,
    schema: &TableSchema,
) -> Result<PathBuf, CliError> {
    check_file_name("table", table)?;
    std::fs::create_dir_all(dir)
        .map_err(|e| CliError::io("cannot create the output directory", dir, e))?;
    let path = dir.join(schema_file_name(table, schema.version));
    #[derive(serde::Serialize)]
    struct SchemaFile<'a> {
        schema: jsonfile::Verbatim<'a>,
        version: u64,
    }
    let doc = SchemaFile {
        schema: jsonfile::Verbatim(schema.raw()),
        version: schema.version,
    };
    let bytes = jsonfile::to_python_json(&doc)
        .map_err(|e| CliError::Other(format!("cannot serialise the schema of '{table}': {e}")))?;
    jsonfile::write_atomic(&path, &bytes)
        .map_err(|e| CliError::io("cannot write the schema file", &path, e))?;
    Ok(path)
}

/// Fetches the schema of `namespace.table` and writes it into `dir`.
pub(crate) async fn save_schema(
    client: &dap_hyper::Client,
    namespace: &str,
    table: &str,
    dir: &Path,
) -> Result<(TableSchema, PathBuf), CliError> {
    let schema = client
        .table_schema(namespace, table)
        .await
        .map_err(|e| CliError::api(format!("fetching the schema of table '{table}'"), e))?;
    let path = write_schema(dir, table, &schema)?;
    info!("JSON schema downloaded to file {}", path.display());
    Ok((schema, path))
}

/// `dap schema`.
pub(crate) async fn run(ctx: &Context<'_>, args: &SchemaArgs) -> Result<Outcome, CliError> {
    let client = ctx.client()?;
    let tables = resolve_tables(&client, &args.tables.namespace, &args.tables.table).await?;
    let mut batch = Batch::new("schema", &tables, ctx.hints);
    batch
        .run_each(async |table: &str| {
            let (schema, path) = save_schema(
                &client,
                &args.tables.namespace,
                table,
                &args.output_directory,
            )
            .await?;
            let mut report = TableReport::ok(table);
            report.schema_version = Some(schema.version);
            report.schema_file = Some(display_path(&path));
            Ok(report)
        })
        .await;
    Ok(batch.outcome(json!({
        "command": "schema",
        "namespace": args.tables.namespace,
        "output_directory": display_path(&args.output_directory),
    })))
}
