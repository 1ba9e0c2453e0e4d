//! SSH reverse forwarding, for sites that cannot reach the coordinator directly (`[fleet] tunnel`).
//! The site's sshd listens on the site's own 127.0.0.1:<port>. Each connection the agent makes there
//! comes back through the SSH connection and is joined to the coordinator on this side. The site
//! still opens no port to the outside; the controller dials the site, as for provisioning.
//!
//! Each tunnel also carries a lease: a second forward on the site's loopback on which the
//! controller sends a byte a second to whoever connects. A program on the site that holds the
//! lease (`fedsim reap --lease`) learns that the controller is gone, or its link cut, when the
//! bytes stop: fedsim can no longer reach such a site to stop what it started there.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use super::ssh::{Ssh, SshError};
use crate::scenario::SiteSpec;

pub struct Tunnel {
    /// The port on the site's loopback that leads to the coordinator.
    pub remote_port: u16,
    /// The port on the site's loopback where the controller's lease is heard.
    pub lease_port: u16,
    stop: Arc<AtomicBool>,
    pump: Option<JoinHandle<()>>,
}

impl Tunnel {
    /// Ask the site's sshd to listen on its 127.0.0.1 (any free port) and forward here.
    pub fn open(
        spec: &SiteSpec,
        coordinator: SocketAddr,
        timeout: Duration,
    ) -> Result<Tunnel, SshError> {
        Tunnel::over(Ssh::connect(spec, timeout)?, spec, coordinator)
    }

    /// [`Tunnel::open`] over a login made already (while the site was being installed: a login
    /// to an emulated VM takes about a second). The session becomes the tunnel's own.
    pub fn over(ssh: Ssh, spec: &SiteSpec, coordinator: SocketAddr) -> Result<Tunnel, SshError> {
        let forward = || {
            ssh.sess
                .channel_forward_listen(0, Some("127.0.0.1"), None)
                .map_err(|e| SshError::Remote {
                    site: spec.name.clone(),
                    what: "reverse port forward".into(),
                    reason: format!("{e} (does the site's sshd allow TCP forwarding?)"),
                })
        };
        let (listener, remote_port) = forward()?;
        let (lease, lease_port) = forward()?;
        ssh.sess.set_blocking(false);
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let site = spec.name.clone();
        let pump = std::thread::Builder::new()
            .name(format!("tunnel-{site}"))
            .spawn(move || pump(ssh, listener, lease, coordinator, &flag))
            .map_err(|e| SshError::Remote {
                site: spec.name.clone(),
                what: "tunnel thread".into(),
                reason: e.to_string(),
            })?;
        Ok(Tunnel {
            remote_port,
            lease_port,
            stop,
            pump: Some(pump),
        })
    }
}

impl Drop for Tunnel {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(p) = self.pump.take() {
            let _ = p.join();
        }
    }
}

/// Write all of `data`, retrying while the non-blocking side is busy.
fn write_all(w: &mut impl Write, mut data: &[u8], stop: &AtomicBool) -> bool {
    while !data.is_empty() {
        match w.write(data) {
            Ok(0) => return false,
            Ok(n) => data = &data[n..],
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                if stop.load(Ordering::Relaxed) {
                    return false;
                }
                std::thread::sleep(Duration::from_micros(200));
            }
            Err(_) => return false,
        }
    }
    true
}

/// How often the lease's byte is sent.
const LEASE_EVERY: Duration = Duration::from_secs(1);

/// Move bytes both ways between forwarded channels and coordinator sockets until stopped, and
/// keep the leases heard.
fn pump(
    ssh: Ssh,
    mut listener: ssh2::Listener,
    mut lease: ssh2::Listener,
    coordinator: SocketAddr,
    stop: &AtomicBool,
) {
    let _keep = ssh; // the session must outlive its listeners and channels
    let mut pairs: Vec<(ssh2::Channel, TcpStream)> = Vec::new();
    let mut holders: Vec<ssh2::Channel> = Vec::new();
    let mut renewed = std::time::Instant::now();
    let mut buf = vec![0u8; 1 << 16];
    while !stop.load(Ordering::Relaxed) {
        let mut busy = false;
        if let Ok(ch) = lease.accept() {
            holders.push(ch);
            renewed -= LEASE_EVERY;
        }
        if renewed.elapsed() >= LEASE_EVERY {
            renewed = std::time::Instant::now();
            // One byte or none: a holder whose link is cut fills its window, and is not waited
            // for.
            holders.retain_mut(|ch| match ch.write(b".") {
                Ok(_) => true,
                Err(e) => e.kind() == ErrorKind::WouldBlock,
            });
        }
        if let Ok(ch) = listener.accept() {
            match TcpStream::connect(coordinator)
                .and_then(|t| t.set_nodelay(true).map(|()| t))
                .and_then(|t| t.set_nonblocking(true).map(|()| t))
            {
                Ok(tcp) => {
                    pairs.push((ch, tcp));
                    busy = true;
                }
                Err(e) => {
                    tracing::warn!(phase = "launch", error = %e, "tunnel cannot reach the coordinator")
                }
            }
        }
        pairs.retain_mut(|(ch, tcp)| {
            match ch.read(&mut buf) {
                Ok(0) if ch.eof() => return false,
                Ok(0) => {}
                Ok(n) => {
                    busy = true;
                    if !write_all(tcp, &buf[..n], stop) {
                        return false;
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(_) => return false,
            }
            match tcp.read(&mut buf) {
                Ok(0) => {
                    let _ = ch.send_eof();
                    false
                }
                Ok(n) => {
                    busy = true;
                    write_all(ch, &buf[..n], stop)
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => true,
                Err(_) => false,
            }
        });
        if !busy {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}
