//! Lists the tables of a namespace, takes a snapshot of one and downloads it.
//!
//! ```text
//! DAP_API_URL=... DAP_CLIENT_ID=... DAP_CLIENT_SECRET=... \
//!     cargo run -p dap-ureq --example ureq_snapshot -- [table] [output dir]
//! ```
//! Try it offline against the emulator: `cargo run -p dap-emulator` prints the variables.

use dap_ureq::{Client, DownloadOptions, Error, Format, Query};

fn main() -> Result<(), Error> {
    let mut args = std::env::args().skip(1);
    let table = args.next().unwrap_or_else(|| "accounts".to_owned());
    let dir = args.next().unwrap_or_else(|| "dap-out".to_owned());

    let client = Client::from_env()?;
    let tables = client.list_tables("canvas")?;
    println!("{} tables in canvas: {}", tables.len(), tables.join(", "));

    // URLs on demand: the download fetches them a batch at a time, and taking the
    // result by value frees each once its object is done, however many objects the job has.
    let query = Query::snapshot(Format::Jsonl).urls_on_demand();
    let result = client.query("canvas", &table, query)?;
    println!(
        "job {} complete: {} objects, data as of {:?}",
        result.job,
        result.object_count(),
        result.range
    );
    let next_since = result.range.next_since();
    let files = client.download(result, &dir, &DownloadOptions::default())?;
    for file in &files {
        println!("{} ({} bytes, verified)", file.path.display(), file.bytes);
    }
    println!("next incremental since {next_since}");
    Ok(())
}
