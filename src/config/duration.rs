//! Go-style duration strings (`"3s"`, `"500ms"`, `"1m30s"`), as MOSN writes them.

use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

/// A duration read from a Go duration string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DurationStr(pub Duration);

/// Parses a Go duration: a sequence of decimal numbers with units ns, us, µs,
/// ms, s, m, h. `"0"` is zero.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.is_empty() {
        return Err("empty duration".into());
    }
    let mut total = 0f64;
    let mut rest = s;
    while !rest.is_empty() {
        let num_end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        if num_end == 0 {
            return Err(format!("invalid duration {s:?}: expected a number"));
        }
        let value: f64 = rest[..num_end].parse().map_err(|_| format!("invalid duration {s:?}"))?;
        rest = &rest[num_end..];
        let unit_end = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let scale = match &rest[..unit_end] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "" => return Err(format!("invalid duration {s:?}: missing unit (e.g. \"3s\")")),
            u => return Err(format!("invalid duration {s:?}: unknown unit {u:?}")),
        };
        total += value * scale;
        rest = &rest[unit_end..];
    }
    Ok(Duration::from_secs_f64(total))
}

impl<'de> Deserialize<'de> for DurationStr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = DurationStr;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a duration string such as \"3s\" or \"500ms\"")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<DurationStr, E> {
                parse_duration(v).map(DurationStr).map_err(E::custom)
            }
            /// A number is nanoseconds, as MOSN's `DurationConfig` reads it.
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<DurationStr, E> {
                Ok(DurationStr(Duration::from_nanos(v)))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<DurationStr, E> {
                u64::try_from(v)
                    .map(|n| DurationStr(Duration::from_nanos(n)))
                    .map_err(|_| E::custom("a negative duration"))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<DurationStr, E> {
                if v.is_finite() && v >= 0.0 {
                    Ok(DurationStr(Duration::from_nanos(v as u64)))
                } else {
                    Err(E::custom("a negative duration"))
                }
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_go_durations() {
        assert_eq!(parse_duration("3s").unwrap(), Duration::from_secs(3));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
        assert!(parse_duration("3").is_err());
        assert!(parse_duration("3x").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn numbers_are_nanoseconds_as_in_mosn() {
        let d: DurationStr = serde_json::from_str("1500000000").unwrap();
        assert_eq!(d.0, Duration::from_millis(1500));
        assert!(serde_json::from_str::<DurationStr>("-1").is_err());
        assert!(serde_json::from_str::<DurationStr>("true").is_err());
    }
}
