//! Request bodies sent upstream: streamed from the client, or held whole so a retry can resend them.

use std::cell::Cell;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

/// The body of a request sent upstream.
#[derive(Debug)]
pub enum RequestBody {
    /// No body.
    Empty,
    /// A body held in memory (replayable: retries clone it).
    Full(Option<Bytes>),
    /// The client's body, streamed as it arrives (not replayable), with a count of the bytes
    /// passed on so far (for `bytes_received`).
    Stream(Incoming, Rc<Cell<u64>>),
}

impl RequestBody {
    /// A copy for another try, when the body is replayable.
    pub fn replay(&self) -> Option<RequestBody> {
        match self {
            RequestBody::Empty => Some(RequestBody::Empty),
            RequestBody::Full(b) => Some(RequestBody::Full(b.clone())),
            RequestBody::Stream(..) => None,
        }
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            RequestBody::Empty => Poll::Ready(None),
            RequestBody::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            RequestBody::Stream(s, n) => {
                let r = Pin::new(s).poll_frame(cx);
                if let Poll::Ready(Some(Ok(f))) = &r {
                    if let Some(d) = f.data_ref() {
                        n.set(n.get() + d.len() as u64);
                    }
                }
                r
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            RequestBody::Empty => true,
            RequestBody::Full(b) => b.is_none(),
            RequestBody::Stream(s, _) => s.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            RequestBody::Empty => SizeHint::with_exact(0),
            RequestBody::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            RequestBody::Stream(s, _) => s.size_hint(),
        }
    }
}
