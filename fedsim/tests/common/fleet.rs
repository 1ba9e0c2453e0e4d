//! The SSH test fleet (`provision/testfleet.sh`): real sshd daemons on loopback addresses (or
//! in network namespaces), one Linux user each; needs root, as CI has.

use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use super::{root, scenario};

/// A running test fleet; `down` on drop stops exactly what `up` started.
pub struct TestFleet {
    pub dir: tempfile::TempDir,
    child: Option<Child>,
    pub user: &'static str,
}

pub fn script() -> PathBuf {
    root().join("provision/testfleet.sh")
}

impl TestFleet {
    pub fn up(n: usize, net: &'static str, user: &'static str) -> TestFleet {
        TestFleet::start(n, &[("FLEET_NET", net), ("FLEET_USER", user)], user)
    }

    /// Each site in a network namespace of its own, on 10.250.<id>.0/24.
    pub fn up_netns(n: usize, id: &'static str, user: &'static str) -> TestFleet {
        TestFleet::start(n, &[("FLEET_NETNS", id), ("FLEET_USER", user)], user)
    }

    pub fn start(n: usize, env: &[(&str, &str)], user: &'static str) -> TestFleet {
        // SAFETY: geteuid has no preconditions.
        assert_eq!(
            unsafe { libc::geteuid() },
            0,
            "the SSH test fleet needs root (useradd, sshd), as CI has"
        );
        let dir = tempfile::tempdir().unwrap();
        // DIR relative to the script's working directory, as people type it: fleet.toml must
        // still name its key and known_hosts by absolute path.
        let child = Command::new("bash")
            .arg(script())
            .args(["up", &n.to_string(), "."])
            .current_dir(dir.path())
            .envs(env.iter().copied())
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("up.log")).unwrap())
            .spawn()
            .expect("testfleet.sh starts");
        let mut fleet = TestFleet {
            dir,
            child: Some(child),
            user,
        };
        let deadline = Instant::now() + Duration::from_secs(120);
        while !fleet.path("ready").exists() {
            if let Some(status) = fleet.child.as_mut().unwrap().try_wait().unwrap() {
                panic!(
                    "testfleet up exited {status}: {}",
                    std::fs::read_to_string(fleet.path("up.log")).unwrap_or_default()
                );
            }
            assert!(Instant::now() < deadline, "test fleet not ready in time");
            std::thread::sleep(Duration::from_millis(100));
        }
        fleet
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn home(&self, i: usize) -> PathBuf {
        PathBuf::from(format!("/home/{}{i}", self.user))
    }

    /// A scenario: `body` plus this fleet's [fleet] and [[sites]].
    /// The fleet's `[fleet]` and `[[sites]]`, each host made into `per` sites: h1-1..h1-per, ...
    pub fn sharded(&self, per: usize) -> String {
        let fragment = std::fs::read_to_string(self.path("fleet.toml")).unwrap();
        let mut sharded = String::new();
        for line in fragment.lines() {
            match line.strip_prefix("name = \"site-") {
                Some(rest) => {
                    let i = rest.trim_end_matches('"');
                    sharded.push_str(&format!("name = \"h{i}\"\ncount = {per}\n"));
                }
                None => {
                    sharded.push_str(line);
                    sharded.push('\n');
                }
            }
        }
        sharded
    }

    pub fn scenario(&self, name: &str, body: &str) -> PathBuf {
        let fragment = std::fs::read_to_string(self.path("fleet.toml")).unwrap();
        scenario(self.dir.path(), name, &format!("{body}\n{fragment}"))
    }
}

impl Drop for TestFleet {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(script())
            .args(["down", self.dir.path().to_str().unwrap()])
            .status();
        if let Some(mut c) = self.child.take() {
            let _ = c.wait();
        }
    }
}
