//! The `vagrant` provider: `vagrant up` on the project's Vagrantfile (one VM per site, N from
//! `FEDSIM_SITES`), then `vagrant ssh-config` parsed into ssh sites. Host keys are read from each
//! VM over Vagrant's own channel and written to a known_hosts of the run. They are never taken
//! on first use by the SSH connection itself.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::scenario::SiteSpec;

#[derive(Debug, thiserror::Error)]
pub enum VagrantError {
    #[error("`vagrant {args}` in {}: {reason}", dir.display())]
    Command {
        args: String,
        dir: PathBuf,
        reason: String,
    },
    #[error("vagrant ssh-config: host {host:?} has no {field}")]
    Incomplete { host: String, field: &'static str },
}

/// Parse `vagrant ssh-config` output: one site per `Host` block, in the order given.
pub fn parse_ssh_config(text: &str, known_hosts: &Path) -> Result<Vec<SiteSpec>, VagrantError> {
    let mut sites: Vec<(String, Vec<(String, String)>)> = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (key, value) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
        let value = value.trim().trim_matches('"').to_string();
        if key.eq_ignore_ascii_case("Host") {
            sites.push((value, Vec::new()));
        } else if let Some((_, fields)) = sites.last_mut() {
            fields.push((key.to_ascii_lowercase(), value));
        }
    }
    sites
        .into_iter()
        .map(|(host, fields)| {
            let get = |k: &'static str| {
                fields
                    .iter()
                    .find(|(f, _)| f == k)
                    .map(|(_, v)| v.clone())
                    .ok_or(VagrantError::Incomplete {
                        host: host.clone(),
                        field: k,
                    })
            };
            Ok(SiteSpec {
                host: get("hostname")?,
                port: get("port").ok().and_then(|p| p.parse().ok()).unwrap_or(22),
                user: get("user")?,
                key: PathBuf::from(get("identityfile")?),
                known_hosts: Some(known_hosts.to_path_buf()),
                env: None,
                cut_command: None,
                name: host,
            })
        })
        .collect()
}

fn vagrant(dir: &Path, args: &[&str], sites: usize) -> Result<String, VagrantError> {
    let fail = |reason: String| VagrantError::Command {
        args: args.join(" "),
        dir: dir.to_path_buf(),
        reason,
    };
    let out = Command::new("vagrant")
        .args(args)
        .current_dir(dir)
        .env("FEDSIM_SITES", sites.to_string())
        .output()
        .map_err(|e| fail(format!("{e} (is Vagrant installed?)")))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(fail(
            err.lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("failed")
                .to_string(),
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Bring the VMs up and describe them as ssh sites; their host keys go into `known_hosts`.
pub fn sites(dir: &Path, count: usize, known_hosts: &Path) -> Result<Vec<SiteSpec>, VagrantError> {
    vagrant(dir, &["up"], count)?;
    let specs = parse_ssh_config(&vagrant(dir, &["ssh-config"], count)?, known_hosts)?;
    let mut lines = String::new();
    for s in &specs {
        let key = vagrant(
            dir,
            &[
                "ssh",
                &s.name,
                "-c",
                "cat /etc/ssh/ssh_host_ed25519_key.pub",
            ],
            count,
        )?;
        let mut parts = key.split_whitespace();
        if let (Some(kind), Some(b64)) = (parts.next(), parts.next()) {
            lines.push_str(&format!("[{}]:{} {kind} {b64}\n", s.host, s.port));
        }
    }
    std::fs::write(known_hosts, lines).map_err(|e| VagrantError::Command {
        args: "ssh (host keys)".into(),
        dir: dir.to_path_buf(),
        reason: e.to_string(),
    })?;
    Ok(specs)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Recorded from `vagrant ssh-config` with the libvirt provider and two VMs.
    const RECORDED: &str = include_str!("../../../test_data/vagrant_ssh_config.txt");

    #[test]
    fn parses_recorded_ssh_config() {
        let sites = parse_ssh_config(RECORDED, Path::new("kh")).unwrap();
        assert_eq!(sites.len(), 2);
        assert_eq!(sites[0].name, "site-1");
        assert_eq!(sites[0].host, "192.168.121.23");
        assert_eq!(sites[0].port, 22);
        assert_eq!(sites[0].user, "vagrant");
        assert_eq!(
            sites[0].key,
            PathBuf::from("/home/ana/fedsim/.vagrant/machines/site-1/libvirt/private_key")
        );
        assert_eq!(sites[1].name, "site-2");
        assert_eq!(sites[1].host, "127.0.0.1");
        assert_eq!(sites[1].port, 2200);
        assert_eq!(
            sites[1].key,
            PathBuf::from("/home/ana/my vms/.vagrant/machines/site-2/virtualbox/private_key")
        );
        assert!(sites
            .iter()
            .all(|s| s.known_hosts.as_deref() == Some(Path::new("kh"))));
    }

    #[test]
    fn incomplete_block_is_named() {
        let e = parse_ssh_config("Host site-1\n  User vagrant\n", Path::new("kh")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "vagrant ssh-config: host \"site-1\" has no hostname"
        );
    }
}
