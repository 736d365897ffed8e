//! TLS identities and configs. One crypto provider (ring) is passed
//! explicitly everywhere, so no process-wide default is needed.

use std::path::Path;
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::NetError;

/// ALPN for HTTP/3.
pub const ALPN_H3: &[u8] = b"h3";

/// The crypto provider used everywhere: ring, with AES-128-GCM first among
/// its suites (10 AES rounds a block against AES-256's 14; both far beyond
/// reach, and a quantum computer breaks the key exchange first). Our own
/// clients offer it first, so traffic between our tiers uses it; servers
/// follow the client's order. Forcing it on every client made the HTTP/3
/// floor's server CPU per 1 MiB answer 1.5 to 2% lower (bench/edge.sh,
/// oha offers AES-256 first): within noise, and a client without AES
/// instructions would lose its ChaCha20.
pub fn provider() -> Arc<CryptoProvider> {
    use rustls::CipherSuite as C;
    let mut p = rustls::crypto::ring::default_provider();
    p.cipher_suites.sort_by_key(|s| {
        !matches!(
            s.suite(),
            C::TLS13_AES_128_GCM_SHA256 | C::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 | C::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256
        )
    });
    Arc::new(p)
}

/// A certificate chain and its private key.
#[derive(Debug)]
pub struct TlsIdentity {
    /// Leaf first.
    pub chain: Vec<CertificateDer<'static>>,
    /// The leaf's key.
    pub key: PrivateKeyDer<'static>,
}

impl Clone for TlsIdentity {
    fn clone(&self) -> Self {
        Self { chain: self.chain.clone(), key: self.key.clone_key() }
    }
}

impl TlsIdentity {
    /// Loads PEM files (certificate chain, private key).
    pub fn from_pem_files(cert: &Path, key: &Path) -> Result<Self, NetError> {
        let cert_pem = std::fs::read(cert).map_err(NetError::io(format!("{}: cannot read", cert.display())))?;
        let key_pem = std::fs::read(key).map_err(NetError::io(format!("{}: cannot read", key.display())))?;
        Self::from_pem(&cert_pem, &key_pem, &cert.display().to_string(), &key.display().to_string())
    }

    /// Reads a PEM certificate chain and private key (`cert_from` and
    /// `key_from` name where they came from, for errors).
    pub fn from_pem(cert_pem: &[u8], key_pem: &[u8], cert_from: &str, key_from: &str) -> Result<Self, NetError> {
        let chain = rustls_pemfile::certs(&mut &cert_pem[..])
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| NetError::Tls(format!("{cert_from}: {e}")))?;
        if chain.is_empty() {
            return Err(NetError::Tls(format!("{cert_from}: no certificate in it")));
        }
        let key = rustls_pemfile::private_key(&mut &key_pem[..])
            .map_err(|e| NetError::Tls(format!("{key_from}: {e}")))?
            .ok_or_else(|| NetError::Tls(format!("{key_from}: no private key in it")))?;
        Ok(Self { chain, key })
    }

    /// A rustls server config offering `alpn`.
    pub fn server_config(&self, alpn: &[&[u8]]) -> Result<rustls::ServerConfig, NetError> {
        let mut cfg = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| NetError::Tls(e.to_string()))?
            .with_no_client_auth()
            .with_single_cert(self.chain.clone(), self.key.clone_key())
            .map_err(|e| NetError::Tls(e.to_string()))?;
        cfg.alpn_protocols = alpn.iter().map(|a| a.to_vec()).collect();
        // The client's order decides (rustls's default): a phone without AES
        // instructions asks for ChaCha20 first and should get it. Our own
        // clients (edges, nodes, peers, the smart client) offer AES-128 first.
        Ok(cfg)
    }
}

/// A certificate authority for a cluster on loopback or a private network:
/// it signs every server's leaf, and clients trust its one certificate.
pub struct LocalCa {
    cert_pem: String,
    key: KeyPair,
}

impl std::fmt::Debug for LocalCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalCa").finish_non_exhaustive()
    }
}

fn ca_params() -> Result<CertificateParams, NetError> {
    let mut p = CertificateParams::new(Vec::<String>::new()).map_err(|e| NetError::Tls(e.to_string()))?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "Tranzcast local CA");
    dn.push(DnType::OrganizationName, "Tranzcast");
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    Ok(p)
}

impl LocalCa {
    /// A new CA with a fresh key.
    pub fn generate() -> Result<Self, NetError> {
        let key = KeyPair::generate().map_err(|e| NetError::Tls(e.to_string()))?;
        let cert = ca_params()?.self_signed(&key).map_err(|e| NetError::Tls(e.to_string()))?;
        Ok(Self { cert_pem: cert.pem(), key })
    }

    /// Loads `ca.pem` and `ca.key` from `dir`, creating them on first use.
    pub fn load_or_create(dir: &Path) -> Result<Self, NetError> {
        let (cert_path, key_path) = (dir.join("ca.pem"), dir.join("ca.key"));
        if cert_path.exists() && key_path.exists() {
            let cert_pem = std::fs::read_to_string(&cert_path).map_err(NetError::io(format!("{}: cannot read", cert_path.display())))?;
            let key_pem = std::fs::read_to_string(&key_path).map_err(NetError::io(format!("{}: cannot read", key_path.display())))?;
            let key = KeyPair::from_pem(&key_pem).map_err(|e| NetError::Tls(format!("{}: {e}", key_path.display())))?;
            return Ok(Self { cert_pem, key });
        }
        std::fs::create_dir_all(dir).map_err(NetError::io(format!("{}: cannot create", dir.display())))?;
        let ca = Self::generate()?;
        write_private(&key_path, ca.key.serialize_pem().as_bytes())?;
        std::fs::write(&cert_path, ca.cert_pem.as_bytes()).map_err(NetError::io(format!("{}: cannot write", cert_path.display())))?;
        Ok(ca)
    }

    /// The CA certificate, PEM: what clients trust.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// Issues a leaf for `names` (DNS names or IP addresses).
    pub fn issue(&self, names: &[&str]) -> Result<TlsIdentity, NetError> {
        let key = KeyPair::generate().map_err(|e| NetError::Tls(e.to_string()))?;
        let params =
            CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).map_err(|e| NetError::Tls(e.to_string()))?;
        let issuer = Issuer::new(ca_params()?, &self.key);
        let cert = params.signed_by(&key, &issuer).map_err(|e| NetError::Tls(e.to_string()))?;
        let ca_der = rustls_pemfile::certs(&mut self.cert_pem.as_bytes())
            .next()
            .ok_or_else(|| NetError::Tls("CA PEM has no certificate".into()))?
            .map_err(|e| NetError::Tls(e.to_string()))?;
        Ok(TlsIdentity {
            chain: vec![cert.der().clone(), ca_der],
            key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        })
    }
}

impl LocalCa {
    /// Issues a peer's leaf, as PEM (chain, then key): for `names` only,
    /// valid from a minute ago until `not_after` (Unix seconds). The peer
    /// gets its own key and a certificate; the CA's key never leaves here.
    pub fn issue_pem(&self, names: &[String], not_after: u64) -> Result<(String, String), NetError> {
        let key = KeyPair::generate().map_err(|e| NetError::Tls(e.to_string()))?;
        let mut params = CertificateParams::new(names.to_vec()).map_err(|e| NetError::Tls(e.to_string()))?;
        let at = |secs: u64| {
            time::OffsetDateTime::from_unix_timestamp(i64::try_from(secs).unwrap_or(i64::MAX)).map_err(|e| NetError::Tls(e.to_string()))
        };
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        params.not_before = at(now.saturating_sub(60))?;
        params.not_after = at(not_after)?;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        let issuer = Issuer::new(ca_params()?, &self.key);
        let cert = params.signed_by(&key, &issuer).map_err(|e| NetError::Tls(e.to_string()))?;
        Ok((format!("{}{}", cert.pem(), self.cert_pem), key.serialize_pem()))
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<(), NetError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(NetError::io(format!("{}: cannot create", path.display())))?;
    f.write_all(bytes).map_err(NetError::io(format!("{}: cannot write", path.display())))
}

/// Root store trusting the PEM certificates in `ca_pem`.
pub fn roots(ca_pem: &[u8]) -> Result<rustls::RootCertStore, NetError> {
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pemfile::certs(&mut &ca_pem[..]) {
        roots.add(c.map_err(|e| NetError::Tls(e.to_string()))?).map_err(|e| NetError::Tls(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(NetError::Tls("no CA certificate in the PEM".into()));
    }
    Ok(roots)
}

/// A rustls client config trusting `ca_pem`, offering `alpn`.
pub fn client_config(ca_pem: &[u8], alpn: &[&[u8]]) -> Result<rustls::ClientConfig, NetError> {
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| NetError::Tls(e.to_string()))?
        .with_root_certificates(roots(ca_pem)?)
        .with_no_client_auth();
    cfg.alpn_protocols = alpn.iter().map(|a| a.to_vec()).collect();
    Ok(cfg)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Runs a handshake between `client` and `server` in memory; the suite
    /// they agreed on.
    fn handshake(client: rustls::ClientConfig, server: rustls::ServerConfig) -> rustls::CipherSuite {
        let mut c = rustls::ClientConnection::new(Arc::new(client), "localhost".try_into().unwrap()).unwrap();
        let mut s = rustls::ServerConnection::new(Arc::new(server)).unwrap();
        for _ in 0..10 {
            let mut buf = Vec::new();
            c.write_tls(&mut buf).unwrap();
            s.read_tls(&mut buf.as_slice()).unwrap();
            s.process_new_packets().unwrap();
            let mut buf = Vec::new();
            s.write_tls(&mut buf).unwrap();
            c.read_tls(&mut buf.as_slice()).unwrap();
            c.process_new_packets().unwrap();
            if !c.is_handshaking() && !s.is_handshaking() {
                break;
            }
        }
        assert!(!c.is_handshaking());
        c.negotiated_cipher_suite().unwrap().suite()
    }

    #[test]
    fn our_tiers_use_aes_128_and_a_client_preferring_chacha_gets_it() {
        let ca = LocalCa::generate().unwrap();
        let id = ca.issue(&["localhost"]).unwrap();
        let ours = client_config(ca.cert_pem().as_bytes(), &[b"h2"]).unwrap();
        assert_eq!(handshake(ours, id.server_config(&[b"h2"]).unwrap()), rustls::CipherSuite::TLS13_AES_128_GCM_SHA256);
        // A client whose first choice is ChaCha20 (no AES instructions) keeps it.
        let mut chacha_first = rustls::crypto::ring::default_provider();
        chacha_first.cipher_suites.sort_by_key(|s| s.suite() != rustls::CipherSuite::TLS13_CHACHA20_POLY1305_SHA256);
        let mut roots = rustls::RootCertStore::empty();
        for c in rustls_pemfile_certs(ca.cert_pem().as_bytes()) {
            roots.add(c).unwrap();
        }
        let theirs = rustls::ClientConfig::builder_with_provider(Arc::new(chacha_first))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        assert_eq!(handshake(theirs, id.server_config(&[b"h2"]).unwrap()), rustls::CipherSuite::TLS13_CHACHA20_POLY1305_SHA256);
    }

    fn rustls_pemfile_certs(pem: &[u8]) -> Vec<CertificateDer<'static>> {
        use rustls::pki_types::pem::PemObject;
        CertificateDer::pem_slice_iter(pem).map(Result::unwrap).collect()
    }
}
