//! Loading a server certificate: a PEM chain and its private key, checked
//! against each other, with the facts validation wants to warn about
//! (validity dates, the names the certificate covers); and upstream CA
//! bundles.
//!
//! This lives in config, not in the proxy's TLS code, because it is part
//! of validation: `vigil check` reports a bad certificate, and a reload
//! with one fails before anything changes. The proxy serves the loaded
//! [`Certificate`] as it is.
//!
//! Errors name the file and say what to do, because the person reading
//! them is usually in the middle of a certificate rotation.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rustls::RootCertStore;
use rustls::crypto::ring;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;

/// A certificate chain with its private key, ready to serve.
#[derive(Clone)]
pub struct Certificate {
    /// What rustls presents in handshakes.
    pub key: Arc<CertifiedKey>,
    /// The certificate file it came from.
    pub path: PathBuf,
    /// DNS names the leaf certificate is valid for (subjectAltName, or the
    /// subject CN when there is no SAN), lowercased.
    pub names: Vec<String>,
    pub not_before: SystemTime,
    pub not_after: SystemTime,
}

impl Certificate {
    /// Does this certificate cover `host` (a lowercased DNS name)? A SAN
    /// `*.example.com` covers exactly one label (RFC 6125 §6.4.3).
    pub fn covers(&self, host: &str) -> bool {
        self.names.iter().any(|name| name_matches(name, host))
    }

    /// Why the certificate should not be served at `now`, if it should not:
    /// expired or not valid yet. Clients reject it either way, but it is a
    /// warning, not an error: refusing to start would turn an expired
    /// certificate into an outage of every other name on the listener.
    pub fn validity_warning(&self, now: SystemTime) -> Option<String> {
        if now > self.not_after {
            let days = now
                .duration_since(self.not_after)
                .unwrap_or(Duration::ZERO)
                .as_secs()
                / 86_400;
            return Some(format!(
                "{}: certificate expired on {} ({days} days ago); clients will refuse it",
                self.path.display(),
                httpdate::fmt_http_date(self.not_after),
            ));
        }
        if now < self.not_before {
            return Some(format!(
                "{}: certificate is not valid until {}; clients will refuse it before then \
                 (is the clock right?)",
                self.path.display(),
                httpdate::fmt_http_date(self.not_before),
            ));
        }
        None
    }
}

impl fmt::Debug for Certificate {
    // The private key never appears in debug output.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Certificate")
            .field("path", &self.path)
            .field("names", &self.names)
            .field("not_after", &httpdate::fmt_http_date(self.not_after))
            .finish_non_exhaustive()
    }
}

/// Equal when they present the same chain: the key must match the leaf,
/// so the same chain means the same key pair. A reload that rewrote the
/// files with new content is therefore seen as a change.
impl PartialEq for Certificate {
    fn eq(&self, other: &Self) -> bool {
        self.key.cert == other.key.cert
    }
}

impl Eq for Certificate {}

/// Why a certificate or key could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CertificateError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{}: no certificate found (expected a PEM file with \"-----BEGIN CERTIFICATE-----\")",
        path.display()
    )]
    NoCertificate { path: PathBuf },
    #[error("{}: not valid PEM: {reason}", path.display())]
    BadPem { path: PathBuf, reason: String },
    #[error("{}: the first certificate cannot be parsed: {reason}", path.display())]
    BadCertificate { path: PathBuf, reason: String },
    #[error(
        "{}: no private key found (expected PEM \"BEGIN PRIVATE KEY\" (PKCS#8), \
         \"BEGIN RSA PRIVATE KEY\" or \"BEGIN EC PRIVATE KEY\"){hint}",
        path.display()
    )]
    NoKey { path: PathBuf, hint: &'static str },
    #[error("{}: unsupported private key: {reason}", path.display())]
    UnsupportedKey { path: PathBuf, reason: String },
    #[error(
        "{} does not match the certificate in {} (their public keys differ); \
         use the key the certificate was issued for",
        key.display(),
        cert.display()
    )]
    KeyMismatch { cert: PathBuf, key: PathBuf },
}

impl CertificateError {
    /// The file the problem is in (the key file for a mismatch).
    pub fn file(&self) -> &Path {
        match self {
            CertificateError::Read { path, .. }
            | CertificateError::NoCertificate { path }
            | CertificateError::BadPem { path, .. }
            | CertificateError::BadCertificate { path, .. }
            | CertificateError::NoKey { path, .. }
            | CertificateError::UnsupportedKey { path, .. } => path,
            CertificateError::KeyMismatch { key, .. } => key,
        }
    }
}

/// Loads the chain in `cert_path` (leaf first, then intermediates) and the
/// private key in `key_path` (PKCS#8, PKCS#1 RSA or SEC1 EC), and checks
/// that the key belongs to the leaf certificate.
pub fn load(cert_path: &Path, key_path: &Path) -> Result<Certificate, CertificateError> {
    let chain = read_chain(cert_path)?;
    let (names, not_before, not_after) = inspect_leaf(cert_path, &chain[0])?;
    let key = read_key(key_path)?;
    let provider = ring::default_provider();
    let signing_key = provider.key_provider.load_private_key(key).map_err(|e| {
        CertificateError::UnsupportedKey {
            path: key_path.to_owned(),
            reason: e.to_string(),
        }
    })?;
    let certified = CertifiedKey::new(chain, signing_key);
    match certified.keys_match() {
        Ok(()) => {}
        // ring can always derive the public key of the keys it loads; if a
        // key type ever cannot, the handshake itself would still fail
        // loudly, so unknown consistency is not an error.
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
        Err(_) => {
            return Err(CertificateError::KeyMismatch {
                cert: cert_path.to_owned(),
                key: key_path.to_owned(),
            });
        }
    }
    Ok(Certificate {
        key: Arc::new(certified),
        path: cert_path.to_owned(),
        names,
        not_before,
        not_after,
    })
}

/// Reads every PEM certificate in a file, keeping the file order.
fn read_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, CertificateError> {
    let bytes = read(path)?;
    let chain = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad_pem(path, e))?;
    if chain.is_empty() {
        return Err(CertificateError::NoCertificate {
            path: path.to_owned(),
        });
    }
    Ok(chain)
}

/// Parses a CA bundle, so the runtime never sees an unusable one. Returns
/// the certificates, or why they cannot be used.
pub fn parse_ca(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = read_chain(path).map_err(|e| e.to_string())?;
    let mut roots = RootCertStore::empty();
    let (added, ignored) = roots.add_parsable_certificates(certs.iter().cloned());
    if added == 0 {
        return Err(format!(
            "{}: none of its {ignored} certificate(s) can be used as a trust anchor",
            path.display()
        ));
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, CertificateError> {
    let bytes = read(path)?;
    match PrivateKeyDer::from_pem_slice(&bytes) {
        Ok(key) => Ok(key),
        Err(pem::Error::NoItemsFound) => {
            let text = String::from_utf8_lossy(&bytes);
            let hint = if text.contains("ENCRYPTED") {
                "; this key is encrypted: decrypt it with \
                 `openssl pkey -in KEY -out KEY.plain` (vigil cannot ask for a passphrase)"
            } else if text.contains("BEGIN CERTIFICATE") {
                "; this file holds a certificate: is key pointing at the cert file?"
            } else {
                ""
            };
            Err(CertificateError::NoKey {
                path: path.to_owned(),
                hint,
            })
        }
        Err(e) => Err(bad_pem(path, e)),
    }
}

fn read(path: &Path) -> Result<Vec<u8>, CertificateError> {
    std::fs::read(path).map_err(|source| CertificateError::Read {
        path: path.to_owned(),
        source,
    })
}

fn bad_pem(path: &Path, e: pem::Error) -> CertificateError {
    CertificateError::BadPem {
        path: path.to_owned(),
        reason: e.to_string(),
    }
}

/// Names and validity period of the leaf certificate.
fn inspect_leaf(
    path: &Path,
    der: &CertificateDer<'_>,
) -> Result<(Vec<String>, SystemTime, SystemTime), CertificateError> {
    use x509_parser::extensions::GeneralName;

    let bad = |reason: String| CertificateError::BadCertificate {
        path: path.to_owned(),
        reason,
    };
    let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| bad(e.to_string()))?;
    let validity = cert.validity();
    let mut names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(n) => names.push(n.to_ascii_lowercase()),
                GeneralName::IPAddress(bytes) => {
                    if let Some(ip) = ip_from_bytes(bytes) {
                        names.push(ip.to_string());
                    }
                }
                _ => {}
            }
        }
    }
    if names.is_empty() {
        // Pre-SAN certificates: clients no longer accept the CN, but it is
        // still the best description of what the certificate was meant for.
        names.extend(
            cert.subject()
                .iter_common_name()
                .filter_map(|cn| cn.as_str().ok())
                .map(str::to_ascii_lowercase),
        );
    }
    Ok((
        names,
        unix_time(validity.not_before.timestamp()),
        unix_time(validity.not_after.timestamp()),
    ))
}

fn ip_from_bytes(bytes: &[u8]) -> Option<std::net::IpAddr> {
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes).ok().map(std::net::IpAddr::from),
        16 => <[u8; 16]>::try_from(bytes).ok().map(std::net::IpAddr::from),
        _ => None,
    }
}

fn unix_time(seconds: i64) -> SystemTime {
    match u64::try_from(seconds) {
        Ok(s) => SystemTime::UNIX_EPOCH + Duration::from_secs(s),
        Err(_) => SystemTime::UNIX_EPOCH,
    }
}

/// RFC 6125 §6.4.3 as browsers apply it: `*` only as the whole leftmost
/// label, matching exactly one label.
fn name_matches(pattern: &str, host: &str) -> bool {
    if let Some(suffix) = pattern.strip_prefix("*.") {
        return match host.split_once('.') {
            Some((first, rest)) => !first.is_empty() && rest == suffix,
            None => false,
        };
    }
    pattern == host
}

#[cfg(test)]
mod tests {
    use rcgen::{CertificateParams, KeyPair, date_time_ymd};

    use super::*;

    /// A self-signed certificate for `names` valid between two years,
    /// written as `cert.pem` / `key.pem`.
    fn write_cert(dir: &Path, names: &[&str], years: (i32, i32)) -> (PathBuf, PathBuf, String) {
        let key = KeyPair::generate().unwrap();
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        params.not_before = date_time_ymd(years.0, 1, 1);
        params.not_after = date_time_ymd(years.1, 1, 1);
        let cert = params.self_signed(&key).unwrap();
        let (c, k) = (dir.join("cert.pem"), dir.join("key.pem"));
        std::fs::write(&c, cert.pem()).unwrap();
        std::fs::write(&k, key.serialize_pem()).unwrap();
        (c, k, cert.pem())
    }

    #[test]
    fn loads_a_chain_and_its_key() {
        let dir = tempfile::tempdir().unwrap();
        let (c, k, _) = write_cert(dir.path(), &["example.test", "*.shop.test"], (2020, 2099));
        let cert = load(&c, &k).unwrap();
        assert_eq!(cert.names, ["example.test", "*.shop.test"]);
        assert!(cert.covers("example.test"));
        assert!(cert.covers("a.shop.test"));
        assert!(!cert.covers("shop.test"));
        assert_eq!(cert.validity_warning(SystemTime::now()), None);
        assert_eq!(cert.key.cert.len(), 1);
    }

    #[test]
    fn expired_and_future_certificates_warn_with_the_date() {
        let dir = tempfile::tempdir().unwrap();
        let (c, k, _) = write_cert(dir.path(), &["example.test"], (2019, 2021));
        let w = load(&c, &k)
            .unwrap()
            .validity_warning(SystemTime::now())
            .unwrap();
        assert!(
            w.contains("expired on Fri, 01 Jan 2021 00:00:00 GMT"),
            "{w}"
        );
        assert!(w.contains("cert.pem"), "{w}");
        let (c, k, _) = write_cert(dir.path(), &["example.test"], (2090, 2099));
        let w = load(&c, &k)
            .unwrap()
            .validity_warning(SystemTime::now())
            .unwrap();
        assert!(w.contains("not valid until Sun, 01 Jan 2090"), "{w}");
    }

    #[test]
    fn errors_name_the_file_and_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let (c, k, cert_pem) = write_cert(d, &["example.test"], (2020, 2099));
        let other_key = d.join("other-key.pem");
        std::fs::write(&other_key, KeyPair::generate().unwrap().serialize_pem()).unwrap();

        let e = load(&d.join("nope.pem"), &k).unwrap_err();
        assert!(matches!(e, CertificateError::Read { .. }), "{e}");
        assert!(e.to_string().contains("nope.pem"), "{e}");

        let e = load(&c, &other_key).unwrap_err();
        assert!(matches!(e, CertificateError::KeyMismatch { .. }), "{e}");
        assert_eq!(e.file(), other_key);

        let e = load(&k, &k).unwrap_err();
        assert!(matches!(e, CertificateError::NoCertificate { .. }), "{e}");

        let e = load(&c, &c).unwrap_err();
        assert!(
            e.to_string().contains("this file holds a certificate"),
            "{e}"
        );

        let encrypted = d.join("encrypted.pem");
        std::fs::write(
            &encrypted,
            "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n",
        )
        .unwrap();
        let e = load(&c, &encrypted).unwrap_err();
        assert!(e.to_string().contains("openssl pkey"), "{e}");

        let broken = d.join("broken.pem");
        std::fs::write(&broken, &cert_pem[..cert_pem.len() / 2]).unwrap();
        let e = load(&broken, &k).unwrap_err();
        assert!(matches!(e, CertificateError::BadPem { .. }), "{e}");
    }

    #[test]
    fn wildcard_names_cover_one_label() {
        assert!(name_matches("*.example.com", "a.example.com"));
        assert!(!name_matches("*.example.com", "example.com"));
        assert!(!name_matches("*.example.com", "a.b.example.com"));
        assert!(name_matches("example.com", "example.com"));
        assert!(!name_matches("example.com", "www.example.com"));
    }
}
