//! Reading a context's material: certificates and keys from files or inline
//! PEM (MOSN's rule: PEM when the text holds `-----BEGIN`, else a path), and
//! MOSN's names for versions, cipher suites, curves and ALPN protocols.
//! Every error is a sentence that names the field it came from.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use rustls::crypto::{ring as p, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use rustls::{RootCertStore, SupportedProtocolVersion};

use super::{TlsContextSpec, TlsFiles};

/// What identifies a file's content between two reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
}

pub fn stamp(path: &Path) -> Option<Stamp> {
    std::fs::metadata(path).ok().map(|m| Stamp { modified: m.modified().ok(), len: m.len() })
}

fn is_pem(text: &str) -> bool {
    text.contains("-----BEGIN")
}

/// The bytes of a PEM field: inline, or read from the file it names.
fn pem_bytes(text: &str, field: &str, files: &mut TlsFiles) -> Result<Vec<u8>, String> {
    if is_pem(text) {
        return Ok(text.as_bytes().to_vec());
    }
    let path = PathBuf::from(text);
    let st = stamp(&path);
    let bytes = std::fs::read(&path).map_err(|e| format!("{field}: cannot read {}: {e}", path.display()))?;
    files.0.push((path, st));
    Ok(bytes)
}

/// The certificates of a PEM field.
pub fn certs(text: &str, field: &str, files: &mut TlsFiles) -> Result<Vec<CertificateDer<'static>>, String> {
    let bytes = pem_bytes(text, field, files)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{field}: not a PEM certificate: {e}"))?;
    if certs.is_empty() {
        return Err(format!("{field}: no certificate in it"));
    }
    Ok(certs)
}

/// The CA bundle of `ca_cert`.
pub fn roots(text: &str, field: &str, files: &mut TlsFiles) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    for c in certs(text, field, files)? {
        roots.add(c).map_err(|e| format!("{field}: not a usable CA certificate: {e}"))?;
    }
    Ok(roots)
}

/// `cert_chain` and `private_key`, checked to belong together.
pub fn certified_key(
    spec: &TlsContextSpec,
    path: &str,
    provider: &CryptoProvider,
    files: &mut TlsFiles,
) -> Result<Arc<CertifiedKey>, String> {
    let chain = certs(&spec.cert_chain, &format!("{path}.cert_chain"), files)?;
    let field = format!("{path}.private_key");
    let bytes = pem_bytes(&spec.private_key, &field, files)?;
    let key = PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| format!("{field}: not a PEM private key: {e}"))?;
    let signing = provider.key_provider.load_private_key(key).map_err(|e| format!("{field}: unusable key: {e}"))?;
    let ck = CertifiedKey::new(chain, signing);
    match ck.keys_match() {
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => Ok(Arc::new(ck)),
        Err(_) => Err(format!("{field}: the key does not match the certificate of {path}.cert_chain")),
    }
}

/// `min_version`..`max_version` as rustls offers them (1.2 and 1.3; MOSN's
/// 1.0 and 1.1 are raised to 1.2 with a warning).
pub fn versions(
    spec: &TlsContextSpec,
    path: &str,
    warnings: &mut Vec<String>,
) -> Result<Vec<&'static SupportedProtocolVersion>, String> {
    let level = |text: &str, field: &str, default: u8| -> Result<u8, String> {
        match text.to_ascii_uppercase().as_str() {
            "" | "TLS_AUTO" => Ok(default),
            "TLSV1_0" => Ok(10),
            "TLSV1_1" => Ok(11),
            "TLSV1_2" => Ok(12),
            "TLSV1_3" => Ok(13),
            other => Err(format!("{path}.{field}: unknown version {other:?} (TLS_AUTO, TLSv1_0 … TLSv1_3)")),
        }
    };
    let min = level(&spec.min_version, "min_version", 12)?;
    let max = level(&spec.max_version, "max_version", 13)?;
    if max < 12 {
        return Err(format!(
            "{path}.max_version: TLS 1.0 and 1.1 are not offered; the highest must be TLSv1_2 or TLSv1_3"
        ));
    }
    if min < 12 {
        warnings.push(format!("{path}.min_version: TLS 1.0 and 1.1 are not offered; TLS 1.2 is the lowest"));
    }
    if min > max {
        return Err(format!("{path}.min_version: above max_version"));
    }
    let mut out = Vec::new();
    if min <= 12 {
        out.push(&rustls::version::TLS12);
    }
    if max >= 13 {
        out.push(&rustls::version::TLS13);
    }
    Ok(out)
}

/// The provider with `cipher_suites` and `ecdh_curves` applied. A suite
/// rustls does not have (CBC, 3DES, RSA key exchange) is skipped with a
/// warning; none usable left is an error. As in MOSN, a list without a TLS
/// 1.3 suite keeps all of TLS 1.3's.
pub fn provider(spec: &TlsContextSpec, path: &str, warnings: &mut Vec<String>) -> Result<CryptoProvider, String> {
    let mut prov = super::provider();
    if !spec.cipher_suites.trim().is_empty() {
        let mut suites = Vec::new();
        for name in spec.cipher_suites.split(':').map(str::trim).filter(|n| !n.is_empty()) {
            use p::cipher_suite::*;
            let s = match name {
                "ECDHE-ECDSA-AES256-GCM-SHA384" => TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
                "ECDHE-RSA-AES256-GCM-SHA384" => TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
                "ECDHE-ECDSA-AES128-GCM-SHA256" => TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
                "ECDHE-RSA-AES128-GCM-SHA256" => TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
                "ECDHE-ECDSA-WITH-CHACHA20-POLY1305" => TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
                "ECDHE-RSA-WITH-CHACHA20-POLY1305" => TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
                "AES256-GCM-SHA384" => TLS13_AES_256_GCM_SHA384,
                "AES128-GCM-SHA256" => TLS13_AES_128_GCM_SHA256,
                "CHACHA20-POLY1305-SHA256" => TLS13_CHACHA20_POLY1305_SHA256,
                "ECDHE-RSA-AES256-CBC-SHA"
                | "ECDHE-RSA-AES128-CBC-SHA"
                | "ECDHE-ECDSA-AES256-CBC-SHA"
                | "ECDHE-ECDSA-AES128-CBC-SHA"
                | "RSA-AES256-CBC-SHA"
                | "RSA-AES128-CBC-SHA"
                | "ECDHE-RSA-3DES-EDE-CBC-SHA"
                | "RSA-3DES-EDE-CBC-SHA" => {
                    warnings.push(format!(
                        "{path}.cipher_suites: {name} is not offered (no CBC, 3DES or RSA key exchange)"
                    ));
                    continue;
                }
                other => return Err(format!("{path}.cipher_suites: cipher {other} is not supported")),
            };
            suites.push(s);
        }
        if suites.iter().all(|s| s.tls13().is_none()) {
            suites.extend(prov.cipher_suites.iter().filter(|s| s.tls13().is_some()).copied());
        }
        if suites.iter().all(|s| s.tls13().is_some()) && spec.min_version.eq_ignore_ascii_case("tlsv1_2") {
            warnings.push(format!("{path}.cipher_suites: no TLS 1.2 suite left: TLS 1.2 clients cannot connect"));
        }
        prov.cipher_suites = suites;
    }
    if !spec.ecdh_curves.trim().is_empty() {
        let mut groups = Vec::new();
        for name in spec.ecdh_curves.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            match name.to_ascii_lowercase().as_str() {
                "x25519" => groups.push(p::kx_group::X25519),
                "p256" => groups.push(p::kx_group::SECP256R1),
                "p384" => groups.push(p::kx_group::SECP384R1),
                "p521" => warnings.push(format!("{path}.ecdh_curves: P521 is not offered")),
                other => return Err(format!("{path}.ecdh_curves: unknown curve {other:?} (x25519, p256, p384)")),
            }
        }
        if groups.is_empty() {
            return Err(format!("{path}.ecdh_curves: no usable curve"));
        }
        prov.kx_groups = groups;
    }
    Ok(prov)
}

/// `alpn`: MOSN keeps `h2`, `http/1.1` and `sofa` and drops the rest.
pub fn alpn(spec: &TlsContextSpec, path: &str, warnings: &mut Vec<String>) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for name in spec.alpn.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        if ["h2", "http/1.1", "sofa"].iter().any(|k| k.eq_ignore_ascii_case(name)) {
            out.push(name.to_ascii_lowercase().into_bytes());
        } else {
            warnings.push(format!("{path}.alpn: {name:?} is not one of h2, http/1.1, sofa: dropped, as MOSN drops it"));
        }
    }
    out
}

/// Warnings for the fields ferrymesh reads but does not act on.
pub fn unused_fields(spec: &TlsContextSpec, path: &str, warnings: &mut Vec<String>) {
    if spec.sds_source.is_some() {
        warnings
            .push(format!("{path}.sds_source: certificates from SDS are not implemented; the files given are used"));
    }
    if !spec.kind.is_empty() && spec.kind != "sni_verify" {
        warnings.push(format!("{path}.type: extension {:?} is not implemented; the default is used", spec.kind));
    }
}

/// Whether a certificate is valid now; the warning to give if not.
pub fn validity_warning(cert: &CertificateDer<'_>, field: &str) -> Option<String> {
    let (_, c) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let v = c.validity();
    if v.is_valid() {
        None
    } else {
        Some(format!("{field}: the certificate is not valid now (valid {} to {})", v.not_before, v.not_after))
    }
}
