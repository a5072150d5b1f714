//! HTTPS for the web UI (`--tls-cert PEM --tls-key PEM`, Locust's flag
//! names): the certificate chain and its private key read from PEM files
//! and checked against each other before anything starts, then served with
//! rustls (aws-lc-rs, the provider the workers' clients use), HTTP/1.1 only.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// A certificate or key file that cannot be served: which file, and why.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The file could not be read.
    #[error("{flag} {}: cannot read it: {error}", path.display())]
    Read {
        /// `--tls-cert` or `--tls-key`.
        flag: &'static str,
        /// The file given.
        path: PathBuf,
        /// The I/O error.
        error: std::io::Error,
    },
    /// The file holds no PEM block of the kind expected, or a broken one.
    #[error("{flag} {}: {what}", path.display())]
    Pem {
        /// `--tls-cert` or `--tls-key`.
        flag: &'static str,
        /// The file given.
        path: PathBuf,
        /// What is wrong and what the file should hold.
        what: String,
    },
    /// rustls refused the pair: a key that does not match the certificate,
    /// or a kind of key it cannot sign with.
    #[error("--tls-cert {} with --tls-key {}: {reason}; give the key the certificate was made for", cert.display(), key.display())]
    Pair {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// Why, from rustls's error.
        reason: String,
    },
}

/// A certificate and key ready to serve, cheap to clone.
#[derive(Clone)]
pub struct WebTls {
    config: Arc<rustls::ServerConfig>,
}

impl std::fmt::Debug for WebTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebTls")
    }
}

impl WebTls {
    /// Reads the certificate chain (`cert`, PEM, the server's certificate
    /// first) and its private key (`key`, PEM: PKCS#8, PKCS#1 or SEC1) and
    /// checks that they belong together.
    pub fn load(cert: &Path, key: &Path) -> Result<WebTls, TlsError> {
        let cert_pem = read(cert, "--tls-cert")?;
        let key_pem = read(key, "--tls-key")?;
        let pem_error = |flag, path: &Path, what: String| TlsError::Pem {
            flag,
            path: path.to_path_buf(),
            what,
        };
        let chain = CertificateDer::pem_slice_iter(&cert_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| pem_error("--tls-cert", cert, format!("not a PEM certificate ({e})")))?;
        if chain.is_empty() {
            return Err(pem_error(
                "--tls-cert",
                cert,
                "holds no certificate: expected a PEM file with -----BEGIN CERTIFICATE-----".into(),
            ));
        }
        let private_key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
            pem_error(
                "--tls-key",
                key,
                format!("holds no private key ({e}): expected a PEM file with -----BEGIN PRIVATE KEY----- (or RSA/EC PRIVATE KEY)"),
            )
        })?;
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let pair = |error| TlsError::Pair {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            reason: match error {
                rustls::Error::InconsistentKeys(_) => {
                    "the private key is not the certificate's".to_string()
                }
                other => other.to_string(),
            },
        };
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(pair)?
            .with_no_client_auth()
            .with_single_cert(chain, private_key)
            .map_err(pair)?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(WebTls {
            config: Arc::new(config),
        })
    }

    pub(super) fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(self.config.clone())
    }
}

fn read(path: &Path, flag: &'static str) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|error| TlsError::Read {
        flag,
        path: path.to_path_buf(),
        error,
    })
}
