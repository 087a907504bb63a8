//! `http2bolt_simple`: an HTTP/1 or HTTP/2 request becomes a Bolt RPC request and the Bolt
//! response comes back as HTTP (MOSN's `http2bolt`).
//!
//! Request: the HTTP header fields become the Bolt header map (with `:authority` as `host`; the
//! framing and hop-by-hop fields `content-length`, `transfer-encoding`, `connection`,
//! `keep-alive`, `te`, `upgrade` and `proxy-connection` are dropped, as Bolt frames carry their own
//! length), so a `service` header routes the call upstream; the HTTP body becomes the content,
//! untouched; the codec is hessian2 and the frame carries no timeout (the route's applies).
//!
//! Response: Bolt status 0 (success) is HTTP 200, any other 500; the Bolt header map becomes the
//! HTTP header fields and the content the body.
//!
//! One deviation from MOSN, which leaves the request's class name empty: the class is
//! `com.alipay.sofa.rpc.core.request.SofaRequest` unless the config's `class` says otherwise,
//! because SOFARPC servers pick the request's processor by it and cannot answer a request without
//! one (the Node `sofa-rpc-node` server drops it; measured in the interop suite).
//!
//! Config: `{"class": "com.alipay.sofa.rpc.core.request.SofaRequest", "codec": 1}`, both optional.

use std::sync::Arc;

use mosn_api::transcode::{Message, TranscodeError, Transcoder};
use mosn_api::{HeaderVec, Headers, Protocol};

use crate::conf::{Obj, Result};

/// The class name of SOFARPC requests.
pub const SOFA_REQUEST_CLASS: &str = "com.alipay.sofa.rpc.core.request.SofaRequest";

/// HTTP fields that describe the HTTP message itself, not the call.
const HTTP_ONLY: [&str; 7] = [
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "te",
    "upgrade",
    "proxy-connection",
];

/// The built transcoder.
pub struct Http2Bolt {
    class: String,
    codec: u8,
}

/// Builds the transcoder (see the module doc for the config).
///
/// Errors: `codec` not a byte; `class` not a string.
pub fn build(config: &serde_json::Value, path: &str) -> Result<Arc<dyn Transcoder>> {
    let o = Obj::new(config, path)?;
    let class = o.str("class")?.unwrap_or(SOFA_REQUEST_CLASS).to_string();
    let codec = o.u64("codec", 255)?.unwrap_or(1) as u8;
    Ok(Arc::new(Http2Bolt { class, codec }))
}

impl Transcoder for Http2Bolt {
    fn name(&self) -> &'static str {
        "http2bolt_simple"
    }

    fn upstream(&self) -> Protocol {
        Protocol::Bolt
    }

    /// HTTP/1 and HTTP/2 requests.
    fn accept(&self, downstream: Protocol, _head: &dyn Headers) -> bool {
        matches!(downstream, Protocol::Http1 | Protocol::Http2)
    }

    fn request(&self, request: Message) -> std::result::Result<Message, TranscodeError> {
        let mut head = HeaderVec::default();
        head.append(":class", self.class.as_bytes());
        head.append(":codec", self.codec.to_string().as_bytes());
        if let Some(a) = request.head.get(":authority") {
            head.append("host", a);
        }
        for (k, v) in &request.head.0 {
            if k.starts_with(':') || k == "host" || HTTP_ONLY.contains(&k.as_str()) {
                continue;
            }
            head.append(k, v);
        }
        Ok(Message {
            head,
            body: request.body,
        })
    }

    fn response(&self, response: Message) -> std::result::Result<Message, TranscodeError> {
        let status = match response.number(":status") {
            Some(0) => "200",
            Some(_) => "500",
            None => return Err(TranscodeError("Bolt response without a status".into())),
        };
        let mut head = HeaderVec::default();
        head.append(":status", status.as_bytes());
        for (k, v) in &response.head.0 {
            if !k.starts_with(':') && !HTTP_ONLY.contains(&k.as_str()) {
                head.append(k, v);
            }
        }
        Ok(Message {
            head,
            body: response.body,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use serde_json::json;

    fn msg(fields: &[(&str, &str)], body: &'static str) -> Message {
        Message {
            head: HeaderVec(
                fields
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
                    .collect(),
            ),
            body: Bytes::from_static(body.as_bytes()),
        }
    }

    #[test]
    fn http_request_becomes_a_sofa_request_and_the_answer_http() {
        let t = build(&json!({}), "t").unwrap();
        let req = msg(
            &[
                (":method", "POST"),
                (":path", "/x"),
                (":authority", "a.example"),
                ("service", "com.example.Echo:1.0"),
                ("content-length", "5"),
                ("connection", "keep-alive"),
            ],
            "hello",
        );
        let b = t.request(req).unwrap();
        assert_eq!(b.head.get_str(":class"), Some(SOFA_REQUEST_CLASS));
        assert_eq!(b.number(":codec"), Some(1));
        assert_eq!(b.head.get_str("service"), Some("com.example.Echo:1.0"));
        assert_eq!(b.head.get_str("host"), Some("a.example"));
        assert!(b.head.get(":path").is_none() && b.head.get("content-length").is_none());
        assert_eq!(&b.body[..], b"hello");

        let ok = t
            .response(msg(&[(":status", "0"), ("k", "v")], "r"))
            .unwrap();
        assert_eq!(
            (ok.head.get_str(":status"), ok.head.get_str("k")),
            (Some("200"), Some("v"))
        );
        let err = t.response(msg(&[(":status", "18")], "")).unwrap();
        assert_eq!(err.head.get_str(":status"), Some("500"));
        assert!(t.response(msg(&[], "")).is_err());
        let custom = build(&json!({"class": "x.Y", "codec": 11}), "t").unwrap();
        let b = custom.request(msg(&[], "")).unwrap();
        assert_eq!(
            (b.head.get_str(":class"), b.number(":codec")),
            (Some("x.Y"), Some(11))
        );
        assert_eq!(
            build(&json!({"codec": 300}), "t").err().unwrap().path,
            "t.codec"
        );
    }
}
