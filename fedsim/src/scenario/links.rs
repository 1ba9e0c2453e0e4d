//! `[[links]]`: the network each site is behind (latency, jitter, loss, bandwidth, outages),
//! from a named profile or given number by number. An entry selects its sites (`site`, `sites`
//! as a list, or `sites = "*"`); entries apply in order, so one for every site can come first
//! and a site's own after it. Sites in VMs get netem in the guest; local and ssh sites a relay
//! the controller runs for each of them (see `links::relay`).

use serde::{Deserialize, Serialize};

use super::{Locate, Provider, Scenario, ScenarioError};

/// Which sites an entry covers: `sites = ["site-1", "site-3"]`, or `sites = "*"` for all.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Sites {
    List(Vec<String>),
    All(String),
}

/// A time the link is down: from `at` after the run's start, for `for` (`"30s"`, `"2m"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Outage {
    pub at: String,
    #[serde(rename = "for")]
    pub lasts: String,
}

/// One `[[links]]` entry.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sites: Option<Sites>,
    /// A named profile (see [`Profile`]); the numbers below override it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    /// Added to each round trip, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jitter_ms: Option<f64>,
    /// Packets lost, in percent (over TCP: retransmission delay, see `links::relay`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss_pct: Option<f64>,
    /// Bandwidth in kbit/s, each direction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_kbit: Option<f64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub down: Vec<Outage>,
}

/// A site's link as every entry that covers it makes it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SiteLink {
    pub delay_ms: Option<f64>,
    pub jitter_ms: Option<f64>,
    pub loss_pct: Option<f64>,
    pub rate_kbit: Option<f64>,
    /// (start, end) in seconds after the run's start.
    pub down: Vec<(f64, f64)>,
}

/// Named link profiles: a real kind of connection each, with where its numbers come from
/// (docs/providers.md lists them).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Profile {
    pub name: &'static str,
    pub delay_ms: f64,
    pub jitter_ms: f64,
    pub loss_pct: f64,
    pub rate_kbit: f64,
    pub source: &'static str,
}

pub const PROFILES: [Profile; 4] = [
    Profile {
        name: "hospital-vpn",
        delay_ms: 60.0,
        jitter_ms: 10.0,
        loss_pct: 0.1,
        rate_kbit: 20_000.0,
        source: "a site-to-site IPsec VPN between hospitals over the public internet: 20 Mbit/s, 40 to 200 ms round trips (60 ms within a country), as the hospitals' own links are typically shared and throttled",
    },
    Profile {
        name: "national-research-network",
        delay_ms: 15.0,
        jitter_ms: 1.0,
        loss_pct: 0.0,
        rate_kbit: 1_000_000.0,
        source: "a national research and education network (GÉANT's members): 1 Gbit/s per flow, 10 to 20 ms round trips within a country",
    },
    Profile {
        name: "home-dsl",
        delay_ms: 30.0,
        jitter_ms: 5.0,
        loss_pct: 0.5,
        rate_kbit: 1_000.0,
        source: "ADSL2+ (ITU-T G.992.5): its 1 Mbit/s upstream bounds what a site sends; 20 to 40 ms of round trip in the access line",
    },
    Profile {
        name: "satellite",
        delay_ms: 600.0,
        jitter_ms: 50.0,
        loss_pct: 1.0,
        rate_kbit: 10_000.0,
        source: "geostationary satellite: four legs of 35 786 km at the speed of light are 477 ms, about 600 ms with processing; 10 Mbit/s, 1% loss",
    },
];

impl Profile {
    pub fn named(name: &str) -> Option<Profile> {
        PROFILES.iter().copied().find(|p| p.name == name)
    }
}

/// A duration as people write it: `"30s"`, `"2m"`, `"1h 30m"`, `"500ms"`, `"2d"`.
pub fn seconds(text: &str) -> Result<f64, String> {
    humantime::parse_duration(text)
        .map(|d| d.as_secs_f64())
        .map_err(|e| {
            format!("expected a duration like \"30s\", \"2m\" or \"1h 30m\", found {text:?} ({e})")
        })
}

/// Whether an entry with these selectors covers `site`.
pub(super) fn covers(one: &Option<String>, many: &Option<Sites>, site: &str) -> bool {
    one.as_deref() == Some(site)
        || match many {
            Some(Sites::All(_)) => true,
            Some(Sites::List(l)) => l.iter().any(|s| s == site),
            None => false,
        }
}

impl LinkSpec {
    /// Whether this entry covers `site`.
    pub fn covers(&self, site: &str) -> bool {
        covers(&self.site, &self.sites, site)
    }
}

/// An entry of `section` selects its sites with exactly one of `site` or `sites`, naming only
/// sites there are.
pub(super) fn check_selector(
    section: &str,
    i: usize,
    one: &Option<String>,
    many: &Option<Sites>,
    names: &[String],
    at: &Locate,
) -> Result<(), ScenarioError> {
    let key = |k: &str| format!("{section}.{i}.{k}");
    let unknown = |key: &str, site: &str| {
        let near = names
            .iter()
            .min_by_key(|n| strsim::levenshtein(n, site))
            .filter(|n| strsim::levenshtein(n, site) <= 2);
        at(
            key,
            format!(
                "no site {site:?}{}; sites are {}",
                near.map_or(String::new(), |n| format!(" (did you mean {n:?}?)")),
                crate::scenario::names_in_short(names)
            ),
        )
    };
    match (one, many) {
        (None, None) => Err(at(
            &format!("{section}.{i}"),
            "an entry needs `site = \"site-2\"`, `sites = [\"site-1\", \"site-3\"]` or `sites = \"*\"`".into(),
        )),
        (Some(_), Some(_)) => Err(at(&key("sites"), "give `site` or `sites`, not both".into())),
        (Some(site), None) if !names.contains(site) => Err(unknown(&key("site"), site)),
        (None, Some(Sites::All(star))) if star != "*" => Err(at(
            &key("sites"),
            format!("expected a list of sites or \"*\" (every site), found {star:?}"),
        )),
        (None, Some(Sites::List(list))) => match list.iter().find(|x| !names.contains(x)) {
            Some(site) => Err(unknown(&key("sites"), site)),
            None => Ok(()),
        },
        _ => Ok(()),
    }
}

impl SiteLink {
    /// `entries` applied in order to one site: a profile's numbers, then the entry's own.
    pub fn of(entries: &[LinkSpec], site: &str) -> Option<SiteLink> {
        let mut link: Option<SiteLink> = None;
        for e in entries.iter().filter(|e| e.covers(site)) {
            let l = link.get_or_insert_with(SiteLink::default);
            if let Some(p) = e.profile.as_deref().and_then(Profile::named) {
                l.delay_ms = Some(p.delay_ms);
                l.jitter_ms = Some(p.jitter_ms);
                l.loss_pct = Some(p.loss_pct);
                l.rate_kbit = Some(p.rate_kbit);
            }
            l.delay_ms = e.delay_ms.or(l.delay_ms);
            l.jitter_ms = e.jitter_ms.or(l.jitter_ms);
            l.loss_pct = e.loss_pct.or(l.loss_pct);
            l.rate_kbit = e.rate_kbit.or(l.rate_kbit);
            for o in &e.down {
                if let (Ok(at), Ok(lasts)) = (seconds(&o.at), seconds(&o.lasts)) {
                    l.down.push((at, at + lasts));
                }
            }
        }
        link
    }

    /// The netem arguments (`delay 50ms 5ms loss 1% rate 1000kbit`).
    pub fn netem(&self) -> String {
        let mut a = Vec::new();
        if self.delay_ms.is_some() || self.jitter_ms.is_some() {
            a.push(format!("delay {}ms", self.delay_ms.unwrap_or(0.0)));
            if let Some(j) = self.jitter_ms.filter(|j| *j > 0.0) {
                a.push(format!("{j}ms"));
            }
        }
        if let Some(l) = self.loss_pct.filter(|l| *l > 0.0) {
            a.push(format!("loss {l}%"));
        }
        if let Some(r) = self.rate_kbit {
            a.push(format!("rate {r}kbit"));
        }
        a.join(" ")
    }

    /// For people: `50 ms +- 5 ms, 1% loss, 1000 kbit/s, down 2 times`.
    pub fn describe(&self) -> String {
        let mut a = Vec::new();
        if let Some(d) = self.delay_ms {
            a.push(match self.jitter_ms.filter(|j| *j > 0.0) {
                Some(j) => format!("{d} ms +- {j} ms"),
                None => format!("{d} ms"),
            });
        }
        if let Some(l) = self.loss_pct.filter(|l| *l > 0.0) {
            a.push(format!("{l}% loss"));
        }
        if let Some(r) = self.rate_kbit {
            a.push(format!("{r} kbit/s"));
        }
        match self.down.len() {
            0 => {}
            1 => a.push("down once".into()),
            n => a.push(format!("down {n} times")),
        }
        a.join(", ")
    }
}

impl Scenario {
    /// The link `site` is behind, if any entry covers it.
    pub fn link_of(&self, site: &str) -> Option<SiteLink> {
        SiteLink::of(&self.links, site)
    }
}

/// Links where they can be applied, for real sites, with real numbers and real profiles.
pub(super) fn validate(s: &Scenario, at: &Locate) -> Result<(), ScenarioError> {
    if s.links.is_empty() {
        return Ok(());
    }
    // On the simulated clock the links are projected, not applied, so any provider has them.
    if s.fleet.provider == Provider::Vagrant && !s.clock.simulated() {
        return Err(at(
            "links",
            "link conditions need provider \"local\", \"ssh\" (a relay shapes them) or \"vm\" (netem in the guest); provider \"vagrant\" has neither (on `[clock] mode = \"simulated\"` they are projected instead)".into(),
        ));
    }
    let names = s.site_names();
    for (i, l) in s.links.iter().enumerate() {
        let key = |k: &str| format!("links.{i}.{k}");
        check_selector("links", i, &l.site, &l.sites, &names, at)?;
        if let Some(p) = &l.profile {
            if Profile::named(p).is_none() {
                let known: Vec<&str> = PROFILES.iter().map(|p| p.name).collect();
                let near = known
                    .iter()
                    .min_by_key(|k| strsim::levenshtein(k, p))
                    .filter(|k| strsim::levenshtein(k, p) <= 3);
                return Err(at(
                    &key("profile"),
                    format!(
                        "no link profile {p:?}{}; the profiles are {}",
                        near.map_or(String::new(), |n| format!(" (did you mean {n:?}?)")),
                        known.join(", ")
                    ),
                ));
            }
        }
        for (k, v, max) in [
            ("delay_ms", l.delay_ms, 60_000.0),
            ("jitter_ms", l.jitter_ms, 60_000.0),
            ("loss_pct", l.loss_pct, 100.0),
            ("rate_kbit", l.rate_kbit, 1e8),
        ] {
            if let Some(v) = v {
                if !(v.is_finite() && v >= 0.0 && v <= max) || (k == "rate_kbit" && v < 1.0) {
                    return Err(at(
                        &key(k),
                        format!(
                            "expected a number from {} to {max}, found {v}",
                            if k == "rate_kbit" { 1 } else { 0 }
                        ),
                    ));
                }
            }
        }
        for (j, o) in l.down.iter().enumerate() {
            for (k, text) in [("at", &o.at), ("for", &o.lasts)] {
                seconds(text).map_err(|e| at(&key(&format!("down.{j}.{k}")), e))?;
            }
        }
        if !l.down.is_empty() && s.fleet.provider == Provider::Vm && !s.clock.simulated() {
            return Err(at(
                &key("down"),
                "outages are the relay's (provider \"local\" or \"ssh\"); in a VM, cut the link with a fault instead".into(),
            ));
        }
        let numbers = [l.delay_ms, l.jitter_ms, l.loss_pct, l.rate_kbit];
        if l.profile.is_none() && numbers.iter().all(Option::is_none) && l.down.is_empty() {
            return Err(at(
                &format!("links.{i}"),
                "a link needs a profile, or at least one of delay_ms, jitter_ms, loss_pct, rate_kbit, down".into(),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn netem_arguments_and_words() {
        let l = SiteLink {
            delay_ms: Some(50.0),
            jitter_ms: Some(5.0),
            loss_pct: Some(1.0),
            rate_kbit: Some(1000.0),
            down: vec![(1.0, 2.0)],
        };
        assert_eq!(l.netem(), "delay 50ms 5ms loss 1% rate 1000kbit");
        assert_eq!(
            l.describe(),
            "50 ms +- 5 ms, 1% loss, 1000 kbit/s, down once"
        );
    }

    /// Entries apply in order: a profile for every site, then one site's own numbers.
    #[test]
    fn a_site_s_own_entry_overrides_one_for_every_site() {
        let all = LinkSpec {
            sites: Some(Sites::All("*".into())),
            profile: Some("hospital-vpn".into()),
            ..Default::default()
        };
        let own = LinkSpec {
            site: Some("site-2".into()),
            delay_ms: Some(200.0),
            down: vec![Outage {
                at: "30s".into(),
                lasts: "1m".into(),
            }],
            ..Default::default()
        };
        let entries = [all, own];
        let one = SiteLink::of(&entries, "site-1").unwrap();
        assert_eq!((one.delay_ms, one.rate_kbit), (Some(60.0), Some(20_000.0)));
        let two = SiteLink::of(&entries, "site-2").unwrap();
        assert_eq!((two.delay_ms, two.rate_kbit), (Some(200.0), Some(20_000.0)));
        assert_eq!(two.down, [(30.0, 90.0)]);
        assert_eq!(SiteLink::of(&entries[1..], "site-1"), None);
    }
}
