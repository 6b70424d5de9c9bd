//! What the configuration reads from files and secrets at start: the gRPC port's TLS files,
//! the stores' TLS files and password. Each is read and checked now (PEM that parses, a key
//! that matches its certificate), so a bad file fails at start-up in one line naming its flag
//! and the file, never showing what a secret holds.

use std::{
    path::PathBuf,
    sync::{Arc, RwLock},
};

use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};

use super::{ConfigError, ServeArgs};
use crate::storage::redis::{ClientTlsConfig, Target, TlsCertificates};

/// The server's TLS: its certificate and key, and for mutual TLS the CA of client
/// certificates, as the rustls configuration every handshake uses (the server runs the
/// handshakes itself, so a refused one is logged and counted: `server::tls`). Read from files,
/// it can be read again ([`ServerTls::reload`], on SIGHUP): certificates rotate without a
/// restart, connections made before keep theirs.
#[derive(Clone)]
pub struct ServerTls {
    config: Arc<RwLock<Arc<rustls::ServerConfig>>>,
    mutual: bool,
    files: Option<Arc<TlsFiles>>,
}

/// Where the gRPC port's TLS files are (`--tls-cert`, `--tls-key`, `--tls-client-ca`).
struct TlsFiles {
    cert: PathBuf,
    key: PathBuf,
    client_ca: Option<PathBuf>,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("ServerTls")
            .field("mutual", &self.mutual)
            .finish_non_exhaustive()
    }
}

impl ServerTls {
    /// TLS with the certificate chain `cert_pem` and its key `key_pem`; with `client_ca_pem`,
    /// mutual TLS: clients must present a certificate that CA signed. HTTP/2 only (ALPN `h2`).
    /// Not reloadable (no files).
    pub fn from_pem(
        cert_pem: &[u8],
        key_pem: &[u8],
        client_ca_pem: Option<&[u8]>,
    ) -> Result<Self, String> {
        let config = rustls_config(cert_pem, key_pem, client_ca_pem)?;
        Ok(Self::new(config, client_ca_pem.is_some(), None))
    }

    fn new(config: rustls::ServerConfig, mutual: bool, files: Option<TlsFiles>) -> Self {
        Self {
            config: Arc::new(RwLock::new(Arc::new(config))),
            mutual,
            files: files.map(Arc::new),
        }
    }

    /// Whether clients must present a certificate.
    pub fn is_mutual(&self) -> bool {
        self.mutual
    }

    /// The rustls configuration of a new handshake: the files as last (re)loaded.
    pub fn config(&self) -> Arc<rustls::ServerConfig> {
        self.config
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Reads the files again (checked as at start) and uses them for every handshake from
    /// now on; on an error the configuration in force stays. `Ok(false)`: not from files.
    pub fn reload(&self) -> Result<bool, ConfigError> {
        let Some(files) = &self.files else {
            return Ok(false);
        };
        let config = load(files)?;
        *self.config.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(config);
        Ok(true)
    }
}

/// The rustls server configuration of a certificate chain, its key and an optional client
/// CA (PEM).
fn rustls_config(
    cert_pem: &[u8],
    key_pem: &[u8],
    client_ca_pem: Option<&[u8]>,
) -> Result<rustls::ServerConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certs = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("certificate: {e}"))?;
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| format!("key: {e}"))?;
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let builder = match client_ca_pem {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(ca) {
                roots
                    .add(cert.map_err(|e| format!("client CA: {e}"))?)
                    .map_err(|e| format!("client CA: {e}"))?;
            }
            let verifier =
                rustls::server::WebPkiClientVerifier::builder_with_provider(roots.into(), provider)
                    .build()
                    .map_err(|e| format!("client CA: {e}"))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|e| e.to_string())?;
    config.alpn_protocols.push(b"h2".to_vec());
    Ok(config)
}

/// The TLS files the flags name, read and checked now (PEM that parses, a key that matches
/// its certificate), so a bad file fails at start-up in one line naming its flag rather than
/// at the first handshake ("peer sent no certificates", "KeyMismatch").
pub(super) fn server_tls(args: &ServeArgs) -> Result<Option<ServerTls>, ConfigError> {
    let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) else {
        return Ok(None);
    };
    let files = TlsFiles {
        cert: cert.clone(),
        key: key.clone(),
        client_ca: args.tls_client_ca.clone(),
    };
    let config = load(&files)?;
    let mutual = files.client_ca.is_some();
    Ok(Some(ServerTls::new(config, mutual, Some(files))))
}

/// Reads and checks `files` (each error names its flag and file) into a rustls configuration.
fn load(files: &TlsFiles) -> Result<rustls::ServerConfig, ConfigError> {
    let (cert_pem, certs) = read_certs("tls-cert", &files.cert)?;
    let key_pem = read_pem("tls-key", &files.key)?;
    check_key_matches(&certs, &key_pem, ("tls-key", &files.key), "tls-cert")?;
    let client_ca = match &files.client_ca {
        Some(ca) => Some(read_certs("tls-client-ca", ca)?.0),
        None => None,
    };
    rustls_config(&cert_pem, &key_pem, client_ca.as_deref())
        .map_err(|e| ConfigError(format!("--tls-cert, --tls-key, --tls-client-ca: {e}")))
}

/// A Redis password given as an argument: never shown (`Debug` is `***`).
#[derive(Clone)]
pub struct RedisPassword(String);

impl std::str::FromStr for RedisPassword {
    type Err = std::convert::Infallible;

    fn from_str(password: &str) -> Result<Self, Self::Err> {
        Ok(Self(password.to_owned()))
    }
}

impl std::fmt::Debug for RedisPassword {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

/// The stores' password from `--redis-password-file` (its first line) or
/// `--redis-password`/`VICINITY_REDIS_PASSWORD`; errors name the flag and the file, never
/// what is in it.
pub(super) fn redis_password(args: &ServeArgs) -> Result<Option<String>, ConfigError> {
    if let Some(path) = &args.redis_password_file {
        return password_file("redis-password-file", path).map(Some);
    }
    Ok(args
        .redis_password
        .as_ref()
        .map(|p| p.0.clone())
        .filter(|p| !p.is_empty()))
}

/// The stores' sentinels' password (`--redis-sentinel-password-file`), if given.
pub(super) fn redis_sentinel_password(args: &ServeArgs) -> Result<Option<String>, ConfigError> {
    let path = args.redis_sentinel_password_file.as_deref();
    path.map(|path| password_file("redis-sentinel-password-file", path))
        .transpose()
}

/// The password on the first line of the file at `path`, which `--<flag>` names.
fn password_file(flag: &str, path: &std::path::Path) -> Result<String, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError(format!("--{flag}: {}: {e}", path.display())))?;
    let password = text.lines().next().unwrap_or_default();
    if password.is_empty() {
        return Err(ConfigError(format!(
            "--{flag}: {}: the first line is empty",
            path.display()
        )));
    }
    Ok(password.to_owned())
}

/// The TLS settings for the stores' `rediss://` URLs that the flags name, read now so a bad
/// file fails at start-up, naming its flag. None when no flag is given.
pub(super) fn redis_tls(
    args: &ServeArgs,
    targets: [&Target; 2],
) -> Result<Option<TlsCertificates>, ConfigError> {
    let root_cert = match &args.redis_ca_file {
        Some(path) => Some(read_certs("redis-ca-file", path)?.0),
        None => None,
    };
    let client_tls = match (&args.redis_client_cert, &args.redis_client_key) {
        (Some(cert), Some(key)) => {
            let (client_cert, certs) = read_certs("redis-client-cert", cert)?;
            let client_key = read_pem("redis-client-key", key)?;
            let key_flag = ("redis-client-key", key.as_path());
            check_key_matches(&certs, &client_key, key_flag, "redis-client-cert")?;
            Some(ClientTlsConfig {
                client_cert,
                client_key,
            })
        }
        _ => None,
    };
    if root_cert.is_none() && client_tls.is_none() {
        return Ok(None);
    }
    let tls_urls = targets
        .iter()
        .flat_map(|t| t.urls())
        .any(|url| url.starts_with("rediss://") || url.starts_with("rediss+sentinel://"));
    if !tls_urls {
        let flag = if root_cert.is_some() {
            "--redis-ca-file"
        } else {
            "--redis-client-cert"
        };
        return Err(ConfigError(format!(
            "{flag}: no store URL is rediss:// (TLS settings apply to rediss:// URLs only)"
        )));
    }
    Ok(Some(TlsCertificates {
        client_tls,
        root_cert,
    }))
}

fn read_pem(flag: &str, path: &std::path::Path) -> Result<Vec<u8>, ConfigError> {
    std::fs::read(path).map_err(|e| ConfigError(format!("--{flag}: {}: {e}", path.display())))
}

/// The file `path` names and the certificates in it: at least one, each PEM that parses.
fn read_certs(
    flag: &str,
    path: &std::path::Path,
) -> Result<(Vec<u8>, Vec<CertificateDer<'static>>), ConfigError> {
    let pem = read_pem(flag, path)?;
    let certs: Result<Vec<_>, _> = CertificateDer::pem_slice_iter(&pem).collect();
    match certs {
        Ok(certs) if !certs.is_empty() => Ok((pem, certs)),
        Ok(_) => Err(ConfigError(format!(
            "--{flag}: {}: no PEM certificate in it",
            path.display()
        ))),
        Err(e) => Err(ConfigError(format!(
            "--{flag}: {}: not a readable PEM certificate ({e})",
            path.display()
        ))),
    }
}

/// Checks that `key_pem` (read from the file `key_flag` names) is a private key that goes
/// with the first of `certs` (from `cert_flag`).
fn check_key_matches(
    certs: &[CertificateDer<'static>],
    key_pem: &[u8],
    (key_flag, path): (&str, &std::path::Path),
    cert_flag: &str,
) -> Result<(), ConfigError> {
    let bad = |what: String| ConfigError(format!("--{key_flag}: {}: {what}", path.display()));
    let key = PrivateKeyDer::from_pem_slice(key_pem)
        .map_err(|e| bad(format!("no PEM private key in it ({e})")))?;
    let signer = rustls::crypto::ring::sign::any_supported_type(&key)
        .map_err(|e| bad(format!("not a usable private key ({e})")))?;
    rustls::sign::CertifiedKey::new(certs.to_vec(), signer)
        .keys_match()
        .map_err(|_| bad(format!("does not match the certificate of --{cert_flag}")))
}
