//! What a site receives: its bundle (its share of the data, its own `.env`, an external
//! algorithm's files), made in memory from the plan and written only where the site runs. The
//! controller keeps no site's secrets once the bundle is installed.

pub mod env;

use std::fs;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::algorithms::AlgorithmConfig;
use crate::auth::{self, FrameKey};
use crate::data::DataError;
use crate::plan::Study;
use crate::portal::{Account, Role};
pub use env::GivenCredentials;
use env::SiteEnv;

/// A site's bundle as the controller holds it until the fleet installs it on the site. Then
/// `files` is dropped, and the controller keeps only the key derived from the token.
pub struct Bundle {
    pub name: String,
    pub rows: usize,
    pub data_sha256: String,
    pub key: FrameKey,
    /// Each analysis as this site runs it (its own columns, for a vertical split), in order.
    pub configs: Vec<AlgorithmConfig>,
    /// The site's portal account (name and password verifier).
    pub portal: Account,
    pub files: Option<BundleFiles>,
}

/// What goes onto the site: its data and its `.env`.
pub struct BundleFiles {
    pub data_name: String,
    pub data: Vec<u8>,
    pub env: String,
    /// An external algorithm's files, by their path relative to the site's directory.
    pub extra: Vec<(String, Vec<u8>)>,
}

#[derive(Debug, thiserror::Error)]
pub enum PrepError {
    #[error("cannot write {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Data(#[from] DataError),
    #[error("site {site}: credentials file {}: {reason}", path.display())]
    Credentials {
        site: String,
        path: PathBuf,
        reason: String,
    },
}

fn io_at(path: &Path) -> impl Fn(std::io::Error) -> PrepError + '_ {
    move |source| PrepError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// What a remote site's `.env` says of the coordinator: it is given to the agent when it starts
/// (an address, or a tunnel's port on the site), so a bundle stays valid from one run to the next.
pub const COORDINATOR_AT_START: &str = "given-at-start";

/// A site's given `.env` file, read: its token (and portal password, if any). Values are never
/// echoed in an error.
pub fn token_from_env_file(site: &str, path: &Path) -> Result<GivenCredentials, PrepError> {
    let text = std::fs::read_to_string(path).map_err(|e| PrepError::Credentials {
        site: site.into(),
        path: path.into(),
        reason: e.to_string(),
    })?;
    credentials_from_env_text(site, path, &text)
}

/// The same, from a `.env`'s text (`path` names it in errors: a file, or a site's copy).
pub fn credentials_from_env_text(
    site: &str,
    path: &Path,
    text: &str,
) -> Result<GivenCredentials, PrepError> {
    GivenCredentials::parse(text).map_err(|e| PrepError::Credentials {
        site: site.into(),
        path: path.into(),
        reason: e.to_string(),
    })
}

/// Make every site's bundle in memory: its share of the data, and a `.env` with its token and
/// portal password (`given[i]`, or fresh random ones) and, with `secure`, its pairwise mask seeds.
/// The bundle keeps the portal password's verifier, not the password.
pub fn make_bundles(
    study: &Study,
    coordinator: &str,
    given: &[Option<GivenCredentials>],
    secure: bool,
    privacy: &crate::scenario::PrivacySpec,
    speeds: &[(String, f64)],
) -> Result<Vec<Bundle>, PrepError> {
    let names: Vec<String> = study.sites().iter().map(|s| s.name.clone()).collect();
    // Secure aggregation: each pair's seed goes into the two sites' own .env files, nowhere else.
    let seeds = secure.then(|| crate::federation::secagg::pair_seeds(&names));
    // An external algorithm's files go to every site (each file once, whichever analyses use it).
    let mut extra: Vec<(String, Vec<u8>)> = Vec::new();
    for spec in study.analyses.iter().filter_map(|p| p.config.external()) {
        for f in &spec.files {
            if extra.iter().any(|(name, _)| name == f) {
                continue;
            }
            let path = spec.workdir.join(f);
            let bytes = std::fs::read(&path).map_err(|e| PrepError::Io { path, source: e })?;
            extra.push((f.clone(), bytes));
        }
    }
    let first = study.first();
    study
        .sites()
        .iter()
        .enumerate()
        .map(|(i, site)| {
            crate::sys::cancel::check().map_err(|_| DataError::Cancelled)?;
            let data_name = format!("data.{}", study.format);
            // The site's share is made, written and let go: only its file's bytes stay.
            let data = study
                .site_frame(site)?
                .into_bytes(study.format, &first.data_path)?;
            let given = given.get(i).cloned().flatten();
            let token = given
                .as_ref()
                .map(|g| g.token.clone())
                .unwrap_or_else(auth::new_token);
            // A password someone chose gets argon2; one fedsim made is random enough for SHA-256.
            let generated = given.as_ref().is_some_and(|g| g.generated);
            let (password, portal) = match given.and_then(|g| g.portal_password) {
                Some(p) if generated => {
                    let account = Account::generated(&site.name, Role::Participant, &p);
                    (p, account)
                }
                Some(p) => {
                    let account = Account::new(&site.name, Role::Participant, &p);
                    (p, account)
                }
                None => {
                    let p = auth::new_password();
                    let account = Account::generated(&site.name, Role::Participant, &p);
                    (p, account)
                }
            };
            let env = SiteEnv {
                site: site.name.clone(),
                token: token.clone(),
                coordinator: coordinator.to_string(),
                data: data_name.clone(),
                portal_password: password,
                pair_seeds: seeds.as_ref().map(|s| s[i].clone()),
                rules: crate::disclosure::encode(&privacy.rules_of(&site.name)),
                dp: privacy
                    .dp
                    .as_ref()
                    .map(crate::dp::encode)
                    .unwrap_or_default(),
                speed: speeds.iter().find(|(n, _)| *n == site.name).map(|x| x.1),
            }
            .to_text();
            Ok(Bundle {
                name: site.name.clone(),
                rows: site.rows(first),
                configs: study.analyses.iter().map(|p| site.config(p)).collect(),
                data_sha256: hex::encode(Sha256::digest(&data)),
                key: auth::frame_key(&token),
                portal,
                files: Some(BundleFiles {
                    data_name,
                    data,
                    env,
                    extra: extra.clone(),
                }),
            })
        })
        .collect()
}

/// Write a bundle's files into `dir` (created, mode 700): the data, and `.env` created with mode 600.
pub fn write_files(files: &BundleFiles, dir: &Path) -> Result<(), PrepError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io_at(dir))?;
    // Whole or not at all: a full disk leaves no truncated data file behind.
    let data_path = dir.join(&files.data_name);
    crate::sys::fsio::write_with_mode(&data_path, &files.data, Some(0o600))
        .map_err(io_at(&data_path))?;
    for (name, bytes) in &files.extra {
        let path = dir.join(name);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).map_err(io_at(parent))?;
        }
        crate::sys::fsio::write_atomic(&path, bytes).map_err(io_at(&path))?;
    }
    let env_path = SiteEnv::path(dir);
    write_private(&env_path, &files.env).map_err(io_at(&env_path))
}

/// Create `path` (it must not exist) with mode 600 from the start, and write `text`: the way
/// every credentials file is written, so none is ever readable by others, even briefly, and none
/// is ever half written.
pub fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    if path.exists() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::AlreadyExists,
            "a credentials file is there already",
        ));
    }
    crate::sys::fsio::write_with_mode(path, text.as_bytes(), Some(0o600))
}
