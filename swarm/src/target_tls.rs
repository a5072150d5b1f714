//! How the users' HTTPS requests trust the target ([`TargetTls`]): the
//! system's root certificates, plus the CA certificates of `--ca-cert FILE`
//! (an internal CA, [`CaCerts`]); or, with `--accept-invalid-certs`
//! (goose's flag, for staging servers), any certificate at all.
//!
//! A certificate of `--ca-cert` that the target serves as its own is
//! trusted too, for the names it holds: a self-signed server certificate
//! (as `openssl req -x509` makes, `CA:TRUE`), which no chain of trust can
//! accept (webpki refuses a CA certificate as a server's), is trusted
//! exactly as given, as `curl --cacert` trusts it; its names are checked,
//! its dates are not (the user handed that very certificate over).
//!
//! The master reads the CA file once, before anything starts, and sends its
//! certificates (PEM, re-encoded without anything else the file held, at
//! most [`MAX_CA_PEM_BYTES`]) to every worker with each spawn
//! ([`SpawnTls`], in `parsed_options`): a path means nothing on a worker's
//! host, the certificates do. A worker given the flags itself uses them
//! when its master sends none (a Locust master, or ours without them).
//!
//! Whatever the trust, the users' TLS offers only `http/1.1` by ALPN: their
//! client has no HTTP/2, and a server that picks `h2` would break every
//! request.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

pub use crate::protocol::SpawnTls;

/// The most of a `--ca-cert` file read: a CA's certificates are a few
/// kilobytes, even with `openssl x509 -text` dumps beside them; a path
/// naming something else (a log, a device) is refused, not read whole.
pub const MAX_CA_FILE_BYTES: u64 = 1024 * 1024;

/// The most PEM the CA certificates may take once re-encoded: they ride in
/// every spawn to every worker (a ramp sends one per worker per second),
/// and 16 KiB holds eight RSA-4096 certificates (about 2 KiB each) — an
/// internal CA's root and intermediates several times over.
pub const MAX_CA_PEM_BYTES: usize = 16 * 1024;

/// What is wrong with a CA file's content.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    /// The file could not be read.
    #[error("cannot read it ({0}): give the path of a PEM file with the CA's certificate")]
    Read(std::io::Error),
    /// Too big to be a CA file.
    #[error("it is larger than {MAX_CA_FILE_BYTES} bytes: give the file with the CA's certificates only (PEM)")]
    FileTooLarge,
    /// A PEM block is broken.
    #[error("not a PEM certificate file ({0}): expected -----BEGIN CERTIFICATE----- blocks")]
    Pem(String),
    /// No certificate in it.
    #[error("holds no certificate: expected the PEM certificate (-----BEGIN CERTIFICATE-----) of the CA that issued the target's certificate")]
    Empty,
    /// A certificate rustls cannot use as a trust anchor.
    #[error("certificate {index} of the file cannot be trusted as a CA ({reason}): give the CA's certificate in PEM")]
    NotAnchor {
        /// Its place in the file, from 1.
        index: usize,
        /// rustls's reason.
        reason: String,
    },
    /// Too much to send with every spawn.
    #[error("its {count} certificates take {bytes} bytes of PEM; at most {MAX_CA_PEM_BYTES} go to the workers with each spawn: keep only the CA certificates the target's certificate chains to")]
    TooLarge {
        /// Certificates found.
        count: usize,
        /// Their size as PEM.
        bytes: usize,
    },
}

/// A `--ca-cert` file that cannot be used: which file, and why.
#[derive(Debug, thiserror::Error)]
#[error("--ca-cert {}: {error}", path.display())]
pub struct CaFileError {
    /// The file given.
    pub path: PathBuf,
    /// What is wrong with it.
    pub error: CaError,
}

/// CA certificates to trust besides the system's, checked: at least one,
/// each usable as a trust anchor, at most [`MAX_CA_PEM_BYTES`] of PEM.
#[derive(Clone, PartialEq, Eq)]
pub struct CaCerts {
    /// The certificates re-encoded as PEM, nothing else: what travels.
    pem: Arc<str>,
    certs: Arc<[CertificateDer<'static>]>,
}

impl std::fmt::Debug for CaCerts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CaCerts({} certificates)", self.certs.len())
    }
}

impl CaCerts {
    /// Reads and checks `path` (the `--ca-cert` file).
    pub fn from_file(path: &Path) -> Result<CaCerts, CaFileError> {
        let error = |error| CaFileError {
            path: path.to_path_buf(),
            error,
        };
        let bytes = read_bounded(path).map_err(error)?;
        CaCerts::from_pem(&bytes).map_err(error)
    }

    /// Checks the PEM certificates in `pem` (anything else there is
    /// ignored, as a PEM bundle's comments are).
    pub fn from_pem(pem: &[u8]) -> Result<CaCerts, CaError> {
        let certs = CertificateDer::pem_slice_iter(pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| CaError::Pem(e.to_string()))?;
        if certs.is_empty() {
            return Err(CaError::Empty);
        }
        let mut store = rustls::RootCertStore::empty();
        for (i, cert) in certs.iter().enumerate() {
            store.add(cert.clone()).map_err(|e| CaError::NotAnchor {
                index: i + 1,
                reason: e.to_string(),
            })?;
        }
        let pem = encode_pem(&certs);
        if pem.len() > MAX_CA_PEM_BYTES {
            return Err(CaError::TooLarge {
                count: certs.len(),
                bytes: pem.len(),
            });
        }
        Ok(CaCerts {
            pem: pem.into(),
            certs: certs.into(),
        })
    }

    /// The certificates as PEM, nothing else.
    pub fn pem(&self) -> &str {
        &self.pem
    }

    /// How many certificates.
    pub fn count(&self) -> usize {
        self.certs.len()
    }
}

/// Reads at most [`MAX_CA_FILE_BYTES`] of `path`; more is an error.
fn read_bounded(path: &Path) -> Result<Vec<u8>, CaError> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(CaError::Read)?;
    let mut bytes = Vec::new();
    file.take(MAX_CA_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(CaError::Read)?;
    if bytes.len() as u64 > MAX_CA_FILE_BYTES {
        return Err(CaError::FileTooLarge);
    }
    Ok(bytes)
}

/// `certs` as PEM blocks of 64-character lines.
fn encode_pem(certs: &[CertificateDer<'_>]) -> String {
    let mut pem = String::new();
    for cert in certs {
        let text = base64::engine::general_purpose::STANDARD.encode(cert.as_ref());
        pem.push_str("-----BEGIN CERTIFICATE-----\n");
        for line in text.as_bytes().chunks(64) {
            pem.push_str(&String::from_utf8_lossy(line));
            pem.push('\n');
        }
        pem.push_str("-----END CERTIFICATE-----\n");
    }
    pem
}

/// How the users' clients trust the target's certificate.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TargetTls {
    /// CA certificates trusted besides the system's roots.
    pub ca: Option<CaCerts>,
    /// Accept any certificate (goose's `--accept-invalid-certs`): no
    /// check of its issuer, names or dates. The handshake's signatures are
    /// still checked against the certificate's key.
    pub accept_invalid_certs: bool,
}

impl TargetTls {
    /// What the users trust, for a log line.
    pub fn describe(&self) -> String {
        if self.accept_invalid_certs {
            return "any certificate (--accept-invalid-certs: no check of issuer, names or dates)"
                .into();
        }
        match &self.ca {
            Some(ca) => format!(
                "the system's root certificates and {} from --ca-cert",
                plural(ca.count(), "CA certificate")
            ),
            None => "the system's root certificates".into(),
        }
    }

    /// As a spawn carries it.
    pub fn to_spawn(&self) -> SpawnTls {
        SpawnTls {
            ca_cert_pem: self.ca.as_ref().map(|ca| ca.pem().to_string()),
            accept_invalid_certs: self.accept_invalid_certs,
        }
    }

    /// From a spawn, checked as a `--ca-cert` file is.
    pub fn from_spawn(spawn: &SpawnTls) -> Result<TargetTls, CaError> {
        let ca = match &spawn.ca_cert_pem {
            Some(pem) => Some(CaCerts::from_pem(pem.as_bytes())?),
            None => None,
        };
        Ok(TargetTls {
            ca,
            accept_invalid_certs: spawn.accept_invalid_certs,
        })
    }

    /// The users' TLS configuration: the verifier this trust asks for
    /// (built once: it loads the system's roots), `http/1.1` by ALPN.
    pub fn client_config(&self) -> Result<rustls::ClientConfig, rustls::Error> {
        let provider = CryptoProvider::get_default()
            .cloned()
            .unwrap_or_else(|| Arc::new(rustls::crypto::aws_lc_rs::default_provider()));
        let verifier: Arc<dyn ServerCertVerifier> = if self.accept_invalid_certs {
            Arc::new(AcceptAnyCertificate {
                algorithms: provider.signature_verification_algorithms,
            })
        } else {
            let given: Arc<[CertificateDer<'static>]> = match &self.ca {
                Some(ca) => ca.certs.clone(),
                None => Arc::new([]),
            };
            let platform = rustls_platform_verifier::Verifier::new_with_extra_roots(
                given.iter().cloned(),
                provider.clone(),
            )?;
            Arc::new(GivenOrPlatform { given, platform })
        };
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        // HTTP/1.1 only, as Locust's users speak: the client is built
        // without HTTP/2, and offering `h2` would let a server pick it and
        // end every user's first request in a panic.
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(config)
    }
}

fn plural(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

/// The platform's verifier (the system's roots and `--ca-cert`'s), and a
/// certificate of `--ca-cert` served as the server's own, for its names.
#[derive(Debug)]
struct GivenOrPlatform {
    given: Arc<[CertificateDer<'static>]>,
    platform: rustls_platform_verifier::Verifier,
}

impl ServerCertVerifier for GivenOrPlatform {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if self.given.iter().any(|c| c.as_ref() == end_entity.as_ref()) {
            let parsed = rustls::server::ParsedCertificate::try_from(end_entity)?;
            rustls::client::verify_server_name(&parsed, server_name)?;
            return Ok(ServerCertVerified::assertion());
        }
        self.platform
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.platform.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.platform.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.platform.supported_verify_schemes()
    }
}

/// `--accept-invalid-certs`: any certificate is taken as the server's, but
/// the handshake must still be signed by its key (so the connection is at
/// least with whoever holds that key).
#[derive(Debug)]
struct AcceptAnyCertificate {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A CA certificate, as PEM.
    fn ca_pem() -> String {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.self_signed(&key).unwrap().pem()
    }

    #[test]
    fn a_ca_file_is_checked_and_re_encoded() {
        let ca_pem = ca_pem();
        let dir = std::env::temp_dir().join(format!("swarm-ca-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("ca.pem");
        // Text around the block, as `openssl x509 -text` leaves it.
        std::fs::write(&file, format!("Certificate:\n  Data: ...\n{ca_pem}\n")).unwrap();
        let ca = CaCerts::from_file(&file).expect("a CA file");
        assert_eq!(ca.count(), 1);
        assert!(ca.pem().starts_with("-----BEGIN CERTIFICATE-----\n"));
        assert!(!ca.pem().contains("Data"), "only the certificates travel");
        assert_eq!(CaCerts::from_pem(ca.pem().as_bytes()).unwrap(), ca);

        let missing = CaCerts::from_file(&dir.join("nope.pem")).unwrap_err();
        let text = missing.to_string();
        assert!(
            text.starts_with("--ca-cert ")
                && text.contains("nope.pem")
                && text.contains("cannot read"),
            "{text}"
        );
        std::fs::write(&file, "not a certificate\n").unwrap();
        let empty = CaCerts::from_file(&file).unwrap_err().to_string();
        assert!(empty.contains("holds no certificate"), "{empty}");
        std::fs::write(&file, ca_pem.repeat(40)).unwrap();
        let large = CaCerts::from_file(&file).unwrap_err().to_string();
        assert!(
            large.contains("40 certificates") && large.contains("16384"),
            "{large}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_spawn_carries_the_trust_and_the_config_offers_only_http_1_1() {
        let tls = TargetTls {
            ca: Some(CaCerts::from_pem(ca_pem().as_bytes()).unwrap()),
            accept_invalid_certs: false,
        };
        assert_eq!(TargetTls::from_spawn(&tls.to_spawn()).unwrap(), tls);
        let bad = SpawnTls {
            ca_cert_pem: Some("junk".into()),
            accept_invalid_certs: false,
        };
        assert!(matches!(TargetTls::from_spawn(&bad), Err(CaError::Empty)));
        for tls in [
            tls,
            TargetTls::default(),
            TargetTls {
                ca: None,
                accept_invalid_certs: true,
            },
        ] {
            let config = tls.client_config().expect("a client config");
            assert_eq!(config.alpn_protocols, vec![b"http/1.1".to_vec()]);
        }
    }
}
