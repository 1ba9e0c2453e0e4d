//! The shipped example, built into the binary: `fedsim run` with no scenario runs federated OLS on
//! the diabetes data over 3 local sites and holds it against statsmodels, from any directory and
//! from an installed binary that has no clone beside it.
//!
//! The files are written once into fedsim's cache, in the clone's layout (the scenario's data and
//! reference paths are relative to it), under a folder named by their hash, so a changed example
//! never meets stale files.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// The example's files, at their paths in the clone.
const FILES: [(&str, &[u8]); 3] = [
    (
        "resources/config_linreg.toml",
        include_bytes!("../../resources/config_linreg.toml"),
    ),
    (
        "test_data/diabetes.csv",
        include_bytes!("../../test_data/diabetes.csv"),
    ),
    (
        "test_data/reference.jsonl",
        include_bytes!("../../test_data/reference.jsonl"),
    ),
];

/// The example's scenario file, written into the cache if it is not there yet.
pub fn scenario() -> std::io::Result<PathBuf> {
    let mut hash = Sha256::new();
    for (name, bytes) in FILES {
        hash.update(name.as_bytes());
        hash.update(bytes);
    }
    let dir = crate::fleet::vm::image::cache_root()
        .join("example")
        .join(&hex::encode(hash.finalize())[..16]);
    for (name, bytes) in FILES {
        let path = dir.join(name);
        if std::fs::read(&path).is_ok_and(|b| b == bytes) {
            continue;
        }
        write_new(&path, bytes)?;
    }
    Ok(dir.join(FILES[0].0))
}

/// Write through a temporary file and a rename, so two first runs at once never read half a file.
fn write_new(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let parent = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent)?;
    let mut tmp = tempfile::NamedTempFile::new_in(parent)?;
    std::io::Write::write_all(&mut tmp, bytes)?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}
