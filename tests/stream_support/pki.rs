//! A throw-away certificate authority for the TLS tests: server
//! certificates for "localhost" and 127.0.0.1 made with rcgen, PEM files
//! for turnd's `[tls]`, and rustls client configs that trust only this CA.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    SerialNumber,
};
use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, RootCertStore, SupportedProtocolVersion};

/// A test CA.
pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    pub cert_der: CertificateDer<'static>,
    pub cert_pem: String,
}

/// A server certificate and its key.
pub struct ServerCert {
    pub der: CertificateDer<'static>,
    pub cert_pem: String,
    pub key_pem: String,
}

impl ServerCert {
    /// Writes `cert.pem` and `key.pem` into `dir` (replacing them by
    /// rename, as certificate renewal tools do) and returns their paths.
    pub fn write_to(&self, dir: &Path) -> (PathBuf, PathBuf) {
        let cert = dir.join("cert.pem");
        let key = dir.join("key.pem");
        replace_file(&cert, self.cert_pem.as_bytes());
        replace_file(&key, self.key_pem.as_bytes());
        (cert, key)
    }
}

/// Replaces `path` atomically with `contents`.
pub fn replace_file(path: &Path, contents: &[u8]) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, contents).unwrap_or_else(|e| panic!("write {}: {e}", tmp.display()));
    std::fs::rename(&tmp, path).unwrap_or_else(|e| panic!("rename to {}: {e}", path.display()));
}

impl TestCa {
    pub fn new() -> Self {
        let key = KeyPair::generate().expect("generate the CA key");
        let mut params = CertificateParams::new(Vec::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "turnd test CA");
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = params.self_signed(&key).expect("self-sign the CA");
        TestCa {
            cert_der: cert.der().clone(),
            cert_pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A server certificate for "localhost" and 127.0.0.1 with its own key,
    /// common name and serial number.
    pub fn server_cert(&self, common_name: &str, serial: u64) -> ServerCert {
        let key = KeyPair::generate().expect("generate a server key");
        let mut params =
            CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
                .expect("server params");
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.serial_number = Some(SerialNumber::from_slice(&serial.to_be_bytes()));
        let cert = params
            .signed_by(&key, &self.issuer)
            .expect("sign the server certificate");
        ServerCert {
            der: cert.der().clone(),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }

    /// A client config trusting only this CA, limited to `versions`,
    /// offering ALPN "stun.turn" when `alpn` is set.
    pub fn client_config(
        &self,
        versions: &[&'static SupportedProtocolVersion],
        alpn: bool,
    ) -> Arc<ClientConfig> {
        let mut roots = RootCertStore::empty();
        roots.add(self.cert_der.clone()).expect("trust the test CA");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)
            .expect("TLS versions supported")
            .with_root_certificates(roots)
            .with_no_client_auth();
        if alpn {
            config.alpn_protocols = vec![b"stun.turn".to_vec()];
        }
        Arc::new(config)
    }

    /// A client config with TLS 1.2 and 1.3 and ALPN "stun.turn".
    pub fn default_client_config(&self) -> Arc<ClientConfig> {
        self.client_config(&[&rustls::version::TLS13, &rustls::version::TLS12], true)
    }
}
