//! `httpTohttp2` and `http2Tohttp`: send an HTTP/1 request upstream as HTTP/2, or an HTTP/2
//! request as HTTP/1, per request (MOSN's `httpconv`). The proxy's own streaming translation
//! (`mosn_protocol::http2::translate`) converts heads, bodies and trailers both ways, so these
//! transcoders only choose the upstream protocol; their `request`/`response` are never called.
//!
//! Config: none (`{}`).

use std::sync::Arc;

use mosn_api::transcode::Transcoder;
use mosn_api::{FilterConfigError, Headers, Protocol};

/// An HTTP version switch: requests from `from` go upstream in `to`.
pub struct HttpConv {
    name: &'static str,
    from: Protocol,
    to: Protocol,
}

fn conv(name: &'static str, from: Protocol, to: Protocol) -> Arc<dyn Transcoder> {
    Arc::new(HttpConv { name, from, to })
}

/// Builds `httpTohttp2`.
pub fn build_http_to_http2(
    _config: &serde_json::Value,
    _path: &str,
) -> Result<Arc<dyn Transcoder>, FilterConfigError> {
    Ok(conv("httpTohttp2", Protocol::Http1, Protocol::Http2))
}

/// Builds `http2Tohttp`.
pub fn build_http2_to_http(
    _config: &serde_json::Value,
    _path: &str,
) -> Result<Arc<dyn Transcoder>, FilterConfigError> {
    Ok(conv("http2Tohttp", Protocol::Http2, Protocol::Http1))
}

impl Transcoder for HttpConv {
    fn name(&self) -> &'static str {
        self.name
    }

    fn upstream(&self) -> Protocol {
        self.to
    }

    /// Requests that came in the `from` protocol.
    fn accept(&self, downstream: Protocol, _head: &dyn Headers) -> bool {
        downstream == self.from
    }
}
