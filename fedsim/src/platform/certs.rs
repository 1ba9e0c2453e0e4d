//! A run's own TLS: a certificate authority made for the run, and the server certificate it signs
//! for the loopback addresses the platform's server listens on. Nothing outlives the run's
//! directory; the CA's key is never written.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, SanType};

use super::PlatformError;

/// The files a server and its clients are given.
pub struct Certs {
    /// The run's CA certificate: what every client trusts.
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    /// The server's private key (mode 600).
    pub server_key: PathBuf,
}

/// Make the run's CA and a server certificate for 127.0.0.1 and `localhost`, in `dir`.
pub fn make(dir: &Path) -> Result<Certs, PlatformError> {
    let bad = |e: rcgen::Error| PlatformError::Certs(e.to_string());
    let ca_key = KeyPair::generate().map_err(bad)?;
    let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(bad)?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "fedsim run CA");
    let ca_cert = ca.self_signed(&ca_key).map_err(bad)?;
    let key = KeyPair::generate().map_err(bad)?;
    let mut server = CertificateParams::new(vec!["localhost".to_string()]).map_err(bad)?;
    server
        .subject_alt_names
        .push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
    server
        .distinguished_name
        .push(DnType::CommonName, "fedsim platform server");
    let cert = server.signed_by(&key, &ca_cert, &ca_key).map_err(bad)?;
    let certs = Certs {
        ca: dir.join("ca.pem"),
        server_cert: dir.join("server.pem"),
        server_key: dir.join("server.key"),
    };
    let write = |path: &Path, text: &str| {
        crate::sys::fsio::write_with_mode(path, text.as_bytes(), Some(0o600)).map_err(|e| {
            PlatformError::Io {
                path: path.to_path_buf(),
                source: e,
            }
        })
    };
    write(&certs.ca, &ca_cert.pem())?;
    write(&certs.server_cert, &cert.pem())?;
    write(&certs.server_key, &key.serialize_pem())?;
    Ok(certs)
}
