//! Lists the tables of a namespace, takes a snapshot of the first one and downloads it.
//!
//! ```text
//! DAP_API_URL=http://127.0.0.1:PORT DAP_CLIENT_ID=... DAP_CLIENT_SECRET=... \
//!     cargo run -p dap-hyper --example list_tables -- canvas ./out
//! ```

use dap_hyper::Format;
use dap_hyper::{Client, DownloadOptions};

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

    let result = client.snapshot(&namespace, table, Format::Jsonl).await?;
    println!("job {}: {} objects", result.job, result.objects.len());
    let files = client
        .download(&result, &out, &DownloadOptions::default())
        .await?;
    for file in files {
        println!("{} ({} bytes)", file.path.display(), file.bytes);
    }
    Ok(())
}
