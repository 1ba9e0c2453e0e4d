//! The site image: built once by `provision/vm_image.sh` (mmdebstrap, `mkfs.ext4 -d`: no loop
//! mounts) into a cache directory named after the recipe's hash, reused until the recipe changes.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::sys::proc::which;
use sha2::{Digest, Sha256};

use super::VmError;

/// The recipe, compiled in: its hash names the cache entry.
pub const RECIPE: &str = include_str!("../../../../provision/vm_image.sh");

/// fedsim's cache: `$FEDSIM_CACHE`, else `$XDG_CACHE_HOME/fedsim`, else `~/.cache/fedsim`. Images
/// and fleets that are up live here, outside any clone.
pub fn cache_root() -> PathBuf {
    if let Some(d) = std::env::var_os("FEDSIM_CACHE") {
        return PathBuf::from(d);
    }
    if let Some(d) = std::env::var_os("XDG_CACHE_HOME") {
        return PathBuf::from(d).join("fedsim");
    }
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/root"))
        .join(".cache/fedsim")
}

/// A built image: a raw ext4 root disk, the kernel and initrd to boot it directly, and the key
/// root logs in with.
#[derive(Debug, Clone)]
pub struct Image {
    pub dir: PathBuf,
    pub base: PathBuf,
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    pub key: PathBuf,
}

impl Image {
    /// Where the image of this recipe lives.
    pub fn dir() -> PathBuf {
        let hash = hex::encode(Sha256::digest(RECIPE.as_bytes()));
        cache_root()
            .join("vm")
            .join(format!("bookworm-{}", &hash[..16]))
    }

    fn at(dir: &Path) -> Image {
        Image {
            dir: dir.to_path_buf(),
            base: dir.join("base.raw"),
            kernel: dir.join("vmlinuz"),
            initrd: dir.join("initrd.img"),
            key: dir.join("id_ed25519"),
        }
    }

    /// The image, if it has been built completely.
    pub fn find() -> Option<Image> {
        let dir = Image::dir();
        dir.join("ready").exists().then(|| Image::at(&dir))
    }

    /// The image, built first if needed (about 40 s to 100 s, mostly downloading packages).
    pub fn ensure() -> Result<Image, VmError> {
        if let Some(i) = Image::find() {
            return Ok(i);
        }
        // Several fedsim processes may want it at once: one builds, the others wait and reuse.
        let _lock = BuildLock::take()?;
        match Image::find() {
            Some(i) => Ok(i),
            None => Image::build(),
        }
    }

    /// Build the image into a scratch directory next to its place, then move it there, so an
    /// interrupted build never looks finished.
    pub fn build() -> Result<Image, VmError> {
        let dir = Image::dir();
        let parent = dir.parent().expect("a cache path has a parent");
        std::fs::create_dir_all(parent).map_err(|e| VmError::Image {
            reason: format!("{}: {e}", parent.display()),
            log: None,
        })?;
        for tool in ["mmdebstrap", "mkfs.ext4", "ssh-keygen"] {
            if which(tool).is_none() {
                return Err(VmError::Image {
                    reason: format!(
                        "{tool} not found: install Debian's mmdebstrap, e2fsprogs and openssh-client"
                    ),
                    log: None,
                });
            }
        }
        let scratch = parent.join(format!(
            "{}.building-{}",
            dir.file_name().unwrap_or_default().to_string_lossy(),
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&scratch);
        std::fs::create_dir_all(&scratch).map_err(|e| VmError::Image {
            reason: format!("{}: {e}", scratch.display()),
            log: None,
        })?;
        let script = scratch.join("vm_image.sh");
        let log = parent.join("build.log");
        let io = |e: std::io::Error| VmError::Image {
            reason: e.to_string(),
            log: Some(log.clone()),
        };
        std::fs::write(&script, RECIPE).map_err(io)?;
        let out = std::fs::File::create(&log).map_err(io)?;
        let err = out.try_clone().map_err(io)?;
        let status = Command::new("sh")
            .arg(&script)
            .arg(&scratch)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .status()
            .map_err(io)?;
        if !status.success() {
            let _ = std::fs::remove_dir_all(&scratch);
            return Err(VmError::Image {
                reason: format!("the recipe failed ({status})"),
                log: Some(log),
            });
        }
        let _ = std::fs::remove_file(&script);
        std::fs::write(scratch.join("ready"), RECIPE).map_err(io)?;
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::rename(&scratch, &dir).map_err(io)?;
        Ok(Image::at(&dir))
    }
}

/// An exclusive lock on the image cache (flock), held while an image is built.
/// The lock lasts as long as the file is open.
struct BuildLock(#[allow(dead_code)] std::fs::File);

impl BuildLock {
    fn take() -> Result<BuildLock, VmError> {
        use std::os::fd::AsRawFd;
        let dir = cache_root().join("vm");
        let fail = |e: std::io::Error| VmError::Image {
            reason: format!("{}: {e}", dir.display()),
            log: None,
        };
        std::fs::create_dir_all(&dir).map_err(fail)?;
        let f = std::fs::File::create(dir.join("build.lock")).map_err(fail)?;
        // SAFETY: flock on a descriptor this function owns.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(fail(std::io::Error::last_os_error()));
        }
        Ok(BuildLock(f))
    }
}

/// The box recipe, compiled in: its hash (with the image's) names the packed box.
pub const BOX_RECIPE: &str = include_str!("../../../../provision/vm_box.sh");

/// `fedsim vm box`: the same image as a self-contained Vagrant box for libvirt, packed by
/// `provision/vm_box.sh` (a BIOS-bootable disk with the kernel inside, the key root logs in
/// with, and a Vagrantfile that names both by paths inside the box). Reused until the image or
/// the box recipe changes. Returns the `.box` file, for
/// `vagrant box add --name fedsim/bookworm FILE`.
pub fn pack_box(image: &Image) -> Result<PathBuf, VmError> {
    let hash = hex::encode(Sha256::digest(BOX_RECIPE.as_bytes()));
    let boxfile = image.dir.join(format!("fedsim-{}.box", &hash[..12]));
    if boxfile.is_file() {
        return Ok(boxfile);
    }
    for tool in ["mkfs.vfat", "mcopy", "syslinux", "sfdisk", "qemu-img"] {
        if which(tool).is_none() {
            return Err(VmError::Image {
                reason: format!(
                    "box: {tool} not found: install Debian's dosfstools, mtools, syslinux, syslinux-common, fdisk and qemu-utils"
                ),
                log: None,
            });
        }
    }
    let log = image.dir.join("box.log");
    let fail = |reason: String| VmError::Image {
        reason: format!("box: {reason}"),
        log: Some(log.clone()),
    };
    let script = image.dir.join("vm_box.sh");
    std::fs::write(&script, BOX_RECIPE).map_err(|e| fail(e.to_string()))?;
    let out = std::fs::File::create(&log).map_err(|e| fail(e.to_string()))?;
    let err = out.try_clone().map_err(|e| fail(e.to_string()))?;
    let status = Command::new("sh")
        .arg(&script)
        .arg(&image.dir)
        .arg(&boxfile)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .status()
        .map_err(|e| fail(e.to_string()))?;
    let _ = std::fs::remove_file(&script);
    if !status.success() {
        return Err(fail(format!("the box recipe failed ({status})")));
    }
    Ok(boxfile)
}
