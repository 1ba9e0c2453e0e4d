//! "No link between them" on the local provider (issue 21.1): a step at one site reads its own
//! folder and nothing of the other sites or the controller, writes only its own folder, and
//! signals no process outside its sandbox. Landlock walls each local agent off; where the kernel
//! lacks it, the run says so in its warnings (and this test says SKIPPED).

mod common;

use common::*;

#[test]
fn a_step_at_one_site_cannot_reach_another_sites_secrets_or_the_controllers() {
    if fedsim::sys::confine::available() < 6 {
        eprintln!(
            "SKIPPED: this kernel's Landlock ABI is {} (6 is needed for files, TCP and signals)",
            fedsim::sys::confine::available()
        );
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(
        tmp.path().join("probe.sh"),
        r#"read input
if [ "$FEDSIM_SITE" = site-1 ]; then
  { cat ../site-2/.env; echo "other-env=$?"; } > probe.txt 2>&1
  { cat ../../controller.env; echo "controller-env=$?"; } >> probe.txt 2>&1
  { touch ../site-2/intruder; echo "write-other=$?"; } >> probe.txt 2>&1
  { touch ../../intruder; echo "write-run=$?"; } >> probe.txt 2>&1
  { kill -0 "$FEDSIM_PARENT_PID"; echo "signal-controller=$?"; } >> probe.txt 2>&1
  { cat .env > /dev/null; echo "own-env=$?"; } >> probe.txt 2>&1
fi
case "$1" in
  local) echo '{"sum": {"x": 1}}' ;;
  aggregate) case "$FEDSIM_ROUND" in 0) echo '{"request": 1, "state": 0}' ;; *) echo '{"result": {"one": 1}}' ;; esac ;;
  pooled) echo '{"result": {"one": 1}}' ;;
esac
"#,
    )
    .unwrap();
    let cfg = scenario(
        tmp.path(),
        "walls",
        &format!(
            "[scenario]\nname = \"walls\"\n[data]\npath = \"{}\"\n[partition]\nkind = \"horizontal\"\nsites = 2\n[algorithm]\nkind = \"external\"\nlocal = [\"sh\", \"probe.sh\", \"local\"]\naggregate = [\"sh\", \"probe.sh\", \"aggregate\"]\npooled = [\"sh\", \"probe.sh\", \"pooled\"]\nfiles = [\"probe.sh\"]\n",
            test_data("diabetes_raw.csv").display()
        ),
    );
    let out = tmp.path().join("run");
    let o = run_to(tmp.path(), &cfg, &out, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let probe = std::fs::read_to_string(out.join("sites/site-1/probe.txt")).unwrap();
    let code = |what: &str| {
        probe
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{what}=")))
            .unwrap_or_else(|| panic!("{what} not probed: {probe}"))
            .to_string()
    };
    for denied in [
        "other-env",
        "controller-env",
        "write-other",
        "write-run",
        "signal-controller",
    ] {
        assert_ne!(code(denied), "0", "{denied} was allowed:\n{probe}");
    }
    assert_eq!(code("own-env"), "0", "{probe}");
    assert!(!out.join("sites/site-2/intruder").exists() && !out.join("intruder").exists());
    // Not a byte of another site's or the controller's secrets reached the probe.
    for (what, secret) in run_secrets(&out, &["site-2"]) {
        assert!(!probe.contains(&secret), "{what} was read");
    }
    let s = summary(&out);
    assert!(
        !s.warnings.iter().any(|w| w.kind == "isolation"),
        "{}",
        pretty(&s.warnings)
    );
}
