//! Builders for whole bolt frames: used by the examples, the load generator and
//! the tests. The proxy itself never builds request frames; it forwards them.

use bytes::{BufMut, BytesMut};

use super::{
    headers_len, put_headers, Layout, CMD_HEARTBEAT, CMD_REQUEST, CMD_RESPONSE, TYPE_ONEWAY, TYPE_REQUEST,
    TYPE_RESPONSE, V1, V2,
};

pub const SOFA_REQUEST_CLASS: &str = "com.alipay.sofa.rpc.core.request.SofaRequest";
pub const SOFA_RESPONSE_CLASS: &str = "com.alipay.sofa.rpc.core.response.SofaResponse";

fn layout(version: u8) -> &'static Layout {
    if version == 2 {
        &V2
    } else {
        &V1
    }
}

/// A bolt request frame.
#[derive(Debug, Clone)]
pub struct RequestBuilder {
    pub version: u8,
    pub id: u32,
    pub oneway: bool,
    pub heartbeat: bool,
    pub timeout_ms: i32,
    pub class: Vec<u8>,
    pub headers: Vec<(Vec<u8>, Vec<u8>)>,
    pub content: Vec<u8>,
}

impl RequestBuilder {
    /// A SOFA request for `service` carrying `content`.
    pub fn new(id: u32, service: &str, content: &[u8]) -> Self {
        RequestBuilder {
            version: 1,
            id,
            oneway: false,
            heartbeat: false,
            timeout_ms: 3000,
            class: SOFA_REQUEST_CLASS.as_bytes().to_vec(),
            headers: vec![(b"service".to_vec(), service.as_bytes().to_vec())],
            content: content.to_vec(),
        }
    }

    pub fn heartbeat(id: u32) -> Self {
        RequestBuilder {
            version: 1,
            id,
            oneway: false,
            heartbeat: true,
            timeout_ms: 3000,
            class: Vec::new(),
            headers: Vec::new(),
            content: Vec::new(),
        }
    }

    pub fn header(mut self, k: &str, v: &str) -> Self {
        self.headers.push((k.as_bytes().to_vec(), v.as_bytes().to_vec()));
        self
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = BytesMut::new();
        self.encode_into(&mut out);
        out.to_vec()
    }

    pub fn encode_into(&self, out: &mut BytesMut) {
        let l = layout(self.version);
        out.put_u8(l.proto);
        if l.ver1.is_some() {
            out.put_u8(1);
        }
        out.put_u8(if self.oneway { TYPE_ONEWAY } else { TYPE_REQUEST });
        out.put_u16(if self.heartbeat { CMD_HEARTBEAT } else { CMD_REQUEST });
        out.put_u8(1);
        out.put_u32(self.id);
        out.put_u8(super::CODEC_HESSIAN2);
        if l.switch.is_some() {
            out.put_u8(0);
        }
        out.put_i32(self.timeout_ms);
        out.put_u16(self.class.len() as u16);
        out.put_u16(headers_len(&self.headers) as u16);
        out.put_u32(self.content.len() as u32);
        out.put_slice(&self.class);
        put_headers(out, &self.headers);
        out.put_slice(&self.content);
    }
}

/// A bolt response frame.
#[derive(Debug, Clone)]
pub struct ResponseBuilder {
    pub version: u8,
    pub id: u32,
    pub heartbeat: bool,
    pub status: u16,
    pub class: Vec<u8>,
    pub headers: Vec<(Vec<u8>, Vec<u8>)>,
    pub content: Vec<u8>,
}

impl ResponseBuilder {
    pub fn new(id: u32, status: u16, content: &[u8]) -> Self {
        ResponseBuilder {
            version: 1,
            id,
            heartbeat: false,
            status,
            class: SOFA_RESPONSE_CLASS.as_bytes().to_vec(),
            headers: Vec::new(),
            content: content.to_vec(),
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = BytesMut::new();
        self.encode_into(&mut out);
        out.to_vec()
    }

    pub fn encode_into(&self, out: &mut BytesMut) {
        let l = layout(self.version);
        out.put_u8(l.proto);
        if l.ver1.is_some() {
            out.put_u8(1);
        }
        out.put_u8(TYPE_RESPONSE);
        out.put_u16(if self.heartbeat { CMD_HEARTBEAT } else { CMD_RESPONSE });
        out.put_u8(1);
        out.put_u32(self.id);
        out.put_u8(super::CODEC_HESSIAN2);
        if l.switch.is_some() {
            out.put_u8(0);
        }
        out.put_u16(self.status);
        out.put_u16(self.class.len() as u16);
        out.put_u16(headers_len(&self.headers) as u16);
        out.put_u32(self.content.len() as u32);
        out.put_slice(&self.class);
        put_headers(out, &self.headers);
        out.put_slice(&self.content);
    }
}
