//! Test certificates, made by the tests themselves (rcgen): a CA, leaves
//! signed by it (IP SAN 127.0.0.1 as MOSN's example certificates have, DNS
//! names, SPIFFE URI SANs), expired and not-yet-valid ones, and a second CA
//! nobody trusts. Files are written under one directory per test.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use rcgen::{
    date_time_ymd, BasicConstraints, Certificate, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, SanType, SerialNumber,
};
use serde_json::{json, Value};

/// A certificate authority and the directory its files go to.
pub struct Pki {
    pub dir: PathBuf,
    ca: Certificate,
    ca_key: KeyPair,
    pub ca_path: PathBuf,
}

/// A leaf's files.
#[derive(Clone, Debug)]
pub struct Leaf {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub serial: u64,
}

/// What a leaf certificate says.
pub struct LeafSpec<'a> {
    pub cn: &'a str,
    pub dns: &'a [&'a str],
    pub uris: &'a [&'a str],
    pub ip: bool,
    pub serial: u64,
    /// (not_before, not_after) years.
    pub valid: (i32, i32),
}

impl Default for LeafSpec<'_> {
    fn default() -> Self {
        LeafSpec { cn: "ferrymesh test", dns: &[], uris: &[], ip: true, serial: 1, valid: (2020, 2090) }
    }
}

impl Pki {
    /// A fresh CA named `name` in a fresh directory.
    pub fn new(name: &str) -> Pki {
        let dir =
            std::env::temp_dir().join(format!("ferrymesh-pki-{}-{name}-{}", std::process::id(), fastrand::u32(..)));
        std::fs::create_dir_all(&dir).unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(DnType::CommonName, format!("{name} CA"));
        p.distinguished_name.push(DnType::OrganizationName, "Acme Co");
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::CrlSign];
        p.not_before = date_time_ymd(2020, 1, 1);
        p.not_after = date_time_ymd(2090, 1, 1);
        let ca_key = KeyPair::generate().unwrap();
        let ca = p.self_signed(&ca_key).unwrap();
        let ca_path = dir.join("ca.pem");
        std::fs::write(&ca_path, ca.pem()).unwrap();
        Pki { dir, ca, ca_key, ca_path }
    }

    /// A leaf signed by this CA, for servers and clients alike, written as
    /// `<file>.pem` and `<file>-key.pem`.
    pub fn leaf(&self, file: &str, spec: &LeafSpec<'_>) -> Leaf {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(DnType::CommonName, spec.cn);
        for d in spec.dns {
            p.subject_alt_names.push(SanType::DnsName((*d).try_into().unwrap()));
        }
        for u in spec.uris {
            p.subject_alt_names.push(SanType::URI((*u).try_into().unwrap()));
        }
        if spec.ip {
            p.subject_alt_names.push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
        }
        p.is_ca = IsCa::ExplicitNoCa;
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        p.not_before = date_time_ymd(spec.valid.0, 1, 1);
        p.not_after = date_time_ymd(spec.valid.1, 1, 1);
        p.serial_number = Some(SerialNumber::from(spec.serial));
        let key = KeyPair::generate().unwrap();
        let cert = p.signed_by(&key, &self.ca, &self.ca_key).unwrap();
        let leaf = Leaf {
            cert: self.dir.join(format!("{file}.pem")),
            key: self.dir.join(format!("{file}-key.pem")),
            serial: spec.serial,
        };
        write_atomically(&leaf.cert, cert.pem().as_bytes());
        write_atomically(&leaf.key, key.serialize_pem().as_bytes());
        leaf
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn write_atomically(path: &Path, bytes: &[u8]) {
    super::write_atomically(path, bytes);
}

fn text(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// A listener's `tls_context` serving `leaf`; with `ca`, client certificates
/// are required and verified against it.
pub fn server_context(leaf: &Leaf, ca: Option<&Path>) -> Value {
    let mut t = json!({"status": true, "cert_chain": text(&leaf.cert), "private_key": text(&leaf.key)});
    if let Some(ca) = ca {
        t["ca_cert"] = json!(text(ca));
        t["verify_client"] = json!(true);
        t["require_client_cert"] = json!(true);
    }
    t
}

/// A cluster's `tls_context` trusting `ca`, presenting `leaf` if given.
pub fn client_context(ca: &Path, leaf: Option<&Leaf>, server_name: &str) -> Value {
    let mut t = json!({"status": true, "ca_cert": text(ca), "server_name": server_name});
    if let Some(l) = leaf {
        t["cert_chain"] = json!(text(&l.cert));
        t["private_key"] = json!(text(&l.key));
    }
    t
}

/// The serial number of the certificate a TLS server presents, read with
/// `openssl s_client` (lowercase hex, no leading zeros), and its output.
pub fn served_serial(addr: std::net::SocketAddr, extra: &[&str]) -> (Option<String>, String) {
    let out = openssl_client(addr, extra);
    let serial = std::process::Command::new("openssl")
        .args(["x509", "-noout", "-serial"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            let pem: String = out
                .lines()
                .skip_while(|l| !l.starts_with("-----BEGIN CERTIFICATE"))
                .take_while(|l| !l.starts_with("-----END CERTIFICATE"))
                .chain(std::iter::once("-----END CERTIFICATE-----"))
                .map(|l| format!("{l}\n"))
                .collect();
            c.stdin.take().unwrap().write_all(pem.as_bytes())?;
            c.wait_with_output()
        })
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().strip_prefix("serial=").map(|h| h.trim_start_matches('0').to_ascii_lowercase()));
    (serial, out)
}

/// Runs `openssl s_client -connect addr <extra>` with no input and returns
/// what it printed (stdout and stderr).
pub fn openssl_client(addr: std::net::SocketAddr, extra: &[&str]) -> String {
    let out = std::process::Command::new("openssl")
        .args(["s_client", "-connect", &addr.to_string()])
        .args(extra)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("openssl s_client");
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}
