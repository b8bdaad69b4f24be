//! MOSN's access-log format: text with `%variable%` placeholders.
//!
//! A name ferrymesh does not know prints `-`, as in MOSN, and so does a
//! variable without a value. Durations print as Go's `Duration.String()`
//! (`0s`, `12.5µs`, `3.1ms`, `1m30s`) and `start_time` as
//! `2006/01/02 15:04:05.000`, so that parsers written for MOSN's logs read
//! ours; ferrymesh prints UTC where MOSN prints local time.

use std::fmt::Write as _;
use std::io::Write as _;
use std::time::{Duration, UNIX_EPOCH};

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
    let _ = match v {
        Var::StartTime => {
            let mut s = String::with_capacity(23);
            start_time(e, &mut s);
            out.extend_from_slice(s.as_bytes());
            Ok(())
        }
        Var::RequestReceivedDuration => match e.request_sent {
            Some(d) => write!(out, "{}", GoDuration(d)),
            None => dash(out),
        },
        Var::ResponseReceivedDuration | Var::Duration => write!(out, "{}", GoDuration(e.duration)),
        Var::BytesSent => write!(out, "{}", e.bytes_sent),
        Var::BytesReceived => write!(out, "{}", e.bytes_received),
        Var::Protocol => write!(out, "{}", e.protocol),
        Var::ResponseCode => write!(out, "{}", e.status),
        Var::ResponseFlag => write!(out, "{}", e.error.is_some()),
        Var::UpstreamHost => match e.upstream {
            Some(a) => write!(out, "{a}"),
            None => dash(out),
        },
        Var::UpstreamCluster => match e.cluster {
            Some(c) => write!(out, "{c}"),
            None => dash(out),
        },
        Var::DownstreamLocal => match e.downstream_local {
            Some(a) => write!(out, "{a}"),
            None => dash(out),
        },
        Var::DownstreamRemote => write!(out, "{}", e.downstream_remote),
        Var::RequestId => match e.request_id {
            Some(id) => write!(out, "{id}"),
            None => dash(out),
        },
        Var::Unknown => dash(out),
    };
}

fn dash(out: &mut Vec<u8>) -> std::io::Result<()> {
    out.push(b'-');
    Ok(())
}

/// `2006/01/02 15:04:05.000`, UTC.
fn start_time(e: &Entry<'_>, s: &mut String) {
    let since = e.start.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    let t = secs % 86_400;
    let _ =
        write!(s, "{y:04}/{m:02}/{d:02} {:02}:{:02}:{:02}.{:03}", t / 3600, t / 60 % 60, t % 60, since.subsec_millis());
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

/// Go's `time.Duration.String()`.
pub struct GoDuration(pub Duration);

impl std::fmt::Display for GoDuration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ns = self.0.as_nanos();
        if ns == 0 {
            return f.write_str("0s");
        }
        if ns < 1_000 {
            return write!(f, "{ns}ns");
        }
        if ns < 1_000_000 {
            return write!(f, "{}µs", Decimal(ns, 3));
        }
        if ns < 1_000_000_000 {
            return write!(f, "{}ms", Decimal(ns, 6));
        }
        let secs = ns / 1_000_000_000;
        let frac = ns % 1_000_000_000;
        let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
        if h > 0 {
            write!(f, "{h}h")?;
        }
        if h > 0 || m > 0 {
            write!(f, "{m}m")?;
        }
        write!(f, "{}s", Decimal(s * 1_000_000_000 + frac, 9))
    }
}

/// `n / 10^digits` with the fraction's trailing zeros dropped.
struct Decimal(u128, u32);

impl std::fmt::Display for Decimal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scale = 10u128.pow(self.1);
        let (whole, frac) = (self.0 / scale, self.0 % scale);
        if frac == 0 {
            return write!(f, "{whole}");
        }
        let digits = format!("{frac:0width$}", width = self.1 as usize);
        write!(f, "{whole}.{}", digits.trim_end_matches('0'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::SystemTime;

    fn entry() -> Entry<'static> {
        Entry {
            start: UNIX_EPOCH + Duration::from_millis(1_764_979_200_123), // 2025-12-06 00:00:00.123 UTC
            duration: Duration::from_micros(3_100),
            request_sent: Some(Duration::from_nanos(12_500)),
            protocol: "bolt",
            request_id: Some(7),
            upstream: Some("127.0.0.1:12200".parse().unwrap()),
            cluster: Some("svc"),
            status: 200,
            error: None,
            bytes_received: 120,
            bytes_sent: 80,
            downstream_remote: "127.0.0.1:5000".parse().unwrap(),
            downstream_local: Some("127.0.0.1:2045".parse().unwrap()),
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
        assert_eq!(
            line(DEFAULT_FORMAT, &e),
            "2025/12/06 00:00:00.123 -  - - 12.5µs 3.1ms 80 120 bolt 200 3.1ms false 200 127.0.0.1:12200 127.0.0.1:2045 127.0.0.1:5000 127.0.0.1:12200"
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
    }

    #[test]
    fn dates_from_days() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64 / 86_400;
        assert!(civil_from_days(now).0 >= 2025);
    }
}
