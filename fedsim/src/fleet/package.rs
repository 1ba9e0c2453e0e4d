//! The agent as it travels to a site: the site binary (`fedsim-agent`, or fedsim itself where it
//! was not installed beside it), stripped where `strip` is available and gzip-compressed. Named by its content hash, so an install is skipped when the site already has
//! it. Packages are cached per binary (path, size, mtime), since stripping and compressing a
//! large binary takes seconds.

use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

/// The binary the sites run, for a controller at `exe`: the slim `fedsim-agent` beside it (built
/// and installed with it), else `exe` itself, which has the same site commands.
pub fn site_binary(exe: PathBuf) -> PathBuf {
    let slim = exe.with_file_name(SITE_BINARY);
    if slim.is_file() {
        slim
    } else {
        exe
    }
}

/// The slim site binary's file name.
pub const SITE_BINARY: &str = "fedsim-agent";

pub struct AgentPackage {
    /// `fedsim-<first 12 hex digits of the shipped binary's sha256>`
    pub name: String,
    /// The whole SHA-256 of the binary as it lands on the site (hex): checked there before
    /// every run, not its file name or `--version`, which anything could claim.
    pub sha256: String,
    pub gz: Vec<u8>,
}

fn cache_dir() -> PathBuf {
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir)
        .join("fedsim/agents")
}

impl AgentPackage {
    pub fn build(exe: &Path) -> std::io::Result<AgentPackage> {
        let meta = std::fs::metadata(exe)?;
        let mtime = meta
            .modified()?
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let key = hex::encode(Sha256::digest(format!(
            "{}|{}|{mtime}",
            exe.display(),
            meta.len()
        )));
        let dir = cache_dir();
        let (gz_path, name_path) = (
            dir.join(format!("{}.gz", &key[..16])),
            dir.join(format!("{}.name", &key[..16])),
        );
        if let (Ok(gz), Ok(name)) = (std::fs::read(&gz_path), std::fs::read_to_string(&name_path)) {
            if let Some((name, sha256)) = name.trim().split_once(' ') {
                return Ok(AgentPackage {
                    name: name.to_string(),
                    sha256: sha256.to_string(),
                    gz,
                });
            }
        }
        let tmp = tempfile::tempdir()?;
        let stripped = tmp.path().join("fedsim");
        let ok = Command::new("strip")
            .arg("-o")
            .arg(&stripped)
            .arg(exe)
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        let binary = std::fs::read(if ok { stripped.as_path() } else { exe })?;
        let hash = hex::encode(Sha256::digest(&binary));
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut enc, &binary)?;
        let package = AgentPackage {
            name: format!("fedsim-{}", &hash[..12]),
            sha256: hash.clone(),
            gz: enc.finish()?,
        };
        // The cache is an optimisation: failing to write it is not an error.
        if std::fs::create_dir_all(&dir).is_ok() {
            let part = dir.join(format!("{}.{}.part", &key[..16], std::process::id()));
            if std::fs::write(&part, &package.gz).is_ok()
                && std::fs::rename(&part, &gz_path).is_ok()
            {
                let _ = std::fs::write(&name_path, format!("{} {}", package.name, package.sha256));
            }
        }
        Ok(package)
    }
}
