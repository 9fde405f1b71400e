//! [`Names`]: the file names a download has given out, to refuse a second object of the
//! same name.

use std::collections::HashSet;
use std::hash::{BuildHasher, RandomState};

use crate::error::ArgumentError;
use crate::model::JobId;
use crate::secret::PresignedUrl;

/// The file names of a job's objects seen so far, checked as each URL becomes known
/// (all at once for URLs that came with the query result, a batch at a time for URLs
/// fetched on demand).
///
/// Trade-off: a name is kept as a 64-bit keyed hash, not as a string: 8 bytes in the
/// set instead of the name and its allocation (60 bytes and more each, for 20,000
/// objects or more). A real duplicate is always caught. Two different names whose
/// hashes collide would wrongly be refused as a duplicate; with the hasher's random
/// per-process keys a server cannot aim for that, and by chance it happens with odds of
/// about n²/2⁶⁵ (one in 10¹⁰ for 20,000 objects).
#[derive(Debug)]
pub(super) struct Names {
    job: JobId,
    /// Whether names are checked at all (not for streamed records, which write nothing).
    check: bool,
    /// Whether names lose `.gz` (gzip objects saved decompressed).
    strip_gz: bool,
    keys: RandomState,
    seen: HashSet<u64>,
}

impl Names {
    /// No name seen yet, for the objects of `job`.
    pub(super) fn new(job: JobId, check: bool, strip_gz: bool) -> Self {
        Self {
            job,
            check,
            strip_gz,
            keys: RandomState::new(),
            seen: HashSet::new(),
        }
    }

    /// Notes the name an object with this URL is saved under; refuses a name already
    /// seen, and a URL without a usable name.
    pub(super) fn admit(&mut self, url: &PresignedUrl) -> Result<(), ArgumentError> {
        if !self.check {
            return Ok(());
        }
        let mut name = super::file_name(url)?;
        if self.strip_gz {
            let stem = name.strip_suffix(".gz").filter(|s| !s.is_empty());
            if let Some(len) = stem.map(str::len) {
                name.truncate(len);
            }
        }
        if self.seen.insert(self.keys.hash_one(&name)) {
            return Ok(());
        }
        Err(ArgumentError::new(format!(
            "two objects of job {} share the file name {name}",
            self.job
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_object_of_a_name_is_refused() {
        let url = |s: &str| PresignedUrl::new(format!("https://b/o/{s}?sig=1"));
        let mut names = Names::new(JobId::new("j"), true, true);
        names.admit(&url("a.json.gz")).unwrap();
        names.admit(&url("b.json.gz")).unwrap();
        // Decompressed, `a.json.gz` and `a.json` land on one file.
        let e = names.admit(&url("a.json")).unwrap_err();
        assert!(
            e.to_string()
                .contains("two objects of job j share the file name a.json"),
            "{e}"
        );
        assert!(names.admit(&url("..")).is_err(), "no usable name");

        let mut kept = Names::new(JobId::new("j"), true, false);
        kept.admit(&url("a.json.gz")).unwrap();
        kept.admit(&url("a.json")).unwrap();

        let mut records = Names::new(JobId::new("j"), false, true);
        records.admit(&url("a.json.gz")).unwrap();
        records.admit(&url("a.json.gz")).unwrap();
    }
}
