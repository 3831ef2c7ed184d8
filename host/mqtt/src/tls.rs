//! TLS for the client session (rustls with the ring provider). The files are read on every
//! connect, so a renewed certificate is picked up at the next reconnect without a restart, and a
//! file that goes missing is reported like any other reason the broker cannot be reached.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{CertificateError, ClientConfig, RootCertStore};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// Where the client's trust and identity come from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsOptions {
    /// PEM file of the CA certificates that may sign the broker's certificate; the system's
    /// roots when unset.
    pub ca_file: Option<PathBuf>,
    /// PEM file of the client's certificate chain, for brokers that ask for one.
    pub cert_file: Option<PathBuf>,
    /// PEM file of the client certificate's private key.
    pub key_file: Option<PathBuf>,
}

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read or holds nothing usable.
    #[error("{what} {path}: {reason}")]
    File {
        /// Which file (`MQTT_CA_FILE`, ...).
        what: &'static str,
        /// Its path.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// No CA file was given and the system has no root certificates.
    #[error("no CA certificates: the system has none; set MQTT_CA_FILE to the CA that signed the broker's certificate")]
    NoRoots,
    /// rustls refused the combination (a key that does not match the certificate, say).
    #[error("TLS setup: {0}")]
    Config(String),
}

impl TlsOptions {
    /// Read the files into a client configuration.
    pub fn client_config(&self) -> Result<Arc<ClientConfig>, TlsError> {
        match (&self.cert_file, &self.key_file) {
            (Some(_), None) => return Err(TlsError::Config("MQTT_CERT_FILE is set without MQTT_KEY_FILE".into())),
            (None, Some(_)) => return Err(TlsError::Config("MQTT_KEY_FILE is set without MQTT_CERT_FILE".into())),
            _ => {}
        }
        let mut roots = RootCertStore::empty();
        match &self.ca_file {
            Some(path) => {
                for cert in read_certs("MQTT_CA_FILE", path)? {
                    roots.add(cert).map_err(|e| file_error("MQTT_CA_FILE", path, e))?;
                }
            }
            None => {
                for cert in rustls_native_certs::load_native_certs().certs {
                    // A system bundle may carry certificates rustls cannot use; the rest serve.
                    let _ = roots.add(cert);
                }
                if roots.is_empty() {
                    return Err(TlsError::NoRoots);
                }
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Config(e.to_string()))?
            .with_root_certificates(roots);
        let config = match (&self.cert_file, &self.key_file) {
            (Some(cert), Some(key)) => {
                let chain = read_certs("MQTT_CERT_FILE", cert)?;
                let key = PrivateKeyDer::from_pem_file(key).map_err(|e| file_error("MQTT_KEY_FILE", key, e))?;
                builder.with_client_auth_cert(chain, key).map_err(|e| TlsError::Config(e.to_string()))?
            }
            _ => builder.with_no_client_auth(),
        };
        Ok(Arc::new(config))
    }

    /// Where the trusted roots come from, for error messages.
    fn roots(&self) -> String {
        match &self.ca_file {
            Some(path) => format!("MQTT_CA_FILE {}", path.display()),
            None => "the system's root certificates".to_string(),
        }
    }
}

/// Wrap a connected stream in TLS, checking the broker's certificate against `host`.
pub(crate) async fn handshake(
    options: &TlsOptions,
    host: &str,
    stream: TcpStream,
) -> Result<TlsStream<TcpStream>, String> {
    let config = options.client_config().map_err(|e| e.to_string())?;
    let name = ServerName::try_from(host.to_string())
        .map_err(|_| format!("\"{host}\" is not a host name or address a certificate can be checked against"))?;
    TlsConnector::from(config).connect(name, stream).await.map_err(|e| handshake_error(&e, options, host))
}

/// Name the certificate problem in words a person can act on.
fn handshake_error(error: &std::io::Error, options: &TlsOptions, host: &str) -> String {
    let Some(tls) = error.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>()) else {
        return format!("TLS handshake failed: {error}");
    };
    let problem = match tls {
        rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer) => {
            format!("the broker's certificate is not signed by a CA in {}", options.roots())
        }
        rustls::Error::InvalidCertificate(
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
        ) => format!("the broker's certificate is not valid for the name \"{host}\""),
        rustls::Error::InvalidCertificate(CertificateError::Expired | CertificateError::ExpiredContext { .. }) => {
            "the broker's certificate has expired".to_string()
        }
        rustls::Error::InvalidCertificate(
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. },
        ) => "the broker's certificate is not valid yet (is the clock right?)".to_string(),
        rustls::Error::InvalidCertificate(other) => format!("the broker's certificate is refused: {other:?}"),
        rustls::Error::AlertReceived(alert) => format!("the broker refused the handshake ({alert:?})"),
        other => other.to_string(),
    };
    format!("TLS handshake failed: {problem}")
}

/// An I/O error of a connection, with a TLS alert from the broker put in words (TLS 1.3 reports
/// a refused client certificate after the handshake, on the first read).
pub(crate) fn explain(error: &std::io::Error) -> String {
    match error.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>()) {
        Some(rustls::Error::AlertReceived(rustls::AlertDescription::CertificateRequired)) => {
            "the broker asks for a client certificate: set MQTT_CERT_FILE and MQTT_KEY_FILE".to_string()
        }
        Some(rustls::Error::AlertReceived(
            rustls::AlertDescription::BadCertificate
            | rustls::AlertDescription::UnknownCA
            | rustls::AlertDescription::CertificateUnknown,
        )) => "the broker refused the client certificate in MQTT_CERT_FILE".to_string(),
        _ => error.to_string(),
    }
}

fn read_certs(what: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| file_error(what, path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error(what, path, e))?;
    if certs.is_empty() {
        return Err(TlsError::File {
            what,
            path: path.display().to_string(),
            reason: "no PEM certificate in it".into(),
        });
    }
    Ok(certs)
}

fn file_error(what: &'static str, path: &Path, error: impl std::fmt::Display) -> TlsError {
    TlsError::File { what, path: path.display().to_string(), reason: error.to_string() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_ca_file_is_named() {
        let options = TlsOptions { ca_file: Some("/nonexistent/ca.pem".into()), ..TlsOptions::default() };
        let error = options.client_config().unwrap_err().to_string();
        assert!(error.starts_with("MQTT_CA_FILE /nonexistent/ca.pem:"), "{error}");
    }

    #[test]
    fn a_file_without_certificates_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, "not a certificate\n").unwrap();
        let options = TlsOptions { ca_file: Some(ca.clone()), ..TlsOptions::default() };
        let error = options.client_config().unwrap_err().to_string();
        assert_eq!(error, format!("MQTT_CA_FILE {}: no PEM certificate in it", ca.display()));
    }

    #[test]
    fn a_certificate_needs_its_key() {
        let options = TlsOptions { cert_file: Some("/x/cert.pem".into()), ..TlsOptions::default() };
        let error = options.client_config().unwrap_err().to_string();
        assert_eq!(error, "TLS setup: MQTT_CERT_FILE is set without MQTT_KEY_FILE");
    }
}
