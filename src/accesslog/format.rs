//! MOSN's access-log format: text with `%variable%` placeholders.
//!
//! A name ferrymesh does not know prints `-`, as in MOSN, and so does a
//! variable without a value. Durations print as Go's `Duration.String()`
//! (`0s`, `12.5µs`, `3.1ms`, `1m30s`) and `start_time` as
//! `2006/01/02 15:04:05.000`, so that parsers written for MOSN's logs read
//! ours; ferrymesh prints UTC where MOSN prints local time.

use std::cell::RefCell;
use std::fmt::Write as _;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::Entry;

/// MOSN's default format (`pkg/log/accesslog.go`), two spaces and the
/// repeated `%response_code%` included.
pub const DEFAULT_FORMAT: &str = "%start_time% %trace_id%  %connection_id% %upstream_connection_id% %request_received_duration% %response_received_duration% %bytes_sent% %bytes_received% %protocol% %response_code% %duration% %response_flag% %response_code% %upstream_local_address% %downstream_local_address% %downstream_remote_address% %upstream_host%";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Var {
    StartTime,
    RequestReceivedDuration,
    ResponseReceivedDuration,
    Duration,
    BytesSent,
    BytesReceived,
    Protocol,
    ResponseCode,
    ResponseFlag,
    UpstreamHost,
    UpstreamCluster,
    DownstreamLocal,
    DownstreamRemote,
    RequestId,
    /// The client certificate's URI SANs (a SPIFFE id), comma-separated.
    PeerUriSan,
    /// The client certificate's DNS SANs.
    PeerDnsSan,
    TlsVersion,
    /// The server name the client asked for (SNI).
    RequestedServerName,
    /// A name ferrymesh has no value for: prints `-`.
    Unknown,
}

impl Var {
    fn by_name(name: &str) -> Var {
        match name {
            "start_time" => Var::StartTime,
            "request_received_duration" => Var::RequestReceivedDuration,
            "response_received_duration" | "request_finished_duration" => Var::ResponseReceivedDuration,
            "duration" => Var::Duration,
            "bytes_sent" => Var::BytesSent,
            "bytes_received" => Var::BytesReceived,
            "protocol" => Var::Protocol,
            "response_code" => Var::ResponseCode,
            "response_flag" => Var::ResponseFlag,
            // MOSN prints the chosen host under upstream_local_address and
            // the host's configured hostname (usually empty) under
            // upstream_host; ferrymesh prints the host's address for both.
            "upstream_host" | "upstream_local_address" => Var::UpstreamHost,
            "upstream_cluster" => Var::UpstreamCluster,
            "downstream_local_address" => Var::DownstreamLocal,
            "downstream_remote_address" => Var::DownstreamRemote,
            "stream_id" | "request_id" => Var::RequestId,
            // ferrymesh (Envoy's names): what the TLS handshake proved.
            "downstream_peer_uri_san" => Var::PeerUriSan,
            "downstream_peer_dns_san" => Var::PeerDnsSan,
            "downstream_tls_version" => Var::TlsVersion,
            "requested_server_name" => Var::RequestedServerName,
            _ => Var::Unknown,
        }
    }
}

#[derive(Debug)]
enum Piece {
    Text(String),
    Var(Var),
}

/// A parsed format.
#[derive(Debug)]
pub struct Format {
    pieces: Vec<Piece>,
}

/// Why a format does not parse.
#[derive(Debug, PartialEq, Eq)]
pub struct FormatError(pub String);

impl std::fmt::Display for FormatError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl Format {
    /// Parses `text`; an empty text is MOSN's default format.
    pub fn parse(text: &str) -> Result<Format, FormatError> {
        let text = if text.is_empty() { DEFAULT_FORMAT } else { text };
        let mut pieces = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find('%') {
            if open > 0 {
                pieces.push(Piece::Text(rest[..open].to_string()));
            }
            let after = &rest[open + 1..];
            let close = after
                .find('%')
                .ok_or_else(|| FormatError(format!("unclosed % at byte {}", text.len() - rest.len() + open)))?;
            let name = &after[..close];
            if name.is_empty() {
                return Err(FormatError("empty variable name (%%)".into()));
            }
            pieces.push(Piece::Var(Var::by_name(name)));
            rest = &after[close + 1..];
        }
        if !rest.is_empty() {
            pieces.push(Piece::Text(rest.to_string()));
        }
        Ok(Format { pieces })
    }

    /// Appends the line for `e` (without its newline).
    pub fn write(&self, e: &Entry<'_>, out: &mut Vec<u8>) {
        for p in &self.pieces {
            match p {
                Piece::Text(t) => out.extend_from_slice(t.as_bytes()),
                Piece::Var(v) => write_var(*v, e, out),
            }
        }
    }
}

fn write_var(v: Var, e: &Entry<'_>, out: &mut Vec<u8>) {
    let text = |out: &mut Vec<u8>, t: Option<&str>| out.extend_from_slice(t.map_or(b"-", str::as_bytes));
    match v {
        Var::StartTime => start_time(e.start, out),
        Var::RequestReceivedDuration => match e.request_sent {
            Some(d) => go_duration(d, out),
            None => out.push(b'-'),
        },
        Var::ResponseReceivedDuration | Var::Duration => go_duration(e.duration, out),
        Var::BytesSent => itoa(e.bytes_sent, out),
        Var::BytesReceived => itoa(e.bytes_received, out),
        Var::Protocol => out.extend_from_slice(e.protocol.as_bytes()),
        Var::ResponseCode => itoa(u64::from(e.status), out),
        Var::ResponseFlag => out.extend_from_slice(if e.error.is_some() { b"true" } else { b"false" }),
        Var::UpstreamHost => text(out, e.upstream),
        Var::UpstreamCluster => text(out, e.cluster),
        Var::DownstreamLocal => text(out, e.downstream_local),
        Var::DownstreamRemote => out.extend_from_slice(e.downstream_remote.as_bytes()),
        Var::RequestId => match e.request_id {
            Some(id) => itoa(id, out),
            None => out.push(b'-'),
        },
        Var::PeerUriSan | Var::PeerDnsSan => {
            let peer = e.tls.and_then(|t| t.peer.as_ref());
            let names = peer.map(|p| if matches!(v, Var::PeerUriSan) { &p.uri_sans } else { &p.dns_sans });
            match names.filter(|n| !n.is_empty()) {
                Some(n) => out.extend_from_slice(n.join(",").as_bytes()),
                None => out.push(b'-'),
            }
        }
        Var::TlsVersion => text(out, e.tls.map(|t| t.version).filter(|v| !v.is_empty())),
        Var::RequestedServerName => text(out, e.tls.and_then(|t| t.sni.as_deref())),
        Var::Unknown => out.push(b'-'),
    }
}

/// `n` in decimal, without the formatting machinery (a line has several).
fn itoa(mut n: u64, out: &mut Vec<u8>) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

/// Wall-clock time of an `Instant`, per thread: an anchor pair of clocks
/// read once a second, and the text of the last millisecond formatted, so
/// a line costs no clock read and, mostly, no date arithmetic.
struct Clock {
    anchor: Instant,
    anchor_unix: Duration,
    last_ms: u64,
    text: [u8; 23],
}

thread_local! {
    static CLOCK: RefCell<Option<Clock>> = const { RefCell::new(None) };
}

/// `2006/01/02 15:04:05.000`, UTC, of `at`.
fn start_time(at: Instant, out: &mut Vec<u8>) {
    CLOCK.with(|c| {
        let mut c = c.borrow_mut();
        let stale = c.as_ref().is_none_or(|c| at.saturating_duration_since(c.anchor) > Duration::from_secs(1));
        if stale {
            let unix = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
            *c = Some(Clock { anchor: Instant::now(), anchor_unix: unix, last_ms: u64::MAX, text: [0; 23] });
        }
        let Some(c) = c.as_mut() else { return };
        let unix = match at.checked_duration_since(c.anchor) {
            Some(after) => c.anchor_unix + after,
            None => c.anchor_unix.saturating_sub(c.anchor.duration_since(at)),
        };
        let ms = unix.as_millis() as u64;
        if ms != c.last_ms {
            c.last_ms = ms;
            c.text = date_text(ms);
        }
        out.extend_from_slice(&c.text);
    });
}

/// The text of a Unix time in milliseconds.
fn date_text(unix_ms: u64) -> [u8; 23] {
    let secs = unix_ms / 1000;
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    let t = secs % 86_400;
    let mut s = String::with_capacity(23);
    let _ = write!(s, "{y:04}/{m:02}/{d:02} {:02}:{:02}:{:02}.{:03}", t / 3600, t / 60 % 60, t % 60, unix_ms % 1000);
    let mut out = [b' '; 23];
    let n = s.len().min(23);
    out[..n].copy_from_slice(&s.as_bytes()[..n]);
    out
}

/// The proleptic Gregorian date of a day counted from 1970-01-01 (Howard
/// Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Go's `time.Duration.String()`, written straight into `out`.
fn go_duration(d: Duration, out: &mut Vec<u8>) {
    let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
    if ns == 0 {
        out.extend_from_slice(b"0s");
    } else if ns < 1_000 {
        itoa(ns, out);
        out.extend_from_slice(b"ns");
    } else if ns < 1_000_000 {
        decimal(ns, 3, out);
        out.extend_from_slice("µs".as_bytes());
    } else if ns < 1_000_000_000 {
        decimal(ns, 6, out);
        out.extend_from_slice(b"ms");
    } else {
        let secs = ns / 1_000_000_000;
        let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
        if h > 0 {
            itoa(h, out);
            out.push(b'h');
        }
        if h > 0 || m > 0 {
            itoa(m, out);
            out.push(b'm');
        }
        decimal(s * 1_000_000_000 + ns % 1_000_000_000, 9, out);
        out.push(b's');
    }
}

/// `n / 10^digits`, the fraction's trailing zeros dropped.
fn decimal(n: u64, digits: u32, out: &mut Vec<u8>) {
    let scale = 10u64.pow(digits);
    itoa(n / scale, out);
    let mut frac = n % scale;
    if frac == 0 {
        return;
    }
    let mut width = digits;
    while frac % 10 == 0 {
        frac /= 10;
        width -= 1;
    }
    out.push(b'.');
    let at = out.len();
    itoa(frac, out);
    let pad = width as usize - (out.len() - at);
    out.splice(at..at, std::iter::repeat_n(b'0', pad));
}

/// Go's `time.Duration.String()` as text.
#[cfg(test)]
pub struct GoDuration(pub Duration);

#[cfg(test)]
impl std::fmt::Display for GoDuration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut out = Vec::with_capacity(16);
        go_duration(self.0, &mut out);
        f.write_str(&String::from_utf8_lossy(&out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> Entry<'static> {
        Entry {
            start: Instant::now(),
            duration: Duration::from_micros(3_100),
            request_sent: Some(Duration::from_nanos(12_500)),
            protocol: "bolt",
            request_id: Some(7),
            upstream: Some("127.0.0.1:12200"),
            cluster: Some("svc"),
            status: 200,
            error: None,
            bytes_received: 120,
            bytes_sent: 80,
            downstream_remote: "127.0.0.1:5000",
            downstream_local: Some("127.0.0.1:2045"),
            tls: None,
        }
    }

    fn line(fmt: &str, e: &Entry<'_>) -> String {
        let mut out = Vec::new();
        Format::parse(fmt).unwrap().write(e, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn every_variable_prints_as_mosn_prints_it() {
        let e = entry();
        let l = line(DEFAULT_FORMAT, &e);
        let today = date_text(SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64);
        assert_eq!(&l.as_bytes()[..11], &today[..11], "{l}");
        assert_eq!(
            &l[23..],
            " -  - - 12.5µs 3.1ms 80 120 bolt 200 3.1ms false 200 127.0.0.1:12200 127.0.0.1:2045 127.0.0.1:5000 127.0.0.1:12200"
        );
        assert_eq!(line("id=%stream_id% c=%upstream_cluster% x=%no_such%", &e), "id=7 c=svc x=-");
    }

    #[test]
    fn bad_formats_are_refused() {
        assert!(Format::parse("%start_time").is_err());
        assert!(Format::parse("a %% b").is_err());
        assert!(Format::parse("").is_ok(), "empty is the default");
    }

    #[test]
    fn go_durations() {
        let d = |ns: u64| GoDuration(Duration::from_nanos(ns)).to_string();
        assert_eq!(d(0), "0s");
        assert_eq!(d(999), "999ns");
        assert_eq!(d(1_000), "1µs");
        assert_eq!(d(12_500), "12.5µs");
        assert_eq!(d(3_100_000), "3.1ms");
        assert_eq!(d(1_500_000_000), "1.5s");
        assert_eq!(d(90_000_000_000), "1m30s");
        assert_eq!(d(3_723_000_000_000), "1h2m3s");
        assert_eq!(d(1_000_500), "1.0005ms");
        assert_eq!(d(1_050_000_000), "1.05s");
    }

    #[test]
    fn start_times_read_as_mosns() {
        assert_eq!(&date_text(1_764_979_200_123), b"2025/12/06 00:00:00.123");
        assert_eq!(&date_text(951_782_400_007), b"2000/02/29 00:00:00.007");
        // Two lines of one millisecond share the cached text; a later one moves on.
        let t = Instant::now();
        let (mut a, mut b, mut c) = (Vec::new(), Vec::new(), Vec::new());
        start_time(t, &mut a);
        start_time(t, &mut b);
        start_time(t + Duration::from_millis(1500), &mut c);
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn dates_from_days() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64 / 86_400;
        assert!(civil_from_days(now).0 >= 2025);
    }
}
