//! JSON files written exactly as the official CLI writes them, and atomically.
//!
//! The official client writes schemas with Python's `json.dump(obj, f, indent=4)`:
//! four-space indentation, `", "`/`": "` separators, every non-ASCII character and
//! DEL escaped as `\uXXXX`, and no final newline. [`to_python_json`] reproduces that,
//! and [`Verbatim`] re-serialises the schema text token by token, so the server's key
//! order survives as it does in Python.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde_json::ser::PrettyFormatter;

/// Raw JSON text that serialises token by token (keys in their original order) through
/// whatever serializer it is given.
pub(crate) struct Verbatim<'a>(pub(crate) &'a str);

impl Serialize for Verbatim<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut de = serde_json::Deserializer::from_str(self.0);
        serde_transcode::Transcoder::new(&mut de).serialize(serializer)
    }
}

/// Serialises `value` the way Python's `json.dump(value, f, indent=4)` does:
/// serde_json's pretty output with a four-space indent, then every character outside
/// printable ASCII written as `\uXXXX` (UTF-16 units), as `ensure_ascii=True` does.
/// serde_json escapes quotes, backslashes and control characters itself and puts line
/// breaks only between tokens, so every character this escapes stands in a string.
pub(crate) fn to_python_json<T: Serialize + ?Sized>(value: &T) -> serde_json::Result<Vec<u8>> {
    let mut pretty = Vec::new();
    let formatter = PrettyFormatter::with_indent(b"    ");
    value.serialize(&mut serde_json::Serializer::with_formatter(
        &mut pretty,
        formatter,
    ))?;
    let text = String::from_utf8(pretty).map_err(serde::ser::Error::custom)?;
    let mut out = Vec::with_capacity(text.len());
    for c in text.chars() {
        if c == '\n' || (' '..='~').contains(&c) {
            out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
            continue;
        }
        for unit in c.encode_utf16(&mut [0u16; 2]) {
            out.extend_from_slice(format!("\\u{unit:04x}").as_bytes());
        }
    }
    Ok(out)
}

/// Writes `bytes` to `path` atomically: a new temporary file in the same directory,
/// flushed to disk, then renamed over the final name. A crash or an interrupt leaves
/// either the old file or the new one, never half of one. The temporary file is created
/// with `create_new` under a name no other writer uses, so a file or symbolic link
/// planted under a predictable name is never followed or overwritten; a link at `path`
/// itself is replaced, not followed.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_atomic_named(path, bytes, temp_names(path))
}

/// Candidate temporary names for `path`: `.<name>.tmp-<pid>-<n>-<nanos>`, all different.
fn temp_names(path: &Path) -> impl Iterator<Item = String> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "file".to_owned());
    let pid = std::process::id();
    std::iter::repeat_with(move || {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        format!(".{name}.tmp-{pid}-{n}-{nanos}")
    })
}

/// [`write_atomic`] with the temporary names taken from `names`.
fn write_atomic_named(
    path: &Path,
    bytes: &[u8],
    names: impl Iterator<Item = String>,
) -> io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| Path::new("."));
    let (mut file, tmp) = create_new_in(dir, names)?;
    let result = (|| {
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        fs::rename(&tmp, path)?;
        // Make the rename itself durable where the platform allows it.
        if let Ok(d) = fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Creates a new file in `dir` under the first of `names` (at most 16) that does not
/// exist yet.
fn create_new_in(
    dir: &Path,
    names: impl Iterator<Item = String>,
) -> io::Result<(fs::File, PathBuf)> {
    for name in names.take(16) {
        let tmp = dir.join(name);
        match fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
        {
            Ok(file) => return Ok((file, tmp)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AlreadyExists,
        "every temporary name tried already exists",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_python_json_dump_indent_4() {
        let v: serde_json::Value = serde_json::from_str(
            r#"{"schema": {"a": {}, "b": [1, 2], "e": [], "t": "caf\u00e9 \ud83d\ude00 \"q\" \u007f\n"}, "version": 2}"#,
        )
        .unwrap();
        let got = String::from_utf8(to_python_json(&v).unwrap()).unwrap();
        // What Python 3 prints for json.dumps(v, indent=4).
        let want = "{\n    \"schema\": {\n        \"a\": {},\n        \"b\": [\n            1,\n            2\n        ],\n        \"e\": [],\n        \"t\": \"caf\\u00e9 \\ud83d\\ude00 \\\"q\\\" \\u007f\\n\"\n    },\n    \"version\": 2\n}";
        assert_eq!(got, want);
    }

    #[test]
    fn atomic_write_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.json");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[cfg(unix)]
    #[test]
    fn planted_symlinks_are_never_followed() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        fs::write(&victim, b"keep").unwrap();
        let p = dir.path().join("state.json");
        // A link under the name a process-id scheme would pick, and under the first
        // name offered: both are skipped, and the victim is untouched.
        let pid_name = format!(".state.json.tmp-{}", std::process::id());
        std::os::unix::fs::symlink(&victim, dir.path().join(&pid_name)).unwrap();
        std::os::unix::fs::symlink(&victim, dir.path().join("planted")).unwrap();
        write_atomic(&p, b"one").unwrap();
        let names = ["planted".to_owned(), "free".to_owned()].into_iter();
        write_atomic_named(&p, b"two", names).unwrap();
        assert_eq!(fs::read(&victim).unwrap(), b"keep");
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert!(!dir.path().join("free").exists(), "renamed away");
        // A link at the final name is replaced by the file, not written through.
        let linked = dir.path().join("linked.json");
        std::os::unix::fs::symlink(&victim, &linked).unwrap();
        write_atomic(&linked, b"three").unwrap();
        assert_eq!(fs::read(&victim).unwrap(), b"keep");
        assert!(!fs::symlink_metadata(&linked).unwrap().is_symlink());
    }
}
