//! Protocol detection on arbitrary first bytes: never panics, and the verdict is consistent as
//! bytes arrive. Once a prefix decides (a protocol, or unknown), every longer input decides the same
//! way; an input that needs more bytes has only undecided prefixes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mosn_protocol::detect::{detect, Detected, HTTP_AUTO};

fuzz_target!(|data: &[u8]| {
    let mut decided: Option<Detected> = None;
    for n in 1..=data.len() {
        let d = detect(&data[..n], HTTP_AUTO);
        match (decided, d) {
            (Some(first), now) => assert_eq!(first, now, "verdict changed at {n} bytes"),
            (None, Detected::NeedMore) => {}
            (None, now) => decided = Some(now),
        }
    }
});
