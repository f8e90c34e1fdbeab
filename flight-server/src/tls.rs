//! TLS for the Flight SQL endpoint: a certificate chain and private key
//! read from PEM files and checked before the server starts.

use std::path::{Path, PathBuf};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use tonic::transport::{Identity, ServerTlsConfig};

use crate::{Error, Result};

/// Where the server's TLS certificate chain and private key are: PEM
/// files, the certificate first in its file followed by any intermediates;
/// the key in PKCS#8, PKCS#1 (RSA) or SEC1 (EC) form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfig {
    cert: PathBuf,
    key: PathBuf,
}

impl TlsConfig {
    /// TLS with the certificate chain in `cert` and the key in `key`.
    pub fn new(cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        TlsConfig {
            cert: cert.into(),
            key: key.into(),
        }
    }

    /// The certificate chain file.
    pub fn cert(&self) -> &Path {
        &self.cert
    }

    /// The private key file.
    pub fn key(&self) -> &Path {
        &self.key
    }

    /// Reads both files and checks that they hold a certificate and the
    /// private key that belongs to it; errors name the file at fault.
    pub(crate) fn load(&self) -> Result<ServerTlsConfig> {
        let cert_pem = read(&self.cert, "certificate")?;
        let key_pem = read(&self.key, "key")?;
        let certs = CertificateDer::pem_slice_iter(&cert_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| file_error(&self.cert, "certificate", pem_reason(e)))?;
        if certs.is_empty() {
            return Err(file_error(
                &self.cert,
                "certificate",
                "contains no PEM certificate (-----BEGIN CERTIFICATE-----)".into(),
            ));
        }
        let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
            let reason = match e {
                pem::Error::NoItemsFound => {
                    "contains no PEM private key (PKCS#8, PKCS#1 or SEC1)".to_string()
                }
                e => pem_reason(e),
            };
            file_error(&self.key, "key", reason)
        })?;
        CertifiedKey::from_der(certs, key, &provider()).map_err(|e| Error::Tls {
            cert: self.cert.clone(),
            key: self.key.clone(),
            reason: e.to_string(),
        })?;
        install_provider();
        Ok(ServerTlsConfig::new().identity(Identity::from_pem(cert_pem, key_pem)))
    }
}

/// The crypto the server uses (ring, as tonic's `tls-ring` feature).
fn provider() -> CryptoProvider {
    rustls::crypto::ring::default_provider()
}

/// tonic builds its rustls configurations (server and client) with the
/// process's default provider. Our dependencies compile rustls with both
/// ring and aws-lc-rs, so rustls cannot pick one by itself and would
/// panic: install ring unless a provider is already installed. Clients in
/// this process (the shell) call it before connecting over TLS.
pub fn install_provider() {
    if CryptoProvider::get_default().is_none() {
        // An error means another thread installed one in between, which
        // serves just as well.
        if provider().install_default().is_err() {
            tracing::debug!("a rustls crypto provider was installed concurrently");
        }
    }
}

fn read(path: &Path, what: &'static str) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| file_error(path, what, format!("cannot be read: {e}")))
}

fn pem_reason(error: pem::Error) -> String {
    format!("is not valid PEM: {error:?}")
}

fn file_error(path: &Path, what: &'static str, reason: String) -> Error {
    Error::TlsFile {
        what,
        path: path.to_path_buf(),
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Files {
        dir: tempfile::TempDir,
    }

    impl Files {
        fn new() -> Self {
            Files {
                dir: tempfile::tempdir().unwrap(),
            }
        }

        fn write(&self, name: &str, contents: &str) -> PathBuf {
            let path = self.dir.path().join(name);
            std::fs::write(&path, contents).unwrap();
            path
        }
    }

    fn error(config: TlsConfig) -> String {
        config.load().unwrap_err().to_string()
    }

    #[test]
    fn errors_name_the_file_at_fault() {
        let files = Files::new();
        let missing = files.dir.path().join("missing.pem");
        let empty = files.write("empty.pem", "");
        let garbage = files.write(
            "garbage.pem",
            "-----BEGIN CERTIFICATE-----\nnot base64 at all!\n-----END CERTIFICATE-----\n",
        );

        let unreadable = error(TlsConfig::new(&missing, &empty));
        assert!(
            unreadable.starts_with(&format!(
                "TLS certificate {}: cannot be read:",
                missing.display()
            )),
            "{unreadable}"
        );
        let no_cert = error(TlsConfig::new(&empty, &empty));
        assert_eq!(
            no_cert,
            format!(
                "TLS certificate {}: contains no PEM certificate (-----BEGIN CERTIFICATE-----)",
                empty.display()
            )
        );
        let bad_pem = error(TlsConfig::new(&garbage, &empty));
        assert!(
            bad_pem.starts_with(&format!(
                "TLS certificate {}: is not valid PEM",
                garbage.display()
            )),
            "{bad_pem}"
        );
        let missing_key = error(TlsConfig::new(&empty, &missing));
        assert!(
            missing_key.starts_with(&format!("TLS key {}: cannot be read", missing.display())),
            "{missing_key}"
        );
    }

    fn self_signed() -> (String, String) {
        let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        (certified.cert.pem(), certified.signing_key.serialize_pem())
    }

    #[test]
    fn a_certificate_with_its_key_loads() {
        let files = Files::new();
        let (cert, key) = self_signed();
        let config = TlsConfig::new(files.write("cert.pem", &cert), files.write("key.pem", &key));
        config.load().unwrap();
        assert!(
            CryptoProvider::get_default().is_some(),
            "a provider is installed"
        );
    }

    #[test]
    fn a_key_of_another_certificate_or_no_key_is_refused() {
        let files = Files::new();
        let (cert, _) = self_signed();
        let (_, other_key) = self_signed();
        let cert_path = files.write("cert.pem", &cert);
        let other_key_path = files.write("other.key", &other_key);

        let mismatch = error(TlsConfig::new(&cert_path, &other_key_path));
        assert!(
            mismatch.starts_with(&format!(
                "cannot serve TLS with certificate {} and key {}:",
                cert_path.display(),
                other_key_path.display()
            )) && mismatch.contains("key"),
            "{mismatch}"
        );

        // The certificate given twice: the "key" file holds no key.
        let no_key = error(TlsConfig::new(&cert_path, &cert_path));
        assert_eq!(
            no_key,
            format!(
                "TLS key {}: contains no PEM private key (PKCS#8, PKCS#1 or SEC1)",
                cert_path.display()
            )
        );
    }
}
