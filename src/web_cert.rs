//! The master's web UI certificate. `spotload deploy` makes a self-signed
//! one for each deploy (rcgen, ECDSA P-256), naming every address and name
//! the UI is opened under; installs it on the master with its key (over
//! SSH standard input, root-only, never on a command line); and keeps the
//! certificate — never the key — in the fleet's state directory, where
//! `spotload ramp` finds it and trusts it alone.
//!
//! Only this crate makes certificates: `swarm` and `loadtest` read PEM
//! files and nothing more.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context;
use sha2::{Digest, Sha256};

/// The certificate's file in a fleet's state directory.
pub const CERT_FILE: &str = "web-ui-cert.pem";

/// How long a certificate is valid, from the day before it was made (a
/// master's clock a little behind this one's still accepts it): 397 days,
/// under the 398 browsers allow any server certificate. A deploy makes a
/// new one each time.
const VALIDITY_DAYS: i64 = 397;

/// A certificate and its private key, in PEM.
pub struct WebCert {
    /// The certificate, PEM.
    pub cert_pem: String,
    /// Its private key, PEM: for the master only.
    key_pem: String,
    /// The names and addresses it is valid for.
    pub names: Vec<String>,
    /// SHA-256 of the certificate (DER), as browsers show it.
    pub fingerprint: String,
}

impl std::fmt::Debug for WebCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebCert")
            .field("names", &self.names)
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

impl WebCert {
    /// A new self-signed certificate for `names` (IP addresses and DNS
    /// names; the first is its common name) and a new key.
    pub fn generate(names: &[String]) -> anyhow::Result<WebCert> {
        let mut params = rcgen::CertificateParams::new(names.to_vec()).with_context(|| {
            format!("cannot make a certificate for {names:?}: a name is not a valid DNS name")
        })?;
        let common_name = names.first().map_or("spotload", String::as_str);
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, common_name);
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "spotload master web UI");
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        let date = |days: i64| {
            let (year, month, day) = swarm::stats::civil_from_days(days);
            rcgen::date_time_ymd(
                i32::try_from(year).unwrap_or(2000),
                u8::try_from(month).unwrap_or(1),
                u8::try_from(day).unwrap_or(1),
            )
        };
        let today = unix_days();
        params.not_before = date(today - 1);
        params.not_after = date(today + VALIDITY_DAYS);
        let key = rcgen::KeyPair::generate().context("cannot make a key for the certificate")?;
        let cert = params
            .self_signed(&key)
            .context("cannot sign the web UI certificate")?;
        Ok(WebCert {
            fingerprint: fingerprint(cert.der()),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            names: names.to_vec(),
        })
    }

    /// The private key, PEM.
    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }

    /// Writes the certificate (not the key) to the fleet's state
    /// directory, replacing the last deploy's; returns the file.
    pub fn save(&self, fleet_dir: &Path) -> anyhow::Result<PathBuf> {
        let path = fleet_dir.join(CERT_FILE);
        let partial = fleet_dir.join(format!("{CERT_FILE}.partial"));
        std::fs::create_dir_all(fleet_dir)
            .and_then(|()| std::fs::write(&partial, &self.cert_pem))
            .and_then(|()| std::fs::rename(&partial, &path))
            .with_context(|| format!("cannot save the web UI certificate to {}", path.display()))?;
        Ok(path)
    }
}

/// The certificate the last deploy kept in `fleet_dir`, if there is one.
pub fn load(fleet_dir: &Path) -> anyhow::Result<Option<Vec<u8>>> {
    let path = fleet_dir.join(CERT_FILE);
    match std::fs::read(&path) {
        Ok(pem) => Ok(Some(pem)),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(err).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// `AB:CD:...`: SHA-256 of `der`, as browsers and `openssl x509
/// -fingerprint -sha256` show it.
pub fn fingerprint(der: &[u8]) -> String {
    let mut text = String::with_capacity(95);
    for (i, byte) in Sha256::digest(der).iter().enumerate() {
        if i > 0 {
            text.push(':');
        }
        let _ = write!(text, "{byte:02X}");
    }
    text
}

fn unix_days() -> i64 {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    i64::try_from(secs / 86_400).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_every_address_and_keeps_the_key_out_of_the_state() {
        let names = vec![
            "203.0.113.7".to_string(),
            "ec2-203-0-113-7.compute-1.amazonaws.com".into(),
            "10.0.0.7".into(),
            "127.0.0.1".into(),
        ];
        let cert = WebCert::generate(&names).unwrap();
        assert!(cert.cert_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(cert.key_pem().starts_with("-----BEGIN PRIVATE KEY-----"));
        assert_eq!(cert.fingerprint.len(), 32 * 3 - 1, "{}", cert.fingerprint);
        assert!(!format!("{cert:?}").contains("PRIVATE"));
        let dir = tempfile::tempdir().unwrap();
        let saved = cert.save(dir.path()).unwrap();
        assert_eq!(saved, dir.path().join(CERT_FILE));
        let kept = load(dir.path()).unwrap().unwrap();
        assert_eq!(kept, cert.cert_pem.as_bytes());
        assert!(!String::from_utf8_lossy(&kept).contains("PRIVATE"));
        assert_eq!(load(&dir.path().join("none")).unwrap(), None);
        // Each deploy makes a new one.
        assert_ne!(
            WebCert::generate(&names).unwrap().fingerprint,
            cert.fingerprint
        );
    }

    #[test]
    fn the_fingerprint_is_sha256_in_colon_hex() {
        assert_eq!(
            fingerprint(b"abc"),
            "BA:78:16:BF:8F:01:CF:EA:41:41:40:DE:5D:AE:22:23:B0:03:61:A3:96:17:7A:9C:B4:10:FF:61:F2:00:15:AD"
        );
    }
}
