//! The body of a response sent downstream: a local answer, or the upstream's body streamed through.
//! When it ends (or is dropped early) it finishes its request's record: metrics and access log.

use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use mosn_api::ResponseFlag;
use mosn_upstream::PooledBody;

use super::info::RequestInfo;
use super::stream::ConnCtx;

enum Kind {
    Local(Option<Bytes>),
    Upstream(PooledBody),
}

/// A downstream response body.
pub struct ResponseBody {
    kind: Kind,
    /// Boxed: hyper moves the body several times, and a pointer moves cheaply.
    done: Option<Box<(Rc<ConnCtx>, RequestInfo)>>,
}

impl ResponseBody {
    /// A local body; empty text gives an empty body.
    pub fn local(b: impl Into<Bytes>) -> Self {
        let b: Bytes = b.into();
        ResponseBody {
            kind: Kind::Local(if b.is_empty() { None } else { Some(b) }),
            done: None,
        }
    }

    /// The upstream's body.
    pub fn upstream(b: PooledBody) -> Self {
        ResponseBody {
            kind: Kind::Upstream(b),
            done: None,
        }
    }

    /// Attaches the request's record, finished when this body ends or is dropped.
    pub fn finish_with(&mut self, ctx: Rc<ConnCtx>, info: RequestInfo) {
        self.done = Some(Box::new((ctx, info)));
    }

    fn complete(&mut self, ok: bool) {
        if let Some(done) = self.done.take() {
            let (ctx, info) = *done;
            info.finish(&ctx, ok);
        }
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let r = match &mut self.kind {
            Kind::Local(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            Kind::Upstream(u) => Pin::new(u).poll_frame(cx),
        };
        match &r {
            Poll::Ready(Some(Ok(f))) => {
                let n = f.data_ref().map_or(0, |d| d.len() as u64);
                if let Some(done) = &mut self.done {
                    done.1.bytes_sent += n;
                }
                if self.is_end_stream() {
                    self.complete(true);
                }
            }
            Poll::Ready(Some(Err(_))) => {
                if let Some(done) = &mut self.done {
                    done.1.flag = Some(ResponseFlag::UpstreamConnectionTermination);
                }
                self.complete(false);
            }
            Poll::Ready(None) => self.complete(true),
            Poll::Pending => {}
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Local(b) => b.is_none(),
            Kind::Upstream(u) => u.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Local(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            Kind::Upstream(u) => u.size_hint(),
        }
    }
}

impl Drop for ResponseBody {
    fn drop(&mut self) {
        // A body never polled because it was empty (HEAD, 204, 304, no content) is complete.
        let ended = self.is_end_stream();
        self.complete(ended);
    }
}
