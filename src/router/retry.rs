//! Route retry policy: which failures are tried again, how often, and with
//! which pause between tries.
//!
//! `retry_on` is MOSN's boolean (`true`: connect failures, resets and 5xx) or
//! Envoy's comma list: `5xx`, `gateway-error` (502, 503, 504),
//! `connect-failure`, `reset`, `retriable-status-codes` (the route's
//! `status_codes`). Pauses grow exponentially from `base_interval` (25 ms) up
//! to `max_interval` (10 × base) with full jitter, as Envoy does.

use std::time::Duration;

use crate::config::model;
use crate::config::ConfigError;

/// A set of retry conditions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetryOn(u8);

impl RetryOn {
    pub const SERVER_ERROR: RetryOn = RetryOn(1);
    pub const GATEWAY_ERROR: RetryOn = RetryOn(2);
    pub const CONNECT_FAILURE: RetryOn = RetryOn(4);
    pub const RESET: RetryOn = RetryOn(8);
    pub const STATUS_CODES: RetryOn = RetryOn(16);

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn contains(self, other: RetryOn) -> bool {
        self.0 & other.0 == other.0
    }

    fn insert(&mut self, other: RetryOn) {
        self.0 |= other.0;
    }
}

#[derive(Debug, Clone)]
pub struct RetryPolicy {
    pub on: RetryOn,
    pub num_retries: u32,
    pub per_try_timeout: Option<Duration>,
    pub status_codes: Vec<u16>,
    pub base_interval: Duration,
    pub max_interval: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            on: RetryOn::default(),
            num_retries: 0,
            per_try_timeout: None,
            status_codes: Vec::new(),
            base_interval: Duration::from_millis(25),
            max_interval: Duration::from_millis(250),
        }
    }
}

impl RetryPolicy {
    pub fn compile(p: &model::RetryPolicy, path: &str) -> Result<RetryPolicy, ConfigError> {
        let mut on = RetryOn::default();
        match &p.retry_on {
            serde_json::Value::Null | serde_json::Value::Bool(false) => {}
            serde_json::Value::Bool(true) => {
                on.insert(RetryOn::CONNECT_FAILURE);
                on.insert(RetryOn::RESET);
                on.insert(RetryOn::SERVER_ERROR);
            }
            serde_json::Value::String(list) => {
                for word in list.split(',').map(str::trim).filter(|w| !w.is_empty()) {
                    on.insert(match word {
                        "5xx" => RetryOn::SERVER_ERROR,
                        "gateway-error" => RetryOn::GATEWAY_ERROR,
                        "connect-failure" => RetryOn::CONNECT_FAILURE,
                        "reset" => RetryOn::RESET,
                        "retriable-status-codes" => RetryOn::STATUS_CODES,
                        other => {
                            return Err(ConfigError::new(
                                format!("{path}.retry_on"),
                                format!("unknown condition {other:?} (5xx, gateway-error, connect-failure, reset, retriable-status-codes)"),
                            ))
                        }
                    });
                }
            }
            _ => {
                return Err(ConfigError::new(
                    format!("{path}.retry_on"),
                    "expected a boolean or a comma-separated list",
                ))
            }
        }
        let mut policy = RetryPolicy {
            on,
            num_retries: if on.is_empty() { 0 } else { p.num_retries.max(1) },
            per_try_timeout: p.retry_timeout.map(|d| d.0).filter(|d| !d.is_zero()),
            status_codes: p.status_codes.clone(),
            ..RetryPolicy::default()
        };
        if let Some(b) = &p.retry_back_off {
            if let Some(base) = b.base_interval {
                policy.base_interval = base.0;
                policy.max_interval = base.0 * 10;
            }
            if let Some(max) = b.max_interval {
                policy.max_interval = max.0;
            }
        }
        if policy.max_interval < policy.base_interval {
            return Err(ConfigError::new(format!("{path}.retry_back_off"), "max_interval is below base_interval"));
        }
        Ok(policy)
    }

    /// Whether a response with `status` is worth another try.
    pub fn retry_status(&self, status: u16) -> bool {
        (self.on.contains(RetryOn::SERVER_ERROR) && status >= 500)
            || (self.on.contains(RetryOn::GATEWAY_ERROR) && matches!(status, 502..=504))
            || (self.on.contains(RetryOn::STATUS_CODES) && self.status_codes.contains(&status))
    }

    /// The pause before retry number `attempt` (1-based): full jitter over an
    /// exponentially growing window.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let window = self.base_interval.saturating_mul(1 << attempt.saturating_sub(1).min(16)).min(self.max_interval);
        let nanos = window.as_nanos().min(u128::from(u64::MAX)) as u64;
        Duration::from_nanos(if nanos == 0 { 0 } else { fastrand::u64(..=nanos) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(json: serde_json::Value) -> Result<RetryPolicy, ConfigError> {
        let p: model::RetryPolicy = serde_json::from_value(json).unwrap();
        RetryPolicy::compile(&p, "p")
    }

    #[test]
    fn conditions_decide_which_statuses_are_retried() {
        let p = policy(serde_json::json!({"retry_on": "gateway-error", "num_retries": 2})).unwrap();
        assert!(p.retry_status(502) && p.retry_status(503) && p.retry_status(504));
        assert!(!p.retry_status(500) && !p.retry_status(404));
        let p = policy(serde_json::json!({"retry_on": "5xx"})).unwrap();
        assert!(p.retry_status(500) && p.retry_status(599) && !p.retry_status(429));
        assert_eq!(p.num_retries, 1, "a policy with conditions retries at least once");
        let p = policy(serde_json::json!({"retry_on": "retriable-status-codes,reset", "status_codes": [429]})).unwrap();
        assert!(p.retry_status(429) && !p.retry_status(503));
        assert!(p.on.contains(RetryOn::RESET) && !p.on.contains(RetryOn::CONNECT_FAILURE));
        // MOSN's boolean.
        let p = policy(serde_json::json!({"retry_on": true, "num_retries": 3})).unwrap();
        assert!(p.on.contains(RetryOn::CONNECT_FAILURE) && p.on.contains(RetryOn::RESET) && p.retry_status(500));
        let p = policy(serde_json::json!({"retry_on": false, "num_retries": 3})).unwrap();
        assert!(p.on.is_empty() && p.num_retries == 0);
        let e = policy(serde_json::json!({"retry_on": "5xx,sometimes"})).unwrap_err();
        assert_eq!(e.path, "p.retry_on");
    }

    #[test]
    fn backoff_is_jittered_and_bounded() {
        let p = policy(
            serde_json::json!({"retry_on": "5xx", "retry_back_off": {"base_interval": "10ms", "max_interval": "40ms"}}),
        )
        .unwrap();
        for attempt in 1..10 {
            let window = Duration::from_millis(10 * (1 << (attempt - 1))).min(Duration::from_millis(40));
            let pauses: Vec<Duration> = (0..200).map(|_| p.backoff(attempt)).collect();
            assert!(pauses.iter().all(|d| *d <= window), "attempt {attempt}");
            assert!(pauses.iter().any(|d| *d < window / 2), "jittered below half the window");
        }
        assert!(policy(
            serde_json::json!({"retry_on": "5xx", "retry_back_off": {"base_interval": "1s", "max_interval": "10ms"}})
        )
        .is_err());
    }
}
