//! Who the peer proved to be: the names in its verified certificate.
//!
//! A mesh names workloads by SPIFFE ids (`spiffe://trust-domain/ns/…/sa/…`)
//! in URI SANs; hosts by DNS SANs. Both are read here, and matched against a
//! context's `match_subject_alt_names`.

use rustls::pki_types::CertificateDer;
use x509_parser::extensions::GeneralName;

/// The identity in a peer's leaf certificate.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerIdentity {
    pub uri_sans: Vec<String>,
    pub dns_sans: Vec<String>,
    pub subject: String,
    /// The serial number, hex.
    pub serial: String,
}

impl PeerIdentity {
    /// Reads a certificate's names; `None` when it does not parse.
    pub fn from_der(cert: &CertificateDer<'_>) -> Option<PeerIdentity> {
        let (_, c) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
        let mut id =
            PeerIdentity { subject: c.subject().to_string(), serial: c.raw_serial_as_string(), ..Default::default() };
        if let Ok(Some(san)) = c.subject_alternative_name() {
            for name in &san.value.general_names {
                match name {
                    GeneralName::URI(u) => id.uri_sans.push((*u).to_owned()),
                    GeneralName::DNSName(d) => id.dns_sans.push((*d).to_owned()),
                    _ => {}
                }
            }
        }
        Some(id)
    }

    /// The SPIFFE id, if the certificate carries one.
    pub fn spiffe_id(&self) -> Option<&str> {
        self.uri_sans.iter().map(String::as_str).find(|u| u.starts_with("spiffe://"))
    }
}

/// A list of acceptable subject alternative names: exact, or a prefix when
/// the entry ends in `*`. URI SANs compare as they are; DNS SANs without
/// regard to case. An empty list accepts every verified peer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SanMatcher {
    entries: Vec<String>,
}

impl SanMatcher {
    pub fn new(entries: &[String]) -> SanMatcher {
        SanMatcher { entries: entries.iter().filter(|e| !e.is_empty()).cloned().collect() }
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn entry_matches(entry: &str, name: &str, ignore_case: bool) -> bool {
        let eq = |a: &str, b: &str| if ignore_case { a.eq_ignore_ascii_case(b) } else { a == b };
        match entry.strip_suffix('*') {
            Some(prefix) => {
                name.len() >= prefix.len() && name.is_char_boundary(prefix.len()) && eq(&name[..prefix.len()], prefix)
            }
            None => eq(entry, name),
        }
    }

    /// Holds a verified leaf certificate to the names: the error a verifier
    /// returns when it carries none of them.
    pub fn check(&self, leaf: &CertificateDer<'_>) -> Result<(), rustls::Error> {
        if self.is_empty() || PeerIdentity::from_der(leaf).is_some_and(|id| self.accepts(&id)) {
            Ok(())
        } else {
            Err(rustls::Error::InvalidCertificate(rustls::CertificateError::ApplicationVerificationFailure))
        }
    }

    /// Whether `id` carries one of the names.
    pub fn accepts(&self, id: &PeerIdentity) -> bool {
        self.is_empty()
            || self.entries.iter().any(|e| {
                id.uri_sans.iter().any(|u| Self::entry_matches(e, u, false))
                    || id.dns_sans.iter().any(|d| Self::entry_matches(e, d, true))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(uris: &[&str], dns: &[&str]) -> PeerIdentity {
        PeerIdentity {
            uri_sans: uris.iter().map(|s| s.to_string()).collect(),
            dns_sans: dns.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn exact_prefix_and_case() {
        let m =
            SanMatcher::new(&["spiffe://td/ns/a/sa/web".into(), "spiffe://td/ns/b/*".into(), "api.example.com".into()]);
        assert!(m.accepts(&id(&["spiffe://td/ns/a/sa/web"], &[])));
        assert!(!m.accepts(&id(&["spiffe://td/ns/a/sa/webx"], &[])));
        assert!(m.accepts(&id(&["spiffe://td/ns/b/sa/anything"], &[])));
        assert!(!m.accepts(&id(&["SPIFFE://td/ns/b/sa/x"], &[])), "URIs compare as they are");
        assert!(m.accepts(&id(&[], &["API.example.com"])), "DNS names without regard to case");
        assert!(!m.accepts(&id(&[], &[])));
        assert!(SanMatcher::new(&[]).accepts(&id(&[], &[])));
        assert_eq!(id(&["https://x", "spiffe://td/a"], &[]).spiffe_id(), Some("spiffe://td/a"));
    }
}
