//! Files as fedsim writes them: whole or not at all. Every file goes through a temporary file in
//! the same folder and a rename, and the temporary file is removed when anything fails, so a full
//! disk leaves neither a cut `report.html` nor a truncated `data.parquet` nor an empty `*.tmp`.
//! A run directory also keeps a small reserve of disk, given back just before the summary is
//! written, so that a run that fails because the disk is full can still say so.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde::Serialize;

/// Write `bytes` to `path` atomically (a temporary file beside it, then a rename).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_with_mode(path, bytes, None)
}

/// [`write_atomic`] with the file's permission bits set before any byte is written (a `.env`
/// is never readable by others, not even for a moment).
pub fn write_with_mode(path: &Path, bytes: &[u8], mode: Option<u32>) -> std::io::Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    let dir = dir.unwrap_or(Path::new("."));
    // NamedTempFile removes itself when dropped unpersisted: on any error below.
    let mut tmp = tempfile::Builder::new()
        .prefix(".fedsim-")
        .suffix(".tmp")
        .tempfile_in(dir)?;
    if let Some(mode) = mode {
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(mode))?;
    }
    tmp.write_all(bytes)?;
    tmp.flush()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// Write JSON atomically, pretty-printed.
pub fn write_json_atomic<T: Serialize + ?Sized>(path: &Path, value: &T) -> std::io::Result<()> {
    let text = serde_json::to_vec_pretty(value).map_err(std::io::Error::other)?;
    write_atomic(path, &text)
}

/// A file of zeros held in a run directory so the summary can be written when the disk fills:
/// [`Reserve::release`] deletes it just before.
pub struct Reserve {
    path: PathBuf,
}

/// Enough for the summary of a thousand sites.
pub const RESERVE_BYTES: usize = 4 << 20;

impl Reserve {
    /// Set aside [`RESERVE_BYTES`] in `dir` (real blocks: zeros written, not a sparse file).
    pub fn take(dir: &Path) -> std::io::Result<Reserve> {
        let path = dir.join(".fedsim-reserve");
        let mut f = std::fs::File::create(&path)?;
        let zeros = vec![0u8; 64 << 10];
        for _ in 0..RESERVE_BYTES / zeros.len() {
            if let Err(e) = f.write_all(&zeros) {
                let _ = std::fs::remove_file(&path);
                return Err(e);
            }
        }
        f.sync_all()?;
        Ok(Reserve { path })
    }

    /// Give the space back.
    pub fn release(self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

impl Drop for Reserve {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_write_leaves_neither_the_file_nor_a_temporary_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.json");
        write_atomic(&path, b"first").unwrap();
        // A rename onto a directory fails: the old file stays whole, no temporary is left.
        let blocked = dir.path().join("sub");
        std::fs::create_dir(&blocked).unwrap();
        assert!(write_atomic(&blocked, b"second").is_err());
        assert_eq!(std::fs::read(&path).unwrap(), b"first");
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(names.iter().all(|n| !n.ends_with(".tmp")), "{names:?}");
        write_with_mode(&dir.path().join(".env"), b"T=1", Some(0o600)).unwrap();
        let mode = std::fs::metadata(dir.path().join(".env"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
