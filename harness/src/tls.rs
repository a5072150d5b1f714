//! Certificates for HTTPS targets, made in the test: a [`TestCa`] (a CA
//! certificate and key, as an internal CA is) issues [`Leaf`]s (a server
//! certificate for `127.0.0.1` and `localhost`, `CA:FALSE`, with its key),
//! which [`crate::Nginx`] serves with [`crate::NginxTls`]. A worker trusts
//! the leaf only when given the CA (`--ca-cert`).
//!
//! Made with rcgen (on aws-lc-rs, the provider the workers use), which the
//! workspace already builds: no `openssl` binary to find, no subprocess,
//! and every test gets a CA of its own in microseconds.
//!
//! [`negotiated_alpn`] opens one TLS connection and says which protocol
//! the server chose from those offered: the positive signal that a target
//! offers `h2`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};

/// The names every leaf is valid for: how tests reach nginx.
pub const LEAF_NAMES: [&str; 2] = ["127.0.0.1", "localhost"];

/// How long [`negotiated_alpn`] waits for the handshake.
const HANDSHAKE_LIMIT: Duration = Duration::from_secs(10);

/// A CA made for one test: its certificate (PEM) and the key it signs with.
pub struct TestCa {
    cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl std::fmt::Debug for TestCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TestCa")
    }
}

/// A server certificate a [`TestCa`] issued, and its private key (PEM).
#[derive(Debug, Clone)]
pub struct Leaf {
    /// The certificate, PEM.
    pub cert_pem: String,
    /// Its private key, PEM (PKCS#8).
    pub key_pem: String,
}

impl TestCa {
    /// A new CA named `name` (its common name): `CA:TRUE`, for signing
    /// certificates only.
    pub fn new(name: &str) -> TestCa {
        let key = KeyPair::generate().expect("rcgen makes a key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("no names: valid");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, name);
        let cert = params.self_signed(&key).expect("rcgen signs the CA");
        TestCa {
            cert_pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// The CA's certificate, PEM: what `--ca-cert` is given.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// Writes the CA's certificate to `dir/ca.pem` and returns the path.
    pub fn write_cert(&self, dir: &Path) -> PathBuf {
        let path = dir.join("ca.pem");
        std::fs::write(&path, &self.cert_pem).expect("cannot write the CA certificate");
        path
    }

    /// A server certificate for [`LEAF_NAMES`], issued by this CA.
    pub fn issue_leaf(&self) -> Leaf {
        let key = KeyPair::generate().expect("rcgen makes a key");
        let names: Vec<String> = LEAF_NAMES.map(String::from).to_vec();
        let mut params = CertificateParams::new(names).expect("valid names");
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params
            .distinguished_name
            .push(DnType::CommonName, "spotload test target");
        let cert = params
            .signed_by(&key, &self.issuer)
            .expect("the CA signs the leaf");
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }
}

/// A self-signed server certificate for [`LEAF_NAMES`] with `CA:TRUE`, as
/// `openssl req -x509` makes one by default: what a quick HTTPS setup
/// serves. Its certificate is its own issuer (give it as `--ca-cert`).
pub fn self_signed_leaf() -> Leaf {
    let key = KeyPair::generate().expect("rcgen makes a key");
    let names: Vec<String> = LEAF_NAMES.map(String::from).to_vec();
    let mut params = CertificateParams::new(names).expect("valid names");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(DnType::CommonName, "spotload self-signed target");
    let cert = params.self_signed(&key).expect("rcgen signs it");
    Leaf {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    }
}

/// The protocol `addr` chose by ALPN from `offer` (e.g. `["h2",
/// "http/1.1"]`) in one TLS handshake trusting only `ca_pem`; `None` when
/// it chose none. Panics when the handshake fails.
pub fn negotiated_alpn(addr: SocketAddr, ca_pem: &str, offer: &[&str]) -> Option<String> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots
            .add(cert.expect("the CA's PEM parses"))
            .expect("the CA is a trust anchor");
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("default versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = offer.iter().map(|p| p.as_bytes().to_vec()).collect();
    let name = ServerName::from(addr.ip());
    let mut connection =
        rustls::ClientConnection::new(Arc::new(config), name).expect("a TLS client");
    let mut socket = TcpStream::connect_timeout(&addr, HANDSHAKE_LIMIT)
        .unwrap_or_else(|e| panic!("cannot connect to {addr}: {e}"));
    socket
        .set_read_timeout(Some(HANDSHAKE_LIMIT))
        .expect("a read timeout");
    while connection.is_handshaking() {
        connection
            .complete_io(&mut socket)
            .unwrap_or_else(|e| panic!("TLS handshake with {addr} failed: {e}"));
    }
    let chosen = connection
        .alpn_protocol()
        .map(|p| String::from_utf8_lossy(p).into_owned());
    // Be polite: say goodbye, and read what is left (nothing is asked).
    connection.send_close_notify();
    let _ = connection.complete_io(&mut socket);
    let _ = socket.flush();
    let _ = socket.read(&mut [0u8; 1]);
    chosen
}
