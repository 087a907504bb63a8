//! The chunked decoder on arbitrary bytes, fed in pieces of fuzzer-chosen sizes with a small output
//! limit: it never panics, never loops without progress, gives the same data whatever the split,
//! and the data it decodes, re-encoded as chunked, decodes back to the same bytes.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use mosn_protocol::http1::body::Progress;
use mosn_protocol::http1::{BodyDecoder, BodyEncoder, BodyError, Framing};

/// Decodes `input` given in pieces of the sizes in `splits` (cycled), with `limit` output bytes
/// per call. Returns the decoded data and whether the body completed.
fn decode(input: &[u8], splits: &[u8], limit: usize) -> Result<(Vec<u8>, bool), BodyError> {
    let mut dec = BodyDecoder::new(Framing::Chunked);
    let mut enc = BodyEncoder::Identity;
    let mut data = Vec::new();
    let mut pending = BytesMut::new();
    let mut fed = 0;
    let mut i = 0;
    let mut n = 0u64;
    loop {
        let mut out = BytesMut::new();
        let before = (pending.len(), fed);
        let p = dec.decode_into(&mut pending, &mut enc, &mut out, limit, &mut n)?;
        data.extend_from_slice(&out);
        match p {
            Progress::Done => return Ok((data, true)),
            Progress::OutputFull => {
                assert!(
                    !out.is_empty() || pending.len() < before.0,
                    "OutputFull without progress"
                );
            }
            Progress::NeedInput => {
                assert!(pending.is_empty(), "NeedInput with input left");
                if fed == input.len() {
                    return Ok((data, false));
                }
                let step = splits.get(i % splits.len().max(1)).copied().unwrap_or(7).max(1);
                i += 1;
                let end = (fed + step as usize).min(input.len());
                pending.extend_from_slice(&input[fed..end]);
                fed = end;
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&k, rest)) = data.split_first() else {
        return;
    };
    let n_splits = (k & 7) as usize;
    let (splits, input) = rest.split_at(n_splits.min(rest.len()));
    let limit = ((k >> 3) as usize + 1) * 3;
    let a = decode(input, splits, limit);
    let whole = decode(input, &[255], 1 << 20);
    match (&a, &whole) {
        (Ok(x), Ok(y)) => assert_eq!(x, y, "split changed the result"),
        (Err(_), Err(_)) => {}
        _ => panic!("split changed success: {a:?} vs {whole:?}"),
    }
    if let Ok((body, true)) = a {
        let mut enc = BodyEncoder::Chunked;
        let mut wire = BytesMut::new();
        for piece in body.chunks(limit) {
            enc.data(piece, &mut wire);
        }
        enc.end(None, &mut wire);
        let (back, done) = decode(&wire, &[13], 1 << 20).expect("own encoding refused");
        assert!(done);
        assert_eq!(back, body);
    }
});
