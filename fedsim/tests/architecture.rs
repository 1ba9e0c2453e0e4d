//! The structure's invariants (issue 22), read from the source itself: no import circle between
//! the crate's modules, a module doc on every folder, and one owner for each thing that travels
//! (the run directory's file names, the site's `.env`, the log milestones, the exit codes).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file under `dir`, with its path relative to `src/`.
fn sources(dir: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                let rel = p
                    .strip_prefix(src())
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                out.push((rel, std::fs::read_to_string(&p).unwrap()));
            }
        }
    }
    out.sort();
    out
}

/// The code a file ships: its unit tests left out.
fn shipped(text: &str) -> &str {
    text.split("#[cfg(test)]").next().unwrap_or(text)
}

/// The module a file belongs to: its top-level file or folder (`fleet/vm/mod.rs` -> `fleet`).
fn room(rel: &str) -> String {
    rel.split('/')
        .next()
        .unwrap()
        .trim_end_matches(".rs")
        .to_string()
}

/// Which modules each module imports (`crate::name`), the binary's `cli` wing aside.
fn imports() -> BTreeMap<String, BTreeSet<String>> {
    let files = sources(&src());
    let rooms: BTreeSet<String> = files.iter().map(|(rel, _)| room(rel)).collect();
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (rel, text) in &files {
        let from = room(rel);
        for (i, _) in shipped(text).match_indices("crate::") {
            let name: String = text[i + 7..]
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                .collect();
            if name != from && rooms.contains(&name) {
                edges.entry(from.clone()).or_default().insert(name);
            }
        }
    }
    edges
}

/// A circle among `edges`, if there is one, as the modules on it.
fn circle(edges: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        v: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|p| p == v) {
            let mut c = path[at..].to_vec();
            c.push(v.to_string());
            return Some(c);
        }
        if done.contains(v) {
            return None;
        }
        path.push(v.to_string());
        for w in edges.get(v).into_iter().flatten() {
            if let Some(c) = visit(w, edges, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(v.to_string());
        None
    }
    let mut done = BTreeSet::new();
    edges
        .keys()
        .find_map(|v| visit(v, edges, &mut Vec::new(), &mut done))
}

#[test]
fn no_module_imports_one_that_imports_it_back() {
    let edges = imports();
    assert!(edges.len() > 10, "the import graph was read: {edges:?}");
    if let Some(c) = circle(&edges) {
        panic!("import circle: {}", c.join(" -> "));
    }
}

/// The survey's own circle detector finds a circle where there is one.
#[test]
fn the_circle_detector_finds_a_planted_circle() {
    let mut edges = imports();
    edges
        .entry("sys".into())
        .or_default()
        .insert("report".into());
    let c = circle(&edges).expect("sys -> report -> ... -> sys is a circle");
    assert!(c.contains(&"sys".to_string()), "{c:?}");
}

#[test]
fn every_folder_says_what_it_owns() {
    for (rel, text) in sources(&src()) {
        if rel.ends_with("mod.rs") || !rel.contains('/') {
            assert!(
                text.trim_start().starts_with("//!"),
                "{rel} has no module doc saying what it owns"
            );
        }
    }
}

/// Each name is spelled by its owners and nowhere else in the shipped code.
#[test]
fn one_owner_for_each_thing_that_travels() {
    let run_files: &[&str] = &[
        "\"summary.json\"",
        "\"metrics.json\"",
        "\"plan.json\"",
        "\"merged.jsonl\"",
        "\"controller.jsonl\"",
        "\"report.html\"",
        "\"controller.env\"",
    ];
    // (An external step's FEDSIM_SITE and FEDSIM_DATA are its process's environment, not the
    // file's variables.)
    let env: &[&str] = &[
        "dotenvy::",
        "\"FEDSIM_TOKEN\"",
        "\"FEDSIM_PAIR_SEEDS\"",
        "\".env\"",
    ];
    // The agent and the coordinator say these to people; what reads the log matches the
    // `milestone` field (logs::Milestone), never the words.
    let milestones: &[&str] = &[
        "\"round computed\"",
        "\"data loaded\"",
        "\"site joined\"",
        "\"connected to coordinator\"",
        "\"round aggregated\"",
    ];
    // `reap` passes on its step's own exit code, which is not one of fedsim's.
    let exits: &[&str] = &["ExitCode::from("];
    let owners: [(&[&str], &[&str]); 4] = [
        (run_files, &["rundir.rs"]),
        (env, &["bundle/env.rs"]),
        (milestones, &["agent/mod.rs", "federation/coordinator.rs"]),
        (exits, &["sys/exit.rs"]),
    ];
    for (rel, text) in sources(&src()) {
        let code = shipped(&text);
        for (names, allowed) in &owners {
            if allowed.contains(&rel.as_str()) {
                continue;
            }
            for name in *names {
                assert!(
                    !code.contains(name),
                    "{rel} spells {name}, which belongs to {allowed:?}"
                );
            }
        }
    }
}
