//! Locks on an output directory, so that overlapping runs never write the same files.
//!
//! DAP answers identical queries with the same job, so two runs downloading one table
//! into one directory would write the same job directory at the same time. Each run
//! therefore holds a lock per table while it queries, downloads and records that table,
//! and `dap sync` holds a short lock on its state file while it re-reads, merges and
//! rewrites it. Runs on different tables of one directory proceed side by side.
//!
//! A run that finds a table locked **waits** for it, saying so once with the other
//! run's process id, for at most `--lock-timeout` (default 10 minutes; 0 refuses at
//! once), then gives up with exit code 5 and a message naming the other run. Waiting
//! suits nightly jobs: an overlapping run (yesterday's job still busy, or two jobs
//! sharing a table) finishes its work once the other is done, and then only fetches
//! what changed meanwhile; a run stuck behind a much longer one still ends, with an
//! error that cron reports.
//!
//! The locks are advisory OS file locks (`flock` on Unix, `LockFileEx` on Windows) on
//! small files in the output directory, `.dap-lock.<namespace>.<table>` and
//! `.dap-lock.sync-state`. The OS releases them when a run ends however it ends, so a
//! crash never leaves a directory locked. A run removes its lock file when it is done;
//! a file left behind by a crash is reused. Lock files are opened without following
//! symbolic links.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{self, Read as _, Seek as _, Write as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tracing::warn;

use crate::errors::CliError;

/// How often a waiting run tries the lock again.
const RETRY_EVERY: Duration = Duration::from_millis(100);

/// Prefix of every lock file's name.
const PREFIX: &str = ".dap-lock.";

/// A held lock; released (and its file removed) when dropped.
#[derive(Debug)]
pub(crate) struct DirLock {
    file: File,
    path: PathBuf,
}

/// Checks that `name` (a namespace or table from the command line or the API) can be
/// part of a file name in the output directory.
pub(crate) fn check_file_name(what: &str, name: &str) -> Result<(), CliError> {
    let bad = name.is_empty()
        || name.starts_with('.')
        || name.contains(['/', '\\'])
        || name.chars().any(char::is_control);
    if bad {
        return Err(CliError::Usage(format!(
            "{what} name {name:?} cannot be used as a file name"
        )));
    }
    Ok(())
}

impl DirLock {
    /// Locks table `namespace.table` in `dir`, waiting up to `timeout`.
    pub(crate) async fn table(
        dir: &Path,
        namespace: &str,
        table: &str,
        timeout: Duration,
    ) -> Result<Self, CliError> {
        check_file_name("namespace", namespace)?;
        check_file_name("table", table)?;
        let what = format!("table '{namespace}.{table}' in {}", dir.display());
        Self::acquire(
            &dir.join(format!("{PREFIX}{namespace}.{table}")),
            &what,
            timeout,
        )
        .await
    }

    /// Locks the sync state file of `dir`, waiting up to `timeout`.
    pub(crate) async fn sync_state(dir: &Path, timeout: Duration) -> Result<Self, CliError> {
        let what = format!("the sync state of {}", dir.display());
        Self::acquire(&dir.join(format!("{PREFIX}sync-state")), &what, timeout).await
    }

    /// Takes the lock at `path` (creating its directory), waiting up to `timeout`
    /// while another run holds it.
    async fn acquire(path: &Path, what: &str, timeout: Duration) -> Result<Self, CliError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| CliError::io("cannot create the output directory", dir, e))?;
        }
        let started = Instant::now();
        let mut said = false;
        loop {
            let holder = match Self::try_acquire(path) {
                Ok(Attempt::Locked(lock)) => return Ok(lock),
                Ok(Attempt::Busy { holder }) => holder,
                Err(e) => return Err(CliError::io("cannot lock", path, e)),
            };
            let waited = started.elapsed();
            if waited >= timeout {
                return Err(CliError::Locked(format!(
                    "{what} is being written by another dap run ({holder}); gave up after \
                     waiting {} s (--lock-timeout). Run again once the other run has finished",
                    waited.as_secs()
                )));
            }
            if !said {
                warn!(
                    "Waiting for another dap run ({holder}) to finish with {what} (at most {} s, \
                     --lock-timeout)",
                    timeout.as_secs()
                );
                said = true;
            }
            tokio::time::sleep(RETRY_EVERY.min(timeout - waited)).await;
        }
    }

    /// One attempt: the lock, or who holds it.
    fn try_acquire(path: &Path) -> io::Result<Attempt> {
        loop {
            let mut file = open_lock_file(path)?;
            match file.try_lock() {
                Ok(()) => {}
                Err(TryLockError::WouldBlock) => {
                    return Ok(Attempt::Busy {
                        holder: read_holder(&mut file),
                    });
                }
                Err(TryLockError::Error(e)) => return Err(e),
            }
            // The previous holder may have removed the file between our open and our
            // lock: then the lock is on a file nobody else will look at; start over.
            if is_same_file(&file, path)? {
                write_holder(&mut file)?;
                return Ok(Attempt::Locked(Self {
                    file,
                    path: path.to_path_buf(),
                }));
            }
        }
    }
}

impl Drop for DirLock {
    fn drop(&mut self) {
        // Remove the file while still holding the lock; a run that opened it meanwhile
        // notices (see `try_acquire`) and starts over with a new file.
        if cfg!(unix) {
            let _ = std::fs::remove_file(&self.path);
        }
        let _ = self.file.unlock();
    }
}

enum Attempt {
    Locked(DirLock),
    Busy { holder: String },
}

/// Opens (or creates) a lock file without following a symbolic link, and refuses
/// anything but a plain file with one name.
fn open_lock_file(path: &Path) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.custom_flags(libc::O_NOFOLLOW);
    }
    let file = options.open(path)?;
    let meta = file.metadata()?;
    #[cfg(unix)]
    let extra_links = std::os::unix::fs::MetadataExt::nlink(&meta) > 1;
    #[cfg(not(unix))]
    let extra_links = false;
    if !meta.is_file() || extra_links {
        return Err(io::Error::other(
            "not a plain lock file; remove it if no dap is running",
        ));
    }
    Ok(file)
}

#[cfg(unix)]
fn is_same_file(file: &File, path: &Path) -> io::Result<bool> {
    use std::os::unix::fs::MetadataExt as _;
    let open = file.metadata()?;
    match std::fs::symlink_metadata(path) {
        Ok(named) => Ok(named.dev() == open.dev() && named.ino() == open.ino()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

#[cfg(not(unix))]
fn is_same_file(_: &File, _: &Path) -> io::Result<bool> {
    // Lock files are never removed on these platforms.
    Ok(true)
}

fn write_holder(file: &mut File) -> io::Result<()> {
    file.set_len(0)?;
    file.rewind()?;
    writeln!(
        file,
        "pid {} since {}",
        std::process::id(),
        jiff::Timestamp::now()
            .round(jiff::Unit::Second)
            .unwrap_or_default()
    )
}

/// What the holder wrote about itself (`pid N since T`), or a neutral phrase.
fn read_holder(file: &mut File) -> String {
    let mut text = String::new();
    let _ = file.take(200).read_to_string(&mut text);
    let line = text.lines().next().unwrap_or("").trim();
    if line.starts_with("pid ") {
        line.to_owned()
    } else {
        "process unknown".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lock_files(dir: &Path) -> Vec<String> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(PREFIX))
            .collect()
    }

    #[tokio::test]
    async fn a_held_table_refuses_a_second_run_and_is_released_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let first = DirLock::table(dir.path(), "canvas", "users", Duration::ZERO)
            .await
            .unwrap();
        assert_eq!(lock_files(dir.path()), [".dap-lock.canvas.users"]);
        let err = DirLock::table(dir.path(), "canvas", "users", Duration::ZERO)
            .await
            .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("another dap run (pid "), "{text}");
        assert!(text.contains("canvas.users"), "{text}");
        // Another table of the same directory is free.
        let other = DirLock::table(dir.path(), "canvas", "accounts", Duration::ZERO).await;
        assert!(other.is_ok());
        drop(other);
        drop(first);
        assert!(lock_files(dir.path()).is_empty());
        assert!(
            DirLock::table(dir.path(), "canvas", "users", Duration::ZERO)
                .await
                .is_ok()
        );
    }

    #[tokio::test]
    async fn a_waiting_run_gets_the_lock_once_it_is_released() {
        let dir = tempfile::tempdir().unwrap();
        let first = DirLock::sync_state(dir.path(), Duration::ZERO)
            .await
            .unwrap();
        let path = dir.path().to_path_buf();
        let waiter =
            tokio::spawn(async move { DirLock::sync_state(&path, Duration::from_secs(30)).await });
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert!(!waiter.is_finished());
        drop(first);
        assert!(waiter.await.unwrap().is_ok());
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn a_planted_symlink_is_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, b"keep").unwrap();
        std::os::unix::fs::symlink(&victim, dir.path().join(".dap-lock.canvas.users")).unwrap();
        let err = DirLock::table(dir.path(), "canvas", "users", Duration::ZERO)
            .await
            .unwrap_err();
        assert!(matches!(err, CliError::Io { .. }), "{err}");
        assert_eq!(std::fs::read(&victim).unwrap(), b"keep");
    }

    #[tokio::test]
    async fn names_that_are_not_file_names_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        for (ns, table) in [("canvas", "../x"), ("canvas", ".hidden"), ("a/b", "t")] {
            let err = DirLock::table(dir.path(), ns, table, Duration::ZERO)
                .await
                .unwrap_err();
            assert!(matches!(err, CliError::Usage(_)), "{err}");
        }
    }
}
