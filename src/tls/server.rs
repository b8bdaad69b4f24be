//! TLS termination on a listener: its contexts, the choice among them, and
//! the handshake of an accepted connection.
//!
//! One rustls `ServerConfig` per context, built once per configuration
//! generation and shared by every worker. The ClientHello is read first
//! (`LazyConfigAcceptor`) and the context chosen as MOSN chooses it: the
//! server name the client asked for (exact, then wildcards label by label),
//! else the first context whose ALPN protocols the client offers, else the
//! first context. Contexts differ in more than a certificate (client
//! verification, versions, suites, ALPN), which is why this is a choice of
//! configuration and not of certificate.

use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, DistinguishedName, ServerConfig, SignatureScheme};
use tokio::net::TcpStream;

use super::identity::SanMatcher;
use super::{load, Signatures, TlsConn, TlsContextSpec, TlsFiles};

/// How long a client has to finish its handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A listener's TLS: its contexts in configuration order.
pub struct ServerTls {
    contexts: Vec<ServerContext>,
    /// TLS and plaintext on one port, told apart by the first byte.
    pub inspector: bool,
    /// The files the contexts were read from.
    pub files: TlsFiles,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls").field("contexts", &self.contexts.len()).field("inspector", &self.inspector).finish()
    }
}

struct ServerContext {
    config: Arc<ServerConfig>,
    /// The same without ALPN, for a client whose protocols overlap none of
    /// ours: MOSN serves it without negotiating, rustls alone would refuse.
    no_alpn: Option<Arc<ServerConfig>>,
    /// The names this context answers to, lowercased: the certificate's
    /// subject CN and DNS SANs, and `server_name` (empty: a hello without SNI).
    names: Vec<String>,
    alpn: Vec<Vec<u8>>,
}

impl ServerTls {
    /// Compiles a listener's contexts (`(spec, path)`, disabled ones already
    /// left out). Every error names the field it came from.
    pub fn build(
        specs: &[(TlsContextSpec, String)],
        inspector: bool,
        warnings: &mut Vec<String>,
    ) -> Result<ServerTls, String> {
        if specs.is_empty() {
            return Err("tls_context: no context has status true".into());
        }
        let mut files = TlsFiles::default();
        let contexts = specs
            .iter()
            .map(|(spec, path)| ServerContext::build(spec, path, &mut files, warnings))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ServerTls { contexts, inspector, files })
    }

    /// The context for a ClientHello.
    fn choose(&self, sni: Option<&str>, offered: &[Vec<u8>]) -> Arc<ServerConfig> {
        let name = sni.map(|s| s.trim_end_matches('.').to_ascii_lowercase()).unwrap_or_default();
        let by_name = |n: &str| self.contexts.iter().find(|c| c.names.iter().any(|m| m == n));
        let mut found = by_name(&name);
        // Wildcards, label by label: a.b.com, then *.b.com, then *.com.
        let mut rest = name.as_str();
        while found.is_none() {
            let Some((_, tail)) = rest.split_once('.') else { break };
            found = by_name(&format!("*.{tail}"));
            rest = tail;
        }
        let ctx = found
            .or_else(|| self.contexts.iter().find(|c| c.alpn.iter().any(|p| offered.contains(p))))
            .unwrap_or(&self.contexts[0]);
        match &ctx.no_alpn {
            Some(plain) if !offered.is_empty() && !ctx.alpn.iter().any(|p| offered.contains(p)) => plain.clone(),
            _ => ctx.config.clone(),
        }
    }

    /// The handshake of an accepted connection, within `timeout`.
    pub async fn accept(&self, tcp: TcpStream, timeout: Duration) -> std::io::Result<TlsConn> {
        let deadline = tokio::time::Instant::now() + timeout;
        let timed_out = || std::io::Error::new(std::io::ErrorKind::TimedOut, "handshake timed out");
        let acceptor = tokio_rustls::LazyConfigAcceptor::new(rustls::server::Acceptor::default(), tcp);
        let start = tokio::time::timeout_at(deadline, acceptor).await.map_err(|_| timed_out())??;
        let hello: ClientHello<'_> = start.client_hello();
        let sni = hello.server_name().map(str::to_owned);
        let offered: Vec<Vec<u8>> = hello.alpn().map(|it| it.map(<[u8]>::to_vec).collect()).unwrap_or_default();
        let config = self.choose(sni.as_deref(), &offered);
        let stream = tokio::time::timeout_at(deadline, start.into_stream(config)).await.map_err(|_| timed_out())??;
        Ok(TlsConn::new(stream.into(), sni))
    }
}

impl ServerContext {
    fn build(
        spec: &TlsContextSpec,
        path: &str,
        files: &mut TlsFiles,
        warnings: &mut Vec<String>,
    ) -> Result<ServerContext, String> {
        load::unused_fields(spec, path, warnings);
        if spec.cert_chain.is_empty() || spec.private_key.is_empty() {
            return Err(format!("{path}: a listener's TLS context needs cert_chain and private_key"));
        }
        let prov = Arc::new(load::provider(spec, path, warnings)?);
        let versions = load::versions(spec, path, warnings)?;
        let key = load::certified_key(spec, path, &prov, files)?;
        if let Some(w) = load::validity_warning(&key.cert[0], &format!("{path}.cert_chain")) {
            warnings.push(w);
        }
        let sans = SanMatcher::new(&spec.match_subject_alt_names);
        let verifier: Arc<dyn ClientCertVerifier> = match (spec.verify_client, spec.require_client_cert) {
            (true, required) => {
                if spec.ca_cert.is_empty() {
                    return Err(format!("{path}.ca_cert: verify_client needs the CA that signs client certificates"));
                }
                let roots = load::roots(&spec.ca_cert, &format!("{path}.ca_cert"), files)?;
                let mut b = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), prov.clone());
                if !required {
                    b = b.allow_unauthenticated();
                }
                let inner = b.build().map_err(|e| format!("{path}.ca_cert: {e}"))?;
                Arc::new(Verified { inner, sans })
            }
            // MOSN's RequestClientCert: asked for, never checked.
            (false, true) => Arc::new(RequestOnly(Signatures(prov.clone()))),
            (false, false) => {
                if !sans.is_empty() {
                    return Err(format!("{path}.match_subject_alt_names: needs verify_client"));
                }
                WebPkiClientVerifier::no_client_auth()
            }
        };
        let names = context_names(spec, &key.cert[0]);
        let alpn = load::alpn(spec, path, warnings);
        let make = |alpn: Vec<Vec<u8>>| -> Result<Arc<ServerConfig>, String> {
            let mut cfg = ServerConfig::builder_with_provider(prov.clone())
                .with_protocol_versions(&versions)
                .map_err(|e| format!("{path}: {e}"))?
                .with_client_cert_verifier(verifier.clone())
                .with_cert_resolver(Arc::new(One(key.clone())));
            cfg.alpn_protocols = alpn;
            cfg.ignore_client_order = true;
            cfg.ticketer = rustls::crypto::ring::Ticketer::new().map_err(|e| format!("{path}: {e}"))?;
            cfg.session_storage = rustls::server::ServerSessionMemoryCache::new(4096);
            Ok(Arc::new(cfg))
        };
        let config = make(alpn.clone())?;
        let no_alpn = if alpn.is_empty() { None } else { Some(make(Vec::new())?) };
        Ok(ServerContext { config, no_alpn, names, alpn })
    }
}

/// The names a context answers to.
fn context_names(spec: &TlsContextSpec, leaf: &CertificateDer<'_>) -> Vec<String> {
    let mut names = vec![spec.server_name.trim_end_matches('.').to_ascii_lowercase()];
    if let Ok((_, c)) = x509_parser::parse_x509_certificate(leaf.as_ref()) {
        if let Some(cn) = c.subject().iter_common_name().next().and_then(|a| a.as_str().ok()) {
            names.push(cn.to_ascii_lowercase());
        }
        if let Ok(Some(san)) = c.subject_alternative_name() {
            for n in &san.value.general_names {
                if let x509_parser::extensions::GeneralName::DNSName(d) = n {
                    names.push(d.to_ascii_lowercase());
                }
            }
        }
    }
    names
}

/// One certificate for every hello of a context.
#[derive(Debug)]
struct One(Arc<CertifiedKey>);

impl ResolvesServerCert for One {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
}

/// Client certificates verified against the CA, then held to the
/// context's subject alternative names.
#[derive(Debug)]
struct Verified {
    inner: Arc<dyn ClientCertVerifier>,
    sans: SanMatcher,
}

impl ClientCertVerifier for Verified {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let ok = self.inner.verify_client_cert(end_entity, intermediates, now)?;
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

/// MOSN's `require_client_cert` without `verify_client`: a certificate is
/// asked for and not checked (the handshake signature still is).
#[derive(Debug)]
struct RequestOnly(Signatures);

impl ClientCertVerifier for RequestOnly {
    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
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
