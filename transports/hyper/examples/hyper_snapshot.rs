//! Lists the tables of a namespace, takes a snapshot of the first one and downloads it.
//!
//! ```text
//! DAP_API_URL=http://127.0.0.1:PORT DAP_CLIENT_ID=... DAP_CLIENT_SECRET=... \
//!     cargo run -p dap-hyper --example hyper_snapshot -- canvas ./out
//! ```

use dap_hyper::{Client, DownloadOptions};
use dap_hyper::{Format, Query};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let namespace = args.next().unwrap_or_else(|| "canvas".to_owned());
    let out = std::path::PathBuf::from(args.next().unwrap_or_else(|| "out".to_owned()));

    let client = Client::from_env()?;
    let tables = client.list_tables(&namespace).await?;
    println!(
        "{namespace}: {} tables: {}",
        tables.len(),
        tables.join(", ")
    );
    let Some(table) = tables.first() else {
        return Ok(());
    };

    // URLs on demand: the download fetches them a batch at a time, and taking the
    // result by value frees each once its object is done, however many objects the job has.
    let query = Query::snapshot(Format::Jsonl).urls_on_demand();
    let result = client.query(&namespace, table, query).await?;
    println!("job {}: {} objects", result.job, result.object_count());
    let files = client
        .download(result, &out, &DownloadOptions::default())
        .await?;
    for file in files {
        println!("{} ({} bytes)", file.path.display(), file.bytes);
    }
    Ok(())
}
