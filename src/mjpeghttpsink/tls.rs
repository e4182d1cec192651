// SPDX-License-Identifier: MPL-2.0

//! HTTPS for `mjpeghttpsink`: the rustls server configuration made from a
//! PEM certificate chain and key, offering HTTP/2 and HTTP/1.1 by ALPN, so
//! that a browser carries every stream of a page over one connection.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// The ALPN protocol of HTTP/2.
pub const H2: &[u8] = b"h2";

/// Where a server's certificate and key come from: sinks sharing a server
/// must name the same files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub certificate: PathBuf,
    pub key: PathBuf,
}

impl TlsFiles {
    /// Reads the files and checks that the key belongs to the certificate.
    pub fn server_config(&self) -> Result<Arc<ServerConfig>, String> {
        let certificate = read(&self.certificate, "tls-certificate")?;
        let chain = CertificateDer::pem_slice_iter(&certificate)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|err| {
                format!(
                    "tls-certificate {}: not a PEM certificate ({err})",
                    self.certificate.display()
                )
            })?;
        if chain.is_empty() {
            return Err(format!(
                "tls-certificate {}: no CERTIFICATE in the file",
                self.certificate.display()
            ));
        }
        let key = read(&self.key, "tls-key")?;
        let key = PrivateKeyDer::from_pem_slice(&key).map_err(|err| {
            format!(
                "tls-key {}: no PEM private key in the file ({err})",
                self.key.display()
            )
        })?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|err| err.to_string())?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(|err| {
                format!(
                    "tls-key {} does not fit tls-certificate {}: {err}",
                    self.key.display(),
                    self.certificate.display()
                )
            })?;
        config.alpn_protocols = vec![H2.to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

fn read(path: &Path, property: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|err| format!("{property} {}: {err}", path.display()))
}
