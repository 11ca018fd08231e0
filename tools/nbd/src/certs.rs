//! X.509 credentials for NBD over TLS, made in the directory layout qemu-nbd, nbdkit, libnbd and
//! `txdisk serve --tls-certificates` read (see [`txdisk_nbd_disk::tls`]):
//!
//! ```text
//! DIR/ca-key.pem                 the CA's private key (keep it; it signs more clients)
//! DIR/server/ca-cert.pem         for the server: --tls-certificates DIR/server
//! DIR/server/server-cert.pem
//! DIR/server/server-key.pem
//! DIR/clients/NAME/ca-cert.pem   for client NAME: ?tls-certificates=DIR/clients/NAME
//! DIR/clients/NAME/client-cert.pem   (its common name is NAME, the identity --allow lists)
//! DIR/clients/NAME/client-key.pem
//! ```
//!
//! A small private CA for one deployment or a test: ECDSA P-256 keys, certificates valid for
//! ten years. Private keys are written with mode 0600.

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use txdisk_nbd_disk::tls::{
    CA_CERT_FILE, CLIENT_CERT_FILE, CLIENT_KEY_FILE, SERVER_CERT_FILE, SERVER_KEY_FILE,
};

/// What to make.
#[derive(Debug, Clone)]
pub struct CertRequest {
    /// Names the server's certificate carries: host names and IP addresses clients connect to.
    pub server_names: Vec<String>,
    /// One client certificate per name (its common name).
    pub clients: Vec<String>,
}

/// Why credentials could not be made.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// A file could not be written.
    #[error("{path}: {source}")]
    Write {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A certificate could not be made (a bad name, a key failure).
    #[error("cannot make a certificate: {0}")]
    Certificate(#[from] rcgen::Error),
    /// A client name that cannot be a directory name.
    #[error("client name {0:?} must be letters, digits, '-', '_' or '.'")]
    BadClientName(String),
}

/// Where [`generate`] put the credentials.
#[derive(Debug, Clone)]
pub struct Generated {
    /// The server's directory.
    pub server_dir: PathBuf,
    /// Each client's directory, in the order asked.
    pub client_dirs: Vec<(String, PathBuf)>,
}

const VALID_YEARS: i32 = 10;

/// Key usages of the server's and clients' certificates. Key encipherment means nothing to an
/// ECDSA key, but qemu's TLS credentials refuse a certificate without it.
const LEAF_KEY_USAGES: [KeyUsagePurpose; 2] = [
    KeyUsagePurpose::DigitalSignature,
    KeyUsagePurpose::KeyEncipherment,
];

fn write_file(path: &Path, contents: &str, private: bool) -> Result<(), CertError> {
    let error = |source| CertError::Write {
        path: path.display().to_string(),
        source,
    };
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(error)?;
    }
    let mode = if private { 0o600 } else { 0o644 };
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .map_err(error)?;
    file.write_all(contents.as_bytes()).map_err(error)
}

/// From the start of last year to ten years on: a clock a little behind is still inside.
fn validity(params: &mut CertificateParams) {
    let seconds = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    // Mean Gregorian year: exact enough to pick a year boundary.
    let year = 1970 + (seconds / 31_556_952) as i32;
    params.not_before = rcgen::date_time_ymd(year - 1, 1, 1);
    params.not_after = rcgen::date_time_ymd(year + VALID_YEARS, 1, 1);
}

/// Makes a CA, a server certificate for `request.server_names` and one client certificate
/// per `request.clients`, under `dir` (see the module comment).
pub fn generate(dir: &Path, request: &CertRequest) -> Result<Generated, CertError> {
    for name in &request.clients {
        let ok = !name.is_empty()
            && name != "."
            && name != ".."
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
        if !ok {
            return Err(CertError::BadClientName(name.clone()));
        }
    }
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "txdisk NBD CA");
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    validity(&mut ca_params);
    let ca_key = KeyPair::generate()?;
    let ca_key_pem = ca_key.serialize_pem();
    let ca = CertifiedIssuer::self_signed(ca_params, ca_key)?;
    let ca_pem = ca.pem();
    write_file(&dir.join("ca-key.pem"), &ca_key_pem, true)?;

    let server_dir = dir.join("server");
    let mut params = CertificateParams::new(request.server_names.clone())?;
    let common_name = request
        .server_names
        .first()
        .cloned()
        .unwrap_or_else(|| "localhost".into());
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.key_usages = LEAF_KEY_USAGES.to_vec();
    validity(&mut params);
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &ca)?;
    write_file(&server_dir.join(CA_CERT_FILE), &ca_pem, false)?;
    write_file(&server_dir.join(SERVER_CERT_FILE), &cert.pem(), false)?;
    write_file(
        &server_dir.join(SERVER_KEY_FILE),
        &key.serialize_pem(),
        true,
    )?;

    let mut client_dirs = Vec::new();
    for name in &request.clients {
        let client_dir = dir.join("clients").join(name);
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.key_usages = LEAF_KEY_USAGES.to_vec();
        validity(&mut params);
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &ca)?;
        write_file(&client_dir.join(CA_CERT_FILE), &ca_pem, false)?;
        write_file(&client_dir.join(CLIENT_CERT_FILE), &cert.pem(), false)?;
        write_file(
            &client_dir.join(CLIENT_KEY_FILE),
            &key.serialize_pem(),
            true,
        )?;
        client_dirs.push((name.clone(), client_dir));
    }
    Ok(Generated {
        server_dir,
        client_dirs,
    })
}
