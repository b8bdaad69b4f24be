//! `header_mutation`: add and remove headers on requests and responses.
//!
//! Config (field names as MOSN's route-level header options):
//! `{"request_headers_to_add": [{"key": "k", "value": "v"}],
//!   "request_headers_to_remove": ["x"], "response_headers_to_add": [...],
//!   "response_headers_to_remove": [...]}`. An added header replaces a header of
//! the same name.

use serde::Deserialize;

use super::{FilterStatus, Headers, RequestCtx, StreamFilter};
use crate::config::model::HeaderKv;
use crate::config::{from_value, ConfigError};

#[derive(Debug, Clone, Default, Deserialize)]
pub struct HeaderMutation {
    #[serde(default)]
    pub request_headers_to_add: Vec<HeaderKv>,
    #[serde(default)]
    pub request_headers_to_remove: Vec<String>,
    #[serde(default)]
    pub response_headers_to_add: Vec<HeaderKv>,
    #[serde(default)]
    pub response_headers_to_remove: Vec<String>,
}

impl HeaderMutation {
    pub fn parse(config: serde_json::Value, path: &str, warnings: &mut Vec<String>) -> Result<Self, ConfigError> {
        from_value(config, path, warnings)
    }
}

fn apply(headers: &mut Headers<'_>, add: &[HeaderKv], remove: &[String]) {
    for name in remove {
        headers.remove(name);
    }
    for h in add {
        headers.set(&h.key, &h.value);
    }
}

impl StreamFilter for HeaderMutation {
    fn name(&self) -> &'static str {
        "header_mutation"
    }

    fn on_request(&self, req: &mut RequestCtx<'_>) -> FilterStatus {
        apply(&mut req.headers, &self.request_headers_to_add, &self.request_headers_to_remove);
        FilterStatus::Continue
    }

    fn on_response(&self, headers: &mut Headers<'_>) -> FilterStatus {
        apply(headers, &self.response_headers_to_add, &self.response_headers_to_remove);
        FilterStatus::Continue
    }

    fn has_response_hook(&self) -> bool {
        !(self.response_headers_to_add.is_empty() && self.response_headers_to_remove.is_empty())
    }
}
