//! TLS origination for a cluster: the server's certificate verified against
//! the cluster's CA (and, optionally, its subject alternative names), SNI
//! from `server_name`, a client certificate for mTLS, and sessions resumed
//! across connections. One `ClientConfig` per cluster, shared by every
//! worker, so its session cache serves every pool of the cluster.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ResolvesClientCert, Resumption, WebPkiServerVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::sign::CertifiedKey;
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, SignatureScheme};
use tokio::net::TcpStream;

use super::identity::SanMatcher;
use super::{load, Signatures, TlsConn, TlsContextSpec, TlsFiles};

/// A cluster's TLS.
pub struct ClientTls {
    config: Arc<ClientConfig>,
    /// The same offering ALPN `h2`, for HTTP/2 upstreams when the context
    /// names no ALPN of its own.
    config_h2: Arc<ClientConfig>,
    /// `server_name`; empty: the host's address is the name verified.
    server_name: Option<ServerName<'static>>,
    /// MOSN's `fall_back`: a failed handshake is retried in plaintext.
    pub fallback: bool,
    pub files: TlsFiles,
    /// What it was built from, to tell whether pools must be rebuilt.
    spec: TlsContextSpec,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTls").field("server_name", &self.server_name).finish()
    }
}

impl PartialEq for ClientTls {
    /// Same spec, same files with the same content stamps.
    fn eq(&self, other: &Self) -> bool {
        self.spec == other.spec && self.files == other.files
    }
}

impl Eq for ClientTls {}

impl ClientTls {
    pub fn build(spec: &TlsContextSpec, path: &str, warnings: &mut Vec<String>) -> Result<ClientTls, String> {
        load::unused_fields(spec, path, warnings);
        let mut files = TlsFiles::default();
        let prov = Arc::new(load::provider(spec, path, warnings)?);
        let versions = load::versions(spec, path, warnings)?;
        let builder = ClientConfig::builder_with_provider(prov.clone())
            .with_protocol_versions(&versions)
            .map_err(|e| format!("{path}: {e}"))?;
        let mut sans = SanMatcher::new(&spec.match_subject_alt_names);
        let mut check_name = true;
        if spec.kind == "sni_verify" {
            // MOSN's extension: the chain is verified without the name, and a
            // URI SAN must equal the configured one.
            let uri = spec
                .extend_verify
                .as_ref()
                .and_then(|v| v.get("match_subject_alt_names"))
                .and_then(serde_json::Value::as_str)
                .unwrap_or_default();
            sans = SanMatcher::new(&[uri.to_owned()]);
            check_name = false;
        }
        let verifier: Arc<dyn ServerCertVerifier> = if spec.insecure_skip {
            Arc::new(NoVerify(Signatures(prov.clone())))
        } else {
            if spec.ca_cert.is_empty() {
                return Err(format!("{path}.ca_cert: needed to verify the upstream (or set insecure_skip)"));
            }
            let roots = load::roots(&spec.ca_cert, &format!("{path}.ca_cert"), &mut files)?;
            let inner = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), prov.clone())
                .build()
                .map_err(|e| format!("{path}.ca_cert: {e}"))?;
            Arc::new(Verified { inner, sans, check_name })
        };
        let builder = builder.dangerous().with_custom_certificate_verifier(verifier);
        let mut config = if spec.cert_chain.is_empty() && spec.private_key.is_empty() {
            builder.with_no_client_auth()
        } else {
            let key = load::certified_key(spec, path, &prov, &mut files)?;
            if let Some(w) = load::validity_warning(&key.cert[0], &format!("{path}.cert_chain")) {
                warnings.push(w);
            }
            builder.with_client_cert_resolver(Arc::new(OneClient(key)))
        };
        config.resumption = Resumption::in_memory_sessions(1024);
        config.alpn_protocols = load::alpn(spec, path, warnings);
        let mut h2 = config.clone();
        if h2.alpn_protocols.is_empty() {
            h2.alpn_protocols = vec![b"h2".to_vec()];
        }
        let server_name = if spec.server_name.is_empty() {
            if !spec.insecure_skip {
                warnings.push(format!(
                    "{path}.server_name: empty; each host's address is the name verified (MOSN fails these handshakes)"
                ));
            }
            None
        } else {
            Some(ServerName::try_from(spec.server_name.clone()).map_err(|e| format!("{path}.server_name: {e}"))?)
        };
        Ok(ClientTls {
            config: Arc::new(config),
            config_h2: Arc::new(h2),
            server_name,
            fallback: spec.fall_back,
            files,
            spec: spec.clone(),
        })
    }

    /// The handshake on a connection just dialled to `addr`, within `timeout`.
    pub async fn connect(
        &self,
        tcp: TcpStream,
        addr: SocketAddr,
        http2: bool,
        timeout: Duration,
    ) -> std::io::Result<TlsConn> {
        let name = self.server_name.clone().unwrap_or(ServerName::IpAddress(addr.ip().into()));
        let config = if http2 { self.config_h2.clone() } else { self.config.clone() };
        let sni = match &name {
            ServerName::DnsName(d) => Some(d.as_ref().to_owned()),
            _ => None,
        };
        let connecting = tokio_rustls::TlsConnector::from(config).connect(name, tcp);
        let stream = tokio::time::timeout(timeout, connecting)
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "handshake timed out"))??;
        Ok(TlsConn::new(stream.into(), sni))
    }
}

#[derive(Debug)]
struct OneClient(Arc<CertifiedKey>);

impl ResolvesClientCert for OneClient {
    fn resolve(&self, _hints: &[&[u8]], _schemes: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// The server's chain verified against the CA, its name against the one
/// asked for (unless MOSN's `sni_verify` says a URI SAN decides), then its
/// subject alternative names against the cluster's list.
#[derive(Debug)]
struct Verified {
    inner: Arc<WebPkiServerVerifier>,
    sans: SanMatcher,
    check_name: bool,
}

impl ServerCertVerifier for Verified {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let verified = self.inner.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now);
        let ok = match verified {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) if !self.check_name => ServerCertVerified::assertion(),
            other => other?,
        };
        self.sans.check(end_entity)?;
        Ok(ok)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// `insecure_skip`: no verification of the server at all (the handshake's
/// signatures still are checked).
#[derive(Debug)]
struct NoVerify(Signatures);

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.tls12(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.tls13(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.schemes()
    }
}
