//! One query and its download: the two halves every data command is made of, with the
//! log lines and progress display of each. A caller checks what a finished job covers
//! (`dap_proto::chain`) between the two, so data that does not match its query is never
//! downloaded.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

use dap_hyper::{Client, DownloadOptions, DownloadedFile};
use dap_proto::{Query, QueryResult};
use tracing::{info, warn};

use crate::errors::CliError;
use crate::progress::{self, DownloadWatch, JobSpinner};
use crate::report::{QueryKind, describe_range};

/// The job directories a run writes to; after an interrupt, their temporary files are
/// removed.
#[derive(Debug, Default)]
pub(crate) struct JobDirs(Mutex<Vec<PathBuf>>);

impl JobDirs {
    /// Remembers `dir`.
    fn register(&self, dir: &Path) {
        if let Ok(mut dirs) = self.0.lock()
            && !dirs.iter().any(|d| d == dir)
        {
            dirs.push(dir.to_path_buf());
        }
    }

    /// Removes temporary (`*.partial`, `.*.tmp*`) files from every job directory
    /// written to, and the directories left empty; returns how many files went. Call it
    /// once nothing writes any more.
    pub(crate) fn remove_partial_files(&self) -> usize {
        let dirs = match self.0.lock() {
            Ok(mut d) => std::mem::take(&mut *d),
            Err(_) => return 0,
        };
        let mut removed = 0;
        for dir in dirs {
            for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                let name = entry.file_name();
                if progress::is_temporary(&name.to_string_lossy())
                    && std::fs::remove_file(entry.path()).is_ok()
                {
                    removed += 1;
                }
            }
            // Only succeeds when empty.
            let _ = std::fs::remove_dir(&dir);
        }
        removed
    }
}

/// A job's downloaded files.
pub(crate) struct Downloaded {
    /// The files written, in object order.
    pub(crate) files: Vec<DownloadedFile>,
    /// The job directory.
    pub(crate) dir: PathBuf,
    /// Time spent downloading.
    pub(crate) download_ms: u64,
}

/// Runs `query` on `namespace.table` and waits for the job to complete. The objects'
/// URLs are left to [`download`], which fetches them a batch at a time as it reaches
/// the objects: a job of many thousands of objects never holds all its URLs at once.
pub(crate) async fn query(
    client: &Client,
    namespace: &str,
    table: &str,
    query: Query,
) -> Result<QueryResult, CliError> {
    let kind = QueryKind::of_query(&query);
    let result = {
        let _spinner = JobSpinner::start(format!("{namespace}.{table}: {kind} job running"));
        client
            .query(namespace, table, query.urls_on_demand())
            .await
            .map_err(|e| CliError::api(format!("{kind} query of table '{table}'"), e))?
    };
    info!(
        "Query job {} for table '{table}' is complete: {} object(s), schema version {}, {}",
        result.job,
        result.object_count(),
        result.schema_version,
        describe_range(&result.range)
    );
    Ok(result)
}

/// Downloads the objects of `result` (a job of `namespace.table`) into
/// `out_dir/job_<id>/`. The objects (and any pre-signed URLs) are taken out of `result`;
/// URLs are fetched as the download reaches their objects and each is freed once its
/// object is done: memory stays flat on jobs of many thousands of objects.
pub(crate) async fn download(
    client: &Client,
    (namespace, table): (&str, &str),
    result: &mut QueryResult,
    out_dir: &Path,
    options: &DownloadOptions,
    job_dirs: &JobDirs,
) -> Result<Downloaded, CliError> {
    std::fs::create_dir_all(out_dir)
        .map_err(|e| CliError::io("cannot create the output directory", out_dir, e))?;
    let dir = out_dir.join(dap_proto::download::job_dir(&result.job));
    job_dirs.register(&dir);
    let started = Instant::now();
    if !progress::enabled() {
        info!(
            "Downloading {} object(s) of job {} to {}",
            result.object_count(),
            result.job,
            dir.display()
        );
    }
    let files = {
        let _watch = DownloadWatch::start(
            format!("{namespace}.{table}:"),
            dir.clone(),
            result.object_count(),
        );
        let given = QueryResult {
            objects: std::mem::take(&mut result.objects),
            pending: std::mem::take(&mut result.pending),
            ..QueryResult::clone(result)
        };
        client
            .download(given, out_dir, options)
            .await
            .map_err(|e| CliError::api(format!("downloading the data of table '{table}'"), e))?
    };
    log_download(&dir, &files, started);
    Ok(Downloaded {
        files,
        dir,
        download_ms: progress::millis_since(started),
    })
}

fn log_download(dir: &Path, files: &[DownloadedFile], started: Instant) {
    let bytes: u64 = files.iter().map(|f| f.bytes).sum();
    info!(
        "Files from server downloaded to folder: {} ({} file(s), {} at {})",
        dir.display(),
        files.len(),
        progress::human_bytes(bytes),
        progress::human_rate(bytes, started.elapsed())
    );
    for f in files
        .iter()
        .filter(|f| f.resumes > 0 || f.url_refreshes > 0)
    {
        warn!(
            "{}: resumed {} time(s) after a dropped or stalled connection, and fetched {} \
             fresh URL(s)",
            f.path.display(),
            f.resumes,
            f.url_refreshes
        );
    }
}
