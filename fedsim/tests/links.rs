//! `[[links]]` on local sites: each linked site dials a relay the controller runs, and what it
//! sends and receives waits as it would on the link (the delay, an outage); profiles, site
//! selectors and what `validate` refuses. (The relay's model, chunk by chunk, is unit-tested in
//! `relay.rs`; a run through it on ssh sites is in `ssh_fleet.rs`.)

mod common;

use common::*;

/// 3 local sites behind the hospital VPN profile, site-2 behind a slower one of its own: each
/// dials its relay, every round waits at least the slowest site's round trip, the numbers are
/// still exact, and the report's sites table says what link each site is behind.
#[test]
fn local_sites_behind_links_dial_their_relays_and_wait_their_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = scenario(
        dir.path(),
        "linked",
        &Ols::on("linked", "diabetes.csv", 3)
            .reference()
            .extra(
                "[[links]]\nsites = \"*\"\nprofile = \"hospital-vpn\"\n\n[[links]]\nsite = \"site-2\"\ndelay_ms = 400\njitter_ms = 0\n",
            )
            .toml(),
    );
    let out = dir.path().join("run");
    let s = run_expecting(dir.path(), &cfg, &out, Status::Succeeded);
    assert!(s.reference.as_ref().unwrap().comparison.passed);
    let links: Vec<Option<String>> = s.sites.iter().map(|x| x.link.clone()).collect();
    assert_eq!(
        links,
        [
            Some("60 ms +- 10 ms, 0.1% loss, 20000 kbit/s".to_string()),
            Some("400 ms, 0.1% loss, 20000 kbit/s".to_string()),
            Some("60 ms +- 10 ms, 0.1% loss, 20000 kbit/s".to_string()),
        ]
    );
    // Each round (and the Ready exchange before them, round 0) is a request down and a reply
    // up: site-2's 400 ms round trip at least.
    let m = metrics(&out);
    assert_eq!(m.rounds.len(), 4);
    for r in &m.rounds {
        assert!(
            r.wall_secs >= 0.4,
            "round {} took {} s",
            r.round,
            r.wall_secs
        );
    }
    // Every site dialed its own relay, not the coordinator.
    let (relays, dialed) = relays_and_dials(&out, &["controller", "site-1", "site-2", "site-3"]);
    assert_eq!((relays.len(), dialed.len()), (3, 3));
    assert!(
        dialed.iter().all(|d| relays.contains(d)),
        "{dialed:?} {relays:?}"
    );
    no_agent_left(&s);
}

/// An outage at the start holds what site-1 sends until it ends: the sites join after it.
#[test]
fn an_outage_holds_the_link_until_it_ends() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = scenario(
        dir.path(),
        "down",
        &Ols::on("down", "diabetes.csv", 2)
            .extra("[[links]]\nsite = \"site-1\"\ndown = [{ at = \"0s\", for = \"1500ms\" }]\n")
            .toml(),
    );
    let out = dir.path().join("run");
    let s = run_expecting(dir.path(), &cfg, &out, Status::Succeeded);
    assert_eq!(s.sites[0].link.as_deref(), Some("down once"));
    let m = metrics(&out);
    assert!(
        m.connect_secs.unwrap() >= 1.4,
        "the sites joined after {:?} s",
        m.connect_secs
    );
}

/// Unknown profiles (with the nearest name), unknown sites, malformed durations, entries that
/// select nothing, and a provider without a way to shape links are refused by `validate`.
#[test]
fn validate_refuses_links_that_cannot_be_made() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "[[links]]\nsites = \"*\"\nprofile = \"hospital-vnp\"\n",
            "links.0.profile",
            "did you mean \"hospital-vpn\"",
        ),
        (
            "[[links]]\nsites = [\"site-1\", \"site-9\"]\ndelay_ms = 10\n",
            "links.0.sites",
            "no site \"site-9\"",
        ),
        (
            "[[links]]\nsites = \"all\"\ndelay_ms = 10\n",
            "links.0.sites",
            "or \"*\"",
        ),
        ("[[links]]\ndelay_ms = 10\n", "links.0", "needs `site"),
        (
            "[[links]]\nsite = \"site-1\"\ndown = [{ at = \"soon\", for = \"1m\" }]\n",
            "links.0.down.0.at",
            "expected a duration",
        ),
        (
            "[[links]]\nsite = \"site-1\"\n",
            "links.0",
            "needs a profile",
        ),
        (
            "[fleet]\nprovider = \"vagrant\"\n\n[[links]]\nsite = \"site-1\"\ndelay_ms = 10\n",
            "links",
            "provider \"vagrant\"",
        ),
    ];
    for (i, (extra, key, expected)) in cases.iter().enumerate() {
        let cfg = scenario(
            dir.path(),
            &format!("bad{i}"),
            &Ols::on(&format!("bad{i}"), "diabetes.csv", 2)
                .extra(extra)
                .toml(),
        );
        let o = fedsim(dir.path(), &["validate", "-c", cfg.to_str().unwrap()]);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "case {i}: {err}");
        assert!(
            err.contains(key) && err.contains(expected),
            "case {i}: {err}"
        );
    }
}
