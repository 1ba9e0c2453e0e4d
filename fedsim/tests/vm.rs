//! Sites in real virtual machines (qemu, the image fedsim builds): the same numbers as local
//! sites and the reference; no route from one site to another, the coordinator only through the
//! tunnel; a link's latency and bandwidth show in that site's rounds; a VM powered off mid-run
//! fails the run, named, with no qemu left. Needs root, qemu-system-x86 and mmdebstrap (`.ci/run`
//! installs them); says SKIPPED otherwise.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A 2-site scenario on provider "vm"; `extra` is appended (links, faults, algorithm).
fn vm_scenario(dir: &Path, name: &str, data: &str, body: &str) -> PathBuf {
    let csv = if data.contains("progression") {
        "diabetes.csv"
    } else {
        "digits.csv"
    };
    vm_scenario_on(dir, name, csv, data, body)
}

/// The same on the shipped data file `csv`.
fn vm_scenario_on(dir: &Path, name: &str, csv: &str, data: &str, body: &str) -> PathBuf {
    scenario(
        dir,
        name,
        &format!(
            "[scenario]\nname = \"{name}\"\nseed = 4\n[data]\npath = \"{}\"\n{data}\n[partition]\nkind = \"horizontal\"\nsites = 2\n[fleet]\nprovider = \"vm\"\n[federation]\nconnect_timeout_secs = 180\nround_timeout_secs = 300\n{body}",
            test_data(csv).display()
        ),
    )
}

/// The lung study as `[[analysis]]` entries: a crosstab, Kaplan-Meier by sex, Cox (Efron).
const STUDY: &str = "[[analysis]]\nname = \"table\"\nkind = \"crosstab\"\nrows = \"sex\"\ncols = \"status\"\n[[analysis]]\nname = \"curves\"\nkind = \"kaplan_meier\"\ntime = \"time\"\nevent = \"status\"\ngroup = \"sex\"\n[[analysis]]\nname = \"cox\"\nkind = \"cox\"\ntime = \"time\"\nevent = \"status\"\nties = \"efron\"\n";

const OLS: &str = "target = \"progression\"";
const OLS_ALGO: &str = "[algorithm]\nkind = \"linear_regression\"\n";

fn fleet_json(name: &str) -> serde_json::Value {
    let home = std::env::var("HOME").unwrap();
    let root = std::env::var("FEDSIM_CACHE").unwrap_or(format!("{home}/.cache/fedsim"));
    serde_json::from_slice(&std::fs::read(format!("{root}/fleets/{name}/fleet.json")).unwrap())
        .unwrap()
}

/// Run `command` inside a VM of a fleet that is up, as root over SSH with the fleet's key and
/// pinned host keys; its exit code and output.
fn in_vm(fleet: &serde_json::Value, site: &str, command: &str) -> (i32, String) {
    let m = fleet["machines"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["site"] == site)
        .unwrap();
    let key = Path::new(fleet["image"].as_str().unwrap()).join("id_ed25519");
    let o = Command::new("ssh")
        .args(["-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes"])
        .arg("-o")
        .arg(format!(
            "UserKnownHostsFile={}",
            fleet["known_hosts"].as_str().unwrap()
        ))
        .arg("-i")
        .arg(&key)
        .arg("-p")
        .arg(m["port"].to_string())
        .arg("root@127.0.0.1")
        .arg(command)
        .output()
        .unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned() + &*String::from_utf8_lossy(&o.stderr),
    )
}

#[test]
fn sites_in_vms_match_local_sites_stay_isolated_and_feel_their_links() {
    if !can_boot_vms() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let name = "vmtest-fleet";
    let cfg = vm_scenario(tmp.path(), name, OLS, OLS_ALGO);
    let _ = fedsim(tmp.path(), &["fleet", "down", "-c", cfg.to_str().unwrap()]);
    // Boot once, run several times.
    let o = fedsim(
        tmp.path(),
        &["fleet", "up", "-q", "-c", cfg.to_str().unwrap()],
    );
    assert!(o.status.success(), "fleet up: {}", stderr(&o));
    struct Down<'a>(&'a Path, &'a Path);
    impl Drop for Down<'_> {
        fn drop(&mut self) {
            let _ = fedsim(self.0, &["fleet", "down", "-c", self.1.to_str().unwrap()]);
        }
    }
    let _down = Down(tmp.path(), &cfg);
    let o = fedsim(tmp.path(), &["fleet", "status"]);
    let status = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        status.contains(name) && status.matches("answers").count() >= 2,
        "{status}"
    );
    let fleet = fleet_json(name);

    // Isolation: site-1 has no route to site-2's SSH (forwarded on this host's loopback) nor to
    // any other service of this host; only its own SSH session leads out.
    let site2_port = fleet["machines"][1]["port"].as_u64().unwrap();
    let host_service = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let host_port = host_service.local_addr().unwrap().port();
    for (what, port) in [
        ("site-2's SSH", site2_port),
        ("a host service", host_port as u64),
    ] {
        let (code, out) = in_vm(&fleet, "site-1", &format!("nc -z -w 3 10.0.2.2 {port}"));
        assert_ne!(code, 0, "site-1 reached {what} at 10.0.2.2:{port}: {out}");
    }
    let (code, routes) = in_vm(&fleet, "site-1", "ip -4 route");
    assert_eq!(code, 0);
    assert!(!routes.contains("default"), "no way out: {routes}");

    // `fedsim prep` puts each site's data and .env onto the fleet; the run finds them there,
    // checks them by checksum and uses them as they are.
    let prep = tmp.path().join("prep");
    let o = fedsim(
        tmp.path(),
        &[
            "prep",
            "-q",
            "-c",
            cfg.to_str().unwrap(),
            "--out",
            prep.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "prep: {}", stderr(&o));
    let (code, env) = in_vm(&fleet, "site-1", &format!("cat .fedsim/{name}/.env"));
    assert_eq!(code, 0);
    assert!(env.contains("FEDSIM_COORDINATOR=given-at-start"), "{env}");

    // The same OLS as local sites give, and statsmodels' numbers; the agents reached the
    // coordinator (through the tunnel: there is no other way).
    let out = tmp.path().join("vm-ols");
    let s = run_expecting(tmp.path(), &cfg, &out, Status::Succeeded);
    let log = std::fs::read_to_string(out.join("logs/controller.jsonl")).unwrap();
    assert_eq!(
        log.matches("from fedsim prep or an earlier run").count(),
        2,
        "both sites used what prep put there"
    );
    let location = s.sites[0].location.as_deref().expect("a location");
    assert!(location.contains("VM site-1"), "{location}");
    let local_cfg = scenario(
        tmp.path(),
        "local",
        &std::fs::read_to_string(&cfg)
            .unwrap()
            .replace("provider = \"vm\"", "provider = \"local\""),
    );
    let local = tmp.path().join("local-ols");
    assert!(run_to(tmp.path(), &local_cfg, &local, &[]).status.success());
    let results = s.results.as_ref().expect("results");
    let d = max_rel(
        &results.coef,
        &summary(&local).results.expect("local results").coef,
    );
    assert!(d < 1e-12, "VM sites vs local sites: {d:e}");
    let r = reference("diabetes.csv", "ols");
    for (field, got) in [("coef", &results.coef), ("se", &results.se)] {
        let d = max_rel(got, &floats(&r[field]));
        assert!(d <= 1e-8, "{field} off statsmodels by {d:e}");
    }
    // Each VM's console is in the merged log.
    let merged = std::fs::read_to_string(out.join("logs/merged.jsonl")).unwrap();
    assert!(merged.contains("\"source\":\"site-1/console\""));

    // Latency: site-2 behind 300 ms answers every round at least that much later.
    let slow = vm_scenario(
        tmp.path(),
        name,
        OLS,
        &format!("{OLS_ALGO}[[links]]\nsite = \"site-2\"\ndelay_ms = 300\n"),
    );
    let out = tmp.path().join("vm-latency");
    let o = run_to(tmp.path(), &slow, &out, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let (a1, a2) = (
        mean_answer(&out, Some("site-1")),
        mean_answer(&out, Some("site-2")),
    );
    assert!(
        a2 >= 0.3 && a2 > a1 + 0.25,
        "site-1 {a1:.3} s, site-2 {a2:.3} s"
    );
    assert_eq!(summary(&out).sites[1].link.as_deref(), Some("300 ms"));

    // Bandwidth: site-2 capped at 128 kbit/s needs at least bytes / rate to send its Gram block.
    let capped = vm_scenario(
        tmp.path(),
        name,
        "exclude = [\"target\"]",
        "[algorithm]\nkind = \"svd\"\nk = 5\nmethod = \"gram\"\n[[links]]\nsite = \"site-2\"\nrate_kbit = 128\n",
    );
    let out = tmp.path().join("vm-bandwidth");
    let o = run_to(tmp.path(), &capped, &out, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let m = metrics(&out);
    let gram = m
        .rounds
        .iter()
        .flat_map(|r| &r.sites)
        .filter(|x| x.site == "site-2")
        .max_by_key(|x| x.bytes_sent)
        .unwrap();
    let (bytes, secs) = (gram.bytes_sent as f64, gram.answer_secs);
    let floor = bytes * 8.0 / 128_000.0;
    assert!(bytes > 30_000.0, "the Gram block is large: {bytes}");
    assert!(
        secs >= 0.9 * floor,
        "{bytes} B in {secs:.3} s: faster than the 128 kbit/s cap allows ({floor:.3} s)"
    );

    // Your own algorithm in the VMs: fedsim check finds its interpreter there, and the moments
    // example gives the pooled answer.
    let examples = root().join("algorithms/examples");
    for f in ["moments.py", "fedsim_protocol.py"] {
        std::fs::copy(examples.join(f), tmp.path().join(f)).unwrap();
    }
    let cmd = |role: &str| {
        format!("[\"python3\", \"moments.py\", \"--columns\", \"pixel_2_2,pixel_3_3,pixel_4_4\", \"{role}\"]")
    };
    let own = vm_scenario(
        tmp.path(),
        name,
        "",
        &format!(
            "[algorithm]\nkind = \"external\"\nlocal = {}\naggregate = {}\npooled = {}\nfiles = [\"moments.py\", \"fedsim_protocol.py\"]\n[compare]\ntolerance = 1e-12\n",
            cmd("local"),
            cmd("aggregate"),
            cmd("pooled")
        ),
    );
    let o = fedsim(tmp.path(), &["check", "-c", own.to_str().unwrap()]);
    let table = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(o.status.success(), "{table}{}", stderr(&o));
    assert!(
        table
            .lines()
            .filter(|l| l.contains("algorithm") && l.contains("python3"))
            .count()
            == 2,
        "{table}"
    );
    let out = tmp.path().join("vm-external");
    let s = run_expecting(tmp.path(), &own, &out, Status::Succeeded);
    assert!(
        s.comparison.as_ref().expect("a comparison").max_diff <= 1e-12,
        "{}",
        pretty(&s)
    );
    // The external algorithm's own output, as it wrote it.
    let named = &s.results.as_ref().expect("results").named;
    assert_eq!(
        named["mean"]["labels"],
        serde_json::json!(["pixel_2_2", "pixel_3_3", "pixel_4_4"])
    );

    // Issue 23's analyses in the VMs, each against its statsmodels, scipy or numpy row: a
    // Poisson GLM with an exposure, describe, and a study of several analyses in one run (a
    // crosstab with its chi-square test, Kaplan-Meier curves by group with the log-rank test,
    // Cox regression).
    let reference = format!(
        "[compare]\ntolerance = 1e-8\nreference = \"{}\"\n",
        test_data("reference.jsonl").display()
    );
    for (i, (csv, data, algorithm)) in [
        (
            "ships.csv",
            "target = \"accident\"\nfeatures = [\"type_b\", \"type_c\", \"type_d\", \"type_e\", \"co_65_69\", \"co_70_74\", \"co_75_79\", \"op_75_79\"]",
            "[algorithm]\nkind = \"glm\"\nfamily = \"poisson\"\nexposure = \"service\"\n",
        ),
        ("lung.csv", "", STUDY),
        (
            "diabetes_raw.csv",
            "features = [\"age\", \"bmi\", \"bp\", \"s5\", \"progression\"]",
            "[algorithm]\nkind = \"describe\"\n",
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let cfg = vm_scenario_on(tmp.path(), name, csv, data, &format!("{algorithm}{reference}"));
        let out = tmp.path().join(format!("vm-analysis-{i}"));
        let s = run_expecting(tmp.path(), &cfg, &out, Status::Succeeded);
        for section in s.sections() {
            let r = section.reference.expect("held against its statsmodels row");
            assert!(r.comparison.passed, "{csv} {:?}: {}", section.name, pretty(r));
        }
        assert_eq!(s.analyses.len(), if csv == "lung.csv" { 3 } else { 0 });
    }

    drop(_down);
    assert!(
        qemus(&format!("fleets/{name}")).is_empty(),
        "fleet down stops every VM"
    );
}

#[test]
fn a_vm_powered_off_mid_run_fails_the_run_naming_it_and_leaves_no_qemu() {
    if !can_boot_vms() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let cfg = vm_scenario(
        tmp.path(),
        "vmtest-kill",
        OLS,
        &format!("{OLS_ALGO}[[faults]]\nsite = \"site-2\"\nkind = \"kill\"\nround = 2\n"),
    );
    let out = tmp.path().join("run");
    let s = run_expecting(tmp.path(), &cfg, &out, Status::Failed);
    let error = s.error.as_ref().expect("an error");
    assert_eq!(error.site.as_deref(), Some("site-2"));
    let msg = &error.message;
    assert!(
        msg.contains("round 2") && msg.contains("powered off"),
        "{msg}"
    );
    assert!(
        qemus(&out.display().to_string()).is_empty(),
        "no VM outlives the run"
    );
}

/// The box is self-contained (`tests/vagrant.rs` boots it under libvirt): a disk with an MBR,
/// an active FAT partition holding syslinux, the kernel and the initrd, then the image's ext4;
/// the key root logs in with; a Vagrantfile naming both by paths inside the box.
#[test]
fn the_image_packs_as_a_self_contained_libvirt_box() {
    if !can_boot_vms()
        || !["syslinux", "mcopy", "sfdisk"].iter().all(|t| {
            std::env::var_os("PATH")
                .map(|ps| std::env::split_paths(&ps).any(|d| d.join(t).is_file()))
                .unwrap_or(false)
        })
    {
        eprintln!(
            "SKIPPED: packing the box needs syslinux, mtools and fdisk (.ci/run installs them)"
        );
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let o = fedsim(tmp.path(), &["vm", "box", "-q"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let boxfile = PathBuf::from(String::from_utf8_lossy(&o.stdout).trim());
    let t = Command::new("tar")
        .arg("xzf")
        .arg(&boxfile)
        .arg("-C")
        .arg(tmp.path())
        .status()
        .unwrap();
    assert!(t.success());
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(tmp.path().join("metadata.json")).unwrap()).unwrap();
    assert_eq!(meta["provider"], "libvirt");
    assert_eq!(meta["format"], "qcow2");
    let raw = tmp.path().join("disk.raw");
    let c = Command::new("qemu-img")
        .args(["convert", "-O", "raw"])
        .arg(tmp.path().join("box.img"))
        .arg(&raw)
        .status()
        .unwrap();
    assert!(c.success());
    let parts = Command::new("sfdisk")
        .arg("--json")
        .arg(&raw)
        .output()
        .unwrap();
    let parts: serde_json::Value = serde_json::from_slice(&parts.stdout).unwrap();
    let parts = parts["partitiontable"]["partitions"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(parts.len(), 2, "{parts:?}");
    assert_eq!(parts[0]["bootable"], true);
    assert_eq!(parts[0]["type"], "c");
    let fat = format!(
        "{}@@{}",
        raw.display(),
        parts[0]["start"].as_u64().unwrap() * 512
    );
    let listing = Command::new("mdir")
        .args(["-a", "-b", "-i", &fat, "::/"])
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&listing.stdout).to_lowercase();
    for f in ["ldlinux.sys", "syslinux.cfg", "vmlinuz", "initrd.img"] {
        assert!(listing.contains(f), "{f} on the boot partition: {listing}");
    }
    let key = tmp.path().join("id_ed25519");
    assert!(key.is_file());
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(key.metadata().unwrap().permissions().mode() & 0o777, 0o600);
    let vf = std::fs::read_to_string(tmp.path().join("Vagrantfile")).unwrap();
    assert!(
        vf.contains("sudo_command = \"%c\"")
            && vf.contains("File.expand_path(\"id_ed25519\", __dir__)")
            && !vf.contains("lv.kernel")
            && !vf.contains("/root"),
        "{vf}"
    );
}

#[test]
fn a_vm_whose_link_is_cut_is_lost_named_and_the_run_still_cleans_up() {
    if !can_boot_vms() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let cfg = vm_scenario(
        tmp.path(),
        "vmtest-cut",
        OLS,
        &format!("{OLS_ALGO}[[faults]]\nsite = \"site-1\"\nkind = \"cut\"\nround = 2\n"),
    );
    // Quick heartbeats: silence means a cut within a couple of seconds.
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("[federation]\n", "[federation]\nheartbeat_secs = 0.5\n");
    std::fs::write(&cfg, text).unwrap();
    let out = tmp.path().join("run");
    let s = run_expecting(tmp.path(), &cfg, &out, Status::Failed);
    let error = s.error.as_ref().expect("an error");
    assert_eq!(error.site.as_deref(), Some("site-1"));
    let msg = &error.message;
    // Found by the silence on the wire, after four missed heartbeats (2 s here): an SSH poll of
    // the cut VM no longer holds the coordinator for its own 20 s timeout first (issue 21.6).
    assert!(
        msg.contains("lost in round 2") && msg.contains("no heartbeat for 2.0 s"),
        "{msg}"
    );
    // Timed from the cut to the first line that tells of it, in the run's own log: the rounds
    // before the cut are an emulated CPU's business, slower on a loaded machine.
    let log = merged_log(&out, &[]);
    let at = |l: &serde_json::Value| {
        chrono::DateTime::parse_from_rfc3339(l["timestamp"].as_str().unwrap()).unwrap()
    };
    let cut = log
        .iter()
        .find(|l| l["message"] == "injected fault" && l["site"] == "site-1")
        .expect("the cut in the log");
    let noticed = log
        .iter()
        .find(|l| at(l) >= at(cut) && l.to_string().contains("no heartbeat"))
        .expect("the loss in the log");
    let secs = (at(noticed) - at(cut)).num_milliseconds() as f64 / 1e3;
    assert!(
        secs < 10.0,
        "the cut took {secs:.1} s to notice (four heartbeats are 2 s; an SSH timeout, 20 s)"
    );
    // The link came back for the cleanup: both agents' logs were pulled.
    assert!(out.join("logs/site-1.jsonl").exists() && out.join("logs/site-2.jsonl").exists());
    assert!(qemus(&out.display().to_string()).is_empty());
}

/// Issue 21.5 and 21.7: `fleet up` that times out or is cancelled left its qemu processes running
/// while `fleet status` said no fleet was up; and a kill fault on a fleet kept up destroyed a VM,
/// after which the next run failed with a bare "Connection refused". Every VM is now recorded as
/// its qemu starts and stopped on any failure or cancel; a fault that powers a kept VM off marks
/// the fleet broken, and `fleet status` and the next run say so and what to do.
#[test]
fn fleets_leave_no_vm_behind_and_a_broken_fleet_says_so() {
    if !can_boot_vms() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let name = "vmtest-life";
    let mine = format!("fleets/{name}");
    let status = || {
        let o = fedsim(tmp.path(), &["fleet", "status"]);
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
        )
    };

    // A boot that times out: the VMs go, and the error shows the console's last lines.
    let cfg = vm_scenario(
        tmp.path(),
        name,
        OLS,
        &format!("{OLS_ALGO}[vm]\nboot_timeout_secs = 2\n"),
    );
    let o = fedsim(tmp.path(), &["fleet", "up", "-c", cfg.to_str().unwrap()]);
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{e}");
    assert!(
        e.contains("every VM started was stopped") && e.contains("its console ended with"),
        "{e}"
    );
    assert!(qemus(&mine).is_empty(), "{:?}", qemus(&mine));
    assert!(!status().1.contains(name));

    // A Ctrl-C while the fleet boots.
    let cfg = vm_scenario(tmp.path(), name, OLS, OLS_ALGO);
    let mut up = Command::new(bin())
        .args(["fleet", "up", "-q", "-c", cfg.to_str().unwrap()])
        .current_dir(tmp.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Until its VMs are recorded (qemu started), then interrupt it.
    let started = std::time::Instant::now();
    while qemus(&mine).len() < 2 {
        assert!(started.elapsed().as_secs() < 120, "no VM started");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    // Meanwhile `fleet status` sees the fleet that boots.
    assert!(status().1.contains(name));
    // SAFETY: signalling the child this test started.
    unsafe { libc::kill(up.id() as i32, libc::SIGINT) };
    let code = up.wait().unwrap().code();
    assert_eq!(code, Some(130));
    assert!(qemus(&mine).is_empty(), "{:?}", qemus(&mine));
    assert!(!status().1.contains(name));

    // A kill fault on a fleet kept up: the run fails naming the site; the fleet is then broken.
    let o = fedsim(
        tmp.path(),
        &["fleet", "up", "-q", "-c", cfg.to_str().unwrap()],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let down = || fedsim(tmp.path(), &["fleet", "down", "-c", cfg.to_str().unwrap()]);
    let killed = vm_scenario(
        tmp.path(),
        name,
        OLS,
        &format!("{OLS_ALGO}[[faults]]\nsite = \"site-2\"\nkind = \"kill\"\nround = 2\n"),
    );
    let out = tmp.path().join("killed");
    let o = run_to(tmp.path(), &killed, &out, &[]);
    if o.status.code() != Some(1) {
        down();
        panic!("{}", stderr(&o));
    }
    let s = summary(&out);
    let error = s.error.expect("an error");
    let msg = error.message;
    let (code, said) = status();
    let next = run_to(tmp.path(), &cfg, &tmp.path().join("next"), &[]);
    down();
    assert!(qemus(&mine).is_empty());
    assert_eq!(error.site.as_deref(), Some("site-2"));
    assert!(msg.contains("its VM is powered off"), "{msg}");
    assert_eq!(code, Some(1), "{said}");
    assert!(
        said.contains("broken: the VM of site-2 was powered off by a kill fault"),
        "{said}"
    );
    let e = stderr(&next);
    assert_eq!(next.status.code(), Some(2), "{e}");
    assert!(
        e.contains("is broken") && e.contains("fedsim fleet down -c"),
        "{e}"
    );
}
