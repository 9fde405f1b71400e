//! The file policy, written once for both transports: a verified object is written to a
//! fresh temporary file (created with `create_new`, so neither an existing file nor a
//! planted symbolic link is ever opened), flushed, fsync'ed, checked against the length
//! the core verified, renamed to its final name, and the directory fsync'ed. A file that
//! is not committed is removed.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use dap_proto::Commit;

use crate::Error;

/// Write buffer in front of each file.
const WRITE_BUFFER: usize = 128 << 10;

/// A random number for [`dap_proto::DownloadSpec::nonce`]: unique temporary names per
/// download, so two runs on one directory never share a file.
pub fn nonce() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    if let Ok(t) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        hasher.write_u128(t.as_nanos());
    }
    hasher.finish()
}

/// A temporary file being written.
#[derive(Debug)]
pub struct PartialFile {
    path: PathBuf,
    file: BufWriter<File>,
    written: u64,
    /// Whether everything written is flushed and fsync'ed.
    synced: bool,
}

impl PartialFile {
    /// Creates `path`, which must not exist (a link there is refused too).
    pub fn create(path: PathBuf) -> Result<Self, Error> {
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        Ok(Self {
            path,
            file: BufWriter::with_capacity(WRITE_BUFFER, file),
            written: 0,
            synced: false,
        })
    }

    /// Appends `bytes`.
    pub fn write(&mut self, bytes: &[u8]) -> Result<(), Error> {
        self.synced = false;
        self.file
            .write_all(bytes)
            .map_err(|e| Error::io(&self.path, e))?;
        self.written += bytes.len() as u64;
        Ok(())
    }

    /// Discards everything written (the server restarted the object from byte 0).
    pub fn truncate(&mut self) -> Result<(), Error> {
        self.synced = false;
        let path = &self.path;
        self.file.flush().map_err(|e| Error::io(path, e))?;
        let file = self.file.get_mut();
        file.set_len(0)
            .and_then(|()| file.seek(SeekFrom::Start(0)).map(drop))
            .map_err(|e| Error::io(path, e))?;
        self.written = 0;
        Ok(())
    }

    /// Flushes and fsyncs what was written.
    pub fn sync(&mut self) -> Result<(), Error> {
        let path = &self.path;
        self.file.flush().map_err(|e| Error::io(path, e))?;
        self.file
            .get_ref()
            .sync_all()
            .map_err(|e| Error::io(path, e))?;
        self.synced = true;
        Ok(())
    }

    /// Flushes and fsyncs (unless [`PartialFile::sync`] already did), checks that the
    /// file holds `len` bytes, renames it to `target` and fsyncs the directory.
    pub fn commit(mut self, target: &Path, len: u64) -> Result<(), Error> {
        if !self.synced {
            self.sync()?;
        }
        let Self { path, file, .. } = self;
        let file = file
            .into_inner()
            .map_err(|e| Error::io(&path, e.into_error()))?;
        let on_disk = file.metadata().map_err(|e| Error::io(&path, e))?.len();
        drop(file);
        if on_disk != len {
            let _ = fs::remove_file(&path);
            let message = format!("the file holds {on_disk} bytes, {len} were verified");
            return Err(Error::io(&path, std::io::Error::other(message)));
        }
        fs::rename(&path, target).map_err(|e| Error::io(target, e))?;
        if let Some(parent) = target.parent() {
            // Makes the rename durable; not every platform can open a directory.
            if let Ok(dir) = File::open(parent) {
                let _ = dir.sync_all();
            }
        }
        Ok(())
    }
}

/// The files of one download in `dir`: temporary files by their relative name, opened on
/// first use, committed or discarded as the core says.
#[derive(Debug)]
pub struct Files {
    dir: PathBuf,
    open: HashMap<String, PartialFile>,
}

impl Files {
    /// The files of a download into `dir`, whose job directory `job_dir` (relative) is
    /// created now.
    pub fn new(dir: &Path, job_dir: &str) -> Result<Self, Error> {
        let job = dir.join(job_dir);
        fs::create_dir_all(&job).map_err(|e| Error::io(&job, e))?;
        Ok(Self {
            dir: dir.to_owned(),
            open: HashMap::new(),
        })
    }

    /// The download directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Takes the temporary file `temp` to write to (created on first use); give it
    /// back with [`Files::put`].
    pub fn take(&mut self, temp: &str) -> Result<PartialFile, Error> {
        match self.open.remove(temp) {
            Some(file) => Ok(file),
            None => PartialFile::create(self.dir.join(temp)),
        }
    }

    /// Gives back a file taken with [`Files::take`].
    pub fn put(&mut self, temp: &str, file: PartialFile) {
        self.open.insert(temp.to_owned(), file);
    }

    /// Commits a verified object; returns its final path.
    pub fn commit(&mut self, commit: &Commit) -> Result<PathBuf, Error> {
        let target = self.dir.join(&commit.target);
        let file = self.take(&commit.temp)?;
        file.commit(&target, commit.len)?;
        Ok(target)
    }

    /// Removes a temporary file, open or not.
    pub fn discard(&mut self, temp: &str) {
        drop(self.open.remove(temp));
        let _ = fs::remove_file(self.dir.join(temp));
    }
}

impl Drop for Files {
    fn drop(&mut self) {
        for (temp, file) in self.open.drain() {
            drop(file);
            let _ = fs::remove_file(self.dir.join(temp));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn commit(temp: &str, target: &str, len: u64) -> Commit {
        Commit::new(dap_proto::ObjectId::new("o"), temp, target, len)
    }

    #[test]
    fn commit_checks_length_and_renames() {
        let dir = tempfile::tempdir().unwrap();
        let mut files = Files::new(dir.path(), "job_1").unwrap();
        let mut f = files.take("job_1/.a.partial").unwrap();
        f.write(b"hello").unwrap();
        files.put("job_1/.a.partial", f);
        let short = commit("job_1/.a.partial", "job_1/a", 6);
        assert!(files.commit(&short).is_err());
        assert!(!dir.path().join("job_1/a").exists());
        assert!(!dir.path().join("job_1/.a.partial").exists());
        let mut f = files.take("job_1/.b.partial").unwrap();
        f.write(b"hello").unwrap();
        files.put("job_1/.b.partial", f);
        let path = files
            .commit(&commit("job_1/.b.partial", "job_1/b", 5))
            .unwrap();
        assert_eq!(fs::read(path).unwrap(), b"hello");
    }

    #[cfg(unix)]
    #[test]
    fn temporary_files_never_follow_links() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        fs::write(&victim, b"keep").unwrap();
        let mut files = Files::new(dir.path(), "job_1").unwrap();
        std::os::unix::fs::symlink(&victim, dir.path().join("job_1/.a.partial")).unwrap();
        assert!(files.take("job_1/.a.partial").is_err());
        assert_eq!(fs::read(&victim).unwrap(), b"keep");
    }

    #[test]
    fn nonces_differ() {
        assert_ne!(nonce(), nonce());
    }
}
