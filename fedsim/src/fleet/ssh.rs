//! SSH plumbing shared by the `ssh` and `vagrant` providers and by `fedsim check`: connect with the
//! host key checked against known_hosts, authenticate by key file, run commands, move files by SFTP.
//!
//! An unknown or changed host key is refused, never accepted silently. The error says how to accept
//! the key deliberately, after checking the fingerprint.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine;
use ssh2::{CheckResult, HashType, KnownHostFileKind, Session};

use crate::scenario::SiteSpec;

#[derive(Debug, thiserror::Error)]
pub enum SshError {
    #[error("site {site}: cannot reach {host}:{port}: {reason}")]
    Connect {
        site: String,
        host: String,
        port: u16,
        reason: String,
    },
    #[error("site {site}: the host key of [{host}]:{port} ({fingerprint}) is not in {}. Check the fingerprint with the host's administrator, then accept it deliberately: ssh-keyscan -p {port} {host} >> {}", known_hosts.display(), known_hosts.display())]
    UnknownHostKey {
        site: String,
        host: String,
        port: u16,
        fingerprint: String,
        known_hosts: PathBuf,
    },
    #[error("site {site}: the host key of [{host}]:{port} CHANGED (now {fingerprint}); {} holds another key for it. This may be an attack or a reinstalled host: refusing. If the change is expected, remove the old entry (ssh-keygen -R '[{host}]:{port}' -f {}) and accept the new key deliberately", known_hosts.display(), known_hosts.display())]
    ChangedHostKey {
        site: String,
        host: String,
        port: u16,
        fingerprint: String,
        known_hosts: PathBuf,
    },
    #[error("site {site}: cannot read known_hosts {}: {reason}", known_hosts.display())]
    KnownHosts {
        site: String,
        known_hosts: PathBuf,
        reason: String,
    },
    #[error("site {site}: authentication as {user} with key {} failed: {reason}", key.display())]
    Auth {
        site: String,
        user: String,
        key: PathBuf,
        reason: String,
    },
    #[error("site {site}: {what} failed: {reason}")]
    Remote {
        site: String,
        what: String,
        reason: String,
    },
}

/// Default known_hosts: the controller user's own.
pub fn default_known_hosts() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/root"))
        .join(".ssh/known_hosts")
}

/// `SHA256:<base64>` as OpenSSH prints host key fingerprints.
fn fingerprint(sess: &Session) -> String {
    sess.host_key_hash(HashType::Sha256)
        .map(|h| {
            format!(
                "SHA256:{}",
                base64::engine::general_purpose::STANDARD_NO_PAD.encode(h)
            )
        })
        .unwrap_or_else(|| "unknown".into())
}

/// An authenticated session to one site.
pub struct Ssh {
    pub site: String,
    pub sess: Session,
}

impl Ssh {
    /// Connect, check the host key, authenticate. `timeout` bounds every blocking SSH call.
    pub fn connect(spec: &SiteSpec, timeout: Duration) -> Result<Ssh, SshError> {
        let site = spec.name.clone();
        let conn = |reason: String| SshError::Connect {
            site: site.clone(),
            host: spec.host.clone(),
            port: spec.port,
            reason,
        };
        let addr = (spec.host.as_str(), spec.port)
            .to_socket_addrs()
            .map_err(|e| conn(e.to_string()))?
            .next()
            .ok_or_else(|| conn("no address".into()))?;
        let tcp = TcpStream::connect_timeout(&addr, timeout).map_err(|e| conn(e.to_string()))?;
        // Small messages go at once, as OpenSSH does for interactive sessions: with Nagle, a
        // tunnelled frame behind a window adjust waited for the site's ACK, which a linked VM
        // delays by its whole latency (a 100 ms link added 128 ms in VMs against 101 ms locally).
        let _ = tcp.set_nodelay(true);
        let mut sess = Session::new().map_err(|e| conn(e.to_string()))?;
        sess.set_tcp_stream(tcp);
        sess.set_timeout(timeout.as_millis().min(u32::MAX as u128) as u32);
        sess.handshake()
            .map_err(|e| conn(format!("SSH handshake: {e}")))?;
        check_host_key(spec, &sess)?;
        sess.userauth_pubkey_file(&spec.user, None, &spec.key, None)
            .map_err(|e| SshError::Auth {
                site: site.clone(),
                user: spec.user.clone(),
                key: spec.key.clone(),
                reason: e.message().to_string(),
            })?;
        Ok(Ssh { site, sess })
    }

    fn remote(&self, what: &str, reason: impl ToString) -> SshError {
        SshError::Remote {
            site: self.site.clone(),
            what: what.into(),
            reason: reason.to_string(),
        }
    }

    /// Run a shell command; returns exit status, stdout and stderr.
    pub fn exec(&self, command: &str) -> Result<(i32, String, String), SshError> {
        let what = "remote command";
        let mut ch = self
            .sess
            .channel_session()
            .map_err(|e| self.remote(what, e))?;
        ch.exec(command).map_err(|e| self.remote(what, e))?;
        let mut out = String::new();
        ch.read_to_string(&mut out)
            .map_err(|e| self.remote(what, e))?;
        let mut err = String::new();
        ch.stderr()
            .read_to_string(&mut err)
            .map_err(|e| self.remote(what, e))?;
        ch.wait_close().map_err(|e| self.remote(what, e))?;
        let status = ch.exit_status().map_err(|e| self.remote(what, e))?;
        Ok((status, out, err))
    }

    /// [`Ssh::exec`] that gives up after `limit` (the session's own timeout is restored after):
    /// for polls that must not hold up whoever asks, e.g. the coordinator between rounds.
    pub fn exec_within(
        &self,
        command: &str,
        limit: Duration,
    ) -> Result<(i32, String, String), SshError> {
        let before = self.sess.timeout();
        self.sess
            .set_timeout(limit.as_millis().min(u32::MAX as u128) as u32);
        let out = self.exec(command);
        self.sess.set_timeout(before);
        out
    }

    /// Run a command that must succeed; its stdout.
    pub fn run(&self, what: &str, command: &str) -> Result<String, SshError> {
        let (status, out, err) = self.exec(command)?;
        if status != 0 {
            let detail = if err.trim().is_empty() {
                out.trim()
            } else {
                err.trim()
            };
            return Err(self.remote(what, format!("exit {status}: {}", last_line(detail))));
        }
        Ok(out)
    }

    /// Write `bytes` to `path` (relative to the login directory) with `mode`, via a temporary
    /// name and a rename so a reader never sees half a file. The mode is set at creation.
    pub fn upload(&self, bytes: &[u8], path: &str, mode: i32) -> Result<(), SshError> {
        let sftp = self
            .sess
            .sftp()
            .map_err(|e| self.remote(&format!("upload of {path}"), e))?;
        self.put(&sftp, bytes, path, mode)
    }

    /// [`Ssh::upload`] for many files over one SFTP session: `(bytes, path, mode)` each.
    pub fn upload_all(&self, files: &[(&[u8], String, i32)]) -> Result<(), SshError> {
        let what = format!("upload of {} files", files.len());
        let sftp = self.sess.sftp().map_err(|e| self.remote(&what, e))?;
        for (bytes, path, mode) in files {
            self.put(&sftp, bytes, path, *mode)?;
        }
        Ok(())
    }

    /// Write one file through `sftp`, under a temporary name renamed into place.
    fn put(&self, sftp: &ssh2::Sftp, bytes: &[u8], path: &str, mode: i32) -> Result<(), SshError> {
        let what = format!("upload of {path}");
        let tmp = format!("{path}.part");
        let mut f = sftp
            .open_mode(
                Path::new(&tmp),
                ssh2::OpenFlags::WRITE | ssh2::OpenFlags::TRUNCATE,
                mode,
                ssh2::OpenType::File,
            )
            .map_err(|e| self.remote(&what, e))?;
        for chunk in bytes.chunks(1 << 20) {
            f.write_all(chunk).map_err(|e| self.remote(&what, e))?;
        }
        drop(f);
        let _ = sftp.unlink(Path::new(path));
        sftp.rename(Path::new(&tmp), Path::new(path), None)
            .map_err(|e| self.remote(&what, e))
    }

    /// Read a whole remote file.
    pub fn download(&self, path: &str) -> Result<Vec<u8>, SshError> {
        let what = format!("download of {path}");
        let sftp = self.sess.sftp().map_err(|e| self.remote(&what, e))?;
        let mut f = sftp
            .open(Path::new(path))
            .map_err(|e| self.remote(&what, e))?;
        let mut out = Vec::new();
        f.read_to_end(&mut out).map_err(|e| self.remote(&what, e))?;
        Ok(out)
    }
}

/// The last non-empty line of a command's output, trimmed: what people need from it.
pub fn last_line(s: &str) -> &str {
    s.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim()
}

fn check_host_key(spec: &SiteSpec, sess: &Session) -> Result<(), SshError> {
    let known_hosts = spec.known_hosts.clone().unwrap_or_else(default_known_hosts);
    let site = spec.name.clone();
    let (key, _) = sess.host_key().ok_or_else(|| SshError::Connect {
        site: site.clone(),
        host: spec.host.clone(),
        port: spec.port,
        reason: "the server sent no host key".into(),
    })?;
    let fingerprint = fingerprint(sess);
    let mut kh = sess.known_hosts().map_err(|e| SshError::KnownHosts {
        site: site.clone(),
        known_hosts: known_hosts.clone(),
        reason: e.to_string(),
    })?;
    if known_hosts.exists() {
        kh.read_file(&known_hosts, KnownHostFileKind::OpenSSH)
            .map_err(|e| SshError::KnownHosts {
                site: site.clone(),
                known_hosts: known_hosts.clone(),
                reason: e.message().to_string(),
            })?;
    }
    match kh.check_port(&spec.host, spec.port, key) {
        CheckResult::Match => Ok(()),
        CheckResult::Mismatch => Err(SshError::ChangedHostKey {
            site,
            host: spec.host.clone(),
            port: spec.port,
            fingerprint,
            known_hosts,
        }),
        CheckResult::NotFound | CheckResult::Failure => Err(SshError::UnknownHostKey {
            site,
            host: spec.host.clone(),
            port: spec.port,
            fingerprint,
            known_hosts,
        }),
    }
}

/// Quote a string for a POSIX shell.
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}
