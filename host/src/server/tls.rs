//! HTTPS for the listeners (rustls with the ring provider, no OpenSSL): the certificate chain,
//! private key and client CAs read from PEM files, re-read on reload without dropping a
//! connection, and the identity of a verified client certificate for mutual TLS.
//!
//! - TLS 1.2 and 1.3 only (rustls speaks nothing older), ALPN `h2` and `http/1.1`.
//! - [`TlsListener`] holds the current `rustls::ServerConfig`; each new connection takes the
//!   config in force when it arrives, so [`TlsListener::reload`] swaps certificates for new
//!   connections while the open ones finish on the old ones.
//! - With `client_ca_file`, a client certificate is verified against those CAs (chain and
//!   validity period); `require_client_cert = true` refuses handshakes without one.
//!   [`peer_identity`] reads the verified leaf's subject CN and SAN DNS names and URIs, which
//!   `[[auth.clients]]` maps to a source name (see [`crate::ingest::auth`]).

use std::path::Path;
use std::sync::{Arc, RwLock};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use tokio_rustls::TlsAcceptor;

use crate::config::{Config, MAX_PEM_FILE_BYTES, TlsConfig, read_file_bounded};
use crate::ingest::auth::ClientIdentity;

/// ALPN protocols offered, in order of preference.
const ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// The TLS side of one listener; cheap to share.
pub struct TlsListener {
    /// Which listener, for messages (`server.tls`, `telemetry.tls`).
    key: &'static str,
    current: RwLock<Arc<ServerConfig>>,
}

impl TlsListener {
    /// Read the files `tls` names (relative to the config file) and build the server config.
    /// Errors name the config key and the file, never key material.
    pub fn load(key: &'static str, tls: &TlsConfig, config: &Config) -> Result<TlsListener, String> {
        let server = server_config(tls, config).map_err(|e| format!("{key}: {e}"))?;
        Ok(TlsListener {
            key,
            current: RwLock::new(server),
        })
    }

    /// Re-read the files `tls` names and build the config that [`install`](Self::install)
    /// puts in service; the certificates in service are untouched until then.
    pub fn prepare(&self, tls: &TlsConfig, config: &Config) -> Result<Arc<ServerConfig>, String> {
        server_config(tls, config).map_err(|e| format!("{}: {e}", self.key))
    }

    /// Serve new connections with `server` (from [`prepare`](Self::prepare)).
    pub fn install(&self, server: Arc<ServerConfig>) {
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = server;
    }

    /// An acceptor with the certificates in force now.
    pub fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.current.read().unwrap_or_else(|p| p.into_inner()).clone())
    }
}

/// The rustls server config for `tls`.
fn server_config(tls: &TlsConfig, config: &Config) -> Result<Arc<ServerConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain = certificates(&config.resolve_path(&tls.cert_file), "cert_file")?;
    let key = private_key(&config.resolve_path(&tls.key_file))?;
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| format!("TLS versions: {e}"))?;
    let builder = match &tls.client_ca_file {
        None => builder.with_no_client_auth(),
        Some(file) => {
            let path = config.resolve_path(file);
            let mut roots = RootCertStore::empty();
            for ca in certificates(&path, "client_ca_file")? {
                roots
                    .add(ca)
                    .map_err(|e| format!("client_ca_file {}: not a usable CA certificate: {e}", path.display()))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let verifier = if tls.require_client_cert {
                verifier
            } else {
                verifier.allow_unauthenticated()
            };
            let verifier = verifier
                .build()
                .map_err(|e| format!("client_ca_file {}: {e}", path.display()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut server = builder.with_single_cert(chain, key).map_err(|e| {
        format!(
            "cert_file {} and key_file {} do not make a usable certificate: {e}",
            tls.cert_file.display(),
            tls.key_file.display()
        )
    })?;
    server.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(server))
}

/// A PEM file's bytes (a regular file of at most [`MAX_PEM_FILE_BYTES`]); errors name `key`.
fn read_pem(path: &Path, key: &str) -> Result<Vec<u8>, String> {
    read_file_bounded(path, MAX_PEM_FILE_BYTES).map_err(|e| format!("{key}: {e}"))
}

/// Every certificate in a PEM file, in file order (leaf first for a chain).
fn certificates(path: &Path, key: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let pem = read_pem(path, key)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{key} {}: not PEM certificates: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{key} {}: no CERTIFICATE in the file", path.display()));
    }
    Ok(certs)
}

/// The first private key in a PEM file (PKCS#8, PKCS#1 RSA or SEC1 EC).
fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    let pem = read_pem(path, "key_file")?;
    // The parse error never quotes the key.
    PrivateKeyDer::from_pem_slice(&pem).map_err(|_| format!("key_file {}: no private key in the file", path.display()))
}

/// The verified client certificate of a connection, if the client sent one.
pub fn peer_identity(conn: &rustls::ServerConnection) -> Option<ClientIdentity> {
    let leaf = conn.peer_certificates()?.first()?;
    identity_of(leaf.as_ref())
}

/// Subject CN, SAN DNS names and URIs of a DER certificate.
pub fn identity_of(der: &[u8]) -> Option<ClientIdentity> {
    use x509_parser::extensions::GeneralName;
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let common_name = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .map(str::to_owned);
    let mut identity = ClientIdentity {
        common_name,
        dns_names: Vec::new(),
        uris: Vec::new(),
    };
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(d) => identity.dns_names.push((*d).to_owned()),
                GeneralName::URI(u) => identity.uris.push((*u).to_owned()),
                _ => {}
            }
        }
    }
    Some(identity)
}
