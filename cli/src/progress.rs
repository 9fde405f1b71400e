//! Progress display: indicatif bars on a terminal, plain log lines otherwise.
//!
//! The transport reports nothing while it works, so a download's progress is measured
//! from the job directory itself: the bytes of its files (temporary ones included) and
//! the number of finished files.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

static BARS: OnceLock<MultiProgress> = OnceLock::new();

/// Turns the bars on (call once, only when stderr is an interactive terminal).
pub(crate) fn enable() {
    let _ = BARS.set(MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
}

/// Whether bars are shown.
pub(crate) fn enabled() -> bool {
    BARS.get().is_some()
}

/// Runs `f` with the bars hidden, so a log line does not tear them.
pub(crate) fn suspend<R>(f: impl FnOnce() -> R) -> R {
    match BARS.get() {
        Some(bars) => bars.suspend(f),
        None => f(),
    }
}

/// A spinner shown while a query job runs on the server.
pub(crate) struct JobSpinner(Option<ProgressBar>);

impl JobSpinner {
    /// Starts the spinner with `message` (no-op without a terminal).
    pub(crate) fn start(message: String) -> Self {
        Self(BARS.get().map(|bars| {
            let bar = ProgressBar::new_spinner()
                .with_style(
                    ProgressStyle::with_template("{spinner:.cyan} {msg} [{elapsed}]")
                        .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                )
                .with_message(message);
            let bar = bars.add(bar);
            bar.enable_steady_tick(Duration::from_millis(100));
            bar
        }))
    }
}

impl Drop for JobSpinner {
    fn drop(&mut self) {
        if let Some(bar) = self.0.take() {
            bar.finish_and_clear();
            if let Some(bars) = BARS.get() {
                bars.remove(&bar);
            }
        }
    }
}

/// Bytes and files in a job directory right now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct DirUsage {
    /// Bytes of every file, temporary ones included.
    pub(crate) bytes: u64,
    /// Files under their final name.
    pub(crate) finished: u64,
}

/// Measures `dir` (missing directories measure zero).
pub(crate) fn measure(dir: &Path) -> DirUsage {
    let mut usage = DirUsage::default();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return usage;
    };
    for entry in entries.flatten() {
        let Ok(meta) = entry.metadata() else { continue };
        if !meta.is_file() {
            continue;
        }
        usage.bytes += meta.len();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if !is_temporary(&name) {
            usage.finished += 1;
        }
    }
    usage
}

/// Whether a file name is one of the transport's or this CLI's temporary names.
pub(crate) fn is_temporary(name: &str) -> bool {
    name.ends_with(".partial") || (name.starts_with('.') && name.contains(".tmp"))
}

/// Watches a download: a bar with objects, bytes and rate on a terminal, nothing
/// otherwise (the caller logs a line before and after).
pub(crate) struct DownloadWatch {
    task: Option<tokio::task::JoinHandle<()>>,
    bar: Option<ProgressBar>,
}

impl DownloadWatch {
    /// Starts watching `dir`, where `objects` files are being written.
    pub(crate) fn start(label: String, dir: PathBuf, objects: usize) -> Self {
        let Some(bars) = BARS.get() else {
            return Self {
                task: None,
                bar: None,
            };
        };
        let bar = ProgressBar::new_spinner()
            .with_style(
                ProgressStyle::with_template(
                    "{spinner:.green} {prefix} {msg} {binary_bytes} at {binary_bytes_per_sec} [{elapsed}]",
                )
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            )
            .with_prefix(label)
            .with_message(format!("0/{objects} objects"));
        let bar = bars.add(bar);
        bar.enable_steady_tick(Duration::from_millis(100));
        let watched = bar.clone();
        let task = tokio::spawn(async move {
            loop {
                let usage = measure(&dir);
                watched.set_position(usage.bytes);
                watched.set_message(format!("{}/{objects} objects", usage.finished));
                tokio::time::sleep(Duration::from_millis(150)).await;
            }
        });
        Self {
            task: Some(task),
            bar: Some(bar),
        }
    }
}

impl Drop for DownloadWatch {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
            if let Some(bars) = BARS.get() {
                bars.remove(&bar);
            }
        }
    }
}

/// `12.3 MiB`.
pub(crate) fn human_bytes(bytes: u64) -> String {
    indicatif::BinaryBytes(bytes).to_string()
}

/// `45.6 MiB/s` for `bytes` moved in `elapsed`.
pub(crate) fn human_rate(bytes: u64, elapsed: Duration) -> String {
    let secs = elapsed.as_secs_f64().max(0.001);
    format!("{}/s", human_bytes((bytes as f64 / secs) as u64))
}

/// Milliseconds since `start`, for reports.
pub(crate) fn millis_since(start: Instant) -> u64 {
    u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX)
}
