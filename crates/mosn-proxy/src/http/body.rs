//! The body of a response sent downstream: a local answer, or the upstream's body streamed through.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use mosn_upstream::PooledBody;

/// A downstream response body.
pub enum ResponseBody {
    /// A body made by the proxy (direct response, error, redirect).
    Local(Option<Bytes>),
    /// The upstream's body, streamed frame by frame.
    Upstream(PooledBody),
}

impl ResponseBody {
    /// A local body; empty text gives an empty body.
    pub fn local(b: impl Into<Bytes>) -> Self {
        let b: Bytes = b.into();
        ResponseBody::Local(if b.is_empty() { None } else { Some(b) })
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            ResponseBody::Local(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            ResponseBody::Upstream(u) => Pin::new(u).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ResponseBody::Local(b) => b.is_none(),
            ResponseBody::Upstream(u) => u.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ResponseBody::Local(b) => {
                SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64))
            }
            ResponseBody::Upstream(u) => u.size_hint(),
        }
    }
}
