//! The `.env` files fedsim writes: a site's credentials (its token, where the coordinator is,
//! its data file, its portal login and, with secure aggregation, its pair seeds) and the
//! coordinator's portal login. This module is their only writer and their only parser; the
//! agent, prep, the participants, `check` and the VM fleet all read through it. Values never
//! appear in an error.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::federation::secagg::{self, PairSeeds};

/// The file's name in a site's folder.
pub const FILE: &str = ".env";
pub const SITE: &str = "FEDSIM_SITE";
pub const TOKEN: &str = "FEDSIM_TOKEN";
pub const COORDINATOR: &str = "FEDSIM_COORDINATOR";
pub const DATA: &str = "FEDSIM_DATA";
pub const PAIR_SEEDS: &str = "FEDSIM_PAIR_SEEDS";
/// The site's disclosure rules (`min_cell=5,...`; see `disclosure::encode`).
pub const RULES: &str = "FEDSIM_RULES";
/// The site's differential privacy (`[privacy.dp]` as JSON; see `dp::encode`).
pub const DP: &str = "FEDSIM_DP";
/// The site's server speed against the machine (`[[availability]] speed`, real clock only).
pub const SPEED: &str = "FEDSIM_SPEED";
/// An account's portal user name.
pub const PORTAL_USER: &str = "FEDSIM_PORTAL_USER";
/// An account's portal password.
pub const PORTAL_PASSWORD: &str = "FEDSIM_PORTAL_PASSWORD";

/// The shortest token and portal password a given `.env` may hold.
const MIN_TOKEN: usize = 32;
const MIN_PASSWORD: usize = 12;

/// Why a `.env` cannot be used (never with a value in it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvError {
    #[error("{0}")]
    Read(String),
    #[error("malformed line")]
    Malformed,
    #[error("no {0}")]
    Missing(&'static str),
    #[error("{var} is shorter than {min} characters")]
    TooShort { var: &'static str, min: usize },
    #[error("{0} is malformed")]
    Invalid(&'static str),
}

/// Everything a site's `.env` holds.
#[derive(Clone)]
pub struct SiteEnv {
    pub site: String,
    pub token: String,
    /// An address, or [`super::COORDINATOR_AT_START`] for sites told it when they start.
    pub coordinator: String,
    /// The data file, relative to the site's folder.
    pub data: String,
    pub portal_password: String,
    /// Seeds shared with each other site (secure aggregation only).
    pub pair_seeds: Option<PairSeeds>,
    /// The site's own disclosure rules, as the site's server holds them (empty: none).
    pub rules: String,
    /// The site's differential privacy, as `dp::encode` writes it (empty: none).
    pub dp: String,
    /// A slower (or faster) server: its agent stretches its computing by 1 / speed.
    pub speed: Option<f64>,
}

impl std::fmt::Debug for SiteEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SiteEnv")
            .field("site", &self.site)
            .field("coordinator", &self.coordinator)
            .field("data", &self.data)
            .finish_non_exhaustive()
    }
}

impl SiteEnv {
    /// Where a site's `.env` is in its folder.
    pub fn path(dir: &Path) -> PathBuf {
        dir.join(FILE)
    }

    /// The file's text, as written onto the site.
    pub fn to_text(&self) -> String {
        let mut text = format!(
            "# fedsim site credentials: this site's only. Do not share.\n\
             {SITE}={}\n{TOKEN}={}\n{COORDINATOR}={}\n{DATA}={}\n{PORTAL_USER}={}\n{PORTAL_PASSWORD}={}\n",
            self.site, self.token, self.coordinator, self.data, self.site, self.portal_password,
        );
        if let Some(seeds) = &self.pair_seeds {
            text.push_str(&format!("{PAIR_SEEDS}={}\n", secagg::encode_seeds(seeds)));
        }
        if !self.rules.is_empty() {
            text.push_str(&format!("{RULES}={}\n", self.rules));
        }
        if !self.dp.is_empty() {
            text.push_str(&format!("{DP}={}\n", self.dp));
        }
        if let Some(speed) = self.speed {
            text.push_str(&format!("{SPEED}={speed}\n"));
        }
        text
    }

    /// Parse a whole site `.env`: every variable the agent needs must be there.
    pub fn parse(text: &str) -> Result<SiteEnv, EnvError> {
        let mut vars = vars(text)?;
        let mut take = |k: &'static str| vars.remove(k).ok_or(EnvError::Missing(k));
        let (site, token, coordinator, data) =
            (take(SITE)?, take(TOKEN)?, take(COORDINATOR)?, take(DATA)?);
        let portal_password = vars.remove(PORTAL_PASSWORD).unwrap_or_default();
        let pair_seeds = match vars.remove(PAIR_SEEDS) {
            Some(v) => Some(secagg::decode_seeds(&v).ok_or(EnvError::Invalid(PAIR_SEEDS))?),
            None => None,
        };
        let rules = vars.remove(RULES).unwrap_or_default();
        let dp = vars.remove(DP).unwrap_or_default();
        let speed = match vars.remove(SPEED) {
            Some(v) => Some(
                v.parse::<f64>()
                    .ok()
                    .filter(|s| s.is_finite() && *s > 0.0)
                    .ok_or(EnvError::Invalid(SPEED))?,
            ),
            None => None,
        };
        Ok(SiteEnv {
            site,
            token,
            coordinator,
            data,
            portal_password,
            pair_seeds,
            rules,
            dp,
            speed,
        })
    }

    /// Read `DIR/.env`.
    pub fn load(dir: &Path) -> Result<SiteEnv, EnvError> {
        let text =
            std::fs::read_to_string(Self::path(dir)).map_err(|e| EnvError::Read(e.to_string()))?;
        SiteEnv::parse(&text)
    }
}

/// Every variable of a `.env`'s text (comments and blank lines skipped).
pub fn vars(text: &str) -> Result<BTreeMap<String, String>, EnvError> {
    dotenvy::from_read_iter(text.as_bytes())
        .map(|item| item.map_err(|_| EnvError::Malformed))
        .collect()
}

/// The coordinator's `controller.env`: its portal login, nothing else.
pub fn controller_text(user: &str, password: &str) -> String {
    format!(
        "# fedsim controller: the coordinator's portal account. Do not share.\n\
         {PORTAL_USER}={user}\n{PORTAL_PASSWORD}={password}\n"
    )
}

/// Credentials a site brings in a `.env` it was given (provider ssh, `env = ...`, or what an
/// earlier `fedsim prep` left on a VM).
#[derive(Clone, Default)]
pub struct GivenCredentials {
    pub token: String,
    /// Its portal password, if the file has one (else a fresh one is made).
    pub portal_password: Option<String>,
    /// fedsim made these (an earlier `fedsim prep`): the password is random, not chosen.
    pub generated: bool,
}

impl GivenCredentials {
    /// The token (at least 32 characters) and the portal password (at least 12), if any.
    pub fn parse(text: &str) -> Result<GivenCredentials, EnvError> {
        let vars = vars(text)?;
        let token = vars.get(TOKEN).ok_or(EnvError::Missing(TOKEN))?;
        if token.len() < MIN_TOKEN {
            return Err(EnvError::TooShort {
                var: TOKEN,
                min: MIN_TOKEN,
            });
        }
        let portal_password = match vars.get(PORTAL_PASSWORD) {
            Some(p) if p.len() < MIN_PASSWORD => {
                return Err(EnvError::TooShort {
                    var: PORTAL_PASSWORD,
                    min: MIN_PASSWORD,
                })
            }
            p => p.cloned(),
        };
        Ok(GivenCredentials {
            token: token.clone(),
            portal_password,
            generated: false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn site() -> SiteEnv {
        SiteEnv {
            site: "site-1".into(),
            token: "t".repeat(43),
            coordinator: "127.0.0.1:7000".into(),
            data: "data.parquet".into(),
            portal_password: "p".repeat(20),
            pair_seeds: None,
            rules: String::new(),
            dp: String::new(),
            speed: None,
        }
    }

    /// What the writer writes, the parser reads back; the given-credentials view sees the same.
    #[test]
    fn a_written_env_reads_back_whole() {
        let text = site().to_text();
        let back = SiteEnv::parse(&text).unwrap();
        assert_eq!(back.site, "site-1");
        assert_eq!(back.token, site().token);
        assert_eq!(back.coordinator, "127.0.0.1:7000");
        assert_eq!(back.data, "data.parquet");
        assert_eq!(back.portal_password, site().portal_password);
        assert_eq!(vars(&text).unwrap()[PORTAL_USER], "site-1");
        let given = GivenCredentials::parse(&text).unwrap();
        assert_eq!(given.token, site().token);
        assert_eq!(given.portal_password, Some(site().portal_password));
    }

    /// A missing or short value is named, and no value appears in the error.
    #[test]
    fn errors_name_the_variable_not_the_value() {
        let short = site().to_text().replace(&site().token, "abc");
        let e = GivenCredentials::parse(&short)
            .err()
            .expect("refused")
            .to_string();
        assert_eq!(e, "FEDSIM_TOKEN is shorter than 32 characters");
        let e = SiteEnv::parse("FEDSIM_SITE=x\n").unwrap_err().to_string();
        assert_eq!(e, "no FEDSIM_TOKEN");
        let e = SiteEnv::parse(&format!("{}FEDSIM_PAIR_SEEDS=zz\n", site().to_text()))
            .unwrap_err()
            .to_string();
        assert_eq!(e, "FEDSIM_PAIR_SEEDS is malformed");
    }
}
