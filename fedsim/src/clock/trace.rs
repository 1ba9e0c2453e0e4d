//! Availability traces: when each site was online, as a CSV of intervals, the cross-silo
//! counterpart of FedScale's device traces.
//!
//! ```text
//! site,online_from,online_until
//! site-1,2027-01-04T07:30:00Z,2027-01-04T17:00:00Z
//! site-2,0,36000
//! ```
//!
//! A time is RFC 3339, or a number of seconds after the study's start. Outside its intervals a
//! site is offline; one that has none is never online, so every site an entry with this trace
//! covers must have at least one.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};

use crate::scenario::parse_instant;

#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    #[error("cannot read availability trace {}: {source}", path.display())]
    Read { path: PathBuf, source: csv::Error },
    #[error("{}:{line}: {message}", path.display())]
    Line {
        path: PathBuf,
        line: u64,
        message: String,
    },
    #[error("availability trace {}: site {site:?} has no online interval, so it would never answer; give it at least one row", path.display())]
    Missing { path: PathBuf, site: String },
}

/// Each site's online intervals, sorted, in seconds after `start`.
pub type Intervals = BTreeMap<String, Vec<(f64, f64)>>;

/// Read a trace for `sites` (every other site in it is an error: a misspelt name would silently
/// leave a site offline).
pub fn load(path: &Path, sites: &[String], start: DateTime<Utc>) -> Result<Intervals, TraceError> {
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_path(path)
        .map_err(|source| TraceError::Read {
            path: path.to_path_buf(),
            source,
        })?;
    let bad = |line: u64, message: String| TraceError::Line {
        path: path.to_path_buf(),
        line,
        message,
    };
    let header = reader
        .headers()
        .map_err(|source| TraceError::Read {
            path: path.to_path_buf(),
            source,
        })?
        .clone();
    if header.iter().collect::<Vec<_>>() != ["site", "online_from", "online_until"] {
        return Err(bad(
            1,
            format!(
                "expected the header \"site,online_from,online_until\", found {:?}",
                header.iter().collect::<Vec<_>>().join(",")
            ),
        ));
    }
    let time = |text: &str| -> Result<f64, String> {
        if let Ok(secs) = text.parse::<f64>() {
            return if secs.is_finite() {
                Ok(secs)
            } else {
                Err(format!("expected a time, found {text:?}"))
            };
        }
        parse_instant(text)
            .map(|t| (t - start).num_milliseconds() as f64 / 1e3)
            .map_err(|e| format!("{e}, or a number of seconds after the study's start"))
    };
    let mut out: BTreeMap<String, Vec<(f64, f64, u64)>> = BTreeMap::new();
    for record in reader.records() {
        let record = record.map_err(|source| TraceError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let line = record.position().map_or(0, |p| p.line());
        let (Some(site), Some(from), Some(until)) = (record.get(0), record.get(1), record.get(2))
        else {
            return Err(bad(
                line,
                "expected three fields: site,online_from,online_until".into(),
            ));
        };
        if !sites.iter().any(|s| s == site) {
            let near = sites
                .iter()
                .min_by_key(|s| strsim::levenshtein(s, site))
                .filter(|s| strsim::levenshtein(s, site) <= 2);
            return Err(bad(
                line,
                format!(
                    "no site {site:?} in the scenario{}; sites are {}",
                    near.map_or(String::new(), |n| format!(" (did you mean {n:?}?)")),
                    crate::scenario::names_in_short(sites)
                ),
            ));
        }
        let from = time(from).map_err(|e| bad(line, format!("online_from: {e}")))?;
        let until = time(until).map_err(|e| bad(line, format!("online_until: {e}")))?;
        if until <= from {
            return Err(bad(line, "online_until must come after online_from".into()));
        }
        out.entry(site.to_string())
            .or_default()
            .push((from, until, line));
    }
    let mut intervals = Intervals::new();
    for (site, mut list) in out {
        list.sort_by(|a, b| a.0.total_cmp(&b.0));
        if let Some(w) = list.windows(2).find(|w| w[1].0 < w[0].1) {
            return Err(bad(
                w[1].2,
                format!(
                    "this interval of {site} overlaps the one on line {}; join them into one",
                    w[0].2
                ),
            ));
        }
        intervals.insert(site, list.into_iter().map(|(a, b, _)| (a, b)).collect());
    }
    Ok(intervals)
}

/// `load`, and every site in `covered` must have an interval.
pub fn load_for(
    path: &Path,
    sites: &[String],
    covered: &[String],
    start: DateTime<Utc>,
) -> Result<Intervals, TraceError> {
    let intervals = load(path, sites, start)?;
    if let Some(site) = covered.iter().find(|s| !intervals.contains_key(*s)) {
        return Err(TraceError::Missing {
            path: path.to_path_buf(),
            site: site.clone(),
        });
    }
    Ok(intervals)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sites() -> Vec<String> {
        vec!["site-1".into(), "site-2".into()]
    }

    fn start() -> DateTime<Utc> {
        "2027-01-04T08:00:00Z".parse().unwrap()
    }

    #[test]
    fn intervals_from_instants_or_seconds_and_located_errors() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.csv");
        std::fs::write(
            &p,
            "site,online_from,online_until\nsite-2,3600,7200\nsite-1,2027-01-04T09:00:00Z,2027-01-04T10:00:00+00:00\nsite-2,0,60\n",
        )
        .unwrap();
        let t = load(&p, &sites(), start()).unwrap();
        assert_eq!(t["site-1"], [(3600.0, 7200.0)]);
        assert_eq!(t["site-2"], [(0.0, 60.0), (3600.0, 7200.0)]);

        std::fs::write(
            &p,
            "site,online_from,online_until\nsite-1,0,100\nsite-1,50,200\n",
        )
        .unwrap();
        let e = load(&p, &sites(), start()).unwrap_err().to_string();
        assert!(
            e.ends_with(
                "t.csv:3: this interval of site-1 overlaps the one on line 2; join them into one"
            ),
            "{e}"
        );
        std::fs::write(&p, "site,online_from,online_until\nsite-3,0,100\n").unwrap();
        let e = load(&p, &sites(), start()).unwrap_err().to_string();
        assert!(
            e.contains("t.csv:2: no site \"site-3\" in the scenario (did you mean \"site-1\"?)"),
            "{e}"
        );
        std::fs::write(&p, "site,online_from,online_until\nsite-1,0,100\n").unwrap();
        let e = load_for(&p, &sites(), &sites(), start())
            .unwrap_err()
            .to_string();
        assert!(e.contains("site \"site-2\" has no online interval"), "{e}");
        std::fs::write(&p, "site,online_from,online_until\nsite-1,tomorrow,100\n").unwrap();
        let e = load(&p, &sites(), start()).unwrap_err().to_string();
        assert!(
            e.contains("t.csv:2: online_from: expected a date and time"),
            "{e}"
        );
    }
}
