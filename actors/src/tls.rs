//! SIP over TLS (RFC 3261 §26.2, RFC 5630): the server side on its own
//! port (5061 by default) with the certificate and key from the
//! configuration, and the client side for trunks whose transport is `tls`,
//! verifying their certificate against the configured trust anchors and
//! the trunk's name.
//!
//! TLS here is only the transport: once a connection is up, its frames go
//! through the same framing, parsing and routing as TCP (see
//! [`crate::transport`]). rustls with the `ring` provider; TLS 1.2 and 1.3.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore, ServerConfig};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::config::TrunkRoute;

/// Where Debian keeps the system's trust anchors.
pub const SYSTEM_CA_FILE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// How long a TLS handshake may take before the connection is dropped (a
/// peer that connects and says nothing must not hold a task for ever).
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The `[tls]` settings.
#[derive(Debug, Clone, Default)]
pub struct TlsConfig {
    /// Serve SIP over TLS on this address (`None`: no TLS listener). Port 0
    /// picks a free one.
    pub listen: Option<SocketAddr>,
    /// The address written into Via and Contact for TLS (default: the
    /// advertised SIP IP with the bound TLS port).
    pub advertise: Option<SocketAddr>,
    /// The server's certificate chain (PEM), leaf first.
    pub cert: Option<PathBuf>,
    /// The server's private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key: Option<PathBuf>,
    /// Trust anchors for the certificates of trunks reached over TLS (PEM).
    /// Default: the system's bundle, [`SYSTEM_CA_FILE`].
    pub ca_file: Option<PathBuf>,
}

/// Errors setting TLS up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read or parsed.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: rustls_pki_types::pem::Error,
    },
    /// The certificate file holds no certificate.
    #[error("{0}: no certificate in it")]
    NoCertificate(PathBuf),
    /// A listener was asked for without a certificate and key.
    #[error("tls.listen needs tls.cert and tls.key")]
    MissingCertificate,
    /// A trunk's TLS name is not a valid DNS name or IP address.
    #[error("trunk {trunk}: tls_name {name:?} is not a DNS name or IP address")]
    BadName {
        /// The trunk.
        trunk: String,
        /// The name.
        name: String,
    },
    /// A carrier is recognised by certificate and no trust anchor could be
    /// loaded to verify one.
    #[error("a trunk has accept_tls_names but no trust anchors were found (set tls.ca_file)")]
    NoClientAnchors,
    /// A trunk asks for TLS and no trust anchor could be loaded.
    #[error("trunk {0} uses TLS but no trust anchors were found (set tls.ca_file)")]
    NoTrustAnchors(String),
    /// rustls refused the configuration (e.g. the key does not match).
    #[error("tls: {0}")]
    Rustls(#[from] rustls::Error),
}

/// The TLS side of the transport.
pub struct Tls {
    /// Accepts TLS connections (when a listener is configured).
    pub acceptor: Option<TlsAcceptor>,
    /// Opens TLS connections to trunks (and back to phones).
    pub connector: TlsConnector,
    /// The name each TLS trunk's certificate must carry, by address.
    names: HashMap<SocketAddr, ServerName<'static>>,
    /// Carriers recognised by their client certificate: (trunk index in
    /// `routing.trunks`, the names its certificate may carry).
    peers: Vec<(usize, Vec<ServerName<'static>>)>,
}

impl Tls {
    /// Load certificates and keys and build both sides.
    pub fn new(cfg: &TlsConfig, trunks: &[TrunkRoute]) -> Result<Tls, TlsError> {
        let acceptor = match (&cfg.listen, &cfg.cert, &cfg.key) {
            (None, _, _) => None,
            (Some(_), Some(cert), Some(key)) => {
                let chain = certificates(cert)?;
                let key = PrivateKeyDer::from_pem_file(key).map_err(|source| TlsError::Read {
                    path: key.clone(),
                    source,
                })?;
                let builder = ServerConfig::builder_with_provider(provider())
                    .with_safe_default_protocol_versions()?;
                // Carriers recognised by certificate: ask every client for
                // one (phones may show none), verified against ca_file.
                let server = if trunks
                    .iter()
                    .any(|t| t.inbound && !t.accept_tls_names.is_empty())
                {
                    let roots = roots(cfg.ca_file.as_deref())?;
                    if roots.is_empty() {
                        return Err(TlsError::NoClientAnchors);
                    }
                    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                        Arc::new(roots),
                        provider(),
                    )
                    .allow_unauthenticated()
                    .build()
                    .map_err(|e| TlsError::Rustls(rustls::Error::General(e.to_string())))?;
                    builder
                        .with_client_cert_verifier(verifier)
                        .with_single_cert(chain, key)?
                } else {
                    builder.with_no_client_auth().with_single_cert(chain, key)?
                };
                Some(TlsAcceptor::from(Arc::new(server)))
            }
            (Some(_), _, _) => return Err(TlsError::MissingCertificate),
        };
        let tls_trunks: Vec<&TrunkRoute> = trunks
            .iter()
            .filter(|t| t.transport == crate::config::SipTransport::Tls)
            .collect();
        let (connector, anchors) = client(cfg.ca_file.as_deref())?;
        if let Some(first) = tls_trunks.first()
            && anchors == 0
        {
            return Err(TlsError::NoTrustAnchors(first.name.clone()));
        }
        let mut names = HashMap::new();
        for t in tls_trunks {
            let name = match &t.tls_name {
                Some(n) => ServerName::try_from(n.clone()).map_err(|_| TlsError::BadName {
                    trunk: t.name.clone(),
                    name: n.clone(),
                })?,
                None => ServerName::IpAddress(t.addr.ip().into()),
            };
            names.insert(t.addr, name);
        }
        let mut peers = Vec::new();
        for (i, t) in trunks.iter().enumerate() {
            if !t.inbound || t.accept_tls_names.is_empty() {
                continue;
            }
            let names = t
                .accept_tls_names
                .iter()
                .map(|n| {
                    ServerName::try_from(n.clone()).map_err(|_| TlsError::BadName {
                        trunk: t.name.clone(),
                        name: n.clone(),
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            peers.push((i, names));
        }
        Ok(Tls {
            acceptor,
            connector,
            names,
            peers,
        })
    }

    /// The carrier (its index in `routing.trunks`) whose names the client
    /// certificate `leaf` carries; the handshake has verified the chain.
    pub fn peer_of(&self, leaf: &CertificateDer<'_>) -> Option<usize> {
        if self.peers.is_empty() {
            return None;
        }
        let cert = webpki::EndEntityCert::try_from(leaf).ok()?;
        self.peers.iter().find_map(|(i, names)| {
            names
                .iter()
                .any(|n| cert.verify_is_valid_for_subject_name(n).is_ok())
                .then_some(*i)
        })
    }

    /// The name the certificate at `addr` must carry: the trunk's
    /// `tls_name`, else its IP address.
    pub fn server_name(&self, addr: SocketAddr) -> ServerName<'static> {
        self.names
            .get(&addr)
            .cloned()
            .unwrap_or_else(|| ServerName::IpAddress(addr.ip().into()))
    }
}

/// The crypto of every TLS configuration here.
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A TLS client verifying servers against the certificates in `ca_file`
/// (PEM), else the system's bundle when there is one; with the number of
/// trust anchors it holds. Trunks and https status callbacks use it.
pub fn client(ca_file: Option<&Path>) -> Result<(TlsConnector, usize), TlsError> {
    let roots = roots(ca_file)?;
    let anchors = roots.len();
    let config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok((TlsConnector::from(Arc::new(config)), anchors))
}

/// The trust anchors in `ca_file` (PEM), else the system's bundle when
/// there is one.
fn roots(ca_file: Option<&Path>) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    let path = ca_file.unwrap_or(Path::new(SYSTEM_CA_FILE));
    if ca_file.is_some() || path.exists() {
        roots.add_parsable_certificates(certificates(path)?);
    }
    Ok(roots)
}

/// Every certificate in a PEM file (at least one).
fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let read = |source| TlsError::Read {
        path: path.to_owned(),
        source,
    };
    let chain = CertificateDer::pem_file_iter(path)
        .map_err(read)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(read)?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate(path.to_owned()));
    }
    Ok(chain)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listener_without_certificate_is_refused() {
        let cfg = TlsConfig {
            listen: Some("127.0.0.1:0".parse().unwrap_or_else(|_| unreachable!())),
            ..Default::default()
        };
        assert!(matches!(
            Tls::new(&cfg, &[]),
            Err(TlsError::MissingCertificate)
        ));
    }

    #[test]
    fn a_missing_certificate_file_names_the_file() {
        let cfg = TlsConfig {
            listen: Some("127.0.0.1:0".parse().unwrap_or_else(|_| unreachable!())),
            cert: Some("/nonexistent/cert.pem".into()),
            key: Some("/nonexistent/key.pem".into()),
            ..Default::default()
        };
        let err = Tls::new(&cfg, &[]).err().map(|e| e.to_string());
        assert!(
            err.as_deref()
                .is_some_and(|e| e.contains("/nonexistent/cert.pem")),
            "{err:?}"
        );
    }

    #[test]
    fn a_tls_trunk_without_trust_anchors_is_refused() {
        let mut t = TrunkRoute::new(
            "secure",
            "127.0.0.1:5061".parse().unwrap_or_else(|_| unreachable!()),
            Default::default(),
        );
        t.transport = crate::config::SipTransport::Tls;
        t.tls_name = Some("trunk.example.net".into());
        let dir = std::env::temp_dir().join(format!("sb-tls-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let ca = dir.join("empty.pem");
        let _ = std::fs::write(&ca, "");
        let cfg = TlsConfig {
            ca_file: Some(ca),
            ..Default::default()
        };
        // No anchors: a TLS trunk could never be verified.
        assert!(matches!(
            Tls::new(&cfg, std::slice::from_ref(&t)),
            Err(TlsError::NoCertificate(_) | TlsError::NoTrustAnchors(_))
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
