//! Why a handshake failed, in words an operator can act on and as a label
//! for `tls_handshake_failures_total{reason}`.

use rustls::{AlertDescription, CertificateError, Error};

/// The reasons counted, in the order of the metric slots.
pub const REASONS: [&str; 13] = [
    "expired",
    "not_yet_valid",
    "unknown_ca",
    "bad_name",
    "no_client_cert",
    "san_mismatch",
    "bad_certificate",
    "no_alpn",
    "incompatible",
    "not_tls",
    "timeout",
    "peer_alert",
    "other",
];

/// The slot of `reason` in [`REASONS`].
pub fn slot(reason: &str) -> usize {
    REASONS.iter().position(|r| *r == reason).unwrap_or(REASONS.len() - 1)
}

/// The reason label of a rustls error, seen on either side.
pub fn reason(err: &Error) -> &'static str {
    use CertificateError as C;
    match err {
        Error::InvalidCertificate(c) => match c {
            C::Expired | C::ExpiredContext { .. } => "expired",
            C::NotValidYet | C::NotValidYetContext { .. } => "not_yet_valid",
            C::UnknownIssuer => "unknown_ca",
            C::NotValidForName | C::NotValidForNameContext { .. } => "bad_name",
            C::ApplicationVerificationFailure => "san_mismatch",
            _ => "bad_certificate",
        },
        Error::NoCertificatesPresented => "no_client_cert",
        Error::NoApplicationProtocol => "no_alpn",
        Error::PeerIncompatible(_) => "incompatible",
        Error::InvalidMessage(_) => "not_tls",
        Error::AlertReceived(a) => match a {
            AlertDescription::CertificateExpired => "expired",
            AlertDescription::UnknownCA => "unknown_ca",
            AlertDescription::CertificateRequired => "no_client_cert",
            AlertDescription::BadCertificate | AlertDescription::UnsupportedCertificate => "bad_certificate",
            AlertDescription::NoApplicationProtocol => "no_alpn",
            AlertDescription::ProtocolVersion | AlertDescription::HandshakeFailure => "incompatible",
            AlertDescription::AccessDenied => "san_mismatch",
            _ => "peer_alert",
        },
        _ => "other",
    }
}

/// The reason label and the text of an I/O error from a handshake
/// (tokio-rustls wraps rustls' errors in `io::Error`).
pub fn describe(err: &std::io::Error) -> (&'static str, String) {
    match err.get_ref().and_then(|e| e.downcast_ref::<Error>()) {
        Some(e) => (reason(e), explain(e)),
        None if err.kind() == std::io::ErrorKind::TimedOut => ("timeout", err.to_string()),
        None if err.kind() == std::io::ErrorKind::UnexpectedEof => {
            ("other", "the peer closed during the handshake".into())
        }
        None => ("other", err.to_string()),
    }
}

/// A sentence for the log line.
fn explain(e: &Error) -> String {
    use CertificateError as C;
    match e {
        Error::InvalidCertificate(C::ExpiredContext { time, not_after }) => {
            format!("the peer's certificate expired (not after {}, now {})", secs(not_after), secs(time))
        }
        Error::InvalidCertificate(C::NotValidYetContext { time, not_before }) => {
            format!("the peer's certificate is not valid yet (not before {}, now {})", secs(not_before), secs(time))
        }
        Error::InvalidCertificate(C::UnknownIssuer) => "the peer's certificate is not signed by a trusted CA".into(),
        Error::InvalidCertificate(C::NotValidForNameContext { expected, presented }) => {
            format!("the peer's certificate is not valid for {expected:?} (it names {presented:?})")
        }
        Error::InvalidCertificate(C::ApplicationVerificationFailure) => {
            "the peer's certificate carries none of the accepted subject alternative names".into()
        }
        Error::NoCertificatesPresented => "the client sent no certificate and one is required".into(),
        Error::InvalidMessage(_) => "not a TLS handshake (plaintext on a TLS port?)".into(),
        other => other.to_string(),
    }
}

fn secs(t: &rustls::pki_types::UnixTime) -> String {
    format!("unix {}", t.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_has_a_slot_and_errors_map_to_them() {
        for r in REASONS {
            assert_eq!(REASONS[slot(r)], r);
        }
        assert_eq!(reason(&Error::InvalidCertificate(CertificateError::Expired)), "expired");
        assert_eq!(reason(&Error::InvalidCertificate(CertificateError::UnknownIssuer)), "unknown_ca");
        assert_eq!(reason(&Error::NoCertificatesPresented), "no_client_cert");
        assert_eq!(reason(&Error::AlertReceived(AlertDescription::CertificateRequired)), "no_client_cert");
        let io = std::io::Error::new(std::io::ErrorKind::InvalidData, Error::NoCertificatesPresented);
        assert_eq!(describe(&io).0, "no_client_cert");
    }
}
