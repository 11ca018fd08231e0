//! TLS credentials for NBD's `NBD_OPT_STARTTLS`, in the directory layout qemu, nbdkit and
//! libnbd share (`--tls-certificates DIR`, `tls-creds-x509,dir=DIR`, `?tls-certificates=DIR`):
//!
//! | file              | who reads it | what it holds                                      |
//! |-------------------|--------------|----------------------------------------------------|
//! | `ca-cert.pem`     | both         | the CA that signs the other side's certificate     |
//! | `server-cert.pem` | server       | the server's certificate (chain), PEM              |
//! | `server-key.pem`  | server       | its private key (PKCS#8, PKCS#1 or SEC1), PEM      |
//! | `client-cert.pem` | client       | the client's certificate (chain), PEM              |
//! | `client-key.pem`  | client       | its private key, PEM                               |
//!
//! The scheme is X.509 with mutual authentication: the server asks every client for a
//! certificate signed by its CA (qemu-nbd's default, `verify-peer=on`), and a client checks the
//! server's certificate against its CA and the host name it connected to. The client's
//! certificate names it: its subject's common name is the identity an export's allow-list
//! lists. Pre-shared keys (`--tls-psk`, GnuTLS's PSK files) are not offered: the TLS library
//! here (rustls) has no external-PSK handshake, and an error says so.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, ClientConnection, RootCertStore, ServerConfig, ServerConnection};

use crate::error::{NbdError, Result};

/// The CA certificate, read by both sides.
pub const CA_CERT_FILE: &str = "ca-cert.pem";
/// The server's certificate.
pub const SERVER_CERT_FILE: &str = "server-cert.pem";
/// The server's private key.
pub const SERVER_KEY_FILE: &str = "server-key.pem";
/// The client's certificate.
pub const CLIENT_CERT_FILE: &str = "client-cert.pem";
/// The client's private key.
pub const CLIENT_KEY_FILE: &str = "client-key.pem";

/// Why pre-shared keys are refused, for every place that takes a PSK file.
pub const PSK_UNSUPPORTED: &str = "TLS with pre-shared keys is not supported (the TLS library \
     has no external-PSK handshake): use X.509 certificates instead (a directory with \
     ca-cert.pem, server-cert.pem and server-key.pem, or client-cert.pem and client-key.pem)";

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn credentials_error(path: &Path, reason: impl std::fmt::Display) -> NbdError {
    NbdError::TlsCredentials {
        path: path.display().to_string(),
        reason: reason.to_string(),
    }
}

fn read_file(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| credentials_error(path, e))
}

fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let pem = read_file(path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| credentials_error(path, e))?;
    if certs.is_empty() {
        return Err(credentials_error(path, "no PEM certificate in the file"));
    }
    Ok(certs)
}

fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>> {
    let pem = read_file(path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| credentials_error(path, e))
}

fn load_roots(path: &Path) -> Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    for cert in load_certs(path)? {
        roots
            .add(cert)
            .map_err(|e| credentials_error(path, format!("not a usable CA certificate: {e}")))?;
    }
    Ok(roots)
}

/// A server's TLS settings, loaded from a credentials directory (see the module comment).
#[derive(Clone)]
pub struct ServerTls {
    config: Arc<ServerConfig>,
    dir: PathBuf,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls").field("dir", &self.dir).finish()
    }
}

impl ServerTls {
    /// Loads `dir`'s CA, server certificate and key. Every client must present a certificate
    /// that the CA signed.
    pub fn load(dir: &Path) -> Result<ServerTls> {
        let roots = load_roots(&dir.join(CA_CERT_FILE))?;
        let certs = load_certs(&dir.join(SERVER_CERT_FILE))?;
        let key_path = dir.join(SERVER_KEY_FILE);
        let key = load_key(&key_path)?;
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
            .build()
            .map_err(|e| credentials_error(&dir.join(CA_CERT_FILE), e))?;
        let config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| credentials_error(dir, e))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(certs, key)
            .map_err(|e| credentials_error(&key_path, e))?;
        Ok(ServerTls {
            config: Arc::new(config),
            dir: dir.to_path_buf(),
        })
    }

    /// A new server session, for a connection that asked for `NBD_OPT_STARTTLS`.
    pub fn session(&self) -> std::result::Result<ServerConnection, rustls::Error> {
        ServerConnection::new(self.config.clone())
    }
}

/// A client's TLS settings: the CA the server's certificate must chain to, the client's own
/// certificate if the directory has one, and the name the server's certificate must carry.
#[derive(Clone)]
pub struct ClientTls {
    config: Arc<ClientConfig>,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTls").finish_non_exhaustive()
    }
}

impl ClientTls {
    /// Loads `dir`'s CA and, when present, `client-cert.pem` with `client-key.pem`.
    pub fn load(dir: &Path) -> Result<ClientTls> {
        let roots = load_roots(&dir.join(CA_CERT_FILE))?;
        let builder = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| credentials_error(dir, e))?
            .with_root_certificates(roots);
        let cert_path = dir.join(CLIENT_CERT_FILE);
        let config = if cert_path.exists() {
            let certs = load_certs(&cert_path)?;
            let key_path = dir.join(CLIENT_KEY_FILE);
            let key = load_key(&key_path)?;
            builder
                .with_client_auth_cert(certs, key)
                .map_err(|e| credentials_error(&key_path, e))?
        } else {
            builder.with_no_client_auth()
        };
        Ok(ClientTls {
            config: Arc::new(config),
        })
    }

    /// A new client session that checks the server's certificate names `host`.
    pub fn session(&self, host: &str) -> std::result::Result<ClientConnection, String> {
        let name = ServerName::try_from(host.to_string())
            .map_err(|e| format!("{host:?} cannot be checked against a certificate: {e}"))?;
        ClientConnection::new(self.config.clone(), name).map_err(|e| e.to_string())
    }
}

/// The identity a certificate gives its holder: its subject's common name (`CN=`), or `None`
/// when it has none or does not parse.
pub fn certificate_identity(cert: &CertificateDer<'_>) -> Option<String> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let common_name = parsed.subject().iter_common_name().next()?;
    common_name.as_str().ok().map(str::to_string)
}
