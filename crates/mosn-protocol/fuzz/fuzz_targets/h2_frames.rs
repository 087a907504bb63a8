//! The HTTP/2 frame scanner that polices control frames must see the same frames whatever the
//! read sizes: the input's first byte picks a chunk size, the rest is fed in chunks of that size
//! and whole, and both must yield the same frame headers (and never panic).
#![no_main]

use libfuzzer_sys::fuzz_target;
use mosn_protocol::http2::frames::FrameScanner;

fuzz_target!(|data: &[u8]| {
    let Some((&step, wire)) = data.split_first() else {
        return;
    };
    let step = usize::from(step).max(1);
    let mut whole = Vec::new();
    FrameScanner::server().feed(wire, |f| whole.push(f));
    let mut chunked = Vec::new();
    let mut s = FrameScanner::server();
    for c in wire.chunks(step) {
        s.feed(c, |f| chunked.push(f));
    }
    assert_eq!(whole, chunked);
});
