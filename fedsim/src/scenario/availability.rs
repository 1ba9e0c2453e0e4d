//! `[[availability]]`: when each site can answer. Its office hours in its own time zone, its
//! maintenance windows, a trace of when it was online, the human approval it waits for, and how
//! fast its server is. Entries select their sites like `[[links]]` and apply in order, so one
//! entry can cover 1000 sites and a later one can change one of them.
//!
//! Only a simulated clock can wait days for office hours, so everything but `speed` needs
//! `[clock] mode = "simulated"`. On the real clock a site's `speed` stretches its agent's
//! computing (on every provider: a CPU quota would need cgroup v2, which machines of this
//! project's kind do not have); on the simulated clock the projection divides by it.

use std::path::PathBuf;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use super::links::{check_selector, covers, seconds, Sites};
use super::{parse_instant, Locate, Scenario, ScenarioError};

/// A maintenance window: from `at` (RFC 3339) for `for` (`"4h"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Window {
    pub at: String,
    #[serde(rename = "for")]
    pub lasts: String,
}

/// `approval = { median = "4h", p90 = "2d" }`: a data steward's delay, log-normal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovalSpec {
    pub median: String,
    pub p90: String,
    /// Each analysis waits for its own approval, not only the site's joining.
    #[serde(default)]
    pub each_analysis: bool,
}

/// One `[[availability]]` entry.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AvailabilitySpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sites: Option<Sites>,
    /// An IANA time zone (`Europe/Berlin`) for `hours` and `days`; UTC if not given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    /// `"08:00-18:00"` (`"22:00-06:00"` runs past midnight).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hours: Option<String>,
    /// `"Mon-Fri"`, `"Mon,Wed,Fri"`, `"Sat-Sun"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub days: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub maintenance: Vec<Window>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<ApprovalSpec>,
    /// The server's speed against the machine the run measured on (0.25: four times slower).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub speed: Option<f64>,
    /// A CSV of online intervals (`site,online_from,online_until`), see `clock::trace`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace: Option<PathBuf>,
}

/// A human delay, in seconds: log-normal with this median and 90th percentile.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Approval {
    pub median_secs: f64,
    pub p90_secs: f64,
    pub each_analysis: bool,
}

/// A site's availability as every entry that covers it makes it.
#[derive(Debug, Clone, PartialEq)]
pub struct SiteAvailability {
    pub timezone: Tz,
    /// Minutes after local midnight: (from, until); until <= from runs past midnight.
    pub hours: Option<(u32, u32)>,
    /// Monday first.
    pub days: [bool; 7],
    pub maintenance: Vec<(DateTime<Utc>, DateTime<Utc>)>,
    pub approval: Option<Approval>,
    pub speed: f64,
    pub trace: Option<PathBuf>,
}

impl Default for SiteAvailability {
    fn default() -> Self {
        SiteAvailability {
            timezone: Tz::UTC,
            hours: None,
            days: [true; 7],
            maintenance: Vec::new(),
            approval: None,
            speed: 1.0,
            trace: None,
        }
    }
}

impl SiteAvailability {
    /// `entries` applied in order to one site (None: no entry covers it).
    pub fn of(entries: &[AvailabilitySpec], site: &str) -> Option<SiteAvailability> {
        let mut out: Option<SiteAvailability> = None;
        for e in entries.iter().filter(|e| covers(&e.site, &e.sites, site)) {
            let a = out.get_or_insert_with(SiteAvailability::default);
            if let Some(tz) = e.timezone.as_deref().and_then(|t| Tz::from_str(t).ok()) {
                a.timezone = tz;
            }
            if let Some(h) = e.hours.as_deref().and_then(|h| hours(h).ok()) {
                a.hours = Some(h);
            }
            if let Some(d) = e.days.as_deref().and_then(|d| days(d).ok()) {
                a.days = d;
            }
            for w in &e.maintenance {
                if let (Ok(at), Ok(lasts)) = (parse_instant(&w.at), seconds(&w.lasts)) {
                    a.maintenance.push((
                        at,
                        at + chrono::Duration::milliseconds((lasts * 1e3) as i64),
                    ));
                }
            }
            if let Some(p) = &e.approval {
                if let (Ok(median_secs), Ok(p90_secs)) = (seconds(&p.median), seconds(&p.p90)) {
                    a.approval = Some(Approval {
                        median_secs,
                        p90_secs,
                        each_analysis: p.each_analysis,
                    });
                }
            }
            a.speed = e.speed.unwrap_or(a.speed);
            if e.trace.is_some() {
                a.trace = e.trace.clone();
            }
        }
        if let Some(a) = &mut out {
            a.maintenance.sort();
        }
        out
    }

    /// For people: `Europe/Berlin 08:00-18:00 Mon-Fri, approval 4h (p90 2d), speed 0.25`.
    pub fn describe(&self) -> String {
        let hm = |m: u32| format!("{:02}:{:02}", m / 60, m % 60);
        let mut when = vec![self.timezone.name().to_string()];
        if let Some((a, b)) = self.hours {
            when.push(format!("{}-{}", hm(a), hm(b)));
        }
        if self.days != [true; 7] {
            let names = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
            // Runs of days as ranges: Mon-Fri, Sat.
            let mut runs: Vec<(usize, usize)> = Vec::new();
            for d in (0..7).filter(|d| self.days[*d]) {
                match runs.last_mut() {
                    Some((_, end)) if *end + 1 == d => *end = d,
                    _ => runs.push((d, d)),
                }
            }
            let runs: Vec<String> = runs
                .iter()
                .map(|(a, b)| match b - a {
                    0 => names[*a].to_string(),
                    _ => format!("{}-{}", names[*a], names[*b]),
                })
                .collect();
            when.push(runs.join(","));
        }
        let mut a = vec![when.join(" ")];
        if let Some(p) = self.approval {
            let span = |s: f64| {
                humantime::format_duration(std::time::Duration::from_secs(s as u64)).to_string()
            };
            a.push(format!(
                "approval {} (p90 {}){}",
                span(p.median_secs),
                span(p.p90_secs),
                if p.each_analysis {
                    " before each analysis"
                } else {
                    ""
                }
            ));
        }
        if self.speed != 1.0 {
            a.push(format!("speed {}", self.speed));
        }
        match self.maintenance.len() {
            0 => {}
            1 => a.push("1 maintenance window".into()),
            n => a.push(format!("{n} maintenance windows")),
        }
        if let Some(t) = &self.trace {
            a.push(format!("trace {}", t.display()));
        }
        a.join(", ")
    }
}

impl Scenario {
    /// When `site` can answer, if any entry covers it.
    pub fn availability_of(&self, site: &str) -> Option<SiteAvailability> {
        SiteAvailability::of(&self.availability, site)
    }
}

/// `"08:00-18:00"` as minutes after midnight.
pub fn hours(text: &str) -> Result<(u32, u32), String> {
    let clock = |t: &str| -> Option<u32> {
        let (h, m) = t.trim().split_once(':')?;
        let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
        (h <= 24 && m < 60 && h * 60 + m <= 24 * 60).then_some(h * 60 + m)
    };
    let bad = || {
        format!("expected office hours like \"08:00-18:00\" (24-hour clock, \"22:00-06:00\" runs past midnight), found {text:?}")
    };
    let (a, b) = text.split_once('-').ok_or_else(bad)?;
    let (a, b) = (clock(a).ok_or_else(bad)?, clock(b).ok_or_else(bad)?);
    if a == b {
        return Err(format!("hours {text:?} open and close at the same time; leave `hours` out for a site that is always up"));
    }
    Ok((a, b))
}

const DAYS: [&str; 7] = [
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
];

/// `"Mon-Fri"`, `"Mon,Wed,Fri"`, `"Fri-Mon"` as a flag per weekday, Monday first.
pub fn days(text: &str) -> Result<[bool; 7], String> {
    let day = |d: &str| {
        let d = d.trim().to_ascii_lowercase();
        DAYS.iter()
            .position(|x| *x == d || (d.len() == 3 && x.starts_with(&d)))
            .ok_or_else(|| {
                format!("expected days like \"Mon-Fri\" or \"Mon,Wed,Fri\", found {text:?} ({d:?} is not a day)")
            })
    };
    let mut out = [false; 7];
    for part in text.split(',') {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (day(a)?, day(b)?);
                let mut d = a;
                loop {
                    out[d] = true;
                    if d == b {
                        break;
                    }
                    d = (d + 1) % 7;
                }
            }
            None => out[day(part)?] = true,
        }
    }
    Ok(out)
}

/// A time zone by its IANA name, or the nearest names.
fn timezone(name: &str) -> Result<Tz, String> {
    Tz::from_str(name).map_err(|_| {
        let lower = name.to_ascii_lowercase();
        let near = chrono_tz::TZ_VARIANTS
            .iter()
            .map(|t| t.name())
            .min_by_key(|t| strsim::levenshtein(&t.to_ascii_lowercase(), &lower))
            .filter(|t| strsim::levenshtein(&t.to_ascii_lowercase(), &lower) <= 4);
        format!(
            "no time zone {name:?}{}; expected an IANA name like \"Europe/Berlin\" or \"America/New_York\"",
            near.map_or(String::new(), |n| format!(" (did you mean {n:?}?)"))
        )
    })
}

pub(super) fn validate(s: &Scenario, at: &Locate) -> Result<(), ScenarioError> {
    let names = s.site_names();
    for (i, e) in s.availability.iter().enumerate() {
        let key = |k: &str| format!("availability.{i}.{k}");
        check_selector("availability", i, &e.site, &e.sites, &names, at)?;
        if let Some(t) = &e.timezone {
            timezone(t).map_err(|m| at(&key("timezone"), m))?;
        }
        if let Some(h) = &e.hours {
            hours(h).map_err(|m| at(&key("hours"), m))?;
        }
        if let Some(d) = &e.days {
            days(d).map_err(|m| at(&key("days"), m))?;
        }
        let mut windows = Vec::new();
        for (j, w) in e.maintenance.iter().enumerate() {
            let from =
                parse_instant(&w.at).map_err(|m| at(&key(&format!("maintenance.{j}.at")), m))?;
            let lasts =
                seconds(&w.lasts).map_err(|m| at(&key(&format!("maintenance.{j}.for")), m))?;
            if lasts <= 0.0 {
                return Err(at(
                    &key(&format!("maintenance.{j}.for")),
                    "a maintenance window needs a length above zero".into(),
                ));
            }
            windows.push((
                from,
                from + chrono::Duration::milliseconds((lasts * 1e3) as i64),
                j,
            ));
        }
        windows.sort();
        for w in windows.windows(2) {
            if w[1].0 < w[0].1 {
                return Err(at(
                    &key(&format!("maintenance.{}", w[1].2)),
                    format!(
                        "this window overlaps maintenance.{} ({} to {}); join them into one",
                        w[0].2,
                        w[0].0.to_rfc3339(),
                        w[0].1.to_rfc3339()
                    ),
                ));
            }
        }
        if let Some(p) = &e.approval {
            let median = seconds(&p.median).map_err(|m| at(&key("approval.median"), m))?;
            let p90 = seconds(&p.p90).map_err(|m| at(&key("approval.p90"), m))?;
            if !(median > 0.0 && p90 > median) {
                return Err(at(
                    &key("approval.p90"),
                    format!("expected a median above zero and a 90th percentile above it (a log-normal delay), found median {:?} and p90 {:?}", p.median, p.p90),
                ));
            }
        }
        if let Some(v) = e.speed {
            if !(v.is_finite() && v > 0.0 && v <= 100.0) {
                return Err(at(&key("speed"), format!("expected a speed above 0 and at most 100 (1 is the machine the run measures on, 0.25 four times slower), found {v}")));
            }
        }
        let fields = [
            e.timezone.is_some(),
            e.hours.is_some(),
            e.days.is_some(),
            !e.maintenance.is_empty(),
            e.approval.is_some(),
            e.speed.is_some(),
            e.trace.is_some(),
        ];
        if !fields.contains(&true) {
            return Err(at(
                &format!("availability.{i}"),
                "an entry needs at least one of timezone, hours, days, maintenance, approval, speed, trace".into(),
            ));
        }
        if !s.clock.simulated() {
            let waits = [
                ("hours", e.hours.is_some()),
                ("days", e.days.is_some()),
                ("maintenance", !e.maintenance.is_empty()),
                ("approval", e.approval.is_some()),
                ("trace", e.trace.is_some()),
            ];
            if let Some((k, _)) = waits.iter().find(|(_, set)| *set) {
                return Err(at(
                    &key(k),
                    "waiting for office hours, approvals or a trace on the real clock would take the study's real time; set `[clock] mode = \"simulated\"` to project it instead".into(),
                ));
            }
            if e.speed.is_some_and(|v| v > 1.0) {
                return Err(at(
                    &key("speed"),
                    "on the real clock a site can be made slower (its agent stretches its computing), not faster; set `[clock] mode = \"simulated\"` to project a faster server".into(),
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hours_and_days_as_people_write_them() {
        assert_eq!(hours("08:00-18:00"), Ok((480, 1080)));
        assert_eq!(hours("22:00-06:00"), Ok((1320, 360)));
        assert!(hours("8-18").is_err());
        assert!(hours("08:00-08:00").unwrap_err().contains("same time"));
        assert_eq!(
            days("Mon-Fri"),
            Ok([true, true, true, true, true, false, false])
        );
        assert_eq!(
            days("Fri-Mon"),
            Ok([true, false, false, false, true, true, true])
        );
        assert_eq!(
            days("mon,Wednesday"),
            Ok([true, false, true, false, false, false, false])
        );
        assert!(days("Mon-Fry")
            .unwrap_err()
            .contains("\"fry\" is not a day"));
    }

    #[test]
    fn an_unknown_time_zone_gets_the_nearest_name() {
        let e = timezone("Europe/Berln").unwrap_err();
        assert!(e.contains("did you mean \"Europe/Berlin\""), "{e}");
        assert_eq!(timezone("Asia/Tokyo"), Ok(Tz::Asia__Tokyo));
    }
}
