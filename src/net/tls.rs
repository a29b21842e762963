//! TLS for `turns:` (RFC 8656 §3.1, RFC 7350 ALPN "stun.turn") with rustls:
//! the certificate is read from PEM files and swapped on SIGHUP without
//! touching live sessions; a bad new certificate keeps the old one.

use std::path::Path;
use std::sync::{Arc, RwLock};

use anyhow::Context;
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::Tls;

/// ALPN protocol id of TURN over TLS (RFC 7443).
pub const ALPN_TURN: &[u8] = b"stun.turn";

/// Builds a rustls server config (TLS 1.2 and 1.3) from PEM files.
pub fn load(tls: &Tls) -> anyhow::Result<Arc<ServerConfig>> {
    let certs = read_certs(&tls.cert)?;
    let key = PrivateKeyDer::from_pem_file(&tls.key).with_context(|| {
        format!(
            "cannot read a private key from tls.key {}",
            tls.key.display()
        )
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .context("TLS 1.2 and 1.3 unavailable")?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .with_context(|| {
            format!(
                "tls.cert {} and tls.key {} do not make a usable certificate",
                tls.cert.display(),
                tls.key.display()
            )
        })?;
    config.alpn_protocols = vec![ALPN_TURN.to_vec()];
    Ok(Arc::new(config))
}

fn read_certs(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("cannot read certificates from tls.cert {}", path.display()))?;
    if certs.is_empty() {
        anyhow::bail!("tls.cert {} holds no CERTIFICATE block", path.display());
    }
    Ok(certs)
}

/// The DNS names (SubjectAltName) of the first certificate in `path`: the
/// names a `turns:` URL may use.
pub fn dns_names(path: &Path) -> anyhow::Result<Vec<String>> {
    let certs = read_certs(path)?;
    let cert = webpki::EndEntityCert::try_from(&certs[0])
        .map_err(|e| anyhow::anyhow!("cannot parse the certificate in {}: {e}", path.display()))?;
    Ok(cert.valid_dns_names().map(str::to_owned).collect())
}

/// The certificate in use, replaceable while connections run: a handshake
/// takes the config current at accept time and keeps it.
pub struct Certificate {
    source: RwLock<Tls>,
    current: RwLock<Arc<ServerConfig>>,
}

impl Certificate {
    pub fn new(source: Tls) -> anyhow::Result<Self> {
        let current = RwLock::new(load(&source)?);
        Ok(Certificate {
            source: RwLock::new(source),
            current,
        })
    }

    pub fn current(&self) -> Arc<ServerConfig> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Re-reads the files (from new paths, if given); on error the old
    /// certificate and paths stay.
    pub fn reload(&self, source: Option<Tls>) -> anyhow::Result<()> {
        let mut current_source = self.source.write().unwrap_or_else(|e| e.into_inner());
        let source = source.unwrap_or_else(|| current_source.clone());
        let fresh = load(&source)?;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = fresh;
        *current_source = source;
        Ok(())
    }
}
