//! A platform's Python packages for sites that have no package index: the controller downloads
//! binary wheels once per kind of site (Python version, machine, C library), pinned to the
//! versions its own platform runs (`pip freeze` as constraints), keeps them in its cache, and
//! ships them; a site installs them into a venv of its own with no network (`platform/nodes.rs`).

use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use super::PlatformError;

/// What a site runs Python on, as it reported it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Target {
    /// `3.11`
    pub python: String,
    /// `x86_64`, `aarch64`
    pub arch: String,
    /// glibc's minor version (`36` for 2.36): the newest manylinux the site can load.
    pub glibc_minor: u32,
}

impl Target {
    /// The site's answer to [`Target::PROBE`].
    pub fn read(out: &str) -> Result<Target, String> {
        let value = |key: &str| {
            out.lines()
                .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let python = value("PY").ok_or("no python3 on the site (Flower needs 3.10 or newer)")?;
        let minor: u32 = python
            .split('.')
            .nth(1)
            .and_then(|m| m.parse().ok())
            .ok_or_else(|| format!("python3 on the site says its version is {python:?}"))?;
        if !python.starts_with("3.") || minor < 10 {
            return Err(format!(
                "python3 on the site is {python}; Flower needs 3.10 or newer"
            ));
        }
        let glibc_minor = value("GLIBC")
            .and_then(|v| v.split('.').nth(1).and_then(|m| m.parse().ok()))
            .ok_or("the site's C library is not glibc (Flower's wheels need it)")?;
        Ok(Target {
            python,
            arch: value("ARCH").ok_or("the site did not say its machine")?,
            glibc_minor,
        })
    }

    /// What a site runs to say its [`Target`].
    pub const PROBE: &'static str = "command -v python3 >/dev/null && python3 -c 'import sys, platform; print(\"PY=%d.%d\" % sys.version_info[:2]); print(\"ARCH=\" + platform.machine())'; getconf GNU_LIBC_VERSION 2>/dev/null | sed 's/^glibc /GLIBC=/'; true";

    /// pip's words for it: `--python-version`, `--abi` and every `--platform` it can load.
    fn pip_args(&self) -> Vec<String> {
        let cp = format!("cp{}", self.python.replace('.', ""));
        let mut args: Vec<String> = vec![
            "--python-version".into(),
            self.python.clone(),
            "--implementation".into(),
            "cp".into(),
        ];
        for abi in [cp.as_str(), "abi3", "none"] {
            args.extend(["--abi".into(), abi.into()]);
        }
        let mut platforms: Vec<String> = (5..=self.glibc_minor)
            .map(|m| format!("manylinux_2_{m}_{}", self.arch))
            .collect();
        platforms.push(format!("manylinux2014_{}", self.arch));
        if self.arch == "x86_64" {
            platforms.push("manylinux2010_x86_64".into());
            platforms.push("manylinux1_x86_64".into());
        }
        platforms.push("any".into());
        for p in platforms {
            args.extend(["--platform".into(), p]);
        }
        args
    }
}

/// Wheels for one [`Target`], in the controller's cache.
#[derive(Debug, Clone)]
pub struct Wheelhouse {
    /// The wheel files, by name, with their bytes (read once, to digest them, and sent as read).
    pub wheels: Vec<(String, std::sync::Arc<[u8]>)>,
    /// A digest of every wheel (name and bytes): the site's venv is named for it, so a site
    /// that has it installed installs nothing.
    pub id: String,
    /// What to install from it.
    pub requirements: Vec<String>,
}

fn cache_root() -> PathBuf {
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir)
        .join("fedsim-wheels")
}

fn failed(reason: String) -> PlatformError {
    PlatformError::Start {
        what: "the sites' wheelhouse".into(),
        reason,
    }
}

/// The wheelhouse for `target` holding `requirements` and what they need, downloaded by
/// `python`'s pip unless the cache has it; pinned to what `python` has installed.
pub fn ensure(
    python: &Path,
    target: &Target,
    requirements: &[String],
) -> Result<Wheelhouse, PlatformError> {
    let frozen = Command::new(python)
        .args(["-m", "pip", "freeze", "--exclude-editable"])
        .output()
        .map_err(|e| failed(format!("{}: {e}", python.display())))?;
    if !frozen.status.success() {
        return Err(failed(format!(
            "{} -m pip freeze: {}",
            python.display(),
            String::from_utf8_lossy(&frozen.stderr).trim()
        )));
    }
    // Only pins (`name==version`): a line naming a local file or URL cannot constrain.
    let constraints: String = String::from_utf8_lossy(&frozen.stdout)
        .lines()
        .filter(|l| l.contains("==") && !l.contains(" @ "))
        .map(|l| format!("{l}\n"))
        .collect();
    let key = {
        let mut h = Sha256::new();
        for part in [
            target.python.as_str(),
            target.arch.as_str(),
            &target.glibc_minor.to_string(),
            &requirements.join("\n"),
            &constraints,
        ] {
            h.update(part.as_bytes());
            h.update([0]);
        }
        hex::encode(h.finalize())[..16].to_string()
    };
    let dir = cache_root().join(format!("py{}-{}-{key}", target.python, target.arch));
    if !dir.join("complete").is_file() {
        download(python, target, requirements, &constraints, &dir)?;
    }
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .map_err(|e| failed(format!("{}: {e}", dir.display())))?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".whl"))
        .collect();
    names.sort();
    if !names.iter().any(|w| w.starts_with("pip-")) {
        return Err(failed(format!("{} holds no pip wheel", dir.display())));
    }
    let mut h = Sha256::new();
    let mut wheels = Vec::with_capacity(names.len());
    for w in names {
        let bytes = std::fs::read(dir.join(&w)).map_err(|e| failed(format!("{w}: {e}")))?;
        h.update(w.as_bytes());
        h.update(Sha256::digest(&bytes));
        wheels.push((w, bytes.into()));
    }
    Ok(Wheelhouse {
        id: hex::encode(h.finalize())[..16].to_string(),
        wheels,
        requirements: requirements.to_vec(),
    })
}

/// `pip download` into a fresh folder, renamed into place once complete.
fn download(
    python: &Path,
    target: &Target,
    requirements: &[String],
    constraints: &str,
    dir: &Path,
) -> Result<(), PlatformError> {
    let part = dir.with_extension(format!("part-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&part);
    std::fs::create_dir_all(&part).map_err(|e| failed(format!("{}: {e}", part.display())))?;
    let pins = part.join("constraints.txt");
    std::fs::write(&pins, constraints).map_err(|e| failed(format!("{}: {e}", pins.display())))?;
    tracing::info!(phase = "provision", python = %target.python, arch = %target.arch, requirements = ?requirements, "downloading the sites' Python wheels (once, kept in the cache)");
    let mut cmd = Command::new(python);
    cmd.args([
        "-m",
        "pip",
        "download",
        "--quiet",
        "--disable-pip-version-check",
    ])
    .arg("--dest")
    .arg(&part)
    .args(["--only-binary=:all:", "--constraint"])
    .arg(&pins)
    .args(target.pip_args())
    .args(requirements)
    // The site's installer: pip itself, run from its wheel.
    .arg("pip");
    crate::sys::children::die_with_parent(&mut cmd);
    let out = cmd
        .output()
        .map_err(|e| failed(format!("{}: {e}", python.display())))?;
    if !out.status.success() {
        let _ = std::fs::remove_dir_all(&part);
        let err = String::from_utf8_lossy(&out.stderr);
        let said: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
        return Err(failed(format!(
            "pip download for Python {} on {} failed: {}",
            target.python,
            target.arch,
            said[said.len().saturating_sub(3)..].join(" | ")
        )));
    }
    std::fs::write(part.join("complete"), b"")
        .map_err(|e| failed(format!("{}: {e}", part.display())))?;
    let _ = std::fs::remove_dir_all(dir);
    std::fs::rename(&part, dir).map_err(|e| failed(format!("{}: {e}", dir.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_site_says_what_it_runs_and_an_old_or_missing_python_is_named() {
        let t = Target::read("PY=3.11\nARCH=x86_64\nGLIBC=2.36\n").unwrap();
        assert_eq!((t.python.as_str(), t.glibc_minor), ("3.11", 36));
        let args = t.pip_args().join(" ");
        assert!(args.contains("--platform manylinux_2_36_x86_64"), "{args}");
        assert!(!args.contains("manylinux_2_37"), "{args}");
        assert!(args.contains("--abi cp311"), "{args}");
        let e = Target::read("GLIBC=2.36\n").unwrap_err();
        assert!(e.contains("no python3"), "{e}");
        let e = Target::read("PY=3.9\nARCH=x86_64\nGLIBC=2.31\n").unwrap_err();
        assert!(e.contains("3.10 or newer"), "{e}");
        let e = Target::read("PY=3.12\nARCH=x86_64\n").unwrap_err();
        assert!(e.contains("glibc"), "{e}");
    }
}
