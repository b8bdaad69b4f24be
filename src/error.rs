//! The one error a proxied request can end in.
//!
//! Each variant says who is to blame, whether another attempt may help, which
//! metric label counts it, and (through the codec) which status the client's own
//! protocol answers it with. Leaf modules keep their own `thiserror` types and
//! convert into this at the proxy boundary.

use std::fmt;

/// Who caused a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Blame {
    Downstream,
    Upstream,
    Internal,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProxyError {
    /// No route matched the request.
    NoRoute,
    /// The cluster has no host that is healthy.
    NoHealthyHost,
    /// Dialling the upstream failed (refused, timed out).
    ConnectFailed(String),
    /// The upstream connection closed or broke with the request in flight.
    UpstreamReset,
    /// The route (or frame) timeout passed with no response.
    Timeout,
    /// A limit on concurrent requests was reached.
    Overflow,
    /// The request could not be decoded (e.g. a malformed header map).
    Codec,
    /// An HTTP request refused before forwarding (ambiguous framing, bad header
    /// bytes, a limit): answered with `status`, and the connection is closed.
    Malformed { status: u16, reason: &'static str },
    /// A filter refused the request.
    Forbidden,
    /// A route or filter answered directly with this (HTTP-like) status.
    DirectResponse { status: u16, body: String },
    /// A bug: a request was dropped without an answer.
    Internal(&'static str),
}

impl ProxyError {
    pub fn blame(&self) -> Blame {
        match self {
            ProxyError::NoRoute
            | ProxyError::Codec
            | ProxyError::Malformed { .. }
            | ProxyError::Forbidden
            | ProxyError::DirectResponse { .. } => Blame::Downstream,
            ProxyError::NoHealthyHost
            | ProxyError::ConnectFailed(_)
            | ProxyError::UpstreamReset
            | ProxyError::Timeout
            | ProxyError::Overflow => Blame::Upstream,
            ProxyError::Internal(_) => Blame::Internal,
        }
    }

    /// Whether sending the same request to another host is safe and useful.
    /// Only a failed connect is: the request never left ferrymesh.
    pub fn retry_on_other_host(&self) -> bool {
        matches!(self, ProxyError::ConnectFailed(_))
    }

    /// The HTTP-like code MOSN uses for this failure in stats and logs.
    pub fn code(&self) -> u16 {
        match self {
            ProxyError::NoRoute => 404,
            ProxyError::NoHealthyHost | ProxyError::ConnectFailed(_) | ProxyError::UpstreamReset => 502,
            ProxyError::Overflow => 503,
            ProxyError::Timeout => 504,
            ProxyError::Forbidden => 403,
            ProxyError::Codec => 400,
            ProxyError::Malformed { status, .. } => *status,
            ProxyError::DirectResponse { status, .. } => *status,
            ProxyError::Internal(_) => 500,
        }
    }

    /// Metric label.
    pub fn label(&self) -> &'static str {
        match self {
            ProxyError::NoRoute => "no_route",
            ProxyError::NoHealthyHost => "no_healthy_host",
            ProxyError::ConnectFailed(_) => "connect_failed",
            ProxyError::UpstreamReset => "upstream_reset",
            ProxyError::Timeout => "timeout",
            ProxyError::Overflow => "overflow",
            ProxyError::Codec => "codec_error",
            ProxyError::Malformed { .. } => "malformed",
            ProxyError::Forbidden => "forbidden",
            ProxyError::DirectResponse { .. } => "direct_response",
            ProxyError::Internal(_) => "internal",
        }
    }

    /// What the client is told: the error as displayed, but for a failed
    /// connect, whose upstream address and OS error stay in the log (Envoy
    /// too tells a client that a connect failed, not where to).
    pub fn client_message(&self) -> String {
        match self {
            ProxyError::ConnectFailed(_) => "connect failed".to_string(),
            other => other.to_string(),
        }
    }
}

impl fmt::Display for ProxyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProxyError::ConnectFailed(why) => write!(f, "connect failed: {why}"),
            ProxyError::DirectResponse { status, .. } => write!(f, "direct response {status}"),
            ProxyError::Malformed { reason, .. } => write!(f, "bad request: {reason}"),
            ProxyError::Internal(why) => write!(f, "internal error: {why}"),
            other => f.write_str(other.label()),
        }
    }
}

impl std::error::Error for ProxyError {}
