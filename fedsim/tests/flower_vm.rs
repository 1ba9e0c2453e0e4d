//! Flower's deployment engine on 2 VM sites: the shipped example's SuperNodes in the VMs fedsim
//! boots, Flower installed there from the wheels the controller sends (the VMs have no index),
//! each node dialling the SuperLink through its SSH tunnel with TLS, the fit the pooled one. A
//! binary of its own, so its VMs do not boot beside the other VM tests'. Needs root,
//! qemu-system-x86, mmdebstrap and flwr (`.ci/run` installs them); says SKIPPED otherwise.
//!
//! Under TCG emulation (this kind of machine has no usable KVM) a ClientApp takes about 30 s to
//! start, and now and then more than the 60 s in which Flower (hard-coded: a 30 s task heartbeat,
//! patience 2) expects its first heartbeat: Flower then drops that reply and the round ends at
//! its timeout without it. So the run gets 12 rounds where the Newton fit needs 8 (1.3e-9 after
//! 8 steps, 2e-15 after 9), and a round times out after 150 s (the first, with the App's install,
//! took 101 s; later ones 27 to 37 s).

mod common;

use common::*;

#[test]
fn the_example_runs_on_two_vm_sites_with_flower_installed_from_the_controllers_wheels() {
    if !can_boot_vms() {
        return;
    }
    let Some(_) = flwr_installed() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let vm = [
        "--set",
        "partition.sites=2",
        "--set",
        "fleet.provider=\"vm\"",
        "--set",
        "platform.simulation=false",
        "--set",
        "platform.rounds=12",
        "--set",
        "platform.run_config.round-timeout=150",
        "--set",
        "platform.timeout_secs=1800",
    ];
    let cfg = example(tmp.path(), "");
    let out = tmp.path().join("vm");
    let o = run_to(tmp.path(), &cfg, &out, &vm);
    let s = expect_status(&o, &out, Status::Succeeded);
    let c = s.comparison.as_ref().unwrap();
    assert!(c.passed && c.max_diff < 1e-8, "{}", pretty(c));
    // Flower was installed in each VM from the wheels the controller sent.
    let log = std::fs::read_to_string(out.join("logs/controller.jsonl")).unwrap();
    assert!(
        log.contains("sending the platform's wheels"),
        "no wheels sent"
    );
    for i in 1..=2 {
        let log = std::fs::read_to_string(out.join(format!("logs/site-{i}.jsonl"))).unwrap();
        assert!(
            log.contains(&format!("\"process\":\"flower-supernode site-{i}\""))
                && log.contains("Sent successfully"),
            "{log}"
        );
        assert!(out.join(format!("logs/site-{i}.console.jsonl")).is_file());
    }
    assert!(
        qemus(&out.display().to_string()).is_empty(),
        "no VM outlives the run"
    );
    let left = leftovers(0, &out);
    assert!(left.is_empty(), "left running: {left:?}");
}
