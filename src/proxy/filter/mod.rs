//! Stream filters: hooks on each request (before routing) and each response
//! (before it is written to the client).
//!
//! A hook can let the message go on, answer the request itself with an error,
//! or change headers. Hooks are synchronous: a filter that must wait for
//! something (a rate-limit service, say) will get a `Pause` outcome and a
//! resume handle when one is needed; none of the built-in ones does. Headers
//! are read lazily from the frame; the frame is re-encoded only when a filter
//! actually changed one, so an unchanged request is still forwarded as it came
//! with only its id patched.
//!
//! Built in: `ip_access` (allow or deny by client address; answers denied
//! requests directly) and `header_mutation` (adds and removes request and
//! response headers).

mod header_mutation;
mod ip_access;

use std::net::SocketAddr;
use std::rc::Rc;

use bytes::BytesMut;

use crate::config::ConfigError;
use crate::error::ProxyError;
use crate::protocol::Codec;
use crate::stream::server::{HookResult, ResponseHook};

pub use header_mutation::HeaderMutation;
pub use ip_access::{Cidr, IpAccess};

/// What a hook decides.
#[derive(Debug)]
pub enum FilterStatus {
    Continue,
    /// Stop here and answer the request with this error.
    Respond(ProxyError),
}

/// The headers of one frame, read from it lazily and edited on a copy.
pub struct Headers<'a> {
    codec: &'a dyn Codec,
    frame: &'a [u8],
    edited: Option<Vec<(Vec<u8>, Vec<u8>)>>,
}

impl<'a> Headers<'a> {
    pub fn new(codec: &'a dyn Codec, frame: &'a [u8]) -> Self {
        Headers { codec, frame, edited: None }
    }

    pub fn get(&self, name: &str) -> Option<&[u8]> {
        match &self.edited {
            Some(list) => list.iter().find(|(k, _)| k == name.as_bytes()).map(|(_, v)| v.as_slice()),
            None => self.codec.header(self.frame, name),
        }
    }

    fn edit(&mut self) -> &mut Vec<(Vec<u8>, Vec<u8>)> {
        let (codec, frame) = (self.codec, self.frame);
        self.edited.get_or_insert_with(|| {
            codec
                .headers(frame)
                .map(|l| l.into_iter().map(|(k, v)| (k.to_vec(), v.to_vec())).collect())
                .unwrap_or_default()
        })
    }

    /// Sets a header, replacing an existing value in place.
    pub fn set(&mut self, name: &str, value: &str) {
        let list = self.edit();
        match list.iter_mut().find(|(k, _)| k == name.as_bytes()) {
            Some((_, v)) => *v = value.as_bytes().to_vec(),
            None => list.push((name.as_bytes().to_vec(), value.as_bytes().to_vec())),
        }
    }

    pub fn remove(&mut self, name: &str) {
        if self.get(name).is_some() {
            self.edit().retain(|(k, _)| k != name.as_bytes());
        }
    }

    /// The frame re-encoded with the edited headers, if any were edited.
    fn into_frame(self) -> Option<BytesMut> {
        let list = self.edited?;
        let mut out = BytesMut::with_capacity(self.frame.len() + 64);
        self.codec.encode_with_headers(self.frame, &list, &mut out);
        Some(out)
    }
}

/// A request as filters see it.
pub struct RequestCtx<'a> {
    pub peer: SocketAddr,
    pub headers: Headers<'a>,
}

pub trait StreamFilter {
    fn name(&self) -> &'static str;

    fn on_request(&self, _req: &mut RequestCtx<'_>) -> FilterStatus {
        FilterStatus::Continue
    }

    fn on_response(&self, _headers: &mut Headers<'_>) -> FilterStatus {
        FilterStatus::Continue
    }

    /// Whether `on_response` does anything (skips the response path if not).
    fn has_response_hook(&self) -> bool {
        false
    }
}

/// The filters of one listener, in configuration order.
#[derive(Default)]
pub struct FilterChain {
    filters: Vec<Box<dyn StreamFilter>>,
}

impl FilterChain {
    pub fn new(specs: &[FilterSpec]) -> FilterChain {
        FilterChain { filters: specs.iter().map(FilterSpec::build).collect() }
    }

    pub fn is_empty(&self) -> bool {
        self.filters.is_empty()
    }

    pub fn has_response_hooks(&self) -> bool {
        self.filters.iter().any(|f| f.has_response_hook())
    }

    /// Runs the request hooks. `Ok(Some(frame))`: the request continues as this
    /// re-encoded frame; `Ok(None)`: unchanged.
    pub fn on_request(
        &self,
        codec: &dyn Codec,
        frame: &[u8],
        peer: SocketAddr,
    ) -> Result<Option<BytesMut>, ProxyError> {
        let mut req = RequestCtx { peer, headers: Headers::new(codec, frame) };
        for f in &self.filters {
            if let FilterStatus::Respond(err) = f.on_request(&mut req) {
                tracing::debug!(filter = f.name(), %peer, error = %err, "filter answered the request");
                return Err(err);
            }
        }
        Ok(req.headers.into_frame())
    }
}

impl ResponseHook for FilterChain {
    fn on_response(&self, codec: &dyn Codec, frame: &[u8]) -> HookResult {
        let mut headers = Headers::new(codec, frame);
        for f in self.filters.iter().filter(|f| f.has_response_hook()) {
            if let FilterStatus::Respond(err) = f.on_response(&mut headers) {
                return HookResult::Fail(err);
            }
        }
        match headers.into_frame() {
            Some(f) => HookResult::Replace(f),
            None => HookResult::Forward,
        }
    }
}

/// A validated `stream_filters[]` entry.
#[derive(Debug, Clone)]
pub enum FilterSpec {
    IpAccess(IpAccess),
    HeaderMutation(HeaderMutation),
}

impl FilterSpec {
    /// Parses a filter config; `Ok(None)` for a type ferrymesh does not know.
    pub fn parse(
        kind: &str,
        config: serde_json::Value,
        path: &str,
        warnings: &mut Vec<String>,
    ) -> Result<Option<FilterSpec>, ConfigError> {
        let cpath = format!("{path}.config");
        Ok(Some(match kind {
            "ip_access" => FilterSpec::IpAccess(IpAccess::parse(config, &cpath, warnings)?),
            "header_mutation" => FilterSpec::HeaderMutation(HeaderMutation::parse(config, &cpath, warnings)?),
            _ => return Ok(None),
        }))
    }

    fn build(&self) -> Box<dyn StreamFilter> {
        match self {
            FilterSpec::IpAccess(f) => Box::new(f.clone()),
            FilterSpec::HeaderMutation(f) => Box::new(f.clone()),
        }
    }
}

/// The chain as the stream layer's response hook, when it has response hooks.
pub fn response_hook(chain: &Rc<FilterChain>) -> Option<Rc<dyn ResponseHook>> {
    chain.has_response_hooks().then(|| chain.clone() as Rc<dyn ResponseHook>)
}

#[cfg(test)]
mod tests;
