//! HTTP/1 bodies: decoding by the framing a head declared (RFC 9112 §6.3, §7.1) and encoding by the
//! framing the proxy chose for the other side. Bytes move from the input buffer to the output
//! buffer in one copy; chunked framing is checked byte by byte, data is copied in bulk.

use bytes::{Buf, BytesMut};

/// Longest chunk-size line (size, extensions, CRLF), in bytes. Longer is an error: chunk
/// extensions must not be unbounded.
pub const MAX_CHUNK_LINE: usize = 4096;

/// Largest trailer section, in bytes.
pub const MAX_TRAILERS: usize = 16 * 1024;

/// How a body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body.
    Empty,
    /// `Content-Length` bytes.
    Length(u64),
    /// Chunked transfer coding.
    Chunked,
    /// Until the connection closes (responses only).
    Close,
}

/// A body that cannot be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    /// Bad chunked framing: not hex, overflow, missing CRLF, control characters, too long a line.
    #[error("invalid chunked body: {0}")]
    Chunked(&'static str),
    /// Trailers over [`MAX_TRAILERS`] or malformed.
    #[error("invalid trailers")]
    Trailers,
    /// The connection ended before the body did.
    #[error("body ended early")]
    Incomplete,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    /// Reading hex digits of the size; `line` counts bytes of the line so far.
    Size { size: u64, digits: u32, line: usize },
    /// Whitespace after the digits: only more whitespace, `;` or CR may follow.
    Bws { size: u64, line: usize },
    /// In the extensions (after `;`) until CR.
    Ext { size: u64, line: usize },
    /// Saw CR of the size line.
    SizeLf { size: u64 },
    /// Data bytes left in this chunk.
    Data(u64),
    /// Expecting the CR after data.
    DataCr,
    /// Expecting the LF after data.
    DataLf,
    /// Reading the trailer section (after the last chunk) until an empty line.
    Trailers,
    /// Done.
    End,
}

/// Decodes one body.
#[derive(Debug, Clone)]
pub struct BodyDecoder {
    state: DecState,
    /// The raw trailer section (field lines without the final empty line), when there is one.
    trailers: BytesMut,
}

#[derive(Debug, Clone, Copy)]
enum DecState {
    Length(u64),
    Chunked(Chunk),
    Close,
    Done,
}

/// Encodes one body for the other side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyEncoder {
    /// Bytes as they are (`Content-Length` passed through, or until close).
    Identity,
    /// Chunked coding.
    Chunked,
    /// Nothing may be written (no body: HEAD, 204, 304).
    Discard,
}

/// What [`BodyDecoder::decode_into`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// The body is complete; its end (and trailers) were encoded.
    Done,
    /// Needs more input bytes (everything given was used).
    NeedInput,
    /// Stopped because the output reached its limit.
    OutputFull,
}

impl BodyDecoder {
    /// A decoder for `framing`.
    pub fn new(framing: Framing) -> Self {
        BodyDecoder {
            state: match framing {
                Framing::Empty | Framing::Length(0) => DecState::Done,
                Framing::Length(n) => DecState::Length(n),
                Framing::Chunked => DecState::Chunked(Chunk::Size {
                    size: 0,
                    digits: 0,
                    line: 0,
                }),
                Framing::Close => DecState::Close,
            },
            trailers: BytesMut::new(),
        }
    }

    /// True when the whole body was decoded.
    pub fn is_done(&self) -> bool {
        matches!(self.state, DecState::Done)
    }

    /// The trailer section of a finished chunked body: field lines, each ending in CRLF; empty
    /// when there was none (or before the body ended).
    pub fn trailers(&self) -> &[u8] {
        match self.state {
            DecState::Done => &self.trailers,
            _ => &[],
        }
    }

    /// True for a body that ends when the connection closes.
    pub fn ends_at_close(&self) -> bool {
        matches!(self.state, DecState::Close)
    }

    /// Bytes still expected for a `Content-Length` body.
    pub fn remaining(&self) -> Option<u64> {
        match self.state {
            DecState::Length(n) => Some(n),
            _ => None,
        }
    }

    /// The input ended (the peer closed): completes a close-delimited body.
    ///
    /// Errors: [`BodyError::Incomplete`] for any other unfinished body.
    pub fn eof(&mut self, enc: &mut BodyEncoder, out: &mut BytesMut) -> Result<(), BodyError> {
        match self.state {
            DecState::Close => {
                self.state = DecState::Done;
                enc.end(None, out);
                Ok(())
            }
            DecState::Done => Ok(()),
            _ => Err(BodyError::Incomplete),
        }
    }

    /// Moves body bytes from `input` to `out` through `enc`, until the body ends, `input` is used
    /// up, or `out` holds `limit` bytes. `data` counts the body bytes decoded (not framing).
    ///
    /// Errors: [`BodyError`] on bad chunked framing or trailers.
    pub fn decode_into(
        &mut self,
        input: &mut BytesMut,
        enc: &mut BodyEncoder,
        out: &mut BytesMut,
        limit: usize,
        data: &mut u64,
    ) -> Result<Progress, BodyError> {
        loop {
            if out.len() >= limit && !matches!(self.state, DecState::Done) {
                return Ok(Progress::OutputFull);
            }
            match &mut self.state {
                DecState::Done => return Ok(Progress::Done),
                DecState::Length(n) => {
                    if input.is_empty() {
                        return Ok(Progress::NeedInput);
                    }
                    let k = (*n).min(input.len() as u64).min((limit - out.len()) as u64) as usize;
                    enc.data(&input[..k], out);
                    input.advance(k);
                    *data += k as u64;
                    *n -= k as u64;
                    if *n == 0 {
                        self.state = DecState::Done;
                        enc.end(None, out);
                    }
                }
                DecState::Close => {
                    if input.is_empty() {
                        return Ok(Progress::NeedInput);
                    }
                    let k = input.len().min(limit - out.len());
                    enc.data(&input[..k], out);
                    input.advance(k);
                    *data += k as u64;
                }
                DecState::Chunked(c) => {
                    if input.is_empty() {
                        return Ok(Progress::NeedInput);
                    }
                    if let Chunk::Data(left) = c {
                        let k = (*left)
                            .min(input.len() as u64)
                            .min((limit - out.len()) as u64)
                            as usize;
                        enc.data(&input[..k], out);
                        input.advance(k);
                        *data += k as u64;
                        *left -= k as u64;
                        if *left == 0 {
                            *c = Chunk::DataCr;
                        }
                        continue;
                    }
                    if let Chunk::Trailers = c {
                        match find_empty_line(&self.trailers, input) {
                            Some(used) => {
                                self.trailers.extend_from_slice(&input[..used]);
                                input.advance(used);
                                // Everything up to (not including) the final CRLF.
                                let n = self.trailers.len() - 2;
                                if n > 0 {
                                    check_trailers(&self.trailers)?;
                                }
                                self.trailers.truncate(n);
                                enc.end(Some(&self.trailers[..]).filter(|f| !f.is_empty()), out);
                                self.state = DecState::Done;
                            }
                            None => {
                                if self.trailers.len() + input.len() > MAX_TRAILERS {
                                    return Err(BodyError::Trailers);
                                }
                                self.trailers.extend_from_slice(input);
                                input.clear();
                            }
                        }
                        continue;
                    }
                    let b = input[0];
                    input.advance(1);
                    *c = step(*c, b)?;
                    if let Chunk::End = c {
                        // Last chunk read: a trailer section or the final CRLF follows.
                        *c = Chunk::Trailers;
                    }
                }
            }
        }
    }
}

/// Length of `input`'s prefix that completes the trailer section (ends in an empty line), given
/// the `seen` bytes already collected.
fn find_empty_line(seen: &[u8], input: &[u8]) -> Option<usize> {
    // The section is complete at the first CRLF that starts a line: either the very first two
    // bytes, or a CRLF right after another CRLF.
    let mut prev: [u8; 3] = [0; 3];
    let tail = &seen[seen.len().saturating_sub(3)..];
    let mut total = seen.len();
    for (i, b) in tail.iter().enumerate() {
        prev[3 - tail.len() + i] = *b;
    }
    for (i, &b) in input.iter().enumerate() {
        total += 1;
        let done = b == b'\n'
            && prev[2] == b'\r'
            && (total == 2 || (prev[1] == b'\n' && prev[0] == b'\r'));
        if done {
            return Some(i + 1);
        }
        prev = [prev[1], prev[2], b];
    }
    None
}

fn check_trailers(t: &[u8]) -> Result<(), BodyError> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    match httparse::parse_headers(t, &mut headers) {
        Ok(httparse::Status::Complete((n, _))) if n == t.len() => Ok(()),
        _ => Err(BodyError::Trailers),
    }
}

fn hex(b: u8) -> Option<u64> {
    match b {
        b'0'..=b'9' => Some(u64::from(b - b'0')),
        b'a'..=b'f' => Some(u64::from(b - b'a' + 10)),
        b'A'..=b'F' => Some(u64::from(b - b'A' + 10)),
        _ => None,
    }
}

/// One byte of chunked framing (not data, not trailers).
fn step(c: Chunk, b: u8) -> Result<Chunk, BodyError> {
    let line_check = |line: usize| {
        if line >= MAX_CHUNK_LINE {
            Err(BodyError::Chunked("chunk-size line too long"))
        } else {
            Ok(line + 1)
        }
    };
    Ok(match c {
        Chunk::Size { size, digits, line } => {
            let line = line_check(line)?;
            match hex(b) {
                Some(d) => {
                    if size > (u64::MAX >> 4) {
                        return Err(BodyError::Chunked("chunk size overflows"));
                    }
                    Chunk::Size {
                        size: (size << 4) | d,
                        digits: digits + 1,
                        line,
                    }
                }
                None if digits == 0 => return Err(BodyError::Chunked("chunk size is not hex")),
                None => match b {
                    b'\r' => Chunk::SizeLf { size },
                    b' ' | b'\t' => Chunk::Bws { size, line },
                    b';' => Chunk::Ext { size, line },
                    _ => return Err(BodyError::Chunked("chunk size is not hex")),
                },
            }
        }
        Chunk::Bws { size, line } => {
            let line = line_check(line)?;
            match b {
                b' ' | b'\t' => Chunk::Bws { size, line },
                b';' => Chunk::Ext { size, line },
                b'\r' => Chunk::SizeLf { size },
                _ => return Err(BodyError::Chunked("junk after chunk size")),
            }
        }
        Chunk::Ext { size, line } => {
            let line = line_check(line)?;
            match b {
                b'\r' => Chunk::SizeLf { size },
                b'\t' => Chunk::Ext { size, line },
                0..=0x1f | 0x7f => {
                    return Err(BodyError::Chunked("control character in chunk extension"))
                }
                _ => Chunk::Ext { size, line },
            }
        }
        Chunk::SizeLf { size } => match b {
            b'\n' if size == 0 => Chunk::End,
            b'\n' => Chunk::Data(size),
            _ => return Err(BodyError::Chunked("chunk-size line without CRLF")),
        },
        Chunk::DataCr => match b {
            b'\r' => Chunk::DataLf,
            _ => return Err(BodyError::Chunked("chunk data without CRLF")),
        },
        Chunk::DataLf => match b {
            b'\n' => Chunk::Size {
                size: 0,
                digits: 0,
                line: 0,
            },
            _ => return Err(BodyError::Chunked("chunk data without CRLF")),
        },
        Chunk::Data(_) | Chunk::Trailers | Chunk::End => c,
    })
}

impl BodyEncoder {
    /// Appends body bytes.
    pub fn data(&mut self, d: &[u8], out: &mut BytesMut) {
        if d.is_empty() {
            return;
        }
        match self {
            BodyEncoder::Identity => out.extend_from_slice(d),
            BodyEncoder::Chunked => {
                let mut h = [0u8; 18];
                let n = hex_len(d.len() as u64, &mut h);
                out.reserve(n + d.len() + 4);
                out.extend_from_slice(&h[..n]);
                out.extend_from_slice(b"\r\n");
                out.extend_from_slice(d);
                out.extend_from_slice(b"\r\n");
            }
            BodyEncoder::Discard => {}
        }
    }

    /// Appends the end of the body: the last chunk with `trailers` (field lines ending in CRLF)
    /// for chunked coding, nothing otherwise.
    pub fn end(&mut self, trailers: Option<&[u8]>, out: &mut BytesMut) {
        if let BodyEncoder::Chunked = self {
            out.extend_from_slice(b"0\r\n");
            if let Some(t) = trailers {
                out.extend_from_slice(t);
            }
            out.extend_from_slice(b"\r\n");
        }
    }
}

fn hex_len(mut n: u64, out: &mut [u8; 18]) -> usize {
    const D: &[u8; 16] = b"0123456789abcdef";
    let mut tmp = [0u8; 16];
    let mut i = 0;
    loop {
        tmp[i] = D[(n & 15) as usize];
        n >>= 4;
        i += 1;
        if n == 0 {
            break;
        }
    }
    for k in 0..i {
        out[k] = tmp[i - 1 - k];
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(
        framing: Framing,
        enc: BodyEncoder,
        pieces: &[&[u8]],
    ) -> Result<(Vec<u8>, u64, bool), BodyError> {
        let mut d = BodyDecoder::new(framing);
        let mut e = enc;
        let mut out = BytesMut::new();
        let mut input = BytesMut::new();
        let mut n = 0;
        for p in pieces {
            input.extend_from_slice(p);
            d.decode_into(&mut input, &mut e, &mut out, usize::MAX, &mut n)?;
        }
        Ok((out.to_vec(), n, d.is_done()))
    }

    #[test]
    fn chunked_decodes_across_any_split_and_reencodes() {
        let body = b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nx-t: 1\r\n\r\n";
        for cut in 0..body.len() {
            let (out, n, done) = run(
                Framing::Chunked,
                BodyEncoder::Identity,
                &[&body[..cut], &body[cut..]],
            )
            .unwrap();
            assert_eq!(out, b"hello world");
            assert_eq!(n, 11);
            assert!(done, "cut {cut}");
        }
        let (out, _, _) = run(Framing::Chunked, BodyEncoder::Chunked, &[body]).unwrap();
        assert_eq!(out, b"5\r\nhello\r\n6\r\n world\r\n0\r\nx-t: 1\r\n\r\n");
        let (out, _, _) = run(Framing::Chunked, BodyEncoder::Chunked, &[b"0\r\n\r\n"]).unwrap();
        assert_eq!(out, b"0\r\n\r\n");
    }

    #[test]
    fn bad_chunked_framing_is_an_error() {
        let bad: [&[u8]; 7] = [
            b"g\r\n",
            b"5\nhello\r\n",
            b"5\r\nhelloXX",
            b"11111111111111111\r\n",
            b"5;a\x01\r\n",
            b"\r\n",
            b"5 x\r\n",
        ];
        for b in bad {
            assert!(
                run(Framing::Chunked, BodyEncoder::Identity, &[b]).is_err(),
                "{b:?}"
            );
        }
        let long = [b'1'; MAX_CHUNK_LINE + 1];
        assert!(run(Framing::Chunked, BodyEncoder::Identity, &[&long]).is_err());
        let mut ext = b"1;".to_vec();
        ext.extend(std::iter::repeat_n(b'a', MAX_CHUNK_LINE));
        assert!(run(Framing::Chunked, BodyEncoder::Identity, &[&ext]).is_err());
        let mut tr = b"0\r\n".to_vec();
        tr.extend(std::iter::repeat_n(b'a', MAX_TRAILERS + 1));
        assert_eq!(
            run(Framing::Chunked, BodyEncoder::Identity, &[&tr]).unwrap_err(),
            BodyError::Trailers
        );
        assert_eq!(
            run(
                Framing::Chunked,
                BodyEncoder::Identity,
                &[b"0\r\nbad trailer\r\n\r\n"]
            )
            .unwrap_err(),
            BodyError::Trailers
        );
    }

    #[test]
    fn length_stops_at_its_end_and_leaves_the_rest() {
        let mut d = BodyDecoder::new(Framing::Length(3));
        let mut e = BodyEncoder::Chunked;
        let mut out = BytesMut::new();
        let mut input = BytesMut::from(&b"abcGET"[..]);
        let mut n = 0;
        assert_eq!(
            d.decode_into(&mut input, &mut e, &mut out, usize::MAX, &mut n),
            Ok(Progress::Done)
        );
        assert_eq!(&input[..], b"GET");
        assert_eq!(&out[..], b"3\r\nabc\r\n0\r\n\r\n");
    }

    #[test]
    fn output_limit_applies_backpressure() {
        let mut d = BodyDecoder::new(Framing::Length(100));
        let mut e = BodyEncoder::Identity;
        let mut out = BytesMut::new();
        let mut input = BytesMut::from(&[b'x'; 100][..]);
        let mut n = 0;
        assert_eq!(
            d.decode_into(&mut input, &mut e, &mut out, 40, &mut n),
            Ok(Progress::OutputFull)
        );
        assert_eq!(out.len(), 40);
        assert_eq!(d.remaining(), Some(60));
    }
}
