//! TLS, the way a mesh uses it, on rustls (ring as the crypto provider).
//!
//! Configuration hands this module plain specs ([`TlsContextSpec`], MOSN's
//! `tls_context` fields); it compiles them once per configuration
//! generation, on the control thread, into rustls configurations that every
//! worker shares through an `Arc` (so a session ticket issued on one worker
//! resumes on another):
//!
//! - [`server::ServerTls`]: a listener's contexts (`tls_context`, or several
//!   in `tls_context_set` chosen by SNI, then ALPN, then the first, as MOSN
//!   chooses), the inspector, and the handshake of an accepted connection;
//! - [`client::ClientTls`]: a cluster's origination (SNI, CA verification, a
//!   client certificate, session resumption);
//! - [`identity`]: the peer's verified identity (SPIFFE URI SANs, DNS SANs)
//!   and the lists it is matched against;
//! - [`failure`]: why a handshake failed, as a metrics label and a log text.
//!
//! Certificates rotate through the configuration generations: the runtime
//! watches the files a generation read ([`TlsFiles`]) and builds the next
//! generation when one changes; a file that does not load is refused with
//! the old certificate still in service. A control plane (SDS) can feed the
//! same path.

pub mod client;
pub mod failure;
pub mod identity;
pub mod load;
pub mod server;

use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::CertificateDer;
use rustls::{DigitallySignedStruct, SignatureScheme};
use serde::Deserialize;
use tokio::net::TcpStream;

use identity::PeerIdentity;

/// A TLS connection and what its handshake settled.
pub struct TlsConn {
    pub stream: tokio_rustls::TlsStream<TcpStream>,
    pub info: Arc<TlsInfo>,
}

/// What a TLS handshake settled, for routing, filters and access logs.
#[derive(Debug, Default)]
pub struct TlsInfo {
    /// The name the client asked for (server side), or the one we sent.
    pub sni: Option<String>,
    pub alpn: Option<Vec<u8>>,
    pub version: &'static str,
    /// The peer's certificate identity, when it presented one that was verified.
    pub peer: Option<PeerIdentity>,
    /// Whether the session was resumed (no full handshake).
    pub resumed: bool,
}

impl TlsConn {
    /// A connection whose handshake just completed, on either side.
    fn new(stream: tokio_rustls::TlsStream<TcpStream>, sni: Option<String>) -> TlsConn {
        let state = stream.get_ref().1;
        let info = TlsInfo {
            sni,
            alpn: state.alpn_protocol().map(<[u8]>::to_vec),
            version: match state.protocol_version() {
                Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3",
                Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2",
                _ => "",
            },
            peer: state.peer_certificates().and_then(|c| c.first()).and_then(PeerIdentity::from_der),
            resumed: state.handshake_kind() == Some(rustls::HandshakeKind::Resumed),
        };
        TlsConn { stream, info: Arc::new(info) }
    }
}

/// Handshake signatures checked with a provider's algorithms: what every
/// verifier does after (or instead of) judging the certificate itself.
#[derive(Debug)]
struct Signatures(Arc<CryptoProvider>);

impl Signatures {
    fn tls12(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn tls13(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// MOSN's `tls_context` (pkg/config/v2 `TLSConfig`), as configuration reads
/// it. Certificates and keys are file paths or inline PEM.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct TlsContextSpec {
    pub status: bool,
    /// A MOSN extension name; `sni_verify` is understood (client side: the
    /// server's URI SAN must equal `extend_verify.match_subject_alt_names`).
    #[serde(rename = "type")]
    pub kind: String,
    pub server_name: String,
    pub ca_cert: String,
    pub cert_chain: String,
    pub private_key: String,
    pub verify_client: bool,
    pub require_client_cert: bool,
    pub insecure_skip: bool,
    /// Colon-separated, MOSN's names (`ECDHE-RSA-AES128-GCM-SHA256`, …).
    pub cipher_suites: String,
    /// Comma-separated: `x25519`, `p256`, `p384`.
    pub ecdh_curves: String,
    /// `TLS_AUTO`, `TLSv1_2`, `TLSv1_3` (1.0 and 1.1 are not offered).
    pub min_version: String,
    pub max_version: String,
    /// Comma-separated: `h2`, `http/1.1`, `sofa`.
    pub alpn: String,
    pub fall_back: bool,
    pub ticket: String,
    pub extend_verify: Option<serde_json::Value>,
    pub callbacks: Vec<String>,
    pub sds_source: Option<serde_json::Value>,
    /// ferrymesh: the peer's certificate must carry one of these subject
    /// alternative names (URI, e.g. a SPIFFE id, or DNS); an entry ending in
    /// `*` matches by prefix (`spiffe://cluster.local/ns/default/*`).
    pub match_subject_alt_names: Vec<String>,
}

impl TlsContextSpec {
    /// Whether the context turns TLS on.
    pub fn enabled(&self) -> bool {
        self.status
    }
}

/// The files a compiled TLS configuration was read from, with what they held
/// when read: the runtime polls them and builds a new generation on a change.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsFiles(pub Vec<(std::path::PathBuf, Option<load::Stamp>)>);

impl TlsFiles {
    /// The files whose stamp differs from the one they had when read.
    pub fn changed(&self) -> Vec<&std::path::Path> {
        self.0.iter().filter(|(p, s)| load::stamp(p) != *s).map(|(p, _)| p.as_path()).collect()
    }
}

/// The crypto provider: ring, with the suites, groups and versions a
/// context asks for. rustls 0.23.48 marks ring's provider deprecated because
/// it has no post-quantum key exchange (X25519MLKEM768); aws-lc-rs has it,
/// at the cost of building a large C library, minutes on a 2-core builder.
/// ring has every suite and group MOSN's configurations name.
#[allow(deprecated)]
fn provider() -> rustls::crypto::CryptoProvider {
    rustls::crypto::ring::default_provider()
}
